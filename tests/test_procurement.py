"""Procurement: purchase orders from draft to closed; receiving a vendor card file against a
line imports the cards into the PO's warehouse, the stock ledger and the PO's figures in
one transaction, and a file that does not fit the order changes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from hkops.audit import query as audit_query
from hkops.cards.tables import sim_batches, sims
from hkops.catalogue.service import add_product
from hkops.errors import IllegalTransition, InvalidFile, InvalidValue, InvalidValues, NotFound
from hkops.procurement import service as po
from hkops.procurement.tables import po_receipts
from hkops.stock import service as stock
from strategies import snapshot
from test_vendor_files import card_csv, make_cards

CM, CU = "CM-NANO", "CU-NANO"


@pytest.fixture
def buyer(world, tmp_path, monkeypatch):
    """Two products, a vendor, a warehouse and an agent location."""
    monkeypatch.setenv("HKOPS_SECRET_KEY_FILE", str(tmp_path / "secret.key"))
    add_product(world, CM, "China Mobile nano SIM", "China Mobile", "nano", actor="tester")
    add_product(world, CU, "China Unicom nano SIM", "China Unicom", "nano", actor="tester")
    po.add_vendor(world, "acme", "Acme Cards", actor="tester")
    stock.add_location(world, "WH-BJ", "Beijing warehouse", actor="tester")
    stock.add_location(world, "AG-001", "Agent one", "agent", actor="tester")
    return world


def card_file(tmp_path, count: int, *, start: int = 0, name: str | None = None, unicom: bool = False):
    cards = make_cards(count, start=start, mnc="01" if unicom else "00", issuer="01" if unicom else "00")
    path = tmp_path / f"{name or ('cu' if unicom else 'cm')}-delivery-{start}.csv"
    path.write_text(card_csv(cards), encoding="utf-8")
    return path


def confirmed(db, lines, **kwargs) -> str:
    number = po.create_po(db, "ACME", "WH-BJ", lines, actor="ana", **kwargs)
    po.confirm(db, number, actor="ana")
    return number


def po_actions(db, number):
    with db.read() as conn:
        rows = audit_query(conn, subject=number, entity="po", limit=100)
    return [(r["action"], r["from_state"], r["to_state"]) for r in reversed(rows)]


def test_receiving_the_exact_quantity_puts_the_cards_in_the_warehouse_ledger_and_po(buyer, tmp_path):
    number = confirmed(buyer, [(CM, 20, 350)], extra_cost_fen=1_000)
    assert number == "PO000001"
    receipt = po.receive(buyer, number, card_file(tmp_path, 20), actor="ana")
    assert (receipt.state, receipt.product, receipt.quantity, receipt.over_quantity, receipt.landed_unit_cost_fen) == (
        "received", CM, 20, 0, 350 + 50)
    with buyer.read() as conn:
        batch = conn.execute(select(sim_batches)).mappings().one()
        places = set(conn.execute(select(sims.c.location, sims.c.state)).all())
    assert (batch["product"], batch["purchase_order"], batch["vendor"], batch["quantity"]) == (CM, number, "Acme Cards", 20)
    assert places == {("WH-BJ", "in_stock")}
    moves = stock.ledger(buyer, document=number)
    assert len(moves) == 20 and {(m["from_location"], m["to_location"], m["kind"]) for m in moves} == {
        ("VENDOR", "WH-BJ", "receipt")}
    assert stock.on_hand(buyer) == [{"location": "WH-BJ", "product": CM, "quantity": 20}]
    order = po.get_po(buyer, number)
    assert (order.ordered, order.received, order.under_delivered, order.received_cost_fen) == (20, 20, 0, 20 * 400)
    assert po_actions(buyer, number) == [("create", None, "draft"), ("confirm", "draft", "confirmed"),
                                         ("receive", "confirmed", "received")]


def test_a_partial_delivery_leaves_the_order_partially_received_until_the_rest_comes(buyer, tmp_path):
    number = confirmed(buyer, [(CM, 30, 300)])
    assert po.receive(buyer, number, card_file(tmp_path, 10), actor="ana").state == "partially_received"
    assert po.get_po(buyer, number).lines[0].outstanding == 20
    assert po.receive(buyer, number, card_file(tmp_path, 20, start=10), actor="ana").state == "received"
    order = po.get_po(buyer, number)
    assert ([r.quantity for r in order.receipts], order.lines[0].received, order.lines[0].outstanding) == ([10, 20], 30, 0)


def test_more_cards_than_the_line_expects_are_refused_unchanged_unless_accepted_on_purpose(buyer, tmp_path):
    number = confirmed(buyer, [(CM, 10, 300)])
    path = card_file(tmp_path, 12)
    before = snapshot(buyer)
    with pytest.raises(InvalidValue) as caught:
        po.receive(buyer, number, path, actor="ana")
    assert (caught.value.field, caught.value.value) == ("quantity", 12)
    assert "still expects 10" in str(caught.value) and "2 too many" in str(caught.value)
    assert snapshot(buyer) == before
    receipt = po.receive(buyer, number, path, accept_over=True, actor="ana")
    assert (receipt.quantity, receipt.over_quantity, receipt.state) == (12, 2, "received")
    with buyer.read() as conn:
        assert conn.execute(select(po_receipts.c.over_quantity)).scalar() == 2
        event = audit_query(conn, subject=number, action="receive")[0]
    assert event["details"]["over_quantity"] == 2 and "2 card(s) over" in event["reason"]
    assert po.get_po(buyer, number).over_received == 2


def test_a_file_of_another_carrier_is_refused_and_changes_nothing(buyer, tmp_path):
    number = confirmed(buyer, [(CM, 5, 300)])
    before = snapshot(buyer)
    with pytest.raises(InvalidFile) as caught:
        po.receive(buyer, number, card_file(tmp_path, 5, unicom=True), actor="ana")
    assert "imsi" in {p.field for p in caught.value.problems} and "China Mobile" in str(caught.value)
    assert snapshot(buyer) == before


def test_an_order_with_several_lines_needs_the_product_received(buyer, tmp_path):
    number = confirmed(buyer, [(CM, 5, 300), (CU, 5, 300)])
    with pytest.raises(InvalidValue, match="has 2 lines"):
        po.receive(buyer, number, card_file(tmp_path, 5), actor="ana")
    with pytest.raises(InvalidValue, match="is not on purchase order"):
        po.receive(buyer, number, card_file(tmp_path, 5), product="CT-NANO", actor="ana")
    receipt = po.receive(buyer, number, card_file(tmp_path, 5, unicom=True), product="cu-nano", actor="ana")
    assert (receipt.product, receipt.state) == (CU, "partially_received")


def test_cancel_and_close_follow_the_order_lifecycle(buyer, tmp_path):
    draft = po.create_po(buyer, "ACME", "WH-BJ", [(CM, 5, 300)], actor="ana")
    with pytest.raises(IllegalTransition, match="it is draft"):
        po.receive(buyer, draft, card_file(tmp_path, 5), actor="ana")
    with pytest.raises(IllegalTransition, match="cannot close"):
        po.close(buyer, draft, actor="ana")
    assert po.cancel(buyer, draft, actor="ana", reason="vendor out of stock").state == "cancelled"
    with pytest.raises(IllegalTransition):
        po.confirm(buyer, draft, actor="ana")

    number = confirmed(buyer, [(CM, 10, 300), (CU, 4, 300)])
    po.receive(buyer, number, card_file(tmp_path, 6), product=CM, actor="ana")
    with pytest.raises(IllegalTransition, match="cannot cancel"):
        po.cancel(buyer, number, actor="ana")
    closed = po.close(buyer, number, actor="ana", reason="vendor cannot deliver the rest")
    assert (closed.state, closed.received, closed.under_delivered) == ("closed", 6, 8)
    with buyer.read() as conn:
        event = audit_query(conn, subject=number, action="close")[0]
    assert (event["details"]["under_delivered"], event["details"]["short_by_product"]) == (8, {CM: 4, CU: 4})
    assert (event["from_state"], event["to_state"]) == ("partially_received", "closed")
    with pytest.raises(IllegalTransition):
        po.receive(buyer, number, card_file(tmp_path, 4, start=6), product=CM, actor="ana")
    with pytest.raises(NotFound):
        po.confirm(buyer, "PO999999", actor="ana")


def test_landed_cost_shares_the_extra_cost_over_the_ordered_cards_to_the_nearest_fen(buyer, tmp_path):
    assert po.landed_unit_cost(100, 100, 7) == 114  # 14.29 fen a card
    assert po.landed_unit_cost(100, 5, 2) == 103  # 2.5 rounds up
    assert po.landed_unit_cost(100, 0, 9) == 100
    number = confirmed(buyer, [(CM, 3, 100), (CU, 4, 200)], extra_cost_fen=100)
    assert po.receive(buyer, number, card_file(tmp_path, 3), product=CM, actor="ana").landed_unit_cost_fen == 114
    assert po.receive(buyer, number, card_file(tmp_path, 4, unicom=True), product=CU,
                      actor="ana").landed_unit_cost_fen == 214
    order = po.get_po(buyer, number)
    assert (order.ordered_cost_fen, order.received_cost_fen) == (3 * 100 + 4 * 200 + 100, 3 * 114 + 4 * 214)


def test_a_bad_purchase_order_lists_every_problem_and_writes_nothing(buyer):
    before = snapshot(buyer)
    with pytest.raises(InvalidValues) as caught:
        po.create_po(buyer, "NOBODY", "AG-001", [(CM, 0, 300), ("XX", 5, -1), ("ZZ", 5, 300)], actor="ana")
    fields = {p.field for p in caught.value.problems}
    assert fields == {"vendor", "warehouse", "line 1 quantity", "line 2 unit_cost_fen", "product"}
    with pytest.raises(InvalidValue, match="at least one line"):
        po.create_po(buyer, "ACME", "WH-BJ", [], actor="ana")
    assert snapshot(buyer) == before


def test_orders_are_listed_newest_first_by_state(buyer):
    first = po.create_po(buyer, "ACME", "WH-BJ", [(CM, 5, 300)], actor="ana")
    second = confirmed(buyer, [(CU, 5, 300)], note="for the Unicom launch")
    assert [o.number for o in po.list_pos(buyer)] == [second, first] == ["PO000002", "PO000001"]
    assert [o.number for o in po.list_pos(buyer, state="confirmed")] == [second]
    assert po.get_po(buyer, second).note == "for the Unicom launch"
    with pytest.raises(InvalidValue):
        po.list_pos(buyer, state="lost")
