"""Commissions: schemes, accrual into the append-only ledger, clawback, settlement batches,
balances and withdrawals. Every use case commits all or nothing and is audited; no clock is read
that the caller cannot give (``as_of``)."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from sqlalchemy import Connection, and_, case, func, or_, select, update

from hkops import audit
from hkops.agents.tables import agents
from hkops.audit import Event, audit_log
from hkops.catalogue.tables import plan_prices, plans
from hkops.commissions import schemes as scheme_files
from hkops.commissions.tables import (agent_ledger, commission_entries, commission_schemes, settlement_batches,
                                      withdrawals)
from hkops.errors import IllegalTransition, InvalidFile, InvalidValue, NotFound
from hkops.money import yuan_to_fen
from hkops.orders.tables import orders
from hkops.agents.service import scope_query, subtree_ids
from hkops.security.access import agent_scope, out_of_scope, require
from hkops.store.engine import Store, unit_of_work
from hkops.timeutil import SHANGHAI

PAYING = {"pay": "order_paid", "activate": "activation", "first_topup": "first_topup"}
#: Order and card moves that end service: inside the window they claw back, and no in-network month follows.
STOPS_ORDER = ("cancel", "return")
STOPS_CARD = ("suspended", "terminated", "lost")
WITHDRAWAL_RULES = ("minimum_fen", "fee_percent", "fee_min_fen", "fee_max_fen", "tax_percent", "every_days",
                    "monthly_cap_fen")


def withdrawal_rules(conn: Connection) -> dict:
    """The withdrawal rules from the settings (``withdrawal_minimum_fen`` ...)."""
    from hkops import settings

    return {k: Decimal(settings.get(conn, f"withdrawal_{k}")) if "percent" in k
            else int(settings.get(conn, f"withdrawal_{k}")) for k in WITHDRAWAL_RULES}


def _day(moment: datetime) -> date:
    return moment.astimezone(SHANGHAI).date()


def _month_start(day: date, months: int = 0) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _utc(day: date) -> datetime:
    return datetime.combine(day, time(), SHANGHAI)


def _agent(conn: Connection, code: str, *, lock: bool = False):
    query = select(agents.c.id, agents.c.code).where(agents.c.code == str(code).upper())
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound(f"agent {code!r} does not exist")
    return row


# ---- schemes -------------------------------------------------------------------------------------

def add_scheme(db: Store, path: str | Path, *, actor: str, now: datetime) -> list[int]:
    """Store the scheme file at ``path`` as a new version for each of its plans; refused (nothing stored)
    when a plan is unknown, a rule names more positions than the agent tree has levels, or a version
    for one of its plans already starts on that date."""
    text = Path(path).read_text(encoding="utf-8")
    scheme = scheme_files.parse(text, str(path))
    require(actor, "settlement.write", f"add commission scheme {scheme.name}", db)
    with unit_of_work(db) as conn:
        depth = conn.execute(select(func.max(agents.c.level))).scalar() or 0
        problems = []
        for rule in scheme.rules:
            if rule.positions > depth:
                problems.append(InvalidValue("amounts", rule.positions, f"rule {rule.event} pays {rule.positions} "
                                             f"chain positions but the agent tree has {depth} levels",
                                             line=rule.line))
        known = set(conn.execute(select(plans.c.code).where(plans.c.code.in_(scheme.plans))).scalars())
        problems += [InvalidValue("plans", p, "unknown plan") for p in scheme.plans if p not in known]
        taken = conn.execute(select(commission_schemes.c.plan).where(
            commission_schemes.c.plan.in_(scheme.plans), commission_schemes.c.effective == scheme.effective)).scalars()
        problems += [InvalidValue("effective", scheme.effective.isoformat(),
                                  f"plan {p} already has a scheme version from that date") for p in taken]
        if problems:
            raise InvalidFile(str(path), problems)
        ids = []
        for plan in scheme.plans:
            ids.append(conn.execute(commission_schemes.insert().values(
                name=scheme.name, plan=plan, effective=scheme.effective, window_days=scheme.window_days,
                timing=scheme.timing, body=text, created_at=now, created_by=actor)).inserted_primary_key[0])
        audit.record(conn, actor, [Event("scheme", f"{p}@{scheme.effective}", "add", None, "active", None,
                                         {"name": scheme.name}) for p in scheme.plans], now)
    return ids


def list_schemes(db: Store | Connection) -> list[dict]:
    """Every scheme version, by plan and date."""
    with unit_of_work(db) as conn:
        rows = conn.execute(select(commission_schemes).order_by(commission_schemes.c.plan,
                                                                commission_schemes.c.effective)).mappings().all()
    return [{"id": r["id"], "name": r["name"], "plan": r["plan"], "effective": r["effective"].isoformat(),
             "window_days": r["window_days"], "timing": r["timing"]} for r in rows]


# ---- accrual -------------------------------------------------------------------------------------

def _amounts(rule, chain: list[dict], monthly_fee: int, prices: dict[int, int]) -> list[int]:
    if rule.amounts:
        return list(rule.amounts[:len(chain)])
    if rule.percent:
        return [int((Decimal(monthly_fee) * p / 100).to_integral_value(ROUND_HALF_UP))
                for p in rule.percent[:len(chain)]]
    # Price difference: the seller keeps retail (level 0) minus its price; each level above keeps
    # the gap between the price of the level below and its own.
    out, below = [], prices.get(0, 0)
    for agent in chain:
        own = prices.get(agent["price_level"], below)
        out.append(max(below - own, 0))
        below = own
    return out


def _insert_new(conn: Connection, rows: list[dict]) -> None:
    """Insert ledger entries, skipping any another accrual run inserted meanwhile (the unique key)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        statement = pg_insert(commission_entries)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(commission_entries)
    conn.execute(statement.on_conflict_do_nothing(index_elements=["order_id", "event", "month", "agent_id", "kind"]),
                 rows)


