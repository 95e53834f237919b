"""Commissions, settlement and withdrawals (issue 10): schemes as data, the append-only ledger,
clawback, settlement batches and the agent balance, with a worked example computed by hand."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from distribution_world import advance, distribution, place_order  # noqa: F401  (distribution is a fixture)
from hkops import audit
from hkops.cards import service as card_service
from hkops.commissions import service as commissions
from hkops.commissions.tables import agent_ledger, commission_entries, commission_schemes
from hkops.errors import IllegalTransition, InvalidFile, InvalidValue, NotFound
from hkops.orders import service as orders
from test_cards_lifecycle import hlr  # noqa: F401  (fixture)

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)

SCHEME = """\
name = "CM-58 three levels"
plans = ["CM-58"]
effective = 2026-01-01
window_days = 60
timing = "instant"

[[rules]]
event = "activation"
amounts = [3000, 1000, 500]

[[rules]]
event = "first_topup"
min_fen = 5000
within_days = 30
percent = ["20", "10"]

[[rules]]
event = "in_network"
months = [2, 3]
amounts = [800, 200, 100]
"""

#: Withdrawal rules of the worked example: 1% fee clamped to ¥1..¥10, 6% tax.
RULES = {"minimum_fen": 1_300, "fee_percent": Decimal(1), "fee_min_fen": 100, "fee_max_fen": 1_000,
         "tax_percent": Decimal(6), "every_days": 7, "monthly_cap_fen": 20_000}


class Clock:
    def __init__(self, start):
        self.now = start

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    """Freeze the time orders, cards and the audit trail see."""
    frozen = Clock(NOW)
    for module in (orders, card_service, audit):
        monkeypatch.setattr(module, "utc_now", frozen)
    return frozen


def _scheme(tmp_path, text=SCHEME, name="scheme.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _at(day: date, hour: int = 2) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=timezone.utc)  # 10:00 in Shanghai


def _counts(db):
    with db.read() as conn:
        return (conn.execute(select(func.count()).select_from(commission_schemes)).scalar(),
                conn.execute(select(func.count()).select_from(commission_entries)).scalar(),
                conn.execute(select(func.count()).select_from(audit.audit_log)).scalar())


def _settle(db, period, as_of, reference):
    ids = commissions.create_batches(db, period, as_of=as_of, actor="finance", now=_at(as_of))
    totals = {}
    for batch in ids:
        commissions.move_batch(db, batch, "confirm", actor="finance", now=_at(as_of))
        commissions.move_batch(db, batch, "approve", actor="finance", now=_at(as_of))
        shown = commissions.move_batch(db, batch, "pay", actor="finance", now=_at(as_of),
                                       reference=f"{reference}-{batch}")
        assert shown["total_fen"] == sum(line["amount_fen"] for line in shown["lines"])
        totals[shown["agent"]] = shown["total_fen"]
    return totals


def _sold_by_a3(db, n, network, clock):
    order = place_order(db, n, channel="A3", client_order_id=f"A3-{n}")
    order = advance(db, order.number, "delivered")
    clock.now = _at(date(2026, 12, 10))
    orders.activate_order(db, order.number, actor="desk", network=network)
    orders.record_first_topup(db, order.number, 5_000, actor="desk")
    return order.number


def _entries(db, labels: dict[str, str]) -> dict[str, list[tuple]]:
    """Every ledger entry by agent: (order label, event, month, kind, amount, state), sorted."""
    found: dict[str, list[tuple]] = {}
    for e in commissions.list_entries(db):
        found.setdefault(e["agent"], []).append((labels[e["order_number"]], e["event"], e["month"], e["kind"],
                                                 e["amount_fen"], e["state"]))
    return {agent: sorted(rows) for agent, rows in found.items()}


def _batches(db, period: str) -> dict[str, tuple]:
    """The period's batches by agent: (state, total, the lines' amounts sorted)."""
    from hkops.commissions.tables import settlement_batches

    with db.read() as conn:
        ids = conn.execute(select(settlement_batches.c.id).where(settlement_batches.c.period == period)).scalars().all()
    shown = [commissions.show_batch(db, b) for b in ids]
    return {b["agent"]: (b["state"], b["total_fen"], sorted(line["amount_fen"] for line in b["lines"]))
            for b in shown}


def _balances(db) -> dict[str, tuple]:
    """(balance, frozen, available) of each agent."""
    return {a: tuple(commissions.balance(db, a)[k] for k in ("balance_fen", "frozen_fen", "available_fen"))
            for a in ("A1", "A2", "A3")}


def test_the_worked_example(distribution, hlr, clock, tmp_path):
    """Worked by hand. Two orders sold by A3 (chain A3 > A2 > A1), activated and topped up ¥50 on
    10 December; instant settlement, 60-day window. Per order: activation 3000/1000/500, first
    top-up 20%/10% of the ¥58 monthly fee = 1160/580 (the seller and its parent only); in network
    in months 2 (January, ends 1 February) and 3 (February, ends 1 March) 800/200/100 each.
    A3 withdraws ¥80 in January; o2 is returned on 20 January (month 2, inside the window): its
    five credits are clawed back after they were paid, and A3's balance goes below zero."""
    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path), actor="finance", now=NOW)
    o1 = _sold_by_a3(db, 1, hlr[1], clock)
    o2 = _sold_by_a3(db, 2, hlr[1], clock)
    labels = {o1: "o1", o2: "o2"}

    result = commissions.accrue(db, as_of=date(2026, 12, 31), actor="finance", now=_at(date(2026, 12, 31)))
    assert result == {"accrued": 10, "clawed_back": 0, "eligible": 10, "held": 0}
    one_off = lambda o, state, a, f: [(o, "activation", 0, "credit", a, state)] + (  # noqa: E731
        [(o, "first_topup", 0, "credit", f, state)] if f else [])
    assert _entries(db, labels) == {
        "A3": sorted(one_off("o1", "eligible", 3_000, 1_160) + one_off("o2", "eligible", 3_000, 1_160)),
        "A2": sorted(one_off("o1", "eligible", 1_000, 580) + one_off("o2", "eligible", 1_000, 580)),
        "A1": sorted(one_off("o1", "eligible", 500, 0) + one_off("o2", "eligible", 500, 0))}
    assert commissions.balance(db, "A3")["pending_fen"] == {"eligible": 8_320}
    # December: A3 2 x (3000 + 1160) = 8320, A2 2 x (1000 + 580) = 3160, A1 2 x 500 = 1000.
    assert _settle(db, "2026-12", date(2027, 1, 1), "DEC") == {"A1": 1_000, "A2": 3_160, "A3": 8_320}
    assert _batches(db, "2026-12") == {"A3": ("paid", 8_320, [1_160, 1_160, 3_000, 3_000]),
                                       "A2": ("paid", 3_160, [580, 580, 1_000, 1_000]),
                                       "A1": ("paid", 1_000, [500, 500])}
    assert _balances(db) == {"A1": (1_000, 0, 1_000), "A2": (3_160, 0, 3_160), "A3": (8_320, 0, 8_320)}
    assert {e["state"] for e in commissions.list_entries(db)} == {"paid"}

    # A3 withdraws ¥80: fee 1% = 80 clamped up to 100, tax 6% = 480, 7420 paid out.
    w = commissions.request_withdrawal(db, "A3", "80.00", as_of=date(2027, 1, 5), actor="finance",
                                       now=_at(date(2027, 1, 5)), rules=RULES)
    assert (w["amount_fen"], w["fee_fen"], w["tax_fen"], w["state"]) == (8_000, 100, 480, "requested")
    assert _balances(db)["A3"] == (8_320, 8_000, 320)
    commissions.move_withdrawal(db, w["id"], "approve", actor="finance", now=_at(date(2027, 1, 6)))
    assert _balances(db)["A3"] == (8_320, 8_000, 320)
    commissions.move_withdrawal(db, w["id"], "pay", actor="finance", now=_at(date(2027, 1, 6)), reference="B1")
    with db.read() as conn:
        paid_out = dict(conn.execute(select(agent_ledger.c.kind, agent_ledger.c.amount_fen)
                                     .where(agent_ledger.c.withdrawal_id == w["id"])).all())
    assert paid_out == {"withdrawal": -7_420, "fee": -100, "tax": -480}
    assert _balances(db)["A3"] == (320, 0, 320)

    # 20 January (month 2, inside the window): o2 is returned; its card is terminated.
    clock.now = _at(date(2027, 1, 20))
    orders.return_order(db, o2, actor="desk", reason="customer changed mind")
    result = commissions.accrue(db, as_of=date(2027, 3, 1), until=date(2027, 2, 28), actor="finance",
                                now=_at(date(2027, 3, 1)))
    # o1 months 2 and 3 (3 entries each; month 3 ends on 1 March, the day after --until); o2 no
    # month, its 5 credits reversed. All 11 new entries are eligible as of 1 March.
    assert result == {"accrued": 6, "clawed_back": 5, "eligible": 11, "held": 0}
    month = lambda n, a, state: ("o1", "in_network", n, "credit", a, state)  # noqa: E731
    back = lambda event, a: ("o2", event, 0, "reversal", -a, "eligible")  # noqa: E731
    assert _entries(db, labels) == {
        "A3": sorted(one_off("o1", "paid", 3_000, 1_160) + one_off("o2", "paid", 3_000, 1_160) + [
            month(2, 800, "eligible"), month(3, 800, "eligible"), back("activation", 3_000),
            back("first_topup", 1_160)]),
        "A2": sorted(one_off("o1", "paid", 1_000, 580) + one_off("o2", "paid", 1_000, 580) + [
            month(2, 200, "eligible"), month(3, 200, "eligible"), back("activation", 1_000),
            back("first_topup", 580)]),
        "A1": sorted(one_off("o1", "paid", 500, 0) + one_off("o2", "paid", 500, 0) + [
            month(2, 100, "eligible"), month(3, 100, "eligible"), back("activation", 500)])}
    assert sum(e["amount_fen"] for e in commissions.list_entries(db, order=o2)) == 0  # netted, never edited

    # February batch: the reversals plus o1's month 2 (month 3 is eligible on 1 March, next period).
    # A3 -4160 + 800 = -3360, A2 -1580 + 200 = -1380, A1 -500 + 100 = -400.
    assert _settle(db, "2027-02", date(2027, 3, 1), "FEB") == {"A1": -400, "A2": -1_380, "A3": -3_360}
    assert _batches(db, "2027-02") == {"A3": ("paid", -3_360, [-3_000, -1_160, 800]),
                                       "A2": ("paid", -1_380, [-1_000, -580, 200]),
                                       "A1": ("paid", -400, [-500, 100])}
    # A3 had withdrawn: 320 - 3360 = -3040, a receivable; A2 3160 - 1380 = 1780; A1 1000 - 400 = 600.
    assert _balances(db) == {"A1": (600, 0, 600), "A2": (1_780, 0, 1_780), "A3": (-3_040, 0, -3_040)}
    with pytest.raises(InvalidValue, match="available"):
        commissions.request_withdrawal(db, "A3", "13", as_of=date(2027, 3, 2), actor="finance",
                                       now=_at(date(2027, 3, 2)), rules=RULES)
    # March: o1's month 3 is set against the negative balance: -3040 + 800 = -2240.
    assert _settle(db, "2027-03", date(2027, 4, 1), "MAR") == {"A1": 100, "A2": 200, "A3": 800}
    assert _batches(db, "2027-03") == {"A3": ("paid", 800, [800]), "A2": ("paid", 200, [200]),
                                       "A1": ("paid", 100, [100])}
    assert _balances(db) == {"A1": (700, 0, 700), "A2": (1_980, 0, 1_980), "A3": (-2_240, 0, -2_240)}
    # Every entry paid: credits 3000+1160+800+800 (o1) for A3, less the 8000 it withdrew.
    assert {e["state"] for e in commissions.list_entries(db)} == {"paid"}
    assert {e["scheme_id"] for e in commissions.list_entries(db)} == {1}
    with db.read() as conn:
        a3 = commissions._agent(conn, "A3").id
        ledger = sorted(tuple(r) for r in conn.execute(select(agent_ledger.c.kind, agent_ledger.c.amount_fen)
                                                       .where(agent_ledger.c.agent_id == a3)))
    assert ledger == sorted([
        ("settlement", 8_320), ("withdrawal", -7_420), ("fee", -100), ("tax", -480), ("settlement", -3_360),
        ("settlement", 800)])
    with db.read() as conn:
        assert commissions.inconsistencies(conn) == [] and commissions.ledger_inconsistencies(conn) == []


