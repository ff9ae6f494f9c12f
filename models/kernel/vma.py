"""One mapping (VMA) of the model: per-page arrays plus counters kept up to date incrementally.

Arrays are allocated with spare capacity so that a brk-style heap can grow a page at a time
without copying the whole mapping each time; everything outside ``[:npages]`` is junk.
"""
from __future__ import annotations

import numpy as np

from models.kernel.pages import NOT_PRESENT

#: Pages mapped by one page-table (PTE) page on x86-64: 512 entries cover a 2 MiB block.
PTES_PER_TABLE = 512
#: Where a mapping starts inside its first 2 MiB block, in pages.  The real-kernel engine puts a
#: guard page before each region, so a region is never 2 MiB aligned: a 128 MiB region spans
#: 65 blocks, as measured (docs/KERNEL-NOTES.md K3).  The model fixes the start one page in.
FIRST_PAGE_IN_TABLE = 1


def table_of(page):
    """Index of the page-table page (2 MiB block) that maps ``page`` of a mapping."""
    return (page + FIRST_PAGE_IN_TABLE) // PTES_PER_TABLE


def _tables_for(npages: int) -> int:
    return table_of(max(npages, 1) - 1) + 1


class Vma:
    """A private or shared anonymous mapping of ``npages`` 4 KiB pages.

    * ``state``    -- :class:`~models.kernel.pages.PageState` per page (the page table's view);
    * ``data``     -- the page holds non-zero bytes (private: the page's own contents; shared:
                      the shmem object's page, which outlives the PTE, FACTS E6);
    * ``lru_seq``  -- position on the inactive *file* LRU, where MADV_FREE puts pages from 4.12 on
                      (FACTS 18); 0 = not on it.  A page written after MADV_FREE stays there
                      (still marked lazyfree in the kernel) until reclaim looks at it;
    * ``accessed`` -- the PTE's young bit on a LAZYFREE page (a read after MADV_FREE): reclaim
                      gives such a page a second trip round the LRU instead of dropping it;
    * ``anon_seq`` -- position on the anonymous LRU (only used with swap); 0 = not on it;
    * ``shm_present`` -- (shared only) the shmem object has a page here, mapped or not;
    * ``pt``       -- per 2 MiB block (:func:`table_of`): a page-table page is allocated (and
                      charged to the memcg) for it; ``pt_pages`` counts them (KERNEL-NOTES K3).
    """

    __slots__ = ("name", "shared", "npages", "state", "data", "lru_seq", "accessed", "anon_seq",
                 "shm_present", "rss", "lazyfree", "shm_pages", "alive", "pt", "pt_pages")

    def __init__(self, name: str, npages: int, shared: bool):
        self.name = name
        self.shared = shared
        self.npages = npages
        cap = max(npages, 1)
        self.state = np.zeros(cap, dtype=np.uint8)
        self.data = np.zeros(cap, dtype=bool)
        self.lru_seq = np.zeros(cap, dtype=np.int64)
        self.accessed = np.zeros(cap, dtype=bool)
        self.anon_seq = np.zeros(cap, dtype=np.int64)
        self.shm_present = np.zeros(cap, dtype=bool) if shared else None
        self.rss = 0            # pages mapped and counted in Rss (RESIDENT + LAZYFREE)
        self.lazyfree = 0       # LAZYFREE pages (the true count, whatever smaps shows)
        self.shm_pages = 0      # pages in the shmem object (charged even when unmapped)
        self.alive = True
        self.pt = np.zeros(_tables_for(cap), dtype=bool)
        self.pt_pages = 0       # page-table pages allocated for this mapping

    # -- size -------------------------------------------------------------------------------
    def grow(self, new_npages: int) -> None:
        """Extend to ``new_npages`` never-touched pages at the end (brk growth)."""
        cap = self.state.shape[0]
        if new_npages > cap:
            new_cap = max(new_npages, cap * 2)
            for attr in ("state", "data", "lru_seq", "accessed", "anon_seq", "shm_present"):
                old = getattr(self, attr)
                if old is None:
                    continue
                arr = np.zeros(new_cap, dtype=old.dtype)
                arr[:self.npages] = old[:self.npages]
                setattr(self, attr, arr)
            pt = np.zeros(_tables_for(new_cap), dtype=bool)
            pt[:self.pt.shape[0]] = self.pt
            self.pt = pt
        lo, hi = self.npages, new_npages
        # The tail may hold junk from an earlier shrink: reset it to "never touched".
        self.state[lo:hi] = NOT_PRESENT
        self.data[lo:hi] = False
        self.lru_seq[lo:hi] = 0
        self.accessed[lo:hi] = False
        self.anon_seq[lo:hi] = 0
        if self.shm_present is not None:
            self.shm_present[lo:hi] = False
        self.npages = new_npages

    def copy(self) -> "Vma":
        new = Vma.__new__(Vma)
        new.name, new.shared, new.npages = self.name, self.shared, self.npages
        for attr in ("state", "data", "lru_seq", "accessed", "anon_seq"):
            setattr(new, attr, getattr(self, attr).copy())
        new.shm_present = None if self.shm_present is None else self.shm_present.copy()
        new.rss, new.lazyfree, new.shm_pages, new.alive = self.rss, self.lazyfree, self.shm_pages, self.alive
        new.pt, new.pt_pages = self.pt.copy(), self.pt_pages
        return new
