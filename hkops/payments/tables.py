"""The payment ledger: money collected for orders and refunded, in integer fen.

Append-only: a refund is a new row of kind ``refund``, never an edit of a collection.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, String, Table, Text, UniqueConstraint

from hkops.store.schema import BigKey, UTCDateTime, metadata

payments = Table(
    "payments",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("order_id", BigInteger, nullable=False),
    # collection or refund; amount_fen is always positive.
    Column("kind", String(12), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    # alipay, wechat, bank, cash...
    Column("method", String(16), nullable=False),
    # The payment provider's transaction id: the same one twice is the same payment.
    Column("reference", String(64), nullable=False),
    Column("note", Text),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(64), nullable=False),
    UniqueConstraint("method", "reference"),
    Index(None, "order_id"),
    Index(None, "at"),
)
