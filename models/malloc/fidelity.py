"""Compare the allocator model with the real glibc, operation by operation.

Used by ``tests/test_malloc_vs_glibc.py`` and by ``python -m models malloc
--engine both``.  The verdict is qualitative where it matters (where a block
is served, which operations move the break or RSS and which way, which system
calls they make) and numeric within ``TOL_PAGES`` pages elsewhere.
"""
from __future__ import annotations

from models.units import PAGE_SIZE

#: Slack for sizes, RSS and faults, so a glibc or kernel point release does not
#: break the comparison for no reason (the model matched exactly on this machine).
TOL_PAGES = 2


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def compare(model_rows, real_rows, with_syscalls: bool) -> list[str]:
    """Human-readable disagreements (empty list = the model matches glibc)."""
    problems = []
    prev_m = prev_r = None
    for mo, re in zip(model_rows, real_rows, strict=True):
        where = f"step {mo.step} ({mo.op} {mo.id or ''})"
        if mo.placement != re.placement:
            problems.append(f"{where}: placement model={mo.placement} glibc={re.placement}")
        if mo.result != re.result:
            problems.append(f"{where}: return value model={mo.result} glibc={re.result}")
        if abs(mo.heap_size - re.heap_size) > TOL_PAGES * PAGE_SIZE:
            problems.append(f"{where}: heap size model={mo.heap_size} glibc={re.heap_size}")
        for field in ("heap_rss_pages", "mmap_rss_pages", "faults"):
            a, b = getattr(mo, field), getattr(re, field)
            if abs(a - b) > TOL_PAGES:
                problems.append(f"{where}: {field} model={a} glibc={b}")
        if prev_m is not None:
            # the qualitative outcome: does this op move the break / RSS, and which way
            for field in ("heap_size", "heap_rss_pages", "mmap_rss_pages"):
                dm = getattr(mo, field) - getattr(prev_m, field)
                dr = getattr(re, field) - getattr(prev_r, field)
                if _sign(dm) != _sign(dr) and max(abs(dm), abs(dr)) > (0 if field == "heap_size" else TOL_PAGES):
                    problems.append(f"{where}: change of {field} model={dm:+} glibc={dr:+}")
        if mo.mallinfo["hblks"] != re.mallinfo["hblks"]:
            problems.append(f"{where}: mmapped blocks model={mo.mallinfo['hblks']} glibc={re.mallinfo['hblks']}")
        if with_syscalls and mo.syscalls != re.syscalls:
            problems.append(f"{where}: syscalls model={mo.syscalls} glibc={re.syscalls}")
        prev_m, prev_r = mo, re
    return problems
