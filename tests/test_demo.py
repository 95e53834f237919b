"""The demo world's distribution side, and ``hkops lookup`` over it: from any of number,
card, order, subscriber or agent to all the others."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from hkops import demo
from hkops.cards import service as cards
from hkops.cards.tables import sims
from hkops.cli import main
from hkops.errors import NotFound
from hkops.lookup import classify, format_lookup, lookup
from hkops.network import InProcessTransport, ProvisioningClient, Simulator
from hkops.orders.tables import orders
from hkops.payments import service as payments
from hkops.security import users
from hkops.stock import service as stock
from hkops.stock.tables import stock_moves
from hkops.store.engine import Store
from hkops.timeutil import utc_now


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    """One secret key file for the demo worlds of this module."""
    patch = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("key") / "secret.key"
    patch.setenv("HKOPS_SECRET_KEY_FILE", str(path))
    yield path
    patch.undo()


def _build(tmp_path_factory, seed: int) -> Store:
    folder = tmp_path_factory.mktemp(f"demo{seed}")
    store = Store(f"sqlite:///{folder / 'demo.db'}")
    summary = demo.build(store, seed=seed, per_province=1, cards=200, orders=400, hlr_dir=folder / "hlr",
                         usage_dir=folder / "usage")
    store.summary, store.hlr_dir, store.url_text = summary, folder / "hlr", f"sqlite:///{folder / 'demo.db'}"
    store.usage_dir = folder / "usage"
    return store


@pytest.fixture(scope="module")
def world(tmp_path_factory, key_file):
    store = _build(tmp_path_factory, 7)
    # The demo has users, so the CLI needs a login: an admin's API token, as a script would have.
    patch = pytest.MonkeyPatch()
    patch.setenv("HKOPS_TOKEN", users.issue_token(store, "admin", actor="tester")[0])
    yield store
    store.dispose()
    patch.undo()


@pytest.fixture(scope="module")
def world5(tmp_path_factory, key_file):
    """The demo world of another seed, for what must hold whatever the seed."""
    store = _build(tmp_path_factory, 5)
    yield store
    store.dispose()


def test_the_demo_has_orders_in_every_lasting_state_spread_over_90_days(world):
    with world.read() as conn:
        states = Counter(dict(conn.execute(select(orders.c.state, func.count()).group_by(orders.c.state)).all()))
        first, last = conn.execute(select(func.min(orders.c.created_at), func.max(orders.c.created_at))).one()
    assert set(states) >= {"draft", "rejected", "approved", "allocated", "shipped", "delivered", "activated",
                           "first_topup", "completed", "cancelled", "returned"}
    assert sum(states.values()) == sum(world.summary.orders_by_state.values())
    assert last - first > timedelta(days=60) and last <= utc_now()
    with world.read() as conn:
        placed = conn.execute(select(orders.c.created_at)).scalars().all()
    weeks = Counter((last - at).days // 7 for at in placed)  # 0: the last seven days
    full = [weeks[week] for week in range(12)]
    assert max(full) <= 2 * sum(full) / len(full), full  # placed evenly, not piled up in the last days


def test_demo_stock_agrees_with_its_ledger_and_the_hlr_with_inventory(world):
    with world.read() as conn:
        last_move = dict(conn.execute(
            select(stock_moves.c.iccid, stock_moves.c.to_location)
            .where(stock_moves.c.id.in_(select(func.max(stock_moves.c.id)).group_by(stock_moves.c.iccid)))).all())
        located = dict(conn.execute(select(sims.c.iccid, sims.c.location)).all())
    assert last_move == located  # every card entered the ledger, and is where its last move took it
    with world.read() as conn:
        moves = conn.execute(select(stock_moves.c.iccid, stock_moves.c.at).order_by(stock_moves.c.id)).all()
    latest: dict = {}
    for iccid, at in moves:  # a card is received before it is moved on, moved before it is sold
        assert at >= latest.get(iccid, at), iccid
        latest[iccid] = at
    on_hand = sum(row["quantity"] for row in stock.on_hand(world))
    assert on_hand == sum(1 for where in located.values() if where not in ("CUSTOMER", "SCRAP", "MISSING"))
    network = ProvisioningClient(InProcessTransport(Simulator(world.hlr_dir)))
    assert cards.reconcile(world, network, actor="tester") == []


@pytest.mark.parametrize("seed", [7, 5])
def test_the_demo_world_passes_hkops_check_and_sells_every_number_in_service_with_a_card(request, seed):
    from hkops import check

    world = request.getfixturevalue("world" if seed == 7 else "world5")
    from hkops.numbers.tables import numbers

    network = ProvisioningClient(InProcessTransport(Simulator(world.hlr_dir)))
    report = check.run(world, network=network)
    assert report.violations == [] and report.not_checked == {}
    with world.read() as conn:
        in_service = conn.execute(select(func.count()).where(numbers.c.state.in_(["active", "suspended"]))).scalar()
        live = conn.execute(select(func.count()).where(sims.c.state.in_(["active", "suspended", "lost"]))).scalar()
    assert in_service == live > 200


def test_the_pool_has_a_past_its_utilisation_rising_with_the_sales(world):
    from hkops.analytics import planning
    from hkops.analytics.filters import today

    history = planning.history_report(world, today() - timedelta(days=85), today(), actor="tester")
    per_day = history.groupby("day")[["in_use", "total"]].sum()
    assert len(per_day) == 86 and per_day["total"].nunique() == 1  # every day, the blocks there all along
    in_use = per_day["in_use"].tolist()
    assert in_use[0] < in_use[45] < in_use[-1]  # numbers went into service as the orders were activated
    assert max(b - a for a, b in zip(in_use, in_use[1:])) < (in_use[-1] - in_use[0]) / 4  # not all on one day


def test_demo_cards_were_activated_when_they_were_sold_and_used_since(world):
    """Each card sold through an order was activated when its order was (90 days spread, not
    when the demo ran), and the demo's usage store holds each card's records only from then on."""
    import duckdb

    from hkops.audit import audit_log

    with world.read() as conn:
        sold = dict(conn.execute(
            select(orders.c.iccid, func.max(audit_log.c.at)).join(audit_log, audit_log.c.subject == orders.c.number)
            .where(audit_log.c.entity == "order", audit_log.c.action == "activate").group_by(orders.c.iccid)).all())
        activated = dict(conn.execute(select(sims.c.iccid, sims.c.activated_at)
                                      .where(sims.c.activated_at.is_not(None))).all())
        card_records = dict(conn.execute(
            select(audit_log.c.subject, func.max(audit_log.c.at))
            .where(audit_log.c.entity == "sim", audit_log.c.action == "activate").group_by(audit_log.c.subject)).all())
        msisdn = dict(conn.execute(select(sims.c.iccid, sims.c.msisdn).where(sims.c.activated_at.is_not(None))).all())
        in_service = set(conn.execute(select(sims.c.iccid).where(sims.c.state == "active")).scalars())
    live_sold = {i: at for i, at in sold.items() if i in activated}
    assert len(live_sold) > 100
    assert all(activated[i] == at for i, at in live_sold.items())
    assert all(card_records[i] == at for i, at in activated.items())  # the audit trail says the same
    assert min(activated.values()) < utc_now() - timedelta(days=80)
    assert max(activated.values()) < utc_now() - timedelta(hours=1)

    records = str(world.usage_dir / "records" / "*" / "*.parquet")
    first_use = dict(duckdb.sql(f"select msisdn, min(start) from read_parquet('{records}', hive_partitioning=true) "
                                "where not refused group by msisdn").fetchall())
    by_number = {int(msisdn[i]): at for i, at in activated.items()}
    serving = {int(msisdn[i]) for i in activated if i in in_service}  # suspended cards' attempts are refused
    assert len(serving & set(first_use)) > 0.9 * len(serving)
    assert all(first_use[m] >= by_number[m] for m in first_use)
    days = duckdb.sql(f"select count(distinct day) from read_parquet('{records}', hive_partitioning=true) "
                      "where not refused").fetchall()[0][0]
    assert days == demo.USAGE_DAYS


def test_demo_payments_reconcile_except_the_unpaid_approved_orders(world):
    report = payments.reconcile(world)
    assert report.overpaid == [] and report.underpaid == []
    with world.read() as conn:
        approved = conn.execute(select(func.count()).where(orders.c.state == "approved")).scalar()
    assert len(report.unpaid) == approved


@pytest.mark.parametrize("seed", [7, 5])
def test_the_demo_settles_pays_claws_back_and_withdraws_commissions_in_every_state(request, seed):
    """90 days of commissions accrued from the orders: ended months settled, the last one's batches
    in every state; clawbacks from cancellations, returns and suspensions inside the window, some
    after the entry was paid; withdrawals in every state; and an agent that withdrew before a
    clawback owes money (a negative balance)."""
    from hkops.agents.service import agent_tree
    from hkops.commissions import service as commissions
    from hkops.commissions.tables import commission_entries, settlement_batches, withdrawals

    world = request.getfixturevalue("world" if seed == 7 else "world5")
    with world.read() as conn:
        batches = Counter(dict(conn.execute(select(settlement_batches.c.state, func.count())
                                            .group_by(settlement_batches.c.state)).all()))
        asked = Counter(dict(conn.execute(select(withdrawals.c.state, func.count())
                                          .group_by(withdrawals.c.state)).all()))
        entries = Counter(dict(conn.execute(select(commission_entries.c.state, func.count())
                                            .group_by(commission_entries.c.state)).all()))
        first, last = conn.execute(select(func.min(commission_entries.c.event_at),
                                          func.max(commission_entries.c.event_at))).one()
        clawed = conn.execute(select(orders.c.state, sims.c.state).distinct()
                              .join(commission_entries, commission_entries.c.order_id == orders.c.id)
                              .join(sims, sims.c.iccid == orders.c.iccid, isouter=True)
                              .where(commission_entries.c.kind == "reversal")).all()
        periods = dict(conn.execute(select(settlement_batches.c.id, settlement_batches.c.period)).all())
    assert all(batches[s] > 0 for s in ("draft", "confirmed", "approved", "paid")), batches
    assert world.summary.commissions["batches"] == batches and world.summary.commissions["withdrawals"] == asked
    assert all(asked[s] > 0 for s in ("requested", "approved", "paid", "rejected")), asked
    assert all(entries[s] > 0 for s in ("held", "eligible", "settled", "paid")), entries
    # accrued until yesterday; the world may have been built a while before this test runs
    assert first < utc_now() - timedelta(days=75) and utc_now() - timedelta(days=4) < last <= utc_now()
    assert {"cancelled", "returned"} <= {order for order, _ in clawed}
    assert "suspended" in {card for _, card in clawed}  # 单停 for arrears, 局停 of a shop's cards

    ledger = commissions.list_entries(world)
    credits = {(e["order_id"], e["event"], e["month"], e["agent_id"]): e for e in ledger if e["kind"] == "credit"}

    def credit_of(reversal: dict) -> dict:
        return credits[reversal["order_id"], reversal["event"], reversal["month"], reversal["agent_id"]]

    after_payment = [e for e in ledger if e["kind"] == "reversal" and credit_of(e)["state"] == "paid"
                     and (e["batch_id"] is None or periods[e["batch_id"]] > periods[credit_of(e)["batch_id"]])]
    assert after_payment  # clawed back after the commission was paid out
    withdrawn = commissions.list_withdrawals(world, state="paid")
    owed = Counter()  # settled minus withdrawn, to the fen
    for batch in _paid_batches(world):
        owed[batch["agent"]] += batch["total_fen"]
    for w in withdrawn:
        owed[w["agent"]] -= w["amount_fen"]
    balances = {a.code: commissions.balance(world, a.code)["balance_fen"] for a in agent_tree(world)}
    assert balances == {code: owed[code] for code in balances}
    assert {code for code, fen in balances.items() if fen < 0} & {w["agent"] for w in withdrawn}


def _paid_batches(world) -> list[dict]:
    from hkops.agents.tables import agents
    from hkops.commissions.tables import settlement_batches

    with world.read() as conn:
        return [dict(r) for r in conn.execute(
            select(settlement_batches.c.total_fen, agents.c.code.label("agent"))
            .join(agents, agents.c.id == settlement_batches.c.agent_id)
            .where(settlement_batches.c.state == "paid")).mappings()]


def test_the_demo_schemes_cover_every_plan_and_one_plan_changed_inside_the_90_days(world):
    from hkops.catalogue.tables import plans
    from hkops.commissions import service as commissions
    from hkops.commissions.tables import commission_entries

    schemes = commissions.list_schemes(world)
    with world.read() as conn:
        assert {s["plan"] for s in schemes} == set(conn.execute(select(plans.c.code)).scalars())
        used = dict(conn.execute(select(commission_entries.c.scheme_id, func.count())
                                 .group_by(commission_entries.c.scheme_id)).all())
    cm58 = [s for s in schemes if s["plan"] == "CM-58"]
    assert len(cm58) == 2
    changed = date.fromisoformat(cm58[1]["effective"])
    assert utc_now().date() - timedelta(days=90) < changed < utc_now().date()
    assert all(used.get(s["id"], 0) > 0 for s in schemes)  # old entries keep the version they were accrued under
    assert {s["timing"] for s in schemes} == {"instant", "next_month"}


def _completed(world) -> dict:
    with world.read() as conn:
        return conn.execute(select(orders).where(orders.c.state == "completed", orders.c.agent_id.is_not(None))
                            .limit(1)).mappings().one()


@pytest.mark.parametrize("key", ["msisdn", "iccid", "number", "subscriber", "client_order_id"])
def test_lookup_from_any_link_leads_to_the_whole_chain(world, key):
    order = _completed(world)
    value = {"msisdn": str(order["msisdn"]), "iccid": order["iccid"], "number": order["number"],
             "subscriber": f"S{order['subscriber_id']}", "client_order_id": order["client_order_id"]}[key]
    found = lookup(world, value)
    assert order["number"] in [o["number"] for o in found["orders"]]
    mine = next(o for o in found["orders"] if o["number"] == order["number"])
    assert [(n["msisdn"], n["carrier"]) for n in found["numbers"]] == [(order["msisdn"], order["carrier"])]
    assert order["iccid"] in [c["iccid"] for c in found["cards"]]
    assert [s["id"] for s in found["subscribers"]] == [order["subscriber_id"]]
    assert len(mine["agent_chain"]) >= 2 and mine["agent_chain"][-1]["level"] == 1
    assert mine["shipments"][0]["state"] == "delivered"
    assert mine["paid_fen"] == order["total_fen"]
    assert [(m["kind"], m["to_location"]) for m in found["stock_moves"] if m["iccid"] == order["iccid"]][-1] == \
        ("sale", "CUSTOMER")
    text = json.dumps(found, default=str, ensure_ascii=False)
    assert "resident_id_enc" not in text and found["subscribers"][0]["id_masked"].count("*") >= 8


def test_lookup_of_an_agent_shows_its_place_in_the_tree_and_its_orders(world):
    order = _completed(world)
    agent_code = json.loads(order["agent_chain"])[0]["code"]
    found = lookup(world, agent_code.lower())
    assert found["kind"] == "agent" and found["agent"]["code"] == agent_code
    assert found["agent"]["parents"][-1]["level"] == 1
    assert all(o["channel"] == agent_code for o in found["orders"]) and found["orders"]


def test_lookup_cli_prints_text_and_json_and_refuses_the_unknown(world, monkeypatch, capsys):
    monkeypatch.setenv("HKOPS_DATABASE_URL", world.url_text)
    order = _completed(world)
    with pytest.raises(SystemExit) as done:
        main(["lookup", order["number"]])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert order["number"] in text and order["iccid"] in text and "shipment" in text
    with pytest.raises(SystemExit) as done:
        main(["lookup", str(order["msisdn"]), "--json"])
    assert done.value.code == 0
    assert json.loads(capsys.readouterr().out)["orders"][0]["number"] == order["number"]
    with pytest.raises(SystemExit) as done:
        main(["lookup", "NO-SUCH-THING"])
    assert done.value.code == 2
    assert "NO-SUCH-THING" in capsys.readouterr().err


def test_lookup_classifies_what_it_is_given():
    assert classify("+86 138 0013 8000") == ("msisdn", "13800138000")
    assert classify("SO000012")[0] == "order"
    assert classify("s42") == ("subscriber", "42")
    with pytest.raises(Exception):
        classify("  ")
    assert format_lookup({"query": "x", "kind": "order", "numbers": [], "cards": [], "subscribers": [],
                          "orders": [], "agent": None, "stock_moves": []}).startswith("x")


def test_lookup_of_a_number_nobody_has_is_not_found(world):
    with pytest.raises(NotFound):
        lookup(world, "19999999999")


def test_sales_figures_count_every_order_once_and_the_funnel_only_narrows(world):
    from hkops.analytics import sales

    frame = sales.orders_frame(world)
    with world.read() as conn:
        total = conn.execute(select(func.count()).select_from(orders)).scalar()
    assert len(frame) == total
    assert not {"customer_name", "resident_id_enc", "id_masked", "ship_address", "contact"} & set(frame.columns)
    stages = sales.funnel(world)
    assert stages["orders"].iloc[0] == total
    assert list(stages["orders"]) == sorted(stages["orders"], reverse=True) and stages["orders"].iloc[-1] > 0
    daily = sales.daily_orders(frame)
    assert int(daily.to_numpy().sum()) == int((~frame["state"].isin(["draft", "rejected"])).sum())
    assert set(daily.columns) <= {"direct", "A-NORTH", "A-SOUTH", "A-EAST"}


def test_a_demo_that_fails_in_its_money_side_leaves_nothing_half_built(tmp_path, key_file, monkeypatch):
    from hkops.commissions import service as commissions
    from hkops.store.tables import metadata

    def broken(*args, **kwargs):
        raise RuntimeError("the bank is closed")

    monkeypatch.setattr(commissions, "move_withdrawal", broken)
    store = Store(f"sqlite:///{tmp_path / 'demo.db'}")
    with pytest.raises(RuntimeError, match="bank"):
        demo.build(store, per_province=1, cards=20, orders=60, hlr_dir=tmp_path / "hlr")
    with store.read() as conn:
        rows = {t.name: conn.execute(select(func.count()).select_from(t)).scalar() for t in metadata.sorted_tables}
    store.dispose()
    assert not any(rows.values()), {k: v for k, v in rows.items() if v}
    assert not (tmp_path / "hlr").exists()
