"""The allocation console (号码分配): search the pool, pick a number, reserve, allocate or release it.

The widget only wires: searching is :func:`hkops.numbers.search.search`, every move is a
use case of :mod:`hkops.numbers.service`, the charts draw :func:`hkops.numbers.service.stats`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, replace

import ipywidgets as widgets
import plotly.graph_objects as go

from hkops import carriers, settings
from hkops.money import yuan_to_fen
from hkops.numbers import service
from hkops.ids import display_msisdn
from hkops.numbers.model import NumberState
from hkops.numbers.search import MAX_LIMIT, Hit, SearchQuery, search
from hkops.store.engine import Store, get_store
from hkops.timeutil import local, utc_now
from hkops.ui._common import (
    ANY,
    NUMBER_BADGES,
    STATE_COLOURS,
    STATE_LABELS,
    STATE_ZH,
    Busy,
    ConfirmRow,
    GuardedConsole,
    StatusLine,
    console_actor,
    stylesheet,
)
from hkops.ui.charts import FitCharts, figure, snapshot

PATTERN_PLACEHOLDER = "*8888, 1380013????, AABB"
#: The most rows the console lists at once (the search itself allows more).
MAX_ROWS = min(1000, MAX_LIMIT)


@dataclass(frozen=True)
class Action:
    """A move the console offers, and how to ask before making it."""

    name: str
    button: str
    done: str
    needs_holder: bool
    style: str


ACTIONS = {
    "reserve": Action("reserve", "预占 Reserve", "已预占 Reserved", True, "warning"),
    "allocate": Action("allocate", "分配 Allocate", "已分配 Allocated", True, "success"),
    "release": Action("release", "释放 Release", "已释放 Released", False, "danger"),
}


@dataclass(frozen=True)
class PendingMove:
    """A move waiting for the operator's confirmation."""

    action: str
    msisdn: str
    holder: str | None
    question: str


class PoolCharts(widgets.GridBox):
    """The pool by state, by grade and by region (province, stacked by state)."""

    def __init__(self):
        states = [s.value for s in NumberState]
        self.by_state = figure(
            data=[go.Bar(x=states, y=[0] * len(states), marker_color=[STATE_COLOURS[s] for s in states],
                         texttemplate="%{y:,}", textposition="outside", cliponaxis=False,
                         hovertemplate="%{x}: %{y:,}<extra></extra>")],
            layout=_layout("按状态 By state", xaxis={"tickvals": states, "ticktext": [f"{STATE_ZH[s]}<br>{s}" for s in states]}),
        )
        self.by_grade = figure(
            data=[go.Bar(x=[], y=[], marker_color="#2563eb", texttemplate="%{y:,}", textposition="outside",
                         cliponaxis=False, hovertemplate="%{x}: %{y:,}<extra></extra>")],
            layout=_layout("按等级 By grade (log scale)", yaxis={"type": "log"}),
        )
        self.by_region = figure(
            data=[go.Bar(name=STATE_LABELS[s], x=[], y=[], marker_color=STATE_COLOURS[s], meta=s,
                         hovertemplate="%{x} " + s + ": %{y:,}<extra></extra>") for s in states],
            layout=_layout("按地区 By region, stacked by state", barmode="stack", showlegend=True,
                           legend={"orientation": "h", "y": -0.12, "traceorder": "normal"}, height=320),
        )
        self.as_of = widgets.HTML().add_class("hkops-as-of")
        # A FigureWidget's ``layout`` is plotly's, so each one sits in a Box that takes the grid area.
        cells = []
        for fig, area in ((self.by_state, "state"), (self.by_grade, "grade"), (self.by_region, "region")):
            fig.add_class("hkops-chart").add_class(f"hkops-chart-{area}")
            cells.append(widgets.Box([fig], layout=widgets.Layout(grid_area=area, min_width="0", width="100%")))
        self.as_of.layout.grid_area = "asof"
        super().__init__(
            children=[FitCharts(), *cells, self.as_of],
            layout=widgets.Layout(
                grid_template_columns="minmax(0, 2fr) minmax(0, 3fr)",
                grid_template_areas='"state grade" "region region" "asof asof"',
                width="100%",
            ),
        )
        self.add_class("hkops-charts")

    def show(self, stats: dict) -> None:
        """Draw ``stats`` (as returned by :func:`hkops.numbers.service.stats`)."""
        by_state = stats["by_state"]
        with self.by_state.batch_update():
            self.by_state.data[0].x = list(by_state)
            self.by_state.data[0].y = list(by_state.values())
        with self.by_grade.batch_update():
            self.by_grade.data[0].x = list(stats["by_grade"])
            self.by_grade.data[0].y = list(stats["by_grade"].values())
        provinces = list(stats["by_province"])
        with self.by_region.batch_update():
            for trace in self.by_region.data:
                trace.x = provinces
                trace.y = [stats["by_province"][p].get(trace.meta, 0) for p in provinces]
        for fig in (self.by_state, self.by_grade, self.by_region):
            snapshot(fig)
        self.as_of.value = (f"共 {stats['total']:,} 个号码, {stats['blocks']} 个号段 · "
                            f"{stats['total']:,} numbers in {stats['blocks']} blocks · "
                            f"统计时间 as of {local(utc_now())}")


