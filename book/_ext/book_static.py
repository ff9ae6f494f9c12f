"""Sphinx extension: a self-contained static site for the book's figures.

* Marks the build (environment variable ``BOOK_STATIC_BUILD``), inherited by the kernels
  MyST-NB starts, so explorables embed their precomputed grid and create no widgets
  (no widget state in the page).
* Lets Sphinx read (and so execute) chapters in parallel (see ``_multitoc_is_parallel_safe``).
* Serves ONE local copy of plotly.js (from the installed ``plotly`` package, not a CDN)
  plus ``explorable.js``/``.css``, and loads them only on pages that draw a figure.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import plotly

STATIC_BUILD_ENV = "BOOK_STATIC_BUILD"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
FIGURE_MARKERS = ("plotly-graph-div", 'class="explorable"')


def _page_context(app, pagename, templatename, context, doctree):
    body = context.get("body", "")
    if any(marker in body for marker in FIGURE_MARKERS):
        # In <head>, without defer: figure <script>s in the body call Plotly.newPlot at once.
        app.add_js_file("plotly.min.js", priority=400)
        if 'class="explorable"' in body:
            app.add_js_file("explorable.js", priority=410)
            app.add_css_file("explorable.css")


def _copy_plotly(app, exception):
    if exception is None and app.builder.format == "html":
        static = Path(app.outdir) / "_static"
        static.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PLOTLY_JS, static / "plotly.min.js")


def _multitoc_is_parallel_safe(app, config):
    # jupyter-book always loads sphinx_multitoc_numbering, which does not declare itself
    # parallel-safe, so Sphinx would fall back to serial reading (scripts/jb_build.py runs
    # chapters in parallel).  It only replaces TocTreeCollector.assign_section_numbers, which
    # runs in the main process after all documents are read: nothing per-read to merge.
    ext = app.extensions.get("sphinx_multitoc_numbering")
    if ext is not None:
        ext.parallel_read_safe = True


def setup(app):
    os.environ[STATIC_BUILD_ENV] = "1"
    app.connect("config-inited", _multitoc_is_parallel_safe)
    app.connect("html-page-context", _page_context)
    app.connect("build-finished", _copy_plotly)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
