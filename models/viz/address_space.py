"""Chapter 1 ("A process's address space"): reserve address space, touch part of it.

``reserve_and_touch_model`` drives the page model (``models.kernel.AddressSpace``) and
returns plain numbers; ``reserve_and_touch_figure`` draws them; ``reserve_and_touch`` is
the chapter's explorable.  Behaviour modelled (FACTS 1-3): a private anonymous ``mmap``
only reserves address space (VSZ grows, RSS does not); the first *read* of a page maps
the shared zero page (one minor fault, no RSS); the first *write* allocates a private
zeroed page (one minor fault, +4 KiB RSS); read-then-write costs two faults per page.

``pagetable_cost_model`` / ``pagetable_figure`` / ``pagetable_cost`` (the second explorable)
count the page tables a touch pattern needs on ``AddressSpace(pagetables=True)``: one 4 KiB
page-table page per 2 MiB block with a populated entry, a zero-page read included
(docs/KERNEL-NOTES.md K3); ``pagetables_vs_kernel`` puts them beside the kernel's ``VmPTE``
(``models.realkernel.pagetable_probe``, recorded in ``book/recorded/ch01-pagetables.json``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from models.errors import ModelInputError
from models.units import PAGE_SIZE, pages_of
from models.viz import COLORS
from models.viz.explorable import Dropdown, Explorable, Slider

MiB = 1 << 20
RESERVE_MIB = (16, 32, 64, 128, 256)
TOUCHED_PERCENT = (0, 25, 50, 75, 100)
ACCESS = {"read": "read", "write": "write", "read, then write": "read_then_write"}
#: The page strip shows the region as this many cells (each one a run of pages).
STRIP_CELLS = 64
#: Page-strip codes: never touched, mapped to the shared zero page, private resident page.
UNTOUCHED, ZERO_PAGE, RESIDENT = 0, 1, 2


@dataclass(frozen=True)
class ReserveAndTouch:
    """What ``ps``/``/proc`` would show after the experiment (sizes in bytes)."""

    reserve_mib: int
    touched_percent: int
    access: str
    vsz_bytes: int           # growth of the address space (VSZ): the mapping's length
    rss_bytes: int           # growth of resident memory (RSS)
    zero_page_bytes: int     # mapped, but to the shared zero page (not in RSS)
    faults: int              # minor page faults taken by the touches
    page_states: np.ndarray  # per 4 KiB page: UNTOUCHED / ZERO_PAGE / RESIDENT


def reserve_and_touch_model(reserve_mib: int, touched_percent: int, access: str) -> ReserveAndTouch:
    """mmap ``reserve_mib`` MiB (private, anonymous), then touch the first ``touched_percent`` %."""
    from models.kernel import AddressSpace

    if isinstance(reserve_mib, bool) or not isinstance(reserve_mib, (int, np.integer)) \
            or not 1 <= reserve_mib <= 4096:
        raise ModelInputError(f"reserve_mib must be a whole number of MiB in 1..4096, got {reserve_mib!r}")
    if isinstance(touched_percent, bool) or not isinstance(touched_percent, (int, np.integer)) \
            or not 0 <= touched_percent <= 100:
        raise ModelInputError(f"touched_percent must be a whole number in 0..100, got {touched_percent!r}")
    if access not in ACCESS.values():
        raise ModelInputError(f"access must be one of {list(ACCESS.values())}, got {access!r}")
    length = int(reserve_mib) * MiB
    touched_bytes = pages_of(length) * int(touched_percent) // 100 * PAGE_SIZE
    space = AddressSpace(kernel_version="6.18", swap=False)
    space.mmap("region", length)
    faults_before = space.faults
    if touched_bytes:
        if access in ("read", "read_then_write"):
            space.touch("region", 0, touched_bytes, access="read")
        if access in ("write", "read_then_write"):
            space.touch("region", 0, touched_bytes, access="write")
    states = page_states(space, "region")
    rss = int(space.rss_pages("region")) * PAGE_SIZE
    return ReserveAndTouch(
        reserve_mib=int(reserve_mib), touched_percent=int(touched_percent), access=access,
        vsz_bytes=length, rss_bytes=rss,
        zero_page_bytes=int(np.count_nonzero(states == ZERO_PAGE)) * PAGE_SIZE,
        faults=int(space.faults - faults_before), page_states=states)


def page_states(space, region: str) -> np.ndarray:
    """The region's pages as UNTOUCHED / ZERO_PAGE / RESIDENT codes (from ``space.states``)."""
    from models.kernel.pages import PageState

    states = np.asarray(space.states(region))
    out = np.full(states.shape, UNTOUCHED, dtype=np.int8)
    out[states == PageState.ZERO_PAGE] = ZERO_PAGE
    out[states == PageState.RESIDENT] = RESIDENT
    return out


