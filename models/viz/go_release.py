"""Chapter 6 ("The Go 1.12 change"): how a Go heap gives memory back, and what MADV_FREE changed.

Explorables (all driven by the Go runtime model, ``models.goruntime``, which sends every memory
effect through the kernel page model):

* :data:`service_timeline` -- a service over ten minutes with a load spike at t = 60 s
  (``simulate_service``): heap goal, live heap, ``HeapReleased``, RSS and ``LazyFree`` by Go
  version, GOGC, liveness, kernel version and memory pressure (FACTS 41-49, 57).
* :data:`release_tradeoff` -- the ``probes/goheap`` experiment (``simulate_release``): RSS,
  ``LazyFree`` and ``HeapReleased`` per phase, and the faults and estimated time of the
  re-allocation, by ``madvdontneed``, liveness, pressure, kernel and Go version (FACTS 42-44, E10).
* :data:`heap_pagemap` -- the same experiment as a page map of the 256 MiB heap: the advice the
  runtime actually uses (asked of the Go model: version default, GODEBUG, fallback on
  ``EINVAL``) played on the kernel page model (FACTS 11-22, 44).

Real measurements beside the model:

* :func:`kernel_advice_reuse` -- a scenario for ``kernel_vs_model`` (the page-level core of
  the trade-off);
* :func:`go_probe_vs_model` -- the real Go program ``probes/goheap`` under both
  ``madvdontneed`` settings (and under a memory cgroup limit) beside ``simulate_release``;
  falls back to ``book/recorded/ch06-goprobe.json``, labelled, where Go or Linux is missing.

The ``*_model`` functions return plain numbers (tested in ``tests/test_viz_go_release.py``);
the figure functions only draw them.
"""
from __future__ import annotations

import datetime as _dt
import html
import json
import os
import platform
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional

from models.errors import ModelInputError
from models.goruntime import simulate_release, simulate_service
from models.goruntime.versions import MADV_DONTNEED, MADV_FREE, policy_for
from models.scenario.format import Madvise, Mmap, Munmap, Scenario, Touch
from models.units import PAGE_SIZE
from models.viz import COLORS, STATIC_BUILD_ENV
from models.viz.explorable import Dropdown, Explorable
from models.viz.recording import write_json_atomic

MiB = 1 << 20
PAGES_PER_MIB = MiB // PAGE_SIZE

# ------------------------------------------------------------------ shared choices

GO_VERSIONS = ("1.11", "1.12", "1.13", "1.16", "1.19")
#: Kernel profiles that matter for MADV_FREE (FACTS 14-15, 23): name -> (version, swap).
KERNELS = {
    "Linux 4.4 (no MADV_FREE)": ("4.4", False),
    "Linux 4.9, no swap": ("4.9", False),
    "Linux 4.9 with swap": ("4.9", True),
    "Linux 4.12+ / 6.18": ("6.18", False),
}
_KERNEL_SHORT = {"4.4": "4.4", "4.9": "4.9", "6.18": "6.18"}

LINE = {"rss": COLORS["rss"], "lazyfree": COLORS["lazyfree"], "released": COLORS["free"],
        "goal": "#555555", "live": COLORS["vsz"], "faults": COLORS["faults"], "time": "#555555"}


def _mib(pages) -> float:
    return float(pages) * PAGE_SIZE / MiB


def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ModelInputError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _kernel(kernel: str) -> tuple[str, bool]:
    _check_choice("kernel", kernel, KERNELS)
    return KERNELS[kernel]


def effective_godebug(go_version: str, madvdontneed: str) -> Optional[str]:
    """The GODEBUG string for a ``madvdontneed`` choice ("default", "0", "1"); None for the default.

    Go 1.11 has no such setting (FACTS 42): any choice there means its only advice, DONTNEED.
    """
    _check_choice("madvdontneed", madvdontneed, ("default", "0", "1"))
    if madvdontneed == "default" or policy_for(go_version).minor < 12:
        return None
    return f"madvdontneed={madvdontneed}"


# ------------------------------------------------------------------ 1. a service over time

SERVICE_DURATION = 600.0
SERVICE_SAMPLE = 5.0
SPIKE_START, SPIKE_SECONDS = 60.0, 10.0
SPIKE_LIVE_MIB = 256           # live heap during the spike
ALLOC_RATE = "32MiB"           # per second
#: The memory-pressure choice: a neighbour in the same cgroup writes and holds this much ...
NEIGHBOUR_MIB, NEIGHBOUR_AT, SERVICE_LIMIT_MIB = 256, 330.0, 640
GOGCS = (50, 100, 200)
LIVENESS = (0.1, 0.25, 0.5)
PRESSURES = {"none": False, f"neighbour writes {NEIGHBOUR_MIB} MiB at t = {NEIGHBOUR_AT:g} s, "
                            f"limit {SERVICE_LIMIT_MIB} MiB": True}


@dataclass(frozen=True)
class ServiceRun:
    """The numbers :data:`service_timeline` draws (MiB and seconds; lists for plotting)."""
    t: list
    rss: list
    lazyfree: list
    released: list
    goal: list
    live: list
    gc_cycles: int
    oom_at: Optional[float]
    advice: str
    peak_rss: float
    final_rss: float
    final_lazyfree: float
    final_released: float
    periodic_runs: tuple          # times of the <= 1.12 periodic scavenger passes
    rss_drop_at: Optional[float]  # first time after the spike RSS fell below half its peak
    released_at: Optional[float]  # first time after the spike HeapReleased passed half its final value
    reclaimed: float              # MiB of lazily freed memory the kernel took for the neighbour


