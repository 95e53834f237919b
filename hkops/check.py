"""The whole-world consistency audit (全量稽核): ``hkops check``.

Each check reads all folders' tables in one read transaction, set-wise (a few grouped
queries, never one per row), and returns the violations it finds, each with its kind and
the identifiers involved. A check may name the kinds it can repair safely and a repair,
which goes through the owning folder's service functions (audited): ``run(fix=True)``
repairs those, checks again and reports what is left as left alone.

Later checks are added by writing a function ``(conn, context) -> list[Violation]`` and
listing it in :data:`CHECKS`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Iterator

from sqlalchemy import Connection, String, and_, cast, exists, func, literal, or_, select, union, union_all

from hkops.cards.tables import provisioning_outbox as outbox
from hkops.cards.tables import sim_batches, sims
from hkops.numbers.tables import numbers
from hkops.orders.model import OPEN
from hkops.orders.tables import orders
from hkops.stock.model import VIRTUAL
from hkops.stock.tables import stock_locations, stock_moves
from hkops.store.engine import Store
from hkops.subscribers.tables import subscriber_numbers, subscribers
from hkops.timeutil import utc_now
from hkops.security import access

#: SIM states in which a card serves (or is about to serve) its number.
LIVE_SIM = ("paired", "active", "suspended", "lost")
#: Number states in which a number is in service.
IN_SERVICE = ("active", "suspended")
#: 一证五号: live numbers one person may hold per carrier.
NUMBERS_PER_PERSON = 5
#: An HLR command still pending after this long is stale.
STALE_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class Violation:
    """One inconsistency: its kind, a sentence for people, and the identifiers involved."""

    kind: str
    message: str
    ids: dict

    def key(self) -> tuple:
        return self.kind, tuple(sorted((k, str(v)) for k, v in self.ids.items()))

    def as_dict(self) -> dict:
        return {"kind": self.kind, "message": self.message, **self.ids}


@dataclass
class Context:
    """What the checks share: the time of the run and the HLR to compare with (None: not checked)."""

    now: datetime
    network: object | None = None
    hlr: str | None = None
    #: False when ``network`` is a copy of a registry: compare with it, never repair through it.
    hlr_repairs: bool = True


@dataclass(frozen=True)
class Check:
    """A check: ``find`` lists violations (``needs_hlr``: only with an HLR to compare with);
    ``repair`` fixes those of the ``fixable`` kinds through the owners' service functions,
    audited (``repair_needs_hlr``: only with an HLR to talk to)."""

    name: str
    find: Callable[[Connection, Context], list[Violation]]
    fixable: frozenset[str] = frozenset()
    repair: Callable[[Store, list[Violation], Context, str], None] | None = None
    needs_hlr: bool = False
    repair_needs_hlr: bool = False


@dataclass
class Report:
    """What a run found: the violations left, what it repaired, and what it could not check."""

    violations: list[Violation]
    checked: list[str]
    not_checked: dict[str, str]
    fixed: list[Violation] = field(default_factory=list)
    fix: bool = False

    @property
    def clean(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict:
        return {"clean": self.clean, "violations": [v.as_dict() for v in self.violations],
                "fixed": [v.as_dict() for v in self.fixed],
                "left_alone": [v.as_dict() for v in self.violations] if self.fix else [],
                "checked": self.checked, "not_checked": self.not_checked}


# ---------------------------------------------------------------- numbers and cards


def _replacements_waiting(conn: Connection) -> set[str]:
    """New cards of replacements still waiting for the HLR: they share their number with the old card."""
    return set(conn.execute(select(outbox.c.other_iccid).where(
        outbox.c.state == "pending", outbox.c.action == "replace", outbox.c.other_iccid.is_not(None))).scalars())


def numbers_in_service(conn: Connection, context: Context) -> list[Violation]:
    """Every active or suspended number has exactly one live SIM and one subscriber; no
    number has two live SIMs or two live subscriber bindings."""
    incoming = _replacements_waiting(conn)
    live = (select(sims.c.msisdn, func.count().label("n")).where(
        sims.c.state.in_(LIVE_SIM), sims.c.msisdn.is_not(None), sims.c.iccid.not_in(sorted(incoming)))
        .group_by(sims.c.msisdn).subquery())
    bound = (select(subscriber_numbers.c.msisdn, func.count().label("n")).where(subscriber_numbers.c.until.is_(None))
             .group_by(subscriber_numbers.c.msisdn).subquery())
    cards, people = func.coalesce(live.c.n, 0), func.coalesce(bound.c.n, 0)
    found: list[Violation] = []
    rows = conn.execute(
        select(numbers.c.msisdn, numbers.c.state, cards.label("cards"), people.label("people"))
        .select_from(numbers.outerjoin(live, live.c.msisdn == numbers.c.msisdn)
                     .outerjoin(bound, bound.c.msisdn == numbers.c.msisdn))
        .where(numbers.c.state.in_(IN_SERVICE), or_(cards == 0, people == 0)).order_by(numbers.c.msisdn))
    for row in rows:
        if row.cards == 0:
            found.append(Violation("number_without_sim", f"{row.msisdn} is {row.state} but no live SIM serves it",
                                   {"msisdn": str(row.msisdn), "state": row.state}))
        if row.people == 0:
            found.append(Violation("number_without_subscriber",
                                   f"{row.msisdn} is {row.state} but bound to no subscriber",
                                   {"msisdn": str(row.msisdn), "state": row.state}))
    several = select(live.c.msisdn).where(live.c.n > 1)
    shared: dict[int, list[str]] = {}
    for msisdn, iccid in conn.execute(select(sims.c.msisdn, sims.c.iccid).where(
            sims.c.msisdn.in_(several), sims.c.state.in_(LIVE_SIM), sims.c.iccid.not_in(sorted(incoming)))
            .order_by(sims.c.msisdn, sims.c.iccid)):
        shared.setdefault(msisdn, []).append(iccid)
    found += [Violation("number_with_several_sims", f"{m} is served by {len(i)} live SIMs: {', '.join(i)}",
                        {"msisdn": str(m), "iccids": i}) for m, i in shared.items()]
    several = select(bound.c.msisdn).where(bound.c.n > 1)
    holders: dict[int, list[int]] = {}
    for msisdn, subscriber in conn.execute(select(subscriber_numbers.c.msisdn, subscriber_numbers.c.subscriber_id)
                                           .where(subscriber_numbers.c.msisdn.in_(several),
                                                  subscriber_numbers.c.until.is_(None))
                                           .order_by(subscriber_numbers.c.msisdn, subscriber_numbers.c.subscriber_id)):
        holders.setdefault(msisdn, []).append(subscriber)
    found += [Violation("number_with_several_subscribers", f"{m} is bound to {len(s)} subscribers at once",
                        {"msisdn": str(m), "subscribers": s}) for m, s in holders.items()]
    return found


def live_sims(conn: Connection, context: Context) -> list[Violation]:
    """Every live SIM has a number that is active or suspended (assigned while the SIM is
    paired, not yet activated) and bound to the SIM's subscriber."""
    incoming = sorted(_replacements_waiting(conn))
    binding = exists().where(subscriber_numbers.c.msisdn == sims.c.msisdn,
                             subscriber_numbers.c.subscriber_id == sims.c.subscriber_id,
                             subscriber_numbers.c.until.is_(None))
    paired = and_(sims.c.state == "paired", sims.c.iccid.not_in(incoming))
    wrong_state = or_(numbers.c.state.is_(None),
                      and_(paired, numbers.c.state != "assigned"),
                      and_(~paired, numbers.c.state.not_in(IN_SERVICE)))
    rows = conn.execute(
        select(sims.c.iccid, sims.c.state, sims.c.msisdn, sims.c.subscriber_id, numbers.c.state.label("number_state"),
               binding.label("bound"))
        .select_from(sims.outerjoin(numbers, numbers.c.msisdn == sims.c.msisdn))
        .where(sims.c.state.in_(LIVE_SIM), or_(sims.c.msisdn.is_(None), wrong_state, ~binding))
        .order_by(sims.c.iccid))
    found: list[Violation] = []
    for row in rows:
        ids = {"iccid": row.iccid, "sim_state": row.state, "msisdn": None if row.msisdn is None else str(row.msisdn)}
        if row.msisdn is None:
            found.append(Violation("sim_without_number", f"SIM {row.iccid} is {row.state} but has no number", ids))
            continue
        allowed = ("assigned",) if row.state == "paired" and row.iccid not in incoming else IN_SERVICE
        if row.number_state not in allowed:
            found.append(Violation("sim_number_state", f"SIM {row.iccid} is {row.state} but its number {row.msisdn} "
                                   f"is {row.number_state or 'not in the pool'} (expected {' or '.join(allowed)})",
                                   {**ids, "number_state": row.number_state}))
        if not row.bound:
            found.append(Violation("sim_number_not_bound", f"SIM {row.iccid}'s number {row.msisdn} is not bound to "
                                   f"its subscriber S{row.subscriber_id}",
                                   {**ids, "subscriber": row.subscriber_id}))
    return found


