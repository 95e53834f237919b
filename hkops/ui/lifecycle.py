"""The card lifecycle console (卡生命周期): find a SIM card, see its history and HLR record, move it.

The widget only wires: every move is a use case of :mod:`hkops.cards.service` (each given
the console's :class:`~hkops.network.ProvisioningClient`), the history is the audit trail
(:func:`hkops.audit.query`) of the card and of its number, the HLR record is
``client.get(msisdn)``.
"""

from __future__ import annotations

import html
import time
from collections import deque
from dataclasses import dataclass, field

import ipywidgets as widgets
import plotly.graph_objects as go

from hkops import audit
from hkops.analytics.engine import store_location
from hkops.security.access import AccessDenied
from hkops.cards import service as cards
from hkops.cards.model import MOVES, SimState, SuspendReason
from hkops.cards.service import Card
from hkops.errors import InvalidValue, NotFound
from hkops.ids import display_msisdn, looks_like_resident_id, mask_id_text
from hkops.network import ProvisioningClient
from hkops.network.errors import ProvisioningError
from hkops.store.engine import Store, get_store
from hkops.subscribers import service as subscribers
from hkops.timeutil import local
from hkops.security import access
from hkops.ui import charts
from hkops.ui._common import (Busy, ConfirmRow, GuardedConsole, StateBadges, StatusLine, UsesHlr, console_actor, one_line,
                              stylesheet)

FIND_PLACEHOLDER = "13800130127 / 8986… ICCID / 11***************X"
#: At most this many cards are listed for a masked resident ID (many people share one mask).
MASK_MATCHES = 50

#: Chinese names of the SIM card states.
SIM_ZH = {
    "in_stock": "在库",
    "allocated": "已调拨",
    "paired": "已配对",
    "active": "在用",
    "suspended": "停机",
    "lost": "挂失",
    "replaced": "已补换",
    "terminated": "已销户",
    "faulty": "故障",
    "destroyed": "已销毁",
}
SIM_COLOURS = {
    "in_stock": "#9ca3af",
    "allocated": "#0891b2",
    "paired": "#2563eb",
    "active": "#4f46e5",
    "suspended": "#dc2626",
    "lost": "#ea580c",
    "replaced": "#6b7280",
    "terminated": "#374151",
    "faulty": "#a16207",
    "destroyed": "#1f2937",
}
SIM_BADGES = StateBadges("hkops-sim", SIM_ZH, SIM_COLOURS)
SYNC_LABELS = {"none": "未开通 none", "pending": "待确认 pending", "synced": "已同步 synced",
               "failed": "被拒 refused by the HLR"}
REASON_LABELS = {"arrears": "欠费 arrears", "customer_request": "客户申请 customer request", "fraud": "涉诈 fraud"}

_STYLE = """
.hkops-lifecycle .hkops-find-row { gap: 4px 12px; }
.hkops-lifecycle .hkops-card-detail td { padding: 2px 12px 2px 0; }
.hkops-lifecycle .hkops-hlr-down { color: #991b1b; font-weight: 600; }
.hkops-lifecycle .hkops-hlr-up { color: #065f46; font-weight: 600; }
.hkops-lifecycle .hkops-note { color: #6b7280; font-size: 12px; font-style: italic; }
"""


@dataclass(frozen=True)
class Action:
    """A move the console offers on the found card."""

    name: str
    button: str
    done: str
    style: str
    icon: str = ""


ACTIONS = {
    "suspend": Action("suspend", "停机 Suspend", "已停机 Suspended", "warning", "pause"),
    "resume": Action("resume", "复机 Resume", "已复机 Resumed", "success", "play"),
    "report_loss": Action("report_loss", "挂失 Report loss", "已挂失 Reported lost", "danger", "lock"),
    "lift_loss": Action("lift_loss", "解挂 Lift loss", "已解挂 Loss lifted", "success", "unlock"),
    "replace": Action("replace", "补换卡 Replace", "已补换卡 Replaced", "info", "exchange"),
    "terminate": Action("terminate", "销户 Terminate", "已销户 Terminated", "danger", "ban"),
}


@dataclass(frozen=True)
class PendingMove:
    """A move waiting for the operator's confirmation."""

    action: str
    iccid: str
    question: str
    args: dict = field(default_factory=dict)


def _display(msisdn: str | None) -> str:
    return display_msisdn(msisdn) if msisdn else "—"


