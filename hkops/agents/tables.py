"""The agent tree (代理): who sells under whom, at which price level, from which stock."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table

from hkops.store.schema import BigKey, UTCDateTime, metadata

agents = Table(
    "agents",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("code", String(32), nullable=False, unique=True),
    Column("name", String(64), nullable=False),
    Column("parent_id", BigInteger),
    # 1 for an agent without parent, parent's level + 1 below it.
    Column("level", Integer, nullable=False),
    # Which price list the agent buys at (catalogue plan_prices.level).
    Column("price_level", Integer, nullable=False),
    # Its stock location (stock_locations.code, kind "agent").
    Column("location", String(32), nullable=False),
    Column("province", String(32)),
    Column("contact_name", String(64)),
    Column("contact_phone", String(16)),
    Column("active", Boolean, nullable=False, server_default="1"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
    Index(None, "parent_id"),
)
