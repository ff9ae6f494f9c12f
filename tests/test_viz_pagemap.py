"""The page map (models/viz/pagemap.py): aggregation, counters, every library scenario."""
from __future__ import annotations

import json

import numpy as np
import pytest

from models import scenario as lib
from models.errors import ModelInputError
from models.kernel.pages import PageState
from models.kernel.replay import play
from models.viz import pagemap as pm
from models.viz.explorable import MAX_EMBED_BYTES, Dropdown

R, Z, N, L, X = (int(PageState.RESIDENT), int(PageState.ZERO_PAGE), int(PageState.NOT_PRESENT),
                 int(PageState.LAZYFREE), int(PageState.RECLAIMED))


def small(first: str = "read") -> dict:
    """The chapter 2 scenario: 256 pages, four overlapping touches."""
    return {"name": "overlap", "steps": [
        {"op": "mmap", "region": "buf", "length": "1MiB"},
        {"op": "touch", "region": "buf", "offset": 0, "length": "512KiB", "access": first},
        {"op": "touch", "region": "buf", "offset": "256KiB", "length": "512KiB", "access": "write"},
        {"op": "touch", "region": "buf", "offset": 0, "length": "1MiB", "access": "read"},
        {"op": "touch", "region": "buf", "offset": 0, "length": "1MiB", "access": "write"}]}


def test_grid_shape_one_cell_per_page_when_small_and_folded_when_big():
    assert pm.grid_shape(256) == (1, 16, 16)
    assert pm.grid_shape(16384) == (16, 32, 32)
    assert pm.grid_shape(16384, 4096) == (4, 64, 64)
    per, rows, cols = pm.grid_shape(10 ** 6)          # ~3.8 GiB region
    assert rows * cols <= pm.MAX_CELLS and per * rows * cols >= 10 ** 6
    assert pm.grid_shape(5) == (1, 2, 3)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_grid_shape_rejects_bad_sizes(bad):
    with pytest.raises(ModelInputError, match="npages"):
        pm.grid_shape(bad)
    with pytest.raises(ModelInputError, match="max_cells"):
        pm.grid_shape(16, 0 if bad != 0 else 99999)


def test_aggregate_majority_counts_and_ranges():
    codes = np.array([R] * 3 + [Z] * 1 + [N] * 2 + [L] * 2 + [X] * 1, dtype=np.uint8)  # 9 pages
    cells = pm.aggregate(codes, max_cells=3)          # 3 pages per cell -> 3 cells in 2x2
    assert (cells.pages_per_cell, cells.rows, cells.cols) == (3, 2, 2)
    flat = cells.codes.ravel()
    assert list(flat) == [R, N, L, -1]                # cell 1: Z,N,N -> N; cell 2: L,L,X -> L
    assert cells.counts[0, R] == 3 and cells.counts[1, Z] == 1 and cells.counts[1, N] == 2
    assert cells.counts[2, L] == 2 and cells.counts[2, X] == 1
    assert cells.counts[3].sum() == 0                 # padding is never counted
    assert list(cells.first_page) == [0, 3, 6, -1] and list(cells.last_page) == [2, 5, 8, -1]
    assert cells.counts.sum() == codes.size


def test_aggregate_last_partial_cell_and_ties():
    codes = np.array([R, Z, Z, R, N], dtype=np.uint8)  # 2 per cell: [R,Z] tie -> lower code Z
    cells = pm.aggregate(codes, max_cells=3)
    assert cells.pages_per_cell == 2
    assert list(cells.codes.ravel()[:3]) == [Z, Z, N]
    assert cells.last_page[2] == 4 and cells.counts[2].sum() == 1


def test_aggregate_big_region_random_counts_are_exact():
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 6, size=100_003).astype(np.uint8)
    cells = pm.aggregate(codes)
    assert cells.rows * cells.cols <= pm.MAX_CELLS
    assert np.array_equal(cells.counts.sum(axis=0)[:6], np.bincount(codes, minlength=6))
    i = 17
    lo, hi = cells.first_page[i], cells.last_page[i]
    assert np.array_equal(cells.counts[i][:6], np.bincount(codes[lo:hi + 1], minlength=6))
    assert cells.codes.ravel()[i] == np.bincount(codes[lo:hi + 1], minlength=6).argmax()


def test_aggregate_rejects_bad_codes():
    with pytest.raises(ModelInputError, match="page codes"):
        pm.aggregate(np.array([0, 9]))
    with pytest.raises(ModelInputError, match="1-D"):
        pm.aggregate(np.array([]))


