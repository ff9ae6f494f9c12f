"""Chapter 4 ("madvise: DONTNEED vs FREE"): what each advice does now, and what reuse costs later.

Two explorables, both driven by the kernel page model (``models.kernel.replay.iter_play``):

* :data:`reuse_vs_advice` -- write 64 MiB, release it with ``MADV_DONTNEED`` or ``MADV_FREE``,
  write part of it again, on a chosen kernel version with or without swap.  RSS, ``LazyFree``,
  faults and the time the model's cost constants put on the call and the rewrite (FACTS 6,
  9-16, 23, 25; E1, E3).
* :data:`read_vs_write` -- after ``MADV_FREE``, *read* or *write* part of the region, then maybe
  put the process under enough memory pressure to reclaim every lazily freed page, then read
  everything.  Only writes take pages back (FACTS 11-13, 19, E1, E7).

``reuse_model`` and ``read_vs_write_model`` return plain numbers (tested in
``tests/test_viz_madvise.py``); the ``*_figure`` functions only draw them.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from models.errors import ModelInputError
from models.goruntime.cost import DEFAULT_COST, CostModel
from models.kernel.pages import PageState
from models.kernel.profile import profile_for
from models.kernel.replay import iter_play
from models.scenario.format import Madvise, Mmap, Pressure, Scenario, Touch
from models.units import PAGE_SIZE
from models.viz import COLORS
from models.viz.explorable import Dropdown, Explorable, Slider, Toggle

MiB = 1 << 20
ADVICE = ("MADV_DONTNEED", "MADV_FREE")
#: The kernel eras that matter (profile.py): no MADV_FREE, swapless passthrough, lazy.
KERNELS = {"Linux 4.4": "4.4", "Linux 4.9": "4.9", "Linux 4.14": "4.14", "Linux 6.x": "6.x"}
PERCENT = (0, 25, 50, 75, 100)
REGION_MIB = 64
#: The page band of ``read_vs_write`` shows the region in this many cells.
BAND_CELLS = 256
#: The budget of ``read_vs_write`` (a cgroup limit above the process's baseline).
READ_VS_WRITE_LIMIT_MIB = 128

_STATE_COLOURS = {
    PageState.NOT_PRESENT: COLORS["reserved"],
    PageState.ZERO_PAGE: COLORS["zero_page"],
    PageState.RESIDENT: COLORS["resident"],
    PageState.LAZYFREE: COLORS["lazyfree"],
    PageState.RECLAIMED: COLORS["free"],     # as on the page map (models/viz/pagemap.py)
    PageState.SWAPPED: "#882255",
}
_STATE_WORDS = {
    PageState.NOT_PRESENT: "not present",
    PageState.ZERO_PAGE: "zero page",
    PageState.RESIDENT: "resident (written back: keeps its data)",
    PageState.LAZYFREE: "lazily freed (old data, for now)",
    PageState.RECLAIMED: "reclaimed (reads zeros)",
    PageState.SWAPPED: "swapped out",
}


def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ModelInputError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _check_percent(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= 100:
        raise ModelInputError(f"{name} must be a whole number in 0..100, got {value!r}")
    return int(value)


def _mib(pages: int) -> float:
    return pages * PAGE_SIZE / MiB


# ------------------------------------------------------------------ reuse vs advice

@dataclass(frozen=True)
class Reuse:
    """Write the region, release it with ``advice``, write ``reused_percent`` % of it again."""

    advice: str
    kernel_version: str
    swap: bool
    reused_percent: int
    region_pages: int
    rss_after_madvise: int          # pages
    rss_after_reuse: int
    lazyfree_after_madvise: int     # as smaps reports it (0 before 4.12: no such field)
    lazyfree_after_reuse: int
    lazy_after_madvise: int         # the model's true count of lazily freed pages
    lazy_after_reuse: int
    has_lazyfree_field: bool
    madvise_error: Optional[str]    # "EINVAL" on kernels without MADV_FREE
    acts_as: Optional[str]          # the advice the kernel really applied (None when it failed)
    advised_pages: int
    reused_pages: int
    reuse_faults: int
    call_ns: float
    reuse_ns: float

    @property
    def total_ns(self) -> float:
        return self.call_ns + self.reuse_ns


def reuse_scenario(advice: str, reused_percent: int, region_mib: int = REGION_MIB) -> Scenario:
    """mmap, write everything, ``madvise(advice)`` everything, write the first part again."""
    _check_choice("advice", advice, ADVICE)
    reused_percent = _check_percent("reused_percent", reused_percent)
    length = region_mib * MiB
    pages = length // PAGE_SIZE
    reused = pages * reused_percent // 100 * PAGE_SIZE
    steps = [Mmap("heap", length), Touch("heap", 0, length, "write"),
             Madvise("heap", 0, length, advice)]
    if reused:
        steps.append(Touch("heap", 0, reused, "write"))
    return Scenario(tuple(steps), name=f"ch04-reuse-{advice}-{reused_percent}")


@lru_cache(maxsize=None)
def _play_reuse(advice: str, kernel_version: str, swap: bool, reused_percent: int) -> tuple:
    """The page model's observations after the madvise step and after the rewrite (cached:
    the explorable asks for every combination several times)."""
    snap = {}
    scenario = reuse_scenario(advice, reused_percent)
    for result, space in iter_play(scenario, kernel_version=kernel_version, swap=swap):
        snap[result.step] = (result, space.rss_pages(), space.lazyfree_pages(),
                             space.count(PageState.LAZYFREE))
    after_reuse = snap.get(3, (None,) + snap[2][1:])
    return snap[2] + after_reuse


def reuse_model(advice: str, kernel_version: str, swap: bool, reused_percent: int,
                cost: CostModel = DEFAULT_COST) -> Reuse:
    """Play :func:`reuse_scenario` on the page model and price it with ``cost`` (FACTS 9, E3).

    The call costs what the advice the kernel really applied costs: ``MADV_DONTNEED``'s price
    where ``MADV_FREE`` is passed through (4.5-4.11 without swap, FACTS 15), nothing when the
    call fails (EINVAL before 4.5, FACTS 10).  The rewrite costs a fault and a zeroed page per
    page that faults, plus the write itself for every page (``CostModel.touch_ns``).
    """
    _check_choice("kernel_version", kernel_version, KERNELS.values())
    if not isinstance(swap, bool):
        raise ModelInputError(f"swap must be True or False, got {swap!r}")
    reuse_scenario(advice, reused_percent)        # validates advice and reused_percent
    profile = profile_for(kernel_version, swap)
    madv, rss_m, lf_m, lazy_m, reuse, rss_r, lf_r, lazy_r = _play_reuse(
        advice, kernel_version, swap, int(reused_percent))
    region_pages = REGION_MIB * MiB // PAGE_SIZE
    if madv.error:
        acts_as = None
    elif advice == "MADV_FREE" and not profile.lazy_free:
        acts_as = "MADV_DONTNEED"
    else:
        acts_as = advice
    reused_pages = region_pages * int(reused_percent) // 100
    faults = reuse.faults if reuse is not None else 0
    call_ns = 0.0 if acts_as is None else cost.madvise_ns(acts_as, region_pages)
    reuse_ns = cost.touch_ns(faults, faults, reused_pages)
    return Reuse(advice=advice, kernel_version=kernel_version, swap=swap,
                 reused_percent=int(reused_percent), region_pages=region_pages,
                 rss_after_madvise=rss_m, rss_after_reuse=rss_r,
                 lazyfree_after_madvise=lf_m, lazyfree_after_reuse=lf_r,
                 lazy_after_madvise=lazy_m, lazy_after_reuse=lazy_r,
                 has_lazyfree_field=profile.smaps_lazyfree, madvise_error=madv.error,
                 acts_as=acts_as, advised_pages=region_pages, reused_pages=reused_pages,
                 reuse_faults=faults, call_ns=call_ns, reuse_ns=reuse_ns)


def _kernel_label(version: str) -> str:
    return [k for k, v in KERNELS.items() if v == version][0]


#: Where the explorable's cost constants come from.
CONSTANTS = {"the book's machine": "book", "this machine, measured now": "measured"}


def cost_for(constants: str) -> CostModel:
    """The FACTS E3 defaults, or this machine's constants (measured once per process).

    Where nothing can be measured (not Linux), "measured" gives the E3 defaults under a
    source label that says so, so the figure never passes them off as the reader's own.
    """
    _check_choice("constants", constants, CONSTANTS.values())
    if constants == "book":
        return DEFAULT_COST
    try:
        return machine_costs().cost_model()
    except OSError as exc:
        import dataclasses
        return dataclasses.replace(DEFAULT_COST, source=f"could not measure here ({exc}); "
                                                        f"showing {DEFAULT_COST.source}")


def cost_label(constants: str) -> str:
    """Where the explorable's per-page costs come from, in words for the reader."""
    if constants == "book":
        return "the per-page costs measured on the book's machine (Linux 6.18)"
    source = cost_for(constants).source
    if source.startswith("measured on "):
        return f"the per-page costs measured now, on {source[len('measured on '):]}"
    return "the book's per-page costs (nothing could be measured here)"


