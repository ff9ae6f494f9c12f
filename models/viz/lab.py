"""Chapter 8 (the lab): the book's experiments on the reader's machine, beside the models.

Three experiments, each live where this machine allows it and otherwise shown from the run
recorded on the book's build machine (``book/recorded/ch08-*.json``), clearly labelled:

* :func:`library_run` -- every scenario of ``models/scenario/library`` on the kernel engine
  (through :func:`models.viz.kernel_cell.kernel_vs_model`, one recording per scenario), compared
  with the page model at this kernel's profile; :data:`fidelity_grid` draws every step of every
  scenario coloured by the agreement rule of :mod:`models.realkernel.fidelity`.
* :func:`calibration` -- :func:`models.realkernel.calibrate.calibrate` (T1..T7 in a child
  process) and the constants derived from it; :data:`cost_constants` shows the three constant
  sets (the book's defaults, the build machine's calibration, this machine's) and what each
  predicts for releasing and reusing a region.
* :func:`go_runs` -- the real Go program ``probes/goheap`` under ``GODEBUG=madvdontneed=1`` and
  ``=0``, without and with a memory limit, beside :func:`models.goruntime.simulate_release`;
  :data:`go_compare` draws them phase by phase.

Everything that touches the machine goes through the engines, which run child processes with
bounded memory and remove their cgroups (``models.realkernel``).  Set ``BOOK_RECORD=1`` to
rewrite the recordings after a successful live run, ``BOOK_FORCE_RECORDED=1`` to see what a
reader without Linux sees.
"""
from __future__ import annotations

import functools
import html
import json
import os
import platform
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from models.errors import ModelInputError
from models.goruntime.cost import DEFAULT_COST, CostModel
from models.realkernel.fidelity import MIN_TOLERANCE_PAGES, RELATIVE_TOLERANCE, faults_comparable
from models.scenario import library_names, resolve
from models.scenario.format import StepResult
from models.units import PAGE_SIZE
from models.viz import COLORS, STATIC_BUILD_ENV, Dropdown, Explorable, Slider
from models.viz.kernel_cell import (FORCE_RECORDED_ENV, RECORD_ENV, RECORDED_DIR, _scenario_json,
                                    _swap_total, _thp_setting, kernel_vs_model, load_recording)
from models.viz.recording import now_utc as _now, write_json_atomic

MiB = 1 << 20
PAGES_PER_MIB = MiB // PAGE_SIZE
FORMAT_VERSION = 1

#: Which chapter each library scenario belongs to (the chapter's table and the grid's labels).
SCENARIO_CHAPTER = {
    "zero-page-read": 2, "read-then-write": 2,
    "dontneed-private": 4, "free-then-write": 4, "free-then-read": 4, "free-then-dontneed": 4,
    "dontneed-shared": 4, "madvise-errors": 4, "partial-ranges": 4, "munmap": 4,
    "lazyfree-reclaim": 5, "oldest-freed-first": 5, "pressure-oom": 5,
}


def _force_recorded() -> bool:
    return os.environ.get(FORCE_RECORDED_ENV, "") == "1"


def _live_label(release: str) -> str:
    if os.environ.get(STATIC_BUILD_ENV):
        return (f"measured on {_now()[:10]}, Linux {release} ({platform.machine()}), this book's build "
                f"machine, while this page was built")
    return f"measured live now on this machine, Linux {release}"


def _recorded_label(rec: dict) -> str:
    return (f"recorded on {rec['recorded_at'][:10]}, Linux {rec['kernel_release']} ({rec['machine']}), "
            f"this book's build machine")


def _recorded_path(name: str) -> Path:
    return RECORDED_DIR / f"{name}.json"


def _load(name: str) -> dict:
    path = _recorded_path(name)
    obj = json.loads(path.read_text())
    if obj.get("format") != FORMAT_VERSION:
        raise ModelInputError(f"{path}: not a chapter-8 recording of format {FORMAT_VERSION}")
    return obj


def _save(name: str, payload: dict) -> None:
    from models.realkernel.engine import kernel_release
    obj = {"format": FORMAT_VERSION, "recorded_at": _now(), "kernel_release": kernel_release(),
           "machine": platform.machine(), "thp": _thp_setting(), "swap_bytes": _swap_total(), **payload}
    write_json_atomic(_recorded_path(name), obj)


# --------------------------------------------------------------------------- this machine

def auto_profile() -> tuple[str, bool]:
    """The page model's profile for this machine: (kernel version, swap) from uname and meminfo."""
    from models.kernel.profile import profile_for
    if not sys.platform.startswith("linux"):
        return "6.18", False
    release = os.uname().release
    try:
        profile_for(release)
    except ModelInputError:
        return "6.18", False
    return release, bool(_swap_total())


def _cgroup_version() -> str:
    if not sys.platform.startswith("linux"):
        return "none (not Linux)"
    try:
        from models.realkernel.cgroup import _locate
        return f"v{_locate().version}"
    except OSError as exc:
        return f"none ({exc})"


def machine_text() -> str:
    """uname -r, SwapTotal, THP mode and cgroup version: what explains most differences."""
    if not sys.platform.startswith("linux"):
        return f"This is {sys.platform}, not Linux: every result below is the book's recording."
    swap = _swap_total()
    return (f"Kernel: Linux {os.uname().release} ({platform.machine()}). "
            f"SwapTotal: {'unknown' if swap is None else f'{swap >> 20:,} MiB'}. "
            f"Transparent huge pages: {_thp_setting() or 'unknown'}. "
            f"Memory cgroup: {_cgroup_version()}.")


def capabilities() -> list[tuple[str, bool, str]]:
    """(part, can run, "ok" or the reason) for the four parts of the lab."""
    from models.realkernel.calibrate import calibration_support
    from models.realkernel.engine import kernel_engine_support
    from models.realkernel.goprobe import go_support
    limited = resolve("lazyfree-reclaim")
    out = []
    for part, (ok, why) in (("scenarios without a memory limit", kernel_engine_support()),
                            ("scenarios with a memory limit", kernel_engine_support(limited)),
                            ("cost calibration", calibration_support())):
        out.append((part, ok, "ok" if ok else why))
    ok, why = go_support()
    if ok:
        ok, why = kernel_engine_support()[0], why
    out.append(("the Go program", ok, f"ok ({why})" if ok else why))
    return out


def capabilities_text() -> str:
    rows = [machine_text()] + [f"- {part}: {msg}" for part, _, msg in capabilities()]
    return "\n".join(rows)


# --------------------------------------------------------------------------- the library

def record_id(name: str) -> str:
    return f"ch08-{name}"


