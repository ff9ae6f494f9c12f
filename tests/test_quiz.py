"""The quiz generator: seeded, valid, answered by the model, and right about the real kernel."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT, need
from models.errors import ModelInputError
from models.quiz import TOPICS, answers, generate, problem_text
from models.scenario.parse import parse_scenario, scenario_to_json

PAGES_PER_MIB = 256


def test_same_seed_same_quiz_and_seeds_differ():
    assert generate(7, "madvise") == generate(7, "madvise")
    scenarios = {json.dumps(scenario_to_json(generate(s, "faults").scenario)) for s in range(20)}
    assert len(scenarios) > 10


@pytest.mark.parametrize("topic", TOPICS)
def test_every_generated_scenario_is_valid_and_answerable(topic):
    for seed in range(40):
        quiz = generate(seed, topic)
        # the scenario survives a round trip through the runner's own parser
        assert parse_scenario(scenario_to_json(quiz.scenario)) == quiz.scenario
        results = answers(quiz)
        assert results and all(r.lazyfree_pages <= r.rss_pages for r in results)
        assert f"#{seed}" in problem_text(quiz)


def test_faults_quiz_answers_follow_demand_paging():
    for seed in range(30):
        quiz = generate(seed, "faults")
        _, read, write, reread = quiz.scenario.steps
        r = answers(quiz)
        assert r[1].faults == read.length // 4096 and r[1].rss_pages == 0      # zero page: no RSS
        assert r[2].rss_pages == write.length // 4096                          # writes allocate
        assert r[2].faults == write.length // 4096 + 0                         # one fault per page (CoW or new)
        assert r[3].zero_pages == (reread.length - write.length) // 4096


def test_reclaim_quiz_either_absorbs_the_pressure_or_ends_in_oom():
    kinds = set()
    for seed in range(40):
        quiz = generate(seed, "reclaim")
        r = answers(quiz)
        limit_pages = quiz.scenario.memory_limit // 4096
        if r[-1].error == "OOM_KILL":
            kinds.add("oom")
            assert r[-1].op == "pressure" and len(r) == 7
        else:
            kinds.add("absorbed")
            pressure_pages = quiz.scenario.steps[6].length // 4096
            assert r[6].rss_pages + pressure_pages <= limit_pages
            # only lazily freed pages were taken, the oldest ('old') first, and reading 'old'
            # back gives zeros exactly where its pages were reclaimed
            old_pages = quiz.scenario.steps[0].length // 4096
            reclaimed = r[5].lazyfree_pages - r[6].lazyfree_pages
            assert r[6].rss_pages == r[6].lazyfree_pages and reclaimed > 0
            assert r[7].zero_pages == min(reclaimed, old_pages)
    assert kinds == {"oom", "absorbed"}


def test_madvise_quiz_covers_kernel_profiles():
    seen = {(generate(s, "madvise").kernel_version, generate(s, "madvise").swap) for s in range(60)}
    assert ("4.4", False) in seen and ("6.18", False) in seen and ("4.9", True) in seen
    for seed in range(60):
        quiz = generate(seed, "madvise")
        r = answers(quiz)
        advice = quiz.scenario.steps[2].advice
        if quiz.kernel_version == "4.4" and advice == "MADV_FREE":
            assert r[2].error == "EINVAL"
        elif advice == "MADV_FREE" and quiz.kernel_version == "4.9" and not quiz.swap:
            assert r[2].rss_pages < r[1].rss_pages          # acts as DONTNEED without swap (FACTS 15)
        elif advice == "MADV_FREE":
            assert r[2].rss_pages == r[1].rss_pages and r[2].error is None


def test_bad_seed_and_topic_are_clear_errors():
    with pytest.raises(ModelInputError, match="seed"):
        generate(-1)
    with pytest.raises(ModelInputError, match="topic must be one of"):
        generate(1, "swap")


def test_cli_prints_problem_and_answers():
    run = lambda *a: subprocess.run([sys.executable, "-m", "models", "quiz", *a], cwd=ROOT,
                                    capture_output=True, text=True)
    plain = run("--seed", "3", "--topic", "faults")
    assert plain.returncode == 0 and "predict" in plain.stdout and "Answers" not in plain.stdout
    full = run("--seed", "3", "--topic", "faults", "--answers")
    assert full.returncode == 0 and "Answers" in full.stdout
    data = json.loads(run("--seed", "3", "--answers", "--json").stdout)
    assert data["seed"] == 3 and len(data["answers"]) >= 1
    bad = run("--seed", "3", "--topic", "nope")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


@pytest.mark.parametrize("seed,topic", [(1, "faults"), (2, "faults"), (3, "reclaim"), (5, "reclaim"),
                                        (11, "madvise"), (8, "madvise")])
def test_answer_key_agrees_with_the_real_kernel(seed, topic):
    from models.realkernel.engine import kernel_engine_support, play_on_kernel
    from models.realkernel.fidelity import compare, side_by_side
    quiz = generate(seed, topic)
    if not quiz.kernel_checkable:
        quiz = generate(seed + 1000, topic)
    need(quiz.kernel_checkable, f"quiz {topic} #{seed} is set on Linux {quiz.kernel_version}")
    ok, why = kernel_engine_support(quiz.scenario)
    need(ok, why)
    kernel = play_on_kernel(quiz.scenario)
    model = answers(quiz)
    problems = compare(quiz.scenario, kernel, model)
    assert not problems, "\n".join(map(str, problems)) + "\n" + side_by_side(quiz.scenario, kernel, model)


# ------------------------------------------------------------------ the malloc and go topics

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "models", "quiz", *args], cwd=ROOT, capture_output=True, text=True)


def test_cli_topics_are_the_page_topics_plus_malloc_and_go():
    from models.quiz import CLI_TOPICS
    assert CLI_TOPICS == TOPICS + ("malloc", "go")
    # without --topic the seed still picks among the page-model topics (handed-out seeds keep their problem)
    assert {generate(s).topic for s in range(60)} == set(TOPICS)


def test_malloc_quiz_is_seeded_and_answered_by_the_allocator_model():
    from models.malloc import parse_sequence, replay
    from models.quiz.malloc import malloc_quiz, quiz_exercise
    assert malloc_quiz(12) == malloc_quiz(12) and quiz_exercise(12) == quiz_exercise(12)
    assert len({json.dumps(malloc_quiz(s).ops) for s in range(30)}) > 20
    for seed in range(30):
        q = malloc_quiz(seed)
        # the answer key is the model's replay of exactly these operations
        assert list(q.rows) == replay(parse_sequence(list(q.ops)))
        assert q.ops[-1]["op"] in ("free", "malloc_trim")
    with pytest.raises(ModelInputError, match="seed"):
        malloc_quiz(2 ** 32)


def test_go_quiz_is_seeded_and_answered_by_the_go_model():
    from models.goruntime import simulate_release
    from models.quiz.go import go_quiz, go_quiz_answers
    assert go_quiz(17) == go_quiz(17)
    assert len({go_quiz(s) for s in range(30)}) > 20
    for seed in range(8):
        q = go_quiz(seed)
        answers_ = dict(go_quiz_answers(q))
        after = answers_["after the release"]
        # recomputed independently from the Go model's own timeline
        tl = simulate_release(go_version=q.go_version, godebug=None if q.madvdontneed is None
                              else f"madvdontneed={q.madvdontneed}", kernel_version=q.kernel, swap=q.swap,
                              heap=f"{q.heap_mib}MiB", liveness=q.liveness, release=q.release,
                              wait=q.wait or 8.0, memory_limit=q.limit_mib * (1 << 20) if q.limit_mib else None,
                              pressure=q.second_mib * (1 << 20))
        assert after["HeapReleased"] in set(tl.heap_released_pages / PAGES_PER_MIB)
        assert after["RSS"] in set(tl.rss_pages / PAGES_PER_MIB)
        assert after["RSS - LazyFree"] == pytest.approx(after["RSS"] - after["LazyFree"])
        assert ("after the second allocation" in answers_) == bool(q.limit_mib and "pressure" in list(tl.step))
    with pytest.raises(ModelInputError, match="seed"):
        go_quiz(-3)


def test_viz_modules_reexport_the_moved_generators():
    from models.quiz import go as qgo, malloc as qmalloc
    from models.viz import free, go_versions
    assert free.quiz_exercise is qmalloc.quiz_exercise and free.malloc_quiz is qmalloc.malloc_quiz
    assert go_versions.go_quiz is qgo.go_quiz and go_versions.go_quiz_answer_text is qgo.go_quiz_answer_text


@pytest.mark.parametrize("topic,seed,marker", [("malloc", 12, "glibc-like allocator model"),
                                               ("go", 17, "Go runtime model")])
def test_cli_malloc_and_go_topics(topic, seed, marker):
    plain = _cli("--seed", str(seed), "--topic", topic)
    assert plain.returncode == 0 and "Predict" in plain.stdout and marker not in plain.stdout
    full = _cli("--seed", str(seed), "--topic", topic, "--answers")
    assert full.returncode == 0 and full.stdout.startswith(plain.stdout.rstrip("\n")) and marker in full.stdout
    assert _cli("--seed", str(seed), "--topic", topic, "--answers").stdout == full.stdout    # deterministic
    data = json.loads(_cli("--seed", str(seed), "--topic", topic, "--json", "--answers").stdout)
    assert data["seed"] == seed and data["topic"] == topic and data["answers"]
    assert "answers" not in json.loads(_cli("--seed", str(seed), "--topic", topic, "--json").stdout)
    if topic == "malloc":
        from models.quiz.malloc import malloc_quiz
        assert [r["rss_pages"] for r in data["answers"]] == [r.rss_pages for r in malloc_quiz(seed).rows]
    else:
        from models.quiz.go import go_quiz, go_quiz_answers
        assert [a["mib"] for a in data["answers"]] == [d for _, d in go_quiz_answers(go_quiz(seed))]
    for bad in (("--seed", "-1", "--topic", topic), ("--seed", "1", "--topic", topic, "--scenario-json")):
        out = _cli(*bad)
        assert out.returncode == 2 and "Traceback" not in out.stderr and out.stderr.strip()
