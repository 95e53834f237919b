"""The trends console in a real Chromium, served by Voilà as ``hkops serve`` serves it: an analyst
sees the funnel and the pool, gets a bad date refused in the page, forecasts orders and exports."""

from __future__ import annotations

import re
from urllib.parse import urlparse

import pytest

from hkops import demo
from hkops.store.engine import Store
from hkops.ui.serving import VoilaServer
from console_login import add_console_user, log_in_page
from test_browser_allocation import browser, page  # noqa: F401  (the same Chromium set-up)

pytestmark = pytest.mark.browser
TIMEOUT_MS = 180_000  # the page may wait for its pool's kernel to start, then fits the model


@pytest.fixture(scope="module")
def database_url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('trends') / 'demo.db'}"
    store = Store(url)
    demo.build(store, per_province=1, orders=200)  # 200 orders over the last 90 days
    store.dispose()
    return url


@pytest.fixture(scope="module")
def voila(database_url, tmp_path_factory):
    server = VoilaServer(database_url, log_path=tmp_path_factory.mktemp("voila") / "voila.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


def shown(page, voila, selector: str):
    """Wait for ``selector``; if it never comes, fail with what the page and Voilà's log said."""
    from playwright.sync_api import TimeoutError as PageTimeout

    try:
        return page.wait_for_selector(selector)
    except PageTimeout:
        page_text = page.inner_text("body")[-2_000:]
        log = voila.log_path.read_text(encoding="utf-8", errors="replace")[-4_000:] if voila.log_path else ""
        pytest.fail(f"{selector} never showed.\n--- the page ---\n{page_text}\n--- Voilà's log ---\n{log}")


def type_into(page, css: str, text: str) -> None:
    box = page.locator(f".{css} input")
    box.fill(text)
    box.press("Tab")


def test_an_analyst_reads_the_trends_forecasts_orders_and_exports_in_the_browser(voila, page, database_url):
    page.set_default_timeout(TIMEOUT_MS)
    fetched = []
    page.on("requestfinished", lambda request: fetched.append(urlparse(request.url).path))
    log_in_page(page, voila.url, *add_console_user(database_url, "ann", "analyst"), "/voila/render/trends.ipynb")
    page.wait_for_selector("#loading", state="detached")
    page.wait_for_selector(".hkops-trends .hkops-progress", state="attached")  # the frame, its progress bar in it
    shown(page, voila, ".hkops-trends-funnel tr[data-step='placed']")
    shown(page, voila, ".hkops-msg-ok:has-text('Shown for')")
    assert page.inner_text(".hkops-trends-funnel tr[data-step='placed'] td.num") == "200"
    page.wait_for_selector(".hkops-pool-chart .main-svg", state="visible")
    page.wait_for_selector(".hkops-funnel-chart .main-svg", state="visible")
    assert page.locator(".hkops-plan tr[data-region]").count() == 12  # one per province of the demo
    ticks = page.locator(".hkops-funnel-chart .ytick text")
    heights = {ticks.nth(i).text_content(): ticks.nth(i).bounding_box()["y"] for i in range(ticks.count())}
    assert heights["下单 placed"] < heights["支付 paid"] < heights["首充 first top-up"], heights  # placed on top

    type_into(page, "hkops-trends-end", "2099-01-01")
    page.locator("button.hkops-trends-show").click()
    page.wait_for_selector(".hkops-msg-error:has-text(\"end '2099-01-01': is in the future\")")
    assert page.inner_text(".hkops-trends-funnel tr[data-step='placed'] td.num") == "200"  # unchanged

    type_into(page, "hkops-trends-end", "")
    page.locator(".hkops-forecast-series select").select_option(label="订单 Orders")
    page.locator("button.hkops-forecast").click()
    page.wait_for_selector(".hkops-msg-ok:has-text('Forecast')")
    page.wait_for_selector(".hkops-forecast-chart .main-svg", state="visible")
    assert page.locator(".hkops-mape").count() == 1 and "%" in page.inner_text(".hkops-mape")

    page.locator("button.hkops-export").click()
    link = page.wait_for_selector("a.hkops-download-link")
    assert link.get_attribute("download") == "hkops-trends.xlsx"
    assert link.get_attribute("href").startswith("data:application/vnd.openxmlformats")

    text = page.inner_text("body")
    assert "Traceback" not in text and "There was an error when executing cell" not in text
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    assert "/voila/labextensions/widgetbundle.js" in fetched
    assert re.search(r"Using pre-heated kernel: \S+ for \S*trends\.ipynb", voila.log()), "no preheated kernel"