def machine_costs_text() -> str:
    """The measured table, or why nothing could be measured here."""
    try:
        return machine_costs().table()
    except OSError as exc:
        return f"Could not measure madvise here: {exc}. The explorable uses {DEFAULT_COST.source}."


def describe_reuse(advice: str, kernel_version: str, swap: bool, reused_percent: int,
                   constants: str = "book") -> str:
    r = reuse_model(advice, kernel_version, swap, reused_percent, cost=cost_for(constants))
    where = f"On {_kernel_label(kernel_version)} {'with' if swap else 'without'} swap"
    if r.madvise_error:
        head = (f"{where}, {advice} fails with {r.madvise_error}: nothing is released and RSS "
                f"stays {_mib(r.rss_after_madvise):g} MiB")
    else:
        lf = (f"LazyFree {_mib(r.lazyfree_after_madvise):g} MiB" if r.has_lazyfree_field
              else "no LazyFree field in smaps")
        passthrough = (" (the kernel applies it as MADV_DONTNEED)"
                       if r.acts_as != advice else "")
        head = (f"{where}, {advice}{passthrough} leaves RSS at "
                f"{_mib(r.rss_after_madvise):g} MiB ({lf})")
    return (f"{head}. Writing {reused_percent} % again takes {r.reuse_faults:,} page faults and "
            f"ends at RSS {_mib(r.rss_after_reuse):g} MiB; the model estimates "
            f"{r.call_ns / 1e6:.1f} ms for the call and {r.reuse_ns / 1e6:.1f} ms for the rewrite, "
            f"with {cost_label(constants)}.")


