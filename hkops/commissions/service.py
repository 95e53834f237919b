"""Commissions: schemes, accrual into the append-only ledger, clawback, settlement batches,
balances and withdrawals. Every use case commits all or nothing and is audited; no clock is read
that the caller cannot give (``as_of``)."""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_right
from collections import defaultdict
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import groupby
from operator import itemgetter
from pathlib import Path

from sqlalchemy import (BigInteger, Column, Connection, Date, Index, Integer, MetaData, String, Table, Text, and_, case,
                        cast, exists, func, literal, literal_column, null, or_, select, update)

from hkops import audit, spreadsheets
from hkops.agents.tables import agents
from hkops.audit import Event, audit_log
from hkops.catalogue.tables import plan_prices, plans
from hkops.commissions import schemes as scheme_files
from hkops.commissions.tables import (agent_ledger, commission_accrual, commission_entries, commission_schemes,
                                      settlement_batches, withdrawals)
from hkops.errors import IllegalTransition, InvalidFile, InvalidValue, NotFound
from hkops.money import fen_to_yuan, format_yuan, yuan_to_fen
from hkops.orders.tables import orders
from hkops.agents.service import scope_query, subtree_ids
from hkops.security.access import agent_scope, out_of_scope, require
from hkops.store import bulk
from hkops.store.engine import Store, unit_of_work
from hkops.store.schema import UTCDateTime
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


def _insert(conn: Connection, table):
    """An INSERT for ``table`` that can skip rows already there (``on_conflict_do_nothing``)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert(table)


_ENTRY_KEY = ["order_id", "event", "month", "agent_id", "kind"]
_ENTRY_COLUMNS = ["order_id", "order_number", "event", "month", "agent_id", "position", "kind", "amount_fen",
                  "scheme_id", "event_at", "eligible_on", "state", "batch_id", "created_at"]
_ACTIONS = {event: action for action, event in PAYING.items()}
_ZONE = "Asia/Shanghai"

#: Scratch tables of one accrual run: temporary (seen by its connection only) and dropped at its end.
#: They hold what is computed once per scheme version, day or agent chain, so that the ledger rows
#: themselves are made by two INSERT ... SELECT statements joining the audit trail and the orders.
_scratch = MetaData()
#: The scheme version in force for each plan on each local day the run meets.
_run_versions = Table(
    "commission_run_versions", _scratch,
    Column("plan", String(32)), Column("day", Date), Column("scheme_id", BigInteger),
    Index("ix_commission_run_versions", "plan", "day"), prefixes=["TEMPORARY"])
#: When an entry of each version earned on each day becomes eligible, and its state as of the run.
_run_eligible = Table(
    "commission_run_eligible", _scratch,
    Column("scheme_id", BigInteger), Column("day", Date), Column("eligible_on", Date), Column("state", String(10)),
    Index("ix_commission_run_eligible", "scheme_id", "day", "eligible_on", "state"), prefixes=["TEMPORARY"])
#: What each rule of each version pays each position of each agent chain met, one row per (version,
#: rule, month, chain, position). ``action``: the audit action of the order event, or in_network;
#: ``within`` is ``within_days`` as an SQLite date modifier.
_run_shares = Table(
    "commission_run_shares", _scratch,
    Column("scheme_id", BigInteger), Column("rule", Integer), Column("action", String(16)), Column("event", String(16)),
    Column("month", Integer), Column("chain", Text), Column("position", Integer),
    Column("agent_id", BigInteger), Column("amount_fen", BigInteger), Column("min_fen", BigInteger),
    Column("within_days", Integer), Column("within", String(16)), Column("usage", Integer),
    Index("ix_commission_run_shares", "scheme_id", "action", "chain"), prefixes=["TEMPORARY"])
#: The in-network months that ended by the run's end: for each version, month ``month`` after an
#: activation in the local month starting ``activated``, its end (``month_end``, and ``event_at`` the
#: UTC moment it begins), eligibility and state; ``fresh``: it ended after the last run's month end.
_run_months = Table(
    "commission_run_months", _scratch,
    Column("scheme_id", BigInteger), Column("activated", Date), Column("month", Integer), Column("month_end", Date),
    Column("event_at", UTCDateTime), Column("eligible_on", Date), Column("state", String(10)), Column("fresh", Integer),
    Index("ix_commission_run_months", "scheme_id", "activated", "month"), prefixes=["TEMPORARY"])
#: In-network months whose minimum spend or usage was met: (order, version, rule, month).
_run_usage = Table(
    "commission_run_usage", _scratch,
    Column("order_id", BigInteger), Column("scheme_id", BigInteger), Column("rule", Integer), Column("month", Integer),
    Index("ix_commission_run_usage", "order_id"), prefixes=["TEMPORARY"])
_RUN_TABLES = (_run_versions, _run_eligible, _run_months, _run_shares, _run_usage)


class _Sql:
    """Date arithmetic in Asia/Shanghai (UTC+8, no daylight saving) for the dialect at hand."""

    def __init__(self, conn: Connection):
        self.sqlite = conn.dialect.name == "sqlite"

    def day(self, at):
        """The local day of the UTC moment ``at``."""
        return func.date(at, "+8 hours") if self.sqlite else cast(func.timezone(_ZONE, at), Date)

    def month_start(self, at):
        """The first day of the local month of the UTC moment ``at``."""
        if self.sqlite:
            return func.date(at, "+8 hours", "start of month")
        return cast(func.date_trunc("month", func.timezone(_ZONE, at)), Date)

    def within_before(self, at):
        """``at`` minus ``_run_shares.within_days`` days (on SQLite to the millisecond)."""
        shares = _run_shares.c
        if self.sqlite:
            return func.strftime("%Y-%m-%d %H:%M:%f", at, shares.within)
        return at - func.make_interval(0, 0, 0, shares.within_days)

    def value(self, day: date | None):
        """A day as this dialect's bulk writer takes it."""
        return day.isoformat() if self.sqlite and day is not None else day


def _eligible_on(scheme_row, day: date) -> date:
    """When an entry earned on ``day`` under this scheme version becomes eligible: at once when settled
    instantly, else after its window and not before the next month."""
    if scheme_row["timing"] == "instant":
        return day
    return max(day + timedelta(days=scheme_row["window_days"]), _month_start(day, 1))


