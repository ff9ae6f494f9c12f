"""Chapter 5 ("Memory pressure and reclaim"): who takes lazily freed pages back, in which order,
what that costs the program, and which container metric sees what.

Three explorables, all driven by the kernel page model (``models.kernel``):

* :data:`reclaim_pagemap` -- two 64 MiB regions written, freed lazily ("old" first), then another
  allocation under a memory budget: the page map step by step, with a bar of what the budget is
  charged for.  Controls: the memory limit and the size of the other allocation (FACTS 18-22,
  E7; docs/KERNEL-NOTES.md K7).
* :data:`limit_explorer` -- a 128 MiB heap, a share of it released with ``MADV_FREE`` or
  ``MADV_DONTNEED``, then a second allocation of 0-256 MiB: heap RSS, LazyFree, pages reclaimed,
  and where the OOM killer strikes.  Controls: limit, share freed, advice, kernel era (FACTS 15,
  22, 62; K9).
* :data:`metrics_explorable` -- the same heap, part of the freed range written again, then
  pressure: smaps Rss and LazyFree, cgroup usage and rss, inactive_file and the working set
  (usage - inactive_file, cAdvisor's definition).  The cgroup columns are derived from the page
  model, not measured: FACTS 26-27 are partly [inference], and the figure says so.

``pagemap_budget``, ``limit_sweep`` and ``metrics_model`` return plain numbers (tested in
``tests/test_viz_reclaim.py``); the ``*_figure`` functions only draw them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from models.errors import KernelError, ModelInputError, OOMKill
from models.kernel import AddressSpace, PageState
from models.kernel.profile import profile_for
from models.kernel.replay import iter_play
from models.scenario.format import Madvise, Mmap, Pressure, Scenario, Touch
from models.units import PAGE_SIZE
from models.viz import COLORS
from models.viz.explorable import Dropdown, Explorable, Slider

MiB = 1 << 20
PAGES_PER_MIB = MiB // PAGE_SIZE
REGION_MIB = 64
HEAP_MIB = 128


def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ModelInputError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _mib(pages: int) -> float:
    return pages / PAGES_PER_MIB


# ================================================================== 1. the page map of a reclaim

#: Page map controls: the budget above the baseline (None: no limit) and the other allocation.
PAGEMAP_LIMITS = {"128 MiB": 128, "192 MiB": 192, "256 MiB": 256}
PAGEMAP_PRESSURES = (32, 96, 160)
#: Cells per region: 8 x 8, 256 pages (1 MiB) each; one cell per page would not fit the
#: page-weight budget (the grid is precomputed for every combination).
PAGEMAP_CELLS = 64


def two_regions_scenario(limit_mib: int = 192, pressure_mib: int = 96) -> Scenario:
    """old and new (64 MiB each) written, MADV_FREE old then new, pressure, read old, read new,
    write new -- the kernel cell's scenario without the final munmaps."""
    _check_choice("limit_mib", limit_mib, PAGEMAP_LIMITS.values())
    _check_choice("pressure_mib", pressure_mib, PAGEMAP_PRESSURES)
    size = REGION_MIB * MiB
    steps = (Mmap("old", size), Mmap("new", size),
             Touch("old", 0, size, "write"), Touch("new", 0, size, "write"),
             Madvise("old", 0, size, "MADV_FREE"), Madvise("new", 0, size, "MADV_FREE"),
             Pressure(pressure_mib * MiB),
             Touch("old", 0, size, "read"), Touch("new", 0, size, "read"),
             Touch("new", 0, size, "write"))
    return Scenario(steps, memory_limit=limit_mib * MiB, name=f"ch05-two-regions-{limit_mib}-{pressure_mib}")


@dataclass(frozen=True)
class Budget:
    """What the memory budget is charged for after one step (pages)."""

    limit_pages: int
    live_pages: int          # written pages of the regions (RESIDENT)
    lazyfree_pages: int      # lazily freed pages, still charged (FACTS 26)
    pressure_pages: int      # the other allocation
    reclaimed_pages: int     # lazily freed pages reclaimed so far
    error: Optional[str]

    @property
    def charged_pages(self) -> int:
        return self.live_pages + self.lazyfree_pages + self.pressure_pages


