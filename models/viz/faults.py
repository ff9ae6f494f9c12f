"""Chapter 2 ("Page faults and demand paging"): first touches, access patterns, fault costs.

Figures and explorables of the chapter; every number comes from the page model
(``models.kernel.AddressSpace`` / ``models.kernel.replay``) and, for times, from the cost model
``models.goruntime.cost.DEFAULT_COST`` (FACTS 9 / E3).  Behaviour (FACTS 1-3): the first read of
an untouched private anonymous page maps the shared zero page (one minor fault, no RSS); the
first write allocates a zeroed page (one fault, +1 page RSS); a write to a page on the zero page
takes a second, copy-on-write fault.

* :func:`overlap_scenario` / :data:`overlap_pagemap` -- four overlapping touches of a 1 MiB
  region, read first or write first, on the page map.
* :func:`touch_pattern` / :data:`touch_patterns` -- RSS and faults of sequential, strided and
  random one-byte accesses over a 64 MiB region.
* :func:`fault_cost` / :data:`fault_costs` -- estimated kernel time of first touches and of
  release-and-reuse rounds, for region sizes of 16 MiB to 4 GiB.
* :data:`READ_WRITE_READ`, :data:`OVERLAP_64` -- the scenarios of the chapter's kernel cells.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from models.errors import ModelInputError
from models.kernel.pages import PageState
from models.scenario import parse_scenario
from models.scenario.format import Scenario
from models.units import PAGE_SIZE
from models.viz import COLORS
from models.viz.explorable import Dropdown, Explorable, Slider
from models.viz.pagemap import STATE_COLORS, pagemap_explorable

MiB = 1 << 20
KiB = 1 << 10

# --------------------------------------------------------------------------- the page map

FIRST_ACCESS = {"read first": "read", "write first": "write"}


def overlap_scenario(first: str = "read", scale: int = 1) -> Scenario:
    """mmap 1 MiB x scale; ``first`` [0, 1/2); write [1/4, 3/4); read all; write all."""
    if first not in FIRST_ACCESS.values():
        raise ModelInputError(f"first must be 'read' or 'write', got {first!r}")
    if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= 1024:
        raise ModelInputError(f"scale must be a whole number in 1..1024, got {scale!r}")
    size = scale * MiB
    return parse_scenario({
        "name": f"{first} first" + ("" if scale == 1 else f", {scale} MiB"),
        "description": "Four overlapping touches of a fresh region (chapter 2).",
        "steps": [
            {"op": "mmap", "region": "buf", "length": size},
            {"op": "touch", "region": "buf", "offset": 0, "length": size // 2, "access": first},
            {"op": "touch", "region": "buf", "offset": size // 4, "length": size // 2, "access": "write"},
            {"op": "touch", "region": "buf", "offset": 0, "length": size, "access": "read"},
            {"op": "touch", "region": "buf", "offset": 0, "length": size, "access": "write"}]})


overlap_pagemap = pagemap_explorable(
    lambda first: overlap_scenario(first),
    title="1 MiB region (256 pages), four overlapping touches",
    first=Dropdown(FIRST_ACCESS, label="first access", default="read"),
)

# --------------------------------------------------------------------------- kernel cells

#: Read every page, write every page, read again, unmap (FACTS 1-2, E1).
READ_WRITE_READ = parse_scenario({
    "name": "ch02-read-write-read",
    "description": "Read 64 MiB of fresh memory, write it, read it again, unmap it.",
    "steps": [
        {"op": "mmap", "region": "buf", "length": "64MiB"},
        {"op": "touch", "region": "buf", "offset": 0, "length": "64MiB", "access": "read"},
        {"op": "touch", "region": "buf", "offset": 0, "length": "64MiB", "access": "write"},
        {"op": "touch", "region": "buf", "offset": 0, "length": "64MiB", "access": "read"},
        {"op": "munmap", "region": "buf"}]})


def _overlap_64() -> Scenario:
    steps = overlap_scenario("read", 64)
    return parse_scenario({"name": "ch02-overlap-64MiB",
                           "description": "The page-map scenario (read first), 64 times larger.",
                           "steps": [*_json_steps(steps), {"op": "munmap", "region": "buf"}]})


def _json_steps(scenario: Scenario) -> list[dict]:
    from models.scenario.parse import scenario_to_json
    return scenario_to_json(scenario)["steps"]


#: The page map's read-first scenario scaled to 64 MiB, then unmapped.
OVERLAP_64 = _overlap_64()

# --------------------------------------------------------------------------- access patterns

REGION_MIB = 64
REGION_PAGES = REGION_MIB * MiB // PAGE_SIZE
PATTERNS = {"sequential": "sequential", "strided, 1 KiB": "stride_1k",
            "strided, 16 KiB": "stride_16k", "random": "random"}
ACCESSES = {"read": "read", "write": "write", "read, then write": "read_then_write"}
FRACTIONS = (0.1, 0.25, 0.5, 0.75, 1.0)
RANDOM_SEED = 2
#: The thumbnail shows the first THUMB_SIDE**2 pages of the region, one cell per page.
THUMB_SIDE = 32


@dataclass(frozen=True)
class TouchPattern:
    """One access pattern over the 64 MiB region, as the model counts it."""

    pattern: str
    access: str
    fraction: float
    accesses: int              # one-byte accesses the program made
    bytes_accessed: int        # bytes the program read or wrote
    pages_touched: int         # distinct 4 KiB pages those accesses landed on
    rss_pages: int
    zero_page_faults: int      # read faults that mapped the zero page
    new_page_faults: int       # write faults on untouched pages (allocate + zero)
    cow_faults: int            # write faults that replaced the zero page
    states: np.ndarray         # final PageState of every page

    @property
    def faults(self) -> int:
        return self.zero_page_faults + self.new_page_faults + self.cow_faults


def touched_pages(pattern: str, fraction: float) -> tuple[np.ndarray, int, int]:
    """(sorted distinct pages, accesses, bytes accessed) of a pattern over the 64 MiB region."""
    if pattern not in PATTERNS.values():
        raise ModelInputError(f"pattern must be one of {list(PATTERNS.values())}, got {pattern!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ModelInputError(f"fraction must be a number in (0, 1], got {fraction!r}")
    span = int(round(fraction * REGION_MIB * MiB))          # bytes covered by the pass
    if pattern == "sequential":
        pages = np.arange(-(-span // PAGE_SIZE))
        return pages, span, span                           # every byte: one access per byte
    if pattern in ("stride_1k", "stride_16k"):
        stride = KiB if pattern == "stride_1k" else 16 * KiB
        offsets = np.arange(0, span, stride)
        return np.unique(offsets // PAGE_SIZE), offsets.size, offsets.size
    n = int(round(fraction * REGION_PAGES))
    offsets = np.random.default_rng(RANDOM_SEED).integers(0, REGION_MIB * MiB, size=n)
    return np.unique(offsets // PAGE_SIZE), n, n


def _runs(pages: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive runs of sorted pages as (first page, number of pages)."""
    if pages.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(pages) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [pages.size]))
    return [(int(pages[s]), int(e - s)) for s, e in zip(starts, ends)]


