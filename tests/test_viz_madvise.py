"""Chapter 4's figure functions: the page model's numbers behind the explorables (FACTS 6-16, E1, E3)."""
from __future__ import annotations

import numpy as np
import pytest

from models.errors import ModelInputError
from models.goruntime.cost import CostModel
from models.kernel.pages import PageState
from models import quiz
from models.viz import madvise as m

FULL = 16384   # 64 MiB in 4 KiB pages
HALF = FULL // 2


@pytest.mark.parametrize("kernel, swap", [("4.4", False), ("4.9", False), ("4.9", True),
                                          ("4.14", False), ("6.x", True)])
def test_dontneed_is_the_same_on_every_kernel(kernel, swap):
    r = m.reuse_model("MADV_DONTNEED", kernel, swap, 50)
    assert (r.rss_after_madvise, r.rss_after_reuse) == (0, HALF)
    assert r.lazyfree_after_madvise == r.lazy_after_madvise == 0
    assert r.reuse_faults == HALF and r.madvise_error is None and r.acts_as == "MADV_DONTNEED"


def test_free_on_a_current_kernel_keeps_rss_and_takes_no_faults():
    for swap in (False, True):
        r = m.reuse_model("MADV_FREE", "6.x", swap, 50)
        assert (r.rss_after_madvise, r.rss_after_reuse) == (FULL, FULL)
        assert (r.lazyfree_after_madvise, r.lazyfree_after_reuse) == (FULL, HALF)
        assert r.reuse_faults == 0
    assert m.reuse_model("MADV_FREE", "4.14", False, 50) == \
        m.reuse_model("MADV_FREE", "6.x", False, 50).__class__(
            **{**m.reuse_model("MADV_FREE", "6.x", False, 50).__dict__, "kernel_version": "4.14"})


def test_free_on_49_without_swap_is_dontneed_and_priced_as_such():
    free = m.reuse_model("MADV_FREE", "4.9", False, 50)
    dontneed = m.reuse_model("MADV_DONTNEED", "4.9", False, 50)
    assert free.acts_as == "MADV_DONTNEED"
    assert (free.rss_after_madvise, free.rss_after_reuse, free.reuse_faults) == (0, HALF, HALF)
    assert free.call_ns == dontneed.call_ns and free.reuse_ns == dontneed.reuse_ns


def test_free_on_49_with_swap_is_lazy_but_smaps_has_no_field():
    r = m.reuse_model("MADV_FREE", "4.9", True, 50)
    assert not r.has_lazyfree_field
    assert r.lazyfree_after_madvise == 0 and r.lazy_after_madvise == FULL
    assert r.lazy_after_reuse == HALF and r.rss_after_madvise == FULL and r.reuse_faults == 0
    fig = m.reuse_figure("MADV_FREE", "4.9", True, 50)
    bars = fig.data[0]
    assert list(bars.marker.pattern.shape) == ["", "", "/", "/"]
    assert list(bars.y)[2:] == [64, 32]       # the true count, hatched
    assert "no LazyFree" in bars.text[2]


def test_free_before_45_is_einval_and_releases_nothing():
    r = m.reuse_model("MADV_FREE", "4.4", False, 50)
    assert r.madvise_error == "EINVAL" and r.acts_as is None
    assert (r.rss_after_madvise, r.rss_after_reuse, r.reuse_faults) == (FULL, FULL, 0)
    assert r.call_ns == 0
    notes = [a.text for a in m.reuse_figure("MADV_FREE", "4.4", False, 50).layout.annotations]
    assert any("EINVAL" in t for t in notes)
    assert "<b>1.2 ms</b>" in notes            # total: no call cost, 8,192 x 150 ns rewrite


def test_costs_follow_the_e3_constants():
    # FACTS 9 / E3: 239 ns and 64 ns per page for the call; 1.2 us re-touch with a fault, 150 ns without
    d = m.reuse_model("MADV_DONTNEED", "6.x", False, 50)
    f = m.reuse_model("MADV_FREE", "6.x", False, 50)
    assert d.call_ns == pytest.approx(FULL * 239) and d.reuse_ns == pytest.approx(HALF * 1200)
    assert f.call_ns == pytest.approx(FULL * 64) and f.reuse_ns == pytest.approx(HALF * 150)
    assert round(d.call_ns / 1e6, 1) == 3.9 and round(d.reuse_ns / 1e6, 1) == 9.8
    assert round(f.call_ns / 1e6, 1) == 1.0 and round(f.reuse_ns / 1e6, 1) == 1.2
    mine = CostModel(ns_per_fault=1000, ns_per_zeroed_page=0, ns_per_touch=0,
                     ns_per_madvise_page={"MADV_DONTNEED": 1, "MADV_FREE": 1})
    assert m.reuse_model("MADV_DONTNEED", "6.x", False, 25, cost=mine).reuse_ns == FULL // 4 * 1000


