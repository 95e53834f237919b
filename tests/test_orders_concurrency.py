"""Orders taken at once by several OS processes against one stock location and one number
pool, some one at a time and some in batches: fewer cards than orders, so some orders must
wait for stock. Every order is paid; no card and no number goes to two orders; once more
cards arrive the waiting orders are allocated, still without duplicates."""

from __future__ import annotations

import multiprocessing
from collections import Counter

from sqlalchemy import func, select

from distribution_world import PRODUCT, WAREHOUSE, build_distribution, rid
from hkops.audit import audit_log
from hkops.cards.tables import sims
from hkops.numbers.tables import numbers
from hkops.orders import intake
from hkops.orders import service as order_service
from hkops.orders.tables import orders
from hkops.payments.tables import payments
from hkops.stock import service as stock

WORKERS = 4
ORDERS_EACH = 50
BATCH = 10  # the odd workers take their orders in batches of this many
CARDS = 120  # for 200 orders: 80 must wait for stock
MORE_CARDS = 80  # held at an agent until the end, then transferred in


def take_orders(url: str, worker: int, start, results) -> None:
    """One OS process: wait for the others, then take and pay its orders, one by one (even
    workers) or a batch at a time (odd workers)."""
    from hkops.store.engine import Store

    store = Store(url)
    paid, errors = [], []
    start.wait(timeout=120)
    requests = [intake.OrderRequest(
        channel="direct", plan="CM-58", customer_name=f"客户{person}",
        resident_id=rid(person % 1000, birth=f"19{70 + person // 1000}0307"), contact="13900000000",
        ship_province="Beijing", ship_address="北京市朝阳区建国路 1 号", client_order_id=f"W{worker}-{n}")
        for n, person in enumerate(range(worker * ORDERS_EACH, (worker + 1) * ORDERS_EACH))]
    size = BATCH if worker % 2 else 1
    for first in range(0, ORDERS_EACH, size):
        try:
            placed = intake.create_orders(store, requests[first:first + size], actor=f"worker-{worker}")
            settled = order_service.pay_orders(store, [(o.number, o.total_fen, "alipay", o.client_order_id)
                                                       for o in placed], actor=f"worker-{worker}")
            paid += [(o.number, o.msisdn, o.iccid, o.state) for o in settled]
        except Exception as exc:  # reported to the test, which fails on it
            errors.append(f"{type(exc).__name__}: {exc}")
    store.dispose()
    results.put((worker, paid, errors))


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


def no_card_or_number_twice(db) -> None:
    with db.read() as conn:
        twice = conn.execute(select(orders.c.iccid).where(orders.c.iccid.is_not(None)).group_by(orders.c.iccid)
                             .having(func.count() > 1)).all()
        assert twice == []
        twice = conn.execute(select(orders.c.msisdn).group_by(orders.c.msisdn).having(func.count() > 1)).all()
        assert twice == []
        picks = Counter(conn.execute(select(audit_log.c.subject).where(audit_log.c.entity == "sim",
                                                                       audit_log.c.action == "allocate")).scalars())
        assert [iccid for iccid, times in picks.items() if times > 1] == []


def test_processes_taking_orders_at_once_never_sell_a_card_or_a_number_twice(world, tmp_path, monkeypatch):
    monkeypatch.setenv("HKOPS_SECRET_KEY_FILE", str(tmp_path / "secret.key"))  # the workers inherit it
    shop = build_distribution(world, tmp_path, cards=CARDS + MORE_CARDS, agent_cards=MORE_CARDS)

    reports = run_workers(world.url)

    assert [errors for *_, errors in reports] == [[]] * WORKERS
    paid = [p for _, got, _ in reports for p in got]
    assert len(paid) == WORKERS * ORDERS_EACH
    allocated = [p for p in paid if p[3] == "allocated"]
    waiting = [p for p in paid if p[3] == "paid"]
    assert len(allocated) == CARDS and len(waiting) == WORKERS * ORDERS_EACH - CARDS
    assert len({iccid for _, _, iccid, _ in allocated}) == CARDS and all(p[2] is None for p in waiting)
    assert len({msisdn for _, msisdn, _, _ in paid}) == WORKERS * ORDERS_EACH
    no_card_or_number_twice(world)
    with world.read() as conn:
        by_order = {r.number: r for r in conn.execute(select(orders))}
        holders = {str(r.msisdn): (r.state, r.holder) for r in conn.execute(
            select(numbers.c.msisdn, numbers.c.state, numbers.c.holder).where(numbers.c.holder.is_not(None)))}
        cards = dict(conn.execute(select(sims.c.iccid, sims.c.state).where(sims.c.state != "in_stock")).all())
        paid_orders = Counter(conn.execute(select(orders.c.number).join(payments, payments.c.order_id == orders.c.id))
                              .scalars())
    for number, msisdn, iccid, state in paid:
        assert (by_order[number].state, by_order[number].iccid) == (state, iccid)
        assert holders[msisdn] == ("assigned", number)  # paid: the number is the customer's, card or not
        assert paid_orders[number] == 1
    assert sorted(cards) == sorted(iccid for _, _, iccid, _ in allocated)
    # Picked cards are still on the shelf until shipped.
    assert stock.on_hand(world, location=WAREHOUSE, product=PRODUCT) == [
        {"location": WAREHOUSE, "product": PRODUCT, "quantity": CARDS}]

    stock.transfer(world, "AG-A3", WAREHOUSE, iccids=shop.agent_iccids, actor="desk")
    done = order_service.allocate_waiting(world, location=WAREHOUSE, actor="desk")

    assert sorted(done) == sorted(number for number, *_ in waiting)
    with world.read() as conn:
        states = dict(conn.execute(select(orders.c.state, func.count()).group_by(orders.c.state)).all())
    assert states == {"allocated": WORKERS * ORDERS_EACH}
    no_card_or_number_twice(world)
