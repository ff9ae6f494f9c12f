"""``python -m models quiz``: seeded "predict the outcome" problems, answered by the page model.

In the spirit of the OSTEP homework simulators: a seed picks a scenario, the student predicts what
the kernel reports after each step, and ``--answers`` prints what the model computes.  Every quiz
is an ordinary scenario (``--scenario-json`` prints it), so the same problem can be played on the
reader's real kernel with ``python -m models run FILE --engine kernel``; the test suite does exactly
that for the quizzes whose kernel profile is the machine's own.

Topics:

* ``faults``  -- demand paging: reads map the zero page, writes allocate (FACTS 1-2);
* ``madvise`` -- MADV_DONTNEED vs MADV_FREE, rewrites, and the kernel-version differences
  (FACTS 6, 10-15, 23-25);
* ``reclaim`` -- a memory budget, lazily freed pages reclaimed oldest first, OOM (FACTS 18-22, E7);
* ``malloc``  -- free() and malloc_trim on the glibc-like allocator model (``models.quiz.malloc``,
  chapter 3's exercise; FACTS 32-37, 39);
* ``go``      -- a Go service's release, answered by the Go runtime model (``models.quiz.go``,
  chapter 7's "predict the dashboard"; FACTS 14-15, 23, 41-44).

:func:`generate` and :data:`TOPICS` are the page-model topics (a :class:`Quiz` is a scenario);
the ``malloc`` and ``go`` quizzes are not scenarios and have their own generators, which the CLI
reaches through :data:`CLI_TOPICS`.  Without ``--topic`` the seed picks among :data:`TOPICS`, as it
always has, so a seed an instructor handed out still prints the same problem.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass, field
from typing import Optional

from models.errors import ModelInputError
from models.scenario.format import Madvise, Mmap, Pressure, Scenario, StepResult, Touch
from models.scenario.parse import scenario_to_json
from models.units import PAGE_SIZE

TOPICS = ("faults", "madvise", "reclaim")
#: Every topic ``python -m models quiz --topic`` takes.
CLI_TOPICS = TOPICS + ("malloc", "go")
MIB = 1 << 20
PAGES_PER_MIB = MIB // PAGE_SIZE

#: Kernel profiles a madvise quiz may be set on, and what makes each one interesting.
MADVISE_KERNELS = (("4.4", False), ("4.9", False), ("4.9", True), ("6.18", False))


@dataclass(frozen=True)
class Quiz:
    seed: int
    topic: str
    scenario: Scenario
    kernel_version: str = "6.18"
    swap: bool = False
    #: indices of the steps whose outcome the student is asked to predict
    asked: tuple[int, ...] = field(default=())

    @property
    def kernel_checkable(self) -> bool:
        """True when the quiz's kernel profile is a current kernel without swap, like CI's machine."""
        return self.kernel_version.startswith("6.") and not self.swap


def _mib(rng: random.Random, low: int, high: int, step: int = 4) -> int:
    return rng.randrange(low, high + 1, step)


def _quiz_faults(rng: random.Random) -> tuple[Scenario, str, bool]:
    size = _mib(rng, 16, 64)
    read = _mib(rng, 4, size)
    write_start = _mib(rng, 0, size - 4)
    write = _mib(rng, 4, size - write_start)
    steps = [Mmap("buf", size * MIB),
             Touch("buf", 0, read * MIB, "read"),
             Touch("buf", write_start * MIB, write * MIB, "write"),
             Touch("buf", 0, size * MIB, "read")]
    return Scenario(tuple(steps), name="quiz-faults"), "6.18", False


def _quiz_madvise(rng: random.Random) -> tuple[Scenario, str, bool]:
    kernel, swap = rng.choice(MADVISE_KERNELS)
    size = _mib(rng, 16, 64)
    advice = rng.choice(("MADV_FREE", "MADV_DONTNEED"))
    freed = _mib(rng, 4, size)
    rewrite = _mib(rng, 0, freed) if freed > 4 else 4
    steps = [Mmap("heap", size * MIB),
             Touch("heap", 0, size * MIB, "write"),
             Madvise("heap", 0, freed * MIB, advice)]
    if rewrite:
        steps.append(Touch("heap", 0, rewrite * MIB, "write"))
    steps.append(Touch("heap", 0, size * MIB, "read"))
    return Scenario(tuple(steps), name="quiz-madvise"), kernel, swap


def _quiz_reclaim(rng: random.Random) -> tuple[Scenario, str, bool]:
    old, new = _mib(rng, 16, 48), _mib(rng, 16, 48)
    limit = old + new + _mib(rng, 8, 32)
    # Either a pressure the lazily freed pages can absorb, or one that must end in an OOM kill.
    # An absorbable one leaves at least 24 MiB lazily freed: the real kernel reclaims 1-2 % more
    # than the overshoot (FACTS E7), a difference that must stay small beside what is left.
    absorbable = rng.random() < 0.7
    headroom = limit - old - new
    pressure = (_mib(rng, headroom + 8, headroom + old + new - 24) if absorbable
                else limit + _mib(rng, 8, 32))
    steps = [Mmap("old", old * MIB), Touch("old", 0, old * MIB, "write"),
             Mmap("new", new * MIB), Touch("new", 0, new * MIB, "write"),
             Madvise("old", 0, old * MIB, "MADV_FREE"),
             Madvise("new", 0, new * MIB, "MADV_FREE"),
             Pressure(pressure * MIB),
             Touch("old", 0, old * MIB, "read")]
    return (Scenario(tuple(steps), memory_limit=limit * MIB, name="quiz-reclaim"), "6.18", False)


_GENERATORS = {"faults": _quiz_faults, "madvise": _quiz_madvise, "reclaim": _quiz_reclaim}


def generate(seed: int, topic: Optional[str] = None) -> Quiz:
    """The quiz for ``seed`` (any int >= 0); ``topic`` one of TOPICS, or None to let the seed pick."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ModelInputError(f"seed must be a whole number >= 0, got {seed!r}")
    if topic is not None and topic not in TOPICS:
        raise ModelInputError(f"topic must be one of {', '.join(TOPICS)}, got {topic!r}")
    rng = random.Random(seed)
    topic = topic or rng.choice(TOPICS)
    scenario, kernel, swap = _GENERATORS[topic](rng)
    asked = tuple(i for i, step in enumerate(scenario.steps) if step.op != "mmap")
    return Quiz(seed=seed, topic=topic, scenario=scenario, kernel_version=kernel, swap=swap,
                asked=asked)


