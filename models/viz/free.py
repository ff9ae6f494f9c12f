"""Chapter 3 ("Giving memory back: free()"): what glibc's ``free`` does to the heap, RSS and
the system calls, on the book's glibc-like allocator (``models.malloc``, main arena only) and,
side by side, on the reader's real glibc (``models.realkernel.glibc_probe``).

* :data:`free_sequence` -- five blocks A-E of one size, some of them freed, maybe
  ``malloc_trim(0)``, then a block F of the same size allocated and freed: heap size, VSZ,
  RSS and the system calls of every operation (FACTS 32-37, 39).
* :data:`ae_pagemap` -- the article's A-E heap page by page: which pages stay resident when
  C and D are freed, which ones ``malloc_trim`` hands back with ``MADV_DONTNEED`` (FACTS 39),
  and what reusing them costs.
* :func:`glibc_vs_model` -- the kernel cell: a malloc sequence on the reader's glibc (under
  strace when available) beside the model, with a recorded fallback in ``book/recorded/``.
* :func:`malloc_quiz` -- a seeded predict-the-outcome exercise whose answer key is the model's.
* :func:`kernel_hole` -- the A-E hole scaled up to 4 MiB blocks as a page-model scenario for
  :func:`models.viz.kernel_cell.kernel_vs_model`.

The ``*_model``/``*_run`` functions return plain numbers (tested in ``tests/test_viz_free.py``);
the ``*_figure`` functions only draw them.  glibc never uses ``MADV_FREE`` (FACTS 40), so
nothing here does either.
"""
from __future__ import annotations

import ctypes
import html
import json
import os
import platform
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from models.errors import ModelInputError
from models.kernel.pages import PageState
from models.malloc import GlibcMalloc, parse_sequence, replay
from models.malloc.glibc import HEAP, SYSCALLS, apply
from models.malloc.sequence import parse_op
from models.quiz.malloc import syscall_words
from models.units import PAGE_SIZE, parse_size
from models.viz import COLORS, STATIC_BUILD_ENV
from models.viz.explorable import Dropdown, Explorable, Slider, Toggle
from models.viz.pagemap import NOT_MAPPED, STATE_COLORS, STATE_LABELS
from models.viz.recording import now_utc as _now, write_json_atomic

KiB = 1024
MiB = 1 << 20
LETTERS = "ABCDE"
#: Block sizes of the sequence explorable: both sides of the 128 KiB threshold (FACTS 32).
BLOCK_SIZES = {"16 KiB": "16KiB", "64 KiB": "64KiB", "100 KiB": "100KiB", "200 KiB": "200KiB",
               "1 MiB": "1MiB", "16 MiB": "16MiB"}
#: Which of A-E are freed (in alphabetical order) before F.
FREES = {"none": "", "C, D": "CD", "E": "E", "C, D, E": "CDE", "A to E": "ABCDE"}
THRESHOLDS = {"dynamic (default)": "dynamic", "pinned at 128 KiB": "pinned"}
SYSCALL_COLOURS = {"brk": COLORS["vsz"], "mmap": "#009E73", "munmap": "#CC79A7", "madvise": "#E69F00"}


def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ModelInputError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _kib(nbytes: int) -> str:
    return f"{nbytes / KiB:,.0f} KiB"


# ------------------------------------------------------------------ the free sequence

def sequence_ops(block_size: str, frees: str, malloc_trim: bool, threshold: str) -> list[dict]:
    """malloc+write A-E, free ``frees`` (letters, alphabetical), maybe ``malloc_trim(0)``,
    malloc+write F, free F.  ``threshold="pinned"`` starts with ``mallopt(M_MMAP_THRESHOLD,
    128 KiB)``, which also turns the dynamic threshold off (FACTS 33)."""
    _check_choice("block_size", block_size, BLOCK_SIZES.values())
    _check_choice("frees", frees, FREES.values())
    _check_choice("threshold", threshold, THRESHOLDS.values())
    if not isinstance(malloc_trim, bool):
        raise ModelInputError(f"malloc_trim must be True or False, got {malloc_trim!r}")
    ops: list[dict] = []
    if threshold == "pinned":
        ops.append({"op": "mallopt", "param": "M_MMAP_THRESHOLD", "value": 128 * KiB})
    ops += [{"op": "malloc", "id": x, "size": block_size} for x in LETTERS]
    ops += [{"op": "free", "id": x} for x in frees]
    if malloc_trim:
        ops.append({"op": "malloc_trim", "pad": 0})
    ops += [{"op": "malloc", "id": "F", "size": block_size}, {"op": "free", "id": "F"}]
    return ops


def op_label(op: dict) -> str:
    if op["op"] == "malloc":
        return f"malloc {op['id']}"
    if op["op"] == "free":
        return f"free {op['id']}"
    if op["op"] == "malloc_trim":
        return f"malloc_trim({op.get('pad', 0)})"
    return "mallopt"