@dataclass
class LibraryRun:
    """Every library scenario on the kernel (live or recorded) beside the model."""
    results: dict                     # name -> KernelVsModel
    model_profile: str
    missing: dict = field(default_factory=dict)   # name -> why neither a live run nor a recording

    def summary_rows(self) -> list[tuple[str, int, str, str]]:
        rows = []
        for name, r in self.results.items():
            if r.agrees:
                verdict = "agrees"
            else:
                first = r.mismatches[0]
                verdict = f"differs first at step {first.step} ({first.op}), {first.field}"
            rows.append((name, SCENARIO_CHAPTER.get(name, 0), "live" if r.live else "recorded", verdict))
        for name, why in self.missing.items():
            rows.append((name, SCENARIO_CHAPTER.get(name, 0), "none", f"not shown: {why}"))
        return rows

    def html(self) -> str:
        head = ("<tr><th>scenario</th><th>chapter</th><th>kernel run</th>"
                "<th>verdict (max(32 pages, 3 %), errors equal)</th></tr>")
        body = "".join(f"<tr><td><code>{html.escape(n)}</code></td><td>{c or '-'}</td><td>{s}</td>"
                       f"<td>{html.escape(v)}</td></tr>" for n, c, s, v in self.summary_rows())
        sources = sorted({r.source for r in self.results.values()})
        reasons = sorted({r.reason for r in self.results.values() if r.reason})
        details = "".join(
            f"<details><summary><code>{html.escape(n)}</code>: step by step</summary>{r.html()}</details>"
            for n, r in self.results.items())
        return (f'<div class="lab-library"><p>{html.escape(machine_text())}</p>'
                f"<p>Kernel runs: {html.escape('; '.join(sources))}.</p>"
                + "".join(f'<p class="kernel-cell-reason">Not run live here: {html.escape(x)}</p>'
                          for x in reasons)
                + f"<p>Model: the page model at the Linux {html.escape(self.model_profile)} profile.</p>"
                f'<table class="lab-summary">{head}{body}</table>{details}</div>')

    def _repr_html_(self) -> str:
        return self.html()

    def text(self) -> str:
        return "\n".join(f"{n:<22} {f'ch{c}' if c else '-':<4} {s:<8} {v}" for n, c, s, v in self.summary_rows())

    def __repr__(self) -> str:
        return self.text()


_LIBRARY: list = []


def library_run() -> LibraryRun:
    """Run (once per process) every library scenario on this kernel beside the model."""
    if not _LIBRARY:
        version, _swap = auto_profile()
        results, missing = {}, {}
        for name in library_names():
            try:
                results[name] = kernel_vs_model(name, record_id(name), kernel_version=version)
            except ModelInputError as exc:      # not live here, and no (current) recording
                missing[name] = str(exc)
        _LIBRARY.append(LibraryRun(results, version, missing))
    return _LIBRARY[0]


# -- the fidelity grid

SOURCES = {"this book's build (recorded)": "recorded", "this machine (live)": "live"}
METRICS = {"all columns (worst)": "all", "RSS": "rss_pages", "LazyFree": "lazyfree_pages",
           "minor faults": "faults", "pages read as zeros": "zero_pages", "error": "error"}
TOLERANCES = {"exact": "exact", "max(32 pages, 3 %)": "default", "loose: max(32 pages, 10 %)": "loose"}
PROFILES = {"matching the kernel": "auto", "Linux 4.4": "4.4", "Linux 4.9, no swap": "4.9",
            "Linux 4.9, with swap": "4.9+swap", "Linux 6.18": "6.18"}
CATEGORIES = ("equal", "within tolerance", "within 2x tolerance", "beyond 2x tolerance",
              "not run / not applicable")
_CATEGORY_COLOURS = ("#1B7837", "#A6DBA0", "#E69F00", "#B2182B", "#D9D9D9")
NUMERIC = ("rss_pages", "lazyfree_pages", "faults", "zero_pages")


def tolerance_pages(kernel_value: int, tolerance: str) -> int:
    """Pages of slack for one value: 0 (exact), the runner's rule, or a loose 10 %."""
    if tolerance == "exact":
        return 0
    if tolerance == "default":
        return max(MIN_TOLERANCE_PAGES, int(RELATIVE_TOLERANCE * abs(kernel_value)))
    if tolerance == "loose":
        return max(MIN_TOLERANCE_PAGES, int(0.10 * abs(kernel_value)))
    raise ModelInputError(f"tolerance must be one of {list(TOLERANCES.values())}, got {tolerance!r}")


def classify(kernel: Optional[StepResult], model: Optional[StepResult], metric: str, tolerance: str) -> int:
    """The grid category (index into CATEGORIES) of one value of one step."""
    if kernel is None or model is None:
        return 4
    if metric == "all":
        cats = [classify(kernel, model, m, tolerance) for m in NUMERIC + ("error",)]
        real = [c for c in cats if c != 4]
        return max(real) if real else 4
    if metric == "error":
        return 0 if kernel.error == model.error else 3
    if kernel.error == "OOM_KILL" or model.error == "OOM_KILL":
        return 4 if kernel.error == model.error else 3
    k, m = getattr(kernel, metric), getattr(model, metric)
    if k is None and m is None:
        return 4
    if k is None or m is None:
        return 3
    d = abs(k - m)
    if d == 0:
        return 0
    tol = tolerance_pages(k, tolerance)
    if tolerance == "exact":
        # nothing is "within" an exact rule: grade by the runner's rule instead
        tol2 = tolerance_pages(k, "default")
        return 2 if d <= tol2 else 3
    return 1 if d <= tol else 2 if d <= 2 * tol else 3


def _profile_args(profile: str, kernel_release: str, swap_bytes: Optional[int]) -> tuple[str, bool]:
    if profile == "auto":
        from models.kernel.profile import profile_for
        try:
            profile_for(kernel_release)
        except ModelInputError:
            return "6.18", bool(swap_bytes)
        return kernel_release, bool(swap_bytes)
    if profile == "4.9+swap":
        return "4.9", True
    return profile, False


@functools.lru_cache(maxsize=None)
def _model_rows(name: str, version: str, swap: bool) -> tuple:
    from models.kernel.replay import play
    # As `python -m models run --engine model`: page tables charged like the kernel (K3).
    return tuple(play(resolve(name), kernel_version=version, swap=swap, pagetables=True))


@dataclass(frozen=True)
class KernelSide:
    rows: dict                        # name -> list[StepResult] (missing: not run)
    kernel_release: str
    swap_bytes: Optional[int]
    label: str
    missing: dict = field(default_factory=dict)   # name -> why it did not run