def _moves(history: list[dict]) -> list[tuple]:
    """An entry's history as (who, when, action, from, to) and whether a reason is given."""
    return [(m["actor"], m["at"], m["action"], m["from_state"], m["to_state"], bool(m["reason"])) for m in history]


def test_an_entrys_history_is_rebuilt_from_the_audit_trail(distribution, hlr, clock, hkops_cli, tmp_path):
    """Credits held for their 60-day window (next-month timing) become eligible, are settled and paid;
    o2's return on 20 January claws its credits back. Each move of each run or batch is one audit
    record naming its entries by id runs, and an entry's history is read back from them alone."""
    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path, SCHEME.replace('"instant"', '"next_month"')), actor="finance",
                           now=NOW)
    o1, o2 = _sold_by_a3(db, 31, hlr[1], clock), _sold_by_a3(db, 32, hlr[1], clock)
    december, february, march = _at(date(2026, 12, 31)), _at(date(2027, 2, 10)), _at(date(2027, 3, 1))
    assert commissions.accrue(db, as_of=date(2026, 12, 31), actor="accountant", now=december)["held"] == 10
    clock.now = _at(date(2027, 1, 20))
    orders.return_order(db, o2, actor="desk", reason="customer changed mind")
    result = commissions.accrue(db, as_of=date(2027, 2, 10), actor="controller", now=february)
    # o1 month 2 (held until 2 April); o2's 5 credits reversed (eligible on 8 February, with the credits).
    assert result == {"accrued": 3, "clawed_back": 5, "eligible": 15, "held": 3}
    with db.read() as conn:
        run = conn.execute(select(audit.audit_log.c.action, audit.audit_log.c.from_state, audit.audit_log.c.to_state,
                                  audit.audit_log.c.details).where(audit.audit_log.c.subject == "accrual",
                                                                   audit.audit_log.c.at == february)).all()
    # One record per move of the run, not one per entry: together they name every entry it moved.
    assert sorted((r.action, r.from_state, r.to_state, len(json.loads(r.details)["entries"]) <= 2,
                   json.loads(r.details)["count"]) for r in run) == [
        ("claw_back", None, "eligible", True, 5), ("create", None, "held", True, 3),
        ("move", "held", "eligible", True, 10)]
    ids = {(e["order_number"], e["agent"], e["event"], e["kind"]): e["id"] for e in commissions.list_entries(db)}
    ids_before = list(ids.values())
    [batch] = commissions.create_batches(db, "2027-02", as_of=date(2027, 3, 1), agent="A3", actor="clerk", now=march)
    for action in ("confirm", "approve"):
        commissions.move_batch(db, batch, action, actor="clerk", now=march)
    commissions.move_batch(db, batch, "pay", actor="treasurer", now=march, reference="FEB-1")

    credit = ids[o1, "A3", "activation", "credit"]
    assert _moves(commissions.entry_history(db, credit)) == [
        ("accountant", december, "create", None, "held", True),
        ("controller", february, "move", "held", "eligible", True),
        ("clerk", march, "settle", "eligible", "settled", True),
        ("treasurer", march, "pay", "settled", "paid", True)]
    reversal = ids[o2, "A3", "activation", "reversal"]
    history = commissions.entry_history(db, reversal)
    assert _moves(history) == [("controller", february, "claw_back", None, "eligible", True),
                               ("clerk", march, "settle", "eligible", "settled", True),
                               ("treasurer", march, "pay", "settled", "paid", True)]
    assert "returned" in history[0]["reason"] and f"batch {batch}" in history[1]["reason"]
    # A2's credit stays eligible (not in A3's batch); o1's month 2 is still held.
    assert [m["to_state"] for m in commissions.entry_history(db, ids[o1, "A2", "activation", "credit"])] == [
        "held", "eligible"]
    assert [m["to_state"] for m in commissions.entry_history(db, ids[o1, "A3", "in_network", "credit"])] == ["held"]
    assert len(ids_before) == 18
    with pytest.raises(NotFound):
        commissions.entry_history(db, max(ids_before) + 1)
    shown = _ok(hkops_cli(db, "commissions", "history", str(credit), "--json"))
    assert [(m["action"], m["to_state"]) for m in shown] == [("create", "held"), ("move", "eligible"),
                                                               ("settle", "settled"), ("pay", "paid")]
    # A small batch's moves name their entries by id runs: the entry is proven by its id.
    assert [(m["proof"], m["tampered"]) for m in shown] == [("ids", False)] * 4


