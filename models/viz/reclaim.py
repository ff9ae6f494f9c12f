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
import os
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
#: (No limit equals the regions' 128 MiB exactly: there the page tables, which the kernel charges
#: too, would decide the outcome, K3.)
PAGEMAP_LIMITS = {"144 MiB": 144, "192 MiB": 192, "256 MiB": 256}
PAGEMAP_PRESSURES = (32, 96, 160)
#: Cells per region: 8 x 8, 256 pages (1 MiB) each; one cell per page would not fit the
#: page-weight budget (the grid is precomputed for every combination).
PAGEMAP_CELLS = 64


def two_regions_scenario(limit_mib: int = 192, pressure_mib: int = 96) -> Scenario:
    """old and new (64 MiB each) written, MADV_FREE old then new, pressure, read new, read old,
    write new -- the kernel cell's scenario without the final munmaps.

    new is read before old: with the budget full after the pressure step, a few pages charged
    later (the per-CPU charge stock, the interpreter of the real-kernel child) make the kernel
    reclaim a few dozen pages more, and it skips pages read since MADV_FREE (young PTEs).
    Reading old first made those extra pages come from new (34 zeros in one busy run, over the
    32-page tolerance); in this order they come from old, where they are lost in its thousands.
    """
    _check_choice("limit_mib", limit_mib, PAGEMAP_LIMITS.values())
    _check_choice("pressure_mib", pressure_mib, PAGEMAP_PRESSURES)
    size = REGION_MIB * MiB
    steps = (Mmap("old", size), Mmap("new", size),
             Touch("old", 0, size, "write"), Touch("new", 0, size, "write"),
             Madvise("old", 0, size, "MADV_FREE"), Madvise("new", 0, size, "MADV_FREE"),
             Pressure(pressure_mib * MiB),
             Touch("new", 0, size, "read"), Touch("old", 0, size, "read"),
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
    pagetable_pages: int = 0  # page-table pages charged, where the model counts them (K3)

    @property
    def charged_pages(self) -> int:
        return self.live_pages + self.lazyfree_pages + self.pressure_pages + self.pagetable_pages


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
                          space.reclaimed_pages, result.error, pagetable_pages(space)))
    return tuple(out)


def pagetable_pages(space) -> int:
    """Page-table pages the model charges to the budget (0 in a model that does not count them)."""
    return int(getattr(space, "pagetable_pages", 0))


def usage_pages(space) -> int:
    """What the memcg is charged: pages plus, where the model counts them, page tables (K3)."""
    return int(getattr(space, "usage_pages", space.charged_pages))


_BUDGET_PARTS = (("live_pages", "written (live)", COLORS["resident"]),
                 ("lazyfree_pages", "lazily freed", COLORS["lazyfree"]),
                 ("pressure_pages", "other allocation", COLORS["vsz"]),
                 ("pagetable_pages", "page tables", "#000000"))


def pagemap_figure(step: int, limit_mib: int, pressure_mib: int) -> go.Figure:
    from models.viz import pagemap as pm

    scenario = two_regions_scenario(limit_mib, pressure_mib)
    fig = pm.pagemap_figure(scenario, step, max_cells=PAGEMAP_CELLS, legend_codes=_PAGEMAP_LEGEND,
                            title=f"Two regions freed lazily, then {pressure_mib} MiB more under a "
                                  f"{limit_mib} MiB limit")
    budget = pagemap_budget(limit_mib, pressure_mib)
    b = budget[min(step, len(budget) - 1)]
    # The budget bar: a strip across the bottom, in paper coordinates, scaled to 320 MiB so that
    # every limit fits; the limit is a black tick.  Its label sits below the page-state legend.
    x0, width, y0, y1 = 0.0, 0.64, -0.53, -0.47
    scale = width / (320 * PAGES_PER_MIB)
    shapes = []
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
    parts = " · ".join(f"{label} {_mib(getattr(b, attr)):.4g}" for attr, label, _ in _BUDGET_PARTS
                       if attr != "pagetable_pages" or getattr(b, attr))
    status = f" · <b>{b.error}</b> (charges at the kill)" if b.error else ""
    fig.update_layout(shapes=shapes, height=650, margin=dict(t=90, b=220, l=80, r=10))
    fig.add_annotation(xref="paper", yref="paper", x=x0, y=y1 + 0.01, xanchor="left", yanchor="bottom",
                       showarrow=False, align="left", font=dict(size=12),
                       text=(f"<b>memory budget</b>, MiB (black line: the {limit_mib} MiB limit)<br>"
                             f"{parts} · reclaimed so far {_mib(b.reclaimed_pages):.4g}{status}"))
    fig.add_annotation(xref="paper", yref="paper", x=limit_x, y=y0 - 0.03, yanchor="top",
                       showarrow=False, font=dict(size=11), text=f"limit {limit_mib} MiB")
    return fig


