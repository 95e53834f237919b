"""The monitoring console, driven like a user would (filter, choose, click), without a browser."""

from __future__ import annotations

import time

import pytest

from hkops.monitoring import service
from hkops.ui import index, monitoring_console
from hkops.ui.monitoring import MonitoringConsole
from test_monitoring import LOST, OTHER, TRAVELLER, append, rules


@pytest.fixture
def monitor(db, tmp_path):
    return service.Monitor(db, rules("lost_card_use", "impossible_travel"), tmp_path / "stream")


@pytest.fixture
def console(monitor) -> MonitoringConsole:
    append(monitor.feed_dir, [(LOST, 0, "北京市", "lost")])
    service.consume(monitor, actor="ops")
    return monitoring_console(monitor.db, actor="ops", refresh_s=None)


def test_the_queue_lists_open_alerts_and_filters_by_rule_and_state(console, monitor):
    assert console.status.kind != "error", console.status.text
    assert f"data-alert='1'" in console.table.value and str(LOST) in console.table.value
    assert "未处理 open: <b>1</b>" in console.counts.value
    assert {"lost_card_use", "usage_spike", "region_drop"} <= set(console.rule_filter.options[i][1]
                                                                  for i in range(len(console.rule_filter.options)))
    console.rule_filter.value = "impossible_travel"
    assert "No alerts to show" in console.table.value
    console.rule_filter.value = ""
    console.state_filter.value = "closed"
    assert "No alerts to show" in console.table.value and console.alert_choice.options == ()


def test_a_new_alert_appears_on_the_next_tick_highlighted(console, monitor):
    append(monitor.feed_dir, [(TRAVELLER, 0, "北京市", None), (TRAVELLER, 120, "广东省", None)])
    service.consume(monitor, actor="ops")
    assert "data-alert='2'" not in console.table.value
    console.tick()
    assert "data-alert='2' class='hkops-alert-open hkops-alert-new'" in console.table.value
    assert console.status.kind == "info" and "1 条新告警" in console.status.text


def test_the_live_refresh_runs_by_itself_outside_a_kernel(monitor):
    append(monitor.feed_dir, [(LOST, 0, "北京市", "lost")])
    service.consume(monitor, actor="ops")
    live = monitoring_console(monitor.db, actor="ops", refresh_s=0.1)
    try:
        append(monitor.feed_dir, [(OTHER, 0, "北京市", "terminated")])
        service.consume(monitor, actor="ops")
        deadline = time.monotonic() + 10
        while "data-alert='2'" not in live.table.value and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "data-alert='2'" in live.table.value
    finally:
        live.stop_live()


def test_acknowledge_then_close_from_the_console_and_twice_is_a_readable_error(console, monitor):
    console.alert_choice.value = 1
    console.reason.value = "calling the holder"
    console.ack_button.click()
    assert console.status.kind == "ok" and "Alert #1 acknowledged by ops" in console.status.text
    assert service.get_alert(monitor.db, 1, actor="ops")["reason"] == "calling the holder"
    assert "已确认 acknowledged" in console.table.value
    console.alert_choice.value = 1
    console.ack_button.click()
    assert console.status.kind == "error" and "already acknowledged" in console.status.text
    console.close_button.click()
    assert console.status.kind == "error" and "reason" in console.status.text  # a reason is needed
    console.reason.value = "SIM destroyed"
    console.close_button.click()
    assert console.status.kind == "ok" and service.get_alert(monitor.db, 1, actor="ops")["state"] == "closed"
    assert "data-alert='1'" not in console.table.value  # the default view shows alerts still to handle
    assert not console.ack_button.disabled


def test_an_unknown_state_is_a_readable_message_and_an_unknown_rule_lists_nothing(console):
    shown = console.table.value
    console.state_filter.options = [*console.state_filter.options, ("lost", "lost")]
    console.state_filter.value = "lost"  # a filter the page offered and the service does not know
    assert console.status.kind == "error" and "state 'lost': must be one of" in console.status.text
    assert "Traceback" not in console.status.value and console.table.value == shown
    console.state_filter.value = "active"
    console.rule_filter.options = [*console.rule_filter.options, ("no_such_rule", "no_such_rule")]
    console.rule_filter.value = "no_such_rule"
    assert "No alerts to show" in console.table.value and console.alert_choice.options == ()


def test_built_before_the_login_it_reads_nothing_then_shows_the_visitors_queue(console, monitor, monkeypatch):
    from hkops.security import users
    from hkops.ui import login, serving
    from hkops.ui._common import NOBODY

    users.add_user(monitor.db, "root", "admin", actor="installer", password="password-1234")
    users.add_user(monitor.db, "olga", "ops", actor="installer", password="password-1234")
    monkeypatch.setenv("HKOPS_DATABASE_URL", monitor.db.url)
    monkeypatch.setenv(login.LOGIN_ENV, "1")
    monkeypatch.delenv(login.SESSION_ENV, raising=False)
    monkeypatch.delenv("VOILA_PREHEAT", raising=False)
    early = monitoring_console(monitor.db, refresh_s=None)  # as a preheated kernel builds it
    assert early.actor is NOBODY and early.table.value == "" and early.status.kind == ""
    monkeypatch.setenv(login.SESSION_ENV, users.start_session(monitor.db, users.principal_of(monitor.db, "olga"),
                                                              kind="console"))
    monkeypatch.setattr("IPython.display.display", lambda *widgets: None)
    serving.show(early)
    assert early.actor.name == "olga" and "data-alert='1'" in early.table.value, early.status.text


def test_the_consoles_index_links_the_monitoring_console():
    assert "href='monitoring.ipynb'" in index().children[1].value
