"""Figures and explorables for the book.  Plotting and widget code lives here only.

Importing this package registers the ``"book"`` plotly renderer and makes it the
default, so that every figure a chapter shows carries two representations:

* ``application/vnd.plotly.v1+json`` -- what JupyterLab draws in a live kernel;
* ``text/html`` -- a ``<div>`` plus a ``Plotly.newPlot`` call *without* plotly.js.
  The static site picks this one (``nb_mime_priority_overrides`` in ``_config.yml``)
  and loads a single local copy of plotly.js per page (``book/_ext/book_static.py``).

A plain build would otherwise drop plotly output ("skipping unknown output mime
type"), and ``include_plotlyjs=True`` would inline 4.8 MB of JavaScript per figure.
"""
from __future__ import annotations

import json
import os

import plotly.io as pio
from plotly.io._base_renderers import MimetypeRenderer

#: Set (to anything non-empty) in the kernel that executes chapters for the static site
#: (by ``book/_ext/book_static.py``).
STATIC_BUILD_ENV = "BOOK_STATIC_BUILD"

#: plotly.js options shared by every figure of the book: no "edit in Chart Studio"
#: link (it points off-site) and no mode-bar logo.
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}

#: Colours kept the same across chapters (Okabe-Ito, readable by colour-blind readers).
COLORS = {
    "reserved": "#BBBBBB",
    "zero_page": "#56B4E9",
    "resident": "#D55E00",
    "lazyfree": "#E69F00",
    "free": "#009E73",
    "vsz": "#0072B2",
    "rss": "#D55E00",
    "faults": "#CC79A7",
}


def figure_html(fig_dict: dict, div_id: str | None = None) -> str:
    """The static-site HTML of one figure: a div and a script that needs a global ``Plotly``."""
    return pio.to_html(fig_dict, include_plotlyjs=False, full_html=False, config=PLOTLY_CONFIG,
                       validate=False, div_id=div_id)


class BookRenderer(MimetypeRenderer):
    """Plotly renderer emitting the plotly mime type (live) and a plotly.js-free ``text/html`` (site)."""

    def to_mimebundle(self, fig_dict):
        bundle = {"text/html": figure_html(fig_dict)}
        # In a site build, MyST-NB renders every MIME type of an output at parse time and
        # warns on the plotly one (fatal with -W), so only the HTML is emitted there.
        if not os.environ.get(STATIC_BUILD_ENV):
            fig_json = json.loads(pio.to_json(fig_dict, validate=False, remove_uids=False))
            fig_json["config"] = dict(PLOTLY_CONFIG)
            bundle["application/vnd.plotly.v1+json"] = fig_json
        return bundle


pio.renderers["book"] = BookRenderer()
pio.renderers.default = "book"

from models.viz.explorable import Dropdown, Explorable, Slider, Toggle  # noqa: E402

__all__ = ["BookRenderer", "COLORS", "Dropdown", "Explorable", "PLOTLY_CONFIG", "Slider", "Toggle",
           "figure_html"]
