"""``python -m models run SCENARIO [--engine model|kernel] [--kernel-version V] [--swap] [--json]``.

SCENARIO is a JSON file or the name of a library scenario (``--list`` shows them).  The model
engine is :func:`models.kernel.replay.play`; the kernel engine runs the scenario for real
(:func:`models.realkernel.engine.play_on_kernel`) on this machine's kernel, so
``--kernel-version`` and ``--swap`` belong to the model engine only.

Exit codes: 0 ok; 1 the real-kernel run failed (child crashed, cgroup error); 2 bad arguments
or a malformed scenario (one message on stderr, no traceback); 3 the engine cannot run here
(e.g. the kernel engine off Linux, or a budget without a usable memory cgroup); 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

from models.errors import ModelInputError
from models.scenario.format import Scenario, StepResult
from models.units import PAGE_SIZE, format_size

EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):   # one line, exit 2, like every other bad input here
        self.exit(EXIT_BAD_INPUT, f"python -m models run: {message}\n"
                                  f"(python -m models run --help shows the options)\n")


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m models run",
                description="Play a memory scenario on the page model or on this machine's real kernel.")
    p.add_argument("scenario", nargs="?", help="scenario JSON file, or a library name (see --list)")
    p.add_argument("--engine", choices=("model", "kernel"), default="model",
                   help="model: the page model (default); kernel: run it for real on this machine")
    p.add_argument("--kernel-version", default=None,
                   help="kernel version the model imitates (model engine only; default 6.18)")
    p.add_argument("--swap", action="store_true", help="the model machine has swap (model engine only)")
    p.add_argument("--no-pagetables", dest="pagetables", action="store_false",
                   help="model engine: count only the scenario's pages against memory_limit; by "
                        "default page-table pages are charged too, as a memory cgroup does "
                        "(docs/KERNEL-NOTES.md K3)")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per executed step")
    p.add_argument("--list", action="store_true", help="list the library scenarios and exit")
    return p


def _swap_total() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("SwapTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def describe_step(step) -> str:
    """A short human description of one scenario step."""
    if step.op == "mmap":
        return f"mmap {step.region} {format_size(step.length)} {'shared' if step.shared else 'private'}"
    if step.op == "munmap":
        return f"munmap {step.region}"
    if step.op == "touch":
        return f"{step.access} {step.region} [{format_size(step.offset)} +{format_size(step.length)}]"
    if step.op == "madvise":
        return f"madvise {step.region} {step.advice} [off {step.offset} +{format_size(step.length)}]"
    return f"pressure {format_size(step.length)}"


def format_table(scenario: Scenario, results: list[StepResult], header: str) -> str:
    rows = [("step", "what", "rss", "lazyfree", "faults", "zero pages", "error")]
    for r in results:
        rows.append((str(r.step), describe_step(scenario.steps[r.step]),
                     f"{r.rss_pages} ({format_size(r.rss_pages * PAGE_SIZE)})",
                     f"{r.lazyfree_pages} ({format_size(r.lazyfree_pages * PAGE_SIZE)})",
                     str(r.faults), "-" if r.zero_pages is None else str(r.zero_pages), r.error or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [header, ""]
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    if len(results) < len(scenario.steps):
        lines.append(f"\n(steps {len(results)}..{len(scenario.steps) - 1} did not run)")
    lines.append("\nrss and lazyfree are pages of 4 KiB in the scenario's regions "
                 "(pressure allocations not counted).")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = _build_parser().parse_args(argv)
    from models import scenario as lib

    if args.list:
        for name in lib.library_names():
            try:
                desc = lib.load_scenario(lib.library_path(name)).description
            except ModelInputError as exc:   # a broken library file must not hide the others
                desc = f"(invalid: {exc})"
            print(f"{name:<28} {desc}")
        return 0
    if not args.scenario:
        print("python -m models run: give a scenario file or library name (or --list)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        scenario = lib.resolve(args.scenario)
        if args.engine == "kernel":
            results, header = _run_kernel(scenario, args)
        else:
            results, header = _run_model(scenario, args)
    except ModelInputError as exc:
        print(f"python -m models run: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except _Unavailable as exc:
        print(f"python -m models run: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        # The kernel engine has already killed its child and removed its cgroup.
        print("python -m models run: interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, OSError) as exc:
        if args.engine != "kernel":
            raise   # a bug in the model: keep the traceback
        print(f"python -m models run: the real-kernel run failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=1))
    else:
        print(format_table(scenario, results, header))
    return 0


class _Unavailable(Exception):
    pass


def _run_model(scenario: Scenario, args):
    try:
        from models.kernel.replay import play
    except ImportError as exc:
        raise _Unavailable(f"the model engine (models.kernel.replay) is not available: {exc}") from None
    version = args.kernel_version or "6.18"
    results = play(scenario, kernel_version=version, swap=args.swap, pagetables=args.pagetables)
    header = (f"scenario {scenario.name or args.scenario!r} on the page model "
              f"(Linux {version}, {'with' if args.swap else 'no'} swap)")
    return results, header


def _run_kernel(scenario: Scenario, args):
    from models.realkernel import engine
    if args.kernel_version is not None:
        raise ModelInputError(
            f"--kernel-version applies to the model engine only; the kernel engine measures this "
            f"machine's kernel ({engine.kernel_release()}). Drop --kernel-version or use --engine model")
    swap = _swap_total()
    if args.swap and not swap:
        raise ModelInputError(
            "--swap applies to the model engine only; the kernel engine uses this machine's swap, "
            "and it has none (SwapTotal: 0). Drop --swap or use --engine model")
    try:
        results = engine.play_on_kernel(scenario)
    except engine.KernelEngineUnavailable as exc:
        raise _Unavailable(f"cannot run on the real kernel here: {exc}") from None
    header = (f"scenario {scenario.name or args.scenario!r} on the real kernel "
              f"(Linux {engine.kernel_release()}, "
              f"{'swap ' + format_size(swap) if swap else 'no swap'})")
    return results, header
