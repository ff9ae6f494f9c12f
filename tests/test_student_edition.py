"""The student edition (scripts/build-student-edition): every exercise, no solution.

Solution texts are taken from the chapters' sources (runs of plain words, which render
unchanged) and searched for in every page of ``_build/student/html`` and in its downloadable
notebooks; each must also appear in the normal site ``_build/html`` (so the search can fail).
The edition is built by ``scripts/run-tests`` after the normal site; if it is missing or older
than the sources (``.sources-sha256``), this test builds it (minutes: every chapter is executed).
"""
from __future__ import annotations

import subprocess

import pytest

from bookmd import (ROOT, blocks, page_text, plain_phrases, solution_phrases, sources_sha256,
                    toc_chapters)

STUDENT = ROOT / "_build" / "student" / "html"


def _stale() -> bool:
    """No student edition yet, or one built from other sources than the current ones."""
    stamp = STUDENT / ".sources-sha256"
    return not stamp.exists() or stamp.read_text().strip() != sources_sha256()


@pytest.fixture(scope="module")
def student_site():
    if _stale():
        proc = subprocess.run([str(ROOT / "scripts" / "build-student-edition")], cwd=ROOT,
                              capture_output=True, text=True, timeout=3600)
        assert proc.returncode == 0, f"scripts/build-student-edition failed:\n{proc.stderr[-4000:]}"
    return STUDENT


def _sources():
    return {name: (ROOT / "book" / f"{name}.md").read_text() for name in toc_chapters()}


def test_the_sources_have_solutions_to_hide():
    for name, text in _sources().items():
        n = len(blocks(text, "solution"))
        assert n >= 2, f"{name}: {n} solutions found: is the parser right?"


def test_no_solution_text_in_the_student_edition(student_site, built_site):
    pages = {p: page_text(p.read_text()) for p in student_site.rglob("*.html")}
    assert len(pages) > len(toc_chapters())
    checked, controlled = 0, 0
    for name, text in _sources().items():
        normal = page_text((built_site / "book" / f"{name}.html").read_text())
        # The normal site shows the solutions: there each phrase must be found, which proves the
        # search would find a leak.  (Only where that page was built from the current source:
        # its exercises are all there.  scripts/run-tests builds both sites from one checkout.)
        current = all(ph in normal for _, body in blocks(text, "exercise") for ph in plain_phrases(body)[:2])
        for label, phrases in solution_phrases(text):
            if current and phrases:
                assert any(ph in normal for ph in phrases), \
                    f"{name} {label}: none of its solution's phrases is in the normal site " \
                    f"(parser out of step with the rendering?): {phrases[:3]}"
                controlled += 1
            for phrase in phrases:
                leaks = [str(p.relative_to(student_site)) for p, t in pages.items() if phrase in t]
                assert not leaks, f"{name} {label}: solution text {phrase!r} in the student edition: {leaks}"
                checked += 1
    assert checked >= 3 * len(toc_chapters()), f"only {checked} solution phrases checked"
    assert controlled, "no chapter of the normal site matches its source: build it (scripts/build-site)"


def test_every_exercise_is_in_the_student_edition(student_site):
    for name, text in _sources().items():
        page = page_text((student_site / "book" / f"{name}.html").read_text())
        exercises = blocks(text, "exercise")
        assert exercises, f"{name}: no exercise"
        for title, body in exercises:
            if title:
                assert title in page, f"{name}: exercise {title!r} missing from the student edition"
            for phrase in plain_phrases(body)[:2]:
                assert phrase in page, f"{name}: exercise text {phrase!r} missing from the student edition"


def test_student_notebooks_have_exercises_but_no_solutions(student_site):
    import nbformat
    for name, text in _sources().items():
        path = student_site / "notebooks" / f"{name}.ipynb"
        assert path.exists(), f"{path} missing"
        nb = nbformat.read(path, as_version=4)
        md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        assert "{exercise}" in md and "{solution}" not in md, name
        for _, phrases in solution_phrases(text):
            for phrase in phrases:
                assert phrase not in " ".join(md.split()), f"{name}: {phrase!r} in the student notebook"


def test_the_normal_site_keeps_its_solutions(built_site):
    for name in toc_chapters():
        page = (built_site / "book" / f"{name}.html").read_text()
        assert 'class="solution' in page, f"{name}: the normal site lost its solutions"
