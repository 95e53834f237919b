"""The audit trail: every change leaves actor, time (UTC), number, from-state, to-state and
reason; ``hkops audit`` filters it and shows times in Asia/Shanghai."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from hkops import audit
from hkops.numbers import service
from strategies import clock, history, hkops_cli, kernel_sqlite3  # noqa: F401

N = "13800130127"
M = "18607550127"
NIGHT = datetime(2030, 3, 1, 15, 30, tzinfo=timezone.utc)  # 23:30 in Shanghai
AFTER_MIDNIGHT = datetime(2030, 3, 1, 16, 30, tzinfo=timezone.utc)  # 00:30 next day in Shanghai


def test_every_change_writes_one_record_with_actor_utc_time_number_states_and_reason(world, clock):
    steps = [
        ("reserve", ("C1",), "ana", "available", "reserved"),
        ("allocate", ("C1",), "bo", "reserved", "assigned"),
        ("activate", (), "bo", "assigned", "active"),
        ("suspend", (), "cy", "active", "suspended"),
        ("resume", (), "cy", "suspended", "active"),
        ("terminate", (), "ana", "active", "quarantined"),
        ("reclaim", ("C1",), "ana", "quarantined", "assigned"),
        ("release", (), "bo", "assigned", "available"),
        ("block", (), "regulator", "available", "blocked"),
        ("unblock", (), "regulator", "blocked", "available"),
    ]
    moments = []
    for action, args, actor, _, _ in steps:
        clock.advance(minutes=7)
        moments.append(clock.now)
        getattr(service, action)(world, N, *args, actor=actor, reason=f"because {action}")
    records = history(world, N)
    assert len(records) == len(steps)
    for record, (action, _, actor, before, after), moment in zip(records, steps, moments):
        assert (record["entity"], record["subject"], record["action"], record["actor"]) == ("number", N, action, actor)
        assert (record["from_state"], record["to_state"], record["reason"]) == (before, after, f"because {action}")
        assert record["at"] == moment and record["at"].utcoffset() == timedelta(0)
    assert [r["details"] for r in records[:2]] == [{"holder": "C1"}, {"holder": "C1"}]


def test_audit_times_are_stored_in_utc(world, clock):
    clock.now = AFTER_MIDNIGHT
    service.reserve(world, N, "C1", actor="ana")
    with world.read() as conn:
        if world.dialect == "postgresql":
            conn.exec_driver_sql("SET TIME ZONE 'Asia/Shanghai'")
            stored = conn.execute(text("SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM audit_log "
                                       "WHERE subject = :n"), {"n": N}).scalar()
        else:
            stored = conn.execute(text("SELECT substr(at, 1, 19) FROM audit_log WHERE subject = :n"), {"n": N}).scalar()
    assert stored == "2030-03-01 16:30:00"


def test_bulk_records_written_in_a_jupyter_kernel_keep_the_time_form_queries_compare(world, kernel_sqlite3):
    events = [audit.Event("number", f"1380013{n:04d}", "note", None, None, None) for n in range(audit.BULK)]
    with world.write() as conn:
        audit.record(conn, "ana", events, AFTER_MIDNIGHT)
        found = audit.query(conn, entity="number", since=AFTER_MIDNIGHT, until=AFTER_MIDNIGHT + timedelta(minutes=1),
                            limit=2 * audit.BULK)
        if world.dialect == "sqlite":
            assert conn.exec_driver_sql("SELECT DISTINCT at FROM audit_log WHERE entity = 'number'").all() == [
                ("2030-03-01 16:30:00.000000",)]
    assert len(found) == audit.BULK
    assert audit.verify(world).intact


def test_migration_0015_gives_times_a_kernel_wrote_the_form_queries_compare(tmp_path):
    from hkops.store import migrate
    from hkops.store.engine import Store

    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    migrate.upgrade(store, "0014")
    with store.write() as conn:
        audit.record(conn, "ana", [audit.Event("number", N, "note", None, None, None)], NIGHT)
        with audit.unguarded(conn):
            conn.exec_driver_sql("UPDATE audit_log SET at = '2030-03-01T15:30:00'")
        conn.exec_driver_sql("INSERT INTO stock_moves (iccid, from_location, to_location, kind, document, actor, at) "
                             "VALUES ('89860000000000000001', 'WH-BJ', 'CUSTOMER', 'sale', 'SO000001', 'ana', "
                             "'2030-03-01T03:00:00.250000')")
    migrate.upgrade(store)
    with store.read() as conn:
        assert conn.exec_driver_sql("SELECT at FROM audit_log").scalars().all() == ["2030-03-01 15:30:00.000000"]
        assert conn.exec_driver_sql("SELECT at FROM stock_moves").scalars().all() == ["2030-03-01 03:00:00.250000"]
        assert [r["subject"] for r in audit.query(conn, until=NIGHT + timedelta(minutes=1))] == [N]
    assert audit.verify(store).intact
    store.dispose()


def test_audit_query_filters_by_subject_actor_action_entity_and_time(world, clock):
    clock.now = NIGHT
    service.reserve(world, N, "C1", actor="ana")
    clock.now = AFTER_MIDNIGHT
    service.allocate(world, M, "C2", actor="bo")
    service.release(world, M, actor="ana")
    with world.read() as conn:
        def subjects(**filters):
            return [(r["subject"], r["action"]) for r in audit.query(conn, **filters)]

        assert subjects(entity="number") == [(M, "release"), (M, "allocate"), (N, "reserve")]
        assert subjects(subject=M) == [(M, "release"), (M, "allocate")]
        assert subjects(actor="ana") == [(M, "release"), (N, "reserve")]
        assert subjects(action="allocate") == [(M, "allocate")]
        assert subjects(entity="number", since=AFTER_MIDNIGHT) == [(M, "release"), (M, "allocate")]
        assert subjects(entity="number", until=AFTER_MIDNIGHT) == [(N, "reserve")]
        assert subjects(entity="number", limit=1) == [(M, "release")]
        assert subjects(actor="nobody") == []
        assert {r["subject"] for r in audit.query(conn, entity="block")} == {"1380013", "1860755", "1891010"}


def test_hkops_audit_filters_and_shows_times_in_asia_shanghai(world, clock, hkops_cli):
    clock.now = NIGHT
    service.reserve(world, N, "C1", actor="ana", reason="customer is deciding")
    clock.now = AFTER_MIDNIGHT
    service.allocate(world, M, "C2", actor="bo")
    status, out, err = hkops_cli(world, "audit", "--subject", "138 0013 0127")
    assert status == 0 and err == ""
    [line] = out.splitlines()
    assert line.startswith("2030-03-01 23:30:00  ana")
    assert "reserve" in line and "available -> reserved" in line and line.endswith("customer is deciding")
    status, out, _ = hkops_cli(world, "audit", "--since", "2030-03-02", "--json")
    records = json.loads(out)
    assert status == 0 and [(r["subject"], r["action"], r["actor"]) for r in records] == [(M, "allocate", "bo")]
    assert records[0]["at"] == "2030-03-02T00:30:00+08:00"
    _, out, _ = hkops_cli(world, "audit", "--by", "bo", "--action", "allocate", "--json")
    assert [r["subject"] for r in json.loads(out)] == [M]
    _, out, _ = hkops_cli(world, "audit", "--action", "add_block", "--limit", "2", "--json")
    assert len(json.loads(out)) == 2


def test_hkops_audit_refuses_a_bad_since_with_a_one_line_reason(world, hkops_cli):
    status, out, err = hkops_cli(world, "audit", "--since", "yesterday")
    assert status == 2 and out == ""
    assert err == ("hkops: error: since 'yesterday': must be an ISO date or date-time such as 2026-11-01 "
                   "or 2026-11-01T08:00\n")
