"""Chapter 6's figures (models/viz/go_release.py): the numbers they draw come from the models.

Each test pins a number the chapter's prose quotes, or a relation that would break if the
figure code fed the model the wrong arguments (GOGC, liveness, kernel, GODEBUG, pressure).
"""
from __future__ import annotations

import json
import os

import pytest

from models.errors import ModelInputError
from models.viz import go_release as g
from models.viz.explorable import figure_json

KERNEL_NEW = "Linux 4.12+ / 6.18"


# -- the service timeline --------------------------------------------------------------------

def test_service_go111_releases_at_the_periodic_pass_and_rss_falls():
    run = g.service_model("1.11")
    assert run.advice == "MADV_DONTNEED"
    # the spike ends at 70 s: the 300 s pass finds the spans idle for 230 s only, the 450 s one for 380 s
    assert run.released_at == 450.0 and run.rss_drop_at == 450.0
    assert run.final_lazyfree == 0
    assert run.final_rss < run.peak_rss / 2
    assert run.periodic_runs == (150.0, 300.0, 450.0, 600.0)


def test_service_go112_on_new_kernel_releases_but_rss_stays():
    run = g.service_model("1.12")
    assert run.advice == "MADV_FREE"
    assert run.released_at == 450.0 and run.rss_drop_at is None
    assert run.final_rss == pytest.approx(run.peak_rss, abs=1)
    # LazyFree holds what HeapReleased says was released (minus the runtime's start-up release)
    assert run.final_lazyfree == pytest.approx(run.final_released, abs=4)
    assert run.final_released > 300


@pytest.mark.parametrize("kernel", ["Linux 4.9, no swap", "Linux 4.4 (no MADV_FREE)"])
def test_service_go112_on_old_kernels_behaves_like_go111(kernel):
    old = g.service_model("1.12", kernel=kernel)
    ref = g.service_model("1.11")
    assert old.rss == ref.rss and old.final_lazyfree == 0
    assert old.advice == ("MADV_DONTNEED" if "4.4" in kernel else "MADV_FREE")


def test_service_go113_prompt_release_but_lazy_and_go116_returns_memory():
    v113, v116 = g.service_model("1.13"), g.service_model("1.16")
    assert v113.released_at < 100 and v116.released_at < 100
    assert v113.rss_drop_at is None and v113.final_lazyfree > 300
    assert v116.rss_drop_at is not None and v116.rss_drop_at < 100
    assert v116.final_rss < 200


def test_service_gogc_moves_the_goal_and_the_gc_count():
    goals = {gogc: g.service_model("1.12", gogc=gogc).goal[-1] for gogc in g.GOGCS}
    cycles = {gogc: g.service_model("1.12", gogc=gogc).gc_cycles for gogc in g.GOGCS}
    # 64 MiB live outside the spike: goal = live x (1 + GOGC/100) plus the runtime's baseline
    assert goals[50] == pytest.approx(96, abs=4)
    assert goals[100] == pytest.approx(128, abs=4)
    assert goals[200] == pytest.approx(192, abs=4)
    assert cycles[50] > cycles[100] > cycles[200]


def test_service_liveness_lowers_what_is_released():
    quarter, half = g.service_model("1.12", liveness=0.25), g.service_model("1.12", liveness=0.5)
    assert half.final_released < quarter.final_released - 100
    # what stays unreleased is about the heap goal of the live data left after the spike
    assert quarter.final_rss - quarter.final_lazyfree == pytest.approx(quarter.goal[-1] + 33, abs=12)
    assert half.final_rss - half.final_lazyfree == pytest.approx(half.goal[-1] + 33, abs=12)


def test_service_pressure_kills_unscavenged_heaps_and_reclaims_lazy_ones():
    for version in ("1.11", "1.12"):
        run = g.service_model(version, pressure=True)
        assert run.oom_at == g.NEIGHBOUR_AT
    lazy = g.service_model("1.13", pressure=True)
    assert lazy.oom_at is None
    # the kernel takes just the overshoot: peak RSS + neighbour - limit
    need = lazy.peak_rss + g.NEIGHBOUR_MIB - g.SERVICE_LIMIT_MIB
    assert lazy.reclaimed == pytest.approx(need, abs=2)
    assert lazy.final_rss == pytest.approx(lazy.peak_rss - lazy.reclaimed, abs=2)
    done = g.service_model("1.16", pressure=True)
    assert done.oom_at is None and done.reclaimed == 0


def test_service_figure_draws_the_model_series():
    fig = g.service_figure("1.12")
    names = [t["name"] for t in fig["data"]]
    assert names == ["heap goal (next GC)", "live heap", "HeapReleased (runtime)", "LazyFree (kernel)",
                     "RSS (kernel)"]
    run = g.service_model("1.12")
    assert fig["data"][4]["y"][-1] == round(run.final_rss)
    assert fig["layout"]["xaxis"]["title"]["text"] == "time (s)"
    assert fig["layout"]["yaxis"]["title"]["text"] == "MiB"
    oom = g.service_figure("1.11", pressure=True)
    assert any("OOM" in a["text"] for a in oom["layout"]["annotations"])


