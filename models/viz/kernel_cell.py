"""Run a scenario on the reader's kernel, beside the page model's prediction.

``kernel_vs_model(scenario_or_name, record_id)`` plays the scenario on the page model and,
when :func:`models.realkernel.engine.kernel_engine_support` says the real-kernel engine can
run it here, on this machine's kernel too.  Where it cannot (not Linux, a budget without a
usable memory cgroup, a scenario too large for this machine...), the kernel side comes from
``book/recorded/<record_id>.json``, the run recorded on the book's build machine, and the
output says so: "recorded on <date>, Linux <release>, this book's build machine", with the
reason the live run was not possible.

The result displays as an HTML table (one row per step: RSS, LazyFree, faults, zero pages and
errors, kernel / model) with the agreement verdict of
:func:`models.realkernel.fidelity.compare` (FACTS E1-E9 for the tolerances), followed by a
small plotly figure of RSS, LazyFree and faults per step.

A live run rewrites the recorded file ONLY when the environment asks for it
(``BOOK_RECORD=1``), so building the book never dirties the work tree by surprise; or, from a
shell::

    python -m models.viz.kernel_cell record <scenario> <record_id>

where ``<scenario>`` is a library name, a JSON file, or ``package.module:ATTRIBUTE`` naming a
Scenario/dict/zero-argument function in a chapter module.
"""
from __future__ import annotations

import html
import importlib
import json
import os
import platform
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Union

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from models.errors import ModelInputError
from models.scenario.format import Scenario, StepResult
from models.units import PAGE_SIZE
from models.viz import STATIC_BUILD_ENV
from models.viz.recording import now_utc as _now, write_json_atomic

#: Where recorded kernel runs live (committed with the book).
RECORDED_DIR = Path(__file__).resolve().parents[2] / "book" / "recorded"
#: Set to 1 to (re)write the recorded file after a successful live run.
RECORD_ENV = "BOOK_RECORD"
#: Set to 1 to skip the live run and show the recording (e.g. to preview what a Mac reader sees).
FORCE_RECORDED_ENV = "BOOK_FORCE_RECORDED"
FORMAT_VERSION = 1
_RECORD_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
MiB = 1 << 20

ScenarioLike = Union[Scenario, str, Mapping]


def _scenario(obj: ScenarioLike) -> Scenario:
    from models.viz.pagemap import as_scenario
    return as_scenario(obj)


def _scenario_json(scenario: Scenario) -> dict:
    from models.scenario.parse import scenario_to_json
    return json.loads(json.dumps(scenario_to_json(scenario)))


def forced_recording_reason(force_recorded: Optional[bool]) -> str:
    """Why a cell shows its recording without trying the live run, or "" if it may try it.

    ``force_recorded`` None means: as ``BOOK_FORCE_RECORDED`` in the environment says.
    """
    if force_recorded is None:
        force_recorded = os.environ.get(FORCE_RECORDED_ENV, "") == "1"
    if force_recorded:
        return f"the recording was asked for ({FORCE_RECORDED_ENV}=1 or force_recorded=True)"
    return ""


def _check_record_id(record_id: str) -> str:
    if not isinstance(record_id, str) or not _RECORD_ID.match(record_id):
        raise ModelInputError(f"record_id must be 1-80 characters of a-z, 0-9, '.', '_', '-' "
                              f"(a file name under book/recorded/), got {record_id!r}")
    return record_id


def record_path(record_id: str, directory: Optional[Path] = None) -> Path:
    return Path(directory or RECORDED_DIR) / f"{_check_record_id(record_id)}.json"


def _thp_setting() -> Optional[str]:
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return None
    m = re.search(r"\[(\w+)\]", text)
    return m.group(1) if m else text.strip()


