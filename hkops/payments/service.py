"""The payment ledger: money collected for orders and refunded, in integer fen.

Append-only. A payment is known by its provider's ``(method, reference)``: recording the
same one again returns the row already there (a retried callback or a re-imported
statement line), with another amount or order it is a :class:`Conflict`. Reconciliation
compares what each order has netted with what it should have.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable

from sqlalchemy import Connection, bindparam, case, func, select

from hkops import audit
from hkops.audit import Event
from hkops.errors import Conflict, InvalidFile, InvalidValue, NotFound
from hkops.money import format_yuan, yuan_to_fen
from hkops.orders.model import OrderState
from hkops.orders.tables import orders
from hkops.payments.tables import payments
from hkops.security.access import AccessDenied, agent_scope, out_of_scope, require
from hkops.store.engine import Store, unit_of_work
from hkops.textfiles import csv_rows
from hkops.timeutil import SHANGHAI, as_utc, utc_now
from hkops.security import access

COLLECTION, REFUND = "collection", "refund"
_METHOD = re.compile(r"[a-z0-9_-]{1,16}")
_CHUNK = 900
O = OrderState
#: Orders that should have been paid in full.
SHOULD_BE_PAID = frozenset({O.PAID, O.ALLOCATED, O.SHIPPED, O.DELIVERED, O.ACTIVATED, O.FIRST_TOPUP, O.COMPLETED})
#: Orders that should net to nothing (every collection refunded).
SHOULD_NET_ZERO = frozenset({O.DRAFT, O.VERIFYING, O.REJECTED, O.CANCELLED, O.RETURNED, O.EXPIRED})


@dataclass(frozen=True)
class Payment:
    """One ledger row. ``created`` is False when the same payment was recorded before."""

    id: int
    order: str
    kind: str
    amount_fen: int
    method: str
    reference: str
    note: str | None
    at: datetime
    actor: str
    created: bool = field(default=True, compare=False)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "created"}


def check_amount(amount_fen: object, field_name: str = "amount") -> int:
    """A positive whole number of fen."""
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int):
        raise InvalidValue(field_name, amount_fen, "must be a whole number of fen")
    if amount_fen <= 0:
        raise InvalidValue(field_name, amount_fen, "must be more than 0")
    return amount_fen


def check_method(method: object) -> str:
    """alipay, wechat, bank, cash...: 1 to 16 lower-case letters, digits, '-' or '_'."""
    text = str(method or "").strip().lower()
    if not _METHOD.fullmatch(text):
        raise InvalidValue("method", method,
                           "must be 1 to 16 letters, digits, '-' or '_' (alipay, wechat, bank, cash...)")
    return text


def check_reference(reference: object) -> str:
    """The provider's transaction id: 1 to 64 characters."""
    text = str(reference or "").strip()
    if not 0 < len(text) <= 64:
        raise InvalidValue("reference", reference, "the payment's transaction id is required (at most 64 characters)")
    return text


def _payment(row, number: str, created: bool = True) -> Payment:
    return Payment(id=row.id, order=number, kind=row.kind, amount_fen=row.amount_fen, method=row.method,
                   reference=row.reference, note=row.note, at=row.at, actor=row.actor, created=created)


def find(conn: Connection, method: str, reference: str):
    """The ledger row of payment (method, reference), or None."""
    return find_many(conn, [(method, reference)]).get((method, reference))


_BY_REFERENCES = select(payments).where(payments.c.reference.in_(bindparam("references", expanding=True)))


def find_many(conn: Connection, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], object]:
    """The ledger rows of these (method, reference) payments that are recorded, by key."""
    keys = set(keys)
    found = {}
    references = sorted({reference for _, reference in keys})
    for start in range(0, len(references), _CHUNK):
        for row in conn.execute(_BY_REFERENCES, {"references": references[start:start + _CHUNK]}):
            if (row.method, row.reference) in keys:
                found[row.method, row.reference] = row
    return found


@dataclass(frozen=True)
class Entry:
    """A collection or refund to append to the ledger for an order."""

    order_id: int
    order: str
    kind: str
    amount_fen: int
    method: str
    reference: str
    note: str | None = None
    at: datetime | None = None


