"""The distribution side of the demo world (hkops.demo builds it after the number pool).

A catalogue (one product and a few plans per carrier, prices for three agent levels), a
SIM vendor, two warehouses receiving cards against purchase orders, a three-level agent
tree stocked by transfers, and sales orders in every state spread over the last 90 days.
Everything goes through the services, so the ledger, the audit trail and the HLR agree;
afterwards the orders' times are spread back over the 90 days (:func:`_backdate`).
"""

from __future__ import annotations

import random
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Callable

from sqlalchemy import bindparam, select, update

from hkops import audit
from hkops.agents import service as agents
from hkops.audit import audit_log
from hkops.catalogue import service as catalogue
from hkops.errors import HkopsError
from hkops.ids import make_iccid
from hkops.network import ProvisioningClient
from hkops.orders import intake
from hkops.orders import service as orders
from hkops.orders.tables import orders as orders_table
from hkops.orders.tables import shipments
from hkops.cards.tables import sim_batches
from hkops.payments.tables import payments
from hkops.procurement.tables import po_receipts, purchase_orders
from hkops.procurement import service as procurement
from hkops.security.crypto import load_keyring
from hkops.stock import service as stock
from hkops.stock.tables import stock_moves
from hkops.store.engine import Store
from hkops.timeutil import utc_now

ACTOR = "demo"
DAYS = 90
#: How many days ago the oldest order was placed: under :data:`DAYS`, so that every order falls
#: inside a window of the last DAYS local days counted with today (the trends console's default).
OLDEST = DAYS - 1

#: (code, name, carrier, ICCID issuer digits, IMSI MNC)
PRODUCTS = [
    ("CM-TRIPLE", "中国移动 三切卡 China Mobile triple-cut", "China Mobile", "00", "00"),
    ("CU-TRIPLE", "中国联通 三切卡 China Unicom triple-cut", "China Unicom", "01", "01"),
    ("CT-TRIPLE", "中国电信 三切卡 China Telecom triple-cut", "China Telecom", "03", "03"),
]
#: (code, name, carrier, monthly fee ¥, data MB, voice min, SMS, contract months, first top-up ¥,
#: min age, max age, excluded provinces, retail ¥)
PLANS = [
    ("CM-58", "移动 58元 30G", "China Mobile", 58, 30_720, 300, 100, 12, 50, 16, 60, ["Xinjiang", "Tibet"], 80),
    ("CM-128", "移动 128元 100G 靓号", "China Mobile", 128, 102_400, 1000, 300, 24, 100, 18, 65, [], 150),
    ("CU-39", "联通 39元 大王卡", "China Unicom", 39, 40_960, 100, 0, 0, 50, 16, 60, ["Xinjiang", "Tibet"], 50),
    ("CT-29", "电信 29元 星卡", "China Telecom", 29, 20_480, 100, 0, 0, 30, 18, 60, ["Tibet"], 40),
]
#: Share of the retail price an agent pays at price levels 1, 2 and 3.
LEVEL_SHARES = {1: 70, 2: 80, 3: 90}
#: The agent tree: level-1 regions, each with two level-2 agents, each with two level-3 shops.
REGIONS = [("NORTH", "华北总代", "Beijing"), ("SOUTH", "华南总代", "Guangdong"), ("EAST", "华东总代", "Shanghai")]
SHIP_TO = ["北京", "上海", "广东", "江苏", "浙江", "四川", "湖北", "山东", "河南", "福建", "新疆", "西藏"]
COURIERS = ["SF", "JD", "EMS", "ZTO", "YTO"]

