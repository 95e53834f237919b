"""Commission schemes, the append-only commission ledger, settlement batches, the agent balance
ledger and withdrawals. Money in integer fen."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Date, Index, Integer, String, Table, Text, UniqueConstraint

from hkops.store.schema import BigKey, UTCDateTime, metadata, partial_index

#: One version of a scheme for one plan; ``body`` is the scheme file's text (TOML), kept as accrued under.
commission_schemes = Table(
    "commission_schemes",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("plan", String(32), nullable=False),
    Column("effective", Date, nullable=False),
    Column("window_days", Integer, nullable=False),
    Column("timing", String(12), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(64), nullable=False),
    UniqueConstraint("plan", "effective"),
)

#: Append-only: amounts are never edited; a clawback is a new row of kind ``reversal``.
#: ``month`` is 0 for one-off events, N for the in-network month N. States: accrued, held,
#: eligible, settled, paid.
commission_entries = Table(
    "commission_entries",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("order_id", BigInteger, nullable=False),
    Column("order_number", String(24), nullable=False),
    Column("event", String(16), nullable=False),
    Column("month", Integer, nullable=False),
    Column("agent_id", BigInteger, nullable=False),
    Column("position", Integer, nullable=False),
    Column("kind", String(8), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("scheme_id", BigInteger, nullable=False),
    Column("event_at", UTCDateTime, nullable=False),
    Column("eligible_on", Date, nullable=False),
    Column("state", String(10), nullable=False),
    Column("batch_id", BigInteger),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("order_id", "event", "month", "agent_id", "kind"),
    # Covering: an agent's pending sums by state read the index alone.
    Index(None, "agent_id", "state", "amount_fen"),
    partial_index(None, "batch_id", "batch_id IS NOT NULL"),
    # Accrual moves held -> eligible, settlement gathers eligible entries by date.
    Index(None, "state", "eligible_on"),
)

#: Where accrual stands (one row, id 1): every order and card event of the audit trail up to
#: ``audit_id`` was turned into entries, and in-network months ending on or before ``month_end``
#: were evaluated; ``scheme_id`` is the newest scheme version known then (a version added later
#: that starts before ``until`` makes the next run start over, idempotently). Written in the same
#: transaction as the entries, so a run that fails leaves it where it was.
commission_accrual = Table(
    "commission_accrual",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("audit_id", BigInteger, nullable=False),
    Column("month_end", Date),
    Column("until", Date),
    Column("scheme_id", BigInteger, nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
)

#: States: draft, confirmed, approved, paid.
settlement_batches = Table(
    "settlement_batches",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("agent_id", BigInteger, nullable=False),
    Column("period", String(7), nullable=False),
    Column("state", String(10), nullable=False),
    Column("total_fen", BigInteger, nullable=False),
    Column("reference", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
    UniqueConstraint("agent_id", "period"),
)

#: The agent balance ledger: settlement credits (may be negative), withdrawals, fees and tax.
agent_ledger = Table(
    "agent_ledger",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("agent_id", BigInteger, nullable=False),
    Column("kind", String(12), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("batch_id", BigInteger),
    Column("withdrawal_id", BigInteger),
    Column("at", UTCDateTime, nullable=False),
    Index(None, "agent_id"),
)

#: States: requested (amount frozen), approved, paid, rejected (released).
withdrawals = Table(
    "withdrawals",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("agent_id", BigInteger, nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("fee_fen", BigInteger, nullable=False),
    Column("tax_fen", BigInteger, nullable=False),
    Column("state", String(10), nullable=False),
    Column("requested_on", Date, nullable=False),
    Column("reference", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
    Index(None, "agent_id", "state"),
)