def recorded_side() -> KernelSide:
    """The recorded runs; a scenario added to the library after the recording shows as not run."""
    rows, missing, release, swap, date = {}, {}, "6.18", None, ""
    for name in library_names():
        try:
            rec = load_recording(record_id(name))
        except ModelInputError:
            missing[name] = "no recording of this scenario yet"
            continue
        if rec.scenario != _scenario_json(resolve(name)):
            missing[name] = "the scenario changed after it was recorded"
            continue
        rows[name] = list(rec.kernel)
        release, swap, date = rec.kernel_release, rec.swap_bytes, rec.date
    return KernelSide(rows, release, swap, f"recorded on {date}, Linux {release}, this book's build machine",
                      missing)


def live_side() -> Optional[KernelSide]:
    """This machine's runs from :func:`library_run` (None if no scenario ran live)."""
    run = library_run()
    live = {n: r.kernel for n, r in run.results.items() if r.live}
    if not live:
        return None
    release = next(r.kernel_release for r in run.results.values() if r.live)
    missing = {n: r.reason for n, r in run.results.items() if not r.live}
    return KernelSide(live, release, _swap_total(), _live_label(release), missing)


def fidelity_cells(side: KernelSide, metric: str, tolerance: str, profile: str):
    """(z categories, hover texts, step counts) per library scenario, in library order."""
    version, swap = _profile_args(profile, side.kernel_release, side.swap_bytes)
    names = library_names()
    width = max(len(resolve(n).steps) for n in names)
    z, text = [], []
    for name in names:
        scen = resolve(name)
        model = _model_rows(name, version, swap)
        kernel = side.rows.get(name)
        comparable = faults_comparable(scen)
        zr, tr = [], []
        for i in range(width):
            if i >= len(scen.steps):
                zr.append(None)
                tr.append("")
                continue
            k = kernel[i] if kernel is not None and i < len(kernel) else None
            m = model[i] if i < len(model) else None
            cat = classify(k, m, metric, tolerance)
            zr.append(cat + 0.5)
            if kernel is None:
                what = f"not run here: {side.missing.get(name, 'no kernel run')}"
            elif k is None or m is None:
                what = ("run by neither (after an OOM kill)" if k is None and m is None else
                        f"{'kernel' if k is None else 'model'}: did not run")
            elif metric == "all":
                diff = [f for f in NUMERIC + ("error",) if k is None or m is None or getattr(k, f) != getattr(m, f)]
                what = ("kernel = model" if not diff else
                        "; ".join(f"{f.replace('_pages', '')} {_v(k, f)}/{_v(m, f)}" for f in diff) + " (kernel/model)")
            else:
                what = f"kernel {_v(k, metric)}, model {_v(m, metric)}"
                if metric == "faults" and not comparable[i]:
                    what += " (not held to tolerance: shared memory or after reclaim)"
            tr.append(f"{name} step {i} ({scen.steps[i].op}): {what}")
        z.append(zr)
        text.append(tr)
    return z, text, version, swap


def _v(row: Optional[StepResult], name: str) -> str:
    if row is None:
        return "did not run"
    v = getattr(row, name)
    return "-" if v is None else (f"{v:,}" if isinstance(v, int) else str(v))


