"""Serial stock: locations and the append-only ledger of moves.

:func:`move_units` is the one way a card changes place: it checks, set-wise, that every
card is where the move says it comes from, appends one ledger row per card and updates
``sims.location``, all in the caller's transaction. Everything else in stock (receipts,
transfers, sales, returns, scrapping, counts) is built on it.

Documents are numbered per kind: TR000001 (transfer), RT (return), SX (scrap), CT (count).
Each document writes one audit event (entity ``stock``); the ledger rows are the per-card
record. Order-facing moves of single cards (:func:`pick_unit`, :func:`sell_unit`...) also
write an audit event per card (entity ``sim``).
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from itertools import repeat
from pathlib import Path
from typing import Callable, Iterable

from sqlalchemy import (Connection, String, any_, bindparam, column, delete, func, literal, or_, select, table, text,
                        union_all)

from hkops import audit
from hkops.audit import Event, audit_log
from hkops.cards import placement
from hkops.cards.model import SimState, target_state
from hkops.cards.tables import sim_batches, sims
from hkops.catalogue.tables import sim_products
from hkops.errors import Conflict, IllegalTransition, InvalidFile, InvalidValue, InvalidValues, NotFound
from hkops.ids import parse_iccid
from hkops.security.access import out_of_scope, require
from hkops.stock.model import CUSTOMER, MISSING, SCRAP, VENDOR, VIRTUAL, LocationKind, MoveKind
from hkops.stock.tables import stock_counts, stock_locations, stock_minimums, stock_moves
from hkops.store import bulk
from hkops.store.engine import Store, unit_of_work
from hkops.textfiles import read_text
from hkops.timeutil import SHANGHAI, utc_now
from hkops.security import access

Progress = Callable[[int], None]
_LEDGER_COLUMNS = ("iccid", "from_location", "to_location", "kind", "document", "actor", "at")
_CHUNK = 900  # SQLite's bound-parameter limit is 999 on older builds
_PICK_TRIES = 5
IN_STOCK, ALLOCATED = SimState.IN_STOCK.value, SimState.ALLOCATED.value


@dataclass(frozen=True)
class Transfer:
    """A transfer (or return, or scrapping) document: its number and how many cards moved."""

    document: str
    count: int
    from_location: str
    to_location: str
    first_iccid: str
    last_iccid: str


@dataclass(frozen=True)
class CountResult:
    """A stock count: cards the system expected, cards counted, and the variances.

    ``number`` is None for a count that was not applied (a dry run).
    """

    number: str | None
    location: str
    expected: int
    counted: int
    missing: list[str]
    unexpected: list[str]


@dataclass(frozen=True)
class Alert:
    """A product running low at a location, with the quantity to reorder."""

    location: str
    product: str
    on_hand: int
    minimum: int
    sold_last_days: int
    suggested_reorder: int


def _chunks(values: list, size: int = _CHUNK):
    for start in range(0, len(values), size):
        yield values[start:start + size]


_STAGED = table("stock_staged_iccids", column("iccid"))


def matching(conn: Connection, column, values: list[str]) -> list:
    """WHERE clauses matching ``column`` against ``values``, without one bound value per card.

    PostgreSQL: one array parameter. SQLite: a plain IN list for up to 900 values; more
    are staged in a temporary table, which the next call refills (use the clauses before).
    """
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY  # PostgreSQL only: commands start without its dialect

        return [column == any_(bindparam(None, values, type_=ARRAY(String)))] if values else []
    if len(values) <= _CHUNK:
        return [column.in_(values)] if values else []
    conn.exec_driver_sql(f"CREATE TEMP TABLE IF NOT EXISTS {_STAGED.name} (iccid TEXT PRIMARY KEY)")
    conn.exec_driver_sql(f"DELETE FROM {_STAGED.name}")
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.executemany(f"INSERT OR IGNORE INTO {_STAGED.name} (iccid) VALUES (?)", ((v,) for v in values))
    finally:
        cursor.close()
    return [column.in_(select(_STAGED.c.iccid))]


def _read(db: Store | Connection):
    return db.read() if isinstance(db, Store) else nullcontext(db)


# ---------------------------------------------------------------- locations


def ensure_virtual_locations(conn: Connection) -> None:
    """Create the virtual locations (VENDOR, CUSTOMER, SCRAP, MISSING) if missing."""
    have = set(conn.execute(select(stock_locations.c.code).where(stock_locations.c.code.in_(list(VIRTUAL)))).scalars())
    now = utc_now()
    rows = [{"code": code, "name": name, "kind": LocationKind.VIRTUAL.value, "province": None, "agent_id": None,
             "created_at": now} for code, name in VIRTUAL.items() if code not in have]
    if rows:
        conn.execute(stock_locations.insert(), rows)


def list_locations(db: Store | Connection, *, actor: str | None = None) -> list:
    """Every location (rows with code, name, kind), by code (an agent user: those of its subtree)."""
    require(actor, "stock.read", "see stock locations")
    with _read(db) as conn:
        stmt = select(stock_locations.c.code, stock_locations.c.name, stock_locations.c.kind)
        scope = _scope(conn, actor)
        if scope is not None:
            stmt = stmt.where(stock_locations.c.code.in_(scope))
        return conn.execute(stmt.order_by(stock_locations.c.code)).all()


def _scope(conn: Connection, actor: str | None) -> set[str] | None:
    """The stock locations an agent user may see (its subtree's); None for anyone else."""
    from hkops.agents.service import scope_locations

    return scope_locations(conn, actor)


def _scoped_location(conn: Connection, code: str, actor: str | None, scope: set[str] | None, what: str) -> str:
    """The location ``code`` names; for an agent user, refused (one message whether it exists
    or not) unless it is one of its subtree's."""
    if scope is None:
        return _location(conn, code)[0]
    try:
        found = _location(conn, code)[0]
    except NotFound:
        found = None
    if found not in scope:
        raise out_of_scope(actor, what)
    return found


def _code(code: str) -> str:
    value = (code or "").strip().upper()
    if not value or len(value) > 32 or not all(c.isalnum() or c in "-_" for c in value):
        raise InvalidValue("location", code, "must be 1 to 32 letters, digits, '-' or '_'")
    return value


def add_location(db: Store | Connection, code: str, name: str, kind: str = "warehouse", *, actor: str,
                 province: str | None = None, agent_id: int | None = None) -> str:
    """Register a stock location (a warehouse, or an agent's own stock); returns its code."""
    access.require(actor, "stock.write", f"add location {code}", db)
    code = _code(code)
    if code in VIRTUAL:
        raise InvalidValue("location", code, "is a virtual location's name")
    try:
        kind = LocationKind(kind)
    except ValueError:
        raise InvalidValue("kind", kind, "must be warehouse or agent") from None
    if kind == LocationKind.VIRTUAL:
        raise InvalidValue("kind", kind.value, "virtual locations are built in")
    name = " ".join((name or "").split())
    if not 0 < len(name) <= 64:
        raise InvalidValue("name", name, "must be 1 to 64 characters")
    with unit_of_work(db) as conn:
        ensure_virtual_locations(conn)
        if conn.execute(select(stock_locations.c.code).where(stock_locations.c.code == code)).first():
            raise Conflict(f"location {code} exists already")
        conn.execute(stock_locations.insert().values(code=code, name=name, kind=kind.value, province=province,
                                                     agent_id=agent_id, created_at=utc_now()))
        audit.record(conn, actor, [Event("location", code, "create", None, kind.value, None,
                                         {"name": name, "province": province, "agent_id": agent_id})])
    return code


def location_kind(conn: Connection, code: str) -> LocationKind:
    """The kind of location ``code``; NotFound if there is none."""
    kind = conn.execute(select(stock_locations.c.kind).where(stock_locations.c.code == code)).scalar()
    if kind is None:
        if code in VIRTUAL:
            ensure_virtual_locations(conn)
            return LocationKind.VIRTUAL
        raise NotFound(f"location {code!r} does not exist")
    return LocationKind(kind)


def _location(conn: Connection, code: str):
    """The location ``code`` names, in any letter case: (code, kind); NotFound if none."""
    text_value = str(code or "").strip()
    found = select(stock_locations.c.code, stock_locations.c.kind)
    row = conn.execute(found.where(stock_locations.c.code == text_value)).first()
    if row is None:
        row = conn.execute(found.where(func.upper(stock_locations.c.code) == text_value.upper())).first()
    if row is None:
        if text_value.upper() in VIRTUAL:
            ensure_virtual_locations(conn)
            return text_value.upper(), LocationKind.VIRTUAL.value
        raise NotFound(f"location {code!r} does not exist")
    return row


def _stock_location(conn: Connection, code: str, field: str = "location") -> str:
    """The code of the warehouse or agent location ``code`` names (in any letter case)."""
    found, kind = _location(conn, code)
    if kind == LocationKind.VIRTUAL.value:
        raise InvalidValue(field, code, "is a virtual location; stock is held at a warehouse or an agent location")
    return found


def _product(value: str | None) -> str | None:
    return None if value is None else str(value).strip().upper()


def receiving_location(conn: Connection, text_value: str, *, actor: str) -> str:
    """The stock location cards received "at ``text_value``" go to.

    A known location matches whatever its letter case; unknown text is registered as a new
    warehouse under exactly that code (older imports named locations freely). Virtual
    locations cannot receive.
    """
    value = (text_value or "").strip()
    if not 0 < len(value) <= 32:
        raise InvalidValue("location", text_value, "must be 1 to 32 characters (a stock location code)")
    ensure_virtual_locations(conn)
    row = conn.execute(select(stock_locations.c.code, stock_locations.c.kind)
                       .where(func.upper(stock_locations.c.code) == value.upper())).first()
    if row is None:
        conn.execute(stock_locations.insert().values(code=value, name=value, kind=LocationKind.WAREHOUSE.value,
                                                     created_at=utc_now()))
        audit.record(conn, actor, [Event("location", value, "create", None, LocationKind.WAREHOUSE.value,
                                         "registered by a SIM import naming it", {"name": value})])
        return value
    if row.kind == LocationKind.VIRTUAL.value:
        raise InvalidValue("location", value, "is a virtual location; cards are received into a warehouse")
    return row.code


def record_receipt(conn: Connection, batch_id: int, location: str, document: str, *, actor: str,
                   now: datetime | None = None) -> None:
    """Ledger rows VENDOR -> ``location`` for the cards of a batch just received there."""
    ensure_virtual_locations(conn)
    rows = select(sims.c.iccid, literal(VENDOR), literal(location), literal(MoveKind.RECEIPT.value), literal(document),
                  literal(actor), literal(now or utc_now(), stock_moves.c.at.type)).where(sims.c.batch_id == batch_id)
    conn.execute(stock_moves.insert().from_select(_LEDGER_COLUMNS, rows))


def read_iccid_file(path: str | Path) -> list[str]:
    """ICCIDs from a text file, one a line (or the first column of a CSV); blank lines,
    ``#`` comments and an ``iccid`` header are skipped. Bad lines: InvalidFile listing each."""
    lines = read_text(path).splitlines()
    result, problems = [], []
    for number, line in enumerate(lines, start=1):
        value = line.split(",")[0].strip().strip('"')
        if not value or value.startswith("#") or value.lower() == "iccid":
            continue
        try:
            result.append(parse_iccid(value))
        except InvalidValue as problem:
            problems.append(InvalidValue(problem.field, problem.value, problem.reason, line=number))
    if problems:
        raise InvalidFile(str(path), problems)
    if not result:
        raise InvalidValue("file", str(path), "holds no ICCID")
    return result


# ---------------------------------------------------------------- the ledger


def _normalise(iccids: Iterable[str]) -> tuple[list[str], list[InvalidValue]]:
    """ICCIDs as stored (digits only), and the ones that are not ICCIDs at all."""
    result, problems = [], []
    for value in iccids:
        value = str(value).strip()
        if not (value.isdigit() and len(value) in (19, 20)):
            try:
                value = parse_iccid(value)
            except InvalidValue as problem:
                problems.append(problem)
                continue
        result.append(value)
    return result, problems


def move_units(conn: Connection, iccids: list[str], from_location: str, to_location: str, kind: MoveKind | str,
               document: str, *, actor: str, now: datetime | None = None, check_states: set[str] | None = None,
               source: str = "stock move", progress: Progress | None = None) -> int:
    """Move cards from one location to another in the caller's transaction; all or none.

    Every card must exist, be at ``from_location`` (and, when given, in one of
    ``check_states``), and appear once; otherwise :class:`InvalidValues` lists every card
    that cannot move and nothing moves. Appends one ledger row per card. Returns the count.
    """
    kind = MoveKind(kind)
    now = now or utc_now()
    iccids, problems = _normalise(iccids)
    if not iccids and not problems:
        raise InvalidValue("cards", "", "no cards to move")
    if from_location == to_location:
        raise InvalidValue("to", to_location, "is the location the cards are already at")
    for code in (from_location, to_location):
        location_kind(conn, code)
    found: dict[str, tuple[str | None, str]] = {}
    chosen = matching(conn, sims.c.iccid, iccids)
    for clause in chosen:
        found.update({r.iccid: (r.location, r.state) for r in conn.execute(
            select(sims.c.iccid, sims.c.location, sims.c.state).where(clause))})
    seen: set[str] = set()
    for iccid in iccids:
        if iccid in seen:
            problems.append(InvalidValue("iccid", iccid, "is listed twice"))
            continue
        seen.add(iccid)
        where = found.get(iccid)
        if where is None:
            try:
                parse_iccid(iccid)
                problems.append(InvalidValue("iccid", iccid, "is not in the inventory"))
            except InvalidValue as problem:
                problems.append(problem)
        elif where[0] != from_location:
            problems.append(InvalidValue("iccid", iccid, f"is not at {from_location} (it is at {where[0] or 'no location'})"))
        elif check_states is not None and where[1] not in check_states:
            problems.append(InvalidValue("iccid", iccid, f"is {where[1]}; this move needs a card that is "
                                         f"{' or '.join(sorted(check_states))}"))
    if problems:
        raise InvalidValues(source, problems)
    bulk.insert_rows(conn, stock_moves, _LEDGER_COLUMNS,
                     zip(iccids, repeat(from_location), repeat(to_location), repeat(kind.value), repeat(document),
                         repeat(actor), repeat(bulk.driver_value(conn, stock_moves.c.at, now))))
    done = 0
    for clause in chosen:
        moved = placement.relocate(conn, clause, from_location, to_location, now)
        done += moved
        if progress:
            progress(moved)
    if done != len(iccids):  # only a concurrent move between the check and the update gets here
        raise Conflict(f"{source}: some cards moved meanwhile; nothing moved, try again")
    return len(iccids)


def next_number(conn: Connection, prefix: str, column=None) -> str:
    """The next document number ``<prefix>000001``...; ``column`` holds the numbers given so far
    (default: the audit trail's subjects of stock documents)."""
    if conn.dialect.name == "postgresql":  # two writers must not take the same number
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"hkops-number-{prefix}"})
    if column is None:
        query = select(func.max(audit_log.c.subject)).where(audit_log.c.entity == "stock")
        column = audit_log.c.subject
    else:
        query = select(func.max(column))
    last = conn.execute(query.where(column >= f"{prefix}000000", column <= f"{prefix}999999",
                                    func.length(column) == len(prefix) + 6)).scalar()
    return f"{prefix}{int(last[len(prefix):]) + 1 if last else 1:06d}"


