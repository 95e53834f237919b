"""The orders console in a real Chromium: an operator places an order through the form,
takes the payment and ships it; the page and the database agree."""

from __future__ import annotations

import os

import pytest

from distribution_world import build_distribution, rid
from hkops import carriers
from hkops.numbers import service as numbers
from hkops.orders import service as orders
from hkops.store import migrate
from hkops.store.engine import Store
from hkops.ui.serving import VoilaServer
from console_login import add_console_user, log_in_page
from test_browser_allocation import browser, page  # noqa: F401  (the same Chromium set-up)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A SQLite database with the test distribution business, and the key file the console's kernel uses."""
    folder = tmp_path_factory.mktemp("orders")
    saved = os.environ.get("HKOPS_SECRET_KEY_FILE")
    os.environ["HKOPS_SECRET_KEY_FILE"] = str(folder / "secret.key")
    url = f"sqlite:///{folder / 'shop.db'}"
    store = Store(url)
    migrate.upgrade(store)
    with store.write() as conn:
        carriers.configure(conn, list(carriers.MAIN_THREE), actor="setup")
    numbers.add_blocks(store, ["1380013", "1860755"], actor="setup")
    world = build_distribution(store, folder, actor="setup")
    yield {"url": url, "store": store, "world": world}
    store.dispose()
    os.environ.pop("HKOPS_SECRET_KEY_FILE", None) if saved is None else os.environ.__setitem__(
        "HKOPS_SECRET_KEY_FILE", saved)


@pytest.fixture(scope="module")
def voila(shop, tmp_path_factory):
    server = VoilaServer(shop["url"], log_path=tmp_path_factory.mktemp("voila") / "voila.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


def type_into(page, css: str, text: str) -> None:
    """Type into the input named ``css`` and leave it (free-text fields are checked on leaving)."""
    box = page.locator(f".{css} input")
    box.fill(text)
    box.press("Tab")


def test_an_operator_places_an_order_and_ships_it_in_the_browser(voila, page, shop):
    person = rid(42)
    log_in_page(page, voila.url, *add_console_user(shop["url"]), "/voila/render/orders.ipynb")
    page.wait_for_selector("#loading", state="detached")
    page.wait_for_selector(".hkops-stage-approved")

    type_into(page, "hkops-customer-name", "王芳")
    type_into(page, "hkops-resident-id", person)
    type_into(page, "hkops-contact", "13900000000")
    type_into(page, "hkops-ship-province", "北京")
    type_into(page, "hkops-ship-address", "北京市朝阳区建国路 1 号")
    type_into(page, "hkops-client-order-id", "WEB-42")
    page.wait_for_selector(".hkops-check-ok:has-text('can be placed')")
    assert page.locator(".hkops-check-bad").count() == 0
    assert "合计 Total" in page.inner_text(".hkops-quote-box")

    page.locator("button.hkops-submit:not([disabled])").click()
    page.wait_for_selector(".hkops-msg-ok:has-text('approved')")
    placed = orders.get_order(shop["store"], "WEB-42")
    assert placed.state == "approved"
    page.wait_for_selector(f".hkops-order-detail:has-text('{placed.number}')")

    type_into(page, "hkops-pay-reference", "WX-WEB-42")
    page.locator("button.hkops-pay").click()
    page.wait_for_selector(".hkops-msg-ok:has-text('approved → allocated')")
    type_into(page, "hkops-ship-tracking", "SF4200000001")
    page.locator("button.hkops-ship").click()
    page.wait_for_selector(".hkops-msg-ok:has-text('allocated → shipped')")

    page.wait_for_selector(".hkops-order-detail .hkops-order-shipped")
    assert "SF4200000001" in page.inner_text(".hkops-shipment")
    assert "(1)" in page.inner_text("button.hkops-stage-shipped")
    shipped = orders.get_order(shop["store"], placed.number)
    assert (shipped.state, shipped.iccid) == ("shipped", shop["world"].warehouse_iccids[0])
    assert orders.order_detail(shop["store"], placed.number)["shipment"]["tracking_no"] == "SF4200000001"
    text = page.inner_text("body")
    assert page.locator(".hkops-msg-error").count() == 0
    assert "Traceback" not in text and person not in text and placed.id_masked in text
