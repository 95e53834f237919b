"""Searching the pool: patterns, region, carrier, grade, state and price, fast on 10M numbers.

Patterns become index ranges (prefix on ``msisdn``, tail on ``rev``) so a vanity query
reads a few hundred index entries instead of the whole pool. Results are the first
``limit`` matches the index yields, returned most valuable first.
"""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass

from sqlalchemy import Connection, String, and_, cast, false, func, or_, select, true

from hkops import carriers
from hkops.errors import InvalidValue
from hkops.ids import display_msisdn
from hkops.money import fen_to_yuan
from hkops.numbers.model import NumberState
from hkops.numbers.patterns import ParsedPattern, parse_pattern
from hkops.numbers.service import BLOCK_SIZE
from hkops.numbers.tables import number_blocks, number_grades, numbers
from hkops.security.access import require
from hkops.store.engine import Store
from hkops.timeutil import local, utc_now

S = NumberState
MAX_LIMIT = 10_000
_SCAN_CHUNK = 20_000
MAX_GRADE_RANGES = 32
SEQUENTIAL_ADVANTAGE = 5


@dataclass(frozen=True)
class SearchQuery:
    """What to look for. ``state`` "available" includes numbers whose reservation expired."""

    pattern: str | None = None
    region: str | None = None
    carrier: str | None = None
    grade: str | None = None
    state: str | None = "available"
    min_price_fen: int | None = None
    max_price_fen: int | None = None
    limit: int = 50


@dataclass(frozen=True)
class Hit:
    """One number found, ready to show or to dump as JSON."""

    msisdn: str
    display: str
    carrier: str
    province: str
    city: str
    state: str
    grade: str
    level: int
    price: str
    min_monthly: str
    prepay: str
    holder: str | None
    reserved_until: str

    def as_dict(self) -> dict:
        return asdict(self)


@functools.lru_cache(maxsize=4096)
def _region_key(text: str) -> str:
    return re.sub(r"(省|市|自治区|壮族|回族|维吾尔|特别行政区)", "", text.strip().lower())


def matching_blocks(conn: Connection, *, region: str | None = None, carrier: str | None = None) -> list[int] | None:
    """Prefixes of the blocks in ``region`` (province or city, English or Chinese) of ``carrier``."""
    if not region and not carrier:
        return None
    stmt = select(number_blocks.c.prefix, number_blocks.c.province, number_blocks.c.city,
                  number_blocks.c.province_zh, number_blocks.c.city_zh)
    if carrier:
        stmt = stmt.where(number_blocks.c.carrier == carriers.canonical_name(carrier))
    rows = conn.execute(stmt.order_by(number_blocks.c.prefix)).all()
    if not region:
        return [r.prefix for r in rows]
    key = _region_key(region)
    found = [r.prefix for r in rows if key and key in {_region_key(v) for v in (r.province, r.city, r.province_zh, r.city_zh)}]
    if not found:
        every = conn.execute(select(number_blocks.c.province_zh).distinct()).scalars()
        known = ", ".join(sorted(p for p in every if p)) or "no blocks yet"
        raise InvalidValue("region", region, f"matches no block{' of ' + carrier if carrier else ''} (provinces: {known})")
    return found


def block_ranges(conn: Connection, *, region: str | None = None, carrier: str | None = None):
    """SQL ranges of ``msisdn`` covering the matching blocks (None: no filter)."""
    prefixes = matching_blocks(conn, region=region, carrier=carrier)
    return None if prefixes is None else ranges_of(prefixes)


def ranges_of(prefixes: list[int]):
    """SQL ranges of ``msisdn`` covering the blocks, one per run of consecutive blocks."""
    ranges, start, end = [], None, None
    for prefix in prefixes:
        if start is not None and prefix == end + 1:
            end = prefix
            continue
        if start is not None:
            ranges.append((start, end))
        start = end = prefix
    if start is not None:
        ranges.append((start, end))
    return [numbers.c.msisdn.between(a * BLOCK_SIZE, (b + 1) * BLOCK_SIZE - 1) for a, b in ranges]