def _document_event(document: str, action: str, reason: str | None, from_location: str, to_location: str,
                    iccids: list[str], **details) -> Event:
    return Event("stock", document, action, None, None, reason,
                 {"from": from_location, "to": to_location, "count": len(iccids), "first_iccid": min(iccids),
                  "last_iccid": max(iccids), **details})


# ---------------------------------------------------------------- order-facing moves of one card


def pick_unit(conn: Connection, location: str, product: str, order_number: str, *, actor: str,
              now: datetime | None = None) -> str:
    """An in_stock card of ``product`` at ``location`` becomes allocated to the order; returns its ICCID.

    The lowest ICCID first (see :func:`pick_units`). Conflict naming the location and the
    product when none is left.
    """
    picked = pick_units(conn, location, product, [order_number], actor=actor, now=now)
    if not picked:
        raise Conflict(f"no {_product(product)} card is in stock at {location} for order {order_number}")
    return picked[0]


def pick_units(conn: Connection, location: str, product: str, order_numbers: list[str], *, actor: str,
               now: datetime | None = None) -> list[str]:
    """In_stock cards of ``product`` at ``location`` become allocated, one to each order in
    turn, lowest ICCIDs first; returns them (fewer than the orders when stock runs out).

    Safe for concurrent pickers: on PostgreSQL candidate rows are locked with SKIP LOCKED,
    and the update only takes cards still in stock there (a card taken meanwhile is replaced).
    """
    now = now or utc_now()
    location, product = _stock_location(conn, location), _product(product)
    candidates = _pick_candidates(conn.dialect.name == "postgresql")
    taken: list[str] = []
    for _ in range(_PICK_TRIES):
        wanted = len(order_numbers) - len(taken)
        if wanted <= 0:
            break
        found = list(conn.execute(candidates, {"location": location, "product": product, "wanted": wanted}).scalars())
        for chunk in _chunks(found):
            taken += placement.allocate_in_stock(conn, chunk, location, now)
        if len(found) < wanted:
            break  # nothing more in stock
    taken.sort()
    audit.record(conn, actor, [Event("sim", iccid, "allocate", IN_STOCK, ALLOCATED, None,
                                     {"order": order, "location": location, "product": product})
                               for iccid, order in zip(taken, order_numbers)], now)
    return taken


