"""``hkops po ...`` and ``hkops stock ...``: a purchase order received from a vendor file,
cards transferred, returned, counted and scrapped, on-hand and alerts; money in yuan,
``--json`` that is only JSON, and bad input that exits 2 naming the field and value (and
the line of a file), changing nothing.

Most commands run in this process (``hkops_cli``); one runs as a real subprocess."""

from __future__ import annotations

import json

import pytest

from strategies import hkops_cli, snapshot  # noqa: F401
from test_cli import hkops, one_line_refusal, sqlite_only
from test_vendor_files import card_csv, make_cards

CARDS = make_cards(20)
ICCIDS = sorted(c["iccid"] for c in CARDS)


@pytest.fixture
def shop(world, hkops_cli, tmp_path, monkeypatch):
    """A product, a vendor, a warehouse, an agent location and a confirmed PO for 20 cards
    at ¥3.50 plus ¥10 freight; ``shop.po`` is its number, ``shop.file`` the vendor's file."""
    monkeypatch.setenv("HKOPS_SECRET_KEY_FILE", str(tmp_path / "secret.key"))
    for args in (("catalogue", "product-add", "CM-NANO", "China Mobile nano", "--carrier", "中国移动", "--form", "nano"),
                 ("stock", "location-add", "WH-BJ", "Beijing warehouse", "--province", "Beijing"),
                 ("stock", "location-add", "AG-001", "Agent one", "--kind", "agent"),
                 ("po", "vendor-add", "ACME", "Acme Cards")):
        status, _, err = hkops_cli(world, *args)
        assert status == 0, err
    status, out, err = hkops_cli(world, "po", "create", "--vendor", "acme", "--warehouse", "WH-BJ",
                                 "--line", "CM-NANO:20:3.50", "--extra-cost", "10", "--json")
    assert status == 0, err
    created = json.loads(out)
    assert (created["number"], created["state"], created["extra_cost"], created["lines"][0]["unit_cost"]) == (
        "PO000001", "draft", "10.00", "3.50")
    assert hkops_cli(world, "po", "confirm", "PO000001")[1] == "purchase order PO000001: confirmed\n"
    world.po = "PO000001"
    world.file = tmp_path / "delivery.csv"
    world.file.write_text(card_csv(CARDS), encoding="utf-8")
    return world


def run(db, hkops_cli, *args) -> str:
    status, out, err = hkops_cli(db, *args)
    assert status == 0, err
    return out


def test_a_purchase_order_is_received_and_its_cards_moved_counted_and_scrapped(shop, hkops_cli, tmp_path):
    received = json.loads(run(shop, hkops_cli, "stock", "receive", shop.po, shop.file, "--json"))
    assert (received["quantity"], received["state"], received["landed_unit_cost"]) == (20, "received", "4.00")
    order = json.loads(run(shop, hkops_cli, "po", "show", shop.po, "--json"))
    assert (order["received"], order["received_cost"], order["receipts"][0]["batch"]) == (20, "80.00", "delivery")

    assert "TR000001: 5 card(s) moved WH-BJ -> AG-001" in run(
        shop, hkops_cli, "stock", "transfer", "WH-BJ", "AG-001", "--count", "5", "--product", "cm-nano")
    run(shop, hkops_cli, "stock", "transfer", "WH-BJ", "AG-001", "--range", ICCIDS[5], ICCIDS[6])
    listed = tmp_path / "more.txt"
    listed.write_text(f"iccid\n{ICCIDS[7]}\n\n# the last one\n{ICCIDS[8]}\n", encoding="utf-8")
    moved = json.loads(run(shop, hkops_cli, "stock", "transfer", "wh-bj", "ag-001", "--file", listed,
                           "--iccid", ICCIDS[9], "--reason", "restock", "--json"))
    assert (moved["document"], moved["count"], moved["to_location"]) == ("TR000003", 3, "AG-001")
    returned = json.loads(run(shop, hkops_cli, "stock", "return", "AG-001", "WH-BJ", "--iccid", ICCIDS[0], "--json"))
    assert (returned["document"], returned["count"]) == ("RT000001", 1)
    assert "SX000001: 1 card(s) scrapped" in run(shop, hkops_cli, "stock", "scrap", "WH-BJ", "--iccid", ICCIDS[19],
                                                 "--reason", "cracked chip")
    assert json.loads(run(shop, hkops_cli, "stock", "onhand", "--json")) == [
        {"location": "AG-001", "product": "CM-NANO", "quantity": 9},
        {"location": "WH-BJ", "product": "CM-NANO", "quantity": 10}]
    ledger = json.loads(run(shop, hkops_cli, "stock", "ledger", "--iccid", ICCIDS[0], "--json"))
    assert [(r["kind"], r["document"]) for r in ledger] == [("return", "RT000001"), ("transfer", "TR000001"),
                                                            ("receipt", shop.po)]

    counted = tmp_path / "counted.txt"
    counted.write_text("\n".join([ICCIDS[0], *ICCIDS[10:18], ICCIDS[1]]) + "\n", encoding="utf-8")
    dry = json.loads(run(shop, hkops_cli, "stock", "count", "WH-BJ", counted, "--dry-run", "--json"))
    assert (dry["number"], dry["missing"], dry["unexpected"]) == (None, [ICCIDS[18]], [ICCIDS[1]])
    text = run(shop, hkops_cli, "stock", "count", "WH-BJ", counted)
    assert text.startswith("CT000001 at WH-BJ: expected 10, counted 10, 1 missing, 1 unexpected")
    assert json.loads(run(shop, hkops_cli, "stock", "onhand", "--location", "AG-001", "--json"))[0]["quantity"] == 8

    assert run(shop, hkops_cli, "stock", "min", "WH-BJ", "cm-nano", "15") == "minimum of CM-NANO at WH-BJ: 15\n"
    assert json.loads(run(shop, hkops_cli, "stock", "alerts", "--json")) == [
        {"location": "WH-BJ", "product": "CM-NANO", "on_hand": 10, "minimum": 15, "sold_last_days": 0,
         "suggested_reorder": 5}]
    assert "PO000001  received" in run(shop, hkops_cli, "po", "list")
    closed = json.loads(run(shop, hkops_cli, "po", "close", shop.po, "--json"))
    assert (closed["state"], closed["under_delivered"]) == ("closed", 0)