# ---------------------------------------------------------------- stock


def _last_moves():
    """Each card's last ledger move (iccid, to_location), as a CTE computed once."""
    last = (select(stock_moves.c.iccid, func.max(stock_moves.c.id).label("id"))
            .group_by(stock_moves.c.iccid).cte("last_move_id"))
    return (select(last.c.iccid, stock_moves.c.to_location).join(stock_moves, stock_moves.c.id == last.c.id)
            .cte("last_move"))


def stock_places(conn: Connection, context: Context) -> list[Violation]:
    """Every serial is in exactly one place, the one its last ledger move took it to, and
    on-hand (derived from the ledger) equals the cards each location holds."""
    from hkops.stock import service as stock

    found: list[Violation] = []
    last = _last_moves()
    for row in conn.execute(select(sims.c.iccid, sims.c.location, last.c.to_location, last.c.iccid.label("moved"))
                            .select_from(sims.outerjoin(last, last.c.iccid == sims.c.iccid))
                            .where(or_(and_(last.c.iccid.is_(None), sims.c.location.is_not(None)),
                                       and_(last.c.iccid.is_not(None),
                                            sims.c.location.is_distinct_from(last.c.to_location))))
                            .order_by(sims.c.iccid)):
        if row.moved is None:
            found.append(Violation("card_location_not_in_ledger", f"SIM {row.iccid} is at {row.location} but the "
                                   "ledger has no move of it", {"iccid": row.iccid, "location": row.location}))
        else:
            found.append(Violation("card_location_differs_from_ledger",
                                   f"SIM {row.iccid} is at {row.location or 'no location'} but its last ledger move "
                                   f"took it to {row.to_location}",
                                   {"iccid": row.iccid, "location": row.location, "ledger": row.to_location}))
    unknown = conn.execute(select(stock_moves.c.iccid).distinct()
                           .where(~exists().where(sims.c.iccid == stock_moves.c.iccid))
                           .order_by(stock_moves.c.iccid)).scalars().all()
    found += [Violation("ledger_card_unknown", f"the ledger moves SIM {i}, which is not in the inventory",
                        {"iccid": i}) for i in unknown]
    virtual = union(select(stock_locations.c.code).where(stock_locations.c.kind == "virtual"),
                    *(select(literal(code)) for code in sorted(VIRTUAL)))
    moves = union_all(select(stock_moves.c.iccid, stock_moves.c.to_location.label("location"), literal(1).label("d")),
                      select(stock_moves.c.iccid, stock_moves.c.from_location, literal(-1))).subquery()
    balance = (select(moves.c.iccid, moves.c.location, func.sum(moves.c.d).label("n"))
               .where(moves.c.location.not_in(virtual)).group_by(moves.c.iccid, moves.c.location)
               .having(func.sum(moves.c.d) != 0).subquery())
    places: dict[str, dict[str, int]] = {}
    for row in conn.execute(select(balance.c.iccid, balance.c.location, balance.c.n)
                            .join(last, last.c.iccid == balance.c.iccid)
                            .where(or_(balance.c.n != 1, balance.c.location != last.c.to_location))
                            .order_by(balance.c.iccid, balance.c.location)):
        places.setdefault(row.iccid, {})[row.location] = int(row.n)
    found += [Violation("serial_ledger_broken", f"the ledger leaves SIM {i} counted {p} (it should be once, where "
                        "its last move took it)", {"iccid": i, "balances": p}) for i, p in places.items()]
    held = {(r.location, r.product): r.n for r in conn.execute(
        select(sims.c.location, sim_batches.c.product, func.count().label("n"))
        .join(sim_batches, sim_batches.c.id == sims.c.batch_id)
        .where(sims.c.location.is_not(None), sims.c.location.not_in(virtual))
        .group_by(sims.c.location, sim_batches.c.product))}
    ledger = {(r["location"], r["product"]): r["quantity"] for r in stock.on_hand(conn)}
    for where in sorted(set(held) | set(ledger), key=lambda k: (k[0], k[1] or "")):
        if held.get(where, 0) != ledger.get(where, 0):
            found.append(Violation("on_hand_differs_from_cards",
                                   f"{where[0]} holds {held.get(where, 0)} {where[1] or 'unknown-product'} card(s) "
                                   f"but the ledger says {ledger.get(where, 0)}",
                                   {"location": where[0], "product": where[1], "on_hand": ledger.get(where, 0),
                                    "cards": held.get(where, 0)}))
    return found