@lru_cache(maxsize=128)
def touch_pattern(pattern: str, access: str, fraction: float) -> TouchPattern:
    """Run the pattern on a fresh 64 MiB private region of the page model (Linux 6.18, no swap)."""
    from models.kernel import AddressSpace

    if access not in ACCESSES.values():
        raise ModelInputError(f"access must be one of {list(ACCESSES.values())}, got {access!r}")
    pages, accesses, nbytes = touched_pages(pattern, fraction)
    runs = _runs(pages)
    space = AddressSpace(kernel_version="6.18", swap=False)
    space.mmap("buf", REGION_MIB * MiB)
    zero = new = cow = 0
    if access in ("read", "read_then_write"):
        for first, count in runs:
            zero += space.touch("buf", first * PAGE_SIZE, count * PAGE_SIZE, "read").faults
    if access in ("write", "read_then_write"):
        on_zero = int(np.count_nonzero(np.asarray(space.states("buf"))[pages] == PageState.ZERO_PAGE))
        faults = 0
        for first, count in runs:
            faults += space.touch("buf", first * PAGE_SIZE, count * PAGE_SIZE, "write").faults
        cow, new = on_zero, faults - on_zero
    return TouchPattern(pattern, access, float(fraction), accesses,
                        nbytes, int(pages.size), int(space.rss_pages("buf")), zero, new, cow,
                        np.array(space.states("buf")))


