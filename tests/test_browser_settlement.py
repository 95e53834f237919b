"""The settlement console in a real Chromium: a finance clerk logs in and settles a month
(create → confirm → approve → pay); the page and the database agree."""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta, timezone

import pytest

from distribution_world import advance, build_distribution, place_order
from hkops import audit, carriers
from hkops.cards import service as card_service
from hkops.commissions import service as commissions
from hkops.network import InProcessTransport, ProvisioningClient, Simulator
from hkops.numbers import service as numbers
from hkops.orders import service as orders
from hkops.store import migrate
from hkops.store.engine import Store
from hkops.timeutil import SHANGHAI
from hkops.ui.serving import VoilaServer
from hkops.ui.settlement import BATCH_BADGES
from console_login import add_console_user, log_in_page
from test_browser_allocation import browser, page  # noqa: F401  (the same Chromium set-up)
from test_commissions import SCHEME

pytestmark = pytest.mark.browser


def _settled_month() -> date:
    """The first day of the month before last (in Asia/Shanghai): a month that has ended whatever today is."""
    today = datetime.now(SHANGHAI).date()
    index = today.year * 12 + today.month - 3
    return date(index // 12, index % 12 + 1, 1)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A SQLite database with the test distribution business and two orders sold by A3 (chain
    A3 > A2 > A1), activated and topped up on the 10th of the month before last, accrued."""
    folder = tmp_path_factory.mktemp("settlement")
    saved = os.environ.get("HKOPS_SECRET_KEY_FILE")
    os.environ["HKOPS_SECRET_KEY_FILE"] = str(folder / "secret.key")
    url = f"sqlite:///{folder / 'shop.db'}"
    store = Store(url)
    migrate.upgrade(store)
    with store.write() as conn:
        carriers.configure(conn, list(carriers.MAIN_THREE), actor="setup")
    numbers.add_blocks(store, ["1380013"], actor="setup")
    build_distribution(store, folder, actor="setup")
    first = _settled_month()
    (folder / "scheme.toml").write_text(SCHEME.replace("2026-01-01", "2000-01-01"), encoding="utf-8")
    commissions.add_scheme(store, folder / "scheme.toml", actor="setup", now=datetime.now(timezone.utc))
    sold_at = datetime(first.year, first.month, 10, 2, tzinfo=timezone.utc)
    network = ProvisioningClient(InProcessTransport(Simulator()), retries=2, backoff=0, timeout=1)
    with pytest.MonkeyPatch.context() as patch:
        for module in (orders, card_service, audit):
            patch.setattr(module, "utc_now", lambda: sold_at)
        for n in (1, 2):
            order = advance(store, place_order(store, n, channel="A3", client_order_id=f"A3-{n}").number, "delivered")
            orders.activate_order(store, order.number, actor="setup", network=network)
            orders.record_first_topup(store, order.number, 5_000, actor="setup")
    month_end = (first + timedelta(days=31)).replace(day=1) - timedelta(days=1)
    commissions.accrue(store, as_of=month_end, actor="setup", now=datetime.now(timezone.utc))
    yield {"url": url, "store": store, "period": first.strftime("%Y-%m")}
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


def confirm_in_page(page, question: str) -> None:
    """Wait for the batch's confirmation question, then confirm it."""
    page.wait_for_selector(f".hkops-batch-confirm-row .hkops-question:has-text('{question}')")
    page.locator(".hkops-batch-confirm-row button.hkops-confirm").click()


def test_finance_settles_a_month_in_the_browser(voila, page, shop):
    store, period = shop["store"], shop["period"]
    add_console_user(shop["url"])  # the first user is an admin
    name, password = add_console_user(shop["url"], "fiona", role="finance", password="fiona-password-1")
    log_in_page(page, voila.url, name, password, "/voila/render/settlement.ipynb")
    page.wait_for_selector("#loading", state="detached")
    page.wait_for_selector(".hkops-balances tr[data-agent='A3']")
    assert "¥83.20" in page.inner_text(".hkops-balances tr[data-agent='A3']")  # eligible, not settled yet
    page.wait_for_selector(".hkops-level-chart .main-svg", state="visible")

    box = page.locator(".hkops-period input")
    box.fill(period)
    box.press("Tab")
    page.locator("button.hkops-create-batches").click()
    confirm_in_page(page, "3 draft batch(es)")
    page.wait_for_selector(f".hkops-msg-ok:has-text('Created 3 draft batch(es) for {period}')")
    batch = {b["agent"]: b for b in commissions.list_batches(store)}["A3"]["id"]

    page.locator(".hkops-batch-pick select").select_option(
        label=f"#{batch} · A3 · {period} · {BATCH_BADGES.label('draft')} · ¥83.20")
    page.wait_for_selector(".hkops-batch-detail .hkops-batch-draft")
    page.locator("button.hkops-batch-confirm").click()
    confirm_in_page(page, "Confirm it")
    page.wait_for_selector(".hkops-msg-ok:has-text('draft → confirmed')")
    page.locator("button.hkops-batch-approve").click()
    confirm_in_page(page, "Approve it")
    page.wait_for_selector(".hkops-msg-ok:has-text('confirmed → approved')")
    reference = page.locator(".hkops-batch-reference input")
    reference.fill("BANK-A3-0001")
    reference.press("Tab")
    page.locator("button.hkops-batch-pay").click()
    confirm_in_page(page, "BANK-A3-0001")
    page.wait_for_selector(".hkops-msg-ok:has-text('approved → paid')")

    page.wait_for_selector(".hkops-batch-detail .hkops-batch-paid")
    assert "BANK-A3-0001" in page.inner_text(".hkops-batch-detail")
    assert "¥83.20" in page.inner_text(f".hkops-batches tr[data-batch='{batch}']")
    paid = commissions.show_batch(store, batch)
    assert (paid["state"], paid["reference"], paid["total_fen"]) == ("paid", "BANK-A3-0001", 8_320)
    assert commissions.balance(store, "A3")["balance_fen"] == 8_320
    assert {b["agent"]: b["state"] for b in commissions.list_batches(store)} == {
        "A1": "draft", "A2": "draft", "A3": "paid"}
    assert "¥83.20" in page.inner_text(".hkops-balances tr[data-agent='A3']")  # now the balance
    assert page.locator(".hkops-msg-error").count() == 0
    assert "Traceback" not in page.inner_text("body")
