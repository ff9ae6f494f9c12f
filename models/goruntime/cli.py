"""``python -m models go``: the Go runtime model from the command line.

    python -m models go --go-version 1.12 --kernel-version 5.4 --liveness 0.25 --heap 256MiB \\
        [--gogc 100] [--godebug madvdontneed=1] [--memory-limit 320MiB] [--pressure 160MiB] \\
        [--release freeosmemory|scavenger] --json

With ``--release`` it runs the probes/goheap experiment (phases allocate, gc, release,
reallocate); without it, a service over time (phases steady and spike).  ``--json`` prints
the timeline as a JSON list of samples; otherwise a table.  Bad arguments: a one-line
message on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys

from models.errors import KernelError, ModelInputError

_TABLE = (("t", "t[s]", 9, "{:>9.3f}"), ("phase", "phase", 10, "{:<10}"), ("step", "step", 12, "{:<12}"),
          ("rss_pages", "RSS MiB", 8, "{:>8.1f}"), ("lazyfree_pages", "LazyFree", 8, "{:>8.1f}"),
          ("heap_inuse_pages", "HeapInuse", 9, "{:>9.1f}"), ("heap_idle_pages", "HeapIdle", 8, "{:>8.1f}"),
          ("heap_released_pages", "Released", 8, "{:>8.1f}"), ("heap_sys_pages", "HeapSys", 8, "{:>8.1f}"),
          ("faults", "faults", 8, "{:>8d}"), ("gc_cycles", "GCs", 6, "{:>6d}"), ("oom", "OOM", 5, "{!s:>5}"))
_MIB_PAGES = 256


class _Parser(argparse.ArgumentParser):
    def error(self, message):   # argparse's own errors: one line, exit 2, no traceback
        self.print_usage(sys.stderr)
        print(f"python -m models go: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m models go",
                description="Simulate a Go program's heap, GC and scavenger on the kernel page model.")
    p.add_argument("--go-version", default="1.19", help="Go release 1.11 .. 1.26 (default 1.19)")
    p.add_argument("--kernel-version", default="6.18", help="Linux version, e.g. 4.4, 4.9, 5.4, 6.18")
    p.add_argument("--swap", action="store_true", help="the machine has free swap (matters on 4.5-4.11)")
    p.add_argument("--liveness", type=_float, default=0.25,
                   help="fraction of the heap live after the GC, in [0, 1] (default 0.25)")
    p.add_argument("--heap", default="256MiB", help="heap allocated (release) or peak heap (service)")
    p.add_argument("--object-size", default="8KiB", help="object (span) size, a multiple of 8KiB")
    p.add_argument("--gogc", default="100", help="GOGC: a percentage > 0 or 'off' (default 100)")
    p.add_argument("--godebug", default=None, help="GODEBUG, e.g. madvdontneed=1")
    p.add_argument("--gomemlimit", default=None, help="GOMEMLIMIT (Go 1.19+), e.g. 300MiB")
    p.add_argument("--gc-roots", default="0", help="bytes of stacks and globals (count in the goal from 1.18)")
    p.add_argument("--memory-limit", default=None, help="the container's memory budget, e.g. 320MiB")
    p.add_argument("--pressure", default="0", help="bytes of another allocation in the same budget")
    p.add_argument("--release", choices=("freeosmemory", "scavenger"), default=None,
                   help="run the probes/goheap experiment, releasing with debug.FreeOSMemory or the "
                        "background scavenger")
    p.add_argument("--wait", type=_float, default=8.0, help="seconds to watch the scavenger (--release scavenger)")
    p.add_argument("--duration", type=_float, default=600.0, help="service: seconds simulated (default 600)")
    p.add_argument("--alloc-rate", default="64MiB", help="service: bytes allocated per second")
    p.add_argument("--spike-start", type=_float, default=10.0, help="service: when the load spike starts [s]")
    p.add_argument("--spike-seconds", type=_float, default=30.0, help="service: how long it lasts [s]")
    p.add_argument("--spike-every", type=_float, default=None, help="service: repeat the spike every N s")
    p.add_argument("--pressure-at", type=_float, default=None, help="service: when the pressure arrives [s]")
    p.add_argument("--sample-interval", type=_float, default=None,
                   help="seconds between samples (service default 1, scavenger watch default 0.5)")
    p.add_argument("--json", action="store_true", help="print the timeline as JSON")
    return p


def run(args) -> "object":
    from models.goruntime.simulate import simulate_release, simulate_service
    common = dict(go_version=args.go_version, kernel_version=args.kernel_version, swap=args.swap,
                  liveness=args.liveness, heap=args.heap, object_size=args.object_size, gogc=args.gogc,
                  godebug=args.godebug, gomemlimit=args.gomemlimit, gc_roots=args.gc_roots,
                  memory_limit=args.memory_limit, pressure=args.pressure)
    if args.release:
        extra = {} if args.sample_interval is None else {"sample_interval": args.sample_interval}
        return simulate_release(release=args.release, wait=args.wait, **common, **extra)
    return simulate_service(duration=args.duration, alloc_rate=args.alloc_rate, spike_start=args.spike_start,
                            spike_seconds=args.spike_seconds, spike_every=args.spike_every,
                            pressure_at=args.pressure_at,
                            sample_interval=1.0 if args.sample_interval is None else args.sample_interval,
                            **common)


def _table(timeline) -> str:
    head = " ".join(title.ljust(width) if fmt.startswith("{:<") else title.rjust(width)
                    for _, title, width, fmt in _TABLE)
    lines = [timeline.meta.get("policy", ""), head]
    for row in timeline.to_json():
        cells = []
        for key, _, _, fmt in _TABLE:
            v = row[key]
            if key.endswith("_pages"):
                v = v / _MIB_PAGES
            cells.append(fmt.format(v))
        lines.append(" ".join(cells))
    m = timeline.meta
    lines.append(f"advice used: {m['advice_used']}" + (" (fell back from MADV_FREE: EINVAL)"
                                                      if m["fell_back_to_dontneed"] else "")
                 + f"; GC cycles: {m['gc_cycles']}; OOM-killed: {m['oom_killed']}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        timeline = run(args)
    except ModelInputError as exc:
        print(f"python -m models go: error: {exc}", file=sys.stderr)
        return 2
    except KernelError as exc:   # a syscall the runtime does not expect to fail
        print(f"python -m models go: the simulated kernel refused a call: {exc}", file=sys.stderr)
        return 1
    try:
        if args.json:
            json.dump(timeline.to_json(), sys.stdout, indent=None)
            sys.stdout.write("\n")
        else:
            print(_table(timeline))
        sys.stdout.flush()
    except BrokenPipeError:   # e.g. piped into head: not an error of ours
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
