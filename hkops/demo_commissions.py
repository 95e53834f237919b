"""The money side of the demo world (hkops.demo builds it after the orders).

Commission schemes for the demo's plans (the files in hkops/commissions/demo_schemes), then the
last 90 days of commissions, month-end by month-end: accrual from the orders' events, a
settlement batch per agent for each month that has ended (the last month's batches left in every
state: draft, confirmed, approved, paid), clawbacks from cancellations, returns and suspensions
inside the assessment window, and withdrawals in every state (requested, approved, paid,
rejected). A shop whose cards an anti-fraud sweep suspends (局停) after it withdrew its balance
ends with a negative balance.

Everything goes through the services with explicit times (``as_of``, ``now``), so the ledger,
the batches and the audit trail tell one story; card suspensions go through the card service
and their audit records are moved back to when they happened, as hkops.demo_distribution does
for the orders.
"""

from __future__ import annotations

import random
import re
import tempfile
from datetime import date, datetime, time, timedelta
from pathlib import Path

from sqlalchemy import func, select

from hkops import audit, settings
from hkops.agents import service as agents
from hkops.audit import audit_log
from hkops.cards import service as cards
from hkops.cards.tables import sims
from hkops.commissions import service as commissions
from hkops.demo_distribution import DAYS
from hkops.network import ProvisioningClient
from hkops.orders.tables import orders
from hkops.store.engine import Store
from hkops.timeutil import SHANGHAI

ACTOR = "demo"
#: The scheme files the demo adds, shipped with hkops in this folder.
SCHEMES_DIR = Path(__file__).resolve().parent / "commissions" / "demo_schemes"
#: Each file, and whether it takes effect inside the 90 days (the first of the month 45 days
#: ago: the plan's second version) or half a year before the demo's first order.
SCHEMES = {"cm-58-v1.toml": False, "cm-58-v2.toml": True, "cm-128.toml": False, "cu-39.toml": False,
           "ct-29.toml": False}
#: The share of sold, activated cards suspended for arrears (单停) some days after activation.
ARREARS_SHARE = 0.04
#: Withdrawal rules of the demo operator: 1% fee between ¥1 and ¥10; the 6% tax is the default.
WITHDRAWAL_SETTINGS = {"withdrawal_fee_percent": "1", "withdrawal_fee_min_fen": "100",
                       "withdrawal_fee_max_fen": "1000"}
LIVE_ORDERS = ("activated", "first_topup", "completed")
#: How far the last month's batches go in turn (3: paid, 2: approved, 1: confirmed, 0: draft).
LAST_MONTH_STEPS = (3, 2, 3, 1, 3, 0)


def _day(moment: datetime) -> date:
    return moment.astimezone(SHANGHAI).date()