def reuse_figure(advice: str, kernel_version: str, swap: bool, reused_percent: int,
                 constants: str = "book") -> go.Figure:
    cost = cost_for(constants)
    r = reuse_model(advice, kernel_version, swap, reused_percent, cost=cost)
    worst = max(reuse_model(a, "6.x", False, 100, cost=cost).total_ns for a in ADVICE)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.66, 0.34], horizontal_spacing=0.14,
                        subplot_titles=("Memory the process shows (MiB)",
                                        "Estimated time (ms)"))
    labels = ["RSS<br>after madvise", "RSS<br>after reuse", "LazyFree<br>after madvise",
              "LazyFree<br>after reuse"]
    values = [r.rss_after_madvise, r.rss_after_reuse, r.lazyfree_after_madvise,
              r.lazyfree_after_reuse]
    true_lazy = [None, None, r.lazy_after_madvise, r.lazy_after_reuse]
    colours = [COLORS["rss"], COLORS["rss"], COLORS["lazyfree"], COLORS["lazyfree"]]
    if r.has_lazyfree_field:
        shown = [_mib(v) for v in values]
        text = [f"{v:g} MiB" for v in shown]
        patterns = ["", "", "", ""]
        hover = [f"{v:g} MiB" for v in shown]
    else:
        # Before 4.12 smaps has no LazyFree line: draw the model's true count, hatched, so the
        # reader sees what is there but cannot be read from /proc.
        shown = [_mib(values[0]), _mib(values[1]), _mib(true_lazy[2]), _mib(true_lazy[3])]
        text = [f"{shown[0]:g} MiB", f"{shown[1]:g} MiB", "no LazyFree<br>field", "no LazyFree<br>field"]
        patterns = ["", "", "/", "/"]
        hover = [f"{shown[0]:g} MiB", f"{shown[1]:g} MiB",
                 f"no LazyFree field before 4.12; lazily freed pages: {shown[2]:g} MiB",
                 f"no LazyFree field before 4.12; lazily freed pages: {shown[3]:g} MiB"]
    fig.add_trace(go.Bar(x=labels, y=shown, marker_color=colours, marker_pattern_shape=patterns,
                         text=text, textposition="outside", cliponaxis=False, customdata=hover,
                         hovertemplate="%{customdata}<extra></extra>", showlegend=False),
                  row=1, col=1)
    fig.add_trace(go.Bar(x=["this run"], y=[r.call_ns / 1e6], name="madvise call",
                         marker_color=COLORS["vsz"], text=[f"{r.call_ns / 1e6:.1f}"],
                         textposition="inside", hovertemplate="call: %{y:.2f} ms<extra></extra>"),
                  row=1, col=2)
    fig.add_trace(go.Bar(x=["this run"], y=[r.reuse_ns / 1e6], name="reuse (rewrite)",
                         marker_color=COLORS["faults"], text=[f"{r.reuse_ns / 1e6:.1f}"],
                         textposition="inside", hovertemplate="rewrite: %{y:.2f} ms<extra></extra>"),
                  row=1, col=2)
    if r.madvise_error:
        badge, badge_colour = f"madvise: {r.madvise_error} (nothing released)", "#B00020"
    elif r.acts_as != advice:
        badge, badge_colour = "MADV_FREE acts as MADV_DONTNEED (no swap)", "#B00020"
    else:
        badge, badge_colour = f"{advice}: ok", "#333333"
    fig.add_annotation(text=f"<b>{badge}</b> · faults during reuse: <b>{r.reuse_faults:,}</b>",
                       xref="paper", yref="paper", x=0, y=1.16, xanchor="left", showarrow=False,
                       font=dict(size=13, color=badge_colour))
    fig.update_yaxes(title_text="MiB", range=[0, REGION_MIB * 1.18], row=1, col=1)
    fig.update_yaxes(title_text="ms", range=[0, worst / 1e6 * 1.1], row=1, col=2)
    fig.update_xaxes(title_text="quantity (smaps)", tickangle=0, row=1, col=1)
    fig.add_annotation(text=f"<b>{r.total_ns / 1e6:.1f} ms</b>", x="this run", y=r.total_ns / 1e6,
                       yanchor="bottom", showarrow=False, row=1, col=2)
    fig.update_xaxes(title_text=f"{r.advised_pages:,} pages advised,<br>{r.reused_pages:,} rewritten",
                     row=1, col=2)
    fig.update_layout(barmode="stack", height=470, margin=dict(t=110, b=60, l=60, r=20),
                      legend=dict(orientation="h", x=1, xanchor="right", y=-0.22, yanchor="top"),
                      title=dict(text=f"64 MiB released with {advice} on {_kernel_label(kernel_version)}, "
                                      f"{'swap' if swap else 'no swap'}; {reused_percent} % written again"
                                      f"<br><sup>times: {cost_label(constants)}</sup>",
                                 font_size=15))
    return fig


