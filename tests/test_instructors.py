"""The instructors' page agrees with the book: chapter list, quiz topics, commands it shows."""
from __future__ import annotations

import re
import subprocess
import sys

from bookmd import ROOT, toc_chapters

PAGE = (ROOT / "book" / "instructors.md").read_text()


def _title(name: str) -> str:
    text = (ROOT / "book" / f"{name}.md").read_text()
    return re.search(r"^# (.+)$", text, flags=re.M).group(1).strip()


def test_chapter_table_lists_the_toc_chapters_by_title():
    rows = re.findall(r"^\| (\d+)\. ([^|]+?) \|", PAGE, flags=re.M)
    listed = [(int(n), title.replace("`", "")) for n, title in rows]
    want = [(int(name[:2]), _title(name).replace("`", "")) for name in toc_chapters()]
    assert listed == want


def test_quiz_topics_are_the_generators_topics():
    from models import quiz
    table = re.search(r"\| Topic \| Chapters that use it \|\n\|[-|]+\|\n((?:\|.*\|\n)+)", PAGE).group(1)
    topics = re.findall(r"^\| `([a-z-]+)` \|", table, flags=re.M)
    assert sorted(topics) == sorted(quiz.TOPICS)
    # each listed chapter really generates that topic
    for topic, chapters in re.findall(r"^\| `([a-z-]+)` \| ([\d, ]+) \|", table, flags=re.M):
        for n in (int(c) for c in chapters.split(",")):
            [name] = [c for c in toc_chapters() if int(c[:2]) == n]
            text = (ROOT / "book" / f"{name}.md").read_text()
            assert re.search(rf'quiz\.generate\([^)]*"{topic}"', text), f"chapter {n} does not use {topic!r}"


def test_the_commands_on_the_page_run():
    for line in re.findall(r"^python -m models quiz ([^#\n]+)", PAGE, flags=re.M):
        args = line.split()
        out = subprocess.run([sys.executable, "-m", "models", "quiz", *args], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, f"python -m models quiz {line}: {out.stderr}"
        assert "A program runs these steps" in out.stdout
        assert ("Answers (page model" in out.stdout) == ("--answers" in args)
    assert (ROOT / "scripts" / "build-student-edition").stat().st_mode & 0o111
