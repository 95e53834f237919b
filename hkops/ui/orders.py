"""The orders console (订单): take an order with live checks, follow the pipeline, move an order on.

The widget only wires: intake is :func:`hkops.orders.intake.create_order`, checked with
:func:`hkops.orders.intake.check_order` (intake's own checks, writing nothing) while the
operator types, to show whether it would pass and what it would cost; the blacklist and
一证五号 lines come from that check too, the resident ID, age and ship-to province lines
from :mod:`hkops.ids` and :mod:`hkops.catalogue.service`. Every move on an order is a use case of
:mod:`hkops.orders.service`; activation talks to the HLR through the console's client.
Resident IDs are typed into a password field and shown masked only.
"""

from __future__ import annotations

import html
from typing import Callable

import ipywidgets as widgets
from hkops import carriers
from hkops.agents import service as agents
from hkops.catalogue import service as catalogue
from hkops.errors import InvalidValue
from hkops.ids import display_msisdn, mask_resident_id, parse_resident_id, resident_id_birth_date
from hkops.money import fen_to_yuan, format_yuan, yuan_to_fen
from hkops.network import ProvisioningClient
from hkops.numbers.search import SearchQuery, search
from hkops.orders import intake
from hkops.orders import service as orders
from hkops.orders.model import MOVES, OrderState
from hkops.orders.records import DIRECT, Order
from hkops.store.engine import Store, get_store
from hkops.subscribers.service import NUMBERS_PER_CARRIER
from hkops.timeutil import SHANGHAI, local, utc_now
from hkops.ui._common import (
    Busy,
    ConfirmRow,
    GuardedConsole,
    PendingMove,
    StateBadges,
    StatusLine,
    UsesHlr,
    button,
    check_lines,
    choice,
    console_actor,
    field,
    html_table,
    panel,
    row,
    set_options,
    stylesheet,
)
from hkops.ui.lifecycle import timeline_table

AUTO = "自动分配 assign automatically"
#: How many available numbers of the plan's carrier the number box offers.
NUMBER_CHOICES = 60
#: The most orders listed for a state.
LISTED = 100
ORDER_ZH = {
    "draft": "草稿", "verifying": "审核中", "rejected": "已拒绝", "approved": "已审核", "paid": "已付款",
    "allocated": "已配货", "shipped": "已发货", "delivered": "已签收", "activated": "已激活",
    "first_topup": "已首充", "completed": "已完成", "cancelled": "已取消", "returned": "已退货",
    "expired": "已过期",
}
ORDER_COLOURS = {
    "draft": "#9ca3af", "verifying": "#f59e0b", "rejected": "#991b1b", "approved": "#0891b2", "paid": "#0d9488",
    "allocated": "#2563eb", "shipped": "#7c3aed", "delivered": "#4f46e5", "activated": "#16a34a",
    "first_topup": "#15803d", "completed": "#065f46", "cancelled": "#6b7280", "returned": "#b45309",
    "expired": "#78716c",
}
SHIPMENT_ZH = {"created": "已揽件 created", "in_transit": "运输中 in transit", "delivered": "已签收 delivered",
               "exception": "异常 exception", "returned": "已退回 returned"}
METHODS = [("现金 Cash", "cash"), ("微信 WeChat Pay", "wechat"), ("支付宝 Alipay", "alipay"),
           ("银行转账 Bank transfer", "bank")]
COURIERS = [("顺丰 SF Express", "SF"), ("京东 JD Logistics", "JD"), ("中国邮政 EMS", "EMS"), ("中通 ZTO", "ZTO"),
            ("圆通 YTO", "YTO")]

_STYLE = """
.hkops-orders .hkops-stages { gap: 4px; }
.hkops-orders .hkops-stage { min-width: 0; }
.hkops-orders .hkops-quote td, .hkops-orders .hkops-order-detail td { padding: 2px 12px 2px 0; }
.hkops-orders .hkops-quote .hkops-total td { font-weight: 600; border-top: 1px solid #d1d5db; }
.hkops-orders .hkops-next { color: #374151; margin: 4px 0; }
"""


ORDER_BADGES = StateBadges("hkops-order", ORDER_ZH, ORDER_COLOURS)


def _yuan_or_none(text: str, name: str) -> int | None:
    text = (text or "").strip()
    return yuan_to_fen(text, name) if text else None


def _kv(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows) + "</table>"


