"""The audit trail: who changed what, when, from which state to which, and why.

Every use case that changes state calls :func:`record` inside its own transaction, so
an audit record exists exactly when the change it describes was committed.

The trail is tamper-evident: each record carries ``hash`` = HMAC-SHA256(key, ``prev_hash``
+ the record's canonical form), ``prev_hash`` being the hash of the record before it (the
first record follows a *genesis* value derived from the database's identity). The key is
kept outside the database (``data/audit.key``, or ``HKOPS_AUDIT_KEY_FILE``), so whoever can
write the database but does not hold the key cannot forge a record that :func:`verify`
accepts. Writers are serialised (a transaction-level advisory lock on PostgreSQL, BEGIN
IMMEDIATE on SQLite), so the chain has one order, and ids are given by the writer (the
head's id + 1 ...). The database refuses UPDATE, DELETE (and on PostgreSQL TRUNCATE) of
``audit_log`` by triggers (:func:`create_guards`); checkpoints (:func:`checkpoint`) kept
elsewhere catch a rewrite of the whole chain by someone who holds the key and can drop
the triggers.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import secrets
import stat
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from sqlalchemy import (
    Column,
    Connection,
    Index,
    MetaData,
    String,
    Table,
    Text,
    select,
)

from hkops.errors import HkopsError, InvalidValue
from hkops.store import bulk
from hkops.store.schema import BigKey, UTCDateTime, metadata
from hkops.store.engine import WRITE_LOCK_KEY
from hkops.timeutil import utc_now

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("entity", String(16), nullable=False),
    Column("subject", String(40), nullable=False),
    Column("action", String(24), nullable=False),
    Column("from_state", String(20)),
    Column("to_state", String(20)),
    Column("reason", Text),
    Column("details", Text),
    Column("prev_hash", String(64)),
    Column("hash", String(64)),
    Index(None, "subject", "id"),
    Index(None, "at"),
)


def default_actor() -> str:
    """The person acting: ``HKOPS_ACTOR`` or the operating-system user."""
    return os.environ.get("HKOPS_ACTOR") or getpass.getuser()


@dataclass
class Event:
    """One audited change."""

    entity: str
    subject: str
    action: str
    from_state: str | None = None
    to_state: str | None = None
    reason: str | None = None
    details: dict | None = field(default=None)


#: From this many events on, records are written with the bulk writer (COPY on PostgreSQL).
BULK = 100
_COLUMNS = ("at", "actor", "entity", "subject", "action", "from_state", "to_state", "reason", "details")
_CHAINED = ("id", *_COLUMNS, "prev_hash", "hash")

#: Chain new records (hash and prev_hash). Only the benchmark turns this off, to measure
#: what the chain costs; records written without it fail :func:`verify`.
CHAIN = True

KEY_FILE_ENV = "HKOPS_AUDIT_KEY_FILE"
CHECKPOINT_DIR_ENV = "HKOPS_AUDIT_CHECKPOINT_DIR"
#: The setting holding this database's identity (random, made with the first record).
IDENTITY_SETTING = "audit_database_id"
#: pg_advisory_xact_lock key that serialises audit writers on PostgreSQL: the one every write
#: transaction of :class:`~hkops.store.engine.Store` takes first (taken again here, re-entrantly,
#: for connections opened elsewhere).
LOCK_KEY = WRITE_LOCK_KEY
CHECKPOINT_FORMAT = "hkops-audit-checkpoint/1"


class AuditError(HkopsError):
    """The audit trail cannot be written or checked as asked (key file, checkpoint)."""


def key_file_path() -> Path:
    """``HKOPS_AUDIT_KEY_FILE``, else ``audit.key`` in the data folder."""
    from hkops.config import DATA_DIR

    configured = os.environ.get(KEY_FILE_ENV)
    return Path(configured) if configured else DATA_DIR / "audit.key"


_keys: dict[Path, bytes] = {}


def load_key(path: str | Path | None = None) -> bytes:
    """The HMAC key of the chain, from its owner-only key file (created on first use)."""
    path = Path(path) if path is not None else key_file_path()
    if path in _keys:
        return _keys[path]
    if not path.exists():
        from hkops.security.crypto import _write_private

        _write_private(path, secrets.token_hex(32) + "\n", replace=False)
    try:
        if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise AuditError(f"{path}: the audit key file may be read by others; run: chmod 600 {path}")
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except OSError as exc:
        raise AuditError(f"{path}: the audit key file cannot be read ({exc.strerror})") from None
    except (UnicodeDecodeError, ValueError):
        raise AuditError(f"{path}: is not an audit key file (64 hexadecimal digits)") from None
    if len(key) < 32:
        raise AuditError(f"{path}: the audit key is too short (64 hexadecimal digits expected)")
    _keys[path] = key
    return key


def _iso(at) -> str:
    """A stored time (datetime, or SQLite's text) in the canonical form: UTC, microseconds."""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    if at.tzinfo is not None:
        at = at.astimezone(timezone.utc).replace(tzinfo=None)
    return at.isoformat(timespec="microseconds")


def _compact_json():
    """A function giving compact JSON, non-ASCII kept as is: the C encoder made once when
    there is one (four times faster than ``json.dumps`` per call), else ``json``'s own."""
    from json.encoder import c_make_encoder, encode_basestring

    if c_make_encoder is None:
        return json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

    def refuse(value):
        raise TypeError(f"{type(value).__name__} in an audit record")

    chunks = c_make_encoder(None, refuse, encode_basestring, None, ":", ",", False, False, True)
    return lambda value: "".join(chunks(value, 0))


_encode = _compact_json()


def canonical(id, at, actor, entity, subject, action, from_state, to_state, reason, details) -> bytes:
    """The bytes a record's hash covers: its fields as compact JSON, in a fixed order."""
    return _encode([id, _iso(at), actor, entity, subject, action, from_state, to_state, reason, details]).encode()


_pads: dict[bytes, tuple] = {}


def _link(key: bytes, prev_hash: str, body: bytes) -> str:
    """HMAC-SHA256(key, prev_hash + body) in hex: RFC 2104 on hashlib, with the key's inner
    and outer pads hashed once per key and copied for each record (twice as fast as ``hmac``)."""
    pads = _pads.get(key)
    if pads is None:
        block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
        pads = _pads[key] = (hashlib.sha256(bytes(b ^ 0x36 for b in block)),
                             hashlib.sha256(bytes(b ^ 0x5C for b in block)))
    inner = pads[0].copy()
    inner.update(prev_hash.encode("ascii"))
    inner.update(body)
    outer = pads[1].copy()
    outer.update(inner.digest())
    return outer.hexdigest()


def genesis(key: bytes, identity: str) -> str:
    """The ``prev_hash`` of the first record: ties the chain to this database's identity."""
    return _link(key, "", b"hkops audit genesis " + identity.encode("ascii"))


def database_id(conn: Connection, *, create: bool = False) -> str | None:
    """This database's identity for the audit trail (made when ``create`` and missing)."""
    from hkops import settings

    value = settings.get(conn, IDENTITY_SETTING) or None
    if value is None and create:
        value = secrets.token_hex(8)
        settings.set_value(conn, IDENTITY_SETTING, value)
    return value


def _head(conn: Connection, key: bytes) -> tuple[int, str]:
    """The last record's id and hash (0 and the genesis value for an empty trail), with the
    writers' lock held until this transaction ends."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")
    row = conn.execute(select(audit_log.c.id, audit_log.c.hash).order_by(audit_log.c.id.desc()).limit(1)).first()
    if row is None:
        return 0, genesis(key, database_id(conn, create=True))
    return row.id, row.hash or ""


def record(conn: Connection, actor: str, events: Iterable[Event], at: datetime | None = None) -> int:
    """Write audit records for ``events`` in the caller's transaction; returns how many."""
    at = at or utc_now()
    rows = [
        (at, actor, e.entity, e.subject, e.action, e.from_state, e.to_state, e.reason,
         json.dumps(e.details, ensure_ascii=False, sort_keys=True) if e.details else None)
        for e in events
    ]
    if not rows:
        return 0
    if not CHAIN:
        if len(rows) >= BULK:
            stored_at = bulk.driver_value(conn, audit_log.c.at, at)
            bulk.insert_rows(conn, audit_log, _COLUMNS, ((stored_at, *row[1:]) for row in rows))
        else:
            conn.execute(audit_log.insert(), [dict(zip(_COLUMNS, row)) for row in rows])
        return len(rows)
    key = load_key()
    last_id, prev = _head(conn, key)
    chained = []
    at_text = _iso(at)  # canonical() for each record, with the time they share formatted once
    for n, row in enumerate(rows, start=last_id + 1):
        digest = _link(key, prev, _encode([n, at_text, *row[1:]]).encode())
        chained.append((n, *row, prev, digest))
        prev = digest
    if len(rows) >= BULK:
        stored_at = bulk.driver_value(conn, audit_log.c.at, at)
        bulk.insert_rows(conn, audit_log, _CHAINED, ((row[0], stored_at, *row[2:]) for row in chained))
    else:
        conn.execute(audit_log.insert(), [dict(zip(_CHAINED, row)) for row in chained])
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('audit_log', 'id'), {last_id + len(rows)})")
    return len(rows)