def _layout(title: str, **extra) -> go.Layout:
    base = dict(
        title={"text": title, "font": {"size": 14}, "x": 0.01},
        height=300,
        margin={"l": 50, "r": 10, "t": 40, "b": 40},
        showlegend=False,
        template="plotly_white",
        font={"size": 11},
    )
    base.update(extra)
    return go.Layout(**base)


class AllocationConsole(GuardedConsole, widgets.VBox):
    """号码分配 Number allocation: filters, results, a picked number and the moves on it.

    The pieces are attributes so that tests (and other consoles) can drive them:
    ``pattern``, ``region``, ``carrier``, ``grade``, ``state``, ``min_price``,
    ``max_price``, ``limit``, ``search_button``, ``results``, ``selected``, ``holder``,
    ``reserve_button``, ``allocate_button``, ``release_button``, ``confirm_row``,
    ``confirm_button``, ``cancel_button``, ``status``, ``progress``, ``charts``.
    """

    nothing_pending = "choose Reserve, Allocate or Release first"

    def __init__(self, store: Store | None = None, actor: str | None = None):
        super().__init__()
        self.store = store or get_store()
        self.actor = actor or console_actor()
        self.hits: list[Hit] = []
        self.pending: PendingMove | None = None
        self.stats: dict = {}

        def text(description, placeholder="", css="", width="190px"):
            widget = widgets.Text(description=description, placeholder=placeholder,
                                  layout=widgets.Layout(width=width), style={"description_width": "initial"})
            return widget.add_class(css) if css else widget

        def dropdown(description, css, width="200px"):
            return widgets.Dropdown(description=description, options=[(ANY, "")], value="",
                                    layout=widgets.Layout(width=width),
                                    style={"description_width": "initial"}).add_class(css)

        # filters
        self.pattern = text("号码规则 Pattern", PATTERN_PLACEHOLDER, "hkops-pattern", "300px")
        self.region = dropdown("地区 Region", "hkops-region")
        self.carrier = dropdown("运营商 Carrier", "hkops-carrier", "230px")
        self.grade = dropdown("等级 Grade", "hkops-grade", "270px")
        self.state = widgets.Dropdown(
            description="状态 State",
            options=[(ANY, "any")] + [(STATE_LABELS[s.value], s.value) for s in NumberState],
            value=NumberState.AVAILABLE.value, layout=widgets.Layout(width="210px"),
            style={"description_width": "initial"},
        ).add_class("hkops-state")
        self.min_price = text("最低价 Min ¥", "0", "hkops-min-price", "160px")
        self.max_price = text("最高价 Max ¥", "", "hkops-max-price", "160px")
        self.limit = widgets.BoundedIntText(value=50, min=1, max=MAX_ROWS, description="条数 Limit",
                                            layout=widgets.Layout(width="150px"),
                                            style={"description_width": "initial"}).add_class("hkops-limit")
        self.search_button = widgets.Button(description="搜索 Search", icon="search", button_style="primary",
                                            layout=widgets.Layout(width="130px")).add_class("hkops-search")
        self.refresh_button = widgets.Button(description="刷新 Refresh", icon="refresh",
                                             tooltip="Reload the pool statistics and the lists of regions and grades",
                                             layout=widgets.Layout(width="130px")).add_class("hkops-refresh")

        # results and the picked number
        self.results = widgets.HTML().add_class("hkops-results")
        self.selected = widgets.Dropdown(description="号码 Number", options=[("— 从结果中选择 pick from the results —", None)],
                                         value=None, layout=widgets.Layout(width="96%"),
                                         style={"description_width": "initial"}).add_class("hkops-pick")
        self.detail = widgets.HTML().add_class("hkops-detail")
        self.holder = text("客户 Holder", "C000123 / AG-GD-01 / order id", "hkops-holder", "96%")
        self.reserve_button, self.allocate_button, self.release_button = (
            widgets.Button(description=a.button, button_style=a.style, layout=widgets.Layout(width="auto"))
            .add_class(f"hkops-{a.name}")
            for a in ACTIONS.values()
        )
        self.confirm_row = ConfirmRow()
        self.confirm_text = self.confirm_row.text
        self.confirm_button, self.cancel_button = self.confirm_row.confirm_button, self.confirm_row.cancel_button

        self.status = StatusLine()
        self.progress = Busy()
        self.charts = PoolCharts()

        self.search_button.on_click(lambda _b: self.search())
        self.refresh_button.on_click(lambda _b: self._guard(self._refresh, announce=True))
        self.selected.observe(lambda _change: self._show_selection(), names="value")
        for name, button in (("reserve", self.reserve_button), ("allocate", self.allocate_button),
                             ("release", self.release_button)):
            button.on_click(lambda _b, name=name: self.ask(name))
        self.confirm_button.on_click(lambda _b: self.confirm())
        self.cancel_button.on_click(lambda _b: self.cancel())

        title = widgets.HTML("<h2 class='hkops-title'>号码分配 <span>Number allocation</span></h2>")
        filters = widgets.HBox(
            [self.pattern, self.region, self.carrier, self.grade, self.state, self.min_price, self.max_price,
             self.limit, self.search_button, self.refresh_button],
            layout=widgets.Layout(flex_flow="row wrap"),
        ).add_class("hkops-filters")
        actions = widgets.VBox(
            [widgets.HTML("<h3>操作 Action</h3>"), self.selected, self.detail, self.holder,
             widgets.HBox([self.reserve_button, self.allocate_button, self.release_button],
                          layout=widgets.Layout(flex_flow="row wrap")).add_class("hkops-buttons"),
             self.confirm_row],
            layout=widgets.Layout(flex="2 1 320px", min_width="300px", padding="0 0 0 12px"),
        ).add_class("hkops-actions")
        work = widgets.HBox(
            [widgets.VBox([self.results], layout=widgets.Layout(flex="3 1 560px", min_width="0")), actions],
            layout=widgets.Layout(flex_flow="row wrap", width="100%"),
        )
        self.children = [stylesheet(), title, filters, self.progress, self.status, work, self.charts]
        self.add_class("hkops-console")
        self.add_class("hkops-allocation")
        self._show_results()
        self._show_selection()
        self.first_load()

    # ------------------------------------------------------------ reading

    def _refresh(self) -> None:
        """Reload the pool statistics (charts) and the lists of regions, carriers and grades."""
        with self.progress.busy("统计 Counting the pool", 2) as step:
            stats = service.stats(self.store, actor=self.actor)
            step()
            self._set_options(self.region, [(p, p) for p in stats["by_province"]])
            self._set_options(self.carrier, [(f"{carriers.KNOWN.get(c, c)} {c}", c) for c in stats["by_carrier"]])
            self._set_options(self.grade, self._grade_options())
            self.charts.show(stats)
            step()
        self.stats = stats

    def _grade_options(self) -> list[tuple[str, str]]:
        rows = service.grade_labels(self.store)
        return [(f"{grade} · {label}", grade) for grade, label in rows]

    @staticmethod
    def _set_options(dropdown: widgets.Dropdown, options: list[tuple[str, str]]) -> None:
        current = dropdown.value
        dropdown.options = [(ANY, "")] + options
        dropdown.value = current if current in {v for _, v in options} else ""

    def search(self) -> None:
        """Run the search the filters describe and show the hits."""
        def run():
            query = SearchQuery(
                pattern=self.pattern.value.strip() or None,
                region=self.region.value or None,
                carrier=self.carrier.value or None,
                grade=self.grade.value or None,
                state=self.state.value or "any",
                min_price_fen=_fen(self.min_price.value, "min price"),
                max_price_fen=_fen(self.max_price.value, "max price"),
                limit=int(self.limit.value),
            )
            with self.progress.busy("搜索 Searching", 1) as step:
                hits = search(self.store, query, actor=self.actor)
                step()
            self._set_hits(hits)
            if not hits:
                self.status.info("没有匹配的号码 No number matches these filters.")
            else:
                more = f" (the first {query.limit}; raise the limit to see more)" if len(hits) == query.limit else ""
                self.status.ok(f"找到 {len(hits)} 个号码 Found {len(hits)} numbers{more}.")

        self._guard(run)

    def _set_hits(self, hits: list[Hit]) -> None:
        keep = self.selected.value
        self.hits = list(hits)
        self.selected.options = [("— 从结果中选择 pick from the results —", None)] + [
            (f"{h.display} · {h.grade} · ¥{h.price} · {h.state}", h.msisdn) for h in self.hits
        ]
        self.selected.value = keep if any(h.msisdn == keep for h in self.hits) else None
        self._show_results()

    def _hit(self, msisdn: str | None) -> Hit | None:
        return next((h for h in self.hits if h.msisdn == msisdn), None)

    def _show_results(self) -> None:
        self.results.value = results_table(self.hits, self.selected.value)

    def _show_selection(self) -> None:
        self.cancel(quiet=True)
        hit = self._hit(self.selected.value)
        if hit is None:
            self.detail.value = "<div class='hkops-muted'>未选择号码 No number picked.</div>"
        else:
            held = f" · {html.escape(hit.holder)}" if hit.holder else ""
            until = f" · until {hit.reserved_until}" if hit.reserved_until else ""
            self.detail.value = (
                f"<div><b class='hkops-number'>{hit.display}</b> {html.escape(hit.province)} {html.escape(hit.city)}<br>"
                f"{hit.grade} · ¥{hit.price} · 最低消费 min ¥{hit.min_monthly}/月 · 预存 prepay ¥{hit.prepay}<br>"
                f"{NUMBER_BADGES.badge(hit.state)}"
                f"{held}{until}</div>"
            )
        self._show_results()

    # ------------------------------------------------------------ moving

    def ask(self, action: str) -> None:
        """Show what ``action`` will do to the picked number and wait for Confirm or Cancel."""
        def run():
            spec = ACTIONS[action]
            hit = self._hit(self.selected.value)
            if hit is None:
                self.status.error("请先选择号码 Pick a number from the results first.")
                return
            holder = self.holder.value.strip() or None
            if spec.needs_holder and not holder:
                self.status.error("请填写客户 Type the holder (customer, agent or order id) first.")
                return
            now = f"{hit.state}" + (f", held by {hit.holder}" if hit.holder else "")
            if action == "reserve":
                with self.store.read() as conn:
                    ttl = settings.get(conn, "reservation_ttl")
                question = f"预占 Reserve <b>{hit.display}</b> for <b>{html.escape(holder)}</b> for {ttl}? (now {now})"
            elif action == "allocate":
                question = f"分配 Allocate <b>{hit.display}</b> to <b>{html.escape(holder)}</b>? (now {now})"
            else:
                question = f"释放 Release <b>{hit.display}</b> back to the pool? (now {html.escape(now)})"
            self._ask(PendingMove(action, hit.msisdn, holder, question), question)

        self._guard(run)

    def confirm(self) -> None:
        """Make the pending move, then refresh the row and the charts."""
        pending = self._take_pending()
        if pending is None:
            return

        def run():
            spec = ACTIONS[pending.action]
            with self.progress.busy(spec.button, 3) as step:
                if pending.action == "reserve":
                    move = service.reserve(self.store, pending.msisdn, pending.holder, actor=self.actor)
                elif pending.action == "allocate":
                    move = service.allocate(self.store, pending.msisdn, pending.holder, actor=self.actor)
                else:
                    move = service.release(self.store, pending.msisdn, actor=self.actor)
                step()
                who = f" → {move.holder}" if move.holder else ""
                done = f"{spec.done} {display_msisdn(move.msisdn)}{who} ({move.from_state} → {move.to_state})"
                try:
                    self._update_hit(service.get_number(self.store, pending.msisdn))
                    step()
                    self._refresh()
                    step()
                except Exception as error:  # noqa: BLE001 - the move is made; say so, then the problem
                    self.status.failure(error)
                    self.status.error(f"{done}, but the screen could not be refreshed: {self.status.text}")
                    return
            self.status.ok(done + ".")

        self._guard(run)

    def _update_hit(self, record) -> None:
        hit = self._hit(record.msisdn)
        if hit is None:
            return
        expired = record.reservation_expired(utc_now())
        fresh = replace(
            hit,
            state=NumberState.AVAILABLE.value if expired else record.state.value,
            holder=None if expired else record.holder,
            reserved_until="" if expired or record.reserved_until is None else local(record.reserved_until),
        )
        self.hits = [fresh if h.msisdn == fresh.msisdn else h for h in self.hits]
        self._set_hits(self.hits)
        self._show_selection()

    # ------------------------------------------------------------ errors

    def _buttons(self):
        return (self.search_button, self.refresh_button, self.reserve_button, self.allocate_button,
                self.release_button, self.confirm_button, self.cancel_button)