def _restore_locations(db: Store, violations: list[Violation], context: Context, actor: str) -> None:
    from hkops.stock import service as stock

    stock.restore_locations(db, [v.ids["iccid"] for v in violations], actor=actor,
                            reason="hkops check --fix: the location follows the stock ledger")


# ---------------------------------------------------------------- orders, people, money


def open_orders(conn: Connection, context: Context) -> list[Violation]:
    """Each number, and each card, is in at most one open order."""
    found: list[Violation] = []
    for column, what in ((orders.c.msisdn, "number"), (orders.c.iccid, "card")):
        several = (select(column).where(orders.c.state.in_([s.value for s in OPEN]), column.is_not(None))
                   .group_by(column).having(func.count() > 1))
        held: dict = {}
        for value, number in conn.execute(select(column, orders.c.number).where(
                column.in_(several), orders.c.state.in_([s.value for s in OPEN])).order_by(column, orders.c.number)):
            held.setdefault(str(value), []).append(number)
        key = "msisdn" if what == "number" else "iccid"
        found += [Violation(f"{what}_in_several_open_orders", f"{what} {v} is in {len(o)} open orders: {', '.join(o)}",
                            {key: v, "orders": o}) for v, o in held.items()]
    return found


def numbers_per_person(conn: Connection, context: Context) -> list[Violation]:
    """一证五号: at most 5 live numbers per person (resident ID) per carrier, counting bound
    numbers and the open orders that hold (or will hold) one."""
    open_states = [s.value for s in OPEN]
    held = union(
        select(subscribers.c.resident_id_hash.label("person"), subscriber_numbers.c.carrier.label("carrier"),
               cast(subscriber_numbers.c.msisdn, String).label("what"))
        .join(subscribers, subscribers.c.id == subscriber_numbers.c.subscriber_id)
        .where(subscriber_numbers.c.until.is_(None)),
        select(orders.c.resident_id_hash, orders.c.carrier,
               func.coalesce(cast(orders.c.msisdn, String), orders.c.number))
        .where(orders.c.state.in_(open_states))).subquery()
    over = conn.execute(select(held.c.person, held.c.carrier, func.count().label("n"))
                        .group_by(held.c.person, held.c.carrier).having(func.count() > NUMBERS_PER_PERSON)).all()
    if not over:
        return []
    people = sorted({r.person for r in over})
    who = dict(conn.execute(select(subscribers.c.resident_id_hash, subscribers.c.id)
                            .where(subscribers.c.resident_id_hash.in_(people))).all())
    bound, ordered = {}, {}
    for person, carrier, msisdn in conn.execute(
            select(subscribers.c.resident_id_hash, subscriber_numbers.c.carrier, subscriber_numbers.c.msisdn)
            .join(subscribers, subscribers.c.id == subscriber_numbers.c.subscriber_id)
            .where(subscribers.c.resident_id_hash.in_(people), subscriber_numbers.c.until.is_(None))
            .order_by(subscriber_numbers.c.msisdn)):
        bound.setdefault((person, carrier), []).append(str(msisdn))
    for person, carrier, number in conn.execute(
            select(orders.c.resident_id_hash, orders.c.carrier, orders.c.number)
            .where(orders.c.resident_id_hash.in_(people), orders.c.state.in_(open_states)).order_by(orders.c.number)):
        ordered.setdefault((person, carrier), []).append(number)
    return [Violation("more_than_five_numbers",
                      f"subscriber {('S' + str(who[r.person])) if r.person in who else '(not registered)'} holds "
                      f"{r.n} {r.carrier} numbers with open orders (一证五号 allows {NUMBERS_PER_PERSON})",
                      {"subscriber": who.get(r.person), "carrier": r.carrier, "count": int(r.n),
                       "numbers": bound.get((r.person, r.carrier), []),
                       "orders": ordered.get((r.person, r.carrier), [])}) for r in over]