@cache
def _pick_candidates(lock: bool):
    """The statement finding the lowest in-stock cards of a product at a location (built once)."""
    stmt = (select(sims.c.iccid).join(sim_batches, sims.c.batch_id == sim_batches.c.id)
            .where(sims.c.state == IN_STOCK, sims.c.location == bindparam("location"),
                   sim_batches.c.product == bindparam("product"))
            .order_by(sims.c.iccid).limit(bindparam("wanted")))
    return stmt.with_for_update(of=sims, skip_locked=True) if lock else stmt


def _card_row(conn: Connection, iccid: str):
    iccid = parse_iccid(iccid)
    row = conn.execute(select(sims.c.iccid, sims.c.state, sims.c.location).where(sims.c.iccid == iccid)).first()
    if row is None:
        raise NotFound(f"SIM {iccid} is not in the inventory")
    return row


def unpick_unit(conn: Connection, iccid: str, order_number: str, *, actor: str, now: datetime | None = None) -> None:
    """An allocated card goes back to in_stock where it is (the order no longer needs it)."""
    now = now or utc_now()
    card = _card_row(conn, iccid)
    if not placement.unallocate(conn, card.iccid, now):
        raise IllegalTransition(f"cannot put SIM {card.iccid} back in stock for order {order_number}: "
                                f"it is {card.state}; only an allocated card can go back")
    audit.record(conn, actor, [Event("sim", card.iccid, "unallocate", ALLOCATED, IN_STOCK, None,
                                     {"order": order_number, "location": card.location})], now)


