"""Read and validate scenario files (JSON) into :class:`models.scenario.format.Scenario`.

A scenario is what a small C program would do to its memory, step by step::

    {"memory_limit": "192MiB",
     "steps": [
      {"op": "mmap",    "region": "heap", "length": "128MiB", "shared": false},
      {"op": "touch",   "region": "heap", "offset": 0, "length": "128MiB", "access": "write"},
      {"op": "madvise", "region": "heap", "offset": 0, "length": "128MiB", "advice": "MADV_FREE"},
      {"op": "pressure", "length": "96MiB"},
      {"op": "touch",   "region": "heap", "offset": 0, "length": "128MiB", "access": "read"},
      {"op": "munmap",  "region": "heap"}]}

Steps are numbered from 0, as in the ``"step"`` field of ``python -m models run --json``.

Two kinds of "wrong" are kept apart on purpose:

* a *malformed* scenario -- one no real program could run, or that is not what the author
  meant (a typo'd op or field, a touch outside its region, which would be a segfault) --
  raises one :class:`ModelInputError` naming the step, op and field;
* a *valid scenario whose syscall fails* -- ``madvise`` with an unaligned start, an unknown
  advice, ``MADV_FREE`` on a shared mapping (FACTS 14), or a range running past the mapping
  (ENOMEM) -- is accepted: the answer (EINVAL / ENOMEM) is what the scenario is there to show.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Optional

from models.errors import ModelInputError
from models.scenario.format import Madvise, Mmap, Munmap, Pressure, Scenario, Step, Touch
from models.units import parse_size

#: Advice values of Linux 6.x x86-64 (``<asm-generic/mman-common.h>``).  MADV_FREE is 8 in the
#: merged kernel (FACTS 10 quotes 5 from the v3 patch posting; the uapi header says 8).
MADV_VALUES: dict[str, int] = {
    "MADV_NORMAL": 0, "MADV_RANDOM": 1, "MADV_SEQUENTIAL": 2, "MADV_WILLNEED": 3,
    "MADV_DONTNEED": 4, "MADV_FREE": 8, "MADV_REMOVE": 9, "MADV_DONTFORK": 10,
    "MADV_DOFORK": 11, "MADV_MERGEABLE": 12, "MADV_UNMERGEABLE": 13, "MADV_HUGEPAGE": 14,
    "MADV_NOHUGEPAGE": 15, "MADV_DONTDUMP": 16, "MADV_DODUMP": 17, "MADV_WIPEONFORK": 18,
    "MADV_KEEPONFORK": 19, "MADV_COLD": 20, "MADV_PAGEOUT": 21, "MADV_POPULATE_READ": 22,
    "MADV_POPULATE_WRITE": 23, "MADV_DONTNEED_LOCKED": 24, "MADV_COLLAPSE": 25,
    "MADV_HWPOISON": 100, "MADV_SOFT_OFFLINE": 101, "MADV_GUARD_INSTALL": 102,
    "MADV_GUARD_REMOVE": 103,
}
_MADV_NAMES = {v: k for k, v in MADV_VALUES.items()}

#: Advice that would damage the machine (poison / offline physical pages) or make later touches
#: segfault the process (guard pages); a scenario may not ask the real kernel for them.
REFUSED_ADVICE = frozenset({"MADV_HWPOISON", "MADV_SOFT_OFFLINE", "MADV_GUARD_INSTALL",
                            "MADV_GUARD_REMOVE"})

#: Upper bound for any size or offset in a scenario.  Far beyond what the engines will run
#: (the kernel engine refuses more than a quarter of MemAvailable), but it keeps arithmetic
#: on page numbers sane and catches unit slips like "64TiB".
MAX_BYTES = 1 << 40

_ADVICE_NAME_RE = re.compile(r"^MADV_[A-Z0-9_]+$")
_REGION_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")

_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    # op: (required fields, optional fields), "op" itself not listed
    "mmap": ({"region", "length"}, {"shared"}),
    "munmap": ({"region"}, set()),
    "touch": ({"region", "length", "access"}, {"offset"}),
    "madvise": ({"region", "offset", "length", "advice"}, set()),
    "pressure": ({"length"}, set()),
}
_TOP_FIELDS = ({"steps"}, {"memory_limit", "name", "description"})


def advice_value(advice) -> Optional[int]:
    """The ``int`` passed to madvise(2) for ``advice`` (a parsed Madvise.advice); ``None`` for
    an ``MADV_*`` name this kernel header does not define (the engines answer EINVAL)."""
    if isinstance(advice, int):
        return advice
    return MADV_VALUES.get(advice)


def _fmt_list(items) -> str:
    return ", ".join(repr(x) for x in sorted(items))


class _StepError(Exception):
    pass


def load_scenario(path) -> Scenario:
    """Read a scenario from a JSON file; any problem is one :class:`ModelInputError`."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ModelInputError(f"cannot read scenario file {path!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ModelInputError(f"{path}: scenario file is not UTF-8 text ({exc.reason})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelInputError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    scenario = parse_scenario(obj, source=path)
    if not scenario.name:
        # Library files are named after their file; keep the name for tables and plots.
        stem = os.path.splitext(os.path.basename(path))[0]
        scenario = Scenario(scenario.steps, scenario.memory_limit, stem, scenario.description)
    return scenario


def parse_scenario(obj: Any, *, source: str = "<scenario>") -> Scenario:
    """Validate a decoded JSON object and build a :class:`Scenario`.

    Raises :class:`ModelInputError` with a message such as
    ``"<scenario>: step 3 (touch): 'length' must be ..."``.
    """
    if not isinstance(obj, dict):
        raise ModelInputError(
            f"{source}: a scenario must be a JSON object with a 'steps' list, got {type(obj).__name__}")
    required, optional = _TOP_FIELDS
    unknown = set(obj) - required - optional
    if unknown:
        raise ModelInputError(
            f"{source}: unknown top-level field(s) {_fmt_list(unknown)}; "
            f"allowed: {_fmt_list(required | optional)}")
    if "steps" not in obj:
        raise ModelInputError(f"{source}: missing top-level field 'steps' (a list of steps)")
    steps_in = obj["steps"]
    if not isinstance(steps_in, list) or not steps_in:
        raise ModelInputError(f"{source}: 'steps' must be a non-empty list of step objects, got {steps_in!r}")

    memory_limit = obj.get("memory_limit")
    if memory_limit is not None:
        memory_limit = _size(memory_limit, "memory_limit", f"{source}: 'memory_limit'", minimum=1)
    name = obj.get("name", "")
    description = obj.get("description", "")
    for key, value in (("name", name), ("description", description)):
        if not isinstance(value, str):
            raise ModelInputError(f"{source}: '{key}' must be a string, got {type(value).__name__}")

    live: dict[str, Mmap] = {}      # region name -> its mmap, while mapped
    steps: list[Step] = []
    for index, raw in enumerate(steps_in):
        op = raw.get("op") if isinstance(raw, dict) else None
        where = f"{source}: step {index}" + (f" ({op})" if isinstance(op, str) else "")
        try:
            steps.append(_parse_step(raw, live))
        except _StepError as exc:
            raise ModelInputError(f"{where}: {exc}") from None
    return Scenario(tuple(steps), memory_limit, name, description)


def _size(value, field: str, context: str, *, minimum: int = 0) -> int:
    try:
        n = parse_size(value, name=field)
    except ModelInputError as exc:
        raise ModelInputError(f"{context}: {exc}") from None
    if n < minimum or n > MAX_BYTES:
        raise ModelInputError(
            f"{context}: '{field}' must be between {minimum} and {MAX_BYTES} bytes (1 TiB), got {n}")
    return n


def _step_size(step: dict, field: str, *, minimum: int = 0) -> int:
    value = step[field]
    try:
        n = parse_size(value, name=f"'{field}'")
    except ModelInputError as exc:
        raise _StepError(str(exc)) from None
    if n < minimum or n > MAX_BYTES:
        raise _StepError(f"'{field}' must be between {minimum} and {MAX_BYTES} bytes (1 TiB), got {n}")
    return n


def _parse_step(raw, live: dict[str, Mmap]) -> Step:
    if not isinstance(raw, dict):
        raise _StepError(f"a step must be a JSON object like {{\"op\": \"mmap\", ...}}, got {raw!r}")
    if "op" not in raw:
        raise _StepError(f"missing field 'op' (one of {_fmt_list(_FIELDS)})")
    op = raw["op"]
    if op not in _FIELDS:
        raise _StepError(f"'op' must be one of {_fmt_list(_FIELDS)}, got {op!r}")
    required, optional = _FIELDS[op]
    unknown = set(raw) - required - optional - {"op"}
    if unknown:
        raise _StepError(f"unknown field(s) {_fmt_list(unknown)}; "
                         f"a {op} step takes {_fmt_list(required | optional)}")
    missing = required - set(raw)
    if missing:
        raise _StepError(f"missing field(s) {_fmt_list(missing)}")

    region = raw.get("region")
    if "region" in raw:
        if not isinstance(region, str) or not _REGION_RE.match(region):
            raise _StepError(
                f"'region' must be a name of 1-64 letters, digits, '_', '-' or '.', got {region!r}")

    if op == "mmap":
        if region in live:
            raise _StepError(f"'region' {region!r} is already mapped (munmap it first, or use another name)")
        shared = raw.get("shared", False)
        if not isinstance(shared, bool):
            raise _StepError(f"'shared' must be true or false, got {shared!r}")
        step = Mmap(region=region, length=_step_size(raw, "length", minimum=1), shared=shared)
        live[region] = step
        return step

    if op == "pressure":
        return Pressure(length=_step_size(raw, "length", minimum=1))

    if region not in live:
        raise _StepError(f"'region' {region!r} is not mapped at this step "
                         f"(mapped: {_fmt_list(live) or 'none'}); an earlier mmap step must create it")
    mapping = live[region]

    if op == "munmap":
        del live[region]
        return Munmap(region=region)

    if op == "touch":
        access = raw["access"]
        if access not in ("read", "write"):
            raise _StepError(f"'access' must be 'read' or 'write', got {access!r}")
        offset = _step_size(raw, "offset") if "offset" in raw else 0
        length = _step_size(raw, "length", minimum=1)
        if offset + length > mapping.length:
            # Outside the mapping a real process gets SIGSEGV; there is nothing to measure.
            field = "offset" if offset >= mapping.length else "length"
            raise _StepError(
                f"'{field}' puts the touch outside region {region!r}: offset + length must be "
                f"<= {mapping.length} bytes (the region's length), got {offset} + {length} = {offset + length}")
        return Touch(region=region, offset=offset, length=length, access=access)

    # madvise: offset/length are bytes as given to the syscall; unaligned or too long is the
    # kernel's business (EINVAL / ENOMEM), not a parse error.
    offset = _step_size(raw, "offset")
    length = _step_size(raw, "length")
    advice = raw["advice"]
    if isinstance(advice, bool) or not isinstance(advice, (str, int)):
        raise _StepError(f"'advice' must be a name like 'MADV_FREE' or an int, got {advice!r}")
    if isinstance(advice, int):
        if not -(1 << 31) <= advice < (1 << 31):
            raise _StepError(f"'advice' must fit in a C int (-2147483648..2147483647), got {advice}")
        advice = _MADV_NAMES.get(advice, advice)   # 8 -> "MADV_FREE", so both engines see one spelling
    elif not _ADVICE_NAME_RE.match(advice):
        raise _StepError(f"'advice' must be an MADV_* name (e.g. 'MADV_DONTNEED', 'MADV_FREE') "
                         f"or an int, got {advice!r}")
    if advice in REFUSED_ADVICE:
        raise _StepError(f"'advice' {advice} ({MADV_VALUES[advice]}) is refused: it damages physical "
                         f"pages or makes later touches segfault; it has no place in a scenario")
    return Madvise(region=region, offset=offset, length=length, advice=advice)


def scenario_to_json(scenario: Scenario) -> dict:
    """The plain-JSON form of a parsed scenario (sizes in bytes); parse_scenario accepts it back."""
    out: dict[str, Any] = {"steps": []}
    if scenario.name:
        out["name"] = scenario.name
    if scenario.description:
        out["description"] = scenario.description
    if scenario.memory_limit is not None:
        out["memory_limit"] = scenario.memory_limit
    for step in scenario.steps:
        d = {"op": step.op}
        for key, value in step.__dict__.items():
            if key != "op":
                d[key] = value
        out["steps"].append(d)
    return out
