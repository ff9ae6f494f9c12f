"""Reserve address space and touch part of it on the machine's real kernel.

The pilot chapter's measurement (FACTS 1-4, experiment E1): a *child* process maps a
private anonymous region, then reads or writes one byte in a given share of its 4 KiB
pages, and reports after each step

* ``VmSize`` and ``VmRSS`` from ``/proc/self/status`` (the ``ps`` columns VSZ and RSS),
* the region's own ``Size``/``Rss`` line from ``/proc/self/smaps`` (FACTS 4),
* ``ru_minflt``/``ru_majflt`` from ``getrusage`` (FACTS 3).

The region sits between two ``PROT_NONE`` guard pages so the kernel cannot merge it with
a neighbouring mapping (E5), and is marked ``MADV_NOHUGEPAGE`` so faults are counted per
4 KiB page even where transparent huge pages are always on (E10).

``python -m models.realkernel.address_space_probe --reserve-mib 64 --percent 50 --access write``
prints the measurement as JSON.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
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

#: Largest region the probe will map (it is really touched when written).
MAX_RESERVE_MIB = 1024
ACCESS_MODES = ("read", "write", "read_then_write")
#: A measurement of this book's own build, shown where the probe cannot run.
RECORDED = Path(__file__).with_name("address_space_probe_recorded.json")


class ProbeUnavailable(RuntimeError):
    """The real-kernel measurement cannot run here (not Linux, no /proc)."""


@dataclass(frozen=True)
class Sample:
    """One reading, taken right after ``step``."""

    step: str
    vsz_kib: int          # VmSize
    rss_kib: int          # VmRSS
    region_size_kib: int  # smaps Size of the region
    region_rss_kib: int   # smaps Rss of the region
    minflt: int
    majflt: int


@dataclass(frozen=True)
class ProbeResult:
    reserve_mib: int
    percent: int
    access: str
    kernel: str
    samples: tuple[Sample, ...]

    def sample(self, step: str) -> Sample:
        for s in self.samples:
            if s.step == step:
                return s
        raise KeyError(f"no sample {step!r}; steps are {[s.step for s in self.samples]}")

    def deltas(self) -> dict:
        """Growth from just before the mmap to the end: what the chapter compares with the model."""
        first, last = self.sample("start"), self.samples[-1]
        return {
            "vsz_kib": last.vsz_kib - first.vsz_kib,
            "rss_kib": last.rss_kib - first.rss_kib,
            "region_rss_kib": last.region_rss_kib,
            "minflt": last.minflt - self.sample("after mmap").minflt,
            "majflt": last.majflt - first.majflt,
        }

    def table(self) -> str:
        """The readings step by step, as the child process saw them."""
        lines = [f"mmap {self.reserve_mib} MiB, {self.access.replace('_', ' ')} {self.percent} % "
                 f"of its pages (Linux {self.kernel})",
                 f"{'after':<12}{'VmSize':>12}{'VmRSS':>12}{'region Size':>13}{'region Rss':>12}"
                 f"{'ru_minflt':>11}"]
        for s in self.samples:
            lines.append(f"{s.step.replace('after ', ''):<12}{s.vsz_kib:>9,} kB{s.rss_kib:>9,} kB"
                         f"{s.region_size_kib:>10,} kB{s.region_rss_kib:>9,} kB{s.minflt:>11,}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "ProbeResult":
        raw = json.loads(text)
        raw["samples"] = tuple(Sample(**s) for s in raw["samples"])
        return cls(**raw)


def validate(reserve_mib, percent, access) -> None:
    check_whole("reserve_mib", reserve_mib, 1, MAX_RESERVE_MIB, "MiB")
    check_whole("percent", percent, 0, 100)
    check_one_of("access", access, ACCESS_MODES)


def available() -> str | None:
    """None if the probe can run here, else the reason it cannot."""
    return unavailable_reason("the real-kernel probe", "/proc/self/smaps")


def measure(reserve_mib: int = 64, percent: int = 50, access: str = "write",
            timeout: float = 60.0) -> ProbeResult:
    """Run the measurement in a child process (bounded: at most ``MAX_RESERVE_MIB``)."""
    validate(reserve_mib, percent, access)
    reason = available()
    if reason:
        raise ProbeUnavailable(reason)
    return ProbeResult.from_json(run_child(
        "models.realkernel.address_space_probe",
        ["--reserve-mib", str(reserve_mib), "--percent", str(percent), "--access", access],
        "address-space probe", timeout))


def measure_or_recorded(reserve_mib: int = 64, percent: int = 50,
                        access: str = "read_then_write") -> tuple[ProbeResult, str]:
    """Measure here if the probe can run, else the recording (64 MiB / 50 % only); and which."""
    reason = available()
    if reason is None:
        result = measure(reserve_mib, percent, access)
        return result, f"measured by the probe on Linux {result.kernel} (a live run, not a recording)"
    validate(reserve_mib, percent, access)
    if (reserve_mib, percent) != (64, 50):
        raise ModelInputError(f"{reason}; only the recorded 64 MiB / 50 % measurement can be "
                              f"shown here, got reserve_mib={reserve_mib}, percent={percent}")
    return recorded(access), f"recorded when this book was built ({reason})"


def recorded(access: str = "read_then_write") -> ProbeResult:
    """The measurement recorded on this book's build machine (for readers not on Linux).

    ``python -m models.realkernel.address_space_probe --record`` refreshes the file.
    """
    for raw in json.loads(RECORDED.read_text()):
        result = ProbeResult.from_json(json.dumps(raw))
        if result.access == access:
            return result
    raise KeyError(f"no recorded measurement for access={access!r}")


# ----------------------------------------------------------------- the child process

def _child(reserve_mib: int, percent: int, access: str) -> ProbeResult:
    libc = _libc()
    length = reserve_mib << 20
    npages = length // PAGE_SIZE
    touched = npages * percent // 100
    samples = []
    region = None

    def sample(step):
        size, rss = region_smaps_kib(region, ("Size", "Rss")) if region is not None else (0, 0)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        samples.append(Sample(step, status_kib("VmSize"), status_kib("VmRSS"), size, rss,
                              usage.ru_minflt, usage.ru_majflt))

    # VmSize counts the interpreter's own mappings too. Run the measuring code once and keep the
    # collector out of the way, so that the heap does not grow or shrink between the samples and
    # the growth from "start" is the region (and its two guard pages) alone.
    # Reading smaps makes a large temporary string; glibc raises its mmap threshold when the first
    # one is freed (FACTS 33), which would move the heap under our feet on the first real sample.
    gc.disable()
    Path("/proc/self/smaps").read_text()
    sample("warm-up")
    samples.clear()
    sample("start")
    region = map_guarded_region(libc, length)
    sample("after mmap")
    offsets = range(region, region + touched * PAGE_SIZE, PAGE_SIZE)
    if access in ("read", "read_then_write"):
        read_byte = ctypes.string_at
        for addr in offsets:
            read_byte(addr, 1)
        sample("after read")
    if access in ("write", "read_then_write"):
        memset = ctypes.memset
        for addr in offsets:
            memset(addr, 0xAB, 1)
        sample("after write")
    return ProbeResult(reserve_mib, percent, access, platform.release(), tuple(samples))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reserve-mib", type=int, default=64)
    parser.add_argument("--percent", type=int, default=50)
    parser.add_argument("--access", choices=ACCESS_MODES, default="write")
    parser.add_argument("--record", action="store_true",
                        help=f"measure every access mode at 64 MiB / 50 %% into {RECORDED.name}")
    args = parser.parse_args(argv)
    if args.record:
        results = [json.loads(measure(64, 50, mode).to_json()) for mode in ACCESS_MODES]
        RECORDED.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {RECORDED}")
        return 0
    try:
        validate(args.reserve_mib, args.percent, args.access)
    except ModelInputError as exc:
        parser.error(str(exc))
    reason = available()
    if reason:
        print(reason, file=sys.stderr)
        return 3
    print(_child(args.reserve_mib, args.percent, args.access).to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