@dataclass(frozen=True)
class SequenceRun:
    """The model's observation after every operation of :func:`sequence_ops`."""

    labels: tuple[str, ...]
    placements: tuple[Optional[str], ...]   # malloc: "heap" or "mmap"
    heap_size: tuple[int, ...]              # bytes, program break - initial break
    vsz: tuple[int, ...]                    # bytes, heap + live mmapped chunks
    rss_pages: tuple[int, ...]              # heap + mmapped chunks
    faults: tuple[int, ...]
    syscalls: tuple[dict, ...]              # per operation
    mmap_threshold: tuple[int, ...]
    trim_threshold: tuple[int, ...]

    def index(self, label: str) -> int:
        return self.labels.index(label)

    def totals(self) -> dict:
        return {k: sum(s[k] for s in self.syscalls) for k in SYSCALLS}

    def rss_change(self, label: str) -> int:
        """RSS change in pages made by the operation ``label``."""
        i = self.index(label)
        return self.rss_pages[i] - (self.rss_pages[i - 1] if i else 0)


def sequence_run(block_size: str, frees: str, malloc_trim: bool, threshold: str) -> SequenceRun:
    ops = sequence_ops(block_size, frees, malloc_trim, threshold)     # validates
    return _sequence_run(block_size, frees, malloc_trim, threshold, len(ops))


@lru_cache(maxsize=None)
def _sequence_run(block_size, frees, malloc_trim, threshold, _n) -> SequenceRun:
    ops = sequence_ops(block_size, frees, malloc_trim, threshold)
    rows = replay(parse_sequence(ops))
    return SequenceRun(
        labels=tuple(op_label(o) for o in ops),
        placements=tuple(r.placement for r in rows),
        heap_size=tuple(r.heap_size for r in rows), vsz=tuple(r.vsz for r in rows),
        rss_pages=tuple(r.rss_pages for r in rows), faults=tuple(r.faults for r in rows),
        syscalls=tuple(dict(r.syscalls) for r in rows),
        mmap_threshold=tuple(r.mmap_threshold for r in rows),
        trim_threshold=tuple(r.trim_threshold for r in rows))


_syscall_words = syscall_words


def describe_sequence(block_size: str, frees: str, malloc_trim: bool, threshold: str) -> str:
    run = sequence_run(block_size, frees, malloc_trim, threshold)
    size = [k for k, v in BLOCK_SIZES.items() if v == block_size][0]
    a = run.index("malloc A")
    where = "each its own mmap" if run.placements[a] == "mmap" else "in the brk heap"
    parts = [f"Blocks of {size} live {where}; after A-E, RSS is "
             f"{_kib(run.rss_pages[run.index('malloc E')] * PAGE_SIZE)}."]
    for x in frees:
        i = run.index(f"free {x}")
        parts.append(f"free {x}: {_syscall_words(run.syscalls[i])}, RSS {run.rss_change(f'free {x}') * 4:+,} KiB.")
    if malloc_trim:
        i = run.index("malloc_trim(0)")
        parts.append(f"malloc_trim(0): {_syscall_words(run.syscalls[i])}, "
                     f"RSS {run.rss_change('malloc_trim(0)') * 4:+,} KiB.")
    i = run.index("malloc F")
    parts.append(f"F comes from {'its own mmap' if run.placements[i] == 'mmap' else 'the brk heap'} "
                 f"({_syscall_words(run.syscalls[i])}, {run.faults[i]:,} page faults); "
                 f"free F: {_syscall_words(run.syscalls[-1])}, RSS {run.rss_change('free F') * 4:+,} KiB, "
                 f"ending at {_kib(run.rss_pages[-1] * PAGE_SIZE)}.")
    return " ".join(parts)


def sequence_figure(block_size: str, frees: str, malloc_trim: bool, threshold: str) -> go.Figure:
    run = sequence_run(block_size, frees, malloc_trim, threshold)
    x = list(run.labels)
    log = parse_size(block_size) >= MiB
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28],
                        vertical_spacing=0.06)
    for name, values, dash, colour in (
            ("total VSZ (heap + mmapped blocks)", run.vsz, "dot", COLORS["vsz"]),
            ("brk heap size", run.heap_size, "dash", "#555555"),
            ("RSS", [p * PAGE_SIZE for p in run.rss_pages], "solid", COLORS["rss"])):
        fig.add_trace(go.Scatter(x=x, y=[v / KiB for v in values], name=name, mode="lines+markers",
                                 line=dict(dash=dash, color=colour, width=3 if name == "RSS" else 2),
                                 hovertemplate=f"{name}: %{{y:,.0f}} KiB<extra>%{{x}}</extra>"),
                      row=1, col=1)
    for k in SYSCALLS:
        fig.add_trace(go.Bar(x=x, y=[s[k] for s in run.syscalls], name=k,
                             marker_color=SYSCALL_COLOURS[k], legendgroup="syscalls",
                             legendgrouptitle_text="system calls",
                             hovertemplate=f"{k}: %{{y}}<extra>%{{x}}</extra>"), row=2, col=1)
    totals = run.totals()
    f = run.index("malloc F")
    fig.add_annotation(
        text=("totals: " + " · ".join(f"{k} <b>{totals[k]}</b>" for k in SYSCALLS)
              + f" · page faults of malloc F: <b>{run.faults[f]:,}</b>"),
        xref="paper", yref="paper", x=0, y=1.07, xanchor="left", showarrow=False, font_size=13)
    top = max(run.vsz) / KiB
    if log:
        fig.update_yaxes(type="log", title_text="KiB (log scale)", row=1, col=1,
                         range=[np.log10(2), np.log10(top * 1.6)])
    else:
        fig.update_yaxes(title_text="KiB", rangemode="tozero", range=[0, top * 1.1], row=1, col=1)
    fig.update_yaxes(title_text="calls", range=[0, 2.5], dtick=1, row=2, col=1)
    fig.update_xaxes(title_text="operation, in order", tickangle=-40, row=2, col=1)
    size = [k for k, v in BLOCK_SIZES.items() if v == block_size][0]
    free_words = [k for k, v in FREES.items() if v == frees][0]
    fig.update_layout(
        barmode="stack", height=560, margin=dict(t=100, b=110, l=70, r=10),
        title=dict(text=(f"Five {size} blocks, free {free_words}, malloc_trim "
                         f"{'on' if malloc_trim else 'off'}, then F<br><sup>mmap threshold "
                         f"{'pinned at 128 KiB' if threshold == 'pinned' else 'dynamic (glibc default)'}"
                         f"; the book's glibc 2.36 model, main arena</sup>"), font_size=15),
        legend=dict(orientation="v", x=1.01, y=1, font_size=11))
    return fig