def test_snapshots_follow_the_model_page_by_page():
    run = pm.snapshots(small("read"))
    s = [snap.states["buf"] for snap in run.snapshots]
    assert (s[0] == N).all()
    assert (s[1][:128] == Z).all() and (s[1][128:] == N).all()
    assert (s[2][:64] == Z).all() and (s[2][64:192] == R).all() and (s[2][192:] == N).all()
    assert (s[3][:64] == Z).all() and (s[3][192:] == Z).all()
    assert (s[4] == R).all()
    assert [snap.result.faults for snap in run.snapshots] == [0, 128, 128, 64, 128]
    assert [snap.faults_so_far for snap in run.snapshots] == [0, 128, 256, 320, 448]
    write_first = pm.snapshots(small("write"))
    assert [snap.result.faults for snap in write_first.snapshots] == [0, 128, 64, 64, 64]


def test_counters_equal_the_models_observations_for_every_library_scenario():
    for name in lib.library_names():
        scenario = lib.resolve(name)
        rows = play(scenario)
        run = pm.snapshots(name)
        assert len(run.snapshots) == len(rows), name
        total = 0
        for step, row in enumerate(rows):
            c = pm.counters(run, step)
            total += row.faults
            assert (c["rss_pages"], c["lazyfree_pages"], c["faults"], c["error"]) == \
                   (row.rss_pages, row.lazyfree_pages, row.faults, row.error), (name, step)
            assert c["faults_so_far"] == total
            assert c["zero_pages_read"] == row.zero_pages
            if row.error != "OOM_KILL":
                # private RESIDENT + LAZYFREE pages of the grid are exactly the model's RSS
                snap = run.snapshots[step]
                assert snap.count(R) + snap.count(L) == row.rss_pages, (name, step)


def test_munmap_and_remap_shows_not_mapped_cells():
    run = pm.snapshots("munmap")
    assert run.region_pages["a"] == 32 << 8            # the largest mapping of "a": 32 MiB
    kinds = [set(np.unique(s.states["a"]).tolist()) for s in run.snapshots]
    assert any(pm.NOT_MAPPED in k for k in kinds)


@pytest.mark.parametrize("name", lib.library_names())
def test_every_library_scenario_renders_within_the_page_budget(name):
    ex = pm.pagemap_explorable(name)
    grid = ex.grid()
    n = len(lib.resolve(name).steps)
    assert grid.sizes == [n]
    assert grid.payload_bytes <= MAX_EMBED_BYTES
    last = grid.figure_at([n - 1])
    heatmaps = [t for t in last["data"] if t["type"] == "heatmap"]
    assert len(heatmaps) == len(pm.snapshots(name).regions)
    for h in heatmaps:
        rows = len(h["z"])
        assert rows <= 32 and all(len(r) <= 32 for r in h["z"])
    assert len(grid.descriptions) == n and all(d.startswith(("After step", "Step")) for d in grid.descriptions)


def test_static_grid_colours_are_the_models_states():
    ex = pm.pagemap_explorable(small("read"))
    grid = ex.grid()
    z2 = np.array(grid.figure_at([2])["data"][0]["z"]).ravel()
    assert list(z2[:64]) == [Z] * 64 and list(z2[64:192]) == [R] * 128 and list(z2[192:]) == [N] * 64
    table = [t for t in grid.figure_at([2])["data"] if t["type"] == "table"][0]
    assert "128 pages (0.5 MiB)" in table["cells"]["values"][1][0]


def test_explorable_with_extra_control_and_text_summary():
    ex = pm.pagemap_explorable(small, first=Dropdown({"read first": "read", "write first": "write"}))
    assert ex.grid().combinations == 5 * 2
    text = ex.describe_at(step=4, first="write")
    assert "320 so far" in text
    assert "448 so far" in ex.describe_at(step=4, first="read")
    sentences = pm.pagemap_text(small("read"))
    assert len(sentences) == 5 and "128 of the pages it read returned zeros" in sentences[1]


def test_oom_kill_stops_the_map_and_says_so():
    name = "pressure-oom"
    rows = play(lib.resolve(name))
    assert rows[-1].error == "OOM_KILL"
    run = pm.snapshots(name)
    killed = run.snapshots[-1]
    assert all((codes == pm.NOT_MAPPED).all() for codes in killed.states.values())
    if len(rows) < len(lib.resolve(name).steps):
        assert "did not run" in pm.describe_pagemap_step(run, len(rows))