class _Accrual:
    """One accrual run: what it reads once (scheme versions, plan fees and prices) and the SQL it runs."""

    def __init__(self, conn: Connection, *, as_of: date, after_id: int, evaluated: date | None, since, end,
                 last_end: date, now: datetime):
        self.conn, self.sql = conn, _Sql(conn)
        self.as_of, self.after_id, self.evaluated, self.since = as_of, after_id, evaluated, since
        self.end, self.last_end, self.now = end, last_end, now
        self.first: datetime | None = None
        self.versions: dict[str, list] = defaultdict(list)
        for row in conn.execute(select(commission_schemes).order_by(commission_schemes.c.effective)).mappings():
            self.versions[row["plan"]].append((row, scheme_files.parse(row["body"])))
        self.schemes = {row["id"]: (row, scheme) for rows in self.versions.values() for row, scheme in rows}
        self.fees = dict(conn.execute(select(plans.c.code, plans.c.monthly_fee_fen)).all())
        self.prices: dict[str, dict[int, int]] = defaultdict(dict)
        for plan, level, price in conn.execute(select(plan_prices.c.plan, plan_prices.c.level, plan_prices.c.price_fen)):
            self.prices[plan][level] = price

    def _new(self, actions) -> list:
        """Conditions on ``audit_log`` joined to ``orders``: the order events with ``actions`` this run reads,
        those after the watermark and (activations) those since ``since``."""
        a = audit_log.c
        recent = a.id > self.after_id
        if self.since is not None:
            recent = or_(recent, and_(a.action == "activate", a.at >= self.since))
        return [a.entity == "order", a.action.in_(actions), a.at < self.end, orders.c.agent_id.is_not(None), recent]

    def prepare(self) -> bool:
        """Fill the scratch tables for the events and chains this run meets; False if there is nothing to do."""
        conn, sql = self.conn, self.sql
        wanted = list(PAYING) + ["activate"]
        events = audit_log.join(orders, orders.c.number == audit_log.c.subject)
        first = conn.execute(select(func.min(audit_log.c.at)).select_from(events).where(*self._new(wanted))).scalar()
        self.first = first  # no credit of this run is earlier
        if first is None or not self.schemes:
            return False
        chains = conn.execute(select(orders.c.plan, orders.c.agent_chain).distinct().select_from(events)
                              .where(*self._new(wanted))).all()
        for table in _RUN_TABLES:
            table.drop(conn, checkfirst=True)
            table.create(conn)
        days = [_day(first) + timedelta(days=n) for n in range((self.last_end - _day(first)).days + 1)]
        versions, eligible = [], []
        for plan, rows in self.versions.items():
            for day in days:
                chosen = [row for row, _ in rows if row["effective"] <= day]
                if chosen:
                    versions.append((plan, sql.value(day), chosen[-1]["id"]))
        for row, _ in self.schemes.values():
            for day in days:
                due = _eligible_on(row, day)
                eligible.append((row["id"], sql.value(day), sql.value(due), "eligible" if due <= self.as_of else "held"))
        shares = []
        for plan, chain_json in chains:
            chain = json.loads(chain_json or "[]")
            for row, scheme in self.versions.get(plan, ()):
                for index, rule in enumerate(scheme.rules):
                    paid = [(position, agent["id"], amount) for position, (agent, amount) in enumerate(zip(
                        chain, _amounts(rule, chain, self.fees.get(plan, 0), self.prices[plan])), 1) if amount]
                    months = range(rule.months[0], rule.months[1] + 1) if rule.event == "in_network" else (0,)
                    shares += [(row["id"], index, _ACTIONS.get(rule.event, rule.event), rule.event, month,
                                chain_json, position, agent_id, amount, rule.min_fen,
                                rule.within_days, f"-{rule.within_days} days" if rule.within_days is not None else None,
                                int(bool(rule.minimums)))
                               for month in months for position, agent_id, amount in paid]
        months = []
        for row, scheme in self.schemes.values():
            for n in sorted({n for rule in scheme.rules if rule.event == "in_network"
                             for n in range(rule.months[0], rule.months[1] + 1)}):
                activated = _month_start(_day(first))
                while (month_end := _month_start(activated, n)) <= self.last_end:
                    due = _eligible_on(row, month_end)
                    months.append((row["id"], sql.value(activated), n, sql.value(month_end),
                                   bulk.driver_value(conn, _run_months.c.event_at, _utc(month_end)), sql.value(due),
                                   "eligible" if due <= self.as_of else "held",
                                   int(self.evaluated is None or month_end > self.evaluated)))
                    activated = _month_start(activated, 1)
        for table, rows in ((_run_versions, versions), (_run_eligible, eligible), (_run_months, months),
                            (_run_shares, shares)):
            bulk.insert_rows(conn, table, [c.name for c in table.c], rows)
        return True

    def _credits(self, *, in_network: bool, usage: bool | None = None):
        """The SELECT of the credits of one-off events, or (``in_network``) of the in-network months that ended
        (``usage``: only the months of rules with a minimum, before their usage is known)."""
        a, o, v, el, s, m, sql = (audit_log.c, orders.c, _run_versions.c, _run_eligible.c, _run_shares.c,
                                  _run_months.c, self.sql)
        joined = (audit_log.join(orders, o.number == a.subject)
                  .join(_run_versions, and_(v.plan == o.plan, v.day == sql.day(a.at))))
        if not in_network:
            act, prior, prior_act = audit_log.alias("act"), audit_log.alias("prior"), audit_log.alias("prior_act")
            joined = (joined.join(_run_shares, and_(s.scheme_id == v.scheme_id, s.action == a.action,
                                                    s.chain == o.agent_chain))
                      .join(_run_eligible, and_(el.scheme_id == v.scheme_id, el.day == v.day)))
            return (select(o.id, o.number, s.event, s.month, s.agent_id, s.position, literal("credit", String),
                           s.amount_fen, s.scheme_id, a.at, el.eligible_on, el.state, null(),
                           literal(self.now, UTCDateTime())).select_from(joined)
                    .where(a.id > self.after_id, a.entity == "order", a.action.in_(list(PAYING)),
                           a.at < self.end, o.agent_id.is_not(None),
                           func.coalesce(o.first_topup_fen, 0) >= s.min_fen,
                           # only an order's first event of each kind counts: a replayed one changes nothing
                           ~exists().where(prior.c.subject == a.subject, prior.c.entity == "order",
                                           prior.c.action == a.action, prior.c.id < a.id),
                           or_(s.within_days.is_(None), exists().where(
                               act.c.subject == a.subject, act.c.entity == "order", act.c.action == "activate",
                               act.c.at <= a.at, act.c.at >= sql.within_before(a.at),
                               ~exists().where(prior_act.c.subject == act.c.subject, prior_act.c.entity == "order",
                                               prior_act.c.action == "activate", prior_act.c.id < act.c.id)))))
        joined = (joined.join(_run_months, and_(m.scheme_id == v.scheme_id, m.activated == sql.month_start(a.at)))
                  .join(_run_shares, and_(s.scheme_id == v.scheme_id, s.action == "in_network",
                                          s.chain == o.agent_chain, s.month == m.month)))
        earlier, stop, card_stop = audit_log.alias("earlier"), audit_log.alias("stop"), audit_log.alias("card_stop")
        query = (select(o.id, o.number, s.event, s.month, s.agent_id, s.position, literal("credit", String),
                        s.amount_fen, s.scheme_id, m.event_at, m.eligible_on, m.state, null(),
                        literal(self.now, UTCDateTime())).select_from(joined)
                 .where(*self._new(["activate"]), or_(a.id > self.after_id, m.fresh == 1),
                        # months count from the first activation: a replayed event moves none
                        ~exists().where(earlier.c.subject == a.subject, earlier.c.entity == "order",
                                        earlier.c.action == "activate", earlier.c.id < a.id),
                        ~exists().where(stop.c.subject == o.number, stop.c.entity == "order",
                                        stop.c.action.in_(STOPS_ORDER), stop.c.at >= a.at, stop.c.at < m.event_at),
                        ~exists().where(card_stop.c.subject == o.iccid, card_stop.c.entity == "sim",
                                        card_stop.c.to_state.in_(STOPS_CARD), card_stop.c.at >= a.at,
                                        card_stop.c.at < m.event_at)))
        u = _run_usage.c
        if usage:
            return query.where(s.usage == 1).with_only_columns(
                o.id, o.msisdn, s.scheme_id, s.rule, s.month, m.month_end, o.plan).distinct()
        return query.where(or_(s.usage == 0, exists().where(u.order_id == o.id, u.scheme_id == s.scheme_id,
                                                              u.rule == s.rule, u.month == s.month)))

    def write(self, usage_dir) -> None:
        """Insert the credits, set-wise; an entry already in the ledger is skipped (its unique key)."""
        conn = self.conn
        minimums = any(rule.minimums for _, scheme in self.schemes.values() for rule in scheme.rules)
        months = conn.execute(self._credits(in_network=True, usage=True)).all() if minimums else []
        if months:
            met = _meets_minimums(usage_dir, [(order_id, msisdn, month_end, self.schemes[scheme_id][1].rules[rule],
                                               self.fees.get(plan, 0))
                                              for order_id, msisdn, scheme_id, rule, _, month_end, plan in months])
            bulk.insert_rows(conn, _run_usage, [c.name for c in _run_usage.c],
                             [(order_id, scheme_id, rule, month) for order_id, msisdn, scheme_id, rule, month, month_end, _
                              in months if (order_id, month_end, self.schemes[scheme_id][1].rules[rule]) in met])
        for in_network in (False, True):
            conn.execute(_insert(conn, commission_entries).from_select(
                _ENTRY_COLUMNS, self._credits(in_network=in_network)).on_conflict_do_nothing(index_elements=_ENTRY_KEY))
        for table in _RUN_TABLES:
            table.drop(conn)


