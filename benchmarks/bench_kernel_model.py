"""Speed of the page model (models.kernel) against a per-page pure-Python implementation.

    .venv/bin/python benchmarks/bench_kernel_model.py [--steps 1000] [--seed 1] [--quick]

1. A 1,000-step scenario over a 4 GiB address space (four 1 GiB regions, 1,048,576 pages):
   touches, MADV_FREE / MADV_DONTNEED, pressure under a memory budget that forces reclaim,
   and unaligned / past-the-end madvise calls.  It runs on the numpy model and on
   ``ReferenceSpace`` below -- the same semantics, one page at a time in plain Python -- and
   every step's observations (RSS, LazyFree, faults, zero pages, error) must agree.
   Target: the model is >= 100x faster.  ``--pagetables`` runs both with page tables charged.
2. The worst single step on a 1 GiB region (write, read, MADV_FREE, MADV_DONTNEED, reclaim of
   the whole region by pressure).  Target: < 50 ms.

``ReferenceSpace`` is also the oracle of the differential property test
(tests/test_kernel_properties.py), which is why it lives in an importable module.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from collections import OrderedDict
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.errors import KernelError, ModelInputError, OOMKill  # noqa: E402
from models.kernel import AddressSpace  # noqa: E402
from models.kernel.advice import ADVICE, REFUSED  # noqa: E402
from models.kernel.profile import profile_for  # noqa: E402

PAGE = 4096
N, Z, R, L, X, W = 0, 1, 2, 3, 4, 5      # NOT_PRESENT ZERO_PAGE RESIDENT LAZYFREE RECLAIMED SWAPPED
BATCH = 32
TABLE = 512            # pages per page-table page; a mapping starts 1 page into its first block
WINDOW = 16


class _RefRegion:
    serial = 0

    def __init__(self, name, npages, shared):
        _RefRegion.serial += 1
        self.key = _RefRegion.serial
        self.name, self.shared, self.n = name, shared, npages
        self.state = [N] * npages
        self.data = [False] * npages
        self.accessed = [False] * npages
        self.present = [False] * npages
        self.tables: set[int] = set()     # 2 MiB blocks with a page-table page
        self.alive = True


class ReferenceSpace:
    """The page model's semantics, page by page, with a reclaim round per faulting page.

    Written straight from the rules in models/kernel/space.py's docstring (and LIMITS.md), with
    no vectorisation and no bulk shortcuts: the oracle for the numpy model.
    """

    def __init__(self, kernel_version="6.18", swap=False, memory_limit=None, pagetables=False):
        self.profile = profile_for(kernel_version, swap)
        self.pagetables = pagetables
        self.pt = 0
        self.budget = None if memory_limit is None else memory_limit // PAGE
        self.regions: dict[str, _RefRegion] = {}
        self.file_lru: OrderedDict = OrderedDict()   # (region key, page) -> region, oldest first
        self.anon_lru: OrderedDict = OrderedDict()
        self.charged = self.pressure_pages = self.faults = self.major_faults = 0
        self.dead = False

    # -- charging and reclaim -----------------------------------------------------------------
    def _reclaim_round(self) -> None:
        dropped = 0
        while dropped < BATCH and self.file_lru:
            (rkey, p), reg = self.file_lru.popitem(last=False)
            if not reg.alive or p >= reg.n:
                continue
            st = reg.state[p]
            if st == L:
                if reg.accessed[p]:            # young: once more round the list
                    reg.accessed[p] = False
                    self.file_lru[(rkey, p)] = reg
                    continue
                reg.state[p] = X
                reg.data[p] = False
                self.charged -= 1
                dropped += 1
            elif st == R and self.profile.swap:   # written since MADV_FREE: to the anon list
                self.anon_lru[(rkey, p)] = reg
        if dropped == 0 and self.profile.swap:
            while dropped < BATCH and self.anon_lru:
                (rkey, p), reg = self.anon_lru.popitem(last=False)
                if reg.alive and p < reg.n and reg.state[p] == R:
                    reg.state[p] = W
                    self.charged -= 1
                    dropped += 1

    def _charge_one(self, table: bool = False) -> bool:
        if self.budget is not None and self.charged + self.pt + 1 > self.budget:
            self._reclaim_round()
            if self.charged + self.pt + 1 > self.budget:
                return False
        if table:
            self.pt += 1
        else:
            self.charged += 1
        return True

    def _map_tables(self, reg, lo, last):
        if not self.pagetables:
            return
        for b in range((lo + 1) // TABLE, (last + 1) // TABLE + 1):
            if b not in reg.tables:
                if not self._charge_one(table=True):
                    self._oom()
                reg.tables.add(b)

    def _drop_tables(self, reg, blocks):
        gone = reg.tables & set(blocks)
        reg.tables -= gone
        self.pt -= len(gone)

    def _oom(self):
        self.dead = True
        raise OOMKill("reference: out of memory")

    def _region(self, name) -> _RefRegion:
        if name not in self.regions:
            raise ModelInputError(f"unknown region {name!r}")
        return self.regions[name]

    # -- operations ---------------------------------------------------------------------------
    def mmap(self, region, length, shared=False):
        if region in self.regions:
            raise ModelInputError("already mapped")
        self.regions[region] = _RefRegion(region, -(-length // PAGE), shared)

    def munmap(self, region):
        reg = self.regions.pop(region)
        reg.alive = False
        self._drop_tables(reg, list(reg.tables))
        if reg.shared:
            self.charged -= sum(reg.present)
        else:
            self.charged -= sum(1 for s in reg.state if s in (R, L))

    def resize(self, region, new_length):
        reg = self._region(region)
        new = -(-new_length // PAGE)
        if new >= reg.n:
            extra = new - reg.n
            for attr, fill in (("state", N), ("data", False), ("accessed", False), ("present", False)):
                getattr(reg, attr).extend([fill] * extra)
        else:
            for p in range(new, reg.n):
                if reg.state[p] in (R, L):
                    self.charged -= 1
                self.file_lru.pop((reg.key, p), None)
                self.anon_lru.pop((reg.key, p), None)
            for attr in ("state", "data", "accessed", "present"):
                del getattr(reg, attr)[new:]
            self._drop_tables(reg, [b for b in reg.tables if new == 0 or b * TABLE - 1 >= new])
        reg.n = new

    def pressure(self, length):
        n = -(-length // PAGE)
        if self.pagetables:
            for _ in range(n // TABLE + 1):
                if not self._charge_one(table=True):
                    self._oom()
        for _ in range(n):
            if not self._charge_one():
                self._oom()
            self.pressure_pages += 1
            self.faults += 1
        return n

    def touch(self, region, offset, length, access, gup=False):
        reg = self._region(region)
        if length == 0:
            return 0, (None if access == "write" else 0)
        lo, hi = offset // PAGE, (offset + length - 1) // PAGE + 1
        if hi > reg.n:
            raise ModelInputError("outside")
        before = self.faults
        self._map_tables(reg, lo, hi - 1)
        stores = access == "write" and not gup
        for p in range(lo, hi):
            key = (reg.key, p)
            st = reg.state[p]
            if reg.shared:
                if st == R:
                    if stores:
                        reg.data[p] = True
                    continue
                if not reg.present[p] and not self._charge_one():
                    self._oom()
                self.faults += 1
                if access == "read":
                    w0 = p // WINDOW * WINDOW
                    for q in range(w0, min(w0 + WINDOW, reg.n)):
                        if reg.present[q]:
                            reg.state[q] = R
                elif stores:
                    reg.data[p] = True
                reg.present[p] = True
                reg.state[p] = R
            elif access == "write":
                if st == L:
                    reg.state[p] = R
                    reg.accessed[p] = False
                elif st != R:
                    if not self._charge_one():
                        self._oom()
                    if st == W:
                        self.major_faults += 1
                    else:
                        self.faults += 1
                    reg.state[p] = R
                    if self.profile.swap:
                        self.anon_lru[key] = reg
                if stores:
                    reg.data[p] = True
            else:
                if st in (N, X):
                    self.faults += 1
                    reg.state[p] = Z
                elif st == L and not gup:
                    reg.accessed[p] = True
                elif st == W:
                    if not self._charge_one():
                        self._oom()
                    self.major_faults += 1
                    reg.state[p] = R
                    self.anon_lru[key] = reg
        zero = None if access == "write" else sum(1 for p in range(lo, hi) if not reg.data[p])
        return self.faults - before, zero

    def madvise(self, region, offset, length, advice):
        reg = self._region(region)
        if advice in REFUSED or advice in REFUSED.values():
            raise ModelInputError("refused advice")
        adv = ADVICE.get(advice) if isinstance(advice, str) else \
            next((a for a in ADVICE.values() if a.value == advice), None)
        if adv is None or (self.profile.major, self.profile.minor) < adv.since:
            raise KernelError("EINVAL", "advice")
        if offset % PAGE:
            raise KernelError("EINVAL", "unaligned")
        if length == 0:
            return
        first, last = offset // PAGE, offset // PAGE + -(-length // PAGE)
        kind = adv.effect
        if kind == "free" and not self.profile.lazy_free:
            kind = "dontneed"
        if ((kind == "free" and reg.shared) or (kind == "remove" and not reg.shared)
                or (kind == "wipeonfork" and reg.shared) or kind == "collapse"):
            raise KernelError("EINVAL", "wrong mapping")
        end = min(last, reg.n)
        if kind in ("populate_read", "populate_write") and first < end:
            self.touch(region, first * PAGE, (end - first) * PAGE,
                       "write" if kind == "populate_write" else "read", gup=True)
        if kind == "dontneed" and (self.profile.major, self.profile.minor) >= (6, 14):
            self._drop_tables(reg, [b for b in range(-(-(first + 1) // TABLE), (end + 1) // TABLE)])
        cold = []
        for p in range(first, end):
            key = (reg.key, p)
            st = reg.state[p]
            if kind in ("dontneed", "remove") or (kind == "pageout" and reg.shared):
                if reg.shared:
                    reg.state[p] = N
                    if kind == "remove":
                        if reg.present[p]:
                            self.charged -= 1
                        reg.present[p] = False
                        reg.data[p] = False
                    continue
                if st in (R, L):
                    self.charged -= 1
                reg.state[p] = N
                reg.data[p] = False
                reg.accessed[p] = False
                self.file_lru.pop(key, None)
                self.anon_lru.pop(key, None)
            elif kind == "free":
                reg.accessed[p] = False
                if st == R:
                    reg.state[p] = L
                    if key not in self.file_lru:      # a re-freed page keeps its place
                        self.file_lru[key] = reg
                    self.anon_lru.pop(key, None)
                elif st == W:
                    reg.state[p] = N
                    reg.data[p] = False
            elif kind == "cold":
                reg.accessed[p] = False
                if self.profile.swap and not reg.shared and st == R and key in self.anon_lru:
                    cold.append(key)
            elif kind == "pageout":
                if st == L:
                    reg.state[p] = X
                    reg.data[p] = False
                    reg.accessed[p] = False
                    self.file_lru.pop(key, None)
                    self.charged -= 1
                elif st == R and key in self.file_lru:     # written since MADV_FREE: kept
                    del self.file_lru[key]
                    if self.profile.swap:
                        self.anon_lru[key] = reg
                elif st == R and self.profile.swap:
                    reg.state[p] = W
                    self.anon_lru.pop(key, None)
                    self.charged -= 1
        for key in reversed(cold):          # to the old end, in address order
            self.anon_lru.move_to_end(key, last=False)
        if last > reg.n:
            raise KernelError("ENOMEM", "past the end")

    # -- observations -------------------------------------------------------------------------
    def rss_pages(self, region=None):
        regs = self.regions.values() if region is None else [self.regions[region]]
        return sum(sum(1 for s in r.state if s == R or (s == L and not r.shared)) for r in regs)

    def lazyfree_pages(self, region=None):
        if not self.profile.smaps_lazyfree:
            return 0
        regs = self.regions.values() if region is None else [self.regions[region]]
        return sum(sum(1 for s in r.state if s == L) for r in regs)

    def states(self, region):
        return list(self.regions[region].state)


# ----------------------------------------------------------------------------- scenario
def make_scenario(steps: int, seed: int, region_pages: int = 1 << 18, regions: int = 4,
                  max_chunk: int = 1 << 16):
    """A reproducible list of (op, args) over ``regions`` regions of ``region_pages`` pages."""
    rng = random.Random(seed)
    names = [f"r{i}" for i in range(regions)]
    ops = [("mmap", (name, region_pages * PAGE, i == regions - 1)) for i, name in enumerate(names)]
    while len(ops) < steps:
        kind = rng.random()
        name = rng.choice(names)
        n = rng.randint(1, max_chunk)
        start = rng.randrange(0, region_pages - n + 1)
        if kind < 0.40:
            ops.append(("touch", (name, start * PAGE, n * PAGE, rng.choice(("write", "write", "read")))))
        elif kind < 0.60:
            ops.append(("madvise", (name, start * PAGE, n * PAGE, "MADV_FREE")))
        elif kind < 0.75:
            ops.append(("madvise", (name, start * PAGE, n * PAGE, "MADV_DONTNEED")))
        elif kind < 0.80:
            ops.append(("madvise", (name, (region_pages - n // 2) * PAGE, n * PAGE,
                                    rng.choice(("MADV_FREE", "MADV_DONTNEED")))))
        elif kind < 0.82:
            ops.append(("madvise", (name, start * PAGE + 1, PAGE, "MADV_FREE")))
        elif kind < 0.86:
            ops.append(("madvise", (name, start * PAGE, n * PAGE, rng.choice(
                ("MADV_COLD", "MADV_PAGEOUT", "MADV_POPULATE_READ", "MADV_POPULATE_WRITE",
                 "MADV_NORMAL", "MADV_REMOVE")))))
        elif kind < 0.90:
            ops.append(("pressure", (rng.randint(1, max_chunk // 32) * PAGE,)))
        else:
            ops.append(("touch", (name, start * PAGE, n * PAGE, "write")))
    return ops[:steps]


def run(space, ops):
    """Play ``ops``; return per-step observations and per-step seconds."""
    out, times = [], []
    for op, args in ops:
        t0 = time.perf_counter()
        faults0 = space.faults
        err = None
        zero = None
        try:
            if op == "touch":
                res = space.touch(*args)
                zero = res[1] if isinstance(res, tuple) else res.zero_pages
            else:
                getattr(space, op)(*args)
        except KernelError as exc:
            err = exc.errno_name
        except OOMKill:
            err = "OOM_KILL"
        times.append(time.perf_counter() - t0)
        out.append((op, space.rss_pages(), space.lazyfree_pages(), space.faults - faults0, zero, err))
        if err == "OOM_KILL":
            break
    return out, times


def worst_step_1gib() -> tuple[float, str]:
    """The slowest of the heavy whole-region steps on one 1 GiB region (best of 3 runs each)."""
    size = 1 << 30
    results = {}
    for _ in range(3):
        sp = AddressSpace(memory_limit=size + (64 << 20))
        sp.mmap("big", size)
        steps = [
            ("write 1 GiB (262,144 faults)", lambda: sp.touch("big", 0, size, "write")),
            ("MADV_FREE 1 GiB", lambda: sp.madvise("big", 0, size, "MADV_FREE")),
            ("read 1 GiB of LAZYFREE", lambda: sp.touch("big", 0, size, "read")),
            ("MADV_FREE again (clears young bits)", lambda: sp.madvise("big", 0, size, "MADV_FREE")),
            ("pressure 1 GiB: reclaim 960 MiB", lambda: sp.pressure(size)),
            ("read 1 GiB (reclaimed -> zero page)", lambda: sp.touch("big", 0, size, "read")),
            ("MADV_DONTNEED 1 GiB", lambda: sp.madvise("big", 0, size, "MADV_DONTNEED")),
            ("write 1 GiB under a full budget (OOM)", lambda: _expect_oom(sp, size)),
        ]
        for label, fn in steps:
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            results[label] = min(results.get(label, dt), dt)
    # Go-like fragmentation: 6 of every 8 pages freed, one madvise call per run (32,768 calls),
    # highest addresses first (as the Go scavenger releases), then a second region freed later,
    # pressure, and the whole heap written again under the budget.
    for order in ("ascending", "descending"):
        for _ in range(3):
            sp = AddressSpace(memory_limit=size + (256 << 20))
            sp.mmap("heap", size)
            sp.touch("heap", 0, size, "write")
            n = size // PAGE
            starts = range(0, n, 8) if order == "ascending" else range(n - 8, -1, -8)
            for k in starts:
                sp.madvise("heap", k * PAGE, 6 * PAGE, "MADV_FREE")
            sp.mmap("cache", 256 << 20)
            sp.touch("cache", 0, 256 << 20, "write")
            sp.madvise("cache", 0, 256 << 20, "MADV_FREE")
            for label, fn in ((f"pressure after 32,768 {order} MADV_FREE calls",
                               lambda: sp.pressure(128 << 20)),
                              (f"rewrite 1 GiB through {order}-freed 6/8 pages under the budget",
                               lambda: sp.touch("heap", 0, size, "write"))):
                t0 = time.perf_counter()
                fn()
                dt = time.perf_counter() - t0
                results[label] = min(results.get(label, dt), dt)
    label = max(results, key=results.get)
    for k, v in results.items():
        print(f"    {v * 1e3:8.2f} ms  {k}")
    return results[label], label


def _expect_oom(sp, size):
    try:
        sp.touch("big", 0, size, "write")
    except OOMKill:
        return
    raise AssertionError("expected an OOM kill")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="smaller regions (a smoke run)")
    ap.add_argument("--pagetables", action="store_true",
                    help="charge page tables to the budget (AddressSpace(pagetables=True))")
    args = ap.parse_args(argv)

    region_pages = 1 << 14 if args.quick else 1 << 18
    ops = make_scenario(args.steps, args.seed, region_pages=region_pages,
                        max_chunk=region_pages // 4)
    limit = 7 * region_pages * PAGE // 2     # 3.5 of the 4 GiB: reclaim is in play
    print(f"scenario: {len(ops)} steps over 4 regions x {region_pages} pages "
          f"({4 * region_pages} pages), memory_limit {limit >> 20} MiB"
          + (", page tables charged" if args.pagetables else ""))

    model = AddressSpace(memory_limit=limit, pagetables=args.pagetables)
    t0 = time.perf_counter()
    got, _ = run(model, ops)
    t_model = time.perf_counter() - t0
    print(f"  numpy model:      {t_model:8.3f} s  ({len(got)} steps run)")

    ref = ReferenceSpace(memory_limit=limit, pagetables=args.pagetables)
    t0 = time.perf_counter()
    want, _ = run(ref, ops)
    t_ref = time.perf_counter() - t0
    print(f"  per-page Python:  {t_ref:8.3f} s")

    same = got == want
    if not same:
        for i, (a, b) in enumerate(zip(got, want)):
            if a != b:
                print(f"  MISMATCH at step {i} {ops[i]}: model {a} vs reference {b}")
                break
        if len(got) != len(want):
            print(f"  MISMATCH: model ran {len(got)} steps, reference {len(want)}")
    else:
        errs = sorted({o[5] for o in got if o[5]})
        print(f"  observations agree on all {len(got)} steps (errors seen: {', '.join(errs) or 'none'}; "
              f"pages reclaimed by the model: {model.reclaimed_pages})")
    ratio = t_ref / t_model
    ok_ratio = same and ratio >= 100
    print(f"speed-up: {ratio:.0f}x")
    print(f"{'PASS' if ok_ratio else 'FAIL'}: model >= 100x faster than per-page Python with "
          f"identical observations ({ratio:.0f}x, {'identical' if same else 'DIFFERENT'})")

    print("worst single step on a 1 GiB region (best of 3):")
    worst, label = worst_step_1gib()
    ok_worst = worst < 0.050
    print(f"{'PASS' if ok_worst else 'FAIL'}: worst single step < 50 ms "
          f"({worst * 1e3:.1f} ms: {label})")
    return 0 if (ok_ratio and ok_worst) else 1


if __name__ == "__main__":
    sys.exit(main())