def strip(states: np.ndarray, cells: int = STRIP_CELLS) -> np.ndarray:
    """Down-sample per-page codes to ``cells`` runs; each cell shows its most common state."""
    runs = np.array_split(states, cells)
    return np.array([np.bincount(r, minlength=3).argmax() if len(r) else UNTOUCHED for r in runs],
                    dtype=np.int8)


def describe(reserve_mib: int, touched_percent: int, access: str) -> str:
    r = reserve_and_touch_model(reserve_mib, touched_percent, access)
    verb = [k for k, v in ACCESS.items() if v == access][0]
    return (f"After reserving {reserve_mib} MiB and touching {touched_percent} % of it ({verb}): "
            f"VSZ grows by {r.vsz_bytes / MiB:g} MiB, RSS by {r.rss_bytes / MiB:g} MiB, "
            f"{r.zero_page_bytes / MiB:g} MiB are mapped to the shared zero page, "
            f"and the touches took {r.faults:,} minor page faults.")


def reserve_and_touch_figure(reserve_mib: int, touched_percent: int, access: str) -> go.Figure:
    r = reserve_and_touch_model(reserve_mib, touched_percent, access)
    max_mib = max(RESERVE_MIB)
    max_faults = 2 * pages_of(max_mib * MiB)
    fig = make_subplots(
        rows=2, cols=2, column_widths=[0.62, 0.38], row_heights=[0.78, 0.22],
        specs=[[{}, {}], [{"colspan": 2}, None]], vertical_spacing=0.22, horizontal_spacing=0.14,
        subplot_titles=("Memory growth (MiB)", "Minor page faults", "The region, page by page"))
    fig.add_trace(go.Bar(
        x=["VSZ<br>(address space)", "zero page<br>(mapped, not RSS)", "RSS<br>(resident)"],
        y=[r.vsz_bytes / MiB, r.zero_page_bytes / MiB, r.rss_bytes / MiB],
        marker_color=[COLORS["vsz"], COLORS["zero_page"], COLORS["rss"]],
        text=[f"{v / MiB:g} MiB" for v in (r.vsz_bytes, r.zero_page_bytes, r.rss_bytes)],
        textposition="outside", cliponaxis=False, hovertemplate="%{y} MiB<extra></extra>",
        showlegend=False), row=1, col=1)
    fig.add_trace(go.Bar(
        x=["faults"], y=[r.faults], marker_color=COLORS["faults"], text=[f"{r.faults:,}"],
        textposition="outside", cliponaxis=False, showlegend=False,
        hovertemplate="%{y:,} minor faults<extra></extra>"), row=1, col=2)
    cells = strip(r.page_states)
    fig.add_trace(go.Heatmap(
        z=[cells], x0=r.reserve_mib / STRIP_CELLS / 2, dx=r.reserve_mib / STRIP_CELLS, zmin=0, zmax=2, showscale=False,
        colorscale=[[0, COLORS["reserved"]], [0.33, COLORS["reserved"]],
                    [0.34, COLORS["zero_page"]], [0.66, COLORS["zero_page"]],
                    [0.67, COLORS["resident"]], [1, COLORS["resident"]]],
        customdata=[[["reserved, never touched", "zero page (read only)", "resident (written)"][c]
                     for c in cells]],
        hovertemplate="offset %{x:.1f} MiB: %{customdata}<extra></extra>", xgap=1), row=2, col=1)
    for name, colour in (("never touched", COLORS["reserved"]), ("zero page", COLORS["zero_page"]),
                         ("resident", COLORS["resident"])):
        # legend entries for the strip's colours (the heatmap itself has no legend)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, showlegend=True,
                                 marker=dict(symbol="square", size=12, color=colour)), row=2, col=1)
    fig.update_layout(legend=dict(orientation="h", x=1, xanchor="right", y=-0.2, yanchor="top",
                                  title_text="strip:"))
    fig.update_yaxes(title_text="MiB", range=[0, max_mib * 1.15], row=1, col=1)
    fig.update_yaxes(title_text="faults", range=[0, max_faults * 1.15], row=1, col=2)
    fig.update_xaxes(title_text="offset in the region (MiB)", range=[0, r.reserve_mib], row=2, col=1)
    fig.update_xaxes(tickangle=0, row=1, col=1)
    fig.update_yaxes(showticklabels=False, row=2, col=1)
    fig.update_layout(height=580, margin=dict(t=70, b=70, l=60, r=20),
                      title=dict(text=f"mmap {reserve_mib} MiB, then {access.replace('_', ' ')} "
                                      f"{touched_percent} % of its pages", font_size=15))
    return fig


