"""The audit trail: who changed what, when, from which state to which, and why.

Every use case that changes state calls :func:`record` inside its own transaction, so
an audit record exists exactly when the change it describes was committed.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable

from sqlalchemy import (
    Column,
    Connection,
    Index,
    String,
    Table,
    Text,
    select,
)

from hkops.store import bulk
from hkops.store.schema import BigKey, UTCDateTime, metadata
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


def record(conn: Connection, actor: str, events: Iterable[Event], at: datetime | None = None) -> int:
    """Write audit records for ``events`` in the caller's transaction; returns how many."""
    at = at or utc_now()
    rows = [
        (at, actor, e.entity, e.subject, e.action, e.from_state, e.to_state, e.reason,
         json.dumps(e.details, ensure_ascii=False, sort_keys=True) if e.details else None)
        for e in events
    ]
    if len(rows) >= BULK:
        stored_at = audit_log.c.at.type.process_bind_param(at, conn.dialect)
        bulk.insert_rows(conn, audit_log, _COLUMNS, ((stored_at, *row[1:]) for row in rows))
    elif rows:
        conn.execute(audit_log.insert(), [dict(zip(_COLUMNS, row)) for row in rows])
    return len(rows)


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
    """Audit records, newest first, filtered by any of the arguments."""
    stmt = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
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
