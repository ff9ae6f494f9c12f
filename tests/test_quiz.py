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