def accrue(db: Store, *, as_of: date, until: date | None = None, actor: str, now: datetime) -> dict:
    """Turn order events, card stops and month ends up to ``until`` (default ``as_of``) into ledger
    entries and clawbacks, and move entries held -> eligible as of ``as_of``. Idempotent: an entry
    already there is never written again."""
    require(actor, "settlement.write", "accrue commissions", db)
    until = min(until or as_of, as_of)
    end = _utc(until + timedelta(days=1))
    with unit_of_work(db) as conn:
        settled = conn.execute(select(func.max(settlement_batches.c.period))).scalar()
        if settled and until < _period(settled)[1] - timedelta(days=1):
            raise InvalidValue("until", until.isoformat(), f"period {settled} is already settled; accrue up to "
                                                            "its end or later")
        versions = defaultdict(list)
        for row in conn.execute(select(commission_schemes).order_by(commission_schemes.c.effective)).mappings():
            versions[row["plan"]].append((row, scheme_files.parse(row["body"])))
        events = conn.execute(
            select(audit_log.c.subject, audit_log.c.action, audit_log.c.at, orders.c.id, orders.c.plan,
                   orders.c.agent_chain, orders.c.first_topup_fen, orders.c.iccid)
            .join(orders, orders.c.number == audit_log.c.subject)
            .where(audit_log.c.entity == "order", audit_log.c.action.in_(list(PAYING) + list(STOPS_ORDER)),
                   audit_log.c.at < end, orders.c.agent_id.is_not(None))
            .order_by(audit_log.c.id)).all()
        card_stops = conn.execute(
            select(orders.c.number, audit_log.c.at).join(orders, orders.c.iccid == audit_log.c.subject)
            .where(audit_log.c.entity == "sim", audit_log.c.to_state.in_(STOPS_CARD), audit_log.c.at < end)).all()
        fees = dict(conn.execute(select(plans.c.code, plans.c.monthly_fee_fen)).all())
        prices = defaultdict(dict)
        for plan, level, price in conn.execute(select(plan_prices.c.plan, plan_prices.c.level,
                                                      plan_prices.c.price_fen)):
            prices[plan][level] = price
        orders_by_number, activated, stops = {}, {}, defaultdict(list)
        for e in events:
            orders_by_number[e.subject] = e
            if e.action == "activate":  # the first activation: a replayed event moves no month
                activated.setdefault(e.subject, e.at)
            if e.action in STOPS_ORDER:
                stops[e.subject].append(e.at)
        for number, at in card_stops:
            stops[number].append(at)

        def stopped(number, start, end):
            """The first stop of ``number`` in [start, end), or None."""
            inside = [at for at in stops.get(number, ()) if start <= at < end]
            return min(inside) if inside else None

        def version(plan, day):
            chosen = [v for v in versions.get(plan, []) if v[0]["effective"] <= day]
            return chosen[-1] if chosen else None

        wanted = []  # (order row, event name, month, event time)
        for e in events:
            if e.action in PAYING:
                wanted.append((e, PAYING[e.action], 0, e.at))
        for number, at in activated.items():
            e = orders_by_number[number]
            found = version(e.plan, _day(at))
            for rule in (found[1].rules if found else ()):
                if rule.event != "in_network":
                    continue
                for n in range(rule.months[0], rule.months[1] + 1):
                    month_end = _month_start(_day(at), n)
                    if month_end <= until + timedelta(days=1) and stopped(number, at, _utc(month_end)) is None:
                        wanted.append((e, "in_network", n, _utc(month_end)))
        existing = {(r.order_id, r.event, r.month, r.agent_id, r.kind) for r in conn.execute(
            select(commission_entries.c.order_id, commission_entries.c.event, commission_entries.c.month,
                   commission_entries.c.agent_id, commission_entries.c.kind))}
        new_rows = []
        for e, event, month, at in wanted:
            found = version(e.plan, _day(at) if event != "in_network" else _day(activated[e.subject]))
            if not found:
                continue
            row, scheme = found
            for rule in scheme.rules:
                if rule.event != event or (event == "in_network" and not rule.months[0] <= month <= rule.months[1]):
                    continue
                if event == "first_topup":
                    if (e.first_topup_fen or 0) < rule.min_fen:
                        continue
                    start = activated.get(e.subject)
                    if rule.within_days is not None and (start is None or at - start > timedelta(rule.within_days)):
                        continue
                chain = json.loads(e.agent_chain or "[]")
                for position, (agent, amount) in enumerate(zip(chain, _amounts(rule, chain, fees.get(e.plan, 0),
                                                                                prices[e.plan]))):
                    key = (e.id, event, month, agent["id"], "credit")
                    if amount == 0 or key in existing:
                        continue
                    existing.add(key)
                    day = _day(at)
                    eligible = day if scheme.timing == "instant" else max(
                        day + timedelta(days=row["window_days"]), _month_start(day, 1))
                    new_rows.append(dict(order_id=e.id, order_number=e.subject, event=event, month=month,
                                         agent_id=agent["id"], position=position + 1, kind="credit",
                                         amount_fen=amount, scheme_id=row["id"], event_at=at, eligible_on=eligible,
                                         state="accrued", batch_id=None, created_at=now))
        if new_rows:
            _insert_new(conn, new_rows)
        # Clawback: a stop inside the window of a credit appends its negative reversal.
        reversals = []
        if stops:
            windows = dict(conn.execute(select(commission_schemes.c.id, commission_schemes.c.window_days)).all())
            credits = conn.execute(select(commission_entries).where(
                commission_entries.c.kind == "credit",
                commission_entries.c.order_number.in_(list(stops)))).mappings().all()
            for c in credits:
                stop = stopped(c["order_number"], c["event_at"], c["event_at"] + timedelta(windows[c["scheme_id"]]))
                key = (c["order_id"], c["event"], c["month"], c["agent_id"], "reversal")
                if key in existing or stop is None:
                    continue
                existing.add(key)
                # Never eligible before the credit it reverses: a clawback of a credit still held is
                # settled with it (netting to zero), never first as a debt the agent was never paid.
                reversals.append({**{k: v for k, v in c.items() if k != "id"}, "kind": "reversal",
                                  "amount_fen": -c["amount_fen"], "event_at": stop,
                                  "eligible_on": max(_day(stop), c["eligible_on"]),
                                  "state": "accrued", "batch_id": None, "created_at": now})
            if reversals:
                _insert_new(conn, reversals)
        moving = conn.execute(select(commission_entries.c.id, commission_entries.c.state,
                                     commission_entries.c.eligible_on, commission_entries.c.order_number)
                              .where(commission_entries.c.state.in_(("accrued", "held")))).all()
        to_eligible = [r for r in moving if r.eligible_on <= as_of]
        to_held = [r for r in moving if r.eligible_on > as_of and r.state == "accrued"]
        for target, group in (("eligible", to_eligible), ("held", to_held)):
            if group:
                conn.execute(update(commission_entries).where(commission_entries.c.id.in_([r.id for r in group]))
                             .values(state=target))
        audit.record(conn, actor, [
            Event("commission", r["order_number"], "accrue" if r["kind"] == "credit" else "claw_back", None,
                  r["state"], None, {"event": r["event"], "month": r["month"], "agent_id": r["agent_id"],
                                     "amount_fen": r["amount_fen"]}) for r in new_rows + reversals] + [
            Event("commission", r.order_number, "move", r.state, target, None, {"entry": r.id})
            for target, group in (("eligible", to_eligible), ("held", to_held)) for r in group], now)
    return {"accrued": len(new_rows), "clawed_back": len(reversals), "eligible": len(to_eligible),
            "held": len(to_held)}