def fidelity_figure(source: str, metric: str, tolerance: str, profile: str) -> go.Figure:
    side = recorded_side() if source == "recorded" else live_side()
    names = library_names()
    fig = go.Figure()
    if side is None:
        _run = library_run()
        why = "; ".join(sorted({r.reason for r in _run.results.values() if r.reason})) or "no live run"
        fig.add_annotation(text=f"No live run on this machine: {why}", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
        fig.update_layout(height=460, xaxis=dict(visible=False), yaxis=dict(visible=False))
        return fig
    z, text, version, swap = fidelity_cells(side, metric, tolerance, profile)
    n = len(CATEGORIES)
    scale = []
    for i, colour in enumerate(_CATEGORY_COLOURS):
        scale += [[i / n, colour], [(i + 1) / n, colour]]
    fig.add_trace(go.Heatmap(
        z=z, x=list(range(len(z[0]))),
        y=[f"{nm} (ch. {SCENARIO_CHAPTER[nm]})" if nm in SCENARIO_CHAPTER else nm for nm in names],
        text=text, hovertemplate="%{text}<extra></extra>", zmin=0, zmax=n, colorscale=scale,
        xgap=2, ygap=2,
        colorbar=dict(tickvals=[i + 0.5 for i in range(n)], ticktext=list(CATEGORIES), orientation="h",
                      y=-0.12, yanchor="top", x=0.5, xanchor="center", len=1.0, thickness=14,
                      tickfont=dict(size=10))))
    fig.update_layout(
        height=210 + 24 * len(names), margin=dict(t=50, b=110, l=170, r=10),
        title=dict(text=f"{side.label}<br><sub>model: Linux {version}{', swap' if swap else ', no swap'}</sub>",
                   font_size=13))
    fig.update_xaxes(title_text="step of the scenario", dtick=1 if len(z[0]) <= 15 else 5)
    fig.update_yaxes(autorange="reversed")
    return fig


def describe_fidelity(source: str, metric: str, tolerance: str, profile: str) -> str:
    side = recorded_side() if source == "recorded" else live_side()
    if side is None:
        return "No live run on this machine; choose the book's build."
    z, _, version, swap = fidelity_cells(side, metric, tolerance, profile)
    counts = [0] * len(CATEGORIES)
    for row in z:
        for v in row:
            if v is not None:
                counts[int(v)] += 1
    parts = [f"{c} {CATEGORIES[i]}" for i, c in enumerate(counts) if c]
    return (f"{side.label}; model Linux {version}{' with swap' if swap else ''}: "
            f"{sum(counts)} steps, " + ", ".join(parts) + ".")


def problem_cells(side: KernelSide, metric: str, tolerance: str, profile: str) -> list[str]:
    """Hover texts of the cells beyond tolerance (the prose and the tests use them)."""
    z, text, _, _ = fidelity_cells(side, metric, tolerance, profile)
    return [t for zr, tr in zip(z, text) for v, t in zip(zr, tr) if v is not None and int(v) == 3]


fidelity_grid = Explorable(
    fidelity_figure,
    title="Every step of the book's scenarios: kernel vs page model",
    describe=describe_fidelity,
    source=Dropdown(SOURCES, label="kernel runs", default="recorded"),
    metric=Dropdown(METRICS, label="column", default="all"),
    tolerance=Dropdown(TOLERANCES, label="tolerance", default="default"),
    profile=Dropdown(PROFILES, label="model profile", default="auto"),
)


# --------------------------------------------------------------------------- calibration

@dataclass
class CalibrationResult:
    """This machine's calibration (if it ran) and the recorded one of the book's build."""
    recorded: object                  # models.realkernel.calibrate.Calibration
    recorded_label: str
    live: Optional[object] = None
    live_label: str = ""
    reason: str = ""

    @property
    def shown(self):
        return self.live if self.live is not None else self.recorded

    def html(self) -> str:
        from models.realkernel.calibrate import STEP_TEXT, STEPS
        book = {"T4": DEFAULT_COST.ns_per_madvise_page["MADV_DONTNEED"],
                "T5": DEFAULT_COST.ns_per_fault + DEFAULT_COST.ns_per_zeroed_page + DEFAULT_COST.ns_per_touch,
                "T6": DEFAULT_COST.ns_per_madvise_page["MADV_FREE"], "T7": DEFAULT_COST.ns_per_touch}
        cal = self.shown
        label = self.live_label if self.live is not None else self.recorded_label
        rows = []
        for s in STEPS:
            st = cal.steps[s]
            ns = "-" if st.error else f"{st.ns_median:,.0f}"
            spread = "-" if st.error else f"{st.ns_min:,.0f}-{st.ns_max:,.0f}"
            faults = st.error or f"{st.faults_per_page:.2f}"
            rec = self.recorded.steps[s]
            recorded = "-" if rec.error or self.live is None else f"{rec.ns_median:,.0f}"
            rows.append(f"<tr><td>{s}</td><td>{html.escape(STEP_TEXT[s])}</td><td>{ns}</td><td>{spread}</td>"
                        f"<td>{html.escape(faults)}</td><td>{recorded}</td>"
                        f"<td>{f'{book[s]:,.0f}' if s in book else 'not measured'}</td></tr>")
        head = ("<tr><th>step</th><th>what</th><th>ns/page (median)</th><th>min-max</th><th>faults/page</th>"
                "<th>book's build, recorded</th><th>book defaults (E3)</th></tr>")
        cm = cal.cost_model()
        constants = (f"Derived: ns_per_fault = T1 = {cm.ns_per_fault:,.0f}; ns_per_zeroed_page = "
                     f"max(T5 - T1 - ns_per_touch, 0) = {cm.ns_per_zeroed_page:,.0f}; ns_per_touch = "
                     f"{'T7' if cal.lazy else 'T3'} = {cm.ns_per_touch:,.0f}; MADV_DONTNEED = T4 = "
                     f"{cm.ns_per_madvise_page['MADV_DONTNEED']:,.0f}; MADV_FREE = "
                     f"{'T6' if cal.lazy else 'the book default'} = {cm.ns_per_madvise_page['MADV_FREE']:,.0f} "
                     f"ns per page.")
        warnings = "".join(f"<li>{html.escape(w)}</li>" for w in cal.warnings())
        reason = (f'<p class="kernel-cell-reason">Not run live here: {html.escape(self.reason)}</p>'
                  if self.reason else "")
        return (f'<div class="lab-calibration"><p><strong>Calibration: {html.escape(label)}.</strong> '
                f"Two regions of {cal.region_mib} MiB, {cal.rounds} rounds after a warm-up round.</p>{reason}"
                f'<table class="lab-calibration-table">{head}{"".join(rows)}</table>'
                f"<p>{html.escape(constants)}</p>"
                + (f"<p>Warnings:</p><ul>{warnings}</ul>" if warnings else "<p>No warnings.</p>")
                + "</div>")

    def _repr_html_(self) -> str:
        return self.html()


_CALIBRATION: list = []


def calibration() -> CalibrationResult:
    """Calibrate once per process (live where possible) beside the recorded calibration."""
    from models.realkernel.calibrate import Calibration, CalibrationUnavailable, calibrate, calibration_support
    if _CALIBRATION:
        return _CALIBRATION[0]
    rec = _load("ch08-calibrate")
    result = CalibrationResult(Calibration.from_json(rec["calibration"]), _recorded_label(rec))
    ok, why = calibration_support()
    if _force_recorded():
        result.reason = f"the recording was asked for ({FORCE_RECORDED_ENV}=1)"
    elif not ok:
        result.reason = why
    else:
        try:
            result.live = calibrate()
        except (CalibrationUnavailable, OSError) as exc:
            result.reason = str(exc)
        else:
            result.live_label = _live_label(result.live.kernel_release)
            if os.environ.get(RECORD_ENV, "") == "1":
                _save("ch08-calibrate", {"calibration": result.live.to_json()})
    _CALIBRATION.append(result)
    return result


CONSTANT_SETS = ("book defaults (E3)", "book's build, calibrated", "this machine")


def constant_sets() -> dict:
    """Name -> CostModel (None where that set is not available here)."""
    cal = calibration()
    return {"book defaults (E3)": DEFAULT_COST,
            "book's build, calibrated": cal.recorded.cost_model(),
            "this machine": cal.live.cost_model() if cal.live is not None else None}


@dataclass(frozen=True)
class ReusePrice:
    """Predicted time (ns) to release a region with ``advice`` and write all of it again."""
    madvise_ns: float
    fault_ns: float
    zero_ns: float
    touch_ns: float
    faults: int

    @property
    def total_ms(self) -> float:
        return (self.madvise_ns + self.fault_ns + self.zero_ns + self.touch_ns) / 1e6


@functools.lru_cache(maxsize=None)
def reuse_counts(region_mib: int, advice: str) -> tuple[int, int, int]:
    """(pages, faults, zeroed pages) of writing a released region again, from the page model."""
    from models.kernel.replay import play
    from models.scenario.format import Madvise, Mmap, Scenario, Touch
    length = region_mib * MiB
    rows = play(Scenario((Mmap("r", length), Touch("r", 0, length, "write"), Madvise("r", 0, length, advice),
                          Touch("r", 0, length, "write"))), kernel_version="6.18")
    return length // PAGE_SIZE, rows[3].faults, rows[3].faults


def reuse_price(cost: CostModel, region_mib: int, advice: str, reclaimed_percent: int) -> ReusePrice:
    """Price of release + rewrite; for MADV_FREE, ``reclaimed_percent`` of the pages were reclaimed
    first and cost what a page after MADV_DONTNEED costs (a fault and a fresh zeroed page, ch. 5)."""
    if advice not in ("MADV_DONTNEED", "MADV_FREE"):
        raise ModelInputError(f"advice must be MADV_DONTNEED or MADV_FREE, got {advice!r}")
    if not 0 <= reclaimed_percent <= 100:
        raise ModelInputError(f"reclaimed_percent must be in 0..100, got {reclaimed_percent!r}")
    pages, faults, zeroed = reuse_counts(region_mib, advice)
    if advice == "MADV_FREE":
        _, dn_faults, dn_zeroed = reuse_counts(region_mib, "MADV_DONTNEED")
        faults = round(dn_faults * reclaimed_percent / 100)
        zeroed = round(dn_zeroed * reclaimed_percent / 100)
    return ReusePrice(madvise_ns=cost.madvise_ns(advice, pages), fault_ns=faults * cost.ns_per_fault,
                      zero_ns=zeroed * cost.ns_per_zeroed_page, touch_ns=pages * cost.ns_per_touch, faults=faults)


_CONSTANT_NAMES = ("fault", "zeroed page", "touch", "DONTNEED call", "FREE call")
_SET_COLOURS = ("#999999", "#0072B2", "#D55E00")
_PART_COLOURS = {"madvise call": "#56B4E9", "faults": COLORS["faults"], "allocate + zero": "#D55E00",
                 "writes": "#009E73"}


def _constants_of(cost: CostModel) -> list[float]:
    return [cost.ns_per_fault, cost.ns_per_zeroed_page, cost.ns_per_touch,
            cost.ns_per_madvise_page["MADV_DONTNEED"], cost.ns_per_madvise_page["MADV_FREE"]]


def costs_figure(region_mib: int, advice: str, reclaimed_percent: int) -> go.Figure:
    sets = constant_sets()
    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.12,
                        subplot_titles=("constants (ns per 4 KiB page)",
                                        f"{region_mib} MiB: {advice.replace('MADV_', '')} + rewrite"))
    for (name, cost), colour in zip(sets.items(), _SET_COLOURS):
        if cost is None:
            continue
        fig.add_trace(go.Bar(x=list(_CONSTANT_NAMES), y=_constants_of(cost), name=name, marker_color=colour,
                             legendgroup="sets", hovertemplate=f"{name}<br>%{{x}}: %{{y:,.0f}} ns<extra></extra>"),
                      row=1, col=1)
    names = [n for n, c in sets.items() if c is not None]
    prices = [reuse_price(sets[n], region_mib, advice, reclaimed_percent) for n in names]
    for part, attr in (("madvise call", "madvise_ns"), ("faults", "fault_ns"), ("allocate + zero", "zero_ns"),
                       ("writes", "touch_ns")):
        fig.add_trace(go.Bar(x=names, y=[getattr(p, attr) / 1e6 for p in prices], name=part,
                             marker_color=_PART_COLOURS[part], legendgroup="parts",
                             hovertemplate=f"{part}: %{{y:,.1f}} ms<extra></extra>"), row=1, col=2)
    for n, p in zip(names, prices):
        fig.add_annotation(x=n, y=p.total_ms, text=f"{p.total_ms:,.1f} ms", showarrow=False, yshift=10,
                           row=1, col=2)
    missing = [n for n, c in sets.items() if c is None]
    note = (f"'{missing[0]}': not measured here ({calibration().reason})" if missing else "")
    fig.update_layout(barmode="group", height=470, margin=dict(t=60, b=120, l=60, r=10),
                      legend=dict(orientation="h", y=-0.22, x=0),
                      title=dict(text=note, font_size=11, x=0.01, y=0.995) if note else None)
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text="ns per page", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="predicted time (ms)", rangemode="tozero", row=1, col=2)
    # the right panel stacks its parts: one bar per constant set
    for trace in fig.data:
        if trace.legendgroup == "parts":
            trace.offsetgroup = "stack"
    _stack_right(fig)
    return fig


