"""The tamper-evident audit trail: records chained by HMAC with a key outside the database,
the database refusing UPDATE and DELETE, and ``hkops audit verify`` finding rows edited,
deleted, forged or swapped directly with the sqlite3 / psql programs (triggers dropped or
disabled first, as a database superuser could), and checkpoints catching a rewrite."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, select, text

from hkops import audit
from hkops.audit import Event, audit_log
from hkops.errors import InvalidValue
from hkops.store import migrate
from hkops.store.engine import Store
from strategies import hkops_cli  # noqa: F401

from postgres import POSTGRES_ADMIN_URL


@pytest.fixture(autouse=True)
def audit_files(tmp_path, monkeypatch):
    """Each test its own audit key file and checkpoint folder."""
    monkeypatch.setenv(audit.KEY_FILE_ENV, str(tmp_path / "audit.key"))
    monkeypatch.setenv(audit.CHECKPOINT_DIR_ENV, str(tmp_path / "checkpoints"))
    return tmp_path


def write(db, count: int, subject: str = "S", action: str = "touch") -> None:
    """One transaction writing ``count`` audit records (from BULK on, the bulk writer)."""
    with db.write() as conn:
        audit.record(conn, "tester", [Event("thing", f"{subject}{n}", action, "a", "b", f"why {n}", {"n": n})
                                      for n in range(count)])


def rows(db) -> list[dict]:
    with db.read() as conn:
        return [dict(r) for r in conn.execute(select(audit_log).order_by(audit_log.c.id)).mappings()]


def direct(db, sql: str) -> subprocess.CompletedProcess:
    """Run ``sql`` with the database's own command-line program, outside hkops."""
    if db.dialect == "sqlite":
        command = ["sqlite3", db.url.split("///", 1)[1], sql]
    else:
        command = ["psql", "postgresql://" + db.url.split("://", 1)[1], "-v", "ON_ERROR_STOP=1", "-q", "-c", sql]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def as_superuser(db, sql: str) -> None:
    """``sql`` run directly with the audit triggers out of the way, then put back."""
    if db.dialect == "sqlite":
        guards = ("CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'x'); END; "
                  "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'x'); END;")
        script = f"DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; {sql}; {guards}"
    else:
        script = (f"ALTER TABLE audit_log DISABLE TRIGGER USER; {sql}; "
                  "ALTER TABLE audit_log ENABLE TRIGGER USER;")
    done = direct(db, script)
    assert done.returncode == 0, done.stderr


def test_records_are_chained_across_single_and_bulk_writes(db, audit_files):
    write(db, 2)
    write(db, audit.BULK + 20)  # the bulk writer (COPY on PostgreSQL)
    write(db, 1)
    records = rows(db)
    key = bytes.fromhex((audit_files / "audit.key").read_text().strip())
    with db.read() as conn:
        identity = audit.database_id(conn)
    assert identity and [r["id"] for r in records] == list(range(1, 2 + audit.BULK + 20 + 1 + 1))
    expected_prev = hmac.new(key, b"hkops audit genesis " + identity.encode(), hashlib.sha256).hexdigest()
    for r in records:
        assert r["prev_hash"] == expected_prev
        body = json.dumps([r["id"], audit._iso(r["at"]), r["actor"], r["entity"], r["subject"], r["action"],
                           r["from_state"], r["to_state"], r["reason"], r["details"]],
                          ensure_ascii=False, separators=(",", ":")).encode()
        assert r["hash"] == hmac.new(key, expected_prev.encode() + body, hashlib.sha256).hexdigest()
        expected_prev = r["hash"]
    verdict = audit.verify(db)
    assert verdict.intact and verdict.count == len(records) and verdict.last_hash == records[-1]["hash"]


def test_the_key_file_is_made_owner_only_and_outside_the_database(db, audit_files):
    write(db, 1)
    key_file = audit_files / "audit.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text().strip()
    with db.read() as conn:
        assert key not in json.dumps([list(r) for r in conn.execute(text("SELECT * FROM settings"))])


