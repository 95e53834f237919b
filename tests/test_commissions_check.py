"""``hkops check`` proves the money side of distribution: every agent balance equals its ledger
(each ledger row explained by a paid batch or a paid withdrawal) and every batch equals its lines
(each entry's state agrees with its batch's, each reversal undoes one credit). Each kind of
violation is made here by direct SQL, as a bug or a hand edit would make it; check names the
identifiers involved and exits 1."""

from __future__ import annotations

import json
from datetime import date

import pytest
from sqlalchemy import delete, func, insert, select, update

from distribution_world import distribution  # noqa: F401  (fixture)
from hkops import check
from hkops.commissions import service as commissions
from hkops.commissions.tables import agent_ledger, commission_entries, settlement_batches, withdrawals
from hkops.orders import service as orders
from strategies import hkops_cli  # noqa: F401  (fixture)
from test_cards_lifecycle import hlr  # noqa: F401  (fixture)
from test_commissions import (NOW, RULES, _at, _scattered_batches, _scheme, _settle, _sold_by_a3,  # noqa: F401
                              clock)  # (clock: fixture)

OTHERS = tuple(c.name for c in check.CHECKS if c.name not in ("settlement_batches", "agent_balances"))


@pytest.fixture
def settled(distribution, hlr, clock, tmp_path, monkeypatch):
    """One order sold by A3 on 10 December, its December batches paid; A3 withdrew ¥20 (paid) and
    asked for ¥13 more (frozen); the order was returned on 20 January (reversals not settled yet)."""
    monkeypatch.setenv("HKOPS_HLR", "127.0.0.1:1")  # nothing answers there
    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path), actor="finance", now=NOW)
    number = _sold_by_a3(db, 1, hlr[1], clock)
    commissions.accrue(db, as_of=date(2026, 12, 31), actor="finance", now=NOW)
    _settle(db, "2026-12", date(2027, 1, 1), "DEC")
    paid = commissions.request_withdrawal(db, "A3", "20", as_of=date(2027, 1, 2), actor="finance", now=NOW,
                                          rules=RULES)
    commissions.move_withdrawal(db, paid["id"], "approve", actor="finance", now=NOW)
    commissions.move_withdrawal(db, paid["id"], "pay", actor="finance", now=NOW, reference="B1")
    commissions.request_withdrawal(db, "A3", "13", as_of=date(2027, 1, 9), actor="finance", now=NOW, rules=RULES)
    clock.now = _at(date(2027, 1, 20))
    orders.return_order(db, number, actor="desk", reason="customer changed mind")
    commissions.accrue(db, as_of=date(2027, 2, 1), actor="finance", now=NOW)
    return db


def _one(conn, query):
    return conn.execute(query.limit(1)).mappings().one()


def _entry(conn, agent_id: int, kind: str):
    e = commission_entries.c
    return _one(conn, select(commission_entries).where(e.agent_id == agent_id, e.kind == kind).order_by(e.id))


def _batch_of(conn, agent_id: int):
    return _one(conn, select(settlement_batches).where(settlement_batches.c.agent_id == agent_id))


def _a(conn, code: str) -> int:
    return commissions._agent(conn, code).id


def paid_entry_marked_eligible(conn):
    entry = _entry(conn, _a(conn, "A3"), "credit")
    conn.execute(update(commission_entries).where(commission_entries.c.id == entry["id"]).values(state="eligible"))
    return "entry_state_differs_from_batch", {"entry": entry["id"], "batch": entry["batch_id"], "state": "eligible",
                                              "batch_state": "paid"}


def entry_in_a_batch_that_does_not_exist(conn):
    entry = _entry(conn, _a(conn, "A3"), "reversal")
    conn.execute(update(commission_entries).where(commission_entries.c.id == entry["id"])
                 .values(batch_id=999, state="settled"))
    return "entry_batch_missing", {"entry": entry["id"], "batch": 999, "order": entry["order_number"]}


def entry_in_another_agents_batch(conn):
    entry, batch = _entry(conn, _a(conn, "A3"), "credit"), _batch_of(conn, _a(conn, "A2"))
    conn.execute(update(commission_entries).where(commission_entries.c.id == entry["id"]).values(batch_id=batch["id"]))
    return "entry_agent_differs_from_batch", {"entry": entry["id"], "batch": batch["id"],
                                              "agent_id": entry["agent_id"], "batch_agent_id": batch["agent_id"]}


def reversal_slipped_into_a_paid_batch(conn):
    """A3's reversal (not settled yet) named as a line of its paid December batch: the batch's settle and
    pay audit records (id runs) no longer name its lines."""
    entry, batch = _entry(conn, _a(conn, "A3"), "reversal"), _batch_of(conn, _a(conn, "A3"))
    conn.execute(update(commission_entries).where(commission_entries.c.id == entry["id"]).values(batch_id=batch["id"]))
    lines = conn.execute(select(func.count()).where(commission_entries.c.batch_id == batch["id"])).scalar()
    return "batch_lines_differ_from_audit", {"batch": batch["id"], "moves": "settle, pay", "lines": lines}


