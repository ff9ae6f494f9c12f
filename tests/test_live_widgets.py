"""The live path in a real Jupyter kernel: the pilot chapter's explorable reacts to its widgets.

Starts an ipykernel (jupyter_client), runs every code cell of the pilot chapter (read with
jupytext, as JupyterLab does), then changes the explorable's widget values *in the kernel*
and checks that the figure in its Output widget was recomputed accordingly.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import jupytext
import pytest
from jupyter_client.manager import start_new_kernel

from conftest import ROOT

CHAPTER = ROOT / "book" / "01-address-space.md"

PROBE = r"""
import json
view = reserve_and_touch.views[-1]
def snap():
    out = view.output.outputs
    fig = out[0]["data"]["application/vnd.plotly.v1+json"]
    return {"bars": fig["data"][0]["y"], "faults": fig["data"][1]["y"],
            "title": fig["layout"]["title"]["text"], "n_outputs": len(out),
            "has_html": "text/html" in out[0]["data"], "values": view.values()}
steps = [snap()]
view.controls["access"].value = "write"
steps.append(snap())
view.controls["reserve_mib"].value = 256
view.controls["touched_percent"].value = 100
steps.append(snap())
view.controls["access"].value = "read_then_write"
steps.append(snap())
print("RESULT" + json.dumps(steps))
"""


@pytest.fixture(scope="module")
def kernel():
    env = {k: v for k, v in os.environ.items() if k != "BOOK_STATIC_BUILD"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(CHAPTER.parent))
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run(kc, code: str, timeout: float = 120) -> tuple[str, list[dict]]:
    stdout, displays = [], []

    def on_msg(msg):
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and content["name"] == "stdout":
            stdout.append(content["text"])
        elif kind in ("display_data", "execute_result"):
            displays.append(content["data"])
        elif kind == "error":
            stdout.append("\n".join(content["traceback"]))

    reply = kc.execute_interactive(code, timeout=timeout, output_hook=on_msg)
    assert reply["content"]["status"] == "ok", "".join(stdout)
    return "".join(stdout), displays


def test_pilot_explorable_is_live_in_a_kernel(kernel):
    notebook = jupytext.read(CHAPTER)
    cells = [c.source for c in notebook.cells if c.cell_type == "code"]
    assert any(src.strip() == "reserve_and_touch" for src in cells)
    shown = []
    for source in cells:
        _, displays = run(kernel, source)
        shown.extend(displays)
    views = [d for d in shown if "application/vnd.jupyter.widget-view+json" in d]
    assert len(views) >= 2, "the explorable cells must show live widgets in Jupyter"
    assert all("text/html" in v for v in views)  # and carry the static form beside them

    out, _ = run(kernel, PROBE)
    steps = json.loads(out.split("RESULT", 1)[1])
    default, write, big, both = steps
    assert default["values"] == {"reserve_mib": 64, "touched_percent": 50, "access": "read"}
    # [VSZ, zero page, RSS] in MiB
    assert default["bars"] == [64, 32, 0] and default["faults"] == [8192]
    assert write["bars"] == [64, 0, 32] and write["faults"] == [8192]
    assert big["bars"] == [256, 0, 256] and big["faults"] == [65536]
    assert both["bars"] == [256, 0, 256] and both["faults"] == [131072]
    assert "read then write 100 %" in both["title"]
    assert all(s["n_outputs"] == 1 and s["has_html"] for s in steps)  # replaced in place


# ------------------------------------------------------------------- JupyterLab itself

LAB_SCRIPT_OPEN = ("() => window.jupyterapp.commands.execute('docmanager:open', "
                   "{path: '01-address-space.md', factory: 'Jupytext Notebook'})")
LAB_RSS = ("() => JSON.stringify(document.querySelector('.jupyter-widgets .js-plotly-plot').data[0].y)")


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_chapter_opens_in_jupyterlab_with_live_controls(tmp_path):
    """JupyterLab + jupytext + ipywidgets + plotly: the .md chapter opens as a notebook, runs,
    shows the explorable's controls and plot, and a control changes the plot in the browser."""
    import shutil
    import subprocess
    import time
    import urllib.request

    from conftest import need
    from test_browser import CHROMIUM, CHROMIUM_ARGS

    need(Path(CHROMIUM).exists(), f"chromium not found at {CHROMIUM}")
    work = tmp_path / "lab"
    work.mkdir()
    shutil.copy(CHAPTER, work / CHAPTER.name)
    port, token = _free_port(), "book-test-token"
    env = {k: v for k, v in os.environ.items() if k != "BOOK_STATIC_BUILD"}
    env.update(PYTHONPATH=str(ROOT), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"))
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}", "--allow-root",
         "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
         f"--LabApp.workspaces_dir={tmp_path / 'ws'}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/lab?token={token}"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        from playwright.sync_api import sync_playwright
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_function("() => window.jupyterapp && "
                                   "window.jupyterapp.commands.hasCommand('docmanager:open')", timeout=90_000)
            factories = page.evaluate("() => Array.from(window.jupyterapp.docRegistry.widgetFactories())"
                                      ".map(f => f.name)")
            assert "Jupytext Notebook" in factories and "Plotly" in factories
            page.wait_for_timeout(3000)  # let the restored (empty) workspace settle
            page.evaluate(LAB_SCRIPT_OPEN)
            page.wait_for_selector(".jp-Notebook", timeout=60_000)
            page.wait_for_function("() => document.querySelector('.jp-Notebook') && "
                                   "window.jupyterapp.shell.currentWidget && "
                                   "window.jupyterapp.shell.currentWidget.sessionContext && "
                                   "window.jupyterapp.shell.currentWidget.sessionContext.session", timeout=60_000)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_selector(".jupyter-widgets select", timeout=180_000)
            page.wait_for_function("() => document.querySelector('.jupyter-widgets .js-plotly-plot')",
                                   timeout=60_000)
            assert page.locator(".jupyter-widgets .widget-selection-slider, "
                                ".jupyter-widgets .widget-slider").count() >= 2
            before = json.loads(page.evaluate(LAB_RSS))
            page.locator(".jupyter-widgets select").first.select_option(label="write")
            shown = json.dumps(json.dumps(before, separators=(",", ":")))  # as JSON.stringify writes it
            page.wait_for_function(f"() => ({LAB_RSS})() !== {shown}", timeout=60_000)
            after = json.loads(page.evaluate(LAB_RSS))
            browser.close()
        assert before == [64, 32, 0] and after == [64, 0, 32]  # [VSZ, zero page, RSS] in MiB
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