def order_money(conn: Connection, context: Context) -> list[Violation]:
    """Each order's money agrees with the payment ledger (hkops.payments reconciliation); an
    approved order not paid yet is waiting for its customer, not a violation."""
    from hkops.payments import service as payments

    report = payments.reconcile(conn)
    found = []
    for kind, items in (("unpaid", report.unpaid), ("underpaid", report.underpaid), ("overpaid", report.overpaid)):
        for item in items:
            if kind == "unpaid" and item["state"] == "approved":
                continue
            found.append(Violation(f"order_{kind}", f"order {item['order']} ({item['state']}) netted "
                                   f"{item['net_fen']} fen of {item['total_fen']} ({kind})",
                                   {"order": item["order"], "state": item["state"], "total_fen": item["total_fen"],
                                    "net_fen": item["net_fen"]}))
    return found


def _commission_violations(items: list[dict]) -> list[Violation]:
    def said(ids: dict) -> str:
        return ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in ids.items() if value is not None)

    return [Violation(item["kind"], f"{item['kind'].replace('_', ' ')}: {said(item)}",
                      {k: v for k, v in item.items() if k != "kind"}) for item in items]


def settlement_batches(conn: Connection, context: Context) -> list[Violation]:
    """Every settlement batch's total equals its lines, its lines are the entries its settle and pay
    audit records moved (ids or digest), a paid batch was credited once, in full, every ledger
    entry's state agrees with its batch's, and every reversal undoes exactly one credit."""
    from hkops.commissions import service as commissions

    return _commission_violations(commissions.inconsistencies(conn))