def _swap_total() -> Optional[int]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("SwapTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------- records

@dataclass(frozen=True)
class Recording:
    """A kernel run as stored in ``book/recorded/<record_id>.json``."""

    record_id: str
    recorded_at: str               # ISO 8601, UTC
    kernel_release: str
    machine: str
    thp: Optional[str]
    swap_bytes: Optional[int]
    scenario: dict                 # scenario_to_json form
    kernel: tuple                  # StepResult rows

    def to_json(self) -> dict:
        return {"format": FORMAT_VERSION, "record_id": self.record_id, "recorded_at": self.recorded_at,
                "kernel_release": self.kernel_release, "machine": self.machine, "thp": self.thp,
                "swap_bytes": self.swap_bytes, "scenario": self.scenario,
                "kernel": [r.to_json() for r in self.kernel]}

    @classmethod
    def from_json(cls, obj: dict, source: str = "<recording>") -> "Recording":
        if not isinstance(obj, dict) or obj.get("format") != FORMAT_VERSION:
            raise ModelInputError(f"{source}: not a kernel recording of format {FORMAT_VERSION}")
        try:
            rows = tuple(StepResult(**row) for row in obj["kernel"])
            return cls(obj["record_id"], obj["recorded_at"], obj["kernel_release"], obj["machine"],
                       obj.get("thp"), obj.get("swap_bytes"), obj["scenario"], rows)
        except (KeyError, TypeError) as exc:
            raise ModelInputError(f"{source}: malformed kernel recording ({exc})") from None

    @property
    def date(self) -> str:
        return self.recorded_at[:10]


def load_recording(record_id: str, directory: Optional[Path] = None) -> Recording:
    path = record_path(record_id, directory)
    if not path.exists():
        raise ModelInputError(
            f"no recorded kernel run {path.name} in {path.parent}; record it on Linux with "
            f"`python -m models.viz.kernel_cell record <scenario> {record_id}`")
    return Recording.from_json(json.loads(path.read_text()), str(path))


def write_recording(recording: Recording, directory: Optional[Path] = None) -> Path:
    path = record_path(recording.record_id, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(path, recording.to_json())


def record(scenario: ScenarioLike, record_id: str, directory: Optional[Path] = None) -> Recording:
    """Run ``scenario`` on this machine's kernel now and write its recording."""
    from models.realkernel.engine import kernel_release, play_on_kernel

    scen = _scenario(scenario)
    rows = play_on_kernel(scen)
    rec = Recording(_check_record_id(record_id), _now(), kernel_release(), platform.machine(),
                    _thp_setting(), _swap_total(), _scenario_json(scen), tuple(rows))
    write_recording(rec, directory)
    return rec


# --------------------------------------------------------------------------- the cell

@dataclass
class KernelVsModel:
    """The scenario on the kernel (live or recorded) beside the model; displays itself."""

    scenario: Scenario
    record_id: str
    live: bool
    kernel_release: str
    kernel: list
    model: list
    source: str                       # the label shown above the table
    reason: str = ""                  # why the live run was not possible (recorded only)
    recorded_at: Optional[str] = None
    thp: Optional[str] = None
    mismatches: list = field(default_factory=list)
    model_kernel_version: str = "6.18"

    @property
    def agrees(self) -> bool:
        return not self.mismatches

    def verdict(self) -> str:
        from models.realkernel.fidelity import MIN_TOLERANCE_PAGES, RELATIVE_TOLERANCE
        tol = f"max({MIN_TOLERANCE_PAGES} pages, {RELATIVE_TOLERANCE:.0%})"
        if self.agrees:
            return (f"The model agrees with the kernel on every step (RSS, LazyFree, zero pages and, "
                    f"where comparable, faults within {tol}; errors equal).")
        text = (f"The model and the kernel disagree on {len(self.mismatches)} value(s) beyond {tol}: "
                + "; ".join(str(m) for m in self.mismatches[:6])
                + ("; ..." if len(self.mismatches) > 6 else "") + ".")
        fewer_faults = [m for m in self.mismatches if m.field == "faults"
                        and isinstance(m.kernel, int) and m.kernel < 0.6 * m.model]
        if fewer_faults:
            text += (" The kernel took far fewer faults than the model: this kernel may back the "
                     f"region with transparent huge pages (THP setting: {self.thp or 'unknown'}), "
                     f"which the 4 KiB page model does not.")
        return text

    def rows(self) -> list[dict]:
        from models.viz.pagemap import describe_step
        out = []
        for i, step in enumerate(self.scenario.steps):
            k = self.kernel[i] if i < len(self.kernel) else None
            m = self.model[i] if i < len(self.model) else None
            out.append({"step": i, "what": describe_step(step), "kernel": k, "model": m})
        return out

    def table_html(self) -> str:
        def pair(k, m, name, pages=True):
            def one(r):
                if r is None:
                    return "did not run"
                v = getattr(r, name)
                if v is None:
                    return "-"
                return f"{v:,}" if not pages else f"{v:,}"
            a, b = one(k), one(m)
            bad = any(x.step == (k or m).step and x.field == name for x in self.mismatches) if (k or m) else False
            style = ' style="background:#FCE4D6"' if bad else ""
            return f"<td{style}>{html.escape(a)}</td><td{style}>{html.escape(b)}</td>"

        head = ("<tr><th rowspan='2'>step</th><th rowspan='2'>what</th>"
                "<th colspan='2'>RSS (pages)</th><th colspan='2'>LazyFree (pages)</th>"
                "<th colspan='2'>minor faults</th><th colspan='2'>pages read as zeros</th>"
                "<th colspan='2'>error</th></tr><tr>" + "<th>kernel</th><th>model</th>" * 5 + "</tr>")
        body = []
        for row in self.rows():
            k, m = row["kernel"], row["model"]
            cells = "".join(pair(k, m, f) for f in ("rss_pages", "lazyfree_pages", "faults", "zero_pages"))
            ek = "did not run" if k is None else (k.error or "-")
            em = "did not run" if m is None else (m.error or "-")
            bad = any(x.step == row["step"] and x.field in ("error", "steps executed") for x in self.mismatches)
            style = ' style="background:#FCE4D6"' if bad else ""
            body.append(f"<tr><td>{row['step']}</td><td>{html.escape(row['what'])}</td>{cells}"
                        f"<td{style}>{html.escape(ek)}</td><td{style}>{html.escape(em)}</td></tr>")
        return (f'<table class="kernel-vs-model" style="font-size:0.85em">'
                f"<thead>{head}</thead><tbody>{''.join(body)}</tbody></table>")

    def html(self) -> str:
        verdict_style = "color:#1B5E20" if self.agrees else "color:#B71C1C"
        reason = (f'<p class="kernel-cell-reason">Not run live here: {html.escape(self.reason)}</p>'
                  if self.reason else "")
        return (f'<div class="kernel-cell" data-live="{str(self.live).lower()}">'
                f'<p class="kernel-cell-source"><strong>Kernel: {html.escape(self.source)}.</strong> '
                f"Model: the book's page model (Linux {html.escape(self.model_kernel_version)} profile, "
                f"no swap).</p>{reason}"
                f"{self.table_html()}"
                f'<p class="kernel-cell-verdict" style="{verdict_style}">{html.escape(self.verdict())}</p>'
                f"</div>")

    def figure(self) -> go.Figure:
        steps_k = [r.step for r in self.kernel]
        steps_m = [r.step for r in self.model]
        fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.09,
                            subplot_titles=("RSS (MiB)", "LazyFree (MiB)", "minor faults in the step"))
        for who, rows, steps, colour, dash, symbol in (
                ("kernel", self.kernel, steps_k, "#000000", "solid", "circle-open"),
                ("model", self.model, steps_m, "#D55E00", "dot", "x")):
            for col, name, scale in ((1, "rss_pages", PAGE_SIZE / MiB), (2, "lazyfree_pages", PAGE_SIZE / MiB),
                                     (3, "faults", 1)):
                fig.add_trace(go.Scatter(
                    x=steps, y=[getattr(r, name) * scale for r in rows], name=who, legendgroup=who,
                    showlegend=col == 1, mode="lines+markers",
                    line=dict(color=colour, dash=dash, width=2), marker=dict(symbol=symbol, size=10),
                    hovertemplate=f"{who}, step %{{x}}: %{{y:,.4g}}<extra></extra>"), row=1, col=col)
        for col in (1, 2, 3):
            fig.update_xaxes(title_text="step", dtick=1, row=1, col=col)
        fig.update_yaxes(title_text="MiB", rangemode="tozero", row=1, col=1)
        fig.update_yaxes(title_text="MiB", rangemode="tozero", row=1, col=2)
        fig.update_yaxes(title_text="faults", rangemode="tozero", row=1, col=3)
        fig.update_layout(height=300, margin=dict(t=60, b=50, l=60, r=10),
                          legend=dict(orientation="h", x=1, xanchor="right", y=1.22),
                          title=dict(text=f"Kernel ({'live' if self.live else 'recorded'}) vs model",
                                     font_size=14))
        return fig

    def summary(self) -> str:
        """Plain text: the source, the side-by-side table and the verdict."""
        from models.realkernel.fidelity import side_by_side
        return (f"Kernel: {self.source}.\n" + (f"Not run live here: {self.reason}\n" if self.reason else "")
                + side_by_side(self.scenario, self.kernel, self.model) + "\n" + self.verdict())

    def _repr_html_(self) -> str:
        return self.html()

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display
        display(HTML(self.html()))
        display(self.figure())

    def __repr__(self) -> str:
        return self.summary()


def kernel_vs_model(scenario_or_name: ScenarioLike, record_id: str, *, kernel_version: str = "6.18",
                    force_recorded: Optional[bool] = None, directory: Optional[Path] = None,
                    runner: Optional[Callable[[Scenario], list]] = None) -> KernelVsModel:
    """The scenario on this kernel (live when possible, else recorded) beside the page model.

    ``force_recorded`` (default: env ``BOOK_FORCE_RECORDED=1``) skips the live run.  With
    ``BOOK_RECORD=1`` in the environment a successful live run rewrites the recording.
    ``runner`` replaces :func:`play_on_kernel` (tests).
    """
    from models.kernel.replay import play
    from models.realkernel.engine import (KernelEngineUnavailable, kernel_engine_support, kernel_release,
                                          play_on_kernel)
    from models.realkernel.fidelity import compare

    scenario = _scenario(scenario_or_name)
    _check_record_id(record_id)
    # Page tables are charged to the memory cgroup too (KERNEL-NOTES K3), as on the real kernel.
    model = play(scenario, kernel_version=kernel_version, pagetables=True)
    reason = forced_recording_reason(force_recorded)
    if not reason:
        ok, why = kernel_engine_support(scenario)
        if not ok:
            reason = why
        else:
            try:
                kernel = (runner or play_on_kernel)(scenario)
            except (KernelEngineUnavailable, ModelInputError, OSError, PermissionError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                release = kernel_release()
                thp = _thp_setting()
                if os.environ.get(RECORD_ENV, "") == "1":
                    write_recording(Recording(record_id, _now(), release, platform.machine(), thp,
                                              _swap_total(), _scenario_json(scenario), tuple(kernel)),
                                    directory)
                if os.environ.get(STATIC_BUILD_ENV):
                    # the static site is read later, elsewhere: "now" would mislead
                    source = (f"measured on {_now()[:10]}, Linux {release} ({platform.machine()}), "
                              f"this book's build machine, while this page was built")
                else:
                    source = f"measured live now on this machine, Linux {release}"
                return KernelVsModel(scenario, record_id, True, release, list(kernel), model,
                                     source=source,
                                     thp=thp, mismatches=compare(scenario, list(kernel), model),
                                     model_kernel_version=str(kernel_version))
    rec = load_recording(record_id, directory)
    if rec.scenario != _scenario_json(scenario):
        raise ModelInputError(
            f"book/recorded/{record_id}.json was recorded for a different scenario than this cell's; "
            f"re-record it on Linux with `python -m models.viz.kernel_cell record <scenario> {record_id}` "
            f"(or build with {RECORD_ENV}=1)")
    kernel = list(rec.kernel)
    return KernelVsModel(scenario, record_id, False, rec.kernel_release, kernel, model,
                         source=(f"recorded on {rec.date}, Linux {rec.kernel_release} ({rec.machine}), "
                                 f"this book's build machine"),
                         reason=reason, recorded_at=rec.recorded_at, thp=rec.thp,
                         mismatches=compare(scenario, kernel, model),
                         model_kernel_version=str(kernel_version))


# --------------------------------------------------------------------------- CLI

def _load_target(spec: str) -> Scenario:
    """A library name, a JSON path, or ``package.module:ATTRIBUTE`` (Scenario, dict or function)."""
    if ":" in spec and not os.path.exists(spec):
        module, attr = spec.split(":", 1)
        obj = getattr(importlib.import_module(module), attr)
        if callable(obj) and not isinstance(obj, (Scenario, Mapping)):
            obj = obj()
        return _scenario(obj)
    return _scenario(spec)


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m models.viz.kernel_cell",
                                     description="Record a scenario's run on this kernel for the book.")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run on this kernel now and write book/recorded/<record_id>.json")
    rec.add_argument("scenario", help="library name, JSON file, or package.module:ATTRIBUTE")
    rec.add_argument("record_id")
    rec.add_argument("--dir", type=Path, default=None, help="directory (default: book/recorded)")
    show = sub.add_parser("show", help="print a scenario's kernel-vs-model table (live or recorded)")
    show.add_argument("scenario")
    show.add_argument("record_id")
    show.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        scenario = _load_target(args.scenario)
        if args.command == "record":
            recording = record(scenario, args.record_id, args.dir)
            print(f"wrote {record_path(args.record_id, args.dir)} (Linux {recording.kernel_release}, "
                  f"{len(recording.kernel)} steps)")
            result = kernel_vs_model(scenario, args.record_id, force_recorded=True, directory=args.dir)
            print(result.verdict())
            return 0 if result.agrees else 1
        print(kernel_vs_model(scenario, args.record_id, directory=args.dir).summary())
        return 0
    except ModelInputError as exc:
        print(f"python -m models.viz.kernel_cell: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