def test_bad_scenarios_and_steps_are_clear_errors():
    with pytest.raises(ModelInputError, match="no library scenario"):
        pm.pagemap_figure("no-such-scenario")
    with pytest.raises(ModelInputError, match="step must be"):
        pm.pagemap_figure("read-then-write", step=99)
    with pytest.raises(ModelInputError, match="scenario must be"):
        pm.as_scenario(42)
    with pytest.raises(ModelInputError, match="need a scenario function"):
        pm.pagemap_explorable("read-then-write", first=Dropdown(["a", "b"]))


def test_steps_embed_only_what_changes():
    """The page ranges (customdata) are the same at every step: only the base figure holds them."""
    grid = pm.pagemap_explorable("read-then-write").grid()
    assert "customdata" in grid.base["data"][0]
    for patch in grid.patches:
        for change in patch.get("data", []):
            assert "customdata" not in change
    # steps 2 and 3 differ only in the counters (writing resident pages again changes no state)
    p2, p3 = (grid.patches[grid.frames[i]] for i in (2, 3))
    assert p2.get("data", [{}])[0].get("z") == p3.get("data", [{}])[0].get("z")


def test_variants_of_different_length_say_so():
    def make(n):
        steps = small("read")["steps"][:n]
        return {"name": f"{n} steps", "steps": steps}
    ex = pm.pagemap_explorable(make, n=Dropdown([3, 5]))
    assert ex.controls["step"].values == (0, 1, 2, 3, 4)
    assert "only 3 steps" in ex.describe_at(step=4, n=3)
    assert "only 3 steps" in ex.figure(step=4, n=3).layout.title.text
    assert "only" not in ex.describe_at(step=4, n=5)


def test_live_widget_redraws_the_map():
    """The live (ipywidgets) form: moving the slider recomputes the grid and the text."""
    ex = pm.pagemap_explorable(small, first=Dropdown({"read first": "read", "write first": "write"}))
    view = ex.widget()
    assert view.error is None
    view.controls["step"].value = 2
    view.controls["first"].value = "write"
    assert view.error is None
    z = np.array(view.figure.data[0].z, dtype=float).ravel()
    assert int((z == R).sum()) == 192 and int((z == N).sum()) == 64
    assert "192 resident" in view.description.value


def test_kernel_version_and_swap_as_controls():
    """On 4.9 without swap MADV_FREE frees at once (FACTS 15); on 6.18 the pages stay, lazily freed."""
    from models.viz.explorable import Toggle
    ex = pm.pagemap_explorable("free-then-write", kernel_version=Dropdown(["4.9", "6.18"]), swap=Toggle())
    assert set(ex.controls) == {"step", "kernel_version", "swap"}
    assert ex.grid().combinations == 5 * 2 * 2
    old = ex.describe_at(step=2, kernel_version="4.9", swap=False)
    new = ex.describe_at(step=2, kernel_version="6.18", swap=False)
    assert "16,384 not present" in old and "RSS 0 pages" in old
    assert "16,384 lazily freed" in new and "LazyFree 16,384 pages" in new


def two_sizes(*extra) -> dict:
    """Regions of unequal size side by side (chapter 6 draws such pairs)."""
    return {"name": "two sizes", "steps": [
        {"op": "mmap", "region": "heap", "length": "64MiB"},
        {"op": "mmap", "region": "stack", "length": "8MiB"}, *extra,
        {"op": "touch", "region": "stack", "offset": 0, "length": "2MiB", "access": "read"}]}


def _grid_labels_fit(fig, nregions: int, width_px: int) -> None:
    """Every grid's row labels fit in the space left of it at ``width_px``: the figure's left
    margin for the first grid, the gap after the neighbouring grid for the others."""
    lay = fig.layout
    plot_px = width_px - lay.margin.l - lay.margin.r
    axes = [(lay[f"xaxis{i if i > 1 else ''}"], lay[f"yaxis{i if i > 1 else ''}"])
            for i in range(1, nregions + 1)]
    for i, (x, y) in enumerate(axes):
        if y.showticklabels is False:
            continue
        # Arial at the tick font: digits 0.556 em, "page " letters narrower; 0.6 em is an upper bound
        need = max(len(t) for t in y.ticktext) * 0.6 * y.tickfont.size
        room = lay.margin.l + x.domain[0] * plot_px if i == 0 else \
            (x.domain[0] - axes[i - 1][0].domain[1]) * plot_px
        assert room >= need, f"grid {i + 1}: labels {y.ticktext} need {need:.0f}px, room {room:.0f}px"
    table = [t for t in fig.data if t.type == "table"][0]
    assert table.domain.x[0] > axes[-1][0].domain[1]          # the counters start after the grids


