"""Serial stock: locations and the append-only ledger of moves.

:func:`move_units` is the one way a card changes place: it checks, set-wise, that every
card is where the move says it comes from, appends one ledger row per card and updates
``sims.location``, all in the caller's transaction. Everything else in stock (receipts,
transfers, sales, returns, scrapping, counts) is built on it.
"""

from __future__ import annotations

from datetime import datetime
from itertools import repeat

from sqlalchemy import Connection, bindparam, select, update

from hkops import audit
from hkops.audit import Event
from hkops.cards.tables import sims
from hkops.errors import Conflict, InvalidValue, InvalidValues, NotFound
from hkops.ids import parse_iccid
from hkops.stock.model import VIRTUAL, LocationKind, MoveKind
from hkops.stock.tables import stock_locations, stock_moves
from hkops.store import bulk
from hkops.store.engine import Store, unit_of_work
from hkops.timeutil import utc_now

_LEDGER_COLUMNS = ("iccid", "from_location", "to_location", "kind", "document", "actor", "at")
_CHUNK = 900  # SQLite's bound-parameter limit is 999 on older builds


def _chunks(values: list, size: int = _CHUNK):
    for start in range(0, len(values), size):
        yield values[start:start + size]


def ensure_virtual_locations(conn: Connection) -> None:
    """Create the virtual locations (VENDOR, CUSTOMER, SCRAP, MISSING) if missing."""
    have = set(conn.execute(select(stock_locations.c.code).where(stock_locations.c.code.in_(list(VIRTUAL)))).scalars())
    now = utc_now()
    rows = [{"code": code, "name": name, "kind": LocationKind.VIRTUAL.value, "province": None, "agent_id": None,
             "created_at": now} for code, name in VIRTUAL.items() if code not in have]
    if rows:
        conn.execute(stock_locations.insert(), rows)


def _code(code: str) -> str:
    value = (code or "").strip().upper()
    if not value or len(value) > 32 or not all(c.isalnum() or c in "-_" for c in value):
        raise InvalidValue("location", code, "must be 1 to 32 letters, digits, '-' or '_'")
    return value


def add_location(db: Store | Connection, code: str, name: str, kind: str = "warehouse", *, actor: str,
                 province: str | None = None, agent_id: int | None = None) -> str:
    """Register a stock location (a warehouse, or an agent's own stock); returns its code."""
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
        raise NotFound(f"location {code!r} does not exist")
    return LocationKind(kind)


def move_units(conn: Connection, iccids: list[str], from_location: str, to_location: str, kind: MoveKind | str,
               document: str, *, actor: str, now: datetime | None = None, check_states: set[str] | None = None,
               source: str = "stock move") -> int:
    """Move cards from one location to another in the caller's transaction; all or none.

    Every card must exist, be at ``from_location`` (and, when given, in one of
    ``check_states``), and appear once; otherwise :class:`InvalidValues` lists every card
    that cannot move and nothing moves. Appends one ledger row per card. Returns the count.
    """
    kind = MoveKind(kind)
    now = now or utc_now()
    iccids = [parse_iccid(i) for i in iccids]
    if not iccids:
        raise InvalidValue("cards", "", "no cards to move")
    if from_location == to_location:
        raise InvalidValue("to", to_location, "is the location the cards are already at")
    for code in (from_location, to_location):
        location_kind(conn, code)
    found: dict[str, tuple[str | None, str]] = {}
    for chunk in _chunks(iccids):
        found.update({r.iccid: (r.location, r.state) for r in conn.execute(
            select(sims.c.iccid, sims.c.location, sims.c.state).where(sims.c.iccid.in_(chunk)))})
    problems: list[InvalidValue] = []
    seen: set[str] = set()
    for iccid in iccids:
        if iccid in seen:
            problems.append(InvalidValue("iccid", iccid, "is listed twice"))
            continue
        seen.add(iccid)
        where = found.get(iccid)
        if where is None:
            problems.append(InvalidValue("iccid", iccid, "is not in the inventory"))
        elif where[0] != from_location:
            problems.append(InvalidValue("iccid", iccid, f"is not at {from_location} (it is at {where[0] or 'no location'})"))
        elif check_states is not None and where[1] not in check_states:
            problems.append(InvalidValue("iccid", iccid, f"is {where[1]}; this move needs a card that is "
                                         f"{' or '.join(sorted(check_states))}"))
    if problems:
        raise InvalidValues(source, problems)
    bulk.insert_rows(conn, stock_moves, _LEDGER_COLUMNS,
                     zip(iccids, repeat(from_location), repeat(to_location), repeat(kind.value), repeat(document),
                         repeat(actor), repeat(_db_time(conn, now))))
    conn.execute(update(sims).where(sims.c.iccid == bindparam("i"), sims.c.location == from_location)
                 .values(location=to_location, changed_at=now), [{"i": i} for i in iccids])
    return len(iccids)


def _db_time(conn: Connection, at: datetime):
    """``at`` as the raw driver value bulk inserts need (naive UTC on SQLite)."""
    return stock_moves.c.at.type.process_bind_param(at, conn.dialect)
