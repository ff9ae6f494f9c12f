"""The built site's HTML: self-contained, light, one plotly.js per page, nothing fetched remotely.

Static checks on ``_build/html`` (made by scripts/build-site) that complement the browser test:
they name the offending file and tag directly.
"""
from __future__ import annotations

import re
from pathlib import Path

PAGE_LIMIT_BYTES = 1_500_000
SCRIPT_RE = re.compile(r"<script[^>]*\ssrc=\"([^\"]+)\"", re.I)
REMOTE_RE = re.compile(r"<(?:script|link|img|iframe)[^>]*\s(?:src|href)=\"((?:https?:)?//[^\"]+)\"", re.I)


def pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if not {"_static", "_sources"} & set(p.parts))


def test_no_page_loads_anything_from_another_site(built_site):
    offenders = {}
    for page in pages(built_site):
        remote = REMOTE_RE.findall(page.read_text())
        # <link rel="canonical"/"prev"/"next"> to the book's own pages are not fetched; none are remote
        if remote:
            offenders[str(page.relative_to(built_site))] = remote
    assert not offenders, f"pages referencing remote resources: {offenders}"


def test_plotly_js_is_local_and_loaded_once_only_where_figures_are(built_site):
    assert (built_site / "_static" / "plotly.min.js").stat().st_size > 1_000_000
    with_figures = 0
    for page in pages(built_site):
        html = page.read_text()
        loads = [s for s in SCRIPT_RE.findall(html) if "plotly" in s]
        has_figure = "plotly-graph-div" in html or 'class="explorable"' in html
        name = page.relative_to(built_site)
        if has_figure:
            with_figures += 1
            assert len(loads) == 1 and loads[0].split("?")[0].endswith("_static/plotly.min.js"), \
                f"{name}: plotly.js must be loaded exactly once from _static, got {loads}"
            assert html.count("explorable.js") <= 1
        else:
            assert not loads, f"{name} has no figure but loads {loads}"
        assert "cdn.plot.ly" not in html and "require.min.js" not in html, name
    assert with_figures >= 1


def test_no_widget_state_or_widget_manager_is_embedded(built_site):
    for page in pages(built_site):
        html = page.read_text()
        assert "application/vnd.jupyter.widget-state+json" not in html, page.name
        assert "embed-amd" not in html and "@jupyter-widgets/html-manager" not in html, page.name


def test_chapter_pages_stay_under_their_weight_budget(built_site):
    for page in pages(built_site):
        size = page.stat().st_size
        assert size < PAGE_LIMIT_BYTES, f"{page.name}: {size / 1e6:.2f} MB >= 1.5 MB"


def test_every_explorable_is_labelled_precomputed(built_site):
    seen = 0
    for page in pages(built_site):
        html = page.read_text()
        n = html.count('<div class="explorable"')
        seen += n
        assert len(re.findall(r"Precomputed for \d+ combinations; run this chapter in Jupyter", html)) == n, page.name
    assert seen >= 2


def test_no_launch_buttons_and_no_mathjax(built_site):
    """Launch buttons (Binder/Colab/Thebe) and MathJax would fetch from the network."""
    for page in pages(built_site):
        html = page.read_text()
        # the theme's own words for them (sphinx_book_theme/header_buttons/launch.py)
        assert "Launch interactive content" not in html and "launch-thebe" not in html, page.name
        assert not [s for s in SCRIPT_RE.findall(html) if "mathjax" in s.lower()], page.name
