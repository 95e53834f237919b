"""The agent tree: levels, own stock locations, chains, moves that re-level a subtree and
never make a cycle, activation, and the audit trail of each."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from hkops.agents import service
from hkops.errors import Conflict, InvalidValue, NotFound
from hkops.stock.tables import stock_locations
from strategies import actions, history, snapshot


@pytest.fixture
def tree(db):
    """NORTH (1) > BJ (2) > BJ-HD (3) and BJ-CY (3); SOUTH (1) > GZ (2)."""
    for code, parent in (("NORTH", None), ("SOUTH", None), ("BJ", "NORTH"), ("BJ-HD", "BJ"), ("BJ-CY", "bj"),
                         ("GZ", "SOUTH")):
        service.add_agent(db, code, f"Agent {code}", parent=parent, actor="ana")
    return db


def codes_and_levels(db) -> list[tuple[str, int]]:
    return [(a.code, a.level) for a in service.agent_tree(db)]


def test_an_agent_gets_its_level_price_level_and_own_stock_location(db):
    top = service.add_agent(db, "north", "华北总代", province="北京", contact_name="李雷",
                            contact_phone="138 0013 8000", actor="ana")
    below = service.add_agent(db, "BJ", "北京代理", parent="NORTH", price_level=5, actor="ana")
    assert (top.code, top.level, top.price_level, top.parent, top.location) == ("NORTH", 1, 1, None, "AG-NORTH")
    assert (top.province, top.contact_phone, top.active) == ("Beijing", "+8613800138000", True)
    assert (below.level, below.price_level, below.parent, below.parent_id) == (2, 5, "NORTH", top.id)
    with db.read() as conn:
        location = conn.execute(select(stock_locations).where(stock_locations.c.code == "AG-BJ")).one()
    assert (location.kind, location.agent_id, location.name) == ("agent", below.id, "北京代理")
    assert service.get_agent(db, below.id) == service.get_agent(db, "bj") == below
    assert actions(db, "NORTH") == [("create", None, "active")]
    assert history(db, "AG-BJ")[0]["entity"] == "location"


def test_an_agent_may_use_an_existing_location_instead_of_its_own(db):
    from hkops.stock.service import add_location

    add_location(db, "WH-BJ", "Beijing warehouse", actor="ana")
    agent = service.add_agent(db, "BJ", "北京代理", location="wh-bj", actor="ana")
    assert agent.location == "WH-BJ"
    with db.read() as conn:
        assert conn.execute(select(stock_locations.c.code).where(stock_locations.c.code == "AG-BJ")).first() is None
    with pytest.raises(NotFound, match="location 'NOWHERE'"):
        service.add_agent(db, "SH", "上海代理", location="NOWHERE", actor="ana")
    with pytest.raises(InvalidValue, match="location 'CUSTOMER': is a virtual location"):
        service.add_agent(db, "SH", "上海代理", location="CUSTOMER", actor="ana")


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"parent": "NOBODY"}, NotFound, "agent 'NOBODY'"),
    ({"province": "Atlantis"}, InvalidValue, "province 'Atlantis'"),
    ({"contact_phone": "12345"}, InvalidValue, "contact_phone '12345'"),
    ({"price_level": -1}, InvalidValue, "price_level -1"),
    ({"code": "A" * 30}, InvalidValue, "must be 1 to 29 letters"),
    ({"code": "NORTH"}, Conflict, "agent NORTH exists already"),
])
def test_bad_agents_are_refused_and_nothing_is_written(tree, kwargs, error, message):
    before = snapshot(tree)
    arguments = {"code": "NEW", "name": "New agent", **kwargs}
    with pytest.raises(error, match=message):
        service.add_agent(tree, arguments.pop("code"), arguments.pop("name"), **arguments, actor="ana")
    assert snapshot(tree) == before


def test_the_tree_is_depth_first_and_the_chain_runs_from_the_agent_up_to_level_1(tree):
    assert codes_and_levels(tree) == [("NORTH", 1), ("BJ", 2), ("BJ-CY", 3), ("BJ-HD", 3), ("SOUTH", 1), ("GZ", 2)]
    leaf = service.get_agent(tree, "BJ-HD")
    with tree.read() as conn:
        links = service.chain(conn, leaf.id)
    assert [(c["code"], c["level"], c["price_level"]) for c in links] == [
        ("BJ-HD", 3, 3), ("BJ", 2, 2), ("NORTH", 1, 1)]
    assert set(links[0]) == {"id", "code", "name", "level", "price_level"} and links[0]["id"] == leaf.id
    with tree.read() as conn, pytest.raises(NotFound):
        service.chain(conn, 999_999)


def test_moving_an_agent_re_levels_its_subtree_and_is_audited_with_both_parents(tree):
    moved = service.move_agent(tree, "BJ", "GZ", actor="ana", reason="reorganised")
    assert (moved.parent, moved.level, moved.price_level) == ("GZ", 3, 2)
    assert codes_and_levels(tree) == [("NORTH", 1), ("SOUTH", 1), ("GZ", 2), ("BJ", 3), ("BJ-CY", 4), ("BJ-HD", 4)]
    record = history(tree, "BJ")[-1]
    assert (record["action"], record["from_state"], record["to_state"], record["reason"]) == (
        "move", "level 2", "level 3", "reorganised")
    assert record["details"] == {"from_parent": "NORTH", "to_parent": "GZ", "subtree": 3}
    assert actions(tree, "BJ-HD")[-1] == ("relevel", "level 3", "level 4")
    with tree.read() as conn:
        assert [c["code"] for c in service.chain(conn, service.get_agent(conn, "BJ-HD").id)] == [
            "BJ-HD", "BJ", "GZ", "SOUTH"]

    top = service.move_agent(tree, "BJ", None, actor="ana")
    assert (top.parent, top.level) == (None, 1)
    assert ("BJ-CY", 2) in codes_and_levels(tree)
    assert history(tree, "BJ")[-1]["details"]["to_parent"] is None


def test_an_agent_cannot_move_under_itself_or_its_descendant(tree):
    before = snapshot(tree)
    with pytest.raises(InvalidValue, match="parent 'BJ': is BJ itself"):
        service.move_agent(tree, "BJ", "BJ", actor="ana")
    with pytest.raises(InvalidValue, match="parent 'BJ-HD': is below NORTH; the tree would have a cycle"):
        service.move_agent(tree, "NORTH", "BJ-HD", actor="ana")
    with pytest.raises(Conflict, match="BJ is already under NORTH"):
        service.move_agent(tree, "BJ", "NORTH", actor="ana")
    with pytest.raises(Conflict, match="NORTH is already at the top"):
        service.move_agent(tree, "NORTH", None, actor="ana")
    assert snapshot(tree) == before


def test_an_inactive_agent_takes_no_new_agents_below_it_until_activated(tree):
    agent = service.set_active(tree, "SOUTH", False, actor="ana", reason="contract ended")
    assert agent.active is False
    with pytest.raises(Conflict, match="parent SOUTH is inactive"):
        service.add_agent(tree, "SZ", "深圳代理", parent="SOUTH", actor="ana")
    with pytest.raises(Conflict, match="parent SOUTH is inactive"):
        service.move_agent(tree, "BJ", "SOUTH", actor="ana")
    with pytest.raises(Conflict, match="SOUTH is already inactive"):
        service.set_active(tree, "SOUTH", False, actor="ana")
    assert service.set_active(tree, "south", True, actor="ana").active is True
    assert service.add_agent(tree, "SZ", "深圳代理", parent="SOUTH", actor="ana").level == 2
    assert actions(tree, "SOUTH")[-2:] == [("deactivate", "active", "inactive"), ("activate", "inactive", "active")]