#: Three years and more of in-network months: each month end credits A3, A2 and A1 in one statement,
#: so that each agent's entries are interleaved with the other two's.
LONG_SCHEME = SCHEME.replace("months = [2, 3]", "months = [1, 40]")


def _scattered_batches(db, network, clock, tmp_path) -> dict[str, dict]:
    """Three orders sold by A3, accrued in one run up to June 2030 (126 entries for A3 and A2, 123 for A1,
    each agent's interleaved with the others'), and settled: A3's, A2's and A1's batches for May 2030 paid. By
    agent: the batch's ``id``, ``lines`` (its entry ids, ascending) and ``total_fen``."""
    commissions.add_scheme(db, _scheme(tmp_path, LONG_SCHEME), actor="finance", now=NOW)
    for n in (1, 2, 3):
        _sold_by_a3(db, n, network, clock)
    assert commissions.accrue(db, as_of=date(2030, 6, 30), actor="finance", now=NOW)["accrued"] == 3 * (3 * 41 + 2)
    _settle(db, "2030-05", date(2030, 6, 1), "MAY")
    batches = {}
    for shown in (commissions.show_batch(db, b["id"]) for b in commissions.list_batches(db)):
        batches[shown["agent"]] = {"id": shown["id"], "lines": [line["id"] for line in shown["lines"]],
                                   "total_fen": shown["total_fen"]}
    return batches