def list_entries(db: Store | Connection, *, agent: str | None = None, order: str | None = None,
                 state: str | None = None, actor: str | None = None) -> list[dict]:
    """Ledger entries, oldest first, with the agent's code."""
    if actor is not None:
        require(actor, "settlement.read", "list commission entries")
    with unit_of_work(db) as conn:
        query = select(commission_entries, agents.c.code.label("agent")).join(
            agents, agents.c.id == commission_entries.c.agent_id).order_by(commission_entries.c.id)
        scope = scope_query(actor) if actor is not None else None
        if scope is not None:  # an agent user sees its own subtree's entries only
            query = query.where(commission_entries.c.agent_id.in_(scope))
        if agent:
            query = query.where(agents.c.code == agent.upper())
        if order:
            query = query.where(commission_entries.c.order_number == order)
        if state:
            query = query.where(commission_entries.c.state == state)
        return [dict(r) for r in conn.execute(query).mappings()]


# ---- settlement ----------------------------------------------------------------------------------

def _period(period: str) -> tuple[date, date]:
    try:
        start = datetime.strptime(period, "%Y-%m").date()
    except ValueError:
        raise InvalidValue("period", period, "must be YYYY-MM") from None
    return start, _month_start(start, 1)


def create_batches(db: Store, period: str, *, as_of: date, agent: str | None = None, actor: str,
                   now: datetime) -> list[int]:
    """A draft batch per agent of the eligible entries (and reversals) not yet in a batch, up to the
    end of ``period``; refused for a period that has not ended by ``as_of``."""
    require(actor, "settlement.write", f"create settlement {period}", db)
    _, end = _period(period)
    if as_of < end:
        raise InvalidValue("period", period, f"has not ended (as of {as_of})")
    with unit_of_work(db) as conn:
        query = select(commission_entries.c.agent_id, func.sum(commission_entries.c.amount_fen)).where(
            commission_entries.c.state == "eligible", commission_entries.c.batch_id.is_(None),
            commission_entries.c.eligible_on < end).group_by(commission_entries.c.agent_id)
        if agent:
            query = query.where(commission_entries.c.agent_id == _agent(conn, agent).id)
        ids = []
        for agent_id, total in conn.execute(query).all():
            if conn.execute(select(settlement_batches.c.id).where(settlement_batches.c.agent_id == agent_id,
                                                                  settlement_batches.c.period == period)).first():
                raise InvalidValue("period", period, f"agent {agent_id} already has a batch for it")
            batch = conn.execute(settlement_batches.insert().values(
                agent_id=agent_id, period=period, state="draft", total_fen=int(total), created_at=now,
                changed_at=now)).inserted_primary_key[0]
            conn.execute(update(commission_entries).where(
                commission_entries.c.agent_id == agent_id, commission_entries.c.state == "eligible",
                commission_entries.c.batch_id.is_(None), commission_entries.c.eligible_on < end)
                .values(batch_id=batch, state="settled"))
            ids.append(batch)
        audit.record(conn, actor, [Event("settlement", str(b), "create", None, "draft", None, {"period": period})
                                   for b in ids], now)
    return ids