@lru_cache(maxsize=None)
def pagemap_budget(limit_mib: int, pressure_mib: int) -> tuple[Budget, ...]:
    """The budget after every step that ran of :func:`two_regions_scenario` (page model, 6.18)."""
    scenario = two_regions_scenario(limit_mib, pressure_mib)
    out = []
    for result, space in iter_play(scenario, kernel_version="6.18", swap=False):
        regions = list(space.regions)
        live = sum(space.count(PageState.RESIDENT, r) for r in regions)
        lazy = sum(space.count(PageState.LAZYFREE, r) for r in regions)
        out.append(Budget(space.budget_pages, live, lazy, space.pressure_pages,
                          space.reclaimed_pages, result.error))
    return tuple(out)


_BUDGET_PARTS = (("live_pages", "written (live)", COLORS["resident"]),
                 ("lazyfree_pages", "lazily freed", COLORS["lazyfree"]),
                 ("pressure_pages", "other allocation", COLORS["vsz"]))


def pagemap_figure(step: int, limit_mib: int, pressure_mib: int) -> go.Figure:
    from models.viz import pagemap as pm

    scenario = two_regions_scenario(limit_mib, pressure_mib)
    fig = pm.pagemap_figure(scenario, step, max_cells=PAGEMAP_CELLS, legend_codes=_PAGEMAP_LEGEND,
                            title=f"Two regions freed lazily, then {pressure_mib} MiB more under a "
                                  f"{limit_mib} MiB limit")
    budget = pagemap_budget(limit_mib, pressure_mib)
    b = budget[min(step, len(budget) - 1)]
    # The budget bar: a strip across the bottom, in paper coordinates, scaled to 320 MiB so that
    # every limit fits; the limit is a black tick.
    x0, width, y0, y1 = 0.0, 0.64, -0.40, -0.33
    scale = width / (320 * PAGES_PER_MIB)
    shapes, annotations = [], []
    x = x0
    for attr, _, colour in _BUDGET_PARTS:
        n = getattr(b, attr)
        if n:
            shapes.append(dict(type="rect", xref="paper", yref="paper", x0=x, x1=x + n * scale,
                               y0=y0, y1=y1, fillcolor=colour, line=dict(width=0)))
            x += n * scale
    limit_x = x0 + b.limit_pages * scale
    shapes.append(dict(type="rect", xref="paper", yref="paper", x0=x0, x1=x0 + width, y0=y0, y1=y1,
                       line=dict(color="#666666", width=1)))
    shapes.append(dict(type="line", xref="paper", yref="paper", x0=limit_x, x1=limit_x,
                       y0=y0 - 0.02, y1=y1 + 0.02, line=dict(color="#000000", width=3)))
    parts = ", ".join(f"{label} {_mib(getattr(b, attr)):g}" for attr, label, _ in _BUDGET_PARTS)
    status = f" - {b.error}: the charges at the moment of the kill" if b.error else ""
    annotations.append(dict(xref="paper", yref="paper", x=x0, y=y1 + 0.005, xanchor="left",
                            yanchor="bottom", showarrow=False, font=dict(size=12),
                            text=(f"<b>memory budget</b> (MiB, limit {limit_mib} = black line): "
                                  f"{parts}; reclaimed so far {_mib(b.reclaimed_pages):g}{status}")))
    annotations.append(dict(xref="paper", yref="paper", x=limit_x, y=y0 - 0.02, yanchor="top",
                            showarrow=False, font=dict(size=11), text=f"limit {limit_mib} MiB"))
    fig.update_layout(shapes=shapes, height=620, margin=dict(t=90, b=190, l=80, r=10))
    for a in annotations:
        fig.add_annotation(**a)
    return fig


def describe_pagemap(step: int, limit_mib: int, pressure_mib: int) -> str:
    from models.viz.pagemap import describe_pagemap_step, snapshots
    run = snapshots(two_regions_scenario(limit_mib, pressure_mib))
    b = pagemap_budget(limit_mib, pressure_mib)[min(step, len(run.snapshots) - 1)]
    when = " At the moment of the kill, the" if b.error == "OOM_KILL" else " The"
    return (describe_pagemap_step(run, step) + f"{when} {limit_mib} MiB budget holds "
            f"{_mib(b.live_pages):g} MiB written, {_mib(b.lazyfree_pages):g} MiB lazily freed and "
            f"{_mib(b.pressure_pages):g} MiB of the other allocation; "
            f"{_mib(b.reclaimed_pages):g} MiB reclaimed so far.")


def _pagemap_controls():
    from models.viz.pagemap import describe_step
    steps = two_regions_scenario().steps
    slider = Slider(range(len(steps)), label="step", default=6)
    labels = []
    for i, s in enumerate(steps):
        text = describe_step(s)
        if s.op == "pressure":
            text = "pressure: another allocation"     # its size is the other control
        labels.append(f"{i}: {text}")
    slider = dataclasses.replace(slider, labels=tuple(labels))
    legend = tuple(int(s) for s in (PageState.RESIDENT, PageState.LAZYFREE, PageState.RECLAIMED,
                                    PageState.ZERO_PAGE, PageState.NOT_PRESENT))
    return slider, legend


