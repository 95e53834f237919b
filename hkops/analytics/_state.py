"""Tables of the hkops database as Ibis tables, for the analyses written as Ibis expressions.

:func:`_tables` is the one place the analyses (sales, planning, forecasts) read the database:
it selects the columns analyses may use (never names, resident IDs, contacts or addresses)
through SQLAlchemy, so it works the same on SQLite and PostgreSQL, and hands them to DuckDB as
in-memory Ibis tables. Times are naive UTC timestamps (Asia/Shanghai is UTC+8 all year; the
analyses shift by :data:`LOCAL_OFFSET_H` to get local days).
"""

from __future__ import annotations

from hkops.store.engine import Store

#: Hours from UTC to Asia/Shanghai (no daylight saving).
LOCAL_OFFSET_H = 8

#: The columns of each table an analysis may read: no personal data (names, IDs, contacts, addresses).
COLUMNS: dict[str, tuple[str, ...]] = {
    "orders": ("id", "number", "channel", "agent_id", "plan", "product", "carrier", "state", "location",
               "ship_province", "total_fen", "first_topup_fen", "created_at", "changed_at"),
    "audit_log": ("id", "at", "entity", "subject", "action", "from_state", "to_state"),
    "agents": ("id", "code", "parent_id", "level", "location", "province", "active"),
    "stock_locations": ("code", "kind", "province", "agent_id"),
    "stock_moves": ("id", "iccid", "from_location", "to_location", "kind", "at"),
    "commission_entries": ("id", "order_id", "order_number", "event", "month", "agent_id", "kind", "amount_fen",
                           "event_at", "state"),
    "numbers": ("msisdn", "state", "grade", "reserved_until", "quarantine_until", "changed_at"),
    "number_blocks": ("prefix", "carrier", "province", "city", "created_at"),
    "plans": ("code", "carrier"),
}


def _tables(db: Store, names, *, agent_ids: list[int] | None = None) -> dict:
    """The tables ``names`` of ``db`` as Ibis in-memory tables (DuckDB), only :data:`COLUMNS`.

    With ``agent_ids`` (an agent user's subtree) the orders are only those of these agents,
    and the commission entries only theirs. The one reading path, so that a shared engine
    (``hkops.analytics.engine.state_table``) can take its place.
    """
    import ibis
    import pandas as pd
    from sqlalchemy import select

    from hkops.store.tables import metadata

    found = {}
    with db.read() as conn:
        for name in names:
            table = metadata.tables[name]
            columns = [table.c[c] for c in COLUMNS[name]]
            stmt = select(*columns)
            if agent_ids is not None and name in ("orders", "commission_entries"):
                stmt = stmt.where(table.c.agent_id.in_(agent_ids))
            rows = conn.execute(stmt).all()
            frame = pd.DataFrame(dict(zip(COLUMNS[name], zip(*rows))) if rows else {c: [] for c in COLUMNS[name]})
            found[name] = ibis.memtable(_typed(frame, table))
    return found


def _typed(frame, table):
    """``frame`` with the SQL column types kept when it is empty, and naive-UTC timestamps."""
    import pandas as pd
    from sqlalchemy import BigInteger, Boolean, Date, DateTime, Integer, SmallInteger

    for name in frame.columns:
        sql_type = table.c[name].type
        impl = getattr(sql_type, "impl", sql_type)
        if isinstance(impl, DateTime):
            frame[name] = pd.to_datetime(frame[name], utc=True).dt.tz_convert(None).astype("datetime64[us]")
        elif isinstance(impl, Date):
            frame[name] = pd.to_datetime(frame[name]).astype("datetime64[us]")
        elif isinstance(impl, Boolean):
            frame[name] = frame[name].astype("boolean")
        elif isinstance(impl, (BigInteger, Integer, SmallInteger)):
            frame[name] = frame[name].astype("Int64")
        else:
            frame[name] = frame[name].astype("string")
    return frame


def execute(expr):
    """Run an Ibis expression (DuckDB for in-memory tables) and return a pandas DataFrame
    (date columns as ``datetime.date`` values, as the analyses compare them with days)."""
    import pandas as pd

    frame = expr.to_pandas()
    for name, dtype in expr.schema().items():
        if dtype.is_date() and len(frame):
            frame[name] = pd.to_datetime(frame[name]).dt.date
    return frame


def agent_scope(db: Store, actor) -> list[int] | None:
    """Check ``analytics.read``; for an agent user the ids of its subtree's agents, else None."""
    from hkops.agents.service import scope_query
    from hkops.security.access import require

    require(actor, "analytics.read", "analyse sales")
    query = scope_query(actor)
    if query is None:
        return None
    with db.read() as conn:
        return [int(i) for i in conn.execute(query).scalars()]


def usage_records(store_dir):
    """The usage records of the Parquet store (``records/day=YYYY-MM-DD/*.parquet``) as an Ibis
    table with a ``day`` date column; InvalidValue naming the store when it holds none."""
    from pathlib import Path

    import ibis

    from hkops.errors import InvalidValue

    root = Path(store_dir) / "records"
    if not any(root.glob("day=*/*.parquet")):
        raise InvalidValue("usage store", str(store_dir),
                           f"holds no records (expected {root}/day=YYYY-MM-DD/*.parquet); run `hkops usage generate`")
    records = ibis.duckdb.connect().read_parquet(str(root / "day=*" / "*.parquet"), hive_partitioning=True)
    return records.mutate(day=records.day.cast("date"))
