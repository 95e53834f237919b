"""Commissions and settlement: ``python -m bench settlement --json``.

A synthetic distribution world is built straight into a scratch SQLite file (WAL, hkops's connection
settings): one plan, an agent tree of 3 level-1 agents, 30 level-2 and 1,500 level-3 agents, 83,334
orders sold by level-3 agents between January and October 2026 (orders and agents bulk-inserted
by this bench; their paid, activate and first_topup events written through ``hkops.audit.record``,
one call per day), one order in 200 returned 20 days after activation. The scheme (instant
settlement, 60-day window) pays order paid, activation, a first top-up of at least ¥50 within
30 days and month 2 in network, each over the three chain positions: 12 entries an order.

- ``accrue_1m_s`` (goal ≤ 10): one ``hkops.commissions.service.accrue`` run turning those events
  into 1,000,008 ledger entries (and the returns' clawbacks), from an empty ledger.
- ``accrue_naive_10k_s``: the anchor, on a world of the same shape with 834 orders (10,008 entries):
  a straightforward per-event Python loop, one transaction per event, reading the order, and per
  chain position looking the entry up and inserting it. ``accrue_naive_rate_ratio``: hkops's entries
  per second over the anchor's.
- ``accrue_again_s``: a second ``accrue`` over the same world (nothing new: the watermark).
- ``settle_100k_s`` (goal ≤ 5): ``create_batches`` for January for the level-1 agent that sold all of
  January (one batch of 100,002 entries), then confirm, approve and pay it (its ledger credit).
- ``*_cpu_s``: the process's CPU time for the same work (SQLite runs in the process): what the
  figure would be on an idle machine, for runs on a shared one (the load averages are reported).
- ``balance_p95_ms`` (goal ≤ 20): p95 of ``balance(agent)`` for the three level-1 agents (100,000 to
  133,000 entries each), 30 calls each; ``balance_p95_ms_mixed``: over 100 agents of every level.
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

GOALS = {"accrue_1m_s": 10, "settle_100k_s": 5, "balance_p95_ms": 20}
ORDERS = 83_334
NAIVE_ORDERS = 834
JANUARY = 33_334  # orders of January, all under the first level-1 agent: its batch holds 100,002 entries
PLAN = "BENCH-58"
SCHEME = f"""\
name = "bench three levels"
plans = ["{PLAN}"]
effective = 2025-12-01
window_days = 60
timing = "instant"

[[rules]]
event = "order_paid"
amounts = [500, 200, 100]

[[rules]]
event = "activation"
amounts = [3000, 1000, 500]

[[rules]]
event = "first_topup"
min_fen = 5000
within_days = 30
percent = ["20", "10", "5"]

