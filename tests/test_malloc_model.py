"""The glibc-like allocator model: hand-worked expectations and input validation.

Every number here is worked out from glibc's rules (FACTS 32-40 and the
constants in models/malloc/glibc.py), not read back from the model:

* chunk size = request + 8, rounded up to 16, at least 32 (``request2size``);
* the first malloc first allocates the 0x290-byte tcache, so the first user
  pointer is at 0x290 + 16 = 672 bytes past the initial break;
* the heap grows by ALIGN_UP(nb + top_pad(128 KiB) + 32 - top, 4096);
* an mmapped chunk is ALIGN_UP(nb + 8, 4096).
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from models.errors import ModelInputError
from models.malloc.glibc import (
    DEFAULT_MMAP_THRESHOLD, GlibcMalloc, NO_TRIM, bin_index, mmapped_chunk_size, replay, request2size,
)
from models.malloc.sequence import load_sequence, named_sequences, parse_sequence, to_probe_lines
from tests.conftest import ROOT

KiB, MiB = 1024, 1 << 20
FIRST_HEAP = 135168        # ALIGN_UP(0x290 + 128 KiB + 32, 4096) = 33 pages
FIRST_PTR = 0x290 + 16     # 672


def m(id, size, **kw):
    return {"op": "malloc", "id": id, "size": size, **kw}


def f(id):
    return {"op": "free", "id": id}


def run(ops):
    return replay(parse_sequence(ops))


# ------------------------------------------------------------------ sizes


@pytest.mark.parametrize("request_, chunk", [
    (1, 32), (24, 32), (25, 48), (100, 112), (0x280, 0x290), (64 * KiB, 64 * KiB + 16), (1000, 1008)])
def test_request2size(request_, chunk):
    assert request2size(request_) == chunk


def test_mmapped_chunk_size_adds_a_size_word_and_rounds_to_pages():
    assert mmapped_chunk_size(request2size(1 * MiB)) == 1 * MiB + 4096     # 1 MiB + 16 + 8 -> 257 pages
    assert mmapped_chunk_size(request2size(200000)) == 200704              # 200024 -> 49 pages


def test_bin_index_small_and_large():
    assert bin_index(32) == 2 and bin_index(1008) == 63
    assert bin_index(1024) == 64            # 48 + (1024 >> 6)
    assert bin_index(4096) == 99            # 91 + (4096 >> 9)
    assert bin_index(65552) == 121          # 65552 >> 12 = 16 > 10, so 119 + (65552 >> 15) = 119 + 2
    assert bin_index(1 << 30) == 126


# ------------------------------------------------------------------ the brk heap


def test_first_malloc_grows_the_heap_by_the_tcache_plus_top_pad():
    (obs,) = run([m("A", 64 * KiB)])
    assert obs.placement == "heap"
    assert obs.ptr_offset == FIRST_PTR
    assert obs.heap_size == FIRST_HEAP == obs.vsz
    # user bytes [672, 66208) and the new top's header at 66216: pages 0..16
    assert obs.heap_rss_pages == obs.rss_pages == 17
    assert obs.syscalls == {"brk": 1, "mmap": 0, "munmap": 0, "madvise": 0}
    assert obs.mallinfo["arena"] == FIRST_HEAP
    assert obs.mallinfo["uordblks"] == 0x290 + 65552
    assert obs.mallinfo["keepcost"] == FIRST_HEAP - 0x290 - 65552


def test_unwritten_block_costs_only_header_pages():
    (obs,) = run([m("A", 64 * KiB, write=False)])
    # page 0: the tcache (memset) and A's header; page 16: the new top's header
    assert obs.heap_rss_pages == 2


def test_article_a_to_e_middle_frees_keep_heap_and_rss():
    rows = run([m(x, 64 * KiB) for x in "ABCDE"] + [f("C"), f("D"), f("E")])
    heap = [r.heap_size for r in rows]
    rss = [r.heap_rss_pages for r in rows]
    # C does not fit the 3408-byte top left after B: grow by ALIGN_UP(65552 + 131072 + 32 - 3408) = 196608
    assert heap[:5] == [FIRST_HEAP, FIRST_HEAP, FIRST_HEAP + 196608, 331776, 331776]
    assert rss[:5] == [17, 33, 49, 65, 81]
    # free C, free D: a 131104-byte hole between B and E; nothing moves, nothing leaves RSS
    assert heap[5:7] == [331776, 331776] and rss[5:7] == [81, 81]
    assert all(r.syscalls == dict.fromkeys(r.syscalls, 0) for r in rows[5:7])
    # free E: C+D+E merge with top (200016 bytes from 131760); trim keeps 128 KiB of pad:
    # ALIGN_DOWN(200016 - 33 - 131072, 4096) = 65536 bytes = 16 pages go with sbrk(-65536)
    assert heap[7] == 331776 - 65536
    assert rss[7] == 81 - 16
    assert rows[7].syscalls["brk"] == 1
    assert rows[7].mallinfo["keepcost"] == 200016 - 65536


def test_malloc_trim_releases_whole_pages_of_the_middle_hole():
    rows = run([m(x, 64 * KiB) for x in "ABCDE"] + [f("C"), f("D"), {"op": "malloc_trim", "pad": 0}])
    trim = rows[-1]
    # hole = chunk at 131760, 131104 bytes; released = [ALIGN_UP(131760 + 48), ...) whole pages:
    # (262864 - 135168) & ~4095 = 126976 bytes = 31 pages, one madvise(MADV_DONTNEED)
    assert trim.result == 1
    assert trim.syscalls == {"brk": 0, "mmap": 0, "munmap": 0, "madvise": 1}
    assert trim.heap_rss_pages == 81 - 31
    assert trim.heap_size == 331776            # the break does not move for a middle hole


def test_reusing_a_trimmed_hole_faults_its_pages_back():
    rows = run([m(x, 64 * KiB) for x in "ABC"] + [f("B"), {"op": "malloc_trim", "pad": 0}, m("H", 32 * KiB)])
    trim, reuse = rows[-2], rows[-1]
    assert reuse.ptr_offset == 66224            # H reuses B's chunk (at 66208)
    # H writes [66224, 99000): pages 16..24; page 16 kept B's free-chunk header, 17..24 come back
    assert reuse.heap_rss_pages - trim.heap_rss_pages == 8
    assert reuse.faults >= 8


def test_top_trimming_and_trim_threshold_minus_one():
    rows = run([m("A", 100 * KiB), m("B", 100 * KiB), f("B"), f("A"),
                {"op": "mallopt", "param": "M_TRIM_THRESHOLD", "value": -1},
                m("C", 100 * KiB), m("D", 100 * KiB), f("D"), f("C")])
    assert rows[2].syscalls["brk"] == 1 and rows[2].heap_size < rows[1].heap_size
    assert rows[4].result == 1
    assert rows[5].mallinfo and rows[-1].trim_threshold == NO_TRIM
    grown = rows[6].heap_size
    assert rows[7].heap_size == rows[8].heap_size == grown
    assert rows[7].syscalls["brk"] == rows[8].syscalls["brk"] == 0


def test_trimming_a_32_byte_top_grows_the_heap():
    """glibc quirk (measured): systrim's unsigned arithmetic turns a 32-byte top into sbrk(+n)."""
    rows = run([{"op": "mallopt", "param": "M_TOP_PAD", "value": 0},
                m("a", 3400),                       # 656 + 3408 = 4064: leaves exactly 32 bytes of top
                {"op": "malloc_trim", "pad": 0},
                {"op": "malloc_trim", "pad": 0},
                m("b", 4080),                       # nb = 4096 of the 4128-byte top leaves 32 again
                {"op": "malloc_trim", "pad": 100000}])
    assert rows[1].heap_size == 4096 and rows[1].mallinfo["keepcost"] == 32
    trim = rows[2]
    assert trim.result == 1 and trim.heap_size == 8192 and trim.syscalls["brk"] == 1
    assert trim.mallinfo["keepcost"] == 32 + 4096
    # a 4128-byte top is not trimmed: ALIGN_DOWN(4128 - 33, 4096) = 0
    assert rows[3].result == 0 and rows[3].heap_size == 8192 and rows[3].mallinfo["keepcost"] == 4128
    # pad 100000: the heap grows by ALIGN_UP(100001, 4096) = 102400
    assert rows[4].mallinfo["keepcost"] == 32
    assert rows[5].heap_size - rows[4].heap_size == 102400


