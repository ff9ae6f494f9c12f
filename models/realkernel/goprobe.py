"""Build and run the real Go program ``probes/goheap`` and parse what it prints.

The program (``probes/goheap/main.go``) allocates a heap of small objects, keeps
a fraction live, runs a GC, hands the freed memory back to the kernel
(``debug.FreeOSMemory()`` or the background scavenger), optionally makes a second
allocation outside the Go heap, and re-allocates what it dropped.  After each
phase it prints one JSON line: the kernel's view (``/proc/self/smaps_rollup``:
Rss, LazyFree; ``getrusage``: minor faults) and the runtime's
(``runtime.MemStats``).  FACTS E10 has the numbers this machine gave.

* The binary is built once with ``go build`` into a cache directory keyed by a
  hash of the sources and of ``go version`` (no modules to download: the
  program uses only the standard library, and ``GOPROXY=off`` keeps it offline).
* It always runs in a *child process*; with ``memory_limit`` the child is moved
  into a :class:`~models.realkernel.cgroup.MemoryCgroup` (a child of our own
  cgroup, always removed) *before* it allocates anything: the program prints
  ``{"ready": pid}`` and waits for a line on stdin.
* ``GODEBUG=madvdontneed=0|1`` is passed through the environment, which is
  where the runtime reads it (FACTS 52).
* Transparent huge pages are disabled for the child with
  ``prctl(PR_SET_THP_DISABLE)`` unless ``thp="keep"``: with THP a first touch
  can map 2 MiB at once and fault counts stop being "one per 4 KiB" (FACTS E10).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from models.errors import ModelInputError
from models.realkernel.buildcache import build_once, cache_root
from models.units import parse_size

PROBE_DIR = Path(__file__).resolve().parents[2] / "probes" / "goheap"
PHASES = ("start", "allocate", "gc", "release", "pressure", "reallocate")
RELEASES = ("freeosmemory", "scavenger")


class GoProbeError(RuntimeError):
    """The Go program could not be built or did not finish as expected."""


def go_binary() -> Optional[str]:
    """Path of the ``go`` tool, or None."""
    return shutil.which("go") or (os.path.exists("/usr/bin/go") and "/usr/bin/go") or None


def go_support() -> tuple[bool, str]:
    """(True, 'go version ...') if the Go toolchain can build the probe here, else (False, why)."""
    go = go_binary()
    if go is None:
        return False, "the Go toolchain ('go') is not installed"
    if not PROBE_DIR.joinpath("main.go").exists():
        return False, f"probe sources missing: {PROBE_DIR}/main.go"
    try:
        out = subprocess.run([go, "version"], capture_output=True, text=True, timeout=30, env=_go_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"'go version' failed: {exc}"
    if out.returncode != 0:
        return False, f"'go version' failed: {out.stderr.strip()}"
    return True, out.stdout.strip()


def _cache_root() -> Path:
    return cache_root("goheap")


def _go_env(cache: Optional[Path] = None) -> dict:
    cache = cache or _cache_root()
    env = dict(os.environ)
    env.update(GOCACHE=str(cache / "gocache"), GOPATH=str(cache / "gopath"), GOPROXY="off",
               GOFLAGS="", GO111MODULE="on", CGO_ENABLED="0", GOTOOLCHAIN="local")
    env.pop("GODEBUG", None)
    return env


def build_probe(cache_dir: Optional[os.PathLike] = None) -> Path:
    """Build ``probes/goheap`` (if not already built) and return the binary's path.

    The binary's name carries a hash of the sources and of ``go version``, so an
    edited probe or another Go toolchain gets a fresh build.
    """
    ok, why = go_support()
    if not ok:
        raise GoProbeError(why)
    cache = Path(cache_dir) if cache_dir else _cache_root()
    digest = hashlib.sha256(why.encode())
    for src in sorted(PROBE_DIR.glob("*")):
        if src.suffix in (".go", ".mod"):
            digest.update(src.name.encode() + b"\0" + src.read_bytes())
    return build_once(
        cache / f"goheap-{digest.hexdigest()[:16]}",
        lambda tmp: [go_binary(), "build", "-trimpath", "-o", tmp, "."],
        lambda stderr: GoProbeError(f"go build failed:\n{stderr}"),
        timeout=300, cwd=PROBE_DIR, env=lambda: _go_env(cache))


@dataclass
class ProbeRun:
    """What one run of the Go program printed, plus what the cgroup saw."""
    config: dict
    samples: list[dict]
    returncode: int
    stderr: str = ""
    oom_kills: int = 0
    cgroup_stat: dict = field(default_factory=dict)
    cgroup_usage_bytes: Optional[int] = None

    def phase(self, name: str) -> dict:
        """The last sample of phase ``name`` (``release`` may have many: the last is the settled one)."""
        rows = [s for s in self.samples if s["phase"] == name]
        if not rows:
            raise KeyError(f"the Go program printed no {name!r} sample "
                           f"(phases seen: {sorted({s['phase'] for s in self.samples})})")
        return rows[-1]

    def pages(self, name: str, key: str) -> int:
        """A byte counter of phase ``name`` in 4 KiB pages."""
        return self.phase(name)[key] // 4096

    @property
    def heap_rss_bytes(self) -> dict:
        """Per phase: Rss without the pressure region (the Go process's own memory)."""
        return {s["phase"]: s["rss_bytes"] - s["pressure_rss_bytes"] for s in self.samples}


def run_probe(*, heap="256MiB", liveness: float = 0.25, object_size="8KiB", release: str = "freeosmemory",
              wait: float = 8.0, settle: bool = False, pressure="0", madvdontneed: Optional[int] = None,
              memory_limit=None, layout: str = "interleaved", thp: str = "disable",
              timeout: float = 180.0, cache_dir: Optional[os.PathLike] = None) -> ProbeRun:
    """Run the Go program once in a child process and return its samples.

    ``settle`` (with ``release="scavenger"``): stop watching once the scavenger has released
    half of the dropped heap and then nothing more for a second (``wait`` still bounds it).
    ``madvdontneed``: None leaves GODEBUG unset (Go 1.19's default is
    ``MADV_DONTNEED``, FACTS 50), 0 or 1 sets ``GODEBUG=madvdontneed=N``.
    ``memory_limit``: bytes (or "320MiB"); the child runs in a fresh memory
    cgroup with that hard limit, created as a child of ours and removed after.
    """
    heap_b = parse_size(heap, name="heap")
    obj_b = parse_size(object_size, name="object_size")
    pressure_b = parse_size(pressure, name="pressure")
    if not (isinstance(liveness, (int, float)) and 0.0 <= liveness <= 1.0):
        raise ModelInputError(f"liveness must be a fraction in [0, 1], got {liveness!r}")
    if release not in RELEASES:
        raise ModelInputError(f"release must be one of {RELEASES}, got {release!r}")
    if madvdontneed not in (None, 0, 1):
        raise ModelInputError(f"madvdontneed must be None, 0 or 1, got {madvdontneed!r}")
    if layout not in ("interleaved", "prefix"):
        raise ModelInputError(f"layout must be 'interleaved' or 'prefix', got {layout!r}")
    if thp not in ("disable", "keep"):
        raise ModelInputError(f"thp must be 'disable' or 'keep', got {thp!r}")
    if not (obj_b >= 16 and heap_b >= obj_b):
        raise ModelInputError(f"object_size must be >= 16 bytes and <= heap ({heap_b} bytes), got {obj_b}")
    limit_b = None if memory_limit is None else parse_size(memory_limit, name="memory_limit")
    if limit_b is not None and limit_b <= 0:
        raise ModelInputError("memory_limit must be > 0 bytes or None")

    binary = build_probe(cache_dir)
    argv = [str(binary), f"--heap={heap_b}", f"--object={obj_b}", f"--liveness={liveness!r}",
            f"--layout={layout}", f"--release={release}", f"--wait={wait!r}", f"--pressure={pressure_b}",
            f"--thp={thp}", "--wait-stdin"] + (["--settle"] if settle else [])
    env = {k: v for k, v in os.environ.items() if k not in ("GODEBUG", "GOGC", "GOMEMLIMIT", "GOMAXPROCS")}
    if madvdontneed is not None:
        env["GODEBUG"] = f"madvdontneed={madvdontneed}"

    if limit_b is None:
        return _run(argv, env, timeout, cgroup=None)
    from models.realkernel.cgroup import MemoryCgroup  # only needed (and only importable on Linux) here
    with MemoryCgroup(limit_b, prefix="goheap") as cg:
        return _run(argv, env, timeout, cgroup=cg)


def _run(argv, env, timeout, cgroup) -> ProbeRun:
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        ready = proc.stdout.readline()
        try:
            pid = json.loads(ready)["ready"]
        except (ValueError, KeyError, TypeError):
            proc.kill()
            _, err = proc.communicate()
            raise GoProbeError(f"the Go program did not start: {ready!r} {err.strip()}")
        if pid != proc.pid:
            raise GoProbeError(f"the Go program reported pid {pid}, expected {proc.pid}")
        if cgroup is not None:
            cgroup.add_process(proc.pid)
        out, err = proc.communicate("go\n", timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise GoProbeError(f"the Go program did not finish within {timeout} s")
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    config, samples = {}, []
    for line in out.splitlines():
        line = line.strip()
        if not line:
            continue
        row = json.loads(line)
        if "config" in row:
            config = row["config"]
        elif "phase" in row:
            samples.append(row)
    run = ProbeRun(config=config, samples=samples, returncode=proc.returncode, stderr=err)
    if cgroup is not None:
        run.oom_kills = cgroup.oom_kills()
        run.cgroup_stat = cgroup.stat()
        run.cgroup_usage_bytes = cgroup.usage_bytes()
    if proc.returncode != 0 and not run.oom_kills:
        raise GoProbeError(f"the Go program exited with {proc.returncode}: {err.strip()}")
    return run