reserve_and_touch = Explorable(
    reserve_and_touch_figure,
    title="Reserve address space, then touch part of it",
    describe=describe,
    reserve_mib=Slider(RESERVE_MIB, label="mmap size", unit=" MiB", default=64),
    touched_percent=Slider(TOUCHED_PERCENT, label="pages touched", unit=" %", default=50),
    access=Dropdown(ACCESS, label="access", default="read"),
)


# ------------------------------------------------------- model beside the real kernel

@dataclass(frozen=True)
class KernelComparison:
    """The model and the real kernel, side by side, for every access pattern."""

    reserve_mib: int
    touched_percent: int
    source: str                      # "measured on Linux <release>" or "recorded on ..."
    model: tuple                     # ReserveAndTouch per access pattern
    kernel: tuple                    # ProbeResult per access pattern

    def rows(self) -> list[dict]:
        out = []
        for m, k in zip(self.model, self.kernel):
            d = k.deltas()
            out.append({"access": m.access,
                        "model_rss_mib": m.rss_bytes / MiB, "kernel_rss_mib": d["region_rss_kib"] / 1024,
                        "model_faults": m.faults, "kernel_faults": d["minflt"],
                        "model_vsz_mib": m.vsz_bytes / MiB, "kernel_vsz_mib": d["vsz_kib"] / 1024})
        return out

    def summary(self) -> str:
        lines = [f"mmap {self.reserve_mib} MiB, touch {self.touched_percent} % of the pages",
                 f"kernel: {self.source}",
                 f"{'access':<16}{'RSS model':>10}{'RSS kernel':>11}{'faults model':>13}{'faults kernel':>14}"]
        for r in self.rows():
            lines.append(f"{r['access']:<16}{r['model_rss_mib']:>6.1f} MiB{r['kernel_rss_mib']:>7.1f} MiB"
                         f"{r['model_faults']:>13,}{r['kernel_faults']:>14,}")
        return "\n".join(lines)

    def figure(self) -> go.Figure:
        rows = self.rows()
        labels = [r["access"].replace("_", " ") for r in rows]
        fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                            subplot_titles=("RSS growth of the region (MiB)", "Minor page faults"))
        for who, colour, pattern in (("model", COLORS["rss"], ""), ("kernel", "#7F3C00", "/")):
            fig.add_trace(go.Bar(x=labels, y=[r[f"{who}_rss_mib"] for r in rows], name=who,
                                 legendgroup=who, marker_color=colour, marker_pattern_shape=pattern,
                                 text=[f"{r[f'{who}_rss_mib']:.1f}" for r in rows],
                                 textposition="outside", cliponaxis=False), row=1, col=1)
            fig.add_trace(go.Bar(x=labels, y=[r[f"{who}_faults"] for r in rows], name=who,
                                 legendgroup=who, showlegend=False, marker_color=COLORS["faults"]
                                 if who == "model" else "#7A3A62", marker_pattern_shape=pattern,
                                 text=[f"{r[f'{who}_faults']:,}" for r in rows],
                                 textposition="outside", cliponaxis=False), row=2, col=1)
        top_rss = max(max(r["model_rss_mib"], r["kernel_rss_mib"]) for r in rows)
        top_faults = max(max(r["model_faults"], r["kernel_faults"]) for r in rows)
        fig.update_yaxes(title_text="MiB", range=[0, max(top_rss, 1) * 1.25], row=1, col=1)
        fig.update_yaxes(title_text="faults", range=[0, max(top_faults, 1) * 1.25], row=2, col=1)
        fig.update_xaxes(title_text="how the pages were first touched", row=2, col=1)
        fig.update_layout(barmode="group", height=520, legend_title_text="source",
                          margin=dict(t=60, b=50, l=60, r=20),
                          title=dict(text=f"Model vs. kernel (Linux {self.kernel[0].kernel}"
                                          f"{', recorded' if self.source.startswith('recorded') else ''})",
                                     font_size=15))
        return fig