def mismatch(existing, entry: Entry) -> str | None:
    """Why the recorded payment ``existing`` is not ``entry`` again; None when it is (same order, kind, amount)."""
    if (existing.order_id, existing.kind, existing.amount_fen) == (entry.order_id, entry.kind, entry.amount_fen):
        return None
    return (f"is recorded already as a {existing.kind} of {format_yuan(existing.amount_fen)} for another order "
            "or amount")


def check_same(existing, entry: Entry) -> None:
    """Conflict unless the recorded payment ``existing`` is ``entry`` again."""
    reason = mismatch(existing, entry)
    if reason:
        raise Conflict(f"{existing.method} payment {existing.reference} {reason}")


def record(conn: Connection, order_id: int, order_number: str, kind: str, amount_fen: int, *, method: str,
           reference: str, actor: str, note: str | None = None, at: datetime | None = None) -> Payment:
    """Append a collection or refund for an order in the caller's transaction (audited under
    the order number). The same (method, reference) again returns the existing row, or is a
    Conflict when it was for another order, kind or amount."""
    if kind not in (COLLECTION, REFUND):
        raise InvalidValue("kind", kind, "must be collection or refund")
    entry = Entry(order_id, order_number, kind, check_amount(amount_fen), check_method(method),
                  check_reference(reference), note, at)
    existing = find(conn, entry.method, entry.reference)
    if existing is not None:
        check_same(existing, entry)
        return _payment(existing, order_number, created=False)
    return append(conn, [entry], actor=actor)[0]


# Rows inserted together come back matched by (method, reference): one multi-row INSERT ... RETURNING.
_INSERT_RETURNING_ID = payments.insert().returning(payments.c.method, payments.c.reference, payments.c.id)


def append(conn: Connection, entries: list[Entry], *, actor: str, at: datetime | None = None) -> list[Payment]:
    """Append entries the caller has checked (values valid, references new) to the ledger in
    its transaction, one audit record each; an entry without ``at`` is dated ``at`` (default now)."""
    if not entries:
        return []
    at = at or utc_now()
    rows = [dict(order_id=e.order_id, kind=e.kind, amount_fen=e.amount_fen, method=e.method, reference=e.reference,
                 note=e.note, at=e.at or at, actor=actor) for e in entries]
    made = {(method, reference): i for method, reference, i in conn.execute(_INSERT_RETURNING_ID, rows)}
    ids = [made[e.method, e.reference] for e in entries]
    audit.record(conn, actor, [Event("payment", e.order, e.kind, None, None, e.note,
                                     {"amount_fen": e.amount_fen, "method": e.method, "reference": e.reference})
                               for e in entries], at)
    return [Payment(id=i, order=e.order, **{k: v for k, v in row.items() if k != "order_id"})
            for i, e, row in zip(ids, entries, rows)]


def _order(conn: Connection, number: str):
    row = conn.execute(select(orders.c.id, orders.c.number, orders.c.state, orders.c.total_fen, orders.c.agent_id)
                       .where(orders.c.number == str(number).strip().upper())).first()
    if row is None:
        raise NotFound(f"order {number} does not exist")
    return row


def collect(db: Store | Connection, order: str, amount_fen: int, *, method: str, reference: str, actor: str,
            note: str | None = None) -> Payment:
    """Record money collected for an order (no state change; orders.service.pay_order moves the order)."""
    access.require(actor, "payments.write", f"record a payment for order {order}", db)
    with unit_of_work(db) as conn:
        row = _order(conn, order)
        return record(conn, row.id, row.number, COLLECTION, amount_fen, method=method, reference=reference,
                      actor=actor, note=note)


def refund(db: Store | Connection, order: str, amount_fen: int, *, method: str, reference: str, actor: str,
           note: str | None = None) -> Payment:
    """Record money paid back for an order; not more than it has netted."""
    access.require(actor, "refunds.write", f"refund order {order}", db)
    with unit_of_work(db) as conn:
        row = _order(conn, order)
        net = balance(conn, row.id)
        if check_amount(amount_fen) > net:
            raise Conflict(f"cannot refund {format_yuan(amount_fen)} for order {row.number}: it has netted "
                           f"{format_yuan(net)}")
        return record(conn, row.id, row.number, REFUND, amount_fen, method=method, reference=reference,
                      actor=actor, note=note)


