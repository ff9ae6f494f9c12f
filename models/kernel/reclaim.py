"""Reclaim under a memory budget: which pages go, in which order (FACTS 18-22, E7, E10).

The kernel keeps pages on LRU lists and reclaims from the old end.  The model keeps each list as
a queue of *blocks*: one block per MADV_FREE call (a page range, pages in address order, because
madvise walks the range upwards and each page is added to the list head in turn) or per batch of
pages put back by reclaim (an index array).  A page is on a list while its per-page sequence
number equals its block's; a page that left the list (dropped, re-written and moved, unmapped)
simply no longer matches, so blocks never need to be edited in the middle.

Measured on Linux 6.18 (cgroup v1 limit, no swap; see LIMITS.md):

* lazily freed pages go oldest MADV_FREE first, in address order within one call;
* a second MADV_FREE of a page already lazily freed does not move it -- not even after it was
  written again (``folio_mark_lazyfree`` only acts on swap-backed pages), so it keeps its place;
* a page *read* after MADV_FREE (young PTE) is passed over once and moved to the young end;
  a MADV_FREE after the read clears the young bit again;
* reclaim frees about as many pages as the charge overshoots; the model frees in batches of
  SWAP_CLUSTER_MAX (32) pages.
"""
from __future__ import annotations

from collections import deque
from typing import Callable, Optional

import numpy as np

from models.kernel.pages import LAZYFREE, RECLAIMED, RESIDENT, SWAPPED
from models.kernel.vma import Vma

#: Pages reclaimed per reclaim round (the kernel's SWAP_CLUSTER_MAX).
RECLAIM_BATCH = 32


class _Block:
    __slots__ = ("vma", "seq", "start", "end", "idx")

    def __init__(self, vma: Vma, seq: int, start: int, end: int, idx: Optional[np.ndarray]):
        self.vma, self.seq, self.start, self.end, self.idx = vma, seq, start, end, idx


class LruList:
    """A list of pages in reclaim order (oldest first); ``seq_attr`` names the per-page array."""

    def __init__(self, seq_attr: str):
        self.seq_attr = seq_attr
        self.blocks: deque[_Block] = deque()

    def add_range(self, vma: Vma, seq: int, start: int, end: int) -> None:
        """Pages ``start..end`` of ``vma`` whose sequence number is ``seq`` join the young end."""
        self.blocks.append(_Block(vma, seq, start, end, None))

    def add_index(self, vma: Vma, seq: int, idx: np.ndarray) -> None:
        self.blocks.append(_Block(vma, seq, 0, len(idx), idx))

    def copy(self, vma_map: dict) -> "LruList":
        new = LruList(self.seq_attr)
        for b in self.blocks:
            vma = vma_map.get(id(b.vma))
            if vma is not None:   # blocks of unmapped VMAs are dead weight: drop them
                new.blocks.append(_Block(vma, b.seq, b.start, b.end, b.idx))
        return new

    def on_list_pages(self) -> list[tuple[str, int]]:
        """(region, page) pairs still on the list, oldest first (for tests and page maps)."""
        out = []
        for b in self.blocks:
            if not b.vma.alive:
                continue
            pages = self._pages(b)
            seqs = getattr(b.vma, self.seq_attr)[pages]
            out.extend((b.vma.name, int(p)) for p in pages[seqs == b.seq])
        return out

    @staticmethod
    def _pages(b: _Block) -> np.ndarray:
        if b.idx is None:
            return np.arange(b.start, min(b.end, b.vma.npages))
        idx = b.idx[b.start:b.end]
        return idx[idx < b.vma.npages]


