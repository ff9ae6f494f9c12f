"""Sphinx extension: every chapter page offers its notebook (.ipynb) for download.

Each numbered chapter (``book/NN-*.md``, a MyST Markdown notebook) is converted with jupytext
into ``<html>/notebooks/NN-*.ipynb`` -- the chapter's cells without outputs, ready to open in
JupyterLab next to the repository's ``models`` package -- and the page gets a link to it right
under its title.  Everything is served by the site itself (no CDN, no Binder).

sphinx-book-theme's own download button offers ``.ipynb`` only for notebook sources or when a
launch button is configured (it copies the *executed* notebook, with the site's precomputed
figure payloads); this book has no launch buttons, and a clean notebook is what a reader runs.
"""
from __future__ import annotations

import html
import re
from pathlib import Path

#: Numbered chapters: book/00-introduction ... book/08-lab
CHAPTER_DOC = re.compile(r"^book/(\d\d-[a-z0-9-]+)$")
NOTEBOOK_DIR = "notebooks"
LINK_CLASS = "chapter-notebook-download"


def chapter_name(docname: str) -> str | None:
    m = CHAPTER_DOC.match(docname)
    return m.group(1) if m else None


_FENCE_OPEN = re.compile(r"^(`{3,}|:{3,})\{solution\}")


def strip_solutions(markdown: str) -> str:
    """``markdown`` without its ``{solution}`` blocks (``` / :::, any fence length)."""
    out, fence = [], None
    for line in markdown.splitlines(keepends=True):
        if fence is None:
            m = _FENCE_OPEN.match(line)
            if m:
                fence = m.group(1)
                continue
            out.append(line)
        elif line.strip() == fence:
            fence = None
    return "".join(out)


def _write_notebook(source: Path, target: Path, hide_solutions: bool = False) -> None:
    import jupytext
    import nbformat

    nb = jupytext.read(source)
    nb.metadata.pop("jupytext", None)          # a plain notebook, not paired with the .md
    if hide_solutions:                         # the student edition
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = strip_solutions(cell.source)
    nbformat.validate(nb)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".ipynb.tmp")
    tmp.write_text(nbformat.writes(nb))
    tmp.replace(target)


def _page_context(app, pagename, templatename, context, doctree):
    name = chapter_name(pagename)
    if name is None or app.builder.format != "html" or "body" not in context:
        return
    source = Path(app.srcdir) / f"{pagename}.md"
    if not source.exists():
        return
    _write_notebook(source, Path(app.outdir) / NOTEBOOK_DIR / f"{name}.ipynb",
                    hide_solutions=bool(getattr(app.config, "hide_solutions", False)))
    href = context["pathto"](f"{NOTEBOOK_DIR}/{name}.ipynb", 1)
    link = (f'<p class="{LINK_CLASS}"><a href="{html.escape(href)}" download="{name}.ipynb">'
            f"Download this chapter as a notebook (.ipynb)</a> to run it in JupyterLab from a "
            f"clone of the book's repository.</p>")
    body = context["body"]
    # right under the title: after the page's first </h1>
    context["body"] = re.sub(r"(</h1>)", r"\1" + link.replace("\\", "\\\\"), body, count=1) \
        if "</h1>" in body else link + body


def setup(app):
    app.connect("html-page-context", _page_context)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