reuse_vs_advice = Explorable(
    reuse_figure,
    title="Release 64 MiB, then write part of it again",
    describe=describe_reuse,
    advice=Dropdown(list(ADVICE), label="advice", default="MADV_FREE"),
    kernel_version=Dropdown(KERNELS, label="kernel", default="6.x"),
    swap=Toggle(label="swap", default=False),
    reused_percent=Slider(PERCENT, label="written again", unit=" %", default=50),
    constants=Dropdown(CONSTANTS, label="cost constants", default="book"),
)


# ------------------------------------------------------------------ read vs write

@dataclass(frozen=True)
class ReadVsWrite:
    """After MADV_FREE: touch part of the region, maybe reclaim, then read everything."""

    access: str
    touched_percent: int
    pressure: bool
    region_pages: int
    states: np.ndarray              # per page, PageState before the final read
    rss_before_read: int            # pages
    lazyfree_before_read: int
    reclaimed_pages: int
    final_read_zero_pages: int      # pages the final read returned as zeros
    final_read_faults: int
    touched_pages: int


def read_vs_write_scenario(access: str, touched_percent: int, pressure: bool) -> Scenario:
    """The region is written, freed lazily, partly read or written, maybe squeezed, read.

    The pressure is sized so that reclaim must take every lazily freed page and nothing else:
    ``limit - written back`` (the budget holds the region's 64 MiB, still charged, FACTS 26).
    """
    _check_choice("access", access, ("read", "write"))
    touched_percent = _check_percent("touched_percent", touched_percent)
    if not isinstance(pressure, bool):
        raise ModelInputError(f"pressure must be True or False, got {pressure!r}")
    length = REGION_MIB * MiB
    touched = length // PAGE_SIZE * touched_percent // 100 * PAGE_SIZE
    written_back = touched if access == "write" else 0
    steps = [Mmap("heap", length), Touch("heap", 0, length, "write"),
             Madvise("heap", 0, length, "MADV_FREE")]
    if touched:
        steps.append(Touch("heap", 0, touched, access))
    if pressure and written_back < READ_VS_WRITE_LIMIT_MIB * MiB:
        steps.append(Pressure(READ_VS_WRITE_LIMIT_MIB * MiB - written_back))
    steps.append(Touch("heap", 0, length, "read"))
    return Scenario(tuple(steps), memory_limit=READ_VS_WRITE_LIMIT_MIB * MiB,
                    name=f"ch04-read-vs-write-{access}-{touched_percent}-{int(pressure)}")


def read_vs_write_model(access: str, touched_percent: int, pressure: bool) -> ReadVsWrite:
    """Play :func:`read_vs_write_scenario` on the page model (Linux 6.18, no swap; cached, so
    ``states`` is read-only)."""
    read_vs_write_scenario(access, touched_percent, pressure)     # validates the parameters
    return _read_vs_write(access, int(touched_percent), pressure)


