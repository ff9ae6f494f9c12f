"""The child process that plays a scenario on the real kernel (``python -m models.realkernel.scenario_child``).

Protocol (one JSON object per line; the parent is :mod:`models.realkernel.engine`):

1. child -> parent: ``{"ready": PID}`` once its imports are done (the parent may now move it
   into a memory cgroup and set the limit from the cgroup's usage);
2. parent -> child: the scenario in plain JSON form (``parse.scenario_to_json``), one line;
3. child -> parent: one ``StepResult`` object per step, flushed as soon as the step is done, so
   that the results before an OOM kill reach the parent;
4. child -> parent: ``{"done": true}``.

Memory layout.  Each region is reserved as ``[guard page][region][tail guard]`` with
``PROT_NONE`` guards, so that (FACTS E5) no neighbouring anonymous mapping can merge with it
and its ``/proc/self/smaps`` entry stays its own.  The tail guard covers the furthest byte any
later ``madvise`` of that region reaches; it is unmapped just for such a call, so that the
range past the region's end is really unmapped and the kernel answers ENOMEM as it would in
a C program.  Regions get ``MADV_NOHUGEPAGE`` so that pages are 4 KiB (FACTS 29-31, E10).
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import resource
import sys

import numpy as np

PAGE = os.sysconf("SC_PAGE_SIZE")

PROT_NONE, PROT_READ, PROT_WRITE = 0x0, 0x1, 0x2
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20
MAP_NORESERVE, MAP_FIXED_NOREPLACE = 0x4000, 0x100000
MADV_NOHUGEPAGE = 15
MADV_COLD = 20
WRITE_BYTE = 0xAB          # any non-zero byte: a read that returns 0 saw a fresh (zero) page
UNKNOWN_ADVICE = 0x7FFF0000  # passed for MADV_* names the header does not define -> EINVAL

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_long]
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
# Called directly (not mmap.madvise): Python's wrapper clamps the length to the mapping, so it
# could never produce ENOMEM for a range running past the end.
_libc.madvise.restype = ctypes.c_int
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.sched_getcpu.restype = ctypes.c_int
MAP_FAILED = ctypes.c_void_p(-1).value


def _round_up(n: int) -> int:
    return -(-n // PAGE) * PAGE


class SyscallError(Exception):
    def __init__(self, err: int):
        super().__init__(errno.errorcode.get(err, str(err)))
        self.name = errno.errorcode.get(err, f"E{err}")


def _mmap(addr: int, length: int, prot: int, flags: int) -> int:
    p = _libc.mmap(addr or None, length, prot, flags, -1, 0)
    if p == MAP_FAILED or p is None:
        raise SyscallError(ctypes.get_errno())
    return p


def _munmap(addr: int, length: int) -> None:
    if _libc.munmap(addr, length) != 0:
        raise SyscallError(ctypes.get_errno())


class Mapping:
    """One region (or pressure allocation) with its guards."""

    def __init__(self, length: int, shared: bool, tail_guard: int):
        self.length = _round_up(length)
        self.tail = max(PAGE, _round_up(tail_guard))
        total = PAGE + self.length + self.tail
        # Reserve the whole span first so that guards and region are contiguous and ours.
        self.base = _mmap(0, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)
        self.addr = self.base + PAGE
        kind = MAP_SHARED if shared else MAP_PRIVATE
        try:
            _mmap(self.addr, self.length, PROT_READ | PROT_WRITE, kind | MAP_ANONYMOUS | MAP_FIXED)
        except SyscallError:
            _munmap(self.base, total)
            raise
        _libc.madvise(self.addr, self.length, MADV_NOHUGEPAGE)  # best effort (shmem may refuse)
        self.shared = shared
        buf = (ctypes.c_ubyte * self.length).from_address(self.addr)
        self.bytes = np.frombuffer(buf, dtype=np.uint8)

    @property
    def end(self) -> int:
        return self.addr + self.length

    def pages(self, offset: int, length: int) -> np.ndarray:
        """Strided view: the first byte of every page overlapping [offset, offset+length)."""
        first = offset // PAGE
        last = -(-(offset + length) // PAGE)
        return self.bytes[first * PAGE:last * PAGE:PAGE]

    def madvise(self, offset: int, length: int, advice: int) -> None:
        start = self.addr + offset
        reach = start + _round_up(length) if length else start
        opened = reach > self.end
        if opened:
            # The kernel answers ENOMEM only if the part past the end is really unmapped.
            _munmap(self.end, self.tail)
        try:
            rc = _libc.madvise(start, length, advice)
            err = ctypes.get_errno()
        finally:
            if opened:
                try:
                    _mmap(self.end, self.tail, PROT_NONE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE)
                except SyscallError:
                    pass  # something else took the hole; the region just lost its tail guard
        if rc != 0:
            raise SyscallError(err)

    def unmap(self) -> None:
        del self.bytes
        _munmap(self.base, PAGE + self.length + self.tail)


class _Settler:
    """Drain this CPU's LRU batches before smaps is read.

    ``MADV_FREE`` queues pages in a per-CPU batch (up to 31) before marking them lazily freed,
    so ``LazyFree`` reads short until the batch drains (FACTS E9; measured here up to 32 pages
    short, enough to break a 32-page tolerance on small ranges).  ``MADV_COLD`` starts with
    ``lru_add_drain()`` for the calling CPU; calling it on a scratch page of our own drains the
    batches and changes nothing else we measure.  The child is pinned to one CPU so that every
    batch it filled is on the CPU it drains.
    """

    def __init__(self) -> None:
        cpu = _libc.sched_getcpu()
        if cpu >= 0:
            os.sched_setaffinity(0, {cpu})
        self.page = _mmap(0, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        ctypes.memset(self.page, 1, 1)

    def __call__(self) -> None:
        _libc.madvise(self.page, PAGE, MADV_COLD)


_settle = None


def _smaps_regions(ranges: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """Rss and LazyFree (in pages) of the VMAs inside each named address range (FACTS 4, 23).

    A region may be several VMAs (a partial madvise of some advice splits it), so every VMA
    overlapping the range is summed.
    """
    if _settle is not None:
        _settle()
    kb = {name: [0, 0] for name in ranges}
    current = None
    with open("/proc/self/smaps", "rb") as f:
        data = f.read()
    for line in data.split(b"\n"):
        if not line:
            continue
        head = line.split(b" ", 1)[0]
        if b"-" in head and not head.endswith(b":"):
            lo, hi = (int(x, 16) for x in head.split(b"-"))
            current = next((name for name, (s, e) in ranges.items() if lo < e and hi > s), None)
        elif current is not None:
            if head == b"Rss:":
                kb[current][0] += int(line.split()[1])
            elif head == b"LazyFree:":
                kb[current][1] += int(line.split()[1])
    return {name: (r * 1024 // PAGE, z * 1024 // PAGE) for name, (r, z) in kb.items()}


def _smaps_pages(ranges: list[tuple[int, int]]) -> tuple[int, int]:
    """Total Rss and LazyFree (in pages) of the VMAs inside any of ``ranges``."""
    per = _smaps_regions({str(i): r for i, r in enumerate(ranges)})
    return sum(v[0] for v in per.values()), sum(v[1] for v in per.values())


def _faults() -> int:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_minflt + ru.ru_majflt


def _tail_guards(steps: list[dict]) -> list[int]:
    """For each mmap step, how far past the region's end later madvise calls on it reach."""
    out = [0] * len(steps)
    for i, st in enumerate(steps):
        if st["op"] != "mmap":
            continue
        length = _round_up(st["length"])
        reach = 0
        for later in steps[i + 1:]:
            if later.get("region") != st["region"]:
                continue
            if later["op"] == "munmap":
                break
            if later["op"] == "madvise":
                reach = max(reach, later["offset"] + _round_up(later["length"]) - length)
        out[i] = reach + PAGE
    return out