def compare_with_kernel(reserve_mib: int = 64, touched_percent: int = 50) -> KernelComparison:
    """Run the pilot experiment on the model and on this machine's kernel (recorded if not Linux)."""
    from models.realkernel import address_space_probe as probe

    modes = tuple(ACCESS.values())
    model = tuple(reserve_and_touch_model(reserve_mib, touched_percent, a) for a in modes)
    if probe.available() is None:
        kernel = tuple(probe.measure(reserve_mib, touched_percent, a) for a in modes)
        source = f"measured by the probe on Linux {kernel[0].kernel} (a live run, not a recording)"
    else:
        if (reserve_mib, touched_percent) != (64, 50):
            raise ModelInputError(f"{probe.available()}; only the recorded 64 MiB / 50 % measurement "
                                  f"can be shown here, got reserve_mib={reserve_mib}, "
                                  f"touched_percent={touched_percent}")
        kernel = tuple(probe.recorded(a) for a in modes)
        source = f"recorded on Linux {kernel[0].kernel} when this book was built"
    return KernelComparison(reserve_mib, touched_percent, source, model, kernel)


# ------------------------------------------------------- page tables: the hidden cost of sparse touches

#: Region sizes of the page-table explorable (MiB).
PT_RESERVE_MIB = (64, 256, 1024)
#: "Touch one page in every ``stride``": 1 = every page, 512 = one page per 2 MiB block.
PT_STRIDE = (1, 8, 64, 512)
PT_LAYOUT = {"spread over the region": "spread", "packed at the start": "packed"}
PT_ACCESS = {"read": "read", "write": "write"}
KiB = 1 << 10


@dataclass(frozen=True)
class PageTableCost:
    """RSS and page-table pages after touching ``touched_pages`` pages of a fresh mapping.

    ``pagetable_pages`` is the model's count (``AddressSpace(pagetables=True)``, KERNEL-NOTES K3):
    one 4 KiB page-table (PTE) page per 2 MiB block of the mapping that holds any populated
    entry, a zero-page mapping after a read included.  Page tables are not in RSS.
    """

    reserve_mib: int
    stride: int
    layout: str
    access: str
    touched_pages: int
    rss_bytes: int
    faults: int
    pagetable_pages: int
    block_touched: np.ndarray    # per 2 MiB block of the mapping: pages touched in it

    @property
    def pagetable_bytes(self) -> int:
        return self.pagetable_pages * PAGE_SIZE

    @property
    def blocks(self) -> int:
        return len(self.block_touched)


def _check_choice(name: str, value, allowed) -> None:
    if isinstance(value, bool) or value not in tuple(allowed):
        raise ModelInputError(f"{name} must be one of {list(allowed)}, got {value!r}")


