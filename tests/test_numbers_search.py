"""Searching the pool: patterns, classes, region, carrier, grade, state, price and limit;
a property test against a brute-force filter; invalid patterns refused."""

from __future__ import annotations

import random
import re
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from hkops import carriers
from hkops.errors import InvalidValue
from hkops.numbers import service
from hkops.numbers.model import NumberState as S
from hkops.numbers.search import SearchQuery, search
from hkops.numbers.tables import numbers
from strategies import DEFAULT_CLASSES, clock, search_patterns  # noqa: F401


def found(db, pattern=None, **kwargs) -> list[str]:
    kwargs.setdefault("limit", 10_000)
    return [h.msisdn for h in search(db, SearchQuery(pattern=pattern, **kwargs))]


# --------------------------------------------------------------------- patterns on the world


def test_tail_prefix_and_middle_patterns_find_exactly_the_matching_numbers(world):
    assert sorted(found(world, "*8888")) == ["13800138888", "18607558888", "18910108888"]
    assert sorted(found(world, "8888")) == sorted(found(world, "*8888"))
    block = found(world, "1380013????")
    assert sorted(block) == [f"1380013{i:04d}" for i in range(10_000)]
    assert sorted(found(world, "138*520")) == [f"1380013{i}520" for i in range(10)]
    assert sorted(found(world, "138 0013 88?8")) == [f"138001388{i}8" for i in range(10)]
    assert found(world, "13800138888") == ["13800138888"]
    assert found(world, "13900008888") == []
    assert len(found(world, "*")) == 10_000


def test_class_names_find_the_numbers_of_that_grade(world):
    aabb = found(world, "AABB")
    assert len(aabb) == 270
    assert all(re.fullmatch(r"\d{7}(\d)\1(?!\1)(\d)\2", m) for m in aabb)
    abcd = found(world, "abcd")
    assert "13800131234" in abcd and "13800139876" in abcd and "13800134567" not in abcd
    assert {h.grade for h in search(world, SearchQuery(pattern="ABCD", limit=10_000))} == {"ABCD"}


def test_letter_patterns_match_same_letters_to_same_digits_and_different_letters_to_different_digits(world):
    abab = found(world, "*ABAB")
    assert len(abab) == 270
    assert all(m[-4] == m[-2] != m[-3] == m[-1] for m in abab)
    mixed = found(world, "1860755A?AB")
    assert mixed and all(m[7] == m[9] != m[10] for m in mixed)
    assert len(mixed) == 10 * 10 * 9
    assert found(world, "*ABCDE") and all(len(set(m[-5:])) == 5 for m in found(world, "*ABCDE", limit=500))


# --------------------------------------------------------------------- filters


def test_region_and_carrier_filters_take_chinese_or_english_names(world):
    beijing = {"1380013", "1891010"}
    for region in ("北京", "北京市", "Beijing", "beijing"):
        assert {m[:7] for m in found(world, "*88", region=region)} == beijing
    for region in ("广东", "广东省", "Guangdong", "深圳", "深圳市", "Shenzhen"):
        assert {m[:7] for m in found(world, "*88", region=region)} == {"1860755"}
    assert {m[:7] for m in found(world, region="Beijing", limit=10_000)} <= beijing
    assert {m[:7] for m in found(world, "*88", carrier="中国联通")} == {"1860755"}
    assert {m[:7] for m in found(world, "*88", carrier="china telecom", region="北京")} == {"1891010"}
    assert found(world, "*88", carrier="China Broadnet") == []
    assert found(world, carrier="China Broadnet") == []


def test_grade_and_price_filters_take_classes_and_an_inclusive_range_in_fen(world):
    assert sorted(found(world, grade="AAAAA")) == ["13800133333", "18607555555", "18910100000"]
    both = search(world, SearchQuery(grade="aaaa, AAAAA", limit=10_000))
    assert len(both) == 30 and {h.grade for h in both} == {"AAAA", "AAAAA"}
    assert found(world, "*8888", grade="ORDINARY") == []
    dear = search(world, SearchQuery(min_price_fen=288_800, limit=10_000))
    assert {h.grade for h in dear} == {"AAAA", "AAAAA"}
    free = search(world, SearchQuery(pattern="1380013????", max_price_fen=0, limit=10_000))
    assert free and {h.grade for h in free} == {"FOUR"} and {h.price for h in free} == {"0.00"}
    band = search(world, SearchQuery(pattern="*8", min_price_fen=2_000, max_price_fen=5_000, limit=10_000))
    assert band and {h.grade for h in band} == {"EIGHT", "PAIR"}


def test_results_come_most_valuable_first_and_stop_at_the_limit(world):
    hits = search(world, SearchQuery(pattern="1380013????", limit=50))
    assert len(hits) == 50
    assert [(-h.level, h.msisdn) for h in hits] == sorted((-h.level, h.msisdn) for h in hits)
    assert hits[0].level > hits[-1].level
    assert len(found(world, "*88", limit=7)) == 7
    [top] = search(world, SearchQuery(pattern="*8888", region="Shenzhen", limit=1))
    assert (top.msisdn, top.display, top.carrier, top.province, top.city, top.state, top.grade) == (
        "18607558888", "186 0755 8888", "China Unicom", "广东省", "深圳市", "available", "AAAA")
    assert (top.level, top.price, top.min_monthly, top.prepay, top.holder) == (9, "2888.00", "889.00", "2000.00", None)


