"""What the real-kernel probes share: the child process and its guarded region.

A probe measures in a *child* process so that the counters it reads (``/proc/self/status``,
``/proc/self/smaps``, ``getrusage``) see only the probe's own mapping, not the notebook's.
The child maps a private anonymous region between two ``PROT_NONE`` guard pages so that the
kernel cannot merge it with a neighbouring mapping (E5), and marks it ``MADV_NOHUGEPAGE`` so
faults and page-table entries are per 4 KiB page even where transparent huge pages are on (E10).
Used by ``address_space_probe`` and ``pagetable_probe``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import subprocess
import sys
from pathlib import Path

from models.errors import ModelInputError
from models.units import PAGE_SIZE

_PROT_NONE, _PROT_READ, _PROT_WRITE = 0, 1, 2
_MAP_PRIVATE, _MAP_ANONYMOUS = 0x02, 0x20
_MADV_NOHUGEPAGE = 15


def check_whole(name: str, value, low: int, high: int, unit: str = "") -> None:
    """ModelInputError unless ``value`` is an int (not a bool) in ``low..high``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        of = f" of {unit}" if unit else ""
        raise ModelInputError(f"{name} must be a whole number{of} in {low}..{high}, got {value!r}")


def check_one_of(name: str, value, allowed) -> None:
    """ModelInputError unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ModelInputError(f"{name} must be one of {list(allowed)}, got {value!r}")


def unavailable_reason(probe: str, linux_needs: str) -> str | None:
    """None if a /proc-reading probe can run here, else the reason it cannot.

    ``probe`` names it in the reason ("the page-table probe"); ``linux_needs`` says what of
    Linux it reads ("/proc/self/smaps").
    """
    if platform.system() != "Linux":
        return f"{probe} needs Linux ({linux_needs}); this is {platform.system()}"
    if not Path("/proc/self/smaps").exists():
        return f"{probe} needs /proc/self/smaps, which is missing here"
    return None


def run_child(module: str, args: list[str], what: str, timeout: float) -> str:
    """Run ``python -m module args`` from this checkout and return its stdout.

    A failing child raises RuntimeError naming ``what`` ("page-table probe"), its exit code
    and its stderr.
    """
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", module, *args],
                          capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} child failed (exit {proc.returncode}): {proc.stderr}")
    return proc.stdout


# ----------------------------------------------------------------- inside the child

def libc() -> ctypes.CDLL:
    """The C library with ``mmap``/``mprotect``/``madvise`` typed for 64-bit addresses."""
    lib = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    lib.mmap.restype = ctypes.c_void_p
    lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                         ctypes.c_int, ctypes.c_long]
    lib.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    lib.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return lib


def map_guarded_region(lib: ctypes.CDLL, length: int) -> int:
    """Map ``length`` bytes read/write between two guard pages; the region's address.

    One reservation = guard page + region + guard page; the guards stay PROT_NONE.
    """
    base = lib.mmap(None, length + 2 * PAGE_SIZE, _PROT_NONE, _MAP_PRIVATE | _MAP_ANONYMOUS, -1, 0)
    if base in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap failed")
    region = base + PAGE_SIZE
    if lib.mprotect(region, length, _PROT_READ | _PROT_WRITE) != 0:
        raise OSError(ctypes.get_errno(), "mprotect failed")
    lib.madvise(region, length, _MADV_NOHUGEPAGE)  # best effort: EINVAL without THP support
    return region


def status_kib(field: str) -> int:
    """One ``kB`` field of ``/proc/self/status`` (``VmSize``, ``VmRSS``, ``VmPTE``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def region_smaps_kib(start: int, fields: tuple[str, ...]) -> tuple[int, ...]:
    """The ``fields`` (``"Size"``, ``"Rss"``) of the smaps entry that starts at ``start``, in kB."""
    heads = [f + ":" for f in fields]
    found: list[int | None] = [None] * len(fields)
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            inside = int(head.split("-")[0], 16) == start
        elif inside and head in heads:
            found[heads.index(head)] = int(line.split()[1])
    if None in found:
        raise RuntimeError(f"no smaps entry starts at {start:#x}")
    return tuple(found)
