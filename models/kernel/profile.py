"""Kernel-version profiles: which MADV_FREE behaviour a given Linux release has.

Three eras matter for the book (FACTS 10, 15-19, 23):

* before 4.5 there is no MADV_FREE: the advice value 8 is unknown and madvise answers EINVAL
  (the Go runtime then falls back to MADV_DONTNEED, FACTS 44);
* 4.5 to 4.11: MADV_FREE is lazy only while free swap exists; on a swapless system it is passed
  straight through to MADV_DONTNEED (FACTS 15-16), and smaps has no ``LazyFree`` line;
* 4.12 on: lazy with or without swap (lazily freed pages sit on the inactive file LRU, FACTS
  17-19) and smaps reports ``LazyFree`` (FACTS 23).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from models.errors import ModelInputError

#: Oldest and newest kernel series the model has an era for.
MIN_VERSION = (3, 0)
MAX_MAJOR = 6
ALLOWED_RANGE = "3.0 to 6.x (e.g. '4.4', '4.9', '4.12', '5.4', '6.18', '6.x', or a uname -r string)"

_VERSION_RE = re.compile(r"^\s*(\d+)\.(\d+|x)(?:\.\d+)?(?:[-+~_.].*)?\s*$")


@dataclass(frozen=True)
class KernelProfile:
    """What one kernel release (with or without swap) does on the paths the model covers."""
    version: str              #: as normalised, e.g. "6.18" or "6.x"
    major: int
    minor: int                #: 0 for a "6.x" style series-only version
    swap: bool                #: free swap space is available (FACTS 15, 65)

    @property
    def has_madv_free(self) -> bool:
        """MADV_FREE exists (Linux 4.5+, FACTS 10); older kernels answer EINVAL."""
        return (self.major, self.minor) >= (4, 5)

    @property
    def lazy_free(self) -> bool:
        """MADV_FREE defers the freeing (4.12+, or 4.5-4.11 with swap); else it acts as DONTNEED."""
        return self.has_madv_free and ((self.major, self.minor) >= (4, 12) or self.swap)

    @property
    def smaps_lazyfree(self) -> bool:
        """smaps has a ``LazyFree`` field (4.12+, FACTS 23); before that the observation is 0."""
        return (self.major, self.minor) >= (4, 12)

    @property
    def pt_reclaim(self) -> bool:
        """MADV_DONTNEED frees the page-table page of every 2 MiB block it empties whole
        (CONFIG_PT_RECLAIM, Linux 6.14+; measured on 6.18, KERNEL-NOTES K3).  A series-only
        "6.x" counts as 6.0, without it."""
        return (self.major, self.minor) >= (6, 14)

    def knows(self, since: tuple[int, int]) -> bool:
        """This release has a feature added in ``since`` (e.g. an madvise advice)."""
        return (self.major, self.minor) >= since

    def describe(self) -> str:
        swap = "with swap" if self.swap else "without swap"
        if not self.has_madv_free:
            free = "no MADV_FREE (EINVAL)"
        elif self.lazy_free:
            free = "MADV_FREE is lazy"
        else:
            free = "MADV_FREE acts as MADV_DONTNEED"
        return f"Linux {self.version} {swap}: {free}"


def profile_for(version: str = "6.18", swap: bool = False) -> KernelProfile:
    """The profile of Linux ``version`` ("4.9", "6.18", "6.x", "6.18.44-fc-v657", ...).

    Raises ModelInputError for anything that is not a version in the range the model covers.
    """
    if isinstance(version, KernelProfile):
        return version if version.swap == swap else KernelProfile(version.version, version.major,
                                                                  version.minor, bool(swap))
    if not isinstance(swap, bool):
        raise ModelInputError(f"swap must be True or False, got {swap!r}")
    if not isinstance(version, str):
        raise ModelInputError(f"kernel_version must be a string in the range {ALLOWED_RANGE}, "
                              f"got {type(version).__name__} {version!r}")
    match = _VERSION_RE.match(version)
    if not match:
        raise ModelInputError(f"kernel_version {version!r} is not a Linux version; allowed: {ALLOWED_RANGE}")
    major = int(match.group(1))
    series_only = match.group(2) == "x"
    minor = 0 if series_only else int(match.group(2))
    if (major, minor) < MIN_VERSION or major > MAX_MAJOR:
        raise ModelInputError(f"kernel_version {version!r} is outside the modelled range {ALLOWED_RANGE}")
    if series_only and major == 4:
        raise ModelInputError("kernel_version '4.x' spans three MADV_FREE eras (4.0-4.4, 4.5-4.11, "
                              "4.12+); give the minor version, e.g. '4.4', '4.9' or '4.12'")
    norm = f"{major}.x" if series_only else f"{major}.{minor}"
    return KernelProfile(norm, major, minor, swap)