_NEXT = {"confirm": ("draft", "confirmed"), "approve": ("confirmed", "approved"), "pay": ("approved", "paid")}


def move_batch(db: Store, batch_id: int, action: str, *, actor: str, now: datetime,
               reference: str | None = None) -> dict:
    """confirm (draft -> confirmed), approve (confirmed -> approved), pay (approved -> paid, with a
    payment reference: the entries become paid and the total is credited to the agent's balance)."""
    require(actor, "settlement.write", f"{action} settlement batch {batch_id}", db)
    before, after = _NEXT[action]
    if action == "pay" and not (reference or "").strip():
        raise InvalidValue("reference", reference, "a payment reference is required")
    with unit_of_work(db) as conn:
        batch = conn.execute(select(settlement_batches).where(settlement_batches.c.id == batch_id)).mappings().first()
        if batch is None:
            raise NotFound(f"settlement batch {batch_id} does not exist")
        if batch["state"] != before:
            raise IllegalTransition(f"batch {batch_id} is {batch['state']}; {action} needs it {before}")
        conn.execute(update(settlement_batches).where(settlement_batches.c.id == batch_id)
                     .values(state=after, changed_at=now, **({"reference": reference} if action == "pay" else {})))
        if action == "pay":
            conn.execute(update(commission_entries).where(commission_entries.c.batch_id == batch_id)
                         .values(state="paid"))
            conn.execute(agent_ledger.insert().values(agent_id=batch["agent_id"], kind="settlement",
                                                      amount_fen=batch["total_fen"], batch_id=batch_id, at=now))
        audit.record(conn, actor, [Event("settlement", str(batch_id), action, before, after, None,
                                         {"reference": reference} if reference else None)], now)
    return show_batch(db, batch_id)