_PAGEMAP_STEP, _PAGEMAP_LEGEND = _pagemap_controls()

reclaim_pagemap = Explorable(
    pagemap_figure,
    title="Reclaim, page by page: old freed first, then new",
    describe=describe_pagemap,
    step=_PAGEMAP_STEP,
    limit_mib=Dropdown(PAGEMAP_LIMITS, label="memory limit", default=192),
    pressure_mib=Dropdown({f"{p} MiB": p for p in PAGEMAP_PRESSURES}, label="other allocation",
                          default=96),
)


# ================================================================== 2. the OOM point

LIMITS = (128, 160, 192, 256, 320)
SHARES = (0, 25, 50, 75, 100)
ADVICE = ("MADV_FREE", "MADV_DONTNEED")
#: Kernel eras (models.kernel.profile): no MADV_FREE, swapless passthrough, lazy.
KERNELS = {"Linux 4.4": "4.4", "Linux 4.9, no swap": "4.9", "Linux 4.12 or later": "6.18"}
#: The second allocation's sizes: 0 to 256 MiB in steps of 8 MiB.
SECOND_MIB = tuple(range(0, 257, 8))


@dataclass(frozen=True)
class LimitSweep:
    """One heap, one release, and every size of a second allocation (arrays over SECOND_MIB)."""

    limit_mib: int
    share_percent: int
    advice: str
    kernel_version: str
    second_mib: np.ndarray
    heap_rss_mib: np.ndarray        # after the second allocation (NaN where the process was killed)
    heap_lazyfree_mib: np.ndarray   # the model's true count of lazily freed pages, in MiB
    reclaimed_mib: np.ndarray
    oom: np.ndarray                 # bool: the second allocation ended in an OOM kill
    madvise_error: Optional[str]
    acts_as: Optional[str]          # the advice the kernel really applied
    live_mib: float                 # the heap's written, not released, part
    rss_before_mib: float           # heap RSS after the release, before any second allocation

    @property
    def largest_fit_mib(self) -> int:
        """The largest second allocation that did not end in an OOM kill (MiB)."""
        fits = self.second_mib[~self.oom]
        return int(fits.max()) if fits.size else -1


def _check_int_choice(name, value, allowed):
    if isinstance(value, bool) or value not in allowed:
        raise ModelInputError(f"{name} must be one of {list(allowed)}, got {value!r}")


def limit_sweep(limit_mib: int = 192, share_percent: int = 50, advice: str = "MADV_FREE",
                kernel_version: str = "6.18") -> LimitSweep:
    """Write a 128 MiB heap, release its top ``share_percent`` % with ``advice``, then allocate
    each size in :data:`SECOND_MIB` (one model run per size) under a ``limit_mib`` budget."""
    _check_int_choice("limit_mib", limit_mib, LIMITS)
    _check_int_choice("share_percent", share_percent, SHARES)
    _check_choice("advice", advice, ADVICE)
    _check_choice("kernel_version", kernel_version, KERNELS.values())
    return _limit_sweep(int(limit_mib), int(share_percent), advice, kernel_version)


@lru_cache(maxsize=None)
def _limit_sweep(limit_mib: int, share_percent: int, advice: str, kernel_version: str) -> LimitSweep:
    heap = HEAP_MIB * MiB
    freed = heap * share_percent // 100
    n = len(SECOND_MIB)
    rss, lazy, reclaimed = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n)
    oom = np.zeros(n, dtype=bool)
    error = None
    live = rss_before = 0
    for i, second in enumerate(SECOND_MIB):
        space = AddressSpace(kernel_version=kernel_version, swap=False, memory_limit=limit_mib * MiB)
        space.mmap("heap", heap)
        space.touch("heap", 0, heap, "write")
        try:
            space.madvise("heap", heap - freed, freed, advice)
        except KernelError as exc:
            error = exc.errno_name
        live = space.count(PageState.RESIDENT, "heap")
        rss_before = space.rss_pages("heap")
        if second:
            try:
                space.pressure(second * MiB)
            except OOMKill:
                oom[i] = True
        reclaimed[i] = _mib(space.reclaimed_pages)
        if not oom[i]:
            rss[i] = _mib(space.rss_pages("heap"))
            lazy[i] = _mib(space.count(PageState.LAZYFREE, "heap"))
    profile = profile_for(kernel_version, False)
    if error:
        acts_as = None
    elif advice == "MADV_FREE" and not profile.lazy_free:
        acts_as = "MADV_DONTNEED"
    else:
        acts_as = advice
    for arr in (rss, lazy, reclaimed):
        arr.flags.writeable = False
    return LimitSweep(limit_mib, share_percent, advice, kernel_version, np.array(SECOND_MIB), rss,
                      lazy, reclaimed, oom, error, acts_as, _mib(live), _mib(rss_before))