def _id_runs(ids: list[int]) -> int:
    """How many runs of consecutive ids the ascending ``ids`` make."""
    return sum(1 for before, entry_id in zip([None, *ids], ids) if before is None or entry_id != before + 1)


def _batch_moves(db, batch_id: int) -> dict[str, tuple[dict, int]]:
    """The settle and pay audit records of a batch: action -> (details, size of the details in bytes)."""
    a = audit.audit_log.c
    with db.read() as conn:
        rows = conn.execute(select(a.action, a.details).where(a.entity == "commission", a.subject == f"batch {batch_id}",
                                                              a.action.in_(("settle", "pay")))).all()
    return {action: (json.loads(details), len(details.encode())) for action, details in rows}


def test_a_scattered_batch_is_audited_by_digest_and_its_entries_history_proven(distribution, hlr, clock, hkops_cli,
                                                                               tmp_path):
    """A batch whose entries are interleaved with other agents' is recorded by count, total and the
    SHA-256 of its ids (ascending, decimal, joined by ","), not by one id run per entry; an entry's
    history finds those moves by its batch and proves them by recomputing the digest over the batch's
    lines, and says so when a line was moved into the batch afterwards."""
    import hashlib

    db = distribution.db
    batches = _scattered_batches(db, hlr[1], clock, tmp_path)
    a3, a2 = batches["A3"], batches["A2"]
    assert len(a3["lines"]) == 126 and _id_runs(a3["lines"]) > commissions.COMPACT_RUNS, "A3's ids are not scattered"
    expected = hashlib.sha256(",".join(str(i) for i in a3["lines"]).encode()).hexdigest()
    moves = _batch_moves(db, a3["id"])
    assert sorted(moves) == ["pay", "settle"]
    for action, (details, size) in moves.items():
        assert (details["digest"], details["count"], details["total_fen"]) == (expected, 126, a3["total_fen"])
        assert "entries" not in details and size < 400, (action, size)  # one run an entry: ~1,700 bytes
    # The accrual run's moves stay id runs (compact: the run's ids are consecutive).
    with db.read() as conn:
        created = json.loads(conn.execute(select(audit.audit_log.c.details).where(
            audit.audit_log.c.subject == "accrual", audit.audit_log.c.action == "create")).scalar_one())
    assert created["count"] == 375 and len(created["entries"]) <= 2

    entry = a3["lines"][60]
    history = commissions.entry_history(db, entry)
    assert [(m["action"], m["to_state"], m["subject"], m["proof"], m["tampered"]) for m in history] == [
        ("create", "eligible", "accrual", "ids", False),
        ("settle", "settled", f"batch {a3['id']}", "digest", False),
        ("pay", "paid", f"batch {a3['id']}", "digest", False)]
    assert [m["subject"] for m in commissions.entry_history(db, a2["lines"][0])][1:] == [f"batch {a2['id']}"] * 2
    assert hkops_cli(db, "commissions", "history", str(entry))[0] == 0

    with db.write() as conn:  # a hand edit: one of A2's lines moved into A3's batch after its payment
        conn.execute(commission_entries.update().where(commission_entries.c.id == a2["lines"][0])
                     .values(batch_id=a3["id"]))
    for moved in (entry, a2["lines"][0]):
        history = commissions.entry_history(db, moved)
        assert [(m["action"], m["tampered"]) for m in history] == [("create", False), ("settle", True),
                                                                    ("pay", True)]
        assert all(f"batch {a3['id']}'s lines were changed after this move" in m["warning"] for m in history[1:])
    status, out, _ = hkops_cli(db, "commissions", "history", str(entry))
    assert status == 1 and out.count("TAMPERED") == 2 and f"{len(a3['lines']) + 1} lines" in out


def test_a_batch_moved_meanwhile_is_refused_with_nothing_changed(distribution, hlr, clock, tmp_path, monkeypatch):
    """Two payers of one batch: the state is read, another payer moves the batch, then this one
    updates. The update names the state it read, moves no row, and the payment is refused whole."""
    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path), actor="finance", now=NOW)
    _sold_by_a3(db, 33, hlr[1], clock)
    commissions.accrue(db, as_of=date(2026, 12, 31), actor="finance", now=NOW)
    [batch] = commissions.create_batches(db, "2026-12", as_of=date(2027, 1, 1), agent="A3", actor="finance", now=NOW)
    for action in ("confirm", "approve"):
        commissions.move_batch(db, batch, action, actor="finance", now=NOW)
    from contextlib import contextmanager

    from hkops.commissions.tables import settlement_batches

    real = commissions.unit_of_work

    @contextmanager
    def another_payer_between(store):
        """The transaction, with the batch paid by someone else right after it is read."""
        with real(store) as conn:
            execute = conn.execute

            def execute_then_pay(statement, *args, **kwargs):
                result = execute(statement, *args, **kwargs)
                if getattr(statement, "is_select", False) and settlement_batches in statement.get_final_froms():
                    result = result.mappings().all()
                    execute(settlement_batches.update().where(settlement_batches.c.id == batch).values(state="paid"))
                    return _Rows(result)
                return result

            monkeypatch.setattr(conn, "execute", execute_then_pay)
            yield conn

    before = _counts(db)
    monkeypatch.setattr(commissions, "unit_of_work", another_payer_between)
    with pytest.raises(IllegalTransition, match="moved meanwhile"):
        commissions.move_batch(db, batch, "pay", actor="finance", now=NOW, reference="R1")
    monkeypatch.setattr(commissions, "unit_of_work", real)
    assert commissions.show_batch(db, batch)["state"] == "approved" and _counts(db) == before
    assert commissions.balance(db, "A3")["balance_fen"] == 0
    assert {e["state"] for e in commissions.list_entries(db, agent="A3")} == {"settled"}