free_sequence = Explorable(
    sequence_figure,
    title="Allocate A-E, free some, then allocate and free F",
    describe=describe_sequence,
    block_size=Dropdown(BLOCK_SIZES, label="block size", default="64KiB"),
    frees=Dropdown(FREES, label="freed before F", default="CD"),
    malloc_trim=Toggle(label="malloc_trim(0) before F", default=False),
    threshold=Dropdown(THRESHOLDS, label="mmap threshold", default="dynamic"),
)


# ------------------------------------------------------------------ one buffer per request

LOOP_SIZES = {"64 KiB": "64KiB", "200 KiB": "200KiB", "1 MiB": "1MiB", "16 MiB": "16MiB",
              "40 MiB": "40MiB"}
REQUESTS = 6


@dataclass(frozen=True)
class RequestLoop:
    """A service that mallocs, writes and frees one buffer per request (FACTS 32-36)."""

    buffer_size: str
    threshold: str
    placements: tuple[str, ...]        # per request: "heap" or "mmap"
    rss_busy: tuple[int, ...]          # pages, with the buffer written
    rss_idle: tuple[int, ...]          # pages, after its free
    faults: tuple[int, ...]            # page faults of each request (malloc + write)
    syscalls: tuple[dict, ...]         # per request, malloc and free together
    mmap_threshold: tuple[int, ...]    # after each request


def request_loop(buffer_size: str, threshold: str) -> RequestLoop:
    _check_choice("buffer_size", buffer_size, LOOP_SIZES.values())
    _check_choice("threshold", threshold, THRESHOLDS.values())
    return _request_loop(buffer_size, threshold)


@lru_cache(maxsize=None)
def _request_loop(buffer_size: str, threshold: str) -> RequestLoop:
    ops: list[dict] = []
    if threshold == "pinned":
        ops.append({"op": "mallopt", "param": "M_MMAP_THRESHOLD", "value": 128 * KiB})
    for k in range(REQUESTS):
        ops += [{"op": "malloc", "id": f"r{k}", "size": buffer_size}, {"op": "free", "id": f"r{k}"}]
    rows = replay(parse_sequence(ops))[1 if threshold == "pinned" else 0:]
    mallocs, frees = rows[0::2], rows[1::2]
    return RequestLoop(
        buffer_size, threshold, tuple(m.placement for m in mallocs),
        tuple(m.rss_pages for m in mallocs), tuple(f.rss_pages for f in frees),
        tuple(m.faults for m in mallocs),
        tuple({k: m.syscalls[k] + f.syscalls[k] for k in SYSCALLS} for m, f in zip(mallocs, frees)),
        tuple(f.mmap_threshold for f in frees))


def describe_request_loop(buffer_size: str, threshold: str) -> str:
    r = request_loop(buffer_size, threshold)
    size = [k for k, v in LOOP_SIZES.items() if v == buffer_size][0]
    first = (f"Request 1's {size} buffer comes from {'its own mmap' if r.placements[0] == 'mmap' else 'the brk heap'}"
             f" ({r.faults[0]:,} faults, {_syscall_words(r.syscalls[0])}); between requests RSS is "
             f"{_kib(r.rss_idle[0] * PAGE_SIZE)}.")
    later = (f"Requests 2-{REQUESTS} use {'mmap' if r.placements[1] == 'mmap' else 'the brk heap'}: "
             f"request 2 takes {r.faults[1]:,} faults ({_syscall_words(r.syscalls[1])}), request "
             f"{REQUESTS} takes {r.faults[-1]:,} ({_syscall_words(r.syscalls[-1])}), and RSS between "
             f"requests is {_kib(r.rss_idle[-1] * PAGE_SIZE)}; the mmap threshold ends at "
             f"{r.mmap_threshold[-1]:,} bytes.")
    return f"{first} {later}"


