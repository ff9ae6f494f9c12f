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
