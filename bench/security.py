"""Security: ``python -m bench security [--json]``.

- ``audit_verify_1m_s`` (goal ≤ 10): ``hkops.audit.verify`` over a chain of 1,000,000 audit
  records on a SQLite file (streamed in id order, each record's HMAC recomputed, every
  link checked). The chain is built first with the bulk writer (``audit.record`` in
  batches of 100,000 events, hashes computed in one loop per batch): ``audit_build_1m_s``.
- ``orders_per_s_chain`` and ``orders_per_s_no_chain``: the ``orders_per_s`` figure of
  ``bench/orders.py`` (2,000 orders through create_orders + pay_orders, 500 at a time, on a
  fresh SQLite file) with the audit chain on, and with it switched off by the module flag
  ``hkops.audit.CHAIN = False`` (records then written as before the chain: no head read, no
  HMAC). The two run alternately, three times each, in this process; each figure is the best
  of its three runs. ``chain_cost_pct`` (goal ≤ 15) is how much slower the chained run is.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

RECORDS = 1_000_000
BATCH = 100_000
ROUNDS = 3


def build_chain(work: Path, records: int = RECORDS):
    """A SQLite database holding ``records`` chained audit records; (store, seconds)."""
    from hkops import audit
    from hkops.store import migrate
    from hkops.store.engine import Store

    store = Store(f"sqlite:///{work / 'audit.db'}")
    migrate.upgrade(store)
    started = time.perf_counter()
    for first in range(0, records, BATCH):
        events = [audit.Event("number", str(13800130000 + n % 10_000), "allocate", "reserved", "assigned",
                              "bench", {"holder": f"C{n:06d}"}) for n in range(first, min(first + BATCH, records))]
        with store.write() as conn:
            audit.record(conn, "bench", events)
    return store, time.perf_counter() - started


def bench_verify(work: Path, records: int = RECORDS) -> tuple[float, float]:
    """(seconds to build, seconds to verify) a chain of ``records`` records."""
    from hkops import audit

    store, built = build_chain(work, records)
    try:
        started = time.perf_counter()
        verdict = audit.verify(store)
        took = time.perf_counter() - started
        assert verdict.intact and verdict.count == records, verdict
        return built, took
    finally:
        store.dispose()


def bench_orders_chain(work: Path) -> tuple[float, float]:
    """(orders per second with the chain, without it), alternating runs, best of each."""
    from bench.orders import bench_orders
    from hkops import audit

    best = {True: 0.0, False: 0.0}
    try:
        for n in range(ROUNDS):
            for chain in (False, True):
                audit.CHAIN = chain
                folder = work / f"orders-{n}-{int(chain)}"
                folder.mkdir()
                best[chain] = max(best[chain], bench_orders(folder))
    finally:
        audit.CHAIN = True
    return best[True], best[False]


def run(log=None) -> dict:
    import os

    say = log or (lambda *_: None)
    with tempfile.TemporaryDirectory(prefix="hkops-bench-security-") as folder:
        work = Path(folder)
        os.environ.setdefault("HKOPS_AUDIT_KEY_FILE", str(work / "audit.key"))
        say(f"{RECORDS:,} chained audit records: build with the bulk writer, then verify")
        built, verified = bench_verify(work)
        result = {"audit_verify_1m_s": round(verified, 2), "audit_build_1m_s": round(built, 2)}
        say("orders_per_s with and without the audit chain")
        chain, no_chain = bench_orders_chain(work)
        result["orders_per_s_chain"] = round(chain, 1)
        result["orders_per_s_no_chain"] = round(no_chain, 1)
        result["chain_cost_pct"] = round(100 * (1 - chain / no_chain), 1)
    return result