def request_loop_figure(buffer_size: str, threshold: str) -> go.Figure:
    r = request_loop(buffer_size, threshold)
    x = [f"request {k + 1}" for k in range(REQUESTS)]
    peak = max(request_loop(b, t).rss_busy[0] for b in (buffer_size,) for t in THRESHOLDS.values())
    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.12,
                        subplot_titles=("RSS (KiB)", "page faults per request"))
    fig.add_trace(go.Scatter(x=x, y=[p * 4 for p in r.rss_busy], name="RSS while the buffer is in use",
                             mode="lines+markers", line=dict(color=COLORS["rss"], width=2, dash="dot"),
                             hovertemplate="in use: %{y:,} KiB<extra>%{x}</extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=[p * 4 for p in r.rss_idle], name="RSS between requests (after free)",
                             mode="lines+markers", line=dict(color=COLORS["rss"], width=3),
                             hovertemplate="idle: %{y:,} KiB<extra>%{x}</extra>"), row=1, col=1)
    fig.add_trace(go.Bar(x=x, y=list(r.faults), name="faults (malloc + write)",
                         marker_color=COLORS["faults"],
                         text=[f"{n:,}<br>{'mmap' if p == 'mmap' else 'heap'}" for n, p in zip(r.faults, r.placements)],
                         textposition="outside", cliponaxis=False,
                         hovertemplate="%{y:,} faults<extra>%{x}</extra>"), row=1, col=2)
    fig.update_yaxes(title_text="KiB", rangemode="tozero", range=[0, peak * 4 * 1.15], row=1, col=1)
    fig.update_yaxes(title_text="faults", range=[0, max(r.faults[0], 1) * 1.35], row=1, col=2)
    fig.update_xaxes(tickangle=-30)
    size = [k for k, v in LOOP_SIZES.items() if v == buffer_size][0]
    fig.update_layout(
        height=430, margin=dict(t=100, b=90, l=70, r=10),
        legend=dict(orientation="h", x=0, y=-0.28, yanchor="top", font_size=11),
        title=dict(text=(f"One {size} buffer per request, mmap threshold "
                         f"{'pinned at 128 KiB' if threshold == 'pinned' else 'dynamic'}<br><sup>"
                         f"threshold after the last request: {r.mmap_threshold[-1]:,} bytes; "
                         f"the book's glibc 2.36 model</sup>"), font_size=15))
    return fig


request_buffers = Explorable(
    request_loop_figure,
    title="One buffer per request: the dynamic threshold at work",
    describe=describe_request_loop,
    buffer_size=Dropdown(LOOP_SIZES, label="buffer size", default="1MiB"),
    threshold=Dropdown(THRESHOLDS, label="mmap threshold", default="dynamic"),
)


# ------------------------------------------------------------------ the A-E page map

AE_STEPS = ("start", "malloc + write A, B, C, D, E", "free C", "free D", "malloc_trim(0)",
            "malloc + write F (100 KiB)", "free F", "free E")
AE_BLOCKS = {"64 KiB": "64KiB", "100 KiB": "100KiB"}
COLS = 16


@dataclass(frozen=True)
class HeapSnapshot:
    step: int
    heap_pages: int                  # program break / 4 KiB
    states: np.ndarray               # PageState per heap page
    owners: tuple[str, ...]          # per heap page: "A".."F", "tcache", "free", "top"
    heap_rss_pages: int
    faults_so_far: int
    syscalls_so_far: dict
    free_chunks: tuple[tuple[int, int], ...]   # (offset, size) bytes