def _kernel_label(version: str) -> str:
    return next(k for k, v in KERNELS.items() if v == version)


def describe_limit(limit_mib: int, share_percent: int, advice: str, kernel_version: str) -> str:
    s = limit_sweep(limit_mib, share_percent, advice, kernel_version)
    head = f"On {_kernel_label(kernel_version)}, {advice} on {share_percent} % of the 128 MiB heap"
    if s.madvise_error:
        head += f" fails with {s.madvise_error}: nothing is released"
    elif s.acts_as != advice:
        head += " is applied as MADV_DONTNEED (no swap)"
    head += f"; heap RSS is {s.rss_before_mib:g} MiB, {s.live_mib:g} MiB of it live."
    fit = s.largest_fit_mib
    if fit < 0:
        oom = "Even the smallest second allocation ends in an OOM kill."
    elif fit == SECOND_MIB[-1]:
        oom = f"Every second allocation up to {fit} MiB fits under the {limit_mib} MiB limit."
    else:
        oom = (f"A second allocation fits up to {fit} MiB (live {s.live_mib:g} + {fit} <= "
               f"{limit_mib} MiB); from {fit + 8} MiB on, the OOM killer strikes.")
    first = np.flatnonzero(s.reclaimed_mib > 0)
    rec = (f" Reclaim starts with a second allocation of {SECOND_MIB[first[0]]} MiB and takes "
           f"up to {np.nanmax(s.reclaimed_mib[~s.oom]) if (~s.oom).any() else 0:g} MiB of lazily "
           f"freed pages." if first.size else " Nothing is ever reclaimed: nothing is lazily freed.")
    return f"{head} {oom}{rec}"


def limit_figure(limit_mib: int, share_percent: int, advice: str, kernel_version: str) -> go.Figure:
    s = limit_sweep(limit_mib, share_percent, advice, kernel_version)
    x = s.second_mib
    fig = go.Figure()
    fit = s.largest_fit_mib
    x_max = SECOND_MIB[-1] + 4
    if s.oom.any():
        start = fit + 4 if fit >= 0 else -4
        fig.add_vrect(x0=start, x1=x_max, fillcolor="#B00020", opacity=0.12, line_width=0,
                      annotation_text="<b>OOM kill</b>", annotation_position="top left",
                      annotation_font=dict(color="#B00020", size=13))
    pressure = np.where(s.oom, np.nan, x.astype(float))
    total = s.heap_rss_mib + pressure
    series = (("heap RSS", s.heap_rss_mib, COLORS["rss"], "solid", 3),
              ("heap lazily freed (LazyFree)", s.heap_lazyfree_mib, COLORS["lazyfree"], "solid", 3),
              ("reclaimed so far", np.where(s.oom, np.nan, s.reclaimed_mib), COLORS["free"], "dash", 3),
              ("second allocation", pressure, COLORS["vsz"], "dot", 2),
              ("heap RSS + second allocation", total, "#555555", "dashdot", 1.5))
    for name, y, colour, dash, w in series:
        fig.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines+markers",
                                 line=dict(color=colour, dash=dash, width=w), marker=dict(size=5),
                                 hovertemplate=f"{name}: %{{y:g}} MiB at a %{{x}} MiB allocation"
                                               f"<extra></extra>"))
    fig.add_hline(y=limit_mib, line=dict(color="#000000", dash="dash", width=1.5),
                  annotation_text=f"limit {limit_mib} MiB", annotation_position="top right")
    if s.madvise_error:
        badge, colour = f"madvise: {s.madvise_error} - nothing released", "#B00020"
    elif s.acts_as != advice:
        badge, colour = "MADV_FREE acts as MADV_DONTNEED (no swap)", "#B00020"
    else:
        badge, colour = f"{advice}: ok", "#333333"
    fits = ("no second allocation fits" if fit < 0 else f"largest allocation that fits: {fit} MiB")
    fig.add_annotation(text=f"<b>{badge}</b> · live heap {s.live_mib:g} MiB · <b>{fits}</b>",
                       xref="paper", yref="paper", x=0, y=1.09, xanchor="left", showarrow=False,
                       font=dict(size=13, color=colour))
    fig.update_xaxes(title_text="size of the second allocation (MiB)", range=[-4, x_max], dtick=32)
    fig.update_yaxes(title_text="memory (MiB)", range=[0, 330], dtick=64)
    fig.update_layout(height=480, margin=dict(t=100, b=60, l=60, r=20),
                      legend=dict(orientation="h", x=0, y=-0.16, yanchor="top"),
                      title=dict(text=f"128 MiB heap, {share_percent} % released with {advice} on "
                                      f"{_kernel_label(kernel_version)}, {limit_mib} MiB limit",
                                 font_size=15))
    return fig


