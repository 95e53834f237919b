"""Procurement (采购): vendors, purchase orders, and receiving vendor card files against them.

A purchase order goes draft -> confirmed -> partially_received -> received -> closed, or
cancelled (hkops.procurement.model). Receiving a delivery imports the vendor's card file
into the PO's warehouse in the same transaction as the PO's figures, the stock ledger
(one receipt row per card, document = PO number) and the audit trail: all or nothing.

Landed cost per card = the line's unit cost + the PO's extra cost (freight, duty...)
shared over the PO's ordered quantity, rounded to the nearest fen (halves up).
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, select, update

from hkops import audit
from hkops.audit import Event
from hkops.cards.batches import Progress, import_sim_file
from hkops.cards.tables import sim_batches
from hkops.catalogue.tables import sim_products
from hkops.errors import Conflict, InvalidValue, InvalidValues, NotFound
from hkops.procurement.model import MOVES, PoState, check_po_move
from hkops.procurement.tables import po_receipts, purchase_order_lines, purchase_orders, vendors
from hkops.security.crypto import Keyring
from hkops.stock import service as stock
from hkops.stock.model import LocationKind
from hkops.stock.tables import stock_locations
from hkops.store.engine import Store, unit_of_work
from hkops.timeutil import utc_now
from hkops.security import access

_CODE = re.compile(r"[A-Z0-9_-]{1,32}")
MAX_QUANTITY = 10_000_000


@dataclass(frozen=True)
class PoLine:
    """One line of a purchase order and how much of it has arrived."""

    product: str
    quantity: int
    unit_cost_fen: int
    received: int
    #: Cards still expected (0 once the line is complete).
    outstanding: int


@dataclass(frozen=True)
class PoReceipt:
    """One delivery received against a line: a vendor file, a SIM batch."""

    product: str
    batch: str
    quantity: int
    over_quantity: int
    landed_unit_cost_fen: int
    at: datetime
    actor: str


@dataclass(frozen=True)
class PurchaseOrder:
    """A purchase order with its lines, receipts and figures (money in fen)."""

    number: str
    vendor: str
    warehouse: str
    state: str
    extra_cost_fen: int
    note: str | None
    created_at: datetime
    created_by: str
    changed_at: datetime
    lines: tuple[PoLine, ...]
    receipts: tuple[PoReceipt, ...]
    ordered: int
    received: int
    #: Cards received beyond what the lines expected (accepted on purpose).
    over_received: int
    #: Cards never delivered: what was still outstanding when the order was closed.
    under_delivered: int
    #: Ordered quantity times unit cost, plus the extra cost.
    ordered_cost_fen: int
    #: What the cards received so far cost, landed.
    received_cost_fen: int


@dataclass(frozen=True)
class Receipt:
    """What :func:`receive` did."""

    po: str
    state: str
    product: str
    batch: str
    quantity: int
    over_quantity: int
    landed_unit_cost_fen: int
    first_iccid: str
    last_iccid: str


def _read(db: Store | Connection):
    return db.read() if isinstance(db, Store) else nullcontext(db)


def _code(value: str, field: str) -> str:
    code = str(value or "").strip().upper()
    if not _CODE.fullmatch(code):
        raise InvalidValue(field, value, "must be 1 to 32 letters, digits, '-' or '_'")
    return code


def _whole(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(field, value, "must be a whole number")
    if not low <= value <= high:
        raise InvalidValue(field, value, f"must be from {low} to {high:,}")
    return value


def _fen(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(field, value, "must be a whole number of fen")
    if value < 0:
        raise InvalidValue(field, value, "cannot be negative")
    return value


def _event(number: str, action: str, from_state: str | None, to_state: str, reason: str | None,
           details: dict | None) -> Event:
    """An audit event of a purchase order."""
    return Event("po", number, action, from_state, to_state, reason, details)


def landed_unit_cost(unit_cost_fen: int, extra_cost_fen: int, ordered: int) -> int:
    """The unit cost plus the extra cost's share per ordered card, to the nearest fen (halves up)."""
    return unit_cost_fen + (2 * extra_cost_fen + ordered) // (2 * ordered)


# ---------------------------------------------------------------- vendors


def add_vendor(db: Store | Connection, code: str, name: str, *, contact: str | None = None, actor: str) -> str:
    """Register a SIM vendor; returns its code."""
    access.require(actor, "procurement.write", f"add vendor {code}", db)
    code = _code(code, "vendor")
    name = " ".join(str(name or "").split())
    if not 0 < len(name) <= 64:
        raise InvalidValue("name", name, "must be 1 to 64 characters")
    if contact is not None and len(contact) > 64:
        raise InvalidValue("contact", contact, "at most 64 characters")
    with unit_of_work(db) as conn:
        if conn.execute(select(vendors.c.code).where(vendors.c.code == code)).first():
            raise Conflict(f"vendor {code} exists already")
        conn.execute(vendors.insert().values(code=code, name=name, contact=contact, created_at=utc_now()))
        audit.record(conn, actor, [Event("vendor", code, "create", None, None, None, {"name": name})])
    return code


