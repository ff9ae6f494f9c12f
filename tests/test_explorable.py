"""The explorable machinery: grid precomputation, compact encoding, validation, live path."""
from __future__ import annotations

import json
import re

import numpy as np
import plotly.graph_objects as go
import pytest

from models.errors import ModelInputError
from models.viz import explorable as ex
from models.viz import BookRenderer
from models.viz.explorable import Dropdown, Explorable, Slider, Toggle, apply_patch, compact, diff, figure_json

CALLS: list[dict] = []


def wave(n_pages: int, shape: str, log: bool) -> go.Figure:
    CALLS.append(dict(n_pages=n_pages, shape=shape, log=log))
    x = np.arange(n_pages)
    y = {"square": x ** 2, "third": x / 3.0, "flat": np.ones(n_pages, dtype=np.int64)}[shape]
    fig = go.Figure(go.Scatter(x=x, y=y, name=shape))
    fig.update_layout(title=f"{n_pages} pages", yaxis_type="log" if log else "linear")
    return fig


def make(**kw) -> Explorable:
    return Explorable(wave, n_pages=Slider([2, 4, 8], default=4, unit=" pages"),
                      shape=Dropdown({"x²": "square", "x/3": "third", "1": "flat"}),
                      log=Toggle(label="log scale"), **kw)


def positions(e: Explorable, combo: dict) -> list[int]:
    return [c.index_of(n, combo[n]) for n, c in e.controls.items()]


def test_every_combination_is_precomputed_and_equals_the_model():
    e = make()
    grid = e.grid()
    assert grid.combinations == 3 * 3 * 2 == len(e.combinations())
    seen = set()
    for combo in e.combinations():
        expected = figure_json(wave(**combo))
        got = grid.figure_at(positions(e, combo))
        assert got == expected, combo
        seen.add(json.dumps(got, sort_keys=True))
    assert len(seen) == grid.combinations  # every combination is a different figure


def test_grid_is_row_major_first_control_slowest():
    e = make()
    grid = e.grid()
    assert grid.sizes == [3, 3, 2]
    assert grid.index([0, 0, 1]) == 1 and grid.index([0, 1, 0]) == 2 and grid.index([1, 0, 0]) == 6
    assert grid.index([2, 2, 1]) == 17


def test_base_is_the_default_figure_and_patches_store_only_what_changes():
    e = make()
    grid = e.grid()
    assert grid.base == figure_json(wave(n_pages=4, shape="square", log=False))
    assert grid.patches[grid.frames[grid.index([1, 0, 0])]] == {}
    # toggling log changes only one layout key, not the data or the (large) template
    log_patch = grid.patches[grid.frames[grid.index([1, 0, 1])]]
    assert set(log_patch) == {"layout"} and set(log_patch["layout"]) == {"yaxis"}
    assert "template" in grid.base["layout"]
    assert all("template" not in p.get("layout", {}) for p in grid.patches)


def test_identical_figures_share_one_patch():
    def ignores_b(a: int, b: str):
        return go.Figure(go.Bar(x=[0, 1], y=[a, 2 * a]))

    e = Explorable(ignores_b, a=Slider([1, 2, 3]), b=Dropdown(["p", "q", "r", "s"]))
    grid = e.grid()
    assert grid.combinations == 12
    assert len(grid.patches) == 3
    assert grid.frames == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]


def test_trace_count_changes_are_stored_whole():
    def traces(n: int):
        return go.Figure([go.Bar(x=[i], y=[i]) for i in range(n)])

    e = Explorable(traces, n=Slider([1, 3]))
    grid = e.grid()
    assert "data_full" in grid.patches[grid.frames[1]]
    assert len(grid.figure_at([1])["data"]) == 3


def test_floats_are_rounded_and_non_finite_become_gaps():
    assert compact(0.1 + 0.2) == 0.3
    assert compact(1 / 3) == 0.333333
    assert compact(2.0) == 2 and isinstance(compact(2.0), int)
    assert compact([float("nan"), float("inf")]) == [None, None]
    fig = figure_json(go.Figure(go.Scatter(x=[0, 1], y=np.array([1 / 3, 2 / 3]))))
    assert fig["data"][0]["y"] == [0.333333, 0.666667]  # float typed arrays become short lists
    ints = figure_json(go.Figure(go.Heatmap(z=np.zeros((4, 8), dtype=np.int8))))
    assert ints["data"][0]["z"]["dtype"] == "i1"  # integer arrays stay compact (base64)


