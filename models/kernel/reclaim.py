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
    """Pages ``start..end`` of ``vma`` (or ``idx[start:end]``) whose sequence number is in
    ``seq_lo..seq``: consecutive MADV_FREE calls walking up one mapping share one block.  A
    block made by coalescing many small ones keeps per-page bounds (``lo_arr``/``hi_arr``)."""
    __slots__ = ("vma", "seq_lo", "seq", "start", "end", "idx", "lo_arr", "hi_arr")

    def __init__(self, vma: Vma, seq: int, start: int, end: int, idx: Optional[np.ndarray],
                 seq_lo: Optional[int] = None):
        self.vma, self.seq, self.start, self.end, self.idx = vma, seq, start, end, idx
        self.seq_lo = seq if seq_lo is None else seq_lo
        self.lo_arr = self.hi_arr = None

    def pages_and_bounds(self):
        """(pages, lo, hi) of the unprocessed part that still lies inside the mapping."""
        if self.idx is None:
            pages = np.arange(self.start, min(self.end, self.vma.npages))
            return pages, self.seq_lo, self.seq
        pages = self.idx[self.start:self.end]
        lo, hi = self.seq_lo, self.seq
        if self.lo_arr is not None:
            lo, hi = self.lo_arr[self.start:self.end], self.hi_arr[self.start:self.end]
        keep = pages < self.vma.npages
        if not keep.all():
            pages = pages[keep]
            if self.lo_arr is not None:
                lo, hi = lo[keep], hi[keep]
        return pages, lo, hi

    def advance(self, cut: int, pages: np.ndarray, lo, hi) -> None:
        """Mark the first ``cut`` of ``pages`` (as returned by pages_and_bounds) processed."""
        if self.idx is None:
            self.start = int(pages[cut - 1]) + 1
            return
        self.idx = pages[cut:]
        if self.lo_arr is not None:
            self.lo_arr, self.hi_arr = lo[cut:], hi[cut:]
        self.start, self.end = 0, len(self.idx)


def _on_list(seqs: np.ndarray, lo, hi) -> np.ndarray:
    if np.isscalar(lo) and lo == hi:
        return seqs == hi
    return (seqs >= lo) & (seqs <= hi)


#: Blocks smaller than this are merged with their neighbours before reclaim walks them.
_SMALL_BLOCK = 256
_COALESCE_PAGES = 1 << 16


def _coalesce_front(blocks: deque) -> None:
    """Merge a run of small front blocks of one mapping into one index block (same order)."""
    first = blocks[0]
    vma = first.vma
    group = []
    total = 0
    while blocks and total < _COALESCE_PAGES:
        b = blocks[0]
        if b.vma is not vma or b.idx is not None or b.end - b.start > _SMALL_BLOCK:
            break
        group.append(blocks.popleft())
        total += max(0, min(b.end, vma.npages) - b.start)
    if len(group) < 2:
        for b in reversed(group):
            blocks.appendleft(b)
        return
    starts = np.array([b.start for b in group], dtype=np.int64)
    ends = np.minimum(np.array([b.end for b in group], dtype=np.int64), vma.npages)
    lengths = np.maximum(ends - starts, 0)
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    idx = np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(starts - offsets, lengths)
    merged = _Block(vma, group[-1].seq, 0, len(idx), idx, group[0].seq_lo)
    merged.lo_arr = np.repeat(np.array([b.seq_lo for b in group], dtype=np.int64), lengths)
    merged.hi_arr = np.repeat(np.array([b.seq for b in group], dtype=np.int64), lengths)
    blocks.appendleft(merged)


class LruList:
    """A list of pages in reclaim order (oldest first); ``seq_attr`` names the per-page array."""

    def __init__(self, seq_attr: str):
        self.seq_attr = seq_attr
        self.blocks: deque[_Block] = deque()

    def add_range(self, vma: Vma, seq: int, start: int, end: int) -> None:
        """Pages ``start..end`` of ``vma`` whose sequence number is ``seq`` join the young end.

        ``seq`` must be fresh (larger than any in use).  A call that continues the previous one
        upwards in the same mapping (a loop of madvise calls) extends its block: address order is
        then list order, and no other sequence number was handed out in between.
        """
        tail = self.blocks[-1] if self.blocks else None
        if (tail is not None and tail.idx is None and tail.vma is vma and start >= tail.end
                and seq == tail.seq + 1):
            tail.end, tail.seq = end, seq
            return
        self.blocks.append(_Block(vma, seq, start, end, None))

    def add_index(self, vma: Vma, seq: int, idx: np.ndarray) -> None:
        self.blocks.append(_Block(vma, seq, 0, len(idx), idx))

    def add_index_front(self, vma: Vma, seq: int, idx: np.ndarray) -> None:
        """Pages ``idx`` (fresh ``seq``) go to the old end: next to be reclaimed (MADV_COLD)."""
        self.blocks.appendleft(_Block(vma, seq, 0, len(idx), idx))

    def copy(self, vma_map: dict) -> "LruList":
        new = LruList(self.seq_attr)
        for b in self.blocks:
            vma = vma_map.get(id(b.vma))
            if vma is not None:   # blocks of unmapped VMAs are dead weight: drop them
                twin = _Block(vma, b.seq, b.start, b.end, b.idx, b.seq_lo)
                twin.lo_arr, twin.hi_arr = b.lo_arr, b.hi_arr   # never changed in place
                new.blocks.append(twin)
        return new

    def on_list_pages(self) -> list[tuple[str, int]]:
        """(region, page) pairs still on the list, oldest first (for tests and page maps)."""
        out = []
        for b in self.blocks:
            if not b.vma.alive:
                continue
            pages, lo, hi = b.pages_and_bounds()
            seqs = getattr(b.vma, self.seq_attr)[pages]
            out.extend((b.vma.name, int(p)) for p in pages[_on_list(seqs, lo, hi)])
        return out


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
        if b.idx is None and b.end - b.start <= _SMALL_BLOCK and len(blocks) > 1:
            _coalesce_front(blocks)
            b = blocks[0]
        pages, lo, hi = b.pages_and_bounds()
        if pages.size == 0:
            blocks.popleft()
            continue
        on = _on_list(vma.lru_seq[pages], lo, hi)
        st = vma.state[pages]
        lazy = on & (st == LAZYFREE)
        young = lazy & vma.accessed[pages]
        drop = lazy & ~young
        need = want - freed
        ndrop = int(np.count_nonzero(drop))
        if ndrop > need:
            # Stop right after the need-th droppable page; the rest of the block stays queued.
            cut = int(np.flatnonzero(drop)[need - 1]) + 1
            b.advance(cut, pages, lo, hi)
            pages, on, st, young, drop = pages[:cut], on[:cut], st[:cut], young[:cut], drop[:cut]
            ndrop = need
        else:
            blocks.popleft()
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
        if not vma.alive:
            blocks.popleft()
            continue
        pages, lo, hi = b.pages_and_bounds()
        if pages.size == 0:
            blocks.popleft()
            continue
        on = _on_list(vma.anon_seq[pages], lo, hi) & (vma.state[pages] == RESIDENT)
        need = want - freed
        if int(np.count_nonzero(on)) > need:
            cut = int(np.flatnonzero(on)[need - 1]) + 1
            b.advance(cut, pages, lo, hi)
            pages, on = pages[:cut], on[:cut]
        else:
            blocks.popleft()
        cand = pages[on]
        if cand.size:
            vma.state[cand] = SWAPPED
            vma.anon_seq[cand] = 0
            vma.rss -= int(cand.size)
            freed += int(cand.size)
    return freed
