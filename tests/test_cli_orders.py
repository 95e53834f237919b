"""``hkops orders ...`` and ``hkops payments ...``: an order from intake to completion at the
command line, money in yuan, the resident ID only masked, and refusals that exit 2 with the
reasons and change nothing."""

from __future__ import annotations

import json

import pytest

from distribution_world import FIRST_TOPUP, PLAN, birth_for_age, distribution, rid, snapshot  # noqa: F401
from strategies import hkops_cli  # noqa: F401  (fixture)
from test_cards_lifecycle import hlr  # noqa: F401  (fixture)
from test_cli import one_line_refusal

CUSTOMER = ("--plan", PLAN, "--name", "王芳", "--contact", "13900000000", "--province", "北京",
            "--address", "北京市朝阳区建国路 1 号")


@pytest.fixture
def cli(distribution, hkops_cli, hlr, monkeypatch):
    """``hkops ...`` in this process on the distribution world; --hlr reaches the in-process simulator."""
    monkeypatch.setattr("hkops.cli.orders.network", lambda address: hlr[1])
    return lambda *args, stdin="": hkops_cli(distribution.db, *args, stdin=stdin)


def ok(result) -> dict | list:
    status, out, err = result
    assert status == 0, err
    return json.loads(out)


def test_an_order_from_the_command_line_all_the_way_to_completed(cli, distribution):
    order = ok(cli("orders", "create", *CUSTOMER, "--id", "-", "--agent", "A3", "--client-id", "A3-7", "--json",
                   stdin=rid(1)))
    assert (order["state"], order["channel"], order["location"]) == ("approved", "A3", "AG-A3")
    assert order["total_fen"] == 8_000 + order["vanity_fee_fen"] and order["total"] == f"{order['total_fen'] / 100:.2f}"
    number = order["number"]
    assert ok(cli("orders", "create", *CUSTOMER, "--id", "-", "--agent", "A3", "--client-id", "A3-7",
                  "--json", stdin=rid(1)))["number"] == number
    assert ok(cli("orders", "pay", number, "--amount", "30", "--method", "wechat", "--reference", "wx1",
                  "--json"))["state"] == "approved"
    rest = f"{(order['total_fen'] - 3_000) / 100:.2f}"
    paid = ok(cli("orders", "pay", number, "--amount", rest, "--method", "alipay", "--reference", "ali1", "--json"))
    assert paid["state"] == "allocated" and paid["iccid"] in distribution.agent_iccids
    assert ok(cli("orders", "ship", number, "--courier", "SF", "--tracking", "SF77", "--json"))["state"] == "shipped"
    assert ok(cli("orders", "shipment", number, "in_transit", "--json"))["state"] == "shipped"
    assert ok(cli("orders", "deliver", number, "--json"))["state"] == "delivered"
    assert ok(cli("orders", "activate", number, "--json"))["state"] == "activated"
    assert ok(cli("orders", "topup", number, "--amount", str(FIRST_TOPUP // 100), "--json"))["state"] == "first_topup"
    status, out, _ = cli("orders", "complete", number)
    assert status == 0 and f"order {number}: completed" in out and f"¥{order['total']}" in out

    shown = ok(cli("orders", "show", number, "--json"))
    assert shown["order"]["id_masked"] == rid(1)[:2] + "*" * 15 + rid(1)[-1:]
    assert rid(1) not in json.dumps(shown) and "resident_id_enc" not in json.dumps(shown)
    assert [p["amount_fen"] for p in shown["payments"]] == [3_000, order["total_fen"] - 3_000]
    status, text, _ = cli("orders", "show", number)
    assert "via A1 > A2 > A3" in text and "SF SF77: delivered" in text and rid(1) not in text
    listed = ok(cli("orders", "list", "--agent", "A3", "--json"))
    assert [o["number"] for o in listed] == [number]
    assert "completed 1" in cli("orders", "list")[1]
    assert [p["reference"] for p in ok(cli("payments", "list", "--order", number, "--json"))] == ["ali1", "wx1"]
    assert ok(cli("payments", "reconcile", "--json")) == {"unpaid": [], "underpaid": [], "overpaid": []}


def test_refusals_exit_2_with_every_reason_and_change_nothing(cli, distribution):
    db = distribution.db
    before = snapshot(db)
    status, out, err = cli("orders", "create", *CUSTOMER[:-4], "--province", "新疆", "--address", "乌鲁木齐",
                           "--id", "-", stdin=rid(2, birth=birth_for_age(15)))
    assert status == 2 and out == ""
    assert err.startswith("hkops: error: order: 2 bad value(s); nothing applied\n")
    assert "age 15 is outside plan CM-58's limits 16–60" in err and "does not ship to Xinjiang" in err
    assert rid(2, birth=birth_for_age(15)) not in err
    one_line_refusal(cli("orders", "pay", "SO00000099", "--amount", "1", "--method", "cash", "--reference", "x"),
                     "order SO00000099 does not exist")
    assert snapshot(db) == before

    number = ok(cli("orders", "create", *CUSTOMER, "--id", "-", "--json", stdin=rid(3)))["number"]
    before = snapshot(db)
    one_line_refusal(cli("orders", "pay", number, "--amount", "1.001", "--method", "cash", "--reference", "x"),
                     "more than two decimal places")
    one_line_refusal(cli("orders", "ship", number, "--courier", "SF", "--tracking", "T1"), "cannot ship order",
                     "approved")
    one_line_refusal(cli("orders", "cancel", number, "--reason", " "), "a reason is required")
    assert snapshot(db) == before
    cancelled = ok(cli("orders", "cancel", number, "--reason", "changed mind", "--json"))
    assert (cancelled["state"], cancelled["reason"]) == ("cancelled", "changed mind")


def test_a_draft_submitted_later_and_a_payment_statement_import(cli, distribution, tmp_path):
    draft = ok(cli("orders", "create", *CUSTOMER, "--id", "-", "--draft", "--json", stdin=rid(4)))
    assert draft["state"] == "draft"
    approved = ok(cli("orders", "submit", draft["number"], "--json"))
    assert approved["state"] == "approved"
    path = tmp_path / "statement.csv"
    path.write_text(f"order,amount,method,reference,time\n{approved['number']},{approved['total']},bank,B1,"
                    "2026-11-25 10:00\n", encoding="utf-8")
    status, out, err = cli("payments", "import", str(path))
    assert status == 0 and "1 payment(s) imported" in out, err
    assert ok(cli("orders", "show", approved["number"], "--json"))["order"]["state"] == "allocated"
    path.write_text("order,amount,method,reference,time\nSO1,abc,bank,B2,2026-11-25 10:00\n", encoding="utf-8")
    status, out, err = cli("payments", "import", str(path))
    assert status == 2 and "1 bad line(s); nothing imported" in err and "line 2" in err
    status, out, _ = cli("payments", "reconcile")
    assert status == 0 and "unpaid: 0" in out and "overpaid: 0" in out


def test_a_paid_order_waits_for_stock_and_orders_allocate_picks_its_card_when_one_arrives(cli, distribution):
    from hkops.stock import service as stock

    order = ok(cli("orders", "create", *CUSTOMER, "--id", "-", "--agent", "A2", "--json", stdin=rid(5)))  # A2: no cards
    paid = ok(cli("orders", "pay", order["number"], "--amount", order["total"], "--method", "cash", "--reference",
                  "c5", "--json"))
    assert (paid["state"], paid["iccid"]) == ("paid", None)
    status, out, _ = cli("orders", "allocate", "--location", "ag-a2")
    assert status == 0 and out.startswith("0 order(s) allocated")
    stock.transfer(distribution.db, "WH-BJ", "AG-A2", iccids=distribution.warehouse_iccids[:1], actor="desk")
    assert ok(cli("orders", "allocate", "--json")) == [order["number"]]
    shown = ok(cli("orders", "show", order["number"], "--json"))
    assert (shown["order"]["state"], shown["order"]["iccid"]) == ("allocated", distribution.warehouse_iccids[0])
    one_line_refusal(cli("orders", "allocate", "--location", "WH-NONE"), "location 'WH-NONE' does not exist")
