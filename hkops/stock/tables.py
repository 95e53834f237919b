"""Tables of serial stock: locations, the append-only ledger of moves, counts, minimums.

Every SIM card is a serial unit. ``sims.location`` says where a card is now; the ledger
says how it got there, and on-hand figures are derived from the ledger (receipts in
minus moves out). Both are written in the same transaction by hkops.stock.service.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, PrimaryKeyConstraint, String, Table, Text

from hkops.store.schema import BigKey, UTCDateTime, metadata

# kind: warehouse, agent (an agent's own stock), or virtual (hkops.stock.model.VIRTUAL:
# VENDOR, CUSTOMER, SCRAP, MISSING), which the ledger uses as the other end of receipts,
# sales, scrapping and count losses and which on-hand figures leave out.
stock_locations = Table(
    "stock_locations",
    metadata,
    Column("code", String(32), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("kind", String(12), nullable=False),
    Column("province", String(32)),
    Column("agent_id", BigInteger),
    Column("created_at", UTCDateTime, nullable=False),
)

stock_moves = Table(
    "stock_moves",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("iccid", String(20), nullable=False),
    Column("from_location", String(32), nullable=False),
    Column("to_location", String(32), nullable=False),
    # receipt, transfer, sale, return, scrap, count (hkops.stock.model.MoveKind)
    Column("kind", String(12), nullable=False),
    # The document behind the move: PO number, transfer id, order number, count id...
    Column("document", String(40), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index(None, "iccid", "id"),
    Index(None, "document"),
    Index(None, "at"),
)

stock_counts = Table(
    "stock_counts",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("number", String(20), nullable=False, unique=True),
    Column("location", String(32), ForeignKey("stock_locations.code"), nullable=False),
    Column("expected", Integer, nullable=False),
    Column("counted", Integer, nullable=False),
    Column("missing", Integer, nullable=False),
    Column("unexpected", Integer, nullable=False),
    # JSON: the ICCIDs missing and unexpected (the variances), for the record.
    Column("variances", Text),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(64), nullable=False),
)

#: Low-stock alert threshold of a product at a location.
stock_minimums = Table(
    "stock_minimums",
    metadata,
    Column("location", String(32), nullable=False),
    Column("product", String(32), nullable=False),
    Column("minimum", Integer, nullable=False),
    PrimaryKeyConstraint("location", "product"),
)