def _stops(conn: Connection, *, after_id: int, since: datetime | None, end: datetime,
           every: bool = False) -> dict[int, list[datetime]]:
    """Order id -> times of the stops (order cancelled or returned; its card suspended, terminated or lost)
    before ``end`` that are new (audit id above ``after_id``) or at ``since`` or later; ``every``: all of them."""
    found: dict[int, set] = defaultdict(set)
    for joined, where in ((orders.c.number, and_(audit_log.c.entity == "order", audit_log.c.action.in_(STOPS_ORDER))),
                          (orders.c.iccid, and_(audit_log.c.entity == "sim", audit_log.c.to_state.in_(STOPS_CARD)))):
        query = (select(orders.c.id, audit_log.c.at).join(orders, joined == audit_log.c.subject)
                 .where(where, audit_log.c.at < end))
        parts = [query] if every else [query.where(audit_log.c.id > after_id)] + (
            [query.where(audit_log.c.at >= since)] if since is not None else [])
        for part in parts:
            for order_id, at in conn.execute(part):
                found[order_id].add(at)
    return {order_id: sorted(times) for order_id, times in found.items()}


def _first_stop(stops: dict[int, list[datetime]], order_id: int, start: datetime, end: datetime) -> datetime | None:
    """The first stop of the order in [start, end), or None."""
    return next((at for at in stops.get(order_id, ()) if start <= at < end), None)


def _meets_minimums(usage_dir, wanted: list[tuple]) -> set[tuple]:
    """Of ``wanted`` (order id, msisdn, month end, rule, the plan's monthly fee), those whose number
    used at least the rule's minimums in the calendar month before the month end (read from the
    usage store). A month's spend is the plan's monthly fee plus the charges its records carry."""
    from hkops.analytics.usage_stats import totals_per_number
    from hkops.analytics.engine import store_location

    by_month = defaultdict(list)
    for item in wanted:
        by_month[item[2]].append(item)
    met = set()
    for month_end, items in by_month.items():
        totals = totals_per_number(store_location(usage_dir), [i[1] for i in items if i[1]],
                                   start=_month_start(month_end, -1), end=month_end - timedelta(days=1))
        for order_id, msisdn, _, rule, fee in items:
            used = totals.get(msisdn)
            if used and fee + used["charge_fen"] >= rule.min_spend_fen and used["topup_fen"] >= rule.min_topup_fen \
                    and used["data_bytes"] >= rule.min_data_mb * (1 << 20) and used["voice_mo_s"] >= rule.min_voice_min * 60:
                met.add((order_id, month_end, rule))
    return met


# ---- entry moves in the audit trail ------------------------------------------------------------
# Accrual and settlement move entries set-wise; each move of a run or batch is one audit record
# naming its entries as sorted id runs [[first, last], ...] (details "entries"), so that an entry's
# history (:func:`entry_history`) is rebuilt from the trail alone. A batch's entries are often
# interleaved with other agents' (one run per entry): a batch move of more than COMPACT_RUNS runs
# names them instead by count, total and digest (:func:`entries_digest`), membership then being the
# entry's batch_id, proven by recomputing the digest over the batch's lines.

#: The audit actions of entry moves (entity "commission"): created by accrual, clawed back (a reversal
#: created), moved by accrual (held -> eligible ...), gathered into a batch (settled), paid.
ENTRY_MOVES = ("create", "claw_back", "move", "settle", "pay")


#: A batch move whose entries make more id runs than this is recorded by digest rather than by runs.
COMPACT_RUNS = 64


def entries_digest(ids) -> str:
    """The digest of a set of entries: SHA-256 (hex) of their ids in ascending order, written in
    decimal and joined by "," (entries 3, 4 and 9: ``sha256(b"3,4,9")``)."""
    return hashlib.sha256(",".join(map(str, ids)).encode("ascii")).hexdigest()


def _ids(runs: list[list[int]]):
    """The ids the sorted runs hold, ascending."""
    return (entry_id for first, last in runs for entry_id in range(first, last + 1))


def _count(runs: list[list[int]]) -> int:
    """How many ids the runs hold."""
    return sum(last - first + 1 for first, last in runs)


def _ranges_by(conn: Connection, key, *where) -> dict:
    """The ids of the entries matching ``where`` as sorted runs of consecutive ids, [[first, last], ...],
    by the value of the column ``key`` (None: all under 0). A group whose count spans its lowest to
    highest id is one run (found in SQL); the others' ids are read in order and cut into runs."""
    e = commission_entries.c
    group = (literal_column("0") if key is None else key).label("key")
    found: dict = {}
    scattered = []
    spans = select(group, func.min(e.id), func.max(e.id), func.count()).where(*where)
    for value, first, last, count in conn.execute(spans if key is None else spans.group_by(key)):
        if not count:
            continue
        if last - first + 1 == count:
            found[value] = [[int(first), int(last)]]
        else:
            scattered.append(value)
    if scattered:  # their ids in order, cut where one does not follow the one before
        chosen = [] if key is None else [key]
        rows = conn.execute(select(group, e.id).where(*where, *(c.in_(scattered) for c in chosen))
                            .order_by(*chosen, e.id))
        for value, group_rows in groupby(rows, key=itemgetter(0)):
            found[value] = _runs(entry_id for _, entry_id in group_rows)
    return found


def _runs(ids) -> list[list[int]]:
    """Ascending ids as runs of consecutive ids, [[first, last], ...]."""
    runs: list[list[int]] = []
    for entry_id in ids:
        if runs and entry_id == runs[-1][1] + 1:
            runs[-1][1] = entry_id
        else:
            runs.append([entry_id, entry_id])
    return runs