@lru_cache(maxsize=512)
def service_model(go_version: str = "1.12", gogc: int = 100, liveness: float = 0.25,
                  kernel: str = "Linux 4.12+ / 6.18", pressure: bool = False) -> ServiceRun:
    """A service allocating 32 MiB/s whose live heap rises to 256 MiB for 10 s at t = 60 s.

    Outside the spike ``liveness x 256 MiB`` stays live.  The model's heap size is the spike's
    heap goal, 256 MiB x (1 + GOGC/100), so that the spike's live heap is the same for every
    GOGC (FACTS 57).  ``pressure``: a 640 MiB memory limit and a neighbour that writes and holds
    256 MiB from t = 330 s.
    """
    _check_choice("go_version", go_version, GO_VERSIONS)
    _check_choice("gogc", gogc, GOGCS)
    _check_choice("liveness", liveness, LIVENESS)
    kv, swap = _kernel(kernel)
    heap_mib = SPIKE_LIVE_MIB * (1 + gogc / 100)
    extra = dict(memory_limit=f"{SERVICE_LIMIT_MIB}MiB", pressure=f"{NEIGHBOUR_MIB}MiB",
                 pressure_at=NEIGHBOUR_AT) if pressure else {}
    tl = simulate_service(go_version=go_version, kernel_version=kv, swap=swap, gogc=gogc,
                          heap=f"{int(heap_mib)}MiB", liveness=liveness * SPIKE_LIVE_MIB / heap_mib,
                          alloc_rate=ALLOC_RATE, duration=SERVICE_DURATION, spike_start=SPIKE_START,
                          spike_seconds=SPIKE_SECONDS, sample_interval=SERVICE_SAMPLE, **extra)
    t = [float(x) for x in tl.t]
    rss = [_mib(x) for x in tl.rss_pages]
    lazy = [_mib(x) for x in tl.lazyfree_pages]
    rel = [_mib(x) for x in tl.heap_released_pages]
    oom_at = t[-1] if bool(tl.oom.any()) else None
    after = [i for i, x in enumerate(t) if x > SPIKE_START + SPIKE_SECONDS]
    peak = max(rss)
    drop = next((t[i] for i in after if rss[i] < peak / 2), None)
    final_rel = rel[-1]
    rel_at = next((t[i] for i in after if final_rel > 8 and rel[i] >= final_rel / 2), None)
    policy = policy_for(go_version)
    periodic = tuple(x for x in (150.0, 300.0, 450.0, 600.0) if policy.periodic_scavenger
                     and x <= (oom_at if oom_at is not None else SERVICE_DURATION))
    advice = str(tl.advice[-1])
    return ServiceRun(t=t, rss=rss, lazyfree=lazy, released=rel,
                      goal=[_mib(x) for x in tl.next_gc_pages],
                      live=[_mib(x) for x in tl.heap_live_pages], gc_cycles=int(tl.gc_cycles[-1]),
                      oom_at=oom_at, advice=advice, peak_rss=peak, final_rss=rss[-1],
                      final_lazyfree=lazy[-1], final_released=final_rel, periodic_runs=periodic,
                      rss_drop_at=drop, released_at=rel_at,
                      reclaimed=_mib(int(tl.reclaimed_pages.sum())))


def _r(values, nd=0):
    return [int(round(v)) if nd == 0 else round(v, nd) for v in values]


def service_figure(go_version="1.12", gogc=100, liveness=0.25, kernel="Linux 4.12+ / 6.18",
                   pressure=False) -> dict:
    run = service_model(go_version, gogc, liveness, kernel, pressure)
    traces = [
        dict(type="scatter", x=run.t, y=_r(run.goal), name="heap goal (next GC)", mode="lines",
             line=dict(color=LINE["goal"], dash="dash", width=1.5, shape="hv")),
        dict(type="scatter", x=run.t, y=_r(run.live), name="live heap", mode="lines",
             line=dict(color=LINE["live"], width=1.5, shape="hv")),
        dict(type="scatter", x=run.t, y=_r(run.released), name="HeapReleased (runtime)", mode="lines",
             line=dict(color=LINE["released"], width=3)),
        dict(type="scatter", x=run.t, y=_r(run.lazyfree), name="LazyFree (kernel)", mode="lines",
             line=dict(color=LINE["lazyfree"], width=3, dash="dot")),
        dict(type="scatter", x=run.t, y=_r(run.rss), name="RSS (kernel)", mode="lines",
             line=dict(color=LINE["rss"], width=3)),
    ]
    shapes = [dict(type="rect", xref="x", yref="paper", x0=SPIKE_START, x1=SPIKE_START + SPIKE_SECONDS,
                   y0=0, y1=1, fillcolor="#999999", opacity=0.2, line_width=0)]
    notes = [dict(x=SPIKE_START + SPIKE_SECONDS / 2, y=1.0, yref="paper", text="spike", showarrow=False,
                  yanchor="bottom", font=dict(size=11))]
    for x in run.periodic_runs:
        shapes.append(dict(type="line", xref="x", yref="paper", x0=x, x1=x, y0=0, y1=1,
                           line=dict(color=LINE["released"], dash="dot", width=1)))
    if run.periodic_runs:
        notes.append(dict(x=run.periodic_runs[0], y=1.0, yref="paper", text="periodic scavenger",
                          showarrow=False, yanchor="bottom", xanchor="left", font=dict(size=11)))
    if pressure:
        shapes.append(dict(type="line", xref="x", yref="paper", x0=NEIGHBOUR_AT, x1=NEIGHBOUR_AT, y0=0,
                           y1=1, line=dict(color="#000000", width=1.5)))
        notes.append(dict(x=NEIGHBOUR_AT, y=0.93, yref="paper", showarrow=False, xanchor="left",
                          text=f" neighbour +{NEIGHBOUR_MIB} MiB<br> (limit {SERVICE_LIMIT_MIB} MiB)",
                          align="left", font=dict(size=11)))
    if run.oom_at is not None:
        notes.append(dict(x=run.oom_at, y=run.rss[-1], text="<b>OOM kill</b>", showarrow=True,
                          arrowhead=2, ax=40, ay=-30, font=dict(color="#B71C1C", size=13)))
    outcome = (f"OOM kill at t = {run.oom_at:g} s" if run.oom_at is not None else
               f"at 600 s: RSS {run.final_rss:.0f} MiB, HeapReleased {run.final_released:.0f} MiB, "
               f"LazyFree {run.final_lazyfree:.0f} MiB")
    return dict(data=traces, layout=dict(
        # Only the kernel is named in the title (every control must visibly change the figure);
        # the Go version and GOGC are in the controls and the text summary.
        title=dict(text=f"{kernel}: releases with {run.advice}<br>{outcome}", font=dict(size=13)),
        height=450, margin=dict(t=90, b=50, l=60, r=10),
        xaxis=dict(title=dict(text="time (s)"), range=[0, SERVICE_DURATION], dtick=60),
        yaxis=dict(title=dict(text="MiB"), rangemode="tozero", range=[0, 860]),
        legend=dict(orientation="h", x=0, y=-0.18), shapes=shapes, annotations=notes,
        hovermode="x unified"))


