"""Explorables: one declaration of an interactive figure, two lives.

A chapter declares an interactive figure once::

    reserve_and_touch = Explorable(
        address_space_figure,
        reserve_mib=Slider([16, 64, 256], unit=" MiB"),
        access=Dropdown({"read": "read", "write": "write"}),
        title="Reserve, then touch",
    )

and shows it with ``reserve_and_touch.show()`` (or as a cell's last expression).

* **Live** (a Jupyter kernel): ipywidgets controls re-run the model function and
  redraw the figure in an ``ipywidgets.Output`` (robust with plotly 7 + ipywidgets 8;
  ``go.FigureWidget`` needs anywidget and can take down every widget on a page when it
  fails -- jupyter-book #1218).
* **Static** (the built site, no kernel): the same controls as plain HTML; the model
  is run over the *whole* parameter grid when the page is built, and the results are
  embedded compactly (one shared base figure; each combination stores only the
  trace/layout keys that differ from it, identical differences are stored once,
  floats rounded to :data:`SIGNIFICANT_DIGITS`).  ``book/_static/explorable.js``
  applies them with ``Plotly.react``.

Both travel in one ``_repr_mimebundle_``: in a live kernel the widget view (plus, as
``text/html``, a snapshot of the figure for viewers without widgets); in the kernel that builds
the site (environment variable :data:`STATIC_BUILD_ENV`, set by ``book/_ext/book_static.py``)
only the precomputed ``text/html`` -- no widgets are created, so no widget state is embedded
in the page, and live readers never wait for the whole grid to be computed.
"""
from __future__ import annotations

import base64
import hashlib
import html
import inspect
import itertools
import json
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from models.errors import ModelInputError

from models.viz import STATIC_BUILD_ENV, figure_html  # noqa: E402
#: Floats embedded in pages keep this many significant digits.
SIGNIFICANT_DIGITS = 6
#: Default bound on the number of parameter combinations one explorable may precompute.
MAX_COMBINATIONS = 2000
#: Default bound on the embedded JSON of one explorable (the page budget is 1.5 MB).
MAX_EMBED_BYTES = 900_000


# --------------------------------------------------------------------------- controls

def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class Control:
    """Base of the three control kinds: a finite list of allowed values."""

    values: tuple
    labels: tuple
    default: Any
    label: str | None = None

    def index_of(self, name: str, value) -> int:
        """Position of ``value`` in :attr:`values`; ModelInputError naming ``name`` otherwise."""
        for i, allowed in enumerate(self.values):
            if type(value) is bool or type(allowed) is bool:
                if type(value) is type(allowed) and value == allowed:
                    return i
            elif _is_number(allowed) and _is_number(value):
                if value == allowed:
                    return i
            elif type(value) is type(allowed) and value == allowed:
                return i
        raise ModelInputError(
            f"{name} must be one of {list(self.values)!r} (the values this explorable was "
            f"declared with), got {value!r} ({type(value).__name__})")


def _check_values(kind: str, values, labels) -> tuple[tuple, tuple]:
    values = tuple(values)
    if not values:
        raise ModelInputError(f"{kind} needs at least one value, got none")
    if len(set(map(repr, values))) != len(values):
        raise ModelInputError(f"{kind} values must be distinct, got {list(values)!r}")
    labels = tuple(str(label) for label in labels)
    return values, labels


def Slider(values, *, label: str | None = None, default=None, unit: str = "") -> Control:
    """A slider over an ascending list of numbers (a time slider: ``Slider(range(n_steps))``)."""
    values = tuple(values)
    if not all(_is_number(v) for v in values):
        raise ModelInputError(f"Slider values must be numbers, got {list(values)!r}")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ModelInputError(f"Slider values must be strictly ascending, got {list(values)!r}")
    values = tuple(v.item() if isinstance(v, np.generic) else v for v in values)
    values, labels = _check_values("Slider", values, [f"{v:g}{unit}" for v in values])
    control = _Slider(values, labels, values[0] if default is None else default, label)
    control.index_of("default", control.default)
    return control