@pytest.mark.parametrize("width", [pm.NARROW_WIDTH_PX, 1000])
def test_unequal_regions_have_their_own_labels_and_room_for_them(width):
    """64 MiB and 8 MiB side by side: each grid says which page its rows start at, and the
    8 MiB grid's labels are not drawn over the 64 MiB grid (they were, with a 4% gap)."""
    fig = pm.pagemap_figure(two_sizes(), 2)
    assert list(fig.layout.yaxis.ticktext) == ["page 0", "page 4,096", "page 8,192", "page 12,288"]
    assert fig.layout.yaxis2.showticklabels is True
    assert list(fig.layout.yaxis2.ticktext) == ["page 0", "page 512", "page 1,024", "page 1,536"]
    _grid_labels_fit(fig, 2, width)
    three = pm.pagemap_figure(two_sizes({"op": "mmap", "region": "tiny", "length": "64KiB"}), 3)
    assert list(three.layout.yaxis3.ticktext) == ["page 0", "page 4", "page 8", "page 12"]
    _grid_labels_fit(three, 3, width)


def test_equal_regions_share_the_left_labels_and_long_labels_widen_the_margin():
    equal = {"name": "equal", "steps": [{"op": "mmap", "region": "a", "length": "8MiB"},
                                        {"op": "mmap", "region": "b", "length": "8MiB"}]}
    fig = pm.pagemap_figure(equal, 1)
    assert fig.layout.yaxis.showticklabels is not False and fig.layout.yaxis2.showticklabels is False
    _grid_labels_fit(fig, 2, pm.NARROW_WIDTH_PX)
    big = {"name": "big", "steps": [{"op": "mmap", "region": "a", "length": "64GiB"},
                                    {"op": "mmap", "region": "b", "length": "1MiB"}]}
    fig = pm.pagemap_figure(big, 1)
    assert fig.layout.yaxis.ticktext[-1] == "page 12,582,912"
    assert fig.layout.margin.l > 80
    _grid_labels_fit(fig, 2, pm.NARROW_WIDTH_PX)


def test_sentences_keep_the_case_of_units_and_names():
    """The "did not run" sentence is capitalised at its first letter only ("MiB", "OOM" stay)."""
    name = "pressure-oom"
    run = pm.snapshots(name)
    steps = lib.resolve(name).steps
    assert len(run.snapshots) < len(steps), "pressure-oom should stop at the OOM kill"
    text = pm.describe_pagemap_step(run, len(run.snapshots))
    assert text.startswith(f"Step {len(run.snapshots)} (")
    assert "OOM-killed" in text and "MiB" in text and text.endswith(".") and not text.endswith("..")
    assert "mib" not in text and "oom" not in text
    assert pm._sentence("after x: 1 MiB.") == "After x: 1 MiB."


def test_kernel_version_and_swap_controls_with_a_scenario_function():
    """kernel_version=Dropdown({label: version}) / swap=Toggle() beside a scenario function's own
    control: the model gets the chosen values (not the control objects), in every form."""
    from models.viz.explorable import Toggle

    def make(first):
        return {"name": "free", "steps": [
            {"op": "mmap", "region": "buf", "length": "1MiB"},
            {"op": "touch", "region": "buf", "offset": 0, "length": "1MiB", "access": first},
            {"op": "madvise", "region": "buf", "offset": 0, "length": "1MiB", "advice": "MADV_FREE"}]}
    ex = pm.pagemap_explorable(make, first=Dropdown(["read", "write"]),
                               kernel_version=Dropdown({"Linux 4.9": "4.9", "Linux 6.18": "6.18"}),
                               swap=Toggle())
    assert set(ex.controls) == {"step", "first", "kernel_version", "swap"}
    assert ex.grid().combinations == 3 * 2 * 2 * 2
    old = ex.describe_at(step=2, first="write", kernel_version="4.9", swap=False)
    new = ex.describe_at(step=2, first="write", kernel_version="6.18", swap=False)
    assert "256 not present" in old and "RSS 0 pages" in old          # FACTS 15: freed at once
    assert "256 lazily freed" in new and "LazyFree 256 pages" in new
    view = ex.widget()
    assert view.error is None
    view.controls["first"].value = "write"
    view.controls["step"].value = 2
    view.controls["kernel_version"].value = "4.9"
    assert view.error is None and "256 not present" in view.description.value