def _owners(alloc: GlibcMalloc) -> tuple[str, ...]:
    """The chunk owning most of each heap page (malloc's view, not the kernel's)."""
    npages = alloc.heap_size // PAGE_SIZE
    best = np.zeros(npages, dtype=np.int64)
    label = ["top"] * npages
    spans = [(b.chunk, b.size, b.id) for b in alloc.blocks.values() if b.region == HEAP]
    spans += [(p, s, "free") for p, s in alloc.free_chunks.items()]
    spans += [(alloc.top, alloc.top_size, "top")]
    if not alloc._tcache_region:                      # the tcache struct is the heap's first chunk
        spans.append((0, 0x290, "tcache"))
    for start, size, name in spans:
        for page in range(start // PAGE_SIZE, min(npages, -(-(start + size) // PAGE_SIZE))):
            lo, hi = max(start, page * PAGE_SIZE), min(start + size, (page + 1) * PAGE_SIZE)
            if hi - lo > best[page]:
                best[page], label[page] = hi - lo, name
    return tuple(label)


def ae_ops(malloc_trim: bool, block_size: str) -> list[list[dict]]:
    """The operations of each page-map step (step 0 has none; step 4 none without trim)."""
    _check_choice("block_size", block_size, AE_BLOCKS.values())
    if not isinstance(malloc_trim, bool):
        raise ModelInputError(f"malloc_trim must be True or False, got {malloc_trim!r}")
    return [[], [{"op": "malloc", "id": x, "size": block_size} for x in LETTERS],
            [{"op": "free", "id": "C"}], [{"op": "free", "id": "D"}],
            [{"op": "malloc_trim", "pad": 0}] if malloc_trim else [],
            [{"op": "malloc", "id": "F", "size": "100KiB"}], [{"op": "free", "id": "F"}],
            [{"op": "free", "id": "E"}]]


@lru_cache(maxsize=None)
def ae_run(malloc_trim: bool, block_size: str) -> tuple[HeapSnapshot, ...]:
    """Play :func:`ae_ops` on the model; one snapshot after each step."""
    alloc = GlibcMalloc()
    out = []
    flat = [op for step in ae_ops(malloc_trim, block_size) for op in step]
    parse_sequence(flat)                                   # checks the ids up front
    for step, ops in enumerate(ae_ops(malloc_trim, block_size)):
        for i, op in enumerate(ops):
            apply(alloc, parse_op(op, i))
        npages = alloc.heap_size // PAGE_SIZE
        states = np.array(alloc.space.states(HEAP)) if npages else np.zeros(0, dtype=np.int8)
        states.flags.writeable = False
        out.append(HeapSnapshot(step, npages, states, _owners(alloc) if npages else (),
                                alloc.heap_rss_pages(), int(alloc.space.faults),
                                dict(alloc.syscalls), tuple(sorted(alloc.free_chunks.items()))))
    return tuple(out)


def _check_step(step) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or not 0 <= step < len(AE_STEPS):
        raise ModelInputError(f"step must be a whole number in 0..{len(AE_STEPS) - 1}, got {step!r}")
    return int(step)


def _step_name(step: int, malloc_trim: bool) -> str:
    if step == 4 and not malloc_trim:
        return "no malloc_trim (nothing happens)"
    return AE_STEPS[step]


def describe_ae(step: int, malloc_trim: bool, block_size: str) -> str:
    step = _check_step(step)
    snaps = ae_run(malloc_trim, block_size)
    s, prev = snaps[step], snaps[max(step - 1, 0)]
    resident = int(np.count_nonzero(s.states == PageState.RESIDENT))
    dropped = int(np.count_nonzero(s.states == PageState.NOT_PRESENT))
    free_pages = sum(1 for o in s.owners if o == "free")
    calls = {k: s.syscalls_so_far[k] - prev.syscalls_so_far[k] for k in SYSCALLS}
    return (f"Step {step}, {_step_name(step, malloc_trim)} ({block_size.replace('KiB', ' KiB')} blocks): "
            f"the heap is {s.heap_pages} pages ({s.heap_pages * 4} KiB), {resident} of them resident "
            f"and {dropped} not present; {free_pages} pages lie mostly in free chunks. "
            f"This step made {_syscall_words(calls)} and took {s.faults_so_far - prev.faults_so_far} "
            f"page faults; heap RSS is {s.heap_rss_pages * 4} KiB.")


_OWNER_TEXT = {"tcache": "tc", "free": "free", "top": "top"}
#: Page colours: the page map's, with pages beyond the break visible on a white page.
_COLOURS = {**STATE_COLORS, NOT_MAPPED: "#F0F0F0"}


def ae_figure(step: int, malloc_trim: bool, block_size: str) -> go.Figure:
    step = _check_step(step)
    snaps = ae_run(malloc_trim, block_size)
    s = snaps[step]
    width = max(x.heap_pages for x in snaps)
    rows = -(-width // COLS)
    codes = np.full(rows * COLS, NOT_MAPPED, dtype=np.int64)
    codes[:s.heap_pages] = s.states
    text = [""] * (rows * COLS)
    hover = [f"page {i} (offset {i * 4} KiB): beyond the program break" for i in range(rows * COLS)]
    for i, owner in enumerate(s.owners):
        text[i] = _OWNER_TEXT.get(owner, owner)
        what = {"free": "a free chunk", "top": "the top chunk",
                "tcache": "malloc's tcache"}.get(owner, f"block {owner}")
        hover[i] = (f"page {i} (offset {i * 4} KiB): {what}; "
                    f"{STATE_LABELS[int(s.states[i])]}")
    order = sorted(_COLOURS)
    scale = []
    for j, code in enumerate(order):
        scale += [[j / len(order), _COLOURS[code]], [(j + 1) / len(order), _COLOURS[code]]]
    z = codes.reshape(rows, COLS)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.66, 0.34], horizontal_spacing=0.04,
                        specs=[[{"type": "xy"}, {"type": "table"}]])
    fig.add_trace(go.Heatmap(
        z=z.tolist(), zmin=-0.5, zmax=len(order) - 0.5, colorscale=scale, showscale=False,
        xgap=2, ygap=2, text=np.array(text).reshape(rows, COLS).tolist(), texttemplate="%{text}",
        textfont=dict(size=10, color="#000000"),
        customdata=np.array(hover).reshape(rows, COLS).tolist(),
        hovertemplate="%{customdata}<extra></extra>"), row=1, col=1)
    # the program break: the end of the last mapped cell
    if s.heap_pages:
        r, c = divmod(s.heap_pages - 1, COLS)
        fig.add_shape(type="line", x0=c + 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5,
                      line=dict(color="#000000", width=4), row=1, col=1)
        fig.add_annotation(x=c + 0.5, y=r + 0.5, text="program break", showarrow=True, ax=30, ay=24,
                           font_size=11, row=1, col=1)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain",
                     range=[-0.5, COLS - 0.5],
                     title_text="one cell = one 4 KiB page of the brk heap, 16 pages (64 KiB) per row",
                     title_font_size=11, row=1, col=1)
    fig.update_yaxes(autorange="reversed", showgrid=False, zeroline=False, scaleanchor="x",
                     tickvals=list(range(rows)), ticktext=[f"{r * 64} KiB" for r in range(rows)],
                     tickfont_size=10, title_text="offset from the initial break", row=1, col=1)
    prev = snaps[max(step - 1, 0)]
    calls = {k: s.syscalls_so_far[k] - prev.syscalls_so_far[k] for k in SYSCALLS}
    names = ["heap size", "heap RSS", "faults (step)", "faults (total)", "brk calls (total)",
             "madvise calls (total)", "this step"]
    values = [f"{s.heap_pages * 4} KiB", f"{s.heap_rss_pages * 4} KiB",
              f"{s.faults_so_far - prev.faults_so_far}", f"{s.faults_so_far}",
              f"{s.syscalls_so_far['brk']}", f"{s.syscalls_so_far['madvise']}",
              _syscall_words(calls)]
    fig.add_trace(go.Table(columnwidth=[0.45, 0.55],
                           header=dict(values=["counter", "value"], align="left", fill_color="#EEEEEE",
                                       height=22, font_size=12),
                           cells=dict(values=[names, values], align="left", height=22, font_size=12)),
                  row=1, col=2)
    for code in (int(PageState.RESIDENT), int(PageState.NOT_PRESENT), NOT_MAPPED):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers",
                                 name=("beyond the program break (not mapped)" if code == NOT_MAPPED
                                       else STATE_LABELS[code]),
                                 marker=dict(symbol="square", size=13, color=_COLOURS[code],
                                             line=dict(color="#666666", width=1)),
                                 hoverinfo="skip"), row=1, col=1)
    fig.update_layout(
        height=480, margin=dict(t=80, b=90, l=90, r=10), plot_bgcolor="#FFFFFF",
        title=dict(text=(f"The brk heap after step {step}: {_step_name(step, malloc_trim)}<br><sup>"
                         f"A-E are {block_size.replace('KiB', ' KiB')} each; labels are malloc's view "
                         f"(block, free chunk, top chunk, tc = tcache), colours the kernel's</sup>"),
                   font_size=15),
        legend=dict(orientation="h", x=0, y=-0.1, yanchor="top", font_size=11, title_text="page:"))
    return fig