def touched_page_indices(npages: int, stride: int, layout: str) -> np.ndarray:
    """Which pages of an ``npages`` mapping the experiment touches: ``npages // stride`` of them,
    one in every ``stride`` pages ("spread") or all together from the start ("packed")."""
    count = npages // stride
    if layout == "spread":
        return np.arange(0, count * stride, stride, dtype=np.int64)
    return np.arange(count, dtype=np.int64)


def pagetable_cost_model(reserve_mib: int, stride: int, layout: str, access: str) -> PageTableCost:
    """mmap ``reserve_mib`` MiB, touch one page in every ``stride`` (spread) or as many pages packed
    at the start, reading or writing one byte per page; RSS and page tables on the page model."""
    from models.kernel import AddressSpace
    from models.kernel.pages import PageState
    from models.kernel.vma import table_of

    if isinstance(reserve_mib, bool) or not isinstance(reserve_mib, (int, np.integer)) \
            or not 2 <= reserve_mib <= 4096:
        raise ModelInputError(f"reserve_mib must be a whole number of MiB in 2..4096, got {reserve_mib!r}")
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or not 1 <= stride <= 512:
        raise ModelInputError(f"stride must be a whole number of pages in 1..512, got {stride!r}")
    _check_choice("layout", layout, PT_LAYOUT.values())
    _check_choice("access", access, PT_ACCESS.values())
    length = int(reserve_mib) * MiB
    npages = pages_of(length)
    pages = touched_page_indices(npages, int(stride), layout)
    space = AddressSpace(kernel_version="6.18", swap=False, pagetables=True)
    space.mmap("region", length)
    if layout == "packed" or stride == 1:
        space.touch("region", 0, len(pages) * PAGE_SIZE, access=access)
    else:
        for page in pages.tolist():
            space.touch("region", page * PAGE_SIZE, PAGE_SIZE, access=access)
    states = np.asarray(space.states("region"))
    touched = np.flatnonzero(states != PageState.NOT_PRESENT)
    nblocks = int(table_of(npages - 1)) + 1
    block_touched = np.bincount(table_of(touched), minlength=nblocks).astype(np.int64)
    return PageTableCost(
        reserve_mib=int(reserve_mib), stride=int(stride), layout=layout, access=access,
        touched_pages=len(pages), rss_bytes=int(space.rss_pages("region")) * PAGE_SIZE,
        faults=int(space.faults), pagetable_pages=int(space.pagetables_of("region")),
        block_touched=block_touched)


def _kib(nbytes: int) -> str:
    return f"{nbytes / KiB:,.0f} KiB"


def describe_pagetables(reserve_mib: int, stride: int, layout: str, access: str) -> str:
    r = pagetable_cost_model(reserve_mib, stride, layout, access)
    share = (f", {r.pagetable_bytes / r.rss_bytes:.1%} of RSS" if r.rss_bytes else "")
    return (f"{r.access.capitalize()} {r.touched_pages:,} pages of a {reserve_mib} MiB mapping "
            f"({'one in every ' + str(stride) if layout == 'spread' else 'packed at the start'}): "
            f"RSS {_kib(r.rss_bytes)}, page tables {_kib(r.pagetable_bytes)} "
            f"({r.pagetable_pages} of the {r.blocks} 2 MiB blocks have a page-table page{share}).")