limit_explorer = Explorable(
    limit_figure,
    title="How big can the second allocation be?",
    describe=describe_limit,
    limit_mib=Dropdown({f"{v} MiB": v for v in LIMITS}, label="memory limit", default=192),
    share_percent=Slider(SHARES, label="share freed", unit=" %", default=50),
    advice=Dropdown(list(ADVICE), label="advice", default="MADV_FREE"),
    kernel_version=Dropdown(KERNELS, label="kernel", default="6.18"),
)


# ================================================================== 3. which number is "memory"?

METRICS_LIMIT_MIB = 192
REWRITTEN = (0, 50, 100)
METRICS_PRESSURES = (0, 32, 64, 96)
METRIC_STEPS = ("mmap the heap", "write all 128 MiB", "MADV_FREE the top share",
                "write part of the freed range again", "another allocation (pressure)")
#: Bars, in order: (key, label, source).  "derived" columns come from the page model plus an
#: accounting rule, not from a measurement.
METRICS = (("smaps_rss", "process RSS<br>(smaps Rss)", "model"),
           ("smaps_lazyfree", "LazyFree<br>(smaps)", "model"),
           ("usage", "cgroup usage", "derived"),
           ("cgroup_rss", "cgroup rss", "derived"),
           ("inactive_file", "inactive_file", "derived"),
           ("working_set", "working set<br>(usage - inactive_file)", "derived"))


@dataclass(frozen=True)
class Metrics:
    """The counters after one step (MiB).  See :func:`metrics_model`."""

    step: int
    smaps_rss: float
    smaps_lazyfree: float
    usage: float
    cgroup_rss: float
    inactive_file: float
    working_set: float
    true_live: float
    reclaimed: float
    error: Optional[str]


def metrics_model(share_percent: int, rewritten_percent: int, pressure_mib: int) -> tuple[Metrics, ...]:
    """The metrics after each of the five steps of METRIC_STEPS (Linux 6.18, no swap, 192 MiB).

    ``usage`` is what the budget is charged (the heap's resident and lazily freed pages plus the
    other allocation: FACTS 26 measured that MADV_FREE leaves usage and total_rss unchanged);
    ``cgroup_rss`` equals it because the model has no page cache or kernel memory.
    ``inactive_file`` counts the heap pages the kernel still has filed as lazily freed, including
    pages written again that reclaim has not looked at yet (``AddressSpace.lazyfree_lru``;
    FACTS 18-19, 27 and E2: rewriting left the cgroup statistics unchanged).  ``working_set`` is
    cAdvisor's ``usage - inactive_file`` (FACTS 27, [inference]).  ``true_live`` is what the
    program really uses: pages written and not released, plus the other allocation.
    """
    _check_int_choice("share_percent", share_percent, SHARES)
    _check_int_choice("rewritten_percent", rewritten_percent, REWRITTEN)
    _check_int_choice("pressure_mib", pressure_mib, METRICS_PRESSURES)
    return _metrics(int(share_percent), int(rewritten_percent), int(pressure_mib))