# ------------------------------------------------------------------ mmap and the dynamic threshold


def test_large_request_is_mmapped_and_munmapped_on_free():
    rows = run([m("big", 1 * MiB), f("big")])
    big, gone = rows
    assert big.placement == "mmap" and big.ptr_offset is None
    assert big.chunk_size == 1 * MiB + 4096
    assert big.mmap_rss_pages == 257
    assert big.syscalls["mmap"] == 1
    assert big.vsz == big.heap_size + 1 * MiB + 4096
    assert gone.syscalls["munmap"] == 1 and gone.mmap_rss_pages == 0 and gone.vsz == gone.heap_size
    # FACTS 33: the threshold follows the freed chunk, the trim threshold doubles it
    assert gone.mmap_threshold == 1 * MiB + 4096
    assert gone.trim_threshold == 2 * (1 * MiB + 4096)


def test_after_dynamic_raise_the_same_request_comes_from_the_heap_and_stays():
    rows = run([m("X", 1 * MiB), f("X"), m("Y", 1 * MiB), f("Y")])
    assert rows[2].placement == "heap"
    assert rows[2].syscalls["brk"] == 1 and rows[2].syscalls["mmap"] == 0
    # top after free(Y) is about 1 MiB + pad, below the 2 MiB trim threshold: no brk, RSS stays
    assert rows[3].syscalls == {"brk": 0, "mmap": 0, "munmap": 0, "madvise": 0}
    assert rows[3].heap_rss_pages == rows[2].heap_rss_pages > 256