def _stack_right(fig: go.Figure) -> None:
    """Stack the right panel's parts by hand (barmode is per figure, the left panel is grouped)."""
    base = None
    for trace in fig.data:
        if trace.legendgroup != "parts":
            continue
        ys = list(trace.y)
        trace.base = base
        base = ys if base is None else [a + b for a, b in zip(base, ys)]


def describe_costs(region_mib: int, advice: str, reclaimed_percent: int) -> str:
    parts = []
    for name, cost in constant_sets().items():
        if cost is None:
            continue
        p = reuse_price(cost, region_mib, advice, reclaimed_percent)
        parts.append(f"{name}: {p.total_ms:,.1f} ms ({p.faults:,} faults)")
    extra = f", {reclaimed_percent} % reclaimed first" if advice == "MADV_FREE" else ""
    return f"Release {region_mib} MiB with {advice}{extra} and write it again: " + "; ".join(parts) + "."


cost_constants = Explorable(
    costs_figure,
    title="The cost constants and what they predict",
    describe=describe_costs,
    region_mib=Slider([64, 256, 1024], label="region", unit=" MiB", default=256),
    advice=Dropdown({"MADV_DONTNEED": "MADV_DONTNEED", "MADV_FREE": "MADV_FREE"}, label="advice",
                    default="MADV_DONTNEED"),
    reclaimed_percent=Slider([0, 50, 100], label="reclaimed before reuse (MADV_FREE only)", unit=" %",
                             default=0),
)


# --------------------------------------------------------------------------- the Go program

GO_HEAP, GO_LIVENESS, GO_LIMIT, GO_PRESSURE = "256MiB", 0.25, "320MiB", "160MiB"
GO_SETTINGS = (1, 0)
GO_LIMITS = ("none", "limit")
GO_PHASES = ("allocate", "gc", "release", "pressure", "reallocate")


def _run_key(madvdontneed: int, limit: str) -> str:
    return f"madvdontneed={madvdontneed},{limit}"


@dataclass
class GoRuns:
    """The Go program's runs: live (where possible) and recorded; one ProbeRun-like dict per key."""
    recorded: dict                    # key -> {"config", "samples", "oom_kills"}
    recorded_label: str
    recorded_go: str
    live: dict = field(default_factory=dict)
    live_label: str = ""
    live_go: str = ""
    reason: str = ""
    recorded_kernel: str = "6.18"
    live_kernel: str = ""

    def source(self, source: str) -> tuple[dict, str, str]:
        if source == "live":
            return self.live, self.live_label, self.live_go
        return self.recorded, self.recorded_label, self.recorded_go

    def html(self) -> str:
        runs, label, go_version = (self.source("live") if self.live else self.source("recorded"))
        head = ("<tr><th>run</th><th>phase</th><th>RSS MiB real / model</th><th>LazyFree MiB</th>"
                "<th>HeapReleased MiB</th><th>minor faults</th><th>elapsed ms (real)</th></tr>")
        body = []
        for key, run in runs.items():
            md, limit = _parse_key(key)
            for phase in GO_PHASES:
                real = real_phase(run, phase)
                if real is None:
                    continue
                model = model_phase(go_model(md, limit, _kernel_of(self, runs), go_version), phase)
                body.append(
                    f"<tr><td>{html.escape(key)}</td><td>{phase}</td>"
                    f"<td>{real['rss_mib']:,.0f} / {model['rss_mib']:,.0f}</td>"
                    f"<td>{real['lazyfree_mib']:,.0f} / {model['lazyfree_mib']:,.0f}</td>"
                    f"<td>{real['heap_released_mib']:,.0f} / {model['heap_released_mib']:,.0f}</td>"
                    f"<td>{real['faults']:,} / {model['faults']:,}</td><td>{real['elapsed_ms']:,.0f}</td></tr>")
        reason = (f'<p class="kernel-cell-reason">Not run live here: {html.escape(self.reason)}</p>'
                  if self.reason else "")
        return (f'<div class="lab-go"><p><strong>Go program: {html.escape(label)}, {html.escape(go_version)}.'
                f"</strong> Model: the Go runtime model, same arguments.</p>{reason}"
                f'<table class="lab-go-table">{head}{"".join(body)}</table></div>')

    def _repr_html_(self) -> str:
        return self.html()


