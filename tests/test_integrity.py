"""One owner for each shared state (issue 8, items 1 and 5): a number bound to an open order or a
live SIM cannot be released, blocked or terminated behind their back; the database refuses a
second open order, live SIM or live holder for one number; an approved order left unpaid expires,
giving its number and its 一证五号 slot back; an expired order cannot be paid."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from distribution_world import PLAN, advance, distribution, place_order, rid, snapshot  # noqa: F401
from hkops import settings
from hkops.audit import query as audit_query
from hkops.cards import service as cards
from hkops.cards.tables import sims
from hkops.errors import Conflict, IllegalTransition, InvalidValue, InvalidValues
from hkops.network import ProvisioningClient, TcpTransport
from hkops.numbers import service as numbers
from hkops.orders import intake
from hkops.orders import service as orders
from hkops.orders.tables import orders as orders_table
from hkops.payments import service as payments
from hkops.subscribers.tables import subscriber_numbers
from hkops.timeutil import utc_now
from strategies import hkops_cli  # noqa: F401  (fixture)
from test_cards_lifecycle import hlr  # noqa: F401  (fixture)
from test_cli import one_line_refusal, sqlite_only
from test_cli_hlr import start, stop


def refused(db, exc_type, match, call):
    """``call`` refused with ``match`` in its reason, and nothing changed."""
    before = snapshot(db)
    with pytest.raises(exc_type, match=match):
        call()
    assert snapshot(db) == before


# ---------------------------------------------------------------- the number's one owner


def test_the_number_of_a_paid_order_cannot_be_released_blocked_or_terminated_and_no_second_order_gets_it(
        distribution):
    db = distribution.db
    order = advance(db, place_order(db, 1).number, "allocated")
    for move in (numbers.release, numbers.terminate):
        refused(db, Conflict, f"{order.msisdn} is bound to order {order.number} \\(allocated\\)",
                lambda: move(db, order.msisdn, actor="ops", reason="tidy up"))
    assert (numbers.get_number(db, order.msisdn).state, numbers.get_number(db, order.msisdn).holder) == (
        "assigned", order.number)
    refused(db, InvalidValues, f"msisdn '{order.msisdn}': is assigned \\(held by {order.number}\\)",
            lambda: place_order(db, 2, msisdn=order.msisdn))


def test_the_number_of_an_approved_order_cannot_be_blocked_or_released_but_the_order_itself_releases_it(
        distribution):
    db = distribution.db
    order = place_order(db, 1)
    refused(db, Conflict, f"cannot block: {order.msisdn} is bound to order {order.number} \\(approved\\)",
            lambda: numbers.block(db, order.msisdn, actor="ops", reason="regulator"))
    refused(db, Conflict, f"order {order.number}",
            lambda: numbers.release(db, order.msisdn, actor="ops"))
    orders.cancel_order(db, order.number, actor="desk", reason="customer changed their mind")
    assert numbers.get_number(db, order.msisdn).state == "available"
    assert numbers.block(db, order.msisdn, actor="ops", reason="regulator").to_state == "blocked"


def test_a_number_a_live_sim_serves_is_terminated_only_through_its_card(distribution, hlr):
    db = distribution.db
    order = advance(db, place_order(db, 1).number, "activated", network=hlr[1])
    card = cards.get_card(db, order.iccid)
    assert card.state == "active"
    refused(db, Conflict, f"{order.msisdn} is bound to SIM {card.iccid} \\(active\\).*hkops cards terminate",
            lambda: numbers.terminate(db, order.msisdn, actor="ops"))

    def terminate_set_wise():
        with db.write() as conn:
            numbers.move_many(conn, [int(order.msisdn)], numbers.S.ACTIVE, numbers.S.QUARANTINED, "terminate",
                              actor="ops", reason=None, now=utc_now())

    refused(db, Conflict, f"SIM {card.iccid}", terminate_set_wise)


def test_a_quarantined_number_goes_back_to_its_last_holder_only_within_one_id_five_numbers(distribution):
    db = distribution.db
    order = place_order(db, 1)
    orders.cancel_order(db, order.number, actor="desk", reason="registered the customer only")
    holder = f"S{order.subscriber_id}"
    mine = numbers.allocate_batch(db, 6, holder, actor="desk", carrier="China Mobile")
    numbers.terminate(db, mine[0], actor="desk", reason="closed")
    for iccid, msisdn in zip(distribution.warehouse_iccids, mine[1:]):
        cards.pair(db, iccid, msisdn, order.subscriber_id, actor="desk")
    refused(db, Conflict, "5 .*一证五号|一证五号.*5|at most 5",
            lambda: numbers.reclaim(db, mine[0], holder, actor="desk"))


def test_the_set_wise_number_use_cases_for_cards_allocate_and_activate_all_or_none(distribution):
    db = distribution.db
    first, second = (int(m) for m in numbers.allocate_batch(db, 2, "spare", actor="ops"))
    with db.write() as conn:
        numbers.release_for_orders(conn, {first: "spare", second: "spare"}, actor="ops", now=utc_now(),
                                   reason="not an order's")
    assert {numbers.get_number(db, str(m)).state for m in (first, second)} == {"available"}
    with db.write() as conn:
        numbers.allocate_to_holders(conn, {first: "S1", second: "S2"}, actor="ops", now=utc_now())
        numbers.activate_many(conn, [first, second], actor="ops", now=utc_now(), reason="SIM activated")
    assert [(numbers.get_number(db, str(m)).state, numbers.get_number(db, str(m)).holder) for m in (first, second)] == [
        ("active", "S1"), ("active", "S2")]

    def again():
        with db.write() as conn:
            numbers.allocate_to_holders(conn, {first: "S3"}, actor="ops", now=utc_now())

    refused(db, Conflict, "no longer available", again)


# ---------------------------------------------------------------- the database backs it


def _copy_of(conn, order: str, **changes) -> dict:
    row = dict(conn.execute(select(orders_table).where(orders_table.c.number == order)).mappings().one())
    row.pop("id")
    return row | {"number": f"X{order}", "client_order_id": None} | changes


def test_the_database_refuses_a_second_open_order_for_a_number(distribution):
    db = distribution.db
    order = place_order(db, 1)
    with pytest.raises(IntegrityError):
        with db.write() as conn:
            conn.execute(insert(orders_table).values(**_copy_of(conn, order.number, state="paid")))
    with db.write() as conn:  # orders that are over hold no number
        conn.execute(insert(orders_table).values(**_copy_of(conn, order.number, state="cancelled")))
        conn.execute(insert(orders_table).values(**_copy_of(conn, order.number, number="Y1", state="expired")))


def test_the_database_refuses_a_second_live_sim_and_a_second_live_holder_for_a_number(distribution, hlr):
    db = distribution.db
    order = advance(db, place_order(db, 1).number, "activated", network=hlr[1])
    spare = distribution.warehouse_iccids[-1]
    for state in ("paired", "active", "suspended", "lost"):
        with pytest.raises(IntegrityError):
            with db.write() as conn:
                conn.execute(update(sims).where(sims.c.iccid == spare).values(msisdn=int(order.msisdn), state=state))
    with pytest.raises(IntegrityError):
        with db.write() as conn:
            conn.execute(insert(subscriber_numbers).values(subscriber_id=order.subscriber_id,
                                                           msisdn=int(order.msisdn), carrier="China Mobile",
                                                           since=utc_now(), until=None))
    with db.write() as conn:  # ended cards and bindings may repeat
        conn.execute(update(sims).where(sims.c.iccid == spare).values(msisdn=int(order.msisdn), state="terminated"))
        conn.execute(insert(subscriber_numbers).values(subscriber_id=order.subscriber_id, msisdn=int(order.msisdn),
                                                       carrier="China Mobile", since=utc_now(), until=utc_now()))


# ---------------------------------------------------------------- unpaid orders expire


def test_an_unpaid_order_expires_after_the_ttl_giving_back_its_number_and_its_one_id_five_numbers_slot(
        distribution):
    db = distribution.db
    yesterday = utc_now() - timedelta(hours=25)
    placed = [place_order(db, 5, now=yesterday) for _ in range(5)]
    with pytest.raises(InvalidValues, match="一证五号"):
        place_order(db, 5, now=yesterday + timedelta(minutes=1))
    sixth = place_order(db, 5)  # intake expires the five first
    assert sixth.state == "approved"
    for order in placed:
        assert orders.get_order(db, order.number).state == "expired"
        assert numbers.get_number(db, order.msisdn).holder in (None, sixth.number)  # free again, or the sixth's
        with db.read() as conn:
            [event] = audit_query(conn, subject=order.number, action="expire", limit=5)
            [release] = audit_query(conn, subject=order.msisdn, action="release", limit=5)
        assert (event["actor"], event["from_state"], event["to_state"]) == ("system", "approved", "expired")
        assert "order_payment_ttl" in event["reason"]
        assert (release["from_state"], release["to_state"], release["reason"]) == (
            "reserved", "available", "its order expired unpaid")
    assert sixth.msisdn == placed[0].msisdn  # the first number freed is the first plain one again
    assert orders.pipeline_counts(db)["expired"] == 5


def test_expiry_waits_for_the_ttl_setting_and_refunds_a_part_payment(distribution):
    db = distribution.db
    order = advance(db, place_order(db, 1, now=utc_now() - timedelta(hours=5)).number, "paid_partly")
    assert orders.expire_unpaid(db, actor="ops") == []
    with db.write() as conn:
        settings.set_value(conn, "order_payment_ttl", "4h", actor="ops")
    assert orders.expire_unpaid(db, actor="ops") == [order.number]
    assert orders.get_order(db, order.number).state == "expired"
    with db.read() as conn:
        assert payments.balance(conn, order.id) == 0
    assert payments.reconcile(db).clean
    with pytest.raises(InvalidValue, match="order_payment_ttl"):
        with db.write() as conn:
            settings.set_value(conn, "order_payment_ttl", "soon")


def test_paying_an_expired_order_is_refused_and_changes_nothing(distribution):
    db = distribution.db
    order = place_order(db, 1, now=utc_now() - timedelta(days=2))
    assert orders.expire_unpaid(db, actor="ops") == [order.number]
    refused(db, IllegalTransition, f"cannot pay order {order.number}: it expired unpaid",
            lambda: orders.pay_order(db, order.number, order.total_fen, method="alipay", reference="late-1",
                                     actor="desk"))


# ---------------------------------------------------------------- at the command line


@sqlite_only
def test_the_command_line_refuses_with_exit_2_naming_the_order(distribution, hkops_cli):
    db = distribution.db
    paid = advance(db, place_order(db, 1).number, "allocated")
    before = snapshot(db)
    one_line_refusal(hkops_cli(db, "numbers", "release", paid.msisdn), paid.number, "allocated")
    one_line_refusal(hkops_cli(db, "numbers", "terminate", paid.msisdn), paid.number)
    assert snapshot(db) == before
    approved = place_order(db, 3)
    before = snapshot(db)
    one_line_refusal(hkops_cli(db, "numbers", "block", approved.msisdn, "--reason", "regulator"), approved.number,
                     "approved")
    assert snapshot(db) == before

    late = place_order(db, 2, now=utc_now() - timedelta(days=2))
    as_of = (utc_now() + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M")  # Asia/Shanghai wall clock
    status, out, err = hkops_cli(db, "orders", "expire", "--as-of", as_of, "--json")
    assert status == 0, err
    assert json.loads(out) == [late.number]
    assert numbers.get_number(db, late.msisdn).state == "available"
    before = snapshot(db)
    one_line_refusal(hkops_cli(db, "orders", "pay", late.number, "--amount", "10", "--method", "alipay",
                               "--reference", "late-2"), late.number, "expired")
    assert snapshot(db) == before


@sqlite_only
def test_terminating_a_number_in_service_at_the_command_line_ends_its_card_hlr_record_and_binding(
        distribution, hkops_cli, tmp_path):
    db = distribution.db
    process, port = start(tmp_path / "hlr")
    try:
        network = ProvisioningClient(TcpTransport("127.0.0.1", port))
        order = advance(db, place_order(db, 1).number, "activated", network=network)
        assert network.get(order.msisdn) is not None
        status, out, err = hkops_cli(db, "numbers", "terminate", order.msisdn, "--hlr", f"127.0.0.1:{port}",
                                     "--reason", "customer closed the account")
        assert status == 0, err
        assert f"SIM {order.iccid}" in out and "terminated through the card" in out
        assert network.get(order.msisdn) is None
    finally:
        stop(process)
    card = cards.get_card(db, order.iccid)
    assert (card.state, card.pending_action) == ("terminated", None)
    assert numbers.get_number(db, order.msisdn).state == "quarantined"
    with db.read() as conn:
        live = conn.execute(select(subscriber_numbers.c.id).where(
            subscriber_numbers.c.msisdn == int(order.msisdn), subscriber_numbers.c.until.is_(None))).all()
    assert live == []
