"""What each Go release does with idle heap memory on Linux: one policy per version.

A :class:`GoPolicy` is plain data; :func:`policy_for` builds it from a Go
version and a ``GODEBUG`` string and validates both.  Every switch cites the
fact it comes from (FACTS §F):

=========  ==========================================================================
Go         how idle heap memory goes back to the kernel
=========  ==========================================================================
<= 1.11    ``MADV_DONTNEED``; a periodic scavenger every 2.5 min releases spans
           unused for >= 5 min (FACTS 41)
1.12       ``MADV_FREE`` first, ``MADV_DONTNEED`` for good once the kernel rejects it
           (FACTS 44); ``GODEBUG=madvdontneed=1`` forces DONTNEED (FACTS 42);
           also releases on heap growth (FACTS 45)
1.13-1.15  background scavenger, prompt, about 1% of a CPU, goal 1.1 x next_gc
           (FACTS 47-49); still ``MADV_FREE`` by default
>= 1.16    ``MADV_DONTNEED`` by default, ``GODEBUG=madvdontneed=0`` for FREE (FACTS 50-52)
>= 1.18    GC roots count in the heap goal (FACTS 57)
>= 1.19    ``GOMEMLIMIT``: second scavenger goal at 95 % of the limit, synchronous
           release when an allocation would pass it (FACTS 54-55); the gcPercent goal
           becomes 1.1 x (heapGoal / lastHeapGoal) x lastHeapInUse (FACTS 49)
=========  ==========================================================================
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from models.errors import ModelInputError

#: Oldest and newest Go minor versions the model knows (1.11 .. 1.26, FACTS timeline).
MIN_MINOR, MAX_MINOR = 11, 26
KNOWN_VERSIONS = tuple(f"1.{m}" for m in range(MIN_MINOR, MAX_MINOR + 1))

MADV_DONTNEED = "MADV_DONTNEED"
MADV_FREE = "MADV_FREE"

_VERSION_RE = re.compile(r"^\s*(?:go)?1\.(\d+)(?:\.(\d+))?\s*$")
#: GODEBUG settings the model understands, with their allowed values.
GODEBUG_KEYS = {"madvdontneed": ("0", "1")}


@dataclass(frozen=True)
class GoPolicy:
    """How one Go version (plus GODEBUG) manages heap memory; times in seconds."""
    version: str                     # "1.12"
    minor: int                       # 12
    advice: str                      # advice tried first: MADV_FREE or MADV_DONTNEED
    fallback_to_dontneed: bool       # switch to DONTNEED for good when FREE gets EINVAL (FACTS 44)
    periodic_scavenger: bool         # <= 1.12 sysmon scavenger (FACTS 41)
    periodic_interval: float         # 150 s
    periodic_min_age: float          # 300 s
    growth_scavenging: bool          # >= 1.12: release as much as the heap grew (FACTS 45)
    background_scavenger: bool       # >= 1.13 (FACTS 47)
    scavenger_goal: str              # "none" | "next_gc" (1.1 x next_gc) | "heap_in_use_ratio" (>= 1.19)
    retain_extra: float              # 0.10 (retainExtraPercent, FACTS 49)
    roots_in_goal: bool              # >= 1.18 (FACTS 57)
    memory_limit: bool               # >= 1.19 GOMEMLIMIT (FACTS 54)
    limit_reduce_extra: float        # 0.05 (reduceExtraPercent, FACTS 55)
    godebug: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        rel = []
        if self.periodic_scavenger:
            rel.append(f"periodic scavenger every {self.periodic_interval:g} s for spans idle "
                       f">= {self.periodic_min_age:g} s")
        if self.growth_scavenging:
            rel.append("release on heap growth")
        if self.background_scavenger:
            rel.append("background scavenger")
        if self.memory_limit:
            rel.append("GOMEMLIMIT")
        return f"Go {self.version}: {self.advice}; " + ", ".join(rel)


def parse_go_version(value) -> int:
    """Minor version of ``value`` ("1.12", "1.12.5", "go1.19.8"); ModelInputError if unknown."""
    # A float is ambiguous (1.2 == 1.20), so versions are strings only.
    match = _VERSION_RE.match(value) if isinstance(value, str) else None
    minor = int(match.group(1)) if match else -1
    if not match or not (MIN_MINOR <= minor <= MAX_MINOR):
        raise ModelInputError(
            f"go_version must be a Go release from 1.{MIN_MINOR} to 1.{MAX_MINOR} "
            f"(like '1.12' or 'go1.19.8'), got {value!r}")
    return minor


def parse_godebug(value: Optional[str]) -> dict[str, str]:
    """``"madvdontneed=1"`` -> ``{"madvdontneed": "1"}``; ModelInputError for anything else.

    The real runtime ignores GODEBUG keys it does not know; the model refuses
    them instead, so that a typo never silently changes nothing.
    """
    if value is None or str(value).strip() == "":
        return {}
    out: dict[str, str] = {}
    for item in str(value).split(","):
        key, sep, val = item.strip().partition("=")
        if not sep or key not in GODEBUG_KEYS:
            raise ModelInputError(
                f"godebug must be comma-separated key=value settings with key in {sorted(GODEBUG_KEYS)} "
                f"(e.g. 'madvdontneed=1'), got {value!r}")
        if val not in GODEBUG_KEYS[key]:
            raise ModelInputError(f"godebug {key} must be one of {GODEBUG_KEYS[key]}, got {val!r}")
        out[key] = val
    return out


def policy_for(go_version="1.19", godebug: Optional[str] = None) -> GoPolicy:
    """The :class:`GoPolicy` of ``go_version`` with ``godebug`` applied."""
    minor = parse_go_version(go_version)
    settings = parse_godebug(godebug)
    if "madvdontneed" in settings and minor < 12:
        raise ModelInputError(
            f"godebug madvdontneed exists from Go 1.12 (FACTS 42); Go 1.{minor} always uses MADV_DONTNEED")
    # 1.12-1.15 default to FREE, 1.16+ to DONTNEED (FACTS 42, 50); GODEBUG overrides from 1.12 (FACTS 42, 52).
    if minor < 12:
        advice = MADV_DONTNEED
    elif "madvdontneed" in settings:
        advice = MADV_DONTNEED if settings["madvdontneed"] == "1" else MADV_FREE
    else:
        advice = MADV_FREE if minor < 16 else MADV_DONTNEED
    return GoPolicy(
        version=f"1.{minor}", minor=minor, advice=advice,
        fallback_to_dontneed=(advice == MADV_FREE),
        periodic_scavenger=minor <= 12, periodic_interval=150.0, periodic_min_age=300.0,
        growth_scavenging=minor >= 12,
        background_scavenger=minor >= 13,
        scavenger_goal="none" if minor < 13 else ("next_gc" if minor < 19 else "heap_in_use_ratio"),
        retain_extra=0.10,
        roots_in_goal=minor >= 18,
        memory_limit=minor >= 19, limit_reduce_extra=0.05,
        godebug=tuple(sorted(settings.items())),
    )
