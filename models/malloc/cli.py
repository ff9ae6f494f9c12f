"""``python -m models malloc SEQUENCE [--json] [--engine model|glibc|both]``.

SEQUENCE is a JSON file or the name of a shipped sequence (``--list``).  The
model engine replays it on :class:`models.malloc.glibc.GlibcMalloc`; the glibc
engine on the machine's real glibc (``models.realkernel.glibc_probe``).  Each
operation prints one row: where a malloc was served, the heap's size (the
brk heap's VSZ), the total VSZ, RSS in pages and the system calls it made.
``--engine both`` prints both tables and the disagreements
(:func:`models.malloc.fidelity.compare`); it exits 1 if there are any.
"""
from __future__ import annotations

import argparse
import json
import sys

from models.errors import ModelInputError
from models.malloc.sequence import load_sequence, named_sequences
from models.units import PAGE_SIZE, format_size

COLUMNS = ("step", "op", "id", "where", "heap", "vsz", "rss_pages", "heap_rss", "mmap_rss", "syscalls")


def _syscalls(counts) -> str:
    if counts is None:
        return "(no strace)"
    text = " ".join(f"{k}={v}" for k, v in counts.items() if v)
    return text or "-"


def _row(obs) -> list[str]:
    where = obs.placement or ("" if obs.result is None else f"-> {obs.result}")
    return [str(obs.step), obs.op, obs.id or "", where, format_size(obs.heap_size), format_size(obs.vsz),
            str(obs.rss_pages), str(obs.heap_rss_pages), str(obs.mmap_rss_pages), _syscalls(obs.syscalls)]


def render_table(rows) -> str:
    table = [list(COLUMNS)] + [_row(o) for o in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m models malloc",
        description="Replay malloc/free/malloc_trim/mallopt on the glibc-like allocator model "
                    "(main arena, 64-bit) or on the real glibc, and observe heap size, VSZ, RSS "
                    f"({PAGE_SIZE}-byte pages) and system calls after each operation.")
    parser.add_argument("sequence", nargs="?", help="a sequence JSON file, or a shipped sequence name (see --list)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per operation (a JSON list)")
    parser.add_argument("--engine", choices=("model", "glibc", "both"), default="model",
                        help="model (default); glibc: run the sequence for real with the probe; "
                             "both: run both and list where they disagree")
    parser.add_argument("--list", action="store_true", help="list the shipped sequences and exit")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        for name in named_sequences():
            seq = load_sequence(name)
            print(f"{name}: {seq.description}")
        return 0
    if not args.sequence:
        print("python -m models malloc: a SEQUENCE (file or name) is required; --list shows the names",
              file=sys.stderr)
        return 2
    try:
        sequence = load_sequence(args.sequence)
        model_rows = real_rows = None
        if args.engine in ("model", "both"):
            from models.malloc.glibc import replay
            model_rows = replay(sequence)
        if args.engine in ("glibc", "both"):
            from models.realkernel.glibc_probe import GlibcProbeError, run_sequence
            try:
                real_rows = run_sequence(sequence)
            except GlibcProbeError as exc:
                print(f"python -m models malloc: the glibc engine failed: {exc}", file=sys.stderr)
                return 1
    except ModelInputError as exc:
        print(f"python -m models malloc: {exc}", file=sys.stderr)
        return 2
    problems = []
    if model_rows is not None and real_rows is not None:
        from models.malloc.fidelity import compare
        problems = compare(model_rows, real_rows, with_syscalls=real_rows[0].syscalls is not None)
    if args.json:
        if args.engine == "both":
            print(json.dumps({"model": [o.to_json() for o in model_rows],
                              "glibc": [o.to_json() for o in real_rows],
                              "disagreements": problems}, indent=1))
        else:
            print(json.dumps([o.to_json() for o in (model_rows or real_rows)], indent=1))
        return 1 if problems else 0
    if sequence.description:
        print(sequence.description, end="\n\n")
    for title, rows in (("model", model_rows), ("glibc", real_rows)):
        if rows is not None:
            if args.engine == "both":
                print(f"[{title}]")
            print(render_table(rows))
            if args.engine == "both":
                print()
    if args.engine == "both":
        print("\n".join(problems) if problems else "model and glibc agree on every operation")
    return 1 if problems else 0
