"""The trends console, driven like an analyst would (set filters, click), without a browser."""

from __future__ import annotations

import base64
import io
import re
import threading
import zipfile
from datetime import date, timedelta

import pytest

from hkops.analytics.filters import today
from hkops.ui import trends_console
from hkops.ui.home import index
from hkops.ui.trends import TrendsConsole
from scoping_world import two_agents  # noqa: F401  (fixture)


@pytest.fixture
def usage_dir(tmp_path):
    """Sixty days of usage for a few synthetic cards, up to yesterday."""
    from hkops.network.usage import generate_usage, synthetic_cards

    generate_usage(synthetic_cards(40, provinces={"北京市": ["北京市"]}), start=today() - timedelta(days=60), days=60,
                   seed=5, out_dir=tmp_path / "usage")
    return tmp_path / "usage"


@pytest.fixture
def console(two_agents, usage_dir) -> TrendsConsole:
    return trends_console(two_agents.db, actor=two_agents.root, usage_dir=usage_dir)


def downloaded(console: TrendsConsole) -> bytes:
    (data,) = re.findall(r"base64,([A-Za-z0-9+/=]+)'", console.download.value)
    return base64.b64decode(data)


def test_it_opens_on_the_last_90_days_with_the_funnel_the_trend_usage_and_the_pool(console):
    assert console.status.kind == "ok", console.status.text
    assert console.end.value == today().isoformat()
    assert console.start.value == (today() - timedelta(days=89)).isoformat()
    table = console.funnel_table.value
    placed = re.search(r"data-step='placed'><td>[^<]*</td><td class='num'>(\d+)<", table).group(1)
    paid = re.search(r"data-step='paid'><td>[^<]*</td><td class='num'>(\d+)<", table).group(1)
    assert (placed, paid) == ("2", "2")  # both orders of the world are paid and allocated
    (funnel,) = console.funnel_chart.data
    assert list(funnel.x) == [2, 2, 0, 0, 0, 0]
    placed_trace = next(t for t in console.trend_chart.data if "placed" in t.name)
    assert sum(placed_trace.y) == 2
    (usage,) = console.usage_chart.data
    assert len(usage.x) == 60 and min(usage.y) > 0
    regions = {x for trace in console.pool_chart.data for x in trace.x}
    assert {"Beijing", "Guangdong"} <= regions
    assert "data-region='Beijing'" in console.plan_table.value
    (history,) = [t for t in console.pool_history_chart.data if t.name == "Beijing"]
    assert history.y[-1] == pytest.approx(100 * 2 / 20_000)  # two numbers held of two Beijing blocks
    assert set(console.tables) == {"funnel", "daily", "usage", "pool", "blocks to request", "funnel by agent"}


def test_the_funnel_breaks_down_by_agent_channel_plan_or_province(console):
    assert "data-key='A3'" in console.breakdown_table.value and "data-key='B'" in console.breakdown_table.value
    console.breakdown.value = "channel"
    assert "data-key='level-3 agent'" in console.breakdown_table.value  # A3
    assert "data-key='level-2 agent'" in console.breakdown_table.value  # B
    console.breakdown.value = "province"
    assert "data-key='Beijing'" in console.breakdown_table.value  # 北京, as the catalogue names it
    assert "funnel by province" in console.tables and "funnel by channel" not in console.tables


def test_filters_narrow_the_figures_and_bad_ones_are_named_without_changing_what_is_shown(console, two_agents):
    console.agent.value = "B"
    console.show_button.click()
    assert console.status.kind == "ok" and "agent B" in console.status.text
    assert list(console.funnel_chart.data[0].x)[:2] == [1, 1]
    shown = console.funnel_table.value

    console.end.value = (today() + timedelta(days=3)).isoformat()
    console.show_button.click()
    assert console.status.kind == "error"
    assert f"end '{console.end.value}': is in the future" in console.status.text
    console.end.value, console.start.value = "2026-01-01", "2026-02-01"
    console.show_button.click()
    assert "is before start 2026-02-01: the date range is empty" in console.status.text
    console.start.value = "first of May"
    console.show_button.click()
    assert "start 'first of May': must be a day" in console.status.text
    assert console.funnel_table.value == shown and not console.show_button.disabled


