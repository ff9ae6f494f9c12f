"""Scenarios: what a program does to its memory, played on the page model or the real kernel.

* :mod:`models.scenario.format` -- the plain data (``Scenario``, steps, ``StepResult``);
* :mod:`models.scenario.parse`  -- ``load_scenario(path)`` / ``parse_scenario(dict)`` with
  one clear :class:`~models.errors.ModelInputError` for every malformed scenario;
* ``models/scenario/library/*.json`` -- the scenario library (``library_names()``,
  ``library_path(name)``, ``resolve(name_or_path)``);
* :mod:`models.scenario.cli`    -- ``python -m models run``.
"""
from __future__ import annotations

import os

from models.errors import ModelInputError
from models.scenario.format import (Madvise, Mmap, Munmap, Pressure, Scenario, Step, StepResult,
                                    Touch)
from models.scenario.parse import load_scenario, parse_scenario

LIBRARY_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "library")


def library_names() -> list[str]:
    """Names of the library scenarios (file names without ``.json``), sorted."""
    return sorted(f[:-5] for f in os.listdir(LIBRARY_DIR) if f.endswith(".json"))


def library_path(name: str) -> str:
    """Path of library scenario ``name``; ModelInputError listing the names if there is none."""
    names = library_names()
    if name not in names:
        raise ModelInputError(f"no library scenario named {name!r}; available: {', '.join(names)}")
    return os.path.join(LIBRARY_DIR, name + ".json")


def resolve(name_or_path: str) -> Scenario:
    """Load a scenario from a file path, or from the library by name (``"lazyfree-reclaim"``)."""
    if os.path.exists(name_or_path) or name_or_path.endswith(".json") or os.sep in name_or_path:
        return load_scenario(name_or_path)
    return load_scenario(library_path(name_or_path))


__all__ = ["Scenario", "Step", "StepResult", "Mmap", "Munmap", "Touch", "Madvise", "Pressure",
           "load_scenario", "parse_scenario", "library_names", "library_path", "resolve",
           "LIBRARY_DIR"]