@pytest.mark.parametrize("percent", m.PERCENT)
def test_reused_fraction_moves_rss_for_dontneed_and_lazyfree_for_free(percent):
    pages = FULL * percent // 100
    d = m.reuse_model("MADV_DONTNEED", "6.x", False, percent)
    f = m.reuse_model("MADV_FREE", "6.x", False, percent)
    assert d.rss_after_reuse == pages and d.reuse_faults == pages
    assert f.rss_after_reuse == FULL and f.lazyfree_after_reuse == FULL - pages and f.reuse_faults == 0


def test_reuse_refuses_bad_input():
    with pytest.raises(ModelInputError, match=r"advice must be one of \['MADV_DONTNEED', 'MADV_FREE'\]"):
        m.reuse_model("MADV_COLD", "6.x", False, 50)
    with pytest.raises(ModelInputError, match="kernel_version must be one of"):
        m.reuse_model("MADV_FREE", "5.4", False, 50)
    with pytest.raises(ModelInputError, match=r"reused_percent must be a whole number in 0\.\.100, got 150"):
        m.reuse_model("MADV_FREE", "6.x", False, 150)
    with pytest.raises(ModelInputError, match="swap must be True or False"):
        m.reuse_model("MADV_FREE", "6.x", "no", 50)


def test_reuse_grid_is_complete_and_small():
    grid = m.reuse_vs_advice.grid()
    assert grid.combinations == 2 * 4 * 2 * 5 * 2
    assert grid.payload_bytes < 400_000
    # advice, kernel, swap, percent, constants: MADV_DONTNEED on 6.x without swap, 100 %, E3
    fig = grid.figure_at([0, 3, 0, 4, 0])
    assert fig["data"][0]["y"] == [0, 64, 0, 0]
    assert fig["data"][2]["y"] == [pytest.approx(FULL * 1200 / 1e6)]


# ------------------------------------------------------------------ read vs write

@pytest.mark.parametrize("access, pressure, rss, lazyfree, zeros", [
    ("write", False, FULL, HALF, 0),
    ("write", True, HALF, 0, HALF),      # the written half survives, the rest reads zeros
    ("read", False, FULL, FULL, 0),      # a read cancels nothing (FACTS 13)
    ("read", True, 0, 0, FULL),          # ... so reclaim takes the pages that were read, too
])
def test_only_a_write_takes_pages_back(access, pressure, rss, lazyfree, zeros):
    r = m.read_vs_write_model(access, 50, pressure)
    assert (r.rss_before_read, r.lazyfree_before_read) == (rss, lazyfree)
    assert r.final_read_zero_pages == zeros and r.final_read_faults == zeros
    states = r.states
    if access == "write":
        assert np.all(states[:HALF] == PageState.RESIDENT)
        rest = PageState.RECLAIMED if pressure else PageState.LAZYFREE
        assert np.all(states[HALF:] == rest)
    else:
        assert np.all(states == (PageState.RECLAIMED if pressure else PageState.LAZYFREE))


@pytest.mark.parametrize("percent", m.PERCENT)
def test_reading_any_fraction_changes_nothing(percent):
    base = m.read_vs_write_model("read", 0, True)
    r = m.read_vs_write_model("read", percent, True)
    assert np.array_equal(r.states, base.states) and r.final_read_zero_pages == FULL


def test_band_keeps_the_dominant_state_and_the_figure_draws_it():
    states = np.array([PageState.RESIDENT] * 6 + [PageState.LAZYFREE] * 10, dtype=np.uint8)
    assert m.band(states, cells=2).tolist() == [PageState.RESIDENT, PageState.LAZYFREE]
    fig = m.read_vs_write_figure("write", 25, True)
    heat = fig.data[0]
    cells = np.floor(np.array(heat.z[0])).astype(int)
    assert (cells == PageState.RESIDENT).sum() == m.BAND_CELLS // 4
    assert (cells == PageState.RECLAIMED).sum() == 3 * m.BAND_CELLS // 4
    assert "48 MiB of zeros" in m.describe_read_vs_write("write", 25, True)


def test_read_vs_write_grid_and_bad_input():
    assert m.read_vs_write.grid().combinations == 2 * 5 * 2
    with pytest.raises(ModelInputError, match=r"access must be one of \['read', 'write'\]"):
        m.read_vs_write_model("exec", 50, False)
    with pytest.raises(ModelInputError, match="pressure must be True or False"):
        m.read_vs_write_model("read", 50, 1)


# ------------------------------------------------------------------ quiz

def test_quiz_rule_names_the_deciding_rule():
    seen = set()
    for seed in range(60):
        q = quiz.generate(seed, "madvise")
        rule = m.quiz_rule(q)
        advice = next(s.advice for s in q.scenario.steps if s.op == "madvise")
        results = quiz.answers(q)
        madv = next(r for r in results if r.op == "madvise")
        if "fails with EINVAL" in rule:
            assert madv.error == "EINVAL" and advice == "MADV_FREE"
            seen.add("einval")
        elif "pass MADV_FREE to MADV_DONTNEED" in rule:
            assert madv.lazyfree_pages == 0 and madv.rss_pages < results[1].rss_pages
            seen.add("passthrough")
        elif "is lazy here" in rule:
            assert madv.rss_pages == results[1].rss_pages
            seen.add("lazy")
        else:
            assert advice == "MADV_DONTNEED"
            seen.add("dontneed")
    assert seen == {"einval", "passthrough", "lazy", "dontneed"}