def test_the_database_refuses_update_delete_and_truncate_of_audit_records(db):
    write(db, 3)
    before = rows(db)
    for sql in ("UPDATE audit_log SET reason = 'nothing happened' WHERE id = 2",
                "DELETE FROM audit_log WHERE id = 2",
                *(["TRUNCATE audit_log"] if db.dialect == "postgresql" else [])):
        done = direct(db, sql)
        assert done.returncode != 0 and "append-only" in done.stderr, (sql, done.stderr)
    with pytest.raises(Exception, match="append-only"):
        with db.write() as conn:
            conn.execute(audit_log.update().where(audit_log.c.id == 1).values(actor="someone else"))
    assert rows(db) == before


def _forge_last(db) -> str:
    head = rows(db)[-1]
    return (f"INSERT INTO audit_log (id, at, actor, entity, subject, action, reason, prev_hash, hash) VALUES "
            f"({head['id'] + 1}, '2030-01-01 00:00:00', 'ghost', 'thing', 'S9', 'touch', 'forged', "
            f"'{head['hash']}', '{hashlib.sha256(b'forged').hexdigest()}')")


def _swap(db) -> str:
    """Records 3 and 4 exchange their contents (hashes included), keeping their ids."""
    a, b = rows(db)[2:4]

    def quoted(value):
        return "NULL" if value is None else "'" + str(value).replace("'", "''") + "'"

    return "; ".join(
        "UPDATE audit_log SET " + ", ".join(f"{c} = {quoted(other[c])}" for c in (
            "actor", "entity", "subject", "action", "from_state", "to_state", "reason", "details", "prev_hash", "hash"))
        + f" WHERE id = {mine['id']}" for mine, other in ((a, b), (b, a)))


ATTACKS = {
    # name: (SQL, first bad id, words in the problem)
    "edit": ("UPDATE audit_log SET reason = 'nothing happened' WHERE id = 4", 4, "does not match its hash"),
    "delete": ("DELETE FROM audit_log WHERE id = 4", 5, "record(s) 4..4 were deleted"),
    "insert": (_forge_last, 7, "does not match its hash"),
    "swap": (_swap, 3, "does not match its hash"),
}


@pytest.mark.parametrize("attack", ATTACKS)
def test_verify_finds_a_record_edited_deleted_forged_or_swapped_directly(db, attack, hkops_cli):
    write(db, 6)
    assert hkops_cli(db, "audit", "verify")[0] == 0
    sql, first_bad, words = ATTACKS[attack]
    as_superuser(db, sql(db) if callable(sql) else sql)
    verdict = audit.verify(db)
    assert not verdict.intact and verdict.first_bad_id == first_bad
    assert verdict.problem.startswith(f"record {first_bad} ") and words in verdict.problem
    status, out, err = hkops_cli(db, "audit", "verify")
    assert status == 1 and out.startswith(f"audit trail BROKEN: record {first_bad} ") and err == ""
    status, out, _ = hkops_cli(db, "audit", "verify", "--json")
    assert status == 1 and json.loads(out)["first_bad_id"] == first_bad


def test_a_rewrite_of_the_whole_chain_with_another_key_is_caught_by_a_checkpoint(db, audit_files, monkeypatch,
                                                                                 hkops_cli):
    write(db, 5)
    status, out, _ = hkops_cli(db, "audit", "checkpoint", "--file", audit_files / "kept" / "cp.json")
    assert status == 0 and "checkpoint of record 5 (5 records)" in out
    write(db, 2)
    # Someone with the database's superuser and their own key rewrites history and re-chains it.
    monkeypatch.setenv(audit.KEY_FILE_ENV, str(audit_files / "attacker.key"))
    with db.write() as conn, audit.unguarded(conn):
        conn.execute(audit_log.update().where(audit_log.c.id == 2).values(reason="nothing happened"))
        audit.rechain(conn)
    assert audit.verify(db).intact  # the attacker's key accepts the rewritten chain...
    status, out, _ = hkops_cli(db, "audit", "verify", "--checkpoint", audit_files / "kept" / "cp.json")
    assert status == 1 and "record 5 differs from checkpoint" in out  # ...the checkpoint kept elsewhere does not
    monkeypatch.setenv(audit.KEY_FILE_ENV, str(audit_files / "audit.key"))
    verdict = audit.verify(db)  # and the real key does not either
    assert not verdict.intact and verdict.first_bad_id == 1


