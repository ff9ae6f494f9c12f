"""Chapters 0 and 7: the Go 1.12 symptom, Go releases after it, and one dashboard for all numbers.

Every number here comes from the Go runtime model (:mod:`models.goruntime`, which drives the
kernel page model :mod:`models.kernel`); this module only derives the metrics a dashboard
shows from a model timeline and draws them.  The derived metrics and where they come from:

* ``RSS`` -- the kernel model's resident pages of the Go program (heap arena + runtime
  metadata), what ``Rss`` in ``smaps_rollup`` reports (FACTS 4, 25);
* ``LazyFree`` -- its lazily freed pages (FACTS 23; no such field before Linux 4.12);
* ``cgroup usage`` -- resident anonymous pages charged to the cgroup, lazily freed ones included
  (FACTS 26): RSS plus a co-tenant's pages where there is one.  The model has no page cache and
  no kernel memory, so a real container's usage is higher by those;
* ``working set`` -- usage minus inactive file pages, as cAdvisor computes it (FACTS 27, an
  inference); in the model the only inactive file pages are the lazily freed ones (FACTS 18);
* ``VSZ`` -- the sizes of the model's mappings (the heap arena reserved up front and the runtime
  metadata region).  ``probes/goheap`` does not report ``VmSize``; the real Go runtime reserves
  far more address space than the model's two mappings (FACTS 5), see :func:`model_vsz_bytes`.

The explorables: :data:`symptom` and :data:`five_metrics` (chapter 0), :data:`go_versions` (the
release timeline) and :data:`dashboard` (chapter 7).  :func:`scavenger_probe_vs_model` runs the
real Go program beside the model (recorded fallback in ``book/recorded/``);
:func:`go_quiz` is the seeded "predict the dashboard" exercise.
"""
from __future__ import annotations

import datetime as _dt
import functools
import html
import json
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from models.errors import ModelInputError
from models.scenario.parse import parse_scenario
from models.units import PAGE_SIZE
from models.viz import COLORS, STATIC_BUILD_ENV
from models.viz.explorable import Dropdown, Explorable, Slider, Toggle

MiB = 1 << 20
PAGES_PER_MIB = MiB // PAGE_SIZE
GREY = "#777777"
VERSION_COLORS = {"1.11": "#0072B2", "1.12": "#D55E00", "1.13": "#E69F00", "1.16": "#009E73",
                  "1.19": "#CC79A7"}
#: Go releases on the timeline control, with their release dates (FACTS timeline).
RELEASES = {"1.11": "2018-08-24", "1.12": "2019-02-25", "1.13": "2019-09-03", "1.16": "2021-02-16",
            "1.19": "2022-08-02"}


def _mib(pages) -> np.ndarray:
    return np.asarray(pages, dtype=float) / PAGES_PER_MIB


# ============================================================================ chapter 0
#: The chapter-0 service: 50 MiB live at rest, a 60 s burst to 200 MiB live at 5 min, GOGC=100
#: (heap goal 2 x live, so the heap reaches about 400 MiB), 45 min sampled every 5 s, in a
#: 512 MiB memory budget shared with a neighbour that may need 256 MiB at 30 min.
SYMPTOM = dict(heap=400 * MiB, liveness=0.125, alloc_rate="64MiB", duration=2700.0, spike_start=300.0,
               spike_seconds=60.0, sample_interval=5.0, memory_limit=512 * MiB)
NEIGHBOUR_BYTES = 256 * MiB
NEIGHBOUR_AT = 1800.0
SYMPTOM_KERNELS = {"Linux 6.18 (no swap)": "6.18", "Linux 4.9 (no swap)": "4.9", "Linux 4.4": "4.4"}


@functools.lru_cache(maxsize=64)
def symptom_run(go_version: str, kernel: str = "6.18", neighbour: bool = False):
    """The chapter-0 service under one Go version (default GODEBUG): a model Timeline."""
    from models.goruntime import simulate_service
    return simulate_service(go_version=go_version, kernel_version=kernel, swap=False,
                            pressure=NEIGHBOUR_BYTES if neighbour else 0,
                            pressure_at=NEIGHBOUR_AT if neighbour else None, **SYMPTOM)


def _burst_band(fig, row=None, col=None, minutes=True):
    scale = 60.0 if minutes else 1.0
    kw = dict(row=row, col=col) if row else {}
    fig.add_vrect(x0=SYMPTOM["spike_start"] / scale,
                  x1=(SYMPTOM["spike_start"] + SYMPTOM["spike_seconds"]) / scale,
                  fillcolor="#BBBBBB", opacity=0.35, line_width=0, layer="below", **kw)


def symptom_summary(kernel: str = "6.18", neighbour: bool = False) -> dict:
    """Numbers the chapter quotes: peak and final RSS per version, when 1.11 drops, HeapInuse equality."""
    a, b = symptom_run("1.11", kernel, neighbour), symptom_run("1.12", kernel, neighbour)
    n = min(len(a), len(b))
    rss_a, rss_b = _mib(a.rss_pages), _mib(b.rss_pages)
    after = a.t > SYMPTOM["spike_start"] + SYMPTOM["spike_seconds"]
    drop = np.flatnonzero(after & (rss_a < 0.5 * rss_a.max()))
    return {"peak_rss_mib": (float(rss_a.max()), float(rss_b.max())),
            "final_rss_mib": (float(rss_a[-1]), float(rss_b[-1])),
            "go111_drop_min": float(a.t[drop[0]] / 60) if drop.size else None,
            "heap_inuse_identical": bool(np.array_equal(a.heap_inuse_pages[:n], b.heap_inuse_pages[:n])
                                         and len(a) == len(b)),
            "oom": (bool(a.oom.any()), bool(b.oom.any())),
            "lazyfree_final_mib": (float(_mib(a.lazyfree_pages)[-1]), float(_mib(b.lazyfree_pages)[-1]))}


