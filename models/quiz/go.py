"""``python -m models quiz --topic go``: a seeded Go service, answered by the Go runtime model
(``models.goruntime``) driving the page model.  Chapter 7's "predict the dashboard" exercise
(``models.viz.go_versions.go_quiz``) is this generator's text.

A seed draws a Go version, GODEBUG=madvdontneed, a kernel profile (with or without swap), a heap,
its liveness, how the heap is given back (FreeOSMemory or the background scavenger) and, half the
time, a memory cgroup limit and a second allocation; the student predicts RSS, LazyFree, cgroup
usage, working set and HeapReleased after the release (FACTS 14-15, 23, 41-44).

Chapter 6's Go exercise (``models.viz.go_release.go_quiz``) is a narrower variant on the figures of
that chapter and stays there: it draws only from those figures' choices, so its answers are the
figures' numbers.
"""
from __future__ import annotations

import random
import re
import textwrap
from dataclasses import asdict, dataclass
from typing import Optional

from models.errors import ModelInputError
from models.units import PAGE_SIZE

MiB = 1 << 20
PAGES_PER_MIB = MiB // PAGE_SIZE
#: Quiz text is wrapped to this width (it is shown preformatted).
WRAP = 66
QUIZ_VERSIONS = ("1.11", "1.12", "1.13", "1.14", "1.16", "1.19")
QUIZ_KERNELS = (("4.4", False), ("4.9", False), ("4.9", True), ("5.10", False), ("6.18", False))


def kernel_has_lazyfree(release: str) -> bool:
    """smaps has a LazyFree field from Linux 4.12 on (FACTS 23)."""
    m = re.match(r"(\d+)\.(\d+)", release or "")
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= (4, 12)


@dataclass(frozen=True)
class GoQuiz:
    seed: int
    go_version: str
    madvdontneed: Optional[str]
    kernel: str
    swap: bool
    heap_mib: int
    liveness: float
    release: str
    wait: float
    limit_mib: Optional[int]
    second_mib: int


def go_quiz(seed: int) -> GoQuiz:
    """A seeded Go service for "predict the dashboard" (any int >= 0)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ModelInputError(f"seed must be a whole number >= 0, got {seed!r}")
    rng = random.Random(f"go-dashboard-{seed}")
    v = rng.choice(QUIZ_VERSIONS)
    madv = None if v == "1.11" else rng.choice((None, None, "0", "1"))
    kernel, swap = rng.choice(QUIZ_KERNELS)
    heap = rng.choice((128, 192, 256, 384))
    liveness = rng.choice((0.25, 0.5))
    release = rng.choice(("freeosmemory", "scavenger"))
    wait = float(rng.choice((5, 30))) if release == "scavenger" else 0.0
    limit = second = None
    if rng.random() < 0.5:
        limit = int(heap * 1.25)
        second = int(heap * (1 - liveness) * 0.5)
    return GoQuiz(seed, v, madv, kernel, swap, heap, liveness, release, wait, limit, second or 0)


def quiz_run(q: GoQuiz):
    """The Go model's timeline of the quiz's program (``simulate_release``)."""
    from models.goruntime import simulate_release
    return simulate_release(go_version=q.go_version, godebug=None if q.madvdontneed is None
                            else f"madvdontneed={q.madvdontneed}", kernel_version=q.kernel, swap=q.swap,
                            heap=f"{q.heap_mib}MiB", liveness=q.liveness, release=q.release,
                            wait=q.wait or 8.0, memory_limit=q.limit_mib * MiB if q.limit_mib else None,
                            pressure=q.second_mib * MiB)


def go_quiz_problem(q: GoQuiz) -> str:
    godebug = "GODEBUG unset" if q.madvdontneed is None else f"GODEBUG=madvdontneed={q.madvdontneed}"
    release = ("then calls debug.FreeOSMemory()" if q.release == "freeosmemory"
               else f"then waits {q.wait:g} s for the background scavenger (if this version has one)")
    lines = [f"Seed {q.seed}. A Go {q.go_version} program ({godebug}) on Linux {q.kernel} "
             f"{'with' if q.swap else 'without'} swap allocates a {q.heap_mib} MiB heap of 8 KiB objects, "
             f"keeps {q.liveness:.0%} of it live, runs a GC, {release}."]
    if q.limit_mib:
        lines.append(f"It runs in a memory cgroup limited to {q.limit_mib} MiB; after the release, "
                     f"the same cgroup writes {q.second_mib} MiB of other memory.")
    lines.append("Predict after the release" + (" and after the second allocation" if q.limit_mib else "")
                 + ": RSS, LazyFree, RSS - LazyFree, cgroup usage, working set and HeapReleased (MiB).")
    return "\n".join(textwrap.fill(line, WRAP) for line in lines)


def go_quiz_answers(q: GoQuiz) -> list[tuple[str, dict]]:
    """[(moment, dashboard numbers in MiB)] computed by the Go model driving the kernel model."""
    tl = quiz_run(q)
    steps = list(tl.step)
    moments = [("after the release", int(tl.where("release")[0] if q.limit_mib and "pressure" in steps
                                            and steps.index("pressure") == tl.where("release")[0] else
                                            [i for i in tl.where("release") if steps[i] != "pressure"][-1]))]
    if q.limit_mib and "pressure" in steps:
        moments.append(("after the second allocation", steps.index("pressure")))
    out = []
    for name, i in moments:
        r = tl.sample(i)
        rss, lazy = r["rss_pages"] / PAGES_PER_MIB, r["lazyfree_pages"] / PAGES_PER_MIB
        usage = rss + r["pressure_rss_pages"] / PAGES_PER_MIB
        out.append((name, {"RSS": rss, "LazyFree": lazy, "RSS - LazyFree": rss - lazy, "cgroup usage": usage,
                           "working set": usage - lazy, "HeapReleased": r["heap_released_pages"] / PAGES_PER_MIB}))
    return out


def go_quiz_answer_text(q: GoQuiz) -> str:
    tl = quiz_run(q)
    meta = tl.meta
    lines = [f"Policy: {meta['policy']}", f"Advice configured: {meta['advice_configured']}; "
             f"used: {meta['advice_used']}" + (" (the runtime fell back after EINVAL)" if meta["fell_back_to_dontneed"] else "")]
    from models.kernel.profile import profile_for
    lines.append(profile_for(q.kernel, q.swap).describe())
    if not kernel_has_lazyfree(q.kernel):
        lines.append("smaps has no LazyFree field before Linux 4.12: the LazyFree below is the model's count.")
    if tl.oom.any():
        lines.append("The cgroup ran out of memory: OOM kill (nothing lazily freed was left to reclaim).")
    for name, d in go_quiz_answers(q):
        lines.append(f"{name}: " + ", ".join(f"{k} {v:.0f}" for k, v in d.items()) + " (MiB)")
    lines.append("(cgroup usage and working set: the model has no page cache, so a real container reads higher.)")
    return "\n".join(textwrap.fill(line, WRAP, subsequent_indent="  ") for line in lines)


def to_json(q: GoQuiz, with_answers: bool) -> dict:
    out = {"seed": q.seed, "topic": "go", "program": {k: v for k, v in asdict(q).items() if k != "seed"},
           "problem": go_quiz_problem(q)}
    if with_answers:
        tl = quiz_run(q)
        out["answers"] = [{"moment": name, "mib": numbers} for name, numbers in go_quiz_answers(q)]
        out["advice_used"] = tl.meta["advice_used"]
        out["oom"] = bool(tl.oom.any())
    return out