# -- the database's guards: no UPDATE, DELETE or TRUNCATE ------------------------------------

_GUARDS = {
    "sqlite": [
        "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: records cannot be changed'); END",
        "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: records cannot be deleted'); END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION USING MESSAGE = 'audit_log is append-only: ' || TG_OP || ' refused', "
        "ERRCODE = 'insufficient_privilege'; END $$",
        "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
    ],
}
_UNGUARD = {
    "sqlite": ["DROP TRIGGER IF EXISTS audit_log_no_update", "DROP TRIGGER IF EXISTS audit_log_no_delete"],
    "postgresql": ["DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log",
                   "DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log",
                   "DROP FUNCTION IF EXISTS audit_log_append_only()"],
}


def create_guards(conn: Connection) -> None:
    """Triggers that make the database refuse UPDATE and DELETE (and TRUNCATE) of audit_log."""
    for statement in _GUARDS[conn.dialect.name]:
        conn.exec_driver_sql(statement)


def drop_guards(conn: Connection) -> None:
    """Remove the triggers of :func:`create_guards` (migration downgrade)."""
    for statement in _UNGUARD[conn.dialect.name]:
        conn.exec_driver_sql(statement)


@contextmanager
def unguarded(conn: Connection) -> Iterator[Connection]:
    """Lift the guards inside this transaction only (the table's owner may; other sessions
    wait for the lock). For emptying a demo database and re-timing the demo's made-up
    history: nothing else changes audit records."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ALTER TABLE audit_log DISABLE TRIGGER USER")
        yield conn
        conn.exec_driver_sql("ALTER TABLE audit_log ENABLE TRIGGER USER")
    else:
        drop_guards(conn)
        yield conn
        create_guards(conn)


def _update_many(conn: Connection, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Set ``columns`` of the records ``(id, *values)`` in one statement (COPY and UPDATE
    ... FROM on PostgreSQL, executemany on SQLite). The guards must be lifted."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        types = {"at": "timestamptz"}
        conn.exec_driver_sql("CREATE TEMP TABLE audit_rewrite (id bigint, "
                             + ", ".join(f"{c} {types.get(c, 'text')}" for c in columns) + ")")
        bulk.insert_rows(conn, Table("audit_rewrite", MetaData()), ("id", *columns), rows)
        conn.exec_driver_sql("UPDATE audit_log AS a SET " + ", ".join(f"{c} = r.{c}" for c in columns)
                             + " FROM audit_rewrite AS r WHERE a.id = r.id")
        conn.exec_driver_sql("DROP TABLE audit_rewrite")
    else:
        cursor = conn.connection.driver_connection.cursor()
        try:
            cursor.executemany("UPDATE audit_log SET " + ", ".join(f"{c} = ?" for c in columns) + " WHERE id = ?",
                               [(*row[1:], row[0]) for row in rows])
        finally:
            cursor.close()


def rechain(conn: Connection, after_id: int = 0) -> int:
    """Recompute ``prev_hash`` and ``hash`` of every record after ``after_id``, in id order,
    with the key from the key file; returns how many. The guards must be lifted. Used by
    migration 0009 to chain the records written before it, and by :func:`retime`."""
    key = load_key()
    if after_id:
        prev = conn.execute(select(audit_log.c.hash).where(audit_log.c.id <= after_id)
                            .order_by(audit_log.c.id.desc()).limit(1)).scalar() or ""
    else:
        prev = None
    fields = [audit_log.c[name] for name in ("id", *_COLUMNS)]
    rows = conn.execute(select(*fields).where(audit_log.c.id > after_id).order_by(audit_log.c.id)).all()
    if not rows:
        return 0
    if prev is None:
        prev = genesis(key, database_id(conn, create=True))
    links = []
    for row in rows:
        digest = _link(key, prev, canonical(*row))
        links.append((row[0], prev, digest))
        prev = digest
    _update_many(conn, ("prev_hash", "hash"), links)
    return len(links)


def retime(conn: Connection, times: dict[int, datetime]) -> None:
    """Give the records ``{id: at}`` new times and re-chain from the first of them.

    Only the demo does this, to spread its made-up history over past days; it lifts the
    guards for its transaction (see :func:`unguarded`)."""
    if not times:
        return
    with unguarded(conn):
        _update_many(conn, ("at",), [(i, bulk.driver_value(conn, audit_log.c.at, at)) for i, at in times.items()])
        rechain(conn, min(times) - 1)


def query(
    conn: Connection,
    *,
    subject: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    entity: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[dict]:
    """Audit records (without their chain hashes), newest first, filtered by any of the arguments."""
    stmt = select(*(c for c in audit_log.c if c.name not in ("prev_hash", "hash"))) \
        .order_by(audit_log.c.id.desc()).limit(limit)
    for column, value in (
        (audit_log.c.subject, subject),
        (audit_log.c.actor, actor),
        (audit_log.c.action, action),
        (audit_log.c.entity, entity),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(audit_log.c.at >= since)
    if until is not None:
        stmt = stmt.where(audit_log.c.at < until)
    result = []
    for row in conn.execute(stmt).mappings():
        item = dict(row)
        item["details"] = json.loads(item["details"]) if item["details"] else None
        result.append(item)
    return result


# -- verification and checkpoints -----------------------------------------------------------

@dataclass
class Verdict:
    """What :func:`verify` found: ``intact`` when every record and every checkpoint agree."""

    intact: bool
    database_id: str | None
    count: int
    last_id: int | None
    last_hash: str | None
    first_bad_id: int | None = None
    problem: str | None = None
    bad_records: int = 0
    checkpoints: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def checkpoint_dir() -> Path:
    """Where checkpoints are kept by default: ``HKOPS_AUDIT_CHECKPOINT_DIR``, else
    ``audit-checkpoints`` in the data folder (copy them somewhere the database's
    administrators cannot write)."""
    from hkops.config import DATA_DIR

    configured = os.environ.get(CHECKPOINT_DIR_ENV)
    return Path(configured) if configured else DATA_DIR / "audit-checkpoints"


def kept_checkpoints() -> list[Path]:
    """The checkpoint files in :func:`checkpoint_dir`."""
    folder = checkpoint_dir()
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint file's content, checked for form."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidValue("checkpoint", str(path), f"cannot be read ({exc.strerror})") from None
    except ValueError:
        raise InvalidValue("checkpoint", str(path), "is not an audit checkpoint (not JSON)") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT or not (
            isinstance(data.get("database_id"), str) and isinstance(data.get("last_id"), int)
            and isinstance(data.get("last_hash"), str) and isinstance(data.get("count"), int)):
        raise InvalidValue("checkpoint", str(path), f"is not an audit checkpoint ({CHECKPOINT_FORMAT})")
    data["file"] = str(path)
    return data


_SELECT_ALL = ("SELECT id, at, actor, entity, subject, action, from_state, to_state, reason, details, "
               "prev_hash, hash FROM audit_log ORDER BY id")


def _stream(conn: Connection, sql: str, size: int = 20_000) -> Iterator[list[tuple]]:
    """The rows of ``sql`` in parts of ``size``, as plain tuples straight from the driver (a
    server-side cursor on PostgreSQL), inside ``conn``'s transaction."""
    raw = conn.connection.driver_connection
    cursor = raw.cursor(name="hkops_audit_stream") if conn.dialect.name == "postgresql" else raw.cursor()
    try:
        cursor.execute(sql)
        while part := cursor.fetchmany(size):
            yield part
    finally:
        cursor.close()


