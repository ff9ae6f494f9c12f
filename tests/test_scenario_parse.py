"""Scenario parsing: every malformed-input class gives one clear ModelInputError naming step, op, field."""
from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings, strategies as st

from models.errors import ModelInputError
from models.scenario import (Madvise, Mmap, Munmap, Pressure, Touch, library_names, library_path,
                             load_scenario, parse_scenario, resolve)
from models.scenario.parse import MADV_VALUES, advice_value, scenario_to_json


def mm(region="heap", length="1MiB", **kw):
    return {"op": "mmap", "region": region, "length": length, **kw}


def touch(region="heap", offset=0, length="1MiB", access="write"):
    return {"op": "touch", "region": region, "offset": offset, "length": length, "access": access}


def madv(region="heap", offset=0, length="1MiB", advice="MADV_FREE"):
    return {"op": "madvise", "region": region, "offset": offset, "length": length, "advice": advice}


def err(obj, source="<scenario>") -> str:
    with pytest.raises(ModelInputError) as info:
        parse_scenario(obj, source=source)
    return str(info.value)


def test_example_from_the_spec_parses_to_bytes_and_dataclasses():
    s = parse_scenario({"memory_limit": "192MiB", "name": "x", "steps": [
        mm(length="128MiB", shared=False), touch(length="128MiB"),
        madv(length="128MiB"), {"op": "pressure", "length": "96MiB"},
        touch(length="128MiB", access="read"), {"op": "munmap", "region": "heap"}]})
    assert s.memory_limit == 192 << 20 and s.name == "x"
    assert s.steps == (Mmap("heap", 128 << 20, False), Touch("heap", 0, 128 << 20, "write"),
                       Madvise("heap", 0, 128 << 20, "MADV_FREE"), Pressure(96 << 20),
                       Touch("heap", 0, 128 << 20, "read"), Munmap("heap"))


