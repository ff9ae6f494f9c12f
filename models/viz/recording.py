"""Writing the book's recordings (``book/recorded/*.json``).

A recording is what a live cell measured on the build machine, shown to readers where the
measurement cannot run. The kernel cells, the glibc cell, the Go-probe cell and the lab all
write theirs the same way.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path


def now_utc() -> str:
    """This moment in UTC, to the second, ISO 8601 (a recording's ``recorded_at``)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def write_json_atomic(path: Path, obj) -> Path:
    """Write ``obj`` as indented JSON to ``path`` (its directory must exist).

    Written to ``<name>.json.tmp`` and renamed over ``path``, so a build that reads the
    recording while it is re-recorded sees the old file or the new one, never half of one.
    """
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)
    return path
