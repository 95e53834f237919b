"""Two sibling agents with orders of their own, and users for them, for the scoping tests.

The distribution world's tree A1 > A2 > A3 gets a sibling of A2: B (under A1). Agent user
``ua`` is confined to A2 (so it sees A2 and A3); ``ub`` to B. Each side has one allocated
order (a card picked from its own stock, paid, the customer registered): ``a`` sold by A3,
``b`` sold by B. ``ann`` is an analyst, ``root`` an admin.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from distribution_world import WAREHOUSE, advance, build_distribution, place_order, rid  # noqa: F401
from hkops.agents import service as agents
from hkops.orders import service as orders
from hkops.security import users
from hkops.stock import service as stock

PASSWORD = "correct horse battery"
#: The customers: A's order is for rid(11), B's for rid(22) (born 1990-03-07).
A_PERSON, B_PERSON = 11, 22


def build_two_agents(db, folder):
    """The distribution world plus agent B, its stock, one allocated order each and the users."""
    world = build_distribution(db, folder)
    agents.add_agent(db, "B", "Agent B", parent="A1", province="Beijing", actor="tester")
    stock.transfer(db, WAREHOUSE, "AG-B", iccids=world.warehouse_iccids[-3:], actor="tester")
    a = place_order(db, A_PERSON, channel="a3", client_order_id="A3-CLIENT-1")
    b = place_order(db, B_PERSON, channel="b", client_order_id="B-CLIENT-1")
    for order in (a, b):
        advance(db, order.number, "allocated")
    users.add_user(db, "root", "admin", actor="installer", password=PASSWORD)
    users.add_user(db, "ua", "agent", agent="A2", actor="installer", password=PASSWORD)
    users.add_user(db, "ub", "agent", agent="B", actor="installer", password=PASSWORD)
    users.add_user(db, "ann", "analyst", actor="installer", password=PASSWORD)
    a, b = orders.get_order(db, a.number), orders.get_order(db, b.number)
    assert a.iccid and b.iccid and a.subscriber_id and b.subscriber_id, (a, b)
    return SimpleNamespace(db=db, a=a, b=b, a_rid=rid(A_PERSON), b_rid=rid(B_PERSON),
                           ua=users.principal_of(db, "ua"), ub=users.principal_of(db, "ub"),
                           ann=users.principal_of(db, "ann"), root=users.principal_of(db, "root"))


@pytest.fixture
def two_agents(world, tmp_path, monkeypatch):
    """:func:`build_two_agents` on the ``world`` fixture's database (SQLite and PostgreSQL)."""
    monkeypatch.setenv("HKOPS_SECRET_KEY_FILE", str(tmp_path / "secret.key"))
    return build_two_agents(world, tmp_path)
