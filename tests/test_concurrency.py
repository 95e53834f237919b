"""Allocation under concurrent writers: several OS processes allocate batches from the
same pool at once; no number is allocated twice and none is lost. On SQLite concurrent
CLI processes wait their turn instead of failing with "database is locked"."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from collections import Counter

import pytest
from sqlalchemy import func, select

from hkops.audit import audit_log
from hkops.numbers.tables import numbers

WORKERS = 4
ROUNDS = 6
BATCH = 10
# 180 AABB numbers in Beijing's two blocks, for 4 x 6 x 10 = 240 wanted: the pool runs out.
FILTERS = {"region": "北京", "grade": "AABB"}
POOL = 2 * 90


def allocate_in_rounds(url: str, worker: int, start, results) -> None:
    """One OS process: wait for the others, then allocate batch after batch."""
    from hkops.errors import Conflict
    from hkops.numbers import service
    from hkops.store.engine import Store

    store = Store(url)
    got, refused, errors = [], 0, []
    start.wait(timeout=120)
    for _ in range(ROUNDS):
        try:
            got.append(service.allocate_batch(store, BATCH, f"W{worker}", actor=f"worker-{worker}", **FILTERS))
        except Conflict:
            refused += 1
        except Exception as exc:  # reported to the test, which fails on it
            errors.append(f"{type(exc).__name__}: {exc}")
    store.dispose()
    results.put((worker, got, refused, errors))


def run_workers(url: str) -> list[tuple]:
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(WORKERS), context.Queue()
    processes = [context.Process(target=allocate_in_rounds, args=(url, w, start, results)) for w in range(WORKERS)]
    for process in processes:
        process.start()
    reports = [results.get(timeout=300) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return reports


def test_processes_allocating_from_the_same_pool_at_once_never_share_or_lose_a_number(world):
    reports = run_workers(world.url)

    assert [errors for *_, errors in reports] == [[]] * WORKERS
    holder_of: dict[str, str] = {}
    for worker, batches, refused, _ in reports:
        assert all(len(batch) == BATCH for batch in batches)
        assert len(batches) + refused == ROUNDS
        for msisdn in (m for batch in batches for m in batch):
            assert msisdn not in holder_of, f"{msisdn} allocated twice"
            holder_of[msisdn] = f"W{worker}"
    allocated = len(holder_of)
    assert allocated % BATCH == 0 and POOL - BATCH < allocated <= POOL

    with world.read() as conn:
        assigned = dict(conn.execute(select(numbers.c.msisdn, numbers.c.holder).where(numbers.c.state == "assigned")).all())
        allocations = Counter(conn.execute(
            select(audit_log.c.subject).where(audit_log.c.action == "allocate")).scalars())
        actors = dict(conn.execute(select(audit_log.c.subject, audit_log.c.actor).where(audit_log.c.action == "allocate")).all())
        left = conn.execute(select(func.count()).select_from(numbers).where(
            numbers.c.state == "available", numbers.c.grade == "AABB",
            (numbers.c.msisdn // 10_000).in_([1380013, 1891010]))).scalar()
    assert {str(m): h for m, h in assigned.items()} == holder_of
    assert len(assigned) == allocated
    assert set(allocations) == set(holder_of) and set(allocations.values()) == {1}
    assert all(actors[m] == "worker-" + holder_of[m][1:] for m in holder_of)
    assert left == POOL - allocated


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_concurrent_cli_processes_on_sqlite_wait_their_turn(world):
    env = {**os.environ, "HKOPS_DATABASE_URL": world.url}
    command = [sys.executable, "-m", "hkops", "numbers", "allocate", "--count", "25", "--region", "Shenzhen", "--json"]
    processes = [subprocess.Popen(command + ["--to", f"AG-{i}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env={**env, "HKOPS_ACTOR": f"desk-{i}"}) for i in range(WORKERS)]
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (out, err) in zip(processes, outputs):
        assert "locked" not in err
        assert process.returncode == 0, err
    batches = [json.loads(out) for out, _ in outputs]
    taken = [m for batch in batches for m in batch]
    assert all(len(batch) == 25 for batch in batches) and len(set(taken)) == len(taken) == 25 * WORKERS
    with world.read() as conn:
        holders = dict(conn.execute(select(numbers.c.msisdn, numbers.c.holder).where(numbers.c.state == "assigned")).all())
    assert {str(m): h for m, h in holders.items()} == {m: f"AG-{i}" for i, batch in enumerate(batches) for m in batch}
