"""Sales order and shipment lifecycles (DOMAIN.md section 5). No I/O here."""

from __future__ import annotations

from enum import StrEnum

from hkops.errors import IllegalTransition


class OrderState(StrEnum):
    """States of a sales order."""

    DRAFT = "draft"
    VERIFYING = "verifying"
    REJECTED = "rejected"
    APPROVED = "approved"
    PAID = "paid"
    ALLOCATED = "allocated"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    ACTIVATED = "activated"
    FIRST_TOPUP = "first_topup"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    RETURNED = "returned"
    #: Approved but never paid within the setting order_payment_ttl: the number went back to the pool.
    EXPIRED = "expired"


O = OrderState
#: The happy path, in order.
PIPELINE = (O.DRAFT, O.VERIFYING, O.APPROVED, O.PAID, O.ALLOCATED, O.SHIPPED, O.DELIVERED, O.ACTIVATED,
            O.FIRST_TOPUP, O.COMPLETED)
TERMINAL = frozenset({O.REJECTED, O.COMPLETED, O.CANCELLED, O.RETURNED, O.EXPIRED})
#: Orders in these states hold (or are about to hold) a number for their customer that is
#: not yet bound to them by pairing, so they count towards 一证五号.
OPEN = frozenset({O.VERIFYING, O.APPROVED, O.PAID, O.ALLOCATED, O.SHIPPED, O.DELIVERED})
#: Cancelling undoes everything before activation; from activation on, an order goes
#: through return (which terminates the card) instead.
CANCELLABLE = frozenset({O.DRAFT, O.VERIFYING, O.APPROVED, O.PAID, O.ALLOCATED, O.SHIPPED, O.DELIVERED})
RETURNABLE = frozenset({O.ACTIVATED, O.FIRST_TOPUP, O.COMPLETED})

MOVES: dict[str, tuple[frozenset[OrderState], OrderState]] = {
    "submit": (frozenset({O.DRAFT}), O.VERIFYING),
    "reject": (frozenset({O.VERIFYING}), O.REJECTED),
    "approve": (frozenset({O.VERIFYING}), O.APPROVED),
    "pay": (frozenset({O.APPROVED}), O.PAID),
    "allocate": (frozenset({O.PAID}), O.ALLOCATED),
    "ship": (frozenset({O.ALLOCATED}), O.SHIPPED),
    "deliver": (frozenset({O.SHIPPED}), O.DELIVERED),
    "activate": (frozenset({O.DELIVERED}), O.ACTIVATED),
    "first_topup": (frozenset({O.ACTIVATED}), O.FIRST_TOPUP),
    "complete": (frozenset({O.FIRST_TOPUP}), O.COMPLETED),
    "cancel": (CANCELLABLE, O.CANCELLED),
    "return": (RETURNABLE, O.RETURNED),
    "expire": (frozenset({O.APPROVED}), O.EXPIRED),
}


def order_target(action: str, number: str, current: OrderState) -> OrderState:
    """The state ``action`` leads an order in ``current`` to, or IllegalTransition saying why not."""
    starts, leads_to = MOVES[action]
    if current not in starts:
        word = action.replace("_", " ")
        if action == "cancel" and current in RETURNABLE:
            raise IllegalTransition(f"cannot cancel order {number}: it is {current.value}; an activated card "
                                    "goes back through return (which terminates it), not cancellation")
        if current == O.EXPIRED:
            raise IllegalTransition(f"cannot {word} order {number}: it expired unpaid (setting order_payment_ttl) "
                                    "and its number went back to the pool; place a new order")
        if current in TERMINAL:
            raise IllegalTransition(f"cannot {word} order {number}: it is {current.value}, which is final")
        allowed = ", ".join(s.value for s in PIPELINE + (O.CANCELLED, O.RETURNED, O.REJECTED, O.EXPIRED)
                            if s in starts)
        raise IllegalTransition(f"cannot {word} order {number}: it is {current.value}; {word} needs an order "
                                f"that is {allowed}")
    return leads_to


class ShipmentState(StrEnum):
    """States of a shipment."""

    CREATED = "created"
    IN_TRANSIT = "in_transit"
    DELIVERED = "delivered"
    EXCEPTION = "exception"
    RETURNED = "returned"


S = ShipmentState
SHIPMENT_MOVES: dict[str, tuple[frozenset[ShipmentState], ShipmentState]] = {
    "pick_up": (frozenset({S.CREATED}), S.IN_TRANSIT),
    "deliver": (frozenset({S.CREATED, S.IN_TRANSIT, S.EXCEPTION}), S.DELIVERED),
    "exception": (frozenset({S.CREATED, S.IN_TRANSIT}), S.EXCEPTION),
    "return": (frozenset({S.CREATED, S.IN_TRANSIT, S.EXCEPTION, S.DELIVERED}), S.RETURNED),
}


def shipment_target(action: str, tracking_no: str, current: ShipmentState) -> ShipmentState:
    """The state a shipment moves to, or IllegalTransition saying why not."""
    starts, leads_to = SHIPMENT_MOVES[action]
    if current not in starts:
        allowed = ", ".join(sorted(s.value for s in starts))
        raise IllegalTransition(f"cannot {action.replace('_', ' ')} shipment {tracking_no}: it is "
                                f"{current.value}; that needs a shipment that is {allowed}")
    return leads_to
