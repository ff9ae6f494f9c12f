"""The pilot chapter's model function and its real-kernel probe (VSZ / RSS / fault arithmetic)."""
from __future__ import annotations


import numpy as np
import pytest

from conftest import need
from models.errors import ModelInputError
from models.realkernel import address_space_probe as probe
from models.realkernel import pagetable_probe as pt_probe
from models.viz import address_space as a

MiB = 1 << 20


@pytest.mark.parametrize("reserve, percent, access, rss_mib, zero_mib, faults", [
    (64, 50, "read", 0, 32, 8192),               # FACTS 1-2: reads map the zero page
    (64, 50, "write", 32, 0, 8192),              # one private page per written page
    (64, 50, "read_then_write", 32, 0, 16384),   # zero page, then copy-on-write: 2 faults/page
    (256, 100, "write", 256, 0, 65536),
    (16, 0, "write", 0, 0, 0),                   # mmap alone: VSZ only
    (16, 25, "read", 0, 4, 1024),
])
def test_vsz_rss_and_fault_arithmetic(reserve, percent, access, rss_mib, zero_mib, faults):
    r = a.reserve_and_touch_model(reserve, percent, access)
    assert r.vsz_bytes == reserve * MiB  # VSZ grows by the whole mapping, whatever is touched
    assert r.rss_bytes == rss_mib * MiB
    assert r.zero_page_bytes == zero_mib * MiB
    assert r.faults == faults
    assert len(r.page_states) == reserve * MiB // 4096
    touched = reserve * MiB // 4096 * percent // 100
    assert np.all(r.page_states[touched:] == a.UNTOUCHED)
    expected = a.ZERO_PAGE if access == "read" else a.RESIDENT
    assert np.all(r.page_states[:touched] == expected)


@pytest.mark.parametrize("args, message", [
    ((0, 50, "read"), r"reserve_mib must be a whole number of MiB in 1\.\.4096, got 0"),
    ((64.5, 50, "read"), r"reserve_mib .* got 64\.5"),
    ((64, 101, "read"), r"touched_percent must be a whole number in 0\.\.100, got 101"),
    ((64, 50, "exec"), r"access must be one of \['read', 'write', 'read_then_write'\], got 'exec'"),
])
def test_model_refuses_bad_input(args, message):
    with pytest.raises(ModelInputError, match=message):
        a.reserve_and_touch_model(*args)


def test_strip_keeps_the_dominant_state_of_each_run():
    states = np.array([0] * 10 + [2] * 6 + [1] * 16, dtype=np.int8)
    assert a.strip(states, cells=4).tolist() == [0, 2, 1, 1]


def test_figure_shows_the_model_numbers_on_fixed_axes():
    fig = a.reserve_and_touch_figure(128, 75, "read_then_write")
    bars, faults = fig.data[0], fig.data[1]
    assert list(bars.y) == [128, 0, 96] and list(faults.y) == [2 * 96 * 256]
    # axes do not rescale with the controls, so moving them shows growth
    assert fig.layout.yaxis.range == (0, 256 * 1.15)
    assert fig.layout.yaxis.title.text == "MiB" and fig.layout.yaxis2.title.text == "faults"
    assert "128 MiB" in fig.layout.title.text and "75 %" in fig.layout.title.text
    assert "RSS by 96 MiB" in a.describe(128, 75, "read_then_write")


def test_explorable_grid_covers_every_setting():
    grid = a.reserve_and_touch.grid()
    assert grid.combinations == len(a.RESERVE_MIB) * len(a.TOUCHED_PERCENT) * len(a.ACCESS)
    assert grid.payload_bytes < 400_000
    pos = [a.RESERVE_MIB.index(32), a.TOUCHED_PERCENT.index(100), list(a.ACCESS.values()).index("write")]
    assert grid.figure_at(pos)["data"][0]["y"] == [32, 0, 32]


# ------------------------------------------------------------------ the real kernel

def test_probe_refuses_bad_input_and_unbounded_sizes():
    with pytest.raises(ModelInputError, match=r"reserve_mib must be a whole number of MiB in 1\.\.1024"):
        probe.measure(4096, 50, "write")
    with pytest.raises(ModelInputError, match="access must be one of"):
        probe.measure(16, 50, "touch")