def test_a_rewrite_with_the_key_before_a_checkpoint_is_caught_and_one_after_it_is_not(db, hkops_cli):
    write(db, 5)
    assert hkops_cli(db, "audit", "checkpoint")[0] == 0  # kept in the checkpoint folder: always compared
    write(db, 3)
    assert hkops_cli(db, "audit", "verify")[0] == 0
    with db.write() as conn, audit.unguarded(conn):
        conn.execute(audit_log.update().where(audit_log.c.id == 7).values(reason="rewritten after the checkpoint"))
        audit.rechain(conn, 6)
    assert hkops_cli(db, "audit", "verify")[0] == 0  # what a checkpoint cannot see
    with db.write() as conn, audit.unguarded(conn):
        conn.execute(audit_log.update().where(audit_log.c.id == 3).values(reason="rewritten before it"))
        audit.rechain(conn, 2)
    status, out, _ = hkops_cli(db, "audit", "verify")
    assert status == 1 and "record 5 differs from checkpoint" in out


def test_records_cut_off_the_end_are_caught_by_a_checkpoint(db, hkops_cli):
    write(db, 5)
    assert hkops_cli(db, "audit", "checkpoint")[0] == 0
    as_superuser(db, "DELETE FROM audit_log WHERE id >= 4")
    assert audit.verify(db, []).intact  # the chain alone cannot tell
    status, out, _ = hkops_cli(db, "audit", "verify")
    assert status == 1 and "record 5 of checkpoint" in out and "is missing" in out


def test_a_checkpoint_of_another_database_is_refused(db, tmp_path, sqlite_template, hkops_cli):
    import shutil

    other_path = tmp_path / "other.db"
    shutil.copy(sqlite_template, other_path)
    other = Store(f"sqlite:///{other_path}")
    try:
        write(other, 3)
        write(db, 3)
        status, _, _ = hkops_cli(other, "audit", "checkpoint", "--file", tmp_path / "other.json")
        assert status == 0
        with pytest.raises(InvalidValue, match="another database"):
            audit.verify(db, [tmp_path / "other.json"])
        status, out, err = hkops_cli(db, "audit", "verify", "--checkpoint", tmp_path / "other.json")
        assert status == 2 and out == ""
        assert err.startswith(f"hkops: error: checkpoint '{tmp_path / 'other.json'}': was written for database ")
        assert "it belongs to another database" in err
        (tmp_path / "junk.json").write_text("{\"format\": \"something else\"}")
        status, _, err = hkops_cli(db, "audit", "verify", "--checkpoint", tmp_path / "junk.json")
        assert status == 2 and "is not an audit checkpoint" in err
    finally:
        other.dispose()


def test_concurrent_writers_make_one_chain(db):
    write(db, 1)
    failures = []

    def writer(name: str) -> None:
        try:
            for n in range(15):
                write(db, 1 + n % 3, subject=name)
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(f"T{t}-",)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    verdict = audit.verify(db)
    assert verdict.intact and verdict.count == 1 + 4 * (5 * 1 + 5 * 2 + 5 * 3)