def test_diff_and_apply_patch_round_trip():
    a = {"data": [{"x": [1], "y": [2], "name": "a"}], "layout": {"title": "t", "height": 3}}
    b = {"data": [{"x": [1], "y": [5]}], "layout": {"title": "u"}}
    patch = diff(a, b)
    assert patch == {"data": [{"y": [5], "name": None}], "layout": {"title": "u", "height": None}}
    assert apply_patch(a, patch) == b
    assert a["data"][0]["y"] == [2]  # base untouched


@pytest.mark.parametrize("values, message", [
    (dict(n_pages=3), r"n_pages must be one of \[2, 4, 8\].*got 3"),
    (dict(n_pages="4"), r"n_pages must be one of .*got '4' \(str\)"),
    (dict(n_pages=True), r"n_pages must be one of .*got True \(bool\)"),
    (dict(shape="cube"), r"shape must be one of \['square', 'third', 'flat'\].*got 'cube'"),
    (dict(log=1), r"log must be one of \[False, True\].*got 1 \(int\)"),
    (dict(pages=4), r"unknown parameter\(s\) \['pages'\]; parameters are \['n_pages', 'shape', 'log'\]"),
])
def test_values_outside_the_declared_grid_are_refused(values, message):
    with pytest.raises(ModelInputError, match=message):
        make().figure(**values)


def test_float_slider_values_compare_by_value():
    e = Explorable(lambda f: go.Figure(go.Bar(y=[f])), f=Slider([0.5, 1.0, 1.5]))
    assert e.validate(f=1) == {"f": 1}
    with pytest.raises(ModelInputError, match="f must be one of"):
        e.validate(f=0.75)


def test_grid_too_large_is_refused_before_running_the_model():
    CALLS.clear()
    e = Explorable(wave, n_pages=Slider(range(1, 101)), shape=Dropdown(["square", "third"]),
                   log=Toggle(), max_combinations=300)
    with pytest.raises(ModelInputError, match=r"400 combinations \(100 n_pages x 2 shape x 2 log\).*"
                                              r"max_combinations=300"):
        e.grid()
    assert CALLS == []


def test_embedding_too_heavy_is_refused_with_its_size():
    e = Explorable(wave, n_pages=Slider([200, 400, 800]), shape=Dropdown(["third"]), log=Toggle(),
                   max_embed_bytes=5_000)
    with pytest.raises(ModelInputError, match=r"embeds 0\.\d\d MB in the page, over max_embed_bytes=0\.01 MB"):
        e.grid()


@pytest.mark.parametrize("build, message", [
    (lambda: Slider([3, 1, 2]), "strictly ascending"),
    (lambda: Slider(["a", "b"]), "must be numbers"),
    (lambda: Slider([]), "at least one value"),
    (lambda: Slider([1, 2], default=5), r"default must be one of \[1, 2\]"),
    (lambda: Dropdown(["a", "a"]), "distinct"),
    (lambda: Toggle(default="yes"), "True or False"),
    (lambda: Explorable(wave, size=Slider([1])), r"controls \['size'\] are not parameters of wave"),
    (lambda: Explorable(wave, n_pages=[1, 2]), "must be a Slider, Dropdown or Toggle"),
])
def test_bad_declarations_are_refused(build, message):
    with pytest.raises(ModelInputError, match=message):
        build()


def test_time_slider_over_steps_with_heatmaps_stays_in_budget():
    """The page-map variant: an integer slider over N steps, a heatmap grid per step."""
    rng = np.random.default_rng(0)
    states = rng.integers(0, 4, size=(40, 32, 128)).astype(np.int8)

    def page_map(step: int):
        return go.Figure(go.Heatmap(z=states[step], zmin=0, zmax=3))

    e = Explorable(page_map, step=Slider(range(40), label="step"))
    grid = e.grid()
    assert grid.combinations == 40
    assert grid.payload_bytes < 600_000
    for step in (0, 17, 39):
        z = grid.figure_at([step])["data"][0]["z"]
        assert z == figure_json(page_map(step))["data"][0]["z"]


