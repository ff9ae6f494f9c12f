"""Play a scenario on this machine's real kernel: ``play_on_kernel(scenario) -> list[StepResult]``.

The scenario runs in a child process (:mod:`models.realkernel.scenario_child`) that makes the
real ``mmap`` / ``munmap`` / ``madvise`` calls and touches one byte per page.  It reports, per
step, the regions' ``Rss`` and ``LazyFree`` from ``/proc/self/smaps`` (FACTS 4, 23) and its
``getrusage`` fault delta (FACTS 3).  A scenario with a ``memory_limit`` runs inside a memory
cgroup created under our own (:class:`models.realkernel.cgroup.MemoryCgroup`) whose limit is the
child's usage once it has joined and finished its imports, plus the budget; if the kernel's
OOM killer ends the child, that step's result has ``error="OOM_KILL"`` and no step follows.

The child, and the cgroup, are always cleaned up: normal end, OOM kill, an exception, or a
``KeyboardInterrupt`` in the parent.
"""
from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from typing import Iterator, Optional

from models.errors import ModelInputError
from models.scenario.format import Scenario, StepResult
from models.scenario.parse import advice_value, scenario_to_json

#: Share of MemAvailable a scenario may map in total (regions + pressure) on the real machine.
SAFE_SHARE = 0.25
#: Seconds the child may take for one step before it is considered hung.
STEP_TIMEOUT = 120.0

_UNKNOWN_ADVICE = 0x7FFF0000   # no such advice: the kernel answers EINVAL
_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class KernelEngineUnavailable(RuntimeError):
    """The real-kernel engine cannot run here (not Linux, or a budget without usable cgroups)."""


def kernel_release() -> str:
    """The release of the kernel the engine measures (``uname -r``)."""
    return os.uname().release


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise KernelEngineUnavailable("/proc/meminfo has no MemAvailable line")


def scenario_footprint(scenario: Scenario) -> int:
    """Bytes the scenario may map at once, counted generously: every mmap and every pressure."""
    return sum(step.length for step in scenario.steps if step.op in ("mmap", "pressure"))


def kernel_engine_support(scenario: Optional[Scenario] = None) -> tuple[bool, str]:
    """(True, "") if ``scenario`` (or any scenario without a budget) can run on this kernel."""
    if not sys.platform.startswith("linux"):
        return False, f"the real-kernel engine needs Linux (this is {sys.platform})"
    if not os.path.exists("/proc/self/smaps"):
        return False, "the real-kernel engine needs /proc/self/smaps"
    if scenario is not None and scenario.memory_limit is not None:
        from models.realkernel.cgroup import cgroup_support
        ok, why = cgroup_support()
        if not ok:
            return False, f"this scenario has a memory_limit, which needs a memory cgroup: {why}"
    return True, ""


def check_safe(scenario: Scenario) -> None:
    """ModelInputError if the scenario would map more than SAFE_SHARE of MemAvailable."""
    need = scenario_footprint(scenario)
    avail = mem_available()
    if need > SAFE_SHARE * avail:
        raise ModelInputError(
            f"scenario maps {need >> 20} MiB in total (mmap + pressure), more than the "
            f"{int(SAFE_SHARE * 100)}% of MemAvailable ({avail >> 20} MiB) the real-kernel engine "
            f"allows; use smaller sizes or the model engine")


def _child_scenario(scenario: Scenario) -> dict:
    obj = scenario_to_json(scenario)
    for step in obj["steps"]:
        if step["op"] == "madvise":
            value = advice_value(step["advice"])
            step["advice"] = _UNKNOWN_ADVICE if value is None else value
    return obj


