"""SQLite: times written as ``2026-12-01T03:00:00`` by bulk writes get SQLAlchemy's form

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

Bulk writes of stock moves and audit records handed datetimes to the sqlite3 driver,
which wrote them with whatever adapter was registered. Inside a Jupyter kernel or Voilà
that is nbformat's, which writes ``2026-12-01T03:00:00``; every query compares against
SQLAlchemy's ``2026-12-01 03:00:00.000000``, and ``T`` sorts after the space, so such a
move fell out of a day's range (low stock counted no sales). Those rows get the form
SQLAlchemy writes. The audit chain hashes each time in a canonical form, so it holds.
PostgreSQL stores real timestamps and has nothing to repair.
"""

from contextlib import nullcontext
from datetime import datetime, timezone

from alembic import op


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

_TABLES = ("stock_moves", "audit_log")


def _text(stored: str) -> str:
    moment = datetime.fromisoformat(stored)
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.isoformat(" ", "microseconds")


def upgrade() -> None:
    from hkops import audit

    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    for table in _TABLES:
        rows = conn.exec_driver_sql(f"SELECT id, at FROM {table} WHERE instr(at, 'T') > 0").all()
        if not rows:
            continue
        fixed = [(_text(at), row_id) for row_id, at in rows]
        with audit.unguarded(conn) if table == "audit_log" else nullcontext():
            cursor = conn.connection.driver_connection.cursor()
            try:
                cursor.executemany(f"UPDATE {table} SET at = ? WHERE id = ?", fixed)
            finally:
                cursor.close()


def downgrade() -> None:
    pass  # the repaired form is the one every version reads and compares

