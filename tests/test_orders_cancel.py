"""Cancelling an order at every state before activation undoes everything done so far;
an activated order is returned instead: card terminated, number quarantined, money back."""

from __future__ import annotations

import pytest

from distribution_world import (  # noqa: F401  (distribution is a fixture)
    PRODUCT, WAREHOUSE, advance, distribution, place_order, snapshot,
)
from hkops.audit import query as audit_query
from hkops.cards import service as cards
from hkops.errors import Conflict, IllegalTransition, InvalidValue
from hkops.network import ProvisioningClient, TcpTransport
from hkops.numbers import service as numbers
from hkops.orders import service as orders
from hkops.payments import service as payments
from hkops.stock import service as stock
from test_cards_lifecycle import hlr  # noqa: F401  (fixture)


def on_hand(db) -> int:
    return sum(r["quantity"] for r in stock.on_hand(db, location=WAREHOUSE, product=PRODUCT))


def history(db, subject: str) -> list[tuple]:
    with db.read() as conn:
        return [(r["entity"], r["action"], r["from_state"], r["to_state"])
                for r in reversed(audit_query(conn, subject=subject, limit=200))]


def net(db, number: str) -> int:
    with db.read() as conn:
        return payments.balance(conn, orders.get_order(conn, number).id)


@pytest.mark.parametrize("state", ["draft", "approved", "paid_partly", "allocated", "shipped", "delivered"])
def test_cancelling_undoes_every_step_taken(distribution, state):
    db = distribution.db
    before = snapshot(db)
    stock_before = on_hand(db)
    if state == "draft":
        order = place_order(db, 1, submit=False)
    else:
        order = advance(db, place_order(db, 1).number, state)
    paid = net(db, order.number)

    cancelled = orders.cancel_order(db, order.number, actor="desk", reason="customer changed their mind")

    assert (cancelled.state, cancelled.reason) == ("cancelled", "customer changed their mind")
    after = snapshot(db)
    assert after["sims"] == before["sims"]  # every card in the state and place it was
    assert on_hand(db) == stock_before
    assert after["numbers"] == before["numbers"]  # the number is available again
    if cancelled.msisdn and state != "draft":
        assert numbers.get_number(db, cancelled.msisdn).state == "available"
        assert history(db, cancelled.msisdn)[-1] == ("number", "release", "assigned" if cancelled.iccid else "reserved",
                                                     "available")
    ledger = payments.list_payments(db, order=order.number)
    assert net(db, order.number) == 0
    refunds = [p for p in ledger if p.kind == "refund"]
    assert len(refunds) == len({p.method for p in ledger})  # one per method paid with, none if unpaid
    assert sum(p.amount_fen for p in ledger if p.kind == "refund") == paid
    trail = history(db, order.number)
    assert trail[-1] == ("order", "cancel", order.state, "cancelled")
    if state in ("shipped", "delivered"):
        assert ("shipment", "return", "delivered" if state == "delivered" else "created", "returned") in trail
        assert orders.order_detail(db, order.number)["shipment"]["state"] == "returned"
        assert [e[1] for e in history(db, cancelled.iccid)][-2:] == ["sell", "take_back"]
    elif cancelled.iccid:
        assert history(db, cancelled.iccid)[-1] == ("sim", "unallocate", "allocated", "in_stock")
    assert payments.reconcile(db).clean
    with pytest.raises(IllegalTransition, match="final"):
        orders.cancel_order(db, order.number, actor="desk", reason="twice")


def test_a_payment_in_two_methods_is_refunded_in_each(distribution):
    db = distribution.db
    order = advance(db, place_order(db, 2).number, "allocated")  # half by wechat, the rest by alipay
    orders.cancel_order(db, order.number, actor="desk", reason="out of area")
    refunds = {p.method: p.amount_fen for p in payments.list_payments(db, order=order.number) if p.kind == "refund"}
    assert refunds == {"wechat": order.total_fen // 2, "alipay": order.total_fen - order.total_fen // 2}


def test_a_delivered_order_whose_activation_waits_for_the_hlr_cannot_be_cancelled(distribution):
    db = distribution.db
    order = advance(db, place_order(db, 3).number, "delivered")
    down = ProvisioningClient(TcpTransport("127.0.0.1", 1, connect_timeout=0.2), retries=1, backoff=0, timeout=0.5)
    orders.activate_order(db, order.number, actor="desk", network=down)
    before = snapshot(db)
    with pytest.raises(Conflict, match="paired"):
        orders.cancel_order(db, order.number, actor="desk", reason="too slow")
    assert snapshot(db) == before


def test_a_reason_is_required_to_cancel(distribution):
    db = distribution.db
    order = place_order(db, 4)
    with pytest.raises(InvalidValue, match="reason"):
        orders.cancel_order(db, order.number, actor="desk", reason=" ")


@pytest.mark.parametrize("state", ["activated", "first_topup", "completed"])
def test_returning_an_activated_order_terminates_the_card_quarantines_the_number_and_refunds(distribution, hlr,
                                                                                              state):
    db = distribution.db
    order = advance(db, place_order(db, 5).number, state, network=hlr[1])
    paid = net(db, order.number)
    assert hlr[1].get(order.msisdn) is not None

    returned = orders.return_order(db, order.number, actor="desk", reason="does not work at home", network=hlr[1])

    assert returned.state == "returned"
    card = cards.get_card(db, order.iccid)
    assert (card.state, card.network_sync) == ("terminated", "none")
    assert hlr[1].get(order.msisdn) is None
    assert numbers.get_number(db, order.msisdn).state == "quarantined"
    refunds = [p for p in payments.list_payments(db, order=order.number) if p.kind == "refund"]
    assert sum(p.amount_fen for p in refunds) == paid and net(db, order.number) == 0
    assert history(db, order.number)[-1] == ("order", "return", state, "returned")
    assert payments.reconcile(db).clean


def test_a_partial_refund_on_return_shows_in_reconciliation(distribution, hlr):
    db = distribution.db
    order = advance(db, place_order(db, 6).number, "activated", network=hlr[1])
    with pytest.raises(InvalidValue, match="more than"):
        orders.return_order(db, order.number, actor="desk", reason="broken", refund_fen=order.total_fen + 1)
    orders.return_order(db, order.number, actor="desk", reason="broken", refund_fen=1_000, network=hlr[1])
    overpaid = payments.reconcile(db).overpaid
    assert [(r["order"], r["net_fen"]) for r in overpaid] == [(order.number, order.total_fen - 1_000)]


def test_an_order_not_yet_activated_cannot_be_returned(distribution):
    db = distribution.db
    order = advance(db, place_order(db, 7).number, "delivered")
    with pytest.raises(IllegalTransition, match="return needs an order that is activated"):
        orders.return_order(db, order.number, actor="desk", reason="no")