class _Rows:
    """Rows already read, answering ``.mappings().first()`` as the result they came from."""

    def __init__(self, rows):
        self.rows = rows

    def mappings(self):
        return self

    def first(self):
        return self.rows[0] if self.rows else None


def test_accrual_twice_gives_the_same_ledger(distribution, hlr, clock, tmp_path):
    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path), actor="finance", now=NOW)
    _sold_by_a3(db, 3, hlr[1], clock)
    first = commissions.accrue(db, as_of=date(2027, 2, 1), actor="finance", now=NOW)
    ledger = commissions.list_entries(db)
    again = commissions.accrue(db, as_of=date(2027, 2, 1), actor="finance", now=NOW)
    assert first["accrued"] == 8 and again["accrued"] == 0  # 3 + 2 + month 2 (3)
    assert commissions.list_entries(db) == ledger


def test_a_new_version_applies_from_its_date_and_old_entries_keep_theirs(distribution, hlr, clock, tmp_path):
    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path), actor="finance", now=NOW)
    later = SCHEME.replace("2026-01-01", "2027-01-01").replace("[3000, 1000, 500]", "[9000, 1000, 500]")
    commissions.add_scheme(db, _scheme(tmp_path, later, "v2.toml"), actor="finance", now=NOW)
    number = _sold_by_a3(db, 4, hlr[1], clock)
    commissions.accrue(db, as_of=date(2026, 12, 31), actor="finance", now=NOW)
    seller = [e for e in commissions.list_entries(db, order=number, agent="A3") if e["event"] == "activation"]
    assert [e["amount_fen"] for e in seller] == [3_000]


@pytest.mark.parametrize("change, field", [
    (("event = \"activation\"", "event = \"sign_up\""), "event"),
    (("[3000, 1000, 500]", "[3000, -1000, 500]"), "amounts"),
    (("[3000, 1000, 500]", "[30.0, 10.0, 5.0]"), "amounts"),
    (("[3000, 1000, 500]", "[3000, 1000, 500, 100]"), "amounts"),
])
def test_a_bad_scheme_is_refused_with_nothing_changed(distribution, tmp_path, change, field):
    db = distribution.db
    before = _counts(db)
    with pytest.raises(InvalidFile) as error:
        commissions.add_scheme(db, _scheme(tmp_path, SCHEME.replace(*change)), actor="finance", now=NOW)
    assert error.value.problems[0].field == field
    assert error.value.problems[0].line is not None
    assert _counts(db) == before


def test_the_lines_of_a_bad_scheme_are_named(distribution, tmp_path):
    with pytest.raises(InvalidFile) as error:
        commissions.add_scheme(distribution.db, _scheme(tmp_path, SCHEME.replace(
            "event = \"first_topup\"", "event = \"sign_up\"")), actor="finance", now=NOW)
    assert (error.value.problems[0].field, error.value.problems[0].line) == ("event", 12)


def test_an_overlapping_version_is_refused_with_nothing_changed(distribution, tmp_path):
    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path), actor="finance", now=NOW)
    before = _counts(db)
    with pytest.raises(InvalidFile, match="already has a scheme version"):
        commissions.add_scheme(db, _scheme(tmp_path, SCHEME.replace("[3000,", "[2000,"), "b.toml"),
                               actor="finance", now=NOW)
    assert _counts(db) == before


def test_settlement_refusals(distribution, hlr, clock, tmp_path):
    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path), actor="finance", now=NOW)
    _sold_by_a3(db, 5, hlr[1], clock)
    commissions.accrue(db, as_of=date(2026, 12, 31), actor="finance", now=NOW)
    before = _counts(db)
    with pytest.raises(InvalidValue, match="has not ended"):
        commissions.create_batches(db, "2026-12", as_of=date(2026, 12, 31), actor="finance", now=NOW)
    assert _counts(db) == before
    [batch] = commissions.create_batches(db, "2026-12", as_of=date(2027, 1, 1), agent="A3", actor="finance", now=NOW)
    shown = commissions.show_batch(db, batch)
    assert shown["total_fen"] == sum(line["amount_fen"] for line in shown["lines"]) == 4_160
    with pytest.raises(IllegalTransition):
        commissions.move_batch(db, batch, "approve", actor="finance", now=NOW)
    assert commissions.show_batch(db, batch)["state"] == "draft"
    for action in ("confirm", "approve"):
        commissions.move_batch(db, batch, action, actor="finance", now=NOW)
    commissions.move_batch(db, batch, "pay", actor="finance", now=NOW, reference="R1")
    with pytest.raises(IllegalTransition):
        commissions.move_batch(db, batch, "pay", actor="finance", now=NOW, reference="R2")
    assert commissions.balance(db, "A3")["balance_fen"] == 4_160
    assert commissions.create_batches(db, "2026-12", as_of=date(2027, 1, 1), agent="A3", actor="finance",
                                      now=NOW) == []  # an entry is in at most one batch


