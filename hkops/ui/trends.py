"""The trends console (趋势): sales funnel and trends, usage, the number pool, forecasts, export.

The widget only wires: the figures are :mod:`hkops.analytics.sales`, :mod:`~hkops.analytics.planning`,
:mod:`~hkops.analytics.forecast` and :mod:`~hkops.analytics.usage_stats`; the filters are checked by
:func:`hkops.analytics.filters.check_filters` (a bad one is named in the status line, nothing shown
changes). Reading takes a few seconds on a large database: a progress bar says what it is doing,
and each panel is drawn as soon as its figures are read (the funnel first, the number pool last).

Served by ``hkops serve``, the console is built empty (``load=False``) and shown at once;
:func:`hkops.ui.show` then has it load in a background thread (:meth:`TrendsConsole.load_in_background`)
as the logged-in user, so the page shows the frame and its progress bar without waiting for
the queries. What was read is kept for :data:`CACHE_S` seconds per filter set (the pool, which
no filter but the region changes, per user): showing a filter set again takes no query; the
console's refresh reads everything again.
"""

from __future__ import annotations

import base64
import html
import threading
import time
from datetime import timedelta
from pathlib import Path

import ipywidgets as widgets
import plotly.graph_objects as go

from hkops.store.engine import Store, get_store
from hkops.ui import charts
from hkops.ui._common import (
    ANY,
    Busy,
    GuardedConsole,
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

#: Days shown when the console opens: the last 90.
DEFAULT_DAYS = 90
SERIES = [("激活 Activations", "activated"), ("订单 Orders", "placed"), ("流量 Usage (data GB)", "usage")]
METHODS = [("指数平滑 ETS (Holt-Winters)", "ets"), ("STL", "stl")]
FORMATS = [("Excel", "xlsx"), ("CSV (zip)", "csv")]
BREAKDOWNS = [("代理商 Agent", "agent"), ("渠道 Channel", "channel"), ("套餐 Plan", "plan"), ("省份 Province", "province")]
STEP_ZH = {"placed": "下单 placed", "paid": "支付 paid", "shipped": "发货 shipped", "delivered": "签收 delivered",
           "activated": "激活 activated", "first_topup": "首充 first top-up"}
GIB = 1 << 30
#: Seconds what was read for a filter set is reused when the same set is shown again.
CACHE_S = 300.0


class TimedCache:
    """Values kept for ``seconds`` each: what a console read, reused while it is fresh enough."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._kept: dict = {}

    def get(self, key, read):
        """The value kept for ``key`` if younger than ``seconds``, else ``read()`` (kept from now)."""
        now = time.monotonic()
        kept = self._kept.get(key)
        if kept is not None and now - kept[0] < self.seconds:
            return kept[1]
        value = read()
        self._kept = {k: v for k, v in self._kept.items() if now - v[0] < self.seconds}  # forget the stale
        self._kept[key] = (now, value)
        return value

    def clear(self) -> None:
        self._kept.clear()


def _layout(title: str, height: int = 300, **extra) -> go.Layout:
    return go.Layout(title={"text": title, "font": {"size": 14}, "x": 0.01}, height=height, template="plotly_white",
                     margin={"l": 50, "r": 10, "t": 40, "b": 40}, font={"size": 11},
                     legend={"orientation": "h", "y": -0.2}, **extra)


def _chart(css: str, layout: go.Layout):
    fig = charts.figure(layout=layout)
    fig.add_class("hkops-chart").add_class(css)
    return fig


def _percent(value) -> str:
    return "—" if value is None or value != value else f"{100 * value:.1f}%"


def _hours(value) -> str:
    return "—" if value is None or value != value else f"{value:,.1f} h"


class TrendsConsole(GuardedConsole, widgets.VBox):
    """趋势 Trends: filters (date range, region, plan, agent), the sales funnel and its trend, usage
    per day, the number pool and the blocks to request, a forecast with its interval, back-test
    error and anomalies, and export of what is shown.

    Attributes tests drive: ``start``, ``end``, ``region``, ``plan``, ``agent``, ``show_button``,
    ``funnel_table``, ``funnel_chart``, ``trend_chart``, ``usage_chart``, ``usage_note``, ``pool_chart``,
    ``plan_table``, ``forecast_series``, ``forecast_method``, ``forecast_button``, ``forecast_chart``,
    ``forecast_note``, ``export_format``, ``export_button``, ``download``, ``status``, ``progress``;
    ``tables`` holds the frames last shown (what export writes); ``loaded`` says whether the
    figures have been read at least once; ``cache`` holds what was read per filter set.

    ``load=False`` builds the console without reading anything (:func:`hkops.ui.show` has it load
    after the page shows it). Without ``actor`` it acts as the logged-in user
    (:func:`hkops.ui._common.console_actor`).
    """

    def __init__(self, store: Store | None = None, actor: str | None = None, usage_dir: str | Path | None = None,
                 load: bool = True):
        super().__init__()
        self.store = store or get_store()
        self.actor = actor or console_actor()
        self.usage_dir = usage_dir
        self.pending = None
        self.tables: dict = {}
        self.filters = None
        self.loaded = False
        self.cache = TimedCache(CACHE_S)
        self._steps = None
        self._lock = threading.RLock()  # one reading at a time (the background load, a click)
        self._loader: threading.Thread | None = None

        self.status = StatusLine()
        self.progress = Busy()
        self.start = field("从 From", "YYYY-MM-DD", "hkops-trends-start", "200px")
        self.end = field("到 To", "YYYY-MM-DD", "hkops-trends-end", "200px")
        self.region = choice("地区 Region", [(ANY, "")], "hkops-trends-region", "220px")
        self.plan = choice("套餐 Plan", [(ANY, "")], "hkops-trends-plan", "200px")
        self.agent = choice("代理商 Agent", [(ANY, "")], "hkops-trends-agent", "220px")
        self.show_button = button("查询 Show", "hkops-trends-show", "primary", "search")

        self.funnel_table = widgets.HTML().add_class("hkops-trends-funnel")
        # the first step on top: plotly only reverses a funnel's axis for a funnel it is first drawn with
        self.funnel_chart = _chart("hkops-funnel-chart", _layout("销售漏斗 Sales funnel", 320,
                                                                 yaxis={"autorange": "reversed"}))
        self.breakdown = choice("分组 Break down by", BREAKDOWNS, "hkops-funnel-by", "240px")
        self.breakdown_table = widgets.HTML().add_class("hkops-funnel-breakdown")
        self.trend_chart = _chart("hkops-trend-chart", _layout("每日 Orders per day by step"))
        self.usage_chart = _chart("hkops-usage-chart", _layout("用量 Data per day (GB)"))
        self.usage_note = widgets.HTML().add_class("hkops-usage-note")
        self.pool_chart = _chart("hkops-pool-chart", _layout("号码池 Number pool by region", 320, barmode="stack"))
        self.plan_table = widgets.HTML().add_class("hkops-plan")
        self.pool_history_chart = _chart("hkops-pool-history-chart",
                                         _layout("号码使用率 Utilisation per day (in use / all numbers)", 280))

        self.forecast_series = choice("序列 Series", SERIES, "hkops-forecast-series", "240px")
        self.forecast_method = choice("方法 Method", METHODS, "hkops-forecast-method", "260px")
        self.horizon = field("天数 Days ahead", css="hkops-forecast-horizon", width="180px",
                             kind=widgets.BoundedIntText, value=28, min=1, max=180)
        self.forecast_button = button("预测 Forecast", "hkops-forecast", "primary", "line-chart")
        self.forecast_chart = _chart("hkops-forecast-chart", _layout("预测 Forecast", 340))
        self.forecast_note = widgets.HTML().add_class("hkops-forecast-note")

        self.export_format = choice("格式 Format", FORMATS, "hkops-export-format", "200px")
        self.export_button = button("导出 Export", "hkops-export", icon="download")
        self.download = widgets.HTML().add_class("hkops-download")

        self.show_button.on_click(lambda _b: self._guard(self._show, announce=False))
        self.breakdown.observe(lambda _c: self._guard(self._show_breakdown), names="value")
        self.forecast_button.on_click(lambda _b: self._guard(self._forecast))
        self.export_button.on_click(lambda _b: self._guard(self._export))

        title = widgets.HTML("<h2 class='hkops-title'>趋势 <span>Trends</span></h2>")
        filters = row([self.start, self.end, self.region, self.plan, self.agent, self.show_button], "hkops-filters")
        funnel = panel("销售漏斗 Sales funnel", [self.funnel_table, self.funnel_chart, self.breakdown,
                                               self.breakdown_table], "1 1 520px")
        trend = panel("销售趋势 Sales trend", [self.trend_chart], "1 1 520px")
        usage = panel("用量 Usage", [self.usage_note, self.usage_chart], "1 1 520px")
        pool = panel("号码池 Number pool and blocks to request", [self.pool_chart, self.pool_history_chart,
                                                             self.plan_table], "1 1 520px")
        forecast = panel("预测与异常 Forecast and anomalies", [
            row([self.forecast_series, self.forecast_method, self.horizon, self.forecast_button], "hkops-filters"),
            self.forecast_note, self.forecast_chart], "1 1 100%")
        export = panel("导出 Export", [row([self.export_format, self.export_button]), self.download], "1 1 100%")
        self.children = [stylesheet(), title, filters, self.progress, self.status, charts.FitCharts(),
                         row([funnel, trend]), row([usage, pool]), row([forecast]), row([export])]
        self.add_class("hkops-console")
        self.add_class("hkops-trends")
        if load:
            self.refresh()

    # ------------------------------------------------------------ reading

    def _guard(self, work, announce: bool = False) -> None:
        with self._lock:
            super()._guard(work, announce)

    def warm_up(self) -> None:
        """Import and start what reading the figures uses (pandas, Ibis on DuckDB, the analyses)
        without reading any data: :func:`hkops.ui.show` has a preheated kernel do it before
        anyone asks for the page, so that the first reading pays none of it."""
        import ibis

        from hkops.analytics import forecast, planning, sales, usage_stats  # noqa: F401
        from hkops.analytics.engine import execute

        execute(ibis.memtable({"day": [1, 1, 2]}).group_by("day").aggregate(n=ibis._.count()))

    def load_in_background(self) -> threading.Thread:
        """Read the filter choices and the figures in a thread (as ``refresh`` does), so that the
        page shows the console, its progress bar running, without waiting for the queries."""
        self.status.info("读取中 Reading the figures…")
        self._loader = threading.Thread(target=self.refresh, name="hkops-trends-load", daemon=True)
        self._loader.start()
        return self._loader

    def _refresh(self) -> None:
        """Load the filter choices, then read again and show the figures for the filters as they are."""
        self.cache.clear()
        self._load_choices()
        self._show()

    def _load_choices(self) -> None:
        from hkops.analytics.filters import choices, today

        offered = choices(self.store)
        set_options(self.region, [(ANY, "")] + [(r, r) for r in offered["regions"]])
        set_options(self.plan, [(ANY, "")] + [(p, p) for p in offered["plans"]])
        set_options(self.agent, [(ANY, "")] + [(a, a) for a in offered["agents"]])
        if not self.end.value and not self.start.value:
            self.end.value = today().isoformat()
            self.start.value = (today() - timedelta(days=DEFAULT_DAYS - 1)).isoformat()

    def _checked(self):
        from hkops.analytics.filters import check_filters

        return check_filters(self.store, start=self.start.value, end=self.end.value, region=self.region.value,
                             plan=self.plan.value, agent=self.agent.value)

    def _show(self) -> None:
        """Check the filters, then read and draw the funnel, trend, usage and pool, each panel as
        soon as its figures are read (a failure part-way clears the panels, so that no panel
        shows other filters' figures)."""
        filters = self._checked()  # a bad filter stops here, with everything shown left as it was
        try:
            self._read_and_draw(filters)
        except Exception:
            self._clear()
            raise
        self.loaded = True
        self.status.ok(f"已更新 Shown for {self._described(filters)}.")

    def _read_and_draw(self, filters) -> None:
        from hkops.analytics import planning, sales
        from hkops.analytics.engine import execute
        from hkops.analytics.filters import today
        from hkops.security.access import agent_scope

        who, day = repr(self.actor), today()
        per_filters = lambda name, read: self.cache.get((who, filters, day, name), read)  # noqa: E731
        with self.progress.busy("读取 Reading orders, usage and the pool", 6) as step:
            steps = per_filters("steps", lambda: sales.steps_for(self.store, actor=self.actor, filters=filters))
            self.filters, self._steps, self.tables = filters, steps, {}
            funnel = per_filters("funnel", lambda: execute(sales.funnel_by(steps), days=True))
            self.tables["funnel"] = funnel
            self._draw_funnel(funnel)
            step()
            long = per_filters("daily", lambda: execute(sales.trends(steps, "day"), days=True))
            trend = long.pivot_table(index="period", columns="step", values="orders", aggfunc="sum", fill_value=0)
            self.tables["daily"] = trend.reset_index()
            self._draw_trend(trend)
            step()
            if agent_scope(self.actor) is not None:  # an agent user: its subtree's sales, not the operator's
                usage, pool, plan, history = self._operator_only()
                self.tables.update({"usage": usage, "pool": pool, "blocks to request": plan})
                self._draw_usage(usage)
                self._draw_pool(pool, plan)
                self._draw_history(history)
                self._show_breakdown()
                return
            usage, self.usage_note.value = per_filters("usage", lambda: self._usage(filters))
            self.tables["usage"] = usage
            self._draw_usage(usage)
            step()
            # the pool and the blocks to request: no filter but the region changes them
            tables = self.cache.get((who, "planning"), lambda: planning.planning_tables(self.store, self.actor))
            pool = self.cache.get((who, "pool"), lambda: planning.utilisation_report(
                self.store, actor=self.actor, tables=tables))
            step()
            plan = self.cache.get((who, "plan"), lambda: planning.block_plan(self.store, actor=self.actor,
                                                                             tables=tables))
            if filters.region:
                pool, plan = pool[pool.region == filters.region], plan[plan.region == filters.region]
            self.tables.update({"pool": pool, "blocks to request": plan})
            self._draw_pool(pool, plan)
            step()
            first = filters.start or (filters.end or day) - timedelta(days=DEFAULT_DAYS - 1)
            history = self.cache.get((who, "history", first, filters.end or day), lambda: planning.history_report(
                self.store, first, filters.end or day, actor=self.actor, tables=tables))
            if filters.region:
                history = history[history.region == filters.region]
            self._draw_history(history)
            self._show_breakdown()
            step()

    def _clear(self) -> None:
        """Empty every panel (after a failed reading)."""
        self.filters, self._steps, self.tables = None, None, {}
        for chart in (self.funnel_chart, self.trend_chart, self.usage_chart, self.pool_chart, self.pool_history_chart):
            chart.data = ()
            charts.snapshot(chart)
        for table in (self.funnel_table, self.breakdown_table, self.plan_table, self.usage_note):
            table.value = ""

    def _operator_only(self):
        """Empty usage, pool, block plan and pool history, with a note: every card's usage and the
        number pool are the operator's, not an agent's subtree."""
        import pandas as pd

        self.usage_note.value = ("<div class='hkops-muted'>代理用户不显示 Every card's usage and the number pool "
                                 "are not shown to agent users.</div>")
        states = ["available", "reserved", "assigned", "active", "suspended", "quarantined", "blocked"]
        return (pd.DataFrame(columns=["day", "data_bytes", "voice_mo_s", "sms_mo", "cards"]),
                pd.DataFrame(columns=["region", *states]),
                pd.DataFrame(columns=["region", "available", "demand_per_day", "recycled_in_cover", "days_left",
                                      "runs_out_on", "blocks_to_request"]),
                pd.DataFrame(columns=["region", "day", "utilisation"]))

    def _usage(self, filters):
        """Usage per day for ``filters`` and the note the usage panel shows above it (HTML)."""
        import pandas as pd

        from hkops.analytics import usage_stats
        from hkops.analytics.engine import scan_store, store_location
        from hkops.errors import InvalidValue

        location = store_location(self.usage_dir)
        left_out = "".join(  # files the engine leaves out (it warns on stderr, which the page does not show)
            f"<div class='hkops-msg hkops-msg-warning hkops-left-out'>⚠ 用量文件未计入 Usage file left out: "
            f"{html.escape(path)}: {html.escape(reason)}</div>" for path, _, reason in scan_store(location).refused)
        try:
            frame = usage_stats.usage_per_day(location, region=filters.region, start=filters.start, end=filters.end)
        except InvalidValue as missing:  # no usage store yet: say so in the panel, not as an error
            note = f"<div class='hkops-muted'>{html.escape(str(missing))}</div>"
            return pd.DataFrame(columns=["day", "data_bytes", "voice_mo_s", "sms_mo", "cards"]), left_out + note
        note = "" if len(frame) else "<div class='hkops-muted'>没有用量 No usage records for these filters.</div>"
        return frame[["day", "data_bytes", "voice_mo_s", "sms_mo", "cards"]], left_out + note

    @staticmethod
    def _described(filters) -> str:
        parts = [f"{filters.start or '…'} to {filters.end or '…'}"]
        parts += [f"{name} {value}" for name, value in (("region", filters.region), ("plan", filters.plan),
                                                       ("agent", filters.agent)) if value]
        return ", ".join(parts)

    # ------------------------------------------------------------ drawing

    def _draw_funnel(self, funnel) -> None:
        from hkops.analytics.sales import STEPS

        figures = funnel.iloc[0] if len(funnel) else None
        cells = []
        for n, step in enumerate(STEPS):
            count = int(figures[step]) if figures is not None else 0
            conversion = _percent(figures[f"{step}_conv"]) if figures is not None and n else ""
            hours = _hours(figures[f"{step}_hours"]) if figures is not None and n else ""
            cells.append([html.escape(STEP_ZH[step]), f"{count:,}", conversion, hours])
        self.funnel_table.value = html_table(["环节 Step", "订单 Orders", "转化 Conversion", "中位用时 Median time"],
                                             cells, numeric={1, 2, 3},
                                             row_attrs=[f"data-step='{s}'" for s in STEPS])
        with self.funnel_chart.batch_update():
            self.funnel_chart.data = ()
            self.funnel_chart.add_trace(go.Funnel(y=[STEP_ZH[s] for s in STEPS],
                                                  x=[int(figures[s]) if figures is not None else 0 for s in STEPS],
                                                  textinfo="value+percent initial"))
        charts.snapshot(self.funnel_chart)

    def _show_breakdown(self) -> None:
        """The funnel per agent, channel, plan or province (as chosen), for the filters last shown."""
        from hkops.analytics import sales
        from hkops.analytics.engine import execute

        if getattr(self, "_steps", None) is None:
            return
        by = self.breakdown.value
        frame = self.cache.get((repr(self.actor), self.filters, "funnel by", by),
                               lambda: execute(sales.funnel_by(self._steps, by), days=True))
        frame = frame.sort_values(["placed", by], ascending=[False, True])
        self.tables = {k: v for k, v in self.tables.items() if not k.startswith("funnel by ")}
        self.tables[f"funnel by {by}"] = frame
        cells = [[html.escape(str(r[by])), f"{int(r['placed']):,}", f"{int(r['paid']):,}", f"{int(r['activated']):,}",
                  _percent(r["activated_conv"]), f"{int(r['first_topup']):,}", _hours(r["paid_hours"])]
                 for r in frame.to_dict("records")]
        self.breakdown_table.value = html_table(
            [dict((v, k) for k, v in BREAKDOWNS)[by], "下单 Placed", "支付 Paid", "激活 Activated",
             "签收→激活 Delivered→activated", "首充 First top-up", "下单→支付 Placed→paid"], cells,
            numeric={1, 2, 3, 4, 5, 6}, row_attrs=[f"data-key='{html.escape(str(r))}'" for r in frame[by]],
            empty="没有订单 No orders for these filters.")

    def _draw_history(self, history) -> None:
        with self.pool_history_chart.batch_update():
            self.pool_history_chart.data = ()
            for region, rows in history.groupby("region", sort=True):
                self.pool_history_chart.add_trace(go.Scatter(
                    x=[str(d) for d in rows["day"]], y=(100 * rows["utilisation"]).round(3).tolist(), mode="lines",
                    name=region, hovertemplate=region + " %{x}: %{y:.2f}%<extra></extra>"))
        charts.snapshot(self.pool_history_chart)

    def _draw_trend(self, trend) -> None:
        with self.trend_chart.batch_update():
            self.trend_chart.data = ()
            for step in ("placed", "paid", "activated", "cancelled", "returned"):
                if step in trend.columns:
                    self.trend_chart.add_trace(go.Scatter(x=[str(d) for d in trend.index], y=trend[step].tolist(),
                                                          mode="lines", name=STEP_ZH.get(step, step)))
        charts.snapshot(self.trend_chart)

    def _draw_usage(self, usage) -> None:
        with self.usage_chart.batch_update():
            self.usage_chart.data = ()
            if len(usage):
                self.usage_chart.add_trace(go.Bar(x=[str(d)[:10] for d in usage["day"]],
                                                  y=[int(b) / GIB for b in usage["data_bytes"]], name="GB"))
        charts.snapshot(self.usage_chart)

    def _draw_pool(self, pool, plan) -> None:
        from hkops.ui._common import STATE_COLOURS, STATE_LABELS

        with self.pool_chart.batch_update():
            self.pool_chart.data = ()
            for state in ("available", "reserved", "assigned", "active", "suspended", "quarantined", "blocked"):
                self.pool_chart.add_trace(go.Bar(x=pool["region"].tolist(), y=pool[state].tolist(),
                                                 name=STATE_LABELS[state], marker_color=STATE_COLOURS[state]))
        charts.snapshot(self.pool_chart)
        cells = [[html.escape(r.region), f"{int(r.available):,}", f"{r.demand_per_day:,.1f}",
                  "—" if r.days_left != r.days_left or r.days_left is None else f"{int(r.days_left):,}",
                  html.escape(str(r.runs_out_on)) if r.runs_out_on else "—", f"<b>{int(r.blocks_to_request)}</b>"]
                 for r in plan.itertuples()]
        self.plan_table.value = html_table(
            ["地区 Region", "可用 Available", "日需 Taken a day", "剩余天数 Days left", "用尽 Runs out on",
             "申请号段 Blocks to request"], cells, numeric={1, 2, 3, 5},
            row_attrs=[f"data-region='{html.escape(r)}'" for r in plan["region"]],
            empty="没有号段 No number blocks yet.")

    # ------------------------------------------------------------ forecast and export

    def _forecast(self) -> None:
        """Forecast the chosen series for the filters (all regions together unless one is chosen)."""
        from hkops.analytics import forecast as fc
        from hkops.analytics.filters import today

        filters = self._checked()
        what = self.forecast_series.value
        label = dict((v, k) for k, v in SERIES)[what]
        key = (repr(self.actor), filters, today(), "forecast", what, self.forecast_method.value, int(self.horizon.value))
        result = self.cache.get(key, lambda: self._fitted(filters, what, label))
        self._draw_forecast(result, label)
        self.tables["forecast"] = result.frame()
        mape = "—" if result.mape is None else f"{result.mape:.1f}%"
        self.forecast_note.value = (
            f"<div class='hkops-forecast-figures'>回测误差 Back-test MAPE over the last {fc.HOLDOUT_DAYS} days: "
            f"<b class='hkops-mape'>{mape}</b> · {int(result.level * 100)}% prediction interval · "
            f"异常 anomalies: <b class='hkops-anomalies'>{len(result.anomalies)}</b></div>")
        self.status.ok(f"已预测 Forecast {label} {len(result.mean)} day(s) ahead ({result.method}).")

    def _fitted(self, filters, what: str, label: str):
        """Read the series ``what`` for ``filters`` and fit the forecast (the progress bar says so)."""
        from hkops.analytics import forecast as fc

        with self.progress.busy("预测 Fitting the forecast", 2) as step:
            if what == "usage":
                from hkops.analytics.engine import store_location

                long = fc.usage_series(store_location(self.usage_dir), "data_bytes", start=filters.start,
                                       end=filters.end, region=filters.region)
                long["value"] = long["value"] / GIB
            else:
                long = fc.sales_series(self.store, what, actor=self.actor, filters=filters)
            step()
            series = long.groupby("day")["value"].sum()
            if what != "usage" and filters.start is not None and filters.end is not None and len(series):
                # a day without orders is a 0; a day without usage records is a day the store does not hold
                import pandas as pd

                days = pd.date_range(filters.start, filters.end, freq="D").date
                series = series.reindex(days, fill_value=0)
            result = fc.forecast(series, name=f"{label} ({filters.region or 'all regions'})",
                                 method=self.forecast_method.value, horizon=int(self.horizon.value))
            step()
        return result


    def _draw_forecast(self, result, label: str) -> None:
        days = [str(d)[:10] for d in result.history.index]
        ahead = [str(d)[:10] for d in result.mean.index]
        with self.forecast_chart.batch_update():
            self.forecast_chart.data = ()
            self.forecast_chart.add_traces([
                go.Scatter(x=days, y=result.history.tolist(), mode="lines", name=label),
                go.Scatter(x=ahead + ahead[::-1], y=result.upper.tolist() + result.lower.tolist()[::-1],
                           fill="toself", fillcolor="rgba(37,99,235,0.15)", line={"width": 0},
                           name=f"{int(result.level * 100)}% interval", hoverinfo="skip"),
                go.Scatter(x=ahead, y=result.mean.tolist(), mode="lines", name="预测 forecast",
                           line={"dash": "dash", "color": "#2563eb"}),
                go.Scatter(x=[str(d)[:10] for d in result.anomalies["day"]], y=result.anomalies["value"].tolist(),
                           mode="markers", name="异常 anomaly", marker={"color": "#dc2626", "size": 10, "symbol": "x"}),
            ])
        charts.snapshot(self.forecast_chart)

    def _export(self) -> None:
        """Offer the tables shown as a file to download (Excel or a zip of CSVs)."""
        from hkops.analytics.export import FORMATS as MIME
        from hkops.analytics.export import export_tables

        fmt = self.export_format.value
        with self.progress.busy("导出 Exporting", 1) as step:
            content = export_tables(self.tables, fmt)
            step()
        name = f"hkops-trends.{'xlsx' if fmt == 'xlsx' else 'zip'}"
        data = base64.b64encode(content).decode("ascii")
        self.download.value = (f"<a class='hkops-download-link' download='{name}' href='data:{MIME[fmt]};base64,{data}'>"
                               f"⬇ {html.escape(name)}</a> <span class='hkops-muted'>({len(content):,} bytes: "
                               f"{', '.join(html.escape(t) for t in self.tables)})</span>")
        self.status.ok(f"已导出 Exported {len(self.tables)} table(s) as {name}.")

    def _buttons(self):
        return (self.show_button, self.forecast_button, self.export_button)


def trends_console(store: Store | None = None, actor: str | None = None, usage_dir: str | Path | None = None,
                   load: bool = True):
    """The trends console (趋势) on ``store`` (default: the configured database); ``load=False``
    builds it without reading anything yet (see :class:`TrendsConsole`)."""
    return TrendsConsole(store, actor, usage_dir, load)
