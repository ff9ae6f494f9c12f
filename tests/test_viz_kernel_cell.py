"""kernel_vs_model (models/viz/kernel_cell.py): live run on this kernel, recorded fallback, file format."""
from __future__ import annotations

import json
import sys

import pytest

from conftest import ROOT, need
from models import scenario as lib
from models.errors import ModelInputError
from models.kernel.replay import play
from models.scenario.format import StepResult
from models.viz import kernel_cell as kc

SCENARIO = "read-then-write"


def _linux_kernel_ok() -> tuple[bool, str]:
    from models.realkernel.engine import kernel_engine_support
    return kernel_engine_support(lib.resolve(SCENARIO))


@pytest.fixture
def recorded(tmp_path):
    """A recording made from the model's rows (so the fallback path needs no kernel)."""
    scenario = lib.resolve(SCENARIO)
    rows = play(scenario)
    rec = kc.Recording("rtw", "2026-01-02T03:04:05+00:00", "6.18.0-test", "x86_64", "madvise", 0,
                       kc._scenario_json(scenario), tuple(rows))
    kc.write_recording(rec, tmp_path)
    return tmp_path


def test_fallback_uses_the_recording_and_labels_it(recorded, monkeypatch):
    monkeypatch.setattr("models.realkernel.engine.kernel_engine_support",
                        lambda scenario=None: (False, "the real-kernel engine needs Linux (this is darwin)"))
    result = kc.kernel_vs_model(SCENARIO, "rtw", directory=recorded)
    assert not result.live
    assert result.source == "recorded on 2026-01-02, Linux 6.18.0-test (x86_64), this book's build machine"
    assert "needs Linux (this is darwin)" in result.reason
    page = result.html()
    assert "recorded on 2026-01-02" in page and "Not run live here" in page and "data-live=\"false\"" in page
    assert result.agrees and "agrees" in result.verdict()
    assert [r.rss_pages for r in result.kernel] == [0, 0, 16384, 16384, 16384]


def test_forced_recording_does_not_call_the_engine(recorded, monkeypatch):
    def boom(scenario):
        raise AssertionError("the engine must not run")
    result = kc.kernel_vs_model(SCENARIO, "rtw", directory=recorded, force_recorded=True, runner=boom)
    assert not result.live and "asked for" in result.reason
    monkeypatch.setenv(kc.FORCE_RECORDED_ENV, "1")
    assert not kc.kernel_vs_model(SCENARIO, "rtw", directory=recorded, runner=boom).live


def test_engine_failure_falls_back_with_its_reason(recorded):
    def too_big(scenario):
        raise ModelInputError("scenario maps 99999 MiB in total")
    result = kc.kernel_vs_model(SCENARIO, "rtw", directory=recorded, runner=too_big)
    assert not result.live and "99999 MiB" in result.reason


