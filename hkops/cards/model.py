"""SIM card lifecycle rules (DOMAIN.md section 5): states, allowed moves, and what each
coordinated move asks of the number and of the core network. No I/O here.

A move that needs the HLR is written to inventory together with its network command in
one transaction; until the HLR confirms, the card carries that command as *pending*
(``NetworkSync.PENDING``) and the command is retried, so inventory and HLR never
disagree for good. Service is barred at once on a loss report: the card is ``lost`` in
inventory even while the barring command is still pending.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from hkops.errors import IllegalTransition


class SimState(StrEnum):
    """States of a SIM card."""

    IN_STOCK = "in_stock"
    ALLOCATED = "allocated"
    PAIRED = "paired"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    LOST = "lost"
    REPLACED = "replaced"
    TERMINATED = "terminated"
    FAULTY = "faulty"
    DESTROYED = "destroyed"


class NetworkSync(StrEnum):
    """Whether the HLR has what inventory says."""

    NONE = "none"  # not provisioned, nothing to provision
    PENDING = "pending"  # a command is queued or being retried
    SYNCED = "synced"
    FAILED = "failed"  # the HLR refused the last move; the operator retries or abandons it


class SuspendReason(StrEnum):
    """Why a card is suspended (停机)."""

    ARREARS = "arrears"
    CUSTOMER_REQUEST = "customer_request"
    FRAUD = "fraud"


C = SimState
TERMINAL = frozenset({C.REPLACED, C.TERMINATED, C.DESTROYED})


@dataclass(frozen=True)
class Move:
    """One lifecycle move of a SIM: where it may start, where it leads, and what else moves.

    ``number_action`` is the move the card's number makes with it (hkops.numbers.model),
    ``network`` the provisioning command the HLR must receive (None: no HLR change).
    """

    starts: frozenset[SimState]
    leads_to: SimState
    number_action: str | None = None
    network: str | None = None


MOVES: dict[str, Move] = {
    "allocate": Move(frozenset({C.IN_STOCK}), C.ALLOCATED),
    "pair": Move(frozenset({C.IN_STOCK, C.ALLOCATED}), C.PAIRED),
    "activate": Move(frozenset({C.PAIRED}), C.ACTIVE, number_action="activate", network="add_subscriber"),
    "suspend": Move(frozenset({C.ACTIVE}), C.SUSPENDED, number_action="suspend", network="bar"),
    "resume": Move(frozenset({C.SUSPENDED}), C.ACTIVE, number_action="resume", network="unbar"),
    "report_loss": Move(frozenset({C.ACTIVE, C.SUSPENDED}), C.LOST, network="bar"),
    "lift_loss": Move(frozenset({C.LOST}), C.ACTIVE, network="unbar"),
    # The old card of a replacement; the new card is paired and takes the number over.
    "replace": Move(frozenset({C.ACTIVE, C.SUSPENDED, C.LOST}), C.REPLACED, network="change_imsi"),
    "terminate": Move(frozenset({C.PAIRED, C.ACTIVE, C.SUSPENDED, C.LOST}), C.TERMINATED,
                      number_action="terminate", network="remove_subscriber"),
    "mark_faulty": Move(frozenset({C.IN_STOCK, C.ALLOCATED}), C.FAULTY),
    "destroy": Move(frozenset({C.FAULTY}), C.DESTROYED),
}


def target_state(action: str, iccid: str, current: SimState) -> SimState:
    """The state ``action`` leads a card in ``current`` to, or IllegalTransition saying why not."""
    move = MOVES[action]
    if current not in move.starts:
        if current in TERMINAL:
            raise IllegalTransition(f"cannot {action.replace('_', ' ')} SIM {iccid}: it is {current.value}, "
                                    "which is final (a replaced or terminated card never comes back)")
        allowed = ", ".join(sorted(s.value for s in move.starts))
        raise IllegalTransition(f"cannot {action.replace('_', ' ')} SIM {iccid}: it is {current.value}; "
                                f"{action.replace('_', ' ')} needs a card that is {allowed}")
    return move.leads_to
