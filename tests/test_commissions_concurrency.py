"""Commissions under concurrent OS processes (on SQLite and PostgreSQL; in CI PostgreSQL must be
there): withdrawals requested at once for one agent never take more than its available balance,
and accrual run by two processes at once writes exactly the ledger one run writes."""

from __future__ import annotations

import multiprocessing
from datetime import date

from sqlalchemy import func, select

from distribution_world import distribution  # noqa: F401  (fixture)
from hkops.commissions import service as commissions
from hkops.commissions.tables import agent_ledger, commission_entries, withdrawals
from hkops.errors import InvalidValue
from hkops.orders import service as orders
from test_cards_lifecycle import hlr  # noqa: F401  (fixture)
from test_commissions import NOW, RULES, _at, _scheme, _settle, _sold_by_a3, clock  # noqa: F401  (clock: fixture)

WORKERS = 4
REQUESTS_EACH = 5
AMOUNT = "5.00"  # 500 fen; 20 requests want 10,000 fen of A3's 8,320
#: Every limit but the balance out of the way: no minimum to speak of, no frequency limit or cap.
OPEN_RULES = {**RULES, "minimum_fen": 100, "every_days": 0, "monthly_cap_fen": 10**9}


def run_processes(target, args_for, count: int) -> list:
    """Start ``count`` spawned processes on ``target(*args_for(i), start, results)``, released
    together by a barrier; returns what each put on the results queue."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(count), context.Queue()
    processes = [context.Process(target=target, args=(*args_for(i), start, results)) for i in range(count)]
    for process in processes:
        process.start()
    reports = [results.get(timeout=300) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return reports


def request_withdrawals(url: str, worker: int, start, results) -> None:
    """One OS process: wait for the others, then ask for A3's money again and again."""
    from hkops.store.engine import Store

    store = Store(url)
    granted, refused, errors = [], [], []
    start.wait(timeout=120)
    for n in range(REQUESTS_EACH):
        try:
            w = commissions.request_withdrawal(store, "A3", AMOUNT, as_of=date(2027, 1, 5), actor=f"worker-{worker}",
                                               now=_at(date(2027, 1, 5)), rules=OPEN_RULES)
            granted.append(w["id"])
        except InvalidValue as exc:
            refused.append(str(exc))
        except Exception as exc:  # reported to the test, which fails on it
            errors.append(f"{type(exc).__name__}: {exc}")
    store.dispose()
    results.put((worker, granted, refused, errors))


def test_processes_requesting_withdrawals_at_once_never_take_more_than_the_balance(distribution, hlr, clock,
                                                                                   tmp_path):
    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path), actor="finance", now=NOW)
    _sold_by_a3(db, 1, hlr[1], clock)
    _sold_by_a3(db, 2, hlr[1], clock)
    commissions.accrue(db, as_of=date(2026, 12, 31), actor="finance", now=NOW)
    assert _settle(db, "2026-12", date(2027, 1, 1), "DEC")["A3"] == 8_320

    reports = run_processes(request_withdrawals, lambda i: (db.url, i), WORKERS)

    assert [errors for *_, errors in reports] == [[]] * WORKERS
    granted = [w for _, got, _, _ in reports for w in got]
    refused = [why for _, _, why, _ in reports for why in why]
    assert (len(granted), len(refused)) == (16, 4)  # 16 x 500 = 8,000 of 8,320; 320 left is too little
    assert all("above the available balance" in why for why in refused)
    shown = commissions.balance(db, "A3")
    assert (shown["balance_fen"], shown["frozen_fen"], shown["available_fen"]) == (8_320, 8_000, 320)

    # Pay half, reject a quarter, leave the rest approved: frozen and paid still add up.
    for n, wid in enumerate(sorted(granted)):
        commissions.move_withdrawal(db, wid, "approve", actor="finance", now=NOW)
        if n % 2 == 0:
            commissions.move_withdrawal(db, wid, "pay", actor="finance", now=NOW, reference=f"B{wid}")
        elif n % 4 == 1:
            commissions.move_withdrawal(db, wid, "reject", actor="finance", now=NOW, reason="duplicate")
    with db.read() as conn:
        states = dict(conn.execute(select(withdrawals.c.state, func.sum(withdrawals.c.amount_fen))
                                   .group_by(withdrawals.c.state)).all())
        paid_out = conn.execute(select(func.sum(agent_ledger.c.amount_fen))
                                .where(agent_ledger.c.withdrawal_id.is_not(None))).scalar()
    assert states == {"paid": 4_000, "rejected": 2_000, "approved": 2_000}
    assert paid_out == -4_000  # 8 x (500 - fee 100 - tax 30) paid out, fees and tax withheld
    shown = commissions.balance(db, "A3")
    assert (shown["balance_fen"], shown["frozen_fen"], shown["available_fen"]) == (4_320, 2_000, 2_320)


def accrue_at_once(url: str, worker: int, start, results) -> None:
    """One OS process: wait for the other, then run the month-end accrual."""
    from hkops.store.engine import Store

    store = Store(url)
    start.wait(timeout=120)
    try:
        result = commissions.accrue(store, as_of=date(2027, 3, 1), actor=f"worker-{worker}", now=_at(date(2027, 3, 1)))
        results.put((worker, result, None))
    except Exception as exc:  # reported to the test, which fails on it
        results.put((worker, None, f"{type(exc).__name__}: {exc}"))
    finally:
        store.dispose()