def test_service_bad_input_names_the_parameter():
    with pytest.raises(ModelInputError, match="gogc"):
        g.service_model("1.12", gogc=75)
    with pytest.raises(ModelInputError, match="kernel"):
        g.service_model("1.12", kernel="Linux 3.10")


# -- the release experiment -------------------------------------------------------------------

def test_release_tradeoff_matches_the_E10_shape():
    free = g.release_model("0")
    dontneed = g.release_model("1")
    ph = dict(zip(free.phases, free.rss))
    assert free.phases == ("allocate", "gc", "release", "reallocate")
    assert ph["release"] == pytest.approx(274, abs=2)           # E10: 273 real
    assert dict(zip(dontneed.phases, dontneed.rss))["release"] == pytest.approx(82, abs=2)   # E10: 81 real
    assert dict(zip(free.phases, free.lazyfree))["release"] == pytest.approx(192, abs=1)
    # the runtime's view is the same in both modes
    assert dict(zip(free.phases, free.released))["release"] == dict(zip(dontneed.phases, dontneed.released))["release"]
    assert free.realloc_faults == 0
    assert dontneed.realloc_faults == 192 * 256                 # one per 4 KiB page
    assert dontneed.realloc_ms > 5 * free.realloc_ms


def test_release_default_advice_follows_the_go_version():
    assert g.release_model("default", go_version="1.12").advice == "MADV_FREE"
    assert g.release_model("default", go_version="1.19").advice == "MADV_DONTNEED"
    assert g.release_model("0", go_version="1.19").advice == "MADV_FREE"
    # Go 1.11 has no madvdontneed: any choice is its only advice
    assert g.release_model("0", go_version="1.11").advice == "MADV_DONTNEED"
    assert g.effective_godebug("1.11", "0") is None


@pytest.mark.parametrize("pressure, reclaimed_mib", [(80, 34), (160, 114), (200, 154)])
def test_release_pressure_reclaims_just_the_overshoot(pressure, reclaimed_mib):
    run = g.release_model("0", pressure=pressure)
    assert not run.oom
    assert run.reclaimed == pytest.approx(reclaimed_mib, abs=1)
    assert run.realloc_faults == pytest.approx(reclaimed_mib * 256, rel=0.01)
    assert g.release_model("1", pressure=pressure).reclaimed == 0


def test_release_fallback_and_passthrough_on_old_kernels():
    on44 = g.release_model("default", kernel="Linux 4.4 (no MADV_FREE)")
    assert on44.fell_back and on44.advice == "MADV_DONTNEED" and on44.realloc_faults == 49152
    on49 = g.release_model("default", kernel="Linux 4.9, no swap")
    assert not on49.fell_back and on49.advice == "MADV_FREE" and on49.realloc_faults == 49152
    swap = g.release_model("default", kernel="Linux 4.9 with swap")
    assert swap.realloc_faults == 0 and max(swap.lazyfree) == 0     # lazy, but no LazyFree field
    assert "kernel treats as MADV_DONTNEED" in g.release_figure(kernel="Linux 4.9, no swap")["layout"]["title"]["text"]


def test_release_liveness_sets_what_is_freed():
    run = g.release_model("0", liveness=0.75)
    assert dict(zip(run.phases, run.lazyfree))["release"] == pytest.approx(64, abs=1)


# -- the heap page map ------------------------------------------------------------------------

def test_heap_pagemap_states_per_step():
    free = g.heap_pagemap_counts("0", False, KERNEL_NEW)
    assert free[2]["heap_states"]["RESIDENT"] == 65536 and free[2]["faults"] == 0    # GC: reads only
    assert free[3]["heap_states"]["LAZYFREE"] == 49152 and free[3]["rss_mib"] == 256
    assert free[7]["faults"] == 0
    drop = g.heap_pagemap_counts("1", False, KERNEL_NEW)
    assert drop[3]["heap_states"]["NOT_PRESENT"] == 49152 and drop[3]["rss_mib"] == 64
    assert drop[7]["faults"] == 49152
    squeezed = g.heap_pagemap_counts("0", True, KERNEL_NEW)
    assert squeezed[5]["heap_states"]["RECLAIMED"] == (256 + 160 - 320) * 256
    assert squeezed[6]["rss_mib"] == 160
    assert squeezed[7]["faults"] == 96 * 256
    fallback = g.heap_pagemap_counts("0", False, "Linux 4.4 (no MADV_FREE)")
    assert fallback[3]["error"] is None and fallback[3]["rss_mib"] == 64