def answers(quiz: Quiz) -> list[StepResult]:
    """What the page model says happens at every step (the answer key)."""
    from models.kernel.replay import play
    return play(quiz.scenario, kernel_version=quiz.kernel_version, swap=quiz.swap)


def _describe(step) -> str:
    def mib(n: int) -> str:
        return f"{n // MIB} MiB" if n % MIB == 0 else f"{n} bytes"
    if step.op == "mmap":
        kind = "shared" if step.shared else "private"
        return f"mmap a {mib(step.length)} {kind} anonymous region '{step.region}'"
    if step.op == "touch":
        verb = "write one byte to" if step.access == "write" else "read one byte from"
        return (f"{verb} every page of '{step.region}' in [{mib(step.offset)}, "
                f"{mib(step.offset + step.length)})")
    if step.op == "madvise":
        return (f"madvise('{step.region}' + {mib(step.offset)}, {mib(step.length)}, "
                f"{step.advice})")
    if step.op == "pressure":
        return f"another allocation of {mib(step.length)} is written and held (memory pressure)"
    if step.op == "munmap":
        return f"munmap '{step.region}'"
    raise AssertionError(step.op)


def problem_text(quiz: Quiz) -> str:
    swap = "with swap" if quiz.swap else "without swap"
    lines = [f"Quiz {quiz.topic} #{quiz.seed}: Linux {quiz.kernel_version}, {swap}, 4 KiB pages."]
    if quiz.scenario.memory_limit is not None:
        lines.append(f"The process runs in a memory cgroup limited to "
                     f"{quiz.scenario.memory_limit // MIB} MiB above its baseline.")
    lines.append("A program runs these steps:")
    for i, step in enumerate(quiz.scenario.steps):
        lines.append(f"  {i}. {_describe(step)}")
    lines.append("")
    lines.append("For each of steps " + ", ".join(map(str, quiz.asked)) + ", predict: the RSS and "
                 "LazyFree of the program's regions after the step (MiB, as /proc/PID/smaps "
                 "reports them), the number of minor page faults the step takes, for reads how "
                 "many MiB read back as zeros, and whether the step fails (EINVAL, ENOMEM, or an "
                 "OOM kill, after which nothing else runs).")
    return "\n".join(lines)


