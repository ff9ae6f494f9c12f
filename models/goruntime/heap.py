"""The Go heap at page granularity, driving the kernel page model.

The runtime manages its heap in 8 KiB pages (``pageSize``), two 4 KiB OS pages
each.  :class:`GoHeap` keeps one entry per Go page of the arena in numpy
arrays -- in use or free, released ("scavenged") or not, since when free,
live or garbage -- and sends every effect on memory through the
:class:`models.kernel.AddressSpace` it is given, so RSS, LazyFree and page
faults come from the one kernel model:

* a span allocated out of released (or never used) pages is written by the
  program: ``touch(..., "write")`` on those pages, which is where faults and
  zero-fills happen;
* releasing free pages is ``madvise(MADV_FREE | MADV_DONTNEED)`` on each run
  of pages; a ``KernelError("EINVAL")`` for ``MADV_FREE`` switches the heap to
  ``MADV_DONTNEED`` for good and repeats the call (FACTS 44);
* runtime metadata outside the arena (heap bitmap, span structures) is a
  second region, written as the heap grows and never released (measured with
  ``probes/goheap``: it stays resident after FreeOSMemory).

Allocation takes the lowest-addressed free pages (the page allocator's
first fit); releases take the highest-addressed free pages first (FACTS 48).
The pacer (heap goal, FACTS 57) and the scavenger goals (FACTS 48-49, 55) are
small pure functions here too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from models.errors import KernelError
from models.goruntime.cost import CostModel
from models.goruntime.versions import MADV_DONTNEED, MADV_FREE, GoPolicy
from models.units import PAGE_SIZE

#: The Go runtime's page (``pageSize``): 8 KiB, two OS pages.
GO_PAGE = 8192
OS_PER_GO = GO_PAGE // PAGE_SIZE
#: The heap grows in whole page-allocator chunks (``pallocChunkBytes`` = 4 MiB).
CHUNK_GO_PAGES = (4 << 20) // GO_PAGE
#: Address space is reserved in heap arenas of 64 MiB on linux/amd64.
ARENA_BYTES = 64 << 20
#: defaultHeapMinimum: the smallest heap goal at GOGC=100 (4 MiB, scaled by GOGC/100).
HEAP_MINIMUM = 4 << 20

HEAP_REGION = "go-heap"
RUNTIME_REGION = "go-runtime"


@dataclass(frozen=True)
class Footprint:
    """Resident memory of a Go program outside the heap's spans.

    Defaults measured on this machine with ``probes/goheap`` (Go 1.19.8,
    linux/amd64, 8 and 32 KiB objects, 64 and 256 MiB heaps): the overhead
    grows by about heap/32 (the heap bitmap: 2 bits per 8-byte word) plus about
    240 bytes per span (span structure, spans-array entry, mark and allocation
    bits), and does not shrink when the heap is released.
    """
    base_bytes: int = 1_400_000           # a fresh program: binary text, stacks, runtime structures
    heap_baseline_bytes: int = 1 << 20    # heap in use before main() allocates anything
    bitmap_ratio: float = 1 / 32
    span_metadata_bytes: int = 240


DEFAULT_FOOTPRINT = Footprint()


def runs(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted page indices -> (starts, lengths) of their maximal contiguous runs."""
    if idx.size == 0:
        return idx[:0], idx[:0]
    breaks = np.flatnonzero(np.diff(idx) != 1)
    first = np.concatenate(([0], breaks + 1))
    last = np.concatenate((breaks, [idx.size - 1]))
    return idx[first], idx[last] - idx[first] + 1


def heap_goal(live_bytes: float, gogc: Optional[int], roots_bytes: float, roots_in_goal: bool) -> float:
    """The pacer's heap goal (FACTS 57): live + (live [+ roots]) x GOGC/100; inf for GOGC=off."""
    if gogc is None:
        return float("inf")
    base = live_bytes + (roots_bytes if roots_in_goal else 0.0)
    return max(live_bytes + base * gogc / 100.0, HEAP_MINIMUM * gogc / 100.0)


def scavenge_goal_bytes(policy: GoPolicy, next_gc: float, last_heap_goal: float,
                        last_heap_inuse: float) -> float:
    """Retained heap memory the background scavenger aims at (inf = nothing to do).

    1.13-1.18: 1.1 x next_gc (FACTS 48).  1.19+: 1.1 x (heapGoal/lastHeapGoal) x
    lastHeapInUse, and nothing before the second GC (FACTS 49; mgcscavenge.go in Go 1.19).
    """
    if policy.scavenger_goal == "next_gc":
        return (1 + policy.retain_extra) * next_gc
    if policy.scavenger_goal == "heap_in_use_ratio":
        if not last_heap_goal or not np.isfinite(next_gc) or not np.isfinite(last_heap_goal):
            return float("inf")
        return (1 + policy.retain_extra) * next_gc / last_heap_goal * last_heap_inuse
    return float("inf")