def show_batch(db: Store | Connection, batch_id: int, *, actor: str | None = None) -> dict:
    """The batch with its lines (order, event, month, position, amount); ``settlement.read``, and
    an agent user sees only its own subtree's batches (another's reads as not existing)."""
    if actor is not None:
        require(actor, "settlement.read", f"see settlement batch {batch_id}")
    with unit_of_work(db) as conn:
        batch = conn.execute(select(settlement_batches, agents.c.code.label("agent")).join(
            agents, agents.c.id == settlement_batches.c.agent_id).where(settlement_batches.c.id == batch_id)
        ).mappings().first()
        scope = agent_scope(actor) if actor is not None else None
        if scope is not None and (batch is None or batch["agent_id"] not in subtree_ids(conn, scope)):
            raise out_of_scope(actor, f"see settlement batch {batch_id}")
        if batch is None:
            raise NotFound(f"settlement batch {batch_id} does not exist")
        lines = conn.execute(select(commission_entries).where(commission_entries.c.batch_id == batch_id)
                             .order_by(commission_entries.c.id)).mappings().all()
    return {**dict(batch), "lines": [dict(l) for l in lines]}


# ---- balances and withdrawals --------------------------------------------------------------------

def balance(db: Store | Connection, agent: str, *, actor: str | None = None) -> dict:
    """The agent's balance (its ledger's sum), frozen (pending withdrawals), available, and commission
    not settled yet (by state). An agent user may read its own subtree's balances only."""
    if actor is not None:
        require(actor, "settlement.read", f"read the balance of agent {agent}")
    with unit_of_work(db) as conn:
        row = _agent(conn, agent)
        if actor is not None and agent_scope(actor) and row.id not in subtree_ids(conn, agent_scope(actor)):
            raise out_of_scope(actor, f"read the balance of agent {agent}")
        total = conn.execute(select(func.coalesce(func.sum(agent_ledger.c.amount_fen), 0))
                             .where(agent_ledger.c.agent_id == row.id)).scalar()
        frozen = conn.execute(select(func.coalesce(func.sum(withdrawals.c.amount_fen), 0)).where(
            withdrawals.c.agent_id == row.id, withdrawals.c.state.in_(("requested", "approved")))).scalar()
        pending = dict(conn.execute(select(commission_entries.c.state, func.sum(commission_entries.c.amount_fen))
                                    .where(commission_entries.c.agent_id == row.id,
                                           commission_entries.c.state.in_(("accrued", "held", "eligible", "settled")))
                                    .group_by(commission_entries.c.state)).all())
    return {"agent": row.code, "balance_fen": int(total), "frozen_fen": int(frozen),
            "available_fen": int(total) - int(frozen), "pending_fen": {k: int(v) for k, v in pending.items()}}


def request_withdrawal(db: Store, agent: str, amount_yuan, *, as_of: date, actor: str, now: datetime,
                       rules: dict | None = None) -> dict:
    """Freeze ``amount_yuan`` (a Decimal or string, whole fen) of the agent's available balance;
    refused below the minimum, above the available balance, too soon after the last request, or
    over the monthly cap. Fee (clamped) and tax are withheld from it when paid. ``rules`` override
    the settings (:func:`withdrawal_rules`)."""
    if isinstance(amount_yuan, float):
        raise InvalidValue("amount", amount_yuan, "money is never a float; give a decimal string")
    amount = yuan_to_fen(amount_yuan, "amount")
    require(actor, "settlement.write", f"request a withdrawal for {agent}", db)
    with unit_of_work(db) as conn:
        r = {**withdrawal_rules(conn), **(rules or {})}
        row = _agent(conn, agent, lock=True)  # one request per agent at a time sees the balance
        if amount < r["minimum_fen"]:
            raise InvalidValue("amount", amount_yuan, f"below the minimum of {r['minimum_fen']} fen")
        available = balance(conn, agent)["available_fen"]
        if amount > available:
            raise InvalidValue("amount", amount_yuan, f"above the available balance of {available} fen")
        last = conn.execute(select(func.max(withdrawals.c.requested_on)).where(
            withdrawals.c.agent_id == row.id, withdrawals.c.state != "rejected")).scalar()
        if last is not None and as_of < last + timedelta(days=r["every_days"]):
            raise InvalidValue("amount", amount_yuan, f"too soon: the last request was on {last}, one every "
                                                      f"{r['every_days']} days")
        month = conn.execute(select(func.coalesce(func.sum(withdrawals.c.amount_fen), 0)).where(
            withdrawals.c.agent_id == row.id, withdrawals.c.state != "rejected",
            withdrawals.c.requested_on >= _month_start(as_of), withdrawals.c.requested_on < _month_start(as_of, 1))
        ).scalar()
        if month + amount > r["monthly_cap_fen"]:
            raise InvalidValue("amount", amount_yuan, f"over the monthly cap of {r['monthly_cap_fen']} fen")
        fee = int((amount * r["fee_percent"] / 100).to_integral_value(ROUND_HALF_UP)) if r["fee_percent"] else 0
        if r["fee_percent"]:
            fee = min(max(fee, r["fee_min_fen"]), r["fee_max_fen"] or fee)
        tax = int((amount * r["tax_percent"] / 100).to_integral_value(ROUND_HALF_UP))
        wid = conn.execute(withdrawals.insert().values(
            agent_id=row.id, amount_fen=amount, fee_fen=fee, tax_fen=tax, state="requested", requested_on=as_of,
            created_at=now, changed_at=now)).inserted_primary_key[0]
        audit.record(conn, actor, [Event("withdrawal", str(wid), "request", None, "requested", None,
                                         {"agent": row.code, "amount_fen": amount})], now)
    return get_withdrawal(db, wid)