@pytest.mark.parametrize("obj, pattern", [
    # unknown op
    ({"steps": [mm(), {"op": "mprotect", "region": "heap"}]}, r"step 1 \(mprotect\): 'op' must be one of .*'mmap'.*got 'mprotect'"),
    # unknown region: never mapped, and already unmapped
    ({"steps": [touch(region="nope")]}, r"step 0 \(touch\): 'region' 'nope' is not mapped"),
    ({"steps": [mm(), {"op": "munmap", "region": "heap"}, madv()]},
     r"step 2 \(madvise\): 'region' 'heap' is not mapped"),
    ({"steps": [mm(), {"op": "munmap", "region": "heap"}, {"op": "munmap", "region": "heap"}]},
     r"step 2 \(munmap\): 'region' 'heap' is not mapped"),
    # negative / non-numeric sizes
    ({"steps": [mm(length=-4096)]}, r"step 0 \(mmap\): 'length' must be >= 0 bytes, got -4096"),
    ({"steps": [mm(length="lots")]}, r"step 0 \(mmap\): 'length' must be a whole number of bytes"),
    ({"steps": [mm(length="64MB")]}, r"step 0 \(mmap\): 'length' .*units B, KiB, MiB"),
    ({"steps": [mm(), touch(offset=-1)]}, r"step 1 \(touch\): 'offset' must be >= 0"),
    ({"steps": [mm(), madv(length=1.5)]}, r"step 1 \(madvise\): 'length' must be a size in bytes"),
    ({"steps": [{"op": "pressure", "length": 0}]}, r"step 0 \(pressure\): 'length' must be between 1 and"),
    ({"steps": [mm(length=0)]}, r"step 0 \(mmap\): 'length' must be between 1 and"),
    ({"steps": [mm(length="2TiB")]}, r"step 0 \(mmap\): 'length' must be between 1 and 1099511627776"),
    # a touch outside its region (a segfault in a real process)
    ({"steps": [mm(length="1MiB"), touch(offset="512KiB", length="1MiB")]},
     r"step 1 \(touch\): 'length' puts the touch outside region 'heap': offset \+ length must be <= 1048576"),
    ({"steps": [mm(length="1MiB"), touch(offset="1MiB", length=1)]},
     r"step 1 \(touch\): 'offset' puts the touch outside region 'heap'"),
    ({"steps": [mm(), touch(length=0)]}, r"step 1 \(touch\): 'length' must be between 1"),
    # missing / unknown fields
    ({"steps": [{"op": "mmap", "region": "heap"}]}, r"step 0 \(mmap\): missing field\(s\) 'length'"),
    ({"steps": [mm(), {"op": "touch", "region": "heap", "length": 1}]},
     r"step 1 \(touch\): missing field\(s\) 'access'"),
    ({"steps": [mm(), {"op": "madvise", "region": "heap", "length": 1, "advice": 4}]},
     r"step 1 \(madvise\): missing field\(s\) 'offset'"),
    ({"steps": [{"region": "heap", "length": 1}]}, r"step 0: missing field 'op'"),
    ({"steps": [mm(lenght=5)]}, r"step 0 \(mmap\): unknown field\(s\) 'lenght'"),
    ({"steps": [mm(), touch(), {"op": "munmap", "region": "heap", "length": 4096}]},
     r"step 2 \(munmap\): unknown field\(s\) 'length'"),
    ({"steps": [mm()], "memory_limt": "1MiB"}, r"unknown top-level field\(s\) 'memory_limt'"),
    ({"memory_limit": "1MiB"}, r"missing top-level field 'steps'"),
    # wrong types
    ({"steps": [mm(shared="yes")]}, r"step 0 \(mmap\): 'shared' must be true or false, got 'yes'"),
    ({"steps": [mm(), touch(access="rw")]}, r"step 1 \(touch\): 'access' must be 'read' or 'write', got 'rw'"),
    ({"steps": [mm(region=3)]}, r"step 0 \(mmap\): 'region' must be a name"),
    ({"steps": [mm(), madv(advice=["MADV_FREE"])]}, r"step 1 \(madvise\): 'advice' must be a name like"),
    ({"steps": [mm(), madv(advice="free")]}, r"step 1 \(madvise\): 'advice' must be an MADV_\* name"),
    ({"steps": [mm(), madv(advice=True)]}, r"step 1 \(madvise\): 'advice' must be a name like"),
    ({"steps": [mm(), madv(advice=1 << 40)]}, r"step 1 \(madvise\): 'advice' must fit in a C int"),
    ({"steps": [mm(), madv(advice="MADV_HWPOISON")]}, r"step 1 \(madvise\): 'advice' MADV_HWPOISON \(100\) is refused"),
    ({"steps": [mm(), madv(advice=101)]}, r"step 1 \(madvise\): 'advice' MADV_SOFT_OFFLINE \(101\) is refused"),
    ({"steps": "mmap"}, r"'steps' must be a non-empty list"),
    ({"steps": []}, r"'steps' must be a non-empty list"),
    ({"steps": ["mmap heap"]}, r"step 0: a step must be a JSON object"),
    ([1, 2], r"a scenario must be a JSON object"),
    ({"steps": [mm()], "memory_limit": "-1MiB"}, r"'memory_limit'.*must be a whole number"),
    ({"steps": [mm()], "memory_limit": 0}, r"'memory_limit'.*must be between 1"),
    ({"steps": [mm()], "name": 5}, r"'name' must be a string"),
    # duplicate mmap of a live region
    ({"steps": [mm(), mm()]}, r"step 1 \(mmap\): 'region' 'heap' is already mapped"),
])
def test_malformed_scenarios_raise_one_clear_error(obj, pattern):
    message = err(obj, source="bad.json")
    assert message.startswith("bad.json: ")
    assert re.search(pattern, message), message
    assert "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize("step", [
    madv(offset=1),                                  # unaligned start: EINVAL from the kernel
    madv(advice="MADV_NO_SUCH_THING"),               # unknown advice name: EINVAL
    madv(advice=77),                                 # unknown advice number: EINVAL
    madv(offset="512KiB", length="4MiB"),            # past the end: ENOMEM
    madv(offset="2MiB", length="1MiB"),              # starts past the end: ENOMEM
    madv(length=0),                                  # length 0 is a valid no-op
])
def test_madvise_that_the_kernel_refuses_is_a_valid_scenario(step):
    s = parse_scenario({"steps": [mm(), step]})
    assert isinstance(s.steps[1], Madvise)


def test_madvise_free_on_shared_memory_parses():
    s = parse_scenario({"steps": [mm(shared=True), madv(advice="MADV_FREE")]})
    assert s.steps[0].shared is True and s.steps[1].advice == "MADV_FREE"


def test_advice_numbers_are_normalised_to_names_and_back():
    s = parse_scenario({"steps": [mm(), madv(advice=8), madv(advice=4), madv(advice=77)]})
    assert [x.advice for x in s.steps[1:]] == ["MADV_FREE", "MADV_DONTNEED", 77]
    assert advice_value("MADV_FREE") == 8 == MADV_VALUES["MADV_FREE"]
    assert advice_value("MADV_DONTNEED") == 4
    assert advice_value(77) == 77
    assert advice_value("MADV_NO_SUCH_THING") is None


