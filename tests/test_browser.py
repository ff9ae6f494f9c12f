"""The built site in a real browser (Debian's chromium via Playwright), network cut off.

Every page of ``_build/html`` is opened from disk (file://) with every non-local request
aborted.  A page fails on: a plotly figure that did not draw, a JavaScript error of ours,
a request that tried to leave the site, or an explorable control that does not change its
figure.  Needs the site built by ``scripts/build-site`` (``scripts/run-tests`` does it).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import need

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: Console errors the book theme itself logs on every page (not ours): NOTES-jupyter-book.md.
THEME_ERRORS = ("Got invalid theme mode", "Identifier 'THEBE_JS_URL' has already been declared")
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")
PILOT = "book/01-address-space.html"


def _pages(site: Path) -> list[str]:
    return sorted(str(p.relative_to(site)) for p in site.rglob("*.html")
                  if "_static" not in p.parts and "_sources" not in p.parts)


@pytest.fixture(scope="module")
def browser():
    need(Path(CHROMIUM).exists(), f"chromium not found at {CHROMIUM} (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - playwright is pinned in requirements.txt
        need(False, "playwright is not installed in this environment")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


class PageVisit:
    """Open one page offline and record what it tried to do."""

    def __init__(self, browser, url: str):
        self.context = browser.new_context(viewport={"width": 1280, "height": 1000},
                                           service_workers="block")
        self.left_site: list[str] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("pageerror", self._pageerror)
        self.page.on("console", self._console)
        self.page.goto(url, wait_until="load")

    def _route(self, route):
        url = route.request.url
        if url.startswith(LOCAL_SCHEMES):
            route.continue_()
        else:
            self.left_site.append(url)
            route.abort()

    def _pageerror(self, exc):
        if not any(t in str(exc) for t in THEME_ERRORS):
            self.errors.append(f"pageerror: {exc}")

    def _console(self, msg):
        if msg.type == "error" and not any(t in msg.text for t in THEME_ERRORS):
            self.errors.append(f"console: {msg.text}")

    def close(self):
        self.context.close()


DRAWN = """() => Array.from(document.querySelectorAll('.plotly-graph-div, .explorable-plot')).map(el => ({
    id: el.id || el.closest('.explorable')?.id,
    drawn: el.classList.contains('js-plotly-plot'),
    svg: el.querySelectorAll('svg.main-svg').length,
    traces: (el._fullData || []).length,
    marks: el.querySelectorAll('.trace, .hm, image, path.point, .bars .point').length,
}))"""

EXPLORABLES = """() => Array.from(document.querySelectorAll('.explorable')).map(root => ({
    id: root.id,
    ready: root.getAttribute('data-ready'),
    controls: Array.from(root.querySelectorAll('[data-param]')).map(el => ({
        param: el.getAttribute('data-param'), type: el.type,
        n: el.type === 'range' ? parseInt(el.max) + 1 : el.type === 'checkbox' ? 2 : el.options.length,
        pos: el.type === 'checkbox' ? (el.checked ? 1 : 0) : parseInt(el.value),
    })),
    combinations: JSON.parse(root.querySelector('script.explorable-data').textContent).frames.length,
}))"""

SNAPSHOT = """(id) => {
    const el = document.getElementById(id).querySelector('.explorable-plot');
    return JSON.stringify({data: el.data, layout: el.layout});
}"""

# Does moving control `i` from combination a to b change the *precomputed* figure, and does
# that control change the figure anywhere in the grid at all?
GRID_CHANGE = """([id, i, a, b]) => {
    const g = JSON.parse(document.getElementById(id).querySelector('script.explorable-data').textContent);
    const same = (x, y) => JSON.stringify(g.patches[g.frames[x]]) === JSON.stringify(g.patches[g.frames[y]]);
    let stride = 1;
    for (let k = g.sizes.length - 1; k > i; k--) stride *= g.sizes[k];
    let alive = false;
    for (let n = 0; n < g.frames.length && !alive; n++) {
        const pos = Math.floor(n / stride) % g.sizes[i];
        for (let p = 0; p < g.sizes[i] && !alive; p++) {
            if (p !== pos && !same(n, n + (p - pos) * stride)) alive = true;
        }
    }
    return {differs: !same(a, b), alive: alive};
}"""

MOVE = """([id, param, pos]) => {
    const el = document.getElementById(id).querySelector(`[data-param="${param}"]`);
    if (el.type === 'checkbox') { el.checked = !!pos; el.dispatchEvent(new Event('change')); }
    else if (el.type === 'range') { el.value = String(pos); el.dispatchEvent(new Event('input')); }
    else { el.value = String(pos); el.dispatchEvent(new Event('change')); }
    return document.getElementById(id).getAttribute('data-combination');
}"""


def _check_figures(visit: PageVisit, name: str) -> int:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        visit.page.wait_for_function(
            "() => Array.from(document.querySelectorAll('.explorable'))"
            ".every(e => e.getAttribute('data-ready') === 'true')", timeout=20_000)
    except PlaywrightTimeout:
        raise AssertionError(f"{name}: explorables never finished drawing; JS errors: {visit.errors}; "
                             f"requests that left the site: {visit.left_site}") from None
    figures = visit.page.evaluate(DRAWN)
    for fig in figures:
        assert fig["drawn"] and fig["svg"] > 0 and fig["traces"] > 0 and fig["marks"] > 0, \
            f"{name}: plotly figure {fig['id']} did not draw: {fig}"
    return len(figures)


def _check_controls(visit: PageVisit, name: str) -> int:
    moved = 0
    for exp in visit.page.evaluate(EXPLORABLES):
        sizes = [c["n"] for c in exp["controls"]]
        positions = [c["pos"] for c in exp["controls"]]
        assert exp["combinations"] == _prod(sizes), f"{name}: {exp['id']} grid does not match its controls"
        for i, control in enumerate(exp["controls"]):
            if control["n"] < 2:
                continue
            before = visit.page.evaluate(SNAPSHOT, exp["id"])
            target = control["n"] - 1 if positions[i] != control["n"] - 1 else 0
            was = _index(positions, sizes)
            combination = visit.page.evaluate(MOVE, [exp["id"], control["param"], target])
            positions[i] = target
            visit.page.wait_for_timeout(50)
            after = visit.page.evaluate(SNAPSHOT, exp["id"])
            grid = visit.page.evaluate(GRID_CHANGE, [exp["id"], i, was, _index(positions, sizes)])
            assert grid["alive"], \
                f"{name}: control {control['param']} of {exp['id']} changes no figure anywhere in its grid"
            if grid["differs"]:
                assert after != before, \
                    f"{name}: moving {control['param']} of {exp['id']} did not change the figure"
            else:  # the model really gives the same figure here; the page must keep showing it
                assert after == before, f"{name}: {exp['id']} redrew a different figure than precomputed"
            assert int(combination) == _index(positions, sizes), \
                f"{name}: {exp['id']} shows combination {combination}, expected {_index(positions, sizes)}"
            moved += 1
    return moved


def _prod(xs):
    out = 1
    for x in xs:
        out *= x
    return out


def _index(positions, sizes):
    n = 0
    for p, s in zip(positions, sizes):
        n = n * s + p
    return n


def test_every_page_offline(browser, built_site):
    pages = _pages(built_site)
    assert PILOT in pages, f"the pilot chapter {PILOT} was not built: {pages}"
    report = {}
    failures = []
    for rel in pages:
        visit = PageVisit(browser, (built_site / rel).as_uri())
        try:
            figures = _check_figures(visit, rel)
            moved = _check_controls(visit, rel)
            visit.page.wait_for_timeout(100)
            if visit.left_site:
                failures.append(f"{rel}: requests left the site: {sorted(set(visit.left_site))}")
            if visit.errors:
                failures.append(f"{rel}: JavaScript errors: {visit.errors}")
            report[rel] = (figures, moved)
        except AssertionError as exc:
            failures.append(str(exc))
        finally:
            visit.close()
    assert not failures, "\n".join(failures)
    figures, moved = report[PILOT]
    assert figures >= 2 and moved >= 3, f"pilot: {figures} figures, {moved} controls moved"


def test_pilot_two_controls_together_and_screenshot(browser, built_site, artifacts):
    visit = PageVisit(browser, (built_site / PILOT).as_uri())
    try:
        _check_figures(visit, PILOT)
        explorables = visit.page.evaluate(EXPLORABLES)
        assert len(explorables) >= 2
        [exp] = [e for e in explorables
                 if [c["param"] for c in e["controls"]] == ["reserve_mib", "touched_percent", "access"]]
        # slider and dropdown together: 256 MiB, 100 %, write -> RSS bar at 256 MiB
        visit.page.evaluate(MOVE, [exp["id"], "reserve_mib", 4])
        visit.page.evaluate(MOVE, [exp["id"], "touched_percent", 4])
        combination = visit.page.evaluate(MOVE, [exp["id"], "access", 1])
        assert int(combination) == _index([4, 4, 1], [5, 5, 3])
        bars = visit.page.evaluate(
            "(id) => document.getElementById(id).querySelector('.explorable-plot').data[0].y", exp["id"])
        assert list(bars) == [256, 0, 256]
        text = visit.page.inner_text(f"#{exp['id']} .explorable-description")
        assert "RSS by 256 MiB" in text and "65,536 minor page faults" in text
        # back to the defaults for the screenshot
        for param, pos in (("reserve_mib", 2), ("touched_percent", 2), ("access", 0)):
            visit.page.evaluate(MOVE, [exp["id"], param, pos])
        visit.page.wait_for_timeout(300)
        visit.page.locator(f"#{exp['id']}").scroll_into_view_if_needed()
        visit.page.screenshot(path=str(artifacts / "pilot-explorable.png"))
        visit.page.screenshot(path=str(artifacts / "pilot-full.png"), full_page=True)
        visit.page.locator(".plotly-graph-div").first.screenshot(path=str(artifacts / "pilot-kernel.png"))
        assert not visit.left_site and not visit.errors, (visit.left_site, visit.errors)
    finally:
        visit.close()
