"""The page map: the book's signature figure.

The pages of each region of a scenario drawn as a grid of cells (page 0 top left, row-major),
each cell coloured by its page state, with a time slider that steps through the scenario and
counters beside the grid (RSS, LazyFree, zero-page mappings, faults in the step and so far).

* :func:`snapshots` plays any scenario the runner accepts (a ``Scenario``, a library name, a
  file path or a JSON dict) on the page model (``models.kernel.replay.iter_play``) and keeps a
  compact copy of every region's page states after each step.
* :func:`aggregate` folds a region's pages into at most ``max_cells`` cells when there are too
  many to draw one cell per page: a cell's colour is its majority state, its hover text the
  per-state counts and the page range.
* :func:`pagemap_figure` draws one step; :func:`pagemap_text` is the sentence per step for
  screen readers and print.
* :func:`pagemap_explorable` is the factory chapters use::

      pagemap_explorable("read-then-write")                      # a library scenario
      pagemap_explorable(lambda first: make_scenario(first),     # extra controls
                         first=Dropdown({"read first": "read", "write first": "write"}))

The states are the kernel model's own (:class:`models.kernel.PageState`, FACTS 1-2, 11-13, E7)
plus "not mapped" for pages of a region that is not (or no longer) mapped at that step.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Mapping, Optional, Union

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from models.errors import ModelInputError
from models.kernel.pages import PageState
from models.scenario.format import Scenario, StepResult
from models.units import PAGE_SIZE
from models.viz import COLORS
from models.viz.explorable import Control, Explorable, Slider

MiB = 1 << 20

#: Cell codes: the model's PageState values, plus a region's pages that are not mapped.
NOT_MAPPED = len(PageState)            # 6
N_CODES = NOT_MAPPED + 1
_PAD = N_CODES                         # padding of the last cell; never counted

#: Legend words for each code (the kernel's words, then plain English).
STATE_LABELS = {
    int(PageState.NOT_PRESENT): "not present (no page-table entry)",
    int(PageState.ZERO_PAGE): "zero page (read, not in RSS)",
    int(PageState.RESIDENT): "resident (in RSS)",
    int(PageState.LAZYFREE): "lazily freed (MADV_FREE, still in RSS)",
    int(PageState.RECLAIMED): "reclaimed (dropped by the kernel)",
    int(PageState.SWAPPED): "swapped out",
    NOT_MAPPED: "not mapped",
}
#: Short words for hover text and summaries.
STATE_SHORT = {
    int(PageState.NOT_PRESENT): "not present",
    int(PageState.ZERO_PAGE): "zero page",
    int(PageState.RESIDENT): "resident",
    int(PageState.LAZYFREE): "lazily freed",
    int(PageState.RECLAIMED): "reclaimed",
    int(PageState.SWAPPED): "swapped",
    NOT_MAPPED: "not mapped",
}
STATE_COLORS = {
    int(PageState.NOT_PRESENT): COLORS["reserved"],
    int(PageState.ZERO_PAGE): COLORS["zero_page"],
    int(PageState.RESIDENT): COLORS["resident"],
    int(PageState.LAZYFREE): COLORS["lazyfree"],
    int(PageState.RECLAIMED): COLORS["free"],
    int(PageState.SWAPPED): "#882255",
    NOT_MAPPED: "#FFFFFF",
}
#: Default bound on the cells of one region's grid (32 x 32).
MAX_CELLS = 1024
#: Largest grid a caller may ask for (64 x 64 cells).
MAX_CELLS_LIMIT = 4096

ScenarioLike = Union[Scenario, str, Mapping]


# --------------------------------------------------------------------------- scenarios

def as_scenario(scenario: ScenarioLike) -> Scenario:
    """A :class:`Scenario` from a Scenario, a library name or file path, or a JSON dict."""
    from models import scenario as lib

    if isinstance(scenario, Scenario):
        return scenario
    if isinstance(scenario, str):
        return lib.resolve(scenario)
    if isinstance(scenario, Mapping):
        return lib.parse_scenario(dict(scenario))
    raise ModelInputError(f"scenario must be a Scenario, a library name/path or a JSON dict, "
                          f"got {type(scenario).__name__}")


def format_size(nbytes: int) -> str:
    """Exact binary size in the largest unit that keeps it short: ``256 KiB``, ``1.5 MiB``, ``0``."""
    if nbytes == 0:
        return "0"
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(nbytes) >= factor:
            return f"{nbytes / factor:.4g} {unit}"
    return f"{int(nbytes)} B"


def describe_step(step) -> str:
    """A short description of one step ("write heap [256 KiB, +512 KiB)")."""
    if step.op == "mmap":
        return f"mmap {step.region} {format_size(step.length)}{' shared' if step.shared else ''}"
    if step.op == "munmap":
        return f"munmap {step.region}"
    if step.op == "touch":
        return f"{step.access} {step.region} {format_size(step.offset)}-{format_size(step.offset + step.length)}"
    if step.op == "madvise":
        return f"{step.advice} {step.region} offset {step.offset}, {format_size(step.length)}"
    return f"pressure: another allocation of {format_size(step.length)}"


# --------------------------------------------------------------------------- snapshots

@dataclass(frozen=True)
class Snapshot:
    """The model after one step: its result row and every region's page codes."""

    step: int
    description: str
    result: StepResult
    faults_so_far: int
    states: Mapping[str, np.ndarray]   # region -> uint8 codes, padded with NOT_MAPPED to its max size

    def count(self, code: int, region: Optional[str] = None) -> int:
        regions = [region] if region is not None else list(self.states)
        return sum(int(np.count_nonzero(self.states[r] == code)) for r in regions)