#: The states orders end in: a weight, and how many days ago such orders can have been placed
#: (older orders got further; approved orders are not paid yet, so they are less than a day
#: old, as unpaid orders do not last longer). Orders arrive evenly (:func:`_order_plan`), so a
#: state's share is its weight among the states of each age: few orders are still waiting.
ENDS = [
    ("draft", 0.02, (0, 3)), ("rejected", 0.02, (0, 60)), ("approved", 0.05, (0, 0.9)),
    ("allocated", 0.07, (0, 5)), ("shipped", 0.07, (1, 8)), ("delivered", 0.06, (2, 15)),
    ("activated", 0.12, (3, 40)), ("first_topup", 0.12, (5, 60)), ("completed", 0.37, (10, OLDEST)),
    ("cancelled", 0.07, (0, OLDEST)), ("returned", 0.03, (15, OLDEST)),
]
#: Days from placing an order to each later step (shipping, delivery...), at most.
STEP_DAYS = {"pay": 0.2, "allocate": 0.2, "ship": 1.0, "deliver": 3.0, "activate_requested": 3.5, "activate": 3.5,
             "first_topup": 4.0, "complete": 9.0, "cancel": 2.0, "return": 12.0}


def stock_up(store: Store, rng: random.Random, *, extra_mobile_cards: int = 1_100) -> list[str]:
    """Catalogue, vendor, warehouses, purchase orders received, agents and their stock.

    Returns ICCIDs of China Mobile cards left in the Beijing warehouse for the demo's
    pre-hkops sales (``extra_mobile_cards`` of them are received on top of the orders' stock).
    """
    for code, name, carrier, _, _ in PRODUCTS:
        catalogue.add_product(store, code, name, carrier, "triple", actor=ACTOR)
    for code, name, carrier, fee, data, voice, sms, months, topup, lo, hi, excluded, retail in PLANS:
        catalogue.add_plan(store, code, name, carrier, monthly_fee_fen=fee * 100, data_mb=data, voice_minutes=voice,
                           sms=sms, contract_months=months, first_topup_fen=topup * 100, min_age=lo, max_age=hi,
                           excluded_provinces=excluded, actor=ACTOR)
        catalogue.set_price(store, code, 0, retail * 100, actor=ACTOR)
        for level, share in LEVEL_SHARES.items():
            catalogue.set_price(store, code, level, retail * share, actor=ACTOR)
    stock.add_location(store, "WH-BJ", "北京中心仓 Beijing warehouse", "warehouse", actor=ACTOR, province="Beijing")
    stock.add_location(store, "WH-GZ", "广州仓 Guangzhou warehouse", "warehouse", actor=ACTOR, province="Guangdong")
    procurement.add_vendor(store, "DEMO-SIM", "演示卡商 Demo SIM Vendor", contact="sales@demo-sim.example",
                           actor=ACTOR)

    # Beijing buys China Mobile cards; the vendor delivered most of them so far.
    mobile = extra_mobile_cards + 3_000
    po_bj = procurement.create_po(store, "DEMO-SIM", "WH-BJ", [("CM-TRIPLE", mobile + 600, 120)],
                                  extra_cost_fen=30_000, note="quarterly China Mobile order", actor=ACTOR)
    procurement.confirm(store, po_bj, actor=ACTOR)
    # Guangzhou buys China Unicom and China Telecom cards; delivered short, then closed.
    po_gz = procurement.create_po(store, "DEMO-SIM", "WH-GZ", [("CU-TRIPLE", 1_300, 110), ("CT-TRIPLE", 1_300, 105)],
                                  extra_cost_fen=18_000, actor=ACTOR)
    procurement.confirm(store, po_gz, actor=ACTOR)
    keyring = load_keyring()
    with tempfile.TemporaryDirectory() as folder:
        received = {}
        for po, product, count in ((po_bj, "CM-TRIPLE", mobile), (po_gz, "CU-TRIPLE", 1_200),
                                   (po_gz, "CT-TRIPLE", 1_250)):
            path = Path(folder) / f"{po}-{product}.csv"
            received[product] = _card_file(path, rng, product, count)
            procurement.receive(store, po, path, product=product, actor=ACTOR, keyring=keyring)
    procurement.close(store, po_gz, actor=ACTOR, reason="vendor cannot deliver the rest this quarter")

    tree: list[agents.Agent] = []
    for code, name, province in REGIONS:
        top = agents.add_agent(store, f"A-{code}", name, province=province, contact_name="区域经理",
                               contact_phone="13800000000", actor=ACTOR)
        tree.append(top)
        for n in (1, 2):
            middle = agents.add_agent(store, f"A-{code}-{n}", f"{name}{n}号二级", parent=top.code,
                                      province=province, actor=ACTOR)
            tree.append(middle)
            for m in (1, 2):
                tree.append(agents.add_agent(store, f"A-{code}-{n}-{m}", f"{name}{n}-{m}号门店", parent=middle.code,
                                             province=province, actor=ACTOR))
    # Stock flows down the tree: warehouse → level 1 → level 2 → level 3.
    share = {"CM-TRIPLE": 100, "CU-TRIPLE": 50, "CT-TRIPLE": 50}
    source = {"CM-TRIPLE": "WH-BJ", "CU-TRIPLE": "WH-GZ", "CT-TRIPLE": "WH-GZ"}
    by_code = {a.code: a for a in tree}
    for agent in tree:
        parent = by_code.get(agent.parent) if agent.parent else None
        for product, per_agent in share.items():
            subtree = 1 + sum(1 for a in tree if a.code.startswith(agent.code + "-"))
            origin = parent.location if parent else source[product]
            stock.transfer(store, origin, agent.location, count=per_agent * subtree, product=product, actor=ACTOR,
                           reason="stock for the agent and its sub-agents")
        stock.set_minimum(store, agent.location, "CM-TRIPLE", 20, actor=ACTOR)
    # Unreadable cards found at one shop.
    shop = tree[2].location
    faulty = [m["iccid"] for m in stock.ledger(store, location=shop, limit=2)]
    stock.scrap(store, faulty, shop, actor=ACTOR, reason="chip unreadable")
    stock.set_minimum(store, "WH-GZ", "CU-TRIPLE", 500, actor=ACTOR)
    return received["CM-TRIPLE"][-extra_mobile_cards:]


