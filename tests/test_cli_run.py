"""``python -m models run``: clear errors with exit code 2 and no traceback, --json schema, --list."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from models.scenario import library_names
from models.scenario.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = {"step", "op", "rss_pages", "lazyfree_pages", "faults", "zero_pages", "error"}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "models", "run", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def _require(module: str):
    """Import a prerequisite; skip where it is missing, fail when CI=true."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {module} is missing: {exc}")
        pytest.skip(f"{module} is not available: {exc}")


def _require_kernel_engine():
    from models.realkernel.engine import kernel_engine_support
    ok, why = kernel_engine_support()
    if not ok:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the real-kernel engine cannot run: {why}")
        pytest.skip(why)


def assert_one_clear_error(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert proc.stdout == ""
    text = proc.stderr.strip()
    assert text.startswith("python -m models run: ")
    for fragment in fragments:
        assert fragment in text, text


def test_list_shows_every_library_scenario_with_its_description():
    proc = run_cli("--list")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == library_names()
    assert all(len(ln.split(None, 1)) == 2 and "invalid" not in ln for ln in lines)


def test_no_scenario_is_exit_2():
    assert_one_clear_error(run_cli(), "give a scenario file or library name")


@pytest.mark.parametrize("args, fragments", [
    (["zero-page-read", "--engine", "gpu"], ["argument --engine: invalid choice: 'gpu'"]),
    (["zero-page-read", "--frobnicate"], ["unrecognized arguments: --frobnicate"]),
    (["no-such-scenario"], ["no library scenario named 'no-such-scenario'", "lazyfree-reclaim"]),
    (["/nonexistent/x.json"], ["cannot read scenario file '/nonexistent/x.json'"]),
    (["zero-page-read", "--engine", "kernel", "--kernel-version", "4.9"],
     ["--kernel-version applies to the model engine only", "this machine's kernel"]),
])
def test_bad_arguments_are_exit_2_with_one_message(args, fragments):
    assert_one_clear_error(run_cli(*args), *fragments)


def test_swap_with_the_kernel_engine_on_a_swapless_machine_is_refused():
    with open("/proc/meminfo") as f:
        swap = next(int(ln.split()[1]) for ln in f if ln.startswith("SwapTotal:"))
    if swap:
        pytest.skip("this machine has swap; --swap matches it")
    assert_one_clear_error(run_cli("zero-page-read", "--engine", "kernel", "--swap"),
                           "--swap applies to the model engine only", "SwapTotal: 0")


MALFORMED = {
    "invalid-json": ('{"steps": [', "invalid JSON at line 1"),
    "unknown-op": ({"steps": [{"op": "mlock", "region": "a"}]}, "step 0 (mlock): 'op' must be one of"),
    "unknown-region": ({"steps": [{"op": "munmap", "region": "a"}]}, "step 0 (munmap): 'region' 'a' is not mapped"),
    "negative-size": ({"steps": [{"op": "pressure", "length": -1}]}, "step 0 (pressure): 'length' must be >= 0"),
    "non-numeric-size": ({"steps": [{"op": "pressure", "length": "much"}]},
                         "step 0 (pressure): 'length' must be a whole number of bytes"),
    "touch-outside": ({"steps": [{"op": "mmap", "region": "a", "length": 4096},
                                 {"op": "touch", "region": "a", "offset": 4096, "length": 1, "access": "read"}]},
                      "step 1 (touch): 'offset' puts the touch outside region 'a'"),
    "missing-field": ({"steps": [{"op": "mmap", "length": 4096}]}, "step 0 (mmap): missing field(s) 'region'"),
    "unknown-field": ({"steps": [{"op": "mmap", "region": "a", "length": 4096, "prot": 3}]},
                      "step 0 (mmap): unknown field(s) 'prot'"),
    "wrong-type": ({"steps": [{"op": "mmap", "region": "a", "length": 4096, "shared": 1}]},
                   "step 0 (mmap): 'shared' must be true or false"),
    "duplicate-mmap": ({"steps": [{"op": "mmap", "region": "a", "length": 4096},
                                  {"op": "mmap", "region": "a", "length": 4096}]},
                       "step 1 (mmap): 'region' 'a' is already mapped"),
}


@pytest.mark.parametrize("engine", ["model", "kernel"])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_scenario_files_are_exit_2_with_one_message(tmp_path, case, engine):
    content, fragment = MALFORMED[case]
    path = tmp_path / f"{case}.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    proc = run_cli(str(path), "--engine", engine)
    assert_one_clear_error(proc, f"{path}: ", fragment)


def test_too_large_for_the_real_kernel_is_refused_clearly(tmp_path):
    _require_kernel_engine()
    path = tmp_path / "huge.json"
    path.write_text(json.dumps({"steps": [{"op": "mmap", "region": "a", "length": "1TiB"}]}))
    assert_one_clear_error(run_cli(str(path), "--engine", "kernel"), "of MemAvailable", "model engine")


def _check_schema(rows, scenario_name):
    from models.scenario import resolve
    scenario = resolve(scenario_name)
    assert isinstance(rows, list) and rows
    for i, row in enumerate(rows):
        assert set(row) == KEYS
        assert row["step"] == i and row["op"] == scenario.steps[i].op
        for key in ("rss_pages", "lazyfree_pages", "faults"):
            assert isinstance(row[key], int) and not isinstance(row[key], bool) and row[key] >= 0
        assert row["zero_pages"] is None or (isinstance(row["zero_pages"], int) and row["zero_pages"] >= 0)
        assert row["error"] in (None, "EINVAL", "ENOMEM", "OOM_KILL")
        if row["op"] == "touch" and scenario.steps[i].access == "read" and row["error"] is None:
            assert isinstance(row["zero_pages"], int)
        else:
            assert row["zero_pages"] is None


def test_json_schema_kernel_engine():
    _require_kernel_engine()
    proc = run_cli("madvise-errors", "--engine", "kernel", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    _check_schema(rows, "madvise-errors")
    assert [r["error"] for r in rows][4:10] == ["EINVAL"] * 4 + ["ENOMEM"] * 2


def test_json_schema_kernel_engine_stops_at_oom_kill():
    _require_kernel_engine()
    from models.realkernel.cgroup import cgroup_support
    if not cgroup_support()[0]:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but no memory cgroup: {cgroup_support()[1]}")
        pytest.skip(cgroup_support()[1])
    proc = run_cli("pressure-oom", "--engine", "kernel", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    _check_schema(rows, "pressure-oom")
    assert rows[-1]["error"] == "OOM_KILL" and len(rows) < 6


def test_table_output_kernel_engine():
    _require_kernel_engine()
    proc = run_cli("free-then-read", "--engine", "kernel")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "on the real kernel (Linux " + os.uname().release in out
    assert "madvise heap MADV_FREE" in out and "lazyfree" in out
    assert len([ln for ln in out.splitlines() if ln[:1].isdigit()]) == 4


def test_json_schema_model_engine():
    _require("models.kernel.replay")
    proc = run_cli("madvise-errors", "--json")
    assert proc.returncode == 0, proc.stderr
    _check_schema(json.loads(proc.stdout), "madvise-errors")


def test_model_engine_unknown_kernel_version_is_exit_2():
    _require("models.kernel.replay")
    assert_one_clear_error(run_cli("zero-page-read", "--kernel-version", "1.0"), "1.0")


def test_model_engine_table_names_version_and_swap():
    _require("models.kernel.replay")
    proc = run_cli("free-then-read", "--kernel-version", "4.9", "--swap")
    assert proc.returncode == 0, proc.stderr
    assert "on the page model (Linux 4.9, with swap)" in proc.stdout


def test_main_in_process_returns_2_for_bad_input(tmp_path, capsys):
    path = tmp_path / "x.json"
    path.write_text("[]")
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "a scenario must be a JSON object" in err


def test_budget_without_usable_cgroups_is_exit_3_with_the_reason(monkeypatch, capsys):
    import models.realkernel.cgroup as cgroup
    monkeypatch.setattr(cgroup, "cgroup_support", lambda: (False, "no memory controller here"))
    assert main(["lazyfree-reclaim", "--engine", "kernel"]) == 3
    err = capsys.readouterr().err
    assert "cannot run on the real kernel here" in err and "memory_limit" in err
    assert "no memory controller here" in err


def test_scenario_without_budget_runs_without_cgroups(monkeypatch, capsys):
    _require_kernel_engine()
    import models.realkernel.cgroup as cgroup
    monkeypatch.setattr(cgroup, "cgroup_support", lambda: (False, "no memory controller here"))
    assert main(["zero-page-read", "--engine", "kernel", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[1]["zero_pages"] == 16384 and rows[1]["rss_pages"] == 0
