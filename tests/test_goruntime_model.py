"""Unit tests of the Go runtime model: one per version policy, with hand-worked numbers.

The release experiment used throughout: 256 MiB of 8 KiB objects = 32,768 one-page
spans; liveness 0.25 keeps 8,192 of them, so 24,576 spans = 49,152 OS pages (192 MiB)
are dropped.  Page counts are 4 KiB pages.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

import models.goruntime.simulate as simulate_mod
from models.errors import ModelInputError
from models.goruntime import (CostModel, heap_goal, parse_go_version, parse_godebug, parse_gogc, policy_for,
                              scavenge_goal_bytes, simulate_release, simulate_service)
from models.goruntime.cli import main as go_main
from models.goruntime.heap import runs

MIB = 1 << 20
DROPPED = 49_152


# -- versions and GODEBUG -----------------------------------------------------------------------
@pytest.mark.parametrize("version, godebug, advice, periodic, background, goal, roots, limit", [
    ("1.11", None, "MADV_DONTNEED", True, False, "none", False, False),
    ("1.12", None, "MADV_FREE", True, False, "none", False, False),
    ("1.12", "madvdontneed=1", "MADV_DONTNEED", True, False, "none", False, False),
    ("1.13", None, "MADV_FREE", False, True, "next_gc", False, False),
    ("1.15", None, "MADV_FREE", False, True, "next_gc", False, False),
    ("1.16", None, "MADV_DONTNEED", False, True, "next_gc", False, False),
    ("1.16", "madvdontneed=0", "MADV_FREE", False, True, "next_gc", False, False),
    ("1.18", None, "MADV_DONTNEED", False, True, "next_gc", True, False),
    ("1.19", None, "MADV_DONTNEED", False, True, "heap_in_use_ratio", True, True),
    ("go1.26.1", "madvdontneed=0", "MADV_FREE", False, True, "heap_in_use_ratio", True, True),
])
def test_policy_per_version(version, godebug, advice, periodic, background, goal, roots, limit):
    p = policy_for(version, godebug)
    assert (p.advice, p.periodic_scavenger, p.background_scavenger, p.scavenger_goal, p.roots_in_goal,
            p.memory_limit) == (advice, periodic, background, goal, roots, limit)
    assert p.growth_scavenging == (p.minor >= 12)
    assert p.fallback_to_dontneed == (advice == "MADV_FREE")
    assert (p.periodic_interval, p.periodic_min_age) == (150.0, 300.0)


@pytest.mark.parametrize("text, minor", [("1.12", 12), ("1.12.5", 12), ("go1.19.8", 19), (" 1.11 ", 11)])
def test_go_version_accepted(text, minor):
    assert parse_go_version(text) == minor


@pytest.mark.parametrize("bad", ["1.10", "1.27", "2.0", "1", "go", "", None, 1.12, "1.x"])
def test_go_version_rejected(bad):
    with pytest.raises(ModelInputError, match=r"go_version must be a Go release from 1\.11 to 1\.26"):
        parse_go_version(bad)


def test_godebug_validation():
    assert parse_godebug(None) == {} and parse_godebug("") == {}
    assert parse_godebug("madvdontneed=1") == {"madvdontneed": "1"}
    with pytest.raises(ModelInputError, match="godebug must be comma-separated"):
        parse_godebug("gctrace=1")
    with pytest.raises(ModelInputError, match="godebug must be comma-separated"):
        parse_godebug("madvdontneed")
    with pytest.raises(ModelInputError, match=r"godebug madvdontneed must be one of \('0', '1'\)"):
        parse_godebug("madvdontneed=2")
    with pytest.raises(ModelInputError, match="exists from Go 1.12"):
        policy_for("1.11", "madvdontneed=1")


# -- pacer and scavenger goals (FACTS 48, 49, 57) ------------------------------------------------
def test_heap_goal_hand_worked():
    assert heap_goal(64 * MIB, 100, 0, False) == 128 * MIB
    assert heap_goal(64 * MIB, 100, 8 * MIB, False) == 128 * MIB       # roots ignored before 1.18
    assert heap_goal(64 * MIB, 100, 8 * MIB, True) == 136 * MIB        # 64 + (64 + 8) x 1
    assert heap_goal(64 * MIB, 50, 0, False) == 96 * MIB
    assert heap_goal(1 * MIB, 100, 0, False) == 4 * MIB                # heap minimum 4 MiB x GOGC/100
    assert heap_goal(1 * MIB, 200, 0, False) == 8 * MIB
    assert heap_goal(64 * MIB, None, 0, True) == math.inf              # GOGC=off


def test_scavenge_goal_hand_worked():
    assert scavenge_goal_bytes(policy_for("1.12"), 130 * MIB, 520 * MIB, 260 * MIB) == math.inf
    assert scavenge_goal_bytes(policy_for("1.13"), 130 * MIB, 520 * MIB, 260 * MIB) == pytest.approx(143 * MIB)
    # 1.1 x (130 / 520) x 260 = 71.5 MiB
    assert scavenge_goal_bytes(policy_for("1.19"), 130 * MIB, 520 * MIB, 260 * MIB) == pytest.approx(71.5 * MIB)
    assert scavenge_goal_bytes(policy_for("1.19"), 130 * MIB, 0, 260 * MIB) == math.inf   # before the 2nd GC


def test_gogc_parsing():
    assert parse_gogc(100) == 100 and parse_gogc("50") == 50 and parse_gogc("off") is None
    assert parse_gogc("OFF") is None
    for bad in (0, -1, "abc", 1.5, True, "", None):
        with pytest.raises(ModelInputError, match="gogc must be a whole percentage"):
            parse_gogc(bad)


def test_runs():
    s, n = runs(np.array([1, 2, 3, 7, 9, 10]))
    assert s.tolist() == [1, 7, 9] and n.tolist() == [3, 1, 2]
    s, n = runs(np.array([], dtype=np.int64))
    assert s.size == 0 and n.size == 0


# -- the release experiment, version by version -------------------------------------------------
def _rel(**kw):
    kw.setdefault("liveness", 0.25)
    kw.setdefault("heap", "256MiB")
    return simulate_release(**kw)


def test_phases_in_order():
    tl = _rel(go_version="1.19")
    assert list(tl.phase) == ["allocate", "allocate", "gc", "release", "reallocate"]
    assert list(tl.step) == ["start", "allocate", "gc", "freeosmemory", "reallocate"]
    assert np.all(np.diff(tl.t) >= 0)
    assert tl.meta["kept_spans"] == 8192


def test_go112_madv_free_keeps_rss():
    tl = _rel(go_version="1.12", kernel_version="6.18")
    gc, rel, re = tl.last("gc"), tl.last("release"), tl.last("reallocate")
    assert rel["lazyfree_pages"] == DROPPED
    assert rel["rss_pages"] == gc["rss_pages"]                      # FACTS 25: RSS does not move
    assert rel["heap_released_pages"] == rel["heap_idle_pages"]     # FreeOSMemory released every free page
    assert rel["madvised_pages"] == rel["heap_released_pages"] - gc["heap_released_pages"]
    assert re["faults"] == 0 and re["lazyfree_pages"] == 0          # writes cancel the lazy free
    assert tl.meta["advice_used"] == "MADV_FREE" and not tl.meta["fell_back_to_dontneed"]


@pytest.mark.parametrize("version, godebug", [("1.11", None), ("1.12", "madvdontneed=1"), ("1.16", None),
                                              ("1.19", "madvdontneed=1")])
def test_dontneed_drops_rss_and_refaults(version, godebug):
    tl = _rel(go_version=version, godebug=godebug)
    gc, rel, re = tl.last("gc"), tl.last("release"), tl.last("reallocate")
    assert gc["rss_pages"] - rel["rss_pages"] == DROPPED
    assert rel["lazyfree_pages"] == 0
    assert re["faults"] == DROPPED                                   # one per 4 KiB page
    assert re["rss_pages"] == gc["rss_pages"]
    assert tl.meta["advice_used"] == "MADV_DONTNEED"


def test_go116_madvdontneed0_is_free_again():
    tl = _rel(go_version="1.16", godebug="madvdontneed=0")
    assert tl.last("release")["lazyfree_pages"] == DROPPED and tl.last("reallocate")["faults"] == 0


def test_kernel_without_madv_free_falls_back_for_good():
    """Linux 4.4 answers EINVAL for MADV_FREE: the runtime switches to DONTNEED and retries (FACTS 44)."""
    tl = _rel(go_version="1.12", kernel_version="4.4")
    assert tl.meta["fell_back_to_dontneed"] and tl.meta["advice_used"] == "MADV_DONTNEED"
    assert tl.last("gc")["rss_pages"] - tl.last("release")["rss_pages"] == DROPPED
    assert tl.last("reallocate")["faults"] == DROPPED
    assert list(tl.advice[-2:]) == ["MADV_DONTNEED", "MADV_DONTNEED"]


def test_swapless_49_kernel_frees_at_once():
    """4.5-4.11 without swap: MADV_FREE acts as DONTNEED (FACTS 15); the runtime does not notice."""
    tl = _rel(go_version="1.12", kernel_version="4.9", swap=False)
    assert tl.meta["advice_used"] == "MADV_FREE" and not tl.meta["fell_back_to_dontneed"]
    assert tl.last("gc")["rss_pages"] - tl.last("release")["rss_pages"] == DROPPED
    assert tl.last("reallocate")["faults"] == DROPPED
    lazy = _rel(go_version="1.12", kernel_version="4.9", swap=True)
    assert lazy.last("release")["rss_pages"] == lazy.last("gc")["rss_pages"]


def test_cost_model_per_mib():
    """Re-allocation after DONTNEED: 256 pages/MiB x (650 fault + 400 zero + 150 write) ns = 307.2 us/MiB;
    after FREE: 256 x 150 ns = 38.4 us/MiB (FACTS E3)."""
    dn = _rel(go_version="1.16").last("reallocate")
    fr = _rel(go_version="1.12").last("reallocate")
    assert dn["faults_per_mib"] == 256 and dn["zero_pages_per_mib"] == 256
    assert dn["alloc_cost_us_per_mib"] == pytest.approx(307.2)
    assert fr["faults_per_mib"] == 0 and fr["alloc_cost_us_per_mib"] == pytest.approx(38.4)
    lab = CostModel.from_measurement(dontneed_call_ns=300, dontneed_retouch_ns=2000, free_call_ns=80,
                                     free_retouch_ns=200, zero_share=0.5)
    assert (lab.ns_per_fault, lab.ns_per_zeroed_page, lab.ns_per_touch) == (900, 900, 200)
    dn2 = _rel(go_version="1.16", cost=lab).last("reallocate")
    assert dn2["alloc_cost_us_per_mib"] == pytest.approx(256 * 2000 / 1000)
    with pytest.raises(ModelInputError, match="ns_per_fault"):
        CostModel(ns_per_fault=-1)
    with pytest.raises(ModelInputError, match="ns_per_madvise_page"):
        CostModel(ns_per_madvise_page={"MADV_FREE": 1})


def test_budget_reclaims_overshoot_then_refaults_it():
    """320 MiB budget, 160 MiB burst after MADV_FREE: reclaim takes the overshoot (in batches of 32),
    and re-allocation faults exactly for the reclaimed pages (FACTS E7, E10)."""
    tl = _rel(go_version="1.12", memory_limit="320MiB", pressure="160MiB")
    rows = tl.to_json()
    rel, pres, re = rows[-3], rows[-2], rows[-1]
    assert pres["step"] == "pressure" and pres["pressure_rss_pages"] == 40_960
    overshoot = rel["rss_pages"] + 40_960 - 320 * 256
    reclaimed = rel["lazyfree_pages"] - pres["lazyfree_pages"]
    assert overshoot <= reclaimed < overshoot + 32
    assert pres["rss_pages"] == rel["rss_pages"] - reclaimed
    assert pres["reclaimed_pages"] == reclaimed and rel["reclaimed_pages"] == 0
    assert re["faults"] == reclaimed and not tl.meta["oom_killed"]


def test_budget_too_small_is_oom():
    """The program needs about 274 MiB at its peak: a 260 MiB budget OOM-kills it while allocating.
    With 300 MiB it fits, but a 250 MiB burst does not: with DONTNEED 82 + 250 > 300 MiB, and with
    FREE 274 + 250 - 300 = 224 MiB would have to be reclaimed from 192 MiB lazily freed."""
    tl = _rel(go_version="1.16", memory_limit="260MiB")
    assert tl.meta["oom_killed"] and bool(tl.oom[-1]) and tl.step[-1] == "oom" and tl.phase[-1] == "allocate"
    for version in ("1.16", "1.12"):
        tl = _rel(go_version=version, memory_limit="300MiB", pressure="250MiB")
        assert tl.meta["oom_killed"] and tl.step[-1] == "oom" and tl.phase[-1] == "release", version
        ok = _rel(go_version=version, memory_limit="300MiB", pressure="150MiB")
        assert not ok.meta["oom_killed"] and ok.phase[-1] == "reallocate", version


def test_scavenger_release_goal_go119():
    """Idle program, 1.19: nothing before the scavenger wakes, then down to the retain goal."""
    tl = _rel(go_version="1.19", release="scavenger", wait=8.0, scavenger_wake_delay=3.0)
    rows = [r for r in tl.to_json() if r["phase"] == "release"]
    assert all(r["heap_released_pages"] == rows[0]["heap_released_pages"] for r in rows if r["t"] < 3.0)
    goal = rows[-1]["scavenge_goal_pages"]
    retained = rows[-1]["heap_sys_pages"] - rows[-1]["heap_released_pages"]
    assert retained <= goal + 2 and retained > goal - 2 * 256
    # goal = 1.1 x next_gc / last goal x heap-in-use at the GC: 1.1 x 130/514 x 257 MiB, about 71.5 MiB
    assert goal / 256 == pytest.approx(1.1 * 130 / 514 * 257, rel=0.02)


def test_scavenger_go113_keeps_1_1_next_gc_and_go112_waits():
    tl13 = _rel(go_version="1.13", release="scavenger", wait=8.0)
    last = tl13.last("release")
    assert last["heap_sys_pages"] - last["heap_released_pages"] == pytest.approx(1.1 * last["next_gc_pages"], abs=2)
    assert last["lazyfree_pages"] == last["heap_released_pages"] - tl13.last("gc")["heap_released_pages"]
    tl12 = _rel(go_version="1.12", release="scavenger", wait=8.0)   # the periodic scavenger needs 5 minutes
    assert tl12.last("release")["heap_released_pages"] == tl12.last("gc")["heap_released_pages"]
    tl12b = _rel(go_version="1.12", release="scavenger", wait=460.0, sample_interval=10.0)
    assert tl12b.last("release")["lazyfree_pages"] == DROPPED


# -- the service timeline -----------------------------------------------------------------------
def test_go111_periodic_scavenger_timing():
    """Spike 10..40 s; freed spans must be idle 300 s, and the scavenger runs at 150, 300, 450 s:
    the spike's memory goes back at 450 s, not before (FACTS 41)."""
    tl = simulate_service(go_version="1.11", duration=600)
    rel = tl.heap_released_pages
    before, after = rel[tl.t < 450].max(), rel[tl.t >= 450].min()
    assert after - before > 100 * 256
    assert tl.rss_pages[tl.t >= 450].max() < tl.rss_pages[(tl.t > 40) & (tl.t < 450)].min() - 100 * 256