def symptom_figure(kernel: str = "6.18", neighbour: bool = False) -> go.Figure:
    """RSS over time of the same service under Go 1.11 and Go 1.12, with the (identical) heap in use."""
    runs = {v: symptom_run(v, kernel, neighbour) for v in ("1.11", "1.12")}
    s = symptom_summary(kernel, neighbour)
    if not s["heap_inuse_identical"]:
        raise AssertionError("Go 1.11 and 1.12 must have the same HeapInuse in this workload")
    fig = go.Figure()
    for v, tl in runs.items():
        fig.add_trace(go.Scatter(x=tl.t / 60, y=_mib(tl.rss_pages), name=f"RSS, Go {v}", mode="lines",
                                 line=dict(color=VERSION_COLORS[v], width=2.5),
                                 hovertemplate=f"Go {v}: %{{y:.0f}} MiB at %{{x:.1f}} min<extra></extra>"))
    tl = runs["1.11"]
    fig.add_trace(go.Scatter(x=tl.t / 60, y=_mib(tl.heap_inuse_pages), name="heap in use (HeapInuse), both versions",
                             mode="lines", line=dict(color="#999999", width=1),
                             hovertemplate="HeapInuse: %{y:.0f} MiB<extra></extra>"))
    t = runs["1.11"].t
    if neighbour:
        # What the neighbour asks for (it is not part of the Go program's RSS).
        fig.add_trace(go.Scatter(x=t / 60, y=np.where(t >= NEIGHBOUR_AT, NEIGHBOUR_BYTES / MiB, 0.0),
                                 name="neighbour's memory (not in RSS)", mode="lines",
                                 line=dict(color="#000000", width=1.5, dash="dot"),
                                 hovertemplate="neighbour: %{y:.0f} MiB<extra></extra>"))
    _burst_band(fig)
    fig.add_annotation(x=(SYMPTOM["spike_start"] + 30) / 60, y=440, text="burst", showarrow=False,
                       font=dict(size=11, color=GREY))
    if neighbour:
        fig.add_vline(x=NEIGHBOUR_AT / 60, line=dict(color="#000000", dash="dot", width=1.5))
        fig.add_annotation(x=NEIGHBOUR_AT / 60, y=440, text="neighbour needs 256 MiB", showarrow=False,
                           xanchor="left", xshift=4, font=dict(size=11))
    fig.update_xaxes(title_text="time (minutes)", range=[0, 45], dtick=5)
    fig.update_yaxes(title_text="memory (MiB)", range=[0, 460])
    fig.update_layout(height=470, margin=dict(t=40, b=60, l=60, r=20),
                      legend=dict(orientation="h", y=-0.16, x=0, yanchor="top"),
                      title=dict(text="The same service, Go 1.11 vs Go 1.12", font_size=14))
    return fig


def describe_symptom(kernel: str = "6.18", neighbour: bool = False) -> str:
    s = symptom_summary(kernel, neighbour)
    drop = (f"Go 1.11 falls back to {s['final_rss_mib'][0]:.0f} MiB at {s['go111_drop_min']:.1f} min"
            if s["go111_drop_min"] is not None else "Go 1.11 stays high")
    return (f"Linux {kernel}{', neighbour needs 256 MiB at 30 min' if neighbour else ''}: both reach "
            f"{s['peak_rss_mib'][0]:.0f} MiB of RSS in the burst; {drop}; Go 1.12 ends at "
            f"{s['final_rss_mib'][1]:.0f} MiB (LazyFree {s['lazyfree_final_mib'][1]:.0f} MiB). "
            f"The heap in use is identical under both versions.")


symptom = Explorable(symptom_figure, title="The symptom: RSS after a burst, Go 1.11 vs 1.12",
                     describe=describe_symptom,
                     kernel=Dropdown(SYMPTOM_KERNELS, label="kernel"),
                     neighbour=Dropdown({"none": False, "needs 256 MiB at 30 min": True}, label="neighbour"))


#: The metrics of the chapter-0 dashboard, shown label -> key.
METRICS = {"RSS": "rss", "container memory usage": "usage", "container working set": "working_set",
           "Go: HeapSys - HeapReleased": "heap_retained", "LazyFree": "lazyfree"}


def metrics_of(tl, co_tenant_pages=None) -> dict:
    """Derived dashboard series (MiB) from a model Timeline; see the module docstring for definitions."""
    rss = _mib(tl.rss_pages)
    lazy = _mib(tl.lazyfree_pages)
    usage = rss + (_mib(tl.pressure_rss_pages) if co_tenant_pages is None else _mib(co_tenant_pages))
    return {"rss": rss, "lazyfree": lazy, "rss_minus_lazyfree": rss - lazy, "usage": usage,
            "working_set": usage - lazy,
            "heap_retained": _mib(tl.heap_sys_pages - tl.heap_released_pages),
            "heap_inuse": _mib(tl.heap_inuse_pages)}


def metrics_figure(go_version: str = "1.12", metric: str = "rss") -> go.Figure:
    tl = symptom_run(go_version)
    m = metrics_of(tl)
    label = [k for k, v in METRICS.items() if v == metric][0]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=tl.t / 60, y=m[metric], name=f"{label}, Go {go_version}", mode="lines",
                             line=dict(color=VERSION_COLORS[go_version], width=2.5),
                             hovertemplate=f"{label}: %{{y:.0f}} MiB at %{{x:.1f}} min<extra></extra>"))
    fig.add_trace(go.Scatter(x=tl.t / 60, y=m["heap_inuse"], name="heap in use (HeapInuse)", mode="lines",
                             line=dict(color="#999999", width=1),
                             hovertemplate="HeapInuse: %{y:.0f} MiB<extra></extra>"))
    _burst_band(fig)
    fig.update_xaxes(title_text="time (minutes)", range=[0, 45], dtick=5)
    fig.update_yaxes(title_text="memory (MiB)", range=[0, 460])
    fig.update_layout(height=430, margin=dict(t=40, b=60, l=60, r=20),
                      legend=dict(orientation="h", y=-0.18, x=0, yanchor="top"),
                      title=dict(text=f"Go {go_version}: {label}", font_size=14))
    fig.add_annotation(text="model: no page cache or kernel memory in 'usage'", xref="paper", yref="paper",
                       x=1, y=0.98, xanchor="right", showarrow=False, font=dict(size=10, color=GREY))
    return fig


def describe_metrics(go_version: str = "1.12", metric: str = "rss") -> str:
    tl = symptom_run(go_version)
    m = metrics_of(tl)[metric]
    label = [k for k, v in METRICS.items() if v == metric][0]
    return (f"Go {go_version}, {label}: {m[0]:.0f} MiB at the start, {m.max():.0f} MiB at most, "
            f"{m[-1]:.0f} MiB after 45 minutes.")


five_metrics = Explorable(metrics_figure, title="One service, five metrics", describe=describe_metrics,
                          go_version=Dropdown({"Go 1.11": "1.11", "Go 1.12": "1.12", "Go 1.16": "1.16"},
                                              label="Go version", default="1.12"),
                          metric=Dropdown(METRICS, label="metric"))

