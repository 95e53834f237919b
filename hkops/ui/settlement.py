"""The settlement console (结算): agents' balances and pending commission, clawbacks, settlement
batches, the withdrawal queue and the commission charts.

The widget only wires: every figure and move is :mod:`hkops.commissions.service` (agent_balances,
list_entries, list_batches, batch_preview, create_batches, move_batch, export_batch,
list_withdrawals, move_withdrawal, commission_report), given the logged-in actor, so an agent user
sees its own subtree only and a user without ``settlement.write`` is refused any move. Every
move that cannot be undone (creating, confirming, approving and paying a batch; approving,
paying and rejecting a withdrawal) waits for the operator's confirmation.
"""

from __future__ import annotations

import base64
import html
from datetime import date
from pathlib import Path

import ipywidgets as widgets
import plotly.graph_objects as go

from hkops.commissions import service as commissions
from hkops.errors import InvalidValue
from hkops.money import fen_to_yuan, format_yuan
from hkops.orders import service as orders
from hkops.security import access
from hkops.security.access import is_principal
from hkops.store.engine import Store, get_store
from hkops.timeutil import SHANGHAI, local, utc_now
from hkops.ui import charts
from hkops.ui._common import (
    ANY,
    Busy,
    ConfirmRow,
    GuardedConsole,
    PendingMove,
    StateBadges,
    StatusLine,
    button,
    choice,
    console_actor,
    field,
    html_table,
    panel,
    row,
    set_options,
    stylesheet,
)

#: The most rows a table lists at once (agents, entries, clawbacks, batches, withdrawals).
LISTED = 200
#: Exports up to this size are also offered as a download link in the page.
LINKED_BYTES = 5_000_000

ENTRY_ZH = {"accrued": "已计提", "held": "考核中", "eligible": "可结算", "settled": "已结算", "paid": "已支付"}
ENTRY_COLOURS = {"accrued": "#9ca3af", "held": "#f59e0b", "eligible": "#0891b2", "settled": "#2563eb",
                 "paid": "#16a34a"}
BATCH_ZH = {"draft": "草稿", "confirmed": "已确认", "approved": "已审批", "paid": "已支付"}
BATCH_COLOURS = {"draft": "#9ca3af", "confirmed": "#0891b2", "approved": "#7c3aed", "paid": "#16a34a"}
WITHDRAWAL_ZH = {"requested": "已申请", "approved": "已审批", "paid": "已支付", "rejected": "已驳回"}
WITHDRAWAL_COLOURS = {"requested": "#f59e0b", "approved": "#7c3aed", "paid": "#16a34a", "rejected": "#6b7280"}
ENTRY_BADGES = StateBadges("hkops-entry", ENTRY_ZH, ENTRY_COLOURS)
BATCH_BADGES = StateBadges("hkops-batch", BATCH_ZH, BATCH_COLOURS)
WITHDRAWAL_BADGES = StateBadges("hkops-withdrawal", WITHDRAWAL_ZH, WITHDRAWAL_COLOURS)
EVENT_ZH = {"order_paid": "付款 order paid", "activation": "激活 activation", "first_topup": "首充 first top-up",
            "in_network": "月返 in network"}
POSITION_ZH = {1: "1 销售代理 seller", 2: "2 上级 parent", 3: "3 上上级 grandparent"}
PENDING = "pending"
WITHDRAWAL_FILTERS = [("待处理 pending (requested, approved)", PENDING), (ANY, "")] + [
    (WITHDRAWAL_BADGES.label(s), s) for s in WITHDRAWAL_ZH]
BATCH_FILTERS = [(ANY, "")] + [(BATCH_BADGES.label(s), s) for s in BATCH_ZH]
FORMATS = [("Excel (.xlsx)", "xlsx"), ("CSV (.csv)", "csv")]
ALL_AGENTS = "全部代理商 every agent"
#: The value of "nothing picked" in the batch and withdrawal dropdowns (ids start at 1).
NONE = 0

_STYLE = """
.hkops-settlement .hkops-total td { font-weight: 600; border-top: 1px solid #d1d5db; }
.hkops-settlement .hkops-neg { color: #b91c1c; }
.hkops-settlement .hkops-kv td { padding: 2px 12px 2px 0; }
.hkops-settlement .hkops-readonly { color: #92400e; }
"""


def money(fen: int) -> str:
    """Yuan for a table cell; a negative amount (a clawback, a receivable) in red."""
    if fen >= 0:
        return html.escape(format_yuan(fen))
    return f"<span class='hkops-neg'>-{html.escape(format_yuan(-fen))}</span>"


def _code(text: str) -> str:
    return f"<span class='hkops-number'>{html.escape(str(text))}</span>"


