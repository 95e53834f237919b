"""plotly FigureWidgets for the consoles: fitted to their boxes, and light to load under Voilà.

plotly's FigureWidget is an anywidget whose browser code (a 5 MB ES module) travels in
every figure's widget state. A console with three charts would send it three times
over the kernel's websocket and have the browser evaluate it three times. Under Voilà,
:func:`figure` makes figures whose module is a few lines that import plotly's bundle
by URL from the Voilà server instead (``hkops serve`` serves it under
``voila/labextensions/``; see :mod:`hkops.ui.serving`), so the browser fetches it once
per page, caches it, and evaluates it once. Elsewhere (JupyterLab, tests, a Voilà
started without that path) figures are plain ``go.FigureWidget``.
"""

from __future__ import annotations

import os
import urllib.request
from copy import deepcopy
from functools import lru_cache
from pathlib import Path

import anywidget
import ipywidgets as widgets
import plotly
import plotly.graph_objects as go

#: The file Voilà serves (under voila/labextensions/) in place of each figure's inline copy.
PLOTLY_WIDGET_BUNDLE = Path(plotly.__file__).parent / "package_data" / "widgetbundle.js"

_IMPORT_BUNDLE = """
const config = JSON.parse(document.getElementById("jupyter-config-data")?.textContent || "{}");
const base = config.fullLabextensionsUrl || "voila/labextensions";
const plotly = await import(new URL(`${base}/%s`, document.baseURI).href);
export default plotly.default;
""" % PLOTLY_WIDGET_BUNDLE.name


class VoilaFigureWidget(go.FigureWidget):
    """A FigureWidget whose browser code is imported from the Voilà server, not sent inline."""

    _esm = _IMPORT_BUNDLE


@lru_cache(maxsize=1)
def bundle_served() -> bool:
    """Whether this kernel runs under a Voilà that serves plotly's bundle (``hkops serve`` does).

    Asked once per kernel, of the Voilà that started it; any doubt means no, and the
    figures then carry their code inline as usual.
    """
    port = os.environ.get("VOILA_APP_PORT")
    if not port:
        return False
    server_url = os.environ.get("VOILA_SERVER_URL") or "/"
    url = f"http://127.0.0.1:{port}{server_url}voila/labextensions/{PLOTLY_WIDGET_BUNDLE.name}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=2) as answer:
            return answer.status == 200
    except (OSError, ValueError):
        return False


def figure(data=None, layout=None) -> go.FigureWidget:
    """A FigureWidget that resizes with its box (a VoilaFigureWidget when the bundle is served)."""
    cls = VoilaFigureWidget if bundle_served() else go.FigureWidget
    return responsive(cls(data=data, layout=layout))


def responsive(fig: go.FigureWidget) -> go.FigureWidget:
    """Let ``fig`` refit its box when the window resizes; returns it.

    plotly has no public way to pass a config to a FigureWidget; its ``_config`` trait is
    what the browser side hands to ``Plotly.newPlot``.
    """
    fig._config = {**fig._config, "responsive": True, "displaylogo": False}
    return fig


def snapshot(fig: go.FigureWidget) -> None:
    """Store the figure's whole state in the widget model, as plotly does when a figure is displayed.

    Updates reach the browser as messages to the views open at the time. A view opened
    later (a preheated kernel updates its charts before the page connects) draws from
    the model's state, which plotly only fills in when the figure itself is displayed,
    not when it sits in a box.
    """
    fig._widget_layout = deepcopy(fig._layout_obj._props)
    fig._widget_data = deepcopy(fig._data)


class FitCharts(anywidget.AnyWidget):
    """Invisible helper: makes the page's plotly charts fill the width of their boxes.

    A FigureWidget draws itself before its box is on the page, at plotly's default
    700 px. Responsive charts refit on a window resize event, so this widget sends one
    whenever a chart appears or its box changes size.
    """

    _esm = """
export default {
  render() {
    let frame = 0;
    const fit = () => {
      cancelAnimationFrame(frame);
      frame = requestAnimationFrame(() => window.dispatchEvent(new Event("resize")));
    };
    const observer = new ResizeObserver(fit);
    const watch = (event) => observer.observe(event.detail.element);
    document.addEventListener("plotlywidget-after-render", watch);
    document.querySelectorAll(".js-plotly-plot").forEach((plot) => observer.observe(plot));
    return () => {
      observer.disconnect();
      document.removeEventListener("plotlywidget-after-render", watch);
    };
  },
};
"""

    def __init__(self):
        super().__init__(layout=widgets.Layout(display="none"))