def test_background_scavenger_prompt_but_rss_stays_with_free():
    free = simulate_service(go_version="1.13", duration=120)
    dn = simulate_service(go_version="1.16", duration=120)
    after = free.t == 60
    assert free.heap_released_pages[after][0] > 100 * 256          # returned within 20 s of the spike's end
    assert free.lazyfree_pages[after][0] > 100 * 256                # ... lazily: RSS stays (FACTS 47)
    assert free.rss_pages[after][0] == free.rss_pages.max()
    assert dn.rss_pages[after][0] < dn.rss_pages.max() - 100 * 256  # 1.16: RSS tracks the heap (FACTS 50)
    assert dn.lazyfree_pages.max() == 0


def test_repeated_spikes_cost_faults_only_with_dontneed():
    free = simulate_service(go_version="1.13", duration=300, spike_every=100)
    dn = simulate_service(go_version="1.16", duration=300, spike_every=100)
    spike2 = (free.t > 110) & (free.t < 140)
    assert free.faults[spike2].sum() == 0
    assert dn.faults[spike2].sum() > 100 * 256
    assert dn.alloc_cost_us_per_mib[spike2].max() > free.alloc_cost_us_per_mib[spike2].max()


def test_gc_roots_raise_the_goal_from_118():
    a = simulate_service(go_version="1.17", duration=60, gc_roots="32MiB")
    b = simulate_service(go_version="1.18", duration=60, gc_roots="32MiB")
    assert b.next_gc_pages[-1] - a.next_gc_pages[-1] == pytest.approx(32 * 256, abs=1)
    assert b.gc_cycles[-1] < a.gc_cycles[-1]


