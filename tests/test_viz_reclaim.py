"""Chapter 5's figure functions: the page model's numbers behind the explorables (FACTS 18-27, E7;
docs/KERNEL-NOTES.md K3, K7, K9)."""
from __future__ import annotations

import json
import os

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


#: The model may charge page tables too (docs/KERNEL-NOTES.md K3): one page per 2 MiB of each
#: mapping in use, a few dozen pages here; reclaim then takes that much more.
PT_SLACK = 256


def _reclaimed(states) -> int:
    return int(np.count_nonzero(states == PageState.RECLAIMED))


def test_default_reclaim_takes_the_overshoot_from_the_region_freed_first():
    old, new, res = _states(192, 96, 6)
    k = _reclaimed(old)
    assert 8192 <= k <= 8192 + PT_SLACK                       # 32 MiB over the budget (E7)
    assert np.all(old[:k] == PageState.RECLAIMED) and np.all(old[k:] == PageState.LAZYFREE)
    assert np.all(new == PageState.LAZYFREE)                  # the region freed last keeps all
    assert res.rss_pages == res.lazyfree_pages == 2 * REGION - k and res.error is None
    b = r.pagemap_budget(192, 96)[6]
    assert b.reclaimed_pages == k
    assert b.limit_pages - 32 < b.charged_pages <= b.limit_pages      # full, to a reclaim batch
    assert (b.live_pages, b.lazyfree_pages, b.pressure_pages) == (0, 2 * REGION - k, 96 * MIB)


def test_reading_reclaimed_pages_faults_and_gives_zeros_then_writing_new_cancels_its_free():
    old, _, _ = _states(192, 96, 6)
    k = _reclaimed(old)
    _, _, read_new = _states(192, 96, 7)
    assert read_new.faults == 0 and read_new.zero_pages == 0
    _, _, read_old = _states(192, 96, 8)
    assert read_old.faults == k and read_old.zero_pages == k and read_old.rss_pages == 2 * REGION - k
    _, new, write_new = _states(192, 96, 9)
    assert write_new.faults == 0 and write_new.lazyfree_pages == REGION - k
    assert np.all(new == PageState.RESIDENT)


def test_the_limit_and_the_allocation_change_what_is_reclaimed():
    assert r.pagemap_budget(256, 96)[6].reclaimed_pages == 0
    old, new, _ = _states(192, 160, 6)
    assert np.all(old == PageState.RECLAIMED)
    k = _reclaimed(new)
    assert 8192 <= k <= 8192 + PT_SLACK
    assert np.all(new[:k] == PageState.RECLAIMED) and np.all(new[k:] == PageState.LAZYFREE)
    # K9: writing back a half-reclaimed region under a full budget cascades into an OOM kill
    assert r.pagemap_budget(192, 160)[9].error == "OOM_KILL"
    # 160 MiB cannot fit in 144 MiB whatever is reclaimed
    killed = r.pagemap_budget(144, 160)
    assert len(killed) == 7 and killed[6].error == "OOM_KILL"
    # 144 MiB, 32 MiB more: reclaim 16 MiB (and the page tables), no kill even after the rewrite
    run = r.pagemap_budget(144, 32)
    assert 16 * MIB <= run[6].reclaimed_pages <= 16 * MIB + PT_SLACK
    assert run[9].error is None and run[9].charged_pages <= run[9].limit_pages
    # 144 MiB, 96 MiB more: the final write of new needs 64 + 96 > 144 MiB live
    assert r.pagemap_budget(144, 96)[9].error == "OOM_KILL"


def test_pagemap_figure_budget_bar_and_controls_move_the_figure():
    a = figure_json(r.reclaim_pagemap.figure(step=6, limit_mib=192, pressure_mib=96))
    b = figure_json(r.reclaim_pagemap.figure(step=6, limit_mib=256, pressure_mib=96))
    c = figure_json(r.reclaim_pagemap.figure(step=5, limit_mib=192, pressure_mib=96))
    assert a["data"][0]["z"] != b["data"][0]["z"] and a["data"][0]["z"] != c["data"][0]["z"]
    # 8x8 cells of 1 MiB: the first 4 rows of old are reclaimed, the last 3 still lazily freed
    z = np.array(a["data"][0]["z"])
    assert z.shape == (8, 8)
    assert np.all(z[:4] == PageState.RECLAIMED) and np.all(z[5:] == PageState.LAZYFREE)
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
    # exactly at the limit the page tables (if the model charges them) tip it over: one step less
    assert free.largest_fit_mib in (expect, expect - 8)
    assert free.largest_fit_mib == dontneed.largest_fit_mib
    assert np.array_equal(free.oom, dontneed.oom)
    assert np.all(dontneed.reclaimed_mib == 0)
    # MADV_FREE: RSS stays 128 until the charges reach the limit, then falls 1 MiB per MiB
    fits = ~free.oom
    x = free.second_mib[fits]
    want = np.maximum(np.minimum(128, limit - x), live)
    assert np.all(np.abs(free.heap_rss_mib[fits] - want) <= 1)
    assert np.allclose(free.reclaimed_mib[fits], 128 - free.heap_rss_mib[fits])


def test_kernel_eras_in_the_limit_sweep():
    lazy = r.limit_sweep(192, 50, "MADV_FREE", "6.18")
    assert lazy.rss_before_mib == 128 and lazy.largest_fit_mib in (128, 120)
    at = dict(zip(lazy.second_mib.tolist(), lazy.reclaimed_mib.tolist()))
    assert at[56] == 0 and at[64] <= 1 and 56 <= at[120] <= 57     # reclaim only past the limit
    passthrough = r.limit_sweep(192, 50, "MADV_FREE", "4.9")
    assert passthrough.acts_as == "MADV_DONTNEED" and passthrough.rss_before_mib == 64
    assert np.all(passthrough.reclaimed_mib == 0)
    assert passthrough.largest_fit_mib == lazy.largest_fit_mib
    old = r.limit_sweep(192, 50, "MADV_FREE", "4.4")
    assert old.madvise_error == "EINVAL" and old.live_mib == 128 and old.largest_fit_mib in (64, 56)


