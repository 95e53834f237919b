"""Sales orders: part of ``python -m bench distribution --json``.

Every figure takes 2,000 direct orders from intake through approval and allocation on a
fresh SQLite file (one number block, a warehouse holding 2,000 cards), and is the orders
per second of that whole run (the province names, read once per process, are loaded
before timing):

- ``orders_per_s`` (goal ≥ 500): set-wise, as a channel feed or an order-file import
  submits them: ``create_orders`` in batches of 500 (form checks, real-name checks,
  一证五号 counted for the batch, blacklist, numbers chosen from the pool and reserved,
  subscribers registered with the resident ID encrypted, quotes, each order's sealed copy
  of the ID), then ``pay_orders`` for each batch (ledger rows, numbers assigned, cards
  picked from the warehouse, orders allocated): two transactions per 500 orders, audit
  included.
- ``orders_single_per_s``: the same work one order at a time, ``create_order`` then
  ``pay_order`` (each a batch of one): two transactions an order, as at the counter.
- ``orders_naive_per_s``: the anchor, one order at a time: per order one transaction that
  only inserts the order row and updates the number and the card, with no check, no
  subscriber, no encryption, no ledger and no audit. What intake costs in the naive shape
  most order systems start from.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

COUNT = 2_000
BATCH = 500
PLAN, PRODUCT, WAREHOUSE = "CM-58", "CM-NANO", "WH-BJ"


def _resident_id(n: int) -> str:
    from stdnum.cn import ric

    body = f"110105{19800101 + (n // 900) * 10_000}{100 + n % 900:03d}"
    return body + ric.calc_check_digit(body + "0")


def _world(work: Path, name: str, count: int):
    """A fresh SQLite database with one block, the catalogue, a warehouse and ``count`` cards in it."""
    from sqlalchemy import update

    from bench.network import _card_file
    from hkops import carriers
    from hkops.cards.batches import import_sim_file
    from hkops.cards.tables import sim_batches
    from hkops.catalogue import service as catalogue
    from hkops.numbers import service as numbers
    from hkops.security.crypto import Keyring
    from hkops.stock import service as stock
    from hkops.store import migrate
    from hkops.store.engine import Store

    store = Store(f"sqlite:///{work / name}")
    migrate.upgrade(store)
    keyring = Keyring.generate()
    with store.write() as conn:
        carriers.configure(conn, ["China Mobile"], actor="bench")
    numbers.add_blocks(store, ["1380013"], actor="bench")
    catalogue.add_product(store, PRODUCT, "China Mobile nano", "China Mobile", "nano", actor="bench")
    catalogue.add_plan(store, PLAN, "Mobile 58", "China Mobile", monthly_fee_fen=5_800, data_mb=30_720,
                       voice_minutes=300, sms=100, first_topup_fen=5_000, actor="bench")
    catalogue.set_price(store, PLAN, 0, 10_000, actor="bench")
    stock.add_location(store, WAREHOUSE, "Beijing warehouse", "warehouse", actor="bench")
    path = work / f"{name}.csv"
    _card_file(path, count)
    batch = import_sim_file(store, path, carrier="China Mobile", actor="bench", location=WAREHOUSE, keyring=keyring)
    with store.write() as conn:
        conn.execute(update(sim_batches).where(sim_batches.c.id == batch.id).values(product=PRODUCT))
    catalogue.canonical_province("北京")  # the province names are read once per process (~0.8 s), not timed
    return store, keyring


def _request(n: int):
    from hkops.orders.intake import OrderRequest

    return OrderRequest(channel="direct", plan=PLAN, customer_name=f"客户{n}", resident_id=_resident_id(n),
                        contact="13900000000", ship_province="北京", ship_address="北京市朝阳区建国路 1 号")


def bench_orders(work: Path, count: int = COUNT) -> float:
    """create_orders then pay_orders, BATCH orders at a time; orders per second."""
    from hkops.orders import intake
    from hkops.orders import service as orders

    store, keyring = _world(work, "orders.db", count)
    try:
        started = time.perf_counter()
        for first in range(0, count, BATCH):
            placed = intake.create_orders(store, [_request(n) for n in range(first, min(first + BATCH, count))],
                                          actor="bench", keyring=keyring)
            paid = orders.pay_orders(store, [(o.number, o.total_fen, "alipay", f"A{o.id}") for o in placed],
                                     actor="bench")
            assert all(o.state == "allocated" for o in paid), paid
        return count / (time.perf_counter() - started)
    finally:
        store.dispose()


def bench_single(work: Path, count: int = COUNT) -> float:
    """create_order + pay_order, one order at a time; orders per second."""
    from hkops.orders import intake
    from hkops.orders import service as orders

    store, keyring = _world(work, "single.db", count)
    try:
        started = time.perf_counter()
        for n in range(count):
            request = _request(n)
            order = intake.create_order(store, channel=request.channel, plan=request.plan,
                                        customer_name=request.customer_name, resident_id=request.resident_id,
                                        contact=request.contact, ship_province=request.ship_province,
                                        ship_address=request.ship_address, actor="bench", keyring=keyring)
            order = orders.pay_order(store, order.number, order.total_fen, method="alipay", reference=f"A{n}",
                                     actor="bench")
            assert order.state == "allocated", order
        return count / (time.perf_counter() - started)
    finally:
        store.dispose()


def bench_naive(work: Path, count: int = COUNT) -> float:
    """The anchor: order row inserted, number and card updated, one transaction each, nothing else."""
    from sqlalchemy import select, update

    from hkops.cards.tables import sims
    from hkops.numbers.tables import numbers
    from hkops.orders.tables import orders
    from hkops.timeutil import utc_now

    store, _ = _world(work, "naive.db", count)
    try:
        with store.read() as conn:
            free = list(conn.execute(select(numbers.c.msisdn).where(numbers.c.state == "available")
                                     .order_by(numbers.c.msisdn).limit(count)).scalars())
            cards = list(conn.execute(select(sims.c.iccid).order_by(sims.c.iccid)).scalars())
        started = time.perf_counter()
        for n in range(count):
            now = utc_now()
            with store.write() as conn:
                conn.execute(orders.insert().values(
                    number=f"SO{n + 1:08d}", channel="direct", plan=PLAN, product=PRODUCT, carrier="China Mobile",
                    state="allocated", msisdn=free[n], iccid=cards[n], location=WAREHOUSE, customer_name=f"客户{n}",
                    id_masked="110105********0000", resident_id_hash="-", resident_id_enc="-", contact="13900000000",
                    ship_province="Beijing", ship_address="北京市朝阳区建国路 1 号", price_fen=10_000, total_fen=10_000,
                    created_at=now, created_by="bench", changed_at=now))
                conn.execute(update(numbers).where(numbers.c.msisdn == free[n])
                             .values(state="assigned", holder=f"SO{n + 1:08d}", changed_at=now))
                conn.execute(update(sims).where(sims.c.iccid == cards[n]).values(state="allocated", changed_at=now))
        return count / (time.perf_counter() - started)
    finally:
        store.dispose()


def run(log=None) -> dict:
    say = log or (lambda *_: None)
    with tempfile.TemporaryDirectory(prefix="hkops-bench-orders-") as folder:
        work = Path(folder)
        say(f"{COUNT:,} orders: create_orders + pay_orders, {BATCH} at a time")
        result = {"orders_per_s": round(bench_orders(work), 1)}
        say(f"{COUNT:,} orders: create_order + pay_order, one at a time")
        result["orders_single_per_s"] = round(bench_single(work), 1)
        say(f"{COUNT:,} orders: naive insert + updates")
        result["orders_naive_per_s"] = round(bench_naive(work), 1)
    return result
