"""Page-by-page comparison of the page model with the real kernel (pagemap + kpageflags).

:func:`kernel_states` runs a small script in ``pagestate_probe.c`` (compiled with gcc on first
use) and reads, after every command, each page's state from ``/proc/self/pagemap`` and
``/proc/kpageflags`` -- which tells a zero-page mapping, a swap-backed anonymous page and a
lazily freed one (anonymous, not swap-backed) apart.  :func:`model_states` plays the same
script on :class:`models.kernel.AddressSpace` and reports the same letters, so the two can be
compared page by page.  Needs Linux and root (kpageflags); a script starting with ``limit``
also needs a memory cgroup (it runs in one created under our own, always removed).

Letters: N not present (or reclaimed), Z zero page, R private resident (swap-backed), L lazily
freed -- not swap-backed: MADV_FREE'd, or written since and not yet looked at by reclaim --,
S shmem page mapped, W swapped.  Script commands (sizes in pages)::

    limit PAGES                  (first line only: the budget above the probe's baseline)
    map NAME PAGES 0|1           (1 = shared)
    touch NAME FIRST N r|w
    madv NAME FIRST N ADVICE     (4 = MADV_DONTNEED, 8 = MADV_FREE)
    press N                      (another allocation of N pages, written and held)
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Optional

from models.errors import KernelError, ModelInputError, OOMKill
from models.kernel.pages import PageState
from models.kernel.space import AddressSpace
from models.units import PAGE_SIZE

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pagestate_probe.c")
_LETTERS = {PageState.NOT_PRESENT: "N", PageState.ZERO_PAGE: "Z", PageState.RESIDENT: "R",
            PageState.LAZYFREE: "L", PageState.RECLAIMED: "N", PageState.SWAPPED: "W"}


@dataclass
class StepStates:
    cmd: str
    result: str                 # "ok", "EINVAL", "ENOMEM", "OOM_KILL"
    faults: int
    states: dict                # region -> one letter per page


def probe_support() -> tuple[bool, str]:
    """(True, "") where the kernel probe can run: Linux, gcc, root (for /proc/kpageflags)."""
    if not os.path.exists("/proc/self/pagemap"):
        return False, "needs Linux /proc/self/pagemap"
    if shutil.which("gcc") is None:
        return False, "needs gcc to build the probe"
    if not os.access("/proc/kpageflags", os.R_OK):
        return False, "needs root to read /proc/kpageflags"
    return True, ""


def _binary() -> str:
    with open(SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    path = os.path.join(tempfile.gettempdir(), f"membook-pagestate-probe-{digest}")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}"
        subprocess.run(["gcc", "-O1", "-Wall", "-o", tmp, SOURCE], check=True,
                       capture_output=True, text=True)
        os.replace(tmp, path)
    return path


def _parse(script: list[str]) -> tuple[Optional[int], list[list[str]]]:
    lines = [ln.split() for ln in script if ln.strip()]
    limit = None
    if lines and lines[0][0] == "limit":
        limit = int(lines[0][1])
        lines = lines[1:]
    for ln in lines:
        if ln[0] not in ("map", "touch", "madv", "press") or ln[0] == "limit":
            raise ModelInputError(f"probe script: unknown or misplaced command {' '.join(ln)!r} "
                                  f"(allowed: limit (first line), map, touch, madv, press)")
    return limit, lines


def kernel_states(script: list[str], timeout: float = 60.0) -> list[StepStates]:
    """Run ``script`` on this machine's kernel; one :class:`StepStates` per command."""
    ok, why = probe_support()
    if not ok:
        raise RuntimeError(f"kernel probe unavailable: {why}")
    limit, lines = _parse(script)
    binary = _binary()
    with ExitStack() as stack:
        cgdir = "-"
        cg = None
        if limit is not None:
            from models.realkernel.cgroup import MemoryCgroup
            cg = stack.enter_context(MemoryCgroup(prefix="membook-pageprobe"))
            cgdir = cg.path
        proc = subprocess.Popen([binary, cgdir], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        stack.callback(_reap, proc)
        ready = json.loads(proc.stdout.readline() or "{}")
        if ready.get("ready") != 1:
            raise RuntimeError(f"probe failed to start: {ready or proc.stderr.read()}")
        if cg is not None:
            cg.add_process(proc.pid)
            lines = [["limit", str(limit)]] + lines
        body = "".join(" ".join(ln) + "\n" for ln in lines)
        out, err = proc.communicate(body, timeout=timeout)
        steps = [json.loads(x) for x in out.splitlines() if x.strip()]
        if cg is not None:
            if not steps or steps[0]["result"] != "ok":
                raise RuntimeError("probe could not set the cgroup limit")
            steps = steps[1:]
            if len(steps) < len(lines) - 1 and cg.oom_kills():
                steps.append({"cmd": lines[len(steps) + 1][0], "result": "OOM_KILL", "faults": 0,
                              "states": {}})
    return [StepStates(s["cmd"], s["result"], s["faults"], s["states"]) for s in steps]


def _reap(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def model_states(script: list[str], kernel_version: str = "6.18", swap: bool = False) -> list[StepStates]:
    """Play ``script`` on the page model; same shape as :func:`kernel_states`."""
    limit, lines = _parse(script)
    sp = AddressSpace(kernel_version=kernel_version, swap=swap,
                      memory_limit=None if limit is None else limit * PAGE_SIZE)
    out = []
    for ln in lines:
        cmd = ln[0]
        result = "ok"
        before = sp.faults
        try:
            if cmd == "map":
                sp.mmap(ln[1], int(ln[2]) * PAGE_SIZE, ln[3] == "1")
            elif cmd == "touch":
                sp.touch(ln[1], int(ln[2]) * PAGE_SIZE, int(ln[3]) * PAGE_SIZE,
                         "write" if ln[4] == "w" else "read")
            elif cmd == "madv":
                sp.madvise(ln[1], int(ln[2]) * PAGE_SIZE, int(ln[3]) * PAGE_SIZE, int(ln[4]))
            elif cmd == "press":
                sp.pressure(int(ln[1]) * PAGE_SIZE)
        except KernelError as exc:
            result = exc.errno_name
        except OOMKill:
            out.append(StepStates(cmd, "OOM_KILL", sp.faults - before, {}))
            break
        states = {}
        for name in sp.regions:
            shared = sp.is_shared(name)
            on_lru = sp.lazyfree_lru(name).tolist()
            states[name] = "".join(
                "S" if shared and s == PageState.RESIDENT else
                "L" if s == PageState.RESIDENT and lazy else _LETTERS[PageState(s)]
                for s, lazy in zip(sp.states(name).tolist(), on_lru))
        out.append(StepStates(cmd, result, sp.faults - before, states))
    return out


def mismatches(model: str, kernel: str) -> tuple[int, int]:
    """(pages whose state differs other than L/R, L-versus-R differences) between two maps.

    L/R differences are expected in small numbers: freshly MADV_FREE'd pages sit in a per-CPU
    batch (up to 31 pages) before the kernel marks them lazily freed (FACTS E9).
    """
    if len(model) != len(kernel):
        return max(len(model), len(kernel)), 0
    hard = lag = 0
    for m, k in zip(model, kernel):
        if m == k:
            continue
        if {m, k} == {"L", "R"}:
            lag += 1
        else:
            hard += 1
    return hard, lag