def _move_entries(conn: Connection, state: str, *where) -> list[list[int]]:
    """Set the entries matching ``where`` to ``state``; the id runs of those moved. The caller holds
    the write lock, or the lock of the batch whose entries move: the entries found are the entries
    moved, checked by their count."""
    runs = _ranges_by(conn, None, *where).get(0, [])
    moved = conn.execute(update(commission_entries).where(*where).values(state=state)).rowcount
    if moved != _count(runs):
        raise IllegalTransition(f"{moved} commission entries moved to {state}, {_count(runs)} expected: "
                                "they were changed meanwhile; try again")
    return runs


def _entries_moved(subject: str, action: str, before: str | None, after: str, runs: list[list[int]], reason: str,
                   details: dict, *, total_fen: int | None = None) -> Event:
    """The audit event of one move of a set of entries (entity "commission"): its entries as id runs
    (``entries``), or for a batch's move (``total_fen``, the batch's total, given) of more than
    :data:`COMPACT_RUNS` runs, as ``count``, ``total_fen`` and ``digest`` (:func:`entries_digest`)."""
    if total_fen is not None and len(runs) > COMPACT_RUNS:
        return Event("commission", subject, action, before, after, reason,
                     {**details, "count": _count(runs), "total_fen": total_fen, "digest": entries_digest(_ids(runs))})
    return Event("commission", subject, action, before, after, reason,
                 {**details, "count": _count(runs), "entries": runs})


def _holds(runs: list[list[int]], entry_id: int) -> bool:
    """Whether the sorted id runs hold ``entry_id``."""
    at = bisect_right(runs, entry_id, key=lambda run: run[0]) - 1
    return at >= 0 and runs[at][1] >= entry_id


def accrue(db: Store, *, as_of: date, until: date | None = None, actor: str, now: datetime,
           usage_dir: str | Path | None = None) -> dict:
    """Turn order events, card stops and month ends up to ``until`` (default ``as_of``) into ledger
    entries and clawbacks, and move entries held -> eligible as of ``as_of``.

    Incremental: only audit records after the stored watermark are read, and in-network months are
    evaluated for the month ends passed since the last run; the watermark moves in the same
    transaction as the entries, so a failed run loses nothing. Idempotent: an entry already there is
    never written again (its unique key), so runs may repeat or overlap. In-network minimums of
    spend or usage are read from the usage store at ``usage_dir`` (default ``data/usage``)."""
    require(actor, "settlement.write", "accrue commissions", db)
    until = min(until or as_of, as_of)
    last_end = until + timedelta(days=1)  # a month ending on or before this day is over
    end = _utc(last_end)
    with unit_of_work(db) as conn:
        settled = conn.execute(select(func.max(settlement_batches.c.period))).scalar()
        if settled and until < _period(settled)[1] - timedelta(days=1):
            raise InvalidValue("until", until.isoformat(), f"period {settled} is already settled; accrue up to "
                                                            "its end or later")
        mark = conn.execute(select(commission_accrual).where(commission_accrual.c.id == 1)).mappings().first()
        after_id, evaluated = 0, None
        if mark is not None:
            newer = conn.execute(select(func.min(commission_schemes.c.effective))
                                 .where(commission_schemes.c.id > mark["scheme_id"])).scalar()
            if newer is None or (mark["until"] is not None and newer > mark["until"]):
                after_id, evaluated = mark["audit_id"], mark["month_end"]
            # else: a version added since starts inside what was accrued: start over (idempotent)
        relevant = or_(and_(audit_log.c.entity == "order", audit_log.c.action.in_(list(PAYING) + list(STOPS_ORDER))),
                       and_(audit_log.c.entity == "sim", audit_log.c.to_state.in_(STOPS_CARD)))
        beyond = conn.execute(select(func.min(audit_log.c.id)).where(
            audit_log.c.id > after_id, audit_log.c.at >= end, relevant)).scalar()
        head = beyond - 1 if beyond else conn.execute(select(func.max(audit_log.c.id))).scalar() or 0
        before = conn.execute(select(func.max(commission_entries.c.id))).scalar() or 0
        longest = max((rule.months[1] for row in conn.execute(select(commission_schemes.c.body)).scalars()
                       for rule in scheme_files.parse(row).rules if rule.event == "in_network"), default=0)
        # Activations whose in-network months may have ended since the last run.
        since = _utc(_month_start(evaluated, 1 - longest)) if evaluated is not None and longest else None
        run = _Accrual(conn, as_of=as_of, after_id=after_id, evaluated=evaluated, since=since, end=end,
                       last_end=last_end, now=now)
        if run.prepare():
            run.write(usage_dir)
        credited = conn.execute(select(func.max(commission_entries.c.id))).scalar() or 0

        # Clawback: a stop inside the window of a credit appends its negative reversal.
        stops = _stops(conn, after_id=after_id, since=run.first, end=end, every=not after_id and evaluated is None)
        windows = {scheme_id: row["window_days"] for scheme_id, (row, _) in run.schemes.items()}
        reversals = []
        stopped_ids = sorted(stops)
        for first in range(0, len(stopped_ids), 5_000):
            for c in conn.execute(select(commission_entries).where(
                    commission_entries.c.kind == "credit",
                    commission_entries.c.order_id.in_(stopped_ids[first:first + 5_000]))).mappings():
                stop = _first_stop(stops, c["order_id"], c["event_at"], c["event_at"] + timedelta(windows[c["scheme_id"]]))
                if stop is not None:
                    # A reversal of a credit not settled yet waits for it, so both net out in one batch.
                    due = _day(stop) if c["state"] in ("settled", "paid") else max(_day(stop), c["eligible_on"])
                    reversals.append({**{k: v for k, v in c.items() if k != "id"}, "kind": "reversal",
                                      "amount_fen": -c["amount_fen"], "event_at": stop, "eligible_on": due,
                                      "state": "eligible" if due <= as_of else "held", "batch_id": None,
                                      "created_at": now})
        if reversals:
            conn.execute(_insert(conn, commission_entries).on_conflict_do_nothing(index_elements=_ENTRY_KEY),
                         reversals)
        e = commission_entries.c
        created = _ranges_by(conn, e.state, e.id > before, e.id <= credited)
        clawed = _ranges_by(conn, e.state, e.id > credited)
        moved = {(source, target): _move_entries(conn, target, e.state == source, due, e.id <= before)
                 for source, target, due in (("accrued", "eligible", e.eligible_on <= as_of),
                                             ("held", "eligible", e.eligible_on <= as_of),
                                             ("accrued", "held", e.eligible_on > as_of))}
        accrued = sum(_count(ranges) for ranges in created.values())
        held = _count(created.get("held", []))
        result = {"accrued": accrued, "clawed_back": sum(_count(ranges) for ranges in clawed.values()),
                  "eligible": accrued - held + _count(moved["accrued", "eligible"]) + _count(moved["held", "eligible"])
                  + _count(clawed.get("eligible", [])),
                  "held": held + _count(moved["accrued", "held"]) + _count(clawed.get("held", []))}
        dates = {"as_of": as_of.isoformat(), "until": until.isoformat()}
        earned = f"earned by order events and month ends up to {until}"
        why = {"held": f"its clawback window ends after {as_of}", "eligible": f"its clawback window ended by {as_of}"}
        moves = [_entries_moved("accrual", "create", None, state, ranges, f"{earned}; {why[state]}", dates)
                 for state, ranges in created.items()]
        moves += [_entries_moved("accrual", "claw_back", None, state, ranges,
                                 "the order was cancelled or returned, or its card stopped, inside the credit's "
                                 f"window; {why[state]}", dates) for state, ranges in clawed.items()]
        moves += [_entries_moved("accrual", "move", source, target, ranges, why[target], dates)
                  for (source, target), ranges in moved.items() if ranges]
        mark_values = dict(audit_id=max(head, after_id),
                           month_end=max(filter(None, (evaluated, _month_start(last_end)))),
                           until=max(filter(None, (mark and mark["until"], until))),
                           scheme_id=max(windows, default=0), changed_at=now)
        if mark is None:
            conn.execute(commission_accrual.insert().values(id=1, **mark_values))
        else:
            conn.execute(update(commission_accrual).where(commission_accrual.c.id == 1).values(**mark_values))
        audit.record(conn, actor, [Event("commission", f"accrual {until.isoformat()}", "accrue", str(after_id),
                                         str(mark_values["audit_id"]), None, {**dates, **result}), *moves], now)
    return result