def _month(day: date, months: int = 0) -> date:
    """The first day of the month ``months`` after ``day``'s."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def build(store: Store, rng: random.Random, hlr: ProvisioningClient, *, now: datetime) -> dict:
    """Schemes, suspensions for arrears, and the months of accrual, settlement and withdrawals
    up to ``now`` (see the module's docstring). Returns what it made (:func:`summary`)."""
    today = _day(now)
    first_day = today - timedelta(days=DAYS)

    def at(day: date, hours: float = 0) -> datetime:
        """``hours`` after midnight of ``day`` in Shanghai, never later than ``now``."""
        return min(datetime.combine(day, time(), SHANGHAI) + timedelta(hours=hours), now)

    add_schemes(store, today, at(first_day - timedelta(days=5), 10))
    with store.write() as conn:
        for key, value in WITHDRAWAL_SETTINGS.items():
            settings.set_value(conn, key, value, actor=ACTOR, reason="the demo operator's withdrawal rules")
    _suspend_for_arrears(store, rng, hlr, now)

    # The months that ended since the first day; the sweep hits the shop that emptied its balance
    # after the month before the last one was paid.
    periods = [_month(first_day, n) for n in range(4) if _month(first_day, n + 1) <= today]
    swept = None
    sweep_at = at(_month(periods[-1], 1) - timedelta(days=2), 15) if periods else now
    for period in periods:
        end, last = _month(period, 1), period == periods[-1]
        if last and swept:
            _sweep(store, hlr, swept, sweep_at)
        commissions.accrue(store, as_of=end, until=end - timedelta(days=1), actor=ACTOR, now=at(end, 2))
        batches = commissions.create_batches(store, f"{period:%Y-%m}", as_of=end, actor=ACTOR, now=at(end, 3))
        _settle(store, batches, at, end, last=last, keep_paid=swept)
        before_last = len(periods) > 1 and period == periods[-2]
        emptied = _withdrawals(store, rng, at, end + timedelta(days=7), last=last,
                               empty_one=(sweep_at, _month(periods[-1], 1)) if before_last else None)
        swept = swept or emptied
    # Last night's run: the days up to yesterday accrued, entries whose window passed eligible.
    commissions.accrue(store, as_of=today, until=today - timedelta(days=1), actor=ACTOR, now=now)
    return summary(store)


def summary(store: Store) -> dict:
    """Counts of commission entries by kind, settlement batches and withdrawals by state."""
    from hkops.commissions.tables import commission_entries, settlement_batches, withdrawals

    def count(column) -> dict[str, int]:
        return dict(conn.execute(select(column, func.count()).group_by(column).order_by(column)).all())

    with store.read() as conn:
        return {"entries": count(commission_entries.c.kind), "batches": count(settlement_batches.c.state),
                "withdrawals": count(withdrawals.c.state)}


def add_schemes(store: Store, today: date, now: datetime) -> None:
    """Every demo scheme file, its ``effective`` date moved relative to ``today``."""
    base = _month(today - timedelta(days=DAYS), -6)
    recent = _month(today - timedelta(days=45))
    with tempfile.TemporaryDirectory() as folder:
        for name, is_recent in SCHEMES.items():
            source = SCHEMES_DIR / name
            effective = recent if is_recent else base
            text = re.sub(r"(?m)^effective\s*=.*$", f"effective = {effective.isoformat()}",
                          source.read_text(encoding="utf-8"))
            path = Path(folder) / source.name
            path.write_text(text, encoding="utf-8")
            commissions.add_scheme(store, path, actor=ACTOR, now=now)


def _live_cards(store: Store, agent_id: int | None = None) -> list[tuple[str, datetime]]:
    """(ICCID, activation time) of the active cards of agents' live orders, by activation."""
    query = (select(orders.c.iccid, audit_log.c.at)
             .join(audit_log, audit_log.c.subject == orders.c.number).join(sims, sims.c.iccid == orders.c.iccid)
             .where(audit_log.c.entity == "order", audit_log.c.action == "activate", orders.c.agent_id.is_not(None),
                    orders.c.state.in_(LIVE_ORDERS), sims.c.state == "active")
             .order_by(audit_log.c.at, orders.c.iccid))
    if agent_id is not None:
        query = query.where(orders.c.agent_id == agent_id)
    with store.read() as conn:
        return list(dict(conn.execute(query).all()).items())


def _swept_cards(store: Store, agent: agents.Agent, at: datetime) -> dict[str, datetime]:
    """The cards an anti-fraud sweep at ``at`` suspends: every card ``agent`` sold that was
    activated in the 60 days before and is still active, each with the sweep's time."""
    return {iccid: at for iccid, activated in _live_cards(store, agent.id) if at - timedelta(days=60) <= activated < at}


def _sweep_shortfall(store: Store, agent: agents.Agent, swept: list[str], month_end: date) -> int:
    """About how far (fen) ``agent``'s batch of the month ending ``month_end`` would go below zero
    if a sweep suspended its cards ``swept``: the settled commission of those cards, which the
    clawback takes back, less the held entries of its other orders that come due by then (the swept
    cards' own unsettled credits net out with their reversals). 0 or less: none."""
    from hkops.commissions.tables import commission_entries

    e = commission_entries.c
    with store.read() as conn:
        def total(*where) -> int:
            return int(conn.execute(select(func.coalesce(func.sum(e.amount_fen), 0))
                                    .join(orders, orders.c.id == e.order_id).where(e.agent_id == agent.id, *where))
                       .scalar())

        clawed = total(e.kind == "credit", e.state.in_(("settled", "paid")), orders.c.iccid.in_(swept))
        return clawed - total(e.state == "held", e.eligible_on < month_end, orders.c.iccid.not_in(swept))


def _suspend(store: Store, hlr: ProvisioningClient, when: dict[str, datetime], why: str, reason: str) -> None:
    """Suspend the cards ``when`` names through the card service, then move each suspension's
    audit records back to its time."""
    times: dict[int, datetime] = {}
    for iccid, at in when.items():
        with store.read() as conn:
            before = conn.execute(select(func.max(audit_log.c.id))).scalar() or 0
        cards.suspend(store, iccid, why, actor=ACTOR, network=hlr, reason=reason)
        with store.read() as conn:
            times |= {i: at for i in conn.execute(select(audit_log.c.id).where(audit_log.c.id > before)).scalars()}
    if times:
        with store.write() as conn:
            audit.retime(conn, times)


def _suspend_for_arrears(store: Store, rng: random.Random, hlr: ProvisioningClient, now: datetime) -> None:
    """A few sold cards suspended for arrears (单停) 10 to 55 days after activation (after their
    orders completed)."""
    live = _live_cards(store)
    chosen = rng.sample(live, round(len(live) * ARREARS_SHARE))
    when = {iccid: activated + timedelta(days=rng.uniform(10, 55)) for iccid, activated in chosen}
    _suspend(store, hlr, {i: at for i, at in sorted(when.items()) if at < now - timedelta(hours=1)}, "arrears",
             "单停 one-way suspension: arrears")


def _sweep(store: Store, hlr: ProvisioningClient, agent: agents.Agent, at: datetime) -> None:
    """An anti-fraud sweep (局停) at ``at``: :func:`_swept_cards` suspended."""
    _suspend(store, hlr, _swept_cards(store, agent, at), "fraud",
             f"局停 anti-fraud: every card {agent.code} sold in the last 60 days, after some were never used")


def _settle(store: Store, batches: list[int], at, end: date, *, last: bool, keep_paid: agents.Agent | None) -> None:
    """Confirm, approve and pay a month's batches; half of the last month's are paid, the others
    left in turn approved, confirmed and draft (the swept shop's is paid)."""
    steps = ("confirm", "approve", "pay")
    for n, batch in enumerate(batches):
        upto = 3 if not last else LAST_MONTH_STEPS[n % len(LAST_MONTH_STEPS)]
        if last and keep_paid is not None and commissions.show_batch(store, batch)["agent"] == keep_paid.code:
            upto = 3
        for day, action in enumerate(steps[:upto]):
            commissions.move_batch(store, batch, action, actor=ACTOR, now=at(end + timedelta(days=2 * day + 2), 10),
                                   reference=f"DEMO-BANK-{end:%Y%m}-{batch}" if action == "pay" else None)


def _withdrawals(store: Store, rng: random.Random, at, day: date, *, last: bool,
                 empty_one: tuple[datetime, date] | None) -> agents.Agent | None:
    """Agents with the minimum available ask on ``day`` to withdraw some of it (whole yuan). Before
    the last month, the requests are paid, but the first is rejected (the account name does not
    match); after the last month, they are left in turn paid, approved, requested and rejected.
    With ``empty_one`` (the time of the coming sweep and the end of its month), the shop whose
    next batch the sweep would take furthest below zero withdraws all it has; returns that agent."""
    with store.read() as conn:
        rules = commissions.withdrawal_rules(conn)
    candidates = []
    for agent in agents.agent_tree(store):
        available = commissions.balance(store, agent.code)["available_fen"]
        if available >= rules["minimum_fen"]:
            candidates.append((agent, available))
    emptied = None
    if empty_one:
        sweep_at, month_end = empty_one
        swept = {a.id: list(_swept_cards(store, a, sweep_at)) for a, _ in candidates}
        exposed = [(a, v) for a, v in candidates if swept[a.id]]
        exposed = [(a, v) for a, v in exposed if a.level == 3] or exposed
        short = {a.id: _sweep_shortfall(store, a, swept[a.id], month_end) for a, _ in exposed}
        emptied = max(exposed, key=lambda pair: (short[pair[0].id], pair[1]))[0] if exposed else None
    for n, (agent, available) in enumerate(candidates):
        share = 100 if agent == emptied else rng.choice([50, 80, 100])
        amount = min(max(available * share // 100, rules["minimum_fen"]), rules["monthly_cap_fen"]) // 100
        request = commissions.request_withdrawal(store, agent.code, str(amount), as_of=_day(at(day, 10)),
                                                 actor=ACTOR, now=at(day, 10 + n / 60))
        if agent == emptied:
            outcome = "pay"
        elif last:
            outcome = ("pay", "approve", "leave", "reject")[n % 4]
        else:
            outcome = "reject" if n == 0 else "pay"
        if outcome == "reject":
            commissions.move_withdrawal(store, request["id"], "reject", actor=ACTOR,
                                        now=at(day + timedelta(days=1), 11),
                                        reason="收款账户名不符 the account name does not match the agent")
        if outcome in ("approve", "pay"):
            commissions.move_withdrawal(store, request["id"], "approve", actor=ACTOR,
                                        now=at(day + timedelta(days=1), 11))
        if outcome == "pay":
            commissions.move_withdrawal(store, request["id"], "pay", actor=ACTOR,
                                        now=at(day + timedelta(days=2), 11), reference=f"DEMO-WD-{request['id']}")
    return emptied
