"""Number resources against their anchors, measured in one run.

- import: 1,000,000 graded numbers created through hkops (``add_blocks``) on SQLite,
  against a raw ``sqlite3`` executemany of the same rows into a table of the same
  shape (same columns and indexes, made by the same migrations), twice: with the
  connection settings hkops uses (``SQLITE_PRAGMAS``: WAL, synchronous=NORMAL, 64 MiB page
  cache, mmap; ``import_ratio`` is against this one) and with sqlite3's defaults.
- search: 20 typical vanity queries through hkops over a large pool, against a plain
  LIKE / regex scan of the same pool answering the same questions.
- allocation: batch allocation throughput on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import random
import re
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from sqlalchemy import text

from hkops import carriers
from hkops.errors import InvalidValue
from hkops.ids import block_info
from hkops.numbers import service
from hkops.numbers.search import SearchQuery, search
from hkops.store import migrate
from hkops.store.engine import SQLITE_PRAGMAS, Store

SEGMENTS = ["134", "135", "136", "137", "138", "139", "150", "151", "152", "157", "158", "159", "182", "183",
            "187", "188", "130", "131", "132", "155", "156", "185", "186", "133", "153", "180", "181", "189"]

#: 20 typical vanity queries: (pattern, filters).
QUERIES: list[tuple[str | None, dict]] = [
    ("*8888", {}),
    ("*6666", {"region": "广东"}),
    ("*888", {"limit": 100}),
    ("{first_block}????", {}),
    ("138*520", {}),
    ("AABB", {"limit": 20}),
    ("ABCD", {}),
    ("AAAA", {"carrier": "China Unicom"}),
    ("*1314", {}),
    ("*520", {"region": "北京"}),
    ("*168", {"max_price_fen": 20_000}),
    ("*ABAB", {}),
    ("*AABB", {"region": "上海"}),
    ("139????8888", {}),
    ("*9999", {"state": "any"}),
    ("*0000", {}),
    (None, {"grade": "AAAB", "region": "浙江"}),
    ("*518", {"carrier": "China Telecom"}),
    ("186*88", {}),
    ("AAAAA", {"state": "any", "limit": 100}),
]


def real_blocks(count: int, seed: int = 1) -> list[str]:
    """``count`` distinct real blocks of the three main carriers with a known province."""
    rng = random.Random(seed)
    found: set[str] = set()
    while len(found) < count:
        prefix = rng.choice(SEGMENTS) + f"{rng.randrange(10_000):04d}"
        if prefix in found:
            continue
        try:
            info = block_info(prefix)
        except InvalidValue:
            continue
        if info.carrier in carriers.MAIN_THREE and info.province_zh:
            found.add(prefix)
    return sorted(found)


def new_store(url: str) -> Store:
    store = Store(url)
    if store.dialect == "postgresql":
        with store.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    migrate.upgrade(store)
    with store.write() as conn:
        carriers.configure(conn, list(carriers.MAIN_THREE), actor="bench")
    return store


def build_pool(store: Store, blocks: list[str], chunk: int = 50) -> float:
    """Create the numbers of ``blocks`` through hkops; returns the seconds it took."""
    started = time.perf_counter()
    for start in range(0, len(blocks), chunk):
        service.add_blocks(store, blocks[start:start + chunk], actor="bench")
    return time.perf_counter() - started


def bench_import(work: Path, blocks: list[str]) -> dict:
    store = new_store(f"sqlite:///{work / 'import.db'}")
    seconds = build_pool(store, blocks, chunk=len(blocks))
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT msisdn, rev, state, grade, level, price_fen FROM numbers").all()
    store.dispose()

    rows = [tuple(r) for r in rows]
    raw = _raw_insert(work / "raw.db", rows, ())
    tuned = _raw_insert(work / "raw_tuned.db", rows, SQLITE_PRAGMAS)
    return {"import_1m_s": round(seconds, 3), "raw_insert_1m_s": round(raw, 3),
            "raw_insert_tuned_1m_s": round(tuned, 3), "import_ratio": round(seconds / tuned, 2),
            "import_ratio_defaults": round(seconds / raw, 2), "import_rows": len(rows)}


def _raw_insert(path: Path, rows: list[tuple], pragmas: tuple[str, ...]) -> float:
    """Seconds to ``executemany`` ``rows`` into a freshly migrated numbers table with plain sqlite3:
    sqlite3's defaults (no pragmas), or the settings hkops gives its connections."""
    raw_store = Store(f"sqlite:///{path}")
    migrate.upgrade(raw_store)
    raw_store.dispose()
    connection = sqlite3.connect(path)
    if not pragmas:
        connection.execute("PRAGMA journal_mode=DELETE")  # the migration left the file in WAL mode
    for pragma in pragmas:
        connection.execute(pragma)
    started = time.perf_counter()
    connection.executemany(
        "INSERT INTO numbers (msisdn, rev, state, grade, level, price_fen) VALUES (?, ?, ?, ?, ?, ?)", rows)
    connection.commit()
    seconds = time.perf_counter() - started
    connection.close()
    return seconds


