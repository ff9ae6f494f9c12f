"""The two experiments the book runs on the Go model, with validated inputs.

* :func:`simulate_release` -- the same experiment as the real Go program
  ``probes/goheap`` (FACTS E10): allocate a heap, keep a fraction live, GC,
  give the rest back (``debug.FreeOSMemory`` or the background scavenger),
  optionally a burst of another allocation under a memory budget, re-allocate.
  Phases ``allocate``, ``gc``, ``release``, ``reallocate``.
* :func:`simulate_service` -- a service over time: a steady allocation rate, a
  load spike that raises the live heap to fill ``heap``, then a quieter live
  heap of ``liveness x heap``; how each Go version gives the spike's memory back.

Both return a :class:`~models.goruntime.timeline.Timeline`.  Bad input raises
:class:`~models.errors.ModelInputError` naming the parameter and its range.
"""
from __future__ import annotations

import math
from typing import Optional

from models.errors import ModelInputError, OOMKill
from models.goruntime.cost import DEFAULT_COST, CostModel
from models.goruntime.heap import DEFAULT_FOOTPRINT, GO_PAGE, OS_PER_GO, Footprint
from models.goruntime.runtime import GoRuntime
from models.goruntime.timeline import Timeline
from models.goruntime.versions import policy_for
from models.units import parse_size

RELEASES = ("freeosmemory", "scavenger")
#: Count repeating GC cycles instead of replaying them (exact; tests compare both ways).
STEADY_FASTPATH = True
MAX_HEAP = 64 << 30
MIB = 1 << 20


# -- validation --------------------------------------------------------------------------------
def _fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        raise ModelInputError(f"{name} must be a fraction in [0, 1], got {value!r}")
    return float(value)


