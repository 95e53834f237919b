"""Tables of the number resources: blocks, the pool of numbers, and grades."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, SmallInteger, String, Table

from hkops.store.schema import BigKey, UTCDateTime, metadata

number_blocks = Table(
    "number_blocks",
    metadata,
    Column("prefix", Integer, primary_key=True, autoincrement=False),
    Column("carrier", String(32), nullable=False),
    Column("province", String(32), nullable=False),
    Column("city", String(32), nullable=False),
    Column("province_zh", String(32), nullable=False),
    Column("city_zh", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(64), nullable=False),
)

# One row per number. ``msisdn`` is the 11-digit number as an integer (the rowid on
# SQLite); ``rev`` is its digits reversed, so that a tail search (*8888) is an index
# range like a prefix search.
numbers = Table(
    "numbers",
    metadata,
    Column("msisdn", BigKey, primary_key=True, autoincrement=False),
    Column("rev", BigInteger, nullable=False),
    Column("state", String(12), nullable=False),
    Column("grade", String(24), nullable=False),
    Column("level", SmallInteger, nullable=False),
    Column("price_fen", BigInteger, nullable=False),
    Column("holder", String(64)),
    Column("reserved_until", UTCDateTime),
    Column("last_holder", String(64)),
    Column("quarantine_until", UTCDateTime),
    Column("blocked_from", String(12)),
    Column("changed_at", UTCDateTime),
    Index(None, "rev"),
    Index(None, "state", "msisdn"),
    Index(None, "grade", "msisdn"),
)

number_grades = Table(
    "number_grades",
    metadata,
    Column("grade", String(24), primary_key=True),
    Column("label", String(120), nullable=False),
    Column("level", SmallInteger, nullable=False),
    Column("price_fen", BigInteger, nullable=False),
    Column("min_monthly_fen", BigInteger, nullable=False),
    Column("prepay_fen", BigInteger, nullable=False),
    Column("position", Integer, nullable=False),
)