def search(db: Store | Connection, query: SearchQuery, *, actor: str | None = None) -> list[Hit]:
    """Numbers matching ``query``, most valuable first, at most ``query.limit`` (``numbers.read``)."""
    require(actor, "numbers.read", "search numbers")
    if isinstance(db, Connection):
        return _search(db, query)
    with db.read() as conn:
        return _search(conn, query)


def _search(conn: Connection, query: SearchQuery) -> list[Hit]:
    if not isinstance(query.limit, int) or not 1 <= query.limit <= MAX_LIMIT:
        raise InvalidValue("limit", query.limit, f"must be a whole number from 1 to {MAX_LIMIT}")
    for name in ("min_price_fen", "max_price_fen"):
        value = getattr(query, name)
        if value is not None and (not isinstance(value, int) or value < 0):
            raise InvalidValue(name.replace("_fen", ""), value, "must be a non-negative amount")
    now = utc_now()
    grade_names = list(conn.execute(select(number_grades.c.grade).order_by(number_grades.c.position)).scalars())
    parsed = parse_pattern(query.pattern, grade_names) if query.pattern is not None else ParsedPattern("")
    conditions = []
    anchored = bool(parsed.anchors) and all(a.anchored for a in parsed.anchors)
    # With a pattern or a grade to drive the search, the state only filters its
    # candidates: as an expression it cannot tempt the planner into the state index.
    state_column = numbers.c.state.concat("") if anchored or parsed.grade or query.grade else numbers.c.state
    state = _state_condition(query.state, state_column, now)
    if state is not None:
        conditions.append(state)
    grades = _grade_filter(query.grade, grade_names)
    if parsed.grade:
        grades = [g for g in grades if g == parsed.grade] if grades is not None else [parsed.grade]
    grade_clause = None
    if grades is not None:
        grade_clause = numbers.c.grade.in_(grades) if grades else false()
    if query.min_price_fen is not None:
        conditions.append(numbers.c.price_fen >= query.min_price_fen)
    if query.max_price_fen is not None:
        conditions.append(numbers.c.price_fen <= query.max_price_fen)
    if query.region or query.carrier:
        prefixes = matching_blocks(conn, region=query.region, carrier=query.carrier)
        ranges = ranges_of(prefixes)
        tails = _tail_filter(parsed.anchors)
        if tails is not None and _region_is_narrower(conn, len(prefixes), parsed.anchors):
            # A region small next to a common tail pattern (*AABB in one city): walk the
            # region's blocks in order and test each tail, instead of many tail ranges.
            conditions.append(or_(false(), *ranges))
            conditions.append(tails)
            parsed = ParsedPattern(parsed.text)
        elif anchored or (grade_clause is not None and len(ranges) > MAX_GRADE_RANGES):
            # The pattern (or a grade common across many blocks) drives the index; the
            # block filter only checks its candidates.
            conditions.append((numbers.c.msisdn // BLOCK_SIZE).in_(prefixes))
        else:
            # One index range per run of blocks, on (grade, msisdn) when a grade is asked for.
            if grade_clause is not None:
                ranges = [and_(grade_clause, r) for r in ranges]
                grade_clause = None
            conditions.append(or_(false(), *ranges))
    if grade_clause is not None:
        conditions.append(grade_clause)
    if parsed.anchors:
        conditions.append(or_(*(_anchor_clause(a) for a in parsed.anchors)))
    stmt = select(numbers).where(*conditions)
    if parsed.regex:
        rows = _scan_with_regex(conn, stmt, parsed.regex, query.limit)
    else:
        rows = conn.execute(stmt.limit(query.limit)).mappings().all()
    return _hits(conn, rows, now)


def _state_condition(state: str | None, state_column, now):
    """The SQL test for ``state``; "available" includes reservations that have lapsed."""
    wanted = (state or "any").strip().lower()
    if wanted == "any":
        return None
    if wanted == "available":
        return or_(state_column == S.AVAILABLE.value,
                   and_(state_column == S.RESERVED.value, numbers.c.reserved_until <= now))
    if wanted == "reserved":
        return and_(state_column == S.RESERVED.value, numbers.c.reserved_until > now)
    if wanted not in {s.value for s in S}:
        raise InvalidValue("state", state, f"must be one of any, {', '.join(s.value for s in S)}")
    return state_column == wanted


def _tail_filter(anchors):
    """One ``msisdn % 10^k IN (...)`` test when every anchor is a plain tail (``*1122``)."""
    tails = [a.pattern[1:] for a in anchors if a.pattern.startswith("*") and a.pattern[1:].isdigit()]
    if not anchors or len(tails) != len(anchors) or len({len(t) for t in tails}) != 1:
        return None
    return (numbers.c.msisdn % (10 ** len(tails[0]))).in_(sorted(int(t) for t in tails))


def _region_is_narrower(conn: Connection, region_blocks: int, anchors) -> bool:
    """Whether scanning the region's blocks beats following the pattern's index ranges.

    Reading a block in order costs a fraction of an index probe plus a row look-up,
    hence the factor.
    """
    share_of_pattern = sum(10.0 ** -sum(c.isdigit() for c in a.pattern) for a in anchors)
    all_blocks = conn.execute(select(func.count()).select_from(number_blocks)).scalar() or 1
    return region_blocks / all_blocks < SEQUENTIAL_ADVANTAGE * share_of_pattern


def _anchor_clause(anchor):
    parts = []
    if anchor.msisdn_range:
        parts.append(numbers.c.msisdn.between(*anchor.msisdn_range))
    if anchor.rev_range:
        parts.append(numbers.c.rev.between(*anchor.rev_range))
    if anchor.like:
        parts.append(cast(numbers.c.msisdn, String).like(anchor.like))
    return and_(true(), *parts)


def _scan_with_regex(conn: Connection, stmt, regex: str, limit: int) -> list:
    """Letter patterns with too many letters to expand: stream candidates, test in Python."""
    compiled = re.compile(regex)
    found, last = [], -1
    while len(found) < limit:
        chunk = conn.execute(
            stmt.where(numbers.c.msisdn > last).order_by(numbers.c.msisdn).limit(_SCAN_CHUNK)
        ).mappings().all()
        if not chunk:
            break
        found += [row for row in chunk if compiled.match(str(row["msisdn"]))]
        last = chunk[-1]["msisdn"]
    return found[:limit]


def _grade_filter(grade: str | None, known: list[str]) -> list[str] | None:
    if not grade:
        return None
    by_upper = {k.upper(): k for k in known}
    result = []
    for name in (g.strip() for g in grade.split(",")):
        if name.upper() not in by_upper:
            raise InvalidValue("grade", name, f"unknown grade; known: {', '.join(known)}")
        result.append(by_upper[name.upper()])
    return result


def _hits(conn: Connection, rows, now) -> list[Hit]:
    if not rows:
        return []
    prefixes = sorted({row["msisdn"] // BLOCK_SIZE for row in rows})
    blocks = {b.prefix: b for b in conn.execute(select(number_blocks).where(number_blocks.c.prefix.in_(prefixes)))}
    grades = {g.grade: g for g in conn.execute(select(number_grades))}
    hits = []
    for row in rows:
        block = blocks.get(row["msisdn"] // BLOCK_SIZE)
        grade = grades.get(row["grade"])
        expired = row["state"] == S.RESERVED.value and row["reserved_until"] is not None and row["reserved_until"] <= now
        hits.append(Hit(
            msisdn=str(row["msisdn"]),
            display=display_msisdn(row["msisdn"]),
            carrier=block.carrier if block else "",
            province=block.province_zh if block else "",
            city=block.city_zh if block else "",
            state=S.AVAILABLE.value if expired else row["state"],
            grade=row["grade"],
            level=row["level"],
            price=str(fen_to_yuan(row["price_fen"])),
            min_monthly=str(fen_to_yuan(grade.min_monthly_fen)) if grade else "0.00",
            prepay=str(fen_to_yuan(grade.prepay_fen)) if grade else "0.00",
            holder=None if expired else row["holder"],
            reserved_until="" if expired else local(row["reserved_until"]),
        ))
    hits.sort(key=lambda h: (-h.level, h.msisdn))
    return hits
