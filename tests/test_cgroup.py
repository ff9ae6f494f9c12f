"""The memory cgroup: created under our own cgroup, limit applied, always removed.

These need root and a memory cgroup controller (CI is such a machine, as root): elsewhere they
skip with the reason, except when CI=true, where a missing prerequisite fails.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from models.realkernel.cgroup import MemoryCgroup, _locate, cgroup_support
from models.scenario import parse_scenario, resolve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _require_cgroups():
    ok, why = cgroup_support()
    if not ok:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but memory cgroups are unavailable: {why}")
        pytest.skip(f"memory cgroups unavailable: {why}")


@pytest.fixture(autouse=True)
def cgroups():
    _require_cgroups()


def _own_cgroup_dir() -> str:
    return _locate().own_dir


def _our_children() -> set[str]:
    own = _own_cgroup_dir()
    # only cgroups this test process created (their names carry our pid), so that other
    # programs' cgroups under the same parent cannot make the check flaky
    return {d for d in os.listdir(own) if d.startswith("membook") and f"-{os.getpid()}-" in d
            and os.path.isdir(os.path.join(own, d))}


def test_cgroup_is_a_child_of_our_own_cgroup_and_is_removed():
    own = _own_cgroup_dir()
    with open("/proc/self/cgroup") as f:
        text = f.read()
    paths = [line.split(":", 2)[2] for line in text.splitlines()
             if "memory" in line.split(":")[1].split(",") or line.startswith("0::")]
    # our own cgroup, as /proc/self/cgroup names it, and not the hierarchy's root
    assert own.rstrip("/").endswith(paths[0].rstrip("/")) and paths[0] != "/"
    before = _our_children()
    with MemoryCgroup(limit_bytes=64 << 20, prefix="membook-test") as cg:
        assert os.path.dirname(cg.path) == own
        assert os.path.isdir(cg.path)
        assert cg.version in (1, 2)
        assert cg.limit_bytes() == 64 << 20
        cg.set_limit(96 << 20)
        assert cg.limit_bytes() == 96 << 20
        assert cg.usage_bytes() == 0 and cg.pids() == [] and cg.oom_kills() == 0
        assert isinstance(cg.stat(), dict) and cg.stat()
        path = cg.path
    assert not os.path.exists(path)
    assert _our_children() == before


def test_limit_is_enforced_and_oom_kill_is_counted_and_cgroup_removed():
    prog = "import sys; sys.stdin.read(); b = bytearray(%d); print('survived', flush=True)"
    with MemoryCgroup(limit_bytes=32 << 20, prefix="membook-test") as cg:
        small = subprocess.Popen([sys.executable, "-c", prog % (8 << 20)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        cg.add_process(small.pid)
        assert small.pid in cg.pids()
        out, _ = small.communicate("", timeout=60)
        assert small.returncode == 0 and "survived" in out and cg.oom_kills() == 0

        big = subprocess.Popen([sys.executable, "-c", prog % (64 << 20)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
        cg.add_process(big.pid)
        out, _ = big.communicate("", timeout=60)
        assert big.returncode == -signal.SIGKILL and "survived" not in out
        assert cg.oom_kills() == 1
        path = cg.path
    assert not os.path.exists(path)


def test_cgroup_removed_when_the_with_block_raises_while_a_process_is_inside():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(RuntimeError, match="boom"):
            with MemoryCgroup(limit_bytes=64 << 20, prefix="membook-test") as cg:
                cg.add_process(proc.pid)
                path = cg.path
                raise RuntimeError("boom")
        assert not os.path.exists(path)
        # The live process we added was moved back out, not killed.
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_bad_limits_are_refused():
    from models.errors import ModelInputError
    with pytest.raises(ModelInputError, match="limit_bytes must be a positive"):
        MemoryCgroup(limit_bytes=0)
    with pytest.raises(ModelInputError, match="prefix must be a plain directory name"):
        MemoryCgroup(prefix="../escape")


# -- the scenario engine's cgroup ------------------------------------------------------------------

def test_engine_cgroup_has_the_budget_and_is_removed_after_a_normal_run():
    from models.realkernel.engine import play_on_kernel
    seen = {}

    def on_cgroup(cg):
        seen["path"], seen["limit"], seen["usage"] = cg.path, cg.limit_bytes(), cg.usage_bytes()
        seen["in_own"] = os.path.dirname(cg.path) == _own_cgroup_dir()
        seen["pids"] = cg.pids()

    scenario = resolve("lazyfree-reclaim")
    results = play_on_kernel(scenario, on_cgroup=on_cgroup)
    assert [r.error for r in results] == [None] * len(scenario.steps)
    assert seen["in_own"] and len(seen["pids"]) == 1
    # limit = the child's usage once it joined + the budget (page-rounded by the kernel)
    assert 0 <= seen["limit"] - scenario.memory_limit - seen["usage"] < (1 << 20)
    assert not os.path.exists(seen["path"])


def test_engine_cgroup_removed_after_an_oom_kill():
    from models.realkernel.engine import play_on_kernel
    seen = {}
    results = play_on_kernel(resolve("pressure-oom"), on_cgroup=lambda cg: seen.update(path=cg.path))
    assert results[-1].error == "OOM_KILL"
    assert not os.path.exists(seen["path"])


def test_engine_without_budget_creates_no_cgroup():
    from models.realkernel.engine import play_on_kernel
    called = []
    before = _our_children()
    play_on_kernel(parse_scenario({"steps": [{"op": "mmap", "region": "a", "length": 4096}]}),
                   on_cgroup=called.append)
    assert called == [] and _our_children() == before


_INTERRUPTED_PARENT = textwrap.dedent("""
    import json, sys
    from models.scenario import parse_scenario
    from models.realkernel.engine import iter_play_on_kernel
    steps = [{"op": "mmap", "region": "heap", "length": "64MiB"}]
    for _ in range(400):
        steps += [{"op": "touch", "region": "heap", "offset": 0, "length": "64MiB", "access": "write"},
                  {"op": "madvise", "region": "heap", "offset": 0, "length": "64MiB", "advice": "MADV_DONTNEED"}]
    s = parse_scenario({"memory_limit": "128MiB", "steps": steps})
    def on_cgroup(cg):
        print(json.dumps({"cgroup": cg.path, "child": cg.pids()[0]}), flush=True)
    try:
        for r in iter_play_on_kernel(s, on_cgroup=on_cgroup):
            if r.step == 3:
                print(json.dumps({"running": True}), flush=True)
    except KeyboardInterrupt:
        print(json.dumps({"interrupted": True}), flush=True)
        sys.exit(130)
    print(json.dumps({"finished": True}), flush=True)
""")


def test_engine_cgroup_and_child_removed_when_the_parent_is_interrupted():
    parent = subprocess.Popen([sys.executable, "-c", _INTERRUPTED_PARENT], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(parent.stdout.readline())
        assert json.loads(parent.stdout.readline()) == {"running": True}
        assert os.path.isdir(info["cgroup"])
        parent.send_signal(signal.SIGINT)
        out, err = parent.communicate(timeout=60)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert parent.returncode == 130, err
    assert json.loads(out.splitlines()[0]) == {"interrupted": True}
    assert not os.path.exists(info["cgroup"])
    # the child was killed and reaped by the engine, not left running
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{info['child']}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{info['child']}")