def run(scenario: dict, emit) -> None:
    global _settle
    if not scenario.get("settle_lru", True):
        _settle = None   # read smaps as it is, batches and all (to show FACTS E9)
    steps = scenario["steps"]
    guards = _tail_guards(steps)
    regions: dict[str, Mapping] = {}
    held: list[Mapping] = []     # pressure allocations, kept to the end
    for index, st in enumerate(steps):
        op = st["op"]
        error = None
        zero_pages = None
        before = _faults()
        try:
            if op == "mmap":
                regions[st["region"]] = Mapping(st["length"], st.get("shared", False), guards[index])
            elif op == "munmap":
                regions.pop(st["region"]).unmap()
            elif op == "touch":
                view = regions[st["region"]].pages(st["offset"], st["length"])
                if st["access"] == "write":
                    view[...] = WRITE_BYTE
                else:
                    zero_pages = int(view.size - np.count_nonzero(view))
            elif op == "madvise":
                # The parent sends the advice as the int for the syscall (UNKNOWN_ADVICE for a
                # name this kernel's header lacks).
                regions[st["region"]].madvise(st["offset"], st["length"], int(st["advice"]))
            elif op == "pressure":
                m = Mapping(st["length"], False, PAGE)
                held.append(m)
                m.pages(0, m.length)[...] = WRITE_BYTE
            else:  # the parent validated the scenario; this is a protocol bug
                raise ValueError(f"unknown op {op!r}")
        except SyscallError as exc:
            error = exc.name
        faults = _faults() - before
        per = _smaps_regions({name: (m.addr, m.end) for name, m in regions.items()})
        emit({"step": index, "op": op, "rss_pages": sum(v[0] for v in per.values()),
              "lazyfree_pages": sum(v[1] for v in per.values()), "faults": faults,
              "zero_pages": zero_pages, "error": error, "regions": per})
        if error is not None and op != "madvise":
            return   # a failed mmap leaves nothing for later steps to touch


def _warm_up() -> None:
    """Run the bookkeeping paths once before the parent moves us into the cgroup.

    Memory the interpreter touches here (smaps buffers, numpy and json code paths, malloc
    arenas) is charged to the parent's cgroup and reused later, so that the budget measures the
    scenario's own pages and not the measuring code (docs/KERNEL-NOTES.md, "budget overhead").
    """
    global _settle
    _settle = _Settler()
    m = Mapping(1 << 20, False, PAGE)
    m.pages(0, m.length)[...] = WRITE_BYTE
    int(m.pages(0, m.length).size - np.count_nonzero(m.pages(0, m.length)))
    for _ in range(3):
        _smaps_pages([(m.addr, m.end)])
    json.loads(json.dumps([{"step": i, "op": "touch", "rss_pages": i, "lazyfree_pages": i, "faults": i,
                            "zero_pages": None, "error": None} for i in range(256)]))
    _faults()
    m.unmap()


def main() -> int:
    out = sys.stdout
    def emit(obj) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()
    _warm_up()
    emit({"ready": os.getpid()})
    line = sys.stdin.readline()
    if not line:
        return 1
    run(json.loads(line), emit)
    emit({"done": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())