def _kv(rows: list[tuple[str, str]]) -> str:
    return "<table class='hkops-kv'>" + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows) + "</table>"


def previous_month(day: date) -> str:
    """The month before ``day``'s, as YYYY-MM (the period a month-end settles)."""
    index = day.year * 12 + day.month - 2
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _yuan(fen: int | None) -> float | None:
    """Yuan for a chart axis: plotly draws floats; every figure shown in a table stays exact."""
    return None if fen is None else float(fen_to_yuan(fen))


class SettlementConsole(GuardedConsole, widgets.VBox):
    """结算 Settlement: balances and pending commission per agent (drill down to the entries and
    each entry's order), clawbacks, settlement batches, the withdrawal queue, charts.

    The pieces are attributes so that tests can drive them: ``as_of``, ``refresh_button``,
    ``write_note``; balances ``agent_filter``, ``balances_table``, ``agent_pick``,
    ``entries_table``, ``order_pick``, ``order_detail``; ``clawbacks_table``; batches ``period``,
    ``batch_agent``, ``create_button``, ``batch_period_filter``, ``batch_state_filter``,
    ``batches_table``, ``batch_pick``, ``batch_detail``, ``reference``, ``confirm_batch_button``,
    ``approve_button``, ``pay_button``, ``export_format``, ``export_button``, ``export_result``,
    ``batch_confirm``; withdrawals ``withdrawal_filter``, ``withdrawals_table``,
    ``withdrawal_pick``, ``withdrawal_reference``, ``withdrawal_reason``,
    ``withdrawal_approve_button``, ``withdrawal_pay_button``, ``withdrawal_reject_button``,
    ``withdrawal_confirm``; charts ``level_chart``, ``clawback_chart``, ``cost_chart``; and
    ``status``, ``progress``.
    """

    nothing_pending = "choose a move first"

    def __init__(self, store: Store | None = None, actor: str | None = None, export_dir: str | Path | None = None):
        super().__init__()
        self.store = store or get_store()
        self.actor = actor or console_actor()
        self.export_dir = Path(export_dir) if export_dir else None
        self.pending: PendingMove | None = None
        self._quiet = False  # True while the console itself fills a dropdown
        self._suggested = ""  # the period last offered

        self.refresh_button = button("刷新 Refresh", "hkops-refresh", icon="refresh")
        self.as_of = field("截至 As of", css="hkops-as-of-date", width="230px", kind=widgets.DatePicker,
                           value=utc_now().astimezone(SHANGHAI).date())
        self.write_note = widgets.HTML().add_class("hkops-write-note")
        self.status = StatusLine()
        self.progress = Busy()

        # balances and drill-down
        self.agent_filter = field("代理商 Agent", "code contains…", "hkops-agent-filter", "240px")
        self.agent_filter.continuous_update = False
        self.balances_table = widgets.HTML().add_class("hkops-balances")
        self.agent_pick = choice("明细 Entries of", [("— 选择代理商 pick an agent —", "")], "hkops-agent-pick", "330px")
        self.entries_table = widgets.HTML().add_class("hkops-entries")
        self.order_pick = choice("订单 Order", [("— 选择订单 pick an order —", "")], "hkops-entry-order", "330px")
        self.order_detail = widgets.HTML().add_class("hkops-entry-order-detail")

        # clawbacks
        self.clawbacks_table = widgets.HTML().add_class("hkops-clawbacks")

        # batches
        self.period = field("期间 Period", "YYYY-MM", "hkops-period", "200px")
        self.batch_agent = choice("代理商 Agent", [(ALL_AGENTS, "")], "hkops-batch-agent", "280px")
        self.create_button = button("生成结算单 Create batches", "hkops-create-batches", "warning", "plus")
        self.batch_period_filter = field("期间 Period", "YYYY-MM (all)", "hkops-batch-period-filter", "220px")
        self.batch_period_filter.continuous_update = False
        self.batch_state_filter = choice("状态 State", BATCH_FILTERS, "hkops-batch-state-filter", "220px")
        self.batches_table = widgets.HTML().add_class("hkops-batches")
        self.batch_pick = choice("结算单 Batch", [("— 选择结算单 pick a batch —", NONE)], "hkops-batch-pick", "96%")
        self.batch_detail = widgets.HTML().add_class("hkops-batch-detail")
        self.reference = field("付款流水 Payment reference", "bank transfer no.", "hkops-batch-reference", "330px")
        self.confirm_batch_button = button("确认 Confirm batch", "hkops-batch-confirm", "info", "check")
        self.approve_button = button("审批 Approve", "hkops-batch-approve", "primary", "thumbs-up")
        self.pay_button = button("支付 Pay", "hkops-batch-pay", "success", "money")
        self.export_format = choice("格式 Format", FORMATS, "hkops-export-format", "200px")
        self.export_button = button("导出对账单 Export statement", "hkops-export", icon="download")
        self.export_result = widgets.HTML().add_class("hkops-export-result")
        self.batch_confirm = ConfirmRow()
        self.batch_confirm.add_class("hkops-batch-confirm-row")

        # withdrawals
        self.withdrawal_filter = choice("状态 State", WITHDRAWAL_FILTERS, "hkops-withdrawal-filter", "300px")
        self.withdrawals_table = widgets.HTML().add_class("hkops-withdrawals")
        self.withdrawal_pick = choice("提现 Withdrawal", [("— 选择提现 pick a withdrawal —", NONE)],
                                      "hkops-withdrawal-pick", "96%")
        self.withdrawal_reference = field("付款流水 Reference", "bank transfer no.", "hkops-withdrawal-reference",
                                          "300px")
        self.withdrawal_reason = field("驳回原因 Reason", "why it is rejected", "hkops-withdrawal-reason", "300px")
        self.withdrawal_approve_button = button("审批 Approve", "hkops-withdrawal-approve", "primary", "thumbs-up")
        self.withdrawal_pay_button = button("支付 Pay", "hkops-withdrawal-pay", "success", "money")
        self.withdrawal_reject_button = button("驳回 Reject", "hkops-withdrawal-reject", "danger", "times")
        self.withdrawal_confirm = ConfirmRow()
        self.withdrawal_confirm.add_class("hkops-withdrawal-confirm-row")

        # charts
        look = dict(height=300, margin={"l": 55, "r": 10, "t": 40, "b": 40}, template="plotly_white",
                    font={"size": 11}, legend={"orientation": "h", "y": -0.2})
        self.level_chart = charts.figure(layout=go.Layout(
            title={"text": "佣金 Commission by month and chain position (¥)", "font": {"size": 14}, "x": 0.01},
            barmode="relative", **look))
        self.clawback_chart = charts.figure(layout=go.Layout(
            title={"text": "回收率 Clawback rate (% of credits)", "font": {"size": 14}, "x": 0.01},
            yaxis={"ticksuffix": "%", "rangemode": "tozero"}, **look))
        self.cost_chart = charts.figure(layout=go.Layout(
            title={"text": "单激活成本 Commission per activation (¥)", "font": {"size": 14}, "x": 0.01}, **look))
        for name, chart in (("level", self.level_chart), ("clawback", self.clawback_chart), ("cost", self.cost_chart)):
            chart.add_class("hkops-chart").add_class(f"hkops-{name}-chart")

        self.refresh_button.on_click(lambda _b: self._guard(self._refresh, announce=True))
        self.as_of.observe(lambda _c: self._guard(self._suggest_period), names="value")
        self.agent_filter.observe(lambda _c: self._guard(self._show_balances), names="value")
        self.agent_pick.observe(lambda _c: self._quiet or self._guard(self._show_entries), names="value")
        self.order_pick.observe(lambda _c: self._quiet or self._guard(self._show_order), names="value")
        self.create_button.on_click(lambda _b: self.ask_create())
        for widget in (self.batch_period_filter, self.batch_state_filter):
            widget.observe(lambda _c: self._quiet or self._guard(self._show_batches), names="value")
        self.batch_pick.observe(lambda _c: self._quiet or self._guard(self._show_batch), names="value")
        self.confirm_batch_button.on_click(lambda _b: self.ask_batch("confirm"))
        self.approve_button.on_click(lambda _b: self.ask_batch("approve"))
        self.pay_button.on_click(lambda _b: self.ask_batch("pay"))
        self.export_button.on_click(lambda _b: self.export())
        self.withdrawal_filter.observe(lambda _c: self._guard(self._show_withdrawals), names="value")
        self.withdrawal_approve_button.on_click(lambda _b: self.ask_withdrawal("approve"))
        self.withdrawal_pay_button.on_click(lambda _b: self.ask_withdrawal("pay"))
        self.withdrawal_reject_button.on_click(lambda _b: self.ask_withdrawal("reject"))
        for confirm_row in self._confirm_rows():
            confirm_row.confirm_button.on_click(lambda _b: self.confirm())
            confirm_row.cancel_button.on_click(lambda _b: self.cancel())

        title = widgets.HTML("<h2 class='hkops-title'>结算 <span>Settlement</span></h2>")
        balances = panel("余额与待结算 Balances and pending commission per agent", [
            self.agent_filter, self.balances_table], "1 1 100%")
        drill = panel("佣金明细 Entries of an agent (newest first)", [
            self.agent_pick, self.entries_table, self.order_pick, self.order_detail], "3 1 560px")
        clawbacks = panel("回收 Clawbacks (newest first)", [self.clawbacks_table], "2 1 420px")
        batches = panel("结算单 Settlement batches", [
            row([self.period, self.batch_agent, self.create_button], "hkops-filters"),
            row([self.batch_period_filter, self.batch_state_filter], "hkops-filters"),
            self.batches_table], "2 1 520px")
        batch = panel("结算单明细 The batch", [
            self.batch_pick, self.batch_detail,
            row([self.confirm_batch_button, self.approve_button], "hkops-buttons"),
            row([self.reference, self.pay_button]),
            row([self.export_format, self.export_button]), self.export_result, self.batch_confirm], "2 1 480px")
        batch.add_class("hkops-actions")
        queue = panel("提现队列 Withdrawal queue", [
            self.withdrawal_filter, self.withdrawals_table, self.withdrawal_pick,
            row([self.withdrawal_approve_button]),
            row([self.withdrawal_reference, self.withdrawal_pay_button]),
            row([self.withdrawal_reason, self.withdrawal_reject_button]), self.withdrawal_confirm], "1 1 100%")
        queue.add_class("hkops-actions")
        figures = row([charts.FitCharts()] + [
            widgets.VBox([chart], layout=widgets.Layout(flex="1 1 380px", min_width="0"))
            for chart in (self.level_chart, self.clawback_chart, self.cost_chart)])
        badges = ENTRY_BADGES.css() + BATCH_BADGES.css() + WITHDRAWAL_BADGES.css()
        self.children = [
            stylesheet(), widgets.HTML(f"<style>{_STYLE}{badges}</style>", layout=widgets.Layout(display="none")),
            title, row([self.refresh_button, self.as_of], "hkops-filters"), self.write_note, self.progress,
            self.status, figures, row([balances]), row([drill, clawbacks]), row([batches, batch]), row([queue]),
        ]
        self.add_class("hkops-console")
        self.add_class("hkops-settlement")
        self._suggest_period()
        self.first_load()

    # ------------------------------------------------------------ reading

    def _refresh(self) -> None:
        """Reload every table and chart (keeping what is picked)."""
        with self.progress.busy("读取结算 Reading settlements", 6) as step:
            self._show_write_note()
            self._show_balances()
            step()
            self._show_entries()
            step()
            self._show_clawbacks()
            step()
            self._show_batches()
            step()
            self._show_withdrawals()
            step()
            self._draw()
            step()

    def _show_write_note(self) -> None:
        may_write = not is_principal(self.actor) or self.actor.can("settlement.write")
        self.write_note.value = "" if may_write else (
            f"<div class='hkops-readonly'>只读 Read only: {html.escape(str(self.actor))} may see settlements "
            "but not create, approve or pay them.</div>")

    def _suggest_period(self) -> None:
        """Offer the month before "as of" as the period, unless the operator typed another."""
        if self.as_of.value and self.period.value.strip() in ("", self._suggested):
            self._suggested = self.period.value = previous_month(self.as_of.value)

    def _today(self) -> date:
        if self.as_of.value is None:
            raise InvalidValue("as of", "", "pick the date the console works as of")
        return self.as_of.value

    def _show_balances(self) -> None:
        rows = commissions.agent_balances(self.store, actor=self.actor)
        self._quiet = True
        try:
            codes = [(f"{r['agent']} · {r['name']} (L{r['level']})", r["agent"]) for r in rows]
            set_options(self.agent_pick, [("— 选择代理商 pick an agent —", "")] + codes)
            set_options(self.batch_agent, [(ALL_AGENTS, "")] + codes)
        finally:
            self._quiet = False
        wanted = self.agent_filter.value.strip().upper()
        shown = [r for r in rows if wanted in r["agent"]] if wanted else rows
        cells = [[_code(r["agent"]), html.escape(r["name"]), f"L{r['level']}", money(r["balance_fen"]),
                  money(r["frozen_fen"]), money(r["available_fen"]), money(r["accrued_fen"]), money(r["held_fen"]),
                  money(r["eligible_fen"]), money(r["settled_fen"]), money(r["clawed_back_fen"]), f"{r['entries']:,}"]
                 for r in shown[:LISTED]]
        if shown:
            cells.append(["合计 Total", f"{len(shown):,} agent(s)", ""] + [
                money(sum(r[k] for r in shown)) for k in (
                    "balance_fen", "frozen_fen", "available_fen", "accrued_fen", "held_fen", "eligible_fen",
                    "settled_fen", "clawed_back_fen")] + [f"{sum(r['entries'] for r in shown):,}"])
        more = (f"<div class='hkops-muted'>{LISTED} of {len(shown):,} agents listed; filter by code to see the "
                "others (the total line counts all).</div>" if len(shown) > LISTED else "")
        self.balances_table.value = html_table(
            ["代理商 Agent", "名称 Name", "级 Level", "余额 Balance", "冻结 Frozen", "可提 Available",
             "已计提 Accrued", "考核中 Held", "可结算 Eligible", "已结算 Settled", "已回收 Clawed back",
             "条目 Entries"], cells, numeric=set(range(3, 12)),
            row_attrs=[f"data-agent='{html.escape(r['agent'])}'" for r in shown[:LISTED]]
            + (["class='hkops-total'"] if shown else []),
            empty="没有代理商 No agents match.") + more

    def _show_entries(self) -> None:
        agent = self.agent_pick.value
        if not agent:
            self.entries_table.value = "<div class='hkops-empty'>选择一个代理商 Pick an agent to see its entries.</div>"
            self._set_orders([])
            self.order_detail.value = ""
            return
        entries = list(reversed(commissions.list_entries(self.store, agent=agent, limit=LISTED, actor=self.actor)))
        self.entries_table.value = entries_table(entries)
        self._set_orders(list(dict.fromkeys(e["order_number"] for e in entries)))
        self._show_order()

    def _set_orders(self, numbers: list[str]) -> None:
        self._quiet = True
        try:
            set_options(self.order_pick, [("— 选择订单 pick an order —", "")] + [(n, n) for n in numbers])
        finally:
            self._quiet = False

    def _show_order(self) -> None:
        number = self.order_pick.value
        if not number:
            self.order_detail.value = ""
            return
        detail = orders.order_detail(self.store, number, actor=self.actor)["order"]
        entries = commissions.list_entries(self.store, order=number, actor=self.actor)
        chain = " › ".join(f"{a['code']} (L{a['level']})" for a in detail["agent_chain"]) or "—"
        self.order_detail.value = _kv([
            ("订单 Order", f"{_code(detail['number'])} {html.escape(detail['state'])}"),
            ("渠道 Channel", f"{html.escape(detail['channel'])} · chain {html.escape(chain)}"),
            ("套餐 Plan", html.escape(detail["plan"])),
            ("下单 Placed", local(detail["created_at"])),
            ("佣金 Commission on it", money(sum(e["amount_fen"] for e in entries))),
        ]) + entries_table(entries, with_agent=True)

    def _show_clawbacks(self) -> None:
        rows = list(reversed(commissions.list_entries(self.store, kind="reversal", limit=LISTED, actor=self.actor)))
        self.clawbacks_table.value = html_table(
            ["时间 When (stop)", "订单 Order", "事件 Event", "代理商 Agent", "金额 Amount", "状态 State",
             "结算单 Batch"],
            [[local(r["event_at"]), _code(r["order_number"]), html.escape(_event(r)), _code(r["agent"]),
              money(r["amount_fen"]), ENTRY_BADGES.badge(r["state"]), str(r["batch_id"] or "—")] for r in rows],
            numeric={4}, row_attrs=[f"data-order='{html.escape(r['order_number'])}'" for r in rows],
            empty="没有回收 No clawbacks.")

    def _show_batches(self) -> None:
        period = self.batch_period_filter.value.strip() or None
        rows = commissions.list_batches(self.store, period=period, state=self.batch_state_filter.value or None,
                                        limit=LISTED, actor=self.actor)
        self.batches_table.value = html_table(
            ["结算单 Batch", "代理商 Agent", "期间 Period", "状态 State", "条目 Lines", "金额 Total",
             "付款流水 Reference", "更新 Changed"],
            [[_code(r["id"]), _code(r["agent"]), html.escape(r["period"]), BATCH_BADGES.badge(r["state"]),
              f"{r['lines']:,}", money(r["total_fen"]), html.escape(r["reference"] or ""), local(r["changed_at"])]
             for r in rows], numeric={4, 5}, row_attrs=[f"data-batch='{r['id']}'" for r in rows],
            empty="没有结算单 No settlement batches match.")
        options = [(f"#{r['id']} · {r['agent']} · {r['period']} · {BATCH_BADGES.label(r['state'])} · "
                    f"{format_yuan(r['total_fen'])}", r["id"]) for r in rows]
        self._quiet = True
        try:
            current = self.batch_pick.value
            if current and current not in {r["id"] for r in rows}:
                options.append((f"#{current}", current))  # keep showing the batch that was picked
            set_options(self.batch_pick, [("— 选择结算单 pick a batch —", NONE)] + options)
        finally:
            self._quiet = False
        self._show_batch()

    def _show_batch(self) -> None:
        if not self.batch_pick.value:
            self.batch_detail.value = "<div class='hkops-empty'>选择一个结算单 Pick a batch.</div>"
            return
        batch = commissions.show_batch(self.store, self.batch_pick.value, actor=self.actor)
        lines = batch["lines"]
        shown = lines[:LISTED]
        table = html_table(
            ["条目 Entry", "订单 Order", "事件 Event", "位置 Position", "类型 Kind", "金额 Amount"],
            [[str(l["id"]), _code(l["order_number"]), html.escape(_event(l)), str(l["position"]),
              html.escape(l["kind"]), money(l["amount_fen"])] for l in shown]
            + [["合计 Total", f"{len(lines):,} line(s)", "", "", "", money(batch["total_fen"])]],
            numeric={5}, row_attrs=[""] * len(shown) + ["class='hkops-total'"])
        more = f"<div class='hkops-muted'>{LISTED} of {len(lines):,} lines shown; export for all.</div>" \
            if len(lines) > LISTED else ""
        self.batch_detail.value = _kv([
            ("结算单 Batch", f"{_code(batch['id'])} {BATCH_BADGES.badge(batch['state'])}"),
            ("代理商 Agent", f"{_code(batch['agent'])} · period {html.escape(batch['period'])}"),
            ("金额 Total", f"<b>{money(batch['total_fen'])}</b>"),
            ("付款流水 Reference", html.escape(batch["reference"] or "—")),
            ("更新 Changed", local(batch["changed_at"])),
        ]) + table + more

    def _show_withdrawals(self) -> None:
        wanted = self.withdrawal_filter.value
        state = ("requested", "approved") if wanted == PENDING else (wanted or None)
        rows = commissions.list_withdrawals(self.store, state=state, actor=self.actor)[-LISTED:][::-1]
        self.withdrawals_table.value = html_table(
            ["提现 No.", "代理商 Agent", "申请日 Requested", "金额 Amount", "手续费 Fee", "代扣税 Tax", "实付 Net",
             "状态 State", "付款流水 Reference"],
            [[_code(w["id"]), _code(w["agent"]), w["requested_on"].isoformat(), money(w["amount_fen"]),
              money(w["fee_fen"]), money(w["tax_fen"]), money(w["amount_fen"] - w["fee_fen"] - w["tax_fen"]),
              WITHDRAWAL_BADGES.badge(w["state"]), html.escape(w["reference"] or "")] for w in rows],
            numeric={3, 4, 5, 6}, row_attrs=[f"data-withdrawal='{w['id']}'" for w in rows],
            empty="没有提现 No withdrawals here.")
        self._quiet = True
        try:
            set_options(self.withdrawal_pick, [("— 选择提现 pick a withdrawal —", NONE)] + [
                (f"#{w['id']} · {w['agent']} · {format_yuan(w['amount_fen'])} · {WITHDRAWAL_BADGES.label(w['state'])}",
                 w["id"]) for w in rows])
        finally:
            self._quiet = False

    def _draw(self) -> None:
        months = commissions.commission_report(self.store, actor=self.actor)
        x = [m["month"] for m in months]
        positions = sorted({p for m in months for p in m["credit_fen"]})
        with self.level_chart.batch_update():
            self.level_chart.data = ()
            self.level_chart.add_traces([
                go.Bar(name=POSITION_ZH.get(p, f"{p}"), x=x, y=[_yuan(m["credit_fen"].get(p, 0)) for m in months],
                       hovertemplate="%{x} ¥%{y:,.2f}<extra>" + POSITION_ZH.get(p, str(p)) + "</extra>")
                for p in positions] + [
                go.Bar(name="回收 clawed back", x=x, y=[_yuan(m["reversal_fen"]) for m in months],
                       marker_color="#dc2626", hovertemplate="%{x} ¥%{y:,.2f}<extra>clawed back</extra>")])
        with self.clawback_chart.batch_update():
            self.clawback_chart.data = ()
            self.clawback_chart.add_trace(go.Scatter(
                name="回收率 clawback rate", x=x, mode="lines+markers", line_color="#dc2626",
                y=[None if m["clawback_percent"] is None else float(m["clawback_percent"]) for m in months],
                hovertemplate="%{x} %{y}%<extra></extra>"))
        with self.cost_chart.batch_update():
            self.cost_chart.data = ()
            self.cost_chart.add_trace(go.Bar(
                name="每激活 per activation", x=x, y=[_yuan(m["cost_per_activation_fen"]) for m in months],
                customdata=[m["activations"] for m in months], marker_color="#4f46e5",
                hovertemplate="%{x} ¥%{y:,.2f} × %{customdata} activation(s)<extra></extra>"))
        for chart in (self.level_chart, self.clawback_chart, self.cost_chart):
            charts.snapshot(chart)

    # ------------------------------------------------------------ batches

    def _batch(self) -> dict:
        if not self.batch_pick.value:
            raise InvalidValue("batch", "", "pick a settlement batch first")
        return commissions.show_batch(self.store, self.batch_pick.value, actor=self.actor)

    def ask_create(self) -> None:
        """Preview the batches the period (and agent) would get, then wait for Confirm."""
        def run():
            period, agent, as_of = self.period.value.strip(), self.batch_agent.value or None, self._today()
            access.require(self.actor, "settlement.write", f"create settlement {period}", self.store)
            preview = commissions.batch_preview(self.store, period, as_of=as_of, agent=agent, actor=self.actor)
            who = f"agent <b>{html.escape(agent)}</b>" if agent else "every agent"
            if not preview:
                self.status.info(f"没有可结算的佣金 Nothing to settle for {period} ({'agent ' + agent if agent else 'every agent'}"
                                 f", as of {as_of}): no eligible entry outside a batch.")
                return
            total = sum(p["total_fen"] for p in preview)
            question = (f"生成结算单 Create <b>{len(preview):,}</b> draft batch(es) for period "
                        f"<b>{html.escape(period)}</b> ({who}): <b>{sum(p['entries'] for p in preview):,}</b> "
                        f"entries, total <b>{money(total)}</b>? The entries are locked into their batches.")

            def make() -> str:
                with self.progress.busy("生成结算单 Creating batches", len(preview)) as step:
                    ids = commissions.create_batches(self.store, period, as_of=as_of, agent=agent, actor=self.actor,
                                                     now=utc_now(), progress=step)
                self._quiet = True
                try:
                    self.batch_period_filter.value = period
                finally:
                    self._quiet = False
                if ids:
                    self._pick_batch(ids[0])
                return (f"已生成 Created {len(ids):,} draft batch(es) for {period}, total {format_yuan(total)}; "
                        "confirm each so that its agent sees the statement.")

            self._ask(PendingMove(period, question, make), question, self.batch_confirm)

        self._guard(run)

    def ask_batch(self, action: str) -> None:
        """Ask before confirming, approving or paying the picked batch."""
        def run():
            batch = self._batch()
            access.require(self.actor, "settlement.write", f"{action} settlement batch {batch['id']}", self.store)
            reference = " ".join(self.reference.value.split()) if action == "pay" else None
            if action == "pay" and not reference:
                raise InvalidValue("reference", "", "give the payment reference of the transfer to the agent")
            what = {
                "confirm": "确认 Confirm it: agent {agent} sees the statement; its lines cannot change any more",
                "approve": "审批 Approve it for payment",
                "pay": "支付 Record it paid with reference <b>{reference}</b>: {total} is credited to the balance "
                       "of {agent}; a paid batch can never change",
            }[action].format(agent=_code(batch["agent"]), total=money(batch["total_fen"]),
                             reference=html.escape(reference or ""))
            question = (f"结算单 Batch <b>#{batch['id']}</b> ({_code(batch['agent'])}, {html.escape(batch['period'])}, "
                        f"{BATCH_BADGES.label(batch['state'])}, {len(batch['lines']):,} line(s), total "
                        f"<b>{money(batch['total_fen'])}</b>): {what}?")

            def make() -> str:
                moved = commissions.move_batch(self.store, batch["id"], action, actor=self.actor, now=utc_now(),
                                               reference=reference)
                if action == "pay":
                    self.reference.value = ""
                return (f"结算单 Batch #{moved['id']} ({moved['agent']}, {moved['period']}): {batch['state']} → "
                        f"{moved['state']}, total {format_yuan(moved['total_fen'])}"
                        + (f", reference {moved['reference']}." if action == "pay" else "."))

            self._ask(PendingMove(str(batch["id"]), question, make), question, self.batch_confirm)

        self._guard(run)

    def _pick_batch(self, batch_id: int) -> None:
        self._quiet = True
        try:
            if batch_id not in {value for _, value in self.batch_pick.options}:
                self.batch_pick.options = list(self.batch_pick.options) + [(f"#{batch_id}", batch_id)]
            self.batch_pick.value = batch_id
        finally:
            self._quiet = False

    def export(self) -> None:
        """Write the picked batch's statement (Excel or CSV) under the data folder; show where, with a link."""
        def run():
            batch = self._batch()
            folder = self.export_dir or _default_export_dir()
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"settlement-{batch['id']}-{batch['agent']}-{batch['period']}.{self.export_format.value}"
            with self.progress.busy("导出 Exporting", 1) as step:
                lines = commissions.export_batch(self.store, batch["id"], path, actor=self.actor)
                step()
            self.export_result.value = download_link(path)
            self.status.ok(f"已导出 Statement of batch #{batch['id']} written: {lines:,} line(s) and the total, "
                           f"to {path}.")

        self._guard(run)

    # ------------------------------------------------------------ withdrawals

    def ask_withdrawal(self, action: str) -> None:
        """Ask before approving, paying or rejecting the picked withdrawal."""
        def run():
            if not self.withdrawal_pick.value:
                raise InvalidValue("withdrawal", "", "pick a withdrawal from the queue first")
            access.require(self.actor, "settlement.write", f"{action} withdrawal {self.withdrawal_pick.value}",
                           self.store)
            w = commissions.get_withdrawal(self.store, self.withdrawal_pick.value)
            reference = " ".join(self.withdrawal_reference.value.split()) or None
            reason = " ".join(self.withdrawal_reason.value.split()) or None
            if action == "pay" and not reference:
                raise InvalidValue("reference", "", "give the payment reference of the transfer to the agent")
            if action == "reject" and not reason:
                raise InvalidValue("reason", "", "say why the withdrawal is rejected")
            net = w["amount_fen"] - w["fee_fen"] - w["tax_fen"]
            what = {
                "approve": "审批 Approve it for payment",
                "pay": f"支付 Record it paid with reference <b>{html.escape(reference or '')}</b>: {money(net)} paid "
                       f"out, fee {money(w['fee_fen'])} and tax {money(w['tax_fen'])} withheld, all leaving the balance",
                "reject": f"驳回 Reject it because “{html.escape(reason or '')}”: the frozen amount is released",
            }[action]
            question = (f"提现 Withdrawal <b>#{w['id']}</b> of {_code(w['agent'])} for <b>{money(w['amount_fen'])}</b> "
                        f"({WITHDRAWAL_BADGES.label(w['state'])}): {what}?")

            def make() -> str:
                moved = commissions.move_withdrawal(self.store, w["id"], action, actor=self.actor, now=utc_now(),
                                                    reason=reason if action == "reject" else None,
                                                    reference=reference if action == "pay" else None)
                self.withdrawal_reference.value = self.withdrawal_reason.value = ""
                return (f"提现 Withdrawal #{moved['id']} of {moved['agent']} ({format_yuan(moved['amount_fen'])}): "
                        f"{w['state']} → {moved['state']}.")

            self._ask(PendingMove(str(w["id"]), question, make), question, self.withdrawal_confirm)

        self._guard(run)

    # ------------------------------------------------------------ confirming

    def _confirm_rows(self) -> tuple:
        return (self.batch_confirm, self.withdrawal_confirm)

    def _buttons(self):
        return (self.refresh_button, self.create_button, self.confirm_batch_button, self.approve_button,
                self.pay_button, self.export_button, self.withdrawal_approve_button, self.withdrawal_pay_button,
                self.withdrawal_reject_button,
                *(b for r in self._confirm_rows() for b in (r.confirm_button, r.cancel_button)))