def _parse_key(key: str) -> tuple[int, str]:
    left, limit = key.split(",")
    return int(left.split("=")[1]), limit


def _kernel_of(runs: GoRuns, which: dict) -> str:
    return runs.live_kernel if which is runs.live and runs.live else runs.recorded_kernel


def real_phase(run: dict, phase: str) -> Optional[dict]:
    """One phase of a real run, in MiB / faults / ms (heap RSS: without the pressure region)."""
    rows = [s for s in run["samples"] if s["phase"] == phase]
    if not rows:
        return None
    s = rows[-1]
    return {"rss_mib": (s["rss_bytes"] - s["pressure_rss_bytes"]) / MiB, "lazyfree_mib": s["lazyfree_bytes"] / MiB,
            "heap_released_mib": s["heap_released"] / MiB, "faults": int(s["minflt_delta"]),
            "elapsed_ms": s["elapsed_ns"] / 1e6}


def _go_version(text: str) -> str:
    """'go1.19.8' or 'go version go1.19.8 linux/amd64' -> '1.19'."""
    import re
    m = re.search(r"go(\d+)\.(\d+)", text or "")
    return f"{m.group(1)}.{m.group(2)}" if m else "1.19"


def go_model(madvdontneed: int, limit: str, kernel_version: str, go_version: str,
             cost: Optional[CostModel] = None):
    """The Go runtime model for the probe's experiment (cached per argument set)."""
    key = None if cost is None else (cost.ns_per_fault, cost.ns_per_zeroed_page, cost.ns_per_touch,
                                     cost.ns_per_madvise_page["MADV_DONTNEED"],
                                     cost.ns_per_madvise_page["MADV_FREE"])
    return _go_model(madvdontneed, limit, kernel_version, go_version, key)


@functools.lru_cache(maxsize=None)
def _go_model(madvdontneed: int, limit: str, kernel_version: str, go_version: str, cost_key):
    from models.goruntime import simulate_release
    cost = None if cost_key is None else CostModel(
        ns_per_fault=cost_key[0], ns_per_zeroed_page=cost_key[1], ns_per_touch=cost_key[2],
        ns_per_madvise_page={"MADV_DONTNEED": cost_key[3], "MADV_FREE": cost_key[4]})
    from models.kernel.profile import profile_for
    try:
        profile_for(kernel_version)
    except ModelInputError:
        kernel_version = "6.18"
    return simulate_release(go_version=_go_version(go_version), kernel_version=kernel_version,
                            liveness=GO_LIVENESS, heap=GO_HEAP, godebug=f"madvdontneed={madvdontneed}",
                            memory_limit=GO_LIMIT if limit == "limit" else None,
                            pressure=GO_PRESSURE if limit == "limit" else 0, cost=cost)


def model_phase(tl, phase: str) -> Optional[dict]:
    """The model's sample matching the real program's phase (its 'pressure' sample is a release step)."""
    idx = [i for i in range(len(tl)) if
           (phase == "pressure" and tl.step[i] == "pressure") or
           (phase != "pressure" and tl.phase[i] == phase and tl.step[i] != "pressure")]
    if not idx:
        return None
    s = tl.sample(idx[-1])
    return {"rss_mib": s["rss_pages"] / PAGES_PER_MIB, "lazyfree_mib": s["lazyfree_pages"] / PAGES_PER_MIB,
            "heap_released_mib": s["heap_released_pages"] / PAGES_PER_MIB, "faults": int(s["faults"]),
            "elapsed_ms": s["elapsed_ms"]}


def _probe_json(run) -> dict:
    return {"config": run.config, "samples": run.samples, "oom_kills": run.oom_kills}


_GO: list = []


def go_runs() -> GoRuns:
    """Run the Go program (once per process) under both settings, with and without a limit."""
    if _GO:
        return _GO[0]
    rec = _load("ch08-goprobe")
    runs = GoRuns(rec["runs"], _recorded_label(rec), rec["go_version"], recorded_kernel=rec["kernel_release"])
    from models.realkernel.cgroup import cgroup_support
    from models.realkernel.engine import kernel_engine_support, kernel_release
    from models.realkernel.goprobe import GoProbeError, go_support, run_probe
    reasons = []
    if _force_recorded():
        reasons.append(f"the recording was asked for ({FORCE_RECORDED_ENV}=1)")
    elif not kernel_engine_support()[0]:
        reasons.append(kernel_engine_support()[1])
    elif not go_support()[0]:
        reasons.append(go_support()[1])
    else:
        cg_ok, cg_why = cgroup_support()
        try:
            for md in GO_SETTINGS:
                runs.live[_run_key(md, "none")] = _probe_json(run_probe(heap=GO_HEAP, liveness=GO_LIVENESS,
                                                                        madvdontneed=md))
            if cg_ok:
                for md in GO_SETTINGS:
                    runs.live[_run_key(md, "limit")] = _probe_json(run_probe(
                        heap=GO_HEAP, liveness=GO_LIVENESS, madvdontneed=md, memory_limit=GO_LIMIT,
                        pressure=GO_PRESSURE))
            else:
                reasons.append(f"runs under a memory limit: {cg_why}")
        except (GoProbeError, OSError, ModelInputError) as exc:
            runs.live = {}
            reasons.append(f"{type(exc).__name__}: {exc}")
        if runs.live:
            runs.live_kernel = kernel_release()
            runs.live_label = _live_label(runs.live_kernel)
            runs.live_go = next(iter(runs.live.values()))["config"].get("go_version", "")
            if os.environ.get(RECORD_ENV, "") == "1" and len(runs.live) == 4:
                _save("ch08-goprobe", {"go_version": runs.live_go, "runs": runs.live})
    runs.reason = "; ".join(reasons)
    _GO.append(runs)
    return runs


GO_SOURCES = {"this book's build (recorded)": "recorded", "this machine (live)": "live"}
GO_CONSTANTS = {"book defaults (E3)": "book", "book's build, calibrated": "build", "this machine": "machine"}


def _cost_for(constants: str) -> Optional[CostModel]:
    key = {"book": "book defaults (E3)", "build": "book's build, calibrated", "machine": "this machine"}[constants]
    return constant_sets()[key]