def list_vendors(db: Store | Connection) -> list[dict]:
    """Every vendor (code, name, contact)."""
    with _read(db) as conn:
        return [dict(r) for r in conn.execute(select(vendors.c.code, vendors.c.name, vendors.c.contact)
                                              .order_by(vendors.c.code)).mappings()]


# ---------------------------------------------------------------- purchase orders


def _warehouse(conn: Connection, value: str) -> str:
    text = str(value or "").strip()
    row = conn.execute(select(stock_locations.c.code, stock_locations.c.kind)
                       .where(stock_locations.c.code.in_({text, text.upper()}))).first()
    if row is None:
        raise InvalidValue("warehouse", value, "is not a stock location (hkops stock location-add)")
    if row.kind != LocationKind.WAREHOUSE.value:
        raise InvalidValue("warehouse", value, f"is an {row.kind} location; deliveries are received into a warehouse")
    return row.code


def create_po(db: Store | Connection, vendor: str, warehouse: str, lines: list[tuple[str, int, int]], *,
              extra_cost_fen: int = 0, note: str | None = None, actor: str) -> str:
    """A draft purchase order of ``lines`` (product, quantity, unit cost in fen); returns its number (PO000001...)."""
    access.require(actor, "procurement.write", f"create a purchase order from {vendor}", db)
    problems: list[InvalidValue] = []
    checked: list[tuple[str, int, int]] = []
    if not lines:
        problems.append(InvalidValue("lines", "", "a purchase order needs at least one line"))
    for n, line in enumerate(lines or (), start=1):
        try:
            product, quantity, unit_cost = line
            product = _code(product, f"line {n} product")
            quantity = _whole(quantity, f"line {n} quantity", 1, MAX_QUANTITY)
            unit_cost = _fen(unit_cost, f"line {n} unit_cost_fen")
        except InvalidValue as problem:
            problems.append(problem)
            continue
        except (TypeError, ValueError):
            problems.append(InvalidValue(f"line {n}", line, "must be (product, quantity, unit cost in fen)"))
            continue
        if product in {p for p, _, _ in checked}:
            problems.append(InvalidValue(f"line {n} product", product, "is on an earlier line already"))
        checked.append((product, quantity, unit_cost))
    try:
        extra_cost_fen = _fen(extra_cost_fen, "extra_cost_fen")
    except InvalidValue as problem:
        problems.append(problem)
    if note is not None:
        note = note.strip() or None
    with unit_of_work(db) as conn:
        vendor_code = str(vendor or "").strip().upper()
        if not conn.execute(select(vendors.c.code).where(vendors.c.code == vendor_code)).first():
            problems.append(InvalidValue("vendor", vendor, "is not a registered vendor (hkops po vendor-add)"))
        try:
            warehouse = _warehouse(conn, warehouse)
        except InvalidValue as problem:
            problems.append(problem)
        known = dict(conn.execute(select(sim_products.c.code, sim_products.c.active)
                                  .where(sim_products.c.code.in_([p for p, _, _ in checked]))).all())
        for product, _, _ in checked:
            if product not in known:
                problems.append(InvalidValue("product", product, "is not in the catalogue"))
            elif not known[product]:
                problems.append(InvalidValue("product", product, "is no longer sold (inactive)"))
        if len(problems) == 1:
            raise problems[0]
        if problems:
            raise InvalidValues("purchase order", problems)
        number = stock.next_number(conn, "PO", purchase_orders.c.number)
        now = utc_now()
        po_id = conn.execute(purchase_orders.insert().values(
            number=number, vendor=vendor_code, warehouse=warehouse, state=PoState.DRAFT.value,
            extra_cost_fen=extra_cost_fen, note=note, created_at=now, created_by=actor, changed_at=now,
        )).inserted_primary_key[0]
        conn.execute(purchase_order_lines.insert(), [
            {"po_id": po_id, "product": p, "quantity": q, "unit_cost_fen": c, "received": 0} for p, q, c in checked])
        audit.record(conn, actor, [Event("po", number, "create", None, PoState.DRAFT.value, note, {
            "vendor": vendor_code, "warehouse": warehouse, "extra_cost_fen": extra_cost_fen,
            "lines": [{"product": p, "quantity": q, "unit_cost_fen": c} for p, q, c in checked]})], now)
    return number