def _event(entry: dict) -> str:
    name = EVENT_ZH.get(entry["event"], entry["event"])
    return f"{name} m{entry['month']}" if entry["month"] else name


def entries_table(entries: list[dict], *, with_agent: bool = False) -> str:
    """Commission entries as a table (each with its order, event, state and batch)."""
    head = ["条目 Entry", "订单 Order", "事件 Event"] + (["代理商 Agent"] if with_agent else []) + [
        "位置 Position", "类型 Kind", "金额 Amount", "状态 State", "可结算日 Eligible on", "结算单 Batch"]
    amount = 5 if with_agent else 4
    rows = [[str(e["id"]), _code(e["order_number"]), html.escape(_event(e))]
            + ([_code(e["agent"])] if with_agent else [])
            + [str(e["position"]), "回收 reversal" if e["kind"] == "reversal" else "计提 credit", money(e["amount_fen"]),
               ENTRY_BADGES.badge(e["state"]), e["eligible_on"].isoformat(), str(e["batch_id"] or "—")]
            for e in entries]
    return html_table(head, rows, numeric={amount},
                      row_attrs=[f"data-entry='{e['id']}' data-order='{html.escape(e['order_number'])}'"
                                 for e in entries], empty="没有佣金条目 No commission entries.")


def _default_export_dir() -> Path:
    from hkops.config import DATA_DIR

    return DATA_DIR / "exports"


def download_link(path: Path) -> str:
    """Where an export was written, and (when small enough) a link that downloads it from the page."""
    where = f"<div class='hkops-muted'>已写入 Written to <code>{html.escape(str(path))}</code></div>"
    if path.stat().st_size > LINKED_BYTES:
        return where
    kind = ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" if path.suffix == ".xlsx"
            else "text/csv")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"{where}<a class='hkops-download' download='{html.escape(path.name)}' "
            f"href='data:{kind};base64,{data}'>下载 Download {html.escape(path.name)}</a>")


def settlement_console(store: Store | None = None, actor: str | None = None,
                       export_dir: str | Path | None = None) -> SettlementConsole:
    """The settlement console (结算) on ``store`` (default: the configured database); statements
    are exported to ``export_dir`` (default: ``exports`` in the data folder)."""
    return SettlementConsole(store, actor, export_dir)
