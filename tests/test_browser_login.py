"""Logging in to the consoles in a real Chromium: ops and an agent each see their console, as themselves."""

from __future__ import annotations

import pytest

from console_login import log_in_page
from hkops import demo
from hkops.security import users
from hkops.store.engine import Store
from hkops.ui.serving import VoilaServer
from test_browser_allocation import browser, page  # noqa: F401  (the same Chromium set-up)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """The demo, with its users (one per role, and agent users for two agents)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('login') / 'demo.db'}"
    store = Store(url)
    demo.build(store, per_province=1, orders=200)
    agent_user = next(u for u in users.list_users(store, actor="test") if u.agent)
    store.dispose()
    return {"url": url, "agent_user": agent_user}


@pytest.fixture(scope="module")
def voila(world, tmp_path_factory):
    server = VoilaServer(world["url"], log_path=tmp_path_factory.mktemp("voila") / "voila.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


def assert_clean(page) -> None:
    text = page.inner_text("body")
    assert "Traceback" not in text and "There was an error when executing cell" not in text
    assert page.locator(".hkops-login-needed").count() == 0


def test_a_console_without_a_login_shows_the_login_page(voila, page):
    page.goto(f"{voila.url}/voila/render/allocation.ipynb")
    page.wait_for_selector("form.hkops-login #password")
    assert "/login?next=" in page.url
    page.fill("#username", "ops")
    page.fill("#password", "wrong-password")
    page.click("#login")
    page.wait_for_selector(".hkops-login-error:has-text('wrong password')")


def test_ops_logs_in_and_sees_the_allocation_console_with_numbers(voila, page):
    log_in_page(page, voila.url, "ops", users.demo_password("ops"), "/voila/render/allocation.ipynb")
    page.wait_for_selector("#loading", state="detached")
    page.wait_for_selector(".hkops-chart-region .main-svg", state="visible")
    assert page.inner_text(".hkops-user-name") == "ops"
    assert "(ops)" in page.inner_text(".hkops-user")
    page.locator(".hkops-pattern input").fill("*8888")
    page.locator("button.hkops-search").click()
    page.wait_for_selector(".hkops-table tbody tr[data-msisdn]")
    assert page.locator(".hkops-table tbody tr[data-msisdn]").count() > 0
    assert_clean(page)

    page.click("a.hkops-logout")
    page.wait_for_selector("form.hkops-login #password")
    page.goto(f"{voila.url}/voila/render/allocation.ipynb")  # the session is gone
    page.wait_for_selector("form.hkops-login #password")


def test_an_agent_logs_in_and_sees_the_orders_console_as_itself(voila, page, world):
    agent = world["agent_user"]
    log_in_page(page, voila.url, agent.name, users.demo_password(agent.name), "/voila/render/orders.ipynb")
    page.wait_for_selector("#loading", state="detached")
    page.wait_for_selector(".hkops-user-name")
    assert page.inner_text(".hkops-user-name") == agent.name
    assert agent.agent in page.inner_text(".hkops-user")
    assert_clean(page)