#: States of a card that may leave with its order: picked, perhaps paired or activated at the counter.
SELLABLE = frozenset({ALLOCATED, SimState.PAIRED.value, SimState.ACTIVE.value})


def sell_unit(conn: Connection, iccid: str, from_location: str, order_number: str, *, actor: str,
              now: datetime | None = None) -> None:
    """The card of an order leaves ``from_location`` for the customer (ledger kind sale)."""
    now = now or utc_now()
    card = _card_row(conn, iccid)
    from_location = _stock_location(conn, from_location, "from")
    move_units(conn, [card.iccid], from_location, CUSTOMER, MoveKind.SALE, order_number, actor=actor, now=now,
               check_states=set(SELLABLE), source=f"sale of order {order_number}")
    audit.record(conn, actor, [Event("sim", card.iccid, "sell", card.state, card.state, None,
                                     {"order": order_number, "from": from_location, "to": CUSTOMER})], now)


def take_back_unit(conn: Connection, iccid: str, to_location: str, order_number: str, *, actor: str,
                   now: datetime | None = None) -> None:
    """A sold card that was never activated comes back from the customer into stock at ``to_location``."""
    now = now or utc_now()
    card = _card_row(conn, iccid)
    to_location = _stock_location(conn, to_location, "to")
    move_units(conn, [card.iccid], CUSTOMER, to_location, MoveKind.RETURN, order_number, actor=actor, now=now,
               check_states={ALLOCATED, IN_STOCK}, source=f"return of order {order_number}")
    placement.back_in_stock(conn, card.iccid, now)
    audit.record(conn, actor, [Event("sim", card.iccid, "take_back", card.state, IN_STOCK, None,
                                     {"order": order_number, "from": CUSTOMER, "to": to_location})], now)