def agent_balances(conn: Connection, context: Context) -> list[Violation]:
    """Every agent balance equals its ledger and every ledger row is explained: settlement credits by
    their paid batches, payouts, fees and tax by their paid withdrawals, and nothing else."""
    from hkops.commissions import service as commissions

    return _commission_violations(commissions.ledger_inconsistencies(conn))


def alerts_audited(conn: Connection, context: Context) -> list[Violation]:
    """Every alert's state is the one its latest audit record moved it to."""
    from hkops.monitoring import service as monitoring

    return [Violation("alert_state_differs_from_audit" if item["audited_state"] else "alert_without_audit",
                      f"alert {item['alert']} is {item['state']} but its audit trail "
                      + (f"last moved it to {item['audited_state']}" if item["audited_state"] else "never raised it"),
                      item) for item in monitoring.inconsistencies(conn)]


# ---------------------------------------------------------------- the HLR


def hlr_commands(conn: Connection, context: Context) -> list[Violation]:
    """No HLR command pending for long, and no card waiting for the HLR without a command."""
    found = [Violation("hlr_command_stale", f"HLR command {r.req} ({r.action}) for SIM {r.iccid} has been pending "
                       f"since {r.created_at:%Y-%m-%d %H:%M} UTC",
                       {"req": r.req, "iccid": r.iccid, "msisdn": str(r.msisdn), "action": r.action})
             for r in conn.execute(select(outbox.c.req, outbox.c.action, outbox.c.iccid, outbox.c.msisdn,
                                          outbox.c.created_at)
                                   .where(outbox.c.state == "pending", outbox.c.created_at < context.now - STALE_AFTER)
                                   .order_by(outbox.c.id))]
    waiting = exists().where(outbox.c.iccid == sims.c.iccid, outbox.c.state == "pending")
    found += [Violation("sim_waits_for_no_command", f"SIM {r.iccid} waits for the HLR to confirm "
                        f"'{r.pending_action}' but no command is pending",
                        {"iccid": r.iccid, "msisdn": None if r.msisdn is None else str(r.msisdn),
                         "pending_action": r.pending_action})
              for r in conn.execute(select(sims.c.iccid, sims.c.msisdn, sims.c.pending_action)
                                    .where(sims.c.network_sync == "pending", ~waiting).order_by(sims.c.iccid))]
    return found


