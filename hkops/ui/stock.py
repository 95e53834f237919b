"""The stock console (库存): cards on hand, the ledger of moves, transfers, counts, scrapping, low stock.

The widget only wires: every figure and move is :mod:`hkops.stock.service` (on_hand, ledger,
transfer, count, scrap, set_minimum, low_stock). A transfer is first rehearsed (made in a
transaction that is rolled back) to show what would move; a count is first checked without
writing, then applied.
"""

from __future__ import annotations

import html
import re
from typing import Callable

import ipywidgets as widgets
import plotly.graph_objects as go

from hkops.catalogue import service as catalogue
from hkops.errors import InvalidValue
from hkops.stock import service as stock
from hkops.stock.model import LocationKind
from hkops.store.engine import Store, get_store
from hkops.timeutil import local, utc_now
from hkops.ui import charts
from hkops.ui._common import (
    ANY,
    Busy,
    ConfirmRow,
    GuardedConsole,
    PendingMove,
    StatusLine,
    button,
    choice,
    console_actor,
    field,
    html_table,
    panel,
    rehearse,
    row,
    set_options,
    stylesheet,
)

#: The most ledger rows the console lists at once.
LEDGER_ROWS = 200
#: How many variances a count lists before saying "and N more".
SHOWN_VARIANCES = 50
MODES = [("ICCID 列表 List", "list"), ("区间 Range", "range"), ("数量 Count", "count")]
KIND_ZH = {"receipt": "入库 receipt", "transfer": "调拨 transfer", "sale": "销售 sale", "return": "退回 return",
           "scrap": "报废 scrap", "count": "盘点 count"}
ICCIDS_PLACEHOLDER = "8986… one ICCID per line (or separated by spaces or commas)"

_STYLE = """
.hkops-stock textarea { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; }
.hkops-stock .hkops-total td { font-weight: 600; border-top: 1px solid #d1d5db; }
.hkops-stock .hkops-variances { max-height: 160px; overflow: auto; font-family: ui-monospace, Menlo, monospace;
                                font-size: 12px; }
"""


def parse_iccid_list(text: str) -> list[str]:
    """ICCIDs pasted one per line, or separated by spaces, commas or semicolons."""
    return [value for value in re.split(r"[\s,;]+", text or "") if value]


def chosen(dropdown: widgets.Dropdown, what: str) -> str:
    """The dropdown's value; InvalidValue naming ``what`` when it offers nothing yet."""
    if not dropdown.value:
        raise InvalidValue(what, "", f"no {what} exists yet")
    return dropdown.value


def _code(text: str) -> str:
    return f"<span class='hkops-number'>{html.escape(text)}</span>"


