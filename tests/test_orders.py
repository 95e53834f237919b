"""Sales orders: intake with real-name checks, payment and allocation, shipping, activation
through the HLR, first top-up and completion; every refusal leaves everything as it was."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from distribution_world import (  # noqa: F401  (distribution is a fixture)
    FIRST_TOPUP, PLAN_UNICOM, PRICES, WAREHOUSE, advance, birth_for_age, distribution, place_order, rid,
    snapshot,
)
from hkops.audit import query as audit_query
from hkops.cards import service as cards
from hkops.cards.tables import sims
from hkops.errors import Conflict, IllegalTransition, InvalidValue, InvalidValues, NotFound
from hkops.network import ProvisioningClient, TcpTransport
from hkops.numbers import service as numbers
from hkops.orders import intake
from hkops.orders import service as orders
from hkops.orders.tables import orders as orders_table
from hkops.payments import service as payments
from hkops.security.crypto import load_keyring
from hkops.stock import service as stock
from hkops.subscribers import service as subscribers
from test_cards_lifecycle import hlr  # noqa: F401  (fixture)


def order_events(db, number) -> list[tuple]:
    with db.read() as conn:
        rows = audit_query(conn, subject=number, entity="order", limit=100)
    return [(r["action"], r["from_state"], r["to_state"]) for r in reversed(rows)]


def test_a_direct_order_goes_all_the_way_to_completed(distribution, hlr):
    db = distribution.db
    order = place_order(db, 1)
    assert (order.state, order.channel, order.location, order.product) == ("approved", "direct", WAREHOUSE, "CM-NANO")
    assert order.price_fen == PRICES[0] and order.total_fen == order.price_fen + order.vanity_fee_fen + order.prepay_fen
    assert order.msisdn.startswith("1380013")  # a Beijing China Mobile number for a Beijing address
    number = numbers.get_number(db, order.msisdn)
    assert (number.state, number.holder) == ("reserved", order.number)

    order = orders.pay_order(db, order.number, order.total_fen, method="alipay", reference="2026A1", actor="desk")
    assert order.state == "allocated" and order.iccid == distribution.warehouse_iccids[0]
    assert (numbers.get_number(db, order.msisdn).state, cards.get_card(db, order.iccid).state) == ("assigned",
                                                                                                  "allocated")
    order = orders.ship_order(db, order.number, courier="SF Express", tracking_no="SF1001", actor="desk")
    assert order.state == "shipped"
    with db.read() as conn:
        where = conn.execute(select(sims.c.location).where(sims.c.iccid == order.iccid)).scalar()
    assert where == "CUSTOMER"
    order = orders.update_shipment(db, order.number, "in_transit", actor="courier")
    order = orders.deliver_order(db, order.number, actor="courier")
    assert order.state == "delivered"
    order = orders.activate_order(db, order.number, actor="desk", network=hlr[1])
    assert order.state == "activated"
    card = cards.get_card(db, order.iccid)
    assert (card.state, card.msisdn, card.subscriber_id) == ("active", order.msisdn, order.subscriber_id)
    assert hlr[1].get(order.msisdn).imsi == card.imsi
    assert numbers.get_number(db, order.msisdn).state == "active"
    order = orders.record_first_topup(db, order.number, FIRST_TOPUP, actor="desk")
    order = orders.complete_order(db, order.number, actor="desk")
    assert (order.state, order.first_topup_fen) == ("completed", FIRST_TOPUP)

    assert order_events(db, order.number) == [
        ("create", None, "draft"), ("submit", "draft", "verifying"), ("approve", "verifying", "approved"),
        ("pay", "approved", "paid"), ("allocate", "paid", "allocated"), ("ship", "allocated", "shipped"),
        ("deliver", "shipped", "delivered"), ("activate_requested", "delivered", "delivered"),
        ("activate", "delivered", "activated"), ("first_topup", "activated", "first_topup"),
        ("complete", "first_topup", "completed")]
    assert payments.reconcile(db).clean
    assert orders.pipeline_counts(db)["completed"] == 1


def test_an_agent_order_sells_from_the_agents_stock_at_its_price_and_keeps_the_agent_chain(distribution, hlr):
    db = distribution.db
    order = place_order(db, 2, channel="a3", client_order_id="A3-0001")
    assert (order.channel, order.location, order.price_fen) == ("A3", "AG-A3", PRICES[3])
    assert [link["code"] for link in order.agent_chain] == ["A3", "A2", "A1"]
    assert [link["level"] for link in order.agent_chain] == [3, 2, 1]
    order = advance(db, order.number, "allocated")
    assert order.iccid in distribution.agent_iccids
    assert orders.list_orders(db, agent="A3") == [orders.get_order(db, order.number)]
    assert orders.get_order(db, "A3-0001").number == order.number


def test_the_customers_resident_id_is_sealed_on_the_order_and_shown_masked(distribution):
    db = distribution.db
    order = place_order(db, 3)
    with db.read() as conn:
        row = conn.execute(select(orders_table).where(orders_table.c.number == order.number)).one()
    assert rid(3) not in row.resident_id_enc
    assert load_keyring().decrypt(row.resident_id_enc, f"orders.resident_id:{order.number}") == rid(3)
    detail = json.dumps(orders.order_detail(db, order.number), default=str, ensure_ascii=False)
    assert rid(3) not in detail and order.id_masked in detail
    person = subscribers.get(db, order.subscriber_id)
    assert person.id_masked == order.id_masked


def test_a_retried_intake_returns_the_first_order_and_another_payload_for_its_id_is_refused(distribution):
    db = distribution.db
    first = place_order(db, 4, client_order_id="web-77")
    before = snapshot(db)
    again = place_order(db, 4, client_order_id="web-77")
    assert (again.number, again.msisdn, again.created) == (first.number, first.msisdn, False)
    assert snapshot(db) == before
    with pytest.raises(Conflict, match="web-77.*another ship_address"):
        place_order(db, 4, client_order_id="web-77", ship_address="上海市浦东新区 9 号")
    assert snapshot(db) == before
    other_channel = place_order(db, 4, client_order_id="web-77", channel="A1")
    assert other_channel.number != first.number


def refused(db, exc_type, match, call):
    """Run ``call``, expect it refused with ``match`` in the reason, and nothing changed."""
    before = snapshot(db)
    with pytest.raises(exc_type, match=match) as caught:
        call()
    assert snapshot(db) == before
    return caught.value


def test_a_fifteen_year_old_on_a_16_to_60_plan_is_refused_with_nothing_changed(distribution):
    db = distribution.db
    young = rid(5, birth=birth_for_age(15))
    error = refused(db, InvalidValues, r"age 15 is outside plan CM-58's limits 16–60",
                    lambda: place_order(db, 5, resident_id=young))
    assert len(error.problems) == 1


def test_an_excluded_province_is_refused_with_nothing_changed(distribution):
    db = distribution.db
    refused(db, InvalidValues, "does not ship to Xinjiang", lambda: place_order(db, 6, ship_province="新疆"))


def test_every_reason_is_given_at_once(distribution):
    db = distribution.db
    subscribers.blacklist_add(db, rid(8), "fraud ring", "desk")
    error = refused(db, InvalidValues, "order", lambda: place_order(
        db, 8, resident_id=rid(8, birth=birth_for_age(61)), ship_province="Tibet", msisdn="18607550001"))
    reasons = " | ".join(str(p) for p in error.problems)
    assert "age 61" in reasons and "Tibet" in reasons and "China Unicom number" in reasons
    error = refused(db, InvalidValues, "blacklisted", lambda: place_order(db, 8))
    assert len(error.problems) == 1


@pytest.mark.parametrize("held", ["open orders", "bound numbers"])
def test_a_sixth_number_for_one_id_is_refused_with_nothing_changed(distribution, held):
    db = distribution.db
    if held == "open orders":
        for _ in range(5):
            place_order(db, 9)
    else:
        person = subscribers.register(db, name="客户9", resident_id=rid(9), contact="13900000000", actor="desk")
        with db.write() as conn:
            for tail in range(5):
                subscribers.bind_number(conn, person.id, f"1380013{9000 + tail}", "China Mobile", "desk")
    refused(db, InvalidValues, r"already holds 5 China Mobile numbers.*一证五号", lambda: place_order(db, 9))
    other_carrier = place_order(db, 9, plan=PLAN_UNICOM)
    assert other_carrier.state == "approved"


def test_a_cancelled_order_no_longer_counts_towards_the_five(distribution):
    db = distribution.db
    placed = [place_order(db, 10) for _ in range(5)]
    orders.cancel_order(db, placed[0].number, actor="desk", reason="customer changed their mind")
    assert place_order(db, 10).state == "approved"


def test_a_chosen_number_must_be_available_and_of_the_plans_carrier(distribution):
    db = distribution.db
    first = place_order(db, 11, msisdn="13800130999")
    assert first.msisdn == "13800130999"
    refused(db, InvalidValues, r"13800130999.*reserved \(held by " + first.number,
            lambda: place_order(db, 12, msisdn="13800130999"))
    refused(db, InvalidValues, "not in the number pool", lambda: place_order(db, 12, msisdn="13900000000"))


def test_bad_values_are_all_listed_before_anything_is_looked_at(distribution):
    db = distribution.db
    error = refused(db, InvalidValues, "order", lambda: place_order(
        db, 13, resident_id="110105199003071234", contact="12", ship_province="Atlantis", ship_address=" ",
        plan="NOPE", channel="ZZ"))
    fields = {p.field for p in error.problems}
    assert fields == {"resident_id", "contact", "ship_province", "ship_address", "plan", "channel"}
    assert "110105199003071234" not in str(error)


def test_a_draft_is_checked_on_submission_and_rejected_with_its_reasons(distribution):
    db = distribution.db
    draft = place_order(db, 14, resident_id=rid(14, birth=birth_for_age(15)), submit=False)
    assert (draft.state, draft.msisdn, draft.total_fen) == ("draft", None, 0)
    with pytest.raises(InvalidValues, match="age 15"):
        intake.submit_order(db, draft.number, actor="desk")
    rejected = orders.get_order(db, draft.number)
    assert rejected.state == "rejected" and "age 15" in rejected.reason
    assert order_events(db, draft.number)[1:] == [("submit", "draft", "verifying"), ("reject", "verifying", "rejected")]
    with pytest.raises(IllegalTransition, match="final"):
        intake.submit_order(db, draft.number, actor="desk")

    good = place_order(db, 15, submit=False)
    approved = intake.submit_order(db, good.number, actor="desk")
    assert approved.state == "approved" and approved.msisdn and approved.total_fen > 0
    assert numbers.get_number(db, approved.msisdn).holder == good.number


def test_partial_payments_leave_the_order_approved_until_the_total_is_in(distribution):
    db = distribution.db
    order = place_order(db, 16)
    half = orders.pay_order(db, order.number, 5_000, method="wechat", reference="wx-1", actor="desk")
    assert half.state == "approved" and half.iccid is None
    with pytest.raises(InvalidValue, match="more than the"):
        orders.pay_order(db, order.number, order.total_fen, method="wechat", reference="wx-2", actor="desk")
    same = orders.pay_order(db, order.number, 5_000, method="wechat", reference="wx-1", actor="desk")
    assert same.state == "approved" and len(payments.list_payments(db, order=order.number)) == 1
    with pytest.raises(Conflict, match="recorded already"):
        orders.pay_order(db, order.number, 4_000, method="wechat", reference="wx-1", actor="desk")
    assert [r["order"] for r in payments.reconcile(db).underpaid] == [order.number]
    done = orders.pay_order(db, order.number, order.total_fen - 5_000, method="bank", reference="b-1", actor="desk")
    assert done.state == "allocated"


def test_paying_an_order_twice_is_refused_with_nothing_changed(distribution):
    db = distribution.db
    order = advance(db, place_order(db, 17).number, "allocated")
    refused(db, Conflict, "already paid", lambda: orders.pay_order(
        db, order.number, order.total_fen, method="alipay", reference="again-1", actor="desk"))
    repeat = orders.pay_order(db, order.number, order.total_fen - order.total_fen // 2, method="alipay",
                              reference=f"{order.number}-rest", actor="desk")
    assert repeat.state == "allocated"


def test_a_card_cannot_be_sold_twice(distribution):
    db = distribution.db
    order = advance(db, place_order(db, 18).number, "allocated")
    with db.write() as conn:  # the card went out with another document by mistake
        stock.sell_unit(conn, order.iccid, WAREHOUSE, "SO-MISTAKE", actor="desk")
    refused(db, InvalidValues, f"{order.iccid}.*is not at {WAREHOUSE}", lambda: orders.ship_order(
        db, order.number, courier="SF", tracking_no="SF-X1", actor="desk"))


def test_the_last_card_at_a_location_goes_to_one_order_and_the_next_is_paid_and_waits_for_stock(distribution):
    db = distribution.db
    stock.transfer(db, WAREHOUSE, "AG-A2", iccids=[distribution.warehouse_iccids[0]], actor="desk")
    first = advance(db, place_order(db, 19, channel="A2").number, "allocated")
    assert first.iccid == distribution.warehouse_iccids[0]
    second = place_order(db, 20, channel="A2")

    waiting = orders.pay_order(db, second.number, second.total_fen, method="alipay", reference="last-card",
                               actor="desk")

    assert (waiting.state, waiting.iccid) == ("paid", None)  # the money is taken, the card comes later
    assert (numbers.get_number(db, waiting.msisdn).state, numbers.get_number(db, waiting.msisdn).holder) == (
        "assigned", second.number)
    assert order_events(db, second.number)[-2:] == [("pay", "approved", "paid"), ("wait_for_stock", "paid", "paid")]
    assert payments.reconcile(db).clean
    assert orders.allocate_waiting(db, location="ag-a2", actor="desk") == []  # still nothing there
    stock.transfer(db, WAREHOUSE, "AG-A2", iccids=[distribution.warehouse_iccids[1]], actor="desk")

    assert orders.allocate_waiting(db, location="AG-A2", actor="desk") == [second.number]

    allocated = orders.get_order(db, second.number)
    assert (allocated.state, allocated.iccid) == ("allocated", distribution.warehouse_iccids[1])
    assert cards.get_card(db, allocated.iccid).state == "allocated"
    assert order_events(db, second.number)[-1] == ("allocate", "paid", "allocated")
    assert orders.allocate_waiting(db, actor="desk") == []
    with pytest.raises(NotFound, match="WH-NOWHERE"):
        orders.allocate_waiting(db, location="WH-NOWHERE", actor="desk")


def test_cancelling_an_activated_order_is_refused_it_goes_through_return(distribution, hlr):
    db = distribution.db
    order = advance(db, place_order(db, 21).number, "activated", network=hlr[1])
    refused(db, IllegalTransition, "goes back through return", lambda: orders.cancel_order(
        db, order.number, actor="desk", reason="customer wants the money back"))


def test_an_activation_the_hlr_has_not_confirmed_leaves_the_order_delivered_until_sync(distribution, hlr):
    db = distribution.db
    order = advance(db, place_order(db, 22).number, "delivered")
    down = ProvisioningClient(TcpTransport("127.0.0.1", 1, connect_timeout=0.2), retries=1, backoff=0, timeout=0.5)
    waiting = orders.activate_order(db, order.number, actor="desk", network=down)
    assert waiting.state == "delivered"
    card = orders.order_detail(db, order.number)["card"]
    assert (card["state"], card["pending_action"]) == ("paired", "activate")
    again = orders.activate_order(db, order.number, actor="desk")  # no second request while one is pending
    assert again.state == "delivered" and len(cards.pending(db)) == 1
    assert orders.sync_activations(db, hlr[1], actor="desk") == [order.number]
    assert orders.get_order(db, order.number).state == "activated"


def test_the_first_top_up_must_reach_the_plans_amount(distribution, hlr):
    db = distribution.db
    order = advance(db, place_order(db, 23).number, "activated", network=hlr[1])
    refused(db, InvalidValue, r"¥49.99.*below plan CM-58's first top-up of ¥50.00",
            lambda: orders.record_first_topup(db, order.number, FIRST_TOPUP - 1, actor="desk"))
    with pytest.raises(IllegalTransition):
        orders.complete_order(db, order.number, actor="desk")


def test_shipments_need_a_tracking_number_unique_per_courier(distribution):
    db = distribution.db
    one = advance(db, place_order(db, 24).number, "allocated")
    two = advance(db, place_order(db, 25).number, "allocated")
    with pytest.raises(InvalidValue, match="tracking number is required"):
        orders.ship_order(db, one.number, courier="SF", tracking_no="  ", actor="desk")
    orders.ship_order(db, one.number, courier="闪电快递", tracking_no="T-1", actor="desk")
    refused(db, Conflict, f"already used by order {one.number}", lambda: orders.ship_order(
        db, two.number, courier="闪电快递", tracking_no="T-1", actor="desk"))
    assert orders.ship_order(db, two.number, courier="SF", tracking_no="T-1", actor="desk").state == "shipped"
    orders.update_shipment(db, one.number, "exception", actor="courier", reason="address not found")
    assert orders.order_detail(db, one.number)["shipment"]["state"] == "exception"
    assert orders.deliver_order(db, one.number, actor="courier").state == "delivered"
    with pytest.raises(InvalidValue, match="must be in_transit"):
        orders.update_shipment(db, two.number, "lost", actor="courier")


def test_lists_counts_and_lookups(distribution):
    db = distribution.db
    a = place_order(db, 26)
    b = advance(db, place_order(db, 27).number, "allocated")
    assert [o.number for o in orders.list_orders(db)] == [b.number, a.number]
    assert [o.number for o in orders.list_orders(db, state="approved")] == [a.number]
    counts = orders.pipeline_counts(db)
    assert (counts["approved"], counts["allocated"], sum(counts.values())) == (1, 1, 2)
    with pytest.raises(NotFound):
        orders.get_order(db, "SO99999999")
    with pytest.raises(InvalidValue, match="state"):
        orders.list_orders(db, state="lost")
    detail = orders.order_detail(db, b.number)
    assert detail["paid_fen"] == b.total_fen and detail["due_fen"] == 0
    assert {e["entity"] for e in detail["timeline"]} >= {"order", "payment", "number", "sim"}
