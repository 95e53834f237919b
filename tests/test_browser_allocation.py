"""The allocation console in a real Chromium, served by Voilà as ``hkops serve`` serves it."""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from hkops import demo
from hkops.numbers import service
from hkops.numbers.model import NumberState
from hkops.store.engine import Store
from hkops.ui.serving import VoilaServer
from console_login import add_console_user, log_in_page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TIMEOUT_MS = 60_000

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def database_url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'demo.db'}"
    store = Store(url)
    demo.build(store, per_province=1, orders=200)
    store.dispose()
    return url


@pytest.fixture(scope="module")
def voila(database_url, tmp_path_factory):
    """Voilà on a free port, serving notebooks/consoles with the `hkops serve` configuration."""
    server = VoilaServer(database_url, log_path=tmp_path_factory.mktemp("voila") / "voila.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})

    def local_only(route):
        # Voilà's template points at a CDN (MathJax); nothing may leave the machine.
        if urlparse(route.request.url).hostname in ("localhost", "127.0.0.1"):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", local_only)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        page.goto("about:blank")  # fires beforeunload: Voilà shuts the page's kernel down
        context.close()


def test_an_operator_reserves_a_number_for_a_customer_in_the_browser(voila, page, database_url):
    started = time.monotonic()
    fetched = []
    page.on("requestfinished", lambda request: fetched.append(urlparse(request.url).path))
    log_in_page(page, voila.url, *add_console_user(database_url), "/voila/render/allocation.ipynb")
    page.wait_for_selector("#loading", state="detached")
    page.wait_for_selector(".hkops-chart-region .main-svg", state="visible")
    # the charts load plotly's code once, by URL, and fill their boxes (not plotly's default 700 px)
    assert "/voila/labextensions/widgetbundle.js" in fetched
    page.wait_for_function("document.querySelector('.hkops-chart-region .main-svg').getBoundingClientRect().width > 1000")

    page.locator(".hkops-pattern input").fill("*8888")
    page.locator("button.hkops-search").click()
    page.wait_for_selector(".hkops-table tbody tr")
    page.locator(".hkops-pick select").select_option(index=1)
    picked = page.wait_for_selector("tr.hkops-picked")
    msisdn = picked.get_attribute("data-msisdn")
    page.locator(".hkops-holder input").fill("C-BROWSER-01")
    page.locator("button.hkops-reserve").click()
    page.wait_for_selector(".hkops-confirm-text:has-text('C-BROWSER-01')")
    page.locator("button.hkops-confirm").click()
    page.wait_for_selector(".hkops-msg-ok:has-text('Reserved')")

    store = Store(database_url)
    try:
        number = service.get_number(store, msisdn)
    finally:
        store.dispose()
    assert (number.state, number.holder) == (NumberState.RESERVED, "C-BROWSER-01")
    text = page.inner_text("body")
    assert page.locator(".hkops-msg-error").count() == 0
    assert "Traceback" not in text and "There was an error when executing cell" not in text
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    assert "Using pre-heated kernel" in voila.log(), "the console should come from a preheated kernel"
    assert time.monotonic() - started < 60