def reversal_of_another_amount(conn):
    entry = _entry(conn, _a(conn, "A2"), "reversal")
    conn.execute(update(commission_entries).where(commission_entries.c.id == entry["id"]).values(amount_fen=-1))
    return "reversal_differs_from_credit", {"entry": entry["id"], "order": entry["order_number"], "reversal_fen": -1,
                                            "credit_fen": -entry["amount_fen"]}


def entry_of_an_unknown_kind(conn):
    entry = _entry(conn, _a(conn, "A1"), "credit")
    conn.execute(update(commission_entries).where(commission_entries.c.id == entry["id"]).values(kind="bonus"))
    return "entry_kind_unknown", {"entry": entry["id"], "entry_kind": "bonus"}


def settlement_credit_without_its_batch(conn):
    row = _one(conn, select(agent_ledger).where(agent_ledger.c.kind == "settlement",
                                                agent_ledger.c.agent_id == _a(conn, "A3")))
    conn.execute(update(agent_ledger).where(agent_ledger.c.id == row["id"]).values(batch_id=999))
    return "ledger_settlement_without_batch", {"ledger_entry": row["id"], "batch": 999, "agent_id": row["agent_id"]}


def balance_raised_by_hand(conn):
    agent = _a(conn, "A3")
    new = conn.execute(insert(agent_ledger).values(agent_id=agent, kind="bonus", amount_fen=100_000,
                                                   at=NOW)).inserted_primary_key[0]
    return "ledger_entry_unexplained", {"ledger_entry": new, "agent_id": agent, "amount_fen": 100_000}


def withdrawal_fee_not_withheld(conn):
    w = _one(conn, select(withdrawals).where(withdrawals.c.state == "paid"))
    conn.execute(delete(agent_ledger).where(agent_ledger.c.withdrawal_id == w["id"], agent_ledger.c.kind == "fee"))
    return "withdrawal_ledger_differs", {"withdrawal": w["id"], "agent_id": w["agent_id"], "state": "paid",
                                         "expected_fen": -2_000, "ledger_fen": -2_000 + w["fee_fen"]}


def frozen_withdrawal_paid_out(conn):
    w = _one(conn, select(withdrawals).where(withdrawals.c.state == "requested"))
    conn.execute(insert(agent_ledger).values(agent_id=w["agent_id"], kind="withdrawal", amount_fen=-w["amount_fen"],
                                             withdrawal_id=w["id"], at=NOW))
    return "withdrawal_ledger_differs", {"withdrawal": w["id"], "state": "requested", "expected_fen": 0,
                                         "ledger_fen": -1_300}


@pytest.mark.parametrize("corrupt", [
    paid_entry_marked_eligible, entry_in_a_batch_that_does_not_exist, entry_in_another_agents_batch,
    reversal_slipped_into_a_paid_batch, reversal_of_another_amount, entry_of_an_unknown_kind, settlement_credit_without_its_batch,
    balance_raised_by_hand, withdrawal_fee_not_withheld, frozen_withdrawal_paid_out,
], ids=lambda f: f.__name__)
def test_check_finds_each_kind_of_commission_inconsistency(settled, hkops_cli, corrupt):
    db = settled
    args = ["check", "--json", *[a for name in OTHERS for a in ("--skip", name)]]
    status, out, err = hkops_cli(db, *args)
    assert (status, json.loads(out)["violations"]) == (0, []), err
    with db.write() as conn:  # a hand edit, as a bug would make it
        kind, ids = corrupt(conn)

    status, out, _ = hkops_cli(db, *args)

    assert status == 1
    report = json.loads(out)
    assert set(report["checked"]) == {"settlement_batches", "agent_balances"}
    mine = [v for v in report["violations"] if v["kind"] == kind]
    assert len(mine) == 1, report["violations"]
    assert {k: mine[0].get(k) for k in ids} == ids
    assert all(str(value) in mine[0]["message"] for key, value in ids.items() if key in ("entry", "withdrawal",
                                                                                          "ledger_entry", "batch"))


def test_check_proves_a_scattered_batch_by_its_digest(distribution, hlr, clock, tmp_path, hkops_cli):
    """Batches whose entries are interleaved are audited by digest: check recomputes each over the batch's
    lines now, so a line moved from A3's paid batch to A2's is named in both (their totals agree or
    not; the digest is what proves the lines)."""
    db = distribution.db
    batches = _scattered_batches(db, hlr[1], clock, tmp_path)
    a3, a2 = batches["A3"], batches["A2"]
    args = ["check", "--json", *[a for name in OTHERS for a in ("--skip", name)]]
    status, out, err = hkops_cli(db, *args)
    assert (status, json.loads(out)["violations"]) == (0, []), err
    with db.write() as conn:  # a hand edit, as a bug would make it
        conn.execute(update(commission_entries).where(commission_entries.c.id == a3["lines"][7])
                     .values(batch_id=a2["id"]))

    status, out, _ = hkops_cli(db, *args)

    assert status == 1
    mine = [v for v in json.loads(out)["violations"] if v["kind"] == "batch_lines_differ_from_audit"]
    assert sorted((v["batch"], v["moves"], v["recorded_entries"], v["lines"]) for v in mine) == sorted(
        [(a3["id"], "settle, pay", 126, 125), (a2["id"], "settle, pay", 126, 127)])
    assert all(f"batch {v['batch']}" in v["message"] for v in mine)