def test_retime_moves_records_keeps_the_chain_and_puts_the_guards_back(db):
    write(db, 4)
    before = rows(db)
    with db.write() as conn:
        audit.retime(conn, {2: before[1]["at"] - timedelta(days=3), 3: before[2]["at"] - timedelta(days=2)})
    after = rows(db)
    assert after[1]["at"] == before[1]["at"] - timedelta(days=3) and after[1]["hash"] != before[1]["hash"]
    assert audit.verify(db).intact
    done = direct(db, "DELETE FROM audit_log WHERE id = 1")
    assert done.returncode != 0 and "append-only" in done.stderr


def test_hkops_audit_log_lists_records_as_hkops_audit_does(db, hkops_cli):
    write(db, 3)
    status, out, _ = hkops_cli(db, "audit", "log", "--subject", "S1", "--json")
    assert status == 0 and [(r["subject"], r["reason"]) for r in json.loads(out)] == [("S1", "why 1")]
    assert hkops_cli(db, "audit", "--subject", "S1", "--json")[1] == out


@pytest.fixture(params=["sqlite", "postgresql"])
def at_0008(request, tmp_path):
    """A database migrated to 0008 only (before the chain)."""
    if request.param == "sqlite":
        store = Store(f"sqlite:///{tmp_path / 'old.db'}")
        yield store
        store.dispose()
        return
    request.getfixturevalue("postgres_database")  # skips when PostgreSQL is not reachable
    name = f"hkops_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    store = Store(POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name)
    yield store
    store.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_migration_0009_chains_the_records_written_before_it(at_0008):
    db = at_0008
    migrate.upgrade(db, "0008")
    with db.write() as conn:
        for n in range(5):
            conn.execute(text("INSERT INTO audit_log (at, actor, entity, subject, action, reason) "
                              "VALUES (:at, 'old', 'thing', :s, 'touch', NULL)"),
                         {"at": audit_log.c.at.type.process_bind_param(audit.utc_now(), conn.dialect), "s": f"S{n}"})
    migrate.upgrade(db)
    assert [r["prev_hash"] is not None and r["hash"] is not None for r in rows(db)] == [True] * 5
    write(db, 2)
    verdict = audit.verify(db)
    assert verdict.intact and verdict.count == 7
    done = direct(db, "DELETE FROM audit_log WHERE id = 1")
    assert done.returncode != 0 and "append-only" in done.stderr


def test_emptying_the_demo_database_clears_the_trail_and_keeps_its_guards(db):
    from hkops import demo

    write(db, 3)
    demo.empty(db)
    assert rows(db) == []
    write(db, 2)
    assert audit.verify(db).intact
    done = direct(db, "DELETE FROM audit_log")
    assert done.returncode != 0 and "append-only" in done.stderr and len(rows(db)) == 2


def test_the_demo_world_re_timed_over_past_days_verifies(tmp_path, monkeypatch):
    from hkops import demo

    monkeypatch.setenv("HKOPS_SECRET_KEY_FILE", str(tmp_path / "secret.key"))
    store = Store(f"sqlite:///{tmp_path / 'demo.db'}")
    try:
        demo.build(store, per_province=1, cards=20, orders=40, hlr_dir=tmp_path / "hlr")
        verdict = audit.verify(store)
        with store.read() as conn:
            oldest = conn.execute(select(audit_log.c.at).order_by(audit_log.c.at).limit(1)).scalar()
        assert verdict.intact and verdict.count > 1000 and oldest < audit.utc_now() - timedelta(days=30)
    finally:
        store.dispose()


def test_the_audit_identity_cannot_be_set_by_hand(db, hkops_cli):
    write(db, 1)
    with db.read() as conn:
        identity = audit.database_id(conn)
    status, out, err = hkops_cli(db, "settings", "set", "audit_database_id", "0123456789abcdef")
    assert status == 2 and out == "" and "audit_database_id" in err and "kept by hkops itself" in err
    with db.read() as conn:
        assert audit.database_id(conn) == identity
    assert audit.verify(db).intact
