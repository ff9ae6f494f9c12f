"""Page tables of a sparse or dense touch pattern, measured on the machine's real kernel.

Chapter 1's page-table measurement (docs/KERNEL-NOTES.md K3): a *child* process maps a
private anonymous region between two ``PROT_NONE`` guard pages (so that it is not merged
with a neighbour), marks it ``MADV_NOHUGEPAGE`` (4 KiB entries even where transparent huge
pages are on), then reads or writes one byte in one page of every ``stride`` ("spread") or in
as many pages packed at the start ("packed").  Before and after, it reads

* ``VmPTE`` from ``/proc/self/status``: the process's page tables, in kB (proc.rst);
* the region's ``Rss`` line from ``/proc/self/smaps``;
* ``ru_minflt`` from ``getrusage``.

``VmPTE`` counts every level of the page tables; a region of up to 1 GiB also needs one or two
middle-level (PMD) pages, which the page model does not count: the kernel reads up to a few
pages more than the model's one PTE page per 2 MiB block touched.

``python -m models.realkernel.pagetable_probe --reserve-mib 1024 --stride 512 --layout spread
--access write`` prints one measurement as JSON; ``--record`` refreshes the recording in
``book/recorded/ch01-pagetables.json`` (shown where the probe cannot run).
"""
from __future__ import annotations

import argparse
import ctypes
import datetime as _dt
import json
import os
import platform
import resource
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from models.errors import ModelInputError
from models.realkernel.childproc import (check_one_of, check_whole, libc as _libc,
                                         map_guarded_region, region_smaps_kib, run_child,
                                         status_kib, unavailable_reason)
from models.units import PAGE_SIZE

MAX_RESERVE_MIB = 1024
LAYOUTS = ("spread", "packed")
ACCESS_MODES = ("read", "write")
#: The cases chapter 1 shows: (reserve_mib, stride, layout, access).
CHAPTER_CASES = ((1024, 512, "spread", "read"), (1024, 512, "spread", "write"),
                 (1024, 512, "packed", "write"), (1024, 64, "spread", "write"),
                 (1024, 1, "spread", "write"))
RECORDED = Path(__file__).resolve().parents[2] / "book" / "recorded" / "ch01-pagetables.json"


class ProbeUnavailable(RuntimeError):
    """The measurement cannot run here (not Linux, no /proc)."""


@dataclass(frozen=True)
class PageTableMeasurement:
    """Growth of the child's counters from just after the mmap to after the touches."""

    reserve_mib: int
    stride: int
    layout: str
    access: str
    kernel: str
    touched_pages: int
    vmpte_kib: int        # VmPTE growth (all page-table levels)
    region_rss_kib: int   # smaps Rss of the region after the touches
    minflt: int

    @property
    def pagetable_pages(self) -> int:
        return self.vmpte_kib * 1024 // PAGE_SIZE


def validate(reserve_mib, stride, layout, access) -> None:
    check_whole("reserve_mib", reserve_mib, 2, MAX_RESERVE_MIB, "MiB")
    check_whole("stride", stride, 1, 512, "pages")
    check_one_of("layout", layout, LAYOUTS)
    check_one_of("access", access, ACCESS_MODES)


def available() -> str | None:
    """None if the probe can run here, else the reason it cannot."""
    return unavailable_reason("the page-table probe", "/proc/self/status VmPTE")


def measure(reserve_mib: int, stride: int, layout: str, access: str,
            timeout: float = 60.0) -> PageTableMeasurement:
    """Run one measurement in a child process (bounded: at most ``MAX_RESERVE_MIB``)."""
    validate(reserve_mib, stride, layout, access)
    reason = available()
    if reason:
        raise ProbeUnavailable(reason)
    return PageTableMeasurement(**json.loads(run_child(
        "models.realkernel.pagetable_probe",
        ["--reserve-mib", str(reserve_mib), "--stride", str(stride), "--layout", layout,
         "--access", access],
        "page-table probe", timeout)))


def record(path: Path = RECORDED) -> dict:
    """Measure the chapter's cases here and write the recording."""
    rows = [asdict(measure(*case)) for case in CHAPTER_CASES]
    rec = {"recorded_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
           "kernel_release": platform.release(), "machine": platform.machine(), "rows": rows}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=1) + "\n")
    return rec


def recorded(path: Path = RECORDED) -> tuple[list[PageTableMeasurement], str]:
    """The chapter's cases as recorded on the book's build machine, and a label saying so."""
    rec = json.loads(Path(path).read_text())
    rows = [PageTableMeasurement(**row) for row in rec["rows"]]
    return rows, (f"recorded on {rec['recorded_at'][:10]}, Linux {rec['kernel_release']} "
                  f"({rec['machine']}), this book's build machine")


def measure_or_recorded() -> tuple[list[PageTableMeasurement], str, bool]:
    """The chapter's cases measured here if possible, else the recording: (rows, label, live)."""
    reason = available()
    if reason is None and os.environ.get("BOOK_FORCE_RECORDED", "") != "1":
        rows = [measure(*case) for case in CHAPTER_CASES]
        return rows, f"measured live by the probe on Linux {rows[0].kernel}", True
    rows, label = recorded()
    return rows, f"{label}; not a live run: {reason or 'BOOK_FORCE_RECORDED is set'}", False


# ----------------------------------------------------------------- the child process

def _child(reserve_mib: int, stride: int, layout: str, access: str) -> PageTableMeasurement:
    length = reserve_mib << 20
    npages = length // PAGE_SIZE
    count = npages // stride
    region = map_guarded_region(_libc(), length)
    step = stride if layout == "spread" else 1
    addresses = [region + i * step * PAGE_SIZE for i in range(count)]
    touch = ctypes.string_at if access == "read" else (lambda a, n: ctypes.memset(a, 0xAB, n))
    touch(region, 0)  # warm the code path (no page touched: length 0)
    pte0, flt0 = status_kib("VmPTE"), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for addr in addresses:
        touch(addr, 1)
    flt1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    return PageTableMeasurement(reserve_mib, stride, layout, access, platform.release(), count,
                                status_kib("VmPTE") - pte0,
                                region_smaps_kib(region, ("Rss",))[0], flt1 - flt0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reserve-mib", type=int, default=1024)
    parser.add_argument("--stride", type=int, default=512)
    parser.add_argument("--layout", choices=LAYOUTS, default="spread")
    parser.add_argument("--access", choices=ACCESS_MODES, default="write")
    parser.add_argument("--record", action="store_true",
                        help=f"measure the chapter's cases into {RECORDED}")
    args = parser.parse_args(argv)
    if args.record:
        record()
        print(f"wrote {RECORDED}")
        return 0
    try:
        validate(args.reserve_mib, args.stride, args.layout, args.access)
    except ModelInputError as exc:
        parser.error(str(exc))
    reason = available()
    if reason:
        print(reason, file=sys.stderr)
        return 3
    print(json.dumps(asdict(_child(args.reserve_mib, args.stride, args.layout, args.access))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
