"""Chapter 3's figure module: the numbers its figures and prose rest on (glibc 2.36 rules,
FACTS 32-40), the recorded glibc cell, and the seeded quiz."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from models.errors import ModelInputError
from models.kernel.pages import PageState
from models.viz import free as F

KiB = 1024


def test_hole_in_the_middle_keeps_rss_and_makes_no_syscall():
    run = F.sequence_run("64KiB", "CD", False, "dynamic")
    assert run.rss_pages[run.index("malloc E")] == 81            # 324 KiB of heap, all written
    for label in ("free C", "free D", "malloc F", "free F"):
        assert run.rss_change(label) == 0
        assert sum(run.syscalls[run.index(label)].values()) == 0
    assert run.faults[run.index("malloc F")] == 0                 # F reuses C's resident pages


def test_malloc_trim_releases_31_whole_pages_and_reuse_faults_them_back():
    run = F.sequence_run("64KiB", "CD", True, "dynamic")
    i = run.index("malloc_trim(0)")
    assert run.syscalls[i] == {"brk": 0, "mmap": 0, "munmap": 0, "madvise": 1}
    assert run.rss_change("malloc_trim(0)") == -31
    assert run.faults[run.index("malloc F")] == 16                # a 64 KiB F in the trimmed hole


@pytest.mark.parametrize("size, pages, brk_kib", [("16KiB", 7, 48), ("100KiB", 49, 28)])
def test_malloc_trim_also_trims_the_top(size, pages, brk_kib):
    run = F.sequence_run(size, "CD", True, "dynamic")
    i = run.index("malloc_trim(0)")
    assert run.syscalls[i]["madvise"] == 1 and run.syscalls[i]["brk"] == 1
    assert run.rss_change("malloc_trim(0)") == -pages
    assert run.heap_size[i - 1] - run.heap_size[i] == brk_kib * KiB


def test_top_trimming_keeps_the_top_pad():
    only_e = F.sequence_run("64KiB", "E", False, "dynamic")
    assert only_e.syscalls[only_e.index("free E")]["brk"] == 0
    cde = F.sequence_run("64KiB", "CDE", False, "dynamic")
    i = cde.index("free E")
    assert cde.syscalls[i]["brk"] == 1
    assert cde.heap_size[i - 1] - cde.heap_size[i] == 64 * KiB
    everything = F.sequence_run("64KiB", "ABCDE", False, "dynamic")
    assert everything.heap_size[everything.index("free E")] == 132 * KiB


def test_dynamic_threshold_moves_f_into_the_heap_and_pinning_undoes_it():
    dyn = F.sequence_run("200KiB", "CD", False, "dynamic")
    assert dyn.placements[dyn.index("malloc A")] == "mmap"
    assert dyn.rss_change("free C") == -51                         # one 208,896-byte mapping
    assert dyn.mmap_threshold[dyn.index("free C")] == 208_896
    assert dyn.trim_threshold[dyn.index("free C")] == 2 * 208_896
    assert dyn.placements[dyn.index("malloc F")] == "heap"
    assert dyn.syscalls[dyn.index("malloc F")]["brk"] == 1
    assert dyn.rss_change("free F") == 0
    pinned = F.sequence_run("200KiB", "CD", False, "pinned")
    assert pinned.placements[pinned.index("malloc F")] == "mmap"
    assert pinned.rss_change("free F") == -51
    none = F.sequence_run("200KiB", "", False, "dynamic")          # no free of a mapped block
    assert none.placements[none.index("malloc F")] == "mmap"


def test_16_mib_stays_resident_after_free_unless_pinned():
    dyn = F.sequence_run("16MiB", "CD", False, "dynamic")
    assert dyn.placements[dyn.index("malloc F")] == "heap"
    assert dyn.rss_change("free F") == 0
    pinned = F.sequence_run("16MiB", "CD", False, "pinned")
    assert pinned.rss_change("free F") == -(16 * 256 + 1)


def test_sequence_rejects_bad_choices():
    with pytest.raises(ModelInputError, match="block_size"):
        F.sequence_ops("3KiB", "CD", False, "dynamic")
    with pytest.raises(ModelInputError, match="frees"):
        F.sequence_ops("64KiB", "none", False, "dynamic")
    with pytest.raises(ModelInputError, match="malloc_trim"):
        F.sequence_ops("64KiB", "CD", 1, "dynamic")


def test_ae_pagemap_page_states():
    snaps = F.ae_run(True, "64KiB")
    assert [s.heap_pages for s in snaps] == [0, 81, 81, 81, 81, 81, 81, 65]
    assert [s.heap_rss_pages for s in snaps] == [0, 81, 81, 81, 50, 75, 75, 59]
    after_trim = snaps[4]
    dropped = np.flatnonzero(after_trim.states == PageState.NOT_PRESENT)
    assert list(dropped) == list(range(33, 64))                    # whole pages inside the hole
    # malloc's view: the hole's end pages are still labelled by their neighbours / header
    assert after_trim.owners[32] == "free" and after_trim.owners[64] == "E"
    assert set(after_trim.owners[33:64]) == {"free"}
    assert snaps[5].faults_so_far - snaps[4].faults_so_far == 25   # F (100 KiB) faults back in
    assert snaps[7].syscalls_so_far["brk"] - snaps[6].syscalls_so_far["brk"] == 1
    no_trim = F.ae_run(False, "64KiB")
    assert no_trim[5].faults_so_far == no_trim[4].faults_so_far     # nothing left the hole
    big = F.ae_run(True, "100KiB")
    assert big[3].heap_rss_pages - big[4].heap_rss_pages == 49
    assert big[3].heap_pages - big[4].heap_pages == 7


def test_ae_figure_draws_every_heap_page_and_rejects_a_bad_step():
    fig = F.ae_figure(4, True, "64KiB")
    z = np.array(fig.data[0].z, dtype=float)
    assert np.count_nonzero(z == int(PageState.NOT_PRESENT)) == 31
    assert np.count_nonzero(z == int(PageState.RESIDENT)) == 50
    with pytest.raises(ModelInputError, match="step"):
        F.ae_figure(8, True, "64KiB")


def test_explorables_fit_the_page_budget():
    for exp in (F.free_sequence, F.ae_pagemap):
        grid = exp.grid()
        assert grid.payload_bytes < 400_000, exp.title
    assert len(F.free_sequence.combinations()) == 120
    text = F.free_sequence.describe_at(block_size="64KiB", frees="CD", malloc_trim=True)
    assert "malloc_trim(0): 1 madvise, RSS -124 KiB" in text


def test_recorded_glibc_cell_matches_the_model():
    result = F.glibc_vs_model(force_recorded=True)
    assert not result.live and "recorded on" in result.source and "glibc 2." in result.source
    assert result.agrees, result.problems
    rows = {what: r for _, what, r, _ in result.rows()}
    assert rows["malloc_trim(0)"]["syscalls"]["madvise"] == 1
    assert rows["malloc H"]["placement"] == "heap"
    assert "<table" in result.html()


def test_recorded_glibc_cell_refuses_a_different_sequence(tmp_path):
    src = F.glibc_record_path("ch03-glibc-ae")
    obj = json.loads(src.read_text())
    obj["ops"][0]["size"] = "32KiB"
    (tmp_path / "ch03-glibc-ae.json").write_text(json.dumps(obj))
    with pytest.raises(ModelInputError, match="different sequence"):
        F.glibc_vs_model(force_recorded=True, directory=tmp_path)


def test_live_glibc_cell_runs_here():
    from models.realkernel.glibc_probe import probe_support
    ok, why = probe_support()
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the glibc probe cannot run in CI: {why}")
        pytest.skip(why)
    result = F.glibc_vs_model(force_recorded=False)
    assert result.live
    assert result.agrees, result.problems


def test_kernel_hole_recording_agrees():
    from models.viz.kernel_cell import kernel_vs_model
    result = kernel_vs_model(F.kernel_hole(), "ch03-dontneed-hole", force_recorded=True)
    assert result.agrees
    assert [r.rss_pages for r in result.model] == [0, 5120, 3072, 3072, 4096, 5120, 0]


def test_quiz_is_seeded_and_answered_by_the_model():
    a, b = F.quiz_exercise(12), F.quiz_exercise(12)
    assert a == b
    assert F.quiz_exercise(13) != a
    quiz = F.malloc_quiz(12)
    assert quiz.ops[-1] == {"op": "free", "id": "E"}
    assert quiz.rss_change_pages() == 0 and sum(quiz.last.syscalls.values()) == 0
    assert "417,792" in F.quiz_rule(quiz)                        # the raised trim threshold
    for seed in range(40):
        q = F.malloc_quiz(seed)
        assert q.ops[-1]["op"] in ("free", "malloc_trim")
        last = q.last
        if q.ops[-1]["op"] == "free" and last.syscalls["munmap"]:
            assert q.rss_change_pages() < 0
        assert f"Operation {len(q.ops)}:" in F.quiz_exercise(seed)[1]
    with pytest.raises(ModelInputError, match="seed"):
        F.malloc_quiz(-1)


def test_request_loop_dynamic_threshold_keeps_the_buffer_resident():
    dyn = F.request_loop("1MiB", "dynamic")
    assert dyn.placements == ("mmap",) + ("heap",) * (F.REQUESTS - 1)
    assert dyn.faults[:3] == (258, 256, 0)                       # mapped, then heap, then reused
    assert dyn.rss_idle[0] == 1 and set(dyn.rss_idle[1:]) == {257}
    assert dyn.mmap_threshold[0] == (1 << 20) + 4096
    pinned = F.request_loop("1MiB", "pinned")
    assert set(pinned.placements) == {"mmap"}
    assert set(pinned.faults[1:]) == {257} and set(pinned.rss_idle) == {1}
    assert all(s["mmap"] == 1 and s["munmap"] == 1 for s in pinned.syscalls)
    above_cap = F.request_loop("40MiB", "dynamic")
    assert set(above_cap.placements) == {"mmap"} and above_cap.mmap_threshold[-1] == 128 * KiB
    with pytest.raises(ModelInputError, match="buffer_size"):
        F.request_loop("2MiB", "dynamic")