def test_mallopt_disables_the_dynamic_threshold():
    rows = run([{"op": "mallopt", "param": "M_TOP_PAD", "value": 128 * KiB}, m("X", 1 * MiB), f("X"),
                m("Y", 1 * MiB)])
    assert rows[2].mmap_threshold == DEFAULT_MMAP_THRESHOLD
    assert rows[3].placement == "mmap"


def test_chunk_of_exactly_32_mib_does_not_raise_the_threshold():
    # IS_MMAPPED (2) is part of the size glibc compares: 32 MiB | 2 > DEFAULT_MMAP_THRESHOLD_MAX
    exact = run([m("X", 32 * MiB - 4096, write=False), f("X")])
    assert exact[0].chunk_size == 32 * MiB
    assert exact[1].mmap_threshold == DEFAULT_MMAP_THRESHOLD
    below = run([m("X", 32 * MiB - 8192, write=False), f("X")])
    assert below[1].mmap_threshold == 32 * MiB - 4096


def test_mmap_max_zero_serves_large_requests_from_the_heap():
    rows = run([{"op": "mallopt", "param": "M_MMAP_MAX", "value": 0}, m("big", 1 * MiB)])
    # two brk calls: the tcache's 132 KiB heap first, then growth for the 1 MiB chunk
    assert rows[1].placement == "heap" and rows[1].syscalls == {"brk": 2, "mmap": 0, "munmap": 0, "madvise": 0}


