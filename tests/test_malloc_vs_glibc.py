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

from models.malloc.fidelity import compare
from models.malloc.glibc import replay
from models.malloc.sequence import load_sequence, named_sequences, parse_sequence
from models.realkernel import glibc_probe
from tests.conftest import need


def _probe_ready():
    ok, why = glibc_probe.probe_support()
    need(ok, f"the real-glibc probe cannot run here: {why}")


def _strace_ready():
    need(glibc_probe.strace_binary() is not None, "strace is not installed: syscall counts unavailable")


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


def _m(id, size, **kw):
    return {"op": "malloc", "id": id, "size": size, **kw}


def _f(id):
    return {"op": "free", "id": id}


def _trim(pad=0):
    return {"op": "malloc_trim", "pad": pad}


def _opt(param, value):
    return {"op": "mallopt", "param": param, "value": value}


EDGE_CASES = {
    # malloc_trim before the heap exists returns 0 and makes no system call
    "trim_before_malloc": [_trim(), _m("a", 10), _f("a"), _trim()],
    # M_TOP_PAD 0: the heap grows by exactly what is needed, rounded to pages
    "top_pad_zero": [_opt("M_TOP_PAD", 0), _m("a", 65536), _m("b", 100), _f("a"), _trim(), _m("c", 5000)],
    # threshold 0: even the tcache (first malloc) gets its own mapping
    "mmap_threshold_zero": [_opt("M_MMAP_THRESHOLD", 0), _m("a", 1), _m("b", 100), _f("a"), _f("b")],
    "trim_threshold_zero": [_opt("M_TRIM_THRESHOLD", 0), _m("a", 70000), _m("b", 70000), _f("b"), _f("a")],
    # 300 MiB blocks: mmapped, the dynamic threshold stays (above 32 MiB); 1 GiB never written
    "huge_blocks": [_m("a", 300 << 20), _m("b", 100), _f("a"), _m("c", 300 << 20), _f("c"),
                    _m("d", 1 << 30, write=False), _f("d")],
    # M_MMAP_MAX 1: the second large block goes to the heap while the first is mapped
    "mmap_max_one": [_opt("M_MMAP_MAX", 1), _m("a", 1 << 20), _m("b", 1 << 20), _f("a"), _f("b")],
    "trim_pads": [_m("a", 200000), _f("a"), _trim(4095), _trim(1 << 20), _trim(1)],
    # systrim on a 32-byte top grows the heap (unsigned arithmetic in glibc 2.36)
    "trim_of_minimal_top": [_opt("M_TOP_PAD", 0), _m("a", 3400), _trim(0), _trim(0), _m("b", 4080),
                            _trim(100000), _opt("M_TRIM_THRESHOLD", 0), _m("c", 70000), _f("c")],
    # the order in which malloc_consolidate empties a fastbin decides which chunk comes back
    "fastbin_consolidation_order": ([_m(f"t{i}", 32) for i in range(7)]
                                    + [_m("X", 32), _m("g1", 32), _m("Y", 32), _m("g2", 32)]
                                    + [_f(f"t{i}") for i in range(7)] + [_f("X"), _f("Y")]
                                    + [_opt("M_TOP_PAD", 128 * 1024)] + [_m(f"a{i}", 32) for i in range(7)]
                                    + [_m("r", 32)]),
    # 200 tiny blocks of 8 sizes: tcache, fastbins, consolidation by a large request, trim
    "many_tiny": ([_m(f"x{i}", (i % 8) * 16 + 1) for i in range(200)] + [_f(f"x{i}") for i in range(0, 200, 2)]
                  + [_m("big", 2000)] + [_f(f"x{i}") for i in range(1, 200, 2)] + [_trim()]),
}


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_cases_match_glibc(name, probe_binary):
    _strace_ready()
    seq = parse_sequence(EDGE_CASES[name])
    real = glibc_probe.run_sequence(seq, use_strace=True)
    model = replay(seq)
    problems = compare(model, real, with_syscalls=True)
    assert not problems, "\n".join(problems)
    assert [m.mallinfo for m in model] == [r.mallinfo for r in real]


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


def test_long_random_sequence_matches_glibc_exactly(probe_binary):
    """3000 operations: long enough for fastbin consolidation and bin order to matter."""
    seq = parse_sequence(_random_ops(random.Random(100), 3000))
    real = glibc_probe.run_sequence(seq, use_strace=False)
    model = replay(seq)
    assert not compare(model, real, with_syscalls=False)
    for mo, re in zip(model, real):
        assert (mo.ptr_offset, mo.chunk_size, mo.mallinfo) == (re.ptr_offset, re.chunk_size, re.mallinfo), mo.step


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


def test_cli_both_engines_agree(probe_binary):
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT
    out = subprocess.run([sys.executable, "-m", "models", "malloc", "article_a_to_e", "--engine", "both", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr
    doc = json.loads(out.stdout)
    assert doc["disagreements"] == []
    assert len(doc["model"]) == len(doc["glibc"]) == 8
    assert doc["glibc"][7]["heap_size"] < doc["glibc"][4]["heap_size"]