def test_gomemlimit_caps_the_heap():
    tl = simulate_service(go_version="1.19", duration=120, gomemlimit="200MiB")
    plain = simulate_service(go_version="1.19", duration=120)
    assert plain.heap_sys_pages.max() > 250 * 256
    assert tl.heap_sys_pages.max() <= 200 * 256
    committed = tl.heap_sys_pages - tl.heap_released_pages
    assert committed.max() <= 200 * 256
    with pytest.raises(ModelInputError, match="gomemlimit exists from Go 1.19"):
        simulate_service(go_version="1.18", gomemlimit="200MiB")


def test_service_pressure_reclaims_lazyfree_or_kills():
    ok = simulate_service(go_version="1.13", duration=120, memory_limit="320MiB", pressure="150MiB", pressure_at=80)
    at = int(np.flatnonzero(ok.step == "pressure")[0])
    assert ok.lazyfree_pages[at] < ok.lazyfree_pages[at - 1] and not ok.meta["oom_killed"]
    assert ok.rss_pages[at] < ok.rss_pages[at - 1]
    # 1.11 holds the spike's memory as ordinary resident pages: nothing to reclaim, no swap -> OOM.
    dead = simulate_service(go_version="1.11", duration=120, memory_limit="320MiB", pressure="150MiB",
                            pressure_at=80)
    assert dead.meta["oom_killed"] and dead.step[-1] == "oom" and dead.t[-1] == 80