@lru_cache(maxsize=None)
def _metrics(share_percent: int, rewritten_percent: int, pressure_mib: int) -> tuple[Metrics, ...]:
    heap = HEAP_MIB * MiB
    freed_pages = HEAP_MIB * PAGES_PER_MIB * share_percent // 100
    freed = freed_pages * PAGE_SIZE
    rewritten = freed_pages * rewritten_percent // 100 * PAGE_SIZE
    space = AddressSpace(kernel_version="6.18", swap=False, memory_limit=METRICS_LIMIT_MIB * MiB)
    actions = (lambda: space.mmap("heap", heap),
               lambda: space.touch("heap", 0, heap, "write"),
               lambda: space.madvise("heap", heap - freed, freed, "MADV_FREE"),
               lambda: space.touch("heap", heap - freed, rewritten, "write"),
               lambda: space.pressure(pressure_mib * MiB) if pressure_mib else None)
    out = []
    for i, act in enumerate(actions):
        error = None
        try:
            act()
        except OOMKill:
            error = "OOM_KILL"
        if error:
            out.append(Metrics(i, *(0.0,) * 6, true_live=0.0, reclaimed=_mib(space.reclaimed_pages),
                               error=error))
            break
        filed = int(np.count_nonzero(space.lazyfree_lru("heap")))
        usage = space.charged_pages
        out.append(Metrics(
            step=i, smaps_rss=_mib(space.rss_pages("heap")),
            smaps_lazyfree=_mib(space.lazyfree_pages("heap")),
            usage=_mib(usage), cgroup_rss=_mib(usage), inactive_file=_mib(filed),
            working_set=_mib(usage - filed),
            true_live=_mib(space.count(PageState.RESIDENT, "heap") + space.pressure_pages),
            reclaimed=_mib(space.reclaimed_pages), error=None))
    return tuple(out)


def _metrics_at(step: int, share_percent: int, rewritten_percent: int, pressure_mib: int):
    run = metrics_model(share_percent, rewritten_percent, pressure_mib)
    return run[min(step, len(run) - 1)], step >= len(run) - 1 and run[-1].error is not None


def describe_metrics(step: int, share_percent: int, rewritten_percent: int, pressure_mib: int) -> str:
    m, killed = _metrics_at(step, share_percent, rewritten_percent, pressure_mib)
    if killed:
        return (f"At step {m.step} ({METRIC_STEPS[m.step]}) the process is OOM-killed: live memory "
                f"plus the {pressure_mib} MiB allocation does not fit in {METRICS_LIMIT_MIB} MiB.")
    return (f"After step {m.step} ({METRIC_STEPS[m.step]}): process RSS {m.smaps_rss:g} MiB, "
            f"LazyFree {m.smaps_lazyfree:g} MiB, cgroup usage and rss {m.usage:g} MiB, "
            f"inactive_file {m.inactive_file:g} MiB, working set {m.working_set:g} MiB; the "
            f"program really uses {m.true_live:g} MiB ({m.reclaimed:g} MiB reclaimed so far).")


def metrics_figure(step: int, share_percent: int, rewritten_percent: int, pressure_mib: int) -> go.Figure:
    m, killed = _metrics_at(step, share_percent, rewritten_percent, pressure_mib)
    labels = [label for _, label, _ in METRICS]
    values = [0.0 if killed else getattr(m, key) for key, _, _ in METRICS]
    colours = [COLORS["rss"], COLORS["lazyfree"], "#0072B2", "#56B4E9", "#009E73", "#CC79A7"]
    patterns = ["" if src == "model" else "/" for _, _, src in METRICS]
    fig = go.Figure(go.Bar(x=labels, y=values, marker_color=colours, marker_pattern_shape=patterns,
                           text=[f"{v:g}" for v in values], textposition="outside", cliponaxis=False,
                           showlegend=False, hovertemplate="%{x}: %{y:g} MiB<extra></extra>"))
    if not killed:
        fig.add_hline(y=m.true_live, line=dict(color="#000000", dash="dash", width=2),
                      annotation_text=f"really in use: {m.true_live:g} MiB",
                      annotation_position="top left")
    fig.add_shape(type="line", xref="x", yref="paper", x0=1.5, x1=1.5, y0=0, y1=1,
                  line=dict(color="#999999", width=1, dash="dot"))
    fig.add_annotation(text="page model (as smaps reports)", xref="x", yref="paper", x=0.5, y=1.0,
                       yanchor="bottom", showarrow=False, font=dict(size=11))
    fig.add_annotation(text="derived from the page model by cgroup v1 accounting rules "
                            "(<i>inference</i>, hatched)", xref="x", yref="paper", x=3.5, y=1.0,
                       yanchor="bottom", showarrow=False, font=dict(size=11))
    status = (f"<b style='color:#B00020'>OOM kill at step {m.step}</b>" if killed
              else f"after step {m.step}: {METRIC_STEPS[m.step]}")
    fig.update_yaxes(title_text="MiB", range=[0, 240], dtick=32)
    fig.update_xaxes(title_text="counter", tickangle=0)
    fig.update_layout(height=470, margin=dict(t=110, b=70, l=60, r=20),
                      title=dict(text=f"128 MiB heap, {share_percent} % freed, {rewritten_percent} % of "
                                      f"that written again, {pressure_mib} MiB pressure, "
                                      f"{METRICS_LIMIT_MIB} MiB limit<br><sup>{status}</sup>",
                                 font_size=15))
    return fig