# ---------------------------------------------------------------- cards handed over at the counter


def shelf_of(conn: Connection, iccids: list[str]) -> dict[str, str]:
    """The stock location (warehouse or agent, not virtual) of each of these cards that is on
    a shelf; cards at no location or at a virtual one (sold, scrapped, missing) are left out."""
    virtual = set(_virtual_codes(conn))
    found: dict[str, str] = {}
    for clause in matching(conn, sims.c.iccid, _normalise(iccids)[0]):
        found.update({r.iccid: r.location for r in conn.execute(select(sims.c.iccid, sims.c.location).where(clause))
                      if r.location is not None and r.location not in virtual})
    return found


def hand_over(conn: Connection, iccids: list[str], *, actor: str, reason: str | None = None,
              now: datetime | None = None) -> list[str]:
    """Cards given to a customer at the counter (a walk-in pairing, a replacement card) leave
    their stock location for CUSTOMER (ledger kind sale), one document SL000001... per
    location, set-wise, in the caller's transaction. Cards not on a shelf (:func:`shelf_of`)
    never entered the ledger or left it already and are left as they are. Returns the documents."""
    now = now or utc_now()
    by_place: dict[str, list[str]] = {}
    for iccid, place in shelf_of(conn, iccids).items():
        by_place.setdefault(place, []).append(iccid)
    documents = []
    for place, cards in sorted(by_place.items()):
        document = next_number(conn, "SL")
        move_units(conn, cards, place, CUSTOMER, MoveKind.SALE, document, actor=actor, now=now,
                   source=f"hand-over at {place}")
        audit.record(conn, actor, [_document_event(document, "hand_over", reason, place, CUSTOMER, cards)], now)
        documents.append(document)
    return documents


# ---------------------------------------------------------------- documents


def _cards_for_transfer(conn: Connection, from_location: str, iccids, first, last, count, product) -> list[str]:
    given = [iccids is not None, first is not None or last is not None, count is not None]
    if sum(given) != 1:
        raise InvalidValue("cards", "", "give exactly one of: ICCIDs, a first/last range, or a count with a product")
    if iccids is not None:
        return list(iccids)
    at_source = (sims.c.location == from_location, sims.c.state == IN_STOCK)
    if count is None:
        if first is None or last is None:
            raise InvalidValue("range", f"{first or ''}..{last or ''}", "needs both a first and a last ICCID")
        first, last = parse_iccid(first, "first"), parse_iccid(last, "last")
        if first > last:
            raise InvalidValue("range", f"{first}..{last}", "the first ICCID is after the last")
        found = list(conn.execute(select(sims.c.iccid).where(*at_source, sims.c.iccid.between(first, last))
                                  .order_by(sims.c.iccid)).scalars())
        if not found:
            raise InvalidValue("range", f"{first}..{last}", f"no card in stock at {from_location} in this range")
        return found
    if not isinstance(count, int) or count < 1:
        raise InvalidValue("count", count, "must be a whole number of cards, 1 or more")
    if not product:
        raise InvalidValue("product", product, "a count of cards needs the product to take")
    found = list(conn.execute(select(sims.c.iccid).join(sim_batches, sims.c.batch_id == sim_batches.c.id)
                              .where(*at_source, sim_batches.c.product == product)
                              .order_by(sims.c.iccid).limit(count)).scalars())
    if len(found) < count:
        raise InvalidValue("count", count, f"only {len(found)} {product} card(s) are in stock at {from_location}")
    return found