class OrdersConsole(UsesHlr, GuardedConsole, widgets.VBox):
    """订单 Orders: intake with live checks and a quote, the pipeline, an order's detail and moves.

    The pieces are attributes so that tests can drive them: intake ``channel``, ``plan``,
    ``number``, ``customer_name``, ``resident_id``, ``contact``, ``ship_province``,
    ``ship_address``, ``client_order_id``, ``checks``, ``quote``, ``submit_button``; the pipeline
    ``stage_buttons`` (state -> button), ``listed``, ``order_table``, ``order_pick``,
    ``order_query``, ``open_button``; the order ``detail``, ``shipment``, ``payments``,
    ``timeline``; moves ``pay_amount``, ``pay_method``, ``pay_reference``, ``pay_button``,
    ``ship_courier``, ``ship_tracking``, ``ship_button``, ``deliver_button``, ``activate_button``,
    ``topup_amount``, ``topup_button``, ``complete_button``, ``cancel_reason``, ``cancel_button``,
    ``return_reason``, ``return_refund``, ``return_button``, ``confirm_row``, ``confirm_button``,
    ``cancel_confirm_button``; and ``status``, ``progress``.
    """

    def __init__(self, store: Store | None = None, actor: str | None = None,
                 network: ProvisioningClient | None = None):
        super().__init__()
        self.store = store or get_store()
        self.actor = actor or console_actor()
        self._network = network
        self.pending: PendingMove | None = None
        self.order: Order | None = None
        self.state_shown: str | None = None
        self.intake_ok = False
        self._plans: dict[str, catalogue.Plan] = {}
        self._quiet = False  # True while the console itself fills the form (no checks meanwhile)

        self.refresh_button = button("刷新 Refresh", "hkops-refresh", icon="refresh")
        self.status = StatusLine()
        self.progress = Busy()

        # intake
        self.channel = choice("渠道 Channel", [("直销 direct", DIRECT)], "hkops-channel", "330px")
        self.plan = choice("套餐 Plan", [], "hkops-plan", "96%")
        self.number = field("号码 Number", AUTO, "hkops-number-choice", "330px", widgets.Combobox,
                            ensure_option=False)
        self.customer_name = field("姓名 Name", "王芳", "hkops-customer-name", "330px")
        self.resident_id = field("证件号 Resident ID", "18 characters, shown masked", "hkops-resident-id", "330px",
                                 widgets.Password)
        self.contact = field("联系电话 Contact", "13900000000", "hkops-contact", "330px")
        self.ship_province = field("收货省份 Ship to province", "北京 / Guangdong", "hkops-ship-province", "330px")
        self.ship_address = field("收货地址 Address", "street, building, flat", "hkops-ship-address", "96%")
        self.client_order_id = field("客户单号 Client order id", "optional", "hkops-client-order-id", "330px")
        # Free text is checked when the operator leaves the field (or presses Enter), not at
        # every keystroke: the full check reads the database.
        for widget in (self.customer_name, self.contact, self.ship_address, self.client_order_id):
            widget.continuous_update = False
        self.checks = widgets.HTML().add_class("hkops-intake-checks")
        self.quote = widgets.HTML().add_class("hkops-quote-box")
        self.submit_button = button("提交订单 Place order", "hkops-submit", "success", "check")
        self.submit_button.disabled = True

        # pipeline
        self.stage_buttons: dict[str, widgets.Button] = {}
        self.stages = row([], "hkops-stages")
        self.listed = widgets.HTML().add_class("hkops-listed")
        self.order_table = widgets.HTML().add_class("hkops-order-list")
        self.order_pick = choice("订单 Order", [("— 选择订单 pick an order —", None)], "hkops-order-pick", "96%")
        self.order_query = field("订单号 Order no.", "SO00000001 / client order id", "hkops-order-query", "330px")
        self.open_button = button("打开 Open", "hkops-open", "primary", "folder-open")

        # the order
        self.detail = widgets.HTML().add_class("hkops-order-detail")
        self.shipment = widgets.HTML().add_class("hkops-shipment")
        self.payments = widgets.HTML().add_class("hkops-payments")
        self.timeline = widgets.HTML().add_class("hkops-timeline")

        # moves
        self.pay_amount = field("金额 Amount ¥", "", "hkops-pay-amount", "200px")
        self.pay_method = choice("方式 Method", METHODS, "hkops-pay-method", "230px")
        self.pay_reference = field("流水号 Reference", "payment reference", "hkops-pay-reference", "260px")
        self.pay_button = button("收款 Pay", "hkops-pay", "success", "money")
        self.ship_courier = choice("快递 Courier", COURIERS, "hkops-ship-courier", "230px")
        self.ship_tracking = field("运单号 Tracking no.", "SF1234567890", "hkops-ship-tracking", "260px")
        self.ship_button = button("发货 Ship", "hkops-ship", "info", "truck")
        self.deliver_button = button("签收 Delivered", "hkops-deliver", "info", "home")
        self.activate_button = button("激活 Activate", "hkops-activate", "primary", "bolt")
        self.topup_amount = field("首充 First top-up ¥", "", "hkops-topup-amount", "220px")
        self.topup_button = button("记录首充 Record top-up", "hkops-topup", icon="plus")
        self.complete_button = button("完成 Complete", "hkops-complete", icon="flag-checkered")
        self.cancel_reason = field("取消原因 Reason", "customer changed their mind", "hkops-cancel-reason", "330px")
        self.cancel_button = button("取消订单 Cancel order", "hkops-cancel-order", "danger", "times-circle")
        self.return_reason = field("退货原因 Reason", "why the card comes back", "hkops-return-reason", "330px")
        self.return_refund = field("退款 Refund ¥", "all paid", "hkops-return-refund", "200px")
        self.return_button = button("退货 Return", "hkops-return", "danger", "undo")
        self.confirm_row = ConfirmRow()
        self.confirm_button = self.confirm_row.confirm_button
        self.cancel_confirm_button = self.confirm_row.cancel_button

        self.refresh_button.on_click(lambda _b: self._guard(self._refresh, announce=True))
        for widget in (self.channel, self.plan, self.number, self.customer_name, self.resident_id, self.contact,
                       self.ship_province, self.ship_address, self.client_order_id):
            widget.observe(lambda _c: self.check_intake(), names="value")
        self.plan.observe(lambda _c: self._guard(self._offer_numbers), names="value")
        self.submit_button.on_click(lambda _b: self.submit())
        self.order_pick.observe(lambda _c: self._picked(), names="value")
        self.open_button.on_click(lambda _b: self.open_order())
        self.pay_button.on_click(lambda _b: self.pay())
        self.ship_button.on_click(lambda _b: self.ship())
        self.deliver_button.on_click(lambda _b: self.deliver())
        self.activate_button.on_click(lambda _b: self.activate())
        self.topup_button.on_click(lambda _b: self.record_topup())
        self.complete_button.on_click(lambda _b: self.complete())
        self.cancel_button.on_click(lambda _b: self.ask_cancel())
        self.return_button.on_click(lambda _b: self.ask_return())
        self.confirm_button.on_click(lambda _b: self.confirm())
        self.cancel_confirm_button.on_click(lambda _b: self.cancel())

        title = widgets.HTML("<h2 class='hkops-title'>订单 <span>Orders</span></h2>")
        intake = panel("录单 New order", [
            self.channel, self.plan, self.number, self.customer_name, self.resident_id, self.contact,
            self.ship_province, self.ship_address, self.client_order_id], "2 1 420px")
        verdict = panel("核验与报价 Checks and quote", [self.checks, self.quote, self.submit_button], "1 1 340px")
        pipeline = panel("流程 Pipeline (click a state)", [
            self.stages, self.listed, self.order_table,
            row([self.order_query, self.open_button], "hkops-filters")], "1 1 100%")
        order = panel("订单 Order", [self.order_pick, self.detail, widgets.HTML("<b>物流 Shipment</b>"),
                                    self.shipment, widgets.HTML("<b>收付款 Payments</b>"), self.payments],
                      "3 1 480px")
        moves = panel("操作 Action", [
            row([self.pay_amount, self.pay_method, self.pay_reference, self.pay_button]),
            row([self.ship_courier, self.ship_tracking, self.ship_button]),
            row([self.deliver_button, self.activate_button], "hkops-buttons"),
            row([self.topup_amount, self.topup_button, self.complete_button]),
            row([self.cancel_reason, self.cancel_button]),
            row([self.return_reason, self.return_refund, self.return_button]),
            self.confirm_row], "2 1 420px")
        moves.add_class("hkops-actions")
        history = panel("时间线 Timeline (newest first)", [self.timeline], "1 1 100%")
        self.children = [
            stylesheet(), widgets.HTML(f"<style>{_STYLE}{ORDER_BADGES.css()}</style>", layout=widgets.Layout(display="none")),
            title, row([self.refresh_button]), self.progress, self.status,
            row([intake, verdict]), row([pipeline]), row([order, moves]), row([history]),
        ]
        self.add_class("hkops-console")
        self.add_class("hkops-orders")
        self._show_order()
        self.first_load()

    # ------------------------------------------------------------ reading

    def _refresh(self) -> None:
        """Reload channels, plans, the pipeline and the open order."""
        with self.progress.busy("读取订单 Reading orders", 3) as step:
            self._load_choices()
            step()
            self._show_pipeline()
            step()
            if self.order is not None:
                self._load(self.order.number)
            step()
        self.check_intake()

    def _load_choices(self) -> None:
        channels = [("直销 direct", DIRECT)] + [
            (f"{'· ' * (a.level - 1)}{a.code} {a.name} (L{a.level}, price level {a.price_level})", a.code)
            for a in agents.agent_tree(self.store) if a.active]
        plans = [p for p in catalogue.all_plans(self.store) if p.active]
        self._plans = {p.code: p for p in plans}
        self._quiet = True
        try:
            set_options(self.channel, channels)
            set_options(self.plan, [(f"{p.code} · {p.name} · {carriers.KNOWN.get(p.carrier, p.carrier)} · "
                                     f"{format_yuan(p.monthly_fee_fen)}/月 · ages {p.min_age}–{p.max_age}", p.code)
                                    for p in plans])
        finally:
            self._quiet = False
        self._offer_numbers()

    def _offer_numbers(self) -> None:
        plan = self._plans.get(self.plan.value)
        hits = search(self.store, SearchQuery(carrier=plan.carrier, limit=NUMBER_CHOICES)) if plan else []
        self.number.options = [f"{h.msisdn} · {h.grade} · ¥{h.price}" for h in hits]

    def _show_pipeline(self) -> None:
        counts = orders.pipeline_counts(self.store, actor=self.actor)
        if list(self.stage_buttons) != list(counts):
            self.stage_buttons = {}
            for state in counts:
                stage = button("", f"hkops-stage-{state}", width="auto").add_class("hkops-stage")
                stage.on_click(lambda _b, state=state: self.show_state(state))
                self.stage_buttons[state] = stage
            self.stages.children = list(self.stage_buttons.values())
        for state, stage in self.stage_buttons.items():
            stage.description = f"{ORDER_BADGES.label(state)} ({counts[state]:,})"
            stage.button_style = "primary" if state == self.state_shown else ""
        if self.state_shown is not None:
            self._list(self.state_shown)

    def show_state(self, state: str) -> None:
        """List the orders in ``state`` (newest first)."""
        def run():
            self.state_shown = state
            self._show_pipeline()
        self._guard(run)

    def _list(self, state: str) -> None:
        found = orders.list_orders(self.store, state=state, limit=LISTED, actor=self.actor)
        more = f" (the newest {LISTED})" if len(found) == LISTED else ""
        self.listed.value = f"<div class='hkops-muted'>{html.escape(ORDER_BADGES.label(state))}: {len(found):,} order(s){more}</div>"
        self.order_table.value = html_table(
            ["订单 Order", "下单 Placed", "渠道 Channel", "套餐 Plan", "号码 Number", "客户 Customer",
             "证件 ID", "省份 Province", "合计 Total", "状态 State"],
            [[f"<span class='hkops-number'>{o.number}</span>", local(o.created_at), html.escape(o.channel),
              html.escape(o.plan), display_msisdn(o.msisdn) if o.msisdn else "—", html.escape(o.customer_name),
              html.escape(o.id_masked), html.escape(o.ship_province), format_yuan(o.total_fen), ORDER_BADGES.badge(o.state)]
             for o in found],
            numeric={8}, row_attrs=[f"data-order='{o.number}'" for o in found],
            empty=f"没有{ORDER_ZH.get(state, '')}订单 No {state} orders.")
        keep = self.order.number if self.order else None
        options = [(f"{o.number} · {o.customer_name} · {o.id_masked} · {ORDER_BADGES.label(o.state)}", o.number)
                   for o in found]
        if keep and keep not in {n for _, n in options}:
            options.insert(0, (f"{keep} · {self.order.customer_name} · {ORDER_BADGES.label(self.order.state)}", keep))
        self._quiet = True
        try:
            self.order_pick.options = [("— 选择订单 pick an order —", None)] + options
            self.order_pick.value = keep
        finally:
            self._quiet = False

    # ------------------------------------------------------------ intake: live checks

    def _intake_values(self) -> dict:
        number = self.number.value.split("·")[0].strip()
        return dict(channel=self.channel.value, plan=self.plan.value or "", customer_name=self.customer_name.value,
                    resident_id=self.resident_id.value, contact=self.contact.value,
                    ship_province=self.ship_province.value, ship_address=self.ship_address.value,
                    msisdn=number or None, client_order_id=self.client_order_id.value.strip() or None)

    def check_intake(self) -> None:
        """Check what the form says so far; Place order is enabled only when every check passes."""
        if self._quiet:
            return
        try:
            lines, passed = self._checks()
        except Exception as error:  # noqa: BLE001 - the console must never show a traceback
            self.status.failure(error)
            lines, passed = [("核验 Checks", False, "could not be run; see the message above")], None
        self.intake_ok = all(ok for _, ok, _ in lines)
        self.submit_button.disabled = not self.intake_ok
        self.checks.value = check_lines(lines)
        self.quote.value = quote_table(passed.msisdn, passed.quote) if passed is not None else ""

    def _checks(self) -> tuple[list[tuple[str, bool | None, str]], intake.OrderCheck | None]:
        """The check lines, and intake's check when the order can be placed."""
        values = self._intake_values()
        plan = self._plans.get(values["plan"])
        lines: list[tuple[str, bool | None, str]] = []
        rid = None
        if not values["resident_id"].strip():
            lines.append(("证件号 Resident ID", None, "type the customer's resident ID"))
        else:
            try:
                rid = parse_resident_id(values["resident_id"])
                lines.append(("证件号 Resident ID", True, mask_resident_id(rid)))
            except InvalidValue as problem:
                lines.append(("证件号 Resident ID", False, f"{problem.value}: {problem.reason}"))
        today = utc_now().astimezone(SHANGHAI).date()
        if rid is None or plan is None:
            lines.append(("年龄 Age", None, "needs a valid resident ID and a plan"))
        else:
            age = catalogue.age_on(resident_id_birth_date(rid), today)
            lines.append(("年龄 Age", plan.min_age <= age <= plan.max_age,
                          f"{age}; plan {plan.code} takes {plan.min_age}–{plan.max_age}"))
        lines.append(self._province_check(values["ship_province"], plan))
        checked = None
        if rid is None or plan is None:
            lines.append(("黑名单 Blacklist", None, "needs a valid resident ID"))
            lines.append(("一证五号 Numbers per person", None, "needs a valid resident ID and a plan"))
        else:
            checked = intake.check_order(self.store, intake.OrderRequest(**values))
            lines += self._person_checks(checked, plan)
        name = "核验 Order check"
        if not all(passed for _, passed, _ in lines):
            lines.append((name, None, "waiting for the checks above"))
        elif not all(str(values[k]).strip() for k in ("customer_name", "contact", "ship_address")):
            lines.append((name, None, "fill in the name, contact and address"))
        elif checked.problems:
            lines.append((name, False, "; ".join(str(p) for p in checked.problems)))
        else:
            how = "chosen" if values["msisdn"] else "assigned automatically"
            lines.append((name, True, f"can be placed: number {display_msisdn(checked.msisdn)} ({how})"))
            return lines, checked
        return lines, None

    @staticmethod
    def _province_check(text: str, plan: catalogue.Plan | None) -> tuple[str, bool | None, str]:
        name = "收货省份 Ship-to province"
        if not text.strip():
            return name, None, "type the province the card is shipped to"
        try:
            province = catalogue.canonical_province(text, "ship_province")
        except InvalidValue:
            return name, False, f"{text.strip()} is not a province (e.g. 北京, 广东, Guangdong)"
        if plan is not None and province in plan.excluded_provinces:
            return name, False, f"plan {plan.code} does not ship to {province}"
        return name, True, province

    @staticmethod
    def _person_checks(checked: intake.OrderCheck, plan: catalogue.Plan) -> list[tuple[str, bool | None, str]]:
        if checked.held is None:  # intake did not look: the client order id names an order already
            return [("黑名单 Blacklist", None, "see the order check"),
                    ("一证五号 Numbers per person", None, "see the order check")]
        return [("黑名单 Blacklist", not checked.blacklisted,
                 f"on the blacklist ({checked.blacklisted})" if checked.blacklisted else "not listed"),
                ("一证五号 Numbers per person", checked.held < NUMBERS_PER_CARRIER,
                 f"holds {checked.held} {plan.carrier} number(s) (bound or on open orders); "
                 f"at most {NUMBERS_PER_CARRIER}")]

    def submit(self) -> None:
        """Place the order the form describes; show it in the pipeline."""
        def run():
            if not self.intake_ok:
                self.status.error("请先通过全部核验 Every check must pass before the order is placed.")
                return
            with self.progress.busy("下单 Placing the order", 2) as step:
                placed = intake.create_order(self.store, actor=self.actor, **self._intake_values())
                step()
                self._clear_intake()
                self.state_shown = placed.state
                self._load(placed.number)
                self._show_pipeline()
                step()
            self.status.ok(f"已下单 Order {placed.number} {placed.state}: number {display_msisdn(placed.msisdn)}, "
                           f"total {format_yuan(placed.total_fen)}; take the payment next.")

        self.submit_button.disabled = True
        self._guard(run)
        self.check_intake()

    def _clear_intake(self) -> None:
        self._quiet = True
        try:
            for widget in (self.number, self.customer_name, self.resident_id, self.contact, self.ship_province,
                           self.ship_address, self.client_order_id):
                widget.value = ""
        finally:
            self._quiet = False

    # ------------------------------------------------------------ one order

    def _picked(self) -> None:
        if not self._quiet and self.order_pick.value:
            self._guard(lambda: self._load(self.order_pick.value))

    def open_order(self) -> None:
        """Open the order whose number (or client order id) is typed."""
        def run():
            found = orders.get_order(self.store, self.order_query.value, actor=self.actor)
            self._load(found.number)
            self.status.ok(f"订单 Order {found.number}: {found.state}.")
        self._guard(run)

    def _load(self, number: str) -> None:
        detail = orders.order_detail(self.store, number, actor=self.actor)
        self.order = orders.get_order(self.store, number, actor=self.actor)
        if self.order_pick.value != number:
            self._quiet = True
            try:
                if number not in {value for _, value in self.order_pick.options}:
                    self.order_pick.options = list(self.order_pick.options) + [
                        (f"{number} · {self.order.customer_name} · {ORDER_BADGES.label(self.order.state)}", number)]
                self.order_pick.value = number
            finally:
                self._quiet = False
        self._show_order(detail)

    def _show_order(self, detail: dict | None = None) -> None:
        if detail is None:
            self.detail.value = "<div class='hkops-empty'>选择一个订单 Pick an order from the pipeline.</div>"
            self.shipment.value = self.payments.value = self.timeline.value = ""
            return
        o = detail["order"]
        chain = " › ".join(f"{a['code']} (L{a['level']})" for a in o["agent_chain"]) or "—"
        card = detail["card"]
        card_text = "—" if card is None else (
            f"{html.escape(card['iccid'])} ({html.escape(card['state'])}"
            + (f", HLR pending {html.escape(card['pending_action'])}" if card["pending_action"] else "") + ")")
        nexts = [action.replace("_", " ") for action, (starts, _) in MOVES.items()
                 if OrderState(o["state"]) in starts
                 and action not in ("submit", "reject", "approve", "allocate", "expire")]
        rows = [
            ("订单 Order", f"<span class='hkops-number'>{html.escape(o['number'])}</span> {ORDER_BADGES.badge(o['state'])}"
                          + (f" <span class='hkops-muted'>{html.escape(o['reason'])}</span>" if o["reason"] else "")),
            ("渠道 Channel", f"{html.escape(o['channel'])} · chain {html.escape(chain)}"),
            ("套餐 Plan", f"{html.escape(o['plan'])} · SIM {html.escape(o['product'])} from "
                         f"{html.escape(o['location'])}"),
            ("号码 Number", display_msisdn(o["msisdn"]) if o["msisdn"] else "—"),
            ("卡 SIM", card_text),
            ("客户 Customer", f"{html.escape(o['customer_name'])} · {html.escape(o['id_masked'])} · "
                             f"{html.escape(o['contact'])}"),
            ("收货 Ship to", f"{html.escape(o['ship_province'])} · {html.escape(o['ship_address'])}"),
            ("金额 Amount", f"plan {format_yuan(o['price_fen'])} + number {format_yuan(o['vanity_fee_fen'])} + "
                           f"prepay {format_yuan(o['prepay_fen'])} = <b>{format_yuan(o['total_fen'])}</b>"),
            ("已付 Paid", f"{format_yuan(detail['paid_fen'])} · due <b>{format_yuan(detail['due_fen'])}</b>"),
            ("下单 Placed", f"{local(o['created_at'])} by {html.escape(o['created_by'])}"),
        ]
        self.detail.value = (_kv(rows) + "<div class='hkops-next'>可做 Next: "
                             f"{html.escape(', '.join(nexts)) or '— (final)'}</div>")
        parcel = detail["shipment"]
        self.shipment.value = "<div class='hkops-muted'>未发货 Not shipped.</div>" if parcel is None else _kv([
            ("快递 Courier", html.escape(parcel["courier"])), ("运单号 Tracking", html.escape(parcel["tracking_no"])),
            ("状态 State", html.escape(SHIPMENT_ZH.get(parcel["state"], parcel["state"]))),
            ("更新 Updated", local(parcel["changed_at"]))])
        self.payments.value = html_table(
            ["时间 Time", "类型 Kind", "金额 Amount", "方式 Method", "流水号 Reference", "操作人 Actor"],
            [[local(p["at"]), "收款 collection" if p["kind"] == "collection" else "退款 refund",
              format_yuan(p["amount_fen"]), html.escape(p["method"]), html.escape(p["reference"]),
              html.escape(p["actor"])] for p in detail["payments"]],
            numeric={2}, empty="没有收付款 No payments yet.")
        self.timeline.value = timeline_table(list(reversed(detail["timeline"])))
        if o["state"] == OrderState.APPROVED.value:
            self.pay_amount.value = str(fen_to_yuan(detail["due_fen"]))

    # ------------------------------------------------------------ moves

    def _selected(self) -> Order:
        if self.order is None:
            raise InvalidValue("order", "", "pick an order from the pipeline first")
        return self.order

    def _move(self, label: str, work: Callable[[Order], Order], after: Callable[[], None] | None = None):
        """Run ``work`` on the selected order, then show it and the pipeline again."""
        def run():
            order = self._selected()
            with self.progress.busy(label, 2) as step:
                moved = work(order)
                step()
                if after:
                    after()
                self._load(moved.number)
                self._show_pipeline()
                step()
            self._done(label, order, moved)
        self._guard(run)

    def _done(self, label: str, before: Order, after: Order) -> None:
        change = f"{before.state} → {after.state}" if before.state != after.state else f"still {after.state}"
        self.status.ok(f"{label}: order {after.number} ({change}).")

    def pay(self) -> None:
        """Collect a payment for the selected order."""
        def work(order):
            amount = yuan_to_fen(self.pay_amount.value or "0", "amount")
            return orders.pay_order(self.store, order.number, amount, method=self.pay_method.value,
                                    reference=self.pay_reference.value, actor=self.actor)
        self._move("收款 Payment", work, lambda: setattr(self.pay_reference, "value", ""))

    def ship(self) -> None:
        """Hand the selected order to the courier."""
        self._move("发货 Shipped", lambda order: orders.ship_order(
            self.store, order.number, courier=self.ship_courier.value, tracking_no=self.ship_tracking.value,
            actor=self.actor), lambda: setattr(self.ship_tracking, "value", ""))

    def deliver(self) -> None:
        """The customer signed for the selected order's parcel."""
        self._move("签收 Delivered", lambda order: orders.deliver_order(self.store, order.number, actor=self.actor))

    def activate(self) -> None:
        """Pair and activate the selected order's card through the HLR."""
        def run():
            order = self._selected()
            with self.progress.busy("激活 Activating", 2) as step:
                moved = orders.activate_order(self.store, order.number, actor=self.actor, network=self.network)
                step()
                self._load(moved.number)
                self._show_pipeline()
                step()
            if moved.state == OrderState.ACTIVATED.value:
                self._done("激活 Activated", order, moved)
            else:
                self.status.info(f"激活 Activation of order {moved.number} requested; waiting for the HLR to confirm "
                                 "(activate again when the HLR is back).")
        self._guard(run)

    def record_topup(self) -> None:
        """Record the customer's first top-up on the selected order."""
        self._move("首充 First top-up", lambda order: orders.record_first_topup(
            self.store, order.number, yuan_to_fen(self.topup_amount.value or "0", "amount"), actor=self.actor))

    def complete(self) -> None:
        """Close the selected order."""
        self._move("完成 Completed", lambda order: orders.complete_order(self.store, order.number, actor=self.actor))

    def ask_cancel(self) -> None:
        """Ask before cancelling the selected order (everything done so far is undone)."""
        def run():
            order = self._selected()
            reason = " ".join(self.cancel_reason.value.split())
            if not reason:
                raise InvalidValue("reason", "", "say why the order is cancelled")
            question = (f"取消订单 Cancel order <b>{order.number}</b> (now {html.escape(order.state)}) because "
                        f"“{html.escape(reason)}”? Its card goes back into stock, its number back to the pool "
                        "and what was paid is refunded.")

            def make() -> str:
                moved = orders.cancel_order(self.store, order.number, actor=self.actor, reason=reason)
                self.cancel_reason.value = ""
                return moved.number
            self._ask(PendingMove(order.number, question, make), question)
        self._guard(run)

    def ask_return(self) -> None:
        """Ask before taking back the selected (activated) order: its card is terminated."""
        def run():
            order = self._selected()
            reason = " ".join(self.return_reason.value.split())
            if not reason:
                raise InvalidValue("reason", "", "say why the order is returned")
            refund = _yuan_or_none(self.return_refund.value, "refund")
            paid = "all it netted" if refund is None else format_yuan(refund)
            question = (f"退货 Return order <b>{order.number}</b> (now {html.escape(order.state)}) because "
                        f"“{html.escape(reason)}”? Its SIM is terminated (the number goes into quarantine) and "
                        f"{html.escape(paid)} is refunded.")

            def make() -> str:
                moved = orders.return_order(self.store, order.number, actor=self.actor, reason=reason,
                                            refund_fen=refund, network=self.network)
                self.return_reason.value = self.return_refund.value = ""
                return moved.number
            self._ask(PendingMove(order.number, question, make), question)
        self._guard(run)


    def confirm(self) -> None:
        """Make the pending move, then show the order and the pipeline again."""
        pending = self._take_pending()
        if pending is None:
            return

        def run():
            before = orders.get_order(self.store, pending.subject)
            with self.progress.busy("处理 Working", 2) as step:
                pending.run()
                step()
                self._load(pending.subject)
                self._show_pipeline()
                step()
            self._done("已处理 Done", before, self.order)
        self._guard(run)

    def _buttons(self):
        return (self.refresh_button, self.open_button, self.pay_button, self.ship_button, self.deliver_button,
                self.activate_button, self.topup_button, self.complete_button, self.cancel_button,
                self.return_button, self.confirm_button, self.cancel_confirm_button,
                *self.stage_buttons.values())


