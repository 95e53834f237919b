"""Consoles for ops staff: ipywidgets + plotly FigureWidget, served by Voilà (``hkops serve``).

Each console is one function returning a widget; its notebook under ``notebooks/consoles``
imports it, builds it and shows it. Names load on first use, so ``hkops.ui.serving`` (used
by the CLI) does not pull in ipywidgets and plotly.
"""

from __future__ import annotations

from importlib import import_module

__all__ = ["allocation_console", "index", "lifecycle_console", "monitoring_console", "orders_console",
           "settlement_console", "show", "stock_console", "trends_console"]

_WHERE = {
    "allocation_console": "hkops.ui.allocation",
    "index": "hkops.ui.home",
    "lifecycle_console": "hkops.ui.lifecycle",
    "monitoring_console": "hkops.ui.monitoring",
    "orders_console": "hkops.ui.orders",
    "settlement_console": "hkops.ui.settlement",
    "show": "hkops.ui.serving",
    "stock_console": "hkops.ui.stock",
    "trends_console": "hkops.ui.trends",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'hkops.ui' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
