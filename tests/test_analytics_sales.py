"""Sales analysis: the funnel, trends, league table, rates, commission per activation and stock
turnover, checked on hand-built worlds whose figures are worked out by hand; then the same
analyses on the database (SQLite and PostgreSQL), scoped to an agent user and filtered."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import ibis
import pandas as pd
import pytest

from distribution_world import PLAN, place_order
from hkops.analytics import sales
from hkops.analytics.filters import check_filters
from hkops.errors import InvalidValue
from hkops.orders import service as orders_service
from hkops.security.access import AccessDenied, Principal
from scoping_world import two_agents  # noqa: F401  (fixture)

T0 = datetime(2026, 11, 1, 17, 0)  # UTC; 01:00 on 2 November in Asia/Shanghai
H = timedelta(hours=1)


def hand_world():
    """Four orders: O1 (agent A, level 1) all the way to first top-up; O2 (A) paid then cancelled;
    O3 (direct) activated then returned; O4 (agent B, level 2) only placed."""
    orders = ibis.memtable(pd.DataFrame({
        "id": [1, 2, 3, 4], "number": ["O1", "O2", "O3", "O4"], "channel": ["A", "A", "direct", "B"],
        "agent_id": pd.array([10, 10, None, 11], dtype="Int64"), "plan": ["P1", "P1", "P2", "P1"],
        "ship_province": ["Beijing", "Beijing", "Guangdong", "Beijing"], "state": ["first_topup", "cancelled",
                                                                                 "returned", "verifying"],
        "total_fen": [10_000, 8_000, 12_000, 9_000],
        "created_at": [T0, T0 + 2 * H, T0 + 24 * H, T0 + 48 * H]}))
    agents = ibis.memtable(pd.DataFrame({"id": [10, 11], "code": ["A", "B"], "level": [1, 2]}))
    trail = [("O1", "pay", T0 + 2 * H), ("O1", "ship", T0 + 10 * H), ("O1", "deliver", T0 + 30 * H),
             ("O1", "activate", T0 + 40 * H), ("O1", "first_topup", T0 + 50 * H),
             ("O2", "pay", T0 + 6 * H), ("O2", "cancel", T0 + 7 * H),
             ("O3", "pay", T0 + 30 * H), ("O3", "ship", T0 + 40 * H), ("O3", "deliver", T0 + 60 * H),
             ("O3", "activate", T0 + 64 * H), ("O3", "return", T0 + 100 * H),
             ("O4", "submit", T0 + 49 * H)]
    audit = ibis.memtable(pd.DataFrame({"entity": "order", "subject": [s for s, _, _ in trail],
                                        "action": [a for _, a, _ in trail], "at": [t for _, _, t in trail]}))
    return sales.order_steps(orders, audit, agents)


def test_the_funnel_counts_each_step_with_conversion_and_median_hours_between_steps():
    (row,) = sales.funnel_by(hand_world()).to_pandas().to_dict("records")
    assert [row[s] for s in sales.STEPS] == [4, 3, 2, 2, 2, 1]
    assert row["paid_conv"] == pytest.approx(3 / 4) and row["shipped_conv"] == pytest.approx(2 / 3)
    assert row["activated_conv"] == 1 and row["first_topup_conv"] == pytest.approx(1 / 2)
    # placed -> paid: O1 2 h, O2 4 h, O3 6 h; shipped -> delivered: 20 h and 20 h
    assert row["paid_hours"] == pytest.approx(4) and row["delivered_hours"] == pytest.approx(20)
    assert row["activated_hours"] == pytest.approx((10 + 4) / 2)


def test_the_funnel_breaks_down_by_agent_channel_plan_and_province():
    by_agent = sales.funnel_by(hand_world(), "agent").to_pandas().set_index("agent")
    assert by_agent.loc["A", ["placed", "paid", "activated"]].tolist() == [2, 2, 1]
    assert by_agent.loc["direct", "activated"] == 1 and by_agent.loc["B", "paid"] == 0
    assert pd.isna(by_agent.loc["B", "shipped_conv"])  # nothing paid: no conversion to speak of
    by_channel = sales.funnel_by(hand_world(), "channel").to_pandas().set_index("channel")
    assert by_channel["placed"].to_dict() == {"direct": 1, "level-1 agent": 2, "level-2 agent": 1}
    by_two = sales.funnel_by(hand_world(), ["plan", "province"]).to_pandas()
    assert by_two[["plan", "province", "placed"]].values.tolist() == [["P1", "Beijing", 3], ["P2", "Guangdong", 1]]
    with pytest.raises(InvalidValue, match="by 'colour'"):
        sales.funnel_by(hand_world(), "colour")


def test_daily_and_weekly_trends_count_each_step_on_its_local_day():
    daily = sales.trends(hand_world(), "day").to_pandas()
    placed = daily[daily.step == "placed"].set_index("period")["orders"]
    # 17:00 UTC on 1 November is already 2 November in Shanghai
    assert {d.isoformat()[:10]: n for d, n in placed.items()} == {"2026-11-02": 2, "2026-11-03": 1, "2026-11-04": 1}
    weekly = sales.trends(hand_world(), "week").to_pandas()
    assert weekly[weekly.step == "placed"]["orders"].sum() == 4
    assert set(pd.to_datetime(weekly["period"]).dt.day_of_week) == {0}  # weeks start on Monday
    with pytest.raises(InvalidValue, match="freq 'hour'"):
        sales.trends(hand_world(), "hour")


def test_cancellation_and_return_rates():
    (row,) = sales.rates(hand_world()).to_pandas().to_dict("records")
    assert (row["cancel_rate"], row["return_rate"]) == (pytest.approx(1 / 4), pytest.approx(1 / 2))
    by_plan = sales.rates(hand_world(), "plan").to_pandas().set_index("plan")
    assert by_plan.loc["P1", "cancel_rate"] == pytest.approx(1 / 3) and by_plan.loc["P1", "return_rate"] == 0
    assert by_plan.loc["P2", "return_rate"] == 1


def test_the_league_table_ranks_agents_by_activations_and_counts_only_kept_revenue():
    league = sales.league_table(hand_world()).to_pandas()
    assert league["agent"].tolist() == ["A", "B"]  # direct is not an agent
    assert league["rank"].tolist() == [1, 2]
    a = league.iloc[0]
    assert (a.placed, a.activated, a.cancelled, a.revenue_fen) == (2, 1, 1, 10_000)  # O2 cancelled: not revenue
    assert a.activation_rate == pytest.approx(0.5)


def test_commission_cost_per_activation_nets_clawbacks():
    entries = ibis.memtable(pd.DataFrame({"order_id": [1, 1, 1], "amount_fen": [1_000, 500, -200]}))
    cost = sales.commission_per_activation(hand_world(), entries, "agent").to_pandas().set_index("agent")
    assert cost.loc["A", ["activations", "commission_fen", "per_activation_fen"]].tolist() == [1, 1_300, 1_300]
    assert cost.loc["direct", "per_activation_fen"] == 0
    assert pd.isna(cost.loc["B", "per_activation_fen"])  # no activation to share the cost


def test_stock_turnover_and_days_of_stock_per_location():
    start, end = datetime(2026, 11, 1), datetime(2026, 11, 11)
    moves = [("VENDOR", "WH", "receipt", start - H)] * 10 + [("WH", "AG", "transfer", start + H)] * 4 + \
        [("AG", "CUSTOMER", "sale", start + 2 * H)] * 2 + [("WH", "CUSTOMER", "sale", start + 3 * H)] + \
        [("WH", "AG", "transfer", end + H)]  # after the period: not counted
    moves = ibis.memtable(pd.DataFrame(moves, columns=["from_location", "to_location", "kind", "at"]))
    locations = ibis.memtable(pd.DataFrame({"code": ["WH", "AG", "CUSTOMER", "VENDOR", "EMPTY"],
                                            "kind": ["warehouse", "agent", "virtual", "virtual", "warehouse"]}))
    turnover = sales.stock_turnover(moves, locations, start, end).to_pandas().set_index("location")
    assert turnover.index.tolist() == ["AG", "EMPTY", "WH"]
    wh, ag = turnover.loc["WH"], turnover.loc["AG"]
    assert (wh.start_on_hand, wh.end_on_hand, wh.issued, wh.sold) == (10, 5, 5, 1)
    assert (ag.start_on_hand, ag.end_on_hand, ag.issued, ag.sold) == (0, 2, 2, 2)
    assert wh.turnover == pytest.approx(5 / 7.5) and wh.days_of_stock == pytest.approx(10)
    assert ag.turnover == pytest.approx(2) and ag.days_of_stock == pytest.approx(10)
    assert pd.isna(turnover.loc["EMPTY", "days_of_stock"])


# ---------------------------------------------------------------- on the database


def analysing(agent_user):
    """An agent user given analytics.read (no shipped role does): what it would see."""
    return Principal(agent_user.name, roles=agent_user.roles, permissions=agent_user.permissions | {"analytics.read"},
                     agent=agent_user.agent)


def test_on_the_database_an_agent_user_sees_only_its_subtree(two_agents):
    w = two_agents
    everyone = sales.funnel_report(w.db, "agent", actor=w.root).set_index("agent")
    assert everyone.loc["A3", "paid"] == 1 and everyone.loc["B", "paid"] == 1
    assert sales.funnel_report(w.db, "agent", actor=w.ann)["placed"].sum() == 2  # the analyst sees all
    without = Principal(w.ua.name, roles=w.ua.roles, permissions=w.ua.permissions - {"analytics.read"},
                        agent=w.ua.agent)
    with pytest.raises(AccessDenied, match="analytics.read"):
        sales.funnel_report(w.db, actor=without)
    mine = sales.funnel_report(w.db, "agent", actor=analysing(w.ua))
    assert mine["agent"].tolist() == ["A3"] and mine["placed"].tolist() == [1]
    assert sales.league_report(w.db, actor=analysing(w.ub))["agent"].tolist() == ["B"]
    locations = set(sales.turnover_report(w.db, actor=analysing(w.ua))["location"])
    assert locations == {"AG-A2", "AG-A3"}


def test_on_the_database_the_funnel_follows_the_orders_through_their_audit_trail(two_agents):
    w = two_agents
    orders_service.ship_order(w.db, w.a.number, courier="SF Express", tracking_no="SF0000000001", actor="desk")
    orders_service.cancel_order(w.db, w.b.number, actor="desk", reason="customer changed their mind")
    third = place_order(w.db, 33)  # direct, approved, never paid
    (row,) = sales.funnel_report(w.db, actor=w.root).to_dict("records")
    assert [row[s] for s in sales.STEPS[:4]] == [3, 2, 1, 0]
    rates = sales.rates_report(w.db, "agent", actor=w.root).set_index("agent")
    assert rates.loc["B", "cancel_rate"] == 1 and rates.loc["A3", "cancel_rate"] == 0
    trend = sales.trends_report(w.db, actor=w.root)
    assert trend["placed"].sum() == 3 and trend["cancelled"].sum() == 1 and trend["shipped"].sum() == 1
    only_a = check_filters(w.db, agent="A2")
    assert sales.funnel_report(w.db, actor=w.root, filters=only_a)["placed"].tolist() == [1]
    by_plan = check_filters(w.db, plan=PLAN)
    assert sales.funnel_report(w.db, actor=w.root, filters=by_plan)["placed"].tolist() == [3]
    assert third.number


def test_filters_refuse_unknown_names_and_empty_or_future_ranges(two_agents):
    db = two_agents.db
    today = date(2026, 11, 30)
    with pytest.raises(InvalidValue, match="region 'Atlantis'"):
        check_filters(db, region="Atlantis", as_of=today)
    with pytest.raises(InvalidValue, match="plan 'NO-SUCH'"):
        check_filters(db, plan="NO-SUCH", as_of=today)
    with pytest.raises(InvalidValue, match="agent 'ZZ'"):
        check_filters(db, agent="ZZ", as_of=today)
    with pytest.raises(InvalidValue, match="end '2026-11-01': is before start 2026-11-05"):
        check_filters(db, start="2026-11-05", end="2026-11-01", as_of=today)
    with pytest.raises(InvalidValue, match="end '2026-12-01': is in the future"):
        check_filters(db, end="2026-12-01", as_of=today)
    with pytest.raises(InvalidValue, match="start 'yesterday'"):
        check_filters(db, start="yesterday", as_of=today)
    ok = check_filters(db, start="2026-11-01", end="2026-11-30", region="Beijing", as_of=today)
    assert (ok.start, ok.end, ok.region) == (date(2026, 11, 1), date(2026, 11, 30), "Beijing")