def test_static_html_embeds_the_grid_and_labels_it_precomputed():
    e = make(title="Toy </script> explorable")
    page = e.static_html()
    assert "Precomputed for 18 combinations; run this chapter in Jupyter to explore freely." in page
    assert page.count("</script>") == 1  # the payload cannot close its own script tag
    payload = re.search(r'<script type="application/json" class="explorable-data">(.*)</script>', page).group(1)
    data = json.loads(payload.replace("<\\/", "</"))
    assert data["names"] == ["n_pages", "shape", "log"] and data["sizes"] == [3, 3, 2]
    assert 'type="range"' in page and 'max="2"' in page and 'value="1"' in page  # default 4 pages
    assert "<option value=\"1\">x/3</option>" in page
    assert 'type="checkbox"' in page


def test_live_view_reruns_the_model_and_replaces_the_figure():
    e = make()
    view = e.widget()
    first = view.output.outputs
    assert len(first) == 1
    assert first[0]["data"]["application/vnd.plotly.v1+json"]["layout"]["title"]["text"] == "4 pages"
    CALLS.clear()
    view.controls["n_pages"].value = 8
    assert CALLS == [dict(n_pages=8, shape="square", log=False)]
    out = view.output.outputs
    assert len(out) == 1  # replaced, not appended
    fig = out[0]["data"]["application/vnd.plotly.v1+json"]
    assert fig["layout"]["title"]["text"] == "8 pages"
    assert "text/html" in out[0]["data"]
    view.controls["shape"].value = "flat"
    y = view.output.outputs[0]["data"]["application/vnd.plotly.v1+json"]["data"][0]["y"]
    assert y == {"dtype": "i1", "bdata": "AQEBAQEBAQE="} or y == [1] * 8
    assert view.figure.layout.title.text == "8 pages"
    assert e.views[-1] is view


def test_live_view_shows_model_errors_instead_of_swallowing_them():
    def fails(a: int):
        if a == 2:
            raise ModelInputError("a=2 is not allowed here")
        return go.Figure(go.Bar(y=[a]))

    view = Explorable(fails, a=Slider([1, 2])).widget()
    view.controls["a"].value = 2
    assert view.error == "ModelInputError: a=2 is not allowed here"
    assert view.output.outputs[0]["name"] == "stderr"


def test_mimebundle_live_has_widget_and_html_static_build_has_no_widget(monkeypatch):
    e = make()
    monkeypatch.delenv(ex.STATIC_BUILD_ENV, raising=False)
    CALLS.clear()
    live = e._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in live
    assert "plotly-graph-div" in live["text/html"] and "n_pages=4" in live["text/html"]
    assert len(CALLS) == 1  # live: the grid is not precomputed, only the shown figure is run
    views = len(e.views)
    monkeypatch.setenv(ex.STATIC_BUILD_ENV, "1")
    static = e._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" not in static
    assert static["text/html"] == e.static_html() and "explorable-data" in static["text/html"]
    assert len(CALLS) == 1 + 18
    assert len(e.views) == views  # no widgets created during a site build


def test_book_renderer_gives_plotly_json_and_html_without_plotlyjs():
    bundle = BookRenderer().to_mimebundle(go.Figure(go.Bar(y=[1, 2])).to_dict())
    assert bundle["application/vnd.plotly.v1+json"]["data"][0]["type"] == "bar"
    html = bundle["text/html"]
    assert "Plotly.newPlot" in html and "plotly-graph-div" in html
    assert "cdn.plot.ly" not in html and len(html) < 20_000  # plotly.js is not inlined


def test_values_shared_by_combinations_are_embedded_once():
    labels = [f"page {i}: resident" for i in range(200)]  # a heavy hover-text array

    def strip(size: int, colour: str):
        return go.Figure(go.Bar(x=list(range(size)), y=[1] * size, text=labels[:size],
                                marker_color=colour))

    e = Explorable(strip, size=Slider([100, 200]), colour=Dropdown(["red", "blue", "green", "black"]))
    grid = e.grid()
    payload = json.dumps(grid.payload())
    assert payload.count("page 199: resident") == 1  # 3 non-base combinations use it, stored once
    refs = [v for p in grid.patches for ch in p.get("data", []) for v in ch.values()
            if isinstance(v, dict) and "$ref" in v]
    assert refs and len(grid.values) >= 1
    for combo in e.combinations():
        assert grid.figure_at(positions(e, combo)) == figure_json(strip(**combo))