# ------------------------------------------------------------------ this machine's constants

def test_measured_constants_show_the_fault_per_page_difference():
    """On the real kernel: the rewrite after MADV_DONTNEED faults once per page, after MADV_FREE
    never, and costs more (FACTS 8-9).  Absolute times vary with the machine and its load."""
    import sys
    if not sys.platform.startswith("linux"):
        pytest.skip("measuring madvise needs Linux")
    c = m.measure_costs(region_mib=16, rounds=3)
    assert c.dontneed_retouch_faults == pytest.approx(1.0, abs=0.02)
    assert c.free_retouch_faults == pytest.approx(0.0, abs=0.02)
    assert c.dontneed_retouch_ns > c.free_retouch_ns
    # Releasing the same pages again is cheaper than the first release: they are already off
    # the anonymous LRU (measured 61-118 vs 218-480 ns/page on Linux 6.18).
    assert c.free_again_call_ns < c.free_call_ns
    model = c.cost_model()
    assert model.madvise_ns("MADV_FREE", 1) == pytest.approx(c.free_call_ns)
    assert model.touch_ns(1, 1, 1) == pytest.approx(c.dontneed_retouch_ns)
    assert "measured now" in c.table()
    with pytest.raises(ModelInputError, match=r"region_mib must be a whole number in 4\.\.256"):
        m.measure_costs(region_mib=1024)


# ------------------------------------------------------------------ the page map

def _play_pagemap(pressure, kernel="6.x", swap=False):
    from models.kernel.replay import iter_play
    out = []
    for result, space in iter_play(m.free_pagemap_scenario(pressure), kernel_version=kernel, swap=swap):
        out.append((result, np.array(space.states("heap")) if not space.dead else None))
    return out


def test_pagemap_sequence_without_pressure():
    run = _play_pagemap(False)
    results = [r for r, _ in run]
    assert [r.faults for r in results[:6]] == [0, 1024, 1024, 0, 0, 0]   # write after read faults again
    assert (results[3].rss_pages, results[3].lazyfree_pages) == (1024, 1024)
    assert (results[4].rss_pages, results[4].lazyfree_pages) == (1024, 512)
    assert results[5].zero_pages == 0 and results[5].lazyfree_pages == 512  # a read cancels nothing
    assert np.all(run[5][1][512:768] == PageState.LAZYFREE)
    assert results[6].lazyfree_pages == 512                                # no budget: no reclaim
    assert (results[7].rss_pages, results[8].zero_pages, results[8].faults) == (0, 1024, 1024)


def test_pagemap_pressure_reclaims_exactly_the_lazily_freed_pages():
    states = _play_pagemap(True)[6][1]
    assert np.all(states[:512] == PageState.RESIDENT)
    assert np.all(states[512:] == PageState.RECLAIMED)      # including the quarter read at step 5
    r = _play_pagemap(True)[6][0]
    assert (r.rss_pages, r.lazyfree_pages, r.error) == (512, 0, None)


def test_pagemap_on_old_kernels():
    r49 = [r for r, _ in _play_pagemap(True, "4.9")]
    assert r49[3].rss_pages == 0 and r49[4].faults == 512 and r49[5].zero_pages == 256
    assert r49[6].error is None and r49[6].rss_pages == 512            # fits without reclaim
    r44 = [r for r, _ in _play_pagemap(True, "4.4")]
    assert r44[3].error == "EINVAL" and r44[3].rss_pages == 1024
    assert r44[-1].step == 6 and r44[-1].error == "OOM_KILL"
    assert "no LazyFree field" in m.describe_free_pagemap(5, "4.9", True, False)


def test_pagemap_grid_fits_the_page_budget():
    grid = m.free_pagemap.grid()
    assert grid.combinations == 9 * 4 * 2 * 2
    assert grid.payload_bytes < 700_000


# ------------------------------------------------------------------ the kernel cells

@pytest.mark.parametrize("make, record_id", [(m.kernel_reuse, "ch04-reuse"),
                                             (m.kernel_sequence, "ch04-sequence"),
                                             (m.kernel_shared, "ch04-shared")])
def test_recorded_kernel_runs_match_the_model(make, record_id):
    from models.viz.kernel_cell import kernel_vs_model
    cell = kernel_vs_model(make(), record_id, force_recorded=True)
    assert not cell.live and cell.agrees, cell.verdict()
    assert cell.kernel_release.startswith("6.")


def test_reuse_cell_live_on_this_kernel():
    from conftest import need
    from models.realkernel.engine import kernel_engine_support
    from models.viz.kernel_cell import kernel_vs_model
    ok, why = kernel_engine_support(m.kernel_reuse())
    need(ok, why)
    cell = kernel_vs_model(m.kernel_reuse(), "ch04-reuse", force_recorded=False)
    assert cell.live and cell.agrees, cell.verdict()
    k = cell.kernel
    assert k[6].faults <= 32 and abs(k[7].faults - 8192) <= 245   # FREE rewrite: no faults; DONTNEED: one per page