def _size(nbytes: int) -> str:
    for unit, factor in (("MiB", MiB), ("KiB", KiB)):
        if nbytes >= factor:
            return f"{nbytes / factor:.4g} {unit}"
    return f"{nbytes:,} bytes"


def describe_touch_pattern(pattern: str, access: str, fraction: float) -> str:
    r = touch_pattern(pattern, access, fraction)
    name = [k for k, v in PATTERNS.items() if v == pattern][0]
    verb = [k for k, v in ACCESSES.items() if v == access][0]
    return (f"{name} pattern, {verb}, over {fraction:.0%} of the region: the program accessed "
            f"{_size(r.bytes_accessed)} in {r.accesses:,} accesses, which landed on "
            f"{r.pages_touched:,} distinct pages; RSS is {r.rss_pages * PAGE_SIZE / MiB:.4g} MiB and "
            f"the accesses took {r.faults:,} minor faults ({r.zero_page_faults:,} zero-page mappings, "
            f"{r.new_page_faults:,} new zeroed pages, {r.cow_faults:,} copy-on-write replacements).")


def touch_pattern_figure(pattern: str, access: str, fraction: float) -> go.Figure:
    r = touch_pattern(pattern, access, fraction)
    fig = make_subplots(rows=1, cols=3, column_widths=[0.18, 0.32, 0.5], horizontal_spacing=0.1,
                        specs=[[{}, {}, {}]],
                        subplot_titles=("RSS of the region", "Minor page faults",
                                        f"First {THUMB_SIDE ** 2 * PAGE_SIZE // MiB} MiB, page by page"))
    fig.add_trace(go.Bar(x=["RSS"], y=[r.rss_pages * PAGE_SIZE / MiB], marker_color=COLORS["rss"],
                         text=[f"{r.rss_pages * PAGE_SIZE / MiB:.4g} MiB"], textposition="outside",
                         cliponaxis=False, showlegend=False,
                         hovertemplate="RSS %{y:.4g} MiB<extra></extra>"), row=1, col=1)
    for name, value, colour in (("zero-page mappings (read)", r.zero_page_faults, COLORS["zero_page"]),
                                ("new zeroed pages (write)", r.new_page_faults, COLORS["resident"]),
                                ("copy-on-write replacements", r.cow_faults, "#7F3C00")):
        fig.add_trace(go.Bar(x=["faults"], y=[value], name=name, marker_color=colour,
                             hovertemplate=f"{name}: %{{y:,}}<extra></extra>", legendgroup="faults"),
                      row=1, col=2)
    fig.add_annotation(x="faults", y=r.faults, text=f"{r.faults:,}", showarrow=False, yshift=10,
                       xref="x2", yref="y2")
    thumb = r.states[:THUMB_SIDE ** 2].astype(int).reshape(THUMB_SIDE, THUMB_SIDE)
    codes = (int(PageState.NOT_PRESENT), int(PageState.ZERO_PAGE), int(PageState.RESIDENT))
    scale = []
    for i, code in enumerate(codes):
        scale += [[i / 3, STATE_COLORS[code]], [(i + 1) / 3, STATE_COLORS[code]]]
    fig.add_trace(go.Heatmap(z=thumb.tolist(), zmin=-0.5, zmax=2.5, colorscale=scale, showscale=False,
                             xgap=1, ygap=1, hovertemplate="page %{y}x32+%{x}<extra></extra>"),
                  row=1, col=3)
    fig.update_yaxes(title_text="MiB", range=[0, REGION_MIB * 1.15], row=1, col=1)
    fig.update_yaxes(title_text="faults", range=[0, 2 * REGION_PAGES * 1.1], row=1, col=2)
    fig.update_xaxes(title_text=f"page mod {THUMB_SIDE}", showticklabels=False, row=1, col=3)
    fig.update_yaxes(title_text=f"page / {THUMB_SIDE}", autorange="reversed", scaleanchor="x3",
                     showticklabels=False, row=1, col=3)
    fig.update_layout(
        barmode="stack", height=420, margin=dict(t=90, b=50, l=60, r=10),
        legend=dict(orientation="h", x=0, y=-0.12, yanchor="top", title_text="faults:"),
        title=dict(text=(f"program accessed {_size(r.bytes_accessed)}; RSS "
                         f"{r.rss_pages * PAGE_SIZE / MiB:.4g} MiB; {r.faults:,} faults"
                         f"<br><sup>{r.pages_touched:,} distinct pages touched of {REGION_PAGES:,} "
                         f"(grey: not present, blue: zero page, orange: resident)</sup>"),
                   font_size=15))
    return fig


