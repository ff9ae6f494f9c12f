"""The scenario format shared by both engines (the model and the real kernel).

A scenario is a memory budget and a list of steps.  Parsing and validation
(``load_scenario`` / ``parse_scenario``) live in :mod:`models.scenario.parse`;
this module only defines the plain data both engines consume and produce.
"""
from __future__ import annotations

from dataclasses import dataclass, asdict
from typing import Literal, Optional, Union

Advice = str  # "MADV_DONTNEED", "MADV_FREE", or any other name/int (the kernel answers EINVAL)


@dataclass(frozen=True)
class Mmap:
    region: str
    length: int            # bytes, > 0
    shared: bool = False
    op: Literal["mmap"] = "mmap"


@dataclass(frozen=True)
class Munmap:
    region: str
    op: Literal["munmap"] = "munmap"


@dataclass(frozen=True)
class Touch:
    region: str
    offset: int            # bytes; the touched pages are those overlapping [offset, offset+length)
    length: int            # bytes, > 0
    access: Literal["read", "write"]
    op: Literal["touch"] = "touch"


@dataclass(frozen=True)
class Madvise:
    region: str
    offset: int            # bytes, as passed to the syscall: may be unaligned (-> EINVAL)
    length: int            # bytes; may run past the region's end (-> ENOMEM)
    advice: Union[str, int]
    op: Literal["madvise"] = "madvise"


@dataclass(frozen=True)
class Pressure:
    length: int            # bytes of another allocation, written and held to the end
    op: Literal["pressure"] = "pressure"


Step = Union[Mmap, Munmap, Touch, Madvise, Pressure]


@dataclass(frozen=True)
class Scenario:
    steps: tuple[Step, ...]
    memory_limit: Optional[int] = None   # bytes above the process's own baseline; None = unlimited
    name: str = ""
    description: str = ""


@dataclass
class StepResult:
    """One row of ``python -m models run --json``."""
    step: int
    op: str
    rss_pages: int
    lazyfree_pages: int
    faults: int
    zero_pages: Optional[int]
    error: Optional[str]          # None, "EINVAL", "ENOMEM" or "OOM_KILL"

    def to_json(self) -> dict:
        return asdict(self)
