"""The allocator model against the machine's real glibc (probes/malloc_probe.c).

Each shipped sequence, and a set of random ones with fixed seeds, runs on the
model and for real; per operation they must agree on the qualitative outcome
(where a malloc is served, which operations move the break and which way,
which leave RSS in place, which system calls they make) and be close in
numbers (heap size, RSS and page faults within a couple of pages).  The probe needs gcc
and procfs; syscall counts need strace.  Under CI=true all must be present.
"""
from __future__ import annotations

import random

import pytest

from models.malloc.glibc import replay
from models.malloc.sequence import load_sequence, named_sequences, parse_sequence
from models.realkernel import glibc_probe
from models.units import PAGE_SIZE
from tests.conftest import need

TOL_PAGES = 2


def _probe_ready():
    ok, why = glibc_probe.probe_support()
    need(ok, f"the real-glibc probe cannot run here: {why}")


def _strace_ready():
    need(glibc_probe.strace_binary() is not None, "strace is not installed: syscall counts unavailable")


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


@pytest.fixture(scope="module")
def probe_binary():
    _probe_ready()
    return glibc_probe.build_probe()


@pytest.mark.parametrize("name", named_sequences())
def test_named_sequence_matches_glibc(name, probe_binary):
    seq = load_sequence(name)
    real = glibc_probe.run_sequence(seq, use_strace=False)
    problems = compare(replay(seq), real, with_syscalls=False)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", named_sequences())
def test_named_sequence_syscalls_match_glibc(name, probe_binary):
    _strace_ready()
    seq = load_sequence(name)
    real = glibc_probe.run_sequence(seq, use_strace=True)
    assert all(r.syscalls is not None for r in real)
    problems = compare(replay(seq), real, with_syscalls=True)
    assert not problems, "\n".join(problems)


def test_article_outcome_on_real_glibc(probe_binary):
    """The article's claim, measured: middle frees keep the break and RSS; the last free trims."""
    real = glibc_probe.run_sequence(load_sequence("article_a_to_e"), use_strace=False)
    after_e, free_c, free_d, free_e = real[4], real[5], real[6], real[7]
    assert free_c.heap_size == free_d.heap_size == after_e.heap_size
    assert free_c.heap_rss_pages == free_d.heap_rss_pages == after_e.heap_rss_pages
    assert free_e.heap_size < after_e.heap_size
    assert free_e.heap_rss_pages < after_e.heap_rss_pages


def test_malloc_trim_madvises_on_real_glibc(probe_binary):
    _strace_ready()
    real = glibc_probe.run_sequence(load_sequence("malloc_trim_holes"), use_strace=True)
    trim = next(r for r in real if r.op == "malloc_trim")
    before = real[trim.step - 1]
    # one MADV_DONTNEED per hole (B, D, F); the brk only gives back the free top past G
    assert trim.syscalls["madvise"] == 3
    g = next(r for r in real if r.id == "G")
    assert trim.heap_size >= g.ptr_offset + 64 * 1024
    assert trim.heap_rss_pages <= before.heap_rss_pages - 3 * 15


def _random_ops(rng: random.Random, n: int) -> list[dict]:
    """A mix of tiny (fastbin), small (tcache), medium, threshold-sized and large blocks."""
    sizes = [lambda: rng.randint(1, 120), lambda: rng.randint(1, 1100), lambda: rng.randint(1000, 70000),
             lambda: rng.randint(60000, 300000), lambda: rng.choice([16, 24, 100, 4096, 65536, 131072, 1 << 20])]
    ops, live, k = [], [], 0
    for _ in range(n):
        r = rng.random()
        if r < 0.5 or not live:
            ops.append({"op": "malloc", "id": f"b{k}", "size": rng.choice(sizes)(), "write": rng.random() < 0.9})
            live.append(f"b{k}")
            k += 1
        elif r < 0.9:
            ops.append({"op": "free", "id": live.pop(rng.randrange(len(live)))})
        elif r < 0.95:
            ops.append({"op": "malloc_trim", "pad": rng.choice([0, 0, 4096, 65536])})
        else:
            ops.append({"op": "mallopt", "param": rng.choice(["M_MMAP_THRESHOLD", "M_TRIM_THRESHOLD", "M_TOP_PAD",
                                                              "M_MMAP_MAX"]),
                        "value": rng.choice([0, 4096, 65536, 131072, 262144, 1 << 20])})
    return ops


@pytest.mark.parametrize("seed", range(8))
def test_random_sequences_match_glibc(seed, probe_binary):
    _strace_ready()
    seq = parse_sequence(_random_ops(random.Random(seed), 80))
    real = glibc_probe.run_sequence(seq, use_strace=True)
    model = replay(seq)
    problems = compare(model, real, with_syscalls=True)
    assert not problems, "\n".join(problems)
    # placement is exact too: the model reproduces glibc's choice among free chunks
    assert [m.ptr_offset for m in model] == [r.ptr_offset for r in real]


def test_compare_detects_a_wrong_model(probe_binary):
    """The comparison is not vacuous: a model with another trim threshold disagrees."""
    from models.malloc.glibc import GlibcMalloc
    seq = load_sequence("article_a_to_e")
    real = glibc_probe.run_sequence(seq, use_strace=False)
    wrong = replay(seq, GlibcMalloc(trim_threshold=1 << 30))
    assert any("free E" in p for p in compare(wrong, real, with_syscalls=False))


def test_probe_rejects_nothing_silently(probe_binary):
    """The runner refuses a probe failure instead of returning partial rows."""
    from models.malloc.sequence import Free
    with pytest.raises(glibc_probe.GlibcProbeError):
        glibc_probe.run_sequence([Free("never")], use_strace=False)