def test_state_filter_counts_expired_reservations_as_available(world, clock):
    service.reserve(world, "13800138888", "C1", actor="ana", ttl="30m")
    service.allocate(world, "18607558888", "C2", actor="ana")
    assert found(world, "*8888") == ["18910108888"]
    reserved = search(world, SearchQuery(pattern="*8888", state="reserved"))
    assert [(h.msisdn, h.state, h.holder) for h in reserved] == [("13800138888", "reserved", "C1")]
    assert found(world, "*8888", state="assigned") == ["18607558888"]
    assert len(found(world, "*8888", state="any")) == 3
    clock.advance(minutes=30)
    hits = search(world, SearchQuery(pattern="*8888"))
    assert sorted(h.msisdn for h in hits) == ["13800138888", "18910108888"]
    lapsed = next(h for h in hits if h.msisdn == "13800138888")
    assert (lapsed.state, lapsed.holder, lapsed.reserved_until) == ("available", None, "")
    assert found(world, "*8888", state="reserved") == []
    assert service.stats(world)["by_state"]["reserved"] == 0


# --------------------------------------------------------------------- refusals


BAD_QUERIES = [
    ({"pattern": "13x!"}, "pattern '13x!': may hold only digits, ?, * and capital letters, not !"),
    ({"pattern": "138001388888"}, "pattern '138001388888': has 12 positions; a number has 11"),
    ({"pattern": "1380013888*88"}, "has 12 positions"),
    ({"pattern": ""}, "pattern '': is empty"),
    ({"pattern": " - "}, "pattern ' - ': is empty"),
    ({"pattern": "*ABCDEFGHIJK"}, "uses more than 10 different letters"),
    ({"pattern": "13８8"}, "may hold only digits"),
    ({"state": "sold"}, "state 'sold': must be one of any, planned, available"),
    ({"grade": "GOLD"}, "grade 'GOLD': unknown grade"),
    ({"region": "Atlantis"}, "region 'Atlantis': matches no block"),
    ({"carrier": "Vodafone"}, "carrier 'Vodafone': unknown carrier"),
    ({"limit": 0}, "limit 0: must be a whole number from 1 to 10000"),
    ({"limit": 10_001}, "limit 10001"),
    ({"min_price_fen": -1}, "min_price -1: must be a non-negative amount"),
]


def test_a_query_that_is_not_a_query_is_refused_naming_the_field_and_value(world):
    for kwargs, fragment in BAD_QUERIES:
        with pytest.raises(InvalidValue) as caught:
            search(world, SearchQuery(**kwargs))
        assert fragment in str(caught.value), kwargs


# --------------------------------------------------------------------- against a brute-force filter


REGIONS = {
    None: None, "北京": {1380013, 1891010}, "Beijing": {1380013, 1891010}, "广东省": {1860755},
    "Shenzhen": {1860755}, "新疆": {1390000}, "乌鲁木齐": {1390000}, "Xinjiang": {1390000},
}
CARRIERS = {None: None, "China Mobile": {1380013, 1390000}, "中国联通": {1860755}, "China Telecom": {1891010}}
POOL_BLOCKS = ["1380013", "1860755", "1891010", "1390000"]
VANITY_TAILS = ["0000", "8888", "3333", "1234", "4321", "5678", "1122", "1212", "1221", "7778", "1888", "0520",
                "1314", "0168", "0088", "0066", "0008", "0004", "9999", "2345", "6789", "3210"]


@pytest.fixture
def small_pool(db, clock, tmp_path):
    """Four blocks holding 320 imported numbers spread over every state the search knows."""
    with db.write() as conn:
        carriers.configure(conn, list(carriers.MAIN_THREE), actor="tester")
    service.add_blocks(db, POOL_BLOCKS, actor="setup", empty=True)
    rng = random.Random(5)
    tails = VANITY_TAILS + [f"{rng.randrange(10_000):04d}" for _ in range(58)]
    chosen = sorted({block + tail for block in POOL_BLOCKS for tail in tails})
    path = tmp_path / "pool.txt"
    path.write_text("\n".join(chosen) + "\n", encoding="utf-8")
    service.import_numbers(db, path, actor="setup")
    shuffled = [int(m) for m in chosen]
    rng.shuffle(shuffled)
    groups = [shuffled[start:start + 20] for start in range(0, 120, 20)]
    now = clock.now
    holders = {m: f"C{m % 1000}" for m in shuffled}
    with db.write() as conn:
        def move(group, start, end, action, **kwargs):
            service.move_many(conn, sorted(group), start, end, action, actor="setup", reason=None, now=now, **kwargs)

        lapsing, held, assigned, active, blocked, ended = groups
        move(lapsing + held, S.AVAILABLE, S.RESERVED, "reserve", per_number={
            m: {"holder": holders[m], "reserved_until": now + (timedelta(minutes=10) if m in lapsing else timedelta(hours=2))}
            for m in lapsing + held})
        move(assigned + active + ended, S.AVAILABLE, S.ASSIGNED, "allocate",
             per_number={m: {"holder": holders[m]} for m in assigned + active + ended})
        move(active, S.ASSIGNED, S.ACTIVE, "activate")
        move(ended, S.ASSIGNED, S.QUARANTINED, "terminate", values={"holder": None, "quarantine_until": now + timedelta(days=90)},
             per_number={m: {"last_holder": holders[m]} for m in ended})
        move(blocked, S.AVAILABLE, S.BLOCKED, "block", values={"blocked_from": "available"})
    clock.advance(minutes=20)
    return db, chosen