def _metrics_step():
    slider = Slider(range(len(METRIC_STEPS)), label="step", default=4)
    return dataclasses.replace(slider, labels=tuple(f"{i}: {t}" for i, t in enumerate(METRIC_STEPS)))


metrics_explorable = Explorable(
    metrics_figure,
    title="Which number is the container's memory?",
    describe=describe_metrics,
    step=_metrics_step(),
    share_percent=Slider(SHARES, label="share freed", unit=" %", default=50),
    rewritten_percent=Slider(REWRITTEN, label="written again", unit=" % of freed", default=50),
    pressure_mib=Dropdown({f"{p} MiB": p for p in METRICS_PRESSURES}, label="pressure", default=0),
)


# ================================================================== the generated quiz

#: The seed of the chapter's generated exercise (``models.quiz``, topic "reclaim").
QUIZ_SEED = 1


def quiz_pagemap(seed: int = QUIZ_SEED) -> Explorable:
    """The page map of a "reclaim" quiz's scenario, for its solution (1 MiB per cell)."""
    from models import quiz
    from models.viz.pagemap import pagemap_explorable
    q = quiz.generate(seed, "reclaim")
    return pagemap_explorable(q.scenario, title=f"Quiz reclaim #{seed}: the answer on the page map",
                              max_cells=64, kernel_version=q.kernel_version, swap=q.swap)


def quiz_reclaimed(seed: int = QUIZ_SEED) -> dict[str, int]:
    """Pages of each region the quiz's scenario loses to reclaim (page model), by region."""
    from models import quiz
    from models.viz.pagemap import snapshots
    q = quiz.generate(seed, "reclaim")
    run = snapshots(q.scenario, kernel_version=q.kernel_version, swap=q.swap)
    pressure = next(i for i, s in enumerate(q.scenario.steps) if s.op == "pressure")
    snap = run.snapshots[min(pressure, len(run.snapshots) - 1)]
    return {r: snap.count(int(PageState.RECLAIMED), r) for r in run.regions}


# ================================================================== the kernel cells

def _parse(obj: dict) -> Scenario:
    from models.scenario.parse import parse_scenario
    return parse_scenario(obj)


#: FACTS E7 on the reader's kernel: old freed before new, 96 MiB more under a 192 MiB budget,
#: then old read, new read, new written (the E8 question: does the write fault?).
KERNEL_TWO_REGIONS = {
    "name": "ch05-two-regions", "description": "oldest freed first under a cgroup limit (FACTS E7, E8)",
    "memory_limit": "192MiB",
    "steps": [
        {"op": "mmap", "region": "old", "length": "64MiB"},
        {"op": "mmap", "region": "new", "length": "64MiB"},
        {"op": "touch", "region": "old", "offset": 0, "length": "64MiB", "access": "write"},
        {"op": "touch", "region": "new", "offset": 0, "length": "64MiB", "access": "write"},
        {"op": "madvise", "region": "old", "offset": 0, "length": "64MiB", "advice": "MADV_FREE"},
        {"op": "madvise", "region": "new", "offset": 0, "length": "64MiB", "advice": "MADV_FREE"},
        {"op": "pressure", "length": "96MiB"},
        {"op": "touch", "region": "old", "offset": 0, "length": "64MiB", "access": "read"},
        {"op": "touch", "region": "new", "offset": 0, "length": "64MiB", "access": "read"},
        {"op": "touch", "region": "new", "offset": 0, "length": "64MiB", "access": "write"},
        {"op": "munmap", "region": "old"}, {"op": "munmap", "region": "new"}]}

#: Lazy freeing is a cushion only as thick as what was freed: 64 MiB live + 64 MiB freed under
#: 160 MiB; 64 MiB more fits (reclaim), another 64 MiB does not (OOM kill).
KERNEL_OOM = {
    "name": "ch05-oom", "description": "reclaim, then the OOM killer once live memory does not fit",
    "memory_limit": "160MiB",
    "steps": [
        {"op": "mmap", "region": "heap", "length": "128MiB"},
        {"op": "touch", "region": "heap", "offset": 0, "length": "128MiB", "access": "write"},
        {"op": "madvise", "region": "heap", "offset": "64MiB", "length": "64MiB", "advice": "MADV_FREE"},
        {"op": "pressure", "length": "64MiB"},
        {"op": "pressure", "length": "64MiB"},
        {"op": "munmap", "region": "heap"}]}


def kernel_two_regions() -> Scenario:
    return _parse(KERNEL_TWO_REGIONS)


