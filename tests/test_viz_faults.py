"""Chapter 2 figures (models/viz/faults.py): the numbers the chapter's prose quotes."""
from __future__ import annotations

import numpy as np
import pytest

from models.errors import ModelInputError
from models.kernel.pages import PageState
from models.kernel.replay import play
from models.viz import faults as f
from models.viz.pagemap import snapshots


def test_overlap_scenario_faults_and_rss_read_first_and_write_first():
    a = play(f.overlap_scenario("read"))
    b = play(f.overlap_scenario("write"))
    assert [r.faults for r in a] == [0, 128, 128, 64, 128] and sum(r.faults for r in a) == 448
    assert [r.rss_pages for r in a] == [0, 0, 128, 128, 256]
    assert [r.faults for r in b] == [0, 128, 64, 64, 64] and sum(r.faults for r in b) == 320
    assert [r.rss_pages for r in b] == [0, 128, 192, 192, 256]
    zero = [s.count(int(PageState.ZERO_PAGE)) for s in snapshots(f.overlap_scenario("read")).snapshots]
    assert zero == [0, 128, 64, 128, 0]


def test_overlap_pagemap_is_a_16x16_grid_with_both_variants():
    grid = f.overlap_pagemap.grid()
    assert grid.names == ["step", "first"] and grid.sizes == [5, 2]
    heat = grid.figure_at([2, 0])["data"][0]
    assert len(heat["z"]) == 16 and all(len(row) == 16 for row in heat["z"])
    assert "320 so far" in f.overlap_pagemap.describe_at(step=4, first="write")


def test_scaled_scenarios_of_the_kernel_cells():
    rows = play(f.OVERLAP_64)
    assert [r.faults for r in rows] == [0, 8192, 8192, 4096, 8192, 0]
    assert sum(r.faults for r in rows) == 448 * 64
    assert [r.rss_pages for r in rows] == [0, 0, 8192, 8192, 16384, 0]
    assert rows[3].zero_pages == 8192
    rwr = play(f.READ_WRITE_READ)
    assert [r.faults for r in rwr] == [0, 16384, 16384, 0, 0]
    assert [r.zero_pages for r in rwr] == [None, 16384, None, 0, None]


@pytest.mark.parametrize("pattern,pages", [("sequential", 16384), ("stride_1k", 16384),
                                           ("stride_16k", 4096), ("random", 10348)])
def test_touch_patterns_whole_region(pattern, pages):
    w = f.touch_pattern(pattern, "write", 1.0)
    r = f.touch_pattern(pattern, "read", 1.0)
    rw = f.touch_pattern(pattern, "read_then_write", 1.0)
    assert w.pages_touched == pages and w.rss_pages == pages and w.new_page_faults == pages
    assert (w.zero_page_faults, w.cow_faults) == (0, 0)
    assert r.rss_pages == 0 and r.zero_page_faults == pages and r.faults == pages
    assert rw.rss_pages == pages and (rw.zero_page_faults, rw.cow_faults, rw.new_page_faults) == (pages, pages, 0)


def test_touch_pattern_bytes_and_growth():
    assert f.touch_pattern("stride_16k", "write", 1.0).bytes_accessed == 4096
    assert f.touch_pattern("stride_1k", "write", 1.0).accesses == 65536
    assert f.touch_pattern("sequential", "write", 0.1).pages_touched == 1639
    assert f.touch_pattern("random", "write", 0.1).pages_touched == 1562
    assert 0.62 < 10348 / 16384 < 1 - np.exp(-1) + 0.01      # close to 1 - 1/e
    states = f.touch_pattern("stride_16k", "write", 1.0).states
    assert list(states[:8]) == [PageState.RESIDENT, 0, 0, 0, PageState.RESIDENT, 0, 0, 0]


def test_touch_pattern_bad_input():
    with pytest.raises(ModelInputError, match="pattern"):
        f.touched_pages("zigzag", 0.5)
    with pytest.raises(ModelInputError, match="fraction"):
        f.touched_pages("random", 0)
    with pytest.raises(ModelInputError, match="access"):
        f.touch_pattern("random", "execute", 0.5)


def test_fault_costs_match_the_chapter():
    assert f.fault_cost_ms(64, "write", 1.2, 0) == pytest.approx(19.66, abs=0.01)
    assert f.fault_cost_ms(1024, "write", 1.2, 0) == pytest.approx(314.6, abs=0.1)
    assert f.fault_cost_ms(4096, "write", 1.2, 0) == pytest.approx(1258.3, abs=0.1)
    assert f.fault_cost_ms(256, "write", 1.2, 0) == pytest.approx(78.64, abs=0.01)
    per_round = f.fault_cost_ms(64, "write", 1.2, 1) - f.fault_cost_ms(64, "write", 1.2, 0)
    assert per_round == pytest.approx(16384 * (1.2 + 0.239) / 1000, rel=1e-3)
    assert f.fault_cost_ms(1024, "write", 1.2, 10) == pytest.approx(4087, abs=1)
    assert f.fault_cost_ms(1024, "read_then_write", 1.2, 0) == pytest.approx(485.0, abs=0.5)
    assert f.fault_cost_ms(1024, "read", 1.2, 0) == pytest.approx(170.4, abs=0.5)
    assert f.fault_cost_ms(64, "write", 2.4, 0) == pytest.approx(2 * f.fault_cost_ms(64, "write", 1.2, 0))


def test_release_round_is_what_the_model_counts_again():
    counts = f.fault_counts(64, "read_then_write")
    assert counts.first == counts.again == {"zero": 16384, "new": 0, "cow": 16384}
    with pytest.raises(ModelInputError, match="rounds"):
        f.fault_cost_ms(64, "write", 1.2, -1)
    with pytest.raises(ModelInputError, match="write_fault_us"):
        f.page_prices_ns(0)


def test_chapter_explorables_fit_the_page_budget():
    total = sum(ex.grid().payload_bytes for ex in (f.overlap_pagemap, f.touch_patterns, f.fault_costs,
                                                   f.quiz_pagemap()))
    assert total < 1_000_000


@pytest.mark.parametrize("scenario,record_id", [(f.READ_WRITE_READ, "ch02-read-write-read"),
                                                (f.OVERLAP_64, "ch02-overlap-64mib")])
def test_chapter_kernel_cells_agree_on_this_kernel(scenario, record_id, monkeypatch):
    """The chapter's kernel cells, live on this machine (CI=true: must run), and their recordings."""
    import sys

    from conftest import need
    from models.realkernel.engine import kernel_engine_support
    from models.viz import kernel_cell as kc

    recorded = kc.kernel_vs_model(scenario, record_id, force_recorded=True)
    assert recorded.agrees and not recorded.live, recorded.summary()
    ok, why = kernel_engine_support(scenario)
    need(ok and sys.platform.startswith("linux"), f"the real-kernel engine cannot run here: {why}")
    for name in (kc.RECORD_ENV, kc.FORCE_RECORDED_ENV):
        monkeypatch.delenv(name, raising=False)
    live = kc.kernel_vs_model(scenario, record_id)
    assert live.live and live.agrees, live.summary()