@lru_cache(maxsize=64)
def _read_vs_write(access: str, touched_percent: int, pressure: bool) -> ReadVsWrite:
    scenario = read_vs_write_scenario(access, touched_percent, pressure)
    last = len(scenario.steps) - 1
    states = rss = lazy = reclaimed = None
    final = None
    for result, space in iter_play(scenario, kernel_version="6.18", swap=False):
        if result.error:
            raise AssertionError(f"read_vs_write scenario failed at step {result.step}: {result.error}")
        if result.step == last - 1:
            states = np.array(space.states("heap"))
            states.flags.writeable = False
            rss, lazy, reclaimed = space.rss_pages(), space.lazyfree_pages(), space.reclaimed_pages
        if result.step == last:
            final = result
    pages = REGION_MIB * MiB // PAGE_SIZE
    return ReadVsWrite(access=access, touched_percent=int(touched_percent), pressure=pressure,
                       region_pages=pages, states=states, rss_before_read=rss,
                       lazyfree_before_read=lazy, reclaimed_pages=reclaimed,
                       final_read_zero_pages=final.zero_pages, final_read_faults=final.faults,
                       touched_pages=pages * int(touched_percent) // 100)


def band(states: np.ndarray, cells: int = BAND_CELLS) -> np.ndarray:
    """Down-sample per-page states to ``cells`` runs; each cell shows its most common state."""
    runs = np.array_split(np.asarray(states, dtype=np.int64), cells)
    return np.array([np.bincount(r, minlength=len(PageState)).argmax() for r in runs], dtype=np.int8)


def describe_read_vs_write(access: str, touched_percent: int, pressure: bool) -> str:
    r = read_vs_write_model(access, touched_percent, pressure)
    squeeze = ("then memory pressure reclaims every lazily freed page"
               if pressure else "with no memory pressure")
    return (f"After MADV_FREE on 64 MiB, the program {access}s {touched_percent} % of it, {squeeze}: "
            f"RSS {_mib(r.rss_before_read):g} MiB, LazyFree {_mib(r.lazyfree_before_read):g} MiB. "
            f"Reading the whole region then returns {_mib(r.final_read_zero_pages):g} MiB of zeros "
            f"and takes {r.final_read_faults:,} page faults.")


def read_vs_write_figure(access: str, touched_percent: int, pressure: bool) -> go.Figure:
    r = read_vs_write_model(access, touched_percent, pressure)
    cells = band(r.states)
    cell_mib = REGION_MIB / BAND_CELLS
    fig = make_subplots(rows=2, cols=2, row_heights=[0.3, 0.7], column_widths=[0.6, 0.4],
                        specs=[[{"colspan": 2}, None], [{}, {}]], vertical_spacing=0.26,
                        horizontal_spacing=0.14,
                        subplot_titles=("", "Before the final read (MiB)", "The final read of all 64 MiB"))
    present = sorted(set(int(c) for c in cells) | {PageState.RESIDENT, PageState.LAZYFREE,
                                                    PageState.RECLAIMED})
    # A discrete colour scale over the PageState codes (0..5).
    n = len(PageState)
    scale = []
    for s in PageState:
        scale += [[s / n, _STATE_COLOURS[s]], [(s + 1) / n, _STATE_COLOURS[s]]]
    fig.add_trace(go.Heatmap(
        z=[(cells.astype(float) + 0.5).tolist()], x0=cell_mib / 2, dx=cell_mib, zmin=0, zmax=n,
        colorscale=scale, showscale=False,
        customdata=[[_STATE_WORDS[PageState(int(c))] for c in cells]],
        hovertemplate="offset %{x:.2f} MiB: %{customdata}<extra></extra>"), row=1, col=1)
    for s in present:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=_STATE_WORDS[PageState(s)],
                                 marker=dict(symbol="square", size=12, color=_STATE_COLOURS[PageState(s)]),
                                 showlegend=True), row=1, col=1)
    before = [_mib(r.rss_before_read), _mib(r.lazyfree_before_read)]
    fig.add_trace(go.Bar(x=["RSS", "LazyFree"], y=before,
                         marker_color=[COLORS["rss"], COLORS["lazyfree"]],
                         text=[f"{v:g} MiB" for v in before], textposition="outside",
                         cliponaxis=False, showlegend=False,
                         hovertemplate="%{x}: %{y} MiB<extra></extra>"), row=2, col=1)
    zeros = _mib(r.final_read_zero_pages)
    fig.add_trace(go.Bar(x=["read back<br>as zeros (MiB)"], y=[zeros], marker_color=COLORS["free"],
                         text=[f"{zeros:g} MiB"], textposition="outside", cliponaxis=False,
                         showlegend=False, hovertemplate="%{y} MiB of zeros<extra></extra>"),
                  row=2, col=2)
    fig.add_trace(go.Bar(x=["page faults<br>(thousands)"], y=[r.final_read_faults / 1000],
                         marker_color=COLORS["faults"], text=[f"{r.final_read_faults:,}"],
                         textposition="outside", cliponaxis=False, showlegend=False,
                         hovertemplate="%{text} faults<extra></extra>"), row=2, col=2)
    fig.update_xaxes(title_text="offset in the region (MiB); page states before the final read",
                     range=[0, REGION_MIB], row=1, col=1)
    fig.update_yaxes(showticklabels=False, row=1, col=1)
    fig.update_yaxes(title_text="MiB", range=[0, REGION_MIB * 1.2], row=2, col=1)
    fig.update_yaxes(title_text="MiB / thousands of faults",
                     range=[0, REGION_MIB * 1.2], row=2, col=2)
    fig.update_layout(height=560, margin=dict(t=70, b=40, l=60, r=20),
                      legend=dict(orientation="h", x=0, xanchor="left", y=1.0, yanchor="bottom",
                                  title_text="page:"),
                      title=dict(text=f"MADV_FREE, then {access} {touched_percent} %"
                                      f"{', then pressure' if pressure else ''}, then read all",
                                 font_size=15, y=0.99))
    return fig


read_vs_write = Explorable(
    read_vs_write_figure,
    title="After MADV_FREE: read or write, then reclaim",
    describe=describe_read_vs_write,
    access=Dropdown({"read": "read", "write": "write"}, label="access after MADV_FREE", default="write"),
    touched_percent=Slider(PERCENT, label="pages touched", unit=" %", default=50),
    pressure=Toggle(label="memory pressure before the final read", default=False),
)


