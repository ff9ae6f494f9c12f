"""Replay a malloc sequence on the machine's real glibc and observe it.

``probes/malloc_probe.c`` performs the operations for real (``malloc`` and a
``memset`` of every byte, ``free``, ``malloc_trim``, ``mallopt``) and prints,
after each one, the program break minus the initial break, the ``[heap]``
mapping's Rss and the Rss of its anonymous mappings from ``/proc/self/smaps``,
the operation's minor faults (``getrusage``) and ``mallinfo2()``.  This module:

* compiles the probe with the machine's ``gcc`` into a cache directory
  (``$XDG_CACHE_HOME/membook/malloc_probe``, never the repository), keyed by a
  hash of the source and of ``gcc --version``;
* runs it in a child process with a bounded address space (``RLIMIT_AS``),
  optionally under ``strace -f -e trace=brk,mmap,munmap,madvise,write`` to count
  each operation's system calls: the probe's ``write`` of each output line
  closes that operation's window;
* returns one :class:`RealObservation` per operation, in the shape of
  :class:`models.malloc.glibc.Observation` so the two can be compared.
"""
from __future__ import annotations

import hashlib
import os
import re
import resource
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from models.malloc.sequence import Malloc, Sequence, to_probe_lines
from models.realkernel.buildcache import build_once, cache_root
from models.units import PAGE_SIZE

PROBE_SOURCE = Path(__file__).resolve().parents[2] / "probes" / "malloc_probe.c"
SYSCALLS = ("brk", "mmap", "munmap", "madvise")
#: Address-space cap for the probe: its own mappings plus the sequence's live bytes.
_AS_SLACK = 512 << 20
_MALLINFO = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "fsmblks", "uordblks", "fordblks", "keepcost")


class GlibcProbeError(RuntimeError):
    """The probe could not be built or did not finish as expected."""


@dataclass
class RealObservation:
    step: int
    op: str
    id: Optional[str]
    result: Optional[int]          # malloc_trim / mallopt return value
    placement: Optional[str]       # malloc: "heap" or "mmap" (the chunk's IS_MMAPPED bit)
    ptr_offset: Optional[int]      # heap malloc: user pointer - initial break
    chunk_size: Optional[int]      # malloc: the chunk's size field
    heap_size: int                 # sbrk(0) - initial break
    vsz: int                       # heap_size + mallinfo2().hblkhd
    heap_rss_pages: int            # [heap] Rss
    mmap_rss_pages: int            # Rss of unnamed anonymous mappings, minus the probe's baseline
    rss_pages: int
    faults: int                    # minor faults during the operation (getrusage ru_minflt)
    syscalls: Optional[dict]       # per-operation counts under strace, else None
    mallinfo: dict

    def to_json(self) -> dict:
        return asdict(self)


def gcc_binary() -> Optional[str]:
    return shutil.which("gcc") or shutil.which("cc")


def strace_binary() -> Optional[str]:
    return shutil.which("strace")


