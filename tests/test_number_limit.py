"""一证五号 counted in one place: a person's numbers of a carrier are the distinct numbers of
their live bindings and open orders, whichever path gives them one (order intake, pairing,
bulk pairing, replacement, reclaim), under one lock. Several OS processes placing orders and
pairing cards for the same person at once never give them a sixth number."""

from __future__ import annotations

import multiprocessing

import pytest
from sqlalchemy import select

from distribution_world import (  # noqa: F401  (distribution is a fixture)
    PLAN, WAREHOUSE, advance, build_distribution, distribution, place_order, rid, snapshot,
)
from hkops.cards import service as cards
from hkops.errors import Conflict, InvalidValues
from hkops.orders import intake
from hkops.orders import service as orders
from hkops.stock import service as stock
from hkops.stock.tables import stock_moves
from hkops.subscribers import service as subscribers

WORKERS = 4
ATTEMPTS = 3  # each: 12 attempts at once for one person, of which exactly 5 may succeed


def person(db, n: int = 9):
    return subscribers.register(db, name=f"客户{n}", resident_id=rid(n), contact="13900000000", actor="desk")


def held(db, who) -> int:
    with db.read() as conn:
        return subscribers.count_numbers(conn, who.resident_id_hash, "China Mobile")


def test_five_approved_orders_leave_no_room_for_a_pairing_at_the_counter(distribution):
    db = distribution.db
    for _ in range(5):
        place_order(db, 9)
    who = person(db)
    assert held(db, who) == 5
    before = snapshot(db)
    card = distribution.warehouse_iccids[0]
    with pytest.raises(Conflict, match="already holds 5 China Mobile numbers.*一证五号"):
        cards.pair(db, card, "13800139001", who.id, actor="desk")
    with pytest.raises(Conflict, match="一证五号"):
        cards.pair_many(db, [(card, "13800139001", who.id)], actor="desk")
    assert snapshot(db) == before
    assert cards.get_card(db, card).state == "in_stock" and subscribers.numbers_of(db, who.id) == []


def test_pairings_and_orders_share_the_five_either_way_round(distribution):
    db = distribution.db
    who = person(db)
    for n in range(3):
        cards.pair(db, distribution.warehouse_iccids[n], f"1380013900{n}", who.id, actor="desk")
    place_order(db, 9)
    place_order(db, 9)
    with pytest.raises(InvalidValues, match="already holds 5 China Mobile numbers"):
        place_order(db, 9)
    with pytest.raises(Conflict, match="一证五号"):
        cards.pair(db, distribution.warehouse_iccids[3], "13800139003", who.id, actor="desk")
    with db.write() as conn, pytest.raises(Conflict, match="一证五号"):
        subscribers.check_number_limit(conn, who.id, "China Mobile")  # what reclaiming a number asks
    assert place_order(db, 9, plan="CU-39").state == "approved"  # another carrier has its own five


def test_the_number_of_the_persons_own_order_does_not_count_twice_and_its_card_moves_once(distribution):
    db = distribution.db
    placed = [place_order(db, 9) for _ in range(5)]
    order = advance(db, placed[0].number, "delivered")
    with db.write() as conn:  # its own number is one of the five already
        assert subscribers.check_number_limit(conn, order.subscriber_id, "China Mobile", msisdn=order.msisdn) == 5

    activated = orders.activate_order(db, order.number, actor="desk")

    card = cards.get_card(db, activated.iccid)
    assert (card.state, card.msisdn) == ("paired", order.msisdn)
    assert held(db, person(db)) == 5
    with db.read() as conn:
        moves = conn.execute(select(stock_moves.c.kind, stock_moves.c.to_location)
                             .where(stock_moves.c.iccid == card.iccid).order_by(stock_moves.c.id)).all()
    assert [tuple(m) for m in moves] == [("receipt", WAREHOUSE), ("sale", "CUSTOMER")]  # sold once, at shipping


# ---------------------------------------------------------------- several processes at once


def give_numbers(url: str, worker: int, card_list: list[str], subscriber_id: int, start, results) -> None:
    """One OS process: wait for the others, then try to give person 9 a number ATTEMPTS times,
    by order intake, by pairing and by bulk pairing (in an order that differs per worker)."""
    from hkops.store.engine import Store

    store = Store(url)
    done, refused, errors = [], [], []
    start.wait(timeout=120)
    ways = ["order", "pair", "pair_many"]
    for k in range(ATTEMPTS):
        way = ways[(worker + k) % len(ways)]
        msisdn = f"138001390{worker}{k}"
        try:
            if way == "order":
                made = intake.create_order(store, channel="direct", plan=PLAN, customer_name="客户9",
                                           resident_id=rid(9), contact="13900000000", ship_province="北京",
                                           ship_address="北京市朝阳区建国路 1 号", actor=f"w{worker}",
                                           client_order_id=f"W{worker}-{k}")
                done.append((way, made.msisdn))
            elif way == "pair":
                cards.pair(store, card_list[k], msisdn, subscriber_id, actor=f"w{worker}")
                done.append((way, msisdn))
            else:
                cards.pair_many(store, [(card_list[k], msisdn, subscriber_id)], actor=f"w{worker}")
                done.append((way, msisdn))
        except (Conflict, InvalidValues) as exc:
            (refused if "一证五号" in str(exc) else errors).append(f"{way}: {exc}")
        except Exception as exc:  # reported to the test, which fails on it
            errors.append(f"{way}: {type(exc).__name__}: {exc}")
    store.dispose()
    results.put((worker, done, refused, errors))


def test_processes_giving_one_person_numbers_at_once_never_exceed_five(world, tmp_path, monkeypatch):
    monkeypatch.setenv("HKOPS_SECRET_KEY_FILE", str(tmp_path / "secret.key"))  # the workers inherit it
    shop = build_distribution(world, tmp_path, cards=WORKERS * ATTEMPTS, agent_cards=0)
    who = person(world)
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(WORKERS), context.Queue()
    processes = [context.Process(target=give_numbers, args=(
        world.url, w, shop.iccids[w * ATTEMPTS:(w + 1) * ATTEMPTS], who.id, start, results)) for w in range(WORKERS)]
    for process in processes:
        process.start()
    reports = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0

    assert [errors for *_, errors in reports] == [[]] * WORKERS
    done = [d for _, got, _, _ in reports for d in got]
    refusals = [r for _, _, got, _ in reports for r in got]
    assert len(done) == 5 and len(refusals) == WORKERS * ATTEMPTS - 5, (done, refusals)
    assert held(world, who) == 5
    with world.read() as conn:
        live = {n: None for n in subscribers.numbers_held(conn, [who.resident_id_hash])[
            (who.resident_id_hash, "China Mobile")]}
    assert sorted(str(n) for n in live) == sorted(str(m) for _, m in done)
    paired = [m for way, m in done if way != "order"]
    assert sorted(n["msisdn"] for n in subscribers.numbers_of(world, who.id)) == sorted(paired)
    # every paired card left the warehouse through the ledger; the others are still on hand
    assert stock.on_hand(world, location=WAREHOUSE) == [
        {"location": WAREHOUSE, "product": shop.product, "quantity": WORKERS * ATTEMPTS - len(paired)}]