class GoHeap:
    """One Go program's heap and runtime metadata inside an AddressSpace."""

    def __init__(self, space, policy: GoPolicy, capacity_bytes: int, cost: CostModel,
                 footprint: Footprint = DEFAULT_FOOTPRINT, span_pages: int = 1):
        self.space, self.policy, self.cost, self.footprint = space, policy, cost, footprint
        self.span_pages = span_pages
        arena = -(-max(capacity_bytes, GO_PAGE) // ARENA_BYTES) * ARENA_BYTES
        self.n = arena // GO_PAGE
        self.inuse = np.zeros(self.n, dtype=bool)
        self.live = np.zeros(self.n, dtype=bool)        # in use and reachable (survives the next GC)
        self.scavenged = np.ones(self.n, dtype=bool)    # free and released, or never used
        self.free_since = np.zeros(self.n)              # when the page last became free
        self.sys_pages = 0                              # Go pages mapped as heap (HeapSys)
        self.advice = policy.advice                     # may fall back to DONTNEED (FACTS 44)
        self.fell_back = False
        # Counters (kept incrementally: the timeline samples them every step).
        self.inuse_pages = 0
        self.released_pages = 0                         # free & scavenged within sys
        self.madvised_os_pages = 0
        self.madvise_calls = 0
        self.touched_os_pages = 0
        self.zero_pages = 0
        self.metadata_bytes = 0.0
        self.meta_touched_os_pages = 0
        self.spans_ever = 0
        self.live_count = 0
        self.elapsed_ns = 0.0
        self._garbage: list[np.ndarray] = []            # pages allocated as garbage since the last sweep
        space.mmap(HEAP_REGION, self.n * GO_PAGE)
        meta_cap = footprint.base_bytes + self.n * GO_PAGE * footprint.bitmap_ratio \
            + (self.n // max(span_pages, 1) + 1) * footprint.span_metadata_bytes
        self.meta_os_pages = -(-int(meta_cap) // PAGE_SIZE) + 1
        space.mmap(RUNTIME_REGION, self.meta_os_pages * PAGE_SIZE)
        self._grow_metadata(footprint.base_bytes)

    # -- statistics (runtime.MemStats, in 4 KiB pages) -------------------------------------
    @property
    def heap_sys_os(self) -> int:
        return self.sys_pages * OS_PER_GO

    @property
    def heap_inuse_os(self) -> int:
        return self.inuse_pages * OS_PER_GO

    @property
    def heap_idle_os(self) -> int:
        return (self.sys_pages - self.inuse_pages) * OS_PER_GO

    @property
    def heap_released_os(self) -> int:
        return self.released_pages * OS_PER_GO

    @property
    def retained_bytes(self) -> int:
        """Heap memory the runtime believes it holds: HeapSys - HeapReleased (heapRetained)."""
        return (self.sys_pages - self.released_pages) * GO_PAGE

    @property
    def nonheap_bytes(self) -> float:
        return self.metadata_bytes

    @property
    def live_pages(self) -> int:
        return self.live_count

    # -- kernel effects --------------------------------------------------------------------
    def _grow_metadata(self, add_bytes: float) -> None:
        self.metadata_bytes += add_bytes
        want = min(-(-int(self.metadata_bytes) // PAGE_SIZE), self.meta_os_pages)
        if want > self.meta_touched_os_pages:
            start = self.meta_touched_os_pages
            self._touch(RUNTIME_REGION, start, want - start)
            self.meta_touched_os_pages = want

    def _touch(self, region: str, os_start: int, os_len: int) -> None:
        result = self.space.touch(region, os_start * PAGE_SIZE, os_len * PAGE_SIZE, access="write")
        # A write fault on private anonymous memory hands out a freshly zeroed page (FACTS 1, 8).
        zeroed = int(result.faults)
        self.zero_pages += zeroed
        self.touched_os_pages += os_len
        self.elapsed_ns += self.cost.touch_ns(int(result.faults), zeroed, os_len)

    def _madvise_runs(self, starts: np.ndarray, lengths: np.ndarray) -> None:
        for s, n in zip(starts.tolist(), lengths.tolist()):
            try:
                self.space.madvise(HEAP_REGION, s * GO_PAGE, n * GO_PAGE, self.advice)
            except KernelError as exc:
                # sysUnusedOS: an EINVAL for MADV_FREE (kernel < 4.5) means "use DONTNEED from now on".
                if self.advice != MADV_FREE or exc.errno_name != "EINVAL" or not self.policy.fallback_to_dontneed:
                    raise
                self.advice, self.fell_back = MADV_DONTNEED, True
                self.space.madvise(HEAP_REGION, s * GO_PAGE, n * GO_PAGE, self.advice)
            self.madvise_calls += 1
            self.madvised_os_pages += n * OS_PER_GO
            self.elapsed_ns += self.cost.madvise_ns(self.advice, n * OS_PER_GO)

    # -- heap operations -------------------------------------------------------------------
    def grow(self, go_pages: int) -> int:
        """Map ``go_pages`` more heap (rounded up to 4 MiB chunks); returns the growth in Go pages."""
        want = -(-go_pages // CHUNK_GO_PAGES) * CHUNK_GO_PAGES
        want = min(want, self.n - self.sys_pages)
        if want < go_pages:
            raise MemoryError(f"the simulated heap arena ({self.n * GO_PAGE} bytes) is full")
        old = self.sys_pages
        self.sys_pages += want
        # Fresh heap memory counts as released until used (HeapReleased includes it).
        self.scavenged[old:self.sys_pages] = True
        self.released_pages += want
        return want

    def allocate(self, go_pages: int, now: float, live: bool) -> int:
        """Allocate ``go_pages`` pages of spans, lowest addresses first; returns the growth in Go pages.

        Pages taken from released or never-used memory are written by the program (kernel
        faults and zero-fills happen there); re-used unreleased pages are already resident.
        """
        if go_pages <= 0:
            return 0
        free_in_sys = self.sys_pages - self.inuse_pages
        grown = 0
        if free_in_sys < go_pages:
            grown = self.grow(go_pages - free_in_sys)
            if self.policy.growth_scavenging and grown:
                self._scavenge_on_growth(grown, now)
        free_idx = np.flatnonzero(~self.inuse[:self.sys_pages])[:go_pages]
        self.inuse[free_idx] = True
        self.live[free_idx] = live
        if live:
            self.live_count += go_pages
        else:
            self._garbage.append(free_idx)
        was_released = free_idx[self.scavenged[free_idx]]
        self.scavenged[free_idx] = False
        self.inuse_pages += go_pages
        self.released_pages -= int(was_released.size)
        starts, lengths = runs(was_released)
        for s, n in zip(starts.tolist(), lengths.tolist()):
            self._touch(HEAP_REGION, s * OS_PER_GO, n * OS_PER_GO)
        new_spans = -(-go_pages // self.span_pages)
        self.spans_ever += new_spans
        grown_bytes = grown * GO_PAGE
        self._grow_metadata(grown_bytes * self.footprint.bitmap_ratio
                            + (grown_bytes // (self.span_pages * GO_PAGE)) * self.footprint.span_metadata_bytes)
        return grown

    def free_garbage(self, now: float) -> int:
        """Sweep: every in-use page not marked live becomes free; returns the Go pages freed."""
        if not self._garbage:
            return 0
        # Only pages allocated as garbage or dropped since the last sweep can be dead.
        idx = np.concatenate(self._garbage)
        self._garbage.clear()
        self.inuse[idx] = False
        self.free_since[idx] = now
        self.inuse_pages -= int(idx.size)
        return int(idx.size)

    def kill_live(self, go_pages: int) -> None:
        """The program drops ``go_pages`` of live data, the most recently placed (highest) first."""
        if go_pages <= 0:
            return
        idx = np.flatnonzero(self.live[:self.sys_pages])
        dead = idx[max(idx.size - go_pages, 0):]
        self.live[dead] = False
        self.live_count -= int(dead.size)
        self._garbage.append(dead)

    def release(self, go_pages: Optional[int] = None, now: float = 0.0,
                min_age: Optional[float] = None) -> int:
        """Release up to ``go_pages`` free, unreleased pages (all if None), highest addresses first.

        ``min_age``: only pages free for at least that many seconds (the Go 1.11 periodic
        scavenger, FACTS 41).  Returns the Go pages released.
        """
        if go_pages is not None and go_pages <= 0:
            return 0
        cand = ~self.inuse[:self.sys_pages] & ~self.scavenged[:self.sys_pages]
        if min_age is not None:
            cand &= self.free_since[:self.sys_pages] <= now - min_age
        idx = np.flatnonzero(cand)
        if go_pages is not None and idx.size > go_pages:
            idx = idx[idx.size - go_pages:]
        if idx.size == 0:
            return 0
        self._madvise_runs(*runs(idx))
        self.scavenged[idx] = True
        self.released_pages += int(idx.size)
        return int(idx.size)

    def _scavenge_on_growth(self, grown: int, now: float) -> None:
        """Release as much as the heap just grew (Go 1.12, FACTS 45); from 1.19 only down to the goal."""
        todo = grown
        if self.policy.scavenger_goal == "heap_in_use_ratio":
            goal = getattr(self, "scavenge_goal", float("inf"))
            over = self.retained_bytes - goal
            todo = int(min(grown, max(over, 0) // GO_PAGE)) if np.isfinite(goal) else 0
        self.release(todo, now)