@pytest.mark.parametrize("access", ["read", "write", "read_then_write"])
def test_real_kernel_agrees_with_the_model(access):
    need(probe.available() is None, f"needs Linux with /proc: {probe.available()}")
    result = probe.measure(32, 50, access)
    model = a.reserve_and_touch_model(32, 50, access)
    d = result.deltas()
    assert result.sample("after mmap").region_size_kib == 32 * 1024  # guard pages kept it apart
    assert d["vsz_kib"] >= 32 * 1024
    assert d["region_rss_kib"] * 1024 == model.rss_bytes  # smaps Rss of the region, exactly
    # the measuring interpreter takes a few faults of its own (E1: +3 on 16,384)
    assert model.faults <= d["minflt"] <= model.faults + 200, (d, model.faults)
    assert d["majflt"] == 0


def test_recorded_measurement_matches_the_model():
    for access in ("read", "write", "read_then_write"):
        rec = probe.recorded(access)
        model = a.reserve_and_touch_model(rec.reserve_mib, rec.percent, access)
        assert rec.deltas()["region_rss_kib"] * 1024 == model.rss_bytes
        assert model.faults <= rec.deltas()["minflt"] <= model.faults + 200


def test_comparison_falls_back_to_the_recording_off_linux(monkeypatch):
    monkeypatch.setattr(probe, "available", lambda: "the real-kernel probe needs Linux; this is Darwin")
    comparison = a.compare_with_kernel(64, 50)
    assert comparison.source.startswith("recorded on Linux")
    assert [r["model_rss_mib"] for r in comparison.rows()] == [0, 32, 32]
    with pytest.raises(ModelInputError, match="only the recorded 64 MiB / 50 % measurement"):
        a.compare_with_kernel(32, 50)
    assert "read_then_write" in comparison.summary()


# ------------------------------------------------------------------ page tables (K3)


KiB = 1 << 10


@pytest.mark.parametrize("reserve, stride, layout, access, rss_kib, tables", [
    (1024, 512, "spread", "write", 2048, 512),    # one page per 2 MiB: as much in tables as in RSS
    (1024, 512, "spread", "read", 0, 512),        # a zero-page entry needs its table too
    (1024, 512, "packed", "write", 2048, 2),      # 512 pages from page 0 straddle a block boundary
    (1024, 64, "spread", "write", 16384, 512),
    (1024, 1, "spread", "write", 1024 * 1024, 513),  # every block of the 513 the mapping spans
    (64, 1, "packed", "read", 0, 33),
    (64, 512, "spread", "write", 128, 32),
    (256, 8, "packed", "write", 32768, 17),       # 8,192 pages = pages 0..8191: blocks 0..16
])
def test_pagetable_cost(reserve, stride, layout, access, rss_kib, tables):
    r = a.pagetable_cost_model(reserve, stride, layout, access)
    npages = reserve * MiB // 4096
    assert r.touched_pages == npages // stride
    assert r.faults == r.touched_pages              # one first-touch fault per page, read or write
    assert r.rss_bytes == rss_kib * KiB
    assert r.pagetable_pages == tables and r.pagetable_bytes == tables * 4096
    # the strip agrees with the model's count: one table per block with a touched page
    assert np.count_nonzero(r.block_touched) == tables
    assert r.block_touched.sum() == r.touched_pages
    assert r.blocks == npages // 512 + 1            # the mapping starts one page into a block


def test_touched_page_indices():
    assert a.touched_page_indices(2048, 512, "spread").tolist() == [0, 512, 1024, 1536]
    assert a.touched_page_indices(2048, 512, "packed").tolist() == [0, 1, 2, 3]
    assert len(a.touched_page_indices(2048, 1, "spread")) == 2048


@pytest.mark.parametrize("args, message", [
    ((1, 512, "spread", "read"), r"reserve_mib must be a whole number of MiB in 2\.\.4096, got 1"),
    ((64, 0, "spread", "read"), r"stride must be a whole number of pages in 1\.\.512, got 0"),
    ((64, 1024, "spread", "read"), r"stride .* got 1024"),
    ((64, 8, "random", "read"), r"layout must be one of \['spread', 'packed'\], got 'random'"),
    ((64, 8, "spread", "read_then_write"), r"access must be one of \['read', 'write'\]"),
])
def test_pagetable_model_refuses_bad_input(args, message):
    with pytest.raises(ModelInputError, match=message):
        a.pagetable_cost_model(*args)


