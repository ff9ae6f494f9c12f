"""Every chapter page offers its notebook: a valid .ipynb on the site, linked from the page.

The notebook (``book/_ext/book_notebooks.py``) is the chapter's source converted by jupytext:
the same code cells, no outputs, a Python kernel, and nothing fetched from the network.
"""
from __future__ import annotations

import re

import nbformat
import pytest

from bookmd import ROOT, toc_chapters


@pytest.mark.parametrize("name", toc_chapters())
def test_chapter_page_links_a_valid_notebook(built_site, name):
    import jupytext

    page = (built_site / "book" / f"{name}.html").read_text()
    links = re.findall(r'<p class="chapter-notebook-download"><a href="([^"]+)"', page)
    assert len(links) == 1, f"{name}: {len(links)} notebook links on the page"
    target = (built_site / "book" / links[0]).resolve()
    assert target == (built_site / "notebooks" / f"{name}.ipynb").resolve(), links[0]
    assert not re.match(r"^[a-z]+://", links[0]), "the notebook must be served by the site"
    nb = nbformat.read(target, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["language"] == "python"
    source = jupytext.read(ROOT / "book" / f"{name}.md")
    want = [c.source for c in source.cells if c.cell_type == "code"]
    got = [c.source for c in nb.cells if c.cell_type == "code"]
    assert got == want, f"{name}: the notebook's code cells differ from the chapter's"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    # the link sits right under the chapter title
    assert page.index("chapter-notebook-download") > page.index("</h1>")


def test_only_chapters_get_a_notebook(built_site):
    names = sorted(p.stem for p in (built_site / "notebooks").glob("*.ipynb"))
    assert names == sorted(toc_chapters())
    assert "chapter-notebook-download" not in (built_site / "book" / "glossary.html").read_text()
