"""Measure the cost model's constants on this machine (chapter 8's calibration).

Seven timed steps on two fresh private anonymous regions (``MADV_NOHUGEPAGE``, so pages are
4 KiB; FACTS 29-30), in a *child process* so the caller never maps the memory under test:

====  ==========================================  ==============================================
step  what the kernel does per page               gives
====  ==========================================  ==============================================
T1    read a fresh region: fault, map the shared  a fault without allocation
      zero page (FACTS 1)
T2    write a fresh region: fault, allocate,      a first-write fault, all in
      zero, charge, map
T3    write the same pages again: resident        for comparison only (see below)
T4    ``MADV_DONTNEED``                           ``ns_per_madvise_page["MADV_DONTNEED"]``
T5    write again: fault, allocate, zero, charge  the reuse the models price after DONTNEED
T6    ``MADV_FREE``                               ``ns_per_madvise_page["MADV_FREE"]``
T7    write again, no pressure: no fault          ``ns_per_touch`` (FACTS 12-13, E3)
====  ==========================================  ==============================================

The split the models need is derived as

* ``ns_per_touch = T7``: a write to a page that is still resident but whose page-table entry
  the kernel has just cleaned -- the reuse of released memory the models price (E3's 150 ns).
  T3, a write to pages written a moment before, is several times cheaper on the book's machine
  (about 20 ns against 150-550 ns) and would under-price that reuse; it is reported, not used.
  Where T7 is not usable (``MADV_FREE`` failed, or acted as ``MADV_DONTNEED`` on 4.5-4.11
  without swap, FACTS 15), T3 is used instead.
* ``ns_per_fault = T1``: a fault that allocates nothing (it maps the zero page, FACTS 1);
* ``ns_per_zeroed_page = max(T5 - T1 - ns_per_touch, 0)``: the rest of a write fault after
  ``MADV_DONTNEED``, so the model's price of that reuse, fault + zeroed page + touch, is T5
  exactly.  This constant therefore stands for *allocate, zero and charge* one page, not for a
  4 KiB ``memset``.  T2 (a write fault on a never-touched region) is the check: it takes the
  same fault path, so it should be close to T5.

FACTS 9 / E3 measured only T4..T7 on the book's machine; the 650/400 ns split of its 1.2 us
rewrite is an assumption (:mod:`models.goruntime.cost`).

Each step is timed over the whole region with ``perf_counter_ns`` around the page loop (a numpy
strided access, one byte per page) or the ``madvise`` call only, divided by the number of
pages; ``rounds`` rounds on fresh regions, the first dropped as a warm-up.  Minor faults per
page come from ``getrusage`` around the same loop.

    >>> cal = calibrate(region_mib=32, rounds=3)          # doctest: +SKIP
    >>> cal.cost_model().ns_per_touch                     # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from typing import Optional

from models.errors import ModelInputError
from models.goruntime.cost import CostModel
from models.units import PAGE_SIZE

MiB = 1 << 20
#: Step names, in the order the child runs them.
STEPS = ("T1", "T2", "T3", "T4", "T5", "T6", "T7")
STEP_TEXT = {
    "T1": "read a fresh region",
    "T2": "write a fresh region",
    "T3": "write the same pages again",
    "T4": "MADV_DONTNEED",
    "T5": "write again after MADV_DONTNEED",
    "T6": "MADV_FREE",
    "T7": "write again after MADV_FREE",
}
#: Faults per page each step should take on 4.12+ (a wrong value marks a step unusable).
EXPECTED_FAULTS = {"T1": 1.0, "T2": 1.0, "T3": 0.0, "T4": 0.0, "T5": 1.0, "T6": 0.0, "T7": 0.0}
#: Share of MemAvailable both regions together may take (as the scenario engine's SAFE_SHARE).
SAFE_SHARE = 0.25
MIN_REGION_MIB, MAX_REGION_MIB = 4, 512
CHILD_TIMEOUT = 120.0
#: Warning thresholds of the checks (chapter 8, section 8.3).
T5_VS_T2 = 0.25
MAX_SPREAD = 0.30

_MADV_DONTNEED, _MADV_FREE, _MADV_NOHUGEPAGE = 4, 8, 15
_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class CalibrationUnavailable(RuntimeError):
    """The calibration cannot run here (not Linux, or no room for even the smallest regions)."""


def calibration_support() -> tuple[bool, str]:
    if not sys.platform.startswith("linux"):
        return False, f"the calibration needs Linux (this is {sys.platform})"
    return True, ""


def _mem_available() -> int:
    from models.realkernel.engine import mem_available
    return mem_available()


def fit_region_mib(region_mib: int, mem_available: int) -> int:
    """``region_mib`` halved until both regions fit in SAFE_SHARE of ``mem_available`` bytes."""
    size = region_mib
    while 2 * size * MiB > SAFE_SHARE * mem_available:
        size //= 2
        if size < MIN_REGION_MIB:
            raise CalibrationUnavailable(
                f"not enough memory: two {MIN_REGION_MIB} MiB regions exceed {int(SAFE_SHARE * 100)}% "
                f"of MemAvailable ({mem_available >> 20} MiB)")
    return size


@dataclass(frozen=True)
class StepStats:
    """One step over the kept rounds: ns per page (median, min, max) and faults per page."""
    step: str
    ns_median: float
    ns_min: float
    ns_max: float
    faults_per_page: float
    error: Optional[str] = None     # e.g. "EINVAL" for MADV_FREE before 4.5

    @property
    def spread(self) -> float:
        """(max - min) / median: the round-to-round noise."""
        return (self.ns_max - self.ns_min) / self.ns_median if self.ns_median > 0 else 0.0


@dataclass(frozen=True)
class Calibration:
    """What the child measured, and the constants derived from it."""
    kernel_release: str
    hostname: str
    region_mib: int
    requested_mib: int
    rounds: int                      # kept rounds (the warm-up round is not counted)
    steps: dict                      # name -> StepStats
    raw: list = field(default_factory=list)   # per round: {step: [ns_per_page, faults_per_page, error]}

    # -- derived
    def usable(self, step: str) -> bool:
        """A step whose fault count is what the derivation assumes (else it is not used)."""
        s = self.steps.get(step)
        return s is not None and s.error is None and abs(s.faults_per_page - EXPECTED_FAULTS[step]) < 0.25

    @property
    def lazy(self) -> bool:
        """MADV_FREE succeeded and the write after it took no fault: the kernel freed lazily."""
        return self.usable("T6") and self.usable("T7")

    def cost_model(self, fallback: Optional[CostModel] = None) -> CostModel:
        """``CostModel(ns_per_fault=T1, ns_per_zeroed_page=max(T5-T1-T7, 0), ns_per_touch=T7, ...)``.

        Where the kernel did not free lazily (see :attr:`lazy`), ``ns_per_touch`` is T3 and the
        ``MADV_FREE`` price is the ``fallback``'s (default: the book's), since T6 then measured
        something else (EINVAL, or the DONTNEED path of 4.5-4.11 without swap).
        """
        fallback = fallback or CostModel()
        t = {k: v.ns_median for k, v in self.steps.items()}
        touch = t["T7"] if self.lazy else t["T3"]
        madv = {"MADV_DONTNEED": t["T4"],
                "MADV_FREE": t["T6"] if self.lazy else fallback.ns_per_madvise_page["MADV_FREE"]}
        return CostModel(ns_per_fault=t["T1"], ns_per_zeroed_page=max(t["T5"] - t["T1"] - touch, 0.0),
                         ns_per_touch=touch, ns_per_madvise_page=madv,
                         source=f"measured on {self.hostname}, Linux {self.kernel_release}")

    def warnings(self) -> list[str]:
        out = []
        if self.region_mib < self.requested_mib:
            out.append(f"regions halved to {self.region_mib} MiB (from {self.requested_mib} MiB) to stay "
                       f"within {int(SAFE_SHARE * 100)}% of MemAvailable")
        s = self.steps
        if s["T2"].ns_median > 0 and abs(s["T5"].ns_median - s["T2"].ns_median) > T5_VS_T2 * s["T2"].ns_median:
            out.append(f"T5 ({s['T5'].ns_median:,.0f} ns) differs from T2 ({s['T2'].ns_median:,.0f} ns) by more "
                       f"than {T5_VS_T2:.0%}")
        for name in STEPS:
            st = s[name]
            if st.error:
                out.append(f"{name} ({STEP_TEXT[name]}) failed with {st.error}: not used")
            elif not self.usable(name):
                out.append(f"{name} took {st.faults_per_page:.2f} faults per page, expected "
                           f"{EXPECTED_FAULTS[name]:.0f}: not used" if name in ("T6", "T7") else
                           f"{name} took {st.faults_per_page:.2f} faults per page, expected "
                           f"{EXPECTED_FAULTS[name]:.0f} (transparent huge pages?)")
            elif st.spread > MAX_SPREAD:
                out.append(f"{name}: spread {st.spread:.0%} of the median over {self.rounds} rounds (noisy)")
        return out

    def to_json(self) -> dict:
        return {"kernel_release": self.kernel_release, "hostname": self.hostname,
                "region_mib": self.region_mib, "requested_mib": self.requested_mib, "rounds": self.rounds,
                "steps": {k: asdict(v) for k, v in self.steps.items()}, "raw": self.raw}

    @classmethod
    def from_json(cls, obj: dict) -> "Calibration":
        try:
            steps = {k: StepStats(**v) for k, v in obj["steps"].items()}
            if set(steps) != set(STEPS):
                raise KeyError(f"steps {sorted(steps)}")
            return cls(obj["kernel_release"], obj["hostname"], obj["region_mib"], obj["requested_mib"],
                       obj["rounds"], steps, obj.get("raw", []))
        except (KeyError, TypeError) as exc:
            raise ModelInputError(f"malformed calibration ({exc})") from None


def summarize(raw: list[dict], *, drop_first: bool = True) -> dict:
    """Per step: median / min / max of ns per page and the median faults per page.

    ``raw`` is one dict per round, ``{step: [ns_per_page, faults_per_page, error]}``; the first
    round is a warm-up and dropped (``drop_first``) when there is more than one.
    """
    import numpy as np
    if not raw:
        raise ModelInputError("summarize needs at least one round")
    kept = raw[1:] if drop_first and len(raw) > 1 else raw
    out = {}
    for name in STEPS:
        rows = [r[name] for r in kept if name in r]
        errors = [row[2] for row in rows if row[2]]
        ok = [row for row in rows if not row[2]]
        if not ok:
            out[name] = StepStats(name, float("nan"), float("nan"), float("nan"), float("nan"),
                                  error=errors[0] if errors else "not run")
            continue
        ns = np.array([row[0] for row in ok], dtype=float)
        faults = np.array([row[1] for row in ok], dtype=float)
        out[name] = StepStats(name, float(np.median(ns)), float(ns.min()), float(ns.max()),
                              float(np.median(faults)), errors[0] if errors else None)
    return out


# --------------------------------------------------------------------------- the child

def _measure_rounds(region_mib: int, rounds: int) -> list[dict]:
    """Runs in the child: ``rounds`` rounds of T1..T7 on fresh regions (raw per-round numbers)."""
    import ctypes
    import errno
    import mmap
    import resource
    import time

    import numpy as np

    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    length = region_mib * MiB
    pages = length // PAGE_SIZE

    def minflt() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    def madvise(addr: int, advice: int) -> Optional[str]:
        if libc.madvise(addr, length, advice) != 0:
            return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
        return None

    def one_round(rpages, waddr, wpages) -> dict:
        row: dict = {}

        def timed(name, fn):
            f0 = minflt()
            t0 = time.perf_counter_ns()
            err = fn()
            t1 = time.perf_counter_ns()
            f1 = minflt()
            row[name] = [(t1 - t0) / pages, (f1 - f0) / pages, err]

        def write(value):
            wpages[:] = value

        timed("T1", lambda: (int(rpages.sum()), None)[1])   # reads one byte of every page
        timed("T2", lambda: write(1))
        timed("T3", lambda: write(2))
        timed("T4", lambda: madvise(waddr, _MADV_DONTNEED))
        timed("T5", lambda: write(3))
        timed("T6", lambda: madvise(waddr, _MADV_FREE))
        if row["T6"][2]:
            row["T7"] = [float("nan"), float("nan"), "skipped: MADV_FREE failed"]
        else:
            timed("T7", lambda: write(4))
        return row

    def mapped() -> tuple:
        buf = mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                        prot=mmap.PROT_READ | mmap.PROT_WRITE)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        err = madvise(addr, _MADV_NOHUGEPAGE)
        if err:
            buf.close()
            raise OSError(f"madvise(MADV_NOHUGEPAGE): {err}")
        return buf, addr

    out = []
    for _ in range(rounds):
        rbuf, _raddr = mapped()
        wbuf, waddr = mapped()
        try:
            out.append(one_round(np.frombuffer(rbuf, dtype=np.uint8)[::PAGE_SIZE], waddr,
                                 np.frombuffer(wbuf, dtype=np.uint8)[::PAGE_SIZE]))
        finally:
            # the numpy views died with one_round's frame; munmap both regions now
            rbuf.close()
            wbuf.close()
    return out


def _child_main(argv: list[str]) -> int:
    region_mib, rounds = int(argv[0]), int(argv[1])
    raw = _measure_rounds(region_mib, rounds)
    print(json.dumps({"raw": raw}), flush=True)
    return 0


def calibrate(region_mib: int = 128, rounds: int = 5, *, timeout: float = CHILD_TIMEOUT) -> Calibration:
    """Measure T1..T7 in a child process (``rounds`` kept rounds plus one warm-up round).

    The regions are halved until both together fit in a quarter of MemAvailable (the returned
    ``region_mib`` says what was used).  Raises ModelInputError for bad arguments and
    :class:`CalibrationUnavailable` where it cannot run (not Linux, no memory, the child failed).
    """
    if isinstance(region_mib, bool) or not isinstance(region_mib, int) or \
            not MIN_REGION_MIB <= region_mib <= MAX_REGION_MIB:
        raise ModelInputError(f"region_mib must be a whole number in {MIN_REGION_MIB}..{MAX_REGION_MIB}, "
                              f"got {region_mib!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= 20:
        raise ModelInputError(f"rounds must be a whole number in 1..20, got {rounds!r}")
    ok, why = calibration_support()
    if not ok:
        raise CalibrationUnavailable(why)
    size = fit_region_mib(region_mib, _mem_available())
    env = dict(os.environ)
    env["PYTHONPATH"] = _PROJECT_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        proc = subprocess.run([sys.executable, "-m", "models.realkernel.calibrate", "--child", str(size),
                               str(rounds + 1)], capture_output=True, text=True, timeout=timeout,
                              env=env, cwd=_PROJECT_ROOT)
    except subprocess.TimeoutExpired:
        raise CalibrationUnavailable(f"the calibration child did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise CalibrationUnavailable(f"the calibration child exited with {proc.returncode}: "
                                     f"{proc.stderr.strip()[-500:]}")
    raw = json.loads(proc.stdout.strip().splitlines()[-1])["raw"]
    return Calibration(kernel_release=os.uname().release, hostname=platform.node() or "this machine",
                       region_mib=size, requested_mib=region_mib, rounds=rounds, steps=summarize(raw),
                       raw=raw)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        return _child_main(argv[1:])
    import argparse
    parser = argparse.ArgumentParser(prog="python -m models.realkernel.calibrate",
                                     description="Measure the cost model's constants on this machine.")
    parser.add_argument("--region-mib", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        cal = calibrate(args.region_mib, args.rounds)
    except ModelInputError as exc:
        print(f"calibrate: {exc}", file=sys.stderr)
        return 2
    except CalibrationUnavailable as exc:
        print(f"calibrate: cannot run here: {exc}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(cal.to_json(), indent=1))
        return 0
    for name in STEPS:
        s = cal.steps[name]
        print(f"{name} {STEP_TEXT[name]:<34} {s.ns_median:>8,.0f} ns/page  [{s.ns_min:,.0f}-{s.ns_max:,.0f}]  "
              f"{s.faults_per_page:.2f} faults/page{'  ' + s.error if s.error else ''}")
    cm = cal.cost_model()
    print(f"-> ns_per_fault {cm.ns_per_fault:,.0f}, ns_per_zeroed_page {cm.ns_per_zeroed_page:,.0f}, "
          f"ns_per_touch {cm.ns_per_touch:,.0f}, MADV_DONTNEED {cm.ns_per_madvise_page['MADV_DONTNEED']:,.0f}, "
          f"MADV_FREE {cm.ns_per_madvise_page['MADV_FREE']:,.0f} ({cm.source})")
    for w in cal.warnings():
        print(f"warning: {w}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
