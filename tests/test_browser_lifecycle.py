"""The lifecycle console in a real Chromium: a loss report, then a replacement, against an
HLR reached over TCP by the console's kernel."""

from __future__ import annotations

import os

import pytest

from hkops import demo
from hkops.cards import service as cards
from hkops.cards.batches import import_sim_file
from hkops.network import BackgroundServer, ProvisioningClient, Simulator, TcpTransport
from hkops.numbers.search import SearchQuery, search
from hkops.store.engine import Store
from hkops.subscribers import service as subscribers
from hkops.ui.serving import VoilaServer
from console_login import add_console_user, log_in_page
from test_browser_allocation import browser, page  # noqa: F401  (the same Chromium set-up)
from test_subscribers import make_rid
from test_vendor_files import card_csv, make_cards

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def hlr():
    with BackgroundServer(Simulator()) as server:
        yield server


@pytest.fixture(scope="module")
def shop(tmp_path_factory, hlr):
    """A demo database with two China Mobile SIMs, one active for a registered subscriber,
    and the key file and HLR address the console's kernel will use."""
    folder = tmp_path_factory.mktemp("lifecycle")
    saved = {k: os.environ.get(k) for k in ("HKOPS_SECRET_KEY_FILE", "HKOPS_HLR")}
    os.environ["HKOPS_SECRET_KEY_FILE"] = str(folder / "secret.key")
    os.environ["HKOPS_HLR"] = "%s:%d" % hlr.address
    url = f"sqlite:///{folder / 'demo.db'}"
    store = Store(url)
    demo.build(store, per_province=1, orders=200)
    stock = make_cards(2, start=500)
    (folder / "cards.csv").write_text(card_csv(stock), encoding="utf-8")
    import_sim_file(store, folder / "cards.csv", carrier="China Mobile", actor="setup", location="WH-BJ")
    rid = make_rid()
    person = subscribers.register(store, name="王芳", resident_id=rid, contact="13900000000", actor="setup")
    client = ProvisioningClient(TcpTransport(*hlr.address))
    free = search(store, SearchQuery(region="北京", carrier="China Mobile", limit=1))[0]
    cards.pair(store, stock[0]["iccid"], free.msisdn, person.id, actor="setup")
    cards.activate(store, stock[0]["iccid"], actor="setup", network=client)
    yield {"url": url, "store": store, "msisdn": free.msisdn, "old": stock[0]["iccid"], "new": stock[1]["iccid"],
           "rid": rid, "client": client, "imsi": stock[1]["imsi"]}
    store.dispose()
    for key, value in saved.items():
        os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


@pytest.fixture(scope="module")
def voila(shop, tmp_path_factory):
    server = VoilaServer(shop["url"], log_path=tmp_path_factory.mktemp("voila") / "voila.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_an_operator_reports_a_loss_and_replaces_the_card_in_the_browser(voila, page, shop):
    log_in_page(page, voila.url, *add_console_user(shop["url"]), "/voila/render/lifecycle.ipynb")
    page.wait_for_selector("#loading", state="detached")
    page.locator(".hkops-find input").fill(shop["msisdn"])
    page.locator("button.hkops-find-button").click()
    page.wait_for_selector(f".hkops-card-detail:has-text('{shop['old']}')")

    page.locator("button.hkops-report-loss").click()
    page.locator("button.hkops-confirm").click()
    page.wait_for_selector(".hkops-msg-ok")
    assert cards.get_card(shop["store"], shop["old"]).state == "lost"
    assert shop["client"].get(shop["msisdn"]).barred

    page.locator(".hkops-new-iccid input").fill(shop["new"])
    page.locator(".hkops-resident-id input").fill(shop["rid"])
    page.locator("button.hkops-replace").click()
    page.locator("button.hkops-confirm").click()
    page.wait_for_selector(f".hkops-card-detail:has-text('{shop['new']}')")

    card = cards.get_card(shop["store"], shop["msisdn"])
    assert (card.iccid, card.state) == (shop["new"], "active")
    record = shop["client"].get(shop["msisdn"])
    assert record.imsi == shop["imsi"] and not record.barred
    text = page.inner_text("body")
    assert page.locator(".hkops-msg-error").count() == 0
    assert "Traceback" not in text and shop["rid"] not in text
