"""A small distribution business for tests to build on.

:func:`build_distribution` adds, to a database that has the ``world`` fixture's carriers and
blocks: SIM products, plans with prices at levels 0 to 3, a three-level agent tree
(A1 > A2 > A3, each with its own stock location), a warehouse with China Mobile cards in
stock and some of them transferred to the agents. The ``distribution`` fixture is that
world with a key file of its own; import it into a test module to use it.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import update
from stdnum.cn import ric

from hkops.agents import service as agents
from hkops.cards.batches import import_sim_file
from hkops.cards.tables import sim_batches
from hkops.catalogue import service as catalogue
from hkops.stock import service as stock
from test_vendor_files import card_csv, make_cards

WAREHOUSE = "WH-BJ"
PRODUCT = "CM-NANO"
PRODUCT_UNICOM = "CU-NANO"
#: China Mobile, ¥58 a month, first top-up ¥50, ages 16-60, not shipped to Xinjiang or Tibet.
PLAN = "CM-58"
#: China Unicom, no age or province limits worth naming.
PLAN_UNICOM = "CU-39"
#: Plan prices in fen by level: 0 direct (retail), 1 to 3 the agents' levels.
PRICES = {0: 10_000, 1: 6_000, 2: 7_000, 3: 8_000}
FIRST_TOPUP = 5_000
AGENTS = ("A1", "A2", "A3")


def rid(n: int = 0, *, birth: str = "19900307", area: str = "110105") -> str:
    """A valid resident ID, a different one for each ``n`` (0 to 999) of one birth date."""
    body = f"{area}{birth}{n % 1000:03d}"
    return body + ric.calc_check_digit(body + "0")


def birth_for_age(years: int, today: date | None = None) -> str:
    """A YYYYMMDD birth date that makes someone exactly ``years`` old today (birthday this month, passed)."""
    today = today or date.today()
    return date(today.year - years, today.month, min(today.day, 28)).strftime("%Y%m%d")


def build_distribution(db, folder: Path, *, cards: int = 12, agent_cards: int = 3, actor: str = "tester"):
    """Products, plans, agents and stock on ``db`` (which has the world's carriers and blocks).

    ``cards`` China Mobile cards are received at the warehouse; ``agent_cards`` of them go on
    to A3's stock. Returns a namespace naming what was made, with ``iccids`` (all cards,
    lowest first) and ``agent_iccids`` (A3's).
    """
    catalogue.add_product(db, PRODUCT, "China Mobile nano SIM", "China Mobile", "nano", actor=actor)
    catalogue.add_product(db, PRODUCT_UNICOM, "China Unicom nano SIM", "China Unicom", "nano", actor=actor)
    catalogue.add_plan(db, PLAN, "Mobile 58", "China Mobile", monthly_fee_fen=5_800, data_mb=30_720,
                       voice_minutes=300, sms=100, first_topup_fen=FIRST_TOPUP, min_age=16, max_age=60,
                       excluded_provinces=("Xinjiang", "Tibet"), actor=actor)
    catalogue.add_plan(db, PLAN_UNICOM, "Unicom 39", "China Unicom", monthly_fee_fen=3_900, data_mb=20_480,
                       voice_minutes=100, sms=0, min_age=16, max_age=80, actor=actor)
    for level, price in PRICES.items():
        catalogue.set_price(db, PLAN, level, price, actor=actor)
        catalogue.set_price(db, PLAN_UNICOM, level, price - 2_000, actor=actor)
    stock.add_location(db, WAREHOUSE, "Beijing warehouse", "warehouse", province="Beijing", actor=actor)
    parent = None
    for code in AGENTS:
        agents.add_agent(db, code, f"Agent {code}", parent=parent, province="Beijing", actor=actor)
        parent = code
    path = folder / "dist-cards.csv"
    made = make_cards(cards, start=500)
    path.write_text(card_csv(made), encoding="utf-8")
    batch = import_sim_file(db, path, carrier="China Mobile", actor=actor, location=WAREHOUSE)
    with db.write() as conn:  # as a purchase-order receipt would record it
        conn.execute(update(sim_batches).where(sim_batches.c.id == batch.id).values(product=PRODUCT))
    iccids = sorted(c["iccid"] for c in made)
    if agent_cards:
        stock.transfer(db, WAREHOUSE, "AG-A3", iccids=iccids[-agent_cards:], actor=actor)
    return SimpleNamespace(db=db, warehouse=WAREHOUSE, product=PRODUCT, plan=PLAN, plan_unicom=PLAN_UNICOM,
                           agents=AGENTS, iccids=iccids, agent_iccids=iccids[-agent_cards:] if agent_cards else [],
                           warehouse_iccids=iccids[:cards - agent_cards])


@pytest.fixture
def distribution(world, tmp_path, monkeypatch):
    """The world (carriers, blocks) with the distribution business of :func:`build_distribution`."""
    monkeypatch.setenv("HKOPS_SECRET_KEY_FILE", str(tmp_path / "secret.key"))
    return build_distribution(world, tmp_path)


def place_order(db, n: int = 0, **values):
    """A direct order for customer ``n`` (resident ID ``rid(n)``) of the China Mobile plan,
    shipped to Beijing; ``values`` override any argument of create_order."""
    from hkops.orders import intake

    arguments = dict(channel="direct", plan=PLAN, customer_name=f"客户{n}", resident_id=rid(n),
                     contact="13900000000", ship_province="北京", ship_address="北京市朝阳区建国路 1 号",
                     actor="desk")
    return intake.create_order(db, **(arguments | values))


def advance(db, number: str, to_state: str, *, network=None, actor: str = "desk"):
    """Move an approved order along the happy path until it is ``to_state`` (or ``paid_partly``:
    approved with half paid); returns the order."""
    from hkops.orders import service as orders

    steps = {
        "paid_partly": lambda o: orders.pay_order(db, o.number, o.total_fen // 2, method="wechat",
                                                  reference=f"{o.number}-half", actor=actor),
        "allocated": lambda o: orders.pay_order(db, o.number, o.total_fen - _paid(db, o.number), method="alipay",
                                                reference=f"{o.number}-rest", actor=actor),
        "shipped": lambda o: orders.ship_order(db, o.number, courier="SF Express", tracking_no=f"SF{o.id:010d}",
                                               actor=actor),
        "delivered": lambda o: orders.deliver_order(db, o.number, actor=actor),
        "activated": lambda o: orders.activate_order(db, o.number, actor=actor, network=network),
        "first_topup": lambda o: orders.record_first_topup(db, o.number, FIRST_TOPUP, actor=actor),
        "completed": lambda o: orders.complete_order(db, o.number, actor=actor),
    }
    order = orders.get_order(db, number)
    assert order.state == "approved", order.state
    for name, step in steps.items():
        if name == to_state or order.state == to_state:
            return step(order) if name == to_state else order
        order = step(order)
    raise ValueError(f"{to_state} is not a state advance() reaches")


def _paid(db, number: str) -> int:
    from hkops.payments import service as payments

    return sum(p.amount_fen if p.kind == "collection" else -p.amount_fen
               for p in payments.list_payments(db, order=number))


def snapshot(db) -> dict:
    """What a refused operation must leave untouched: row counts, number and card states, stock."""
    from sqlalchemy import func, select

    from hkops.audit import audit_log
    from hkops.cards.tables import sims
    from hkops.numbers.tables import numbers
    from hkops.orders.tables import orders, shipments
    from hkops.payments.tables import payments
    from hkops.stock.tables import stock_moves
    from hkops.subscribers.tables import subscriber_numbers, subscribers

    with db.read() as conn:
        counts = {t.name: conn.execute(select(func.count()).select_from(t)).scalar()
                  for t in (orders, shipments, payments, audit_log, stock_moves, subscribers, subscriber_numbers)}
        return {
            "counts": counts,
            "orders": sorted(tuple(r) for r in conn.execute(select(orders.c.number, orders.c.state, orders.c.iccid))),
            "numbers": sorted(tuple(r) for r in conn.execute(
                select(numbers.c.msisdn, numbers.c.state, numbers.c.holder).where(numbers.c.state != "available"))),
            "sims": sorted(tuple(r) for r in conn.execute(select(sims.c.iccid, sims.c.state, sims.c.location))),
        }