def transfer(db: Store | Connection, from_location: str, to_location: str, *, iccids: list[str] | None = None,
             first: str | None = None, last: str | None = None, count: int | None = None,
             product: str | None = None, actor: str, reason: str | None = None,
             progress: Progress | None = None) -> Transfer:
    """Move in_stock cards between stock locations as one transfer document (TR000001...).

    The cards: ``iccids``; or the in_stock cards at the source with ICCIDs from ``first``
    to ``last`` inclusive; or ``count`` in_stock cards of ``product``, lowest ICCIDs first.
    Listed cards that are not at the source or not in stock refuse the whole transfer.
    """
    access.require(actor, "stock.write", f"transfer stock from {from_location} to {to_location}", db)
    access.require_agent(db, actor, [from_location], f"transfer stock from {from_location}", locations=True)
    with unit_of_work(db) as conn:
        from_location = _stock_location(conn, from_location, "from")
        to_location = _stock_location(conn, to_location, "to")
        cards = _cards_for_transfer(conn, from_location, iccids, first, last, count, _product(product))
        document = next_number(conn, "TR")
        now = utc_now()
        move_units(conn, cards, from_location, to_location, MoveKind.TRANSFER, document, actor=actor, now=now,
                   check_states={IN_STOCK}, source=f"transfer {from_location} -> {to_location}", progress=progress)
        cards, _ = _normalise(cards)
        audit.record(conn, actor, [_document_event(document, "transfer", reason, from_location, to_location, cards)],
                     now)
    return Transfer(document, len(cards), from_location, to_location, min(cards), max(cards))


def return_units(db: Store | Connection, iccids: list[str], from_location: str, to_location: str, *, actor: str,
                 reason: str | None = None) -> Transfer:
    """An agent returns in_stock cards to a warehouse (ledger kind return, document RT000001...)."""
    access.require(actor, "stock.write", f"return stock from {from_location}", db)
    access.require_agent(db, actor, [from_location], f"return stock from {from_location}", locations=True)
    with unit_of_work(db) as conn:
        from_location = _stock_location(conn, from_location, "from")
        to_location = _stock_location(conn, to_location, "to")
        if location_kind(conn, to_location) != LocationKind.WAREHOUSE:
            raise InvalidValue("to", to_location, "is not a warehouse; stock is returned to a warehouse")
        document = next_number(conn, "RT")
        now = utc_now()
        move_units(conn, iccids, from_location, to_location, MoveKind.RETURN, document, actor=actor, now=now,
                   check_states={IN_STOCK}, source=f"return {from_location} -> {to_location}")
        cards, _ = _normalise(iccids)
        audit.record(conn, actor, [_document_event(document, "return", reason, from_location, to_location, cards)],
                     now)
    return Transfer(document, len(cards), from_location, to_location, min(cards), max(cards))


def scrap(db: Store | Connection, iccids: list[str], location: str, *, actor: str, reason: str) -> Transfer:
    """Faulty cards are marked faulty, destroyed and moved to SCRAP (document SX000001...)."""
    access.require(actor, "stock.write", f"scrap stock at {location}", db)
    access.require_agent(db, actor, [location], f"scrap stock at {location}", locations=True)
    reason = " ".join((reason or "").split())
    if not reason:
        raise InvalidValue("reason", reason, "say why the cards are scrapped")
    with unit_of_work(db) as conn:
        location = _stock_location(conn, location)
        cards, problems = _normalise(iccids)
        states = {}
        for clause in matching(conn, sims.c.iccid, cards):
            states.update(conn.execute(select(sims.c.iccid, sims.c.state).where(clause)).all())
        for iccid in cards:
            if iccid not in states:
                problems.append(InvalidValue("iccid", iccid, "is not in the inventory"))
            else:
                try:
                    target_state("destroy", iccid, target_state("mark_faulty", iccid, SimState(states[iccid])))
                except IllegalTransition as refused:
                    problems.append(InvalidValue("iccid", iccid, str(refused)))
        if problems:
            raise InvalidValues(f"scrap at {location}", problems)
        document = next_number(conn, "SX")
        now = utc_now()
        move_units(conn, cards, location, SCRAP, MoveKind.SCRAP, document, actor=actor, now=now,
                   source=f"scrap at {location}")
        for clause in matching(conn, sims.c.iccid, cards):
            placement.destroy(conn, clause, now)
        events = [_document_event(document, "scrap", reason, location, SCRAP, cards)]
        for iccid in cards:
            events += [Event("sim", iccid, "mark_faulty", states[iccid], SimState.FAULTY.value, reason, {"document": document}),
                       Event("sim", iccid, "destroy", SimState.FAULTY.value, SimState.DESTROYED.value, reason,
                             {"document": document})]
        audit.record(conn, actor, events, now)
    return Transfer(document, len(cards), location, SCRAP, min(cards), max(cards))


