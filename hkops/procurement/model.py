"""Purchase order lifecycle (DOMAIN.md section 5). No I/O here."""

from __future__ import annotations

from enum import StrEnum

from hkops.errors import IllegalTransition


class PoState(StrEnum):
    """States of a purchase order."""

    DRAFT = "draft"
    CONFIRMED = "confirmed"
    PARTIALLY_RECEIVED = "partially_received"
    RECEIVED = "received"
    CLOSED = "closed"
    CANCELLED = "cancelled"


P = PoState
MOVES: dict[str, tuple[frozenset[PoState], PoState | None]] = {
    "confirm": (frozenset({P.DRAFT}), P.CONFIRMED),
    # Receiving leads to partially_received or received, depending on the quantities.
    "receive": (frozenset({P.CONFIRMED, P.PARTIALLY_RECEIVED}), None),
    # Closing a partially received order records the under-delivery.
    "close": (frozenset({P.PARTIALLY_RECEIVED, P.RECEIVED}), P.CLOSED),
    "cancel": (frozenset({P.DRAFT, P.CONFIRMED}), P.CANCELLED),
}


def check_po_move(action: str, number: str, current: PoState) -> None:
    """Raise IllegalTransition unless ``action`` may start from ``current``."""
    starts, _ = MOVES[action]
    if current not in starts:
        allowed = ", ".join(sorted(s.value for s in starts))
        raise IllegalTransition(f"cannot {action} purchase order {number}: it is {current.value}; "
                                f"{action} needs one that is {allowed}")
