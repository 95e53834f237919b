"""The payment ledger: idempotent collections and refunds, statement imports (all lines or
none) and reconciliation against what each order should have netted."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from distribution_world import advance, distribution, place_order, snapshot  # noqa: F401  (fixture)
from hkops.errors import Conflict, InvalidFile, InvalidValue
from hkops.orders import service as orders
from hkops.payments import service as payments


def test_the_same_payment_twice_is_one_payment_and_another_amount_under_its_reference_is_refused(distribution):
    db = distribution.db
    order = place_order(db, 1)
    first = payments.collect(db, order.number, 1_000, method="Alipay", reference="2026112522001", actor="desk")
    again = payments.collect(db, order.number, 1_000, method="alipay", reference="2026112522001", actor="desk")
    assert (again.id, again.created, first.created, first.method) == (first.id, False, True, "alipay")
    with pytest.raises(Conflict, match="recorded already"):
        payments.collect(db, order.number, 2_000, method="alipay", reference="2026112522001", actor="desk")
    other = place_order(db, 2)
    with pytest.raises(Conflict, match="recorded already"):
        payments.collect(db, other.number, 1_000, method="alipay", reference="2026112522001", actor="desk")
    assert len(payments.list_payments(db)) == 1


@pytest.mark.parametrize("amount, reason", [(0, "more than 0"), (-5, "more than 0"), (1.5, "whole number"),
                                            (True, "whole number")])
def test_amounts_are_positive_whole_fen(distribution, amount, reason):
    db = distribution.db
    order = place_order(db, 3)
    with pytest.raises(InvalidValue, match=reason):
        payments.collect(db, order.number, amount, method="cash", reference="c-1", actor="desk")


def test_refunds_never_exceed_what_was_netted_and_balance_is_collections_minus_refunds(distribution):
    db = distribution.db
    order = place_order(db, 4)
    payments.collect(db, order.number, 3_000, method="wechat", reference="w-1", actor="desk")
    payments.refund(db, order.number, 1_000, method="wechat", reference="w-1-r", actor="desk", note="discount")
    with pytest.raises(Conflict, match="netted ¥20.00"):
        payments.refund(db, order.number, 2_001, method="wechat", reference="w-1-r2", actor="desk")
    with db.read() as conn:
        assert payments.balance(conn, order.id) == 2_000
        assert payments.net_by_method(conn, order.id) == {"wechat": 2_000}
    assert [p.kind for p in payments.list_payments(db, order=order.number)] == ["refund", "collection"]


def test_reconciliation_finds_unpaid_underpaid_and_overpaid_orders(distribution):
    db = distribution.db
    unpaid = place_order(db, 5)
    underpaid = place_order(db, 6)
    payments.collect(db, underpaid.number, 100, method="cash", reference="u-1", actor="desk")
    overpaid = advance(db, place_order(db, 7).number, "allocated")
    payments.collect(db, overpaid.number, 500, method="cash", reference="o-1", actor="desk")
    cancelled = place_order(db, 8)
    orders.cancel_order(db, cancelled.number, actor="desk", reason="no")
    payments.collect(db, cancelled.number, 300, method="cash", reference="c-1", actor="desk")
    fine = advance(db, place_order(db, 9).number, "allocated")

    result = payments.reconcile(db)

    assert [(r["order"], r["difference_fen"]) for r in result.unpaid] == [(unpaid.number, -unpaid.total_fen)]
    assert [(r["order"], r["net_fen"]) for r in result.underpaid] == [(underpaid.number, 100)]
    assert [(r["order"], r["difference_fen"]) for r in result.overpaid] == [(overpaid.number, 500),
                                                                          (cancelled.number, 300)]
    assert fine.number not in str(result.as_dict())


def statement(path, lines: list[str], header: bool = True):
    text = ("order,amount,method,reference,time\n" if header else "") + "\n".join(lines) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_statement_is_imported_whole_and_again_changes_nothing(distribution, tmp_path):
    db = distribution.db
    a, b = place_order(db, 10), place_order(db, 11)
    yuan = f"{a.total_fen // 100}.{a.total_fen % 100:02d}"
    path = statement(tmp_path / "bank.csv", [f"{a.number},{yuan},bank,B-001,2026-11-25 10:00:00",
                                             f"{b.number},12.50,bank,B-002,2026-11-25T10:05:00+08:00"])
    imported = payments.import_payments(db, path, actor="finance")
    assert [(p.order, p.amount_fen, p.created) for p in imported] == [(a.number, a.total_fen, True),
                                                                      (b.number, 1_250, True)]
    assert imported[0].at == datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)  # Asia/Shanghai time in the file
    # The statement paid order a in full: it moves on as a payment at the desk would.
    assert orders.get_order(db, a.number).state == "allocated"
    assert orders.get_order(db, b.number).state == "approved"
    before = snapshot(db)
    assert [p.created for p in payments.import_payments(db, path, actor="finance")] == [False, False]
    assert snapshot(db) == before


def test_a_statement_with_bad_lines_lists_every_one_and_imports_nothing(distribution, tmp_path):
    db = distribution.db
    a = place_order(db, 12)
    payments.collect(db, a.number, 100, method="bank", reference="B-9", actor="desk")
    path = statement(tmp_path / "bad.csv", [
        f"{a.number},10.00,bank,B-100,2026-11-25 10:00:00",   # line 2: fine
        "SO99999999,10.00,bank,B-101,2026-11-25 10:00:00",    # line 3: no such order
        f"{a.number},ten,bank,B-102,2026-11-25 10:00:00",     # line 4: amount
        f"{a.number},10.00,bank,B-100,2026-11-25 10:00:00",   # line 5: repeats line 2
        f"{a.number},10.00,bank,B-9,2026-11-25 10:00:00",     # line 6: another amount for a recorded payment
        f"{a.number},10.00,bank,B-104,yesterday",             # line 7: time
        f"{a.number},10.00,bank",                              # line 8: fields missing
    ])
    before = snapshot(db)
    with pytest.raises(InvalidFile) as caught:
        payments.import_payments(db, path, actor="finance")
    assert [p.line for p in caught.value.problems] == [3, 4, 5, 6, 7, 8]
    assert snapshot(db) == before


def test_an_import_may_overpay_and_reconciliation_shows_it(distribution, tmp_path):
    db = distribution.db
    order = advance(db, place_order(db, 13).number, "allocated")
    path = statement(tmp_path / "dup.csv", [f"{order.number},20.00,alipay,A-1,2026-11-25 09:00:00"], header=False)
    payments.import_payments(db, path, actor="finance")
    assert [(r["order"], r["difference_fen"]) for r in payments.reconcile(db).overpaid] == [(order.number, 2_000)]