def describe_pagemap(step: int, limit_mib: int, pressure_mib: int) -> str:
    from models.viz.pagemap import describe_pagemap_step, snapshots
    run = snapshots(two_regions_scenario(limit_mib, pressure_mib))
    b = pagemap_budget(limit_mib, pressure_mib)[min(step, len(run.snapshots) - 1)]
    when = " At the moment of the kill, the" if b.error == "OOM_KILL" else " The"
    return (describe_pagemap_step(run, step) + f"{when} {limit_mib} MiB budget holds "
            f"{_mib(b.live_pages):.4g} MiB written, {_mib(b.lazyfree_pages):.4g} MiB lazily freed and "
            f"{_mib(b.pressure_pages):.4g} MiB of the other allocation; "
            f"{_mib(b.reclaimed_pages):.4g} MiB reclaimed so far.")


def _pagemap_controls():
    from models.viz.pagemap import describe_step, step_slider
    # The pressure step's size is the other control, so its label leaves the size out.
    slider = step_slider([("pressure: another allocation" if s.op == "pressure" else describe_step(s))
                          for s in two_regions_scenario().steps], default=6)
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
    head += f"; heap RSS is {s.rss_before_mib:.4g} MiB, {s.live_mib:.4g} MiB of it live."
    fit = s.largest_fit_mib
    if fit < 0:
        oom = "Even the smallest second allocation ends in an OOM kill."
    elif fit == SECOND_MIB[-1]:
        oom = f"Every second allocation up to {fit} MiB fits under the {limit_mib} MiB limit."
    else:
        oom = (f"A second allocation fits up to {fit} MiB (live {s.live_mib:.4g} + {fit} <= "
               f"{limit_mib} MiB); from {fit + 8} MiB on, the OOM killer strikes.")
        if s.live_mib + fit == limit_mib:
            oom += (" That largest one fills the limit exactly: the model, which leaves page tables "
                    "out, lets it fit; a real kernel, which charges them too, would not (K3).")
    first = np.flatnonzero(s.reclaimed_mib > 0)
    rec = (f" Reclaim starts with a second allocation of {SECOND_MIB[first[0]]} MiB and takes "
           f"up to {np.nanmax(s.reclaimed_mib[~s.oom]) if (~s.oom).any() else 0:.4g} MiB of lazily "
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
                                 hovertemplate=f"{name}: %{{y:.4g}} MiB at a %{{x}} MiB allocation"
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
    fig.add_annotation(text=f"<b>{badge}</b> · live heap {s.live_mib:.4g} MiB · <b>{fits}</b>",
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
#: Chosen so that live memory plus the allocation is never exactly the limit: at the edge the
#: real kernel, which also charges page tables (K3), OOM-kills where the model just fits.
METRICS_PRESSURES = (0, 40, 88)
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
    ``inactive_file`` counts the heap pages still filed as lazily freed: the clean ones
    (LAZYFREE) and every page written again since ``MADV_FREE`` (FACTS 18, 27; E2: rewriting
    left the cgroup statistics unchanged).  The written-again pages are counted even after a
    reclaim, because that is what Linux 6.18 did here: after a pressure step that reclaimed
    24 MiB of clean pages lying *above* 32 MiB of written-again ones, ``total_inactive_file``
    still held all 32 MiB (``measure_metrics``; reproduced, also with 64 MiB).  The page model
    moves such pages to the anonymous list the first time reclaim reaches them
    (``models/kernel/reclaim.py``, ``AddressSpace.lazyfree_lru``), which the kernel does not do
    on the first pass; the figure follows the kernel.  ``working_set`` is cAdvisor's
    ``usage - inactive_file`` (FACTS 27, [inference]).  ``true_live`` is what the program really
    uses: pages written and not released, plus the other allocation.
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
        # Written-again pages stay filed (see the docstring); the model's lazyfree_lru would
        # drop them at reclaim's first look.  They are never reclaimed (dirty), so all remain.
        filed = space.count(PageState.LAZYFREE, "heap") + (rewritten // PAGE_SIZE if i >= 3 else 0)
        usage = usage_pages(space)
        out.append(Metrics(
            step=i, smaps_rss=_mib(space.rss_pages("heap")),
            smaps_lazyfree=_mib(space.lazyfree_pages("heap")),
            usage=_mib(usage), cgroup_rss=_mib(space.charged_pages), inactive_file=_mib(filed),
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
    return (f"After step {m.step} ({METRIC_STEPS[m.step]}): process RSS {m.smaps_rss:.4g} MiB, "
            f"LazyFree {m.smaps_lazyfree:.4g} MiB, cgroup usage and rss {m.usage:.4g} MiB, "
            f"inactive_file {m.inactive_file:.4g} MiB, working set {m.working_set:.4g} MiB; the "
            f"program really uses {m.true_live:.4g} MiB ({m.reclaimed:.4g} MiB reclaimed so far).")


def metrics_figure(step: int, share_percent: int, rewritten_percent: int, pressure_mib: int) -> go.Figure:
    m, killed = _metrics_at(step, share_percent, rewritten_percent, pressure_mib)
    labels = [label for _, label, _ in METRICS]
    values = [0.0 if killed else getattr(m, key) for key, _, _ in METRICS]
    colours = [COLORS["rss"], COLORS["lazyfree"], "#0072B2", "#56B4E9", "#009E73", "#CC79A7"]
    patterns = ["" if src == "model" else "/" for _, _, src in METRICS]
    fig = go.Figure(go.Bar(x=labels, y=values, marker_color=colours, marker_pattern_shape=patterns,
                           text=[f"{v:.4g}" for v in values], textposition="outside", cliponaxis=False,
                           showlegend=False, hovertemplate="%{x}: %{y:g} MiB<extra></extra>"))
    if not killed:
        fig.add_hline(y=m.true_live, line=dict(color="#000000", dash="dash", width=2),
                      annotation_text=f"really in use: {m.true_live:.4g} MiB",
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


# ================================================================== text summaries

def _n(pages: int) -> str:
    return f"{pages:,} pages ({_mib(pages):.4g} MiB)"


def pagemap_summary() -> str:
    """The page map's text summary (screen readers, print), computed from the model."""
    from models.viz.pagemap import snapshots

    def run(limit, pressure):
        return snapshots(two_regions_scenario(limit, pressure))

    def reclaimed(snap, region):
        return snap.count(int(PageState.RECLAIMED), region)

    d = run(192, 96)
    r = [snap.result for snap in d.snapshots]
    old6, new6 = reclaimed(d.snapshots[6], "old"), reclaimed(d.snapshots[6], "new")
    text = [
        "Two 8 x 8 grids, old and new, one cell per MiB (256 pages) coloured by page state, page 0 "
        "at the top left; a table of RSS, LazyFree, faults and zero-page reads; and a bar of what "
        "the memory budget is charged for (written memory, lazily freed memory, the other "
        "allocation and, where the model counts them, page tables), with the limit marked.",
        f"With the defaults (limit 192 MiB, another 96 MiB): after the two madvise steps both grids "
        f"are all lazily freed, RSS and LazyFree {_mib(r[5].rss_pages):.4g} MiB.",
        f"At the pressure step the first {_n(old6)} of old turn reclaimed (the top rows of its grid) "
        + ("and new keeps every page" if new6 == 0 else f"and {_n(new6)} of new")
        + f": RSS and LazyFree {_mib(r[6].rss_pages):.4g} MiB, and the budget is full.",
        f"Reading new then returns {r[7].zero_pages:,} zero pages with {r[7].faults:,} faults; "
        f"reading old takes {r[8].faults:,} faults and returns {r[8].zero_pages:,} pages of "
        f"zeros, mapped to the zero page, so RSS stays {_mib(r[8].rss_pages):.4g} MiB; writing new "
        f"cancels its free with "
        f"{r[9].faults:,} faults, and LazyFree falls to {_mib(r[9].lazyfree_pages):.4g} MiB, the "
        f"survivors of old.",
    ]
    big = run(256, 96)
    n = reclaimed(big.snapshots[6], "old") + reclaimed(big.snapshots[6], "new")
    text.append("With a 256 MiB limit the 96 MiB fits and " +
                ("nothing is reclaimed." if n == 0 else f"only {_n(n)} are reclaimed."))
    big = run(192, 160)
    s6 = big.snapshots[6]
    last = big.snapshots[-1]
    text.append(f"With 160 MiB more under 192 MiB, reclaim takes {_n(reclaimed(s6, 'old'))} of old "
                f"and {_n(reclaimed(s6, 'new'))} of new"
                + (f", and the final write to new ends in an OOM kill at step {last.step}: its "
                   f"reclaimed pages need new ones, and reclaim takes the rest of new from under the "
                   f"write." if last.result.error == "OOM_KILL" else "."))
    small = run(144, 160)
    last = small.snapshots[-1]
    if last.result.error == "OOM_KILL":
        text.append(f"With 160 MiB more under a 144 MiB limit the allocation cannot fit even with "
                    f"every lazily freed page gone: the process is OOM-killed at step {last.step}.")
    return " ".join(text)


def limit_summary() -> str:
    """The OOM-point figure's text summary, computed from the model."""
    s = limit_sweep(192, 50, "MADV_FREE", "6.18")
    first = int(s.second_mib[np.flatnonzero(s.reclaimed_mib > 0)[0]])
    fit = s.largest_fit_mib
    text = [
        "The x axis is the size of the second allocation, 0 to 256 MiB in steps of 8 MiB; the y "
        "axis is memory in MiB. Lines show the heap's RSS, its lazily freed part, the pages "
        "reclaimed so far, the second allocation, and heap RSS plus the allocation; a dashed line "
        "marks the limit, and a red band covers the sizes that end in an OOM kill.",
        f"With the defaults (limit 192 MiB, 50 % of the 128 MiB heap freed with MADV_FREE, Linux "
        f"4.12 or later), RSS stays at {s.rss_before_mib:.4g} MiB up to a {first - 8} MiB allocation; "
        f"from {first} MiB on, reclaim starts and RSS falls by about 1 MiB per MiB of allocation, "
        f"down to {np.nanmin(s.heap_rss_mib):.4g} MiB at {fit} MiB, the largest allocation that "
        f"fits; from {fit + 8} MiB on, the process is OOM-killed"
        + (" (exactly at the limit the model, without page tables, still fits; a real kernel would "
           "not)." if s.live_mib + fit == 192 else "."),
    ]
    parts = []
    for share in (0, 100):
        t = limit_sweep(192, share, "MADV_FREE", "6.18")
        parts.append(f"with {share} % freed the largest allocation that fits is {t.largest_fit_mib} MiB")
    text.append("Under the same limit, " + "; ".join(parts) + ".")
    dn = limit_sweep(192, 50, "MADV_DONTNEED", "6.18")
    text.append(f"With MADV_DONTNEED, RSS starts at {dn.rss_before_mib:.4g} MiB, nothing is ever "
                f"reclaimed, and the largest allocation that fits is {dn.largest_fit_mib} MiB"
                + (", the same as with MADV_FREE." if dn.largest_fit_mib == fit else "."))
    k49 = limit_sweep(192, 50, "MADV_FREE", "4.9")
    k44 = limit_sweep(192, 50, "MADV_FREE", "4.4")
    text.append(f"On Linux 4.9 without swap, MADV_FREE is applied as {k49.acts_as} and gives that "
                f"picture; on Linux 4.4 it fails with {k44.madvise_error}, nothing is released, and "
                f"the largest allocation that fits is {k44.largest_fit_mib} MiB. Moving the limit "
                f"moves every threshold by the same amount.")
    return " ".join(text)


def metrics_summary() -> str:
    """The metrics figure's text summary, computed from the model."""
    a = metrics_model(50, 0, 0)[2]
    b = metrics_model(50, 50, 0)[3]
    c = metrics_model(50, 50, 88)[4]
    z = metrics_model(0, 0, 0)[4]
    k = metrics_model(0, 0, 88)
    return " ".join([
        "Six bars in MiB: process RSS, LazyFree, cgroup usage, cgroup rss, inactive_file and the "
        "working set (the last four hatched: derived), with a dashed line at the memory the program "
        f"really uses (written pages plus the other allocation), under a {METRICS_LIMIT_MIB} MiB limit.",
        f"Freeing 50 % of the 128 MiB heap: RSS, usage and rss stay at {a.smaps_rss:.4g}, LazyFree "
        f"and inactive_file read {a.inactive_file:.4g}, and the working set drops at once to "
        f"{a.working_set:.4g}, the live memory.",
        f"Writing half of the freed part again: LazyFree falls to {b.smaps_lazyfree:.4g} and live "
        f"memory rises to {b.true_live:.4g}, but inactive_file stays at {b.inactive_file:.4g}, so the "
        f"working set stays at {b.working_set:.4g}, an under-count of "
        f"{b.true_live - b.working_set:.4g} MiB.",
        f"Then 88 MiB of pressure: reclaim discards {c.reclaimed:.4g} MiB of the clean pages; RSS "
        f"{c.smaps_rss:.4g}, LazyFree {c.smaps_lazyfree:.4g}, usage {c.usage:.4g}, inactive_file "
        f"{c.inactive_file:.4g} (the pages written again are still counted there), and the working set "
        f"{c.working_set:.4g} against {c.true_live:.4g} really in use.",
        f"With nothing freed, RSS, usage, rss and the working set all equal the live "
        f"{z.smaps_rss:.4g} MiB"
        + (", and 88 MiB of pressure ends in an OOM kill." if k[-1].error == "OOM_KILL" else "."),
    ])


# ================================================================== the generated quiz

#: The seed of the chapter's generated exercise (``models.quiz``, topic "reclaim").
QUIZ_SEED = 1


def quiz_pagemap(seed: int = QUIZ_SEED) -> Explorable:
    """The page map of a "reclaim" quiz's scenario, for its solution (at most 64 cells a region),
    starting at the pressure step; only the first grid carries page labels (the regions differ in
    size, and a second set of labels would run into the first grid)."""
    from models import quiz
    from models.viz import pagemap as pm
    q = quiz.generate(seed, "reclaim")
    scenario = q.scenario
    pressure = next(i for i, st in enumerate(scenario.steps) if st.op == "pressure")
    title = f"Quiz reclaim #{seed}: the answer on the page map"

    def figure(step: int) -> go.Figure:
        fig = pm.pagemap_figure(scenario, step, max_cells=64, kernel_version=q.kernel_version,
                                swap=q.swap, title=title)
        fig.update_yaxes(showticklabels=False, row=1, col=2)
        return fig

    def describe(step: int) -> str:
        run = pm.snapshots(scenario, kernel_version=q.kernel_version, swap=q.swap)
        return pm.describe_pagemap_step(run, min(step, len(run.snapshots) - 1))

    slider = Slider(range(len(scenario.steps)), label="step", default=pressure)
    slider = dataclasses.replace(slider, labels=tuple(f"{i}: {pm.describe_step(st)}"
                                                      for i, st in enumerate(scenario.steps)))
    return Explorable(figure, title=title, describe=describe, step=slider)


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
#: then new read, old read, new written (the E8 question: does the write fault?).  The order of
#: the reads is explained in :func:`two_regions_scenario`.
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
        {"op": "touch", "region": "new", "offset": 0, "length": "64MiB", "access": "read"},
        {"op": "touch", "region": "old", "offset": 0, "length": "64MiB", "access": "read"},
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
            f"{k[8].zero_pages:,} pages read as zeros with {k[8].faults:,} faults on the kernel "
            f"({m[8].zero_pages:,} and {m[8].faults:,} in the model); reading new before it: "
            f"{k[7].zero_pages:,} zero pages. Writing the lazily freed pages of new that survived "
            f"the reclaim took {k[9].faults:,} faults on the kernel (model {m[9].faults:,}).")


# ================================================================== the metrics on the real kernel

#: The child that runs the metrics program on the kernel: stdlib only, so that it starts fast and
#: charges little; it reports smaps Rss/LazyFree of its heap after each command.
_METRICS_CHILD = r"""
import ctypes, mmap, os, sys
PAGE = 4096
libc = ctypes.CDLL(None, use_errno=True)
libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
MADV_FREE, MADV_NOHUGEPAGE, MADV_COLD = 8, 15, 20
cpu = libc.sched_getcpu()
if cpu >= 0:
    os.sched_setaffinity(0, {cpu})   # every LRU batch we fill is on the CPU we drain
scratch = mmap.mmap(-1, PAGE)
scratch[0] = 1
scratch_addr = ctypes.addressof(ctypes.c_char.from_buffer(scratch))
maps = {}
def addr(buf):
    return ctypes.addressof(ctypes.c_char.from_buffer(buf))
def smaps(lo, hi):
    libc.madvise(scratch_addr, PAGE, MADV_COLD)   # lru_add_drain(): LazyFree exact (K4)
    rss = lazy = 0
    cur = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(" ", 1)[0]
            if "-" in head and not head.endswith(":"):
                a, b = (int(x, 16) for x in head.split("-"))
                cur = a < hi and b > lo
            elif cur and line.startswith("Rss:"):
                rss += int(line.split()[1])
            elif cur and line.startswith("LazyFree:"):
                lazy += int(line.split()[1])
    return rss, lazy
def write(buf, off, length):
    for o in range(off, off + length, PAGE):
        buf[o] = 0xAB
for _ in range(3):
    smaps(0, 1)
print("ready", flush=True)
for line in sys.stdin:
    cmd, *args = line.split()
    n = [int(x) for x in args]
    if cmd == "mmap":
        # [guard][heap][guard]: PROT_NONE guards keep the heap a VMA of its own (FACTS E5)
        heap = mmap.mmap(-1, n[0] + 2 * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        base = addr(heap) + PAGE
        libc.mprotect(ctypes.c_void_p(base - PAGE), PAGE, 0)
        libc.mprotect(ctypes.c_void_p(base + n[0]), PAGE, 0)
        heap_len = n[0]
        libc.madvise(base, n[0], MADV_NOHUGEPAGE)   # 4 KiB pages
    elif cmd == "write":
        write(heap, PAGE + n[0], n[1])
    elif cmd == "free":
        if n[1] and libc.madvise(base + n[0], n[1], MADV_FREE) != 0:
            print("error", ctypes.get_errno(), flush=True)
            continue
    elif cmd == "pressure":
        other = mmap.mmap(-1, n[0], flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        libc.madvise(addr(other), n[0], MADV_NOHUGEPAGE)
        write(other, 0, n[0])
    rss, lazy = smaps(base, base + heap_len) if "heap" in globals() else (0, 0)
    print("ok", rss, lazy, flush=True)
"""


@dataclass(frozen=True)
class MeasuredMetrics:
    """The metrics program run on a kernel in a memory cgroup (MiB above the cgroup's baseline)."""

    share_percent: int
    rewritten_percent: int
    pressure_mib: int
    rows: tuple            # per step: dict of smaps_rss, smaps_lazyfree, usage, cgroup_rss,
    #                        inactive_file, working_set (MiB), error (None / "OOM_KILL")
    kernel_release: str
    cgroup_version: int
    recorded_at: str
    live: bool = True
    reason: str = ""

    def to_json(self) -> dict:
        return {"format": 1, "kind": "ch05-cgroup-metrics", "share_percent": self.share_percent,
                "rewritten_percent": self.rewritten_percent, "pressure_mib": self.pressure_mib,
                "rows": list(self.rows), "kernel_release": self.kernel_release,
                "cgroup_version": self.cgroup_version, "recorded_at": self.recorded_at}


METRICS_RECORD_ID = "ch05-metrics"
_METRIC_KEYS = ("smaps_rss", "smaps_lazyfree", "usage", "cgroup_rss", "inactive_file", "working_set")


def measure_metrics(share_percent: int = 50, rewritten_percent: int = 50,
                    pressure_mib: int = 88) -> MeasuredMetrics:
    """Run the metrics program on this kernel, in a memory cgroup of our own (child of ours,
    always removed), limited to its baseline + 192 MiB; read ``memory.stat`` after each step.

    ``usage`` is ``memory.usage_in_bytes`` (v2 ``memory.current``), ``cgroup_rss`` v1
    ``total_rss`` (v2 ``anon``), ``inactive_file`` v1 ``total_inactive_file`` (v2
    ``inactive_file``), all minus their values before the first step; ``working_set`` is
    usage - inactive_file, as cAdvisor computes it.  Raises OSError where no memory cgroup
    can be made (not Linux, not root...).
    """
    import datetime
    import subprocess
    import sys

    from models.realkernel.cgroup import MemoryCgroup, cgroup_support
    metrics_model(share_percent, rewritten_percent, pressure_mib)      # validates the parameters
    ok, why = cgroup_support()
    if not ok:
        raise OSError(why)
    heap = HEAP_MIB * MiB
    freed_pages = HEAP_MIB * PAGES_PER_MIB * share_percent // 100
    freed = freed_pages * PAGE_SIZE
    rewritten = freed_pages * rewritten_percent // 100 * PAGE_SIZE
    commands = [f"mmap {heap}", f"write 0 {heap}", f"free {heap - freed} {freed}",
                f"write {heap - freed} {rewritten}", f"pressure {pressure_mib * MiB}"]
    if not pressure_mib:
        commands[-1] = "noop"

    def stat(cg) -> dict:
        st = cg.stat()
        return {"usage": cg.usage_bytes(),
                "cgroup_rss": st.get("total_rss", st.get("anon", 0)),
                "inactive_file": st.get("total_inactive_file", st.get("inactive_file", 0))}

    rows = []
    with MemoryCgroup(prefix="membook-ch05") as cg:
        child = subprocess.Popen([sys.executable, "-c", _METRICS_CHILD], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        try:
            if child.stdout.readline().split() != ["ready"]:
                raise OSError("the metrics child did not start")
            cg.add_process(child.pid)
            child.stdin.write("noop\n")
            child.stdin.flush()
            child.stdout.readline()
            base = stat(cg)
            cg.set_limit(base["usage"] + METRICS_LIMIT_MIB * MiB)
            for cmd in commands:
                child.stdin.write(cmd + "\n")
                child.stdin.flush()
                reply = child.stdout.readline().split()
                if not reply:
                    child.wait(timeout=10)
                    error = "OOM_KILL" if cg.oom_kills() else f"child exited ({child.returncode})"
                    rows.append({**{k: 0.0 for k in _METRIC_KEYS}, "error": error})
                    break
                if reply[0] != "ok":
                    raise OSError(f"the metrics child failed at {cmd!r}: {' '.join(reply)}")
                now = stat(cg)
                row = {k: round((now[k] - base[k]) / MiB, 1) for k in ("usage", "cgroup_rss", "inactive_file")}
                row["working_set"] = round(row["usage"] - row["inactive_file"], 1)
                row["smaps_rss"] = round(int(reply[1]) / 1024, 1)
                row["smaps_lazyfree"] = round(int(reply[2]) / 1024, 1)
                row["error"] = None
                rows.append(row)
        finally:
            if child.poll() is None:
                child.stdin.close()
                child.wait(timeout=10)
        version = cg.version
    return MeasuredMetrics(share_percent, rewritten_percent, pressure_mib, tuple(rows),
                           os.uname().release, version,
                           datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat())


def metrics_on_kernel(share_percent: int = 50, rewritten_percent: int = 50, pressure_mib: int = 88,
                      force_recorded: Optional[bool] = None) -> MeasuredMetrics:
    """:func:`measure_metrics` here if possible, else the recording in ``book/recorded/``
    (labelled, with the reason).  ``BOOK_RECORD=1`` rewrites the recording after a live run."""
    import json

    from models.viz.kernel_cell import FORCE_RECORDED_ENV, RECORD_ENV, record_path
    if force_recorded is None:
        force_recorded = os.environ.get(FORCE_RECORDED_ENV, "") == "1"
    reason = "the recording was asked for" if force_recorded else ""
    if not force_recorded:
        try:
            live = measure_metrics(share_percent, rewritten_percent, pressure_mib)
        except (OSError, ValueError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        else:
            if os.environ.get(RECORD_ENV, "") == "1":
                record_path(METRICS_RECORD_ID).write_text(json.dumps(live.to_json(), indent=1) + "\n")
            return live
    obj = json.loads(record_path(METRICS_RECORD_ID).read_text())
    if (obj["share_percent"], obj["rewritten_percent"], obj["pressure_mib"]) != \
            (share_percent, rewritten_percent, pressure_mib):
        raise ModelInputError(f"book/recorded/{METRICS_RECORD_ID}.json holds another combination; "
                              f"re-record it with BOOK_RECORD=1")
    return MeasuredMetrics(obj["share_percent"], obj["rewritten_percent"], obj["pressure_mib"],
                           tuple(obj["rows"]), obj["kernel_release"], obj["cgroup_version"],
                           obj["recorded_at"], live=False, reason=reason)


class MetricsTable:
    """Measured cgroup metrics beside the model's; displays as an HTML table."""

    def __init__(self, measured: MeasuredMetrics):
        self.measured = measured
        self.model = metrics_model(measured.share_percent, measured.rewritten_percent,
                                   measured.pressure_mib)

    def source(self) -> str:
        m = self.measured
        where = (f"measured on Linux {m.kernel_release} (cgroup v{m.cgroup_version}) on {m.recorded_at[:10]}"
                 + ("" if m.live else ", recorded on this book's build machine"))
        return where + (f". Not run live here: {m.reason}" if m.reason else "")

    def rows(self):
        for i, meas in enumerate(self.measured.rows):
            model = self.model[i] if i < len(self.model) else None
            yield i, meas, model

    def max_difference(self) -> float:
        """Largest |kernel - model| over the steps both ran, in MiB."""
        worst = 0.0
        for _, meas, model in self.rows():
            if model is None or meas["error"] or model.error:
                continue
            worst = max(worst, max(abs(meas[k] - getattr(model, k)) for k in _METRIC_KEYS))
        return worst

    def _repr_html_(self) -> str:
        import html as _html
        short = ("RSS (smaps)", "LazyFree (smaps)", "cgroup usage", "cgroup rss", "inactive_file",
                 "working set")
        steps = ("mmap", "write all", "MADV_FREE", "write again", "pressure")
        head = "".join(f"<th>{_html.escape(label)}</th>" for label in short)
        body = []
        for i, meas, model in self.rows():
            cells = []
            for key, _, _ in METRICS:
                k = "killed" if meas["error"] else f"{meas[key]:g}"
                m = "-" if model is None or model.error else f"{getattr(model, key):.4g}"
                cells.append(f"<td>{k} / {m}</td>")
            err = f" ({_html.escape(meas['error'])})" if meas["error"] else ""
            body.append(f"<tr><td>{i}: {steps[i]}{err}</td>{''.join(cells)}</tr>")
        return (f"<p><strong>Kernel: {_html.escape(self.source())}.</strong> Each cell: kernel / "
                f"model, in MiB above the cgroup's baseline; the model column uses the accounting "
                f"of the figure above.</p><table class='kernel-vs-model' style='font-size:0.85em'>"
                f"<thead><tr><th>step</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
                f"<p>Largest difference between kernel and model: {self.max_difference():.1f} MiB.</p>")

    def __repr__(self) -> str:
        lines = [f"Kernel: {self.source()}"]
        for i, meas, model in self.rows():
            k = " ".join(f"{meas[key]:>6g}" for key in _METRIC_KEYS)
            m = "" if model is None else " ".join(f"{getattr(model, key):>6g}" for key in _METRIC_KEYS)
            lines.append(f"{i}: {k} | {m} {meas['error'] or ''}")
        return "\n".join(lines)


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
           "QUIZ_SEED", "pagemap_summary", "limit_summary", "metrics_summary", "measure_metrics", "metrics_on_kernel", "MetricsTable"]

#: The chapter's quiz page map (seed QUIZ_SEED), for its solution.
quiz_reclaim_pagemap = quiz_pagemap()
