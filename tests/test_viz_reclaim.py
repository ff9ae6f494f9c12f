"""Chapter 5's figure functions: the page model's numbers behind the explorables (FACTS 18-27, E7;
docs/KERNEL-NOTES.md K3, K7, K9)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from models import quiz
from models.errors import ModelInputError
from models.kernel.pages import PageState
from models.kernel.replay import play
from models.viz import reclaim as r
from models.viz.explorable import MAX_EMBED_BYTES, figure_json
from models.viz.pagemap import snapshots

REGION = 16384            # 64 MiB in pages
MIB = 256                 # pages per MiB


# ------------------------------------------------------------------ the page map

def _states(limit, pressure, step):
    run = snapshots(r.two_regions_scenario(limit, pressure))
    snap = run.snapshots[step]
    return snap.states["old"], snap.states["new"], snap.result


def test_default_reclaim_takes_the_overshoot_from_the_region_freed_first():
    old, new, res = _states(192, 96, 6)
    assert np.all(old[:8192] == PageState.RECLAIMED) and np.all(old[8192:] == PageState.LAZYFREE)
    assert np.all(new == PageState.LAZYFREE)
    assert (res.rss_pages, res.lazyfree_pages, res.error) == (24576, 24576, None)
    b = r.pagemap_budget(192, 96)[6]
    assert b.reclaimed_pages == 8192 and b.charged_pages == b.limit_pages == 192 * MIB
    assert (b.live_pages, b.lazyfree_pages, b.pressure_pages) == (0, 96 * MIB, 96 * MIB)


def test_reading_reclaimed_pages_faults_and_gives_zeros_then_writing_new_cancels_its_free():
    _, _, read_old = _states(192, 96, 7)
    assert read_old.faults == 8192 and read_old.zero_pages == 8192 and read_old.rss_pages == 24576
    _, _, read_new = _states(192, 96, 8)
    assert read_new.faults == 0 and read_new.zero_pages == 0
    _, new, write_new = _states(192, 96, 9)
    assert write_new.faults == 0 and write_new.lazyfree_pages == 8192
    assert np.all(new == PageState.RESIDENT)


def test_the_limit_and_the_allocation_change_what_is_reclaimed():
    assert r.pagemap_budget(256, 96)[6].reclaimed_pages == 0
    old, new, _ = _states(192, 160, 6)
    assert np.all(old == PageState.RECLAIMED)
    assert np.all(new[:8192] == PageState.RECLAIMED) and np.all(new[8192:] == PageState.LAZYFREE)
    # K9: writing back a half-reclaimed region under a full budget cascades into an OOM kill
    assert r.pagemap_budget(192, 160)[9].error == "OOM_KILL"
    # 160 MiB cannot fit in 128 MiB whatever is reclaimed
    killed = r.pagemap_budget(128, 160)
    assert len(killed) == 7 and killed[6].error == "OOM_KILL"
    # 128 MiB, 32 MiB more: exactly full after the final write, no kill
    last = r.pagemap_budget(128, 32)[9]
    assert last.error is None and last.charged_pages == 128 * MIB


def test_pagemap_figure_budget_bar_and_controls_move_the_figure():
    a = figure_json(r.reclaim_pagemap.figure(step=6, limit_mib=192, pressure_mib=96))
    b = figure_json(r.reclaim_pagemap.figure(step=6, limit_mib=256, pressure_mib=96))
    c = figure_json(r.reclaim_pagemap.figure(step=5, limit_mib=192, pressure_mib=96))
    assert a["data"][0]["z"] != b["data"][0]["z"] and a["data"][0]["z"] != c["data"][0]["z"]
    # 8x8 cells of 1 MiB: the first 4 rows of old are reclaimed
    z = np.array(a["data"][0]["z"])
    assert z.shape == (8, 8)
    assert np.all(z[:4] == PageState.RECLAIMED) and np.all(z[4:] == PageState.LAZYFREE)
    text = " ".join(ann["text"] for ann in a["layout"]["annotations"])
    assert "limit 192" in text and "reclaimed so far 32" in text


# ------------------------------------------------------------------ the OOM point

@pytest.mark.parametrize("limit", r.LIMITS)
@pytest.mark.parametrize("share", r.SHARES)
def test_the_oom_point_depends_only_on_live_memory(limit, share):
    free = r.limit_sweep(limit, share, "MADV_FREE", "6.18")
    dontneed = r.limit_sweep(limit, share, "MADV_DONTNEED", "6.18")
    live = 128 - 128 * share // 100
    assert free.live_mib == dontneed.live_mib == live
    expect = max(x for x in r.SECOND_MIB if live + x <= limit) if live <= limit else -1
    assert free.largest_fit_mib == dontneed.largest_fit_mib == expect
    assert np.array_equal(free.oom, dontneed.oom)
    assert np.all(dontneed.reclaimed_mib == 0)
    # MADV_FREE: RSS stays 128 until the charges reach the limit, then falls 1 MiB per MiB
    fits = ~free.oom
    x = free.second_mib[fits]
    want = np.minimum(128, limit - x)
    assert np.array_equal(free.heap_rss_mib[fits], np.maximum(want, live))
    assert np.array_equal(free.reclaimed_mib[fits], 128 - free.heap_rss_mib[fits])


def test_kernel_eras_in_the_limit_sweep():
    lazy = r.limit_sweep(192, 50, "MADV_FREE", "6.18")
    assert lazy.rss_before_mib == 128 and lazy.largest_fit_mib == 128
    assert lazy.reclaimed_mib[lazy.second_mib == 128][0] == 64
    assert lazy.reclaimed_mib[lazy.second_mib == 64][0] == 0      # exactly full: no reclaim yet
    passthrough = r.limit_sweep(192, 50, "MADV_FREE", "4.9")
    assert passthrough.acts_as == "MADV_DONTNEED" and passthrough.rss_before_mib == 64
    assert np.all(passthrough.reclaimed_mib == 0) and passthrough.largest_fit_mib == 128
    old = r.limit_sweep(192, 50, "MADV_FREE", "4.4")
    assert old.madvise_error == "EINVAL" and old.live_mib == 128 and old.largest_fit_mib == 64


def test_limit_figure_marks_the_oom_band_from_the_first_kill():
    fig = r.limit_figure(192, 50, "MADV_FREE", "6.18")
    band = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(band) == 1 and band[0].x0 == 132
    assert "128 MiB" in fig.layout.annotations[-1].text or any(
        "largest allocation that fits: 128 MiB" in a.text for a in fig.layout.annotations)
    rss = fig.data[0].y
    assert rss[r.SECOND_MIB.index(128)] == 64 and np.isnan(rss[r.SECOND_MIB.index(136)])


# ------------------------------------------------------------------ the metrics

def _m(share, rewritten, pressure, step):
    return r.metrics_model(share, rewritten, pressure)[step]


def test_madv_free_leaves_usage_and_moves_pages_to_inactive_file():
    m = _m(50, 0, 0, 2)
    assert (m.smaps_rss, m.smaps_lazyfree, m.usage, m.cgroup_rss) == (128, 64, 128, 128)
    assert (m.inactive_file, m.working_set, m.true_live) == (64, 64, 64)


def test_rewritten_pages_stay_filed_so_the_working_set_undercounts():
    m = _m(50, 50, 0, 3)
    assert m.smaps_lazyfree == 32 and m.true_live == 96
    assert m.inactive_file == 64 and m.working_set == 64          # 32 MiB under-count (FACTS 27)


def test_reclaim_discards_clean_pages_and_refiles_rewritten_ones():
    m = _m(50, 50, 96, 4)
    assert (m.smaps_rss, m.smaps_lazyfree, m.usage, m.inactive_file) == (96, 0, 192, 0)
    assert m.working_set == m.usage == m.true_live == 192 and m.reclaimed == 32
    clean = _m(100, 0, 96, 4)
    assert (clean.smaps_rss, clean.inactive_file, clean.working_set, clean.reclaimed) == (96, 96, 96, 32)


def test_nothing_freed_means_every_counter_is_live_and_pressure_kills():
    m = _m(0, 0, 0, 4)
    assert m.smaps_rss == m.usage == m.working_set == m.true_live == 128 and m.inactive_file == 0
    run = r.metrics_model(0, 0, 96)
    assert len(run) == 5 and run[-1].error == "OOM_KILL"
    assert "OOM kill" in r.metrics_figure(4, 0, 0, 96).layout.title.text


def test_metrics_figure_bars_follow_the_model_and_mark_derived_ones():
    fig = r.metrics_figure(3, 50, 50, 0)
    assert list(fig.data[0].y) == [128, 32, 128, 128, 64, 64]
    assert list(fig.data[0].marker.pattern.shape) == ["", "", "/", "/", "/", "/"]
    assert any("inference" in a.text for a in fig.layout.annotations)


# ------------------------------------------------------------------ explorables, kernel cells, quiz

@pytest.mark.parametrize("name", ["reclaim_pagemap", "limit_explorer", "metrics_explorable"])
def test_explorables_fit_the_page_budget_and_every_control_matters(name):
    e = getattr(r, name)
    grid = e.grid()
    assert grid.payload_bytes < MAX_EMBED_BYTES / 2
    base = e.defaults()
    for param, control in e.controls.items():
        figs = {json.dumps(figure_json(e.figure(**{**base, param: v}))["data"], sort_keys=True)
                for v in control.values}
        assert len(figs) > 1, f"{name}: control {param} never changes the figure"


def test_kernel_cell_scenarios_and_recordings():
    from models.viz.kernel_cell import kernel_vs_model
    m = play(r.kernel_two_regions())
    assert [x.rss_pages for x in m[5:10]] == [32768, 24576, 24576, 24576, 24576]
    assert m[7].zero_pages == 8192 and m[9].lazyfree_pages == 8192 and m[9].faults == 0
    oom = play(r.kernel_oom())
    assert oom[3].rss_pages == 24576 and oom[4].error == "OOM_KILL" and len(oom) == 5
    for scen, rid in ((r.kernel_two_regions(), "ch05-two-regions"), (r.kernel_oom(), "ch05-oom")):
        cell = kernel_vs_model(scen, rid, force_recorded=True)
        assert not cell.live and "recorded on" in cell.source and cell.agrees, cell.summary()
    cell = kernel_vs_model(r.kernel_two_regions(), "ch05-two-regions", force_recorded=True)
    text = r.reclaim_summary(cell)
    reclaimed = cell.kernel[5].rss_pages - cell.kernel[6].rss_pages
    assert 8192 <= reclaimed <= 8192 * 1.05 and f"kernel {reclaimed:,}" in text


def test_quiz_solution_matches_the_answer_key():
    q = quiz.generate(r.QUIZ_SEED, "reclaim")
    answers = quiz.answers(q)
    pressure = next(i for i, s in enumerate(q.scenario.steps) if s.op == "pressure")
    lost = r.quiz_reclaimed(r.QUIZ_SEED)
    assert sum(lost.values()) == answers[pressure - 1].rss_pages - answers[pressure].rss_pages
    assert lost["new"] == 0 and lost["old"] > 0                 # the region freed first
    assert answers[-1].zero_pages == lost["old"]
    assert r.quiz_pagemap().grid().combinations == len(q.scenario.steps)


def test_watermarks_parse_zoneinfo():
    text = """Node 0, zone      DMA
  pages free     3840
        min      32
        low      40
        high     48
        managed  3840
Node 0, zone   Normal
  pages free     100
        min      10298
        low      12872
        high     15446
        managed  1212416
Node 0, zone  Movable
        min      32
        low      32
        high     32
        managed  0
"""
    zones = r.read_watermarks(text)
    assert [z.name for z in zones] == ["node 0 DMA", "node 0 Normal"]
    assert zones[1] == r.Zone("node 0 Normal", 1212416, 10298, 12872, 15446)


def test_bad_input_names_the_parameter():
    with pytest.raises(ModelInputError, match="limit_mib"):
        r.limit_sweep(100)
    with pytest.raises(ModelInputError, match="share_percent"):
        r.limit_sweep(192, 33)
    with pytest.raises(ModelInputError, match="kernel_version"):
        r.limit_sweep(192, 50, "MADV_FREE", "5.4")
    with pytest.raises(ModelInputError, match="rewritten_percent"):
        r.metrics_model(50, 25, 0)
    with pytest.raises(ModelInputError, match="pressure_mib"):
        r.two_regions_scenario(192, 100)