def test_a_partial_order_closed_reports_what_never_came(shop, hkops_cli, tmp_path):
    half = tmp_path / "half.csv"
    half.write_text(card_csv(CARDS[:12]), encoding="utf-8")
    assert "order partially_received" in run(shop, hkops_cli, "stock", "receive", shop.po, half)
    assert "8 outstanding" in run(shop, hkops_cli, "po", "show", shop.po)
    assert run(shop, hkops_cli, "po", "close", shop.po, "--reason", "vendor gave up") == (
        "purchase order PO000001: closed; 8 card(s) never delivered\n")


def test_bad_input_exits_2_naming_the_field_and_value_and_changes_nothing(shop, hkops_cli, tmp_path):
    before = snapshot(shop)
    create = ("po", "create", "--vendor", "ACME", "--warehouse", "WH-BJ")
    one_line_refusal(hkops_cli(shop, *create, "--line", "CM-NANO:abc:3"), "quantity 'abc'")
    one_line_refusal(hkops_cli(shop, *create, "--line", "CM-NANO:5:-1"), "unit cost '-1'")
    one_line_refusal(hkops_cli(shop, *create, "--line", "CM-NANO-5"), "line 'CM-NANO-5'", "PRODUCT:QUANTITY")
    one_line_refusal(hkops_cli(shop, *create, "--line", "CM-NANO:5:1", "--extra-cost", "1.234"), "extra cost '1.234'")
    one_line_refusal(hkops_cli(shop, "po", "close", shop.po), "cannot close purchase order PO000001: it is confirmed")
    one_line_refusal(hkops_cli(shop, "stock", "transfer", "WH-BJ", "AG-001", "--count", "1"),
                     "product None: a count of cards needs the product")
    one_line_refusal(hkops_cli(shop, "stock", "transfer", "WH-BJ", "AG-001", "--product", "CM-NANO"),
                     "product 'CM-NANO': goes with --count")
    one_line_refusal(hkops_cli(shop, "stock", "transfer", "WH-XX", "AG-001", "--count", "1", "--product", "CM-NANO"),
                     "location 'WH-XX' does not exist")
    one_line_refusal(hkops_cli(shop, "stock", "min", "WH-BJ", "CM-NANO", "--", "-1"), "minimum -1")
    over = tmp_path / "over.csv"
    over.write_text(card_csv(make_cards(21)), encoding="utf-8")
    one_line_refusal(hkops_cli(shop, "stock", "receive", shop.po, over), "quantity 21", "still expects 20")
    assert snapshot(shop) == before

    run(shop, hkops_cli, "stock", "receive", shop.po, shop.file)
    run(shop, hkops_cli, "stock", "transfer", "WH-BJ", "AG-001", "--iccid", ICCIDS[0])
    before = snapshot(shop)
    status, out, err = hkops_cli(shop, "stock", "transfer", "WH-BJ", "AG-001", "--iccid", ICCIDS[0], "--iccid", ICCIDS[1])
    assert (status, out) == (2, "")
    assert err.splitlines()[0].startswith("hkops: error: transfer WH-BJ -> AG-001: 1 bad value(s)")
    assert f"iccid '{ICCIDS[0]}': is not at WH-BJ (it is at AG-001)" in err
    listed = tmp_path / "bad.txt"
    listed.write_text(f"{ICCIDS[1]}\n{ICCIDS[2]}\n{ICCIDS[3][:-1]}X\n", encoding="utf-8")
    status, out, err = hkops_cli(shop, "stock", "transfer", "WH-BJ", "AG-001", "--file", listed)
    assert (status, out) == (2, "") and "line 3: iccid" in err and "nothing imported" in err
    status, _, err = hkops_cli(shop, "stock", "count", "WH-BJ", listed)
    assert status == 2 and "line 3: iccid" in err
    assert snapshot(shop) == before


@sqlite_only
def test_onhand_json_is_only_json_as_a_subprocess(shop):
    received = hkops(shop, "stock", "receive", shop.po, str(shop.file))
    assert received.returncode == 0, received.stderr
    listed = hkops(shop, "stock", "onhand", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [{"location": "WH-BJ", "product": "CM-NANO", "quantity": 20}]