def test_steady_fast_path_is_exact(monkeypatch):
    kw = dict(go_version="1.12", duration=400, spike_every=130, alloc_rate="48MiB")
    fast = simulate_service(**kw)
    monkeypatch.setattr(simulate_mod, "STEADY_FASTPATH", False)
    slow = simulate_service(**kw)
    for name in ("rss_pages", "lazyfree_pages", "heap_released_pages", "heap_inuse_pages", "faults",
                 "gc_cycles", "madvised_pages"):
        assert np.array_equal(getattr(fast, name), getattr(slow, name)), name


# -- input validation ---------------------------------------------------------------------------
@pytest.mark.parametrize("kw, pattern", [
    (dict(liveness=-0.1), r"liveness must be a fraction in \[0, 1\]"),
    (dict(liveness=1.5), r"liveness must be a fraction in \[0, 1\]"),
    (dict(liveness=float("nan")), "liveness"),
    (dict(liveness=True), "liveness"),
    (dict(gogc=0), "gogc"),
    (dict(heap="12MB"), "heap must be"),
    (dict(heap=0), "heap must be between"),
    (dict(object_size="4KiB"), "object_size must be between"),
    (dict(object_size="12KiB"), "multiple of the Go page"),
    (dict(memory_limit=0), "memory_limit must be between"),
    (dict(release="madvise"), "release must be one of"),
    (dict(wait=-1), r"wait must be a number of seconds in \[0"),
    (dict(kernel_version="2.6"), "kernel_version"),
    (dict(swap="yes"), "swap must be True or False"),
    (dict(go_version="1.30"), "go_version"),
    (dict(godebug="madvdontneed=yes"), "godebug"),
    (dict(gomaxprocs=0), "gomaxprocs"),
    (dict(cost="fast"), "cost must be a CostModel"),
])
def test_release_input_errors(kw, pattern):
    with pytest.raises(ModelInputError, match=pattern):
        _rel(**kw)


