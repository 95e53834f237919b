"""The monitoring console (监控告警): the live queue of the monitor's alerts, acknowledge and close.

The widget only wires: alerts come from :mod:`hkops.monitoring.service` (list_alerts,
counts, acknowledge, close). While the page is open the kernel re-reads the queue every
``refresh_s`` seconds (an asyncio task on the kernel's event loop, a timer thread outside
one) and marks alerts that arrived since the last look; the Refresh button reads it at once.
"""

from __future__ import annotations

import asyncio
import html
import threading

import ipywidgets as widgets

from hkops.monitoring import service
from hkops.store.engine import Store, get_store
from hkops.timeutil import local, utc_now
from hkops.ui._common import (
    ANY,
    ConfirmRow,
    GuardedConsole,
    StatusLine,
    button,
    choice,
    console_actor,
    field,
    html_table,
    is_nobody,
    panel,
    row,
    set_options,
    stylesheet,
)

#: Seconds between two looks at the queue while the page is open.
REFRESH_S = 3.0
#: The most alerts listed at once.
ROWS = 300
STATE_OPTIONS = [("待处理 open + acknowledged", "active"), ("未处理 open", "open"),
                 ("已确认 acknowledged", "acknowledged"), ("已关闭 closed", "closed"), (ANY, "")]
STATE_ZH = {"open": "未处理 open", "acknowledged": "已确认 acknowledged", "closed": "已关闭 closed"}
SEVERITY_ZH = {"high": "高 high", "medium": "中 medium", "low": "低 low"}
_STYLE = """
.hkops-monitoring .hkops-alert-open td:first-child { border-left: 4px solid #dc2626; }
.hkops-monitoring .hkops-alert-acknowledged td:first-child { border-left: 4px solid #f59e0b; }
.hkops-monitoring .hkops-alert-closed td { color: #6b7280; }
.hkops-monitoring tr.hkops-alert-new td { background: #fef3c7; }
.hkops-monitoring .hkops-sev-high { color: #991b1b; font-weight: 600; }
.hkops-monitoring .hkops-counts span { margin-right: 14px; }
"""


