"""madvise(2) advice values: which ones a kernel release knows, and what each does to pages.

Values and names are Linux's ``<asm-generic/mman-common.h>`` (the same table as
``models.scenario.parse.MADV_VALUES``).  ``since`` is the release that added the advice: an
older kernel answers EINVAL, as for any value it does not know (``madvise_behavior_valid``).
``effect`` is what the page model does with it; "hint" means the kernel only changes VMA flags
or readahead state, which no page state, RSS, charge or fault count in this model depends on
(measured on 6.18, docs/KERNEL-NOTES.md K10).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from models.errors import ModelInputError


@dataclass(frozen=True)
class Advice:
    name: str
    value: int
    since: tuple[int, int]     #: first Linux release with this advice
    effect: str                #: see the module docstring and ``AddressSpace.madvise``


_TABLE = (
    # name,                 value, since,   effect
    ("MADV_NORMAL",             0, (2, 6),  "hint"),
    ("MADV_RANDOM",             1, (2, 6),  "hint"),
    ("MADV_SEQUENTIAL",         2, (2, 6),  "hint"),
    ("MADV_WILLNEED",           3, (2, 6),  "hint"),       # anon: swap readahead only, no mapping
    ("MADV_DONTNEED",           4, (2, 6),  "dontneed"),
    ("MADV_FREE",               8, (4, 5),  "free"),       # FACTS 10 (value 8: KERNEL-NOTES K1)
    ("MADV_REMOVE",             9, (2, 6),  "remove"),     # shared (shmem) only, else EINVAL
    ("MADV_DONTFORK",          10, (2, 6),  "hint"),
    ("MADV_DOFORK",            11, (2, 6),  "hint"),
    ("MADV_MERGEABLE",         12, (2, 6),  "hint"),       # KSM: /sys/kernel/mm/ksm/run = 0 here
    ("MADV_UNMERGEABLE",       13, (2, 6),  "hint"),
    ("MADV_HUGEPAGE",          14, (2, 6),  "hint"),       # THP is not modelled (LIMITS 1)
    ("MADV_NOHUGEPAGE",        15, (2, 6),  "hint"),
    ("MADV_DONTDUMP",          16, (3, 4),  "hint"),
    ("MADV_DODUMP",            17, (3, 4),  "hint"),
    ("MADV_WIPEONFORK",        18, (4, 14), "wipeonfork"),  # private anonymous only, else EINVAL
    ("MADV_KEEPONFORK",        19, (4, 14), "hint"),
    ("MADV_COLD",              20, (5, 4),  "cold"),
    ("MADV_PAGEOUT",           21, (5, 4),  "pageout"),
    ("MADV_POPULATE_READ",     22, (5, 14), "populate_read"),
    ("MADV_POPULATE_WRITE",    23, (5, 14), "populate_write"),
    ("MADV_DONTNEED_LOCKED",   24, (5, 18), "dontneed"),
    ("MADV_COLLAPSE",          25, (6, 1),  "collapse"),   # EINVAL on a VM_NOHUGEPAGE region
)

#: Every advice the model knows, by name and by value.
ADVICE: dict[str, Advice] = {name: Advice(name, value, since, effect)
                             for name, value, since, effect in _TABLE}
BY_VALUE: dict[int, Advice] = {a.value: a for a in ADVICE.values()}

#: Advice the kernel has but the model (and the scenario parser) refuses to simulate: they
#: poison or offline physical pages, or install guard regions whose touch is SIGSEGV.
REFUSED: dict[str, int] = {"MADV_HWPOISON": 100, "MADV_SOFT_OFFLINE": 101,
                           "MADV_GUARD_INSTALL": 102, "MADV_GUARD_REMOVE": 103}
_REFUSED_VALUES = {v: k for k, v in REFUSED.items()}


def lookup(advice) -> Optional[Advice]:
    """The :class:`Advice` for a name or an int; None if Linux has no such advice (EINVAL).

    Raises ModelInputError for a value that is not a name or an int, and for the refused ones.
    """
    if isinstance(advice, bool) or not isinstance(advice, (int, str)) and not hasattr(advice, "__index__"):
        raise ModelInputError(f"advice must be an MADV_* name or an int, "
                              f"got {type(advice).__name__} {advice!r}")
    if isinstance(advice, str):
        found, refused = ADVICE.get(advice), advice in REFUSED
    else:
        value = int(advice)
        found, refused = BY_VALUE.get(value), value in _REFUSED_VALUES
        advice = _REFUSED_VALUES.get(value, advice)
    if refused:
        raise ModelInputError(f"advice {advice} is not simulated: it poisons/offlines physical pages "
                              f"or installs guard pages; allowed: {', '.join(ADVICE)}")
    return found
