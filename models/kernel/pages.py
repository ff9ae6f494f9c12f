"""Per-page states of the page model, in the kernel's own words.

One ``uint8`` per 4 KiB page of a mapping.  The state is what the *page table* (and, for a
lazily freed page, the LRU flags) say about that virtual page; the data a page holds is kept
beside it (``AddressSpace.data``), and for shared anonymous memory the shmem object is kept
apart from the page table (FACTS E6).
"""
from __future__ import annotations

from enum import IntEnum

import numpy as np


class PageState(IntEnum):
    #: Never touched, dropped by MADV_DONTNEED, or (shared mappings) PTE zapped.  Reads fault.
    NOT_PRESENT = 0
    #: Read-faulted private page mapped to the shared zero page: no RSS, no memcg charge (FACTS 1-2).
    ZERO_PAGE = 1
    #: A private anonymous page (or, in a shared mapping, a mapped shmem page): counted in RSS.
    RESIDENT = 2
    #: MADV_FREE'd, still resident and charged, clean: reclaim may drop it (FACTS 11-13, 25-26).
    LAZYFREE = 3
    #: Was LAZYFREE, thrown away by reclaim: reads zeros and faults like NOT_PRESENT (FACTS E7).
    RECLAIMED = 4
    #: Written out to swap (only with ``swap=True``): not in RSS, the next touch is a major fault.
    SWAPPED = 5


NOT_PRESENT = np.uint8(PageState.NOT_PRESENT)
ZERO_PAGE = np.uint8(PageState.ZERO_PAGE)
RESIDENT = np.uint8(PageState.RESIDENT)
LAZYFREE = np.uint8(PageState.LAZYFREE)
RECLAIMED = np.uint8(PageState.RECLAIMED)
SWAPPED = np.uint8(PageState.SWAPPED)

#: Every state a page may be in, for checks and legends.
ALL_STATES = tuple(PageState)