def list_entries(db: Store | Connection, *, agent: str | None = None, order: str | None = None,
                 state: str | None = None, kind: str | None = None, limit: int | None = None,
                 actor: str | None = None) -> list[dict]:
    """Ledger entries, oldest first, with the agent's code; ``kind`` credit or reversal; with
    ``limit``, the newest ``limit`` of them (still oldest first)."""
    if actor is not None:
        require(actor, "settlement.read", "list commission entries")
    with unit_of_work(db) as conn:
        query = select(commission_entries, agents.c.code.label("agent")).join(
            agents, agents.c.id == commission_entries.c.agent_id)
        query = query.order_by(commission_entries.c.id.desc()).limit(limit) if limit else query.order_by(
            commission_entries.c.id)
        scope = scope_query(actor) if actor is not None else None
        if scope is not None:  # an agent user sees its own subtree's entries only
            query = query.where(commission_entries.c.agent_id.in_(scope))
        if agent:
            query = query.where(agents.c.code == agent.upper())
        if order:
            query = query.where(commission_entries.c.order_number == order)
        if state:
            query = query.where(commission_entries.c.state == state)
        if kind:
            query = query.where(commission_entries.c.kind == kind)
        rows = [dict(r) for r in conn.execute(query).mappings()]
    return rows[::-1] if limit else rows


def entry_history(db: Store | Connection, entry_id: int, *, actor: str | None = None) -> list[dict]:
    """The moves of ledger entry ``entry_id``, oldest first, rebuilt from the audit trail: each with
    the audit record's ``id``, ``at`` (when), ``actor`` (who), ``action``, ``from_state``,
    ``to_state``, ``reason`` (why), ``subject`` (the accrual or the batch), ``proof`` and
    ``tampered``/``warning``. ``proof`` "ids": the record names the entry's id; "digest": a batch's
    move recorded by digest, which names no id: the entry is in it by its batch_id, and the digest
    is recomputed over the batch's lines now; if they differ (lines changed after the move), the move
    is ``tampered`` and ``warning`` says so. Moves written before the audit named their entries are
    not found. ``settlement.read``; an agent user sees its own subtree's entries only (another's
    reads as not existing)."""
    if actor is not None:
        require(actor, "settlement.read", f"see the history of commission entry {entry_id}")
    a, e = audit_log.c, commission_entries.c
    with _reader(db) as conn:
        entry = conn.execute(select(e.agent_id, e.batch_id).where(e.id == entry_id)).first()
        scope = agent_scope(actor) if actor is not None else None
        if scope is not None and (entry is None or entry.agent_id not in subtree_ids(conn, scope)):
            raise out_of_scope(actor, f"see the history of commission entry {entry_id}")
        if entry is None:
            raise NotFound(f"commission entry {entry_id} does not exist")
        # Accrual's moves, and those of the entry's batch (an entry is in one batch at most).
        subjects = ["accrual"] + ([f"batch {entry.batch_id}"] if entry.batch_id is not None else [])
        rows = conn.execute(select(a.id, a.at, a.actor, a.action, a.from_state, a.to_state, a.reason, a.subject,
                                   a.details)
                            .where(a.subject.in_(subjects), a.entity == "commission", a.action.in_(ENTRY_MOVES))
                            .order_by(a.id)).mappings().all()
        records = [(row, json.loads(row["details"])) for row in rows if row["details"]]
        lines = None
        if any("digest" in details for _, details in records):  # the batch's lines now, to prove its digests
            lines = conn.execute(select(e.id).where(e.batch_id == entry.batch_id).order_by(e.id)).scalars().all()
    moves = []
    for row, details in records:
        move = {k: v for k, v in row.items() if k != "details"}
        if "digest" in details:
            tampered = entries_digest(lines) != details["digest"]
            warning = (f"TAMPERED: {row['subject']}'s lines were changed after this move: the audit record's digest "
                       f"of its {details.get('count')} entries does not match the {len(lines)} lines in it now, so "
                       f"this entry's part in the move is not proven") if tampered else None
            moves.append({**move, "proof": "digest", "tampered": tampered, "warning": warning})
        elif _holds(details.get("entries", []), entry_id):
            moves.append({**move, "proof": "ids", "tampered": False, "warning": None})
    return moves


# ---- settlement ----------------------------------------------------------------------------------

def _period(period: str) -> tuple[date, date]:
    try:
        start = datetime.strptime(period, "%Y-%m").date()
    except ValueError:
        raise InvalidValue("period", period, "must be YYYY-MM") from None
    return start, _month_start(start, 1)


def _ended(period: str, as_of: date) -> date:
    """The first day after ``period``; refused when that is after ``as_of`` (the period has not ended)."""
    _, end = _period(period)
    if as_of < end:
        raise InvalidValue("period", period, f"has not ended (as of {as_of})")
    return end


def _to_settle(end: date):
    """Per agent, the eligible entries not in a batch up to ``end``: agent_id, total, entries."""
    return select(commission_entries.c.agent_id, func.sum(commission_entries.c.amount_fen).label("total"),
                  func.count().label("entries")).where(
        commission_entries.c.state == "eligible", commission_entries.c.batch_id.is_(None),
        commission_entries.c.eligible_on < end).group_by(commission_entries.c.agent_id)


