"""Number-resource use cases. Each runs in one unit of work: all of it commits, or none.

Every function takes ``db`` (a :class:`~hkops.store.engine.Store`, or a Connection whose
transaction the caller owns) and the ``actor`` who acts, and audits every change.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

from sqlalchemy import Connection, and_, bindparam, false, func, or_, select, update

from hkops import audit, carriers, settings
from hkops.audit import Event
from hkops.errors import Conflict, IllegalTransition, InvalidFile, InvalidValue, InvalidValues, NotFound
from hkops.ids import BlockInfo, block_info, parse_block_prefix, parse_msisdn
from hkops.numbers.grading import RuleSet, load_rules
from hkops.numbers.model import (
    HELD,
    TRANSITIONS,
    NumberRecord,
    NumberState,
    check_holder,
    check_reservation,
    target_state,
)
from hkops.numbers.tables import number_blocks, number_grades, numbers
from hkops.orders.model import OPEN as OPEN_ORDERS
from hkops.security.access import require
from hkops.store import bulk
from hkops.store.engine import Store, unit_of_work
from hkops.textfiles import read_text
from hkops.timeutil import parse_duration, utc_now
from hkops.security import access

S = NumberState
BLOCK_SIZE = 10_000
#: Who is recorded for changes no person made (a reservation lapsing).
SYSTEM_ACTOR = "system"
Progress = Callable[[int], None]
#: Moves that take a number away from whoever holds it: refused while an open order or a live SIM binds it.
GUARDED = frozenset({"release", "block", "terminate"})
#: SIM states in which a card serves its number (hkops.cards.model; spelled here to keep numbers free of cards).
LIVE_SIM_STATES = ("paired", "active", "suspended", "lost")

_INSERT_COLUMNS = ("msisdn", "rev", "state", "grade", "level", "price_fen")


# ---------------------------------------------------------------- blocks and pool


def add_blocks(
    db: Store | Connection,
    prefixes: Sequence[str | int],
    *,
    actor: str,
    planned: bool = False,
    empty: bool = False,
    rules: RuleSet | None = None,
    progress: Progress | None = None,
) -> list[BlockInfo]:
    """Add blocks (号段) by 7-digit prefix and create their 10,000 graded numbers each.

    With ``empty`` only the blocks are registered; their numbers come later by import.
    All prefixes are checked before anything is written: a bad one refuses them all.
    """
    access.require(actor, "numbers.write", f"add number blocks {access.few(prefixes)}", db)
    import numpy as np

    if not prefixes:
        raise InvalidValue("block", "", "give at least one 7-digit block prefix")
    with unit_of_work(db) as conn:
        enabled = set(carriers.configured(conn))
        infos, problems, seen = [], [], set()
        for raw in prefixes:
            try:
                prefix = parse_block_prefix(raw)
                if prefix in seen:
                    raise InvalidValue("block", raw, "given twice")
                seen.add(prefix)
                info = block_info(prefix)
                if info.carrier not in enabled:
                    configured = ", ".join(sorted(enabled)) or "none"
                    raise InvalidValue(
                        "block", raw, f"belongs to {info.carrier}, which is not a configured carrier ({configured})"
                    )
                if conn.execute(select(number_blocks.c.prefix).where(number_blocks.c.prefix == int(prefix))).first():
                    raise InvalidValue("block", raw, "was added already")
                infos.append(info)
            except InvalidValue as exc:
                problems.append(exc)
        if len(problems) == 1:
            raise problems[0]
        if problems:
            raise InvalidValues("blocks", problems)
        rules = rules or load_rules()
        _sync_grades(conn, rules)
        now = utc_now()
        state = S.PLANNED if planned else S.AVAILABLE
        for info in infos:
            conn.execute(
                number_blocks.insert().values(
                    prefix=int(info.prefix),
                    carrier=info.carrier,
                    province=info.province,
                    city=info.city,
                    province_zh=info.province_zh,
                    city_zh=info.city_zh,
                    created_at=now,
                    created_by=actor,
                )
            )
            if not empty:
                first = int(info.prefix) * BLOCK_SIZE
                _insert_numbers(conn, np.arange(first, first + BLOCK_SIZE, dtype=np.int64), state, rules)
            if progress:
                progress(BLOCK_SIZE)
        if not empty:
            bulk.refresh_statistics(conn, numbers)
        created = "no numbers yet (import them)" if empty else f"{BLOCK_SIZE} numbers created"
        audit.record(
            conn,
            actor,
            (
                Event("block", info.prefix, "add_block", None, None if empty else state.value,
                      created, {"carrier": info.carrier, "region": info.province_zh + info.city_zh})
                for info in infos
            ),
            now,
        )
    return infos


def _insert_numbers(conn: Connection, msisdns: np.ndarray, state: NumberState, rules: RuleSet) -> None:
    """Grade and insert numbers in bulk (the fast path behind blocks and imports)."""
    import numpy as np

    grade_index = rules.grade(msisdns)
    names = np.array([r.grade for r in rules.rules], dtype=object)[grade_index]
    levels = np.array([r.level for r in rules.rules])[grade_index]
    prices = np.array([r.price_fen for r in rules.rules])[grade_index]
    revs = reverse_digits(msisdns)
    rows = zip(msisdns.tolist(), revs.tolist(), [state.value] * len(msisdns), names.tolist(), levels.tolist(), prices.tolist())
    bulk.insert_rows(conn, numbers, _INSERT_COLUMNS, rows)


def reverse_digits(msisdns: np.ndarray) -> np.ndarray:
    """The 11 digits of each number read backwards, as an integer (for tail searches)."""
    import numpy as np

    values = np.asarray(msisdns, dtype=np.int64).copy()
    result = np.zeros_like(values)
    for _ in range(11):
        result = result * 10 + values % 10
        values //= 10
    return result


#: Header names of the number column, besides any name holding "msisdn" (``号码 MSISDN``).
NUMBER_COLUMN_NAMES = ("number", "号码", "手机号", "手机号码", "电话号码")


def _is_number_column(name: str) -> bool:
    name = name.strip().lower()
    return "msisdn" in name or name in NUMBER_COLUMN_NAMES


def read_number_file(path: str | Path) -> list[tuple[int, str]]:
    """(line number, raw value) of each number in a CSV (a column named ``msisdn``, ``号码``...:
    :data:`NUMBER_COLUMN_NAMES`) or TXT file (one number a line)."""
    lines = read_text(path).splitlines()
    start = next((index for index, line in enumerate(lines) if line.strip()), len(lines))
    rows = csv.reader(lines[start:])
    header = next(rows, [])
    column = next((index for index, name in enumerate(header) if _is_number_column(name)), None)
    if column is None:
        return [(index, line.strip()) for index, line in enumerate(lines, start=1) if line.strip()]
    return [(start + rows.line_num, row[column].strip() if column < len(row) else "")
            for row in rows if any(value.strip() for value in row)]


def import_numbers(
    db: Store | Connection,
    path: str | Path,
    *,
    actor: str,
    rules: RuleSet | None = None,
    progress: Progress | None = None,
) -> int:
    """Import numbers from a file into their (existing) blocks; all lines or none."""
    access.require(actor, "numbers.write", f"import numbers from {path}", db)
    import numpy as np

    entries = read_number_file(path)
    if not entries:
        raise InvalidValue("file", str(path), "holds no numbers")
    with unit_of_work(db) as conn:
        known_blocks = set(conn.execute(select(number_blocks.c.prefix)).scalars())
        problems: list[InvalidValue] = []
        first_seen: dict[int, int] = {}
        parsed: list[int] = []
        for line, raw in entries:
            try:
                # A plain 11-digit number inside a known block is valid: its block was
                # checked against phonenumbers when it was added.
                plain = len(raw) == 11 and raw.isascii() and raw.isdigit() and int(raw) // BLOCK_SIZE in known_blocks
                value = int(raw) if plain else int(parse_msisdn(raw))
            except InvalidValue as exc:
                problems.append(InvalidValue("msisdn", raw, exc.reason, line=line))
                continue
            if value // BLOCK_SIZE not in known_blocks:
                problems.append(InvalidValue("msisdn", raw, f"is outside every block (add block {value // BLOCK_SIZE} first)", line=line))
            elif value in first_seen:
                problems.append(InvalidValue("msisdn", raw, f"repeats line {first_seen[value]}", line=line))
            else:
                first_seen[value] = line
                parsed.append(value)
        existing = _existing(conn, parsed)
        problems += [InvalidValue("msisdn", str(v), "is already in the pool", line=first_seen[v]) for v in existing]
        if problems:
            problems.sort(key=lambda p: p.line or 0)
            raise InvalidFile(str(path), problems)
        rules = rules or load_rules()
        _sync_grades(conn, rules)
        values = np.array(sorted(parsed), dtype=np.int64)
        for start in range(0, len(values), 100_000):
            chunk = values[start:start + 100_000]
            _insert_numbers(conn, chunk, S.AVAILABLE, rules)
            if progress:
                progress(len(chunk))
        bulk.refresh_statistics(conn, numbers)
        per_block: dict[int, int] = {}
        for value in parsed:
            per_block[value // BLOCK_SIZE] = per_block.get(value // BLOCK_SIZE, 0) + 1
        audit.record(conn, actor, (
            Event("block", str(block), "import", None, S.AVAILABLE.value,
                  f"{count} numbers imported from {Path(path).name}", {"count": count})
            for block, count in sorted(per_block.items())
        ))
    return len(parsed)


def _existing(conn: Connection, values: list[int]) -> list[int]:
    found: list[int] = []
    for start in range(0, len(values), 900):
        chunk = values[start:start + 900]
        found += conn.execute(select(numbers.c.msisdn).where(numbers.c.msisdn.in_(chunk))).scalars()
    return sorted(found)


def open_planned(db: Store | Connection, prefix: str, *, actor: str, reason: str | None = None) -> int:
    """Open a planned block for sale: its planned numbers become available."""
    access.require(actor, "numbers.write", f"open planned block {prefix}", db)
    prefix = parse_block_prefix(prefix)
    first = int(prefix) * BLOCK_SIZE
    with unit_of_work(db) as conn:
        in_block = and_(numbers.c.msisdn >= first, numbers.c.msisdn < first + BLOCK_SIZE)
        count = conn.execute(
            update(numbers).where(in_block, numbers.c.state == S.PLANNED.value)
            .values(state=S.AVAILABLE.value, changed_at=utc_now())
        ).rowcount
        if not count:
            raise Conflict(f"block {prefix} has no planned numbers to open")
        audit.record(conn, actor, [Event("block", prefix, "open", S.PLANNED.value, S.AVAILABLE.value, reason, {"count": count})])
    return count


# ---------------------------------------------------------------- grading


def _sync_grades(conn: Connection, rules: RuleSet) -> None:
    """Make the grades table describe ``rules`` (so a grade's spend and prepay are known)."""
    current = {row.grade: row for row in conn.execute(select(number_grades))}
    wanted = {
        rule.grade: dict(grade=rule.grade, label=rule.label[:120], level=rule.level, price_fen=rule.price_fen,
                         min_monthly_fen=rule.min_monthly_fen, prepay_fen=rule.prepay_fen, position=position)
        for position, rule in enumerate(rules.rules)
    }
    for grade, values in wanted.items():
        if grade not in current:
            conn.execute(number_grades.insert().values(**values))
        elif dict(current[grade]._mapping) != values:
            conn.execute(number_grades.update().where(number_grades.c.grade == grade).values(**values))
    stale = set(current) - set(wanted)
    if stale:
        conn.execute(number_grades.delete().where(number_grades.c.grade.in_(stale)))
    if settings.get(conn, "grading_rules_digest") != rules.digest:
        settings.set_value(conn, "grading_rules_digest", rules.digest)


def regrade(
    db: Store | Connection,
    *,
    actor: str,
    rules: RuleSet | None = None,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Grade every number again with ``rules``; returns how many changed per new grade."""
    access.require(actor, "numbers.write", "re-grade the number pool", db)
    import numpy as np

    rules = rules or load_rules()
    changed: dict[str, int] = {}
    with unit_of_work(db) as conn:
        _sync_grades(conn, rules)
        prefixes = list(conn.execute(select(number_blocks.c.prefix).order_by(number_blocks.c.prefix)).scalars())
        names = [r.grade for r in rules.rules]
        for prefix in prefixes:
            first = prefix * BLOCK_SIZE
            rows = conn.execute(
                select(numbers.c.msisdn, numbers.c.grade, numbers.c.level, numbers.c.price_fen)
                .where(numbers.c.msisdn >= first, numbers.c.msisdn < first + BLOCK_SIZE)
            ).all()
            if rows:
                values = np.array([r.msisdn for r in rows], dtype=np.int64)
                updates = []
                for row, index in zip(rows, rules.grade(values).tolist()):
                    rule = rules.rules[index]
                    if (row.grade, row.level, row.price_fen) != (rule.grade, rule.level, rule.price_fen):
                        updates.append({"m": row.msisdn, "g": rule.grade, "l": rule.level, "p": rule.price_fen})
                        changed[names[index]] = changed.get(names[index], 0) + 1
                if updates:
                    conn.execute(
                        update(numbers).where(numbers.c.msisdn == bindparam("m"))
                        .values(grade=bindparam("g"), level=bindparam("l"), price_fen=bindparam("p")),
                        updates,
                    )
            if progress:
                progress(1)
        if changed:
            audit.record(conn, actor, [Event("grading", rules.digest, "regrade", None, None,
                                             f"{sum(changed.values())} numbers re-graded", changed)])
    return changed


def count_blocks(db: Store | Connection) -> int:
    """How many blocks the pool has."""
    with unit_of_work(db) if isinstance(db, Connection) else db.read() as conn:
        return conn.execute(select(func.count()).select_from(number_blocks)).scalar()


def grade_labels(db: Store | Connection) -> list[tuple[str, str]]:
    """(grade, label) of every grade, in the rules' order."""
    with unit_of_work(db) if isinstance(db, Connection) else db.read() as conn:
        return [tuple(row) for row in conn.execute(select(number_grades.c.grade, number_grades.c.label)
                                                   .order_by(number_grades.c.position))]


def regrade_if_rules_changed(db: Store, *, actor: str, progress: Progress | None = None) -> dict[str, int] | None:
    """Re-grade when the rule file differs from the one that graded the pool."""
    rules = load_rules()
    with db.read() as conn:
        if settings.get(conn, "grading_rules_digest") in ("", rules.digest):
            return None
    return regrade(db, actor=actor, rules=rules, progress=progress)


# ---------------------------------------------------------------- one number's lifecycle


def _load(conn: Connection, msisdn: str, lock: bool = False) -> NumberRecord:
    stmt = select(numbers).where(numbers.c.msisdn == int(msisdn))
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).mappings().first()
    if row is None:
        raise NotFound(f"number {msisdn} is not in the pool")
    return record_from_row(row)


def record_from_row(row) -> NumberRecord:
    """A NumberRecord from a ``numbers`` row mapping."""
    return NumberRecord(
        msisdn=str(row["msisdn"]),
        state=NumberState(row["state"]),
        grade=row["grade"],
        level=row["level"],
        price_fen=row["price_fen"],
        holder=row["holder"],
        reserved_until=row["reserved_until"],
        last_holder=row["last_holder"],
        quarantine_until=row["quarantine_until"],
        blocked_from=NumberState(row["blocked_from"]) if row["blocked_from"] else None,
        changed_at=row["changed_at"],
    )


def get_number(db: Store | Connection, msisdn: str, *, actor: str | None = None) -> NumberRecord:
    """The number's current record (``numbers.read``)."""
    require(actor, "numbers.read", f"see number {msisdn}")
    msisdn = parse_msisdn(msisdn)
    if isinstance(db, Connection):
        return _load(db, msisdn)
    with db.read() as conn:
        return _load(conn, msisdn)


@dataclass(frozen=True)
class Move:
    """The result of a lifecycle move."""

    msisdn: str
    action: str
    from_state: str
    to_state: str
    holder: str | None


def _move(
    db: Store | Connection,
    msisdn: str,
    action: str,
    *,
    actor: str,
    reason: str | None,
    holder: str | None = None,
    changes: Callable[[NumberRecord, datetime, Connection], dict] | None = None,
    order: str | None = None,
    card: str | None = None,
) -> Move:
    msisdn = parse_msisdn(msisdn)
    with unit_of_work(db) as conn:
        now = utc_now()
        number = _load(conn, msisdn, lock=True)
        if action in GUARDED:
            refuse_if_bound(conn, [int(msisdn)], action, orders={int(msisdn): order} if order else None,
                            cards={int(msisdn): card} if card else None)
        check_reservation(action, number, holder, now)
        to_state = target_state(action, number, now)
        check_holder(action, number, holder, now)
        values = {"state": to_state.value, "changed_at": now}
        if changes:
            values.update(changes(number, now, conn))
        conn.execute(update(numbers).where(numbers.c.msisdn == int(msisdn)).values(**values))
        if number.reservation_expired(now):
            audit.record(conn, SYSTEM_ACTOR, [Event("number", msisdn, "expire", S.RESERVED.value, S.AVAILABLE.value,
                                                    f"reservation for {number.holder} expired")], now)
        from_state = number.effective_state(now).value
        audit.record(conn, actor, [Event("number", msisdn, action, from_state, to_state.value, reason,
                                         {"holder": values.get("holder", number.holder)} if (holder or number.holder) else None)], now)
    return Move(msisdn, action, from_state, to_state.value, values.get("holder", number.holder))


def reserve(db, msisdn: str, holder: str, *, actor: str, ttl: str | timedelta | None = None,
            reason: str | None = None) -> Move:
    """Reserve a number for ``holder`` until the TTL runs out (default: setting reservation_ttl)."""
    access.require(actor, "numbers.write", f"reserve number {msisdn}", db)
    holder = _holder(holder)

    def changes(number: NumberRecord, now: datetime, conn: Connection) -> dict:
        span = ttl if isinstance(ttl, timedelta) else parse_duration(ttl or settings.get(conn, "reservation_ttl"))
        return {"holder": holder, "reserved_until": now + span}

    return _move(db, msisdn, "reserve", actor=actor, reason=reason, holder=holder, changes=changes)


def allocate(db, msisdn: str, holder: str, *, actor: str, reason: str | None = None) -> Move:
    """Allocate one number to ``holder`` (it must be available, or reserved for them)."""
    access.require(actor, "numbers.write", f"allocate number {msisdn}", db)
    holder = _holder(holder)
    return _move(db, msisdn, "allocate", actor=actor, reason=reason, holder=holder,
                 changes=lambda n, now, c: {"holder": holder, "reserved_until": None})


def release(db, msisdn: str, *, actor: str, reason: str | None = None, order: str | None = None,
            card: str | None = None) -> Move:
    """Give a reserved or assigned number back to the pool. Refused while an open order or a live
    SIM binds it, unless the call is made on behalf of that ``order`` (number) or ``card`` (ICCID)."""
    access.require(actor, "numbers.write", f"release number {msisdn}", db)
    return _move(db, msisdn, "release", actor=actor, reason=reason, order=order, card=card,
                 changes=lambda n, now, c: {"holder": None, "reserved_until": None})


def activate(db, msisdn: str, *, actor: str, reason: str | None = None) -> Move:
    """Assigned to active (the card lifecycle calls this when a SIM is activated)."""
    access.require(actor, "numbers.write", f"activate number {msisdn}", db)
    return _move(db, msisdn, "activate", actor=actor, reason=reason)


def suspend(db, msisdn: str, *, actor: str, reason: str | None = None) -> Move:
    """Active to suspended."""
    access.require(actor, "numbers.write", f"suspend number {msisdn}", db)
    return _move(db, msisdn, "suspend", actor=actor, reason=reason)


def resume(db, msisdn: str, *, actor: str, reason: str | None = None) -> Move:
    """Suspended to active."""
    access.require(actor, "numbers.write", f"resume number {msisdn}", db)
    return _move(db, msisdn, "resume", actor=actor, reason=reason)


def block(db, msisdn: str, *, actor: str, reason: str | None = None, order: str | None = None,
          card: str | None = None) -> Move:
    """Hold a number out of sale (fraud, regulator); unblock returns it to where it was. Refused
    while an open order or a live SIM binds it (but ``order``/``card``, on whose behalf it is done)."""
    access.require(actor, "numbers.write", f"block number {msisdn}", db)
    return _move(db, msisdn, "block", actor=actor, reason=reason, order=order, card=card,
                 changes=lambda n, now, c: {"blocked_from": n.effective_state(now).value,
                                            "holder": n.holder if n.effective_state(now) in HELD else None})


def unblock(db, msisdn: str, *, actor: str, reason: str | None = None) -> Move:
    """Lift a block."""
    access.require(actor, "numbers.write", f"unblock number {msisdn}", db)
    return _move(db, msisdn, "unblock", actor=actor, reason=reason, changes=lambda n, now, c: {"blocked_from": None})


def terminate(db, msisdn: str, *, actor: str, reason: str | None = None, order: str | None = None,
              card: str | None = None) -> Move:
    """End a number's use: it goes into quarantine for the configured cool-off days. Refused while
    an open order or a live SIM binds it, unless done on behalf of that ``order`` or ``card``
    (the card's termination passes its ICCID: HLR, card, binding and number move together)."""
    access.require(actor, "numbers.write", f"terminate number {msisdn}", db)

    def changes(number: NumberRecord, now: datetime, conn: Connection) -> dict:
        days = settings.quarantine_days(conn)
        return {"holder": None, "last_holder": number.holder, "reserved_until": None,
                "quarantine_until": now + timedelta(days=days)}

    return _move(db, msisdn, "terminate", actor=actor, reason=reason, order=order, card=card, changes=changes)


def reclaim(db, msisdn: str, holder: str, *, actor: str, reason: str | None = None) -> Move:
    """The last holder takes the number back during quarantine. A subscriber holder
    (``S<id>``) must have room under 一证五号 for one more number of its carrier."""
    access.require(actor, "numbers.write", f"reclaim number {msisdn}", db)
    holder = _holder(holder)

    def changes(number: NumberRecord, now: datetime, conn: Connection) -> dict:
        if holder.startswith("S") and holder[1:].isdigit():
            from hkops.subscribers import service as subscribers

            carrier = conn.execute(select(number_blocks.c.carrier).where(
                number_blocks.c.prefix == int(number.msisdn) // BLOCK_SIZE)).scalar()
            subscribers.check_number_limit(conn, int(holder[1:]), carrier)
        return {"holder": holder, "quarantine_until": None}

    return _move(db, msisdn, "reclaim", actor=actor, reason=reason, holder=holder, changes=changes)


def recycle(db, msisdn: str, *, actor: str, reason: str | None = None) -> Move:
    """Return a quarantined number to the pool once its cool-off has ended."""
    access.require(actor, "numbers.write", f"recycle number {msisdn}", db)
    return _move(db, msisdn, "recycle", actor=actor, reason=reason,
                 changes=lambda n, now, c: {"last_holder": None, "quarantine_until": None})


def recycle_due(db: Store | Connection, *, actor: str, reason: str | None = None, now: datetime | None = None) -> list[str]:
    """Recycle every quarantined number whose cool-off has ended; returns them."""
    access.require(actor, "numbers.write", "recycle the numbers whose cool-off has ended", db)
    with unit_of_work(db) as conn:
        now = now or utc_now()
        due = list(conn.execute(
            select(numbers.c.msisdn).where(numbers.c.state == S.QUARANTINED.value, numbers.c.quarantine_until <= now)
        ).scalars())
        return move_many(conn, due, S.QUARANTINED, S.AVAILABLE, "recycle", actor=actor,
                          reason=reason or "cool-off ended", values={"last_holder": None, "quarantine_until": None}, now=now)


def expire_reservations(db: Store | Connection, *, actor: str = SYSTEM_ACTOR, now: datetime | None = None) -> list[str]:
    """Turn expired reservations back into available numbers (they never block anyway)."""
    access.require(actor, "numbers.write", "expire number reservations", db)
    with unit_of_work(db) as conn:
        now = now or utc_now()
        due = list(conn.execute(
            select(numbers.c.msisdn).where(numbers.c.state == S.RESERVED.value, numbers.c.reserved_until <= now)
        ).scalars())
        return move_many(conn, due, S.RESERVED, S.AVAILABLE, "expire", actor=actor,
                          reason="reservation expired", values={"holder": None, "reserved_until": None}, now=now)


def move_many(
    conn: Connection,
    msisdns: list[int],
    from_state: NumberState,
    to_state: NumberState,
    action: str,
    *,
    actor: str,
    reason: str | None,
    now: datetime,
    values: dict | None = None,
    per_number: dict[int, dict] | None = None,
    holder: str | None = None,
    orders: dict[int, str] | None = None,
    cards: dict[int, str] | None = None,
) -> list[str]:
    """Move many numbers that are all in ``from_state`` at once, auditing each one.

    ``values`` are set on every number, ``per_number`` adds values for single numbers.
    A number found in another state makes the whole move fail (the caller's
    transaction then rolls back). Release, block and terminate are refused (nothing moves)
    for numbers an open order or a live SIM binds, except the order (``orders``: number ->
    order number) or card (``cards``: number -> ICCID) on whose behalf each is moved.
    """
    allowed, _ = TRANSITIONS[action]
    if from_state not in allowed:
        raise IllegalTransition(f"cannot {action} numbers that are {from_state.value}")
    if not msisdns:
        return []
    if action in GUARDED:
        refuse_if_bound(conn, msisdns, action, orders=orders, cards=cards)
    values = dict(values or {})
    per_number = per_number or {}
    columns = sorted(set(values) | {k for v in per_number.values() for k in v})
    params = [{"m": m, **{f"v_{c}": per_number.get(m, {}).get(c, values.get(c)) for c in columns}} for m in msisdns]
    stmt = (
        update(numbers)
        .where(numbers.c.msisdn == bindparam("m"), numbers.c.state == from_state.value)
        .values(state=to_state.value, changed_at=now, **{c: bindparam(f"v_{c}") for c in columns})
    )
    moved = conn.execute(stmt, params).rowcount
    if moved != len(msisdns):
        raise Conflict(f"{len(msisdns) - moved} of {len(msisdns)} numbers were no longer {from_state.value}; nothing moved")

    def holder_of(m: int) -> str | None:
        return per_number.get(m, {}).get("holder", values.get("holder", holder))

    audit.record(conn, actor, (
        Event("number", str(m), action, from_state.value, to_state.value, reason,
              {"holder": holder_of(m)} if holder_of(m) else None)
        for m in msisdns
    ), now)
    return [str(m) for m in msisdns]


def bindings(conn: Connection, msisdns: list[int], *, orders: dict[int, str] | None = None,
             cards: dict[int, str] | None = None) -> dict[int, str]:
    """What binds each of these numbers (those bound only): "order SO... (paid)" for an open
    order, "SIM 8986... (active)" for a live card, leaving out the order (``orders``: number ->
    order number) or card (``cards``: number -> ICCID) named for it and that order's card and
    that card's order (one sale). Reads the orders' and cards' tables; a handful of queries."""
    from hkops.cards.tables import sims
    from hkops.orders.tables import orders as orders_table

    orders, cards = orders or {}, cards or {}
    found: dict[int, str] = {}
    open_states = sorted(s.value for s in OPEN_ORDERS)
    for start in range(0, len(msisdns), 900):
        chunk = [int(m) for m in msisdns[start:start + 900]]
        for row in conn.execute(select(orders_table.c.msisdn, orders_table.c.number, orders_table.c.state,
                                       orders_table.c.iccid)
                                .where(orders_table.c.msisdn.in_(chunk), orders_table.c.state.in_(open_states))):
            if row.number != orders.get(row.msisdn) and (row.iccid is None or row.iccid != cards.get(row.msisdn)):
                found.setdefault(row.msisdn, f"order {row.number} ({row.state})")
        mine = {m: orders[m] for m in chunk if m in orders}
        order_cards = dict(conn.execute(select(orders_table.c.number, orders_table.c.iccid)
                                        .where(orders_table.c.number.in_(sorted(set(mine.values())))))
                           .all()) if mine else {}
        for row in conn.execute(select(sims.c.msisdn, sims.c.iccid, sims.c.state)
                                .where(sims.c.msisdn.in_(chunk), sims.c.state.in_(LIVE_SIM_STATES))):
            if row.iccid != cards.get(row.msisdn) and row.iccid != order_cards.get(mine.get(row.msisdn)):
                found.setdefault(row.msisdn, f"SIM {row.iccid} ({row.state})")
    return found


def refuse_if_bound(conn: Connection, msisdns: list[int], action: str, *, orders: dict[int, str] | None = None,
                    cards: dict[int, str] | None = None) -> None:
    """:class:`Conflict` naming the order or card if any of these numbers is bound (see :func:`bindings`)."""
    bound = bindings(conn, msisdns, orders=orders, cards=cards)
    if not bound:
        return
    hint = {"terminate": "; a number in service ends with its card (hkops cards terminate ICCID)",
            "release": "; cancel the order (or terminate the card) instead",
            "block": "; cancel the order (or terminate the card) first"}.get(action, "")
    listed = ", ".join(f"{m} is bound to {what}" for m, what in sorted(bound.items())[:5])
    more = f" (and {len(bound) - 5} more)" if len(bound) > 5 else ""
    raise Conflict(f"cannot {action}: {listed}{more}{hint}; nothing changed")


def _holder(holder: str) -> str:
    holder = (holder or "").strip()
    if not holder or len(holder) > 64:
        raise InvalidValue("holder", holder, "must be 1-64 characters (a customer, agent or order id)")
    return holder


# ---------------------------------------------------------------- batch allocation


def available_clause(now: datetime):
    """SQL condition for numbers that can be taken now (expired reservations included)."""
    return or_(
        numbers.c.state == S.AVAILABLE.value,
        and_(numbers.c.state == S.RESERVED.value, numbers.c.reserved_until <= now),
    )


def allocate_batch(
    db: Store | Connection,
    count: int,
    holder: str,
    *,
    actor: str,
    region: str | None = None,
    carrier: str | None = None,
    grade: str | None = None,
    reason: str | None = None,
) -> list[str]:
    """Allocate ``count`` available numbers matching the filters to ``holder``: all or none.

    Without ``grade`` only plain numbers are taken (see :func:`plain_grades`).

    Safe under concurrent writers: on PostgreSQL rows are taken with
    ``FOR UPDATE SKIP LOCKED``; on SQLite the write transaction holds the database.
    """
    access.require(actor, "numbers.write", f"allocate {count} numbers to {holder}", db)
    from hkops.numbers.search import block_ranges

    holder = _holder(holder)
    if not isinstance(count, int) or count < 1 or count > 1_000_000:
        raise InvalidValue("count", count, "must be a whole number from 1 to 1,000,000")
    with unit_of_work(db) as conn:
        now = utc_now()
        stmt = select(numbers.c.msisdn, numbers.c.state).where(available_clause(now)).limit(count)
        ranges = block_ranges(conn, region=region, carrier=carrier)
        if ranges is not None:
            stmt = stmt.where(or_(false(), *ranges))
        stmt = stmt.where(numbers.c.grade.in_(_grades(conn, grade) if grade else plain_grades(conn)))
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        rows = conn.execute(stmt).all()
        if len(rows) < count:
            wanted = ", ".join(f"{k} {v}" for k, v in (("region", region), ("carrier", carrier), ("grade", grade)) if v)
            raise Conflict(f"only {len(rows)} available numbers match{(' ' + wanted) if wanted else ''}; "
                           f"{count} were asked for, none allocated")
        expired = [r.msisdn for r in rows if r.state == S.RESERVED.value]
        if expired:
            move_many(conn, expired, S.RESERVED, S.AVAILABLE, "expire", actor=SYSTEM_ACTOR, reason="reservation expired",
                      values={"holder": None, "reserved_until": None}, now=now)
        chosen = sorted(r.msisdn for r in rows)
        return move_many(conn, chosen, S.AVAILABLE, S.ASSIGNED, "allocate", actor=actor, reason=reason,
                         values={"holder": holder, "reserved_until": None}, now=now)


def plain_grades(conn: Connection) -> list[str]:
    """Grades worth no more than the catch-all grade: what a batch takes unless told otherwise,
    so that vanity numbers are never handed out in bulk by accident."""
    rows = conn.execute(select(number_grades.c.grade, number_grades.c.level).order_by(number_grades.c.position)).all()
    if not rows:
        return []
    fallback_level = rows[-1].level
    return [row.grade for row in rows if row.level <= fallback_level]


def _grades(conn: Connection, grade: str) -> list[str]:
    known = list(conn.execute(select(number_grades.c.grade).order_by(number_grades.c.position)).scalars())
    wanted = [g.strip() for g in grade.split(",") if g.strip()]
    by_upper = {k.upper(): k for k in known}
    result = []
    for g in wanted:
        if g.upper() not in by_upper:
            raise InvalidValue("grade", g, f"unknown grade; known: {', '.join(known)}")
        result.append(by_upper[g.upper()])
    return result


# ---------------------------------------------------------------- numbers for orders (set-wise)

_NUMBER_FEES = (numbers.c.price_fen, number_grades.c.prepay_fen, number_grades.c.min_monthly_fen)
_WITH_GRADE = numbers.outerjoin(number_grades, number_grades.c.grade == numbers.c.grade)
_ASKED = (select(numbers, number_blocks.c.carrier.label("block_carrier"), *_NUMBER_FEES[1:])
          .select_from(_WITH_GRADE.outerjoin(number_blocks, number_blocks.c.prefix == numbers.c.msisdn // BLOCK_SIZE))
          .where(numbers.c.msisdn.in_(bindparam("numbers", expanding=True))))
_ASKED_LOCKED = _ASKED.with_for_update(of=numbers)
_CARRIER_BLOCKS = (select(number_blocks.c.prefix, number_blocks.c.province, number_blocks.c.carrier)
                   .where(number_blocks.c.carrier.in_(bindparam("carriers", expanding=True)))
                   .order_by(number_blocks.c.prefix))


def numbers_with_fees(conn: Connection, msisdns: list[int], *, lock: bool = False) -> dict[int, dict]:
    """The pool rows of these numbers (those in the pool), each with its block's carrier
    (``block_carrier``) and its grade's ``prepay_fen`` and ``min_monthly_fen``; locked for the
    transaction on PostgreSQL with ``lock``. One query per 900 numbers."""
    stmt = _ASKED_LOCKED if lock and conn.dialect.name == "postgresql" else _ASKED
    found: dict[int, dict] = {}
    for start in range(0, len(msisdns), 900):
        chunk = sorted(msisdns)[start:start + 900]
        found.update({row["msisdn"]: dict(row) for row in conn.execute(stmt, {"numbers": chunk}).mappings()})
    return found


def pick_plain_numbers(conn: Connection, wanted: list[tuple[str, str | None]], *, taken: set[int],
                       lock: bool = False) -> list:
    """For each (carrier, province) asked, the first available plain number of the carrier, in
    the province's blocks when it has any there, else anywhere; None where none is left. Rows
    carry ``msisdn``, ``state``, ``price_fen``, ``prepay_fen`` and ``min_monthly_fen``. Numbers
    in ``taken`` are skipped (and the picked ones added to it). One query per carrier and
    province; with ``lock`` on PostgreSQL the rows are locked, skipping those others hold.
    Nothing is written: :func:`hold_for_orders` reserves them."""
    picked: list = [None] * len(wanted)
    if not wanted:
        return picked
    carriers_ = sorted({carrier for carrier, _ in wanted})
    blocks = conn.execute(_CARRIER_BLOCKS, {"carriers": carriers_}).all()
    grades = tuple(plain_grades(conn))
    lock = lock and conn.dialect.name == "postgresql"
    for carrier in carriers_:
        mine = [i for i, (c, _) in enumerate(wanted) if c == carrier]
        everywhere = tuple(b.prefix for b in blocks if b.carrier == carrier)
        for province in dict.fromkeys(wanted[i][1] for i in mine):
            nearby = tuple(b.prefix for b in blocks if b.carrier == carrier and b.province == province)
            if nearby and nearby != everywhere:
                _hand_out(conn, [i for i in mine if wanted[i][1] == province], picked, nearby, grades, taken, lock)
        _hand_out(conn, [i for i in mine if picked[i] is None], picked, everywhere, grades, taken, lock)
    return picked


def _hand_out(conn: Connection, positions: list[int], picked: list, prefixes: tuple[int, ...],
              grades: tuple[str, ...], taken: set[int], lock: bool) -> None:
    if not (positions and prefixes and grades):
        return
    rows = conn.execute(_free_numbers(prefixes, grades, lock), {"wanted": len(positions) + len(taken)}).all()
    free = (row for row in rows if row.msisdn not in taken)
    for position, row in zip(positions, free):
        picked[position] = row
        taken.add(row.msisdn)


@lru_cache(maxsize=256)
def _free_numbers(prefixes: tuple[int, ...], grades: tuple[str, ...], lock: bool):
    """The statement taking the first available numbers of these grades in these blocks (built once per shape)."""
    from hkops.numbers.search import ranges_of

    stmt = (select(numbers.c.msisdn, numbers.c.state, *_NUMBER_FEES).select_from(_WITH_GRADE)
            .where(numbers.c.state == S.AVAILABLE.value, numbers.c.grade.in_(grades), or_(*ranges_of(list(prefixes))))
            .order_by(numbers.c.msisdn).limit(bindparam("wanted")))
    return stmt.with_for_update(of=numbers, skip_locked=True) if lock else stmt


_STATES = (select(numbers.c.msisdn, numbers.c.state, numbers.c.holder, numbers.c.reserved_until)
           .where(numbers.c.msisdn.in_(bindparam("numbers", expanding=True))))


def _states(conn: Connection, msisdns: list[int], *, lock: bool = False) -> dict[int, object]:
    stmt = _STATES.with_for_update() if lock and conn.dialect.name == "postgresql" else _STATES
    found = {}
    for start in range(0, len(msisdns), 900):
        found.update({r.msisdn: r for r in conn.execute(stmt, {"numbers": sorted(msisdns)[start:start + 900]})})
    return found


def hold_for_orders(conn: Connection, held: dict[int, str], *, actor: str, now: datetime, until: datetime,
                    reason: str = "held for its order") -> list[str]:
    """Reserve each number for its order (number -> order number) until ``until``: all or none,
    set-wise. An expired reservation of someone else ends first (audited as the system's)."""
    if not held:
        return []
    rows = _states(conn, list(held))
    lapsed = [m for m in held if m in rows and rows[m].state == S.RESERVED.value
              and rows[m].reserved_until is not None and rows[m].reserved_until <= now]
    move_many(conn, lapsed, S.RESERVED, S.AVAILABLE, "expire", actor=SYSTEM_ACTOR, reason="reservation expired",
              now=now, values={"holder": None, "reserved_until": None})
    return move_many(conn, sorted(held), S.AVAILABLE, S.RESERVED, "reserve", actor=actor, reason=reason, now=now,
                     values={"reserved_until": until}, per_number={m: {"holder": order} for m, order in held.items()})


def assign_to_orders(conn: Connection, held: dict[int, str], *, actor: str, now: datetime,
                     reason: str = "its order is paid") -> list[str]:
    """Assign each number to its order (number -> order number): it must be reserved for that
    order, or available. All or none (:class:`Conflict` naming the number and order), set-wise."""
    if not held:
        return []
    rows = _states(conn, list(held), lock=True)
    moves: dict[NumberState, dict[int, dict]] = {S.RESERVED: {}, S.AVAILABLE: {}}
    for msisdn, order in sorted(held.items()):
        number = rows.get(msisdn)
        if number is not None and number.state == S.RESERVED.value and number.holder == order:
            moves[S.RESERVED][msisdn] = {"holder": order}
        elif number is not None and number.state == S.AVAILABLE.value:
            moves[S.AVAILABLE][msisdn] = {"holder": order}
        else:
            state = f"{number.state} (held by {number.holder})" if number is not None else "not in the pool"
            raise Conflict(f"cannot assign number {msisdn} to order {order}: it is {state}")
    done: list[str] = []
    for from_state, per_number in moves.items():
        done += move_many(conn, list(per_number), from_state, S.ASSIGNED, "allocate", actor=actor, reason=reason,
                          now=now, values={"reserved_until": None}, per_number=per_number)
    return done


def release_for_orders(conn: Connection, held: dict[int, str], *, actor: str, now: datetime,
                       reason: str) -> list[str]:
    """Give back to the pool the numbers that these orders (number -> order number) still hold
    (reserved or assigned to them), on their behalf, set-wise; numbers no longer theirs are left
    alone. Returns the numbers released."""
    if not held:
        return []
    rows = _states(conn, list(held), lock=True)
    moves: dict[NumberState, list[int]] = {S.RESERVED: [], S.ASSIGNED: []}
    for msisdn, order in held.items():
        number = rows.get(msisdn)
        if number is not None and number.holder == order and number.state in (S.RESERVED.value, S.ASSIGNED.value):
            moves[S(number.state)].append(msisdn)
    done: list[str] = []
    for from_state, msisdns in moves.items():
        done += move_many(conn, sorted(msisdns), from_state, S.AVAILABLE, "release", actor=actor, reason=reason,
                          now=now, values={"holder": None, "reserved_until": None},
                          orders={m: held[m] for m in msisdns})
    return done


# ---------------------------------------------------------------- numbers for cards (set-wise)


def allocate_to_holders(conn: Connection, held: dict[int, str], *, actor: str, now: datetime,
                        reason: str | None = None) -> list[str]:
    """Allocate available numbers to their holders (number -> holder, e.g. ``S<subscriber id>``
    when SIMs are paired with them): all or none, set-wise."""
    return move_many(conn, sorted(held), S.AVAILABLE, S.ASSIGNED, "allocate", actor=actor, reason=reason, now=now,
                     per_number={m: {"holder": holder} for m, holder in held.items()})


def activate_many(conn: Connection, msisdns: list[int], *, actor: str, now: datetime,
                  reason: str | None = None) -> list[str]:
    """Assigned numbers become active (their SIMs were activated): all or none, set-wise."""
    return move_many(conn, list(msisdns), S.ASSIGNED, S.ACTIVE, "activate", actor=actor, reason=reason, now=now)


# ---------------------------------------------------------------- statistics


def stats(db: Store | Connection, *, actor: str | None = None) -> dict:
    """Counts of the pool by state, grade, carrier and province (expired reservations as available;
    ``numbers.read``)."""
    require(actor, "numbers.read", "see pool statistics")
    def run(conn: Connection) -> dict:
        now = utc_now()
        state_expr = _effective_state_sql(now)
        by_state = dict(conn.execute(select(state_expr, func.count()).group_by(state_expr)).all())
        by_grade = dict(conn.execute(select(numbers.c.grade, func.count()).group_by(numbers.c.grade)).all())
        block_key = numbers.c.msisdn // BLOCK_SIZE
        per_block = conn.execute(select(block_key.label("b"), state_expr.label("s"), func.count()).group_by("b", "s")).all()
        blocks = {row.prefix: row for row in conn.execute(select(number_blocks))}
        by_carrier: dict[str, int] = {}
        by_province: dict[str, dict[str, int]] = {}
        for prefix, state, count in per_block:
            block_row = blocks.get(int(prefix))
            carrier_name = block_row.carrier if block_row else "unknown"
            province = (block_row.province_zh or "全国") if block_row else "unknown"
            by_carrier[carrier_name] = by_carrier.get(carrier_name, 0) + count
            by_province.setdefault(province, {})
            by_province[province][state] = by_province[province].get(state, 0) + count
        grades_order = [g for g in conn.execute(select(number_grades.c.grade).order_by(number_grades.c.position)).scalars()]
        return {
            "total": sum(by_state.values()),
            "blocks": len(blocks),
            "by_state": {s.value: by_state.get(s.value, 0) for s in NumberState},
            "by_grade": {g: by_grade[g] for g in grades_order if g in by_grade} | {g: c for g, c in by_grade.items() if g not in grades_order},
            "by_carrier": dict(sorted(by_carrier.items())),
            "by_province": dict(sorted(by_province.items())),
        }

    if isinstance(db, Connection):
        return run(db)
    with db.read() as conn:
        return run(conn)


def _effective_state_sql(now: datetime):
    from sqlalchemy import case

    return case(
        (and_(numbers.c.state == S.RESERVED.value, numbers.c.reserved_until <= now), S.AVAILABLE.value),
        else_=numbers.c.state,
    )


def backdate_blocks(conn: Connection, when: datetime) -> None:
    """Date every block as added at ``when``. Only the demo does this, to give its made-up pool
    the past its backdated sales need (as ``hkops.audit.retime`` does for the audit records)."""
    conn.execute(update(number_blocks).values(created_at=when))