@dataclass(frozen=True)
class PageMapRun:
    """A whole scenario played on the model, snapshot per executed step."""

    scenario: Scenario
    kernel_version: str
    swap: bool
    regions: tuple[str, ...]            # in order of first mmap
    region_pages: Mapping[str, int]     # largest size each region ever had, in pages
    snapshots: tuple[Snapshot, ...]

    @property
    def ended_early(self) -> bool:
        return len(self.snapshots) < len(self.scenario.steps)


def _region_sizes(scenario: Scenario) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for step in scenario.steps:
        if step.op == "mmap":
            pages = -(-step.length // PAGE_SIZE)
            sizes[step.region] = max(sizes.get(step.region, 0), pages)
    return sizes


def snapshots(scenario: ScenarioLike, *, kernel_version: str = "6.18", swap: bool = False) -> PageMapRun:
    """Play ``scenario`` on the page model and snapshot every region after every step."""
    return _snapshots_cached(as_scenario(scenario), str(kernel_version), bool(swap))


@lru_cache(maxsize=64)
def _snapshots_cached(scenario: Scenario, kernel_version: str, swap: bool) -> PageMapRun:
    from models.kernel.replay import iter_play

    sizes = _region_sizes(scenario)
    if not sizes:
        raise ModelInputError("scenario has no mmap step: there is no region to draw")
    out = []
    total = 0
    for result, space in iter_play(scenario, kernel_version=kernel_version, swap=swap):
        total += result.faults
        states = {}
        for region, npages in sizes.items():
            codes = np.full(npages, NOT_MAPPED, dtype=np.uint8)
            if region in space.regions and not (result.error == "OOM_KILL"):
                live = np.asarray(space.states(region))
                codes[:live.size] = live
            states[region] = codes
        out.append(Snapshot(result.step, describe_step(scenario.steps[result.step]), result,
                            total, states))
    return PageMapRun(scenario, kernel_version, swap, tuple(sizes), dict(sizes), tuple(out))


# --------------------------------------------------------------------------- aggregation

@dataclass(frozen=True)
class Cells:
    """A region folded into a grid of cells."""

    pages_per_cell: int
    rows: int
    cols: int
    codes: np.ndarray        # (rows, cols) majority code per cell; -1 where the grid has no cell
    counts: np.ndarray       # (rows * cols, N_CODES) pages of each code per cell
    first_page: np.ndarray   # (rows * cols,) first page of each cell (-1: no cell)
    last_page: np.ndarray    # (rows * cols,) last page of each cell, inclusive (-1: no cell)


def grid_shape(npages: int, max_cells: int = MAX_CELLS) -> tuple[int, int, int]:
    """(pages per cell, rows, cols) for a region of ``npages`` pages: a near-square grid."""
    if isinstance(npages, bool) or not isinstance(npages, (int, np.integer)) or npages < 1:
        raise ModelInputError(f"npages must be a whole number >= 1, got {npages!r}")
    if isinstance(max_cells, bool) or not isinstance(max_cells, (int, np.integer)) \
            or not 1 <= max_cells <= MAX_CELLS_LIMIT:
        raise ModelInputError(f"max_cells must be a whole number in 1..{MAX_CELLS_LIMIT}, got {max_cells!r}")
    per_cell = -(-int(npages) // int(max_cells))
    ncells = -(-int(npages) // per_cell)
    cols = math.ceil(math.sqrt(ncells))
    rows = -(-ncells // cols)
    return per_cell, rows, cols


def aggregate(codes: np.ndarray, max_cells: int = MAX_CELLS) -> Cells:
    """Fold per-page codes into at most ``max_cells`` cells (majority colour; ties: lower code)."""
    codes = np.asarray(codes)
    if codes.ndim != 1 or codes.size == 0:
        raise ModelInputError(f"codes must be a non-empty 1-D array of page codes, got shape {codes.shape}")
    if codes.min() < 0 or codes.max() >= N_CODES:
        raise ModelInputError(f"page codes must be in 0..{N_CODES - 1}, got {codes.min()}..{codes.max()}")
    per_cell, rows, cols = grid_shape(codes.size, max_cells)
    slots = rows * cols * per_cell
    padded = np.full(slots, _PAD, dtype=np.int64)
    padded[:codes.size] = codes
    per = padded.reshape(rows * cols, per_cell)
    counts = np.stack([(per == c).sum(axis=1) for c in range(N_CODES)], axis=1)
    majority = counts.argmax(axis=1)
    page = np.arange(rows * cols) * per_cell
    has_cell = page < codes.size
    majority = np.where(has_cell, majority, -1)
    first = np.where(has_cell, page, -1)
    last = np.where(has_cell, np.minimum(page + per_cell, codes.size) - 1, -1)
    return Cells(per_cell, rows, cols, majority.reshape(rows, cols), counts, first, last)


def _cell_text(cells: Cells) -> list[list[str]]:
    """Per-cell hover text: the pages of each state in the cell."""
    text = []
    for r in range(cells.rows):
        row = []
        for c in range(cells.cols):
            i = r * cells.cols + c
            if cells.first_page[i] < 0:
                row.append("")
                continue
            parts = [f"{n} {STATE_SHORT[code]}" for code, n in enumerate(cells.counts[i]) if n]
            row.append(", ".join(parts))
        text.append(row)
    return text


# --------------------------------------------------------------------------- the figure

def _colorscale() -> list:
    scale = []
    for code in range(N_CODES):
        lo, hi = code / N_CODES, (code + 1) / N_CODES
        scale += [[lo, STATE_COLORS[code]], [hi, STATE_COLORS[code]]]
    return scale


def counters(run: PageMapRun, step: int) -> dict[str, Any]:
    """The counters shown beside the grid after ``step`` (the model's own observations)."""
    snap = run.snapshots[min(step, len(run.snapshots) - 1)]
    r = snap.result
    return {"rss_pages": r.rss_pages, "lazyfree_pages": r.lazyfree_pages,
            "zero_page_pages": snap.count(int(PageState.ZERO_PAGE)),
            "faults": r.faults, "faults_so_far": snap.faults_so_far,
            "zero_pages_read": r.zero_pages, "error": r.error}


def _pages_mib(pages: int) -> str:
    return f"{pages:,} pages ({pages * PAGE_SIZE / MiB:.4g} MiB)"


def _check_step(run: PageMapRun, step) -> int:
    n = len(run.scenario.steps)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or not 0 <= step < n:
        raise ModelInputError(f"step must be a whole number in 0..{n - 1} (the scenario's steps), got {step!r}")
    return int(step)


def _status(run: PageMapRun, step: int) -> str:
    """The subtitle: what this step did (or why it did not run)."""
    if step < len(run.snapshots):
        snap = run.snapshots[step]
        text = f"after step {step}: {snap.description}"
        if snap.result.error:
            text += f" -> {snap.result.error}"
        return text
    last = run.snapshots[-1]
    why = "the process was OOM-killed" if last.result.error == "OOM_KILL" else "the scenario stopped"
    return (f"step {step} ({describe_step(run.scenario.steps[step])}) did not run: {why} at step "
            f"{last.step}; showing the state after it")


#: Font size (px) of a grid's row labels ("page 4,096").
TICK_FONT_PX = 10
#: The narrowest figure (px) the grids are laid out for: the book's text column on a small laptop.
#: Plotly places subplots in fractions of the figure's width but draws tick labels in pixels, so
#: the room between two grids is sized for this width; wider figures only get more room.
NARROW_WIDTH_PX = 640
_MARGIN_RIGHT_PX = 10
_MIN_SPACING = 0.04


def row_ticks(cells: Cells) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """The labelled rows of a grid (about four) and their labels: the first page of the row."""
    every = max(1, cells.rows // 4)
    rows = tuple(range(cells.rows))[::every]
    return rows, tuple(f"page {r * cells.cols * cells.pages_per_cell:,}" for r in rows)


def label_width_px(labels, font_px: int = TICK_FONT_PX) -> float:
    """A generous width of the widest label: 0.62 em per character (Arial digits are 0.556 em,
    letters at most 0.61) plus the axis's tick gap."""
    return max((len(t) for t in labels), default=0) * 0.62 * font_px + 8


def grid_spacing(labels_per_grid, width_px: int = NARROW_WIDTH_PX) -> tuple[int, float]:
    """(left margin in px, horizontal spacing as a fraction of the plot width) so that each grid's
    row labels fit left of it: the first grid's in the margin, every other grid's in the gap after
    its left neighbour (otherwise they are drawn over it)."""
    labels_per_grid = list(labels_per_grid)
    left = max(80, math.ceil(label_width_px(labels_per_grid[0]) + 6)) if labels_per_grid else 80
    plot_px = width_px - left - _MARGIN_RIGHT_PX
    gap = max((label_width_px(lab) + 6 for lab in labels_per_grid[1:] if lab), default=0)
    return left, round(max(_MIN_SPACING, gap / plot_px), 4)


def pagemap_figure(scenario: ScenarioLike, step: int = 0, *, max_cells: int = MAX_CELLS,
                   kernel_version: str = "6.18", swap: bool = False, title: Optional[str] = None,
                   legend_codes: Optional[tuple[int, ...]] = None) -> go.Figure:
    """The page map of ``scenario`` after ``step`` (0-based): one grid per region, counters beside."""
    run = snapshots(scenario, kernel_version=kernel_version, swap=swap)
    step = _check_step(run, step)
    snap = run.snapshots[min(step, len(run.snapshots) - 1)]
    nreg = len(run.regions)
    grids = {region: aggregate(snap.states[region], max_cells) for region in run.regions}
    ticks = {region: row_ticks(cells) for region, cells in grids.items()}
    # a grid repeats its left neighbour's row labels when they are the same (equal sizes)
    labelled = {region: i == 0 or ticks[region] != ticks[run.regions[i - 1]]
             for i, region in enumerate(run.regions)}
    left_px, spacing = grid_spacing([ticks[r][1] if labelled[r] else () for r in run.regions])
    fig = make_subplots(rows=1, cols=nreg + 1,
                        column_widths=[0.64 / nreg] * nreg + [0.36],
                        specs=[[{"type": "xy"}] * nreg + [{"type": "table"}]],
                        horizontal_spacing=spacing,
                        subplot_titles=[f"{name}: {format_size(run.region_pages[name] * PAGE_SIZE)}"
                                        for name in run.regions] + [""])
    scale = _colorscale()
    for i, region in enumerate(run.regions, start=1):
        cells = grids[region]
        z = [[None if v < 0 else int(v) for v in row] for row in cells.codes]
        first = cells.first_page.reshape(cells.rows, cells.cols)
        last = cells.last_page.reshape(cells.rows, cells.cols)
        custom = np.stack([first, last, first * (PAGE_SIZE // 1024)], axis=-1)
        unit = "page" if cells.pages_per_cell == 1 else "pages"
        fig.add_trace(go.Heatmap(
            z=z, zmin=-0.5, zmax=N_CODES - 0.5, colorscale=scale, showscale=False, xgap=1, ygap=1,
            customdata=custom.tolist(), text=_cell_text(cells), name=region,
            hovertemplate=(f"{region}: pages %{{customdata[0]}}-%{{customdata[1]}} "
                           f"(from offset %{{customdata[2]}} KiB)<br>%{{text}}<extra></extra>"
                           if cells.pages_per_cell > 1 else
                           f"{region}: page %{{customdata[0]}} (offset %{{customdata[2]}} KiB)"
                           f"<br>%{{text}}<extra></extra>")), row=1, col=i)
        fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain",
                         title_text=f"1 cell = {cells.pages_per_cell} {unit} "
                                    f"({format_size(cells.pages_per_cell * PAGE_SIZE)})",
                         title_font_size=11, row=1, col=i)
        fig.update_yaxes(autorange="reversed", showgrid=False, zeroline=False, scaleanchor=f"x{'' if i == 1 else i}",
                         tickvals=list(ticks[region][0]), ticktext=list(ticks[region][1]),
                         tickfont_size=TICK_FONT_PX, showticklabels=labelled[region], row=1, col=i)
    c = counters(run, step)
    names = ["RSS", "LazyFree", "zero page", "faults (step)", "faults (total)", "zeros read",
             "error"]
    values = [_pages_mib(c["rss_pages"]), _pages_mib(c["lazyfree_pages"]),
              _pages_mib(c["zero_page_pages"]), f"{c['faults']:,}", f"{c['faults_so_far']:,}",
              "-" if c["zero_pages_read"] is None else f"{c['zero_pages_read']:,} pages",
              c["error"] or "none"]
    fig.add_trace(go.Table(
        columnwidth=[0.38, 0.62],
        header=dict(values=["counter", "value"], align="left", fill_color="#EEEEEE", height=22,
                    font_size=12),
        cells=dict(values=[names, values], align="left", height=22, font_size=12)),
        row=1, col=nreg + 1)
    # the wide gaps are for row labels; the counters table needs only the usual one
    grid_end = fig.layout[f"xaxis{nreg if nreg > 1 else ''}"].domain[1]
    fig.data[-1].domain.x = (grid_end + _MIN_SPACING, 1.0)
    shown = legend_codes if legend_codes is not None else _legend_codes(run)
    for code in shown:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=STATE_LABELS[code],
                                 marker=dict(symbol="square", size=13, color=STATE_COLORS[code],
                                             line=dict(color="#666666", width=1)),
                                 showlegend=True, hoverinfo="skip"), row=1, col=1)
    head = title or (run.scenario.name or "scenario")
    fig.update_layout(
        height=500, margin=dict(t=90, b=110, l=left_px, r=10),
        plot_bgcolor="#FFFFFF",
        title=dict(text=f"{head}<br><sup>{_status(run, step)}</sup>", font_size=15),
        legend=dict(orientation="h", x=0, y=-0.13, yanchor="top", font_size=11,
                    title_text="page state:"))
    return fig


def _legend_codes(run: PageMapRun) -> tuple[int, ...]:
    """The core states always, plus every other state that appears in the run."""
    seen = {int(PageState.NOT_PRESENT), int(PageState.ZERO_PAGE), int(PageState.RESIDENT),
            int(PageState.LAZYFREE), int(PageState.RECLAIMED)}
    for snap in run.snapshots:
        for codes in snap.states.values():
            seen.update(int(c) for c in np.unique(codes))
    return tuple(sorted(seen))


def pagemap_text(scenario: ScenarioLike, *, kernel_version: str = "6.18", swap: bool = False) -> list[str]:
    """One sentence per step of the scenario (for screen readers and print)."""
    run = snapshots(scenario, kernel_version=kernel_version, swap=swap)
    return [describe_pagemap_step(run, step) for step in range(len(run.scenario.steps))]


def _sentence(text: str) -> str:
    """``text`` as a sentence: first letter upper case, the rest untouched ("MiB", "OOM")."""
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def describe_pagemap_step(run: PageMapRun, step: int) -> str:
    """One sentence about the page map after ``step``: each region's page states and the counters."""
    step = _check_step(run, step)
    if step >= len(run.snapshots):
        return _sentence(_status(run, step))
    snap = run.snapshots[step]
    c = counters(run, step)
    parts = []
    for region in run.regions:
        codes = snap.states[region]
        mix = ", ".join(f"{int(np.count_nonzero(codes == k)):,} {STATE_SHORT[k]}"
                        for k in range(N_CODES) if k != NOT_MAPPED and np.any(codes == k))
        parts.append(f"{region}: {mix}" if mix else f"{region}: not mapped")
    text = (f"After step {step} ({snap.description}{', ' + c['error'] if c['error'] else ''}): "
            f"{'; '.join(parts)}. RSS {c['rss_pages']:,} pages "
            f"({c['rss_pages'] * PAGE_SIZE / MiB:.4g} MiB), LazyFree {c['lazyfree_pages']:,} pages; "
            f"this step took {c['faults']:,} faults ({c['faults_so_far']:,} so far)")
    if c["zero_pages_read"] is not None:
        text += f", and {c['zero_pages_read']:,} of the pages it read returned zeros"
    return text + "."


# --------------------------------------------------------------------------- explorable

def step_slider(steps, *, label: str = "step", default: int = 0):
    """A time slider over a scenario's steps, each labelled "i: <what the step does>".

    ``steps`` is a sequence of scenario steps (described with :func:`describe_step`) or of
    ready-made descriptions; a ``range`` gives plain step numbers.
    """
    if isinstance(steps, range):
        return Slider(steps, label=label, default=default)
    texts = [st if isinstance(st, str) else describe_step(st) for st in steps]
    slider = Slider(range(len(texts)), label=label, default=default)
    return dataclasses.replace(slider, labels=tuple(f"{i}: {t}" for i, t in enumerate(texts)))


def pagemap_explorable(scenario_fn: Union[ScenarioLike, Callable[..., ScenarioLike]], *,
                       title: Optional[str] = None, step: Optional[Control] = None,
                       max_cells: int = MAX_CELLS, kernel_version: Union[str, Control] = "6.18",
                       swap: Union[bool, Control] = False, step_label: str = "step",
                       **controls: Control) -> Explorable:
    """A page-map :class:`Explorable` with a time slider over the scenario's steps.

    ``scenario_fn`` is a scenario (``Scenario``, library name, path, JSON dict) or a function
    of the extra ``controls`` returning one (e.g. ``first=Dropdown(...)``).  A control named
    ``kernel_version`` or ``swap`` (e.g. ``kernel_version=Dropdown(["4.9", "6.18"])``,
    ``swap=Toggle()``) is passed to the model instead of to ``scenario_fn``.
    ``step`` defaults to a slider over every step of the longest variant; a variant with
    fewer steps shows its last state and says so in the subtitle.
    """
    model_keys = {"kernel_version", "swap"}
    # kernel_version=Dropdown([...]) / swap=Toggle() arrive here as keywords: make them controls
    if isinstance(kernel_version, Control):
        controls = {"kernel_version": kernel_version, **controls}
        kernel_version = "6.18"
    if isinstance(swap, Control):
        controls = {"swap": swap, **controls}
        swap = False
    if callable(scenario_fn) and not isinstance(scenario_fn, (Scenario, str, Mapping)):
        make = scenario_fn
    else:
        fixed = as_scenario(scenario_fn)
        if set(controls) - model_keys:
            raise ModelInputError(f"controls {sorted(set(controls) - model_keys)} need a scenario "
                                  f"function to receive them; a fixed scenario takes only kernel_version/swap")
        make = lambda **_: fixed   # noqa: E731
    names = list(controls)

    def _split(values: dict) -> tuple[Scenario, str, bool]:
        scen_args = {k: v for k, v in values.items() if k not in model_keys}
        return (as_scenario(make(**scen_args)), str(values.get("kernel_version", kernel_version)),
                bool(values.get("swap", swap)))

    combos = [dict(zip(names, combo)) for combo in _product(controls)]
    variants = [_split(c) for c in combos]
    nsteps = max(len(s.steps) for s, _, _ in variants)
    if step is None:
        descs = {tuple(describe_step(st) for st in s.steps) for s, _, _ in variants}
        (only,) = descs if len(descs) == 1 else (None,)
        step = step_slider(only or range(nsteps), label=step_label)
    legend = tuple(sorted(set().union(*(_legend_codes(snapshots(s, kernel_version=k, swap=w))
                                        for s, k, w in variants))))
    name = title or variants[0][0].name or "page map"

    def figure(step, **values):
        scen, kv, sw = _split(values)
        if step < len(scen.steps):
            return pagemap_figure(scen, step, max_cells=max_cells, kernel_version=kv, swap=sw,
                                  title=name, legend_codes=legend)
        # this variant is shorter than the slider: show its end, and say so
        fig = pagemap_figure(scen, len(scen.steps) - 1, max_cells=max_cells, kernel_version=kv,
                             swap=sw, title=name, legend_codes=legend)
        fig.update_layout(title_text=f"{name}<br><sup>step {step}: this variant has only "
                                     f"{len(scen.steps)} steps; showing the state after the last</sup>")
        return fig

    def describe(step, **values):
        scen, kv, sw = _split(values)
        run = snapshots(scen, kernel_version=kv, swap=sw)
        if step >= len(scen.steps):
            return (f"Step {step}: this variant has only {len(scen.steps)} steps. "
                    + describe_pagemap_step(run, len(scen.steps) - 1))
        return describe_pagemap_step(run, step)

    figure.__name__ = "pagemap_figure"
    return Explorable(figure, title=name, describe=describe, step=step, **controls)


def _product(controls: Mapping[str, Control]):
    import itertools
    return itertools.product(*(c.values for c in controls.values())) if controls else [()]


__all__ = ["NOT_MAPPED", "STATE_LABELS", "STATE_COLORS", "MAX_CELLS", "Snapshot", "PageMapRun", "Cells",
           "as_scenario", "snapshots", "grid_shape", "aggregate", "counters", "pagemap_figure",
           "pagemap_text", "describe_pagemap_step", "pagemap_explorable"]