@pytest.mark.parametrize("kw, pattern", [
    (dict(duration=0), "duration must be"),
    (dict(alloc_rate=-1), "alloc_rate"),
    (dict(spike_seconds=-1), "spike_seconds"),
    (dict(spike_every=10), "spike_every"),
    (dict(sample_interval=0), "sample_interval"),
    (dict(pressure_at=10_000, pressure="1MiB"), "pressure_at"),
    (dict(gogc="off", heap="1GiB", alloc_rate="1GiB", duration=3600), "must stay below"),
])
def test_service_input_errors(kw, pattern):
    with pytest.raises(ModelInputError, match=pattern):
        simulate_service(**kw)


# -- the command line ---------------------------------------------------------------------------
def test_cli_release_json(capsys):
    rc = go_main(["--go-version", "1.12", "--kernel-version", "5.4", "--liveness", "0.25", "--heap", "256MiB",
                  "--godebug", "madvdontneed=1", "--memory-limit", "320MiB", "--pressure", "160MiB",
                  "--release", "freeosmemory", "--json"])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)
    phases = [r["phase"] for r in rows]
    assert phases == sorted(phases, key=["allocate", "gc", "release", "reallocate"].index)
    assert set(phases) == {"allocate", "gc", "release", "reallocate"}
    for key in ("t", "phase", "rss_pages", "lazyfree_pages", "heap_released_pages", "faults",
                "heap_inuse_pages", "heap_idle_pages", "heap_sys_pages"):
        assert all(key in r for r in rows)
    assert rows[-1]["faults"] == DROPPED


