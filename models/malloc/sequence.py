"""The malloc sequence format shared by the model, the real-glibc probe and the book.

A sequence is a JSON list of operations, or an object ``{"name": ..., "description":
..., "ops": [...]}``.  Operations:

* ``{"op": "malloc", "id": "A", "size": "64KiB", "write": true}`` -- ``write``
  (default true) says the program then writes every byte it asked for, as a
  real program would; with ``false`` the block is only reserved.
* ``{"op": "free", "id": "A"}``
* ``{"op": "malloc_trim", "pad": 0}``
* ``{"op": "mallopt", "param": "M_MMAP_THRESHOLD", "value": "256KiB"}`` with
  ``param`` one of ``M_MMAP_THRESHOLD``, ``M_TRIM_THRESHOLD``, ``M_TOP_PAD``,
  ``M_MMAP_MAX``; ``M_TRIM_THRESHOLD`` also accepts -1 (never trim, FACTS 35).

Sizes are bytes or strings like ``"64KiB"`` (:func:`models.units.parse_size`).
Ids name a block for a later ``free``; an id may be reused once its block is
freed.  :func:`parse_sequence` checks the whole sequence up front (unknown id,
double free, id still live), so neither engine starts on a bad sequence.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from models.errors import ModelInputError
from models.units import parse_size

#: Largest single request accepted: the probe really allocates and writes it.
MAX_REQUEST = 1 << 30
#: Largest ``malloc_trim`` pad and ``mallopt`` value: mallopt takes a C ``int``.
MAX_PARAM = (1 << 31) - 1
MAX_OPS = 10_000
#: Largest total of live requests at any point: the probe writes all of it for real.
MAX_LIVE = 4 << 30
MALLOPT_PARAMS = ("M_MMAP_THRESHOLD", "M_TRIM_THRESHOLD", "M_TOP_PAD", "M_MMAP_MAX")
SEQUENCES_DIR = Path(__file__).with_name("sequences")

_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,63}$")


@dataclass(frozen=True)
class Malloc:
    id: str
    size: int              # bytes requested, 1 .. MAX_REQUEST
    write: bool = True     # the program writes all ``size`` bytes after malloc returns
    op: str = "malloc"


@dataclass(frozen=True)
class Free:
    id: str
    op: str = "free"


@dataclass(frozen=True)
class MallocTrim:
    pad: int = 0
    op: str = "malloc_trim"


@dataclass(frozen=True)
class Mallopt:
    param: str             # one of MALLOPT_PARAMS
    value: int
    op: str = "mallopt"


MallocOp = Union[Malloc, Free, MallocTrim, Mallopt]


@dataclass(frozen=True)
class Sequence:
    ops: tuple[MallocOp, ...]
    name: str = ""
    description: str = ""


_KEYS = {
    "malloc": ({"op", "id", "size"}, {"write"}),
    "free": ({"op", "id"}, set()),
    "malloc_trim": ({"op"}, {"pad"}),
    "mallopt": ({"op", "param", "value"}, set()),
}


def _check_id(value, where: str) -> str:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise ModelInputError(
            f"{where}: id must be 1-63 characters from A-Z a-z 0-9 _ . -, got {value!r}")
    return value


def _int_param(value, where: str, name: str, low: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        if value < low:
            raise ModelInputError(f"{where}: {name} must be >= {low}, got {value}")
        return value
    nbytes = parse_size(value, name=f"{where}: {name}")
    if nbytes > MAX_PARAM:
        raise ModelInputError(f"{where}: {name} must be <= {MAX_PARAM} (a C int), got {nbytes}")
    return nbytes


def parse_op(raw, index: int = 0) -> MallocOp:
    """One operation from its JSON form; ``index`` is only used in error messages."""
    where = f"ops[{index}]"
    if not isinstance(raw, dict):
        raise ModelInputError(f"{where} must be an object like {{\"op\": \"malloc\", ...}}, got {raw!r}")
    kind = raw.get("op")
    if kind not in _KEYS:
        raise ModelInputError(f"{where}.op must be one of {sorted(_KEYS)}, got {kind!r}")
    required, optional = _KEYS[kind]
    missing = required - raw.keys()
    if missing:
        raise ModelInputError(f"{where} ({kind}) is missing {sorted(missing)}")
    extra = raw.keys() - required - optional
    if extra:
        raise ModelInputError(
            f"{where} ({kind}) has unknown keys {sorted(extra)}; allowed: {sorted(required | optional)}")
    if kind == "malloc":
        size = parse_size(raw["size"], name=f"{where}.size")
        if not 1 <= size <= MAX_REQUEST:
            raise ModelInputError(f"{where}.size must be between 1 byte and {MAX_REQUEST} bytes (1 GiB), got {size}")
        write = raw.get("write", True)
        if not isinstance(write, bool):
            raise ModelInputError(f"{where}.write must be true or false, got {write!r}")
        return Malloc(_check_id(raw["id"], where), size, write)
    if kind == "free":
        return Free(_check_id(raw["id"], where))
    if kind == "malloc_trim":
        return MallocTrim(_int_param(raw.get("pad", 0), where, "pad", 0))
    param = raw["param"]
    if param not in MALLOPT_PARAMS:
        raise ModelInputError(f"{where}.param must be one of {list(MALLOPT_PARAMS)}, got {param!r}")
    low = -1 if param == "M_TRIM_THRESHOLD" else 0
    return Mallopt(param, _int_param(raw["value"], where, "value", low))


def check_ids(ops) -> None:
    """Refuse a free of an id that is not live, a malloc of an id still live, and more than
    ``MAX_LIVE`` bytes allocated at once."""
    live: dict[str, int] = {}
    freed: set[str] = set()
    for i, op in enumerate(ops):
        if isinstance(op, Malloc):
            if op.id in live:
                raise ModelInputError(f"ops[{i}].id {op.id!r} is still allocated; free it first or use a new id")
            live[op.id] = op.size
            freed.discard(op.id)
            if sum(live.values()) > MAX_LIVE:
                raise ModelInputError(
                    f"ops[{i}]: live blocks would total {sum(live.values())} bytes; at most {MAX_LIVE} "
                    f"(4 GiB) may be allocated at once")
        elif isinstance(op, Free):
            if op.id in freed:
                raise ModelInputError(f"ops[{i}].id {op.id!r}: double free (already freed)")
            if op.id not in live:
                raise ModelInputError(f"ops[{i}].id {op.id!r}: free of an id that was never allocated")
            del live[op.id]
            freed.add(op.id)


def parse_sequence(raw, name: str = "") -> Sequence:
    """A :class:`Sequence` from decoded JSON (a list of ops or an object with ``ops``)."""
    description = ""
    if isinstance(raw, dict):
        unknown = raw.keys() - {"name", "description", "ops"}
        if unknown:
            raise ModelInputError(f"sequence has unknown keys {sorted(unknown)}; allowed: description, name, ops")
        if "ops" not in raw:
            raise ModelInputError("sequence object must have an 'ops' list")
        name = str(raw.get("name", name))
        description = str(raw.get("description", ""))
        raw = raw["ops"]
    if not isinstance(raw, list) or not raw:
        raise ModelInputError("sequence ops must be a non-empty list of operations")
    if len(raw) > MAX_OPS:
        raise ModelInputError(f"sequence ops must have at most {MAX_OPS} operations, got {len(raw)}")
    ops = tuple(parse_op(item, i) for i, item in enumerate(raw))
    check_ids(ops)
    return Sequence(ops, name, description)


def named_sequences() -> list[str]:
    """Names of the sequences shipped in ``models/malloc/sequences/``."""
    return sorted(p.stem for p in SEQUENCES_DIR.glob("*.json"))


def load_sequence(name_or_path: str | Path) -> Sequence:
    """Load a named sequence (e.g. ``"article_a_to_e"``) or a JSON file."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = SEQUENCES_DIR / f"{name_or_path}.json"
        if not path.exists():
            raise ModelInputError(
                f"sequence {str(name_or_path)!r} is neither a file nor one of {named_sequences()}")
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise ModelInputError(f"sequence file {str(path)!r} cannot be read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ModelInputError(f"sequence file {str(path)!r} is not valid JSON: {exc}") from exc
    return parse_sequence(raw, name=path.stem)


def to_probe_lines(ops) -> str:
    """The probe's line format (see ``probes/malloc_probe.c``)."""
    lines = []
    for op in ops:
        if isinstance(op, Malloc):
            lines.append(f"malloc {op.id} {op.size}" + ("" if op.write else " nowrite"))
        elif isinstance(op, Free):
            lines.append(f"free {op.id}")
        elif isinstance(op, MallocTrim):
            lines.append(f"malloc_trim {op.pad}")
        else:
            lines.append(f"mallopt {op.param} {op.value}")
    return "\n".join(lines) + "\n"
