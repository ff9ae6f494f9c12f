"""The pilot chapter's model function and its real-kernel probe (VSZ / RSS / fault arithmetic)."""
from __future__ import annotations


import numpy as np
import pytest

from conftest import need
from models.errors import ModelInputError
from models.realkernel import address_space_probe as probe
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