#: Chapter 0's first kernel experiment: give two equal regions back, one each way.
GIVE_BACK = parse_scenario({
    "name": "ch00-give-back",
    "description": "Write two 64 MiB regions; give one back with MADV_DONTNEED, the other with MADV_FREE.",
    "steps": [
        {"op": "mmap", "region": "a", "length": "64MiB"},
        {"op": "mmap", "region": "b", "length": "64MiB"},
        {"op": "touch", "region": "a", "offset": 0, "length": "64MiB", "access": "write"},
        {"op": "touch", "region": "b", "offset": 0, "length": "64MiB", "access": "write"},
        {"op": "madvise", "region": "a", "offset": 0, "length": "64MiB", "advice": "MADV_DONTNEED"},
        {"op": "madvise", "region": "b", "offset": 0, "length": "64MiB", "advice": "MADV_FREE"},
        {"op": "munmap", "region": "a"},
        {"op": "munmap", "region": "b"}]})


# ============================================================================ chapter 7: releases
#: The chapter-7 service: 64 MiB live, 32 MiB/s allocated, a 10 s spike of live heap to 256 MiB
#: at t = 60 s (GOGC=100: heap up to about 512 MiB), 600 s sampled every 3 s, in a 640 MiB budget
#: shared with a neighbour that may write and hold 256 MiB at t = 330 s.
SERVICE = dict(heap=512 * MiB, liveness=0.125, alloc_rate="32MiB", duration=600.0, spike_start=60.0,
               spike_seconds=10.0, sample_interval=3.0, memory_limit=640 * MiB)
SERVICE_NEIGHBOUR_AT = 330.0
GO_VERSIONS = (1.11, 1.12, 1.13, 1.16, 1.19)
VERSION_KERNELS = {"Linux 6.18, no swap": "6.18", "Linux 4.9, no swap": "4.9"}
GOMEMLIMITS = {"off": 0, "384 MiB": 384, "320 MiB": 320}
MADVDONTNEED = {"version default": "default", "madvdontneed=1": "1", "madvdontneed=0": "0"}


def _version(go_version) -> str:
    if isinstance(go_version, str):
        return go_version
    return f"{go_version:.2f}"


def effective_settings(go_version, madvdontneed: str = "default", gomemlimit: int = 0) -> tuple:
    """(version, godebug or None, gomemlimit MiB or 0, notes): settings a release does not have are dropped."""
    v = _version(go_version)
    minor = int(v.split(".")[1])
    notes = []
    godebug = None
    if madvdontneed not in MADVDONTNEED.values():
        raise ModelInputError(f"madvdontneed must be one of {list(MADVDONTNEED.values())}, got {madvdontneed!r}")
    if madvdontneed != "default":
        if minor < 12:
            notes.append("GODEBUG=madvdontneed does not exist before Go 1.12: ignored")
        else:
            godebug = f"madvdontneed={madvdontneed}"
    if gomemlimit:
        if minor < 19:
            notes.append("GOMEMLIMIT exists from Go 1.19: ignored")
            gomemlimit = 0
    return v, godebug, gomemlimit, tuple(notes)


@functools.lru_cache(maxsize=256)
def service_run(go_version: str, godebug: Optional[str], kernel: str, gomemlimit: int, neighbour: bool):
    from models.goruntime import simulate_service
    return simulate_service(go_version=go_version, godebug=godebug, kernel_version=kernel, swap=False,
                            gomemlimit=f"{gomemlimit}MiB" if gomemlimit else None,
                            pressure=NEIGHBOUR_BYTES if neighbour else 0,
                            pressure_at=SERVICE_NEIGHBOUR_AT if neighbour else None, **SERVICE)


def versions_summary(go_version=1.12, madvdontneed="default", kernel="6.18", gomemlimit=0,
                     neighbour=False) -> dict:
    v, godebug, limit, notes = effective_settings(go_version, madvdontneed, gomemlimit)
    tl = service_run(v, godebug, kernel, limit, bool(neighbour))
    rss, rel = _mib(tl.rss_pages), _mib(tl.heap_released_pages)
    spike_end = SERVICE["spike_start"] + SERVICE["spike_seconds"]
    after = tl.t > spike_end
    falls = np.flatnonzero(after & (rss < 0.5 * rss.max()))
    released = np.flatnonzero(after & (rel > 100))
    return {"version": v, "godebug": godebug, "gomemlimit": limit, "notes": notes,
            "advice": tl.meta["advice_used"], "peak_rss_mib": float(rss.max()),
            "final_rss_mib": float(rss[-1]), "final_lazyfree_mib": float(_mib(tl.lazyfree_pages)[-1]),
            "rss_falls_s": float(tl.t[falls[0]]) if falls.size else None,
            "released_s": float(tl.t[released[0]]) if released.size else None,
            "oom_s": float(tl.t[-1]) if tl.oom.any() else None, "gc_cycles": int(tl.gc_cycles[-1]),
            "duration": float(tl.t[-1])}