_W_NEXT = {"approve": (("requested",), "approved"), "pay": (("approved",), "paid"),
           "reject": (("requested", "approved"), "rejected")}


def move_withdrawal(db: Store, wid: int, action: str, *, actor: str, now: datetime, reason: str | None = None,
                    reference: str | None = None) -> dict:
    """approve, pay (the amount leaves the balance: paid out, fee and tax withheld) or reject (released)."""
    require(actor, "settlement.write", f"{action} withdrawal {wid}", db)
    before, after = _W_NEXT[action]
    with unit_of_work(db) as conn:
        w = conn.execute(select(withdrawals).where(withdrawals.c.id == wid)).mappings().first()
        if w is None:
            raise NotFound(f"withdrawal {wid} does not exist")
        if w["state"] not in before:
            raise IllegalTransition(f"withdrawal {wid} is {w['state']}; cannot {action} it")
        conn.execute(update(withdrawals).where(withdrawals.c.id == wid).values(
            state=after, changed_at=now, **({"reference": reference} if reference else {})))
        if action == "pay":
            net = w["amount_fen"] - w["fee_fen"] - w["tax_fen"]
            conn.execute(agent_ledger.insert(), [
                dict(agent_id=w["agent_id"], kind=kind, amount_fen=-value, batch_id=None, withdrawal_id=wid, at=now)
                for kind, value in (("withdrawal", net), ("fee", w["fee_fen"]), ("tax", w["tax_fen"])) if value])
        audit.record(conn, actor, [Event("withdrawal", str(wid), action, w["state"], after, reason)], now)
    return get_withdrawal(db, wid)


def get_withdrawal(db: Store | Connection, wid: int) -> dict:
    with unit_of_work(db) as conn:
        row = conn.execute(select(withdrawals, agents.c.code.label("agent")).join(
            agents, agents.c.id == withdrawals.c.agent_id).where(withdrawals.c.id == wid)).mappings().first()
    if row is None:
        raise NotFound(f"withdrawal {wid} does not exist")
    return dict(row)


def list_withdrawals(db: Store | Connection, *, agent: str | None = None, state: str | None = None) -> list[dict]:
    with unit_of_work(db) as conn:
        query = select(withdrawals, agents.c.code.label("agent")).join(
            agents, agents.c.id == withdrawals.c.agent_id).order_by(withdrawals.c.id)
        if agent:
            query = query.where(agents.c.code == agent.upper())
        if state:
            query = query.where(withdrawals.c.state == state)
        return [dict(r) for r in conn.execute(query).mappings()]


def export_batch(db: Store | Connection, batch_id: int, path: str | Path, *, actor: str | None = None) -> int:
    """Write the batch's statement as CSV (one line per entry: order, event, month, position, kind,
    amount in fen, scheme version) and a total line; returns the number of entry lines."""
    import csv

    if actor is not None:
        require(actor, "settlement.read", f"export settlement batch {batch_id}")
    batch = show_batch(db, batch_id, actor=actor)
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["batch", "agent", "period", "entry", "order", "event", "month", "position", "kind",
                         "amount_fen", "scheme_id", "event_at"])
        for line in batch["lines"]:
            writer.writerow([batch_id, batch["agent"], batch["period"], line["id"], line["order_number"],
                             line["event"], line["month"], line["position"], line["kind"], line["amount_fen"],
                             line["scheme_id"], line["event_at"].isoformat()])
        writer.writerow([batch_id, batch["agent"], batch["period"], "", "", "total", "", "", "",
                         batch["total_fen"], "", ""])
    return len(batch["lines"])


