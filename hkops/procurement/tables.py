"""Tables of procurement: vendors, purchase orders with their lines, and receipts."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table, Text

from hkops.store.schema import BigKey, UTCDateTime, metadata

vendors = Table(
    "vendors",
    metadata,
    Column("code", String(32), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("contact", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
)

# States: hkops.procurement.model.PoState (DOMAIN.md section 5).
purchase_orders = Table(
    "purchase_orders",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("number", String(20), nullable=False, unique=True),
    Column("vendor", String(32), ForeignKey("vendors.code"), nullable=False),
    # The stock location (warehouse) deliveries are received into.
    Column("warehouse", String(32), nullable=False),
    Column("state", String(20), nullable=False),
    # Freight, duty and other costs shared over the cards received (landed cost).
    Column("extra_cost_fen", BigInteger, nullable=False, server_default="0"),
    Column("note", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
    Index(None, "state"),
)

purchase_order_lines = Table(
    "purchase_order_lines",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("po_id", BigInteger, ForeignKey("purchase_orders.id"), nullable=False),
    Column("product", String(32), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_cost_fen", BigInteger, nullable=False),
    Column("received", Integer, nullable=False, server_default="0"),
    Index(None, "po_id"),
)

#: One delivery received against a purchase order line: one vendor file, one SIM batch.
po_receipts = Table(
    "po_receipts",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("po_id", BigInteger, ForeignKey("purchase_orders.id"), nullable=False),
    Column("line_id", BigInteger, ForeignKey("purchase_order_lines.id"), nullable=False),
    Column("batch_id", BigInteger, ForeignKey("sim_batches.id"), nullable=False),
    Column("quantity", Integer, nullable=False),
    # Cards beyond what the line still expected (accepted only when asked for).
    Column("over_quantity", Integer, nullable=False, server_default="0"),
    Column("landed_unit_cost_fen", BigInteger, nullable=False),
    Column("note", Text),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(64), nullable=False),
    Index(None, "po_id"),
)