def create_batches(db: Store, period: str, *, as_of: date, agent: str | None = None, actor: str,
                   now: datetime, progress=None) -> list[int]:
    """A draft batch per agent of the eligible entries (and reversals) not yet in a batch, up to the
    end of ``period``; refused for a period that has not ended by ``as_of``. ``progress`` (if given)
    is called once with the number of batches made."""
    require(actor, "settlement.write", f"create settlement {period}", db)
    end = _ended(period, as_of)
    with unit_of_work(db) as conn:
        due = [commission_entries.c.state == "eligible", commission_entries.c.batch_id.is_(None),
               commission_entries.c.eligible_on < end]
        if agent:
            due.append(commission_entries.c.agent_id == _agent(conn, agent).id)
        totals = conn.execute(select(commission_entries.c.agent_id, func.sum(commission_entries.c.amount_fen))
                              .where(*due).group_by(commission_entries.c.agent_id)
                              .order_by(commission_entries.c.agent_id)).all()
        taken = conn.execute(select(agents.c.code).join(settlement_batches, settlement_batches.c.agent_id == agents.c.id)
                             .where(settlement_batches.c.period == period, settlement_batches.c.agent_id.in_(
                                 select(commission_entries.c.agent_id).where(*due)))).scalars().first()
        if taken:
            raise InvalidValue("period", period, f"agent {taken} already has a batch for it")
        if not totals:
            return []
        last = conn.execute(select(func.max(settlement_batches.c.id))).scalar() or 0
        conn.execute(settlement_batches.insert(), [
            dict(agent_id=agent_id, period=period, state="draft", total_fen=int(total), created_at=now, changed_at=now)
            for agent_id, total in totals])
        batch = (select(settlement_batches.c.id).where(settlement_batches.c.agent_id == commission_entries.c.agent_id,
                                                       settlement_batches.c.period == period).scalar_subquery())
        conn.execute(update(commission_entries).where(*due).values(batch_id=batch, state="settled"))
        made = dict(conn.execute(select(settlement_batches.c.id, settlement_batches.c.total_fen)
                                 .where(settlement_batches.c.id > last).order_by(settlement_batches.c.id)).all())
        ids = list(made)
        # The batches are new: their entries are those this update gathered.
        gathered = _ranges_by(conn, commission_entries.c.batch_id, commission_entries.c.batch_id.in_(ids))
        if progress:
            progress(len(ids))
        events = []
        for b in ids:
            events += [Event("settlement", str(b), "create", None, "draft", None, {"period": period}),
                       _entries_moved(f"batch {b}", "settle", "eligible", "settled", gathered.get(b, []),
                                      f"gathered into settlement batch {b} for {period}",
                                      {"batch": b, "period": period}, total_fen=int(made[b]))]
        audit.record(conn, actor, events, now)
    return ids


_NEXT = {"confirm": ("draft", "confirmed"), "approve": ("confirmed", "approved"), "pay": ("approved", "paid")}


def move_batch(db: Store, batch_id: int, action: str, *, actor: str, now: datetime,
               reference: str | None = None, lines: bool = True) -> dict:
    """confirm (draft -> confirmed), approve (confirmed -> approved), pay (approved -> paid, with a
    payment reference: the entries become paid and the total is credited to the agent's balance).
    Returns the batch as :func:`show_batch` does (``lines=False``: without its lines)."""
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
        # Only from the state read: of two movers of one batch, the second moves nothing and is refused
        # (on PostgreSQL it waits for the first's row lock, then finds the state changed).
        moved = conn.execute(update(settlement_batches)
                             .where(settlement_batches.c.id == batch_id, settlement_batches.c.state == before)
                             .values(state=after, changed_at=now,
                                     **({"reference": reference} if action == "pay" else {})))
        if moved.rowcount != 1:
            raise IllegalTransition(f"batch {batch_id} was moved meanwhile; cannot {action} it")
        events = [Event("settlement", str(batch_id), action, before, after, None,
                        {"reference": reference} if reference else None)]
        if action == "pay":
            paid = _move_entries(conn, "paid", commission_entries.c.batch_id == batch_id,
                                 commission_entries.c.state == "settled")
            in_batch = conn.execute(select(func.count()).where(commission_entries.c.batch_id == batch_id)).scalar()
            if _count(paid) != in_batch:
                raise IllegalTransition(f"batch {batch_id}: {in_batch - _count(paid)} of its {in_batch} lines are "
                                        "not settled; cannot pay it (hkops check names them)")
            conn.execute(agent_ledger.insert().values(agent_id=batch["agent_id"], kind="settlement",
                                                      amount_fen=batch["total_fen"], batch_id=batch_id, at=now))
            events.append(_entries_moved(f"batch {batch_id}", "pay", "settled", "paid", paid,
                                         f"settlement batch {batch_id} paid",
                                         {"batch": batch_id, "reference": reference}, total_fen=batch["total_fen"]))
        audit.record(conn, actor, events, now)
    return show_batch(db, batch_id, lines=lines)


def show_batch(db: Store | Connection, batch_id: int, *, actor: str | None = None, lines: bool = True) -> dict:
    """The batch with its lines (order, event, month, position, amount; none with ``lines=False``);
    ``settlement.read``, and an agent user sees only its own subtree's batches (another's reads as
    not existing)."""
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
        rows = conn.execute(select(commission_entries).where(commission_entries.c.batch_id == batch_id)
                            .order_by(commission_entries.c.id)).mappings().all() if lines else []
    return {**dict(batch), **({"lines": [dict(row) for row in rows]} if lines else {})}


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
            raise InvalidValue("amount", amount_yuan, f"below the minimum of {format_yuan(r['minimum_fen'])}")
        available = balance(conn, agent)["available_fen"]
        if amount > available:
            raise InvalidValue("amount", amount_yuan, f"above the available balance of {format_yuan(available)}")
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
            raise InvalidValue("amount", amount_yuan, f"over the monthly cap of {format_yuan(r['monthly_cap_fen'])} "
                                                      f"({format_yuan(month)} requested this month already)")
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
    """approve, pay (the amount leaves the balance: paid out, fee and tax withheld) or reject (released).

    Checked under lock, as ``request_withdrawal`` freezes: every write transaction is serialised
    (SQLite's BEGIN IMMEDIATE, PostgreSQL's advisory lock), and the agent's and the withdrawal's rows
    are locked besides, so two payers of one withdrawal pay it once. Pay is refused when the balance
    no longer covers what is frozen (a negative settlement since the request: the money is not there)."""
    require(actor, "settlement.write", f"{action} withdrawal {wid}", db)
    before, after = _W_NEXT[action]
    with unit_of_work(db) as conn:
        code = conn.execute(select(agents.c.code).join(withdrawals, withdrawals.c.agent_id == agents.c.id)
                            .where(withdrawals.c.id == wid)).scalar()
        if code is None:
            raise NotFound(f"withdrawal {wid} does not exist")
        _agent(conn, code, lock=True)  # as request_withdrawal: one move per agent at a time
        w = conn.execute(select(withdrawals).where(withdrawals.c.id == wid).with_for_update()).mappings().first()
        if w["state"] not in before:
            raise IllegalTransition(f"withdrawal {wid} is {w['state']}; cannot {action} it")
        if action == "pay":
            held = balance(conn, code)
            if held["available_fen"] < 0:
                raise IllegalTransition(
                    f"withdrawal {wid} cannot be paid: agent {code}'s balance of {held['balance_fen']} fen no "
                    f"longer covers its frozen {held['frozen_fen']} fen (a negative settlement since the request); "
                    "reject it or wait for the balance")
        moved = conn.execute(update(withdrawals).where(withdrawals.c.id == wid, withdrawals.c.state.in_(before))
                             .values(state=after, changed_at=now, **({"reference": reference} if reference else {})))
        if moved.rowcount != 1:  # cannot happen under the lock; refuses rather than pays twice
            raise IllegalTransition(f"withdrawal {wid} was moved meanwhile; cannot {action} it")
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


