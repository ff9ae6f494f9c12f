"""A timeline: the samples a simulation records, as numpy arrays per series.

Every ``*_pages`` series counts 4 KiB pages.  ``faults``, ``zero_pages``,
``madvised_pages``, ``alloc_pages`` and ``reclaimed_pages`` (lazily freed pages the kernel
threw away under the memory budget) are *since the previous sample*;
``gc_cycles`` is cumulative.  ``rss_pages`` and ``lazyfree_pages`` are the
kernel model's view of the Go program (heap arena + runtime metadata, without
any separate pressure allocation, which is ``pressure_rss_pages``); the
``heap_*`` series are what ``runtime.MemStats`` would say.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Series every timeline has, in JSON order; the first two are strings, ``oom`` is bool.
SERIES = ("t", "phase", "step", "rss_pages", "lazyfree_pages", "heap_released_pages", "faults",
          "heap_inuse_pages", "heap_idle_pages", "heap_sys_pages", "heap_live_pages", "next_gc_pages",
          "scavenge_goal_pages", "zero_pages", "madvised_pages", "alloc_pages", "gc_cycles",
          "faults_per_mib", "zero_pages_per_mib", "alloc_cost_us_per_mib", "elapsed_ms",
          "pressure_rss_pages", "reclaimed_pages", "advice", "oom")
_STR = {"phase", "step", "advice"}
_FLOAT = {"t", "faults_per_mib", "zero_pages_per_mib", "alloc_cost_us_per_mib", "elapsed_ms",
          "next_gc_pages", "scavenge_goal_pages"}


@dataclass
class Timeline:
    """Samples of one simulated run: ``timeline.rss_pages`` etc. are numpy arrays."""
    series: dict
    meta: dict = field(default_factory=dict)

    def __getattr__(self, name):
        series = self.__dict__.get("series", {})
        if name in series:
            return series[name]
        raise AttributeError(name)

    def __len__(self) -> int:
        return len(self.series["t"])

    def where(self, phase: str) -> np.ndarray:
        """Indices of the samples of ``phase``."""
        return np.flatnonzero(self.series["phase"] == phase)

    def last(self, phase: str) -> dict:
        """The last sample of ``phase`` as a dict."""
        idx = self.where(phase)
        if idx.size == 0:
            raise KeyError(f"no {phase!r} sample (phases: {sorted(set(self.series['phase'].tolist()))})")
        return self.sample(int(idx[-1]))

    def sample(self, i: int) -> dict:
        out = {}
        for k in SERIES:
            v = self.series[k][i]
            out[k] = v.item() if hasattr(v, "item") else v
            if k in _FLOAT and out[k] is not None and not np.isfinite(out[k]):
                out[k] = None   # JSON has no infinity (GOGC=off: no heap goal)
        return out

    def to_json(self) -> list[dict]:
        return [self.sample(i) for i in range(len(self))]


class Recorder:
    """Collects samples as plain lists, then turns them into a :class:`Timeline`."""

    def __init__(self):
        self.rows = {k: [] for k in SERIES}

    def add(self, **row) -> None:
        for k in SERIES:
            self.rows[k].append(row[k])

    def timeline(self, meta: dict) -> Timeline:
        series = {}
        for k, values in self.rows.items():
            if k in _STR:
                series[k] = np.array(values, dtype=object if not values else str)
            elif k == "oom":
                series[k] = np.array(values, dtype=bool)
            elif k in _FLOAT:
                series[k] = np.array(values, dtype=float)
            else:
                series[k] = np.array(values, dtype=np.int64)
        return Timeline(series, meta)
