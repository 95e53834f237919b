"""Tables of sales orders and their shipments.

An order is where the two halves of the business meet: it carries the number (MSISDN),
the card (ICCID), the subscriber, the agent (with a snapshot of the agent chain as it was
when the order was placed) and the stock location the card left from.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, String, Table, Text, UniqueConstraint

from hkops.security.crypto import SealedColumn
from hkops.store.schema import BigKey, UTCDateTime, metadata, partial_index

#: An order in one of these states holds its number (hkops.orders.model.OPEN): at most one per number.
_OPEN_NUMBER = ("msisdn IS NOT NULL AND state IN "
                "('verifying', 'approved', 'paid', 'allocated', 'shipped', 'delivered')")

# States: hkops.orders.model.OrderState (DOMAIN.md section 5).
orders = Table(
    "orders",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("number", String(24), nullable=False, unique=True),
    # Who placed it: an agent's code, or "direct" for a customer; the client's own order id
    # makes intake idempotent (a retried submission returns the first order).
    Column("channel", String(32), nullable=False),
    Column("client_order_id", String(64)),
    Column("agent_id", BigInteger),
    # JSON list of the agent chain at order time, from the selling agent up to level 1.
    Column("agent_chain", Text),
    Column("plan", String(32), nullable=False),
    Column("product", String(32), nullable=False),
    Column("carrier", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text),
    Column("msisdn", BigInteger),
    Column("iccid", String(20)),
    # The stock location the card is picked from.
    Column("location", String(32), nullable=False),
    Column("subscriber_id", BigInteger),
    Column("customer_name", String(64), nullable=False),
    Column("id_masked", String(18), nullable=False),
    Column("resident_id_hash", String(64), nullable=False),
    Column("resident_id_enc", Text, nullable=False),
    Column("contact", String(16), nullable=False),
    Column("ship_province", String(32), nullable=False),
    Column("ship_address", Text, nullable=False),
    # Money in fen: plan price at the channel's price level, the vanity number's selection
    # fee and prepayment, and the total due; min_monthly_fen is the vanity minimum spend.
    Column("price_fen", BigInteger, nullable=False),
    Column("vanity_fee_fen", BigInteger, nullable=False, server_default="0"),
    Column("prepay_fen", BigInteger, nullable=False, server_default="0"),
    Column("total_fen", BigInteger, nullable=False),
    Column("min_monthly_fen", BigInteger, nullable=False, server_default="0"),
    Column("first_topup_fen", BigInteger),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
    UniqueConstraint("channel", "client_order_id"),
    Index(None, "state", "id"),
    Index(None, "created_at"),
    Index(None, "msisdn"),
    Index(None, "iccid"),
    Index(None, "resident_id_hash"),
    Index(None, "agent_id"),
    partial_index("uq_orders_open_msisdn", "msisdn", _OPEN_NUMBER, unique=True),
)

# States: hkops.orders.model.ShipmentState.
shipments = Table(
    "shipments",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("order_id", BigInteger, ForeignKey("orders.id"), nullable=False),
    Column("courier", String(32), nullable=False),
    Column("tracking_no", String(40), nullable=False),
    Column("state", String(12), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
    UniqueConstraint("courier", "tracking_no"),
    Index(None, "order_id"),
)

#: Encrypted columns of this module, for key rotation (hkops.security.crypto.rotate).
SEALED_COLUMNS = [SealedColumn(orders, "resident_id_enc", "orders.resident_id", "number")]
