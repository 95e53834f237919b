"""Fast bulk writes that skip per-row ORM work: executemany on SQLite, COPY on PostgreSQL."""

from __future__ import annotations

from typing import Iterable, Sequence

from sqlalchemy import Column, Connection, Table


def driver_value(conn: Connection, column: Column, value):
    """``value`` as SQLAlchemy binds it for ``column`` on this connection (for a bulk write).

    A datetime on SQLite becomes SQLAlchemy's text form (``2026-12-01 03:00:00.000000``),
    the form every query compares against; handed to the driver as a datetime, it would be
    written by whatever ``sqlite3`` adapter is registered, and ``nbformat`` (imported in
    every Jupyter kernel and Voilà) registers one that writes ``2026-12-01T03:00:00``.
    """
    processor = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return processor(value) if processor else value


def insert_rows(conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Insert plain tuples (already in database form: ints, strings, times from
    :func:`driver_value`) into ``table``."""
    names = ", ".join(columns)
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        with raw.cursor() as cursor:
            with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        return
    marks = ", ".join("?" for _ in columns)
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.executemany(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", rows)
    finally:
        cursor.close()


def refresh_statistics(conn: Connection, table: Table) -> None:
    """Tell PostgreSQL's planner about a bulk load at once instead of at the next autovacuum.

    SQLite is left without statistics: searches are written so that its planner has a
    single sensible index to use, and a sampled ANALYZE there misjudges low-cardinality
    columns such as ``state``.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"ANALYZE {table.name}")