def test_withdrawal_refusals(distribution, hlr, clock, tmp_path):
    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path), actor="finance", now=NOW)
    _sold_by_a3(db, 6, hlr[1], clock)
    commissions.accrue(db, as_of=date(2026, 12, 31), actor="finance", now=NOW)
    _settle(db, "2026-12", date(2027, 1, 1), "DEC")  # A3: 4160
    ask = lambda amount, day: commissions.request_withdrawal(  # noqa: E731
        db, "A3", amount, as_of=day, actor="finance", now=_at(day), rules=RULES)
    with pytest.raises(InvalidValue, match=r"below the minimum of ¥13\.00$"):  # in yuan, as asked
        ask("12.99", date(2027, 1, 2))
    with pytest.raises(InvalidValue, match=r"above the available balance of ¥41\.60$"):
        ask("41.61", date(2027, 1, 2))
    with pytest.raises(InvalidValue, match="float"):
        ask(20.0, date(2027, 1, 2))
    first = ask("20", date(2027, 1, 2))
    with pytest.raises(InvalidValue, match="too soon"):
        ask("13", date(2027, 1, 8))
    commissions.move_withdrawal(db, first["id"], "approve", actor="finance", now=NOW)
    commissions.move_withdrawal(db, first["id"], "pay", actor="finance", now=NOW, reference="P")
    with pytest.raises(IllegalTransition):
        commissions.move_withdrawal(db, first["id"], "reject", actor="finance", now=NOW)
    with pytest.raises(InvalidValue, match=r"monthly cap of ¥30\.00 \(¥20\.00 requested this month already\)"):
        commissions.request_withdrawal(db, "A3", "13", as_of=date(2027, 1, 9), actor="finance", now=NOW,
                                       rules={**RULES, "monthly_cap_fen": 3_000})
    second = ask("13", date(2027, 1, 9))
    assert commissions.balance(db, "A3")["available_fen"] == 4_160 - 2_000 - 1_300
    commissions.move_withdrawal(db, second["id"], "reject", actor="finance", now=NOW, reason="no bank account")
    assert commissions.balance(db, "A3")["available_fen"] == 4_160 - 2_000  # released


# ---------------------------------------------------------------- the command line

from strategies import hkops_cli  # noqa: E402,F401  (fixture)


def _ok(result):
    import json

    status, out, err = result
    assert status == 0, err
    return json.loads(out)


def test_the_command_line_from_scheme_to_withdrawal(distribution, hlr, clock, hkops_cli, tmp_path):
    db = distribution.db
    cli = lambda *args: hkops_cli(db, *args)  # noqa: E731
    before = _counts(db)
    status, _, err = cli("commissions", "scheme-add", str(_scheme(tmp_path, SCHEME.replace("500]", "5.5]"), "f.toml")))
    assert status == 2 and "float" in err and "line 9" in err and _counts(db) == before
    assert _ok(cli("commissions", "scheme-add", str(_scheme(tmp_path)), "--json")) == {"ids": [1]}
    assert [s["plan"] for s in _ok(cli("commissions", "schemes", "--json"))] == ["CM-58"]
    number = _sold_by_a3(db, 7, hlr[1], clock)
    assert _ok(cli("commissions", "accrue", "--as-of", "2026-12-31", "--json"))["accrued"] == 5
    assert _ok(cli("commissions", "accrue", "--as-of", "2026-12-31", "--json"))["accrued"] == 0
    listed = _ok(cli("commissions", "list", "--agent", "A3", "--order", number, "--json"))
    assert sorted(e["amount_fen"] for e in listed) == [1_160, 3_000]
    status, _, err = cli("settlement", "create", "--period", "2026-12", "--as-of", "2026-12-31")
    assert status == 2 and "has not ended" in err
    batches = _ok(cli("settlement", "create", "--period", "2026-12", "--agent", "A3", "--as-of", "2027-01-01",
                      "--json"))["batches"]
    [batch] = batches
    assert cli("settlement", "approve", str(batch))[0] == 2
    _ok(cli("settlement", "confirm", str(batch), "--json"))
    _ok(cli("settlement", "approve", str(batch), "--json"))
    assert _ok(cli("settlement", "pay", str(batch), "--reference", "BANK-1", "--json"))["state"] == "paid"
    assert cli("settlement", "pay", str(batch), "--reference", "BANK-2")[0] == 2
    out = tmp_path / "statement.csv"
    assert cli("settlement", "export", str(batch), "--out", str(out))[0] == 0
    assert out.read_bytes().startswith("\ufeffbatch,".encode())  # UTF-8 with a byte-order mark: Excel reads Chinese
    rows = out.read_text(encoding="utf-8-sig").splitlines()
    assert len(rows) == 4 and all(number in row for row in rows[1:3]) and rows[-1].endswith(",4160,41.60")
    assert _ok(cli("commissions", "balance", "A3", "--json"))["balance_fen"] == 4_160
    w = _ok(cli("withdrawals", "request", "A3", "--amount", "20.00", "--as-of", "2027-01-02", "--json"))
    assert (w["amount_fen"], w["tax_fen"]) == (2_000, 120)  # 6% tax by default
    assert _ok(cli("commissions", "balance", "A3", "--json"))["available_fen"] == 2_160
    _ok(cli("withdrawals", "approve", str(w["id"]), "--json"))
    _ok(cli("withdrawals", "pay", str(w["id"]), "--reference", "B", "--json"))
    assert cli("withdrawals", "reject", str(w["id"]), "--reason", "late")[0] == 2
    assert [x["state"] for x in _ok(cli("withdrawals", "list", "--agent", "A3", "--json"))] == ["paid"]
    assert _ok(cli("commissions", "balance", "A3", "--json"))["balance_fen"] == 2_160


