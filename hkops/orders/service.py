"""Sales orders after approval, to completion, cancellation and return, and reading them
(DOMAIN.md section 5).

Orders come in through :mod:`hkops.orders.intake`, which checks them and approves them or
not. Payment in full assigns the number and picks a card from the selling location's stock
(none left: the order stays paid until :func:`allocate_waiting` finds one); shipping sells
the card to the customer; activation pairs and activates it through the card lifecycle.
Cancelling undoes every step taken; an activated order is returned instead.

Payment is set-wise: :func:`pay_orders` takes a whole batch in a handful of queries;
:func:`pay_order` is the same code for one.

Each use case is one unit of work and audits every state change (entity ``order``, subject
the order number); only activation and return talk to the HLR, after their commit.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from types import SimpleNamespace

from sqlalchemy import Connection, bindparam, func, select, update

from hkops import audit, settings
from hkops.audit import Event, audit_log
from hkops.cards import service as cards
from hkops.cards.model import SimState
from hkops.cards.tables import sims
from hkops.catalogue import service as catalogue
from hkops.errors import Conflict, HkopsError, IllegalTransition, InvalidValue, InvalidValues, NotFound
from hkops.money import format_yuan
from hkops.network import ProvisioningClient
from hkops.numbers import service as numbers
from hkops.numbers.model import NumberState
from hkops.orders.model import PIPELINE, OrderState, ShipmentState, order_target, shipment_target
from hkops.orders.records import (
    Order,
    check_channel,
    check_text,
    load_order_row,
    load_order_rows,
    order_event,
    order_from_row,
)
from hkops.orders.tables import orders, shipments
from hkops.payments import service as payments
from hkops.security.access import out_of_scope, require, sees_personal_data
from hkops.stock import service as stock
from hkops.stock.tables import stock_locations
from hkops.store.engine import Store, unit_of_work
from hkops.timeutil import as_utc, utc_now
from hkops.security import access

O = OrderState


# ---------------------------------------------------------------- payment and allocation


def _move(conn: Connection, row, action: str, *, actor: str, now: datetime, reason: str | None = None,
          values: dict | None = None, **details) -> Event:
    """Move the order along its state machine (checked); returns the audit event to record."""
    to_state = order_target(action, row.number, O(row.state))
    conn.execute(update(orders).where(orders.c.id == row.id).values(state=to_state.value, changed_at=now,
                                                                    **(values or {})))
    return order_event(row.number, action, row.state, to_state.value, reason, **details)


_ALLOCATED = (update(orders).where(orders.c.id == bindparam("order_id"))
              .values(state=O.ALLOCATED.value, iccid=bindparam("iccid"), changed_at=bindparam("now")))
_PAID = (update(orders).where(orders.c.id == bindparam("order_id"))
         .values(state=O.PAID.value, changed_at=bindparam("now")))


def _assign_numbers(conn: Connection, rows: list, *, actor: str, now: datetime) -> None:
    """The numbers the orders hold become assigned to them (one check, one move for all)."""
    numbers.assign_to_orders(conn, {row.msisdn: row.number for row in rows}, actor=actor, now=now)


def _settle(conn: Connection, rows: list, *, actor: str, now: datetime) -> dict[str, dict]:
    """Fully paid approved orders, set-wise: paid, their numbers assigned, and a card picked for
    each from its selling location (lowest ICCIDs to the oldest orders), then allocated. An
    order whose location has no card of its product left stays paid, waiting for stock
    (:func:`allocate_waiting`). Returns the changed values by order number."""
    if not rows:
        return {}
    rows = sorted(rows, key=lambda r: r.id)
    _assign_numbers(conn, rows, actor=actor, now=now)
    picked = _pick_cards(conn, rows, actor=actor, now=now)
    events = []
    for row in rows:
        events.append(order_event(row.number, "pay", row.state, O.PAID.value, None, total_fen=row.total_fen))
        if row.number in picked:
            events.append(order_event(row.number, "allocate", O.PAID.value, O.ALLOCATED.value, None,
                                      iccid=picked[row.number], location=row.location))
        else:
            events.append(order_event(row.number, "wait_for_stock", O.PAID.value, O.PAID.value,
                                      f"no {row.product} card is in stock at {row.location}", location=row.location))
    waiting = [{"order_id": row.id, "now": now} for row in rows if row.number not in picked]
    if waiting:
        conn.execute(_PAID, waiting)
    audit.record(conn, actor, events, now)
    return {row.number: {"state": O.ALLOCATED.value, "iccid": picked[row.number], "changed_at": now}
            if row.number in picked else {"state": O.PAID.value, "changed_at": now} for row in rows}


def _pick_cards(conn: Connection, rows: list, *, actor: str, now: datetime) -> dict[str, str]:
    """Pick a card for each order (rows oldest first) per (location, product), set-wise; the
    orders that got one are allocated. Returns order number to ICCID."""
    groups: dict[tuple[str, str], list] = {}
    for row in rows:
        groups.setdefault((row.location, row.product), []).append(row)
    picked: dict[str, str] = {}
    for (location, product), group in groups.items():
        iccids = stock.pick_units(conn, location, product, [row.number for row in group], actor=actor, now=now)
        picked.update({row.number: iccid for row, iccid in zip(group, iccids)})
    allocated = [{"order_id": row.id, "iccid": picked[row.number], "now": now} for row in rows if row.number in picked]
    if allocated:
        conn.execute(_ALLOCATED, allocated)
    return picked


def settle_paid(conn: Connection, numbers_: list[str], *, actor: str, now: datetime | None = None) -> list[str]:
    """Move the approved orders among ``numbers_`` that have netted their total on to paid and
    allocated (for payments recorded outside :func:`pay_orders`, such as a statement import);
    returns them."""
    rows = load_order_rows(conn, numbers_, lock=True)
    nets = payments.balances(conn, [row.id for row in rows.values()])
    due = [row for row in rows.values() if row.state == O.APPROVED.value and nets.get(row.id, 0) >= row.total_fen]
    _settle(conn, due, actor=actor, now=now or utc_now())
    return [row.number for row in sorted(due, key=lambda r: r.id)]


def allocate_waiting(db: Store | Connection, *, location: str | None = None, actor: str) -> list[str]:
    """Pick cards for paid orders waiting for stock (at ``location``, else everywhere), oldest
    first, as far as the stock goes; returns the orders allocated."""
    access.require(actor, "orders.write", "allocate cards to waiting orders", db)
    now = utc_now()
    with unit_of_work(db) as conn:
        stmt = (select(orders.c.id, orders.c.number, orders.c.location, orders.c.product)
                .where(orders.c.state == O.PAID.value, orders.c.iccid.is_(None)).order_by(orders.c.id))
        if location is not None:
            code = conn.execute(select(stock_locations.c.code).where(
                func.upper(stock_locations.c.code) == str(location).strip().upper())).scalar()
            if code is None:
                raise NotFound(f"location {location!r} does not exist")
            stmt = stmt.where(orders.c.location == code)
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(of=orders, skip_locked=True)
        rows = conn.execute(stmt).all()
        picked = _pick_cards(conn, rows, actor=actor, now=now) if rows else {}
        audit.record(conn, actor, [order_event(row.number, "allocate", O.PAID.value, O.ALLOCATED.value, None,
                                               iccid=picked[row.number], location=row.location)
                                   for row in rows if row.number in picked], now)
        return [row.number for row in rows if row.number in picked]


def _take_payment(row, state: str, amount: int, entry: payments.Entry, known, paid: dict[int, int]) -> str:
    """What one payment does to its order, checked as :func:`pay_order` describes:
    ``record`` (a new ledger row), ``settle`` (a new row that completes the total, or a
    free order's 0), ``same`` (recorded before: nothing to do)."""
    if O(state) in payments.SHOULD_BE_PAID:
        if known is None:
            raise Conflict(f"order {row.number} is already paid ({format_yuan(row.total_fen)}); nothing recorded")
        payments.check_same(known, entry)  # the payment that completed it, again
        return "same"
    order_target("pay", row.number, O(state))
    due = row.total_fen - paid.get(row.id, 0)
    if amount > due:
        raise InvalidValue("amount", format_yuan(amount), f"is more than the {format_yuan(due)} order {row.number} "
                                                          "still owes")
    if known is not None and amount:
        payments.check_same(known, entry)
        return "same"
    if not amount and due:
        raise InvalidValue("amount", amount, "must be more than 0")
    paid[row.id] = paid.get(row.id, 0) + amount
    return "settle" if amount == due else "record"


def pay_orders(db: Store | Connection, paid_in: list[tuple[str, int, str, str]], *, actor: str,
               note: str | None = None, source: str = "payments") -> list[Order]:
    """Collect payments (order number, amount in fen, method, reference) for approved orders,
    all or none, set-wise; returns each payment's order as it is afterwards.

    Each payment is checked as :func:`pay_order` describes; any refused: with one payment its
    error is raised, with several :class:`InvalidValues` lists every one (``line`` = the
    payment's position from 1) and nothing is written. Ledger rows are written together and the
    orders paid in full settled together: numbers assigned, cards picked per (location,
    product), orders without stock left paid and waiting.
    """
    access.require(actor, "payments.write", f"record payments for orders {access.few(p[0] for p in paid_in)}", db)
    require_own_orders(db, [p[0] for p in paid_in], actor, f"record payments for orders {access.few(p[0] for p in paid_in)}")
    paid_in = list(paid_in)
    now = utc_now()
    refused: list[tuple[int, str, HkopsError]] = []
    parsed = []
    for position, (number, amount, method, reference) in enumerate(paid_in, 1):
        try:
            if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
                raise InvalidValue("amount", amount, "must be a whole number of fen")
            parsed.append((position, str(number or "").strip().upper(), amount, payments.check_method(method),
                           payments.check_reference(reference)))
        except InvalidValue as exc:
            refused.append((position, number, exc))
    with unit_of_work(db) as conn:
        rows = load_order_rows(conn, [p[1] for p in parsed], lock=True)
        known = payments.find_many(conn, [(p[3], p[4]) for p in parsed])
        paid = payments.balances(conn, [row.id for row in rows.values()])
        states = {number: row.state for number, row in rows.items()}
        seen: dict[tuple[str, str], int] = {}
        entries, settle = [], []
        for position, number, amount, method, reference in parsed:
            try:
                row = rows.get(number)
                if row is None:
                    raise NotFound(f"order {number} does not exist")
                if (method, reference) in seen:
                    raise InvalidValue("reference", reference, f"repeats line {seen[method, reference]}")
                seen[method, reference] = position
                entry = payments.Entry(row.id, row.number, payments.COLLECTION, amount, method, reference, note, now)
                outcome = _take_payment(row, states[number], amount, entry, known.get((method, reference)), paid)
                if outcome != "same" and amount:
                    entries.append(entry)
                if outcome == "settle":
                    settle.append(row)
                    states[number] = O.PAID.value
            except HkopsError as exc:
                refused.append((position, number, exc))
        if refused:
            if len(paid_in) == 1:
                raise refused[0][2]
            raise InvalidValues(source, [
                InvalidValue(exc.field, exc.value, exc.reason, line=position) if isinstance(exc, InvalidValue)
                else InvalidValue("order", number, str(exc), line=position)
                for position, number, exc in sorted(refused, key=lambda r: r[0])])
        payments.append(conn, entries, actor=actor, at=now)
        changed = _settle(conn, settle, actor=actor, now=now)
        return [order_from_row(SimpleNamespace(**{**rows[number]._mapping, **changed.get(number, {})}))
                for _, number, *_ in parsed]


def pay_order(db: Store | Connection, number: str, amount_fen: int, *, method: str, reference: str, actor: str,
              note: str | None = None) -> Order:
    """Collect a payment for an approved order. Partial payments leave it approved; the one
    that completes the total moves it on to paid, its number assigned, and allocated a card
    from the selling location in the same transaction (with none left there the order stays
    paid, waiting for stock: :func:`allocate_waiting`). The same (method, reference) again
    returns the order as it is; a fully paid order refuses more money. An order that costs
    nothing is settled with an amount of 0 (nothing enters the ledger)."""
    return pay_orders(db, [(number, amount_fen, method, reference)], actor=actor, note=note)[0]


# ---------------------------------------------------------------- expiry of unpaid orders

_DUE = (select(orders.c.id, orders.c.number, orders.c.state, orders.c.msisdn, orders.c.created_at)
        .where(orders.c.state == O.APPROVED.value, orders.c.created_at <= bindparam("cutoff")).order_by(orders.c.id))
_EXPIRED = (update(orders).where(orders.c.id == bindparam("order_id"), orders.c.state == O.APPROVED.value)
            .values(state=O.EXPIRED.value, reason=bindparam("why"), changed_at=bindparam("now")))


def expire_unpaid(db: Store | Connection, *, actor: str, now: datetime | None = None) -> list[str]:
    """Expire the approved orders placed more than the setting ``order_payment_ttl`` (default 24h)
    before ``now`` and not paid in full: each becomes ``expired`` (final), its number goes back to
    the pool (released on its behalf, so its 一证五号 slot is free again) and what it netted is
    refunded; all audited. Set-wise; returns the expired orders' numbers, oldest first."""
    access.require(actor, "orders.write", "expire unpaid orders", db)
    now = as_utc(now) if now else utc_now()
    with unit_of_work(db) as conn:
        ttl = settings.order_payment_ttl(conn)
        stmt = _DUE.with_for_update(of=orders, skip_locked=True) if conn.dialect.name == "postgresql" else _DUE
        rows = conn.execute(stmt, {"cutoff": now - ttl}).all()
        if not rows:
            return []
        why = f"unpaid for more than {settings.get(conn, 'order_payment_ttl')} (setting order_payment_ttl)"
        conn.execute(_EXPIRED, [{"order_id": row.id, "why": why, "now": now} for row in rows])
        released = set(numbers.release_for_orders(conn, {row.msisdn: row.number for row in rows if row.msisdn},
                                                  actor=actor, now=now, reason="its order expired unpaid"))
        nets = payments.balances(conn, [row.id for row in rows])
        refunded = {row.number: _refund_all(conn, row, "expire", actor=actor) for row in rows if nets.get(row.id)}
        audit.record(conn, actor, [order_event(row.number, "expire", O.APPROVED.value, O.EXPIRED.value, why,
                                               number_released=str(row.msisdn) if str(row.msisdn) in released
                                               else None, refunded_fen=refunded.get(row.number))
                                   for row in rows], now)
        return [row.number for row in rows]


# ---------------------------------------------------------------- shipping and delivery


def _shipment(conn: Connection, order_id: int):
    return conn.execute(select(shipments).where(shipments.c.order_id == order_id)
                        .order_by(shipments.c.id.desc()).limit(1)).first()


def ship_order(db: Store | Connection, number: str, *, courier: str, tracking_no: str, actor: str) -> Order:
    """Hand an allocated order's card to a courier: a shipment is created and the card leaves
    stock for the customer. (courier, tracking_no) is unique; any courier name is accepted."""
    access.require(actor, "orders.write", f"ship order {number}", db)
    require_own_orders(db, [number], actor, f"ship order {number}")
    courier = check_text(courier, "courier", 32)
    tracking = str(tracking_no or "").strip()
    if not 0 < len(tracking) <= 40:
        raise InvalidValue("tracking_no", tracking_no, "a tracking number is required (at most 40 characters)")
    now = utc_now()
    with unit_of_work(db) as conn:
        row = load_order_row(conn, number, lock=True)
        order_target("ship", row.number, O(row.state))
        used = conn.execute(select(orders.c.number).join(shipments, shipments.c.order_id == orders.c.id)
                            .where(shipments.c.courier == courier, shipments.c.tracking_no == tracking)).scalar()
        if used is not None:
            raise Conflict(f"{courier} tracking number {tracking} is already used by order {used}")
        stock.sell_unit(conn, row.iccid, row.location, row.number, actor=actor, now=now)
        conn.execute(shipments.insert().values(order_id=row.id, courier=courier, tracking_no=tracking,
                                               state=ShipmentState.CREATED.value, created_at=now, changed_at=now))
        audit.record(conn, actor, [
            _move(conn, row, "ship", actor=actor, now=now, courier=courier, tracking_no=tracking, iccid=row.iccid),
            Event("shipment", row.number, "create", None, ShipmentState.CREATED.value, None,
                  {"courier": courier, "tracking_no": tracking})], now)
        return order_from_row(load_order_row(conn, row.number))


_SHIPMENT_ACTIONS = {ShipmentState.IN_TRANSIT: "pick_up", ShipmentState.EXCEPTION: "exception",
                     ShipmentState.DELIVERED: "deliver", ShipmentState.RETURNED: "return"}


def _move_shipment(conn: Connection, row, action: str, *, actor: str, now: datetime, reason: str | None) -> Event:
    parcel = _shipment(conn, row.id)
    if parcel is None:
        raise IllegalTransition(f"order {row.number} has no shipment")
    to_state = shipment_target(action, parcel.tracking_no, ShipmentState(parcel.state))
    conn.execute(update(shipments).where(shipments.c.id == parcel.id).values(state=to_state.value, changed_at=now))
    return Event("shipment", row.number, action, parcel.state, to_state.value, reason,
                 {"courier": parcel.courier, "tracking_no": parcel.tracking_no})


def update_shipment(db: Store | Connection, number: str, state: str, *, actor: str,
                    reason: str | None = None) -> Order:
    """Record where an order's parcel is: in_transit, exception, delivered (the order is
    delivered) or returned (the customer refused it: the order is cancelled, see :func:`cancel_order`)."""
    access.require(actor, "orders.write", f"update the shipment of order {number}", db)
    require_own_orders(db, [number], actor, f"update the shipment of order {number}")
    try:
        target = ShipmentState(str(state).strip().lower())
        action = _SHIPMENT_ACTIONS[target]
    except (ValueError, KeyError):
        raise InvalidValue("state", state, "must be in_transit, exception, delivered or returned") from None
    if target == ShipmentState.DELIVERED:
        return deliver_order(db, number, actor=actor)
    if target == ShipmentState.RETURNED:
        return cancel_order(db, number, actor=actor, reason=reason or "the parcel came back")
    now = utc_now()
    with unit_of_work(db) as conn:
        row = load_order_row(conn, number, lock=True)
        if row.state != O.SHIPPED.value:
            raise IllegalTransition(f"cannot update the shipment of order {row.number}: the order is {row.state}")
        audit.record(conn, actor, [_move_shipment(conn, row, action, actor=actor, now=now, reason=reason)], now)
        return order_from_row(row)


def deliver_order(db: Store | Connection, number: str, *, actor: str) -> Order:
    """The customer signed for the parcel: shipment and order delivered."""
    access.require(actor, "orders.write", f"deliver order {number}", db)
    require_own_orders(db, [number], actor, f"deliver order {number}")
    now = utc_now()
    with unit_of_work(db) as conn:
        row = load_order_row(conn, number, lock=True)
        order_target("deliver", row.number, O(row.state))
        audit.record(conn, actor, [_move_shipment(conn, row, "deliver", actor=actor, now=now, reason=None),
                                   _move(conn, row, "deliver", actor=actor, now=now)], now)
        return order_from_row(load_order_row(conn, row.number))


# ---------------------------------------------------------------- activation and after


def _promote_active(conn: Connection, numbers_: list[str] | None, *, actor: str) -> list[str]:
    """Delivered orders whose card the HLR has activated become activated; returns them."""
    stmt = (select(orders.c.id, orders.c.number, orders.c.state, orders.c.iccid)
            .join(sims, sims.c.iccid == orders.c.iccid)
            .where(orders.c.state == O.DELIVERED.value, sims.c.state == SimState.ACTIVE.value)
            .with_for_update(of=orders))
    if numbers_ is not None:
        stmt = stmt.where(orders.c.number.in_(numbers_))
    rows = conn.execute(stmt).all()
    now = utc_now()
    events = [_move(conn, row, "activate", actor=actor, now=now, iccid=row.iccid) for row in rows]
    audit.record(conn, actor, events, now)
    return [row.number for row in rows]


def activate_order(db: Store, number: str, *, actor: str, network: ProvisioningClient | None = None) -> Order:
    """Pair the delivered order's card with its number and subscriber and ask the HLR to
    activate it; with ``network`` the request is sent at once. The order is activated when
    the card is; until the HLR confirms it stays delivered and its card shows the pending
    activation (:func:`sync_activations`, or this again, finishes it)."""
    access.require(actor, "orders.write", f"activate order {number}", db)
    require_own_orders(db, [number], actor, f"activate order {number}")
    with unit_of_work(db) as conn:
        row = load_order_row(conn, number, lock=True)
        order_target("activate", row.number, O(row.state))
        card = cards.get_card(conn, row.iccid)
        if card.state == SimState.ALLOCATED:
            card = cards.pair(conn, row.iccid, str(row.msisdn), row.subscriber_id, actor=actor,
                              reason=f"order {row.number}")
        if card.state == SimState.PAIRED and card.pending_action is None:
            cards.activate(conn, row.iccid, actor=actor, reason=f"order {row.number}")
            audit.record(conn, actor, [order_event(row.number, "activate_requested", row.state, row.state, None,
                                                   iccid=row.iccid)])
    if network is not None:
        cards.sync(db, network, iccids=[row.iccid])
    with unit_of_work(db) as conn:
        _promote_active(conn, [row.number], actor=actor)
        return order_from_row(load_order_row(conn, row.number))


def sync_activations(db: Store, network: ProvisioningClient | None = None, *, actor: str) -> list[str]:
    """Send pending HLR commands (with ``network``), then move every delivered order whose card
    is now active to activated; returns those orders' numbers."""
    access.require(actor, "orders.write", "sync order activations", db)
    if network is not None:
        cards.sync(db, network)
    with unit_of_work(db) as conn:
        return _promote_active(conn, None, actor=actor)


def record_first_topup(db: Store | Connection, number: str, amount_fen: int, *, actor: str) -> Order:
    """The customer's first top-up (首充) on the activated card: at least the plan's amount."""
    access.require(actor, "orders.write", f"record the first top-up of order {number}", db)
    require_own_orders(db, [number], actor, f"record the first top-up of order {number}")
    amount_fen = payments.check_amount(amount_fen)
    now = utc_now()
    with unit_of_work(db) as conn:
        row = load_order_row(conn, number, lock=True)
        order_target("first_topup", row.number, O(row.state))
        needed = catalogue.get_plan(conn, row.plan).first_topup_fen
        if amount_fen < needed:
            raise InvalidValue("amount", format_yuan(amount_fen), f"is below plan {row.plan}'s first top-up of "
                               f"{format_yuan(needed)}")
        audit.record(conn, actor, [_move(conn, row, "first_topup", actor=actor, now=now,
                                         values={"first_topup_fen": amount_fen}, amount_fen=amount_fen)], now)
        return order_from_row(load_order_row(conn, row.number))


def complete_order(db: Store | Connection, number: str, *, actor: str, reason: str | None = None) -> Order:
    """Close an order after its first top-up."""
    access.require(actor, "orders.write", f"complete order {number}", db)
    require_own_orders(db, [number], actor, f"complete order {number}")
    now = utc_now()
    with unit_of_work(db) as conn:
        row = load_order_row(conn, number, lock=True)
        audit.record(conn, actor, [_move(conn, row, "complete", actor=actor, now=now, reason=reason)], now)
        return order_from_row(load_order_row(conn, row.number))


# ---------------------------------------------------------------- cancellation and return


def _refund_all(conn: Connection, row, why: str, *, actor: str, limit: int | None = None) -> int:
    """Refund what the order has netted (at most ``limit``), per payment method; returns the fen refunded."""
    left = limit
    refunded = 0
    for method, net in sorted(payments.net_by_method(conn, row.id).items(), key=lambda item: -item[1]):
        amount = net if left is None else min(net, left)
        if amount <= 0:
            continue
        payments.record(conn, row.id, row.number, payments.REFUND, amount, method=method,
                        reference=f"{row.number}-{why}", actor=actor, note=f"order {why}")
        refunded += amount
        if left is not None:
            left -= amount
    return refunded


def require_own_orders(db: Store | Connection, numbers_: list[str], actor: str, what: str) -> None:
    """Refuse an agent user acting on orders sold outside its own subtree of the agent tree."""
    if access.agent_scope(actor) is None or isinstance(db, Connection):
        return
    with db.read() as conn:
        rows = load_order_rows(conn, [str(n or "").strip().upper() for n in numbers_])
    access.require_agent(db, actor, [row.channel for row in rows.values()], what)  # missing ones: NotFound later


def _may_refund(db: Store | Connection, number: str, why: str, actor: str) -> None:
    """Refuse to ``why`` (cancel, return) an order that would refund money unless ``actor`` may refund."""
    if not access.is_principal(actor) or actor.can("refunds.write") or isinstance(db, Connection):
        return
    with db.read() as conn:
        row = load_order_row(conn, number)
        net = payments.balance(conn, row.id)
    if net > 0:
        access.require(actor, "refunds.write", f"{why} order {row.number}, which refunds {format_yuan(net)}", db)


def _reason(reason: str | None) -> str:
    text_value = " ".join(str(reason or "").split())
    if not text_value:
        raise InvalidValue("reason", reason, "a reason is required")
    return text_value


def cancel_order(db: Store | Connection, number: str, *, actor: str, reason: str) -> Order:
    """Cancel an order before activation, undoing everything done: a shipped card comes back
    into stock (shipment returned), a picked card goes back on the shelf, the number returns to
    the pool, payments are refunded. An activated order must be returned instead."""
    access.require(actor, "orders.write", f"cancel order {number}", db)
    require_own_orders(db, [number], actor, f"cancel order {number}")
    _may_refund(db, number, "cancel", actor)
    reason = _reason(reason)
    now = utc_now()
    with unit_of_work(db) as conn:
        row = load_order_row(conn, number, lock=True)
        order_target("cancel", row.number, O(row.state))
        events, done = [], {}
        if row.iccid:
            card = cards.get_card(conn, row.iccid)
            if card.state not in (SimState.ALLOCATED, SimState.IN_STOCK):
                raise Conflict(f"cannot cancel order {row.number}: its SIM {row.iccid} is {card.state} (paired with "
                               f"the number); activate it and return the order instead")
            if O(row.state) in (O.SHIPPED, O.DELIVERED):
                parcel = _shipment(conn, row.id)
                if parcel is not None and parcel.state != ShipmentState.RETURNED.value:
                    events.append(_move_shipment(conn, row, "return", actor=actor, now=now, reason=reason))
                stock.take_back_unit(conn, row.iccid, row.location, row.number, actor=actor, now=now)
            else:
                stock.unpick_unit(conn, row.iccid, row.number, actor=actor, now=now)
            done["card_back_at"] = row.location
        if row.msisdn and row.state != O.DRAFT.value:
            held = numbers.get_number(conn, str(row.msisdn))
            if held.effective_state(now) in (NumberState.RESERVED, NumberState.ASSIGNED) and held.holder == row.number:
                numbers.release(conn, str(row.msisdn), actor=actor, reason=f"order {row.number} cancelled",
                                order=row.number)
                done["number_released"] = str(row.msisdn)
        done["refunded_fen"] = _refund_all(conn, row, "cancel", actor=actor) or None
        events.append(_move(conn, row, "cancel", actor=actor, now=now, reason=reason, values={"reason": reason},
                            **done))
        audit.record(conn, actor, events, now)
        return order_from_row(load_order_row(conn, row.number))


def return_order(db: Store, number: str, *, actor: str, reason: str, refund_fen: int | None = None,
                 network: ProvisioningClient | None = None) -> Order:
    """Take back an activated order: the card is terminated (HLR record removed, the number
    quarantined) and ``refund_fen`` (default: all it netted) paid back."""
    access.require(actor, "orders.write", f"return order {number}", db)
    require_own_orders(db, [number], actor, f"return order {number}")
    if refund_fen != 0:
        _may_refund(db, number, "return", actor)
    reason = _reason(reason)
    if refund_fen is not None and (isinstance(refund_fen, bool) or not isinstance(refund_fen, int) or refund_fen < 0):
        raise InvalidValue("refund", refund_fen, "must be a whole number of fen, 0 or more")
    now = utc_now()
    with unit_of_work(db) as conn:
        row = load_order_row(conn, number, lock=True)
        order_target("return", row.number, O(row.state))
        net = payments.balance(conn, row.id)
        if refund_fen is not None and refund_fen > net:
            raise InvalidValue("refund", format_yuan(refund_fen), f"is more than the {format_yuan(net)} order "
                               f"{row.number} has netted")
        card = cards.get_card(conn, str(row.msisdn))  # the number's live card (a replacement, if any)
        if card.state != SimState.TERMINATED:
            cards.terminate(conn, card.iccid, actor=actor, reason=f"order {row.number} returned: {reason}")
        refunded = _refund_all(conn, row, "return", actor=actor, limit=refund_fen)
        audit.record(conn, actor, [_move(conn, row, "return", actor=actor, now=now, reason=reason,
                                         values={"reason": reason}, refunded_fen=refunded, iccid=card.iccid)], now)
    if network is not None:
        cards.sync(db, network, iccids=[card.iccid])
    return get_order(db, row.number)


# ---------------------------------------------------------------- reading


def _reader(conn: Connection, actor: str | None, what: str):
    """Check ``orders.read``; for an agent user, a SELECT of the agent ids it may see, else None."""
    require(actor, "orders.read", what)
    from hkops.agents.service import scope_query

    return scope_query(actor)


def _visible(conn: Connection, row, actor: str | None, scope, what: str):
    """``row`` when the reader may see it; an agent user gets one refusal for an order outside
    its subtree and for one that does not exist (so existence does not leak)."""
    if scope is None:
        if row is None:
            raise NotFound(f"{what.removeprefix('see ')} does not exist")
        return row
    if row is None or row.agent_id is None or row.agent_id not in set(conn.execute(scope).scalars()):
        raise out_of_scope(actor, what)
    return row


#: What an actor without ``subscribers.read`` (an analyst) sees instead of a name, contact or address.
HIDDEN = "***"


def _shown(order: Order, actor: str | None) -> Order:
    """The order as ``actor`` may see it: the person's name, contact and address hidden without
    ``subscribers.read`` (the resident ID is masked for everyone)."""
    if sees_personal_data(actor):
        return order
    return replace(order, customer_name=HIDDEN, contact=HIDDEN, ship_address=HIDDEN)


def get_order(db: Store | Connection, number_or_client_id: str, *, actor: str | None = None) -> Order:
    """An order by its number, else by a client order id (NotFound, or Conflict if several channels used it).
    Needs ``orders.read``; an agent user sees only orders of its subtree."""
    with unit_of_work(db) if isinstance(db, Connection) else db.read() as conn:
        value = str(number_or_client_id or "").strip()
        scope = _reader(conn, actor, f"see order {value}")
        row = conn.execute(select(orders).where(orders.c.number == value.upper())).first()
        if row is not None:
            return _shown(order_from_row(_visible(conn, row, actor, scope, f"see order {value}")), actor)
        by_client = select(orders).where(orders.c.client_order_id == value)
        if scope is not None:
            by_client = by_client.where(orders.c.agent_id.in_(scope))
        rows = conn.execute(by_client).all()
        if not rows:
            if scope is not None:
                raise out_of_scope(actor, f"see order {value}")
            raise NotFound(f"no order has number or client order id {value!r}")
        if len(rows) > 1:
            raise Conflict(f"client order id {value!r} is used by orders {', '.join(r.number for r in rows)}; "
                           "give the order number")
        return _shown(order_from_row(rows[0]), actor)


def order_detail(db: Store | Connection, number: str, *, actor: str | None = None) -> dict:
    """The order with its shipment, payments, balance, card and timeline (the audit records of
    the order and, since it was placed, of its number and card). Resident ID masked only.
    Needs ``orders.read``; an agent user sees only orders of its subtree."""
    with unit_of_work(db) if isinstance(db, Connection) else db.read() as conn:
        scope = _reader(conn, actor, f"see order {number}")
        if scope is not None:
            try:
                row = load_order_row(conn, number)
            except NotFound:
                row = None
            row = _visible(conn, row, actor, scope, f"see order {number}")
        else:
            row = load_order_row(conn, number)
        parcel = _shipment(conn, row.id)
        card = cards.get_card(conn, row.iccid) if row.iccid else None
        subjects = [row.number] + [str(s) for s in (row.msisdn, row.iccid) if s]
        timeline = conn.execute(select(audit_log).where(audit_log.c.subject.in_(subjects),
                                                        audit_log.c.at >= row.created_at)
                                .order_by(audit_log.c.id)).mappings().all()
        ledger = payments.list_payments(conn, order=row.number)
        net = payments.balance(conn, row.id)
    return {
        "order": _shown(order_from_row(row), actor).as_dict(),
        "shipment": {k: parcel._mapping[k] for k in ("courier", "tracking_no", "state", "created_at", "changed_at")}
        if parcel else None,
        "payments": [p.as_dict() for p in reversed(ledger)],
        "paid_fen": net,
        "due_fen": row.total_fen - net if row.state not in (O.CANCELLED.value, O.RETURNED.value, O.EXPIRED.value)
        else 0,
        "card": {"iccid": card.iccid, "state": card.state, "network_sync": card.network_sync,
                 "pending_action": card.pending_action} if card else None,
        "timeline": [{**dict(r), "details": json.loads(r["details"]) if r["details"] else None} for r in timeline],
    }


def list_orders(db: Store | Connection, *, state: str | None = None, agent: str | None = None,
                since: datetime | None = None, limit: int = 100, actor: str | None = None) -> list[Order]:
    """Orders, newest first: in ``state``, placed through ``agent`` (its code), created since ``since``.
    Needs ``orders.read``; an agent user gets only the orders of its subtree."""
    stmt = select(orders).order_by(orders.c.id.desc()).limit(limit)
    if state is not None:
        try:
            stmt = stmt.where(orders.c.state == OrderState(str(state).strip().lower()).value)
        except ValueError:
            raise InvalidValue("state", state, f"must be one of {', '.join(s.value for s in OrderState)}") from None
    if agent is not None:
        stmt = stmt.where(orders.c.channel == check_channel(agent))
    if since is not None:
        stmt = stmt.where(orders.c.created_at >= since)
    with unit_of_work(db) if isinstance(db, Connection) else db.read() as conn:
        scope = _reader(conn, actor, "list orders")
        if scope is not None:
            stmt = stmt.where(orders.c.agent_id.in_(scope))
        return [_shown(order_from_row(row), actor) for row in conn.execute(stmt)]


def pipeline_counts(db: Store | Connection, *, actor: str | None = None) -> dict[str, int]:
    """Orders per state, along the pipeline then rejected, cancelled, returned, expired (an agent
    user: of its subtree only)."""
    with unit_of_work(db) if isinstance(db, Connection) else db.read() as conn:
        scope = _reader(conn, actor, "count orders")
        stmt = select(orders.c.state, func.count()).group_by(orders.c.state)
        if scope is not None:
            stmt = stmt.where(orders.c.agent_id.in_(scope))
        found = dict(conn.execute(stmt).all())
    order = list(PIPELINE) + [O.REJECTED, O.CANCELLED, O.RETURNED, O.EXPIRED]
    return {state.value: found.get(state.value, 0) for state in order}