def _locked_po(conn: Connection, number: str):
    number = str(number or "").strip().upper()
    query = select(purchase_orders).where(purchase_orders.c.number == number)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"purchase order {number!r} does not exist")
    return row


def _lines(conn: Connection, po_id: int) -> list:
    return conn.execute(select(purchase_order_lines).where(purchase_order_lines.c.po_id == po_id)
                        .order_by(purchase_order_lines.c.id)).all()


def _move(db: Store | Connection, number: str, action: str, *, actor: str, reason: str | None) -> PurchaseOrder:
    with unit_of_work(db) as conn:
        po = _locked_po(conn, number)
        current = PoState(po.state)
        check_po_move(action, po.number, current)
        target = MOVES[action][1]
        details = None
        if action == "close":
            short = {line.product: line.quantity - line.received for line in _lines(conn, po.id)
                     if line.received < line.quantity}
            if short:
                details = {"under_delivered": sum(short.values()), "short_by_product": short}
        now = utc_now()
        conn.execute(update(purchase_orders).where(purchase_orders.c.id == po.id)
                     .values(state=target.value, changed_at=now))
        audit.record(conn, actor, [_event(po.number, action, current.value, target.value, reason, details)], now)
        return get_po(conn, po.number)


def confirm(db: Store | Connection, number: str, *, actor: str, reason: str | None = None) -> PurchaseOrder:
    """Confirm a draft purchase order with the vendor; deliveries may then be received."""
    access.require(actor, "procurement.write", f"confirm purchase order {number}", db)
    return _move(db, number, "confirm", actor=actor, reason=reason)


def cancel(db: Store | Connection, number: str, *, actor: str, reason: str | None = None) -> PurchaseOrder:
    """Cancel a purchase order before anything was received."""
    access.require(actor, "procurement.write", f"cancel purchase order {number}", db)
    return _move(db, number, "cancel", actor=actor, reason=reason)


def close(db: Store | Connection, number: str, *, actor: str, reason: str | None = None) -> PurchaseOrder:
    """Close a (partially) received purchase order; what never came is recorded as under-delivered."""
    access.require(actor, "procurement.write", f"close purchase order {number}", db)
    return _move(db, number, "close", actor=actor, reason=reason)


def receive(db: Store | Connection, po_number: str, path: str | Path, *, product: str | None = None,
            accept_over: bool = False, batch_name: str | None = None, actor: str, keyring: Keyring | None = None,
            progress: Progress | None = None) -> Receipt:
    """Receive a vendor card file against a line of a confirmed purchase order; all or nothing.

    The line is ``product``'s (default: the only line). The file's IMSIs must be of the
    product's carrier, and it may hold at most what the line still expects unless
    ``accept_over`` (the excess is then recorded as over-quantity). The cards land in the
    PO's warehouse with a receipt in the stock ledger under the PO number.
    """
    access.require(actor, "procurement.write", f"receive purchase order {po_number}", db)
    with unit_of_work(db) as conn:
        po = _locked_po(conn, po_number)
        check_po_move("receive", po.number, PoState(po.state))
        lines = _lines(conn, po.id)
        if product is None:
            if len(lines) != 1:
                raise InvalidValue("product", None, f"purchase order {po.number} has {len(lines)} lines "
                                   f"({', '.join(line.product for line in lines)}); name the product received")
            line = lines[0]
        else:
            wanted = str(product).strip().upper()
            line = next((line for line in lines if line.product == wanted), None)
            if line is None:
                raise InvalidValue("product", product, f"is not on purchase order {po.number} "
                                   f"(lines: {', '.join(line.product for line in lines)})")
        carrier = conn.execute(select(sim_products.c.carrier).where(sim_products.c.code == line.product)).scalar()
        vendor = conn.execute(select(vendors.c.name).where(vendors.c.code == po.vendor)).scalar()
        summary = import_sim_file(conn, path, carrier=carrier, actor=actor, batch_name=batch_name, vendor=vendor,
                                  location=po.warehouse, keyring=keyring, progress=progress, document=po.number,
                                  product=line.product, purchase_order=po.number)
        expected = max(0, line.quantity - line.received)
        over = max(0, summary.quantity - expected)
        if over and not accept_over:
            raise InvalidValue("quantity", summary.quantity,
                               f"line {line.product} of {po.number} still expects {expected} card(s) (ordered "
                               f"{line.quantity}, received {line.received}); {over} too many, nothing received "
                               "(accept the excess on purpose with accept_over / --accept-over)")
        ordered = sum(row.quantity for row in lines)
        landed = landed_unit_cost(line.unit_cost_fen, po.extra_cost_fen, ordered)
        now = utc_now()
        conn.execute(update(purchase_order_lines).where(purchase_order_lines.c.id == line.id)
                     .values(received=line.received + summary.quantity))
        conn.execute(po_receipts.insert().values(
            po_id=po.id, line_id=line.id, batch_id=summary.id, quantity=summary.quantity, over_quantity=over,
            landed_unit_cost_fen=landed, note=None, at=now, actor=actor))
        complete = all((row.received + (summary.quantity if row.id == line.id else 0)) >= row.quantity
                       for row in lines)
        state = PoState.RECEIVED if complete else PoState.PARTIALLY_RECEIVED
        conn.execute(update(purchase_orders).where(purchase_orders.c.id == po.id)
                     .values(state=state.value, changed_at=now))
        audit.record(conn, actor, [_event(
            po.number, "receive", po.state, state.value,
            f"{over} card(s) over the ordered quantity accepted" if over else None,
            {"product": line.product, "batch": summary.name, "quantity": summary.quantity, "over_quantity": over,
             "expected": expected, "landed_unit_cost_fen": landed, "first_iccid": summary.first_iccid,
             "last_iccid": summary.last_iccid})], now)
    return Receipt(po.number, state.value, line.product, summary.name, summary.quantity, over, landed,
                   summary.first_iccid, summary.last_iccid)