def kernel_oom() -> Scenario:
    return _parse(KERNEL_OOM)


def reclaim_summary(cell) -> str:
    """What a two-regions kernel cell measured, in one paragraph (kernel vs model)."""
    k, m = cell.kernel, cell.model
    if len(k) < 10:
        return f"The kernel run stopped at step {k[-1].step} ({k[-1].error})."
    reclaimed_k, reclaimed_m = k[5].rss_pages - k[6].rss_pages, m[5].rss_pages - m[6].rss_pages
    extra = reclaimed_k - reclaimed_m
    return (f"Pages reclaimed by the 96 MiB allocation: kernel {reclaimed_k:,}, model {reclaimed_m:,} "
            f"({extra:+,} pages, {100 * extra / max(reclaimed_m, 1):+.1f} %). Reading old afterwards: "
            f"{k[7].zero_pages:,} pages read as zeros with {k[7].faults:,} faults on the kernel "
            f"({m[7].zero_pages:,} and {m[7].faults:,} in the model); reading new: "
            f"{k[8].zero_pages:,} zero pages. Writing the lazily freed pages of new that survived "
            f"the reclaim took {k[9].faults:,} faults on the kernel (model {m[9].faults:,}).")


# ================================================================== this machine's watermarks

@dataclass(frozen=True)
class Zone:
    name: str
    managed_pages: int
    min_pages: int
    low_pages: int
    high_pages: int


def read_watermarks(text: Optional[str] = None) -> list[Zone]:
    """The zones of ``/proc/zoneinfo`` (or ``text``) with their watermarks, in pages.

    Raises OSError where the file cannot be read (not Linux).
    """
    if text is None:
        with open("/proc/zoneinfo") as f:
            text = f.read()
    zones, cur = [], None
    for line in text.splitlines():
        words = line.split()
        if line.startswith("Node"):
            if cur and cur.get("managed"):
                zones.append(Zone(cur["name"], cur["managed"], cur["min"], cur["low"], cur["high"]))
            cur = {"name": f"node {words[1].rstrip(',')} {words[-1]}"}
        elif cur is not None and len(words) == 2 and words[0] in ("min", "low", "high", "managed") \
                and words[0] not in cur:
            cur[words[0]] = int(words[1])
    if cur and cur.get("managed"):
        zones.append(Zone(cur["name"], cur["managed"], cur["min"], cur["low"], cur["high"]))
    return zones


def watermarks_text() -> str:
    """This machine's watermarks and vm.watermark_scale_factor, or why they cannot be read."""
    try:
        zones = read_watermarks()
        with open("/proc/sys/vm/watermark_scale_factor") as f:
            factor = int(f.read())
        with open("/proc/sys/vm/min_free_kbytes") as f:
            min_free = int(f.read())
    except OSError as exc:
        return f"Cannot read the watermarks here ({exc}); this needs Linux."
    lines = [f"vm.watermark_scale_factor = {factor}, vm.min_free_kbytes = {min_free:,}",
             f"{'zone':<18}{'managed MiB':>12}{'min MiB':>9}{'low MiB':>9}{'high MiB':>10}"
             f"{'low-min':>9}{'managed x f/1e4':>16}"]
    for z in zones:
        lines.append(f"{z.name:<18}{_mib(z.managed_pages):>12,.0f}{_mib(z.min_pages):>9.1f}"
                     f"{_mib(z.low_pages):>9.1f}{_mib(z.high_pages):>10.1f}"
                     f"{_mib(z.low_pages - z.min_pages):>9.1f}"
                     f"{_mib(z.managed_pages * factor / 10000):>16.1f}")
    tot = [sum(getattr(z, a) for z in zones) for a in ("managed_pages", "min_pages", "low_pages",
                                                       "high_pages")]
    lines.append(f"{'all zones':<18}{_mib(tot[0]):>12,.0f}{_mib(tot[1]):>9.1f}{_mib(tot[2]):>9.1f}"
                 f"{_mib(tot[3]):>10.1f}{_mib(tot[2] - tot[1]):>9.1f}"
                 f"{_mib(tot[0] * factor / 10000):>16.1f}")
    return "\n".join(lines)


__all__ = ["reclaim_pagemap", "limit_explorer", "metrics_explorable", "two_regions_scenario",
           "pagemap_budget", "limit_sweep", "metrics_model", "kernel_two_regions", "kernel_oom",
           "reclaim_summary", "read_watermarks", "watermarks_text", "quiz_pagemap", "quiz_reclaimed",
           "QUIZ_SEED"]