_SIGNED = case((payments.c.kind == REFUND, -payments.c.amount_fen), else_=payments.c.amount_fen)
_NETS = (select(payments.c.order_id, func.sum(_SIGNED)).where(payments.c.order_id.in_(bindparam("ids", expanding=True)))
         .group_by(payments.c.order_id))


def balance(conn: Connection, order_id: int) -> int:
    """Net fen collected for an order: collections minus refunds."""
    return balances(conn, [order_id]).get(order_id, 0)


def balances(conn: Connection, order_ids: Iterable[int]) -> dict[int, int]:
    """Net fen collected per order (orders with no payments are left out)."""
    ids = sorted(set(order_ids))
    found = {}
    for start in range(0, len(ids), _CHUNK):
        found.update({order_id: int(net) for order_id, net in conn.execute(_NETS, {"ids": ids[start:start + _CHUNK]})})
    return found


def net_by_method(conn: Connection, order_id: int) -> dict[str, int]:
    """Net fen collected for an order per payment method (what a full refund pays back where)."""
    rows = conn.execute(select(payments.c.method, func.sum(_SIGNED)).where(payments.c.order_id == order_id)
                        .group_by(payments.c.method).order_by(payments.c.method)).all()
    return {method: int(net) for method, net in rows if net}


def list_payments(db: Store | Connection, *, order: str | None = None, limit: int = 1000,
                  actor: str | None = None) -> list[Payment]:
    """Ledger rows, newest first; only one order's with ``order``. Needs ``payments.read``; an
    agent user sees only payments of its subtree's orders."""
    require(actor, "payments.read", "see payments")
    from hkops.agents.service import scope_query

    scope = scope_query(actor)
    with unit_of_work(db) if isinstance(db, Connection) else db.read() as conn:
        stmt = (select(payments, orders.c.number).join(orders, orders.c.id == payments.c.order_id)
                .order_by(payments.c.id.desc()).limit(limit))
        if scope is not None:
            stmt = stmt.where(orders.c.agent_id.in_(scope))
        if order is not None:
            try:
                found = _order(conn, order)
            except NotFound:
                found = None
            if scope is not None and (found is None or found.agent_id is None
                                      or found.agent_id not in set(conn.execute(scope).scalars())):
                raise out_of_scope(actor, f"see the payments of order {order}")
            if found is None:
                found = _order(conn, order)
            stmt = stmt.where(payments.c.order_id == found.id)
        return [_payment(row, row.number) for row in conn.execute(stmt)]


# ---------------------------------------------------------------- reconciliation


@dataclass(frozen=True)
class Reconciliation:
    """Orders whose net payments disagree with what they should be: each item has the order
    number, state, total_fen, net_fen and difference_fen (net - due)."""

    unpaid: list[dict]
    underpaid: list[dict]
    overpaid: list[dict]

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def clean(self) -> bool:
        return not (self.unpaid or self.underpaid or self.overpaid)


def reconcile(db: Store | Connection, *, actor: str | None = None) -> Reconciliation:
    """Compare each order's net payments with what it should have netted: the total for
    approved and later orders, nothing for drafts, rejected, cancelled and returned ones
    (``payments.read``; refused to an agent user: it spans every order)."""
    require(actor, "payments.read", "reconcile payments")
    if agent_scope(actor) is not None:
        raise AccessDenied(str(actor), "reconcile payments", detail="it spans every agent's orders")
    net = (select(payments.c.order_id, func.sum(_SIGNED).label("net")).group_by(payments.c.order_id)
           .subquery())
    active = [s.value for s in SHOULD_BE_PAID | {O.APPROVED}]
    stmt = (select(orders.c.number, orders.c.state, orders.c.total_fen, func.coalesce(net.c.net, 0).label("net"))
            .select_from(orders.outerjoin(net, net.c.order_id == orders.c.id))
            .where((orders.c.state.in_(active)) | (func.coalesce(net.c.net, 0) != 0))
            .order_by(orders.c.id))
    unpaid, underpaid, overpaid = [], [], []
    with unit_of_work(db) if isinstance(db, Connection) else db.read() as conn:
        for row in conn.execute(stmt):
            due = 0 if OrderState(row.state) in SHOULD_NET_ZERO else row.total_fen
            item = {"order": row.number, "state": row.state, "total_fen": row.total_fen, "net_fen": int(row.net),
                    "difference_fen": int(row.net) - due}
            if row.net > due:
                overpaid.append(item)
            elif row.net == 0 and due > 0:
                unpaid.append(item)
            elif row.net < due:
                underpaid.append(item)
    return Reconciliation(unpaid=unpaid, underpaid=underpaid, overpaid=overpaid)