class _Child:
    """The scenario child and its line-oriented pipe."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = _PROJECT_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.pop("PYTHONMALLOC", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "models.realkernel.scenario_child"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            cwd=_PROJECT_ROOT,
            # Its own process group: a Ctrl-C in the terminal reaches only the parent, which
            # then kills the child deliberately (and removes the cgroup) instead of racing it.
            start_new_session=True)
        self._buf = b""
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)

    def readline(self, timeout: float) -> Optional[dict]:
        """Next JSON object from the child, or None at EOF (the child exited or was killed)."""
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the scenario child sent nothing for {timeout:.0f} s")
            if not self._sel.select(left):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def send(self, obj: dict) -> None:
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        self.proc.stdin.close()

    def stderr_tail(self) -> str:
        try:
            return self.proc.stderr.read().decode(errors="replace")[-2000:]
        except (OSError, ValueError):
            return ""

    def close(self) -> None:
        """Kill (if still running) and reap the child; only ever our own child, by pid."""
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=30)
        finally:
            self._sel.close()
            for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                try:
                    pipe.close()
                except (OSError, ValueError):
                    pass


def iter_play_on_kernel(scenario: Scenario, *, step_timeout: float = STEP_TIMEOUT,
                        on_cgroup=None, settle_lru: bool = True) -> Iterator[StepResult]:
    """Yield each step's :class:`StepResult` as the child finishes it (see
    :func:`iter_play_on_kernel_detailed` for the keyword arguments)."""
    for result, _ in iter_play_on_kernel_detailed(scenario, step_timeout=step_timeout,
                                                  on_cgroup=on_cgroup, settle_lru=settle_lru):
        yield result


def iter_play_on_kernel_detailed(scenario: Scenario, *, step_timeout: float = STEP_TIMEOUT,
                                 on_cgroup=None, settle_lru: bool = True
                                 ) -> Iterator[tuple[StepResult, dict[str, tuple[int, int]]]]:
    """Yield ``(result, regions)`` per step: ``regions`` maps each live region's name to its own
    ``(rss_pages, lazyfree_pages)`` (empty after an OOM kill).

    ``settle_lru`` (default True): before reading smaps, the child drains its CPU's LRU batches
    so that ``LazyFree`` counts every lazily freed page; with False it reads what smaps shows at
    that instant, which can be up to a batch short (FACTS E9, docs/KERNEL-NOTES.md K4).

    ``on_cgroup(cgroup)`` (optional) is called once the child is in its cgroup and the limit
    is set -- for tests and notebooks that want to look at the cgroup while it exists.
    Raises :class:`KernelEngineUnavailable` where the scenario cannot run, ModelInputError if it
    is too large for this machine.
    """
    if not isinstance(scenario, Scenario):
        raise ModelInputError(f"scenario must be a models.scenario.Scenario, got {type(scenario).__name__}")
    ok, why = kernel_engine_support(scenario)
    if not ok:
        raise KernelEngineUnavailable(why)
    check_safe(scenario)

    with ExitStack() as stack:
        cgroup = None
        if scenario.memory_limit is not None:
            from models.realkernel.cgroup import MemoryCgroup
            cgroup = stack.enter_context(MemoryCgroup(prefix="membook-scenario"))
        child = _Child()
        stack.callback(child.close)   # runs before the cgroup is removed (LIFO)

        hello = child.readline(step_timeout)
        if not hello or hello.get("ready") != child.proc.pid:
            child.close()
            raise RuntimeError(f"scenario child failed to start: {child.stderr_tail()}")
        if cgroup is not None:
            cgroup.add_process(child.proc.pid)
            cgroup.set_limit(cgroup.usage_bytes() + scenario.memory_limit)
            if on_cgroup is not None:
                on_cgroup(cgroup)
        payload = _child_scenario(scenario)
        payload["settle_lru"] = bool(settle_lru)
        child.send(payload)

        next_step = 0
        while True:
            msg = child.readline(step_timeout)
            if msg is None:
                break
            if msg.get("done"):
                return
            regions = {name: tuple(v) for name, v in msg.pop("regions").items()}
            result = StepResult(**msg)
            next_step = result.step + 1
            yield result, regions
            if result.error is not None and result.op != "madvise":
                return
        # EOF before "done": the child died during step ``next_step``.
        rc = child.proc.wait(timeout=30)
        oom = cgroup is not None and cgroup.oom_kills() > 0
        if rc == -signal.SIGKILL and oom and next_step < len(scenario.steps):
            # The process is gone: it has no pages and no faults left to report.
            yield StepResult(step=next_step, op=scenario.steps[next_step].op, rss_pages=0,
                             lazyfree_pages=0, faults=0, zero_pages=None, error="OOM_KILL"), {}
            return
        raise RuntimeError(f"scenario child exited with status {rc} at step {next_step}"
                           f"{' (OOM kill)' if oom else ''}: {child.stderr_tail()}")


def play_on_kernel(scenario: Scenario, **kwargs) -> list[StepResult]:
    """Run ``scenario`` on the real kernel and return one StepResult per executed step."""
    return list(iter_play_on_kernel(scenario, **kwargs))