# ------------------------------------------------------------------ quiz

def quiz_rule(quiz) -> str:
    """One sentence naming the rule that decides a madvise quiz (for the exercise's solution)."""
    profile = profile_for(quiz.kernel_version, quiz.swap)
    advice = next(s.advice for s in quiz.scenario.steps if s.op == "madvise")
    if advice == "MADV_DONTNEED":
        rule = ("MADV_DONTNEED frees private pages during the call on every kernel: RSS drops, "
                "rewritten pages fault, and the final read maps the zero page for every page "
                "not written again")
    elif not profile.has_madv_free:
        rule = ("this kernel has no MADV_FREE (before 4.5): madvise fails with EINVAL and "
                "nothing is released")
    elif not profile.lazy_free:
        rule = ("with no free swap, 4.5-4.11 kernels pass MADV_FREE to MADV_DONTNEED, so the "
                "pages are freed in the call and every page written again faults")
    else:
        rule = ("MADV_FREE is lazy here: RSS stays, a write takes a page back without a fault, "
                "and without memory pressure reads return the old data")
    lazyfree = "" if profile.smaps_lazyfree else " This kernel's smaps has no LazyFree field."
    where = f"Linux {profile.version} {'with' if profile.swap else 'without'} swap"
    return f"Rule ({where}): {rule}.{lazyfree}"


# ------------------------------------------------------------------ this machine's constants

#: ``madvise`` advice values (``<asm-generic/mman-common.h>``; MADV_FREE is 8, not the 5 of the
#: 2015 patch posting) and MADV_NOHUGEPAGE, which keeps the measurement at 4 KiB pages (FACTS 29-30).
_MADV_DONTNEED, _MADV_FREE, _MADV_NOHUGEPAGE = 4, 8, 15


@dataclass(frozen=True)
class CostMeasurement:
    """Per-page times measured on this machine, as in FACTS E3 (medians over ``rounds``)."""

    kernel: str
    region_mib: int
    rounds: int
    dontneed_call_ns: float
    dontneed_retouch_ns: float
    dontneed_retouch_faults: float    # minor faults per page during the rewrite
    free_call_ns: float
    free_retouch_ns: float
    free_retouch_faults: float
    #: MADV_FREE again on the same pages after they were rewritten: they are still on the
    #: file LRU (not swap-backed), so the call only cleans page-table entries -- the cheap
    #: path E3's repeated rounds measured.
    free_again_call_ns: float = float("nan")

    def cost_model(self) -> CostModel:
        return CostModel.from_measurement(
            dontneed_call_ns=self.dontneed_call_ns, dontneed_retouch_ns=self.dontneed_retouch_ns,
            free_call_ns=self.free_call_ns, free_retouch_ns=self.free_retouch_ns,
            source=f"measured on Linux {self.kernel}")

    def table(self) -> str:
        d = DEFAULT_COST
        rows = [("MADV_DONTNEED: the call", self.dontneed_call_ns, d.ns_per_madvise_page["MADV_DONTNEED"], None),
                ("MADV_DONTNEED: write again", self.dontneed_retouch_ns,
                 d.ns_per_fault + d.ns_per_zeroed_page + d.ns_per_touch, self.dontneed_retouch_faults),
                ("MADV_FREE: the call", self.free_call_ns, d.ns_per_madvise_page["MADV_FREE"], None),
                ("MADV_FREE: write again", self.free_retouch_ns, d.ns_per_touch, self.free_retouch_faults),
                ("MADV_FREE again, same pages", self.free_again_call_ns, d.ns_per_madvise_page["MADV_FREE"], None)]
        lines = [f"ns per 4 KiB page, {self.region_mib} MiB, median of {self.rounds} rounds, "
                 f"Linux {self.kernel}",
                 f"{'':<28}{'measured now':>14}{'book (E3)':>11}{'faults/page':>13}"]
        for name, now, book, faults in rows:
            lines.append(f"{name:<28}{now:>14,.0f}{book:>11,.0f}"
                         f"{'' if faults is None else f'{faults:.2f}':>13}")
        return "\n".join(lines)


_MACHINE: list = []


def machine_costs() -> CostMeasurement:
    """:func:`measure_costs` run once per process (the explorable's "measured now" constants)."""
    if not _MACHINE:
        _MACHINE.append(measure_costs())
    return _MACHINE[0]