def _scan_sql(pattern: str | None, filters: dict) -> tuple[str, list, str | None]:
    """The same question as a plain scan: LIKE (or a regex in Python) over every row."""
    from hkops.numbers.patterns import normalise, to_regex

    where, params, regex = ["1=1"], [], None
    if pattern:
        p = normalise(pattern)
        if "*" not in p and len(p) < 11:
            p = "*" + p
        if any(c.isalpha() for c in p):
            regex = to_regex(p) if p not in ("*AABB", "*ABCD", "*AAAA", "*AAAAA") else None
            if regex is None:
                where.append("grade = ?")
                params.append(p.lstrip("*"))
        else:
            where.append("CAST(msisdn AS TEXT) LIKE ?")
            params.append(p.replace("?", "_").replace("*", "%"))
    if filters.get("grade"):
        where.append("grade = ?")
        params.append(filters["grade"])
    state = filters.get("state", "available")
    if state != "any":
        where.append("state = ?")
        params.append(state)
    if filters.get("max_price_fen") is not None:
        where.append("price_fen <= ?")
        params.append(filters["max_price_fen"])
    return " AND ".join(where), params, regex


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def store_first_block(store: Store) -> int:
    with store.read() as conn:
        return conn.exec_driver_sql("SELECT min(prefix) FROM number_blocks").scalar()


def bench_search(store: Store, db_path: Path, repeats: int = 5) -> dict:
    timings, counts = [], []
    first_block = str(store_first_block(store))
    queries = [(p.format(first_block=first_block) if p else p, f) for p, f in QUERIES]
    for pattern, filters in queries:
        query = SearchQuery(pattern=pattern, **filters)
        search(store, query)
        for _ in range(repeats):
            started = time.perf_counter()
            hits = search(store, query)
            timings.append((time.perf_counter() - started) * 1000)
        counts.append(len(hits))

    connection = sqlite3.connect(db_path)
    blocks = {row[0]: row[1:] for row in connection.execute("SELECT prefix, carrier, province_zh, city_zh FROM number_blocks")}
    scan_timings = []
    for pattern, filters in queries:
        where, params, regex = _scan_sql(pattern, filters)
        limit = filters.get("limit", 50)
        wanted_region = filters.get("region")
        wanted_carrier = filters.get("carrier")
        compiled = re.compile(regex) if regex else None
        started = time.perf_counter()
        found = []
        for row in connection.execute(f"SELECT msisdn, state, grade FROM numbers NOT INDEXED WHERE {where}", params):
            block = blocks[row[0] // 10_000]
            if wanted_region and not any(wanted_region in part for part in block[1:]):
                continue
            if wanted_carrier and block[0] != wanted_carrier:
                continue
            if compiled and not compiled.match(str(row[0])):
                continue
            found.append(row)
            if len(found) >= limit:
                break
        scan_timings.append((time.perf_counter() - started) * 1000)
    connection.close()
    search_p95 = _percentile(timings, 0.95)
    scan_p95 = _percentile(scan_timings, 0.95)
    return {
        "search_p95_ms": round(search_p95, 2),
        "search_median_ms": round(statistics.median(timings), 2),
        "scan_p95_ms": round(scan_p95, 1),
        "scan_median_ms": round(statistics.median(scan_timings), 1),
        "scan_to_search_p95": round(scan_p95 / search_p95, 1),
        "search_queries": len(QUERIES),
        "search_hits": counts,
    }


def bench_allocate(store: Store, batches: int = 5, size: int = 2_000) -> float:
    started = time.perf_counter()
    for index in range(batches):
        service.allocate_batch(store, size, f"bench-{index}", actor="bench")
    return round(batches * size / (time.perf_counter() - started), 1)


def run(pool_size: int = 10_000_000, log: Callable[[str], None] | None = None) -> dict:
    log = log or (lambda _message: None)
    postgres_url = os.environ.get("HKOPS_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    with tempfile.TemporaryDirectory(prefix="hkops-bench-") as folder:
        work = Path(folder)
        result: dict = {}
        blocks = real_blocks(max(100, pool_size // 10_000))
        log("import of 1,000,000 numbers against raw executemany")
        result.update(bench_import(work, blocks[:100]))

        log(f"building a {pool_size:,}-number pool")
        pool_path = work / "pool.db"
        store = new_store(f"sqlite:///{pool_path}")
        result["pool_build_s"] = round(build_pool(store, blocks[: pool_size // 10_000]), 1)
        with store.write() as conn:
            conn.exec_driver_sql("UPDATE numbers SET state = 'assigned', holder = 'bench' WHERE msisdn % 7 = 0")
        result["pool_size"] = pool_size
        log("search against scan")
        result.update(bench_search(store, pool_path))
        log("allocation on SQLite")
        result["allocate_per_s_sqlite"] = bench_allocate(store)
        store.dispose()

        log("allocation on PostgreSQL")
        try:
            pg = new_store(postgres_url)
            build_pool(pg, blocks[:20])
            result["allocate_per_s_pg"] = bench_allocate(pg)
            pg.dispose()
        except Exception as exc:  # report, do not hide, a missing server
            result["allocate_per_s_pg"] = None
            result["allocate_pg_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    result["goals"] = {"import_ratio": "<= 2.0", "search_p95_ms": "<= 20", "scan_to_search_p95": ">= 20",
                       "allocate_per_s_sqlite": ">= 5000"}
    return result