touch_patterns = Explorable(
    touch_pattern_figure,
    title="Access patterns over a 64 MiB region",
    describe=describe_touch_pattern,
    pattern=Dropdown(PATTERNS, label="pattern", default="stride_16k"),
    access=Dropdown(ACCESSES, label="access", default="write"),
    fraction=Slider(FRACTIONS, label="share of the region covered", default=1.0),
)

# --------------------------------------------------------------------------- fault costs

SIZES_MIB = (16, 64, 256, 1024, 4096)
WRITE_FAULT_US = (0.6, 1.2, 2.4, 4.8)
ROUNDS = (0, 1, 5, 10)
COST_ACCESSES = {"write": "write", "read, then write": "read_then_write", "read only": "read"}


@dataclass(frozen=True)
class FaultCounts:
    """Faults of one first touch and of one release-and-touch-again round (page model)."""

    pages: int
    first: dict        # kind -> faults: "zero" (read), "new" (write, untouched), "cow"
    again: dict        # the same after MADV_DONTNEED over the whole region


@lru_cache(maxsize=64)
def fault_counts(size_mib: int, access: str) -> FaultCounts:
    """Touch a fresh region of ``size_mib`` MiB, MADV_DONTNEED it, touch it again (model)."""
    from models.kernel import AddressSpace

    if access not in COST_ACCESSES.values():
        raise ModelInputError(f"access must be one of {list(COST_ACCESSES.values())}, got {access!r}")
    if isinstance(size_mib, bool) or not isinstance(size_mib, int) or not 1 <= size_mib <= 16384:
        raise ModelInputError(f"size_mib must be a whole number of MiB in 1..16384, got {size_mib!r}")
    length = size_mib * MiB
    space = AddressSpace(kernel_version="6.18", swap=False)
    space.mmap("buf", length)

    def one_pass() -> dict:
        kinds = {"zero": 0, "new": 0, "cow": 0}
        if access in ("read", "read_then_write"):
            kinds["zero"] = space.touch("buf", 0, length, "read").faults
        if access in ("write", "read_then_write"):
            on_zero = space.count(PageState.ZERO_PAGE, "buf")
            faults = space.touch("buf", 0, length, "write").faults
            kinds["cow"], kinds["new"] = on_zero, faults - on_zero
        return kinds

    first = one_pass()
    space.madvise("buf", 0, length, "MADV_DONTNEED")
    again = one_pass()
    return FaultCounts(length // PAGE_SIZE, first, again)


def page_prices_ns(write_fault_us: float) -> dict:
    """ns per fault of each kind, and per page of the MADV_DONTNEED call.

    A first-write fault costs ``write_fault_us`` (fault + allocation + zeroing + the write, as
    E3 measured it: 1.2 us); a copy-on-write replacement of the zero page the same; a zero-page
    read fault only the cost model's fault-handling share (an assumption: E3 did not measure
    reads).  The release call keeps the cost model's measured 239 ns/page (FACTS 9).
    """
    from models.goruntime.cost import DEFAULT_COST as c

    if isinstance(write_fault_us, bool) or not isinstance(write_fault_us, (int, float)) \
            or not 0 < write_fault_us <= 1000:
        raise ModelInputError(f"write_fault_us must be a number of microseconds in (0, 1000], "
                              f"got {write_fault_us!r}")
    measured = c.touch_ns(1, 1, 1)                           # 1,200 ns by default
    factor = write_fault_us * 1000 / measured
    write = measured * factor
    return {"new": write, "cow": write, "zero": c.ns_per_fault * factor,
            "dontneed": c.madvise_ns("MADV_DONTNEED", 1)}


def fault_cost_ms(size_mib: int, access: str, write_fault_us: float, rounds: int) -> float:
    """Estimated kernel time (ms): first touch + ``rounds`` x (MADV_DONTNEED + touch again)."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 0 <= rounds <= 1000:
        raise ModelInputError(f"rounds must be a whole number in 0..1000, got {rounds!r}")
    counts = fault_counts(size_mib, access)
    price = page_prices_ns(write_fault_us)
    first = sum(counts.first[k] * price[k] for k in counts.first)
    again = sum(counts.again[k] * price[k] for k in counts.again) + counts.pages * price["dontneed"]
    return (first + rounds * again) / 1e6


def describe_fault_cost(write_fault_us: float, rounds: int) -> str:
    parts = []
    for label, access in COST_ACCESSES.items():
        parts.append(f"{label}: {fault_cost_ms(64, access, write_fault_us, rounds):,.1f} ms at 64 MiB, "
                     f"{fault_cost_ms(1024, access, write_fault_us, rounds):,.0f} ms at 1 GiB")
    return (f"At {write_fault_us:g} µs per first-write fault and {rounds} release round(s): "
            + "; ".join(parts) + ".")


def fault_cost_figure(write_fault_us: float, rounds: int) -> go.Figure:
    fig = go.Figure()
    colours = {"write": COLORS["resident"], "read_then_write": "#7F3C00", "read": COLORS["zero_page"]}
    for label, access in COST_ACCESSES.items():
        ms = [fault_cost_ms(s, access, write_fault_us, rounds) for s in SIZES_MIB]
        fig.add_trace(go.Scatter(x=list(SIZES_MIB), y=ms, name=label, mode="lines+markers",
                                 line=dict(color=colours[access], width=3),
                                 hovertemplate=f"{label}: %{{x}} MiB -> %{{y:,.4g}} ms<extra></extra>"))
    lo = fault_cost_ms(min(SIZES_MIB), "read", min(WRITE_FAULT_US), 0)
    hi = fault_cost_ms(max(SIZES_MIB), "read_then_write", max(WRITE_FAULT_US), max(ROUNDS))
    fig.update_xaxes(type="log", title_text="region size (MiB)", tickvals=list(SIZES_MIB),
                     ticktext=["16", "64", "256", "1,024", "4,096"])
    fig.update_yaxes(type="log", title_text="estimated kernel time (ms)",
                     range=[np.log10(lo) - 0.2, np.log10(hi) + 0.2])
    fig.update_layout(height=440, margin=dict(t=80, b=60, l=70, r=10),
                      legend=dict(x=0.01, y=0.99, title_text="first touch:"),
                      title=dict(text=(f"Faults {'and ' + str(rounds) + ' release round(s) ' if rounds else ''}"
                                       f"at {write_fault_us:g} µs per first-write fault"
                                       f"<br><sup>a release round = MADV_DONTNEED over the region, "
                                       f"then the same touches again</sup>"), font_size=15))
    return fig


fault_costs = Explorable(
    fault_cost_figure,
    title="What first touches cost",
    describe=describe_fault_cost,
    write_fault_us=Slider(WRITE_FAULT_US, label="cost per first-write fault", unit=" µs", default=1.2),
    rounds=Slider(ROUNDS, label="release rounds", default=0),
)

# --------------------------------------------------------------------------- the quiz

QUIZ_SEED = 2


def quiz_pagemap(seed: int = QUIZ_SEED):
    """The page map of the chapter's generated quiz (``models.quiz``, topic "faults")."""
    from models import quiz
    q = quiz.generate(seed, "faults")
    return pagemap_explorable(q.scenario, title=f"Quiz faults #{seed}: the answer on the page map")


__all__ = ["overlap_scenario", "overlap_pagemap", "READ_WRITE_READ", "OVERLAP_64", "touch_pattern",
           "touched_pages", "touch_pattern_figure", "touch_patterns", "fault_counts", "page_prices_ns",
           "fault_cost_ms", "fault_cost_figure", "fault_costs", "quiz_pagemap", "QUIZ_SEED"]