def describe_service(go_version="1.12", gogc=100, liveness=0.25, kernel="Linux 4.12+ / 6.18",
                     pressure=False) -> str:
    run = service_model(go_version, gogc, liveness, kernel, pressure)
    steady_goal = run.goal[-1] if run.oom_at is None else run.goal[len(run.goal) // 2]
    text = (f"Go {go_version}, GOGC={gogc}, {liveness:.0%} of the spike's heap live afterwards, {kernel}: "
            f"the advice in use is {run.advice}; {run.gc_cycles} GC cycles; the heap goal outside the "
            f"spike is about {steady_goal:.0f} MiB; RSS peaks at {run.peak_rss:.0f} MiB. ")
    if run.oom_at is not None:
        return text + (f"The process is OOM-killed at t = {run.oom_at:g} s, when the neighbour's memory "
                       f"no longer fits under the {SERVICE_LIMIT_MIB} MiB limit.")
    if run.released_at is None:
        text += "Nothing is released within the ten minutes. "
    else:
        text += f"HeapReleased rises at about t = {run.released_at:g} s, to {run.final_released:.0f} MiB. "
    if run.rss_drop_at is not None:
        text += f"RSS falls below half its peak at t = {run.rss_drop_at:g} s "
    else:
        text += "RSS never falls below half its peak "
    text += (f"and ends at {run.final_rss:.0f} MiB, with LazyFree {run.final_lazyfree:.0f} MiB.")
    if run.reclaimed:
        text += f" The kernel reclaimed {run.reclaimed:.0f} MiB of lazily freed memory for the neighbour."
    return text


service_timeline = Explorable(
    service_figure, title="A Go service's memory after a load spike", describe=describe_service,
    go_version=Dropdown({f"Go {v}": v for v in GO_VERSIONS}, label="Go version", default="1.12"),
    gogc=Dropdown({f"GOGC={g}": g for g in GOGCS}, label="GOGC", default=100),
    liveness=Dropdown({f"{int(x * 100)} % stays live": x for x in LIVENESS}, label="liveness", default=0.25),
    kernel=Dropdown({k: k for k in KERNELS if k != "Linux 4.9 with swap"}, label="kernel",
                    default="Linux 4.12+ / 6.18"),
    pressure=Dropdown(PRESSURES, label="memory pressure", default=False),
    max_embed_bytes=650_000,
)


# ------------------------------------------------------------------ 2. the release experiment

RELEASE_HEAP = "256MiB"
RELEASE_LIMIT = "320MiB"
RELEASE_LIVENESS = (0.1, 0.25, 0.5, 0.75)
RELEASE_PRESSURES = {"none": 0, "320 MiB limit, +80 MiB": 80, "320 MiB limit, +160 MiB": 160,
                     "320 MiB limit, +200 MiB": 200}
RELEASE_GO = ("1.11", "1.12", "1.19")
RELEASE_PHASES = ("allocate", "gc", "release", "pressure", "reallocate")
#: FACTS E10 (real Go 1.19.8 on this book's machine, 256 MiB heap, 25 % live, FreeOSMemory).
E10 = {"1": dict(rss_release=81, lazyfree=0, released=195, faults="about 49,400", ms=85),
       "0": dict(rss_release=273, lazyfree=192, released=195, faults="200-330", ms=20),
       "0+160": dict(reclaimed=114, rss_pressure=160, faults="about 29,300")}


@dataclass(frozen=True)
class ReleaseRun:
    """The numbers :data:`release_tradeoff` draws (MiB, counts, ms), per phase."""
    phases: tuple
    rss: tuple
    lazyfree: tuple
    released: tuple
    advice: str                    # the advice the runtime ended up using
    fell_back: bool                # MADV_FREE failed with EINVAL, runtime switched (FACTS 44)
    realloc_faults: int
    realloc_ms: float              # the cost model's estimate (use the ratio, LIMITS.md)
    reclaimed: float               # MiB of lazily freed memory reclaimed for the burst
    oom: bool


@lru_cache(maxsize=2048)
def release_model(madvdontneed: str = "default", liveness: float = 0.25, pressure: int = 0,
                  kernel: str = "Linux 4.12+ / 6.18", go_version: str = "1.12") -> ReleaseRun:
    """``simulate_release`` as the real probe runs it: 256 MiB heap of 8 KiB objects, GC, FreeOSMemory,
    optionally a burst of ``pressure`` MiB under a 320 MiB limit, then re-allocation."""
    _check_choice("liveness", liveness, RELEASE_LIVENESS)
    _check_choice("pressure", pressure, tuple(RELEASE_PRESSURES.values()))
    _check_choice("go_version", go_version, RELEASE_GO)
    kv, swap = _kernel(kernel)
    extra = dict(memory_limit=RELEASE_LIMIT, pressure=f"{pressure}MiB") if pressure else {}
    tl = simulate_release(go_version=go_version, kernel_version=kv, swap=swap, heap=RELEASE_HEAP,
                          liveness=liveness, godebug=effective_godebug(go_version, madvdontneed),
                          release="freeosmemory", **extra)
    rows = tl.to_json()
    by_phase = {}
    for row in rows:
        key = "pressure" if row["step"] == "pressure" else row["phase"]
        if row["step"] == "start":
            continue
        by_phase[key] = row
    phases = tuple(p for p in RELEASE_PHASES if p in by_phase)
    realloc = by_phase.get("reallocate")
    tried = policy_for(go_version, effective_godebug(go_version, madvdontneed)).advice
    used = by_phase["release"]["advice"] if "release" in by_phase else tried
    return ReleaseRun(
        phases=phases,
        rss=tuple(_mib(by_phase[p]["rss_pages"]) for p in phases),
        lazyfree=tuple(_mib(by_phase[p]["lazyfree_pages"]) for p in phases),
        released=tuple(_mib(by_phase[p]["heap_released_pages"]) for p in phases),
        advice=used, fell_back=(tried == MADV_FREE and used == MADV_DONTNEED),
        realloc_faults=int(realloc["faults"]) if realloc else 0,
        realloc_ms=float(realloc["elapsed_ms"]) if realloc else 0.0,
        reclaimed=_mib(sum(r["reclaimed_pages"] for r in rows)),
        oom=any(r["oom"] for r in rows))


def _advice_words(run: ReleaseRun, kernel: str) -> str:
    kv, swap = _kernel(kernel)
    if run.fell_back:
        return "MADV_FREE failed (EINVAL), runtime fell back to MADV_DONTNEED"
    if run.advice == MADV_FREE and kv == "4.9" and not swap:
        return "MADV_FREE, which this kernel treats as MADV_DONTNEED (no swap)"
    return run.advice


def _setting_words(go_version: str, madvdontneed: str) -> str:
    godebug = effective_godebug(go_version, madvdontneed)
    if godebug:
        return f"GODEBUG={godebug}"
    return "no madvdontneed setting in Go 1.11" if madvdontneed != "default" else "default advice"


def release_figure(madvdontneed="default", liveness=0.25, pressure=0, kernel="Linux 4.12+ / 6.18",
                   go_version="1.12") -> dict:
    run = release_model(madvdontneed, liveness, pressure, kernel, go_version)
    x = list(run.phases)
    traces = [
        dict(type="scatter", x=x, y=_r(run.rss), name="RSS (kernel)", mode="lines+markers",
             line=dict(color=LINE["rss"], width=3), marker=dict(size=9)),
        dict(type="scatter", x=x, y=_r(run.lazyfree), name="LazyFree (kernel)", mode="lines+markers",
             line=dict(color=LINE["lazyfree"], width=3, dash="dot"), marker=dict(size=9, symbol="diamond")),
        dict(type="scatter", x=x, y=_r(run.released), name="HeapReleased (runtime)", mode="lines+markers",
             line=dict(color=LINE["released"], width=2), marker=dict(size=7, symbol="square")),
        dict(type="bar", x=["faults"], y=[run.realloc_faults], name="page faults to re-allocate",
             marker_color=LINE["faults"], xaxis="x2", yaxis="y2", text=[f"{run.realloc_faults:,}"],
             textposition="outside", showlegend=False),
        dict(type="bar", x=["time"], y=[round(run.realloc_ms, 1)], name="estimated time (ms)",
             marker_color=LINE["time"], xaxis="x3", yaxis="y3", text=[f"{run.realloc_ms:.0f} ms"],
             textposition="outside", showlegend=False),
    ]
    head = _advice_words(run, kernel)
    if run.oom:
        head += "; OOM kill"
    elif run.reclaimed:
        head += f"; kernel reclaimed {run.reclaimed:.0f} MiB"
    return dict(data=traces, layout=dict(
        title=dict(text=f"Go {go_version} ({_setting_words(go_version, madvdontneed)}): {head}", font=dict(size=13)),
        height=400, margin=dict(t=60, b=90, l=60, r=60), bargap=0.35,
        xaxis=dict(domain=[0, 0.5], title=dict(text="phase of the experiment"),
                   categoryorder="array", categoryarray=list(RELEASE_PHASES)),
        yaxis=dict(title=dict(text="MiB"), range=[0, 300]),
        xaxis2=dict(domain=[0.66, 0.78], anchor="y2", title=dict(text="re-allocation")),
        yaxis2=dict(anchor="x2", title=dict(text="page faults", standoff=4), range=[0, 60_000],
                    tickformat="~s"),
        xaxis3=dict(domain=[0.9, 1.0], anchor="y3", title=dict(text="re-allocation")),
        yaxis3=dict(anchor="x3", title=dict(text="estimated ms", standoff=4), range=[0, 80], side="left"),
        legend=dict(orientation="h", x=0, y=-0.28)))


def describe_release(madvdontneed="default", liveness=0.25, pressure=0, kernel="Linux 4.12+ / 6.18",
                     go_version="1.12") -> str:
    run = release_model(madvdontneed, liveness, pressure, kernel, go_version)
    ph = dict(zip(run.phases, zip(run.rss, run.lazyfree, run.released)))
    text = (f"Go {go_version} on {kernel}, {liveness:.0%} live, "
            f"{'no memory limit' if not pressure else f'a {pressure} MiB burst under a 320 MiB limit'}: "
            f"{_advice_words(run, kernel)}. ")
    if "release" in ph:
        rss, lazy, rel = ph["release"]
        text += (f"After the GC RSS is {ph['gc'][0]:.0f} MiB; after FreeOSMemory RSS is {rss:.0f} MiB, "
                 f"LazyFree {lazy:.0f} MiB, HeapReleased {rel:.0f} MiB. ")
    if run.oom:
        return text + "The burst does not fit: OOM kill."
    if "pressure" in ph:
        text += (f"During the burst the kernel reclaims {run.reclaimed:.0f} MiB and the Go process's "
                 f"RSS is {ph['pressure'][0]:.0f} MiB. ")
    return text + (f"Re-allocating takes {run.realloc_faults:,} page faults "
                   f"(estimated {run.realloc_ms:.0f} ms).")


release_tradeoff = Explorable(
    release_figure, title="GC, FreeOSMemory, re-allocate: the Go 1.12 trade-off", describe=describe_release,
    madvdontneed=Dropdown({"version default": "default", "GODEBUG=madvdontneed=1": "1",
                           "GODEBUG=madvdontneed=0": "0"}, label="madvdontneed", default="default"),
    liveness=Dropdown({f"{int(x * 100)} % live": x for x in RELEASE_LIVENESS}, label="liveness", default=0.25),
    pressure=Dropdown(RELEASE_PRESSURES, label="memory pressure", default=0),
    kernel=Dropdown({k: k for k in KERNELS}, label="kernel", default="Linux 4.12+ / 6.18"),
    go_version=Dropdown({f"Go {v}": v for v in RELEASE_GO}, label="Go version", default="1.12"),
    max_embed_bytes=400_000,
)


# ------------------------------------------------------------------ 3. the heap as a page map

#: Cells per region in the page map (256 MiB heap: one cell = 256 pages = 1 MiB).
PAGEMAP_CELLS = 256
PAGEMAP_HEAP_MIB, PAGEMAP_LIVE_MIB, PAGEMAP_OTHER_MIB, PAGEMAP_LIMIT_MIB = 256, 64, 160, 320


def runtime_advice(go_version: str, madvdontneed: str, kernel: str) -> str:
    """The advice the runtime's release call finally uses, asked of the Go model (FACTS 42-44):
    version default, GODEBUG override, fallback to DONTNEED for good when FREE gets EINVAL."""
    return release_model(madvdontneed, 0.25, 0, kernel, go_version).advice


def heap_scenario(madvdontneed: str = "0", pressure: bool = False, kernel: str = "Linux 4.12+ / 6.18",
                  go_version: str = "1.12") -> Scenario:
    """The goheap experiment as kernel operations on one 256 MiB heap arena.

    The Go model keeps live spans at the lowest addresses (LIMITS.md), so the 64 MiB that stay
    live are the first quarter; marking reads them; FreeOSMemory advises the other 192 MiB with
    the advice the runtime really uses (:func:`runtime_advice`); another allocation maps 256 MiB,
    writes 160 MiB of it and unmaps it (under a 320 MiB budget with ``pressure``); the heap
    grows back.
    """
    advice = runtime_advice(go_version, madvdontneed, kernel)
    live, heap, other = PAGEMAP_LIVE_MIB * MiB, PAGEMAP_HEAP_MIB * MiB, PAGEMAP_OTHER_MIB * MiB
    steps = (Mmap("heap", heap), Touch("heap", 0, heap, "write"), Touch("heap", 0, live, "read"),
             Madvise("heap", live, heap - live, advice),
             # a mapping as large as the heap keeps the two page maps on one scale
             Mmap("other", heap), Touch("other", 0, other, "write"), Munmap("other"),
             Touch("heap", live, heap - live, "write"))
    return Scenario(steps, memory_limit=PAGEMAP_LIMIT_MIB * MiB if pressure else None,
                    name="the Go heap through GC, release and re-allocation")


PAGEMAP_STEPS = ("0: the runtime maps a 256 MiB heap arena", "1: allocate: write 256 MiB of objects",
                 "2: GC: mark reads the live 64 MiB; 192 MiB become free spans",
                 "3: FreeOSMemory: madvise the free 192 MiB",
                 "4: another allocation maps 256 MiB", "5: ... and writes 160 MiB of it", "6: ... and unmaps it",
                 "7: the heap grows back: write the 192 MiB again")


_PAGEMAP_KERNELS = tuple(k for k in KERNELS if k != "Linux 4.9 with swap")


def heap_pagemap_figure(step=3, madvdontneed="0", pressure=False, kernel="Linux 4.12+ / 6.18"):
    from models.kernel.pages import PageState
    from models.viz.pagemap import pagemap_figure

    kv, swap = _kernel(kernel)
    scen = heap_scenario(madvdontneed, pressure, kernel)
    advice = runtime_advice("1.12", madvdontneed, kernel)
    legend = tuple(int(s) for s in (PageState.NOT_PRESENT, PageState.RESIDENT, PageState.LAZYFREE,
                                    PageState.RECLAIMED)) + (len(PageState),)
    return pagemap_figure(scen, step, kernel_version=kv, swap=swap, legend_codes=legend, max_cells=PAGEMAP_CELLS,
                          title=f"Go 1.12 heap on {kernel}, release with {advice}"
                                f"{', 320 MiB limit' if pressure else ''}")


def describe_heap_pagemap(step=3, madvdontneed="0", pressure=False, kernel="Linux 4.12+ / 6.18") -> str:
    from models.viz.pagemap import describe_pagemap_step, snapshots

    kv, swap = _kernel(kernel)
    run = snapshots(heap_scenario(madvdontneed, pressure, kernel), kernel_version=kv, swap=swap)
    return describe_pagemap_step(run, step)


def heap_pagemap_counts(madvdontneed="0", pressure=False, kernel="Linux 4.12+ / 6.18") -> list[dict]:
    """Per step of :func:`heap_scenario`: RSS / LazyFree (MiB of the heap + other allocation),
    faults in the step, and the heap's pages per state (for tests and the text)."""
    from models.kernel.pages import PageState
    from models.viz.pagemap import counters, snapshots

    kv, swap = _kernel(kernel)
    run = snapshots(heap_scenario(madvdontneed, pressure, kernel), kernel_version=kv, swap=swap)
    out = []
    for i, snap in enumerate(run.snapshots):
        c = counters(run, i)
        heap = snap.states["heap"]
        out.append(dict(step=i, rss_mib=_mib(c["rss_pages"]), lazyfree_mib=_mib(c["lazyfree_pages"]),
                        faults=c["faults"], error=c["error"],
                        heap_states={s.name: int((heap == int(s)).sum()) for s in PageState}))
    return out


heap_pagemap = Explorable(
    heap_pagemap_figure, title="The Go heap through GC, release and re-allocation", describe=describe_heap_pagemap,
    step=Dropdown({label: i for i, label in enumerate(PAGEMAP_STEPS)}, label="step", default=3),
    madvdontneed=Dropdown({"Go 1.12 default (MADV_FREE)": "0", "GODEBUG=madvdontneed=1": "1"},
                          label="advice", default="0"),
    pressure=Dropdown({"no memory limit": False, "320 MiB limit": True}, label="memory pressure",
                      default=False),
    kernel=Dropdown({k: k for k in _PAGEMAP_KERNELS}, label="kernel", default="Linux 4.12+ / 6.18"),
    max_embed_bytes=400_000,
)


# ------------------------------------------------------------------ real kernel, real Go

#: The page-level core of the trade-off (FACTS E1, E3, E10): a 96 MiB "heap" per advice, one
#: third live, two thirds released with one advice or the other, then written again.
KERNEL_ADVICE_REUSE = {
    "name": "ch06-advice-reuse",
    "description": "a 96 MiB heap, 64 MiB released with MADV_FREE or MADV_DONTNEED, then re-allocated",
    "steps": [
        {"op": "mmap", "region": "free", "length": "96MiB"},
        {"op": "mmap", "region": "dontneed", "length": "96MiB"},
        {"op": "touch", "region": "free", "offset": 0, "length": "96MiB", "access": "write"},
        {"op": "touch", "region": "dontneed", "offset": 0, "length": "96MiB", "access": "write"},
        {"op": "madvise", "region": "free", "offset": "32MiB", "length": "64MiB", "advice": "MADV_FREE"},
        {"op": "madvise", "region": "dontneed", "offset": "32MiB", "length": "64MiB", "advice": "MADV_DONTNEED"},
        {"op": "touch", "region": "free", "offset": "32MiB", "length": "64MiB", "access": "write"},
        {"op": "touch", "region": "dontneed", "offset": "32MiB", "length": "64MiB", "access": "write"},
        {"op": "munmap", "region": "free"}, {"op": "munmap", "region": "dontneed"}]}


def kernel_advice_reuse() -> Scenario:
    from models.scenario.parse import parse_scenario
    return parse_scenario(KERNEL_ADVICE_REUSE)


GOPROBE_RECORD = "ch06-goprobe"
GOPROBE_RUNS = {
    "madvdontneed=1": dict(madvdontneed=1),
    "madvdontneed=0": dict(madvdontneed=0),
    "madvdontneed=0, 320 MiB limit, +160 MiB": dict(madvdontneed=0, memory_limit="320MiB", pressure="160MiB"),
}
#: Tolerances of the Go comparison.  LazyFree and faults: max(32 pages, 3 %) as for the kernel
#: scenarios, except that the real runtime takes a few hundred faults of its own per GC (fresh
#: GC metadata, LIMITS.md), so faults get max(512, 3 %).  RSS and HeapReleased: 10 % (the
#: model's runtime overhead is an average, LIMITS.md).
GO_TOLERANCE = {"lazyfree": (32, 0.03), "faults": (512, 0.03), "rss": (0, 0.10), "released": (0, 0.10)}


def _within(kind: str, real: float, model: float) -> bool:
    floor, rel = GO_TOLERANCE[kind]
    return abs(real - model) <= max(floor, rel * max(abs(real), abs(model)))


def _probe_numbers(run) -> dict:
    """Pages (faults: count) per phase of a real ``ProbeRun`` (or its recorded JSON)."""
    samples = run["samples"] if isinstance(run, dict) else run.samples
    last = {}
    for s in samples:
        last[s["phase"]] = s
    out = {}
    for phase, s in last.items():
        if phase == "start":
            continue
        out[phase] = dict(rss=(s["rss_bytes"] - s.get("pressure_rss_bytes", 0)) // PAGE_SIZE,
                          lazyfree=s["lazyfree_bytes"] // PAGE_SIZE,
                          released=s["heap_released"] // PAGE_SIZE, faults=int(s["minflt_delta"]),
                          ms=s["elapsed_ns"] / 1e6)
    return out


def _model_numbers(go_version: str, kernel_version: str, cfg: dict) -> dict:
    mdn = cfg.get("madvdontneed")
    extra = dict(memory_limit=cfg["memory_limit"], pressure=cfg["pressure"]) if "memory_limit" in cfg else {}
    tl = simulate_release(go_version=go_version, kernel_version=kernel_version, heap=RELEASE_HEAP,
                          liveness=0.25, godebug=None if mdn is None else f"madvdontneed={mdn}",
                          release="freeosmemory", **extra)
    out = {}
    for row in tl.to_json():
        if row["step"] == "start":
            continue
        phase = "pressure" if row["step"] == "pressure" else row["phase"]
        out[phase] = dict(rss=row["rss_pages"], lazyfree=row["lazyfree_pages"],
                          released=row["heap_released_pages"], faults=row["faults"], ms=row["elapsed_ms"])
    return out


def _model_go_version(go_version_text: str) -> str:
    """The model's version for ``go version`` output ("go version go1.19.8 linux/amd64" -> "1.19")."""
    m = re.search(r"go1\.(\d+)", go_version_text or "")
    minor = int(m.group(1)) if m else 19
    return f"1.{min(max(minor, 12), 26)}"


@dataclass
class GoProbeVsModel:
    """The real Go program under each setting beside the Go model; displays itself."""
    live: bool
    source: str
    go_version: str
    model_go_version: str
    kernel_release: str
    real: dict                      # run name -> phase -> numbers
    model: dict
    oom_kills: dict
    reason: str = ""
    mismatches: list = field(default_factory=list)

    ROWS = (("RSS after the GC", "gc", "rss"), ("RSS after FreeOSMemory", "release", "rss"),
            ("LazyFree after FreeOSMemory", "release", "lazyfree"),
            ("HeapReleased after FreeOSMemory", "release", "released"),
            ("RSS of the Go process during the burst", "pressure", "rss"),
            ("page faults to re-allocate 192 MiB", "reallocate", "faults"),
            ("time to re-allocate (real: measured; model: estimate)", "reallocate", "ms"))

    def check(self) -> list:
        bad = []
        for name in self.real:
            for label, phase, key in self.ROWS:
                if key == "ms" or phase not in self.real[name] or phase not in self.model[name]:
                    continue
                r, m = self.real[name][phase][key], self.model[name][phase][key]
                if not _within(key, r, m):
                    bad.append(f"{name}: {label}: real {self._fmt(key, r)}, model {self._fmt(key, m)}")
        return bad

    @staticmethod
    def _fmt(key, v) -> str:
        if key == "faults":
            return f"{int(v):,}"
        if key == "ms":
            return f"{v:.0f} ms"
        return f"{_mib(v):.0f} MiB"

    def html(self) -> str:
        names = list(self.real)
        head = "<tr><th></th>" + "".join(f"<th colspan='2'>{html.escape(n)}</th>" for n in names) + "</tr>"
        head += "<tr><th></th>" + "<th>real</th><th>model</th>" * len(names) + "</tr>"
        body = []
        for label, phase, key in self.ROWS:
            cells = []
            for n in names:
                r = self.real[n].get(phase, {}).get(key)
                m = self.model[n].get(phase, {}).get(key)
                cells.append(f"<td>{'-' if r is None else self._fmt(key, r)}</td>"
                             f"<td>{'-' if m is None else self._fmt(key, m)}</td>")
            body.append(f"<tr><td>{html.escape(label)}</td>{''.join(cells)}</tr>")
        ooms = ", ".join(f"{n}: {k}" for n, k in self.oom_kills.items() if k) or "none"
        verdict = ("The model agrees with the real program on every compared value (LazyFree within "
                   "max(32 pages, 3 %), faults within max(512, 3 %), RSS and HeapReleased within 10 %)."
                   if not self.mismatches else
                   "Differences beyond the tolerances: " + "; ".join(self.mismatches) + ".")
        colour = "#1B5E20" if not self.mismatches else "#B71C1C"
        reason = (f'<p class="kernel-cell-reason">Not run live here: {html.escape(self.reason)}</p>'
                  if self.reason else "")
        return (f'<div class="kernel-cell" data-live="{str(self.live).lower()}">'
                f'<p class="kernel-cell-source"><strong>Real Go program: {html.escape(self.source)}.</strong> '
                f"Model: the Go runtime model as Go {html.escape(self.model_go_version)}, on the page model "
                f"(Linux {html.escape(_model_kernel(self.kernel_release))} profile, no swap).</p>{reason}"
                f'<table class="kernel-vs-model" style="font-size:0.85em"><thead>{head}</thead>'
                f"<tbody>{''.join(body)}</tbody></table>"
                f"<p>OOM kills: {html.escape(ooms)}.</p>"
                f'<p class="kernel-cell-verdict" style="color:{colour}">{html.escape(verdict)}</p></div>')

    def summary(self) -> str:
        lines = [f"Real Go program: {self.source}." + (f" Not run live here: {self.reason}" if self.reason else "")]
        for n in self.real:
            lines.append(n)
            for label, phase, key in self.ROWS:
                r = self.real[n].get(phase, {}).get(key)
                m = self.model[n].get(phase, {}).get(key)
                if r is not None or m is not None:
                    lines.append(f"  {label}: real {'-' if r is None else self._fmt(key, r)}, "
                                 f"model {'-' if m is None else self._fmt(key, m)}")
        lines.append("agrees" if not self.mismatches else "differs: " + "; ".join(self.mismatches))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        return self.summary()


def _recorded_dir(directory: Optional[Path]) -> Path:
    from models.viz.kernel_cell import RECORDED_DIR
    return Path(directory or RECORDED_DIR)


def run_go_probes() -> dict:
    """Run the real Go program once per setting of :data:`GOPROBE_RUNS` (a few seconds in all)."""
    from models.realkernel.goprobe import run_probe
    runs = {}
    for name, cfg in GOPROBE_RUNS.items():
        if "memory_limit" in cfg:
            from models.realkernel.cgroup import cgroup_support
            ok, why = cgroup_support()
            if not ok:
                continue
        r = run_probe(heap=RELEASE_HEAP, liveness=0.25, release="freeosmemory", **cfg)
        runs[name] = dict(config=r.config, samples=r.samples, oom_kills=r.oom_kills)
    return runs


def record_go_probes(directory: Optional[Path] = None) -> Path:
    """Run the probes now and write ``book/recorded/ch06-goprobe.json``."""
    from models.realkernel.engine import kernel_release
    from models.realkernel.goprobe import go_support
    ok, version = go_support()
    if not ok:
        raise ModelInputError(f"cannot record the Go probe: {version}")
    return _write_recording(run_go_probes(), version, kernel_release(), directory)


def _write_recording(runs: dict, version: str, release: str, directory: Optional[Path]) -> Path:
    from models.viz.kernel_cell import _now, _thp_setting
    path = _recorded_dir(directory) / f"{GOPROBE_RECORD}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(path, {"format": 1, "record_id": GOPROBE_RECORD, "recorded_at": _now(),
                                    "kernel_release": release, "machine": platform.machine(),
                                    "thp": _thp_setting(), "go_version": version, "runs": runs})