def test_pagetable_figure_and_text_show_the_model_numbers():
    fig = a.pagetable_figure(1024, 512, "spread", "read")
    bars, strip_ = fig.data[0], fig.data[1]
    assert list(bars.y) == [2048, None, 2048]       # touched, RSS (0: not drawn on a log axis), tables
    assert list(bars.text) == ["2,048 KiB", "0 KiB", "2,048 KiB"]
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.title.text == "memory (log scale)"
    assert [a_.text for a_ in fig.layout.annotations if a_.text == "0 KiB"] == ["0 KiB"]
    assert fig.layout.xaxis2.title.text == "offset in the mapping (MiB)"
    assert list(strip_.z[0]).count(1) == 512 and len(strip_.x) == 513 + 1  # bin edges
    assert "while RSS is 0" in fig.layout.title.text
    packed = a.pagetable_figure(1024, 512, "packed", "write")
    assert packed.data[0].y[2] == 8 and "0.4% of RSS" in packed.layout.title.text
    assert "page tables 2,048 KiB" in a.describe_pagetables(1024, 512, "spread", "write")
    assert "100.0% of RSS" in a.describe_pagetables(1024, 512, "spread", "write")


def test_pagetable_explorable_grid():
    grid = a.pagetable_cost.grid()
    assert grid.combinations == len(a.PT_RESERVE_MIB) * len(a.PT_STRIDE) * 2 * 2
    assert grid.payload_bytes < 300_000
    pos = [a.PT_RESERVE_MIB.index(1024), a.PT_STRIDE.index(512), 1, 1]   # packed, write
    assert grid.figure_at(pos)["data"][0]["y"][2] == 8


def test_pagetable_probe_refuses_bad_input():
    with pytest.raises(ModelInputError, match=r"reserve_mib must be a whole number of MiB in 2\.\.1024"):
        pt_probe.measure(2048, 512, "spread", "read")
    with pytest.raises(ModelInputError, match="layout must be one of"):
        pt_probe.measure(64, 512, "diagonal", "read")


@pytest.mark.parametrize("case", [(256, 512, "spread", "read"), (256, 512, "packed", "write"),
                                  (256, 64, "spread", "write")])
def test_real_kernel_page_tables_agree_with_the_model(case):
    need(pt_probe.available() is None, f"needs Linux with /proc: {pt_probe.available()}")
    kernel = pt_probe.measure(*case)
    model = a.pagetable_cost_model(*case)
    assert kernel.region_rss_kib * KiB == model.rss_bytes
    assert kernel.minflt == model.faults
    assert abs(kernel.pagetable_pages - model.pagetable_pages) <= a.PT_TOLERANCE_PAGES, (kernel, model)


def test_recorded_page_tables_match_the_model(monkeypatch):
    monkeypatch.setenv("BOOK_FORCE_RECORDED", "1")
    comparison = a.pagetables_vs_kernel()
    assert not comparison.live and "recorded on" in comparison.source
    assert "not a live run" in comparison.source
    assert comparison.agrees
    assert [k.access for k in comparison.kernel] == [c[3] for c in pt_probe.CHAPTER_CASES]
    rows = comparison.rows()
    assert rows[0]["model_rss_kib"] == 0 and rows[0]["model_pt_kib"] == 2048
    assert rows[2]["case"] == "write 512 packed" and rows[2]["model_pt_kib"] == 8
    assert "agrees: RSS exactly" in comparison.summary()


def test_comparison_flags_a_disagreement():
    model = (a.pagetable_cost_model(1024, 512, "spread", "write"),)
    wrong = pt_probe.PageTableMeasurement(1024, 512, "spread", "write", "6.18", 512,
                                          vmpte_kib=8, region_rss_kib=2048, minflt=512)
    comparison = a.PageTableComparison("test", True, model, (wrong,))
    assert not comparison.agrees and "DISAGREES" in comparison.summary()