def list_withdrawals(db: Store | Connection, *, agent: str | None = None, state: str | None = None,
                     actor: str | None = None) -> list[dict]:
    """Withdrawals, oldest first, with the agent's code; ``state`` one state or several (a tuple).
    With ``actor``: ``settlement.read``, and an agent user sees its own subtree's only."""
    if actor is not None:
        require(actor, "settlement.read", "list withdrawals")
    with unit_of_work(db) as conn:
        query = select(withdrawals, agents.c.code.label("agent")).join(
            agents, agents.c.id == withdrawals.c.agent_id).order_by(withdrawals.c.id)
        scope = scope_query(actor) if actor is not None else None
        if scope is not None:
            query = query.where(withdrawals.c.agent_id.in_(scope))
        if agent:
            query = query.where(agents.c.code == agent.upper())
        if state:
            query = query.where(withdrawals.c.state.in_((state,) if isinstance(state, str) else tuple(state)))
        return [dict(r) for r in conn.execute(query).mappings()]


#: The columns of a batch statement (CSV and Excel): each line names its entry, order and event.
STATEMENT_COLUMNS = ["batch", "agent", "period", "entry", "order", "event", "month", "position", "kind",
                     "event_at", "scheme_id", "amount_fen", "amount_yuan"]
#: Excel's number format for the yuan column.
YUAN_FORMAT = '"¥"#,##0.00;[Red]-"¥"#,##0.00'


def statement(batch: dict) -> tuple[list[list], list]:
    """A batch (:func:`show_batch`) as statement lines (:data:`STATEMENT_COLUMNS`, the event's time in
    Asia/Shanghai, yuan as Decimal) and its total line."""
    head = [batch["id"], batch["agent"], batch["period"]]
    lines = [head + [line["id"], line["order_number"], line["event"], line["month"], line["position"], line["kind"],
                     line["event_at"].astimezone(SHANGHAI).isoformat(timespec="seconds"), line["scheme_id"],
                     line["amount_fen"], fen_to_yuan(line["amount_fen"])] for line in batch["lines"]]
    total = head + ["", "", "total", "", "", "", "", "", batch["total_fen"], fen_to_yuan(batch["total_fen"])]
    return lines, total