def _seconds(name: str, value, lo: float = 0.0, hi: float = 86_400.0, *, open_lo: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or value > hi or value < lo or (open_lo and value <= lo):
        low = f"({lo:g}" if open_lo else f"[{lo:g}"
        raise ModelInputError(f"{name} must be a number of seconds in {low}, {hi:g}], got {value!r}")
    return float(value)


def parse_gogc(value) -> Optional[int]:
    """GOGC: a whole percentage > 0, or "off" (-> None)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "off":
            return None
        if text.isdigit():
            value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 100_000:
        raise ModelInputError(f"gogc must be a whole percentage in 1..100000 or 'off', got {value!r}")
    return value


def _size(name: str, value, *, lo: int = 0, hi: int = MAX_HEAP) -> int:
    n = parse_size(value, name=name)
    if not lo <= n <= hi:
        raise ModelInputError(f"{name} must be between {lo} and {hi} bytes, got {n}")
    return n


def _optional_size(name: str, value, lo: int = 1) -> Optional[int]:
    return None if value is None else _size(name, value, lo=lo)


def _common(go_version, godebug, gogc, gc_roots, gomemlimit, object_size, cost, footprint):
    policy = policy_for(go_version, godebug)
    gogc_v = parse_gogc(gogc)
    roots = _size("gc_roots", gc_roots)
    limit = _optional_size("gomemlimit", gomemlimit, lo=1 << 20)
    if limit is not None and not policy.memory_limit:
        raise ModelInputError(f"gomemlimit exists from Go 1.19 (FACTS 54); go_version is {policy.version}")
    obj = _size("object_size", object_size, lo=GO_PAGE)
    if obj % GO_PAGE:
        raise ModelInputError(
            f"object_size must be a multiple of the Go page (8192 bytes): the model works in whole "
            f"spans (see models/goruntime/LIMITS.md), got {obj}")
    cost = DEFAULT_COST if cost is None else cost
    if not isinstance(cost, CostModel):
        raise ModelInputError(f"cost must be a CostModel, got {type(cost).__name__}")
    footprint = DEFAULT_FOOTPRINT if footprint is None else footprint
    if not isinstance(footprint, Footprint):
        raise ModelInputError(f"footprint must be a Footprint, got {type(footprint).__name__}")
    return policy, gogc_v, roots, limit, obj // GO_PAGE, cost, footprint


def _space(kernel_version, swap, memory_limit):
    from models.kernel import AddressSpace   # the shared page model: RSS, LazyFree, faults (FACTS §A-C)
    if not isinstance(swap, bool):
        raise ModelInputError(f"swap must be True or False, got {swap!r}")
    return AddressSpace(kernel_version=kernel_version, swap=swap, memory_limit=memory_limit)


def _allocate_with_gc(rt: GoRuntime, go_pages: int, live: bool) -> None:
    """Allocate, running a GC each time the heap reaches its goal (as the pacer would)."""
    remaining = go_pages
    while remaining > 0:
        room = math.ceil(rt.goal_pages) - rt.heap.inuse_pages if math.isfinite(rt.goal_pages) else remaining
        if room <= 0:
            rt.gc()
            room = math.ceil(rt.goal_pages) - rt.heap.inuse_pages if math.isfinite(rt.goal_pages) else remaining
            if room <= 0:
                room = remaining   # live data above the goal: the GC cannot help, the heap just grows
        take = min(room, remaining)
        rt.allocate(take, live)
        remaining -= take


# -- the release experiment (probes/goheap) ---------------------------------------------------
def simulate_release(*, go_version="1.19", kernel_version="6.18", liveness=0.25, heap="256MiB",
                     object_size="8KiB", gogc=100, godebug: Optional[str] = None, memory_limit=None,
                     pressure=0, release: str = "freeosmemory", wait: float = 8.0, swap: bool = False,
                     gc_roots=0, gomemlimit=None, cost: Optional[CostModel] = None,
                     footprint: Optional[Footprint] = None, scavenger_wake_delay: float = 3.0,
                     sample_interval: float = 0.5, gomaxprocs: int = 2) -> Timeline:
    """Allocate ``heap`` in objects of ``object_size``, keep ``liveness`` of it, GC, release, re-allocate.

    ``release="freeosmemory"`` calls ``debug.FreeOSMemory()`` once; ``"scavenger"``
    watches the background scavenger for ``wait`` seconds (it first wakes
    ``scavenger_wake_delay`` s after the GC in an idle program: 1.4-8 s measured here, E10).
    ``pressure`` bytes: a burst of another allocation in the same ``memory_limit`` after the
    release, unmapped again before re-allocating (the kernel reclaims lazily freed pages
    for it, or OOM-kills).  Returns a Timeline whose phases are ``allocate``, ``gc``,
    ``release``, ``reallocate`` in that order (``step`` says which operation).
    """
    policy, gogc_v, roots, limit, span_pages, cost, footprint = _common(
        go_version, godebug, gogc, gc_roots, gomemlimit, object_size, cost, footprint)
    f = _fraction("liveness", liveness)
    heap_b = _size("heap", heap, lo=span_pages * GO_PAGE)
    mem_limit = _optional_size("memory_limit", memory_limit)
    pressure_b = _size("pressure", pressure)
    if release not in RELEASES:
        raise ModelInputError(f"release must be one of {RELEASES}, got {release!r}")
    wait = _seconds("wait", wait, 0.0, 3600.0)
    wake = _seconds("scavenger_wake_delay", scavenger_wake_delay, 0.0, 3600.0)
    step_s = _seconds("sample_interval", sample_interval, 0.0, 3600.0, open_lo=True)
    if isinstance(gomaxprocs, bool) or not isinstance(gomaxprocs, int) or not 1 <= gomaxprocs <= 1024:
        raise ModelInputError(f"gomaxprocs must be a whole number in 1..1024, got {gomaxprocs!r}")

    space = _space(kernel_version, swap, mem_limit)
    n_spans = heap_b // (span_pages * GO_PAGE)
    kept = int(math.floor(n_spans * f))          # same count as the probe's "interleaved" rule
    dropped_pages = (n_spans - kept) * span_pages
    baseline = -(-footprint.heap_baseline_bytes // GO_PAGE)
    rt = GoRuntime(space, policy, capacity_bytes=heap_b + (baseline + 1024) * GO_PAGE, gogc=gogc_v,
                   gc_roots=roots, gomemlimit=limit, cost=cost, footprint=footprint,
                   span_pages=span_pages, gomaxprocs=gomaxprocs)

    def clock():
        rt.now = t_wait + rt.heap.elapsed_ns / 1e9

    t_wait = 0.0
    try:
        rt.allocate(baseline, live=True)
        rt.gc()                                   # the probe's runtime.GC() before it starts
        clock()
        rt.sample("allocate", "start")
        _allocate_with_gc(rt, n_spans * span_pages, live=True)
        rt.gc()                                   # the probe's GC with everything still live
        clock()
        rt.sample("allocate", "allocate", n_spans * span_pages * OS_PER_GO)

        rt.heap.kill_live(dropped_pages)
        rt.gc()
        clock()
        rt.sample("gc", "gc")

        if release == "freeosmemory":
            rt.free_os_memory()
            clock()
            rt.sample("release", "freeosmemory")
        else:
            t = 0.0
            while t < wait - 1e-9:
                dt = min(step_s, wait - t)
                t += dt
                t_wait += dt
                clock()
                awake = max(0.0, t - max(wake, t - dt))
                rt.background_scavenge(awake)
                rt.periodic_scavenge()
                clock()
                rt.sample("release", "scavenger")

        if pressure_b:
            rt.pressure_burst(pressure_b)
            clock()
            rt.sample("release", "pressure")
            rt.end_pressure()

        _allocate_with_gc(rt, dropped_pages, live=True)
        clock()
        rt.sample("reallocate", "reallocate", dropped_pages * OS_PER_GO)
    except OOMKill:
        rt.oom = True
        rt.pressure_region = None
        clock()
        rt.sample(rt.recorder.rows["phase"][-1] if rt.recorder.rows["phase"] else "allocate", "oom")
    return rt.recorder.timeline(rt.meta(experiment="release", kernel_version=kernel_version,
                                        liveness=f, heap=heap_b, kept_spans=kept, span_pages=span_pages,
                                        release=release, memory_limit=mem_limit, pressure=pressure_b))


# -- a service over time ------------------------------------------------------------------------
def simulate_service(*, go_version="1.19", kernel_version="6.18", heap="256MiB", liveness=0.25, gogc=100,
                     godebug: Optional[str] = None, alloc_rate="64MiB", duration: float = 600.0,
                     spike_start: float = 10.0, spike_seconds: float = 30.0,
                     spike_every: Optional[float] = None, sample_interval: float = 1.0, memory_limit=None, pressure=0,
                     pressure_at: Optional[float] = None, gomemlimit=None, gc_roots=0, swap: bool = False,
                     object_size="8KiB", cost: Optional[CostModel] = None,
                     footprint: Optional[Footprint] = None, gomaxprocs: int = 2) -> Timeline:
    """A Go service allocating ``alloc_rate`` bytes per second for ``duration`` seconds.

    From ``spike_start`` for ``spike_seconds`` the live heap rises to ``heap / (1 + GOGC/100)``
    (so the heap reaches about ``heap``), again every ``spike_every`` seconds if given; otherwise ``liveness x heap`` is live after each GC.
    With ``memory_limit`` the kernel model enforces that budget; ``pressure`` bytes of another
    allocation arrive at ``pressure_at`` seconds and stay (reclaim of lazily freed pages, or an
    OOM kill, which ends the timeline).  Phases: ``steady`` and ``spike``.
    """
    policy, gogc_v, roots, limit, span_pages, cost, footprint = _common(
        go_version, godebug, gogc, gc_roots, gomemlimit, object_size, cost, footprint)
    f = _fraction("liveness", liveness)
    heap_b = _size("heap", heap, lo=1 << 20)
    rate = _size("alloc_rate", alloc_rate, lo=0, hi=1 << 40)
    duration = _seconds("duration", duration, 0.0, 7 * 86_400.0, open_lo=True)
    spike_start = _seconds("spike_start", spike_start, 0.0, duration)
    spike_seconds = _seconds("spike_seconds", spike_seconds, 0.0, duration)
    if spike_every is not None:
        spike_every = _seconds("spike_every", spike_every, spike_seconds, 7 * 86_400.0, open_lo=True)
    step_s = _seconds("sample_interval", sample_interval, 0.0, duration, open_lo=True)
    if duration / step_s > 1_000_000:
        raise ModelInputError(f"duration / sample_interval must be at most 1e6 samples, got {duration / step_s:g}")
    mem_limit = _optional_size("memory_limit", memory_limit)
    pressure_b = _size("pressure", pressure)
    if pressure_b and pressure_at is None:
        pressure_at = duration / 2
    if pressure_at is not None:
        pressure_at = _seconds("pressure_at", pressure_at, 0.0, duration)
    if isinstance(gomaxprocs, bool) or not isinstance(gomaxprocs, int) or not 1 <= gomaxprocs <= 1024:
        raise ModelInputError(f"gomaxprocs must be a whole number in 1..1024, got {gomaxprocs!r}")

    growth = 1 + (gogc_v / 100 if gogc_v else 1.0)
    spike_live = heap_b / growth
    steady_live = f * heap_b
    peak = max(heap_b, steady_live * growth, spike_live * growth)
    if gogc_v is None and limit is None:
        peak = max(peak, spike_live + rate * duration)      # nothing ever collects
    elif limit is not None:
        peak = max(min(peak, limit), spike_live, steady_live)
    capacity = int(peak) + footprint.heap_baseline_bytes + (8 << 20)
    if capacity > MAX_HEAP:
        raise ModelInputError(f"the simulated heap would reach {capacity} bytes; it must stay below "
                              f"{MAX_HEAP} (lower heap, alloc_rate or duration, or set gogc)")

    space = _space(kernel_version, swap, mem_limit)
    rt = GoRuntime(space, policy, capacity_bytes=capacity, gogc=gogc_v, gc_roots=roots, gomemlimit=limit,
                   cost=cost, footprint=footprint, span_pages=span_pages, gomaxprocs=gomaxprocs)
    baseline = -(-footprint.heap_baseline_bytes // GO_PAGE)
    carry = 0.0
    pressured = False
    try:
        rt.allocate(baseline, live=True)
        rt.gc()
        rt.sample("steady", "start")
        n_steps = int(math.ceil(duration / step_s - 1e-9))
        for i in range(1, n_steps + 1):
            t_end = min(i * step_s, duration)
            dt = t_end - rt.now
            since = rt.now - spike_start
            if spike_every:
                since %= spike_every if since >= 0 else float("inf")
            in_spike = spike_seconds > 0 and 0 <= since < spike_seconds
            target_live = baseline + int((spike_live if in_spike else steady_live) // GO_PAGE)
            rt.now = t_end
            live_now = rt.heap.live_pages
            if live_now > target_live:
                rt.materialize()
                rt.heap.kill_live(live_now - target_live)
            carry += rate * dt / GO_PAGE
            n_alloc = int(carry)
            carry -= n_alloc
            _service_tick(rt, n_alloc, target_live)
            rt.periodic_scavenge()
            rt.background_scavenge(dt)
            step = "tick"
            if pressure_b and not pressured and pressure_at is not None and rt.now >= pressure_at:
                pressured = True
                space.pressure(pressure_b)
                step = "pressure"
            rt.sample("spike" if in_spike else "steady", step, n_alloc * OS_PER_GO)
    except OOMKill:
        rt.oom = True
        rt.sample("spike" if rt.recorder.rows["phase"] and rt.recorder.rows["phase"][-1] == "spike" else "steady",
                  "oom")
    return rt.recorder.timeline(rt.meta(
        experiment="service", kernel_version=kernel_version, heap=heap_b, liveness=f, alloc_rate=rate,
        duration=duration, spike_start=spike_start, spike_seconds=spike_seconds, spike_every=spike_every,
        memory_limit=mem_limit,
        pressure=pressure_b, pressure_at=pressure_at, gomemlimit=limit))


def _service_tick(rt: GoRuntime, n_alloc: int, target_live: int) -> None:
    """Allocate ``n_alloc`` Go pages, GC-ing at each goal.  A cycle that repeats the previous one
    exactly (same live set and goal, a full runway allocated, no page taken from released memory,
    no growth) leaves the pages as it found them: such cycles are counted, not replayed
    (:meth:`GoRuntime.enter_steady`)."""
    heap = rt.heap
    if rt.steady_runway:
        if heap.live_pages == target_live:
            rt.steady_allocate(n_alloc)
            return
        rt.materialize()
    while n_alloc > 0:
        goal = math.ceil(rt.goal_pages) if math.isfinite(rt.goal_pages) else None
        room = (goal - heap.inuse_pages) if goal is not None else n_alloc
        if room <= 0:
            _gc(rt, target_live)
            goal = math.ceil(rt.goal_pages) if math.isfinite(rt.goal_pages) else None
            room = (goal - heap.inuse_pages) if goal is not None else n_alloc
            if room <= 0:
                room = n_alloc
        take = min(room, n_alloc)
        live_part = min(take, max(target_live - heap.live_pages, 0))
        if live_part:
            rt.allocate(live_part, live=True)
        if take - live_part:
            rt.allocate(take - live_part, live=False)
        n_alloc -= take
        if goal is not None and heap.inuse_pages >= goal:
            _gc(rt, target_live)
            if rt.steady_runway:
                rt.steady_allocate(n_alloc)
                return


def _gc(rt: GoRuntime, target_live: int) -> None:
    """A GC; enter steady mode when this cycle and the previous one were identical."""
    heap = rt.heap
    runway = heap.inuse_pages - heap.live_pages
    mark = (heap.touched_os_pages, heap.sys_pages, heap.released_pages, heap.live_pages, rt.next_gc)
    previous = getattr(rt, "_cycle_mark", None)
    rt.gc()
    rt._cycle_mark = (heap.touched_os_pages, heap.sys_pages, heap.released_pages, heap.live_pages, rt.next_gc)
    if not math.isfinite(rt.goal_pages):
        return
    room_next = math.ceil(rt.goal_pages) - heap.inuse_pages
    if (STEADY_FASTPATH and previous is not None and previous == mark == rt._cycle_mark and heap.live_pages == target_live
            and room_next == runway and room_next > 0):
        rt.enter_steady(room_next)


def simulate_versions(kind: str = "service", versions=("1.11", "1.12", "1.13", "1.16", "1.19"),
                      **kwargs) -> dict:
    """The same experiment for several Go versions: ``{version: Timeline}`` (for side-by-side figures).

    ``kind`` is ``"service"`` (:func:`simulate_service`) or ``"release"`` (:func:`simulate_release`);
    ``kwargs`` go to it unchanged (a ``godebug`` is refused for 1.11, which has no such setting).
    """
    runners = {"service": simulate_service, "release": simulate_release}
    if kind not in runners:
        raise ModelInputError(f"kind must be one of {sorted(runners)}, got {kind!r}")
    if isinstance(versions, str) or not versions:
        raise ModelInputError(f"versions must be a non-empty list of Go versions, got {versions!r}")
    return {v: runners[kind](go_version=v, **kwargs) for v in versions}
