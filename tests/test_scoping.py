"""Agent users see their own subtree only, through every read function (issue 9, item 5), and
analysts get pseudonymous keys instead of people (item 6), on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pytest

from hkops import lookup as lookups
from hkops.agents import service as agents
from hkops.analytics import sales
from hkops.cards import service as cards
from hkops.network import InProcessTransport, ProvisioningClient
from hkops.network.simulator import Simulator
from hkops.orders import service as orders
from hkops.payments import service as payments
from hkops.security.access import AccessDenied, Principal
from hkops.stock import service as stock
from hkops.subscribers import service as subscribers
from distribution_world import advance, place_order
from scoping_world import A_PERSON, two_agents  # noqa: F401  (fixture)


def with_permissions(principal: Principal, *extra: str) -> Principal:
    """The same agent user with more permissions (as an operator's own role file might grant)."""
    return Principal(principal.name, roles=principal.roles, permissions=principal.permissions | set(extra),
                     agent=principal.agent, user_id=principal.user_id)


def refusal(call, value: object = None) -> str:
    """The message of the AccessDenied ``call`` raises, with ``value`` (what was asked for) blanked out."""
    with pytest.raises(AccessDenied) as refused:
        call()
    return str(refused.value).replace(str(value), "_") if value is not None else str(refused.value)


def test_a_subtree_is_the_agent_and_every_agent_below_it(two_agents):
    with two_agents.db.read() as conn:
        ids = {a.code: a.id for a in agents.agent_tree(conn)}
        assert agents.subtree_ids(conn, "A2") == {ids["A2"], ids["A3"]}
        assert agents.subtree_ids(conn, "B") == {ids["B"]}
        assert agents.subtree_ids(conn, "A1") == set(ids.values())
        assert agents.scope_locations(conn, two_agents.ua) == {"AG-A2", "AG-A3"}
        assert agents.scope_locations(conn, two_agents.root) is None


def test_an_agent_user_lists_and_counts_only_its_subtrees_orders(two_agents):
    w = two_agents
    assert [o.number for o in orders.list_orders(w.db, actor=w.ua)] == [w.a.number]
    assert [o.number for o in orders.list_orders(w.db, actor=w.ub)] == [w.b.number]
    assert [o.number for o in orders.list_orders(w.db, agent="b", actor=w.ua)] == []
    assert {o.number for o in orders.list_orders(w.db, actor=w.root)} == {w.a.number, w.b.number}
    assert sum(orders.pipeline_counts(w.db, actor=w.ua).values()) == 1
    assert sum(orders.pipeline_counts(w.db, actor=w.root).values()) == 2


def test_another_agents_order_is_refused_exactly_like_one_that_does_not_exist(two_agents):
    w = two_agents
    assert orders.get_order(w.db, w.a.number, actor=w.ua).number == w.a.number
    assert orders.get_order(w.db, "A3-CLIENT-1", actor=w.ua).number == w.a.number
    assert orders.order_detail(w.db, w.a.number, actor=w.ua)["order"]["number"] == w.a.number

    missing = refusal(lambda: orders.get_order(w.db, "SO99999999", actor=w.ua), "SO99999999")
    assert "ua may not see order" in missing and "subtree of agent A2" in missing
    for value in (w.b.number, "B-CLIENT-1"):
        assert refusal(lambda: orders.get_order(w.db, value, actor=w.ua), value) == missing
    assert refusal(lambda: orders.order_detail(w.db, w.b.number, actor=w.ua), w.b.number) == \
        refusal(lambda: orders.order_detail(w.db, "SO99999999", actor=w.ua), "SO99999999")
    # B is refused A's order the same way.
    refusal(lambda: orders.order_detail(w.db, w.a.number, actor=w.ub))


def test_an_agent_user_sees_stock_only_at_its_subtrees_locations(two_agents):
    w = two_agents
    seen = stock.on_hand(w.db, actor=w.ua)
    assert {r["location"] for r in seen} == {"AG-A3"}
    assert "AG-B" in {r["location"] for r in stock.on_hand(w.db, actor=w.root)}
    assert refusal(lambda: stock.on_hand(w.db, location="AG-B", actor=w.ua), "AG-B") == \
        refusal(lambda: stock.on_hand(w.db, location="AG-NOWHERE", actor=w.ua), "AG-NOWHERE")
    refusal(lambda: stock.on_hand(w.db, location="WH-BJ", actor=w.ua))

    rows = stock.ledger(w.db, actor=w.ua)
    assert rows and all({"AG-A2", "AG-A3"} & {r["from_location"], r["to_location"]} for r in rows)
    assert stock.ledger(w.db, iccid=w.b.iccid, actor=w.ua) == []
    assert stock.ledger(w.db, iccid=w.b.iccid, actor=w.root) != []
    refusal(lambda: stock.ledger(w.db, location="AG-B", actor=w.ua))
    assert {r.code for r in stock.list_locations(w.db, actor=w.ua)} == {"AG-A2", "AG-A3"}
    stock.set_minimum(w.db, "AG-B", "CM-NANO", 50, actor="tester")
    assert stock.low_stock(w.db, actor=w.ua) == [] and stock.low_stock(w.db, actor=w.ub) != []


def test_an_agent_user_sees_only_its_subtree_of_the_agent_tree(two_agents):
    w = two_agents
    assert [a.code for a in agents.agent_tree(w.db, actor=w.ua)] == ["A2", "A3"]
    assert [a.code for a in agents.agent_tree(w.db, actor=w.ub)] == ["B"]
    assert agents.show_agent(w.db, "A3", actor=w.ua)[0].code == "A3"
    missing = refusal(lambda: agents.show_agent(w.db, "NOBODY", actor=w.ua), "NOBODY")
    for code in ("B", "A1"):  # a sibling, and the agent above
        assert refusal(lambda: agents.show_agent(w.db, code, actor=w.ua), code) == missing


def test_an_agent_user_finds_only_the_people_of_its_subtrees_orders(two_agents):
    w = two_agents
    assert [p.id for p in subscribers.find(w.db, resident_id=w.a_rid, actor=w.ua)] == [w.a.subscriber_id]
    assert subscribers.find(w.db, resident_id=w.b_rid, actor=w.ua) == []
    assert subscribers.find(w.db, subscriber_id=w.b.subscriber_id, actor=w.ua) == []
    assert subscribers.find(w.db, subscriber_id=w.b.subscriber_id, actor=w.root) != []
    assert refusal(lambda: subscribers.get(w.db, w.b.subscriber_id, actor=w.ua),
                   f"subscriber {w.b.subscriber_id}") == \
        refusal(lambda: subscribers.get(w.db, 999_999, actor=w.ua), "subscriber 999999")


def test_an_agent_user_granted_payments_sees_only_its_subtrees_payments(two_agents):
    w = two_agents
    refusal(lambda: payments.list_payments(w.db, actor=w.ua))  # the agent role has no payments.read
    ua = with_permissions(w.ua, "payments.read")
    assert {p.order for p in payments.list_payments(w.db, actor=ua)} == {w.a.number}
    assert {p.order for p in payments.list_payments(w.db, actor=w.root)} == {w.a.number, w.b.number}
    assert refusal(lambda: payments.list_payments(w.db, order=w.b.number, actor=ua), w.b.number) == \
        refusal(lambda: payments.list_payments(w.db, order="SO99999999", actor=ua), "SO99999999")
    refusal(lambda: payments.reconcile(w.db, actor=ua))


def test_an_agent_user_granted_cards_sees_only_cards_of_its_subtree(two_agents):
    w = two_agents
    refusal(lambda: cards.get_card(w.db, w.a.iccid, actor=w.ua))  # the agent role has no cards.read
    ua = with_permissions(w.ua, "cards.read")
    assert cards.get_card(w.db, w.a.iccid, actor=ua).iccid == w.a.iccid  # on its order
    on_shelf = next(r["location"] for r in stock.on_hand(w.db, location="AG-A3"))
    shelf_card = stock.ledger(w.db, location=on_shelf)[0]["iccid"]
    assert cards.get_card(w.db, shelf_card, actor=ua).iccid == shelf_card  # at its location
    missing = refusal(lambda: cards.get_card(w.db, "89860000000000000001", actor=ua), "89860000000000000001")
    b_shelf = [r["iccid"] for r in stock.ledger(w.db, location="AG-B") if r["iccid"] != w.b.iccid][0]
    for value in (w.b.iccid, b_shelf):
        assert refusal(lambda: cards.get_card(w.db, value, actor=ua), value) == missing


def test_look_up_refuses_everything_of_another_agent_like_something_unknown(two_agents):
    w = two_agents
    found = lookups.lookup(w.db, str(w.a.msisdn), actor=w.ua)
    assert [o["number"] for o in found["orders"]] == [w.a.number]
    assert lookups.lookup(w.db, "A3", actor=w.ua)["agent"]["code"] == "A3"
    unknown = refusal(lambda: lookups.lookup(w.db, "SO99999999", actor=w.ua))
    assert "ua may not look up" in unknown
    for value in (w.b.number, "B-CLIENT-1", str(w.b.msisdn), w.b.iccid, f"S{w.b.subscriber_id}", w.b_rid, "B",
                  "A1", "NO-SUCH-CLIENT-ID", "S999999", "13800139999"):
        with pytest.raises(AccessDenied) as refused:
            lookups.lookup(w.db, value, actor=w.ua)
        assert str(refused.value).startswith("ua may not look up") and w.b_rid not in str(refused.value)
    # The same values are there for someone who sees everything.
    for value in (w.b.number, "B-CLIENT-1", str(w.b.msisdn), w.b.iccid, f"S{w.b.subscriber_id}", "B"):
        assert lookups.lookup(w.db, value, actor=w.root)["kind"]


def hlr_client() -> ProvisioningClient:
    """An in-process HLR simulator to activate through."""
    return ProvisioningClient(InProcessTransport(Simulator()), retries=2, backoff=0, timeout=1)


def test_a_customer_of_both_agents_does_not_lead_an_agent_user_to_the_other_agents_sale(two_agents):
    """Look-up shows an agent user only what its own orders name, not the other numbers and
    cards the same person (or number, or card) is linked to through another agent's order."""
    w = two_agents
    other = place_order(w.db, A_PERSON, channel="b", client_order_id="B-CLIENT-2")  # A's customer buys from B
    other = advance(w.db, other.number, "activated", network=hlr_client())
    assert other.subscriber_id == w.a.subscriber_id
    for value in (w.a.number, f"S{w.a.subscriber_id}", w.a_rid, str(w.a.msisdn), w.a.iccid):
        found = lookups.lookup(w.db, value, actor=w.ua)
        assert {o["number"] for o in found["orders"]} == {w.a.number}, value
        assert other.iccid not in str(found) and other.msisdn not in str(found) and other.number not in str(found)
    everything = lookups.lookup(w.db, f"S{w.a.subscriber_id}", actor=w.root)
    assert other.iccid in str(everything) and other.msisdn in str(everything)


def test_analytics_give_people_as_pseudonymous_keys_and_agents_only_their_subtree(two_agents):
    w = two_agents
    frame = sales.orders_frame(w.db, actor=w.ann)
    assert set(frame["number"]) == {w.a.number, w.b.number}
    assert not {"resident_id_hash", "customer_name", "contact", "ship_address", "id_masked"} & set(frame.columns)
    keys = list(frame["customer"])
    assert all(re.fullmatch(r"P[0-9a-f]{16}", k) for k in keys) and len(set(keys)) == 2
    with w.db.read() as conn:
        hashes = {subscribers.resident_id_hash(conn, w.a_rid), subscribers.resident_id_hash(conn, w.b_rid)}
    assert not any(h.startswith(k[1:]) for h in hashes for k in keys)  # not the lookup hash
    # One person's orders share one key.
    assert sales.orders_frame(w.db, actor=w.ann)["customer"].tolist() == keys

    # The agent role has analytics.read: its own subtree's figures, nothing of the sibling's.
    assert list(sales.orders_frame(w.db, actor=w.ua)["number"]) == [w.a.number]
    assert list(sales.orders_frame(w.db, actor=w.ub)["number"]) == [w.b.number]
    assert sales.funnel(w.db, actor=w.ua)["orders"].iloc[0] == 1
    assert sales.funnel(w.db, actor=w.ann)["orders"].iloc[0] == 2
    assert sales.funnel_report(w.db, "agent", actor=w.ub)["agent"].tolist() == ["B"]
    # What is not confined to a subtree stays refused to agent users: the pool, whole tables.
    from hkops.analytics import engine, planning

    for refused in (lambda: planning.planning_tables(w.db, w.ua), lambda: engine.state_arrow(w.db, "orders", actor=w.ua)):
        with pytest.raises(AccessDenied, match="sees its own subtree only"):
            refused()


def test_an_analyst_look_up_leaves_out_names_contacts_and_addresses(two_agents):
    w = two_agents
    found = lookups.lookup(w.db, w.b.number, actor=w.ann)
    order = found["orders"][0]
    assert order["number"] == w.b.number and "customer_name" not in order and "ship_address" not in order
    assert found["subscribers"] and all(not {"name", "contact", "birth_year"} & set(s) for s in found["subscribers"])
    assert "customer_name" in lookups.lookup(w.db, w.b.number, actor=w.root)["orders"][0]


def test_an_agent_users_analysis_reads_only_its_orders_events_and_its_locations_stock(two_agents):
    from hkops.analytics import engine

    w = two_agents
    mine = {agents.show_agent(w.db, "B", actor=w.root)[0].location}

    def rows(name, actor):
        return engine.state_arrow(w.db, name, actor=actor, scoped=True).to_pylist()

    events = rows("audit_log", w.ub)
    assert events and {(e["entity"], e["subject"]) for e in events} == {("order", w.b.number)}
    assert {e["subject"] for e in rows("audit_log", w.ann)} > {w.a.number, w.b.number, w.a.iccid}
    moves = rows("stock_moves", w.ub)
    assert moves and all(m["from_location"] in mine or m["to_location"] in mine for m in moves)
    assert len(rows("stock_moves", w.ann)) > len(moves)
    assert [r["code"] for r in rows("stock_locations", w.ub)] == sorted(mine)
