"""Orders taken at once by several OS processes against one stock location and one number
pool: fewer cards than orders, so some payments must fail cleanly; afterwards no card and
no number has gone to two orders, and every failure left nothing half-written."""

from __future__ import annotations

import multiprocessing
from collections import Counter

from sqlalchemy import func, select

from distribution_world import PRODUCT, WAREHOUSE, build_distribution, rid
from hkops.audit import audit_log
from hkops.cards.tables import sims
from hkops.numbers.tables import numbers
from hkops.orders.tables import orders
from hkops.payments.tables import payments
from hkops.stock import service as stock

WORKERS = 4
ORDERS_EACH = 50
CARDS = 120  # for 200 orders: 80 must be refused at payment


def take_orders(url: str, worker: int, start, results) -> None:
    """One OS process: wait for the others, then take and pay its orders one by one."""
    from hkops.errors import Conflict
    from hkops.orders import service as order_service
    from hkops.store.engine import Store

    store = Store(url)
    paid, refused, errors = [], [], []
    start.wait(timeout=120)
    for n in range(ORDERS_EACH):
        person = worker * ORDERS_EACH + n
        try:
            order = order_service.create_order(
                store, channel="direct", plan="CM-58", customer_name=f"客户{person}",
                resident_id=rid(person % 1000, birth=f"19{70 + person // 1000}0307"), contact="13900000000",
                ship_province="Beijing", ship_address="北京市朝阳区建国路 1 号", client_order_id=f"W{worker}-{n}",
                actor=f"worker-{worker}")
        except Exception as exc:  # reported to the test, which fails on it
            errors.append(f"intake: {type(exc).__name__}: {exc}")
            continue
        try:
            order = order_service.pay_order(store, order.number, order.total_fen, method="alipay",
                                            reference=f"W{worker}-{n}", actor=f"worker-{worker}")
            paid.append((order.number, order.msisdn, order.iccid))
        except Conflict:
            refused.append((order.number, order.msisdn))
        except Exception as exc:
            errors.append(f"payment: {type(exc).__name__}: {exc}")
    store.dispose()
    results.put((worker, paid, refused, errors))


def run_workers(url: str) -> list[tuple]:
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(WORKERS), context.Queue()
    processes = [context.Process(target=take_orders, args=(url, w, start, results)) for w in range(WORKERS)]
    for process in processes:
        process.start()
    reports = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return reports


def test_processes_taking_orders_at_once_never_sell_a_card_or_a_number_twice(world, tmp_path, monkeypatch):
    monkeypatch.setenv("HKOPS_SECRET_KEY_FILE", str(tmp_path / "secret.key"))  # the workers inherit it
    build_distribution(world, tmp_path, cards=CARDS, agent_cards=0)

    reports = run_workers(world.url)

    assert [errors for *_, errors in reports] == [[]] * WORKERS
    paid = [p for _, got, _, _ in reports for p in got]
    refused = [r for _, _, got, _ in reports for r in got]
    assert len(paid) == CARDS and len(refused) == WORKERS * ORDERS_EACH - CARDS
    assert len({iccid for _, _, iccid in paid}) == CARDS
    assert len({msisdn for _, msisdn, _ in paid} | {msisdn for _, msisdn in refused}) == WORKERS * ORDERS_EACH

    with world.read() as conn:
        twice = conn.execute(select(orders.c.iccid).where(orders.c.iccid.is_not(None)).group_by(orders.c.iccid)
                             .having(func.count() > 1)).all()
        assert twice == []
        twice = conn.execute(select(orders.c.msisdn).group_by(orders.c.msisdn).having(func.count() > 1)).all()
        assert twice == []
        by_order = {r.number: r for r in conn.execute(select(orders))}
        holders = {str(r.msisdn): (r.state, r.holder) for r in conn.execute(
            select(numbers.c.msisdn, numbers.c.state, numbers.c.holder).where(numbers.c.holder.is_not(None)))}
        allocated = dict(conn.execute(select(sims.c.iccid, sims.c.state).where(sims.c.state != "in_stock")).all())
        picks = Counter(conn.execute(select(audit_log.c.subject).where(audit_log.c.entity == "sim",
                                                                       audit_log.c.action == "allocate")).scalars())
        paid_orders = set(conn.execute(select(orders.c.number).join(payments, payments.c.order_id == orders.c.id))
                          .scalars())
    for number, msisdn, iccid in paid:
        assert (by_order[number].state, by_order[number].iccid) == ("allocated", iccid)
        assert holders[msisdn] == ("assigned", number)
        assert allocated[iccid] == "allocated" and picks[iccid] == 1
    # A refused payment left its order approved, unpaid and without a card; its number stays held for it.
    for number, msisdn in refused:
        assert (by_order[number].state, by_order[number].iccid) == ("approved", None)
        assert number not in paid_orders
        assert holders[msisdn] == ("reserved", number)
    assert len(allocated) == len(picks) == CARDS
    # Picked cards are still on the shelf until shipped.
    assert stock.on_hand(world, location=WAREHOUSE, product=PRODUCT) == [
        {"location": WAREHOUSE, "product": PRODUCT, "quantity": CARDS}]