def shrink_lazyfree(lru: LruList, want: int, next_seq: Callable[[], int],
                    to_anon: Optional[Callable[[Vma, np.ndarray], None]] = None) -> int:
    """Drop up to ``want`` lazily freed pages, oldest first; return how many were dropped.

    Each dropped page becomes RECLAIMED (its data is gone, it no longer counts in RSS or in the
    charge -- the caller lowers the charge by the return value).  On the way:

    * a LAZYFREE page with the young bit set is kept, its bit cleared, and moved to the young
      end (``folio_check_references`` -> keep; the second visit drops it);
    * a page written since MADV_FREE (RESIDENT, still on this list) is moved to the anonymous
      list (``to_anon``) and not dropped (FACTS 19).
    """
    freed = 0
    blocks = lru.blocks
    while freed < want and blocks:
        b = blocks[0]
        vma = b.vma
        if not vma.alive:
            blocks.popleft()
            continue
        if b.idx is None:
            hi = min(b.end, vma.npages)
            if b.start >= hi:
                blocks.popleft()
                continue
            sel = slice(b.start, hi)
            offset_pages = None
        else:
            offset_pages = b.idx[b.start:b.end]
            keep = offset_pages < vma.npages
            if not keep.all():
                offset_pages = offset_pages[keep]
            if offset_pages.size == 0:
                blocks.popleft()
                continue
            sel = offset_pages
        on = vma.lru_seq[sel] == b.seq
        st = vma.state[sel]
        lazy = on & (st == LAZYFREE)
        young = lazy & vma.accessed[sel]
        drop = lazy & ~young
        need = want - freed
        ndrop = int(np.count_nonzero(drop))
        if ndrop > need:
            # Stop right after the need-th droppable page; the rest of the block stays queued.
            cut = int(np.flatnonzero(drop)[need - 1]) + 1
            on, st, lazy, young, drop = on[:cut], st[:cut], lazy[:cut], young[:cut], drop[:cut]
            ndrop = need
            if b.idx is None:
                sel = slice(b.start, b.start + cut)
                b.start += cut
            else:
                sel = offset_pages[:cut]
                b.idx = offset_pages[cut:]
                b.start, b.end = 0, len(b.idx)
        else:
            blocks.popleft()
        if b.idx is None and isinstance(sel, slice):
            pages = np.arange(sel.start, sel.stop)
        else:
            pages = sel
        if ndrop:
            dp = pages[drop]
            vma.state[dp] = RECLAIMED
            vma.data[dp] = False
            vma.lru_seq[dp] = 0
            vma.rss -= ndrop
            vma.lazyfree -= ndrop
            freed += ndrop
        if young.any():
            yp = pages[young]
            vma.accessed[yp] = False
            seq = next_seq()
            vma.lru_seq[yp] = seq
            lru.add_index(vma, seq, yp)
        dirty = on & (st == RESIDENT)
        if dirty.any():
            rp = pages[dirty]
            vma.lru_seq[rp] = 0
            if to_anon is not None:
                to_anon(vma, rp)
    return freed


def swap_out(lru: LruList, want: int) -> int:
    """Write up to ``want`` private anonymous pages to swap, oldest first; return the count.

    Only used with ``swap=True``; the page keeps its data (on the swap device), leaves RSS and the
    charge, and its next touch is a major fault.
    """
    freed = 0
    blocks = lru.blocks
    while freed < want and blocks:
        b = blocks[0]
        vma = b.vma
        pages = LruList._pages(b)
        if not vma.alive or pages.size == 0:
            blocks.popleft()
            continue
        on = (vma.anon_seq[pages] == b.seq) & (vma.state[pages] == RESIDENT)
        cand = pages[on]
        need = want - freed
        if cand.size > need:
            cand = cand[:need]
            last = int(np.searchsorted(pages, cand[-1])) + 1 if b.idx is None else None
            if b.idx is None:
                b.start = int(pages[0]) + last
            else:
                rest = pages[int(np.flatnonzero(pages == cand[-1])[0]) + 1:]
                b.idx, b.start, b.end = rest, 0, len(rest)
        else:
            blocks.popleft()
        if cand.size:
            vma.state[cand] = SWAPPED
            vma.anon_seq[cand] = 0
            vma.rss -= int(cand.size)
            freed += int(cand.size)
    return freed