def _ledger(conn) -> list[tuple]:
    """The ledger without its ids and write times (which differ between runs)."""
    c = commission_entries.c
    return sorted(tuple(r) for r in conn.execute(select(
        c.order_number, c.event, c.month, c.agent_id, c.position, c.kind, c.amount_fen, c.scheme_id, c.event_at,
        c.eligible_on, c.state, c.batch_id)))


class _Undo(Exception):
    pass


def test_two_processes_accruing_at_once_write_exactly_what_one_run_writes(distribution, hlr, clock, tmp_path):
    """Three orders sold by A3 on 10 December (instant settlement, 60-day window); one returned on
    20 January. As of 1 March: 2 x (5 one-off + 6 in-network) + 5 one-off credits, 5 reversals."""
    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path), actor="finance", now=NOW)
    numbers = [_sold_by_a3(db, n, hlr[1], clock) for n in (1, 2, 3)]
    clock.now = _at(date(2027, 1, 20))
    orders.return_order(db, numbers[2], actor="desk", reason="customer changed mind")
    try:  # what one run writes, then undone
        with db.write() as conn:
            one = commissions.accrue(conn, as_of=date(2027, 3, 1), actor="finance", now=_at(date(2027, 3, 1)))
            expected = _ledger(conn)
            raise _Undo
    except _Undo:
        pass
    assert (one["accrued"], one["clawed_back"]) == (2 * 11 + 5, 5) == (len(expected) - 5, 5)
    with db.read() as conn:
        assert _ledger(conn) == []

    reports = run_processes(accrue_at_once, lambda i: (db.url, i), 2)

    assert [error for *_, error in reports] == [None, None]
    assert sum(r["accrued"] for _, r, _ in reports) == one["accrued"]  # between them, each entry once
    assert sum(r["clawed_back"] for _, r, _ in reports) == one["clawed_back"]
    with db.read() as conn:
        assert _ledger(conn) == expected
    assert commissions.accrue(db, as_of=date(2027, 3, 1), actor="finance", now=_at(date(2027, 3, 1)))["accrued"] == 0
    with db.read() as conn:
        assert _ledger(conn) == expected


def pay_at_once(url: str, batch: int, withdrawal: int, worker: int, start, results) -> None:
    """One OS process: wait for the others, then pay the batch and the withdrawal."""
    from hkops.errors import IllegalTransition
    from hkops.store.engine import Store

    store = Store(url)
    outcome = []
    start.wait(timeout=120)
    for call in (lambda: commissions.move_batch(store, batch, "pay", actor=f"w{worker}", now=NOW,
                                                reference=f"BANK-{worker}"),
                 lambda: commissions.move_withdrawal(store, withdrawal, "pay", actor=f"w{worker}", now=NOW,
                                                     reference=f"OUT-{worker}")):
        try:
            call()
            outcome.append("paid")
        except IllegalTransition:
            outcome.append("refused")
        except Exception as exc:  # reported to the test, which fails on it
            outcome.append(f"{type(exc).__name__}: {exc}")
    store.dispose()
    results.put((worker, outcome))


def test_processes_paying_one_batch_and_one_withdrawal_at_once_pay_each_once(distribution, hlr, clock, tmp_path):
    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path), actor="finance", now=NOW)
    _sold_by_a3(db, 1, hlr[1], clock)
    commissions.accrue(db, as_of=date(2026, 12, 31), actor="finance", now=NOW)
    assert _settle(db, "2026-12", date(2027, 1, 1), "DEC")["A3"] == 4_160
    clock.now = _at(date(2027, 1, 3))
    commissions.accrue(db, as_of=date(2027, 3, 1), actor="finance", now=NOW)  # month 2 and 3: 800 each for A3
    [batch] = commissions.create_batches(db, "2027-02", as_of=date(2027, 3, 1), agent="A3", actor="finance", now=NOW)
    for action in ("confirm", "approve"):
        commissions.move_batch(db, batch, action, actor="finance", now=NOW)
    w = commissions.request_withdrawal(db, "A3", "20", as_of=date(2027, 1, 5), actor="finance", now=NOW,
                                       rules=OPEN_RULES)
    commissions.move_withdrawal(db, w["id"], "approve", actor="finance", now=NOW)

    reports = run_processes(pay_at_once, lambda i: (db.url, batch, w["id"], i), WORKERS)

    outcomes = [outcome for _, outcome in reports]
    assert sorted(o[0] for o in outcomes) == ["paid"] + ["refused"] * (WORKERS - 1)
    assert sorted(o[1] for o in outcomes) == ["paid"] + ["refused"] * (WORKERS - 1)
    with db.read() as conn:
        credits = conn.execute(select(func.count(), func.sum(agent_ledger.c.amount_fen))
                               .where(agent_ledger.c.batch_id == batch)).one()
        paid_out = conn.execute(select(func.count(), func.sum(agent_ledger.c.amount_fen))
                                .where(agent_ledger.c.withdrawal_id == w["id"])).one()
    assert tuple(credits) == (1, 800) and tuple(paid_out) == (3, -2_000)  # payout, fee, tax: once
    assert commissions.balance(db, "A3")["balance_fen"] == 4_160 + 800 - 2_000
