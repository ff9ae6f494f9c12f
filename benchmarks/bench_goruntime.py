"""Speed of the Go runtime model (models.goruntime).

    .venv/bin/python benchmarks/bench_goruntime.py [--quick]

1. One service timeline of at least 10,000 GC cycles over a 4 GiB heap (Go 1.16, 1.25 GiB
   allocated per second, 1 GiB live between the load spikes, 2 GiB during them; a spike of 60 s
   every 10 min, so cycles keep changing the heap: growth, scavenging, re-faulting).  Run twice, side by side: with the steady-cycle fast
   path (cycles that repeat the previous one exactly are counted, not replayed) and without it;
   both must give identical series.  Printed: times and their ratio.  No target (reported).
2. Widget-sized timelines, what the book's explorables compute on every slider move: the
   default service (256 MiB, 600 s, one sample a second) and the release experiment
   (256 MiB, FreeOSMemory, with a 160 MiB burst under a 320 MiB budget), for Go 1.12 and 1.19.
   Target: each < 50 ms (median of several runs, after one warm-up run).

Exit status 1 if a target fails.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import models.goruntime.simulate as sim  # noqa: E402
from models.goruntime import simulate_release, simulate_service  # noqa: E402

WIDGET_TARGET_S = 0.050
SERIES = ("rss_pages", "lazyfree_pages", "heap_released_pages", "heap_inuse_pages", "faults", "gc_cycles")


def _time(fn, repeat: int) -> tuple[float, object]:
    fn()
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def big_timeline(quick: bool) -> bool:
    duration = 2_000.0 if quick else 10_000.0
    kw = dict(go_version="1.16", heap="4GiB", liveness=0.25, alloc_rate="1280MiB", duration=duration,
              spike_start=60.0, spike_seconds=60.0, spike_every=600.0, sample_interval=1.0)
    t0 = time.perf_counter()
    fast = simulate_service(**kw)
    t_fast = time.perf_counter() - t0
    sim.STEADY_FASTPATH = False
    try:
        t0 = time.perf_counter()
        slow = simulate_service(**kw)
        t_slow = time.perf_counter() - t0
    finally:
        sim.STEADY_FASTPATH = True
    same = all(np.array_equal(getattr(fast, k), getattr(slow, k)) for k in SERIES)
    cycles = int(fast.gc_cycles[-1])
    print(f"1. 4 GiB heap, {duration:.0f} s, {len(fast)} samples, {cycles} GC cycles, "
          f"{int(fast.faults.sum())} faults, {fast.meta['madvise_calls']} madvise calls")
    print(f"   fast path {t_fast:8.3f} s   replay every cycle {t_slow:8.3f} s   ratio {t_slow / t_fast:6.1f}x   "
          f"identical series: {same}")
    ok = same and (quick or cycles >= 10_000)
    print(f"   {'PASS' if ok else 'FAIL'} (identical series{'' if quick else ', >= 10,000 GC cycles'})")
    return ok


def widgets(repeat: int) -> bool:
    cases = []
    for version in ("1.12", "1.19"):
        cases.append((f"service  Go {version} 256 MiB 600 s",
                      lambda v=version: simulate_service(go_version=v, heap="256MiB", duration=600)))
        cases.append((f"release  Go {version} 256 MiB + burst",
                      lambda v=version: simulate_release(go_version=v, heap="256MiB", memory_limit="320MiB",
                                                         pressure="160MiB")))
    ok = True
    print(f"2. widget-sized timelines (median of {repeat}, target < {WIDGET_TARGET_S * 1e3:.0f} ms)")
    for name, fn in cases:
        t, _ = _time(fn, repeat)
        passed = t < WIDGET_TARGET_S
        ok &= passed
        print(f"   {name:<36} {t * 1e3:7.2f} ms  {'PASS' if passed else 'FAIL'}")
    return ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2,000 s instead of 10,000 s for the big timeline")
    args = p.parse_args(argv)
    ok = big_timeline(args.quick)
    ok &= widgets(repeat=5 if args.quick else 15)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