def pagetable_figure(reserve_mib: int, stride: int, layout: str, access: str) -> go.Figure:
    r = pagetable_cost_model(reserve_mib, stride, layout, access)
    fig = make_subplots(rows=2, cols=1, row_heights=[0.72, 0.28], vertical_spacing=0.2,
                        subplot_titles=("Memory after the touches",
                                        "The mapping in 2 MiB blocks: which ones need a page-table page"))
    values = [r.touched_pages * PAGE_SIZE, r.rss_bytes, r.pagetable_bytes]
    fig.add_trace(go.Bar(
        x=["memory touched<br>(pages × 4 KiB)", "RSS<br>(resident pages)", "page tables<br>(not in RSS)"],
        # a log axis cannot draw 0: a zero bar stays empty and its label says 0
        y=[v / KiB if v else None for v in values],
        marker_color=[COLORS["faults"], COLORS["rss"], COLORS["vsz"]],
        text=[_kib(v) for v in values], textposition="outside", cliponaxis=False,
        hovertemplate="%{x}: %{text}<extra></extra>", showlegend=False), row=1, col=1)
    has_table = (r.block_touched > 0).astype(np.int8)
    edges_mib = [0.0] + [min(((b + 1) * 512 - 1) * PAGE_SIZE, r.reserve_mib * MiB) / MiB
                         for b in range(r.blocks)]
    fig.add_trace(go.Heatmap(
        z=[has_table], x=edges_mib, zmin=0, zmax=1, showscale=False,
        colorscale=[[0, COLORS["reserved"]], [0.5, COLORS["reserved"]],
                    [0.5, COLORS["vsz"]], [1, COLORS["vsz"]]],
        customdata=[r.block_touched], xgap=1 if r.blocks <= 160 else 0,
        hovertemplate="block at %{x:.0f} MiB: %{customdata} pages touched<extra></extra>"),
        row=2, col=1)
    for name, colour in (("no page-table page", COLORS["reserved"]),
                         ("has a page-table page (4 KiB)", COLORS["vsz"])):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, showlegend=True,
                                 marker=dict(symbol="square", size=12, color=colour)), row=2, col=1)
    for label, v in zip(fig.data[0].x, values):
        if not v:   # a log axis cannot draw 0: say it where the bar would stand
            fig.add_annotation(x=label, y=0, text="0 KiB", showarrow=False, yanchor="bottom",
                               font=dict(size=12), row=1, col=1)
    top = max(PT_RESERVE_MIB) * MiB / KiB
    ticks = [4, 64, 1024, 16 * 1024, 256 * 1024, 1024 * 1024]
    fig.update_yaxes(type="log", title_text="memory (log scale)", range=[0, np.log10(top) + 0.5],
                     tickvals=ticks, ticktext=["4 KiB", "64 KiB", "1 MiB", "16 MiB", "256 MiB", "1 GiB"],
                     row=1, col=1)
    fig.update_yaxes(showticklabels=False, row=2, col=1)
    fig.update_xaxes(title_text="offset in the mapping (MiB)", range=[0, r.reserve_mib], row=2, col=1)
    share = (f" = {r.pagetable_bytes / r.rss_bytes:.1%} of RSS" if r.rss_bytes
             else " while RSS is 0")
    fig.update_layout(
        height=560, margin=dict(t=80, b=70, l=60, r=20),
        legend=dict(orientation="h", x=1, xanchor="right", y=-0.25, yanchor="top"),
        title=dict(text=f"{access.capitalize()} {r.touched_pages:,} pages of {reserve_mib} MiB "
                        f"({'1 in ' + str(stride) if layout == 'spread' else 'packed'}): "
                        f"page tables {_kib(r.pagetable_bytes)}{share}", font_size=15))
    return fig


pagetable_cost = Explorable(
    pagetable_figure,
    title="What page tables cost: dense vs sparse touches",
    describe=describe_pagetables,
    reserve_mib=Slider(PT_RESERVE_MIB, label="mmap size", unit=" MiB", default=1024),
    stride=Slider(PT_STRIDE, label="touch 1 page in every", default=512),
    layout=Dropdown(PT_LAYOUT, label="touched pages", default="spread"),
    access=Dropdown(PT_ACCESS, label="access", default="write"),
)


# ------------------------------------------------------- page tables: model beside the real kernel

#: The kernel may read a few page-table pages more or less than the model: VmPTE also counts
#: the middle level (one PMD page per 1 GiB touched), and the blocks at the two ends of a
#: mapping can share their page-table page with a neighbouring mapping that already has one.
PT_TOLERANCE_PAGES = 4