def test_withdrawal_rules_are_settings(distribution, hlr, clock, tmp_path):
    from hkops import settings

    db = distribution.db
    with db.write() as conn:
        with pytest.raises(InvalidValue):
            settings.set_value(conn, "withdrawal_tax_percent", "-1", actor="admin")
        settings.set_value(conn, "withdrawal_tax_percent", "3", actor="admin")
        settings.set_value(conn, "withdrawal_minimum_fen", "4000", actor="admin")
    commissions.add_scheme(db, _scheme(tmp_path), actor="finance", now=NOW)
    _sold_by_a3(db, 8, hlr[1], clock)
    commissions.accrue(db, as_of=date(2026, 12, 31), actor="finance", now=NOW)
    _settle(db, "2026-12", date(2027, 1, 1), "DEC")  # A3: 4160
    with pytest.raises(InvalidValue, match="minimum"):
        commissions.request_withdrawal(db, "A3", "39.99", as_of=date(2027, 1, 2), actor="finance", now=NOW)
    w = commissions.request_withdrawal(db, "A3", "41", as_of=date(2027, 1, 2), actor="finance", now=NOW)
    assert w["tax_fen"] == 123  # 3% of 4100


def test_a_suspension_inside_the_window_claws_back_and_accrual_for_a_settled_period_is_refused(
        distribution, hlr, clock, tmp_path):
    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path), actor="finance", now=NOW)
    number = _sold_by_a3(db, 9, hlr[1], clock)
    commissions.accrue(db, as_of=date(2026, 12, 31), actor="finance", now=NOW)
    assert _settle(db, "2026-12", date(2027, 1, 1), "DEC")["A3"] == 4_160
    before = _counts(db)
    with pytest.raises(InvalidValue, match="already settled"):
        commissions.accrue(db, as_of=date(2027, 1, 5), until=date(2026, 12, 20), actor="finance", now=NOW)
    assert _counts(db) == before
    clock.now = _at(date(2027, 1, 15))  # month 2, inside the 60-day window: one-way suspension (单停)
    card_service.suspend(db, orders.get_order(db, number).iccid, "arrears", actor="desk", network=hlr[1])
    result = commissions.accrue(db, as_of=date(2027, 3, 1), actor="finance", now=NOW)
    assert (result["accrued"], result["clawed_back"]) == (0, 5)  # no month 2 or 3, all five reversed
    assert sum(e["amount_fen"] for e in commissions.list_entries(db, order=number, agent="A3")) == 0
    assert _settle(db, "2027-01", date(2027, 2, 1), "JAN")["A3"] == -4_160
    assert commissions.balance(db, "A3")["balance_fen"] == 0


def test_an_agent_user_reads_its_own_subtree_only(distribution, hlr, clock, tmp_path):
    from hkops.security.access import AccessDenied, Principal

    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path), actor="finance", now=NOW)
    _sold_by_a3(db, 10, hlr[1], clock)
    commissions.accrue(db, as_of=date(2026, 12, 31), actor="finance", now=NOW)
    a2 = Principal("a2-user", roles=("agent",), permissions={"settlement.read"}, agent="A2")
    assert {e["agent"] for e in commissions.list_entries(db, actor=a2)} == {"A2", "A3"}
    assert commissions.balance(db, "A3", actor=a2)["pending_fen"] == {"eligible": 4_160}
    with pytest.raises(AccessDenied):
        commissions.balance(db, "A1", actor=a2)
    with pytest.raises(AccessDenied):
        commissions.accrue(db, as_of=date(2026, 12, 31), actor=a2, now=NOW)
    batches = {commissions.show_batch(db, b)["agent"]: b
               for b in commissions.create_batches(db, "2026-12", as_of=date(2027, 1, 1), actor="finance",
                                                   now=_at(date(2027, 1, 1)))}
    assert commissions.show_batch(db, batches["A3"], actor=a2)["agent"] == "A3"
    with pytest.raises(AccessDenied, match="not in the subtree|outside|may not"):  # A1 is above A2
        commissions.show_batch(db, batches["A1"], actor=a2)
    with pytest.raises(AccessDenied):
        commissions.export_batch(db, batches["A1"], tmp_path / "a1.csv", actor=a2)


def test_hkops_check_finds_a_batch_whose_total_differs_from_its_lines(distribution, hlr, clock, tmp_path):
    from sqlalchemy import update

    from hkops import check
    from hkops.commissions.tables import settlement_batches

    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path), actor="finance", now=NOW)
    _sold_by_a3(db, 11, hlr[1], clock)
    commissions.accrue(db, as_of=date(2026, 12, 31), actor="finance", now=NOW)
    _settle(db, "2026-12", date(2027, 1, 1), "DEC")
    with db.read() as conn:
        assert commissions.inconsistencies(conn) == []
    with db.write() as conn:  # a hand edit, as a bug would make it
        conn.execute(update(settlement_batches).where(settlement_batches.c.id == 1).values(total_fen=1))
    report = check.run(db, skip=tuple(c.name for c in check.CHECKS if c.name != "settlement_batches"))
    assert sorted(v.kind for v in report.violations) == ["batch_payment_differs", "batch_total_differs"]


def test_lookup_of_an_order_and_an_agent_shows_their_commissions(distribution, hlr, clock, tmp_path):
    from hkops import lookup

    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path), actor="finance", now=NOW)
    number = _sold_by_a3(db, 12, hlr[1], clock)
    commissions.accrue(db, as_of=date(2026, 12, 31), actor="finance", now=NOW)
    found = lookup.lookup(db, number)
    assert sorted((c["agent"], c["amount_fen"]) for c in found["orders"][0]["commissions"]) == [
        ("A1", 500), ("A2", 580), ("A2", 1_000), ("A3", 1_160), ("A3", 3_000)]
    assert "commission activation m0  A3 #1  credit ¥30.00  eligible" in lookup.format_lookup(found)
    assert lookup.lookup(db, "A2")["agent"]["commissions_by_state"] == {"eligible": 1_580}
    # An agent user sees what its subtree earns on the order, never what the agents above it earn.
    from hkops.security.access import Principal

    a2 = Principal("a2-user", roles=("agent",), permissions={"orders.read"}, agent="A2")
    assert sorted(c["agent"] for c in lookup.lookup(db, number, actor=a2)["orders"][0]["commissions"]) == [
        "A2", "A2", "A3", "A3"]