[[rules]]
event = "in_network"
months = [2, 2]
amounts = [800, 200, 100]
"""
AS_OF = date(2026, 12, 1)
NOW = datetime(2026, 12, 1, 4, tzinfo=timezone.utc)


def _agents(conn, now):
    """3 level-1, 30 level-2, 1,500 level-3 agents; returns (level-3 ids by level-1 index, chains JSON by id)."""
    from hkops.agents.tables import agents
    from hkops.store import bulk

    rows, chains, sellers = [], {}, {0: [], 1: [], 2: []}
    stamp = now.replace(tzinfo=None).isoformat(" ", "microseconds")
    next_id = 1

    def add(code, parent, level, chain):
        nonlocal next_id
        agent_id, next_id = next_id, next_id + 1
        rows.append((agent_id, code, code, parent, level, level, f"LOC-{code}", stamp, stamp))
        me = [{"id": agent_id, "code": code, "name": code, "level": level, "price_level": level}]
        chains[agent_id] = me + chain
        return agent_id, me + chain

    for a in range(3):
        top, top_chain = add(f"B{a}", None, 1, [])
        for b in range(10):
            mid, mid_chain = add(f"B{a}-{b}", top, 2, top_chain)
            for c in range(50):
                seller, _ = add(f"B{a}-{b}-{c}", mid, 3, mid_chain)
                sellers[a].append(seller)
    bulk.insert_rows(conn, agents, ("id", "code", "name", "parent_id", "level", "price_level", "location",
                                    "created_at", "changed_at"), rows)
    return sellers, {k: json.dumps(v, ensure_ascii=False) for k, v in chains.items()}


def _day_of(k: int, count: int, january: int) -> date:
    """The day order ``k`` is paid and activated: January for the first ``january``, then February to
    October; order numbers and ids grow with time, as orders are placed."""
    if k < january:
        return date(2026, 1, 1) + timedelta(days=31 * k // january)
    return date(2026, 2, 1) + timedelta(days=272 * (k - january) // max(count - january, 1))


def build_world(path: Path, orders_count: int = ORDERS, january: int = JANUARY):
    """The scratch database at ``path``: migrated, plan, agents, orders and their audited events; the store."""
    from collections import defaultdict

    from hkops import audit
    from hkops.catalogue.tables import plan_prices, plans
    from hkops.commissions import service as commissions
    from hkops.orders.tables import orders
    from hkops.store import bulk, migrate
    from hkops.store.engine import Store

    store = Store(f"sqlite:///{path}")
    migrate.upgrade(store)
    stamp = NOW.replace(tzinfo=None).isoformat(" ", "microseconds")
    with store.write() as conn:
        bulk.insert_rows(conn, plans, ("code", "name", "carrier", "monthly_fee_fen", "data_mb", "voice_minutes", "sms",
                                       "min_age", "max_age", "created_at"),
                         [(PLAN, "bench plan", "China Mobile", 5_800, 10_240, 300, 100, 16, 120, stamp)])
        bulk.insert_rows(conn, plan_prices, ("plan", "level", "price_fen"),
                         [(PLAN, level, 5_800 - 500 * level) for level in range(4)])
        sellers, chains = _agents(conn, NOW)
        rows, days = [], defaultdict(list)
        for k in range(orders_count):
            group = 0 if k < january else 1 + k % 2
            seller = sellers[group][k % len(sellers[group])]
            number = f"B{k:09d}"
            rows.append((k + 1, number, f"B{group}", seller, chains[seller], PLAN, "NANO", "China Mobile", "active",
                         13_900_000_000 + k, f"8986{k:016d}", "WH", "客户", "110***********0000", "h" * 64, "x",
                         "13800000000", "北京市", "—", 5_800, 5_800, 5_000, stamp, "bench", stamp))
            day = _day_of(k, orders_count, january)
            days[day] += [("pay", number), ("activate", number), ("first_topup", number)]
            if k % 200 == 7:
                days[day + timedelta(days=20)].append(("return", number))
        bulk.insert_rows(conn, orders, (
            "id", "number", "channel", "agent_id", "agent_chain", "plan", "product", "carrier", "state", "msisdn",
            "iccid", "location", "customer_name", "id_masked", "resident_id_hash", "resident_id_enc", "contact",
            "ship_province", "ship_address", "price_fen", "total_fen", "first_topup_fen", "created_at", "created_by",
            "changed_at"), rows)
        for day in sorted(days):
            at = datetime(day.year, day.month, day.day, 4, tzinfo=timezone.utc)  # noon in Shanghai
            audit.record(conn, "bench", [audit.Event("order", number, action) for action, number in days[day]], at)
    scheme = path.with_suffix(".toml")
    scheme.write_text(SCHEME, encoding="utf-8")
    commissions.add_scheme(store, scheme, actor="bench", now=NOW)
    return store


def accrue_naive(store) -> int:
    """The anchor: every paying event (and month-2 end) in its own transaction, each entry looked up then
    inserted one at a time. Returns the entries written."""
    from sqlalchemy import select

    from hkops.audit import audit_log
    from hkops.commissions import schemes
    from hkops.commissions.service import _amounts, _day, _month_start, _utc
    from hkops.commissions.tables import commission_entries, commission_schemes
    from hkops.orders.tables import orders

    with store.read() as conn:
        scheme_row = conn.execute(select(commission_schemes)).mappings().first()
        events = conn.execute(select(audit_log.c.subject, audit_log.c.action, audit_log.c.at)
                              .where(audit_log.c.entity == "order").order_by(audit_log.c.id)).all()
    rules = {r.event: r for r in schemes.parse(scheme_row["body"]).rules}
    names = {"pay": "order_paid", "activate": "activation", "first_topup": "first_topup"}
    work = [(number, names[action], 0, at) for number, action, at in events if action in names]
    work += [(number, "in_network", 2, _utc(_month_start(_day(at), 2)))
             for number, action, at in events if action == "activate"]
    written = 0
    for number, event, month, at in work:
        with store.write() as conn:
            order = conn.execute(select(orders).where(orders.c.number == number)).mappings().first()
            chain = json.loads(order["agent_chain"])
            for position, (agent, amount) in enumerate(zip(chain, _amounts(rules[event], chain, 5_800, {})), 1):
                key = (commission_entries.c.order_id == order["id"], commission_entries.c.event == event,
                       commission_entries.c.month == month, commission_entries.c.agent_id == agent["id"],
                       commission_entries.c.kind == "credit")
                if conn.execute(select(commission_entries.c.id).where(*key)).first():
                    continue
                conn.execute(commission_entries.insert().values(
                    order_id=order["id"], order_number=number, event=event, month=month, agent_id=agent["id"],
                    position=position, kind="credit", amount_fen=amount, scheme_id=scheme_row["id"], event_at=at,
                    eligible_on=_day(at), state="eligible", created_at=NOW))
                written += 1
    return written


def _count(store) -> int:
    from sqlalchemy import func, select

    from hkops.commissions.tables import commission_entries

    with store.read() as conn:
        return conn.execute(select(func.count()).select_from(commission_entries)
                            .where(commission_entries.c.kind == "credit")).scalar()


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def run(log=None, orders_count: int = ORDERS) -> dict:
    import os

    from hkops.commissions import service as commissions

    say = log or (lambda *_: None)
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="hkops-bench-settlement-") as folder:
        work = Path(folder)
        os.environ.setdefault("HKOPS_AUDIT_KEY_FILE", str(work / "audit.key"))
        say(f"anchor world: {NAIVE_ORDERS} orders; per-event accrual, one transaction an event")
        result["load_average_at_start"] = round(os.getloadavg()[0], 1)
        naive = build_world(work / "naive.db", NAIVE_ORDERS, NAIVE_ORDERS * JANUARY // ORDERS)
        started, cpu = time.perf_counter(), time.process_time()
        naive_entries = accrue_naive(naive)
        result["accrue_naive_10k_s"] = round(time.perf_counter() - started, 2)
        result["accrue_naive_10k_cpu_s"] = round(time.process_time() - cpu, 2)
        result["accrue_naive_entries"] = naive_entries
        naive.dispose()

        say(f"world: {orders_count:,} orders, their events through the audit trail")
        started = time.perf_counter()
        store = build_world(work / "world.db", orders_count, min(JANUARY, orders_count))
        result["build_s"] = round(time.perf_counter() - started, 2)
        say("accrue from an empty ledger")
        started, cpu = time.perf_counter(), time.process_time()
        first = commissions.accrue(store, as_of=AS_OF, actor="bench", now=NOW)
        result["accrue_1m_s"] = round(time.perf_counter() - started, 2)
        result["accrue_1m_cpu_s"] = round(time.process_time() - cpu, 2)
        result["accrue_entries"] = _count(store)
        result["accrue_clawed_back"] = first["clawed_back"]
        result["accrue_naive_rate_ratio"] = round(
            (result["accrue_entries"] / result["accrue_1m_s"]) / (naive_entries / result["accrue_naive_10k_s"]), 1)
        started = time.perf_counter()
        again = commissions.accrue(store, as_of=AS_OF, actor="bench", now=NOW)
        result["accrue_again_s"] = round(time.perf_counter() - started, 2)
        assert again["accrued"] == 0 and again["clawed_back"] == 0, again

        say("settle January for agent B0: create, confirm, approve, pay one batch")
        started, cpu = time.perf_counter(), time.process_time()
        [batch] = commissions.create_batches(store, "2026-01", as_of=AS_OF, agent="B0", actor="bench", now=NOW)
        result["settle_create_s"] = round(time.perf_counter() - started, 2)
        for action in ("confirm", "approve"):
            commissions.move_batch(store, batch, action, actor="bench", now=NOW, lines=False)
        commissions.move_batch(store, batch, "pay", actor="bench", now=NOW, reference="BENCH-1", lines=False)
        result["settle_100k_s"] = round(time.perf_counter() - started, 2)
        result["settle_100k_cpu_s"] = round(time.process_time() - cpu, 2)
        paid = commissions.show_batch(store, batch)
        result["settle_entries"] = len(paid["lines"])
        assert paid["state"] == "paid" and paid["total_fen"] == sum(line["amount_fen"] for line in paid["lines"])

        say("balances")
        commissions.balance(store, "B0")  # warm the page cache
        samples, cpu_samples = [], []
        for _ in range(30):
            for code in ("B0", "B1", "B2"):
                started, cpu = time.perf_counter(), time.process_time()
                commissions.balance(store, code)
                samples.append(1000 * (time.perf_counter() - started))
                cpu_samples.append(1000 * (time.process_time() - cpu))
        result["balance_p95_ms"] = round(_p95(samples), 2)
        result["balance_p95_cpu_ms"] = round(_p95(cpu_samples), 2)
        result["balance_entries"] = {code: len(commissions.list_entries(store, agent=code)) for code in ("B0", "B1", "B2")}
        mixed = [f"B{a}" for a in range(3)] + [f"B{a}-{b}" for a in range(3) for b in range(10)] + [
            f"B{a}-{b}-{c}" for a in range(3) for b in range(10) for c in (0, 17, 42)][:67]
        samples = []
        for code in mixed:
            started = time.perf_counter()
            commissions.balance(store, code)
            samples.append(1000 * (time.perf_counter() - started))
        result["balance_p95_ms_mixed"] = round(_p95(samples), 2)
        store.dispose()
        result["load_average_at_end"] = round(os.getloadavg()[0], 1)
    result["goals"] = {k: f"<= {v}" for k, v in GOALS.items()}
    result["met"] = {k: result[k] <= v for k, v in GOALS.items()}
    return result