ae_pagemap = Explorable(
    ae_figure,
    title="The A-E heap, page by page",
    describe=describe_ae,
    step=Slider(range(len(AE_STEPS)), label="step", default=1),
    malloc_trim=Toggle(label="malloc_trim(0) at step 4", default=True),
    block_size=Dropdown(AE_BLOCKS, label="A-E block size", default="64KiB"),
)


# ------------------------------------------------------------------ kernel cell: real glibc

#: The chapter's A-E sequence on real glibc (the KERNEL cell of section 3.6).
AE_GLIBC_OPS = (
    [{"op": "malloc", "id": x, "size": "64KiB"} for x in LETTERS]
    + [{"op": "free", "id": "C"}, {"op": "free", "id": "D"}, {"op": "malloc_trim", "pad": 0},
       {"op": "malloc", "id": "F", "size": "100KiB"}, {"op": "free", "id": "F"},
       {"op": "free", "id": "E"}, {"op": "malloc", "id": "G", "size": "200KiB"},
       {"op": "free", "id": "G"}, {"op": "malloc", "id": "H", "size": "200KiB"},
       {"op": "free", "id": "H"}])
RECORDED_DIR = Path(__file__).resolve().parents[2] / "book" / "recorded"
GLIBC_FORMAT = 1
_ROW_FIELDS = ("step", "op", "id", "placement", "heap_size", "heap_rss_pages", "mmap_rss_pages",
               "faults", "syscalls")


def glibc_version() -> Optional[str]:
    """``gnu_get_libc_version()`` of this process's C library, or None (not glibc)."""
    try:
        libc = ctypes.CDLL(None)
        fn = libc.gnu_get_libc_version
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_char_p
    return fn().decode()