def inconsistencies(conn: Connection) -> list[dict]:
    """Settlement batches and ledger entries that disagree (for ``hkops check``): a batch total that is
    not the sum of its lines, a paid batch whose lines are not paid or whose total was not credited
    once, a credit without a paid batch; an entry whose state disagrees with its batch's (or that
    names a batch that does not exist, or another agent's); a reversal that does not undo exactly one
    credit. Dicts of kind, the identifiers and the figures."""
    return _batch_inconsistencies(conn) + _entry_inconsistencies(conn)


def _batch_inconsistencies(conn: Connection) -> list[dict]:
    lines = (select(commission_entries.c.batch_id, func.sum(commission_entries.c.amount_fen).label("sum"),
                    func.count().label("n"),
                    func.sum(case((commission_entries.c.state != "paid", 1), else_=0)).label("unpaid"))
             .group_by(commission_entries.c.batch_id).subquery())
    credits = (select(agent_ledger.c.batch_id, func.sum(agent_ledger.c.amount_fen).label("credited"),
                      func.count().label("credits"))
               .where(agent_ledger.c.kind == "settlement").group_by(agent_ledger.c.batch_id).subquery())
    found = []
    rows = conn.execute(select(settlement_batches.c.id, settlement_batches.c.state, settlement_batches.c.total_fen,
                               lines.c.sum, lines.c.unpaid, credits.c.credited, credits.c.credits)
                        .outerjoin(lines, lines.c.batch_id == settlement_batches.c.id)
                        .outerjoin(credits, credits.c.batch_id == settlement_batches.c.id)).all()
    for r in rows:
        if (r.sum or 0) != r.total_fen:
            found.append({"kind": "batch_total_differs", "batch": r.id, "total_fen": r.total_fen,
                          "lines_fen": int(r.sum or 0)})
        if r.state == "paid" and (r.unpaid or r.credits != 1 or r.credited != r.total_fen):
            found.append({"kind": "batch_payment_differs", "batch": r.id, "total_fen": r.total_fen,
                          "credited_fen": int(r.credited or 0)})
        if r.state != "paid" and r.credits:
            found.append({"kind": "batch_credited_unpaid", "batch": r.id, "total_fen": r.total_fen,
                          "credited_fen": int(r.credited or 0)})
    return found


def _entry_inconsistencies(conn: Connection) -> list[dict]:
    e, b = commission_entries, settlement_batches
    found = []
    rows = conn.execute(
        select(e.c.id, e.c.order_number, e.c.agent_id, e.c.state, e.c.batch_id, b.c.id.label("found"),
               b.c.state.label("batch_state"), b.c.agent_id.label("batch_agent"))
        .outerjoin(b, b.c.id == e.c.batch_id)
        .where(or_(and_(e.c.batch_id.is_(None), e.c.state.in_(("settled", "paid"))),
                   and_(e.c.batch_id.is_not(None), b.c.id.is_(None)),
                   and_(b.c.state == "paid", e.c.state != "paid"),
                   and_(b.c.state != "paid", e.c.state != "settled"),
                   b.c.agent_id != e.c.agent_id))
        .order_by(e.c.id)).all()
    for r in rows:
        ids = {"entry": r.id, "order": r.order_number, "agent_id": r.agent_id, "batch": r.batch_id}
        if r.batch_id is not None and r.found is None:
            found.append({"kind": "entry_batch_missing", **ids})
        elif r.batch_id is not None and r.batch_agent != r.agent_id:
            found.append({"kind": "entry_agent_differs_from_batch", **ids, "batch_agent_id": r.batch_agent})
        else:
            found.append({"kind": "entry_state_differs_from_batch", **ids, "state": r.state,
                          "batch_state": r.batch_state})
    credit = e.alias("credit")
    reversals = conn.execute(
        select(e.c.id, e.c.order_number, e.c.event, e.c.month, e.c.agent_id, e.c.amount_fen,
               credit.c.amount_fen.label("credit_fen"))
        .outerjoin(credit, and_(credit.c.order_id == e.c.order_id, credit.c.event == e.c.event,
                                credit.c.month == e.c.month, credit.c.agent_id == e.c.agent_id,
                                credit.c.kind == "credit"))
        .where(e.c.kind == "reversal", or_(credit.c.id.is_(None), credit.c.amount_fen != -e.c.amount_fen))
        .order_by(e.c.id)).all()
    found += [{"kind": "reversal_differs_from_credit", "entry": r.id, "order": r.order_number, "event": r.event,
               "month": r.month, "agent_id": r.agent_id, "reversal_fen": r.amount_fen,
               "credit_fen": None if r.credit_fen is None else int(r.credit_fen)} for r in reversals]
    found += [{"kind": "entry_kind_unknown", "entry": r.id, "order": r.order_number, "entry_kind": r.kind,
               "amount_fen": r.amount_fen}
              for r in conn.execute(select(e.c.id, e.c.order_number, e.c.kind, e.c.amount_fen).where(or_(
                  e.c.kind.not_in(("credit", "reversal")), and_(e.c.kind == "credit", e.c.amount_fen < 0),
                  and_(e.c.kind == "reversal", e.c.amount_fen > 0))).order_by(e.c.id))]
    return found


