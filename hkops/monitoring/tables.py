"""Tables of live monitoring: the alerts the monitor raised, and how far it has read the feed.

``alerts`` holds one row per (rule, subject, window): a rule firing again for the same card
or region inside the same window adds to that row (``hits``, ``last_seen``) instead of
raising a second alert. ``monitor_watermarks`` is how far each consumer has read the usage
feed (the last micro-batch it consumed); it advances in the transaction that stores the
alerts of the batches it covers, so a restarted monitor neither loses nor counts twice.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, String, Table, Text, UniqueConstraint

from hkops.store.schema import BigKey, UTCDateTime, metadata

alerts = Table(
    "alerts",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    # The rule's name in the rules file, and its kind (lost_card_use, sim_swap_traffic, ...).
    Column("rule", String(32), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("severity", String(8), nullable=False),
    # What the alert is about: an MSISDN, or a province for a regional rule.
    Column("subject", String(40), nullable=False),
    # The dedup window, in Asia/Shanghai time (e.g. "2026-11-29", "2026-11-29 14:05").
    Column("window", String(24), nullable=False),
    # open → acknowledged → closed (or open → closed).
    Column("state", String(12), nullable=False),
    # Feed time of the first and last record that fired it, and how many did.
    Column("first_seen", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    Column("hits", BigInteger, nullable=False),
    # What the rule saw, as JSON (the z-score, the two places, the counts...).
    Column("details", Text),
    Column("raised_at", UTCDateTime, nullable=False),
    Column("acknowledged_at", UTCDateTime),
    Column("acknowledged_by", String(64)),
    Column("closed_at", UTCDateTime),
    Column("closed_by", String(64)),
    Column("reason", Text),
    UniqueConstraint("rule", "subject", "window"),
    Index(None, "state", "id"),
    Index(None, "subject"),
)

monitor_watermarks = Table(
    "monitor_watermarks",
    metadata,
    Column("consumer", String(32), primary_key=True),
    # The sequence number of the last feed micro-batch consumed, and records consumed in all.
    Column("batch", BigInteger, nullable=False),
    Column("records", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)
