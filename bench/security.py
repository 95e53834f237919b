"""Security: ``python -m bench security [--json]``.

- ``audit_verify_1m_s`` (goal ≤ 10): ``hkops.audit.verify`` over a chain of 1,000,000 audit
  records on a SQLite file (streamed in id order, each record's HMAC recomputed, every
  link checked). The chain is built first with the bulk writer (``audit.record`` in
  batches of 100,000 events, hashes computed in one loop per batch): ``audit_build_1m_s``.
  ``audit_verify_1m_s_pg`` and ``audit_build_1m_s_pg``: the same on PostgreSQL (COPY for the
  writes, a server-side cursor for verify), in a database made for it next to
  ``HKOPS_BENCH_POSTGRES_URL``'s and dropped after.
- ``orders_per_s_chain`` and ``orders_per_s_no_chain``: the work of ``orders_per_s`` in
  ``bench/orders.py`` (create_orders + pay_orders, 500 orders at a time, audit included),
  7,000 orders on one fresh SQLite file after a warm-up batch, the chain switched on and off
  batch by batch by the module flag ``hkops.audit.CHAIN`` (off: records written as before
  the chain, no head read, no HMAC) in the order off, on, on, off, off, on, on, off, ... so
  that the growing database weighs on both alike; each figure is the rate of the median
  batch of its side (the machine is shared: a burst from another process would otherwise
  decide the comparison). ``chain_cost_pct`` (goal ≤ 15) is how much slower the chained
  batches are.
- ``console_login_plot_s`` beside ``console_plot_s`` (and ``login_s``): one round of
  ``python -m bench consoles`` (bench/consoles.py): from opening the login page to the
  allocation console's first chart in Chromium, and the same page for a user already logged in.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

RECORDS = 1_000_000
BATCH = 100_000
ORDERS = 7_000  # a block holds about 8,400 plain numbers


def build_chain(url: str, records: int = RECORDS):
    """The database at ``url`` migrated and holding ``records`` chained audit records; (store, seconds)."""
    from hkops import audit
    from hkops.store import migrate
    from hkops.store.engine import Store

    store = Store(url)
    migrate.upgrade(store)
    started = time.perf_counter()
    for first in range(0, records, BATCH):
        events = [audit.Event("number", str(13800130000 + n % 10_000), "allocate", "reserved", "assigned",
                              "bench", {"holder": f"C{n:06d}"}) for n in range(first, min(first + BATCH, records))]
        with store.write() as conn:
            audit.record(conn, "bench", events)
    return store, time.perf_counter() - started


def bench_verify(url: str, records: int = RECORDS) -> tuple[float, float]:
    """(seconds to build, seconds to verify) a chain of ``records`` records in the database at ``url``."""
    from hkops import audit

    store, built = build_chain(url, records)
    try:
        started = time.perf_counter()
        verdict = audit.verify(store)
        took = time.perf_counter() - started
        assert verdict.intact and verdict.count == records, verdict
        return built, took
    finally:
        store.dispose()


def bench_orders_chain(work: Path) -> tuple[float, float]:
    """(orders per second with the chain, without it): ``ORDERS`` orders on one database in
    batches of ``bench.orders.BATCH`` (create_orders + pay_orders), a first batch to warm up,
    then the chain switched on and off batch by batch in the order off, on, on, off, ...
    Each figure is the rate of the median batch of its side: the machine is shared, and a
    batch that meets another process's burst would otherwise decide the comparison."""
    from statistics import median

    from bench.orders import BATCH, _request, _world
    from hkops import audit
    from hkops.orders import intake
    from hkops.orders import service as orders

    store, keyring = _world(work, "orders-chain.db", ORDERS + BATCH)
    rates: dict[bool, list[float]] = {True: [], False: []}
    try:
        for n, first in enumerate(range(0, ORDERS + BATCH, BATCH)):
            chain = n % 4 in (2, 3)  # batch 0 warms up; then off, on, on, off, off, on, on, off...
            audit.CHAIN = chain
            requests = [_request(i) for i in range(first, first + BATCH)]
            started = time.perf_counter()
            placed = intake.create_orders(store, requests, actor="bench", keyring=keyring)
            paid = orders.pay_orders(store, [(o.number, o.total_fen, "alipay", f"A{o.id}") for o in placed],
                                     actor="bench")
            took = time.perf_counter() - started
            assert len(paid) == BATCH and all(o.state == "allocated" for o in paid), paid
            if n:
                rates[chain].append(BATCH / took)
    finally:
        audit.CHAIN = True
        store.dispose()
    return median(rates[True]), median(rates[False])


def _on_postgres(bench):
    """``bench(url)`` on a new PostgreSQL database next to ``HKOPS_BENCH_POSTGRES_URL``'s, dropped after."""
    import os
    import uuid

    from sqlalchemy import create_engine, text

    url = os.environ.get("HKOPS_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    name = f"hkops_bench_audit_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT",
                          connect_args={"connect_timeout": 3})
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        return bench(url.rsplit("/", 1)[0] + "/" + name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run(log=None) -> dict:
    import os

    say = log or (lambda *_: None)
    with tempfile.TemporaryDirectory(prefix="hkops-bench-security-") as folder:
        work = Path(folder)
        os.environ.setdefault("HKOPS_AUDIT_KEY_FILE", str(work / "audit.key"))
        say(f"{RECORDS:,} chained audit records: build with the bulk writer, then verify")
        built, verified = bench_verify(f"sqlite:///{work / 'audit.db'}")
        result = {"audit_verify_1m_s": round(verified, 2), "audit_build_1m_s": round(built, 2)}
        say("the same on PostgreSQL (a database made for it and dropped)")
        try:
            built, verified = _on_postgres(bench_verify)
            result.update(audit_verify_1m_s_pg=round(verified, 2), audit_build_1m_s_pg=round(built, 2))
        except Exception as exc:  # report, do not hide, a missing server
            result.update(audit_verify_1m_s_pg=None, audit_pg_error=f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
        say("orders_per_s with and without the audit chain")
        chain, no_chain = bench_orders_chain(work)
        result["orders_per_s_chain"] = round(chain, 1)
        result["orders_per_s_no_chain"] = round(no_chain, 1)
        result["chain_cost_pct"] = round(100 * (1 - chain / no_chain), 1)
    say("the consoles behind their login page (one round of bench consoles)")
    from bench import consoles

    pages = consoles.run(runs=1)
    result.update({key: pages[key] for key in ("console_login_plot_s", "console_plot_s", "login_s")})
    return result