def backdate_stock(store: Store, since_audit_id: int, days: float = DAYS + 5) -> None:
    """Move the stock built so far (ledger, purchase orders, receipts, batches and their audit
    records after ``since_audit_id``) ``days`` back, so cards arrive before they are sold."""
    shift = timedelta(days=days)
    with store.write() as conn:
        audit.retime(conn, {row.id: row.at - shift for row in conn.execute(
            select(audit_log.c.id, audit_log.c.at).where(audit_log.c.id > since_audit_id))})
        for table, key, columns in ((stock_moves, "id", ("at",)),
                                    (purchase_orders, "id", ("created_at", "changed_at")),
                                    (po_receipts, "id", ("at",)), (sim_batches, "id", ("received_at",))):
            query = select(table.c[key], *(table.c[c] for c in columns))
            rows = [{"k": row[0], **{c: row[n + 1] - shift for n, c in enumerate(columns)}}
                    for row in conn.execute(query)]
            if rows:
                conn.execute(update(table).where(table.c[key] == bindparam("k"))
                             .values({c: bindparam(c) for c in columns}), rows)


def _card_file(path: Path, rng: random.Random, product: str, count: int) -> list[str]:
    """A vendor card file (pySim CSV) of ``count`` cards of ``product``; returns the ICCIDs."""
    _, _, _, issuer, mnc = next(p for p in PRODUCTS if p[0] == product)
    lines, iccids = ["iccid,imsi,ki,opc,pin1,puk1,pin2,puk2,adm1"], []
    for n in range(count):
        iccid = make_iccid(f"8986{issuer}9{n:012d}")
        iccids.append(iccid)
        lines.append(f"{iccid},460{mnc}9{n:09d},{rng.getrandbits(128):032X},{rng.getrandbits(128):032X},"
                     f"{rng.randrange(10_000):04d},{rng.randrange(10 ** 8):08d},{rng.randrange(10_000):04d},"
                     f"{rng.randrange(10 ** 8):08d},{rng.getrandbits(64):016X}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return iccids


def take_orders(store: Store, rng: random.Random, count: int, hlr: ProvisioningClient, *,
                progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """``count`` orders through the services, each walked to the state it should end in,
    then spread over the last 90 days. Returns how many ended in each state."""
    from hkops.demo import resident_id

    keyring = load_keyring()
    sellers = [a for a in agents.agent_tree(store) if a.level >= 2]
    plans = [p[0] for p in PLANS]
    ended: dict[str, int] = {}
    placed: list[tuple[str, float]] = []
    for n, (days_ago, end) in enumerate(_order_plan(rng, count)):
        if progress:
            progress(1)
        plan = rng.choice(plans)
        agent = rng.choice(sellers) if rng.random() < 0.7 else None
        carrier = catalogue.get_plan(store, plan).carrier
        location = None if agent else ("WH-BJ" if carrier == "China Mobile" else "WH-GZ")
        born = (2009, 2012) if end == "rejected" else (1970, 2006)
        try:
            order = intake.create_order(
                store, channel=agent.code if agent else "direct", plan=plan, customer_name=f"演示客户{n + 1:05d}",
                resident_id=resident_id(rng, born), contact=f"139{rng.randrange(10 ** 8):08d}",
                ship_province=rng.choice(SHIP_TO[:10]) if end != "rejected" else rng.choice(SHIP_TO),
                ship_address=f"演示路{rng.randrange(1, 999)}号", client_order_id=f"DEMO-{n + 1:06d}",
                location=location, submit=end not in ("draft", "rejected"), actor=ACTOR, keyring=keyring)
        except HkopsError:
            continue  # a sixth number for one person, no number left...: no order
        try:
            if end == "rejected":
                intake.submit_order(store, order.number, actor=ACTOR)
            elif end != "draft":
                _walk(store, rng, order, end, hlr)
        except HkopsError:
            pass  # refused at verification, out of stock at that shop...: the order stays where it got
        state = orders.get_order(store, order.number).state
        ended[state] = ended.get(state, 0) + 1
        placed.append((order.number, days_ago))
    _backdate(store, rng, placed)
    return ended


def _order_plan(rng: random.Random, count: int) -> list[tuple[float, str]]:
    """(days ago, end state) of ``count`` orders placed evenly over the last :data:`DAYS` days,
    oldest first (so that a card taken back from a cancelled order is sold again later). Each
    order's state is drawn among the :data:`ENDS` its age allows, by weight per day of their range;
    a few orders of each state come first wherever its range allows, so that a trainer finds
    every state even in a small world."""
    few = max(3, count // 300)
    plan = [(rng.uniform(newest, oldest), end) for end, _, (newest, oldest) in ENDS for _ in range(few)]
    for _ in range(count - len(plan)):
        days_ago = rng.uniform(0, OLDEST)
        allowed = [(end, weight / (oldest - newest)) for end, weight, (newest, oldest) in ENDS
                   if newest <= days_ago <= oldest]
        plan.append((days_ago, rng.choices([end for end, _ in allowed], [w for _, w in allowed])[0]))
    return sorted(plan, reverse=True)


def _walk(store: Store, rng: random.Random, order, end: str, hlr: ProvisioningClient) -> None:
    """Take one approved order along the pipeline to ``end`` (cancelled and returned orders
    get that far first)."""
    path = ["approved", "allocated", "shipped", "delivered", "activated", "first_topup", "completed"]
    if end == "cancelled":
        end_at = rng.choice(["approved", "allocated", "shipped", "delivered"])
    elif end == "returned":
        end_at = rng.choice(["activated", "first_topup"])
    else:
        end_at = end
    number = order.number
    plan = catalogue.get_plan(store, order.plan)
    for step in path[1:path.index(end_at) + 1]:
        if step == "allocated":
            orders.pay_order(store, number, order.total_fen, method=rng.choice(["alipay", "wechat"]),
                             reference=f"PAY-{number}", actor=ACTOR)
        elif step == "shipped":
            orders.ship_order(store, number, courier=rng.choice(COURIERS), tracking_no=f"T{number[2:]}{rng.randrange(1000):03d}",
                              actor=ACTOR)
        elif step == "delivered":
            orders.deliver_order(store, number, actor=ACTOR)
        elif step == "activated":
            orders.activate_order(store, number, actor=ACTOR, network=hlr)
        elif step == "first_topup":
            orders.record_first_topup(store, number, plan.first_topup_fen + rng.choice([0, 0, 5_000]), actor=ACTOR)
        elif step == "completed":
            orders.complete_order(store, number, actor=ACTOR)
    if end == "cancelled":
        orders.cancel_order(store, number, actor=ACTOR, reason=rng.choice(["客户取消 customer changed their mind",
                                                                          "地址无法送达 address unreachable"]))
    elif end == "returned":
        orders.return_order(store, number, actor=ACTOR, reason="客户退货 customer returned the card", network=hlr)


def _backdate(store: Store, rng: random.Random, placed: list[tuple[str, float]]) -> None:
    """Move each order's times (order, shipment, payments, its audit records and stock
    moves) back to when it was placed, ``days_ago`` days ago, keeping the steps in order."""
    now = utc_now()
    with store.write() as conn:
        ids = dict(conn.execute(select(orders_table.c.number, orders_table.c.id)).all())
        order_rows, audit_rows, ship_rows, pay_rows, times = [], [], [], [], {}
        for number, days_ago in placed:
            start = now - timedelta(days=days_ago)
            span = min(days_ago, 12.0) / 12.0  # recent orders had less time to move on

            def at(step: str) -> object:
                return start + timedelta(days=STEP_DAYS.get(step, 0.0) * span * rng.uniform(0.8, 1.0))

            history = conn.execute(select(audit_log.c.id, audit_log.c.action).where(
                audit_log.c.entity == "order", audit_log.c.subject == number)).all()
            last = start
            for row in history:
                last = max(last, at(row.action))
                audit_rows.append({"i": row.id, "t": last})
            order_rows.append({"i": ids[number], "c": start, "t": last})
            ship_rows.append({"i": ids[number], "c": at("ship"), "t": last})
            pay_rows.append({"i": ids[number], "k": "collection", "t": at("pay")})
            pay_rows.append({"i": ids[number], "k": "refund", "t": last})
            times[number] = (at("ship"), last)
        # A card's moves keep their order: a sale never before the card came back from an earlier order.
        move_rows, latest = [], {}
        for move in conn.execute(select(stock_moves.c.id, stock_moves.c.iccid, stock_moves.c.kind,
                                        stock_moves.c.document, stock_moves.c.at).order_by(stock_moves.c.id)):
            when = move.at
            if move.document in times:
                when = max(times[move.document][0 if move.kind == "sale" else 1], latest.get(move.iccid, when))
                move_rows.append({"i": move.id, "t": when})
            latest[move.iccid] = when
        if not placed:
            return
        audit.retime(conn, {row["i"]: row["t"] for row in audit_rows})
        conn.execute(update(orders_table).where(orders_table.c.id == bindparam("i"))
                     .values(created_at=bindparam("c"), changed_at=bindparam("t")), order_rows)
        conn.execute(update(shipments).where(shipments.c.order_id == bindparam("i"))
                     .values(created_at=bindparam("c"), changed_at=bindparam("t")), ship_rows)
        conn.execute(update(payments).where(payments.c.order_id == bindparam("i"), payments.c.kind == bindparam("k"))
                     .values(at=bindparam("t")), pay_rows)
        conn.execute(update(stock_moves).where(stock_moves.c.id == bindparam("i")).values(at=bindparam("t")),
                     move_rows)
