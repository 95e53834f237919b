"""Number lifecycle rules: states, allowed moves and the checks on them. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from hkops.errors import Conflict, IllegalTransition
from hkops.timeutil import local


class NumberState(StrEnum):
    """States of a number (MSISDN), as DOMAIN.md section 5 names them."""

    PLANNED = "planned"
    AVAILABLE = "available"
    RESERVED = "reserved"
    ASSIGNED = "assigned"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    QUARANTINED = "quarantined"
    BLOCKED = "blocked"


S = NumberState

#: action -> (states it may start from, state it leads to). ``unblock`` returns to the
#: state the number was blocked from. Termination passes through "terminated" straight
#: into quarantine, so quarantined is where a terminated number rests.
TRANSITIONS: dict[str, tuple[frozenset[NumberState], NumberState | None]] = {
    "open": (frozenset({S.PLANNED}), S.AVAILABLE),
    "reserve": (frozenset({S.AVAILABLE}), S.RESERVED),
    "allocate": (frozenset({S.AVAILABLE, S.RESERVED}), S.ASSIGNED),
    "release": (frozenset({S.RESERVED, S.ASSIGNED}), S.AVAILABLE),
    "activate": (frozenset({S.ASSIGNED}), S.ACTIVE),
    "suspend": (frozenset({S.ACTIVE}), S.SUSPENDED),
    "resume": (frozenset({S.SUSPENDED}), S.ACTIVE),
    "terminate": (frozenset({S.ASSIGNED, S.ACTIVE, S.SUSPENDED}), S.QUARANTINED),
    "reclaim": (frozenset({S.QUARANTINED}), S.ASSIGNED),
    "recycle": (frozenset({S.QUARANTINED}), S.AVAILABLE),
    "expire": (frozenset({S.RESERVED}), S.AVAILABLE),
    "block": (frozenset({S.PLANNED, S.AVAILABLE, S.RESERVED, S.QUARANTINED}), S.BLOCKED),
    "unblock": (frozenset({S.BLOCKED}), None),
}

#: States in which a number belongs to a holder.
HELD = frozenset({S.RESERVED, S.ASSIGNED, S.ACTIVE, S.SUSPENDED})


@dataclass(frozen=True)
class NumberRecord:
    """A number as stored, with the fields the lifecycle rules look at."""

    msisdn: str
    state: NumberState
    grade: str
    level: int
    price_fen: int
    holder: str | None = None
    reserved_until: datetime | None = None
    last_holder: str | None = None
    quarantine_until: datetime | None = None
    blocked_from: NumberState | None = None
    changed_at: datetime | None = None

    def effective_state(self, now: datetime) -> NumberState:
        """The state that counts now: an expired reservation no longer holds the number."""
        if self.state == S.RESERVED and self.reserved_until is not None and self.reserved_until <= now:
            return S.AVAILABLE
        return self.state

    def reservation_expired(self, now: datetime) -> bool:
        return self.state == S.RESERVED and self.effective_state(now) == S.AVAILABLE


def target_state(action: str, number: NumberRecord, now: datetime) -> NumberState:
    """The state ``action`` leads ``number`` to, or IllegalTransition saying why not."""
    allowed, to_state = TRANSITIONS[action]
    current = number.effective_state(now)
    if current not in allowed:
        names = ", ".join(sorted(s.value for s in allowed))
        held = f" (held by {number.holder})" if number.holder and current in HELD else ""
        raise IllegalTransition(
            f"cannot {action} {number.msisdn}: it is {current.value}{held}; "
            f"{action} needs a number that is {names}"
        )
    if action == "unblock":
        return number.blocked_from or S.AVAILABLE
    assert to_state is not None
    return to_state


def check_reservation(action: str, number: NumberRecord, holder: str | None, now: datetime) -> None:
    """Refuse to reserve or allocate a number someone else holds a live reservation on.

    Checked before the state machine, so that the refusal names the reservation rather
    than calling the move illegal.
    """
    if action in ("reserve", "allocate") and number.effective_state(now) == S.RESERVED and holder != number.holder:
        preposition = "to" if action == "allocate" else "for"
        raise Conflict(
            f"cannot {action} {number.msisdn} {preposition} {holder}: it is reserved for {number.holder} "
            f"until {local(number.reserved_until)} (Asia/Shanghai)"
        )


def check_holder(action: str, number: NumberRecord, holder: str | None, now: datetime) -> None:
    """Refuse reclaims by anyone but the last holder, and recycling inside the cool-off."""
    if action == "reclaim" and holder != number.last_holder:
        raise Conflict(
            f"cannot reclaim {number.msisdn} for {holder}: only its last holder "
            f"({number.last_holder}) may reclaim it during quarantine"
        )
    if action == "recycle" and number.quarantine_until is not None and now < number.quarantine_until:
        raise Conflict(
            f"cannot recycle {number.msisdn}: its cool-off ends at "
            f"{local(number.quarantine_until)} (Asia/Shanghai)"
        )
