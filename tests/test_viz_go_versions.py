"""Chapters 0 and 7 figures: the numbers the prose quotes come from the Go and kernel models.

Each test pins a number the chapters state, so that a change in the models (or in how this module
derives dashboard metrics) that moves it fails here and sends someone to update the prose.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from models.errors import ModelInputError
from models.viz import go_versions as gv

MiB = 1 << 20
IN_CI = os.environ.get("CI") == "true"


# -- chapter 0: the symptom ------------------------------------------------------------------------
def test_symptom_go112_stays_high_on_6_18_while_heap_in_use_is_identical():
    s = gv.symptom_summary("6.18", False)
    assert s["heap_inuse_identical"]
    assert s["peak_rss_mib"][0] == pytest.approx(428, abs=2) and s["peak_rss_mib"][1] == pytest.approx(428, abs=2)
    assert s["final_rss_mib"][0] == pytest.approx(128, abs=2)          # Go 1.11 gave it back (DONTNEED)
    assert s["final_rss_mib"][1] == pytest.approx(428, abs=2)          # Go 1.12: still resident ...
    assert s["lazyfree_final_mib"][1] == pytest.approx(300, abs=2)     # ... as lazily freed pages
    assert s["go111_drop_min"] == pytest.approx(12.5)                  # periodic pass at 750 s


@pytest.mark.parametrize("kernel", ["4.9", "4.4"])
def test_symptom_lines_coincide_on_old_kernels(kernel):
    a, b = gv.symptom_run("1.11", kernel), gv.symptom_run("1.12", kernel)
    assert b.meta["advice_used"] == "MADV_DONTNEED" or kernel == "4.9"   # 4.4: runtime fallback after EINVAL
    assert np.abs(a.rss_pages[a.t > 800] - b.rss_pages[b.t > 800]).max() == 0
    assert b.lazyfree_pages.max() == 0


def test_neighbour_takes_back_exactly_the_overshoot_from_go112_only():
    s = gv.symptom_summary("6.18", True)
    # 428 + 256 - 512 = 172 MiB reclaimed from Go 1.12's lazily freed pages; Go 1.11 untouched.
    assert s["final_rss_mib"][1] == pytest.approx(256, abs=1)
    assert s["final_rss_mib"][0] == pytest.approx(128, abs=2)
    assert s["oom"] == (False, False)


def test_five_metrics_go112_working_set_and_runtime_fall_while_rss_and_usage_stay():
    m = gv.metrics_of(gv.symptom_run("1.12"))
    assert m["rss"][-1] == pytest.approx(428, abs=2) and m["usage"][-1] == m["rss"][-1]
    assert m["working_set"][-1] == pytest.approx(128, abs=2)
    assert m["heap_retained"][-1] == pytest.approx(102, abs=2)
    m16 = gv.metrics_of(gv.symptom_run("1.16"))
    assert m16["rss"][-1] == pytest.approx(138, abs=2) and m16["lazyfree"].max() == 0


# -- chapter 7: releases ---------------------------------------------------------------------------
def test_release_timeline_defaults_on_6_18():
    s = {v: gv.versions_summary(v) for v in gv.GO_VERSIONS}
    assert s[1.11]["released_s"] == s[1.12]["released_s"] == 450.0       # periodic scavenger
    assert s[1.13]["released_s"] == s[1.16]["released_s"] == s[1.19]["released_s"] == 78.0
    assert s[1.11]["rss_falls_s"] == 450.0 and s[1.12]["rss_falls_s"] is None and s[1.13]["rss_falls_s"] is None
    assert s[1.16]["rss_falls_s"] == 78.0
    assert s[1.12]["final_lazyfree_mib"] == pytest.approx(384, abs=2)
    # 1.16's drawn peak is lower only because the 3 s samples straddle the release (the prose says so).
    assert s[1.16]["peak_rss_mib"] == pytest.approx(462, abs=2) and s[1.13]["peak_rss_mib"] == pytest.approx(547, abs=2)


def test_godebug_and_kernel_flip_the_advice():
    assert gv.versions_summary(1.13, "1")["advice"] == "MADV_DONTNEED"
    assert gv.versions_summary(1.19, "0")["final_lazyfree_mib"] > 300
    # 4.9 without swap passes MADV_FREE through to MADV_DONTNEED: RSS falls like 1.16's.
    assert gv.versions_summary(1.13, kernel="4.9")["final_rss_mib"] == pytest.approx(176, abs=2)


def test_settings_a_release_does_not_have_are_ignored_with_a_note():
    v, godebug, limit, notes = gv.effective_settings(1.11, "1", 384)
    assert (v, godebug, limit) == ("1.11", None, 0) and len(notes) == 2
    assert gv.versions_figure(1.12, gomemlimit=384).to_plotly_json() == gv.versions_figure(1.12).to_plotly_json()


def test_gomemlimit_caps_the_peak():
    assert gv.versions_summary(1.19, gomemlimit=384)["peak_rss_mib"] == pytest.approx(376, abs=3)
    assert gv.versions_summary(1.19, gomemlimit=320)["peak_rss_mib"] == pytest.approx(304, abs=3)


def test_neighbour_kills_go111_and_go112_but_not_go113():
    assert gv.versions_summary(1.11, neighbour=True)["oom_s"] == 330.0
    assert gv.versions_summary(1.12, neighbour=True)["oom_s"] == 330.0
    s13 = gv.versions_summary(1.13, neighbour=True)
    assert s13["oom_s"] is None and s13["final_rss_mib"] == pytest.approx(384, abs=1)   # 547+256-640 reclaimed


# -- chapter 7: the dashboard ----------------------------------------------------------------------
def test_dashboard_release_runtime_bars_identical_kernel_bars_differ():
    free, dont = gv.dashboard_values("release", "0"), gv.dashboard_values("release", "1")
    for k in gv.GO_BARS:
        assert free[k] == dont[k]
    assert free["HeapReleased"] == pytest.approx(195, abs=1)
    assert free["RSS"] == pytest.approx(274, abs=1) and dont["RSS"] == pytest.approx(82, abs=1)
    assert free["LazyFree"] == pytest.approx(192, abs=0.5)
    assert free["RSS - LazyFree"] == pytest.approx(dont["RSS"], abs=0.5)
    assert free["working set"] == pytest.approx(dont["working set"], abs=0.5)
    assert free["cgroup usage"] == free["RSS"]


def test_dashboard_pressure_reclaims_just_enough():
    d = gv.dashboard_values("pressure", "0", "6.18", True)
    assert d["reclaimed"] == pytest.approx(114, abs=1)
    assert d["cgroup usage"] == pytest.approx(320, abs=0.5) and not d["oom"]
    assert d["RSS"] == pytest.approx(160, abs=1) and d["LazyFree"] == pytest.approx(78, abs=1)
    assert gv.dashboard_values("reallocate", "0", "6.18", True)["faults"] == 29216
    assert gv.dashboard_values("reallocate", "1")["faults"] == 49152
    assert gv.dashboard_values("reallocate", "0")["faults"] == 0


def test_dashboard_on_4_9_looks_like_dontneed():
    a, b = gv.dashboard_values("release", "0", "4.9"), gv.dashboard_values("release", "1", "4.9")
    assert a["RSS"] == b["RSS"] and a["LazyFree"] == 0


def test_model_vsz_is_the_mappings():
    assert gv.model_vsz_bytes() / MiB == pytest.approx(341, abs=1)
    assert gv.model_vsz_bytes("512MiB") > gv.model_vsz_bytes()


def test_bad_input_names_the_parameter():
    with pytest.raises(ModelInputError, match="phase"):
        gv.dashboard_values("sleep")
    with pytest.raises(ModelInputError, match="madvdontneed"):
        gv.effective_settings(1.12, "2")
    with pytest.raises(ModelInputError, match="seed"):
        gv.go_quiz(-1)


def test_explorables_fit_the_page_budget():
    total = 0
    for e in (gv.go_versions, gv.dashboard):
        grid = e.grid()
        total += grid.payload_bytes
    assert total < 700_000
    assert gv.symptom.grid().payload_bytes + gv.five_metrics.grid().payload_bytes < 400_000


# -- the quiz ----------------------------------------------------------------------------------------
def test_go_quiz_is_seeded_and_answered_by_the_model():
    assert gv.go_quiz(17) == gv.go_quiz(17)
    q = gv.go_quiz(17)
    assert (q.go_version, q.madvdontneed, q.kernel, q.limit_mib) == ("1.14", None, "5.10", 480)
    answers = dict(gv.go_quiz_answers(q))
    after = answers["after the release"]
    assert after["LazyFree"] > 0 and after["RSS"] - after["LazyFree"] == pytest.approx(after["working set"])
    second = answers["after the second allocation"]
    assert second["cgroup usage"] == pytest.approx(480, abs=1)         # at the limit, reclaim made room
    assert "MADV_FREE" in gv.go_quiz_answer_text(q)


# -- real Go probe comparison ----------------------------------------------------------------------------
def _samples(d_released, d_rss, d_lazy):
    base = {"rss_bytes": 300 * MiB, "lazyfree_bytes": 0, "heap_released": 3 * MiB}
    alloc = {"phase": "allocate", "t": -1.0, "heap_inuse": 256 * MiB, **base}
    gc = {"phase": "gc", "t": 0.0, "heap_inuse": 64 * MiB, **base}
    rel = {"phase": "release", "t": 3.0, "rss_bytes": base["rss_bytes"] - d_rss,
           "lazyfree_bytes": d_lazy, "heap_released": base["heap_released"] + d_released,
           "heap_inuse": 64 * MiB}
    return [alloc, gc, rel]


def test_identity_check_holds_and_fails_as_it_should():
    assert gv.identity_check(_samples(186 * MiB, 186 * MiB, 0), 1)["ok"]
    assert gv.identity_check(_samples(186 * MiB, 0, 186 * MiB), 0)["ok"]
    assert not gv.identity_check(_samples(186 * MiB, 0, 186 * MiB), 1)["ok"]     # RSS did not fall
    assert not gv.identity_check(_samples(186 * MiB, 0, 100 * MiB), 0)["ok"]     # LazyFree short


def test_a_run_that_released_nothing_tests_nothing():
    from models.viz.go_versions import ProbeComparison, released_fraction
    idle = _samples(0, 0, 0)
    assert released_fraction(idle) == 0 and released_fraction(_samples(186 * MiB, 186 * MiB, 0)) > 0.9
    rec = gv.scavenger_probe_vs_model(force_recorded=True)
    fake = ProbeComparison(False, "test", "", "1.19", "6.18.0", {1: idle, 0: rec.runs[0]}, rec.models)
    assert not fake.checks()[1]["ok"] and fake.checks()[0]["ok"]
    assert "does not test the identity" in fake.text()


def test_recorded_probe_run_is_labelled_and_holds_the_identity():
    r = gv.scavenger_probe_vs_model(force_recorded=True)
    assert not r.live and r.source.startswith("recorded on ") and "Linux" in r.source
    assert all(c["ok"] for c in r.checks().values())
    assert "the identity holds" in r.text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Go probe needs Linux")
def test_live_probe_run_holds_the_identity():
    from models.realkernel.goprobe import go_support
    ok, why = go_support()
    if not ok:
        if IN_CI:
            pytest.fail(f"Go is required in CI: {why}")
        pytest.skip(why)
    r = gv.scavenger_probe_vs_model(force_recorded=False)
    assert r.live
    checks = r.checks()
    assert checks[1]["ok"] and checks[0]["ok"], r.text()
    assert checks[1]["released_pages"] > 0.5 * 192 * 256
