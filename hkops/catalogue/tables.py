"""Tables of the catalogue: SIM products, plans (套餐) and their prices per agent level."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Integer, PrimaryKeyConstraint, String, Table, Text

from hkops.store.schema import UTCDateTime, metadata

#: What a customer or agent buys as a card: one carrier, one form factor.
sim_products = Table(
    "sim_products",
    metadata,
    Column("code", String(32), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("carrier", String(32), nullable=False),
    # triple (2FF/3FF/4FF punch-out), standard, micro, nano, esim
    Column("form_factor", String(12), nullable=False),
    Column("active", Boolean, nullable=False, server_default="1"),
    Column("created_at", UTCDateTime, nullable=False),
)

plans = Table(
    "plans",
    metadata,
    Column("code", String(32), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("carrier", String(32), nullable=False),
    Column("monthly_fee_fen", BigInteger, nullable=False),
    Column("data_mb", Integer, nullable=False),
    Column("voice_minutes", Integer, nullable=False),
    Column("sms", Integer, nullable=False),
    # Overage (套外) beyond the monthly allowances: fen per GB (2**30 bytes) of data, per started
    # minute of outgoing voice, per outgoing SMS.
    Column("overage_data_fen_per_gb", Integer, nullable=False, server_default="500"),
    Column("overage_voice_fen_per_min", Integer, nullable=False, server_default="15"),
    Column("overage_sms_fen", Integer, nullable=False, server_default="10"),
    Column("contract_months", Integer, nullable=False, server_default="0"),
    # The top-up the customer must make on activation (首充), 0 for none.
    Column("first_topup_fen", BigInteger, nullable=False, server_default="0"),
    Column("min_age", Integer, nullable=False),
    Column("max_age", Integer, nullable=False),
    # Provinces (English names as in number_blocks.province) the plan is not shipped to, as JSON.
    Column("excluded_provinces", Text, nullable=False, server_default="[]"),
    Column("active", Boolean, nullable=False, server_default="1"),
    Column("created_at", UTCDateTime, nullable=False),
)

#: What a plan sells for at each agent price level; level 0 is the direct (retail) price.
plan_prices = Table(
    "plan_prices",
    metadata,
    Column("plan", String(32), nullable=False),
    Column("level", Integer, nullable=False),
    Column("price_fen", BigInteger, nullable=False),
    PrimaryKeyConstraint("plan", "level"),
)