def test_a_forecast_shows_its_interval_back_test_error_and_anomalies(console):
    labels = []
    real_busy = console.progress.busy
    console.progress.busy = lambda label, steps: labels.append(label) or real_busy(label, steps)
    console.forecast_series.value = "usage"
    console.horizon.value = 14
    console.forecast_button.click()
    assert console.status.kind == "ok", console.status.text
    assert any("Fitting the forecast" in label for label in labels)  # a long query shows progress
    assert console.progress.layout.visibility == "hidden"  # and hides it when done
    history, band, mean, anomalies = console.forecast_chart.data
    assert len(history.x) == 60 and len(mean.x) == 14 and band.fill == "toself"
    assert all(lo <= m <= hi for lo, m, hi in zip(band.y[14:][::-1], mean.y, band.y[:14]))
    assert anomalies.mode == "markers"
    mape = re.search(r"class='hkops-mape'>([\d.]+)%", console.forecast_note.value)
    assert mape and 0 <= float(mape.group(1)) < 100
    assert "forecast" in console.tables


def test_an_empty_or_too_short_series_is_refused_with_a_clear_message(console):
    console.forecast_series.value = "activated"  # nothing activated in this world
    console.forecast_button.click()
    assert console.status.kind == "error"
    assert "Activations (all regions) 'no days': has no data to forecast" in console.status.text
    console.forecast_series.value = "placed"
    console.start.value = console.end.value = today().isoformat()
    console.forecast_button.click()
    assert "Orders (all regions) '1 days': is too short: a forecast needs at least 42 days" in console.status.text
    assert console.forecast_chart.data == () and not console.forecast_button.disabled


def test_export_offers_an_excel_workbook_or_a_zip_of_csv_files(console):
    from openpyxl import load_workbook

    console.export_button.click()
    assert console.status.kind == "ok", console.status.text
    book = load_workbook(io.BytesIO(downloaded(console)))
    assert book.sheetnames == ["funnel", "daily", "usage", "pool", "blocks to request", "funnel by agent"]
    head = [c.value for c in book["funnel"][1]]
    assert book["funnel"].cell(2, head.index("placed") + 1).value == 2
    console.export_format.value = "csv"
    console.export_button.click()
    with zipfile.ZipFile(io.BytesIO(downloaded(console))) as archive:
        assert "funnel.csv" in archive.namelist()
        assert archive.read("funnel.csv").decode("utf-8-sig").startswith("placed,paid,")


def test_export_refuses_an_unknown_format_or_nothing_to_export():
    import pandas as pd

    from hkops.analytics.export import export_tables
    from hkops.errors import InvalidValue

    with pytest.raises(InvalidValue, match="format 'pdf'"):
        export_tables({"funnel": pd.DataFrame({"placed": [1]})}, "pdf")
    with pytest.raises(InvalidValue, match="there is no table to export yet"):
        export_tables({}, "xlsx")


def test_an_agent_user_sees_its_own_subtree_and_not_the_operators_pool_or_usage(two_agents, usage_dir):
    everyone = trends_console(two_agents.db, actor=two_agents.root, usage_dir=usage_dir)
    console = trends_console(two_agents.db, actor=two_agents.ua, usage_dir=usage_dir)
    assert console.status.kind == "ok", console.status.text
    placed = lambda c: int(c.tables["funnel"]["placed"].sum())  # noqa: E731
    assert (placed(console), placed(everyone)) == (1, 2)  # A3's order only, not B's
    assert len(everyone.tables["pool"]) and not len(console.tables["pool"]) and not len(console.tables["usage"])
    assert "not shown to agent users" in console.usage_note.value


def test_the_consoles_index_links_the_trends_console():
    assert "href='trends.ipynb'" in index().children[1].value


def test_without_a_usage_store_the_usage_panel_says_so(two_agents, tmp_path):
    console = trends_console(two_agents.db, actor=two_agents.root, usage_dir=tmp_path / "none")
    assert console.status.kind == "ok", console.status.text
    assert "holds no records" in console.usage_note.value and console.usage_chart.data == ()
    assert date.fromisoformat(console.end.value) == today()


def test_a_usage_file_left_out_is_named_on_the_page_and_the_other_days_are_drawn(two_agents, usage_dir):
    import pyarrow.parquet as pq

    bad = sorted((usage_dir / "records").glob("day=*/*.parquet"))[-3]
    pq.write_table(pq.read_table(bad).drop(["charge_fen"]), bad)
    with pytest.warns(UserWarning, match="left out"):
        console = trends_console(two_agents.db, actor=two_agents.root, usage_dir=usage_dir)
    assert console.status.kind == "ok", console.status.text
    note = console.usage_note.value
    assert "hkops-left-out" in note and bad.parent.name in note and "missing column charge_fen" in note
    drawn = {str(day)[:10] for day in console.tables["usage"]["day"]}
    assert bad.parent.name.split("=")[1] not in drawn and len(drawn) >= 28


