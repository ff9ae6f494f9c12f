"""Errors shared by every model.

Two families, kept apart on purpose:

* :class:`ModelInputError` -- the caller asked for something outside the
  model's domain (a negative size, an unknown Go version, a malformed
  scenario).  The message names the parameter and the allowed values.
* :class:`KernelError` -- the *simulated kernel* refused a system call, as the
  real one would (``EINVAL``, ``ENOMEM``).  This is an outcome to observe, not
  a bug in the caller.
* :class:`OOMKill` -- the simulated memory cgroup ran out of memory and killed
  the process.
"""
from __future__ import annotations


class ModelInputError(ValueError):
    """Bad input to a model: the message names the parameter and the allowed range."""


class KernelError(OSError):
    """A simulated system call failed with ``errno_name`` (e.g. ``"EINVAL"``)."""

    def __init__(self, errno_name: str, message: str):
        super().__init__(f"{errno_name}: {message}")
        self.errno_name = errno_name


class OOMKill(RuntimeError):
    """The memory budget was exhausted with nothing left to reclaim."""