def go_figure(source: str, madvdontneed: int, limit: str, phase: str, constants: str) -> go.Figure:
    runs = go_runs()
    data, label, go_version = runs.source(source)
    kernel = runs.live_kernel if source == "live" else runs.recorded_kernel
    key = _run_key(madvdontneed, limit)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.62, 0.38], horizontal_spacing=0.12,
                        subplot_titles=(f"phase '{phase}': real vs model",
                                        "re-allocating the dropped 192 MiB"))
    metrics = (("RSS", "rss_mib", 1), ("LazyFree", "lazyfree_mib", 1),
               ("HeapReleased", "heap_released_mib", 1), ("faults (k)", "faults", 1e-3))
    run = data.get(key)
    real = real_phase(run, phase) if run else None
    model = model_phase(go_model(madvdontneed, limit, kernel, go_version), phase)
    if real is not None:
        fig.add_trace(go.Bar(x=[m[0] for m in metrics], y=[real[m[1]] * m[2] for m in metrics], name="real Go program",
                             marker_color="#333333",
                             hovertemplate="real: %{y:,.1f}<extra>%{x}</extra>"), row=1, col=1)
    if model is not None:
        fig.add_trace(go.Bar(x=[m[0] for m in metrics], y=[model[m[1]] * m[2] for m in metrics], name="Go runtime model",
                             marker=dict(color="rgba(0,0,0,0)", line=dict(color="#D55E00", width=3)),
                             hovertemplate="model: %{y:,.1f}<extra>%{x}</extra>"), row=1, col=1)
    cost = _cost_for(constants)
    xs = [f"madvdontneed={m}" for m in GO_SETTINGS]
    measured = []
    for m in GO_SETTINGS:
        r = data.get(_run_key(m, limit))
        rp = real_phase(r, "reallocate") if r else None
        measured.append(None if rp is None else rp["elapsed_ms"])
    fig.add_trace(go.Bar(x=xs, y=measured, name="measured time", marker_color="#999999",
                         hovertemplate="measured: %{y:,.0f} ms<extra></extra>"), row=1, col=2)
    if cost is not None:
        predicted = [model_phase(go_model(m, limit, kernel, go_version, cost), "reallocate")["elapsed_ms"]
                     for m in GO_SETTINGS]
        fig.add_trace(go.Scatter(x=xs, y=predicted, name="model's prediction", mode="markers",
                                 marker=dict(symbol="diamond", size=14, color="#0072B2"),
                                 hovertemplate="predicted: %{y:,.0f} ms<extra></extra>"), row=1, col=2)
    notes = []
    if run is None:
        notes.append(f"no run for this choice here ({runs.reason or 'not run'})")
    if cost is None:
        notes.append(f"no calibration here ({calibration().reason})")
    fig.update_layout(barmode="group", height=430, margin=dict(t=80, b=90, l=60, r=10),
                      legend=dict(orientation="h", y=-0.2, x=0),
                      title=dict(text=(f"{label or 'not run here'}, {go_version or ''}"
                                       + (f"<br><sub>{'; '.join(notes)}</sub>" if notes else "")),
                                 font_size=12, x=0.01))
    fig.update_yaxes(title_text="MiB, or thousands of faults", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="ms", rangemode="tozero", row=1, col=2)
    return fig


def describe_go(source: str, madvdontneed: int, limit: str, phase: str, constants: str) -> str:
    runs = go_runs()
    data, label, go_version = runs.source(source)
    kernel = runs.live_kernel if source == "live" else runs.recorded_kernel
    run = data.get(_run_key(madvdontneed, limit))
    model = model_phase(go_model(madvdontneed, limit, kernel, go_version), phase)
    real = real_phase(run, phase) if run else None
    if real is None:
        return f"madvdontneed={madvdontneed}, {phase}: no real run for this choice here ({runs.reason})."
    text = (f"{label}; madvdontneed={madvdontneed}, {'320 MiB limit, 160 MiB pressure' if limit == 'limit' else 'no limit'}, "
            f"phase {phase}: real RSS {real['rss_mib']:,.0f} MiB, LazyFree {real['lazyfree_mib']:,.0f}, HeapReleased "
            f"{real['heap_released_mib']:,.0f}, {real['faults']:,} faults; model {model['rss_mib']:,.0f}, "
            f"{model['lazyfree_mib']:,.0f}, {model['heap_released_mib']:,.0f}, {model['faults']:,}.")
    return text


go_compare = Explorable(
    go_figure,
    title="The real Go program beside the Go runtime model",
    describe=describe_go,
    source=Dropdown(GO_SOURCES, label="runs", default="recorded"),
    madvdontneed=Dropdown({"madvdontneed=1 (MADV_DONTNEED)": 1, "madvdontneed=0 (MADV_FREE)": 0},
                          label="GODEBUG", default=0),
    limit=Dropdown({"no limit": "none", "320 MiB limit + 160 MiB pressure": "limit"}, label="memory limit",
                   default="none"),
    phase=Dropdown({p: p for p in GO_PHASES}, label="phase", default="release"),
    constants=Dropdown(GO_CONSTANTS, label="constants for the time prediction", default="book"),
)


def reallocation_gap(runs: dict, cost: Optional[CostModel], kernel: str, go_version: str,
                     limit: str = "none") -> tuple[Optional[float], Optional[float]]:
    """(measured, predicted) difference in re-allocation time, madvdontneed=1 minus =0, in ms."""
    measured = None
    rp = [real_phase(runs[_run_key(m, limit)], "reallocate") if _run_key(m, limit) in runs else None
          for m in GO_SETTINGS]
    if all(rp):
        measured = rp[0]["elapsed_ms"] - rp[1]["elapsed_ms"]
    predicted = None
    if cost is not None:
        pm = [model_phase(go_model(m, limit, kernel, go_version, cost), "reallocate")["elapsed_ms"]
              for m in GO_SETTINGS]
        predicted = pm[0] - pm[1]
    return measured, predicted


def go_gap_text() -> str:
    """Measured vs predicted re-allocation gap, each run priced with the constants measured with it."""
    runs = go_runs()
    cal = calibration()
    lines = []
    for source, own_name, own_cost in (("recorded", "the calibration recorded with it", cal.recorded.cost_model()),
                                       ("live", "this machine's calibration",
                                        cal.live.cost_model() if cal.live is not None else None)):
        data, label, go_version = runs.source(source)
        if not data:
            continue
        kernel = runs.live_kernel if source == "live" else runs.recorded_kernel
        for name, cost in (("the book's defaults (E3)", DEFAULT_COST), (own_name, own_cost)):
            measured, predicted = reallocation_gap(data, cost, kernel, go_version)
            if measured is None or predicted is None:
                continue
            lines.append(f"{label}: re-allocation took {measured:,.0f} ms longer with madvdontneed=1; "
                         f"predicted with {name}: {predicted:,.0f} ms (measured/predicted "
                         f"{measured / predicted:.2f})")
    return "\n".join(lines) or "No Go run to compare."