# ---------------------------------------------------------------- statement import

IMPORT_COLUMNS = ("order", "amount", "method", "reference", "time")


def _parse_time(text: str) -> datetime:
    """ISO time; without an offset it is Asia/Shanghai time."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidValue("time", text, "must be a date and time such as 2026-11-25 14:30:00") from None
    return as_utc(moment if moment.tzinfo else moment.replace(tzinfo=SHANGHAI))


def read_payment_file(path: str | Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The columns and the (line number, cells) of each line of a payment CSV: order,
    amount (yuan), method, reference, time; a header row naming them (any order) is optional."""
    rows = csv_rows(path)
    columns = list(IMPORT_COLUMNS)
    if rows and sorted(c.lower() for c in rows[0][1]) == sorted(IMPORT_COLUMNS):
        columns = [c.lower() for c in rows.pop(0)[1]]
    return columns, rows


def import_payments(db: Store | Connection, path: str | Path, *, actor: str) -> list[Payment]:
    """Record the collections of a payment statement CSV; every line or none.

    Every bad line is listed (:class:`InvalidFile`): unknown order, bad amount, method or
    time, a reference repeated in the file, or one the ledger has for another payment.
    Lines the ledger has already are skipped (``created`` False). Amounts are not checked
    against what the orders owe: reconciliation shows what an import over-paid. Approved
    orders the import pays in full are settled together as :func:`hkops.orders.service.pay_orders`
    settles them (paid, numbers assigned, cards allocated; without stock left, paid and waiting).
    """
    access.require(actor, "payments.write", f"import payments from {path}", db)
    from hkops.orders import service as order_service

    columns, entries = read_payment_file(path)
    if not entries:
        raise InvalidValue("file", str(path), "holds no payments")
    problems: list[InvalidValue] = []
    parsed = []
    seen: dict[tuple[str, str], int] = {}
    for line, cells in entries:
        if len(cells) != len(columns):
            problems.append(InvalidValue("line", ",".join(cells), f"must have {len(columns)} fields: "
                                         f"{', '.join(columns)}", line=line))
            continue
        fields = dict(zip(columns, cells))
        try:
            amount = check_amount(yuan_to_fen(fields["amount"], "amount"))
            method, reference = check_method(fields["method"]), check_reference(fields["reference"])
            at = _parse_time(fields["time"])
        except InvalidValue as exc:
            problems.append(InvalidValue(exc.field, exc.value, exc.reason, line=line))
            continue
        if (method, reference) in seen:
            problems.append(InvalidValue("reference", reference, f"repeats line {seen[method, reference]}", line=line))
            continue
        seen[method, reference] = line
        parsed.append((line, fields["order"].strip().upper(), amount, method, reference, at))
    with unit_of_work(db) as conn:
        found = {}
        numbers = sorted({p[1] for p in parsed})
        for start in range(0, len(numbers), _CHUNK):
            found.update({r.number: r for r in conn.execute(
                select(orders.c.id, orders.c.number, orders.c.state)
                .where(orders.c.number.in_(numbers[start:start + _CHUNK])))})
        recorded = find_many(conn, [(p[3], p[4]) for p in parsed])
        result, new = [], []
        for line, number, amount, method, reference, at in parsed:
            order = found.get(number)
            if order is None:
                problems.append(InvalidValue("order", number, "does not exist", line=line))
                continue
            entry = Entry(order.id, number, COLLECTION, amount, method, reference,
                          f"imported from {Path(path).name}", at)
            known = recorded.get((method, reference))
            if known is None:
                new.append(entry)
                result.append(entry)
                continue
            reason = mismatch(known, entry)
            if reason:
                problems.append(InvalidValue("reference", reference, reason, line=line))
            result.append(_payment(known, number, created=False))
        if problems:
            problems.sort(key=lambda p: p.line or 0)
            raise InvalidFile(str(path), problems)
        appended = iter(append(conn, new, actor=actor))
        result = [next(appended) if isinstance(item, Entry) else item for item in result]
        order_service.settle_paid(conn, sorted({e.order for e in new if found[e.order].state == O.APPROVED.value}),
                                  actor=actor)
    return result