def probe_support() -> tuple[bool, str]:
    """(True, 'gcc ...') if the probe can be built and run here, else (False, why)."""
    if not os.path.exists("/proc/self/smaps"):
        return False, "/proc/self/smaps is missing (the probe needs Linux with procfs)"
    gcc = gcc_binary()
    if gcc is None:
        return False, "no C compiler ('gcc' or 'cc') on PATH"
    if not PROBE_SOURCE.exists():
        return False, f"probe source missing: {PROBE_SOURCE}"
    try:
        out = subprocess.run([gcc, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"'{gcc} --version' failed: {exc}"
    if out.returncode != 0:
        return False, f"'{gcc} --version' failed: {out.stderr.strip()}"
    return True, out.stdout.splitlines()[0]


def _cache_root() -> Path:
    return cache_root("malloc_probe")


def build_probe(cache_dir: Optional[os.PathLike] = None) -> Path:
    """Compile the probe (once per source/compiler) and return the binary's path."""
    ok, why = probe_support()
    if not ok:
        raise GlibcProbeError(why)
    cache = Path(cache_dir) if cache_dir else _cache_root()
    digest = hashlib.sha256(why.encode() + b"\0" + PROBE_SOURCE.read_bytes()).hexdigest()[:16]
    # -O1 keeps the memset (the result is used) and adds no sanitiser that would
    # replace glibc's malloc.
    return build_once(
        cache / f"malloc_probe-{digest}",
        lambda tmp: [gcc_binary(), "-O1", "-Wall", "-o", tmp, str(PROBE_SOURCE)],
        lambda stderr: GlibcProbeError(f"compiling {PROBE_SOURCE.name} failed:\n{stderr}"),
        timeout=120)


_KV = re.compile(r"(\w+)=(\S+)")


def _parse_line(line: str) -> dict:
    return {k: v for k, v in _KV.findall(line)}


def _live_bytes_peak(ops) -> int:
    live, peak = {}, 0
    for op in ops:
        if isinstance(op, Malloc):
            live[op.id] = op.size
        elif getattr(op, "op", "") == "free":
            live.pop(op.id, None)
        peak = max(peak, sum(live.values()))
    return peak


def _split_strace(trace: str, nops: int) -> list[dict]:
    """Per-operation syscall counts: windows end at each ``write(1, "step=...``."""
    windows: list[dict] = []
    current = None                                  # None until the "ready" line
    for line in trace.splitlines():
        m = re.match(r"^(?:\[pid\s+\d+\]\s+|\d+\s+)?(\w+)\((.*)$", line)
        if not m:
            continue
        name, rest = m.groups()
        if name == "write":
            if rest.startswith('1, "ready'):
                current = dict.fromkeys(SYSCALLS, 0)
            elif rest.startswith('1, "step=') and current is not None:
                windows.append(current)
                current = dict.fromkeys(SYSCALLS, 0)
        elif name in SYSCALLS and current is not None:
            current[name] += 1
    if len(windows) != nops:
        raise GlibcProbeError(f"strace output has {len(windows)} operation windows, expected {nops}")
    return windows


def run_sequence(sequence, *, use_strace: Optional[bool] = None, timeout: float = 120.0,
                 cache_dir: Optional[os.PathLike] = None) -> list[RealObservation]:
    """Run ``sequence`` (a :class:`Sequence` or list of ops) on the real glibc.

    ``use_strace``: True = count syscalls (fails if strace is missing), False =
    don't, None = count them when strace is installed.
    """
    ops = sequence.ops if isinstance(sequence, Sequence) else tuple(sequence)
    binary = build_probe(cache_dir)
    strace = strace_binary()
    if use_strace and strace is None:
        raise GlibcProbeError("use_strace=True but strace is not installed")
    use_strace = bool(strace) if use_strace is None else use_strace
    limit = _live_bytes_peak(ops) * 2 + _AS_SLACK

    def bound():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    with tempfile.TemporaryDirectory(prefix="malloc_probe-") as tmp:
        trace_file = os.path.join(tmp, "trace")
        argv = [str(binary)]
        if use_strace:
            argv = [strace, "-f", "-qq", "-e", "trace=brk,mmap,munmap,madvise,write",
                    "-e", "signal=none", "-s", "16", "-o", trace_file] + argv
        try:
            out = subprocess.run(argv, input=to_probe_lines(ops), capture_output=True, text=True,
                                 timeout=timeout, preexec_fn=bound)
        except subprocess.TimeoutExpired as exc:
            raise GlibcProbeError(f"the probe did not finish within {timeout} s") from exc
        lines = out.stdout.splitlines()
        if out.returncode != 0 or not lines or lines[-1] != "done":
            raise GlibcProbeError(
                f"the probe failed (exit {out.returncode}): {(lines[-1:] or [''])[0]} {out.stderr.strip()[-500:]}")
        windows = _split_strace(Path(trace_file).read_text(), len(ops)) if use_strace else None
    rows = [_parse_line(ln) for ln in lines if ln.startswith("step=")]
    if len(rows) != len(ops):
        raise GlibcProbeError(f"the probe reported {len(rows)} operations, expected {len(ops)}")
    result = []
    for i, (op, row) in enumerate(zip(ops, rows)):
        mallinfo = {k: int(row[k]) for k in _MALLINFO}
        heap_rss = int(row["heap_rss_kb"]) * 1024 // PAGE_SIZE
        mmap_rss = int(row["mmap_rss_kb"]) * 1024 // PAGE_SIZE
        is_malloc = isinstance(op, Malloc)
        result.append(RealObservation(
            step=i, op=op.op,
            id=getattr(op, "id", None) or getattr(op, "param", None),
            result=int(row["result"]) if op.op in ("malloc_trim", "mallopt") else None,
            placement=("mmap" if row["mmapped"] == "1" else "heap") if is_malloc else None,
            ptr_offset=int(row["ptr_off"]) if is_malloc and row["mmapped"] == "0" else None,
            chunk_size=int(row["chunk"]) if is_malloc else None,
            heap_size=int(row["heap"]),
            vsz=int(row["heap"]) + mallinfo["hblkhd"],
            heap_rss_pages=heap_rss,
            mmap_rss_pages=mmap_rss,
            rss_pages=heap_rss + mmap_rss,
            faults=int(row["faults"]),
            syscalls=windows[i] if windows else None,
            mallinfo=mallinfo,
        ))
    return result