def _send_pending(db: Store, violations: list[Violation], context: Context, actor: str) -> None:
    from hkops.cards import service as cards

    cards.sync(db, context.network, iccids=sorted({v.ids["iccid"] for v in violations}))


#: What ``cards.compare`` calls each disagreement, as ``hkops check`` names it.
_HLR_KINDS = {"missing_in_hlr": "hlr_missing", "imsi_mismatch": "hlr_imsi_differs",
              "barring_mismatch": "hlr_barring_differs", "unexpected_in_hlr": "hlr_unexpected"}


def hlr_registry(conn: Connection, context: Context) -> list[Violation]:
    """The HLR registry holds exactly the live, provisioned cards (IMSI and barring as in
    inventory); numbers whose card waits for the HLR are left to :func:`hlr_commands`."""
    from hkops.cards import service as cards

    rows = conn.execute(select(sims.c.msisdn, sims.c.imsi, sims.c.state, sims.c.iccid, sims.c.network_sync)
                        .where(or_(sims.c.state.in_(["active", "suspended", "lost"]),
                                   sims.c.network_sync == "pending"))).all()
    waiting = {str(r.msisdn) for r in rows if r.network_sync == "pending"}
    expected = {str(r.msisdn): (r.imsi, r.state != "active", r.iccid) for r in rows
                if r.state in ("active", "suspended", "lost") and str(r.msisdn) not in waiting}
    found = []
    for d in cards.compare(expected, (r for r in context.network.iter_all() if r.isdn not in waiting)):
        iccid = expected[d.msisdn][2] if d.msisdn in expected else None
        ids = {"msisdn": d.msisdn, "iccid": iccid} if iccid else {"msisdn": d.msisdn}
        card = f" (SIM {iccid})" if iccid else ""
        found.append(Violation(_HLR_KINDS[d.kind], f"{d.msisdn}{card}: inventory has {d.inventory}, the HLR "
                               f"{d.hlr}", ids))
    return found


def _reconcile_hlr(db: Store, violations: list[Violation], context: Context, actor: str) -> None:
    from hkops.cards import service as cards

    cards.reconcile(db, context.network, fix=True, actor=actor)