def count(db: Store | Connection, location: str, counted_iccids: list[str], *, actor: str,
          apply: bool = True) -> CountResult:
    """A stock count at ``location``: cards not found move to MISSING, cards found that the
    system had elsewhere move here (ledger kind count); the count and its variances are kept
    (number CT000001...). With ``apply=False`` nothing is written.
    """
    if apply:
        access.require(actor, "stock.write", f"apply a stock count at {location}", db)
        access.require_agent(db, actor, [location], f"apply a stock count at {location}", locations=True)
    with unit_of_work(db) as conn:
        location = _stock_location(conn, location)
        counted, problems = _normalise(counted_iccids)
        counted = list(dict.fromkeys(counted))  # a card scanned twice is counted once
        expected = set(conn.execute(select(sims.c.iccid).where(sims.c.location == location)).scalars())
        elsewhere: dict[str, str | None] = {}
        extra = [i for i in counted if i not in expected]
        for clause in matching(conn, sims.c.iccid, extra):
            elsewhere.update(conn.execute(select(sims.c.iccid, sims.c.location).where(clause)).all())
        problems += [InvalidValue("iccid", i, "is not in the inventory") for i in extra if i not in elsewhere]
        if problems:
            raise InvalidValues(f"count at {location}", problems)
        counted_set = set(counted)
        missing = sorted(expected - counted_set)
        unexpected = sorted(extra)
        if not apply:
            return CountResult(None, location, len(expected), len(counted), missing, unexpected)
        number = next_number(conn, "CT", stock_counts.c.number)
        now = utc_now()
        if missing:
            move_units(conn, missing, location, MISSING, MoveKind.COUNT, number, actor=actor, now=now,
                       source=f"count {number}")
        by_place: dict[str, list[str]] = {}
        for iccid in unexpected:  # cards never placed in the ledger come from VENDOR
            by_place.setdefault(elsewhere[iccid] or VENDOR, []).append(iccid)
        for place, cards in sorted(by_place.items()):
            if place == VENDOR:
                for clause in matching(conn, sims.c.iccid, cards):
                    placement.place_unlocated(conn, clause, VENDOR)
            move_units(conn, cards, place, location, MoveKind.COUNT, number, actor=actor, now=now,
                       source=f"count {number}")
        conn.execute(stock_counts.insert().values(
            number=number, location=location, expected=len(expected), counted=len(counted), missing=len(missing),
            unexpected=len(unexpected), variances=json.dumps({"missing": missing, "unexpected": unexpected}),
            at=now, actor=actor))
        audit.record(conn, actor, [Event("stock", number, "count", None, None, None,
                                         {"location": location, "expected": len(expected), "counted": len(counted),
                                          "missing": len(missing), "unexpected": len(unexpected)})], now)
    return CountResult(number, location, len(expected), len(counted), missing, unexpected)


# ---------------------------------------------------------------- figures


def _virtual_codes(conn: Connection) -> list[str]:
    return sorted(set(VIRTUAL) | set(conn.execute(select(stock_locations.c.code)
                                                  .where(stock_locations.c.kind == LocationKind.VIRTUAL.value)).scalars()))


def on_hand(db: Store | Connection, *, location: str | None = None, product: str | None = None,
            actor: str | None = None) -> list[dict]:
    """Cards on hand per location and product, derived from the ledger (in minus out).

    Virtual locations are left out; ``product`` is None for cards received without one.
    Allocated cards still count: they are on the shelf until their order ships.
    Needs ``stock.read``; an agent user sees only its subtree's locations.
    """
    require(actor, "stock.read", "see stock on hand")
    with _read(db) as conn:
        scope = _scope(conn, actor)
        location = None if location is None else _scoped_location(conn, location, actor, scope,
                                                                   f"see stock at {location}")
        virtual = _virtual_codes(conn)
        arrivals = select(stock_moves.c.to_location.label("location"), stock_moves.c.iccid, literal(1).label("delta"))
        departures = select(stock_moves.c.from_location.label("location"), stock_moves.c.iccid,
                            literal(-1).label("delta"))
        if location is not None:
            arrivals = arrivals.where(stock_moves.c.to_location == location)
            departures = departures.where(stock_moves.c.from_location == location)
        moves = union_all(arrivals, departures).subquery()
        query = (select(moves.c.location, sim_batches.c.product, func.sum(moves.c.delta).label("quantity"))
                 .select_from(moves.join(sims, sims.c.iccid == moves.c.iccid)
                              .join(sim_batches, sims.c.batch_id == sim_batches.c.id))
                 .where(moves.c.location.not_in(virtual))
                 .group_by(moves.c.location, sim_batches.c.product)
                 .having(func.sum(moves.c.delta) != 0))
        if product is not None:
            query = query.where(sim_batches.c.product == _product(product))
        if scope is not None:
            query = query.where(moves.c.location.in_(scope))
        rows = [{"location": r.location, "product": r.product, "quantity": int(r.quantity)}
                for r in conn.execute(query)]
    return sorted(rows, key=lambda r: (r["location"], r["product"] or ""))


def ledger(db: Store | Connection, *, location: str | None = None, iccid: str | None = None,
           document: str | None = None, limit: int = 200, actor: str | None = None) -> list[dict]:
    """Ledger rows, newest first, filtered by location (either end), card or document.
    Needs ``stock.read``; an agent user sees only moves into or out of its subtree's locations."""
    require(actor, "stock.read", "see the stock ledger")
    query = select(stock_moves).order_by(stock_moves.c.id.desc()).limit(limit)
    if iccid is not None:
        query = query.where(stock_moves.c.iccid == parse_iccid(iccid))
    if document is not None:
        query = query.where(stock_moves.c.document == str(document).strip())
    with _read(db) as conn:
        scope = _scope(conn, actor)
        if scope is not None:
            query = query.where(or_(stock_moves.c.from_location.in_(scope), stock_moves.c.to_location.in_(scope)))
        if location is not None:
            location = _scoped_location(conn, location, actor, scope, f"see the ledger of {location}")
            query = query.where(or_(stock_moves.c.from_location == location, stock_moves.c.to_location == location))
        return [dict(r) for r in conn.execute(query).mappings()]