class LifecycleConsole(UsesHlr, GuardedConsole, widgets.VBox):
    """卡生命周期 Card lifecycle: find a card, see it, its history and HLR record; move it.

    The pieces are attributes so that tests can drive them: ``query``, ``find_button``,
    ``matches``, ``detail``, ``timeline``, ``hlr``, ``suspend_reason``, ``new_iccid``,
    ``resident_id``, ``suspend_button``, ``resume_button``, ``report_loss_button``,
    ``lift_loss_button``, ``replace_button``, ``terminate_button``, ``confirm_row``,
    ``confirm_button``, ``cancel_button``, ``pending_info``, ``sync_button``,
    ``reconcile_button``, ``reconcile_info``, ``hlr_status``, ``latency``, ``status``, ``progress``,
    ``refused_info`` (moves the HLR refused), ``retry_button``, ``abandon_reason``, ``abandon_button``
    (for the found card's refused move).
    """

    def __init__(self, store: Store | None = None, network: ProvisioningClient | None = None,
                 actor: str | None = None, usage_dir=None):
        super().__init__()
        self.store = store or get_store()
        self.usage_dir = store_location(usage_dir)
        self.actor = actor or console_actor()
        self._network = network
        self.card: Card | None = None
        self.found: list[Card] = []
        self.pending: PendingMove | None = None
        self.calls: deque[tuple[str, float, bool]] = deque(maxlen=5)  # (what, milliseconds, answered), newest first

        def text(description, placeholder="", css="", width="260px"):
            return widgets.Text(description=description, placeholder=placeholder, layout=widgets.Layout(width=width),
                                style={"description_width": "initial"}).add_class(css)

        # finding
        self.query = text("号码/ICCID/证件 Find", FIND_PLACEHOLDER, "hkops-find", "420px")
        self.find_button = widgets.Button(description="查找 Find", icon="search", button_style="primary",
                                          layout=widgets.Layout(width="120px")).add_class("hkops-find-button")
        self.refresh_button = widgets.Button(description="刷新 Refresh", icon="refresh",
                                             tooltip="Reload the card, its history, its HLR record and the network panel",
                                             layout=widgets.Layout(width="130px")).add_class("hkops-refresh")
        self.matches = widgets.Dropdown(description="卡 Card", options=[("— 无 none —", None)], value=None,
                                        layout=widgets.Layout(width="96%", display="none"),
                                        style={"description_width": "initial"}).add_class("hkops-matches")

        # the card
        self.detail = widgets.HTML().add_class("hkops-card-detail")
        self.timeline = widgets.HTML().add_class("hkops-timeline")
        self.hlr = widgets.HTML().add_class("hkops-hlr")

        # moves
        self.suspend_reason = widgets.Dropdown(
            description="停机原因 Reason", options=[(REASON_LABELS[r.value], r.value) for r in SuspendReason],
            value=SuspendReason.ARREARS.value, layout=widgets.Layout(width="300px"),
            style={"description_width": "initial"}).add_class("hkops-suspend-reason")
        self.new_iccid = text("新卡 New ICCID", "8986…", "hkops-new-iccid", "300px")
        self.resident_id = text("证件号 Resident ID", "holder's resident ID (18)", "hkops-resident-id", "300px")
        for name, action in ACTIONS.items():
            button = widgets.Button(description=action.button, button_style=action.style, icon=action.icon,
                                    layout=widgets.Layout(width="auto")).add_class(f"hkops-{name.replace('_', '-')}")
            button.on_click(lambda _b, name=name: self.ask(name))
            setattr(self, f"{name}_button", button)
        self.retry_button = widgets.Button(description="重发 Retry", icon="repeat", button_style="warning",
                                           tooltip="Send the move the HLR refused again",
                                           layout=widgets.Layout(width="auto")).add_class("hkops-retry")
        self.abandon_reason = text("放弃原因 Reason", "why the refused move is given up", "hkops-abandon-reason",
                                   "300px")
        self.abandon_button = widgets.Button(description="放弃 Abandon", icon="times",
                                             tooltip="Give the refused move up; the card stays as it is",
                                             layout=widgets.Layout(width="auto")).add_class("hkops-abandon")
        self.confirm_row = ConfirmRow()
        self.confirm_text = self.confirm_row.text
        self.confirm_button, self.cancel_button = self.confirm_row.confirm_button, self.confirm_row.cancel_button

        # the network
        self.hlr_status = widgets.HTML().add_class("hkops-hlr-status")
        self.pending_info = widgets.HTML().add_class("hkops-pending-info")
        self.refused_info = widgets.HTML().add_class("hkops-refused-info")
        self.sync_button = widgets.Button(description="立即同步 Sync now", icon="upload",
                                          layout=widgets.Layout(width="auto")).add_class("hkops-sync")
        self.reconcile_button = widgets.Button(description="稽核 Reconcile", icon="balance-scale",
                                               layout=widgets.Layout(width="auto")).add_class("hkops-reconcile")
        self.reconcile_info = widgets.HTML().add_class("hkops-reconcile-info")
        self.latency = widgets.HTML().add_class("hkops-latency")

        self.status = StatusLine()
        self.progress = Busy()

        self.find_button.on_click(lambda _b: self.find())
        self.refresh_button.on_click(lambda _b: self._guard(self._refresh, announce=True))
        self.matches.observe(lambda _change: self._pick(), names="value")
        self.confirm_button.on_click(lambda _b: self.confirm())
        self.cancel_button.on_click(lambda _b: self.cancel())
        self.sync_button.on_click(lambda _b: self.sync())
        self.reconcile_button.on_click(lambda _b: self.reconcile())
        self.retry_button.on_click(lambda _b: self.retry())
        self.abandon_button.on_click(lambda _b: self.abandon())

        title = widgets.HTML("<h2 class='hkops-title'>卡生命周期 <span>Card lifecycle</span></h2>")
        find_row = widgets.HBox([self.query, self.find_button, self.refresh_button],
                                layout=widgets.Layout(flex_flow="row wrap")).add_class("hkops-find-row")
        buttons = widgets.HBox(
            [self.suspend_button, self.resume_button, self.report_loss_button, self.lift_loss_button,
             self.terminate_button], layout=widgets.Layout(flex_flow="row wrap")).add_class("hkops-buttons")
        actions = widgets.VBox(
            [widgets.HTML("<h3>操作 Action</h3>"), self.suspend_reason, buttons,
             widgets.HTML("<div class='hkops-muted'>补换卡 Replacement: the new SIM and the holder's resident ID</div>"),
             self.new_iccid, self.resident_id, self.replace_button, self.confirm_row,
             widgets.HTML("<div class='hkops-muted'>HLR 拒绝的操作 A move the HLR refused: retry or abandon</div>"),
             widgets.HBox([self.retry_button, self.abandon_reason, self.abandon_button],
                          layout=widgets.Layout(flex_flow="row wrap")).add_class("hkops-buttons")],
            layout=widgets.Layout(flex="2 1 320px", min_width="300px"),
        ).add_class("hkops-panel").add_class("hkops-actions")
        card_panel = widgets.VBox([widgets.HTML("<h3>卡 Card</h3>"), self.matches, self.detail],
                                  layout=widgets.Layout(flex="3 1 420px", min_width="0")).add_class("hkops-panel")
        history = widgets.VBox([widgets.HTML("<h3>历史 History</h3>"), self.timeline],
                               layout=widgets.Layout(flex="3 1 480px", min_width="0")).add_class("hkops-panel")
        hlr_panel = widgets.VBox([widgets.HTML("<h3>HLR 记录 HLR record</h3>"), self.hlr],
                                 layout=widgets.Layout(flex="2 1 300px", min_width="0")).add_class("hkops-panel")
        network = widgets.VBox(
            [widgets.HTML("<h3>网络 Network</h3>"), self.hlr_status, self.pending_info, self.refused_info,
             widgets.HBox([self.sync_button, self.reconcile_button],
                          layout=widgets.Layout(flex_flow="row wrap")).add_class("hkops-buttons"),
             self.reconcile_info, self.latency],
        ).add_class("hkops-panel").add_class("hkops-network")
        self.usage_note = widgets.HTML().add_class("hkops-usage-note")
        self.usage_chart = charts.figure(
            data=[go.Bar(name="数据 Data (MB)", marker_color="#2563eb"),
                  go.Scatter(name="主叫 Voice out (min)", yaxis="y2", mode="lines+markers", marker_color="#f59e0b")],
            layout=go.Layout(height=260, margin=dict(l=50, r=50, t=10, b=40), legend=dict(orientation="h"),
                             yaxis=dict(title="MB"), yaxis2=dict(title="min", overlaying="y", side="right")))
        self.usage_chart.add_class("hkops-usage-chart")
        usage = widgets.VBox([widgets.HTML("<h3>用量 Usage per day</h3>"), self.usage_note, self.usage_chart],
                             layout=widgets.Layout(flex="3 1 480px", min_width="0")).add_class("hkops-panel")
        row = dict(layout=widgets.Layout(flex_flow="row wrap", width="100%"))
        self.children = [
            stylesheet(), widgets.HTML(f"<style>{_STYLE}{SIM_BADGES.css()}</style>", layout=widgets.Layout(display="none")),
            title, find_row, self.progress, self.status,
            widgets.HBox([card_panel, actions], **row), widgets.HBox([history, hlr_panel], **row),
            widgets.HBox([usage, network], **row),
        ]
        self.add_class("hkops-console")
        self.add_class("hkops-lifecycle")
        self._show_card()
        self.first_load()

    # ------------------------------------------------------------ the network

    def _timed(self, what: str, call, answered=lambda _result: True):
        """Run one HLR call, noting how long it took and whether the HLR answered (network panel).

        ``answered(result)`` tells, for calls that keep going when the HLR is away (a move,
        a sync), whether it did answer.
        """
        start = time.perf_counter()
        try:
            result = call()
        except (ProvisioningError, OSError) as error:
            self._note_call(what, start, False, error)
            raise
        outcome = answered(result)
        if outcome is not None:  # None: the HLR was not asked at all (nothing to send)
            self._note_call(what, start, outcome, None)
        return result

    def _note_call(self, what: str, start: float, answered: bool, error: BaseException | None) -> None:
        self.calls.appendleft((what, (time.perf_counter() - start) * 1000, answered))
        if answered:
            self.hlr_status.value = f"<div class='hkops-hlr-up'>HLR 在线 reachable (answered {html.escape(what)})</div>"
        else:
            why = f"<div class='hkops-muted'>{html.escape(one_line(error))}</div>" if error else ""
            self.hlr_status.value = f"<div class='hkops-hlr-down'>HLR 不可达 HLR unreachable</div>{why}"
        self._show_latency()

    @property
    def last_call(self) -> tuple[str, float, bool] | None:
        """(what, milliseconds, answered) of the last HLR call, or None before the first."""
        return self.calls[0] if self.calls else None

    def _show_latency(self) -> None:
        if not self.calls:
            self.latency.value = "<div class='hkops-muted'>上次 HLR 调用 Last HLR call: —</div>"
            return
        what, ms, answered = self.calls[0]
        outcome = "" if answered else " (no answer 无应答)"
        earlier = " · ".join(f"{html.escape(w)} {m:,.0f} ms" + ("" if a else " ✗") for w, m, a in list(self.calls)[1:])
        self.latency.value = (f"<div class='hkops-muted'>上次 HLR 调用 Last HLR call: {html.escape(what)} "
                              f"<b>{ms:,.0f} ms</b>{outcome}"
                              + (f"<br>之前 Before: {earlier}" if earlier else "") + "</div>")

    # ------------------------------------------------------------ reading

    def _refresh(self) -> None:
        """Reload the network panel and the shown card."""
        with self.progress.busy("刷新 Refreshing", 2) as step:
            self._show_network(ping=True)
            step()
            if self.card is not None:
                self._load(self.card.iccid)
            step()

    def _show_network(self, ping: bool = False) -> None:
        """The pending commands and the last reconciliation; with ``ping``, ask the HLR whether it answers."""
        if ping:
            try:
                total = self._timed("ping", lambda: self.network.ping())
                self.hlr_status.value = f"<div class='hkops-hlr-up'>HLR 在线 reachable · {total:,} subscribers</div>"
            except (ProvisioningError, OSError, InvalidValue) as error:
                self.hlr_status.value = (f"<div class='hkops-hlr-down'>HLR 不可达 HLR unreachable</div>"
                                         f"<div class='hkops-muted'>{html.escape(one_line(error))}</div>")
        listed = cards.pending(self.store)
        waiting = [row for row in listed if row["state"] == "pending"]
        self.refused_info.value = refused_table([row for row in listed if row["state"] == "failed"])
        oldest = f" · oldest {local(waiting[0]['created_at'])}" if waiting else ""
        link = cards.command_stats(self.store)
        self.pending_info.value = (f"<div>待发送 HLR 指令 Pending HLR commands: <b>{len(waiting)}</b>{oldest}</div>"
                                   f"<div>错误率 Error rate (24 h): <b>{link['error_rate_percent']}%</b> of "
                                   f"{link['commands']:,} commands needed a retry or were refused</div>")
        with self.store.read() as conn:
            last = audit.query(conn, action="reconcile", limit=1)
        if last:
            self.reconcile_info.value = (f"<div>上次稽核 Last reconciliation: {local(last[0]['at'])} · "
                                         f"{html.escape(last[0]['reason'] or '')} · by {html.escape(last[0]['actor'])}</div>")
        else:
            self.reconcile_info.value = "<div class='hkops-muted'>上次稽核 Last reconciliation: never 从未</div>"
        self._show_latency()

    def find(self) -> None:
        """Find the card(s) the search box names: an MSISDN, an ICCID, a resident ID or a masked one."""
        def run():
            value = self.query.value.strip()
            self.cancel(quiet=True)
            if not value:
                self.status.error("请输入号码、ICCID 或脱敏证件号 Type an MSISDN, an ICCID or a masked resident ID.")
                return
            with self.progress.busy("查找 Finding", 1) as step:
                found = self._find(value)
                step()
            self._set_found(found)
            if not found:
                shown = mask_id_text(value) if looks_like_resident_id(value) else value
                self.status.info(f"没有找到卡 No SIM card found for {shown}.")
            elif len(found) == 1:
                self.status.ok(f"找到 Found SIM {found[0].iccid} ({found[0].state}).")
            elif len(found) >= MASK_MATCHES and "*" in value:
                self.status.ok(f"找到至少 {len(found)} 张卡 Found the first {len(found)} SIM cards of people with this "
                               "mask; pick one, or find by number or ICCID.")
            else:
                self.status.ok(f"找到 {len(found)} 张卡 Found {len(found)} SIM cards; pick one.")

        self._guard(run)

    def _find(self, value: str) -> list[Card]:
        if "*" in value or looks_like_resident_id(value):
            found: dict[str, Card] = {}
            people = (subscribers.find(self.store, masked=value, actor=self.actor) if "*" in value
                      else subscribers.find(self.store, resident_id=value, actor=self.actor))  # errors show it masked
            for person in people:
                for bound in subscribers.numbers_of(self.store, person.id, live_only=False):
                    try:
                        card = cards.get_card(self.store, bound["msisdn"], actor=self.actor)
                    except NotFound:
                        continue
                    if card.subscriber_id == person.id:
                        found.setdefault(card.iccid, card)
                if len(found) >= MASK_MATCHES:  # a mask fits many people: it narrows, it does not pick
                    break
            return list(found.values())[:MASK_MATCHES]
        try:
            return [cards.get_card(self.store, value, actor=self.actor)]
        except NotFound:
            return []

    def _set_found(self, found: list[Card]) -> None:
        self.found = list(found)
        self.matches.unobserve_all("value")
        self.matches.options = [("— 选择卡 pick a card —", None)] + [
            (f"{_display(c.msisdn)} · SIM {c.iccid} · {SIM_BADGES.label(c.state)}", c.iccid) for c in found]
        self.matches.value = found[0].iccid if len(found) == 1 else None
        self.matches.observe(lambda _change: self._pick(), names="value")
        self.matches.layout.display = "flex" if len(found) > 1 else "none"
        self.cancel(quiet=True)
        self.card = None
        if self.matches.value is None:
            self._show_card()
        else:
            self._load(self.matches.value)

    def _pick(self) -> None:
        self.cancel(quiet=True)
        iccid = self.matches.value
        if iccid is None:
            self.card = None
            self._show_card()
            return
        self._guard(lambda: self._load(iccid))

    def _load(self, iccid: str) -> None:
        """Read the card, its history and its HLR record, and show them."""
        self.card = cards.get_card(self.store, iccid, actor=self.actor)
        self._show_card()

    def _show_usage(self) -> None:
        """The shown card's number: data and outgoing voice per day, from the usage store."""
        from hkops.analytics.usage_stats import usage_per_day

        days = None
        if self.card is not None and self.card.msisdn:
            try:
                days = usage_per_day(self.usage_dir, msisdn=int(self.card.msisdn))
            except InvalidValue:
                days = None
        bars, line = self.usage_chart.data
        if days is None or days.empty:
            bars.x = line.x = bars.y = line.y = ()
            self.usage_note.value = ("<div class='hkops-muted'>无用量记录 No usage records for this number yet "
                                     "(<code>hkops usage generate</code>).</div>")
            return
        labels = [str(day) for day in days["day"]]
        with self.usage_chart.batch_update():
            bars.x, bars.y = labels, (days["data_bytes"] / 1e6).round(1).tolist()
            line.x, line.y = labels, (days["voice_mo_s"] / 60).round(1).tolist()
        refused = int(days["refused"].sum())
        self.usage_note.value = (f"<div class='hkops-muted'>{len(days)} day(s)"
                                 + (f" · {refused} refused attempt(s)" if refused else "") + "</div>")

    def _show_card(self) -> None:
        self._show_usage()
        card = self.card
        refused = cards.refused_move(self.store, card.iccid) if card is not None else None
        for button in (self.retry_button, self.abandon_button):
            button.disabled = refused is None
        if card is None:
            self.detail.value = "<div class='hkops-empty'>未选择卡 No card: find one by MSISDN, ICCID or masked resident ID.</div>"
            self.timeline.value = "<div class='hkops-muted'>—</div>"
            self.hlr.value = "<div class='hkops-muted'>—</div>"
            return
        who = "—"
        if card.subscriber_id is not None:
            try:
                person = subscribers.get(self.store, card.subscriber_id, actor=self.actor)
                who = f"{html.escape(person.name)} · {html.escape(person.id_masked)} (#{person.id})"
            except (NotFound, AccessDenied):  # AccessDenied: a role that does not see people
                who = f"#{card.subscriber_id}"
        pending = (f"<b>{html.escape(card.pending_action)}</b> (等待 HLR 确认 waiting for the HLR)"
                   if card.pending_action else "—")
        reason = f" · {html.escape(REASON_LABELS.get(card.suspend_reason, card.suspend_reason))}" if card.suspend_reason else ""
        rows = [
            ("状态 State", SIM_BADGES.badge(card.state) + reason),
            ("号码 Number", f"<span class='hkops-number'>{_display(card.msisdn)}</span>"),
            ("ICCID", f"<span class='hkops-number'>{card.iccid}</span>"),
            ("IMSI", html.escape(card.imsi)),
            ("运营商 Carrier", html.escape(card.carrier)),
            ("用户 Subscriber", who),
            ("HLR 同步 HLR sync", html.escape(SYNC_LABELS.get(card.network_sync, card.network_sync))),
            ("待确认 Pending action", pending),
            ("开通 Activated", local(card.activated_at) or "—"),
        ]
        if refused is not None:
            rows.append(("HLR 拒绝 Refused by the HLR", f"<b>{html.escape(refused['action'])}</b> · "
                                                      f"{html.escape(refused['last_error'] or '')} · retry or abandon"))
        if card.replaced_by:
            rows.append(("补换为 Replaced by", html.escape(card.replaced_by)))
        if card.swapped_at:
            rows.append(("换卡时间 Swapped", local(card.swapped_at)))
        allowed = [ACTIONS[a].button for a in ACTIONS if SimState(card.state) in MOVES[a].starts]
        rows.append(("可做 Possible moves", html.escape(", ".join(allowed)) or "—"))
        self.detail.value = "<table>" + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows) + "</table>"
        self.timeline.value = timeline_table(self._history(card))
        self._show_hlr(card)

    def _history(self, card: Card) -> list[dict]:
        with self.store.read() as conn:
            records = {r["id"]: r for r in audit.query(conn, subject=card.iccid, limit=200)}
            if card.msisdn:
                records.update({r["id"]: r for r in audit.query(conn, subject=card.msisdn, limit=200)})
        return sorted(records.values(), key=lambda r: r["id"], reverse=True)

    def _show_hlr(self, card: Card) -> None:
        if not card.msisdn:
            self.hlr.value = "<div class='hkops-muted'>无号码 The card has no number; the HLR has nothing for it.</div>"
            return
        try:
            record = self._timed(f"get {card.msisdn}", lambda: self.network.get(card.msisdn))
        except (ProvisioningError, OSError, InvalidValue) as error:
            self.hlr.value = (f"<div class='hkops-hlr-down'>HLR 不可达 HLR unreachable</div>"
                              f"<div class='hkops-muted'>{html.escape(one_line(error))}</div>")
            return
        if record is None:
            self.hlr.value = (f"<div>HLR 无此用户 The HLR has no subscriber {_display(card.msisdn)}.</div>")
            return
        mine = "" if record.imsi == card.imsi else " <b>(不是本卡 not this card's IMSI)</b>"
        barred = (f"<b>是 yes</b> ({html.escape(record.barring_reason.value if record.barring_reason else '')})"
                  if record.barred else "否 no")
        rows = [("ISDN", html.escape(record.isdn)), ("IMSI", html.escape(record.imsi) + mine),
                ("闭锁 Barred", barred), ("更新 Updated", html.escape(record.updated))]
        self.hlr.value = ("<table class='hkops-hlr-record'>"
                          + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows) + "</table>")

    # ------------------------------------------------------------ moving

    def ask(self, action: str) -> None:
        """Show what ``action`` will do to the found card and wait for Confirm or Cancel."""
        def run():
            spec = ACTIONS[action]
            card = self.card
            if card is None:
                self.status.error("请先查找卡 Find a card first.")
                return
            name = f"SIM {card.iccid} ({_display(card.msisdn)}, now {card.state})"
            args: dict = {}
            if action == "suspend":
                args["why"] = self.suspend_reason.value
                question = f"停机 Suspend {name} for <b>{html.escape(REASON_LABELS[args['why']])}</b>?"
            elif action == "replace":
                new, rid = self.new_iccid.value.strip(), self.resident_id.value.strip()
                if not new or not rid:
                    self.status.error("请填写新卡 ICCID 和证件号 Type the new ICCID and the holder's resident ID first.")
                    return
                args = {"new": new, "resident_id": rid}
                shown = mask_id_text(rid)
                question = (f"补换卡 Replace {name} with new SIM <b>{html.escape(new)}</b>, holder's ID "
                            f"{html.escape(shown)}? The old card can never come back.")
            elif action == "terminate":
                question = f"销户 Terminate {name}? The number goes into quarantine; this cannot be undone."
            else:
                question = f"{spec.button} {name}?"
            self._ask(PendingMove(action, card.iccid, question, args), question)

        self._guard(run)

    def confirm(self) -> None:
        """Make the pending move, then show the card, its history and the network panel again."""
        pending = self._take_pending()
        if pending is None:
            return

        def run():
            spec = ACTIONS[pending.action]
            common = dict(actor=self.actor, network=self.network)

            def synced(card: Card) -> bool:
                return not card.pending_action
            with self.progress.busy(spec.button, 2) as step:
                before = cards.get_card(self.store, pending.iccid).state
                if pending.action == "suspend":
                    card = self._timed("suspend", lambda: cards.suspend(self.store, pending.iccid,
                                                                        pending.args["why"], **common), synced)
                elif pending.action == "replace":
                    card = self._timed("replace", lambda: cards.replace(
                        self.store, pending.iccid, pending.args["new"], pending.args["resident_id"], **common),
                        synced)
                else:
                    move = getattr(cards, pending.action)
                    card = self._timed(pending.action, lambda: move(self.store, pending.iccid, **common), synced)
                step()
                if pending.action == "replace":
                    self.resident_id.value = ""
                    self.new_iccid.value = ""
                    self._set_found([card])
                else:
                    self._load(card.iccid)
                self._show_network()
                step()
            after = cards.get_card(self.store, pending.iccid).state
            refused = cards.refused_move(self.store, pending.iccid)
            if refused is not None:
                self.status.error(f"{spec.button}: the HLR refused it ({refused['last_error']}); SIM {pending.iccid} "
                                  f"is {after}. Retry or abandon the refused move.")
            elif card.pending_action:
                self.status.info(f"{spec.button}: SIM {pending.iccid} ({before} → {card.state}) recorded; "
                                 f"waiting for the HLR to confirm '{card.pending_action}' "
                                 "(use Sync now when the HLR is back).")
            else:
                new = f", now SIM {card.iccid} serves {_display(card.msisdn)}" if pending.action == "replace" else ""
                self.status.ok(f"{spec.done}: SIM {pending.iccid} ({before} → {after}){new}; HLR {card.network_sync}.")

        self._guard(run)

    def retry(self) -> None:
        """Send the found card's refused move to the HLR again."""
        def run():
            card = self.card
            if card is None:
                self.status.error("请先查找卡 Find a card first.")
                return
            card = self._timed("retry", lambda: cards.retry(self.store, card.iccid, actor=self.actor,
                                                            network=self.network), lambda c: not c.pending_action)
            self._load(card.iccid)
            self._show_network()
            if card.network_sync == "failed":
                self.status.error(f"重发 Retry: the HLR refused SIM {card.iccid}'s move again "
                                  f"({(cards.refused_move(self.store, card.iccid) or {}).get('last_error') or ''}).")
            elif card.pending_action:
                self.status.info(f"重发 Retry: SIM {card.iccid} waits for the HLR to confirm '{card.pending_action}'.")
            else:
                self.status.ok(f"重发 Retry: the HLR confirmed; SIM {card.iccid} is {card.state}.")

        self._guard(run)

    def abandon(self) -> None:
        """Give up the found card's refused move, with the reason typed."""
        def run():
            card = self.card
            if card is None:
                self.status.error("请先查找卡 Find a card first.")
                return
            card = cards.abandon(self.store, card.iccid, actor=self.actor, reason=self.abandon_reason.value)
            self.abandon_reason.value = ""
            self._load(card.iccid)
            self._show_network()
            self.status.ok(f"已放弃 Abandoned: SIM {card.iccid} stays {card.state}; HLR {card.network_sync}.")

        self._guard(run)

    def sync(self) -> None:
        """Send every pending HLR command now; show what the HLR confirmed."""
        def run():
            access.require(self.actor, "hlr.operate", "sync HLR commands", self.store)
            with self.progress.busy("同步 Syncing", 1) as step:
                report = self._timed("sync", lambda: cards.sync(self.store, self.network),
                                     lambda report: not report.pending if report.sent else None)
                step()
            if self.card is not None:
                self._load(self.card.iccid)
            self._show_network()
            if not report.sent:
                self.status.info("没有待发送的指令 Nothing to send: no HLR command is pending.")
            elif report.pending or report.failed:
                self.status.error(f"同步 Sync: sent {report.sent}, confirmed {len(report.confirmed)}, "
                                  f"refused {len(report.failed)}, still pending {report.pending}.")
            else:
                self.status.ok(f"已同步 Synced: the HLR confirmed all {len(report.confirmed)} command(s).")

        self._guard(run)

    def reconcile(self) -> None:
        """Compare inventory with the HLR (no repair); show the number of differences."""
        def run():
            with self.progress.busy("稽核 Reconciling", 1) as step:
                differences = self._timed("reconcile", lambda: cards.reconcile(self.store, self.network,
                                                                               actor=self.actor))
                step()
            if self.card is not None:
                self._load(self.card.iccid)
            self._show_network()
            if differences:
                listed = "; ".join(f"{d.msisdn} {d.kind}" for d in differences[:5])
                more = f" and {len(differences) - 5} more" if len(differences) > 5 else ""
                self.status.error(f"稽核 Reconciliation: {len(differences)} difference(s): {listed}{more}. "
                                  "Repair with `hkops hlr reconcile --fix`.")
            else:
                self.status.ok("稽核 Reconciliation: 0 differences; inventory and HLR agree.")

        self._guard(run)

    # ------------------------------------------------------------ errors

    def _buttons(self):
        return (self.find_button, self.refresh_button, self.suspend_button, self.resume_button,
                self.report_loss_button, self.lift_loss_button, self.replace_button, self.terminate_button,
                self.confirm_button, self.cancel_button, self.sync_button, self.reconcile_button)