def go_probe_vs_model(*, force_recorded: Optional[bool] = None, directory: Optional[Path] = None,
                      runner=None) -> GoProbeVsModel:
    """The real Go program under each ``madvdontneed`` setting beside the Go model.

    Live when Go and Linux are here (``go_support()``); otherwise (or with
    ``BOOK_FORCE_RECORDED=1``) the recording in ``book/recorded/ch06-goprobe.json``, labelled with
    its date, kernel and Go version.  ``BOOK_RECORD=1`` rewrites the recording after a live run.
    ``runner`` replaces :func:`run_go_probes` (tests).
    """
    from models.viz.kernel_cell import RECORD_ENV, _now, forced_recording_reason
    reason = forced_recording_reason(force_recorded)
    if not reason and not sys.platform.startswith("linux"):
        reason = f"this is not Linux ({sys.platform})"
    if not reason:
        from models.realkernel.goprobe import GoProbeError, go_support
        ok, version = go_support()
        if not ok:
            reason = version
        else:
            try:
                runs = (runner or run_go_probes)()
            except (GoProbeError, OSError, ModelInputError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                from models.realkernel.engine import kernel_release
                release = kernel_release()
                if os.environ.get(RECORD_ENV, "") == "1":
                    _write_recording(runs, version, release, directory)
                when = (f"measured on {_now()[:10]}, Linux {release}, {version}, this book's build machine, "
                        f"while this page was built" if os.environ.get(STATIC_BUILD_ENV)
                        else f"measured live now on this machine, Linux {release}, {version}")
                return _assemble(runs, True, when, version, release, "")
    path = _recorded_dir(directory) / f"{GOPROBE_RECORD}.json"
    if not path.exists():
        raise ModelInputError(f"no recorded Go probe run {path}; record it on Linux with Go installed: "
                              f"`python -m models.viz.go_release record`")
    rec = json.loads(path.read_text())
    source = (f"recorded on {rec['recorded_at'][:10]}, Linux {rec['kernel_release']} ({rec['machine']}), "
              f"{rec['go_version']}, this book's build machine")
    return _assemble(rec["runs"], False, source, rec["go_version"], rec["kernel_release"], reason)


def _model_kernel(release: str) -> str:
    """The page model's profile for a kernel release string; 6.18 when outside the model's range."""
    from models.kernel.profile import profile_for
    try:
        return profile_for(release).version
    except ModelInputError:
        return "6.18"


def _assemble(runs: dict, live: bool, source: str, go_version: str, release: str, reason: str) -> GoProbeVsModel:
    model_go = _model_go_version(go_version)
    real = {n: _probe_numbers(r) for n, r in runs.items()}
    model = {n: _model_numbers(model_go, _model_kernel(release), GOPROBE_RUNS[n]) for n in runs}
    result = GoProbeVsModel(live=live, source=source, go_version=go_version, model_go_version=model_go,
                            kernel_release=release, real=real, model=model,
                            oom_kills={n: int(r.get("oom_kills", 0)) for n, r in runs.items()}, reason=reason)
    result.mismatches = result.check()
    return result


def main(argv: list[str]) -> int:
    if argv[:1] == ["record"]:
        print(f"wrote {record_go_probes()}")
        print(go_probe_vs_model(force_recorded=True).summary())
        return 0
    print("usage: python -m models.viz.go_release record", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


# ------------------------------------------------------------------ a seeded Go release quiz

@dataclass(frozen=True)
class GoQuiz:
    """One "predict the Go release experiment" problem, drawn from a seed."""
    seed: int
    go_version: str
    kernel: str
    madvdontneed: str
    liveness: float
    pressure: int


def go_quiz(seed: int) -> GoQuiz:
    """The problem for ``seed`` (an int >= 0): Go version, kernel, GODEBUG, liveness and pressure
    drawn from the choices of :data:`release_tradeoff`, so every answer is one of its figures."""
    import random
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ModelInputError(f"seed must be a whole number >= 0, got {seed!r}")
    rng = random.Random(f"ch6-go-release-{seed}")
    go_version = rng.choice(RELEASE_GO)
    madvdontneed = "default" if go_version == "1.11" else rng.choice(("default", "0", "1"))
    return GoQuiz(seed, go_version, rng.choice(list(KERNELS)), madvdontneed,
                  rng.choice(RELEASE_LIVENESS), rng.choice(tuple(RELEASE_PRESSURES.values())))


def go_quiz_text(q: GoQuiz) -> str:
    import textwrap
    env = "no GODEBUG setting" if q.madvdontneed == "default" else f"GODEBUG=madvdontneed={q.madvdontneed}"
    limit = ("no memory limit" if not q.pressure else
             f"a 320 MiB memory cgroup limit; after the release the program writes a second, "
             f"{q.pressure} MiB allocation outside the Go heap and unmaps it before re-allocating")
    heap_mib = int(RELEASE_HEAP[:-3])
    paragraphs = [
        f"Go release experiment #{q.seed}: Go {q.go_version}, {env}, {q.kernel}, {limit}.",
        f"The program builds a {heap_mib} MiB heap of 8 KiB objects, keeps {q.liveness:.0%} of them live, "
        f"calls runtime.GC() and debug.FreeOSMemory(), then allocates the "
        f"{heap_mib * (1 - q.liveness):.0f} MiB it dropped all over again. The runtime's own memory adds "
        f"about 18 MiB to RSS (274 MiB before the release).",
        "Predict: (1) which advice the release really uses; (2) RSS, LazyFree and HeapReleased right "
        "after FreeOSMemory (MiB); (3) how much lazily freed memory the kernel reclaims, if any; "
        "(4) the page faults of the re-allocation."]
    return "\n".join(textwrap.fill(p, 70, break_on_hyphens=False) for p in paragraphs)


def go_quiz_answer(q: GoQuiz) -> str:
    """The Go model's answer to :func:`go_quiz_text`, reasoning in the order the chapter teaches."""
    run = release_model(q.madvdontneed, q.liveness, q.pressure, q.kernel, q.go_version)
    kv, swap = _kernel(q.kernel)
    tried = policy_for(q.go_version, effective_godebug(q.go_version, q.madvdontneed)).advice
    if q.go_version == "1.11":
        why = "Go 1.11 knows only MADV_DONTNEED."
    elif q.madvdontneed != "default":
        why = f"GODEBUG=madvdontneed={q.madvdontneed} selects {tried}."
    else:
        why = f"Go {q.go_version} defaults to {tried}."
    if run.fell_back:
        why += (" Linux 4.4 has no MADV_FREE: the call fails with EINVAL and the runtime switches to "
                "MADV_DONTNEED for good.")
    elif tried == MADV_FREE and kv == "4.9" and not swap:
        why += " Linux 4.9 without swap passes MADV_FREE to MADV_DONTNEED: the pages are freed in the call."
    elif tried == MADV_FREE and kv == "4.9":
        why += " Linux 4.9 with swap frees lazily, but its smaps has no LazyFree field (it reads 0)."
    elif tried == MADV_FREE:
        why += " Linux 4.12+ frees lazily: RSS stays and LazyFree shows the released memory."
    ph = dict(zip(run.phases, zip(run.rss, run.lazyfree, run.released)))
    rss, lazy, rel = ph["release"]
    lines = [f"(1) {why}",
             f"(2) RSS {rss:.0f} MiB (it was {ph['gc'][0]:.0f} MiB after the GC), LazyFree {lazy:.0f} MiB, "
             f"HeapReleased {rel:.0f} MiB."]
    if not q.pressure:
        lines.append("(3) No limit: nothing is reclaimed.")
    else:
        over = rss + q.pressure - 320
        if over <= 0:
            lines.append(f"(3) {rss:.0f} + {q.pressure} MiB fits under the 320 MiB limit: nothing is reclaimed.")
        elif run.oom:
            lines.append(f"(3) {rss:.0f} + {q.pressure} MiB is {over:.0f} MiB over the 320 MiB limit, and only "
                         f"{lazy:.0f} MiB is lazily freed: the kernel cannot make room, and the program is "
                         f"OOM-killed.")
        else:
            lines.append(f"(3) {rss:.0f} + {q.pressure} MiB is {over:.0f} MiB over the 320 MiB limit: the "
                         f"kernel reclaims {run.reclaimed:.0f} MiB of the lazily freed pages, just enough.")
    if run.oom:
        lines.append("(4) The re-allocation never runs: the program was killed.")
    else:
        lines.append(f"(4) {run.realloc_faults:,} page faults: one per 4 KiB page that is no longer resident "
                     f"(estimated {run.realloc_ms:.0f} ms with the book's cost model).")
    import textwrap
    return "\n".join(textwrap.fill(line, 70, subsequent_indent="    ", break_on_hyphens=False) for line in lines)
