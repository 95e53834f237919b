"""Tables of the SIM card inventory: batches received from vendors, and the cards.

Secrets are stored only as keyring tokens (see :mod:`hkops.security.crypto`), each bound
to its place: ``sims.<field>:<iccid>`` for a card, ``sim_batches.header:<name>`` for the
secret fields of a batch header.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table, Text

from hkops.cards.model import SimState
from hkops.security.crypto import SealedColumn
from hkops.store.schema import BigKey, UTCDateTime, metadata, partial_index

#: The state of a card as received (states: hkops.cards.model.SimState).
IN_STOCK = SimState.IN_STOCK.value
#: A card in one of these states serves its number (hkops.cards.service.LIVE): at most one per number.
_LIVE_NUMBER = "state IN ('paired', 'active', 'suspended', 'lost')"

sim_batches = Table(
    "sim_batches",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("name", String(40), nullable=False, unique=True),
    Column("carrier", String(32), nullable=False),
    Column("vendor", String(64)),
    Column("source_file", String(255), nullable=False),
    Column("layout", String(8), nullable=False),
    Column("quantity", Integer, nullable=False),
    # Plain header fields of a .out file, as JSON; fields named like keys are in header_enc.
    Column("header", Text),
    Column("header_enc", Text),
    Column("received_at", UTCDateTime, nullable=False),
    Column("received_by", String(64), nullable=False),
    # The catalogue product the cards are (hkops.catalogue), and the purchase order they
    # were received against (hkops.procurement); None for cards received without one.
    Column("product", String(32)),
    Column("purchase_order", String(20)),
)

sims = Table(
    "sims",
    metadata,
    Column("iccid", String(20), primary_key=True),
    Column("imsi", String(15), nullable=False, unique=True),
    Column("batch_id", BigInteger, ForeignKey("sim_batches.id"), nullable=False),
    Column("state", String(16), nullable=False, default=IN_STOCK, server_default=IN_STOCK),
    Column("location", String(64)),
    Column("ki_enc", Text, nullable=False),
    Column("opc_enc", Text),
    Column("pin1_enc", Text),
    Column("puk1_enc", Text),
    Column("pin2_enc", Text),
    Column("puk2_enc", Text),
    Column("adm1_enc", Text),
    # The paired number (11 digits); set by pairing, not by import.
    Column("msisdn", BigInteger),
    # Extra vendor columns: plain ones as JSON in ``extra``, ones named like keys (OP, K4,
    # KIC1...) as one encrypted JSON object in ``extra_enc``.
    Column("extra", Text),
    Column("extra_enc", Text),
    Column("changed_at", UTCDateTime),
    # The card lifecycle (hkops.cards.service): who holds it, whether the HLR has it, and
    # which move waits for the HLR (hkops.cards.model.NetworkSync).
    Column("subscriber_id", BigInteger),
    Column("network_sync", String(8), nullable=False, server_default="none"),
    Column("pending_action", String(16)),
    Column("suspend_reason", String(24)),
    Column("activated_at", UTCDateTime),
    # Replacement (SIM swap): the card that took over, and when this card took over.
    Column("replaced_by", String(20)),
    Column("swapped_at", UTCDateTime),
    Index(None, "batch_id"),
    Index(None, "state", "iccid"),
    Index(None, "msisdn"),
    Index(None, "network_sync"),
    Index(None, "location", "state", "iccid"),
    partial_index("uq_sims_live_msisdn", "msisdn", _LIVE_NUMBER, unique=True),
)

# Commands for the HLR, written in the same transaction as the inventory change they
# belong to and sent after it commits; a command that gets no definite answer stays
# "pending" and is sent again with the same request id (the HLR answers repeats without
# applying them twice). Keys are not stored here: they are read from ``sims`` when sent.
# States: pending, done, failed (refused by the HLR, waiting for the operator), retried (a
# failed row sent again as a new row), given_up (the operator abandoned it), skipped (another
# command of the same move was refused first), dropped
# (a stale pending row whose card no longer needed it, removed by reconciliation).
provisioning_outbox = Table(
    "provisioning_outbox",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("req", String(40), nullable=False, unique=True),
    Column("action", String(16), nullable=False),
    Column("iccid", String(20), nullable=False),
    Column("msisdn", BigInteger, nullable=False),
    Column("other_iccid", String(20)),
    Column("command", String(16), nullable=False),
    Column("state", String(8), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("actor", String(64), nullable=False),
    Column("reason", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("done_at", UTCDateTime),
    # What a refusal restores (hkops.cards.service: moves that change inventory at once):
    # the card's state and suspend reason before the move; and the suspend reason the move
    # asked for (so a retry asks the same).
    Column("before_state", String(16)),
    Column("before_suspend_reason", String(24)),
    Column("suspend_reason", String(24)),
    Index(None, "state", "id"),
    Index(None, "iccid"),
)

#: Secret fields of a card and the column holding each one's token.
SIM_SECRET_COLUMNS = {
    "ki": "ki_enc", "opc": "opc_enc", "pin1": "pin1_enc", "puk1": "puk1_enc",
    "pin2": "pin2_enc", "puk2": "puk2_enc", "adm1": "adm1_enc", "extra": "extra_enc",
}

#: Every encrypted column of this module, for key rotation (hkops.security.crypto.rotate).
SEALED_COLUMNS = [
    *(SealedColumn(sims, column, f"sims.{name}", "iccid") for name, column in SIM_SECRET_COLUMNS.items()),
    SealedColumn(sim_batches, "header_enc", "sim_batches.header", "name"),
]