@dataclass
class GlibcVsModel:
    """A malloc sequence on the reader's glibc (live or recorded) beside the model."""

    ops: list
    record_id: str
    live: bool
    source: str
    glibc: Optional[str]
    real: list                      # dicts with _ROW_FIELDS
    model: list
    with_syscalls: bool
    reason: str = ""
    problems: list = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return not self.problems

    def verdict(self) -> str:
        if self.agrees:
            what = "placement, heap size, heap and mmap RSS and faults (within 2 pages)"
            if self.with_syscalls:
                what += ", and the system calls of every operation (exactly)"
            return f"The model agrees with glibc on every operation: {what}."
        return (f"The model and glibc disagree on {len(self.problems)} point(s): "
                + "; ".join(self.problems[:6]) + ("; ..." if len(self.problems) > 6 else "") + ".")

    def rows(self) -> list[tuple]:
        out = []
        for i, op in enumerate(self.ops):
            out.append((i, op_label(op), self.real[i], self.model[i]))
        return out

    def html(self) -> str:
        def calls(c):
            return "-" if c is None else (", ".join(f"{n} {k}" for k, n in c.items() if n) or "none")

        head = ("<tr><th rowspan='2'>step</th><th rowspan='2'>operation</th>"
                "<th colspan='2'>heap size (KiB)</th><th colspan='2'>heap RSS (KiB)</th>"
                "<th colspan='2'>mmap RSS (KiB)</th><th colspan='2'>faults</th>"
                "<th colspan='2'>system calls</th></tr><tr>"
                + "<th>glibc</th><th>model</th>" * 5 + "</tr>")
        body = []
        for i, what, r, m in self.rows():
            bad = any(p.startswith(f"step {i} ") for p in self.problems)
            style = ' style="background:#FCE4D6"' if bad else ""
            cells = [(r["heap_size"] // KiB, m["heap_size"] // KiB),
                     (r["heap_rss_pages"] * 4, m["heap_rss_pages"] * 4),
                     (r["mmap_rss_pages"] * 4, m["mmap_rss_pages"] * 4),
                     (r["faults"], m["faults"])]
            tds = "".join(f"<td{style}>{a:,}</td><td{style}>{b:,}</td>" for a, b in cells)
            tds += (f"<td{style}>{html.escape(calls(r['syscalls']))}</td>"
                    f"<td{style}>{html.escape(calls(m['syscalls']))}</td>")
            body.append(f"<tr><td>{i}</td><td>{html.escape(what)}</td>{tds}</tr>")
        reason = (f'<p class="kernel-cell-reason">Not run live here: {html.escape(self.reason)}</p>'
                  if self.reason else "")
        colour = "color:#1B5E20" if self.agrees else "color:#B71C1C"
        return (f'<div class="kernel-cell glibc-cell" data-live="{str(self.live).lower()}">'
                f'<p class="kernel-cell-source"><strong>C library: {html.escape(self.source)}.</strong> '
                f"Model: the book's glibc 2.36 model (main arena) on its page model.</p>{reason}"
                f'<table class="kernel-vs-model" style="font-size:0.85em"><thead>{head}</thead>'
                f"<tbody>{''.join(body)}</tbody></table>"
                f'<p class="kernel-cell-verdict" style="{colour}">{html.escape(self.verdict())}</p></div>')

    def summary(self) -> str:
        lines = [f"C library: {self.source}."] + ([f"Not run live here: {self.reason}"] if self.reason else [])
        lines.append(f"{'step':>4} {'operation':16} {'heap KiB glibc/model':>21} "
                     f"{'heap RSS KiB':>15} {'mmap RSS KiB':>15} {'faults':>11}  syscalls glibc / model")
        for i, what, r, m in self.rows():
            def c(x):
                return "-" if x is None else (",".join(f"{n} {k}" for k, n in x.items() if n) or "none")
            lines.append(f"{i:>4} {what:16} {r['heap_size'] // KiB:>10}/{m['heap_size'] // KiB:<10} "
                         f"{r['heap_rss_pages'] * 4:>7}/{m['heap_rss_pages'] * 4:<7} "
                         f"{r['mmap_rss_pages'] * 4:>7}/{m['mmap_rss_pages'] * 4:<7} "
                         f"{r['faults']:>5}/{m['faults']:<5}  {c(r['syscalls'])} / {c(m['syscalls'])}")
        return "\n".join(lines + [self.verdict()])

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        return self.summary()


def _row(obs) -> dict:
    return {k: getattr(obs, k) for k in _ROW_FIELDS}


class _Obs:
    """A recorded row, shaped like an Observation for :func:`models.malloc.fidelity.compare`."""

    def __init__(self, row: dict):
        self.__dict__.update(row)
        self.result = row.get("result")
        self.mallinfo = row.get("mallinfo", {"hblks": None})


def glibc_record_path(record_id: str, directory: Optional[Path] = None) -> Path:
    from models.viz.kernel_cell import record_path
    return record_path(record_id, directory or RECORDED_DIR)


def record_glibc(ops, record_id: str, directory: Optional[Path] = None) -> Path:
    """Run ``ops`` on this machine's glibc now and write ``book/recorded/<record_id>.json``."""
    from models.realkernel.engine import kernel_release
    from models.realkernel.glibc_probe import run_sequence
    real = run_sequence(parse_sequence(list(ops)))
    return _write_glibc_record(ops, record_id, real, kernel_release(), directory)


def _write_glibc_record(ops, record_id, real, release, directory=None) -> Path:
    path = glibc_record_path(record_id, directory)
    obj = {"format": GLIBC_FORMAT, "kind": "glibc-malloc", "record_id": record_id,
           "recorded_at": _now(), "kernel_release": release, "machine": platform.machine(),
           "glibc": glibc_version(), "ops": list(ops),
           "glibc_rows": [dict(_row(r), result=r.result, mallinfo=r.mallinfo) for r in real]}
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(path, obj)


def glibc_vs_model(ops=AE_GLIBC_OPS, record_id: str = "ch03-glibc-ae", *,
                   force_recorded: Optional[bool] = None, directory: Optional[Path] = None,
                   runner=None) -> GlibcVsModel:
    """``ops`` on this machine's glibc (live when the probe can run, else the recording) beside
    the model.  Same environment switches as :func:`models.viz.kernel_cell.kernel_vs_model`:
    ``BOOK_FORCE_RECORDED=1`` shows the recording, ``BOOK_RECORD=1`` rewrites it after a live run.
    ``runner`` replaces :func:`models.realkernel.glibc_probe.run_sequence` (tests)."""
    from models.malloc.fidelity import compare
    from models.realkernel.engine import kernel_release
    from models.realkernel.glibc_probe import GlibcProbeError, probe_support, run_sequence
    from models.viz.kernel_cell import RECORD_ENV, forced_recording_reason

    ops = list(ops)
    seq = parse_sequence(ops)
    model = replay(seq)
    model_rows = [_row(m) for m in model]
    reason = forced_recording_reason(force_recorded)
    if not reason:
        ok, why = probe_support()
        if not ok:
            reason = why
        else:
            try:
                real = (runner or run_sequence)(seq)
            except (GlibcProbeError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                release = kernel_release()
                if os.environ.get(RECORD_ENV, "") == "1":
                    _write_glibc_record(ops, record_id, real, release, directory)
                version = glibc_version()
                lib = f"glibc {version}" if version else "the C library (not glibc?)"
                if os.environ.get(STATIC_BUILD_ENV):
                    source = (f"{lib}, measured on {_now()[:10]}, Linux {release} ({platform.machine()}), "
                              f"this book's build machine, while this page was built")
                else:
                    source = f"{lib}, measured live now on this machine, Linux {release}"
                with_sc = all(r.syscalls is not None for r in real)
                return GlibcVsModel(ops, record_id, True, source, version, [_row(r) for r in real],
                                    model_rows, with_sc, problems=compare(model, real, with_sc))
    path = glibc_record_path(record_id, directory)
    if not path.exists():
        raise ModelInputError(f"no recorded glibc run {path.name} in {path.parent}; record it on Linux "
                              f"with `python -m models.viz.free record`")
    rec = json.loads(path.read_text())
    if rec.get("format") != GLIBC_FORMAT or rec.get("kind") != "glibc-malloc":
        raise ModelInputError(f"{path}: not a glibc recording of format {GLIBC_FORMAT}")
    if [parse_op(o, i) for i, o in enumerate(rec["ops"])] != list(seq.ops):
        raise ModelInputError(f"{path.name} was recorded for a different sequence than this cell's; "
                              f"re-record it with `python -m models.viz.free record`")
    real_rows = rec["glibc_rows"]
    with_sc = all(r["syscalls"] is not None for r in real_rows)
    problems = compare(model, [_Obs(r) for r in real_rows], with_sc)
    source = (f"glibc {rec['glibc']}, recorded on {rec['recorded_at'][:10]}, Linux {rec['kernel_release']} "
              f"({rec['machine']}), this book's build machine")
    return GlibcVsModel(ops, record_id, False, source, rec["glibc"],
                        [{k: r[k] for k in _ROW_FIELDS} for r in real_rows], model_rows, with_sc,
                        reason=reason, problems=problems)


# ------------------------------------------------------------------ kernel cell: the hole, scaled up

def kernel_hole() -> dict:
    """Five 4 MiB "blocks" A-E written; C and D released with MADV_DONTNEED as malloc_trim does;
    C read, D written, C written (FACTS 1-3, 39)."""
    return {"name": "ch03-dontneed-hole",
            "description": "the A-E hole at 4 MiB per block, released with MADV_DONTNEED",
            "steps": [
                {"op": "mmap", "region": "heap", "length": "20MiB", "shared": False},
                {"op": "touch", "region": "heap", "offset": 0, "length": "20MiB", "access": "write"},
                {"op": "madvise", "region": "heap", "offset": "8MiB", "length": "8MiB",
                 "advice": "MADV_DONTNEED"},
                {"op": "touch", "region": "heap", "offset": "8MiB", "length": "4MiB", "access": "read"},
                {"op": "touch", "region": "heap", "offset": "12MiB", "length": "4MiB", "access": "write"},
                {"op": "touch", "region": "heap", "offset": "8MiB", "length": "4MiB", "access": "write"},
                {"op": "munmap", "region": "heap"}]}


# ------------------------------------------------------------------ the generated quiz
# The generator lives with the simulations (``python -m models quiz --topic malloc``); the chapter
# imports it from here.
from models.quiz.malloc import (QUIZ_SIZES, MallocQuiz, malloc_quiz, quiz_answer_text,  # noqa: E402,F401
                                quiz_exercise, quiz_problem_text, quiz_rule)


# ------------------------------------------------------------------ CLI: re-record the glibc cell

def main(argv: list[str]) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m models.viz.free",
                                     description="Chapter 3 helpers: record the glibc kernel cell.")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run the A-E sequence on this glibc, write book/recorded/ch03-glibc-ae.json")
    rec.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args(argv)
    path = record_glibc(AE_GLIBC_OPS, "ch03-glibc-ae", args.dir)
    result = glibc_vs_model(force_recorded=True, directory=args.dir)
    print(f"wrote {path}\n{result.summary()}")
    return 0 if result.agrees else 1


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv[1:]))