def verify(db, checkpoint_files: Iterable[str | Path] = ()) -> Verdict:
    """Check the whole chain, streaming the records in id order, against the key and the
    given checkpoints. Names the first bad record and what is wrong with it.

    A checkpoint of another database raises :class:`InvalidValue`. Records cut off the end
    of the trail leave no gap in the chain: only a checkpoint taken after them finds that.
    """
    key = load_key()
    points = [read_checkpoint(p) for p in checkpoint_files]
    encode, iso, link = _encode, _iso, _link
    with db.read() as conn:
        identity = database_id(conn)
        for point in points:
            if point["database_id"] != identity:
                raise InvalidValue("checkpoint", point["file"],
                                   f"was written for database {point['database_id']}, this database is "
                                   f"{identity or '(no audit records yet)'}: it belongs to another database "
                                   "(or to this one before it was emptied); keep each database's checkpoints apart")
        marks: dict[int, list[dict]] = {}
        for point in points:
            marks.setdefault(point["last_id"], []).append(point)
        results = {point["file"]: None for point in points}
        first_bad = problem = None
        bad = count = 0
        last_id = last_hash = None
        expected = genesis(key, identity) if identity else None
        for part in _stream(conn, _SELECT_ALL):
            for (id_, at, actor, entity, subject, action, from_state, to_state, reason, details,
                 prev_hash, stored) in part:
                # SQLite keeps times as text, "2026-11-29 18:08:10.451084": canonical with a "T".
                at = at[:10] + "T" + at[11:] if type(at) is str and len(at) == 26 else iso(at)
                body = encode([id_, at, actor, entity, subject, action, from_state, to_state, reason, details]).encode()
                count += 1
                wrong = None
                if prev_hash is None or stored is None:
                    wrong = f"record {id_} is not chained (no hash): written without the chain, or forged"
                elif stored != link(key, prev_hash, body):
                    wrong = (f"record {id_} does not match its hash: it was changed after it was written, "
                             "or forged without the key")
                elif prev_hash != expected:
                    if expected is None:
                        wrong = f"record {id_}: the database has no audit identity (setting {IDENTITY_SETTING})"
                    elif last_id is None:
                        wrong = (f"record {id_} is first but does not start the chain: the records before it were "
                                 "deleted, or the database identity was changed")
                    elif id_ != last_id + 1:
                        wrong = (f"record {id_} does not follow record {last_id}: record(s) {last_id + 1}..{id_ - 1} "
                                 "were deleted, or records were moved")
                    else:
                        wrong = (f"record {id_} does not follow record {last_id}: a record between them was "
                                 "deleted, inserted or moved")
                if wrong:
                    bad += 1
                    if first_bad is None:
                        first_bad, problem = id_, wrong
                expected = last_hash = stored
                last_id = id_
                if id_ in marks:
                    for point in marks[id_]:
                        if stored != point["last_hash"]:
                            results[point["file"]] = (f"record {id_} differs from checkpoint {point['file']} "
                                                      f"(taken {point.get('at')}): the trail up to it was rewritten")
                        elif count != point["count"]:
                            results[point["file"]] = (f"{count} records up to {id_}, checkpoint {point['file']} "
                                                      f"counted {point['count']}: records before it were removed "
                                                      "or added and the chain rewritten")
                        else:
                            results[point["file"]] = "ok"
    checks = []
    for point in points:
        outcome = results[point["file"]] or (f"record {point['last_id']} of checkpoint {point['file']} is missing: "
                                             "the trail was cut back or rewritten")
        checks.append({"file": point["file"], "last_id": point["last_id"], "ok": outcome == "ok",
                       "problem": None if outcome == "ok" else outcome})
    failed = [c["problem"] for c in checks if not c["ok"]]
    if problem is None and failed:
        problem = failed[0]
    return Verdict(intact=problem is None, database_id=identity, count=count, last_id=last_id, last_hash=last_hash,
                   first_bad_id=first_bad, problem=problem, bad_records=bad, checkpoints=checks)


def checkpoint(db, path: str | Path | None = None) -> tuple[Path, Verdict]:
    """Verify the chain and write its head (database identity, last id, last hash, count,
    time) to ``path`` (default: a new file in :func:`checkpoint_dir`). Refused when the
    chain is broken or empty."""
    verdict = verify(db, kept_checkpoints() if path is None else ())
    if not verdict.intact:
        raise AuditError(f"the audit trail is broken, no checkpoint written: {verdict.problem}")
    if not verdict.count:
        raise AuditError("the audit trail is empty: nothing to checkpoint")
    now = utc_now()
    if path is None:
        path = checkpoint_dir() / f"audit-{verdict.database_id}-{verdict.last_id:012d}.json"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {"format": CHECKPOINT_FORMAT, "database_id": verdict.database_id, "last_id": verdict.last_id,
               "last_hash": verdict.last_hash, "count": verdict.count,
               "at": now.isoformat(timespec="seconds")}
    path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return path, verdict