#: Every check, in the order they run.
CHECKS: list[Check] = [
    Check("numbers_in_service", numbers_in_service),
    Check("live_sims", live_sims),
    Check("stock", stock_places, frozenset({"card_location_differs_from_ledger"}), _restore_locations),
    Check("open_orders", open_orders),
    Check("numbers_per_person", numbers_per_person),
    Check("order_money", order_money),
    Check("settlement_batches", settlement_batches),
    Check("alerts", alerts_audited),
    Check("agent_balances", agent_balances),
    Check("hlr_commands", hlr_commands, frozenset({"hlr_command_stale"}), _send_pending, repair_needs_hlr=True),
    Check("hlr_registry", hlr_registry, frozenset({"hlr_missing", "hlr_imsi_differs", "hlr_barring_differs",
                                                   "hlr_unexpected"}), _reconcile_hlr, needs_hlr=True,
          repair_needs_hlr=True),
]


@contextmanager
def _snapshot(db: Store) -> Iterator[Connection]:
    """One read transaction that sees one moment for every check (REPEATABLE READ on
    PostgreSQL; a SQLite read transaction is a snapshot already)."""
    if db.is_sqlite:
        with db.read() as conn:
            yield conn
        return
    with db.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        with conn.begin() as tx:
            yield conn
            tx.rollback()


def _find(db: Store, checks: list[Check], context: Context) -> tuple[list[Violation], list[str], dict[str, str]]:
    found, checked, not_checked = [], [], {}
    with _snapshot(db) as conn:
        for check in checks:
            if check.needs_hlr and context.network is None:
                not_checked[check.name] = "not checked: no HLR answers and no registry folder was given"
                continue
            found += check.find(conn, context)
            checked.append(check.name)
    return found, checked, not_checked


def run(db: Store, *, network=None, hlr: str | None = None, fix: bool = False, actor: str = "check",
        skip: tuple[str, ...] = (), now: datetime | None = None, hlr_repairs: bool = True) -> Report:
    """Check the whole world; with ``fix`` repair what can be repaired safely, check again
    and report what is left (left alone: not safe to fix). ``network`` is a provisioning
    client for the HLR (None: the HLR is not checked, nor repaired; ``hlr_repairs=False``:
    compared only, e.g. a copy of a registry); ``hlr`` says where it is; ``skip`` names
    checks to leave out."""
    if fix:
        access.require(actor, "settings.write", "repair the database (check --fix)", db)
    from hkops import audit
    from hkops.audit import Event

    unknown = set(skip) - {c.name for c in CHECKS}
    if unknown:
        from hkops.errors import InvalidValue

        raise InvalidValue("skip", ", ".join(sorted(unknown)), f"known checks: {', '.join(c.name for c in CHECKS)}")
    checks = [c for c in CHECKS if c.name not in skip]
    context = Context(now or utc_now(), network, hlr, hlr_repairs)
    found, checked, not_checked = _find(db, checks, context)
    if not fix or not found:
        return Report(found, checked, not_checked, fix=fix)
    for check in checks:
        mine = [v for v in found if v.kind in check.fixable]
        can_reach = context.network is not None and context.hlr_repairs
        if mine and check.repair is not None and (can_reach or not check.repair_needs_hlr):
            check.repair(db, mine, context, actor)
    left, checked, not_checked = _find(db, checks, Context(utc_now(), network, hlr, hlr_repairs))
    remaining = {v.key() for v in left}
    fixed = [v for v in found if v.key() not in remaining]
    with db.write() as conn:
        audit.record(conn, actor, [Event("check", "world", "fix", None, None,
                                         f"{len(fixed)} repaired, {len(left)} left alone (not safe to fix)",
                                         {v.kind: sum(1 for x in fixed if x.kind == v.kind) for v in fixed} or None)])
    return Report(left, checked, not_checked, fixed=fixed, fix=True)
