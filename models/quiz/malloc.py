"""``python -m models quiz --topic malloc``: a seeded malloc/free sequence, answered by the
glibc-like allocator model (``models.malloc``).  Chapter 3's exercise
(:func:`models.viz.free.quiz_exercise`) is this generator's text.

The last operation is a ``free`` or ``malloc_trim(0)``: the student predicts whether RSS goes down
and which system calls it makes; the answer key is the model's per-operation table and the rule
that decided the last operation (mmap threshold, trim threshold, malloc_trim; FACTS 32-37, 39).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from models.errors import ModelInputError
from models.malloc import parse_sequence, replay
from models.units import parse_size

KiB = 1024
QUIZ_SIZES = ("24KiB", "64KiB", "100KiB", "200KiB", "1MiB")
MAX_SEED = 2 ** 32 - 1


def syscall_words(counts: dict) -> str:
    made = [f"{n} {k}" for k, n in counts.items() if n]
    return ", ".join(made) if made else "no system call"


@dataclass(frozen=True)
class MallocQuiz:
    seed: int
    ops: tuple
    rows: tuple                    # Observation per operation (model)

    @property
    def last(self):
        return self.rows[-1]

    def rss_change_pages(self) -> int:
        return self.rows[-1].rss_pages - (self.rows[-2].rss_pages if len(self.rows) > 1 else 0)


def malloc_quiz(seed: int) -> MallocQuiz:
    """A short malloc/free sequence drawn from ``seed``; the last operation is a ``free`` or
    ``malloc_trim(0)``, and at least one block is at or above the 128 KiB threshold."""
    import numpy as np             # numpy integers are accepted seeds (a notebook's arange)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise ModelInputError(f"seed must be a whole number in 0..{MAX_SEED}, got {seed!r}")
    rng = random.Random(int(seed))
    ops: list[dict] = []
    if rng.random() < 0.2:
        ops.append({"op": "mallopt", "param": "M_MMAP_THRESHOLD", "value": 128 * KiB})
    n = rng.randint(3, 5)
    sizes = [rng.choice(QUIZ_SIZES) for _ in range(n)]
    if all(parse_size(s) < 128 * KiB for s in sizes):
        sizes[rng.randrange(n)] = rng.choice(("200KiB", "1MiB"))
    names = list("ABCDE"[:n])
    ops += [{"op": "malloc", "id": x, "size": s} for x, s in zip(names, sizes)]
    live = list(names)
    for _ in range(rng.randint(1, 2)):
        victim = rng.choice(live[:-1] if len(live) > 1 else live)
        live.remove(victim)
        ops.append({"op": "free", "id": victim})
    if rng.random() < 0.5:                    # reuse: a new block of a freed size
        ops.append({"op": "malloc", "id": "F", "size": rng.choice(sizes)})
        live.append("F")
    if rng.random() < 0.3:
        ops.append({"op": "malloc_trim", "pad": 0})
    else:
        ops.append({"op": "free", "id": rng.choice(live)})
    return MallocQuiz(int(seed), tuple(ops), tuple(replay(parse_sequence(ops))))


def op_words(op: dict) -> str:
    if op["op"] == "malloc":
        return f"p{op['id']} = malloc({op['size'].replace('KiB', ' KiB').replace('MiB', ' MiB')}); memset it"
    if op["op"] == "free":
        return f"free(p{op['id']})"
    if op["op"] == "malloc_trim":
        return "malloc_trim(0)"
    return "mallopt(M_MMAP_THRESHOLD, 128 * 1024)"


def quiz_problem_text(quiz: MallocQuiz) -> str:
    lines = [f"Seed {quiz.seed}. A fresh single-threaded C program (glibc, 64-bit, default settings "
             f"unless mallopt is called) runs:"]
    lines += [f"  {i + 1}. {op_words(op)}" for i, op in enumerate(quiz.ops)]
    lines.append(f"Predict for operation {len(quiz.ops)}: does RSS go down, and by roughly how much? "
                 f"Which system calls does it make (brk, mmap, munmap, madvise)?")
    return "\n".join(lines)


def quiz_rule(quiz: MallocQuiz) -> str:
    """The rule that decided the last operation, in one sentence."""
    last, op = quiz.last, quiz.ops[-1]
    prev = quiz.rows[-2]
    if op["op"] == "malloc_trim":
        n, brk = last.syscalls["madvise"], last.syscalls["brk"]
        parts = []
        if n:
            parts.append(f"released the whole free pages inside {n} free chunk(s) with "
                         f"madvise(MADV_DONTNEED)")
        else:
            parts.append("found no free chunk with a whole free page inside it (no madvise)")
        parts.append("trimmed the top chunk with brk, keeping pad = 0" if brk else
                     "had no top chunk to trim")
        return "malloc_trim(0) " + " and ".join(parts) + "; whatever it gives back leaves RSS in the call."
    if last.syscalls["munmap"]:
        raised = last.mmap_threshold != prev.mmap_threshold
        return ("The block was mapped (at least the mmap threshold when it was allocated), so free "
                "unmapped it at once" + (f"; this free also raised the threshold to "
                                         f"{last.mmap_threshold:,} bytes and the trim threshold to "
                                         f"{last.trim_threshold:,}." if raised else "."))
    if last.syscalls["brk"]:
        return (f"The block merged into the top chunk, which reached the trim threshold "
                f"({prev.trim_threshold:,} bytes): free moved the break down with brk, keeping the "
                f"128 KiB top pad.")
    return ("The block was in the brk heap and the top chunk stayed below the trim threshold "
            f"({prev.trim_threshold:,} bytes) (or the block is a hole below a live block): free "
            "made no system call and RSS did not move.")


def quiz_answer_text(quiz: MallocQuiz) -> str:
    lines = [f"{'op':>3} {'operation':36} {'where':6} {'heap KiB':>9} {'RSS KiB':>9} {'faults':>7}  syscalls"]
    for i, (op, r) in enumerate(zip(quiz.ops, quiz.rows)):
        lines.append(f"{i + 1:>3} {op_words(op):36} {r.placement or '':6} {r.heap_size // KiB:>9,} "
                     f"{r.rss_pages * 4:>9,} {r.faults:>7,}  {syscall_words(r.syscalls)}")
    d = quiz.rss_change_pages() * 4
    lines.append("")
    change = (f"goes down by {-d:,} KiB" if d < 0 else f"goes up by {d:,} KiB" if d > 0
              else "does not change")
    lines.append(f"Operation {len(quiz.ops)}: RSS {change}; system calls: "
                 f"{syscall_words(quiz.last.syscalls)}.")
    return "\n".join(lines)


def quiz_exercise(seed: int) -> tuple[str, str]:
    """(problem, answer key) of :func:`malloc_quiz` ``seed`` as plain text; the answer key is the
    model's per-operation table plus the rule that decided the last operation."""
    quiz = malloc_quiz(seed)
    return quiz_problem_text(quiz), quiz_answer_text(quiz) + "\n" + quiz_rule(quiz)


def to_json(quiz: MallocQuiz, with_answers: bool) -> dict:
    out = {"seed": quiz.seed, "topic": "malloc", "ops": list(quiz.ops), "problem": quiz_problem_text(quiz)}
    if with_answers:
        out["answers"] = [r.to_json() for r in quiz.rows]
        out["rule"] = quiz_rule(quiz)
    return out
