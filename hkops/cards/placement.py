"""Where a card is and whether it is free to sell: the card inventory's own writes that the
stock ledger (hkops.stock.service) asks for. Stock decides and records each move in its ledger;
these functions change ``sims`` to match, in the caller's transaction, set-wise.

``where`` arguments are clauses on ``sims.c.iccid`` as hkops.stock.service.matching builds them
(an IN list, or a join with a staged table for very large sets).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, bindparam, update

from hkops.cards.model import SimState
from hkops.cards.tables import IN_STOCK, sims

ALLOCATED = SimState.ALLOCATED.value

_ALLOCATE_IN_STOCK = (update(sims).where(sims.c.iccid.in_(bindparam("iccids", expanding=True)),
                                         sims.c.state == IN_STOCK, sims.c.location == bindparam("at_location"))
                      .values(state=ALLOCATED, changed_at=bindparam("now")).returning(sims.c.iccid))


def relocate(conn: Connection, where, from_location: str, to_location: str, now: datetime) -> int:
    """Cards matching ``where`` that are at ``from_location`` are now at ``to_location``; returns how many."""
    return conn.execute(update(sims).where(where, sims.c.location == from_location)
                        .values(location=to_location, changed_at=now)).rowcount


def place_unlocated(conn: Connection, where, location: str) -> None:
    """Cards matching ``where`` that were never placed anywhere are at ``location``."""
    conn.execute(update(sims).where(where, sims.c.location.is_(None)).values(location=location))


def set_locations(conn: Connection, locations: dict[str, str], now: datetime) -> None:
    """Each card (ICCID -> location) is at its location (the ledger said so)."""
    if locations:
        conn.execute(update(sims).where(sims.c.iccid == bindparam("i")).values(location=bindparam("l"), changed_at=now),
                     [{"i": iccid, "l": location} for iccid, location in locations.items()])


def allocate_in_stock(conn: Connection, iccids: list[str], location: str, now: datetime) -> list[str]:
    """Of these cards, the ones still in stock at ``location`` become allocated; returns those."""
    return list(conn.execute(_ALLOCATE_IN_STOCK, {"iccids": iccids, "at_location": location, "now": now}).scalars())


def unallocate(conn: Connection, iccid: str, now: datetime) -> bool:
    """An allocated card is in stock again; False if it was not allocated."""
    return conn.execute(update(sims).where(sims.c.iccid == iccid, sims.c.state == ALLOCATED)
                        .values(state=IN_STOCK, changed_at=now)).rowcount == 1


def back_in_stock(conn: Connection, iccid: str, now: datetime) -> None:
    """A card taken back from a customer is in stock."""
    conn.execute(update(sims).where(sims.c.iccid == iccid).values(state=IN_STOCK, changed_at=now))


def destroy(conn: Connection, where, now: datetime) -> None:
    """Cards matching ``where`` were scrapped: destroyed, never to come back."""
    conn.execute(update(sims).where(where).values(state=SimState.DESTROYED.value, changed_at=now))