def versions_figure(go_version=1.12, madvdontneed: str = "default", kernel: str = "6.18",
                    gomemlimit: int = 0, neighbour: bool = False) -> go.Figure:
    """The release timeline (top) and the service's memory over 600 s under the chosen release (bottom)."""
    v, godebug, limit, _notes = effective_settings(go_version, madvdontneed, gomemlimit)
    tl = service_run(v, godebug, kernel, limit, bool(neighbour))
    s = versions_summary(go_version, madvdontneed, kernel, gomemlimit, neighbour)
    fig = make_subplots(rows=2, cols=1, row_heights=[0.16, 0.84], vertical_spacing=0.1)
    # -- the dated release timeline; the chosen release is the filled marker
    dates = [_dt.date.fromisoformat(d) for d in RELEASES.values()]
    years = [d.year + (d.timetuple().tm_yday - 1) / 365.25 for d in dates]
    fig.add_trace(go.Scatter(x=years, y=[0] * len(years), mode="lines+markers+text",
                             text=[f"Go {k}<br>{d:%b %Y}" for k, d in zip(RELEASES, dates)],
                             textposition="top center", textfont=dict(size=10),
                             marker=dict(size=9, color="white", line=dict(color=GREY, width=1.5)),
                             line=dict(color=GREY, width=1), hoverinfo="skip", showlegend=False), row=1, col=1)
    i = list(RELEASES).index(v)
    fig.add_trace(go.Scatter(x=[years[i]], y=[0], mode="markers", showlegend=False, hoverinfo="skip",
                             marker=dict(size=15, color=VERSION_COLORS[v])), row=1, col=1)
    fig.update_xaxes(range=[2018.3, 2023.0], showgrid=False, tickformat="d", dtick=1, row=1, col=1,
                     title_text="release date (year)", title_standoff=2)
    fig.update_yaxes(visible=False, range=[-0.6, 1.6], row=1, col=1)
    # -- the service
    t = tl.t
    m = metrics_of(tl)
    fig.add_trace(go.Scatter(x=t, y=m["rss_minus_lazyfree"], mode="lines", line=dict(color=COLORS["rss"], width=1,
                             dash="dash"), name="RSS - LazyFree", hovertemplate="RSS - LazyFree: %{y:.0f} MiB<extra></extra>"),
                  row=2, col=1)
    fig.add_trace(go.Scatter(x=t, y=m["rss"], mode="lines", line=dict(color=COLORS["rss"], width=2.5),
                             fill="tonexty", fillcolor="rgba(230,159,0,0.35)", name="RSS (shaded: LazyFree)",
                             hovertemplate="RSS: %{y:.0f} MiB<extra></extra>"), row=2, col=1)
    fig.add_trace(go.Scatter(x=t, y=_mib(tl.heap_released_pages), mode="lines", name="HeapReleased",
                             line=dict(color="#0072B2", width=2), hovertemplate="HeapReleased: %{y:.0f} MiB<extra></extra>"),
                  row=2, col=1)
    fig.add_trace(go.Scatter(x=t, y=_mib(tl.next_gc_pages * 1.0), mode="lines", name="heap goal",
                             line=dict(color="#000000", width=1, dash="dot"),
                             hovertemplate="heap goal: %{y:.0f} MiB<extra></extra>"), row=2, col=1)
    fig.add_trace(go.Scatter(x=t, y=m["heap_inuse"], mode="lines", name="heap in use",
                             line=dict(color=GREY, width=1), hovertemplate="HeapInuse: %{y:.0f} MiB<extra></extra>"),
                  row=2, col=1)
    if neighbour:
        fig.add_trace(go.Scatter(x=t, y=np.where(t >= SERVICE_NEIGHBOUR_AT, NEIGHBOUR_BYTES / MiB, 0.0), mode="lines",
                                 name="neighbour's memory", line=dict(color="#000000", width=1.5, dash="dot"),
                                 hovertemplate="neighbour: %{y:.0f} MiB<extra></extra>"), row=2, col=1)
    fig.add_vrect(x0=SERVICE["spike_start"], x1=SERVICE["spike_start"] + SERVICE["spike_seconds"],
                  fillcolor="#BBBBBB", opacity=0.35, line_width=0, layer="below", row=2, col=1)
    if neighbour:
        fig.add_vline(x=SERVICE_NEIGHBOUR_AT, line=dict(color="#000000", dash="dot", width=1.2), row=2, col=1)
    if limit:
        fig.add_hline(y=limit, line=dict(color="#CC79A7", width=1, dash="dashdot"), row=2, col=1)
    if s["oom_s"] is not None:
        marker = f"OOM kill at {s['oom_s']:.0f} s (neighbour's 256 MiB did not fit)"
    elif s["rss_falls_s"] is not None:
        marker = f"RSS falls below half its peak at {s['rss_falls_s']:.0f} s"
    else:
        marker = f"RSS stays above half its peak for {SERVICE['duration']:.0f} s"
    fig.add_annotation(text=f"releases with {s['advice']}. {marker}", xref="x2 domain", yref="y2 domain",
                       x=0.99, y=0.98, xanchor="right", showarrow=False, font=dict(size=12),
                       bgcolor="rgba(255,255,255,0.8)")
    fig.update_xaxes(title_text="time (s)", range=[0, 600], row=2, col=1)
    fig.update_yaxes(title_text="memory (MiB)", range=[0, 600], row=2, col=1)
    fig.update_layout(height=560, margin=dict(t=30, b=50, l=60, r=20), legend=dict(orientation="h", y=-0.14, x=0))
    return fig


def describe_versions(go_version=1.12, madvdontneed="default", kernel="6.18", gomemlimit=0, neighbour=False) -> str:
    s = versions_summary(go_version, madvdontneed, kernel, gomemlimit, neighbour)
    parts = [f"Go {s['version']}" + (f" with GODEBUG={s['godebug']}" if s["godebug"] else "")
             + (f" and GOMEMLIMIT={s['gomemlimit']}MiB" if s["gomemlimit"] else "")
             + f" on Linux {kernel}{' with a neighbour at 330 s' if neighbour else ''}: releases with {s['advice']}",
             f"peak RSS {s['peak_rss_mib']:.0f} MiB"]
    parts.append(f"HeapReleased passes 100 MiB at {s['released_s']:.0f} s" if s["released_s"] is not None
                 else "HeapReleased stays under 100 MiB")
    if s["oom_s"] is not None:
        parts.append(f"OOM kill at {s['oom_s']:.0f} s")
    else:
        parts.append(f"RSS falls below half its peak at {s['rss_falls_s']:.0f} s" if s["rss_falls_s"] is not None
                     else "RSS stays above half its peak")
        parts.append(f"at 600 s RSS {s['final_rss_mib']:.0f} MiB, LazyFree {s['final_lazyfree_mib']:.0f} MiB")
    return "; ".join(parts + list(s["notes"])) + "."


go_versions = Explorable(versions_figure, title="Go releases after 1.12: the same spiky service",
                         describe=describe_versions,
                         go_version=Slider(GO_VERSIONS, label="Go release (timeline)", default=1.12),
                         madvdontneed=Dropdown(MADVDONTNEED, label="GODEBUG"),
                         kernel=Dropdown(VERSION_KERNELS, label="kernel"),
                         gomemlimit=Dropdown(GOMEMLIMITS, label="GOMEMLIMIT (Go 1.19+)"),
                         neighbour=Toggle(label="neighbour needs 256 MiB at 330 s"))


# ============================================================================ chapter 7: dashboard
#: The release experiment of chapter 6 (probes/goheap, FACTS E10): 256 MiB heap of 8 KiB objects,
#: 25 % kept, GC, FreeOSMemory; "pressure": a 320 MiB cgroup and a 160 MiB second allocation.
DASH = dict(go_version="1.19", heap="256MiB", liveness=0.25, release="freeosmemory", swap=False)
DASH_LIMIT = 320 * MiB
DASH_PRESSURE = 160 * MiB
PHASES = ("allocate", "gc", "release", "pressure", "reallocate")


@functools.lru_cache(maxsize=32)
def dashboard_run(madvdontneed: str, kernel: str, pressure: bool):
    from models.goruntime import simulate_release
    return simulate_release(kernel_version=kernel, godebug=f"madvdontneed={madvdontneed}",
                            memory_limit=DASH_LIMIT if pressure else None,
                            pressure=DASH_PRESSURE if pressure else 0, **DASH)