@pytest.mark.parametrize("bad", ["unknown region", "empty range", "future range"])
def test_a_bad_filter_is_a_readable_message_and_changes_nothing_shown(console, bad):
    shown, pool = console.funnel_table.value, console.plan_table.value
    if bad == "unknown region":  # a region offered when the page opened, gone since
        console.region.options = [*console.region.options, ("Atlantis", "Atlantis")]
        console.region.value = "Atlantis"
        expected = "region 'Atlantis': is not a region hkops knows"
    elif bad == "empty range":
        console.start.value, console.end.value = today().isoformat(), (today() - timedelta(days=1)).isoformat()
        expected = f"end '{console.end.value}': is before start {today().isoformat()}: the date range is empty"
    else:
        console.start.value = (today() + timedelta(days=1)).isoformat()
        console.end.value = (today() + timedelta(days=30)).isoformat()
        expected = f"start '{console.start.value}': is in the future"
    console.show_button.click()
    assert console.status.kind == "error" and expected in console.status.text, console.status.text
    assert "Traceback" not in console.status.value and console.status.value.count("\n") == 0
    assert (console.funnel_table.value, console.plan_table.value) == (shown, pool)
    assert console.progress.layout.visibility == "hidden" and not console.show_button.disabled


def test_a_filter_set_shown_again_within_the_cache_time_is_not_read_again(console, monkeypatch):
    from hkops.analytics import planning, sales

    reads = {"steps": 0, "pool": 0}

    def counted(name, real):
        def read(*args, **kwargs):
            reads[name] += 1
            return real(*args, **kwargs)
        return read

    monkeypatch.setattr(sales, "steps_for", counted("steps", sales.steps_for))
    monkeypatch.setattr(planning, "planning_tables", counted("pool", planning.planning_tables))
    console.agent.value = "B"
    console.show_button.click()
    assert reads == {"steps": 1, "pool": 0}  # the pool does not depend on the agent: read once per user
    console.agent.value = ""
    console.show_button.click()  # the set the console opened on
    assert reads == {"steps": 1, "pool": 0} and console.status.kind == "ok"
    assert list(console.funnel_chart.data[0].x)[:2] == [2, 2]
    console.refresh()  # reads everything again
    assert reads == {"steps": 2, "pool": 1}


def test_built_empty_it_draws_the_funnel_while_the_pool_is_still_being_read(two_agents, usage_dir, monkeypatch):
    from hkops.analytics import planning

    reading, go_on = threading.Event(), threading.Event()
    real = planning.planning_tables

    def slow(*args, **kwargs):
        reading.set()
        assert go_on.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(planning, "planning_tables", slow)
    console = trends_console(two_agents.db, actor=two_agents.root, usage_dir=usage_dir, load=False)
    assert not console.loaded and console.funnel_table.value == "" and console.funnel_chart.data == ()
    loader = console.load_in_background()
    try:
        assert reading.wait(60), console.status.text
        assert console.progress.layout.visibility == "visible" and "Reading" in console.progress.label.value
        assert console.status.kind == "info" and console.show_button.disabled
        assert "data-step='placed'" in console.funnel_table.value and len(console.funnel_chart.data) == 1
        assert console.pool_chart.data == () and console.plan_table.value == ""
    finally:
        go_on.set()
        loader.join(60)
    assert console.loaded and console.status.kind == "ok", console.status.text
    assert console.pool_chart.data and "data-region='Beijing'" in console.plan_table.value
    assert console.progress.layout.visibility == "hidden" and not console.show_button.disabled


@pytest.fixture
def behind_login(two_agents, monkeypatch):
    """The environment of a console served behind the login before its page is asked for: nobody acts."""
    from hkops.ui import login

    monkeypatch.setenv("HKOPS_DATABASE_URL", two_agents.db.url)
    monkeypatch.setenv(login.LOGIN_ENV, "1")
    monkeypatch.delenv(login.SESSION_ENV, raising=False)
    monkeypatch.delenv("VOILA_PREHEAT", raising=False)
    return two_agents