def test_a_disagreeing_kernel_is_reported_not_hidden(recorded):
    def thp_kernel(scenario):
        rows = play(scenario)
        return [StepResult(**{**r.to_json(), "faults": r.faults // 512}) for r in rows]
    result = kc.kernel_vs_model(SCENARIO, "rtw", directory=recorded, runner=thp_kernel)
    assert result.live and not result.agrees
    fields = {(m.step, m.field) for m in result.mismatches}
    assert fields == {(1, "faults"), (2, "faults")}
    assert "transparent huge pages" in result.verdict()
    assert 'style="background:#FCE4D6"' in result.table_html()


def test_live_run_in_a_site_build_is_labelled_with_the_build_machine(recorded, monkeypatch):
    monkeypatch.setenv(kc.STATIC_BUILD_ENV, "1")
    result = kc.kernel_vs_model(SCENARIO, "rtw", directory=recorded, runner=play)
    assert result.live and "this book's build machine, while this page was built" in result.source
    assert "now" not in result.source
    monkeypatch.delenv(kc.STATIC_BUILD_ENV)
    assert "live now" in kc.kernel_vs_model(SCENARIO, "rtw", directory=recorded, runner=play).source


def test_missing_or_stale_recording_is_a_clear_error(recorded, tmp_path):
    with pytest.raises(ModelInputError, match="no recorded kernel run"):
        kc.kernel_vs_model(SCENARIO, "nothing-here", directory=recorded, force_recorded=True)
    with pytest.raises(ModelInputError, match="different scenario"):
        kc.kernel_vs_model("zero-page-read", "rtw", directory=recorded, force_recorded=True)
    with pytest.raises(ModelInputError, match="record_id"):
        kc.kernel_vs_model(SCENARIO, "../escape", directory=recorded)


def test_live_run_does_not_write_unless_asked(recorded, monkeypatch):
    monkeypatch.delenv(kc.RECORD_ENV, raising=False)
    before = (recorded / "rtw.json").read_text()
    result = kc.kernel_vs_model(SCENARIO, "rtw", directory=recorded, runner=play)
    assert result.live and (recorded / "rtw.json").read_text() == before
    monkeypatch.setenv(kc.RECORD_ENV, "1")
    kc.kernel_vs_model(SCENARIO, "rtw2", directory=recorded, runner=play)
    assert (recorded / "rtw2.json").exists()


def test_live_on_this_kernel(monkeypatch):
    """The real engine, on this machine (root on Linux in CI: must run, not skip)."""
    monkeypatch.delenv(kc.RECORD_ENV, raising=False)
    monkeypatch.delenv(kc.FORCE_RECORDED_ENV, raising=False)
    monkeypatch.delenv(kc.STATIC_BUILD_ENV, raising=False)
    ok, why = _linux_kernel_ok()
    need(ok and sys.platform.startswith("linux"), f"the real-kernel engine cannot run here: {why}")
    result = kc.kernel_vs_model(SCENARIO, "ch02-read-then-write-unused")
    assert result.live
    assert result.source.startswith("measured live now on this machine, Linux ")
    assert result.agrees, result.summary()
    assert [r.rss_pages for r in result.kernel][2:] == [16384, 16384, 16384]
    assert result.kernel[1].zero_pages >= 16384 - 32
    fig = result.figure()
    assert {t.name for t in fig.data} == {"kernel", "model"} and len(fig.data) == 6


def test_record_cli_writes_the_documented_format(tmp_path):
    ok, why = _linux_kernel_ok()
    need(ok, f"the real-kernel engine cannot run here: {why}")
    assert kc.main(["record", SCENARIO, "cli-rtw", "--dir", str(tmp_path)]) == 0
    obj = json.loads((tmp_path / "cli-rtw.json").read_text())
    assert obj["format"] == kc.FORMAT_VERSION and obj["record_id"] == "cli-rtw"
    assert set(obj) >= {"recorded_at", "kernel_release", "machine", "thp", "swap_bytes", "scenario", "kernel"}
    assert obj["scenario"] == kc._scenario_json(lib.resolve(SCENARIO))
    assert [row["step"] for row in obj["kernel"]] == [0, 1, 2, 3, 4]
    assert set(obj["kernel"][0]) == {"step", "op", "rss_pages", "lazyfree_pages", "faults", "zero_pages", "error"}
    assert kc.Recording.from_json(obj).kernel[2].rss_pages == 16384


def test_committed_recordings_are_valid():
    """Every kernel_vs_model recording under book/recorded/ parses and its scenario still plays.

    Other kinds of recording live there too (Go and glibc probes): they have no scenario and
    are left to their own tests.  Agreement with the model is each chapter's own test (a
    recorded disagreement is a finding the chapter shows, not a format error).
    """
    from models.scenario import parse_scenario
    checked = 0
    for path in sorted((ROOT / "book" / "recorded").glob("*.json")):
        obj = json.loads(path.read_text())
        if not (isinstance(obj, dict) and "scenario" in obj and "kernel" in obj):
            continue
        rec = kc.load_recording(path.stem, path.parent)
        assert rec.record_id == path.stem
        scenario = parse_scenario(rec.scenario)
        assert len(rec.kernel) <= len(scenario.steps)
        assert [r.step for r in rec.kernel] == list(range(len(rec.kernel)))
        assert len(play(scenario)) >= 1
        checked += 1
    assert checked >= 2          # at least chapter 2's two cells
