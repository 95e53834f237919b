"""The monitoring console in a real Chromium: a new alert appears by itself and is acknowledged."""

from __future__ import annotations

import re

import pytest

from hkops.monitoring import service
from hkops.store import migrate
from hkops.store.engine import Store
from hkops.ui.serving import VoilaServer
from console_login import add_console_user, log_in_page
from test_browser_allocation import browser, page  # noqa: F401  (the same Chromium set-up)
from test_monitoring import LOST, TRAVELLER, append, rules

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    """A database with one alert already raised, and the monitor that raises more."""
    folder = tmp_path_factory.mktemp("monitoring")
    url = f"sqlite:///{folder / 'hkops.db'}"
    store = Store(url)
    migrate.upgrade(store)
    monitor = service.Monitor(store, rules("lost_card_use", "impossible_travel"), folder / "stream")
    append(monitor.feed_dir, [(LOST, 0, "北京市", "lost")])
    service.consume(monitor, actor="monitor")
    yield {"url": url, "store": store, "monitor": monitor}
    store.dispose()


@pytest.fixture(scope="module")
def voila(watched, tmp_path_factory):
    server = VoilaServer(watched["url"], log_path=tmp_path_factory.mktemp("voila") / "voila.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_a_new_alert_appears_by_itself_and_the_operator_acknowledges_it(voila, page, watched):
    add_console_user(watched["url"])  # the first user is an admin
    log_in_page(page, voila.url, *add_console_user(watched["url"], "olga", "ops"), "/voila/render/monitoring.ipynb")
    page.wait_for_selector("#loading", state="detached")
    page.wait_for_selector("tr[data-alert='1']")
    assert page.locator("tr[data-alert='2']").count() == 0

    append(watched["monitor"].feed_dir, [(TRAVELLER, 0, "北京市", None), (TRAVELLER, 180, "新疆维吾尔自治区", None)])
    assert service.consume(watched["monitor"], actor="monitor").raised == 1
    page.wait_for_selector("tr[data-alert='2'].hkops-alert-new", timeout=30_000)  # no click: the kernel refreshed
    assert "新疆维吾尔自治区" in page.inner_text("tr[data-alert='2']")

    choice = page.locator(".hkops-alert-choice select")
    texts = [text.replace("\xa0", " ") for text in choice.locator("option").all_text_contents()]
    (index,) = [n for n, text in enumerate(texts) if text.startswith("#2 · impossible_travel")]
    choice.select_option(index=index)
    page.locator(".hkops-alert-reason input").fill("calling the holder")
    page.locator("button.hkops-ack").click()
    page.wait_for_selector(".hkops-msg-ok:has-text('Alert #2 acknowledged by olga')")
    alert = service.get_alert(watched["store"], 2, actor="test")
    assert (alert["state"], alert["acknowledged_by"], alert["reason"]) == ("acknowledged", "olga", "calling the holder")
    page.wait_for_selector("tr[data-alert='2'].hkops-alert-acknowledged")
    assert "Traceback" not in page.inner_text("body")
    assert re.search(r"Using pre-heated kernel: \S+ for \S*monitoring\.ipynb", voila.log()), "no preheated kernel"