def set_minimum(db: Store | Connection, location: str, product: str, minimum: int, *, actor: str) -> None:
    """The low-stock threshold of ``product`` at ``location`` (0 removes it)."""
    access.require(actor, "stock.write", f"set the minimum of {product} at {location}", db)
    access.require_agent(db, actor, [location], f"set the minimum of {product} at {location}", locations=True)
    if not isinstance(minimum, int) or minimum < 0:
        raise InvalidValue("minimum", minimum, "must be a whole number of cards, 0 or more")
    with unit_of_work(db) as conn:
        location, product = _stock_location(conn, location), _product(product)
        if conn.execute(select(sim_products.c.code).where(sim_products.c.code == product)).first() is None:
            raise NotFound(f"product {product!r} is not in the catalogue")
        key = (stock_minimums.c.location == location, stock_minimums.c.product == product)
        before = conn.execute(select(stock_minimums.c.minimum).where(*key)).scalar()
        conn.execute(delete(stock_minimums).where(*key))
        if minimum:
            conn.execute(stock_minimums.insert().values(location=location, product=product, minimum=minimum))
        audit.record(conn, actor, [Event("stock", location, "set_minimum", None, None, None,
                                         {"product": product, "minimum": minimum, "before": before})])


def low_stock(db: Store | Connection, *, days: int = 30, today: date | None = None,
              actor: str | None = None) -> list[Alert]:
    """Products whose stock will not cover the next ``days`` days of sales plus the minimum.

    Sales are ledger moves of kind sale out of the location in the last ``days`` days
    (up to the end of ``today`` in Asia/Shanghai). The suggested reorder is those sales
    plus the minimum, minus what is on hand, never negative; a product is listed when it
    is above 0 (which includes every product below its minimum). An agent user: its subtree's locations.
    """
    require(actor, "stock.read", "see low stock")
    if not isinstance(days, int) or days < 1:
        raise InvalidValue("days", days, "must be a whole number of days, 1 or more")
    today = today or utc_now().astimezone(SHANGHAI).date()
    until = datetime.combine(today + timedelta(days=1), time(), SHANGHAI)
    since = until - timedelta(days=days)
    with _read(db) as conn:
        scope = _scope(conn, actor)
        minimums = conn.execute(select(stock_minimums).order_by(stock_minimums.c.location,
                                                                stock_minimums.c.product)).all()
        minimums = [r for r in minimums if scope is None or r.location in scope]
        if not minimums:
            return []
        stock = {(r["location"], r["product"]): r["quantity"] for r in on_hand(conn)}
        sold = dict(((r.from_location, r.product), r.sold) for r in conn.execute(
            select(stock_moves.c.from_location, sim_batches.c.product, func.count().label("sold"))
            .select_from(stock_moves.join(sims, sims.c.iccid == stock_moves.c.iccid)
                         .join(sim_batches, sims.c.batch_id == sim_batches.c.id))
            .where(stock_moves.c.kind == MoveKind.SALE.value, stock_moves.c.at >= since, stock_moves.c.at < until)
            .group_by(stock_moves.c.from_location, sim_batches.c.product)))
    alerts = []
    for row in minimums:
        have, recent = stock.get((row.location, row.product), 0), sold.get((row.location, row.product), 0)
        suggested = max(0, recent + row.minimum - have)
        if suggested > 0:
            alerts.append(Alert(row.location, row.product, have, row.minimum, recent, suggested))
    return alerts


def restore_locations(db: Store | Connection, iccids: list[str], *, actor: str, reason: str) -> int:
    """Put ``sims.location`` of these cards back where the ledger's last move took them
    (``hkops check --fix``: the ledger is the record, the location column follows it).
    Cards with no ledger row are left alone. Audited per card; returns how many moved."""
    access.require(actor, "stock.write", f"restore the locations of cards {access.few(iccids)}", db)
    now = utc_now()
    with unit_of_work(db) as conn:
        drifted = []
        for chunk in _chunks(sorted(set(iccids))):
            last = (select(stock_moves.c.iccid, func.max(stock_moves.c.id).label("id"))
                    .where(stock_moves.c.iccid.in_(chunk)).group_by(stock_moves.c.iccid).subquery())
            drifted += conn.execute(
                select(sims.c.iccid, sims.c.location, stock_moves.c.to_location)
                .join(last, last.c.iccid == sims.c.iccid).join(stock_moves, stock_moves.c.id == last.c.id)
                .where(sims.c.location.is_distinct_from(stock_moves.c.to_location))).all()
        if not drifted:
            return 0
        placement.set_locations(conn, {r.iccid: r.to_location for r in drifted}, now)
        audit.record(conn, actor, [Event("sim", r.iccid, "relocate", r.location, r.to_location, reason)
                                   for r in drifted], now)
    return len(drifted)