def ledger_inconsistencies(conn: Connection) -> list[dict]:
    """Agent balance ledger rows that their sources do not explain (for ``hkops check``; the balance
    is the ledger's sum, so this proves each balance): a settlement credit of a batch that does not
    exist or belongs to another agent; a withdrawal whose ledger rows are not exactly its payout,
    fee and tax (paid) or nothing (not paid); a row of an unknown kind or tied to nothing. Dicts of
    kind, the identifiers and the figures."""
    found = []
    rows = conn.execute(
        select(agent_ledger.c.id, agent_ledger.c.agent_id, agent_ledger.c.batch_id, agent_ledger.c.amount_fen,
               settlement_batches.c.agent_id.label("batch_agent"))
        .outerjoin(settlement_batches, settlement_batches.c.id == agent_ledger.c.batch_id)
        .where(agent_ledger.c.kind == "settlement", agent_ledger.c.batch_id.is_not(None),
               or_(settlement_batches.c.id.is_(None), settlement_batches.c.agent_id != agent_ledger.c.agent_id))
        .order_by(agent_ledger.c.id)).all()
    found += [{"kind": "ledger_settlement_without_batch", "ledger_entry": r.id, "agent_id": r.agent_id,
               "batch": r.batch_id, "amount_fen": r.amount_fen, "batch_agent_id": r.batch_agent} for r in rows]
    found += [{"kind": "ledger_entry_unexplained", "ledger_entry": r.id, "agent_id": r.agent_id,
               "ledger_kind": r.kind, "amount_fen": r.amount_fen}
              for r in conn.execute(select(agent_ledger).where(or_(
                  agent_ledger.c.kind.not_in(("settlement", "withdrawal", "fee", "tax")),
                  and_(agent_ledger.c.kind != "settlement", agent_ledger.c.withdrawal_id.is_(None)),
                  and_(agent_ledger.c.kind == "settlement", agent_ledger.c.batch_id.is_(None))))
                  .order_by(agent_ledger.c.id))]
    booked = defaultdict(dict)
    for wid, agent_id, kind, total in conn.execute(
            select(agent_ledger.c.withdrawal_id, agent_ledger.c.agent_id, agent_ledger.c.kind,
                   func.sum(agent_ledger.c.amount_fen))
            .where(agent_ledger.c.withdrawal_id.is_not(None), agent_ledger.c.kind.in_(("withdrawal", "fee", "tax")))
            .group_by(agent_ledger.c.withdrawal_id, agent_ledger.c.agent_id, agent_ledger.c.kind)):
        booked[wid][(agent_id, kind)] = int(total)
    for w in conn.execute(select(withdrawals).order_by(withdrawals.c.id)).mappings():
        expected = {}
        if w["state"] == "paid":
            expected = {(w["agent_id"], kind): -value for kind, value in (
                ("withdrawal", w["amount_fen"] - w["fee_fen"] - w["tax_fen"]), ("fee", w["fee_fen"]),
                ("tax", w["tax_fen"])) if value}
        got = booked.pop(w["id"], {})
        if got != expected:
            found.append({"kind": "withdrawal_ledger_differs", "withdrawal": w["id"], "agent_id": w["agent_id"],
                          "state": w["state"], "amount_fen": w["amount_fen"],
                          "expected_fen": sum(expected.values()), "ledger_fen": sum(got.values())})
    found += [{"kind": "withdrawal_ledger_differs", "withdrawal": wid, "agent_id": sorted(got)[0][0], "state": None,
               "amount_fen": None, "expected_fen": 0, "ledger_fen": sum(got.values())}
              for wid, got in sorted(booked.items())]
    return found