def test_a_clawback_of_a_credit_still_held_is_settled_with_it_never_before_it(distribution, hlr, clock, tmp_path):
    """Next-month settlement: a return inside the window while the credits are still held must not
    put a negative line into an earlier batch than the credits it reverses (the agent would owe
    money it was never paid); credit and reversal become eligible together and net to zero."""
    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path, SCHEME.replace('"instant"', '"next_month"')), actor="finance",
                           now=NOW)
    number = _sold_by_a3(db, 13, hlr[1], clock)  # 10 December: credits held until 8 February
    commissions.accrue(db, as_of=date(2026, 12, 31), actor="finance", now=NOW)
    assert {e["state"] for e in commissions.list_entries(db)} == {"held"}
    clock.now = _at(date(2027, 1, 20))
    orders.return_order(db, number, actor="desk", reason="customer changed mind")
    commissions.accrue(db, as_of=date(2027, 2, 1), actor="finance", now=_at(date(2027, 2, 1)))
    assert commissions.create_batches(db, "2027-01", as_of=date(2027, 2, 1), actor="finance", now=NOW) == []
    assert commissions.balance(db, "A3")["balance_fen"] == 0
    commissions.accrue(db, as_of=date(2027, 3, 1), actor="finance", now=_at(date(2027, 3, 1)))
    assert _settle(db, "2027-02", date(2027, 3, 1), "FEB") == {"A1": 0, "A2": 0, "A3": 0}
    assert {(e["kind"], e["state"]) for e in commissions.list_entries(db, order=number)} == {
        ("credit", "paid"), ("reversal", "paid")}
    assert [commissions.balance(db, a)["balance_fen"] for a in ("A1", "A2", "A3")] == [0, 0, 0]


def test_a_replayed_activation_neither_pays_twice_nor_moves_the_in_network_months(distribution, hlr, clock, tmp_path):
    """The activation event delivered again on 5 January (a redelivered message): nothing new is
    accrued, and months 2 and 3 still count from the first activation on 10 December."""
    from hkops.audit import Event

    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path), actor="finance", now=NOW)
    number = _sold_by_a3(db, 14, hlr[1], clock)
    commissions.accrue(db, as_of=date(2026, 12, 31), actor="finance", now=NOW)
    before = commissions.list_entries(db)
    with db.write() as conn:
        audit.record(conn, "replay", [Event("order", number, "activate", "delivered", "activated")],
                     _at(date(2027, 1, 5)))
    assert commissions.accrue(db, as_of=date(2027, 1, 5), actor="finance", now=NOW)["accrued"] == 0
    assert commissions.list_entries(db) == before
    commissions.accrue(db, as_of=date(2027, 3, 1), actor="finance", now=NOW)
    months = {(e["month"], e["event_at"].astimezone(timezone.utc)) for e in commissions.list_entries(db, order=number)
              if e["event"] == "in_network"}
    # Month N ends at midnight (Shanghai) starting month N+1 after activation: 16:00 UTC the day before.
    assert months == {(2, datetime(2027, 1, 31, 16, tzinfo=timezone.utc)),
                      (3, datetime(2027, 2, 28, 16, tzinfo=timezone.utc))}


def test_a_withdrawal_is_not_paid_when_a_negative_settlement_took_the_frozen_money(distribution, hlr, clock,
                                                                                   tmp_path):
    """Review finding: pay rechecks, under lock, that the frozen amount is still in the balance."""
    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path), actor="finance", now=NOW)
    _sold_by_a3(db, 1, hlr[1], clock)
    o2 = _sold_by_a3(db, 2, hlr[1], clock)
    commissions.accrue(db, as_of=date(2026, 12, 31), actor="finance", now=_at(date(2026, 12, 31)))
    _settle(db, "2026-12", date(2027, 1, 1), "DEC")
    w = commissions.request_withdrawal(db, "A3", "80.00", as_of=date(2027, 1, 5), actor="finance",
                                       now=_at(date(2027, 1, 5)), rules=RULES)
    commissions.move_withdrawal(db, w["id"], "approve", actor="finance", now=_at(date(2027, 1, 6)))
    clock.now = _at(date(2027, 1, 20))
    orders.return_order(db, o2, actor="desk", reason="customer changed mind")
    commissions.accrue(db, as_of=date(2027, 3, 1), until=date(2027, 2, 28), actor="finance", now=_at(date(2027, 3, 1)))
    assert _settle(db, "2027-02", date(2027, 3, 1), "FEB")["A3"] == -3_360
    assert _balances(db)["A3"] == (4_960, 8_000, -3_040)  # the frozen 8,000 is no longer there
    before = _counts(db)
    with pytest.raises(IllegalTransition, match="balance of 4960 fen no longer covers its frozen 8000 fen"):
        commissions.move_withdrawal(db, w["id"], "pay", actor="finance", now=NOW, reference="B1")
    assert _counts(db) == before and commissions.get_withdrawal(db, w["id"])["state"] == "approved"
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(agent_ledger)
                            .where(agent_ledger.c.withdrawal_id == w["id"])).scalar() == 0
    assert commissions.move_withdrawal(db, w["id"], "reject", actor="finance", now=NOW,
                                       reason="balance gone")["state"] == "rejected"
    assert _balances(db)["A3"] == (4_960, 0, 4_960)