def measure_costs(region_mib: int = 64, rounds: int = 5) -> CostMeasurement:
    """Time ``madvise`` and the rewrite of every page, per advice, in this process (Linux only).

    The region is private anonymous memory with ``MADV_NOHUGEPAGE``; a numpy strided store
    writes one byte per page, so the Python overhead per page is a few nanoseconds.  Raises
    ModelInputError for sizes outside 4..256 MiB or rounds outside 1..20, OSError where the
    calls are not available (not Linux).
    """
    import ctypes
    import mmap
    import os
    import resource
    import sys
    import time

    if isinstance(region_mib, bool) or not isinstance(region_mib, int) or not 4 <= region_mib <= 256:
        raise ModelInputError(f"region_mib must be a whole number in 4..256, got {region_mib!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= 20:
        raise ModelInputError(f"rounds must be a whole number in 1..20, got {rounds!r}")
    if not sys.platform.startswith("linux"):
        raise OSError(f"measuring madvise needs Linux (this is {sys.platform})")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    length = region_mib * MiB
    pages = length // PAGE_SIZE

    def call(addr: int, advice: int) -> None:
        if libc.madvise(addr, length, advice) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"madvise(advice={advice}): {os.strerror(err)}")

    samples = {_MADV_DONTNEED: [], _MADV_FREE: []}
    for _ in range(rounds):
        for advice in samples:
            buf = mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                            prot=mmap.PROT_READ | mmap.PROT_WRITE)
            try:
                anchor = ctypes.c_char.from_buffer(buf)
                addr = ctypes.addressof(anchor)
                call(addr, _MADV_NOHUGEPAGE)
                pagewise = np.frombuffer(buf, dtype=np.uint8)[::PAGE_SIZE]
                pagewise[:] = 1                                   # every page resident
                t0 = time.perf_counter_ns()
                call(addr, advice)
                t1 = time.perf_counter_ns()
                f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                t2 = time.perf_counter_ns()
                pagewise[:] = 2                                   # write every page again
                t3 = time.perf_counter_ns()
                f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                again = float("nan")
                if advice == _MADV_FREE:
                    t4 = time.perf_counter_ns()
                    call(addr, advice)
                    again = (time.perf_counter_ns() - t4) / pages
                samples[advice].append(((t1 - t0) / pages, (t3 - t2) / pages, (f1 - f0) / pages, again))
            finally:
                del pagewise, anchor
                buf.close()

    def med(advice: int, i: int) -> float:
        return float(np.median([s[i] for s in samples[advice]]))

    return CostMeasurement(kernel=os.uname().release, region_mib=region_mib, rounds=rounds,
                           dontneed_call_ns=med(_MADV_DONTNEED, 0),
                           dontneed_retouch_ns=med(_MADV_DONTNEED, 1),
                           dontneed_retouch_faults=med(_MADV_DONTNEED, 2),
                           free_call_ns=med(_MADV_FREE, 0), free_retouch_ns=med(_MADV_FREE, 1),
                           free_retouch_faults=med(_MADV_FREE, 2), free_again_call_ns=med(_MADV_FREE, 3))


# ------------------------------------------------------------------ the page map

#: The page map's region: 4 MiB = 1,024 pages, drawn as 16 x 16 cells of 4 pages (one cell per
#: page would embed about 2 MB of precomputed figures, over the page budget).
PAGEMAP_MIB = 4
PAGEMAP_CELLS = 256
#: With pressure on, the budget: the region's 4 MiB plus 2 MiB, so that a 4 MiB allocation at
#: step 6 needs 2 MiB back.
PAGEMAP_LIMIT_MIB = 6