def quote_table(msisdn: str, quote: catalogue.Quote) -> str:
    """What an order with number ``msisdn`` would cost (from intake's check)."""
    rows = [("号码 Number", display_msisdn(msisdn)), ("套餐价 Plan price", format_yuan(quote.price_fen)),
            ("选号费 Number fee", format_yuan(quote.vanity_fee_fen)), ("预存 Prepayment", format_yuan(quote.prepay_fen))]
    table = "".join(f"<tr><td>{k}</td><td class='num'>{v}</td></tr>" for k, v in rows)
    total = f"<tr class='hkops-total'><td>合计 Total</td><td class='num'>{format_yuan(quote.total_fen)}</td></tr>"
    monthly = (f"<div class='hkops-muted'>最低消费 Minimum spend {format_yuan(quote.min_monthly_fen)}/月</div>"
               if quote.min_monthly_fen else "")
    return f"<table class='hkops-quote'>{table}{total}</table>{monthly}"


def orders_console(store: Store | None = None, actor: str | None = None,
                   network: ProvisioningClient | None = None) -> OrdersConsole:
    """The orders console (订单) on ``store`` (default: the configured database), activating
    cards through ``network`` (default: TCP to $HKOPS_HLR or 127.0.0.1:7500, made on first use)."""
    return OrdersConsole(store, actor, network)
