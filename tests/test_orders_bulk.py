"""Orders taken and paid set-wise: a batch (a channel feed, an order file) is checked as a whole,
every bad line listed with its line number and nothing written; a good batch is approved and
paid together, cards picked without duplicates; orders the stock cannot serve stay paid and
are allocated when cards arrive."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from distribution_world import (  # noqa: F401  (distribution is a fixture)
    PLAN, PLAN_UNICOM, WAREHOUSE, advance, birth_for_age, distribution, place_order, rid, snapshot,
)
from hkops.audit import audit_log
from hkops.errors import InvalidValues
from hkops.numbers import service as numbers
from hkops.orders import intake
from hkops.orders import service as orders
from hkops.orders.intake import OrderRequest
from hkops.orders.tables import orders as orders_table
from hkops.payments import service as payments
from hkops.stock import service as stock
from hkops.subscribers.tables import subscribers
from strategies import hkops_cli  # noqa: F401  (fixture)


def request(n: int, **values) -> OrderRequest:
    """A direct order for customer ``n`` of the China Mobile plan, shipped to Beijing."""
    arguments = dict(channel="direct", plan=PLAN, customer_name=f"客户{n}", resident_id=rid(n),
                     contact="13900000000", ship_province="北京", ship_address="北京市朝阳区建国路 1 号")
    return OrderRequest(**(arguments | values))


def count(db, table) -> int:
    with db.read() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


def test_a_batch_with_bad_lines_lists_every_one_with_its_line_number_and_writes_nothing(distribution):
    db = distribution.db
    sold = advance(db, place_order(db, 90).number, "allocated")  # its number is assigned to customer 90
    free = "13800130777"
    batch = [
        request(1),                                                   # 1
        request(2, resident_id=rid(2, birth=birth_for_age(15))),      # 2: 15 years old
        request(3, ship_province="新疆"),                              # 3: the plan does not ship there
        *[request(4) for _ in range(6)],                              # 4-9: the sixth number for one person
        request(5, plan="NOPE"),                                      # 10: no such plan
        request(6, msisdn=sold.msisdn),                               # 11: a number sold to someone else
        request(7, msisdn=free),                                      # 12
        request(8, msisdn=free),                                      # 13: the number line 12 asks for
        request(9, plan=PLAN_UNICOM),                                 # 14
    ]
    before = snapshot(db)

    with pytest.raises(InvalidValues) as refused:
        intake.create_orders(db, batch, actor="feed")

    by_line = {}
    for problem in refused.value.problems:
        by_line.setdefault(problem.line, []).append(str(problem))
    assert sorted(by_line) == [2, 3, 9, 10, 11, 13]
    assert "age 15 is outside plan CM-58's limits 16–60" in by_line[2][0]
    assert "does not ship to Xinjiang" in by_line[3][0]
    assert "already holds 5 China Mobile numbers" in by_line[9][0] and "一证五号" in by_line[9][0]
    assert "plan 'NOPE' does not exist" in by_line[10][0]
    assert f"is assigned (held by {sold.number}), not available" in by_line[11][0]
    assert "is asked for by line 12 too" in by_line[13][0]
    assert all(len(reasons) == 1 for reasons in by_line.values()), by_line
    assert refused.value.source == "orders" and rid(2) not in str(refused.value)
    assert snapshot(db) == before  # no order, subscriber, payment, audit record or number state changed


def test_a_good_batch_is_approved_with_distinct_numbers_and_a_retry_returns_the_same_orders(distribution):
    db = distribution.db
    batch = [request(n, client_order_id=f"feed-{n}") for n in range(1, 6)]
    batch += [request(6, channel="A3", client_order_id="a3-6"), request(1, client_order_id="feed-1b"),
              request(7, plan=PLAN_UNICOM, ship_province="广东", client_order_id="feed-7")]

    placed = intake.create_orders(db, batch, actor="feed")

    assert [o.state for o in placed] == ["approved"] * 8 and all(o.created for o in placed)
    assert len({o.msisdn for o in placed}) == 8 and len({o.number for o in placed}) == 8
    assert placed[7].msisdn.startswith("1860755")  # China Unicom, from the Guangdong block
    assert (placed[5].location, [a["code"] for a in placed[5].agent_chain]) == ("AG-A3", ["A3", "A2", "A1"])
    assert placed[0].subscriber_id == placed[6].subscriber_id  # one person, registered once
    assert count(db, subscribers) == 7
    for order in placed:
        number = numbers.get_number(db, order.msisdn)
        assert (number.state, number.holder) == ("reserved", order.number)
    with db.read() as conn:
        actions = conn.execute(select(audit_log.c.action).where(audit_log.c.entity == "order")
                               .order_by(audit_log.c.id)).scalars().all()
    assert actions == ["create", "submit", "approve"] * 8

    before = snapshot(db)
    again = intake.create_orders(db, batch, actor="feed")
    assert [(o.number, o.msisdn, o.created) for o in again] == [(o.number, o.msisdn, False) for o in placed]
    assert snapshot(db) == before

    mixed = intake.create_orders(db, [batch[0], request(8, client_order_id="feed-8")], actor="feed")
    assert [(o.number == placed[0].number, o.created) for o in mixed] == [(True, False), (False, True)]
    with pytest.raises(InvalidValues) as refused:
        intake.create_orders(db, [batch[1], request(3, client_order_id="feed-3", ship_address="上海市 9 号")],
                             actor="feed")
    assert [(p.line, p.field) for p in refused.value.problems] == [(2, "client_order_id")]
    assert "another ship_address" in refused.value.problems[0].reason


def test_paying_a_batch_allocates_distinct_cards_lowest_first(distribution):
    db = distribution.db
    placed = intake.create_orders(db, [request(n) for n in range(1, 6)] + [request(6, channel="A3")], actor="feed")

    paid = orders.pay_orders(db, [(o.number, o.total_fen, "alipay", f"ALI-{o.id}") for o in placed], actor="feed")

    assert [o.state for o in paid] == ["allocated"] * 6
    assert [o.iccid for o in paid[:5]] == distribution.warehouse_iccids[:5]
    assert paid[5].iccid == distribution.agent_iccids[0]
    for order in paid:
        assert (numbers.get_number(db, order.msisdn).state, numbers.get_number(db, order.msisdn).holder) == (
            "assigned", order.number)
    assert len(payments.list_payments(db)) == 6 and payments.reconcile(db).clean
    before = snapshot(db)
    again = orders.pay_orders(db, [(o.number, o.total_fen, "alipay", f"ALI-{o.id}") for o in placed], actor="feed")
    assert [o.iccid for o in again] == [o.iccid for o in paid] and snapshot(db) == before


def test_a_payment_batch_with_bad_lines_lists_every_one_and_records_nothing(distribution):
    db = distribution.db
    one, two = intake.create_orders(db, [request(1), request(2)], actor="feed")
    before = snapshot(db)
    with pytest.raises(InvalidValues) as refused:
        orders.pay_orders(db, [(one.number, one.total_fen, "alipay", "A-1"),
                               ("SO99999999", 100, "alipay", "A-2"),
                               (two.number, two.total_fen + 1, "alipay", "A-3"),
                               (two.number, 100, "alipay", "A-1"),
                               (two.number, -1, "alipay", "A-4")], actor="feed")
    assert [(p.line, p.field) for p in refused.value.problems] == [
        (2, "order"), (3, "amount"), (4, "reference"), (5, "amount")]
    assert "SO99999999 does not exist" in refused.value.problems[0].reason
    assert snapshot(db) == before


def test_orders_the_stock_cannot_serve_are_paid_and_allocated_when_cards_arrive(distribution):
    db = distribution.db
    on_shelf = len(distribution.warehouse_iccids)
    placed = intake.create_orders(db, [request(n) for n in range(1, on_shelf + 4)], actor="feed")

    paid = orders.pay_orders(db, [(o.number, o.total_fen, "wechat", f"WX-{o.id}") for o in placed], actor="feed")

    assert [o.state for o in paid] == ["allocated"] * on_shelf + ["paid"] * 3
    assert [o.iccid for o in paid[:on_shelf]] == distribution.warehouse_iccids
    waiting = [o.number for o in paid[on_shelf:]]
    for order in paid[on_shelf:]:
        assert order.iccid is None and numbers.get_number(db, order.msisdn).state == "assigned"
    with db.read() as conn:
        waits = conn.execute(select(audit_log.c.subject).where(audit_log.c.action == "wait_for_stock")
                             .order_by(audit_log.c.id)).scalars().all()
    assert waits == waiting
    assert payments.reconcile(db).clean  # the money was taken for every order
    assert orders.allocate_waiting(db, actor="desk") == []

    stock.transfer(db, "AG-A3", WAREHOUSE, iccids=distribution.agent_iccids[:2], actor="desk")
    assert orders.allocate_waiting(db, location=WAREHOUSE, actor="desk") == waiting[:2]  # oldest first
    stock.transfer(db, "AG-A3", WAREHOUSE, iccids=distribution.agent_iccids[2:], actor="desk")
    assert orders.allocate_waiting(db, actor="desk") == waiting[2:]

    with db.read() as conn:
        states = dict(conn.execute(select(orders_table.c.state, func.count()).group_by(orders_table.c.state)).all())
        twice = conn.execute(select(orders_table.c.iccid).where(orders_table.c.iccid.is_not(None))
                             .group_by(orders_table.c.iccid).having(func.count() > 1)).all()
    assert states == {"allocated": on_shelf + 3} and twice == []


def test_a_paid_order_waiting_for_stock_can_be_cancelled(distribution):
    db = distribution.db
    placed = intake.create_orders(db, [request(n, channel="A2") for n in (1, 2)], actor="feed")
    paid = orders.pay_orders(db, [(o.number, o.total_fen, "bank", f"B-{o.id}") for o in placed], actor="feed")
    assert [o.state for o in paid] == ["paid", "paid"]  # A2 holds no cards

    cancelled = orders.cancel_order(db, paid[0].number, actor="desk", reason="customer would not wait")

    assert cancelled.state == "cancelled" and numbers.get_number(db, cancelled.msisdn).state == "available"
    assert payments.reconcile(db).clean
    stock.transfer(db, WAREHOUSE, "AG-A2", iccids=distribution.warehouse_iccids[:1], actor="desk")
    assert orders.allocate_waiting(db, location="AG-A2", actor="desk") == [paid[1].number]


def test_check_order_says_what_intake_would_without_writing(distribution):
    db = distribution.db
    before = snapshot(db)
    good = intake.check_order(db, request(1))
    assert good.problems == [] and good.msisdn.startswith("1380013") and good.quote.total_fen >= 10_000
    assert (good.blacklisted, good.held) == (None, 0)
    young = intake.check_order(db, request(2, resident_id=rid(2, birth=birth_for_age(15)), contact="12"))
    assert {p.field for p in young.problems} == {"customer", "contact"}
    assert snapshot(db) == before
    placed = place_order(db, 3, client_order_id="web-3")
    again = intake.check_order(db, request(3, client_order_id="web-3"))
    assert [p.field for p in again.problems] == ["client_order_id"] and placed.number in str(again.problems[0])


# ---------------------------------------------------------------- hkops orders import

HEADER = "plan,customer_name,resident_id,contact,ship_province,ship_address,channel,client_order_id\n"


@pytest.fixture
def cli(distribution, hkops_cli):
    return lambda *args: hkops_cli(distribution.db, *args)


def test_an_order_file_is_imported_whole_and_a_bad_one_exits_2_listing_every_bad_line(cli, distribution, tmp_path):
    db = distribution.db
    good = tmp_path / "orders.csv"
    good.write_text(HEADER + f"{PLAN},王芳,{rid(1)},13900000000,北京,北京市朝阳区 1 号,,F-1\n"
                    f"{PLAN},李雷,{rid(2)},13900000001,Beijing,北京市海淀区 2 号,A3,F-2\n", encoding="utf-8")
    status, out, err = cli("orders", "import", str(good))
    assert status == 0 and "2 order(s) placed" in out, err
    assert [o.channel for o in orders.list_orders(db)] == ["A3", "direct"]
    status, out, _ = cli("orders", "import", str(good))
    assert status == 0 and "0 order(s) placed" in out and "2 placed before" in out

    bad = tmp_path / "bad.csv"
    young = rid(3, birth=birth_for_age(15))
    bad.write_text(HEADER + f"{PLAN},韩梅,{rid(4)},13900000000,北京,北京市 4 号,,F-4\n"
                   f"{PLAN},小明,{young},13900000000,北京,北京市 5 号,,F-5\n"
                   f"{PLAN},张三,{rid(6)},13900000000\n"
                   f"{PLAN},李四,{rid(7)},13900000000,新疆,乌鲁木齐 7 号,,F-7\n", encoding="utf-8")
    before = snapshot(db)
    status, out, err = cli("orders", "import", str(bad))
    assert status == 2 and out == ""
    assert "3 bad line(s); nothing imported" in err
    assert "line 3: customer" in err and "line 4: line" in err and "line 5: customer" in err
    assert young not in err and rid(6) not in err
    assert snapshot(db) == before