@dataclass(frozen=True)
class PageTableComparison:
    """Chapter 1's page-table cases on the model and on the kernel (live or recorded)."""

    source: str
    live: bool
    model: tuple     # PageTableCost per case
    kernel: tuple    # PageTableMeasurement per case

    def rows(self) -> list[dict]:
        out = []
        for m, k in zip(self.model, self.kernel):
            if m.stride == 1:
                case = f"{m.access} every page"
            elif m.layout == "spread":
                case = f"{m.access} 1 page in {m.stride}"
            else:
                case = f"{m.access} {m.touched_pages:,} packed"
            out.append({"case": case,
                        "reserve_mib": m.reserve_mib, "touched_pages": m.touched_pages,
                        "model_rss_kib": m.rss_bytes // KiB, "kernel_rss_kib": k.region_rss_kib,
                        "model_pt_kib": m.pagetable_bytes // KiB, "kernel_pt_kib": k.vmpte_kib,
                        "model_faults": m.faults,
                        "kernel_faults": k.minflt})
        return out

    @property
    def agrees(self) -> bool:
        return all(abs(r["kernel_pt_kib"] - r["model_pt_kib"]) <= PT_TOLERANCE_PAGES * 4
                   and r["kernel_rss_kib"] == r["model_rss_kib"] for r in self.rows())

    def summary(self) -> str:
        import textwrap
        lines = textwrap.wrap(f"kernel: {self.source}", 68, subsequent_indent="  ")
        lines += [f"{'':<20}{'RSS (kB)':^20}{'tables (kB)':^14}{'faults':^16}",
                  f"{'1 GiB mapping':<20}" + f"{'model':>10}{'kernel':>10}" + f"{'model':>7}{'kernel':>7}"
                  + f"{'model':>8}{'kernel':>8}"]
        for r in self.rows():
            lines.append(f"{r['case']:<20}{r['model_rss_kib']:>10,}{r['kernel_rss_kib']:>10,}"
                         f"{r['model_pt_kib']:>7,}{r['kernel_pt_kib']:>7,}"
                         f"{r['model_faults']:>8,}{r['kernel_faults']:>8,}")
        lines.append(f"agrees: RSS exactly, page tables within {PT_TOLERANCE_PAGES} pages"
                     if self.agrees else "DISAGREES: see the rows above")
        return "\n".join(lines)

    def figure(self) -> go.Figure:
        rows = self.rows()
        labels = [r["case"] for r in rows]
        fig = go.Figure()
        for who, colour, pattern in (("model", COLORS["vsz"], ""), ("kernel (VmPTE)", "#003F66", "/")):
            key = "model_pt_kib" if who == "model" else "kernel_pt_kib"
            fig.add_trace(go.Bar(x=labels, y=[r[key] for r in rows], name=who, marker_color=colour,
                                 marker_pattern_shape=pattern, text=[f"{r[key]:,}" for r in rows],
                                 textposition="outside", cliponaxis=False))
        top = max(max(r["model_pt_kib"], r["kernel_pt_kib"]) for r in rows)
        fig.update_yaxes(title_text="page tables (KiB)", range=[0, top * 1.25])
        fig.update_xaxes(title_text="how the pages of a 1 GiB mapping were touched")
        fig.update_layout(barmode="group", height=420, legend_title_text="source",
                          margin=dict(t=60, b=50, l=60, r=20),
                          title=dict(text=f"Page tables, model vs. kernel (Linux {self.kernel[0].kernel}"
                                          f"{'' if self.live else ', recorded'})", font_size=15))
        return fig


def pagetables_vs_kernel() -> PageTableComparison:
    """The chapter's page-table cases on the model and on this kernel (recorded where it cannot run)."""
    from models.realkernel import pagetable_probe as probe

    kernel, source, live = probe.measure_or_recorded()
    model = tuple(pagetable_cost_model(k.reserve_mib, k.stride, k.layout, k.access) for k in kernel)
    return PageTableComparison(source, live, model, tuple(kernel))