# ---------------------------------------------------------------- reading


def _purchase_order(po, lines: list, receipts: list) -> PurchaseOrder:
    closed = po.state == PoState.CLOSED.value
    outstanding = {line.id: max(0, line.quantity - line.received) for line in lines}
    products = {line.id: line.product for line in lines}
    return PurchaseOrder(
        number=po.number, vendor=po.vendor, warehouse=po.warehouse, state=po.state,
        extra_cost_fen=po.extra_cost_fen, note=po.note, created_at=po.created_at, created_by=po.created_by,
        changed_at=po.changed_at,
        lines=tuple(PoLine(line.product, line.quantity, line.unit_cost_fen, line.received,
                           0 if closed else outstanding[line.id]) for line in lines),
        receipts=tuple(PoReceipt(products[r.line_id], r.batch, r.quantity, r.over_quantity, r.landed_unit_cost_fen,
                                 r.at, r.actor) for r in receipts),
        ordered=sum(line.quantity for line in lines),
        received=sum(line.received for line in lines),
        over_received=sum(r.over_quantity for r in receipts),
        under_delivered=sum(outstanding.values()) if closed else 0,
        ordered_cost_fen=sum(line.quantity * line.unit_cost_fen for line in lines) + po.extra_cost_fen,
        received_cost_fen=sum(r.quantity * r.landed_unit_cost_fen for r in receipts),
    )


def _receipts_query():
    return (select(po_receipts, sim_batches.c.name.label("batch"))
            .join(sim_batches, sim_batches.c.id == po_receipts.c.batch_id).order_by(po_receipts.c.id))


def get_po(db: Store | Connection, number: str) -> PurchaseOrder:
    """The purchase order ``number``; NotFound if there is none."""
    number = str(number or "").strip().upper()
    with _read(db) as conn:
        po = conn.execute(select(purchase_orders).where(purchase_orders.c.number == number)).first()
        if po is None:
            raise NotFound(f"purchase order {number!r} does not exist")
        receipts = conn.execute(_receipts_query().where(po_receipts.c.po_id == po.id)).all()
        return _purchase_order(po, _lines(conn, po.id), receipts)


def list_pos(db: Store | Connection, *, state: str | None = None, vendor: str | None = None) -> list[PurchaseOrder]:
    """Purchase orders, newest first, optionally of one state or vendor."""
    query = select(purchase_orders).order_by(purchase_orders.c.id.desc())
    if state is not None:
        if state not in {s.value for s in PoState}:
            raise InvalidValue("state", state, f"must be one of {', '.join(s.value for s in PoState)}")
        query = query.where(purchase_orders.c.state == state)
    if vendor is not None:
        query = query.where(purchase_orders.c.vendor == str(vendor).strip().upper())
    with _read(db) as conn:
        pos = conn.execute(query).all()
        ids = [po.id for po in pos]
        lines: dict[int, list] = {}
        receipts: dict[int, list] = {}
        for start in range(0, len(ids), 900):
            chunk = ids[start:start + 900]
            for line in conn.execute(select(purchase_order_lines).where(purchase_order_lines.c.po_id.in_(chunk))
                                     .order_by(purchase_order_lines.c.id)):
                lines.setdefault(line.po_id, []).append(line)
            for receipt in conn.execute(_receipts_query().where(po_receipts.c.po_id.in_(chunk))):
                receipts.setdefault(receipt.po_id, []).append(receipt)
    return [_purchase_order(po, lines.get(po.id, []), receipts.get(po.id, [])) for po in pos]