def test_region_can_be_mapped_again_after_munmap():
    s = parse_scenario({"steps": [mm(), {"op": "munmap", "region": "heap"}, mm(length="2MiB"),
                                  touch(length="2MiB")]})
    assert s.steps[2].length == 2 << 20 and s.steps[3].length == 2 << 20


def test_touch_offset_defaults_to_zero_and_sizes_accept_ints():
    s = parse_scenario({"steps": [mm(length=8192), {"op": "touch", "region": "heap", "length": 8192,
                                                     "access": "read"}]})
    assert s.steps[1] == Touch("heap", 0, 8192, "read")


def test_load_scenario_invalid_json_names_file_line_and_column(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"steps": [\n  {"op": "mmap",, "region": "x"}]}')
    with pytest.raises(ModelInputError, match=r"broken.json: invalid JSON at line 2 column 17"):
        load_scenario(p)


def test_load_scenario_missing_file(tmp_path):
    with pytest.raises(ModelInputError, match=r"cannot read scenario file .*nope.json"):
        load_scenario(tmp_path / "nope.json")


def test_load_scenario_error_names_the_file_and_step(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"steps": [mm(), mm(), touch()]}))
    with pytest.raises(ModelInputError, match=r"s.json: step 1 \(mmap\): 'region' 'heap' is already mapped"):
        load_scenario(p)


def test_library_scenarios_all_parse_and_are_named_after_their_file():
    names = library_names()
    assert len(names) >= 12
    for name in names:
        s = load_scenario(library_path(name))
        assert s.name == name and s.description
        assert sum(x.length for x in s.steps if x.op in ("mmap", "pressure")) <= 256 << 20
    assert resolve("lazyfree-reclaim").memory_limit == 192 << 20
    with pytest.raises(ModelInputError, match=r"no library scenario named 'lazyfree-recl'; available: .*lazyfree-reclaim"):
        resolve("lazyfree-recl")


def test_library_covers_every_behaviour():
    ops = {name: load_scenario(library_path(name)) for name in library_names()}
    steps = [st for s in ops.values() for st in s.steps]
    advices = {st.advice for st in steps if st.op == "madvise"}
    assert {"MADV_FREE", "MADV_DONTNEED"} <= advices
    assert any(isinstance(a, int) for a in advices) and any(a not in MADV_VALUES for a in advices if isinstance(a, str))
    assert any(st.op == "madvise" and st.offset % 4096 for st in steps)                 # EINVAL, unaligned
    assert any(st.op == "mmap" and st.shared for st in steps)
    assert any(st.op == "munmap" for st in steps) and any(st.op == "pressure" for st in steps)
    assert sum(1 for s in ops.values() if s.memory_limit) >= 3


# -- property: anything scenario_to_json produces parses back to the same Scenario -----------------
_region = st.sampled_from(["a", "b", "c"])


@st.composite
def scenarios(draw):
    live: dict[str, int] = {}
    steps = []
    for _ in range(draw(st.integers(1, 12))):
        choice = draw(st.sampled_from(["mmap", "touch", "madvise", "munmap", "pressure"]))
        region = draw(_region)
        if choice == "mmap" and region not in live:
            length = draw(st.integers(1, 1 << 24))
            live[region] = length
            steps.append(mm(region, length, shared=draw(st.booleans())))
        elif choice == "touch" and region in live:
            off = draw(st.integers(0, live[region] - 1))
            steps.append(touch(region, off, draw(st.integers(1, live[region] - off)),
                               draw(st.sampled_from(["read", "write"]))))
        elif choice == "madvise" and region in live:
            steps.append(madv(region, draw(st.integers(0, 1 << 25)), draw(st.integers(0, 1 << 25)),
                              draw(st.sampled_from(["MADV_FREE", "MADV_DONTNEED", 4, 8, 77, "MADV_COLD"]))))
        elif choice == "munmap" and region in live:
            del live[region]
            steps.append({"op": "munmap", "region": region})
        elif choice == "pressure":
            steps.append({"op": "pressure", "length": draw(st.integers(1, 1 << 24))})
    if not steps:
        steps.append({"op": "pressure", "length": 4096})
    return {"steps": steps}


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_roundtrip_through_plain_json(obj):
    s = parse_scenario(obj)
    assert parse_scenario(json.loads(json.dumps(scenario_to_json(s)))) == s
    assert len(s.steps) == len(obj["steps"])