def Dropdown(options, *, label: str | None = None, default=None) -> Control:
    """A choice among ``options``: a list of values, or a ``{shown label: value}`` dict."""
    if isinstance(options, dict):
        labels, values = list(options.keys()), list(options.values())
    else:
        values = list(options)
        labels = [str(v) for v in values]
    values, labels = _check_values("Dropdown", values, labels)
    control = _Dropdown(values, labels, values[0] if default is None else default, label)
    control.index_of("default", control.default)
    return control


def Toggle(*, label: str | None = None, default: bool = False) -> Control:
    """An on/off switch; the model function receives ``False`` or ``True``."""
    if not isinstance(default, bool):
        raise ModelInputError(f"Toggle default must be True or False, got {default!r}")
    return _Toggle((False, True), ("off", "on"), default, label)


class _Slider(Control):
    kind = "slider"


class _Dropdown(Control):
    kind = "dropdown"


class _Toggle(Control):
    kind = "toggle"


# ------------------------------------------------------------- compact figure encoding

def _round(x: float):
    if not math.isfinite(x):
        return None  # JSON has no NaN; plotly draws null as a gap, as it does NaN
    if x == 0:
        return 0
    rounded = float(f"{x:.{SIGNIFICANT_DIGITS}g}")
    return int(rounded) if rounded.is_integer() and abs(rounded) < 2**53 else rounded


_BDATA_DTYPES = {"f8": np.float64, "f4": np.float32}


