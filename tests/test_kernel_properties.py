"""Property tests of the page model (hypothesis): random operation sequences on small spaces.

* the numpy model agrees, step by step and page by page, with the per-page pure-Python
  reference (benchmarks/bench_kernel_model.py: one reclaim round per faulting page, no bulk
  shortcuts) -- so the vectorised reclaim-while-touching logic is checked against the plain rules;
* invariants: every page in exactly one state, lazyfree <= rss <= mapped pages, counters equal
  what the page arrays say, the budget is never exceeded;
* DONTNEED then read gives zeros on private mappings; FREE then write never faults without
  pressure; bad input is rejected with ModelInputError and leaves the space unchanged.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from models.errors import KernelError, ModelInputError, OOMKill
from models.kernel import AddressSpace, PageState
from models.kernel.replay import play
from models.scenario.format import Madvise, Mmap, Munmap, Pressure, Scenario, Touch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_kernel_model import ReferenceSpace  # noqa: E402

P = 4096
NAMES = ("a", "b", "c")
VERSIONS = ("6.18", "4.12", "4.9", "4.4")
ADVICE = ("MADV_FREE", "MADV_DONTNEED", 8, 4, 5, "MADV_NORMAL", "MADV_COLD", "MADV_PAGEOUT",
          "MADV_POPULATE_READ", "MADV_POPULATE_WRITE", "MADV_REMOVE", 24, 25, 26, "MADV_WIPEONFORK")
VERSIONS_PT = ("6.18", "6.13", "5.10", "4.12", "4.4")

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

touch_op = st.tuples(st.just("touch"), st.sampled_from(NAMES), st.integers(0, 80), st.integers(0, 80),
                     st.sampled_from(("read", "write", "write")))
free_op = st.tuples(st.just("madvise"), st.sampled_from(NAMES), st.integers(0, 64), st.integers(0, 80),
                    st.sampled_from(("MADV_FREE", "MADV_FREE", 8, "MADV_DONTNEED")), st.just(0))
op_strategy = st.one_of(
    touch_op, touch_op, free_op,
    st.tuples(st.just("mmap"), st.sampled_from(NAMES), st.integers(1, 80), st.booleans()),
    st.tuples(st.just("munmap"), st.sampled_from(NAMES)),
    st.tuples(st.just("touch"), st.sampled_from(NAMES), st.integers(0, 80), st.integers(0, 80),
              st.sampled_from(("read", "write"))),
    st.tuples(st.just("madvise"), st.sampled_from(NAMES), st.integers(0, 90), st.integers(0, 90),
              st.sampled_from(ADVICE), st.sampled_from((0, 0, 0, 1, 100))),
    st.tuples(st.just("pressure"), st.integers(1, 48)),
    st.tuples(st.just("resize"), st.sampled_from(NAMES), st.integers(0, 80)),
)
ops_strategy = st.lists(op_strategy, min_size=1, max_size=50)
budget_strategy = st.one_of(st.none(), st.integers(0, 200), st.integers(40, 140))


def apply(space, op):
    """Apply one generated op, mapped onto valid arguments; returns a comparable outcome."""
    kind = op[0]
    regions = dict(space.regions) if isinstance(space, AddressSpace) else \
        {n: r.n for n, r in space.regions.items()}
    shared = (lambda n: space.is_shared(n)) if isinstance(space, AddressSpace) else \
        (lambda n: space.regions[n].shared)
    try:
        if kind == "mmap":
            _, name, n, sh = op
            if name in regions:
                return "skip"
            space.mmap(name, n * P, sh)
            return "ok"
        name = op[1] if kind not in ("pressure",) else None
        if name is not None and name not in regions:
            # Map it instead (c is the shared one) so that every generated op does something.
            space.mmap(name, {"a": 64, "b": 48, "c": 32}[name] * P, name == "c")
            return "mapped"
        if kind == "munmap":
            space.munmap(name)
        elif kind == "touch":
            _, _, start, n, access = op
            size = regions[name]
            start = min(start, size)
            n = min(n, size - start)
            res = space.touch(name, start * P, n * P, access)
            return ("touch", tuple(res)[:2] if isinstance(res, tuple) else (res.faults, res.zero_pages))
        elif kind == "madvise":
            _, _, start, n, advice, jitter = op
            space.madvise(name, start * P + jitter, n * P - (jitter if n else 0), advice)
        elif kind == "pressure":
            space.pressure(op[1] * P)
        elif kind == "resize":
            if shared(name):
                return "skip"
            space.resize(name, op[2] * P)
        return "ok"
    except KernelError as exc:
        return exc.errno_name
    except OOMKill:
        return "OOM_KILL"


def check_invariants(sp: AddressSpace):
    charged = sp.pressure_pages
    for name, npages in sp.regions.items():
        states = sp.states(name)
        assert states.shape == (npages,)
        allowed = {0, 1, 2, 3, 4, 5} if sp.swap else {0, 1, 2, 3, 4}
        assert set(np.unique(states).tolist()) <= allowed
        counts = np.bincount(states, minlength=6)
        assert counts.sum() == npages                     # every page in exactly one state
        if sp.is_shared(name):
            assert counts[PageState.ZERO_PAGE] == counts[PageState.LAZYFREE] == 0
            assert sp.rss_pages(name) == counts[PageState.RESIDENT]
            vma = sp._vmas[name]
            held = int(vma.shm_present[:npages].sum())
            assert vma.shm_pages == held and held >= counts[PageState.RESIDENT]
            charged += held
        else:
            rss = counts[PageState.RESIDENT] + counts[PageState.LAZYFREE]
            assert sp.rss_pages(name) == rss
            charged += rss
        lazy = sp.lazyfree_pages(name)
        assert lazy == (counts[PageState.LAZYFREE] if sp.profile.smaps_lazyfree else 0)
        assert 0 <= lazy <= sp.rss_pages(name) <= npages
    assert sp.charged_pages == charged
    tables = sum(int(v.pt.sum()) for v in sp._vmas.values())
    assert sum(v.pt_pages for v in sp._vmas.values()) == tables <= sp.pagetable_pages
    if not sp.count_pagetables:
        assert sp.pagetable_pages == 0
    for name, npages in sp.regions.items():
        # every page with a PTE (zero page, resident, lazily freed) has its page table
        vma = sp._vmas[name]
        mapped = np.flatnonzero(np.isin(sp.states(name), (1, 2, 3)))
        if sp.count_pagetables and mapped.size:
            assert vma.pt[(mapped + 1) // 512].all()
    if sp.budget_pages is not None:
        assert sp.charged_pages + sp.pagetable_pages == sp.usage_pages <= sp.budget_pages


@SETTINGS
@given(ops=ops_strategy, budget=budget_strategy, version=st.sampled_from(VERSIONS), swap=st.booleans())
def test_model_matches_per_page_reference(ops, budget, version, swap):
    limit = None if budget is None else budget * P
    model = AddressSpace(kernel_version=version, swap=swap, memory_limit=limit)
    ref = ReferenceSpace(kernel_version=version, swap=swap, memory_limit=limit)
    for i, op in enumerate(ops):
        got, want = apply(model, op), apply(ref, op)
        where = f"op {i} {op} (budget {budget}, {version}, swap={swap})"
        assert got == want, where
        assert model.faults == ref.faults and model.major_faults == ref.major_faults, where
        assert model.charged_pages == ref.charged, where
        for name in model.regions:
            assert model.states(name).tolist() == ref.states(name), f"{where}: region {name}"
            assert model.rss_pages(name) == ref.rss_pages(name), where
            assert model.lazyfree_pages(name) == ref.lazyfree_pages(name), where
        check_invariants(model)
        if got == "OOM_KILL":
            assert model.dead
            break


@SETTINGS
@given(ops=ops_strategy, budget=budget_strategy, version=st.sampled_from(VERSIONS_PT), swap=st.booleans())
# every page-table rule in one run: zero-page read, a block emptied whole by DONTNEED (6.14+),
# the budget met by tables, resize and munmap freeing them
@example(ops=[("mmap", "a", 80, False), ("touch", "a", 0, 80, "read"), ("madvise", "a", 0, 80, 4, 0),
              ("resize", "a", 0), ("touch", "b", 0, 48, "write"), ("pressure", 40), ("munmap", "b")],
         budget=100, version="6.18", swap=False)
def test_model_with_page_tables_matches_reference(ops, budget, version, swap):
    """The same differential test with page tables charged (K3).  Regions here hold one or two
    512-page blocks, so DONTNEED never empties one whole: test_kernel_model.TestPageTables
    covers that at real sizes."""
    limit = None if budget is None else budget * P
    model = AddressSpace(kernel_version=version, swap=swap, memory_limit=limit, pagetables=True)
    ref = ReferenceSpace(kernel_version=version, swap=swap, memory_limit=limit, pagetables=True)
    for i, op in enumerate(ops):
        got, want = apply(model, op), apply(ref, op)
        where = f"op {i} {op} (budget {budget}, {version}, swap={swap})"
        assert got == want, where
        assert (model.faults, model.major_faults, model.charged_pages, model.pagetable_pages) == \
            (ref.faults, ref.major_faults, ref.charged, ref.pt), where
        for name in model.regions:
            assert model.states(name).tolist() == ref.states(name), f"{where}: region {name}"
        check_invariants(model)
        if got == "OOM_KILL":
            break


reclaim_round = st.tuples(
    st.sampled_from(("write", "write", "free", "free", "read", "dontneed", "pressure")),
    st.sampled_from(("a", "b", "b", "c")), st.integers(0, 63), st.integers(1, 64))


@SETTINGS
@given(rounds=st.lists(reclaim_round, min_size=8, max_size=60), budget=st.integers(48, 160),
       swap=st.booleans())
# Hand-picked interplays random search finds rarely: a young (read) part of a freed range,
# a write over pages the reclaim takes ahead of it, a freed range written and freed again.
@example(rounds=[("write", "a", 0, 64), ("free", "a", 0, 64), ("read", "a", 0, 32),
                 ("write", "b", 0, 64), ("pressure", "a", 0, 64)], budget=100, swap=False)
@example(rounds=[("write", "a", 0, 64), ("free", "a", 8, 40), ("read", "a", 20, 30),
                 ("write", "b", 0, 64), ("free", "b", 0, 30), ("read", "b", 0, 10),
                 ("pressure", "a", 0, 64), ("pressure", "a", 0, 64), ("write", "a", 0, 64)],
         budget=90, swap=False)
@example(rounds=[("write", "a", 0, 64), ("free", "a", 0, 64), ("write", "b", 0, 40),
                 ("pressure", "a", 0, 40), ("write", "a", 0, 64)], budget=110, swap=False)
@example(rounds=[("write", "a", 0, 64), ("free", "a", 0, 64), ("write", "a", 32, 32),
                 ("write", "b", 0, 64), ("free", "b", 0, 64), ("free", "a", 0, 64),
                 ("pressure", "a", 0, 64), ("write", "b", 0, 64)], budget=130, swap=True)
def test_model_matches_reference_under_reclaim(rounds, budget, swap):
    """Two private regions and a shared one, pre-mapped, churned under a tight budget: reclaim
    (with second chances, pages dropped ahead of a write, re-freed pages) is the common case."""
    model = AddressSpace(swap=swap, memory_limit=budget * P)
    ref = ReferenceSpace(swap=swap, memory_limit=budget * P)
    sizes = {"a": 64, "b": 64, "c": 32}
    for sp in (model, ref):
        for name, n in sizes.items():
            sp.mmap(name, n * P, name == "c")
    for i, (kind, name, start, n) in enumerate(rounds):
        start = min(start, sizes[name] - 1)
        n = min(n, sizes[name] - start)
        if kind in ("write", "read"):
            op = ("touch", name, start, n, kind)
        elif kind == "free":
            op = ("madvise", name, start, n, "MADV_FREE", 0)
        elif kind == "dontneed":
            op = ("madvise", name, start, n, "MADV_DONTNEED", 0)
        else:
            op = ("pressure", max(1, n // 4))
        got, want = apply(model, op), apply(ref, op)
        where = f"round {i} {op} (budget {budget}, swap={swap})"
        assert got == want, where
        assert (model.faults, model.major_faults, model.charged_pages) == \
            (ref.faults, ref.major_faults, ref.charged), where
        for r in sizes:
            assert model.states(r).tolist() == ref.states(r), f"{where}: region {r}"
        check_invariants(model)
        if got == "OOM_KILL":
            break


@SETTINGS
@given(ops=ops_strategy, budget=budget_strategy, version=st.sampled_from(VERSIONS), swap=st.booleans())
def test_copy_branches_independently(ops, budget, version, swap):
    sp = AddressSpace(kernel_version=version, swap=swap, memory_limit=None if budget is None else budget * P)
    half = len(ops) // 2
    for op in ops[:half]:
        if apply(sp, op) == "OOM_KILL":
            return
    twin = sp.copy()
    snapshot = {n: sp.states(n).copy() for n in sp.regions}
    for op in ops[half:]:
        if apply(twin, op) == "OOM_KILL":
            break
        check_invariants(twin)
    assert {n: sp.states(n).tolist() for n in sp.regions} == {n: s.tolist() for n, s in snapshot.items()}
    check_invariants(sp)
    # the original, replaying the same ops, ends exactly where the twin did
    for op in ops[half:]:
        if apply(sp, op) == "OOM_KILL":
            break
    assert {n: sp.states(n).tolist() for n in sp.regions} == {n: twin.states(n).tolist() for n in twin.regions}


@SETTINGS
@given(ops=ops_strategy, start=st.integers(0, 63), n=st.integers(1, 64))
def test_dontneed_then_read_gives_zeros_on_private(ops, start, n):
    sp = AddressSpace()
    for op in ops:
        apply(sp, op)
    if "z" in sp.regions:
        return
    sp.mmap("z", 128 * P)
    sp.touch("z", 0, 128 * P, "write")
    for op in ops:                          # churn around it
        if op[0] != "mmap" and len(op) > 1 and op[1] in sp.regions:
            apply(sp, op)
    sp.madvise("z", start * P, n * P, "MADV_DONTNEED")
    res = sp.touch("z", start * P, n * P, "read")
    assert res.zero_pages == n and res.faults == n
    assert sp.touch("z", 0, 128 * P, "read").zero_pages == n


@SETTINGS
@given(ops=ops_strategy, version=st.sampled_from(("6.18", "4.12", "5.4")), swap=st.booleans(),
       start=st.integers(0, 63), n=st.integers(1, 64))
def test_free_then_write_never_faults_without_pressure(ops, version, swap, start, n):
    sp = AddressSpace(kernel_version=version, swap=swap)
    for op in ops:
        if op[0] != "pressure":
            apply(sp, op)
    sp.mmap("w", 128 * P)
    sp.touch("w", 0, 128 * P, "write")
    sp.madvise("w", start * P, n * P, "MADV_FREE")
    for op in ops:                          # other regions may come and go; no budget, no pressure
        if op[0] not in ("pressure",) and len(op) > 1 and op[1] != "w":
            apply(sp, op)
    before = sp.faults
    assert sp.touch("w", 0, 128 * P, "write").faults == 0
    assert sp.faults == before and sp.lazyfree_pages("w") == 0 and sp.rss_pages("w") == 128


bad_calls = st.one_of(
    st.tuples(st.just("touch"), st.integers(-5, 200), st.integers(-5, 200), st.sampled_from(("read", "write", "rw"))),
    st.tuples(st.just("madvise_neg"), st.integers(-10, -1), st.integers(-10, 10)),
    st.tuples(st.just("mmap"), st.sampled_from(("", "a", None)), st.integers(-3, 3)),
    st.tuples(st.just("region"), st.sampled_from(("nope", 3, None)), st.just(0)),
    st.tuples(st.just("pressure"), st.integers(-10, 0), st.just(0)),
    st.tuples(st.just("types"), st.sampled_from((1.0, "4096", None, True)), st.just(0)),
)


@SETTINGS
@given(call=bad_calls, budget=budget_strategy)
def test_invalid_input_is_rejected_cleanly(call, budget):
    sp = AddressSpace(memory_limit=None if budget is None else budget * P)
    sp.mmap("a", 100 * P)
    before = (sp.states("a").copy(), sp.faults, sp.charged_pages)
    kind = call[0]
    try:
        if kind == "touch":
            _, off, n, access = call
            sp.touch("a", off * P, n * P, access)
        elif kind == "madvise_neg":
            sp.madvise("a", call[1] * P, call[2] * P, "MADV_DONTNEED") if call[1] < 0 else None
            sp.madvise("a", 0, call[2] * P if call[2] < 0 else -1, "MADV_DONTNEED")
        elif kind == "mmap":
            sp.mmap(call[1], call[2] * P)
        elif kind == "region":
            sp.touch(call[1], 0, P, "read")
        elif kind == "pressure":
            sp.pressure(call[1] * P)
        elif kind == "types":
            sp.touch("a", call[1], P, "write")
    except ModelInputError as exc:
        assert str(exc)                       # a message naming the problem
        after = (sp.states("a"), sp.faults, sp.charged_pages)
        assert before[0].tolist() == after[0].tolist() and before[1:] == after[1:]
        return
    except OOMKill:
        return                                # a valid touch that did not fit the budget
    # it was valid after all (e.g. a touch inside the region): the space must still be sound
    check_invariants(sp)
    assert kind in ("touch", "mmap")


scenario_steps = st.lists(st.one_of(
    st.builds(Mmap, st.sampled_from(NAMES), st.integers(1, 64).map(lambda n: n * P), st.booleans()),
    st.builds(Munmap, st.sampled_from(NAMES)),
    st.builds(Touch, st.sampled_from(NAMES), st.integers(0, 8).map(lambda n: n * P),
              st.integers(1, 8).map(lambda n: n * P), st.sampled_from(("read", "write"))),
    st.builds(Madvise, st.sampled_from(NAMES), st.integers(0, 80).map(lambda n: n * P),
              st.integers(0, 80).map(lambda n: n * P), st.sampled_from(ADVICE)),
    st.builds(Pressure, st.integers(1, 32).map(lambda n: n * P)),
), max_size=25)


@SETTINGS
@given(steps=scenario_steps, budget=budget_strategy, version=st.sampled_from(VERSIONS), swap=st.booleans())
def test_play_never_crashes_on_valid_scenarios(steps, budget, version, swap):
    # keep only steps that are valid in sequence (region mapped, touch inside it)
    mapped: dict[str, int] = {}
    valid = []
    for s in steps:
        if isinstance(s, Mmap):
            if s.region in mapped:
                continue
            mapped[s.region] = s.length
        elif isinstance(s, Munmap):
            if s.region not in mapped:
                continue
            del mapped[s.region]
        elif isinstance(s, (Touch, Madvise)):
            if s.region not in mapped or (isinstance(s, Touch) and s.offset + s.length > mapped[s.region]):
                continue
        valid.append(s)
    sc = Scenario(steps=tuple(valid), memory_limit=None if budget is None else budget * P)
    rows = play(sc, kernel_version=version, swap=swap)
    assert [r.step for r in rows] == list(range(len(rows)))
    assert len(rows) == len(valid) or rows[-1].error == "OOM_KILL"
    for r in rows:
        assert r.error in (None, "EINVAL", "ENOMEM", "OOM_KILL")
        assert 0 <= r.lazyfree_pages <= r.rss_pages and r.faults >= 0
        assert (r.zero_pages is not None) == (r.op == "touch" and r.error is None
                                              and valid[r.step].access == "read")