# --------------------------------------------------------------------------- the generated exercise

MACHINE_KERNELS = ("4.4", "4.9", "4.14", "5.4", "5.15", "6.1", "6.18")


@dataclass(frozen=True)
class LabQuiz:
    seed: int
    quiz: object                      # models.quiz.Quiz (its scenario and the 6.18 answer key)
    kernel: str
    swap: bool
    thp: str
    cgroup: str                       # "v1", "v2" or "none"
    root: bool
    go: bool
    linux: bool = True


def lab_quiz(seed: int) -> LabQuiz:
    """A machine drawn from ``seed`` and a scenario from :func:`models.quiz.generate` (same seed)."""
    from models import quiz
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ModelInputError(f"seed must be a whole number >= 0, got {seed!r}")
    rng = random.Random(f"lab-{seed}")
    q = quiz.generate(seed, rng.choice(("madvise", "reclaim")))
    return LabQuiz(seed, q, kernel=rng.choice(MACHINE_KERNELS), swap=rng.random() < 0.4,
                   thp=rng.choice(("never", "madvise", "always")), cgroup=rng.choice(("v1", "v2", "none")),
                   root=rng.random() < 0.6, go=rng.random() < 0.7)


def lab_quiz_problem(lq: LabQuiz) -> str:
    from models import quiz
    machine = (f"Machine: Linux {lq.kernel}, {'with' if lq.swap else 'without'} swap, THP '{lq.thp}', "
               f"memory cgroup {lq.cgroup}, {'root' if lq.root else 'not root'}, "
               f"Go {'installed' if lq.go else 'not installed'}.")
    body = quiz.problem_text(lq.quiz).splitlines()
    scenario = "\n".join(line for line in body[1:] if not line.startswith("For each of steps"))
    return (f"{machine}\n(a) Which parts of the lab run here, and what do the others say?\n"
            f"(b) The scenario (seed {lq.seed}):\n{scenario}\n"
            f"    Which steps and columns does the page model at the 6.18 profile get wrong for this "
            f"machine, judged by the model at this machine's profile?")


def lab_quiz_answer(lq: LabQuiz) -> str:
    from models.kernel.replay import play
    limited = lq.quiz.scenario.memory_limit is not None
    parts = ["(a) scenarios without a limit: ok (Linux, /proc/PID/smaps)."]
    if not limited:
        pass
    if lq.cgroup == "none":
        limit_msg = "no memory cgroup controller: recorded results instead"
    elif not lq.root:
        limit_msg = "creating memory cgroups needs root: recorded results instead"
    else:
        limit_msg = f"ok (a child of the notebook's own cgroup, {lq.cgroup})"
    parts.append(f"    scenarios with a limit: {limit_msg}.")
    parts.append("    calibration: ok (Linux).")
    if not lq.go:
        parts.append("    Go program: the Go toolchain ('go') is not installed: recorded Go runs instead.")
    else:
        parts.append("    Go program: ok without a limit; under the limit: "
                     + ("ok." if lq.root and lq.cgroup != "none" else "as the limited scenarios (recorded)."))
    if lq.thp == "always":
        parts.append("    THP 'always': the lab's regions and the Go program turn huge pages off for "
                     "themselves (MADV_NOHUGEPAGE, PR_SET_THP_DISABLE), so fault counts stay per 4 KiB page.")
    scen = lq.quiz.scenario
    base = play(scen, kernel_version="6.18", swap=False)
    mine = play(scen, kernel_version=lq.kernel, swap=lq.swap)
    diffs = []
    for i, step in enumerate(scen.steps):
        a = base[i] if i < len(base) else None
        b = mine[i] if i < len(mine) else None
        if a is None and b is None:
            continue
        if a is None or b is None:
            diffs.append(f"step {i} ({step.op}): runs at one profile only "
                         f"({'OOM kill before it at 6.18' if a is None else 'OOM kill before it here'})")
            continue
        fields = [f for f in ("rss_pages", "lazyfree_pages", "faults", "zero_pages", "error")
                  if getattr(a, f) != getattr(b, f)]
        if fields:
            diffs.append(f"step {i} ({step.op}): " + ", ".join(
                f"{f.replace('_pages', '')} {_v(a, f)} at 6.18 vs {_v(b, f)} here" for f in fields))
    from models.kernel.profile import profile_for
    prof = profile_for(lq.kernel, swap=lq.swap)
    if limited and (lq.cgroup == "none" or not lq.root):
        parts.append("(b) This scenario has a memory limit, so on this machine it shows the recording; "
                     "the model still predicts:")
    else:
        parts.append("(b)")
    parts.append(f"    This machine's profile: {prof.describe()}.")
    if diffs:
        parts += [f"    {d}" for d in diffs]
    else:
        parts.append("    No step differs: the 6.18 profile is right for this machine on this scenario.")
    return "\n".join(parts)


# --------------------------------------------------------------------------- recording

def record_all() -> list[str]:
    """Run all three experiments on this machine now and rewrite their recordings."""
    from models.realkernel.calibrate import calibrate
    from models.realkernel.goprobe import run_probe
    from models.viz.kernel_cell import record
    written = []
    for name in library_names():
        record(name, record_id(name))
        written.append(record_id(name))
    _save("ch08-calibrate", {"calibration": calibrate().to_json()})
    written.append("ch08-calibrate")
    runs = {}
    for limit in GO_LIMITS:
        for md in GO_SETTINGS:
            kw = dict(memory_limit=GO_LIMIT, pressure=GO_PRESSURE) if limit == "limit" else {}
            runs[_run_key(md, limit)] = _probe_json(run_probe(heap=GO_HEAP, liveness=GO_LIVENESS,
                                                              madvdontneed=md, **kw))
    _save("ch08-goprobe", {"go_version": next(iter(runs.values()))["config"].get("go_version", ""), "runs": runs})
    written.append("ch08-goprobe")
    return written


if __name__ == "__main__":
    if sys.argv[1:] != ["record"]:
        print("usage: python -m models.viz.lab record   (rewrites book/recorded/ch08-*.json)", file=sys.stderr)
        sys.exit(2)
    for name in record_all():
        print(f"wrote book/recorded/{name}.json")


def grid_counts(source: str = "recorded", profile: str = "auto") -> dict:
    """Cells per category for the default and the exact rule (the chapter's prose quotes them)."""
    side = recorded_side() if source == "recorded" else live_side()
    out = {}
    for tol in ("default", "exact"):
        z, _, _, _ = fidelity_cells(side, "all", tol, profile)
        counts = [0] * len(CATEGORIES)
        for row in z:
            for v in row:
                if v is not None:
                    counts[int(v)] += 1
        out[tol] = dict(zip(CATEGORIES, counts))
    return out