def _fen(text: str, field: str) -> int | None:
    text = (text or "").strip()
    return yuan_to_fen(text, field) if text else None


def results_table(hits: list[Hit], selected: str | None = None) -> str:
    """The hits as a compact HTML table (the picked number highlighted)."""
    if not hits:
        return ("<div class='hkops-empty'>输入条件后点击搜索 Enter filters and click Search "
                f"(pattern examples: {PATTERN_PLACEHOLDER}).</div>")
    head = ("<tr><th>号码 Number</th><th>地区 Region</th><th>运营商 Carrier</th><th>等级 Grade</th>"
            "<th class='num'>价格 Price ¥</th><th class='num'>最低消费 Min/月 ¥</th><th>状态 State</th>"
            "<th>持有人 Holder</th></tr>")
    rows = []
    for h in hits:
        mark = " class='hkops-picked'" if h.msisdn == selected else ""
        region = h.province if h.city in ("", h.province) else f"{h.province} {h.city}"
        rows.append(
            f"<tr{mark} data-msisdn='{h.msisdn}'><td class='hkops-number'>{h.display}</td>"
            f"<td>{html.escape(region)}</td><td>{html.escape(carriers.KNOWN.get(h.carrier, h.carrier))}</td>"
            f"<td>{html.escape(h.grade)}</td><td class='num'>{h.price}</td><td class='num'>{h.min_monthly}</td>"
            f"<td><span class='hkops-state hkops-state-{h.state}'>{h.state}</span></td>"
            f"<td>{html.escape(h.holder or '')}</td></tr>"
        )
    return (f"<div class='hkops-table-wrap'><table class='hkops-table'><thead>{head}</thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def allocation_console(store: Store | None = None, actor: str | None = None) -> AllocationConsole:
    """The allocation console (号码分配) on ``store`` (default: the configured database)."""
    return AllocationConsole(store, actor)