class MonitoringConsole(GuardedConsole, widgets.VBox):
    """监控告警 Alerts: the queue with filters by rule and state, acknowledge and close.

    Pieces for tests: ``rule_filter``, ``state_filter``, ``table``, ``counts``, ``alert_choice``,
    ``reason``, ``ack_button``, ``close_button``, ``refresh_button``, ``auto_refresh``, ``status``.
    ``refresh_s=None`` turns the periodic refresh off (tests call :meth:`tick`). Without ``actor``
    it acts as the logged-in user; built for nobody yet (a preheated kernel), it reads nothing
    until :func:`hkops.ui.show` hands it the visitor and refreshes it.
    """

    def __init__(self, store: Store | None = None, actor: str | None = None, refresh_s: float | None = REFRESH_S):
        super().__init__()
        self.store = store or get_store()
        self.actor = actor or console_actor()
        self.refresh_s = refresh_s
        self.pending = None
        self.confirm_row = ConfirmRow()
        self._seen: set[int] | None = None  # alert ids shown so far (None: nothing shown yet)
        self._new: set[int] = set()
        self._timer = None

        self.status = StatusLine()
        self.refresh_button = button("刷新 Refresh", "hkops-refresh", icon="refresh")
        self.auto_refresh = widgets.Checkbox(value=refresh_s is not None, description="自动刷新 Live",
                                             indent=False, layout=widgets.Layout(width="auto"))
        self.auto_refresh.add_class("hkops-auto-refresh")
        self.rule_filter = choice("规则 Rule", [(ANY, "")], "hkops-rule-filter", "260px")
        self.state_filter = choice("状态 State", STATE_OPTIONS, "hkops-state-filter", "300px", value="active")
        self.counts = widgets.HTML().add_class("hkops-counts")
        self.table = widgets.HTML().add_class("hkops-alerts")
        self.as_of = widgets.HTML().add_class("hkops-as-of")
        self.alert_choice = choice("告警 Alert", [], "hkops-alert-choice", "460px")
        self.reason = field("说明 Reason", "what was found or done (needed to close)", "hkops-alert-reason", "460px")
        self.ack_button = button("确认收到 Acknowledge", "hkops-ack", "warning", "check")
        self.close_button = button("关闭 Close", "hkops-close", "success", "archive")

        self.refresh_button.on_click(lambda _b: self._guard(self._refresh, announce=True))
        self.rule_filter.observe(lambda _c: self._guard(self._show), "value")
        self.state_filter.observe(lambda _c: self._guard(self._show), "value")
        self.ack_button.on_click(lambda _b: self._guard(self.acknowledge))
        self.close_button.on_click(lambda _b: self._guard(self.close))

        title = widgets.HTML("<h2 class='hkops-title'>监控告警 <span>Live alerts</span></h2>")
        queue = panel("告警队列 Alert queue (newest first)", [
            row([self.rule_filter, self.state_filter, self.refresh_button, self.auto_refresh], "hkops-filters"),
            self.counts, self.table, self.as_of], "1 1 100%")
        act = panel("处理 Handle an alert", [self.alert_choice, self.reason,
                                             row([self.ack_button, self.close_button], "hkops-buttons")], "1 1 100%")
        self.children = [stylesheet(), widgets.HTML(f"<style>{_STYLE}</style>", layout=widgets.Layout(display="none")),
                         title, self.status, row([queue]), row([act])]
        self.add_class("hkops-console")
        self.add_class("hkops-monitoring")
        self.first_load()

    def _buttons(self) -> tuple:
        return (self.refresh_button, self.ack_button, self.close_button)

    # ------------------------------------------------------------ reading

    def refresh(self) -> None:
        """Reload the queue, and start the periodic refresh once someone is logged in."""
        super().refresh()
        if self.refresh_s and not is_nobody(self.actor):
            self.start_live()

    def _refresh(self) -> None:
        rules = sorted({a["rule"] for a in service.list_alerts(self.store, actor=self.actor, limit=ROWS)})
        from hkops.monitoring.rules import load_rules

        try:
            rules = sorted(set(rules) | {r.name for r in load_rules()})
        except Exception:  # noqa: BLE001 - a bad rules file must not hide the queue
            pass
        set_options(self.rule_filter, [(ANY, "")] + [(r, r) for r in rules])
        self._show()

    def _show(self) -> None:
        rows = service.list_alerts(self.store, actor=self.actor, state=self.state_filter.value or None,
                                   rule=self.rule_filter.value or None, limit=ROWS)
        counts = service.counts(self.store, actor=self.actor)
        ids = {a["id"] for a in rows}
        if self._seen is not None:
            self._new |= ids - self._seen
        self._seen = (self._seen or set()) | ids
        self.counts.value = "<div class='hkops-counts'>" + "".join(
            f"<span class='hkops-count-{s}'>{html.escape(STATE_ZH[s])}: <b>{n}</b></span>" for s, n in counts.items()) \
            + "</div>"
        self.table.value = html_table(
            ["#", "状态 State", "级别 Severity", "规则 Rule", "对象 Subject", "窗口 Window", "次数 Hits", "最近 Last seen",
             "详情 Details", "处理 Handled"],
            [self._cells(a) for a in rows], numeric={0, 6},
            row_attrs=[f"data-alert='{a['id']}' class='hkops-alert-{a['state']}"
                       f"{' hkops-alert-new' if a['id'] in self._new else ''}'" for a in rows],
            empty="没有告警 No alerts to show.")
        actionable = [(f"#{a['id']} · {a['rule']} · {a['subject']} · {STATE_ZH[a['state']]}", a["id"])
                      for a in rows if a["state"] != "closed"]
        set_options(self.alert_choice, actionable)
        self.as_of.value = f"<div class='hkops-as-of'>截至 As of {html.escape(local(utc_now()))}</div>"

    @staticmethod
    def _cells(a: dict) -> list[str]:
        details = ", ".join(f"{k} {v}" for k, v in a["details"].items())
        handled = ""
        if a["acknowledged_by"]:
            handled = f"✓ {a['acknowledged_by']} {a['acknowledged_at']}"
        if a["closed_by"]:
            handled += f" · ✗ {a['closed_by']} {a['closed_at']}: {a['reason'] or ''}"
        return [str(a["id"]), html.escape(STATE_ZH[a["state"]]),
                f"<span class='hkops-sev-{a['severity']}'>{html.escape(SEVERITY_ZH.get(a['severity'], a['severity']))}</span>",
                html.escape(a["rule"]), f"<span class='hkops-number'>{html.escape(a['subject'])}</span>",
                html.escape(a["window"]), str(a["hits"]), html.escape(a["last_seen"]), html.escape(details),
                html.escape(handled.strip(" ·"))]

    # ------------------------------------------------------------ live refresh

    def tick(self) -> None:
        """One periodic look: re-read the queue and say how many alerts arrived (errors shown,
        buttons left alone)."""
        before = len(self._new)
        try:
            self._show()
        except Exception as error:  # noqa: BLE001 - the console must never show a traceback
            self.status.failure(error)
            return
        arrived = len(self._new) - before
        if arrived:
            self.status.info(f"{arrived} 条新告警 new alert(s) arrived (highlighted).")

    def start_live(self) -> None:
        """Re-read the queue every ``refresh_s`` seconds from now on (once per console)."""
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            self._timer = loop.create_task(self._live())
        else:
            stop = threading.Event()
            thread = threading.Thread(target=self._live_thread, args=(stop,), daemon=True, name="hkops-alerts")
            self._timer = stop
            thread.start()

    def stop_live(self) -> None:
        """Stop the periodic refresh."""
        timer, self._timer = self._timer, None
        if isinstance(timer, threading.Event):
            timer.set()
        elif timer is not None:
            timer.cancel()

    async def _live(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            if self.auto_refresh.value:
                self.tick()

    def _live_thread(self, stop: threading.Event) -> None:
        while not stop.wait(self.refresh_s):
            if self.auto_refresh.value:
                self.tick()

    # ------------------------------------------------------------ moves

    def _chosen(self) -> int:
        from hkops.errors import InvalidValue

        if not self.alert_choice.value:
            raise InvalidValue("alert", "", "choose an open or acknowledged alert first")
        return int(self.alert_choice.value)

    def acknowledge(self) -> None:
        """Acknowledge the chosen alert."""
        alert_id = self._chosen()
        done = service.acknowledge(self.store, alert_id, actor=self.actor, reason=self.reason.value.strip() or None)
        self.reason.value = ""
        self._new.discard(alert_id)
        self._show()
        self.status.ok(f"告警 #{alert_id} 已确认 Alert #{alert_id} acknowledged by {done['acknowledged_by']}.")

    def close(self) -> None:
        """Close the chosen alert with the reason given."""
        alert_id = self._chosen()
        done = service.close(self.store, alert_id, actor=self.actor, reason=self.reason.value)
        self.reason.value = ""
        self._new.discard(alert_id)
        self._show()
        self.status.ok(f"告警 #{alert_id} 已关闭 Alert #{alert_id} closed by {done['closed_by']}: {done['reason']}")


def monitoring_console(store: Store | None = None, actor: str | None = None,
                       refresh_s: float | None = REFRESH_S) -> MonitoringConsole:
    """The monitoring console (监控告警) on ``store`` (default: the configured database)."""
    return MonitoringConsole(store, actor, refresh_s)