def compact(obj):
    """JSON-ready copy of a figure dict with floats rounded; float typed arrays become lists."""
    if isinstance(obj, dict):
        if set(obj) >= {"dtype", "bdata"} and obj["dtype"] in _BDATA_DTYPES:
            arr = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=_BDATA_DTYPES[obj["dtype"]])
            if "shape" in obj:
                arr = arr.reshape([int(s) for s in str(obj["shape"]).split(",")])
            return compact(arr.tolist())
        return {k: compact(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [compact(v) for v in obj]
    if isinstance(obj, float):
        return _round(obj)
    return obj


def figure_json(fig) -> dict:
    """The compacted plotly JSON of ``fig`` (a ``go.Figure`` or a figure dict)."""
    if not isinstance(fig, (go.Figure, dict)):
        raise TypeError(f"an explorable's figure function must return a plotly Figure or dict, "
                        f"got {type(fig).__name__}")
    fig_dict = fig.to_plotly_json() if isinstance(fig, go.Figure) else fig
    return compact(json.loads(pio.to_json(fig_dict, validate=False, remove_uids=True)))


def diff(base: dict, fig: dict) -> dict:
    """What ``fig`` changes relative to ``base``: per-trace and top-level layout keys.

    ``{"data": [{key: value}, ...]}`` when both have the same number of traces (a key set
    to ``None`` is deleted), else ``{"data_full": [...]}``; ``{"layout": {key: value}}``.
    """
    patch: dict = {}
    base_data, data = base.get("data", []), fig.get("data", [])
    if len(base_data) == len(data):
        traces = []
        for old, new in zip(base_data, data):
            change = {k: v for k, v in new.items() if old.get(k, _MISSING) != v}
            change.update({k: None for k in old if k not in new})
            traces.append(change)
        if any(traces):
            patch["data"] = traces
    else:
        patch["data_full"] = data
    old_layout, new_layout = base.get("layout", {}), fig.get("layout", {})
    layout = {k: v for k, v in new_layout.items() if old_layout.get(k, _MISSING) != v}
    layout.update({k: None for k in old_layout if k not in new_layout})
    if layout:
        patch["layout"] = layout
    return patch


_MISSING = object()


def apply_patch(base: dict, patch: dict) -> dict:
    """Inverse of :func:`diff` (``explorable.js`` does the same in the browser)."""
    fig = json.loads(json.dumps(base))
    if "data_full" in patch:
        fig["data"] = json.loads(json.dumps(patch["data_full"]))
    for trace, change in zip(fig.get("data", []), patch.get("data", [])):
        for k, v in change.items():
            if v is None:
                trace.pop(k, None)
            else:
                trace[k] = v
    for k, v in patch.get("layout", {}).items():
        if v is None:
            fig.setdefault("layout", {}).pop(k, None)
        else:
            fig.setdefault("layout", {})[k] = v
    return fig


#: A trace/layout value at least this long (as JSON) that several patches share is stored once.
INTERN_MIN_BYTES = 64


def intern_values(patches: list[dict]) -> list:
    """Store values repeated across patches once; patches then hold ``{"$ref": i}`` (in place).

    Different combinations often share whole arrays (a page strip that does not depend on one
    of the controls, a hover-text grid): each is embedded once instead of once per combination.
    """
    def changes(patch):
        yield from patch.get("data", [])
        if "layout" in patch:
            yield patch["layout"]

    counts: dict[str, int] = {}
    for patch in patches:
        for change in changes(patch):
            for v in change.values():
                if v is not None:
                    key = _dump(v)
                    counts[key] = counts.get(key, 0) + 1
    values: list = []
    index: dict[str, int] = {}
    for patch in patches:
        for change in changes(patch):
            for k, v in change.items():
                if v is None:
                    continue
                key = _dump(v)
                if counts[key] > 1 and len(key) >= INTERN_MIN_BYTES:
                    if key not in index:
                        index[key] = len(values)
                        values.append(v)
                    change[k] = {"$ref": index[key]}
    return values


def resolve(patch: dict, values: list) -> dict:
    """A patch with its ``{"$ref": i}`` values replaced by ``values[i]``."""
    def get(v):
        return values[v["$ref"]] if isinstance(v, dict) and set(v) == {"$ref"} else v

    out = dict(patch)
    if "data" in patch:
        out["data"] = [{k: get(v) for k, v in change.items()} for change in patch["data"]]
    if "layout" in patch:
        out["layout"] = {k: get(v) for k, v in patch["layout"].items()}
    return out


@dataclass
class Grid:
    """Every parameter combination of an explorable, precomputed for embedding in a page."""

    names: list[str]
    sizes: list[int]
    base: dict
    patches: list[dict]
    frames: list[int]            # combination number -> index into patches
    descriptions: list[str] | None = None
    payload_bytes: int = 0
    values: list = field(default_factory=list)  # shared values that patches refer to ({"$ref": i})

    @property
    def combinations(self) -> int:
        return len(self.frames)

    def index(self, positions: list[int]) -> int:
        """Row-major combination number of control positions (first control varies slowest)."""
        number = 0
        for pos, size in zip(positions, self.sizes):
            number = number * size + pos
        return number

    def figure_at(self, positions: list[int]) -> dict:
        return apply_patch(self.base, resolve(self.patches[self.frames[self.index(positions)]],
                                              self.values))

    def payload(self) -> dict:
        out = {"names": self.names, "sizes": self.sizes, "base": self.base,
               "patches": self.patches, "frames": self.frames, "values": self.values}
        if self.descriptions is not None:
            out["descriptions"] = self.descriptions
        return out


# ---------------------------------------------------------------------- the explorable

@dataclass
class LiveView:
    """The live (kernel) form: one ipywidget per parameter above an ``Output`` with the figure."""

    explorable: "Explorable"
    controls: dict
    output: Any
    box: Any
    description: Any = None
    figure: Any = None
    error: str | None = None

    def values(self) -> dict:
        return {name: w.value for name, w in self.controls.items()}

    def update(self, _change=None) -> None:
        """Re-run the model with the widgets' values and replace the figure in place."""
        try:
            fig = self.explorable.figure(**self.values())
        except Exception as exc:  # shown to the reader instead of vanishing into the log
            self.error = f"{type(exc).__name__}: {exc}"
            self.output.outputs = ({"output_type": "stream", "name": "stderr",
                                    "text": self.error + "\n"},)
            return
        self.error = None
        self.figure = fig
        # The bundle is built explicitly: a plotly figure's _ipython_display_ would bypass
        # the formatter that Output.append_display_data relies on (and leave it empty).
        self.output.outputs = ({"output_type": "display_data", "metadata": {},
                                "data": fig._repr_mimebundle_()},)
        if self.description is not None:
            self.description.value = html.escape(self.explorable.describe_at(**self.values()))


class Explorable:
    """An interactive figure: ``figure_fn(**params) -> plotly figure`` over declared values.

    ``describe`` (optional) returns a one-sentence text summary for the same parameters;
    it is shown under the figure and updated with it (screen readers, print).
    """

    def __init__(self, figure_fn: Callable[..., Any], *, title: str | None = None,
                 describe: Callable[..., str] | None = None,
                 max_combinations: int = MAX_COMBINATIONS, max_embed_bytes: int = MAX_EMBED_BYTES,
                 **controls: Control):
        if not controls:
            raise ModelInputError("an Explorable needs at least one control (Slider/Dropdown/Toggle)")
        for name, control in controls.items():
            if not isinstance(control, Control):
                raise ModelInputError(
                    f"control {name!r} must be a Slider, Dropdown or Toggle, got {type(control).__name__}")
        signature = inspect.signature(figure_fn)
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        unknown = [n for n in controls if n not in signature.parameters and not accepts_any]
        if unknown:
            raise ModelInputError(
                f"controls {unknown} are not parameters of {figure_fn.__name__}"
                f"{signature}")
        self.figure_fn = figure_fn
        self.describe_fn = describe
        self.title = title or figure_fn.__name__
        self.controls: dict[str, Control] = dict(controls)
        self.max_combinations = max_combinations
        self.max_embed_bytes = max_embed_bytes
        self.views: list[LiveView] = []
        self._grid: Grid | None = None

    # -- the model side
    def defaults(self) -> dict:
        return {name: c.default for name, c in self.controls.items()}

    def validate(self, **values) -> dict:
        """All parameters (defaults filled in), checked against the declared values."""
        unknown = sorted(set(values) - set(self.controls))
        if unknown:
            raise ModelInputError(
                f"{self.title}: unknown parameter(s) {unknown}; parameters are {list(self.controls)}")
        full = {**self.defaults(), **values}
        for name, control in self.controls.items():
            control.index_of(name, full[name])
        return full

    def figure(self, **values):
        """The figure for these parameter values (validated), as a ``go.Figure``."""
        full = self.validate(**values)
        fig = self.figure_fn(**full)
        return fig if isinstance(fig, go.Figure) else go.Figure(fig)

    def describe_at(self, **values) -> str:
        return self.describe_fn(**self.validate(**values)) if self.describe_fn else ""

    def combinations(self) -> list[dict]:
        """Every combination of the declared values, first control varying slowest."""
        names = list(self.controls)
        return [dict(zip(names, combo))
                for combo in itertools.product(*(c.values for c in self.controls.values()))]

    def grid(self) -> Grid:
        """Precompute every combination (cached); ModelInputError if it is too large to embed."""
        if self._grid is not None:
            return self._grid
        sizes = [len(c.values) for c in self.controls.values()]
        count = math.prod(sizes)
        if count > self.max_combinations:
            shape = " x ".join(f"{len(c.values)} {n}" for n, c in self.controls.items())
            raise ModelInputError(
                f"{self.title}: the grid has {count} combinations ({shape}), more than "
                f"max_combinations={self.max_combinations} can be precomputed for the static site; "
                f"declare fewer values")
        figures = [figure_json(self.figure(**combo)) for combo in self.combinations()]
        default_positions = [c.index_of(n, c.default) for n, c in self.controls.items()]
        names = list(self.controls)
        grid = Grid(names, sizes, base={}, patches=[], frames=[])
        base = figures[grid.index(default_positions)]
        grid.base = base
        seen: dict[str, int] = {}
        for fig in figures:
            patch = diff(base, fig)
            key = json.dumps(patch, sort_keys=True, separators=(",", ":"))
            if key not in seen:
                seen[key] = len(grid.patches)
                grid.patches.append(patch)
            grid.frames.append(seen[key])
        grid.values = intern_values(grid.patches)
        if self.describe_fn:
            grid.descriptions = [self.describe_at(**combo) for combo in self.combinations()]
        grid.payload_bytes = len(_dump(grid.payload()))
        if grid.payload_bytes > self.max_embed_bytes:
            raise ModelInputError(
                f"{self.title}: precomputing {count} combinations embeds "
                f"{grid.payload_bytes / 1e6:.2f} MB in the page, over max_embed_bytes="
                f"{self.max_embed_bytes / 1e6:.2f} MB (chapter pages must stay under 1.5 MB); "
                f"declare fewer values or make the figure lighter")
        self._grid = grid
        return grid

    # -- the static side
    def static_html(self) -> str:
        grid = self.grid()
        payload = _dump(grid.payload())
        uid = "explorable-" + hashlib.sha1(payload.encode()).hexdigest()[:10]
        rows = []
        defaults = self.defaults()
        for name, control in self.controls.items():
            cid = f"{uid}-{name}"
            text = html.escape(control.label or name.replace("_", " "))
            pos = control.index_of(name, defaults[name])
            if isinstance(control, _Slider):
                labels = html.escape(json.dumps(list(control.labels)))
                widget = (f'<input type="range" id="{cid}" data-param="{name}" min="0" '
                          f'max="{len(control.values) - 1}" step="1" value="{pos}" '
                          f"data-labels='{labels}'>"
                          f'<output for="{cid}">{html.escape(control.labels[pos])}</output>')
            elif isinstance(control, _Dropdown):
                options = "".join(
                    f'<option value="{i}"{" selected" if i == pos else ""}>{html.escape(lab)}</option>'
                    for i, lab in enumerate(control.labels))
                widget = f'<select id="{cid}" data-param="{name}">{options}</select>'
            else:
                widget = (f'<input type="checkbox" id="{cid}" data-param="{name}"'
                          f'{" checked" if pos else ""}>')
            rows.append(f'<div class="explorable-control"><label for="{cid}">{text}</label>{widget}</div>')
        description = ""
        if grid.descriptions is not None:
            first = grid.descriptions[grid.index([c.index_of(n, defaults[n])
                                                 for n, c in self.controls.items()])]
            description = (f'<p class="explorable-description" aria-live="polite">'
                           f'{html.escape(first)}</p>')
        safe_payload = payload.replace("</", "<\\/")
        return (
            f'<div class="explorable" id="{uid}" data-title="{html.escape(self.title)}">'
            f'<div class="explorable-controls">{"".join(rows)}</div>'
            f'<div class="explorable-plot" role="img" aria-label="{html.escape(self.title)}"></div>'
            f"{description}"
            f'<p class="explorable-note">Precomputed for {grid.combinations} combinations; '
            f"run this chapter in Jupyter to explore freely.</p>"
            f'<script type="application/json" class="explorable-data">{safe_payload}</script>'
            f"</div>")

    # -- the live side
    def widget(self, **values) -> LiveView:
        """A new live view (ipywidgets), starting at ``values`` (defaults otherwise)."""
        import ipywidgets as widgets

        start = self.validate(**values)
        controls = {}
        for name, control in self.controls.items():
            options = list(zip(control.labels, control.values))
            description = control.label or name.replace("_", " ")
            style = {"description_width": "initial"}
            if isinstance(control, _Slider):
                w = widgets.SelectionSlider(options=options, value=start[name], description=description,
                                            continuous_update=False, style=style)
            elif isinstance(control, _Dropdown):
                w = widgets.Dropdown(options=options, value=start[name], description=description,
                                     style=style)
            else:
                w = widgets.Checkbox(value=start[name], description=description, indent=False)
            controls[name] = w
        output = widgets.Output()
        description = widgets.HTML() if self.describe_fn else None
        children = [widgets.HBox(list(controls.values())), output]
        if description is not None:
            children.append(description)
        view = LiveView(self, controls, output, widgets.VBox(children), description)
        for w in controls.values():
            w.observe(view.update, names="value")
        view.update()
        self.views.append(view)
        return view

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = {"text/plain": f"<Explorable {self.title!r}: {', '.join(self.controls)}>"}
        if os.environ.get(STATIC_BUILD_ENV):
            bundle["text/html"] = self.static_html()
            return bundle
        # Live: the widget view, plus a snapshot at the current values for frontends without
        # widgets (a notebook viewer).  The whole grid is precomputed only for the site.
        view = self.widget()
        snapshot = figure_html(json.loads(pio.to_json(view.figure, validate=False)))
        bundle["text/html"] = (f'<div class="explorable-snapshot">{snapshot}<p>A snapshot at '
                               f"{html.escape(', '.join(f'{k}={v!r}' for k, v in view.values().items()))}; "
                               f"run this notebook with ipywidgets to explore.</p></div>")
        bundle.update(view.box._repr_mimebundle_() or {})
        return bundle

    def show(self) -> None:
        """Display this explorable (live controls in Jupyter, precomputed ones on the site)."""
        from IPython.display import display

        display(self)

    def __repr__(self) -> str:
        return f"Explorable({self.figure_fn.__name__}, {', '.join(self.controls)})"


def _dump(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)