def served_to(console: TrendsConsole, world, name: str, monkeypatch, *, connect: bool = True) -> list:
    """Show ``console`` as ``hkops.ui.show`` does for user ``name``'s page; with ``connect``, the page connects
    (on a Voilà page) and its loading is waited for. What was displayed."""
    from hkops.security import users
    from hkops.ui import login, serving
    from hkops.ui._common import PageConnected

    monkeypatch.setenv(login.SESSION_ENV, users.start_session(world.db, users.principal_of(world.db, name),
                                                              kind="console"))
    displayed = []
    monkeypatch.setattr("IPython.display.display", lambda *widgets: displayed.extend(widgets))
    serving.show(console)
    if connect:
        for widget in displayed:
            if isinstance(widget, PageConnected):
                widget.connected = True  # what its view does in the page, once the page has loaded every model
        console._loader.join(60)
    return displayed


def test_on_a_voila_page_the_frame_shows_at_once_and_reads_once_the_page_has_connected(behind_login, usage_dir,
                                                                                        monkeypatch):
    from hkops.analytics import sales
    from hkops.ui._common import PageConnected

    console = trends_console(behind_login.db, usage_dir=usage_dir, load=False)
    reads, real_steps = [], sales.steps_for
    monkeypatch.setattr(sales, "steps_for", lambda *a, **k: reads.append("read") or real_steps(*a, **k))
    monkeypatch.setenv("VOILA_PREHEAT", "False")  # a Voilà kernel started for this page
    displayed = served_to(console, behind_login, "ann", monkeypatch, connect=False)
    (page,) = [w for w in displayed if isinstance(w, PageConnected)]
    assert console in displayed and reads == [] and not console.loaded
    page.connected = True
    console._loader.join(60)
    assert reads == ["read"] and console.loaded and console.status.kind == "ok", console.status.text
    page.connected = False
    page.connected = True  # a second view of the page: no second reading
    assert reads == ["read"]


def test_page_connected_runs_its_work_once_even_when_no_page_says_so():
    from hkops.ui._common import PageConnected

    calls = []
    page = PageConnected(lambda: calls.append("load"), fallback_s=0.05)
    page._fallback.join(5)
    page.connected = True
    assert calls == ["load"]


def test_a_console_built_before_the_login_reads_nothing_then_loads_as_the_visitor(behind_login, usage_dir,
                                                                                  monkeypatch):
    from hkops.ui._common import NOBODY

    console = trends_console(behind_login.db, usage_dir=usage_dir, load=False)  # as the notebook builds it
    assert console.actor is NOBODY and not console.loaded and console.status.kind == ""
    assert console.region.options == (("全部 any", ""),) and console.funnel_chart.data == ()
    user_line, shown = served_to(console, behind_login, "ann", monkeypatch)
    assert shown is console and "hkops-user-name'>ann<" in user_line.value
    assert console.actor.name == "ann" and console.loaded and console.status.kind == "ok", console.status.text
    assert re.search(r"data-step='placed'><td>[^<]*</td><td class='num'>2<", console.funnel_table.value)


def test_a_visitor_without_analytics_gets_the_refusal_and_no_figures(behind_login, usage_dir, monkeypatch):
    from hkops.security import users

    users.add_user(behind_login.db, "wh", "warehouse", actor="installer", password="a long enough password 1")
    console = trends_console(behind_login.db, usage_dir=usage_dir, load=False)
    served_to(console, behind_login, "wh", monkeypatch)
    assert console.actor.name == "wh" and not console.loaded
    assert console.status.kind == "error" and "analytics.read" in console.status.text
    assert console.funnel_table.value == "" and console.funnel_chart.data == () and console.pool_chart.data == ()


def test_a_preheated_kernel_warms_up_before_the_visitor_and_reads_only_after(behind_login, usage_dir, monkeypatch):
    import voila.utils

    from hkops.analytics import sales

    console = trends_console(behind_login.db, usage_dir=usage_dir, load=False)
    calls = []
    real_warm_up, real_steps = console.warm_up, sales.steps_for
    monkeypatch.setattr(console, "warm_up", lambda: calls.append("warm up") or real_warm_up())
    monkeypatch.setattr(voila.utils, "wait_for_request", lambda: calls.append("visitor"))
    monkeypatch.setattr(sales, "steps_for", lambda *a, **k: calls.append("read") or real_steps(*a, **k))
    monkeypatch.setenv("VOILA_PREHEAT", "True")
    served_to(console, behind_login, "ann", monkeypatch)
    assert calls == ["warm up", "visitor", "read"] and console.status.kind == "ok", console.status.text