def free_pagemap_scenario(pressure: bool) -> Scenario:
    """Read, write, MADV_FREE, rewrite half, read a quarter, (pressure), MADV_DONTNEED, read.

    Step 6 is always another 4 MiB allocation; only with ``pressure`` does a memory budget
    make it squeeze the region (without one it changes nothing), so both variants have the
    same steps and the time slider means the same thing.
    """
    if not isinstance(pressure, bool):
        raise ModelInputError(f"pressure must be True or False, got {pressure!r}")
    size = PAGEMAP_MIB * MiB
    steps = (Mmap("heap", size), Touch("heap", 0, size, "read"), Touch("heap", 0, size, "write"),
             Madvise("heap", 0, size, "MADV_FREE"), Touch("heap", 0, size // 2, "write"),
             Touch("heap", size // 2, size // 4, "read"), Pressure(size),
             Madvise("heap", 0, size, "MADV_DONTNEED"), Touch("heap", 0, size, "read"))
    return Scenario(steps, memory_limit=PAGEMAP_LIMIT_MIB * MiB if pressure else None,
                    name="ch04-free-pagemap")


def free_pagemap_figure(step: int, kernel_version: str, swap: bool, pressure: bool) -> go.Figure:
    from models.viz.pagemap import pagemap_figure
    _check_choice("kernel_version", kernel_version, KERNELS.values())
    budget = f"{PAGEMAP_LIMIT_MIB} MiB budget" if pressure else "no memory limit"
    return pagemap_figure(free_pagemap_scenario(pressure), step, kernel_version=kernel_version,
                          swap=swap, legend_codes=_PAGEMAP_LEGEND, max_cells=PAGEMAP_CELLS,
                          title=(f"4 MiB heap on {_kernel_label(kernel_version)}, "
                                 f"{'swap' if swap else 'no swap'}, {budget}"))


def describe_free_pagemap(step: int, kernel_version: str, swap: bool, pressure: bool) -> str:
    from models.viz.pagemap import describe_pagemap_step, snapshots
    run = snapshots(free_pagemap_scenario(pressure), kernel_version=kernel_version, swap=swap)
    text = describe_pagemap_step(run, step)
    if not profile_for(kernel_version, swap).smaps_lazyfree:
        text += " (This kernel's smaps has no LazyFree field: it reads 0.)"
    return text


def _pagemap_controls():
    from models.kernel.pages import PageState as S
    from models.viz.pagemap import step_slider
    slider = step_slider(free_pagemap_scenario(False).steps)
    legend = tuple(int(s) for s in (S.NOT_PRESENT, S.ZERO_PAGE, S.RESIDENT, S.LAZYFREE, S.RECLAIMED))
    return slider, legend


_PAGEMAP_STEP, _PAGEMAP_LEGEND = _pagemap_controls()

free_pagemap = Explorable(
    free_pagemap_figure,
    title="MADV_FREE, page by page",
    describe=describe_free_pagemap,
    step=_PAGEMAP_STEP,
    kernel_version=Dropdown(KERNELS, label="kernel", default="6.x"),
    swap=Toggle(label="swap", default=False),
    pressure=Toggle(label="memory pressure at step 6", default=False),
)


# ------------------------------------------------------------------ real-kernel cells

def _parse(obj: dict) -> Scenario:
    from models.scenario.parse import parse_scenario
    return parse_scenario(obj)


#: MADV_FREE on one region, MADV_DONTNEED on another, then half of each written again: the 50 %
#: column of :data:`reuse_vs_advice` on the reader's kernel (FACTS E1, E3).
KERNEL_REUSE = {
    "name": "ch04-reuse", "description": "MADV_FREE vs MADV_DONTNEED, then half of each rewritten",
    "steps": [
        {"op": "mmap", "region": "freed", "length": "64MiB"},
        {"op": "mmap", "region": "dropped", "length": "64MiB"},
        {"op": "touch", "region": "freed", "offset": 0, "length": "64MiB", "access": "write"},
        {"op": "touch", "region": "dropped", "offset": 0, "length": "64MiB", "access": "write"},
        {"op": "madvise", "region": "freed", "offset": 0, "length": "64MiB", "advice": "MADV_FREE"},
        {"op": "madvise", "region": "dropped", "offset": 0, "length": "64MiB", "advice": "MADV_DONTNEED"},
        {"op": "touch", "region": "freed", "offset": 0, "length": "32MiB", "access": "write"},
        {"op": "touch", "region": "dropped", "offset": 0, "length": "32MiB", "access": "write"},
        {"op": "munmap", "region": "freed"}, {"op": "munmap", "region": "dropped"}]}

#: The page map's sequence at 64 MiB (FACTS E1): read, write, MADV_FREE, rewrite half, read a
#: quarter, MADV_DONTNEED, read everything.
KERNEL_SEQUENCE = {
    "name": "ch04-sequence", "description": "the page map's sequence at 64 MiB (FACTS E1)",
    "steps": [
        {"op": "mmap", "region": "heap", "length": "64MiB"},
        {"op": "touch", "region": "heap", "offset": 0, "length": "64MiB", "access": "read"},
        {"op": "touch", "region": "heap", "offset": 0, "length": "64MiB", "access": "write"},
        {"op": "madvise", "region": "heap", "offset": 0, "length": "64MiB", "advice": "MADV_FREE"},
        {"op": "touch", "region": "heap", "offset": 0, "length": "32MiB", "access": "write"},
        {"op": "touch", "region": "heap", "offset": "32MiB", "length": "16MiB", "access": "read"},
        {"op": "madvise", "region": "heap", "offset": 0, "length": "64MiB", "advice": "MADV_DONTNEED"},
        {"op": "touch", "region": "heap", "offset": 0, "length": "64MiB", "access": "read"},
        {"op": "munmap", "region": "heap"}]}

#: MADV_FREE and MADV_DONTNEED on shared anonymous memory (FACTS 14, E6).
KERNEL_SHARED = {
    "name": "ch04-shared", "description": "MADV_FREE is EINVAL on MAP_SHARED; MADV_DONTNEED keeps the data",
    "steps": [
        {"op": "mmap", "region": "shm", "length": "16MiB", "shared": True},
        {"op": "touch", "region": "shm", "offset": 0, "length": "16MiB", "access": "write"},
        {"op": "madvise", "region": "shm", "offset": 0, "length": "16MiB", "advice": "MADV_FREE"},
        {"op": "madvise", "region": "shm", "offset": 0, "length": "16MiB", "advice": "MADV_DONTNEED"},
        {"op": "touch", "region": "shm", "offset": 0, "length": "16MiB", "access": "read"},
        {"op": "munmap", "region": "shm"}]}


def kernel_reuse() -> Scenario:
    return _parse(KERNEL_REUSE)


def kernel_sequence() -> Scenario:
    return _parse(KERNEL_SEQUENCE)


def kernel_shared() -> Scenario:
    return _parse(KERNEL_SHARED)