def answer_text(quiz: Quiz, results: list[StepResult]) -> str:
    def mib(pages: int) -> str:
        return f"{pages / PAGES_PER_MIB:g}"
    lines = [f"Answers (page model, Linux {quiz.kernel_version}"
             f"{', swap' if quiz.swap else ''}):",
             f"  {'step':>4}  {'RSS MiB':>8}  {'LazyFree MiB':>12}  {'faults':>7}  "
             f"{'zeros MiB':>9}  outcome"]
    for r in results:
        if r.step not in quiz.asked:
            continue
        zeros = "" if r.zero_pages is None else mib(r.zero_pages)
        lines.append(f"  {r.step:>4}  {mib(r.rss_pages):>8}  {mib(r.lazyfree_pages):>12}  "
                     f"{r.faults:>7}  {zeros:>9}  {r.error or 'ok'}")
    if len(results) < len(quiz.scenario.steps):
        lines.append(f"  (the process was OOM-killed at step {results[-1].step}; "
                     f"no later step ran)")
    if tuple(int(part) for part in quiz.kernel_version.split(".")[:2]) < (4, 12):
        lines.append("  Note: kernels before 4.12 have no LazyFree field in smaps, so it reads 0 "
                     "even where pages are lazily freed.")
    return "\n".join(lines)


def _other_topic(seed: int, topic: str, with_answers: bool, as_json: bool) -> str:
    """The text (or JSON) of a ``malloc`` or ``go`` quiz; its answers come from that model."""
    if topic == "malloc":
        from models.quiz import malloc as gen
        q = gen.malloc_quiz(seed)
        problem = gen.quiz_problem_text(q)
        answer = lambda: ("Answers (glibc-like allocator model):\n" + gen.quiz_answer_text(q) + "\n"
                          + gen.quiz_rule(q))
    else:
        from models.quiz import go as gen
        q = gen.go_quiz(seed)
        problem = gen.go_quiz_problem(q)
        answer = lambda: "Answers (Go runtime model):\n" + gen.go_quiz_answer_text(q)
    if as_json:
        return json.dumps(gen.to_json(q, with_answers), indent=1)
    return problem + ("\n\n" + answer() if with_answers else "")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models quiz",
        description="Print a seeded 'predict the outcome' problem; --answers adds the answer key.")
    parser.add_argument("--seed", type=int, required=True, help="any whole number >= 0")
    parser.add_argument("--topic", choices=CLI_TOPICS,
                        help=f"default: the seed picks one of {', '.join(TOPICS)}")
    parser.add_argument("--answers", action="store_true", help="also print the answers")
    parser.add_argument("--json", action="store_true",
                        help="print the quiz (scenario, kernel, and with --answers the results) as JSON")
    parser.add_argument("--scenario-json", action="store_true",
                        help="print only the scenario, in the format 'python -m models run' reads "
                             f"(topics {', '.join(TOPICS)})")
    args = parser.parse_args(argv)
    if args.topic in ("malloc", "go"):
        if args.scenario_json:
            print(f"python -m models quiz: --scenario-json needs a page-model topic "
                  f"({', '.join(TOPICS)}); a {args.topic} quiz is not a scenario", file=sys.stderr)
            return 2
        try:
            print(_other_topic(args.seed, args.topic, args.answers, args.json))
        except ModelInputError as exc:
            print(f"python -m models quiz: {exc}", file=sys.stderr)
            return 2
        return 0
    try:
        quiz = generate(args.seed, args.topic)
        results = answers(quiz) if args.answers else None
    except ModelInputError as exc:
        print(f"python -m models quiz: {exc}", file=sys.stderr)
        return 2
    if args.scenario_json:
        print(json.dumps(scenario_to_json(quiz.scenario), indent=1))
    elif args.json:
        out = {"seed": quiz.seed, "topic": quiz.topic, "kernel_version": quiz.kernel_version,
               "swap": quiz.swap, "asked": list(quiz.asked),
               "scenario": scenario_to_json(quiz.scenario), "problem": problem_text(quiz)}
        if results is not None:
            out["answers"] = [r.to_json() for r in results]
        print(json.dumps(out, indent=1))
    else:
        print(problem_text(quiz))
        if results is not None:
            print()
            print(answer_text(quiz, results))
    return 0