def test_limit_figure_marks_the_oom_band_from_the_first_kill():
    s = r.limit_sweep(192, 50, "MADV_FREE", "6.18")
    fig = r.limit_figure(192, 50, "MADV_FREE", "6.18")
    band = [sh for sh in fig.layout.shapes if sh.type == "rect"]
    assert len(band) == 1 and band[0].x0 == s.largest_fit_mib + 4
    assert any(f"largest allocation that fits: {s.largest_fit_mib} MiB" in a.text
               for a in fig.layout.annotations)
    rss = fig.data[0].y
    fit = r.SECOND_MIB.index(s.largest_fit_mib)
    assert abs(rss[fit] - (192 - s.largest_fit_mib)) <= 1 and np.isnan(rss[fit + 1])


# ------------------------------------------------------------------ the metrics

def _m(share, rewritten, pressure, step):
    return r.metrics_model(share, rewritten, pressure)[step]


def close(a, b, tol=1.0):      # MiB; the model may charge page tables (under 1 MiB here)
    return abs(a - b) <= tol


def test_madv_free_leaves_usage_and_moves_pages_to_inactive_file():
    m = _m(50, 0, 0, 2)
    assert (m.smaps_rss, m.smaps_lazyfree, m.cgroup_rss) == (128, 64, 128) and close(m.usage, 128)
    assert m.inactive_file == 64 and close(m.working_set, 64) and m.true_live == 64


def test_rewritten_pages_stay_filed_so_the_working_set_undercounts():
    m = _m(50, 50, 0, 3)
    assert m.smaps_lazyfree == 32 and m.true_live == 96
    assert m.inactive_file == 64 and close(m.working_set, 64)      # 32 MiB under-count (FACTS 27)


def test_after_reclaim_rewritten_pages_are_still_counted_as_inactive_file():
    # measured on 6.18 (measure_metrics): 24 MiB of clean pages reclaimed, 32 MiB rewritten stay
    m = _m(50, 50, 88, 4)
    assert close(m.reclaimed, 24) and close(m.smaps_rss, 104) and close(m.smaps_lazyfree, 8)
    assert close(m.usage, 192) and m.usage <= 192
    assert m.inactive_file == m.smaps_lazyfree + 32 and m.true_live == 184
    assert close(m.working_set, 152)
    clean = _m(100, 0, 88, 4)
    assert close(clean.reclaimed, 24) and clean.inactive_file == clean.smaps_lazyfree == clean.smaps_rss


def test_nothing_freed_means_every_counter_is_live_and_pressure_kills():
    m = _m(0, 0, 0, 4)
    assert m.smaps_rss == m.cgroup_rss == m.true_live == 128 and m.inactive_file == 0
    assert close(m.usage, 128) and close(m.working_set, 128)
    run = r.metrics_model(0, 0, 88)
    assert len(run) == 5 and run[-1].error == "OOM_KILL"
    assert "OOM kill" in r.metrics_figure(4, 0, 0, 88).layout.title.text
    assert r.metrics_model(0, 0, 40)[-1].error is None


def test_metrics_figure_bars_follow_the_model_and_mark_derived_ones():
    m = _m(50, 50, 0, 3)
    fig = r.metrics_figure(3, 50, 50, 0)
    assert list(fig.data[0].y) == [m.smaps_rss, m.smaps_lazyfree, m.usage, m.cgroup_rss,
                                   m.inactive_file, m.working_set]
    assert list(fig.data[0].marker.pattern.shape) == ["", "", "/", "/", "/", "/"]
    assert any("inference" in a.text for a in fig.layout.annotations)


def test_measured_metrics_table_from_the_recording():
    t = r.MetricsTable(r.metrics_on_kernel(50, 50, 88, force_recorded=True))
    assert not t.measured.live and "recorded on this book's build machine" in t.source()
    rows = t.measured.rows
    assert len(rows) == 5 and rows[-1]["error"] is None
    # the recorded kernel run shows what the figure claims
    assert close(rows[2]["usage"], rows[1]["usage"]) and close(rows[2]["inactive_file"], 64)
    assert close(rows[3]["inactive_file"], 64) and close(rows[4]["inactive_file"], 39.5)
    assert t.max_difference() <= 1.0
    assert "<table" in t._repr_html_()


def test_measure_metrics_on_this_kernel():
    from models.realkernel.cgroup import cgroup_support
    ok, why = cgroup_support()
    if not ok:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {why}")
        pytest.skip(why)
    t = r.MetricsTable(r.measure_metrics(50, 50, 88))
    assert t.measured.live and len(t.measured.rows) == 5
    assert t.max_difference() <= 1.5, repr(t)


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
    k = m[5].rss_pages - m[6].rss_pages
    assert m[5].rss_pages == 32768 and 8192 <= k <= 8192 + PT_SLACK
    assert m[8].zero_pages == k and m[7].zero_pages == 0
    assert m[9].lazyfree_pages == REGION - k and m[9].faults == 0
    oom = play(r.kernel_oom())
    assert 24576 - PT_SLACK <= oom[3].rss_pages <= 24576 and oom[4].error == "OOM_KILL" and len(oom) == 5
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
    with pytest.raises(ModelInputError, match="limit_mib"):
        r.two_regions_scenario(128, 96)
