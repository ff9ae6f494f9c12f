"""The Go runtime on top of :class:`~models.goruntime.heap.GoHeap`: pacer, GC cycles, scavengers.

:class:`GoRuntime` owns the heap, the kernel :class:`~models.kernel.AddressSpace`
and the clock, and records samples.  What it does with idle memory depends on the
:class:`~models.goruntime.versions.GoPolicy`:

* ``gc()``: sweep frees every span not live; the pacer sets the next heap goal
  (FACTS 57) and, from 1.13, the scavenger's goal (FACTS 48-49);
* ``background_scavenge(dt)``: from 1.13, release free memory above the goal at
  the pace a 1 % CPU budget allows (FACTS 49; cost per page from the cost model);
* ``periodic_scavenge()``: up to 1.12, every 150 s release spans unused for 5 min
  (FACTS 41);
* growth scavenging (1.12+, FACTS 45) happens inside ``GoHeap.allocate``;
* ``free_os_memory()``: ``debug.FreeOSMemory()`` -- a GC, then release every
  free page (FACTS 53);
* with ``gomemlimit`` (1.19+): the heap goal is capped by the limit, the
  scavenger also aims at 95 % of it and an allocation that passes the limit
  releases memory synchronously (FACTS 54-55).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from models.errors import OOMKill
from models.goruntime.cost import CostModel
from models.goruntime.heap import (GO_PAGE, OS_PER_GO, HEAP_REGION, RUNTIME_REGION, Footprint, GoHeap,
                                   heap_goal, scavenge_goal_bytes)
from models.goruntime.timeline import Recorder
from models.goruntime.versions import GoPolicy

MIB = 1 << 20


class GoRuntime:
    def __init__(self, space, policy: GoPolicy, *, capacity_bytes: int, gogc: Optional[int],
                 gc_roots: int, gomemlimit: Optional[int], cost: CostModel, footprint: Footprint,
                 span_pages: int = 1, gomaxprocs: int = 2, scavenger_cpu: float = 0.01):
        self.space, self.policy, self.cost = space, policy, cost
        self.gogc, self.gc_roots, self.gomemlimit = gogc, gc_roots, gomemlimit
        self.gomaxprocs, self.scavenger_cpu = gomaxprocs, scavenger_cpu
        self.heap = GoHeap(space, policy, capacity_bytes, cost, footprint, span_pages)
        self.now = 0.0
        self.gc_cycles = 0
        self.last_heap_goal = 0.0
        self.last_heap_inuse = 0.0
        self.next_gc = self._goal(0.0)
        self.heap.scavenge_goal = float("inf")
        self.last_periodic = 0.0
        self.recorder = Recorder()
        self._prev = self._counters()
        self.pressure_region: Optional[str] = None
        self.oom = False
        # Steady mode: GC cycles that repeat exactly are counted, not replayed (see materialize).
        self.steady_runway = 0
        self.steady_used = 0
        self.last_gc_time = 0.0

    # -- pacer -----------------------------------------------------------------------------
    def _goal(self, live_bytes: float) -> float:
        goal = heap_goal(live_bytes, self.gogc, self.gc_roots, self.policy.roots_in_goal)
        if self.gomemlimit is not None:
            # The memory limit caps the goal (FACTS 54); never below what is live.
            cap = self.gomemlimit - self.heap.nonheap_bytes
            goal = max(min(goal, cap), live_bytes + GO_PAGE)
        return goal

    @property
    def goal_pages(self) -> float:
        return self.next_gc / GO_PAGE

    def gc(self) -> int:
        """One GC cycle: mark (live stays), sweep (the rest is freed), then pace; returns pages freed."""
        self.materialize()
        heap = self.heap
        self.last_gc_time = self.now
        inuse_at_mark = heap.inuse_pages * GO_PAGE
        freed = heap.free_garbage(self.now)
        live = heap.inuse_pages * GO_PAGE
        previous_goal = self.next_gc
        self.next_gc = self._goal(live)
        self.last_heap_inuse = inuse_at_mark
        self.last_heap_goal = previous_goal if self.gc_cycles > 0 else 0.0
        self.gc_cycles += 1
        heap.scavenge_goal = scavenge_goal_bytes(self.policy, self.next_gc, self.last_heap_goal,
                                                 self.last_heap_inuse)
        return freed

    # -- scavenging ------------------------------------------------------------------------
    def scavenge_rate_pages(self) -> float:
        """Go pages per second the background scavenger may release: ``scavenger_cpu`` of each of
        GOMAXPROCS CPUs (the 1.19 controller's target, FACTS 49) at the cost model's madvise price."""
        ns = self.cost.ns_per_madvise_page[self.heap.advice] * OS_PER_GO
        return self.scavenger_cpu * self.gomaxprocs * 1e9 / max(ns, 1.0)

    def scavenge_target_pages(self) -> int:
        heap = self.heap
        target = 0.0
        goal = heap.scavenge_goal
        if np.isfinite(goal):
            target = heap.retained_bytes - goal
        if self.policy.memory_limit and self.gomemlimit is not None:
            limit_goal = (1 - self.policy.limit_reduce_extra) * self.gomemlimit
            target = max(target, heap.retained_bytes + heap.nonheap_bytes - limit_goal)
        return max(int(target // GO_PAGE), 0)

    def background_scavenge(self, dt: float) -> int:
        if not self.policy.background_scavenger or dt <= 0:
            return 0
        todo = min(self.scavenge_target_pages(), int(self.scavenge_rate_pages() * dt))
        if todo <= 0:
            return 0
        self.materialize()
        return self.heap.release(todo, self.now)

    def periodic_scavenge(self) -> int:
        """<= 1.12: sysmon's scavenger, every 2.5 min, spans unused >= 5 min (FACTS 41)."""
        if not self.policy.periodic_scavenger:
            return 0
        released = 0
        if self.now - self.last_periodic >= self.policy.periodic_interval:
            self.materialize()
        while self.now - self.last_periodic >= self.policy.periodic_interval:
            self.last_periodic += self.policy.periodic_interval
            released += self.heap.release(None, self.last_periodic, min_age=self.policy.periodic_min_age)
        return released

    def enforce_memory_limit(self) -> int:
        """1.19+: an allocation that takes memory past GOMEMLIMIT releases memory at once (FACTS 55)."""
        if not (self.policy.memory_limit and self.gomemlimit is not None):
            return 0
        over = self.heap.retained_bytes + self.heap.nonheap_bytes - self.gomemlimit
        return self.heap.release(-(-int(over) // GO_PAGE), self.now) if over > 0 else 0

    def free_os_memory(self) -> int:
        """debug.FreeOSMemory(): a forced GC, then every free page goes back (FACTS 53)."""
        self.gc()
        return self.heap.release(None, self.now)

    def allocate(self, go_pages: int, live: bool) -> None:
        self.materialize()
        self.heap.allocate(go_pages, self.now, live)
        self.enforce_memory_limit()

    # -- steady mode ---------------------------------------------------------------------------
    def enter_steady(self, runway: int) -> None:
        """Right after a GC that repeated the previous cycle exactly: from now on a cycle takes the
        same ``runway`` free pages (lowest first, all resident) and the next GC frees them again, so
        the page arrays do not change; only counters move until :meth:`materialize`."""
        self.steady_runway, self.steady_used = runway, 0

    def steady_allocate(self, go_pages: int) -> None:
        total = self.steady_used + go_pages
        self.gc_cycles += total // self.steady_runway
        if total >= self.steady_runway:
            self.last_gc_time = self.now
        self.steady_used = total % self.steady_runway
        self.heap.inuse_pages = self.heap.live_count + self.steady_used

    def materialize(self) -> None:
        """Leave steady mode: write the current cycle's allocation into the page arrays."""
        if not self.steady_runway:
            return
        heap, used = self.heap, self.steady_used
        self.steady_runway = self.steady_used = 0
        heap.inuse_pages = heap.live_count
        free_idx = np.flatnonzero(~heap.inuse[:heap.sys_pages])
        heap.free_since[free_idx[:max(used, 1)]] = self.last_gc_time
        heap.allocate(used, self.now, live=False)

    # -- a burst of another allocation in the same budget ---------------------------------
    def pressure_burst(self, nbytes: int, region: str = "pressure") -> None:
        """Map, write and keep ``nbytes`` outside the Go heap (call :meth:`end_pressure` to unmap)."""
        self.space.mmap(region, nbytes)
        self.pressure_region = region
        result = self.space.touch(region, 0, nbytes, access="write")
        self.heap.elapsed_ns += self.cost.touch_ns(int(result.faults), int(result.faults), -(-nbytes // 4096))

    def end_pressure(self) -> None:
        if self.pressure_region is not None:
            self.space.munmap(self.pressure_region)
            self.pressure_region = None

    # -- samples ---------------------------------------------------------------------------
    def _counters(self) -> dict:
        h = self.heap
        return {"faults": int(self.space.faults), "zero_pages": h.zero_pages, "madvised": h.madvised_os_pages,
                "alloc": h.touched_os_pages, "elapsed_ns": h.elapsed_ns,
                "reclaimed": int(getattr(self.space, "reclaimed_pages", 0))}

    def sample(self, phase: str, step: str, allocated_os_pages: int = 0) -> None:
        """Record one sample; ``allocated_os_pages``: OS pages of spans the program allocated since
        the previous sample (the denominator of the per-MiB allocation costs)."""
        h, space = self.heap, self.space
        c = self._counters()
        p = self._prev
        faults = c["faults"] - p["faults"]
        zero = c["zero_pages"] - p["zero_pages"]
        elapsed = c["elapsed_ns"] - p["elapsed_ns"]
        mib = allocated_os_pages * 4096 / MIB
        touch_ns = self.cost.touch_ns(faults, zero, 0) + allocated_os_pages * self.cost.ns_per_touch
        rss = int(space.rss_pages(HEAP_REGION)) + int(space.rss_pages(RUNTIME_REGION))
        self.recorder.add(
            t=self.now, phase=phase, step=step, rss_pages=rss,
            lazyfree_pages=int(space.lazyfree_pages(HEAP_REGION)),
            heap_released_pages=h.heap_released_os, faults=faults,
            heap_inuse_pages=h.heap_inuse_os, heap_idle_pages=h.heap_idle_os, heap_sys_pages=h.heap_sys_os,
            heap_live_pages=h.live_pages * OS_PER_GO, next_gc_pages=self.next_gc / 4096,
            scavenge_goal_pages=h.scavenge_goal / 4096,
            zero_pages=zero, madvised_pages=c["madvised"] - p["madvised"], alloc_pages=allocated_os_pages,
            gc_cycles=self.gc_cycles,
            faults_per_mib=faults / mib if mib else 0.0, zero_pages_per_mib=zero / mib if mib else 0.0,
            alloc_cost_us_per_mib=touch_ns / 1e3 / mib if mib else 0.0,
            elapsed_ms=elapsed / 1e6,
            pressure_rss_pages=int(space.rss_pages(self.pressure_region)) if self.pressure_region else 0,
            reclaimed_pages=c["reclaimed"] - p["reclaimed"],
            advice=h.advice, oom=self.oom)
        self._prev = c

    def meta(self, **extra) -> dict:
        h = self.heap
        out = {"go_version": self.policy.version, "policy": self.policy.describe(),
               "advice_configured": self.policy.advice, "advice_used": h.advice,
               "fell_back_to_dontneed": h.fell_back, "gogc": "off" if self.gogc is None else self.gogc,
               "gc_cycles": self.gc_cycles, "madvise_calls": h.madvise_calls, "oom_killed": self.oom,
               "cost_model": self.cost.source}
        out.update(extra)
        return out


__all__ = ["GoRuntime", "OOMKill"]