@functools.lru_cache(maxsize=8)
def model_vsz_bytes(heap: str = "256MiB") -> int:
    """VSZ of the model's Go program: the lengths of its mappings (heap arena + runtime metadata).

    Built the way :func:`models.goruntime.simulate_release` builds its runtime (same capacity), so
    the mappings are the ones that experiment uses.  The real runtime reserves much more address
    space (arenas, metadata, per-P caches; FACTS 5), so this is a lower bound of a real VmSize.
    """
    from models.goruntime.cost import DEFAULT_COST
    from models.goruntime.heap import DEFAULT_FOOTPRINT, GO_PAGE
    from models.goruntime.runtime import GoRuntime
    from models.goruntime.versions import policy_for
    from models.kernel import AddressSpace
    from models.units import parse_size
    heap_b = parse_size(heap, name="heap")
    baseline = -(-DEFAULT_FOOTPRINT.heap_baseline_bytes // GO_PAGE)
    space = AddressSpace(kernel_version="6.18", swap=False)
    GoRuntime(space, policy_for("1.19"), capacity_bytes=heap_b + (baseline + 1024) * GO_PAGE, gogc=100,
              gc_roots=0, gomemlimit=None, cost=DEFAULT_COST, footprint=DEFAULT_FOOTPRINT)
    return int(sum(space.regions.values())) * PAGE_SIZE


def dashboard_values(phase: str = "release", madvdontneed: str = "0", kernel: str = "6.18",
                     pressure: bool = False) -> dict:
    """Every dashboard number (MiB) at the end of ``phase``."""
    if phase not in PHASES:
        raise ModelInputError(f"phase must be one of {PHASES}, got {phase!r}")
    tl = dashboard_run(madvdontneed, kernel, bool(pressure))
    steps = list(tl.step)
    if phase == "pressure":
        i = steps.index("pressure") if "pressure" in steps else int(tl.where("release")[-1])
    elif phase == "release":
        i = steps.index("freeosmemory")
    else:
        i = int(tl.where(phase)[-1])
    row = tl.sample(i)
    rss, lazy = row["rss_pages"] / PAGES_PER_MIB, row["lazyfree_pages"] / PAGES_PER_MIB
    usage = rss + row["pressure_rss_pages"] / PAGES_PER_MIB
    idle, released = row["heap_idle_pages"] / PAGES_PER_MIB, row["heap_released_pages"] / PAGES_PER_MIB
    reallocated = phase == "reallocate"
    return {"VSZ": model_vsz_bytes(DASH["heap"]) / MiB, "RSS": rss, "LazyFree": lazy, "RSS - LazyFree": rss - lazy,
            "cgroup usage": usage, "working set": usage - lazy,
            "HeapSys": row["heap_sys_pages"] / PAGES_PER_MIB, "HeapInuse": row["heap_inuse_pages"] / PAGES_PER_MIB,
            "HeapIdle": idle, "HeapReleased": released, "HeapIdle - HeapReleased": idle - released,
            "co-tenant": row["pressure_rss_pages"] / PAGES_PER_MIB,
            "faults": int(tl.faults[tl.where("reallocate")].sum()) if reallocated else int(row["faults"]),
            "reclaimed": float(tl.reclaimed_pages.sum() / PAGES_PER_MIB) if phase in ("pressure", "reallocate")
            else 0.0,
            "advice": row["advice"], "oom": bool(tl.oom.any())}


KERNEL_BARS = ("RSS", "LazyFree", "RSS - LazyFree")
CGROUP_BARS = ("cgroup usage", "working set")
GO_BARS = ("HeapSys", "HeapInuse", "HeapIdle", "HeapReleased", "HeapIdle - HeapReleased")


def dashboard_figure(phase: str = "release", madvdontneed: str = "0", kernel: str = "6.18",
                     pressure: bool = False) -> go.Figure:
    """Every number of one moment as a horizontal bar, grouped by source (address space, kernel,
    cgroup, Go runtime), on one MiB scale."""
    d = dashboard_values(phase, madvdontneed, kernel, pressure)
    no_field = not _kernel_has_lazyfree(kernel)
    groups = (("address space", ("VSZ",), (COLORS["vsz"],)),
              ("kernel, per process", KERNEL_BARS, (COLORS["rss"], COLORS["lazyfree"], "#8C2D04")),
              ("cgroup", CGROUP_BARS, ("#56B4E9", "#0072B2")),
              ("Go runtime (MemStats)", GO_BARS, ("#999999", "#555555", "#009E73", "#CC79A7", "#117733")))
    fig = go.Figure()
    for group, names, colors in groups:
        ys = [f"{n.replace(' - ', ' − ')}  <span style='color:#777'>({group})</span>" for n in names]
        xs = [d[n] for n in names]
        text = [("no LazyFree field before 4.12" if (n == "LazyFree" and no_field) else f"{x:.0f} MiB")
                for n, x in zip(names, xs)]
        fig.add_trace(go.Bar(y=ys, x=xs, orientation="h", marker_color=list(colors), text=text,
                             textposition="outside", cliponaxis=False, name=group,
                             hovertemplate="%{y}: %{x:.1f} MiB<extra></extra>"))
    facts = [f"advice used: {d['advice']}"]
    if pressure and phase in ("pressure", "reallocate"):
        facts.append(f"reclaimed under the 320 MiB limit: {d['reclaimed']:.0f} MiB")
    if pressure and phase == "pressure":
        facts.append(f"second allocation in the cgroup: {d['co-tenant']:.0f} MiB")
    if phase == "reallocate":
        facts.append(f"faults to re-allocate: {d['faults']:,}")
    if pressure and phase not in ("pressure", "reallocate"):
        facts.append("the 160 MiB second allocation comes at the 'pressure' phase")
    if not pressure and phase == "pressure":
        facts.append("no memory limit: nothing happens at this phase")
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_xaxes(title_text="memory (MiB)", range=[0, 420])
    fig.update_layout(height=500, margin=dict(t=70, b=115, l=10, r=20), showlegend=False, bargap=0.25,
                      title=dict(text=facts[0] + ("<br>" + "; ".join(facts[1:]) if facts[1:] else ""),
                                 font_size=13, x=0.01))
    fig.add_annotation(text="model: no page cache in 'cgroup usage'<br>VSZ: the model's two mappings "
                            "(a real Go process reserves more)", xref="paper", yref="paper", x=1, y=-0.3,
                       showarrow=False, xanchor="right", align="right", font=dict(size=10, color=GREY))
    return fig


def describe_dashboard(phase="release", madvdontneed="0", kernel="6.18", pressure=False) -> str:
    d = dashboard_values(phase, madvdontneed, kernel, pressure)
    return (f"After '{phase}' (madvdontneed={madvdontneed}, Linux {kernel}"
            f"{', 320 MiB cgroup limit' if pressure else ''}): RSS {d['RSS']:.0f}, LazyFree {d['LazyFree']:.0f}, "
            f"RSS - LazyFree {d['RSS - LazyFree']:.0f}, cgroup usage {d['cgroup usage']:.0f}, "
            f"working set {d['working set']:.0f}, HeapSys {d['HeapSys']:.0f}, HeapInuse {d['HeapInuse']:.0f}, "
            f"HeapIdle {d['HeapIdle']:.0f}, HeapReleased {d['HeapReleased']:.0f} MiB; VSZ {d['VSZ']:.0f} MiB.")


dashboard = Explorable(dashboard_figure, title="One Go program, every number", describe=describe_dashboard,
                       phase=Dropdown({p: p for p in PHASES}, label="phase", default="release"),
                       madvdontneed=Dropdown({"madvdontneed=0 (MADV_FREE)": "0", "madvdontneed=1 (MADV_DONTNEED)": "1"},
                                             label="GODEBUG"),
                       kernel=Dropdown({"Linux 6.18, no swap": "6.18", "Linux 4.9, no swap": "4.9"}, label="kernel"),
                       pressure=Dropdown({"none": False, "320 MiB limit, 160 MiB second allocation": True},
                                         label="memory pressure"))

#: Chapter 7's kernel cell: the one column that tracks live memory at every step.
RSS_MINUS_LAZYFREE = parse_scenario({
    "name": "ch07-rss-minus-lazyfree",
    "description": "Free 3/4 of a heap lazily, rewrite part of it, then drop the rest with MADV_DONTNEED.",
    "steps": [
        {"op": "mmap", "region": "heap", "length": "128MiB"},
        {"op": "touch", "region": "heap", "offset": 0, "length": "128MiB", "access": "write"},
        {"op": "madvise", "region": "heap", "offset": "32MiB", "length": "96MiB", "advice": "MADV_FREE"},
        {"op": "touch", "region": "heap", "offset": "32MiB", "length": "32MiB", "access": "write"},
        {"op": "madvise", "region": "heap", "offset": "64MiB", "length": "64MiB", "advice": "MADV_DONTNEED"},
        {"op": "munmap", "region": "heap"}]})


def live_column_html(cell) -> str:
    """RSS, LazyFree and RSS - LazyFree per step (pages), kernel and model, from a KernelVsModel."""
    from models.viz.pagemap import describe_step
    head = ("<tr><th>step</th><th>what</th><th>RSS<br>kernel / model</th><th>LazyFree<br>kernel / model</th>"
            "<th>RSS − LazyFree<br>kernel / model</th></tr>")
    rows = []
    for i, step in enumerate(cell.scenario.steps):
        k, m = cell.kernel[i], cell.model[i]

        def trio(r):
            lazy = r.lazyfree_pages or 0
            return r.rss_pages, lazy, r.rss_pages - lazy
        kk, mm = trio(k), trio(m)
        cells = "".join(f"<td>{a:,} / {b:,}</td>" for a, b in zip(kk, mm))
        rows.append(f"<tr><td>{i}</td><td>{html.escape(describe_step(step))}</td>{cells}</tr>")
    return (f'<table class="live-column" style="font-size:0.85em"><thead>{head}</thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


class LiveColumn:
    """Displays a KernelVsModel with the derived RSS - LazyFree column."""

    def __init__(self, cell):
        self.cell = cell

    def _ipython_display_(self):
        from IPython.display import HTML, display
        display(HTML(self.cell.html()))
        display(HTML("<p><strong>The derived column:</strong></p>" + live_column_html(self.cell)))

    def __repr__(self):
        return self.cell.summary()


def rss_minus_lazyfree_cell(record_id: str = "ch07-rss-minus-lazyfree", **kwargs) -> LiveColumn:
    from models.viz.kernel_cell import kernel_vs_model
    return LiveColumn(kernel_vs_model(RSS_MINUS_LAZYFREE, record_id, **kwargs))


# ============================================================================ chapter 7: real Go probe
PROBE_ARGS = dict(heap="256MiB", liveness=0.25, release="scavenger", wait=15.0, settle=True)
RECORDED_DIR = Path(__file__).resolve().parents[2] / "book" / "recorded"
#: Tolerance of the identity check: max(32 pages, 5 % of the HeapReleased change) (FACTS E9).
IDENTITY_MIN_PAGES = 32
IDENTITY_RELATIVE = 0.05


def _go_minor_version(text: str) -> Optional[str]:
    m = re.search(r"go1\.(\d+)", text or "")
    return f"1.{m.group(1)}" if m else None


def _kernel_model_version(release: str) -> str:
    m = re.match(r"(\d+)\.(\d+)", release or "")
    return f"{m.group(1)}.{m.group(2)}" if m else "6.18"


def identity_check(samples: list[dict], setting: int) -> dict:
    """Does the kernel's change match the runtime's?  From the GC sample to the last release sample.

    madvdontneed=1: the fall in RSS matches the rise in HeapReleased; madvdontneed=0 (on 4.12+):
    the rise in LazyFree does.  In both, RSS - LazyFree falls by it.  Bytes in, pages out.
    """
    gc = [s for s in samples if s["phase"] == "gc"][-1]
    rel = [s for s in samples if s["phase"] == "release"][-1]
    d_released = (rel["heap_released"] - gc["heap_released"]) / PAGE_SIZE
    d_rss = (gc["rss_bytes"] - rel["rss_bytes"]) / PAGE_SIZE
    d_lazy = (rel["lazyfree_bytes"] - gc["lazyfree_bytes"]) / PAGE_SIZE
    d_held = d_rss + d_lazy
    tol = max(IDENTITY_MIN_PAGES, IDENTITY_RELATIVE * abs(d_released))
    kernel_side = d_rss if setting == 1 else d_lazy
    return {"released_pages": d_released, "rss_fall_pages": d_rss, "lazyfree_rise_pages": d_lazy,
            "held_fall_pages": d_held, "tolerance_pages": tol,
            "ok": abs(kernel_side - d_released) <= tol and abs(d_held - d_released) <= tol}


@dataclass
class ProbeComparison:
    live: bool
    source: str
    reason: str
    go_version: str
    kernel_release: str
    runs: dict            # setting (0/1) -> list of samples (probe JSON rows)
    models: dict          # setting -> Timeline

    def checks(self) -> dict:
        """Identity checks per setting; a run that released less than half the dropped heap fails
        (it tested nothing)."""
        out = {}
        for s, rows in self.runs.items():
            c = identity_check(rows, s)
            c["released_enough"] = released_fraction(rows) >= 0.5
            c["ok"] = c["ok"] and c["released_enough"]
            out[s] = c
        return out

    def figure(self) -> go.Figure:
        fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                            subplot_titles=tuple(f"GODEBUG=madvdontneed={s}" for s in sorted(self.runs)))
        series = (("HeapReleased", "#0072B2"), ("RSS", COLORS["rss"]), ("LazyFree", COLORS["lazyfree"]),
                  ("RSS - LazyFree", "#8C2D04"))
        for col, s in enumerate(sorted(self.runs), start=1):
            rows = [r for r in self.runs[s] if r["phase"] in ("gc", "release")]
            t0 = rows[0]["t"]
            real = {"HeapReleased": [r["heap_released"] / MiB for r in rows],
                    "RSS": [r["rss_bytes"] / MiB for r in rows],
                    "LazyFree": [r["lazyfree_bytes"] / MiB for r in rows],
                    "RSS - LazyFree": [(r["rss_bytes"] - r["lazyfree_bytes"]) / MiB for r in rows]}
            tr = [r["t"] - t0 for r in rows]
            tl = self.models[s]
            idx = np.concatenate([tl.where("gc"), tl.where("release")])
            tm = tl.t[idx] - tl.t[idx[0]]
            mm = metrics_of(tl)
            model = {"HeapReleased": _mib(tl.heap_released_pages)[idx], "RSS": mm["rss"][idx],
                     "LazyFree": mm["lazyfree"][idx], "RSS - LazyFree": mm["rss_minus_lazyfree"][idx]}
            for name, colour in series:
                fig.add_trace(go.Scatter(x=tr, y=real[name], mode="lines", name=f"{name} (real Go)",
                                         legendgroup=name, showlegend=col == 1, line=dict(color=colour, width=2),
                                         hovertemplate=f"real {name}: %{{y:.0f}} MiB at %{{x:.1f}} s<extra></extra>"),
                              row=1, col=col)
                fig.add_trace(go.Scatter(x=tm, y=model[name], mode="lines", name=f"{name} (model)",
                                         legendgroup=name, showlegend=col == 1,
                                         line=dict(color=colour, width=1.5, dash="dash"),
                                         hovertemplate=f"model {name}: %{{y:.0f}} MiB at %{{x:.1f}} s<extra></extra>"),
                              row=1, col=col)
            fig.update_xaxes(title_text="seconds after the GC", row=1, col=col)
            fig.update_yaxes(title_text="MiB" if col == 1 else None, rangemode="tozero", row=1, col=col)
        fig.update_layout(height=400, margin=dict(t=60, b=50, l=60, r=10),
                          legend=dict(orientation="h", y=-0.22, x=0, font=dict(size=10)),
                          title=dict(text=f"Real Go ({'live' if self.live else 'recorded'}) vs the model: "
                                     f"background scavenger", font_size=14))
        return fig

    def text(self) -> str:
        lines = [f"Real Go program: {self.source}."]
        if self.reason:
            lines.append(f"Not run live here: {self.reason}")
        minor = int(self.go_version.split(".")[1]) if self.go_version else 19
        if 12 <= minor <= 15:
            lines.append(f"Go {self.go_version}: madvdontneed=0 (MADV_FREE) is this version's default.")
        elif minor < 12:
            lines.append(f"Go {self.go_version} has no madvdontneed setting: both runs use its default.")
        if not _kernel_has_lazyfree(self.kernel_release):
            lines.append(f"Linux {self.kernel_release} has no LazyFree field (before 4.12).")
        for s, c in sorted(self.checks().items()):
            if released_fraction(self.runs[s]) < 0.5:
                lines.append(f"madvdontneed={s}: the scavenger released only "
                             f"{c['released_pages'] / PAGES_PER_MIB:.1f} MiB within the watch in "
                             f"{PROBE_ATTEMPTS} runs (it sometimes sleeps longer in an idle program); "
                             f"this run does not test the identity.")
                continue
            kernel_side = "RSS fell" if s == 1 else "LazyFree rose"
            amount = c["rss_fall_pages"] if s == 1 else c["lazyfree_rise_pages"]
            lines.append(
                f"madvdontneed={s}: HeapReleased rose by {c['released_pages'] / PAGES_PER_MIB:.1f} MiB; "
                f"{kernel_side} by {amount / PAGES_PER_MIB:.1f} MiB; RSS - LazyFree fell by "
                f"{c['held_fall_pages'] / PAGES_PER_MIB:.1f} MiB -> "
                + ("the identity holds" if c["ok"] else "the identity does NOT hold")
                + f" (tolerance {c['tolerance_pages'] / PAGES_PER_MIB:.2f} MiB).")
            rows = self.runs[s]
            gc_t = [r["t"] for r in rows if r["phase"] == "gc"][-1]
            gc_rel = [r["heap_released"] for r in rows if r["phase"] == "gc"][-1]
            half = [r["t"] for r in rows if r["phase"] == "release"
                    and r["heap_released"] - gc_rel > 0.5 * c["released_pages"] * PAGE_SIZE]
            if half:
                lines.append(f"   (printed, not checked) half of it was released {half[0] - gc_t:.1f} s after the GC.")
        return "\n".join(lines)

    def _ipython_display_(self):
        from IPython.display import HTML, display
        display(HTML("<pre class='goprobe-cell' style='white-space:pre-wrap'>" + html.escape(self.text()) + "</pre>"))
        display(self.figure())

    def __repr__(self):
        return self.text()


#: An idle program's scavenger sometimes sleeps past the watch (once in 12 runs here, LIMITS.md):
#: such a run releases nothing and tests nothing, so it is repeated up to this many times.
PROBE_ATTEMPTS = 3


def released_fraction(samples: list[dict]) -> float:
    """HeapReleased gained from the GC to the end of the watch, as a fraction of the heap dropped."""
    gc = [r for r in samples if r["phase"] == "gc"][-1]
    rel = [r for r in samples if r["phase"] == "release"][-1]
    alloc = [r for r in samples if r["phase"] == "allocate"][-1]
    dropped = max(alloc["heap_inuse"] - gc["heap_inuse"], 1)
    return (rel["heap_released"] - gc["heap_released"]) / dropped


def _probe_until_released(run_probe, setting: int) -> list[dict]:
    for _ in range(PROBE_ATTEMPTS):
        samples = run_probe(madvdontneed=setting, **PROBE_ARGS).samples
        if released_fraction(samples) >= 0.5:
            break
    return samples


from models.quiz.go import kernel_has_lazyfree as _kernel_has_lazyfree  # noqa: E402


def scavenger_probe_vs_model(record_id: str = "ch07-goprobe-scavenger", *, force_recorded: Optional[bool] = None,
                             directory: Optional[Path] = None) -> ProbeComparison:
    """Run probes/goheap twice (madvdontneed=1 and 0, background scavenger) beside the Go model.

    Live when :func:`models.realkernel.goprobe.go_support` is OK on Linux; else the recording in
    ``book/recorded/<record_id>.json``, labelled with its date, kernel and Go version.  A live
    run rewrites the recording only with ``BOOK_RECORD=1``.
    """
    from models.goruntime import simulate_release
    from models.realkernel.goprobe import GoProbeError, go_support, run_probe
    from models.viz.kernel_cell import FORCE_RECORDED_ENV, RECORD_ENV

    path = Path(directory or RECORDED_DIR) / f"{record_id}.json"
    if force_recorded is None:
        force_recorded = os.environ.get(FORCE_RECORDED_ENV, "") == "1"
    reason, runs = "", None
    if force_recorded:
        reason = f"the recording was asked for ({FORCE_RECORDED_ENV}=1)"
    elif not platform.system() == "Linux":
        reason = f"the Go probe reads /proc/self/smaps_rollup and needs Linux (this is {platform.system()})"
    else:
        ok, why = go_support()
        if not ok:
            reason = why
        else:
            try:
                runs = {s: _probe_until_released(run_probe, s) for s in (1, 0)}
            except (GoProbeError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
    if runs is not None:
        go_text, release = why, os.uname().release
        now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
        if os.environ.get(RECORD_ENV, "") == "1":
            path.write_text(json.dumps({"record_id": record_id, "recorded_at": now, "kernel_release": release,
                                        "machine": platform.machine(), "go": go_text, "args": PROBE_ARGS,
                                        "runs": {str(k): v for k, v in runs.items()}}, indent=1) + "\n")
        source = (f"measured on {now[:10]} while this page was built, Linux {release}, {go_text}"
                  if os.environ.get(STATIC_BUILD_ENV) else f"measured live now, Linux {release}, {go_text}")
        live = True
    else:
        if not path.exists():
            raise ModelInputError(f"no recorded Go probe run {path}; record it on Linux with Go installed "
                                  f"(BOOK_RECORD=1)")
        rec = json.loads(path.read_text())
        runs = {int(k): v for k, v in rec["runs"].items()}
        go_text, release = rec["go"], rec["kernel_release"]
        source = (f"recorded on {rec['recorded_at'][:10]}, Linux {release} ({rec['machine']}), {go_text}, "
                  f"this book's build machine")
        live = False
    go_version = _go_minor_version(go_text) or "1.19"
    model_go = go_version if 12 <= int(go_version.split(".")[1]) <= 26 else "1.19"
    models = {s: simulate_release(go_version=model_go, kernel_version=_kernel_model_version(release),
                                  godebug=f"madvdontneed={s}", heap=PROBE_ARGS["heap"],
                                  liveness=PROBE_ARGS["liveness"], release="scavenger", wait=10.0)
              for s in runs}
    return ProbeComparison(live, source, reason, go_version, release, runs, models)


# ============================================================================ chapter 7: the quiz
# The generator lives with the simulations (``python -m models quiz --topic go``); the chapter
# imports it from here.
from models.quiz.go import (QUIZ_KERNELS, QUIZ_VERSIONS, WRAP, GoQuiz, go_quiz, go_quiz_answer_text,  # noqa: E402,F401
                            go_quiz_answers, go_quiz_problem)
from models.quiz.go import quiz_run as _quiz_run  # noqa: E402,F401


# ============================================================================ chapter 7: VSZ of the real program
def probe_vmsize(heap: str = "256MiB") -> dict:
    """VmSize of the real Go program (``probes/goheap``, FreeOSMemory run) before it allocates and after
    the release, read from ``/proc/PID/status`` by this process, beside the model's mappings.

    ``{"ok": False, "reason": ...}`` where the probe cannot run (no Go, not Linux).
    """
    import subprocess
    from models.realkernel.goprobe import GoProbeError, build_probe, go_support
    from models.units import parse_size
    out = {"model_bytes": model_vsz_bytes(heap)}
    ok, why = go_support()
    if platform.system() != "Linux" or not ok:
        return {**out, "ok": False, "reason": why if not ok else f"needs Linux (this is {platform.system()})"}

    def vmsize(pid: int) -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
        raise GoProbeError("no VmSize line in /proc/PID/status")

    binary = build_probe()
    argv = [str(binary), f"--heap={parse_size(heap, name='heap')}", "--object=8192", "--liveness=0.25",
            "--release=freeosmemory", "--thp=disable", "--wait-stdin"]
    env = {k: v for k, v in os.environ.items() if k not in ("GODEBUG", "GOGC", "GOMEMLIMIT")}
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        proc.stdout.readline()                          # {"ready": pid}: nothing allocated yet
        out["start_bytes"] = vmsize(proc.pid)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        for line in proc.stdout:
            row = json.loads(line)
            if row.get("phase") == "release":
                out["release_bytes"] = vmsize(proc.pid)  # the program waits for nothing here: read at once
                out["release_rss_bytes"] = row["rss_bytes"]
                break
    finally:
        proc.kill()
        proc.communicate()
    out["ok"] = "release_bytes" in out
    out["go"] = why
    return out


def vmsize_text(heap: str = "256MiB") -> str:
    v = probe_vmsize(heap)
    model = f"the model's two mappings (heap arena and runtime metadata): {v['model_bytes'] / MiB:.0f} MiB"
    if not v["ok"]:
        return f"Real Go program not run here ({v.get('reason', 'it did not reach the release')}); {model}."
    return (f"VSZ (VmSize) of the real Go program on this machine ({v['go']}): "
            f"{v['start_bytes'] / MiB:.0f} MiB before it allocates anything, "
            f"{v['release_bytes'] / MiB:.0f} MiB right after FreeOSMemory, while its RSS is "
            f"{v['release_rss_bytes'] / MiB:.0f} MiB; {model}.")