def glob_match(pattern: str, text: str, bound: dict | None = None) -> bool:
    """Digits match themselves, ? one digit, * any run, a letter one digit (same letter, same digit;
    different letters, different digits)."""
    bound = bound or {}
    if not pattern:
        return not text
    head, rest = pattern[0], pattern[1:]
    if head == "*":
        return any(glob_match(rest, text[i:], bound) for i in range(len(text) + 1))
    if not text:
        return False
    digit = text[0]
    if head == "?" or head == digit:
        return glob_match(rest, text[1:], bound)
    if head.isalpha():
        if head in bound:
            return bound[head] == digit and glob_match(rest, text[1:], bound)
        return digit not in bound.values() and glob_match(rest, text[1:], {**bound, head: digit})
    return False


def brute_force(rows: list[dict], now, pattern, region, carrier, grade, state, low, high) -> set[str]:
    wanted = None
    if pattern is not None:
        text = re.sub(r"[\s\-]", "", pattern).upper()
        if text in DEFAULT_CLASSES:
            grade = ",".join(g for g in (grade or text).split(",") if g == text) or "-"
            wanted = None
        else:
            wanted = text if "*" in text or len(text) == 11 else "*" + text
    blocks = None
    for chosen in (REGIONS[region], CARRIERS[carrier]):
        if chosen is not None:
            blocks = chosen if blocks is None else blocks & chosen
    result = set()
    for row in rows:
        effective = "available" if row["state"] == "reserved" and row["reserved_until"] <= now else row["state"]
        if state != "any" and effective != state:
            continue
        if blocks is not None and row["msisdn"] // 10_000 not in blocks:
            continue
        if grade is not None and row["grade"] not in grade.split(","):
            continue
        if low is not None and row["price_fen"] < low or high is not None and row["price_fen"] > high:
            continue
        if wanted is not None and not glob_match(wanted, str(row["msisdn"])):
            continue
        result.add(str(row["msisdn"]))
    return result


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_search_results_equal_a_brute_force_filter_over_the_whole_pool(small_pool, clock, data):
    db, chosen = small_pool
    pattern = data.draw(st.one_of(st.none(), search_patterns(chosen), st.sampled_from(DEFAULT_CLASSES)), "pattern")
    region = data.draw(st.sampled_from(list(REGIONS)), "region")
    carrier = data.draw(st.sampled_from(list(CARRIERS)), "carrier")
    grade = data.draw(st.one_of(st.none(), st.sampled_from(["AAAA", "ORDINARY", "EIGHT,PAIR", "ABCD,AABB,LUCKY"])), "grade")
    state = data.draw(st.sampled_from(["available", "reserved", "assigned", "active", "blocked", "quarantined", "any"]))
    low = data.draw(st.one_of(st.none(), st.sampled_from([0, 1_000, 2_000, 50_000])), "min")
    high = data.draw(st.one_of(st.none(), st.sampled_from([0, 1_000, 5_000, 300_000])), "max")
    with db.read() as conn:
        rows = [dict(r) for r in conn.execute(select(numbers)).mappings()]
    query = SearchQuery(pattern=pattern, region=region, carrier=carrier, grade=grade, state=state,
                        min_price_fen=low, max_price_fen=high, limit=10_000)
    blocks_left = REGIONS[region] if CARRIERS[carrier] is None or REGIONS[region] is None else REGIONS[region] & CARRIERS[carrier]
    if blocks_left == set():
        with pytest.raises(InvalidValue, match="matches no block"):
            search(db, query)
        return
    hits = search(db, query)
    expected = brute_force(rows, clock.now, pattern, region, carrier, grade, state, low, high)
    assert sorted(h.msisdn for h in hits) == sorted(expected)
    assert [(-h.level, h.msisdn) for h in hits] == sorted((-h.level, h.msisdn) for h in hits)
    limited = search(db, SearchQuery(pattern=pattern, region=region, carrier=carrier, grade=grade, state=state,
                                     min_price_fen=low, max_price_fen=high, limit=3))
    assert len(limited) == min(3, len(expected)) and {h.msisdn for h in limited} <= expected