def timeline_table(records: list[dict]) -> str:
    """Audit records (newest first) as a compact table, times in Asia/Shanghai."""
    if not records:
        return "<div class='hkops-empty'>没有记录 No history recorded.</div>"
    head = ("<tr><th>时间 Time (Asia/Shanghai)</th><th>对象 Subject</th><th>动作 Move</th>"
            "<th>状态 From → to</th><th>操作人 Actor</th><th>原因 Reason</th></tr>")
    rows = []
    for r in records:
        states = " → ".join(s for s in (r["from_state"], r["to_state"]) if s) or ""
        rows.append(
            f"<tr data-action='{html.escape(r['action'])}'><td>{local(r['at'])}</td>"
            f"<td>{html.escape(r['entity'])} {html.escape(r['subject'])}</td>"
            f"<td><b>{html.escape(r['action'])}</b></td><td>{html.escape(states)}</td>"
            f"<td>{html.escape(r['actor'])}</td><td>{html.escape(r['reason'] or '')}</td></tr>"
        )
    return (f"<div class='hkops-table-wrap'><table class='hkops-table'><thead>{head}</thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def refused_table(rows: list[dict]) -> str:
    """Moves the HLR refused (outbox rows, :func:`hkops.cards.service.pending`) with its answer."""
    if not rows:
        return "<div class='hkops-muted'>HLR 拒绝 Refused moves: none 无</div>"
    body = "".join(f"<tr data-iccid='{html.escape(r['iccid'])}'><td class='hkops-number'>{html.escape(r['iccid'])}</td>"
                   f"<td>{_display(str(r['msisdn']))}</td><td><b>{html.escape(r['action'])}</b></td>"
                   f"<td>{html.escape(r['last_error'] or '')}</td></tr>" for r in rows)
    return (f"<div>HLR 拒绝 Refused moves: <b>{len(rows)}</b> (find the card, then retry or abandon)</div>"
            "<div class='hkops-table-wrap'><table class='hkops-table'><thead><tr><th>ICCID</th><th>号码 Number</th>"
            f"<th>动作 Move</th><th>HLR 回复 HLR answer</th></tr></thead><tbody>{body}</tbody></table></div>")


def lifecycle_console(store: Store | None = None, network: ProvisioningClient | None = None,
                      actor: str | None = None, usage_dir=None) -> LifecycleConsole:
    """The card lifecycle console (卡生命周期) on ``store`` (default: the configured database),
    talking to the HLR through ``network`` (default: TCP to $HKOPS_HLR or 127.0.0.1:7500),
    with usage read from ``usage_dir`` (default HKOPS_USAGE_STORE, else data/usage)."""
    return LifecycleConsole(store, network, actor, usage_dir)