def test_cli_service_json(capsys):
    assert go_main(["--go-version", "1.16", "--duration", "30", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 31 and {r["phase"] for r in rows} == {"steady", "spike"}


@pytest.mark.parametrize("argv, text", [
    (["--liveness", "2"], "liveness must be a fraction in [0, 1]"),
    (["--gogc", "0"], "gogc must be a whole percentage"),
    (["--go-version", "1.9"], "go_version must be a Go release from 1.11 to 1.26"),
    (["--kernel-version", "banana"], "kernel_version"),
    (["--godebug", "madvdontneed=7"], "godebug madvdontneed must be one of"),
    (["--release", "now"], "invalid choice"),
    (["--heap", "lots"], "heap must be"),
])
def test_cli_bad_args_exit_2_without_traceback(argv, text):
    proc = subprocess.run([sys.executable, "-m", "models", "go", *argv, "--json"], capture_output=True, text=True,
                          cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert proc.returncode == 2
    assert text in proc.stderr and "Traceback" not in proc.stderr and proc.stdout == ""


# -- invariants over random inputs ---------------------------------------------------------------
from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(version=st.sampled_from(["1.11", "1.12", "1.13", "1.16", "1.19", "1.22"]),
       kernel=st.sampled_from(["4.4", "4.9", "4.14", "5.4", "6.18"]),
       liveness=st.floats(0, 1), heap_mib=st.integers(1, 96), dontneed=st.sampled_from([None, "0", "1"]),
       release=st.sampled_from(["freeosmemory", "scavenger"]), pressure_mib=st.integers(0, 64))
def test_release_invariants(version, kernel, liveness, heap_mib, dontneed, release, pressure_mib):
    godebug = None if dontneed is None or version == "1.11" else f"madvdontneed={dontneed}"
    tl = simulate_release(go_version=version, kernel_version=kernel, liveness=liveness, heap=f"{heap_mib}MiB",
                          godebug=godebug, release=release, wait=2.0, scavenger_wake_delay=0.5,
                          memory_limit=f"{heap_mib + 40}MiB", pressure=f"{pressure_mib}MiB")
    assert np.array_equal(tl.heap_inuse_pages + tl.heap_idle_pages, tl.heap_sys_pages)
    assert np.all(tl.heap_released_pages <= tl.heap_idle_pages)
    assert np.all(tl.lazyfree_pages <= tl.heap_released_pages)
    assert np.all(tl.heap_live_pages <= tl.heap_inuse_pages)
    assert np.all(tl.rss_pages >= 0) and np.all(tl.faults >= 0)
    if kernel in ("4.4", "4.9"):
        assert tl.lazyfree_pages.max() == 0            # no MADV_FREE, or no lazy freeing without swap
    if not tl.meta["oom_killed"]:
        last = tl.last("reallocate")
        assert last["heap_inuse_pages"] == tl.last("allocate")["heap_inuse_pages"]
        # every page the re-allocation wrote is resident again
        assert last["rss_pages"] >= last["heap_inuse_pages"]


def test_simulate_versions_side_by_side():
    from models.goruntime import simulate_versions
    out = simulate_versions("release", versions=("1.11", "1.12", "1.16"))
    assert list(out) == ["1.11", "1.12", "1.16"]
    assert [out[v].last("release")["lazyfree_pages"] for v in out] == [0, DROPPED, 0]
    with pytest.raises(ModelInputError, match="kind must be one of"):
        simulate_versions("both")