def test_requests_below_threshold_but_above_top_grow_heap():
    rows = run([{"op": "mallopt", "param": "M_MMAP_THRESHOLD", "value": 4 * MiB}, m("a", 3 * MiB)])
    nb = request2size(3 * MiB)
    # tcache chunk first (132 KiB heap), then grow by ALIGN_UP(nb + pad + 32 - top)
    top = FIRST_HEAP - 0x290
    assert rows[1].heap_size == FIRST_HEAP + -(-(nb + 128 * KiB + 32 - top) // 4096) * 4096


def test_threshold_zero_mmaps_even_the_tcache():
    rows = run([{"op": "mallopt", "param": "M_MMAP_THRESHOLD", "value": 0}, m("a", 1)])
    a = rows[1]
    # the 0x290 tcache chunk and the 32-byte chunk each get ALIGN_UP(nb + 8, 4096) = one page
    assert a.placement == "mmap" and a.chunk_size == 4096
    assert a.syscalls == {"brk": 0, "mmap": 2, "munmap": 0, "madvise": 0}
    assert a.heap_size == 0 and a.vsz == 8192
    assert a.mallinfo["hblks"] == 2 and a.mmap_rss_pages == 2


# ------------------------------------------------------------------ tcache and fastbins


def test_small_frees_go_to_tcache_then_fastbins_and_never_release():
    ops = [m(f"s{i}", 100) for i in range(9)] + [m("guard", 200)] + [f(f"s{i}") for i in range(9)]
    rows = run(ops)
    last = rows[-1]
    # 7 of the 112-byte chunks sit in the tcache (still "in use" for mallinfo), 2 in fastbins
    assert last.mallinfo["smblks"] == 2 and last.mallinfo["fsmblks"] == 224
    assert last.mallinfo["ordblks"] == 1
    assert all(r.syscalls == dict.fromkeys(r.syscalls, 0) for r in rows[10:])
    # the next malloc of that size reuses the most recently tcached chunk (LIFO)
    again = replay(parse_sequence(ops + [m("again", 100)]))[-1]
    assert again.ptr_offset == rows[6].ptr_offset          # s6 was the last chunk into the tcache


def fastbin_order_ops():
    """X then Y freed into the 48-byte fastbin (tcache full), consolidated by mallopt."""
    return ([m(f"t{i}", 32) for i in range(7)] + [m("X", 32), m("g1", 32), m("Y", 32), m("g2", 32)]
            + [f(f"t{i}") for i in range(7)] + [f("X"), f("Y")]
            + [{"op": "mallopt", "param": "M_TOP_PAD", "value": 128 * KiB}]
            + [m(f"a{i}", 32) for i in range(7)] + [m("r", 32)])


def test_consolidation_walks_fastbins_from_the_head():
    rows = run(fastbin_order_ops())
    x = rows[7].ptr_offset
    # malloc_consolidate takes Y (the fastbin's head) first, so the unsorted bin
    # is processed Y, X; both exact fits go to the tcache and the last one in, X, comes out
    assert rows[-1].ptr_offset == x
    assert rows[-1].syscalls == dict.fromkeys(rows[-1].syscalls, 0)


def test_large_free_consolidates_fastbins():
    ops = ([m(f"s{i}", 100) for i in range(9)] + [m("big", 100 * KiB)] + [f(f"s{i}") for i in range(9)]
           + [f("big")])
    last = run(ops)[-1]
    assert last.mallinfo["smblks"] == 0
    # the two fastbin chunks (s7, s8) merged into one free chunk in front of the top
    assert last.mallinfo["ordblks"] == 1


# ------------------------------------------------------------------ the shipped sequences


@pytest.mark.parametrize("name", named_sequences())
def test_shipped_sequences_load_and_run(name):
    seq = load_sequence(name)
    assert seq.description
    rows = replay(seq)
    assert len(rows) == len(seq.ops)
    assert all(r.rss_pages == r.heap_rss_pages + r.mmap_rss_pages for r in rows)
    assert to_probe_lines(seq.ops).count("\n") == len(seq.ops)


def test_expected_sequence_names():
    assert {"article_a_to_e", "large_block_mmap", "top_trimming", "dynamic_threshold",
            "malloc_trim_holes"} <= set(named_sequences())


def test_glibc_malloc_never_uses_madv_free():
    calls = []

    class Spy:
        """Wraps the page model and records every madvise advice."""

        def __init__(self, space):
            self._space = space

        def __getattr__(self, name):
            return getattr(self._space, name)

        def madvise(self, region, offset, length, advice):
            calls.append(advice)
            return self._space.madvise(region, offset, length, advice)

    for name in named_sequences():
        plain = GlibcMalloc()
        replay(load_sequence(name), GlibcMalloc(space=Spy(plain.space)))
    assert calls and set(calls) == {"MADV_DONTNEED"}        # FACTS 40, misconception 9


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("ops, words", [
    ([m("A", 0)], ["ops[0].size", "between 1 byte"]),
    ([m("A", (1 << 30) + 1)], ["ops[0].size", "1 GiB"]),
    ([m("A", "64MB")], ["ops[0].size", "KiB"]),
    ([m("A", True)], ["ops[0].size"]),
    ([m("A", 10, write="yes")], ["ops[0].write", "true or false"]),
    ([m("", 10)], ["id must be"]),
    ([m("A B", 10)], ["id must be"]),
    ([f("A")], ["never allocated"]),
    ([m("A", 10), f("A"), f("A")], ["double free"]),
    ([m("A", 10), m("A", 10)], ["still allocated"]),
    ([{"op": "realloc", "id": "A"}], ["ops[0].op", "malloc"]),
    ([{"op": "malloc", "id": "A"}], ["missing", "size"]),
    ([{"op": "free", "id": "A", "size": 3}], ["unknown keys", "size"]),
    ([{"op": "mallopt", "param": "M_ARENA_MAX", "value": 1}], ["ops[0].param", "M_MMAP_THRESHOLD"]),
    ([{"op": "mallopt", "param": "M_TOP_PAD", "value": -1}], ["value", ">= 0"]),
    ([{"op": "mallopt", "param": "M_TRIM_THRESHOLD", "value": -2}], ["value", ">= -1"]),
    ([{"op": "mallopt", "param": "M_MMAP_THRESHOLD", "value": 1 << 31}], ["value", "C int"]),
    ([{"op": "malloc_trim", "pad": -5}], ["pad", ">= 0"]),
    ([m(f"b{i}", "1GiB", write=False) for i in range(5)], ["ops[4]", "4 GiB"]),
    ([], ["non-empty list"]),
    ("not a list", ["non-empty list"]),
    ([7], ["ops[0] must be an object"]),
])
def test_bad_sequences_name_the_parameter(ops, words):
    with pytest.raises(ModelInputError) as err:
        parse_sequence(ops)
    for word in words:
        assert word in str(err.value)


def test_api_validation():
    alloc = GlibcMalloc()
    with pytest.raises(ModelInputError, match="size must be an int between 1"):
        alloc.malloc("A", 0)
    with pytest.raises(ModelInputError, match="size must be an int between 1"):
        alloc.malloc("A", 2 << 30)
    alloc.malloc("A", 10)
    with pytest.raises(ModelInputError, match="still allocated"):
        alloc.malloc("A", 10)
    alloc.free("A")
    with pytest.raises(ModelInputError, match="double free"):
        alloc.free("A")
    with pytest.raises(ModelInputError, match="never allocated"):
        alloc.free("nope")
    with pytest.raises(ModelInputError, match="param must be one of"):
        alloc.mallopt("M_PERTURB", 1)
    with pytest.raises(ModelInputError, match="value for M_TOP_PAD must be an int between 0"):
        alloc.mallopt("M_TOP_PAD", -3)
    with pytest.raises(ModelInputError, match="pad must be an int between 0"):
        alloc.malloc_trim(-1)


def test_unknown_sequence_name_lists_the_known_ones():
    with pytest.raises(ModelInputError) as err:
        load_sequence("no_such_sequence")
    assert "article_a_to_e" in str(err.value)


# ------------------------------------------------------------------ the CLI


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "models", "malloc", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_json_rows():
    out = _cli("article_a_to_e", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["op"] for r in rows] == ["malloc"] * 5 + ["free"] * 3
    assert rows[-1]["syscalls"]["brk"] == 1
    assert {"heap_size", "vsz", "rss_pages", "heap_rss_pages", "mmap_rss_pages", "syscalls", "mallinfo",
            "faults", "placement", "mmap_threshold", "trim_threshold"} <= rows[0].keys()


def test_cli_table_and_list(tmp_path):
    out = _cli("--list")
    assert out.returncode == 0 and "dynamic_threshold:" in out.stdout
    seq = tmp_path / "s.json"
    seq.write_text(json.dumps([m("A", "2MiB"), f("A")]))
    out = _cli(str(seq))
    assert out.returncode == 0, out.stderr
    assert "mmap=1" in out.stdout and "munmap=1" in out.stdout


def test_cli_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([f("ghost")]))
    out = _cli(str(bad))
    assert out.returncode == 2 and "never allocated" in out.stderr and "Traceback" not in out.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    out = _cli(str(broken))
    assert out.returncode == 2 and "not valid JSON" in out.stderr
    assert _cli().returncode == 2