class StockConsole(GuardedConsole, widgets.VBox):
    """库存 Stock: on hand by location and product, the ledger, transfers, counts, scrapping, low stock.

    The pieces are attributes so that tests can drive them: ``location_filter``,
    ``product_filter``, ``on_hand_table``, ``chart``, ``ledger_location``, ``ledger_iccid``,
    ``ledger_document``, ``ledger_button``, ``ledger_table``, ``transfer_from``, ``transfer_to``,
    ``transfer_mode``, ``transfer_iccids``, ``transfer_first``, ``transfer_last``,
    ``transfer_count``, ``transfer_product``, ``transfer_reason``, ``transfer_button``,
    ``transfer_confirm``, ``count_location``, ``count_iccids``, ``count_button``, ``count_result``,
    ``count_apply_button``, ``count_confirm``, ``scrap_location``, ``scrap_iccids``,
    ``scrap_reason``, ``scrap_button``, ``scrap_confirm``, ``alerts``, ``minimum_location``,
    ``minimum_product``, ``minimum_value``, ``minimum_button``, ``status``, ``progress``.
    """

    nothing_pending = "preview a move first"

    def __init__(self, store: Store | None = None, actor: str | None = None):
        super().__init__()
        self.store = store or get_store()
        self.actor = actor or console_actor()
        self.pending: PendingMove | None = None
        self.checked_count: tuple[str, list[str], stock.CountResult] | None = None

        self.refresh_button = button("刷新 Refresh", "hkops-refresh", icon="refresh")
        self.status = StatusLine()
        self.progress = Busy()

        # on hand
        self.location_filter = choice("地点 Location", [(ANY, "")], "hkops-location-filter", "240px")
        self.product_filter = choice("产品 Product", [(ANY, "")], "hkops-product-filter", "240px")
        self.on_hand_table = widgets.HTML().add_class("hkops-on-hand")
        self.chart = charts.figure(layout=go.Layout(
            title={"text": "按地点 On hand by location, stacked by product", "font": {"size": 14}, "x": 0.01},
            barmode="stack", height=300, margin={"l": 50, "r": 10, "t": 40, "b": 40}, template="plotly_white",
            font={"size": 11}, showlegend=True, legend={"orientation": "h", "y": -0.15}))
        self.chart.add_class("hkops-chart").add_class("hkops-stock-chart")
        self.as_of = widgets.HTML().add_class("hkops-as-of")

        # ledger
        self.ledger_location = choice("地点 Location", [(ANY, "")], "hkops-ledger-location", "240px")
        self.ledger_iccid = field("ICCID", "8986…", "hkops-ledger-iccid", "260px")
        self.ledger_document = field("单据 Document", "TR000001 / SO00000001", "hkops-ledger-document", "240px")
        self.ledger_button = button("查询 Show", "hkops-ledger-show", "primary", "search")
        self.ledger_table = widgets.HTML().add_class("hkops-ledger")

        # transfer
        self.transfer_from = choice("从 From", [], "hkops-transfer-from", "250px")
        self.transfer_to = choice("到 To", [], "hkops-transfer-to", "250px")
        self.transfer_mode = widgets.ToggleButtons(options=MODES, value="list",
                                                   style={"button_width": "auto"}).add_class("hkops-transfer-mode")
        self.transfer_iccids = field("ICCID", ICCIDS_PLACEHOLDER, "hkops-transfer-iccids", "96%", widgets.Textarea)
        self.transfer_first = field("首 First", "8986…", "hkops-transfer-first", "300px")
        self.transfer_last = field("末 Last", "8986…", "hkops-transfer-last", "300px")
        self.transfer_count = field("数量 Units", css="hkops-transfer-count", width="180px",
                                    kind=widgets.BoundedIntText, value=1, min=1, max=1_000_000)
        self.transfer_product = choice("产品 Product", [], "hkops-transfer-product", "250px")
        self.transfer_reason = field("备注 Note", "optional", "hkops-transfer-reason", "96%")
        self.transfer_button = button("预览调拨 Preview transfer", "hkops-transfer", "warning", "truck")
        self.transfer_confirm = ConfirmRow()
        self.transfer_confirm.add_class("hkops-transfer-confirm")
        self._range_box = row([self.transfer_first, self.transfer_last])
        self._count_box = row([self.transfer_count, self.transfer_product])

        # count
        self.count_location = choice("地点 Location", [], "hkops-count-location", "250px")
        self.count_iccids = field("盘到 Counted", ICCIDS_PLACEHOLDER, "hkops-count-iccids", "96%", widgets.Textarea)
        self.count_button = button("核对 Check", "hkops-count-check", "primary", "list")
        self.count_apply_button = button("应用盘点 Apply count", "hkops-count-apply", "danger", "check")
        self.count_result = widgets.HTML().add_class("hkops-count-result")
        self.count_confirm = ConfirmRow()
        self.count_confirm.add_class("hkops-count-confirm")

        # scrap
        self.scrap_location = choice("地点 Location", [], "hkops-scrap-location", "250px")
        self.scrap_iccids = field("故障卡 Faulty", ICCIDS_PLACEHOLDER, "hkops-scrap-iccids", "96%", widgets.Textarea)
        self.scrap_reason = field("原因 Reason", "e.g. chip damaged", "hkops-scrap-reason", "96%")
        self.scrap_button = button("报废 Scrap", "hkops-scrap", "danger", "trash")
        self.scrap_confirm = ConfirmRow()
        self.scrap_confirm.add_class("hkops-scrap-confirm")

        # low stock
        self.low_stock_days = field("按近 Sales of the last (days)", css="hkops-low-days", width="230px",
                                    kind=widgets.BoundedIntText, value=30, min=1, max=365)
        self.alerts = widgets.HTML().add_class("hkops-alerts")
        self.minimum_location = choice("地点 Location", [], "hkops-minimum-location", "230px")
        self.minimum_product = choice("产品 Product", [], "hkops-minimum-product", "230px")
        self.minimum_value = field("最低 Minimum", css="hkops-minimum-value", width="160px",
                                   kind=widgets.BoundedIntText, value=0, min=0, max=1_000_000)
        self.minimum_button = button("设置 Set minimum", "hkops-minimum-set", icon="sliders")

        self.refresh_button.on_click(lambda _b: self._guard(self._refresh, announce=True))
        for dropdown in (self.location_filter, self.product_filter):
            dropdown.observe(lambda _c: self._guard(self._show_on_hand), names="value")
        self.ledger_button.on_click(lambda _b: self._guard(self._show_ledger))
        self.transfer_mode.observe(lambda _c: self._show_mode(), names="value")
        self.transfer_button.on_click(lambda _b: self.ask_transfer())
        self.count_button.on_click(lambda _b: self.check_count())
        self.count_apply_button.on_click(lambda _b: self.ask_count())
        for widget in (self.count_location, self.count_iccids):
            widget.observe(lambda _c: self._forget_count(), names="value")
        self.scrap_button.on_click(lambda _b: self.ask_scrap())
        self.low_stock_days.observe(lambda _c: self._guard(self._show_alerts), names="value")
        self.minimum_button.on_click(lambda _b: self.set_minimum())
        for confirm_row in self._confirm_rows():
            confirm_row.confirm_button.on_click(lambda _b: self.confirm())
            confirm_row.cancel_button.on_click(lambda _b: self.cancel())

        title = widgets.HTML("<h2 class='hkops-title'>库存 <span>Stock</span></h2>")
        on_hand = panel("在库 On hand", [row([self.location_filter, self.product_filter]), self.on_hand_table,
                                         self.as_of], "2 1 420px")
        chart = widgets.VBox([charts.FitCharts(), self.chart], layout=widgets.Layout(flex="3 1 480px", min_width="0"))
        transfer = panel("调拨 Transfer", [
            row([self.transfer_from, self.transfer_to]), self.transfer_mode, self.transfer_iccids, self._range_box,
            self._count_box, self.transfer_reason, row([self.transfer_button]), self.transfer_confirm])
        count = panel("盘点 Stock count", [self.count_location, self.count_iccids,
                                          row([self.count_button, self.count_apply_button], "hkops-buttons"),
                                          self.count_result, self.count_confirm])
        scrap = panel("报废 Scrap faulty cards", [self.scrap_location, self.scrap_iccids, self.scrap_reason,
                                                 row([self.scrap_button]), self.scrap_confirm])
        low = panel("低库存 Low stock and reorder", [
            self.low_stock_days, self.alerts,
            widgets.HTML("<div class='hkops-muted'>最低库存 Minimum to keep (0 removes it)</div>"),
            row([self.minimum_location, self.minimum_product, self.minimum_value, self.minimum_button])])
        ledger = panel("流水 Ledger of moves (newest first)", [
            row([self.ledger_location, self.ledger_iccid, self.ledger_document, self.ledger_button],
                "hkops-filters"), self.ledger_table], "1 1 100%")
        self.children = [
            stylesheet(), widgets.HTML(f"<style>{_STYLE}</style>", layout=widgets.Layout(display="none")),
            title, row([self.refresh_button]), self.progress, self.status,
            row([on_hand, chart]), row([transfer, count]), row([scrap, low]), row([ledger]),
        ]
        self.add_class("hkops-console")
        self.add_class("hkops-stock")
        self._show_mode()
        self.first_load()

    # ------------------------------------------------------------ reading

    def _refresh(self) -> None:
        """Reload locations, products, on-hand figures, the chart, the ledger and the alerts."""
        with self.progress.busy("读取库存 Reading stock", 4) as step:
            self._load_choices()
            step()
            self._show_on_hand()
            step()
            self._show_ledger()
            step()
            self._show_alerts()
            step()

    def _load_choices(self) -> None:
        with self.store.read() as conn:
            stock.ensure_virtual_locations(conn)
            rows = stock.list_locations(conn, actor=self.actor)
        rows = sorted(rows, key=lambda r: (r.kind != LocationKind.WAREHOUSE.value, r.code))  # warehouses first
        held = [(f"{r.code} · {r.name}", r.code) for r in rows if r.kind != LocationKind.VIRTUAL.value]
        everywhere = held + [(f"{r.code} · {r.name}", r.code) for r in rows if r.kind == LocationKind.VIRTUAL.value]
        products = [(f"{p.code} · {p.name}", p.code) for p in catalogue.products_of(self.store)]
        set_options(self.location_filter, [(ANY, "")] + held)
        set_options(self.product_filter, [(ANY, "")] + products)
        set_options(self.ledger_location, [(ANY, "")] + everywhere)
        for dropdown in (self.transfer_from, self.count_location, self.scrap_location, self.minimum_location):
            set_options(dropdown, held)
        set_options(self.transfer_to, held)
        if self.transfer_to.value == self.transfer_from.value and len(held) > 1:
            self.transfer_to.value = held[1][1]
        for dropdown in (self.transfer_product, self.minimum_product):
            set_options(dropdown, products)

    def _show_on_hand(self) -> None:
        rows = stock.on_hand(self.store, location=self.location_filter.value or None,
                             product=self.product_filter.value or None, actor=self.actor)
        cells = [[_code(r["location"]), html.escape(r["product"] or "—"), f"{r['quantity']:,}"] for r in rows]
        if rows:
            cells.append(["合计 Total", "", f"{sum(r['quantity'] for r in rows):,}"])
        table = html_table(["地点 Location", "产品 Product", "数量 Units"], cells, numeric={2},
                           row_attrs=[f"data-location='{html.escape(r['location'])}'" for r in rows]
                           + (["class='hkops-total'"] if rows else []),
                           empty="没有在库的卡 No cards on hand here.")
        self.on_hand_table.value = table
        self._draw(rows)
        self.as_of.value = f"统计时间 as of {local(utc_now())}"

    def _draw(self, rows: list[dict]) -> None:
        locations = sorted({r["location"] for r in rows})
        products = sorted({r["product"] or "—" for r in rows})
        quantity = {(r["location"], r["product"] or "—"): r["quantity"] for r in rows}
        with self.chart.batch_update():
            self.chart.data = ()
            self.chart.add_traces([
                go.Bar(name=product, x=locations, y=[quantity.get((loc, product), 0) for loc in locations],
                       hovertemplate="%{x} " + product + ": %{y:,}<extra></extra>")
                for product in products])
        charts.snapshot(self.chart)

    def _show_ledger(self) -> None:
        rows = stock.ledger(self.store, location=self.ledger_location.value or None,
                            iccid=self.ledger_iccid.value.strip() or None,
                            document=self.ledger_document.value.strip().upper() or None, limit=LEDGER_ROWS,
                            actor=self.actor)
        cells = [[local(r["at"]), _code(r["iccid"]), f"{html.escape(r['from_location'])} → "
                  f"{html.escape(r['to_location'])}", html.escape(KIND_ZH.get(r["kind"], r["kind"])),
                  _code(r["document"]), html.escape(r["actor"])] for r in rows]
        self.ledger_table.value = html_table(
            ["时间 Time (Asia/Shanghai)", "ICCID", "从 → 到 From → to", "类型 Kind", "单据 Document",
             "操作人 Actor"], cells, row_attrs=[f"data-document='{html.escape(r['document'])}'" for r in rows],
            empty="没有匹配的记录 No moves match these filters.")

    def _show_alerts(self) -> None:
        alerts = stock.low_stock(self.store, days=int(self.low_stock_days.value), actor=self.actor)
        cells = [[_code(a.location), html.escape(a.product), f"{a.on_hand:,}", f"{a.minimum:,}",
                  f"{a.sold_last_days:,}", f"<b>{a.suggested_reorder:,}</b>"] for a in alerts]
        self.alerts.value = html_table(
            ["地点 Location", "产品 Product", "在库 On hand", "最低 Minimum", "近期销量 Sold", "建议补货 Reorder"],
            cells, numeric={2, 3, 4, 5}, row_attrs=[f"data-product='{html.escape(a.product)}'" for a in alerts],
            empty="没有低库存 Nothing is running low (minimums are set below).")

    def _show_mode(self) -> None:
        mode = self.transfer_mode.value
        self.transfer_iccids.layout.display = "flex" if mode == "list" else "none"
        self._range_box.layout.display = "flex" if mode == "range" else "none"
        self._count_box.layout.display = "flex" if mode == "count" else "none"

    # ------------------------------------------------------------ transfers

    def _transfer_cards(self) -> dict:
        mode = self.transfer_mode.value
        if mode == "list":
            iccids = parse_iccid_list(self.transfer_iccids.value)
            if not iccids:
                raise InvalidValue("cards", "", "paste the ICCIDs to move")
            return {"iccids": iccids}
        if mode == "range":
            return {"first": self.transfer_first.value.strip(), "last": self.transfer_last.value.strip()}
        return {"count": int(self.transfer_count.value), "product": chosen(self.transfer_product, "product")}

    def ask_transfer(self) -> None:
        """Rehearse the transfer the form describes; show what would move and wait for Confirm."""
        def run():
            source, target = chosen(self.transfer_from, "location"), chosen(self.transfer_to, "location")
            cards = self._transfer_cards()
            reason = self.transfer_reason.value.strip() or None
            move = lambda db, progress=None: stock.transfer(  # noqa: E731
                db, source, target, actor=self.actor, reason=reason, progress=progress, **cards)
            with self.progress.busy("核对 Checking the transfer", 1) as step:
                preview = rehearse(self.store, move)
                step()
            question = (f"调拨 Transfer <b>{preview.count:,}</b> card(s) from <b>{html.escape(source)}</b> to "
                        f"<b>{html.escape(target)}</b>: ICCIDs {_code(preview.first_iccid)} … "
                        f"{_code(preview.last_iccid)}?")

            def make() -> str:
                with self.progress.busy("调拨 Transferring", preview.count) as step:
                    done = move(self.store, step)
                self.transfer_iccids.value = ""
                return (f"已调拨 Transferred {done.count:,} card(s) {done.from_location} → {done.to_location}, "
                        f"document {done.document}.")

            self._ask_in("transfer", question, make)

        self._guard(run)

    # ------------------------------------------------------------ counts

    def check_count(self) -> None:
        """Compare the pasted ICCIDs with what the system has at the location (nothing written)."""
        def run():
            location, counted = chosen(self.count_location, "location"), parse_iccid_list(self.count_iccids.value)
            with self.progress.busy("核对 Checking the count", 1) as step:
                result = stock.count(self.store, location, counted, actor=self.actor, apply=False)
                step()
            self.checked_count = (location, counted, result)
            self.count_result.value = count_table(result)
            if result.missing or result.unexpected:
                self.status.info(f"盘点差异 Count at {location}: {len(result.missing)} missing, "
                                 f"{len(result.unexpected)} unexpected; apply to record them.")
            else:
                self.status.ok(f"盘点无差异 Count at {location}: all {result.expected:,} card(s) found, no variance.")

        self._guard(run)

    def _forget_count(self) -> None:
        if self.checked_count is not None:
            self.checked_count = None
            self.count_result.value = ""
        if self.pending is not None and self.pending.subject == "count":
            self.cancel(quiet=True)

    def ask_count(self) -> None:
        """Ask before recording the checked count and moving its variances."""
        def run():
            if self.checked_count is None:
                self.status.error("请先核对 Check the count first, then apply it.")
                return
            location, counted, result = self.checked_count
            question = (f"应用盘点 Apply the count at <b>{html.escape(location)}</b>: {len(result.missing)} missing "
                        f"card(s) move to MISSING, {len(result.unexpected)} unexpected card(s) move here?")

            def make() -> str:
                with self.progress.busy("盘点 Recording the count", 1) as step:
                    done = stock.count(self.store, location, counted, actor=self.actor)
                    step()
                self.checked_count = None
                self.count_result.value = count_table(done)
                return (f"已盘点 Count {done.number} at {done.location} recorded: {len(done.missing)} missing, "
                        f"{len(done.unexpected)} unexpected.")

            self._ask_in("count", question, make)

        self._guard(run)

    # ------------------------------------------------------------ scrapping and minimums

    def ask_scrap(self) -> None:
        """Ask before scrapping the pasted faulty cards."""
        def run():
            location, iccids = chosen(self.scrap_location, "location"), parse_iccid_list(self.scrap_iccids.value)
            reason = self.scrap_reason.value.strip()
            if not iccids:
                raise InvalidValue("cards", "", "paste the ICCIDs of the faulty cards")
            if not reason:
                raise InvalidValue("reason", "", "say why the cards are scrapped")
            question = (f"报废 Scrap <b>{len(iccids):,}</b> card(s) at <b>{html.escape(location)}</b> "
                        f"({html.escape(reason)})? They are destroyed and can never be used.")

            def make() -> str:
                with self.progress.busy("报废 Scrapping", 1) as step:
                    done = stock.scrap(self.store, iccids, location, actor=self.actor, reason=reason)
                    step()
                self.scrap_iccids.value = ""
                return f"已报废 Scrapped {done.count:,} card(s) at {done.from_location}, document {done.document}."

            self._ask_in("scrap", question, make)

        self._guard(run)

    def set_minimum(self) -> None:
        """Set the low-stock minimum of the chosen product at the chosen location."""
        def run():
            location, product = chosen(self.minimum_location, "location"), chosen(self.minimum_product, "product")
            minimum = int(self.minimum_value.value)
            stock.set_minimum(self.store, location, product, minimum, actor=self.actor)
            self._show_alerts()
            self.status.ok(f"最低库存 Minimum of {product} at {location} set to {minimum:,}." if minimum else
                           f"最低库存 Minimum of {product} at {location} removed.")

        self._guard(run)

    # ------------------------------------------------------------ confirming

    def _ask_in(self, form: str, question: str, run: Callable[[], str]) -> None:
        """Hold a move of ``form`` (transfer, count, scrap) until confirmed in that form's row."""
        row = {"transfer": self.transfer_confirm, "count": self.count_confirm, "scrap": self.scrap_confirm}[form]
        self._ask(PendingMove(form, question, run), question, row)

    def _confirm_rows(self) -> tuple:
        return (self.transfer_confirm, self.count_confirm, self.scrap_confirm)

    def _buttons(self):
        return (self.refresh_button, self.ledger_button, self.transfer_button, self.count_button,
                self.count_apply_button, self.scrap_button, self.minimum_button,
                *(b for r in self._confirm_rows() for b in (r.confirm_button, r.cancel_button)))


def count_table(result: stock.CountResult) -> str:
    """A count's figures and its variances (the first few ICCIDs of each)."""
    def listed(iccids: list[str]) -> str:
        shown = "<br>".join(html.escape(i) for i in iccids[:SHOWN_VARIANCES])
        more = f"<br>… and {len(iccids) - SHOWN_VARIANCES:,} more" if len(iccids) > SHOWN_VARIANCES else ""
        return f"<div class='hkops-variances'>{shown or '—'}{more}</div>"

    number = f"盘点单 Count <b>{html.escape(result.number)}</b> · " if result.number else "未应用 Not applied yet · "
    figures = (f"<div>{number}{html.escape(result.location)}: expected <b>{result.expected:,}</b>, counted "
               f"<b>{result.counted:,}</b>, missing <b>{len(result.missing):,}</b>, unexpected "
               f"<b>{len(result.unexpected):,}</b></div>")
    return figures + html_table(["缺少 Missing (not found)", "多出 Unexpected (found here)"],
                                [[listed(result.missing), listed(result.unexpected)]])


def stock_console(store: Store | None = None, actor: str | None = None) -> StockConsole:
    """The stock console (库存) on ``store`` (default: the configured database)."""
    return StockConsole(store, actor)
