"""Sizes as the kernel counts them: bytes, and 4 KiB pages.

Scenario files and command lines accept sizes either as a whole number of
bytes or as a string with a binary unit ("64MiB", "4 KiB", "1GiB").  Decimal
units (MB) are refused on purpose: memory is counted in pages of 4096 bytes,
and "64MB" is not a whole number of them.
"""
from __future__ import annotations

import re

from models.errors import ModelInputError

#: The base page size on x86-64 and most arm64 kernels (``getconf PAGESIZE``).
PAGE_SIZE = 4096

_UNITS = {"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|TiB)?\s*$")


def parse_size(value, *, name: str = "size") -> int:
    """Return ``value`` in bytes; ``name`` is used in the error message.

    Accepts a non-negative ``int`` or a string such as ``"128MiB"``.
    """
    if isinstance(value, bool):
        raise ModelInputError(f"{name} must be a size in bytes or a string like '64MiB', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ModelInputError(f"{name} must be >= 0 bytes, got {value}")
        return value
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if not match:
            raise ModelInputError(
                f"{name} must be a whole number of bytes or a string like '64MiB' "
                f"(units B, KiB, MiB, GiB, TiB), got {value!r}")
        return int(match.group(1)) * _UNITS[match.group(2) or ""]
    raise ModelInputError(
        f"{name} must be a size in bytes or a string like '64MiB', got {type(value).__name__} {value!r}")


def pages_of(nbytes: int) -> int:
    """Number of pages needed to hold ``nbytes`` (rounded up, as mmap does)."""
    return -(-nbytes // PAGE_SIZE)


def format_size(nbytes: float) -> str:
    """Human-readable binary size, e.g. ``format_size(3 << 20) == '3.0 MiB'``."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(nbytes) >= factor:
            return f"{nbytes / factor:.1f} {unit}"
    return f"{int(nbytes)} B"