def export_batch(db: Store | Connection, batch_id: int, path: str | Path, *, actor: str | None = None) -> int:
    """Write the batch's statement to ``path``: an Excel workbook for ``.xlsx``, CSV (UTF-8 with a
    byte-order mark, so that Excel reads Chinese) for ``.csv``.
    One line per entry (:data:`STATEMENT_COLUMNS`: the entry, its order, event, in-network month,
    chain position, kind, the event's time, the scheme version, the amount in integer fen and in
    yuan), then a total line. The file is written whole or not at all; returns the number of entry lines."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".xlsx", ".csv"):
        raise InvalidValue("out", str(path), "must end in .xlsx (Excel) or .csv")
    if actor is not None:
        require(actor, "settlement.read", f"export settlement batch {batch_id}")
    batch = show_batch(db, batch_id, actor=actor)
    lines, total = statement(batch)
    statement_sheet = spreadsheets.Sheet("statement", STATEMENT_COLUMNS, [*lines, total],
                                         formats={len(STATEMENT_COLUMNS) - 1: YUAN_FORMAT}, bold_last=True,
                                         widths=(8, 10, 9, 10, 14, 12, 7, 9, 9, 26, 10, 13, 14))
    if suffix == ".csv":
        spreadsheets.save([statement_sheet], path)  # UTF-8 with a byte-order mark: Excel reads Chinese
    else:
        summary = [[key, batch[key] or ""] for key in ("id", "agent", "period", "state", "reference")]
        summary += [["total_fen", batch["total_fen"]], ["total_yuan", fen_to_yuan(batch["total_fen"])],
                    ["lines", len(lines)], *([key, batch[key]] for key in ("created_at", "changed_at"))]
        spreadsheets.save([statement_sheet, spreadsheets.Sheet("batch", None, summary, formats={1: YUAN_FORMAT})],
                          path)
    return len(lines)


def inconsistencies(conn: Connection) -> list[dict]:
    """Settlement batches and ledger entries that disagree (for ``hkops check``): a batch total that is
    not the sum of its lines, a paid batch whose lines are not paid or whose total was not credited
    once, a credit without a paid batch; an entry whose state disagrees with its batch's (or that
    names a batch that does not exist, or another agent's); a reversal that does not undo exactly one
    credit; a batch whose lines are not the entries its settle or pay audit record moved (ids or
    digest). Dicts of kind, the identifiers and the figures."""
    return _batch_inconsistencies(conn) + _batch_audit_inconsistencies(conn) + _entry_inconsistencies(conn)


def _batch_audit_inconsistencies(conn: Connection) -> list[dict]:
    """Batches whose lines now are not the entries their settle or pay audit record moved (by id runs
    or by digest): lines added, removed or moved to another batch after the move."""
    a, e = audit_log.c, commission_entries.c
    recorded: dict[int, list[tuple[str, dict]]] = defaultdict(list)
    for subject, action, details in conn.execute(
            select(a.subject, a.action, a.details).where(a.entity == "commission", a.action.in_(("settle", "pay")),
                                                         a.subject.like("batch %")).order_by(a.id)):
        named = json.loads(details) if details else {}
        if "digest" in named or "entries" in named:  # older records named no entries
            recorded[int(subject.split()[1])].append((action, named))
    lines = {batch: [] for batch in recorded}
    rows = conn.execute(select(e.batch_id, e.id).where(e.batch_id.is_not(None)).order_by(e.batch_id, e.id))
    for batch, batch_rows in groupby(rows, key=itemgetter(0)):
        if batch in lines:
            lines[batch] = [entry_id for _, entry_id in batch_rows]
    found = []
    for batch, moves in sorted(recorded.items()):
        ids, runs = lines[batch], None
        differ = []
        for action, named in moves:
            if "digest" in named:
                same = named["digest"] == entries_digest(ids)
            else:
                runs = _runs(ids) if runs is None else runs
                same = named["entries"] == runs
            if not same:
                differ.append((action, named["count"]))
        if differ:
            found.append({"kind": "batch_lines_differ_from_audit", "batch": batch,
                          "moves": ", ".join(action for action, _ in differ),
                          "recorded_entries": differ[0][1], "lines": len(ids)})
    return found


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


# ---- reads for the settlement console ----------------------------------------------------------

#: States of an entry not paid yet, as agent_balances reports them.
OPEN_STATES = ("accrued", "held", "eligible", "settled")


def _reader(db: Store | Connection):
    return unit_of_work(db) if isinstance(db, Connection) else db.read()


def agent_balances(db: Store | Connection, *, actor: str | None = None) -> list[dict]:
    """Every agent (an agent user: its own subtree), by code, with its balance, frozen and available
    amounts, its commission not paid yet by state (``accrued_fen`` ... ``settled_fen``), what was
    clawed back from it (``clawed_back_fen``, the reversals' sum) and its number of entries."""
    if actor is not None:
        require(actor, "settlement.read", "read agent balances")
    e = commission_entries.c
    ledger = select(agent_ledger.c.agent_id, func.sum(agent_ledger.c.amount_fen).label("balance")).group_by(
        agent_ledger.c.agent_id).subquery()
    frozen = select(withdrawals.c.agent_id, func.sum(withdrawals.c.amount_fen).label("frozen")).where(
        withdrawals.c.state.in_(("requested", "approved"))).group_by(withdrawals.c.agent_id).subquery()
    entries = select(e.agent_id, func.count().label("entries"),
                     func.sum(case((e.kind == "reversal", e.amount_fen), else_=0)).label("clawed_back"),
                     *[func.sum(case((e.state == state, e.amount_fen), else_=0)).label(state) for state in OPEN_STATES]
                     ).group_by(e.agent_id).subquery()
    query = (select(agents.c.code, agents.c.name, agents.c.level, ledger.c.balance, frozen.c.frozen, entries)
             .outerjoin(ledger, ledger.c.agent_id == agents.c.id).outerjoin(frozen, frozen.c.agent_id == agents.c.id)
             .outerjoin(entries, entries.c.agent_id == agents.c.id).order_by(agents.c.code))
    scope = scope_query(actor) if actor is not None else None
    if scope is not None:
        query = query.where(agents.c.id.in_(scope))
    with _reader(db) as conn:
        rows = conn.execute(query).mappings().all()
    out = []
    for r in rows:
        balance_fen, frozen_fen = int(r["balance"] or 0), int(r["frozen"] or 0)
        out.append({"agent": r["code"], "name": r["name"], "level": r["level"], "balance_fen": balance_fen,
                    "frozen_fen": frozen_fen, "available_fen": balance_fen - frozen_fen,
                    **{f"{state}_fen": int(r[state] or 0) for state in OPEN_STATES},
                    "clawed_back_fen": int(r["clawed_back"] or 0), "entries": int(r["entries"] or 0)})
    return out


def list_batches(db: Store | Connection, *, period: str | None = None, state: str | None = None,
                 agent: str | None = None, limit: int | None = None, actor: str | None = None) -> list[dict]:
    """Settlement batches, newest first, with the agent's code and the number of lines; an agent
    user sees its own subtree's only."""
    if actor is not None:
        require(actor, "settlement.read", "list settlement batches")
    lines = select(commission_entries.c.batch_id, func.count().label("lines")).where(
        commission_entries.c.batch_id.is_not(None)).group_by(commission_entries.c.batch_id).subquery()
    query = (select(settlement_batches, agents.c.code.label("agent"), func.coalesce(lines.c.lines, 0).label("lines"))
             .join(agents, agents.c.id == settlement_batches.c.agent_id)
             .outerjoin(lines, lines.c.batch_id == settlement_batches.c.id)
             .order_by(settlement_batches.c.id.desc()))
    if period:
        query = query.where(settlement_batches.c.period == period)
    if state:
        query = query.where(settlement_batches.c.state == state)
    if agent:
        query = query.where(agents.c.code == agent.upper())
    scope = scope_query(actor) if actor is not None else None
    if scope is not None:
        query = query.where(settlement_batches.c.agent_id.in_(scope))
    if limit:
        query = query.limit(limit)
    with _reader(db) as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def batch_preview(db: Store | Connection, period: str, *, as_of: date, agent: str | None = None,
                  actor: str | None = None) -> list[dict]:
    """What :func:`create_batches` would gather, per agent (agent, entries, total_fen), writing
    nothing; refused alike for a period that has not ended."""
    if actor is not None:
        require(actor, "settlement.read", f"preview settlement {period}")
    end = _ended(period, as_of)
    with _reader(db) as conn:
        wanted = _to_settle(end).subquery()
        query = select(agents.c.code, wanted.c.entries, wanted.c.total).join(
            agents, agents.c.id == wanted.c.agent_id).order_by(agents.c.code)
        if agent:
            query = query.where(agents.c.id == _agent(conn, agent).id)
        return [{"agent": code, "entries": int(entries), "total_fen": int(total)}
                for code, entries, total in conn.execute(query)]


def _local_month(conn: Connection, column):
    """YYYY-MM of a UTC timestamp column in Asia/Shanghai (UTC+8 all year), in SQL."""
    if conn.dialect.name == "postgresql":
        return func.to_char(func.timezone("Asia/Shanghai", column), "YYYY-MM")
    return func.strftime("%Y-%m", column, "+8 hours")


def commission_report(db: Store | Connection, *, actor: str | None = None) -> list[dict]:
    """Commission by month of the event (Asia/Shanghai), oldest first, for the settlement charts:
    ``credit_fen`` by chain position (1 the selling agent, 2 its parent, ...), ``reversal_fen``
    (clawbacks booked that month, negative), ``net_fen``; ``clawback_percent``, the share of that
    month's credits later clawed back (Decimal, one place); ``activations`` (orders sold through
    agents activated that month) and ``cost_per_activation_fen`` (net / activations, whole fen).
    An agent user sees its own subtree's figures only."""
    if actor is not None:
        require(actor, "settlement.read", "read commission figures")
    scope = scope_query(actor) if actor is not None else None
    e = commission_entries.c
    with _reader(db) as conn:
        month = _local_month(conn, e.event_at).label("month")
        booked = select(month, e.kind, e.position, func.sum(e.amount_fen)).group_by(month, e.kind, e.position)
        reversal = commission_entries.alias("reversal")
        credit_month = _local_month(conn, e.event_at).label("month")
        clawed = (select(credit_month, func.sum(e.amount_fen)).select_from(commission_entries.join(
            reversal, (reversal.c.kind == "reversal") & (reversal.c.order_id == e.order_id)
            & (reversal.c.event == e.event) & (reversal.c.month == e.month) & (reversal.c.agent_id == e.agent_id)))
            .where(e.kind == "credit").group_by(credit_month))
        activated_month = _local_month(conn, audit_log.c.at).label("month")
        activations = (select(activated_month, func.count(func.distinct(orders.c.id)))
                       .join(orders, orders.c.number == audit_log.c.subject)
                       .where(audit_log.c.entity == "order", audit_log.c.action == "activate",
                              orders.c.agent_id.is_not(None)).group_by(activated_month))
        if scope is not None:
            booked = booked.where(e.agent_id.in_(scope))
            clawed = clawed.where(e.agent_id.in_(scope))
            activations = activations.where(orders.c.agent_id.in_(scope))
        months: dict[str, dict] = defaultdict(lambda: {"credit_fen": {}, "reversal_fen": 0, "clawed_fen": 0,
                                                       "activations": 0})
        for m, kind, position, total in conn.execute(booked):
            if kind == "credit":
                months[m]["credit_fen"][position] = int(total)
            else:
                months[m]["reversal_fen"] += int(total)
        for m, total in conn.execute(clawed):
            months[m]["clawed_fen"] = int(total)
        for m, count in conn.execute(activations):
            months[m]["activations"] = int(count)
    out = []
    for m in sorted(months):
        figures = months[m]
        credits = sum(figures["credit_fen"].values())
        net = credits + figures["reversal_fen"]
        rate = (Decimal(figures["clawed_fen"]) * 100 / credits).quantize(Decimal("0.1")) if credits else None
        cost = (int((Decimal(net) / figures["activations"]).to_integral_value(ROUND_HALF_UP))
                if figures["activations"] else None)
        out.append({"month": m, "credit_fen": dict(sorted(figures["credit_fen"].items())),
                    "reversal_fen": figures["reversal_fen"], "net_fen": net, "clawback_percent": rate,
                    "activations": figures["activations"], "cost_per_activation_fen": cost})
    return out


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
