"""The list of consoles (控制台), linking to the ones that exist."""

from __future__ import annotations

import html
from dataclasses import dataclass

import ipywidgets as widgets

from hkops.ui._common import stylesheet


@dataclass(frozen=True)
class Console:
    """One console: its notebook under notebooks/consoles/ (None while it is still to come)."""

    title: str
    summary: str
    notebook: str | None = None


CONSOLES = [
    Console("号码分配 Number allocation", "Search the pool by pattern, region, grade and price; reserve, allocate "
            "or release a number; see the pool by grade, region and state.", "allocation.ipynb"),
    Console("号卡生命周期 Lifecycle", "Find a SIM card by number, ICCID or masked resident ID; suspend, resume, "
            "report or lift a loss, replace or terminate it; see its history, its HLR record and pending "
            "HLR commands.", "lifecycle.ipynb"),
    Console("库存 Stock", "On-hand SIM cards by location and product, the ledger of moves, transfers, "
            "stock counts with their variances, scrapping and low-stock alerts.", "stock.ipynb"),
    Console("订单 Orders", "Take an order with live real-name and limit checks; the pipeline by state; "
            "an order's timeline, shipment and payments; pay, ship, deliver, activate, cancel or return it.",
            "orders.ipynb"),
    Console("监控告警 Live alerts", "The monitor's alerts as they arrive: lost or terminated cards in use, traffic "
            "right after a SIM swap, usage far above a card's profile, cards never used, one card in two places, "
            "regional outages; acknowledge and close them.", "monitoring.ipynb"),
    Console("结算 Settlement", "Agents' balances and pending commission down to each order, clawbacks, "
            "month-end settlement batches (create, confirm, approve, pay, export to Excel), the withdrawal queue "
            "and commission charts.", "settlement.ipynb"),
    Console("趋势 Trends", "The sales funnel and its trend, usage per day, the number pool and the blocks to "
            "request, forecasts with their intervals and back-test error, anomalies; filter by dates, region, "
            "plan and agent; export to Excel or CSV.", "trends.ipynb"),
]


def index(consoles: list[Console] | None = None) -> widgets.VBox:
    """A widget listing the consoles, with links to those that exist.

    Links are relative, so they work under Voilà (``/voila/render/...``) and in JupyterLab.
    """
    rows = []
    for console in consoles or CONSOLES:
        title = html.escape(console.title)
        if console.notebook:
            title = f"<a class='hkops-console-link' href='{html.escape(console.notebook)}' target='_self'>{title}</a>"
        else:
            title = f"<span class='hkops-muted'>{title}</span>"
        rows.append(f"<tr><td><b>{title}</b></td><td>{html.escape(console.summary)}</td></tr>")
    page = widgets.HTML(
        "<h2 class='hkops-title'>hkops 控制台 <span>Consoles</span></h2>"
        f"<table>{''.join(rows)}</table>"
    )
    return widgets.VBox([stylesheet(), page]).add_class("hkops-index")