def test_explorables_fit_their_embed_budgets():
    total = 0
    for explorable in (g.service_timeline, g.release_tradeoff, g.heap_pagemap):
        grid = explorable.grid()
        total += grid.payload_bytes
        assert grid.payload_bytes <= explorable.max_embed_bytes
    assert total < 1_100_000          # the page budget is 1.5 MB, with text and kernel cells


def test_controls_change_the_figures():
    base = figure_json(g.service_timeline.figure())
    for name, value in (("go_version", "1.16"), ("gogc", 200), ("liveness", 0.5),
                        ("kernel", "Linux 4.9, no swap"), ("pressure", True)):
        assert figure_json(g.service_timeline.figure(**{name: value})) != base, name
    base = figure_json(g.release_tradeoff.figure())
    for name, value in (("madvdontneed", "1"), ("liveness", 0.5), ("pressure", 160),
                        ("kernel", "Linux 4.4 (no MADV_FREE)"), ("go_version", "1.19")):
        assert figure_json(g.release_tradeoff.figure(**{name: value})) != base, name


# -- real kernel, real Go ---------------------------------------------------------------------

def test_kernel_advice_reuse_recording_agrees_with_the_model():
    from models.viz.kernel_cell import kernel_vs_model
    cell = kernel_vs_model(g.kernel_advice_reuse(), "ch06-advice-reuse", force_recorded=True)
    assert cell.agrees, cell.verdict()
    assert "recorded on" in cell.source
    assert cell.kernel[7].faults == pytest.approx(16384, abs=32)
    assert cell.kernel[6].faults <= 32


def test_go_probe_recording_is_labelled_and_agrees():
    cell = g.go_probe_vs_model(force_recorded=True)
    assert not cell.live and "recorded on" in cell.source and "go1." in cell.source
    assert cell.mismatches == [], cell.mismatches
    free = cell.real["madvdontneed=0"]
    assert free["release"]["lazyfree"] > 180 * 256
    assert cell.real["madvdontneed=1"]["reallocate"]["faults"] > 48_000


def test_go_probe_fallback_when_go_is_missing(tmp_path, monkeypatch):
    import models.realkernel.goprobe as goprobe
    monkeypatch.setattr(goprobe, "go_support", lambda: (False, "the Go toolchain ('go') is not installed"))
    monkeypatch.delenv("BOOK_FORCE_RECORDED", raising=False)
    cell = g.go_probe_vs_model()
    assert not cell.live and "not installed" in cell.reason
    assert "Not run live here" in cell.html()
    with pytest.raises(ModelInputError, match="no recorded Go probe run"):
        g.go_probe_vs_model(directory=tmp_path)


def test_go_probe_live_on_this_machine():
    from models.realkernel.goprobe import go_support
    ok, why = go_support()
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must have Go: {why}")
        pytest.skip(why)
    cell = g.go_probe_vs_model(force_recorded=False)
    assert cell.live, cell.reason
    assert cell.mismatches == [], cell.mismatches
    assert set(cell.real) >= {"madvdontneed=1", "madvdontneed=0"}


def test_tolerances_reject_a_wrong_number():
    assert g._within("faults", 49_191, 49_152)
    assert not g._within("faults", 49_191, 0)
    assert g._within("lazyfree", 49_100, 49_152)
    assert not g._within("rss", 81 * 256, 274 * 256)


# -- the seeded Go quiz -----------------------------------------------------------------------

def test_go_quiz_is_seeded_and_answered_by_the_model():
    assert g.go_quiz(24) == g.go_quiz(24)
    assert len({g.go_quiz(s) for s in range(30)}) > 20
    q = g.go_quiz(24)
    assert (q.go_version, q.kernel, q.madvdontneed, q.liveness, q.pressure) == \
        ("1.12", KERNEL_NEW, "default", 0.5, 160)
    answer = " ".join(g.go_quiz_answer(q).split())
    assert "MADV_FREE" in answer and "LazyFree 128 MiB" in answer and "reclaims 114 MiB" in answer
    assert "29,216 page faults" in answer
    assert "#24" in g.go_quiz_text(q)


def test_go_quiz_answers_fallback_and_oom():
    q = g.GoQuiz(0, "1.12", "Linux 4.4 (no MADV_FREE)", "0", 0.25, 0)
    flat = " ".join(g.go_quiz_answer(q).split())
    assert "EINVAL" in flat and "49,152 page faults" in flat
    q = g.GoQuiz(0, "1.19", "Linux 4.9, no swap", "default", 0.75, 200)
    text = " ".join(g.go_quiz_answer(q).split())
    assert "OOM-killed" in text and "never runs" in text
    with pytest.raises(ModelInputError, match="seed"):
        g.go_quiz(-1)
