"""What intake and the use cases after it share: the :class:`Order` as shown, an order row
turned into one, the audit event of an order, loading order rows by number, and the
checks of a channel and of a free text that both make.

Intake is :mod:`hkops.orders.intake`; what follows approval, and reading orders, is
:mod:`hkops.orders.service`. Both import from here, never from each other.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy import Connection, bindparam, select

from hkops.audit import Event
from hkops.catalogue import service as catalogue
from hkops.errors import InvalidValue, NotFound
from hkops.orders.tables import orders

DIRECT = "direct"
_CHUNK = 900  # SQLite's bound-parameter limit is 999 on older builds


@dataclass(frozen=True)
class Order:
    """A sales order as safe to show: the resident ID only masked. Money in fen."""

    id: int
    number: str
    channel: str
    client_order_id: str | None
    agent_id: int | None
    #: The agent chain when the order was placed, selling agent first up to level 1.
    agent_chain: tuple[dict, ...]
    plan: str
    product: str
    carrier: str
    state: str
    reason: str | None
    msisdn: str | None
    iccid: str | None
    location: str
    subscriber_id: int | None
    customer_name: str
    id_masked: str
    contact: str
    ship_province: str
    ship_address: str
    price_fen: int
    vanity_fee_fen: int
    prepay_fen: int
    total_fen: int
    min_monthly_fen: int
    first_topup_fen: int | None
    created_at: datetime
    created_by: str
    changed_at: datetime
    #: False when an intake retried with the same client order id returned this order.
    created: bool = field(default=True, compare=False)

    def as_dict(self) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k != "created"}, "agent_chain": list(self.agent_chain)}


def order_from_row(row, created: bool = True) -> Order:
    """The :class:`Order` of an ``orders`` row (or anything with its columns as attributes)."""
    return Order(
        id=row.id, number=row.number, channel=row.channel, client_order_id=row.client_order_id,
        agent_id=row.agent_id, agent_chain=tuple(json.loads(row.agent_chain or "[]")), plan=row.plan,
        product=row.product, carrier=row.carrier, state=row.state, reason=row.reason,
        msisdn=str(row.msisdn) if row.msisdn else None, iccid=row.iccid, location=row.location,
        subscriber_id=row.subscriber_id, customer_name=row.customer_name, id_masked=row.id_masked,
        contact=row.contact, ship_province=row.ship_province, ship_address=row.ship_address,
        price_fen=row.price_fen, vanity_fee_fen=row.vanity_fee_fen, prepay_fen=row.prepay_fen,
        total_fen=row.total_fen, min_monthly_fen=row.min_monthly_fen, first_topup_fen=row.first_topup_fen,
        created_at=row.created_at, created_by=row.created_by, changed_at=row.changed_at, created=created)


def order_event(number: str, action: str, from_state: str | None, to_state: str | None, reason: str | None = None,
                **details) -> Event:
    """The audit event of an order's change (entity ``order``, subject the order number); details
    that are None are left out."""
    return Event("order", number, action, from_state, to_state, reason,
                 {k: v for k, v in details.items() if v is not None} or None)


def check_channel(value: str) -> str:
    """``direct``, or an agent's code (checked for form, upper-cased; not looked up)."""
    text_value = str(value or "").strip()
    if text_value.lower() == DIRECT:
        return DIRECT
    return catalogue.check_code(text_value, "channel")


def check_text(value: str, field_name: str, limit: int) -> str:
    """A required free text, its whitespace collapsed, at most ``limit`` characters."""
    text_value = " ".join(str(value or "").split())
    if not 0 < len(text_value) <= limit:
        raise InvalidValue(field_name, value, f"is required (at most {limit} characters)")
    return text_value


def chunks(values: list, size: int = _CHUNK):
    """``values`` in slices small enough for one IN (...) each."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


_BY_NUMBER = select(orders).where(orders.c.number == bindparam("number"))
_BY_NUMBER_LOCKED = _BY_NUMBER.with_for_update(of=orders)  # plain SELECT on SQLite, whose writers are serial


def load_order_row(conn: Connection, number: str, *, lock: bool = False):
    """The order row with this number (locked with ``lock``); NotFound if there is none."""
    row = conn.execute(_BY_NUMBER_LOCKED if lock else _BY_NUMBER,
                       {"number": str(number or "").strip().upper()}).first()
    if row is None:
        raise NotFound(f"order {number} does not exist")
    return row


_BY_NUMBERS = select(orders).where(orders.c.number.in_(bindparam("numbers", expanding=True))).order_by(orders.c.id)
_BY_NUMBERS_LOCKED = _BY_NUMBERS.with_for_update(of=orders)


def load_order_rows(conn: Connection, numbers_: list[str], *, lock: bool = False) -> dict:
    """The order rows with these numbers (those that exist), locked in id order with ``lock``."""
    found = {}
    for chunk in chunks(sorted(set(numbers_))):
        found.update({row.number: row for row in conn.execute(_BY_NUMBERS_LOCKED if lock else _BY_NUMBERS,
                                                              {"numbers": chunk})})
    return found
