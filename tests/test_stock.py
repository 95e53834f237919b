"""Serial stock: every card is a unit in the append-only ledger; orders pick, sell and take
back single cards; transfers, returns, scrapping and counts move many at once; on-hand
figures come from the ledger; low stock raises an alert with a reorder suggestion."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, time, timedelta

import pytest
from sqlalchemy import func, select, update

from hkops.audit import query as audit_query
from hkops.cards.batches import import_sim_file
from hkops.cards.tables import sim_batches, sims
from hkops.catalogue.service import add_product
from hkops.errors import Conflict, IllegalTransition, InvalidValue, InvalidValues, NotFound
from hkops.ids import make_iccid
from hkops.stock import service as stock
from hkops.stock.tables import stock_counts, stock_moves
from hkops.timeutil import SHANGHAI, utc_now
from strategies import kernel_sqlite3, snapshot  # noqa: F401
from test_vendor_files import card_csv, make_cards

CM, CU = "CM-NANO", "CU-NANO"


def stock_up(db, tmp_path, count: int, *, start: int = 0, product: str = CM, location: str = "WH-BJ",
             mnc: str = "00", issuer: str = "00") -> list[str]:
    """Receive ``count`` cards of ``product`` at ``location``; their ICCIDs, lowest first."""
    cards = make_cards(count, start=start, mnc=mnc, issuer=issuer)
    name = f"{product}-{location}-{start}"
    path = tmp_path / f"{name}.csv"
    path.write_text(card_csv(cards), encoding="utf-8")
    import_sim_file(db, path, carrier="China Unicom" if mnc == "01" else "China Mobile", actor="tester",
                    location=location)
    with db.write() as conn:
        conn.execute(update(sim_batches).where(sim_batches.c.name == name).values(product=product))
    return sorted(c["iccid"] for c in cards)


@pytest.fixture
def depot(world, tmp_path, monkeypatch):
    """Two products, a Beijing warehouse with 10 China Mobile and 3 China Unicom cards, an agent location."""
    monkeypatch.setenv("HKOPS_SECRET_KEY_FILE", str(tmp_path / "secret.key"))
    add_product(world, CM, "China Mobile nano SIM", "China Mobile", "nano", actor="tester")
    add_product(world, CU, "China Unicom nano SIM", "China Unicom", "nano", actor="tester")
    stock.add_location(world, "WH-BJ", "Beijing warehouse", actor="tester", province="Beijing")
    stock.add_location(world, "WH-SH", "Shanghai warehouse", actor="tester", province="Shanghai")
    stock.add_location(world, "AG-001", "Agent one", "agent", actor="tester")
    world.cm = stock_up(world, tmp_path, 10)
    world.cu = stock_up(world, tmp_path, 3, product=CU, mnc="01", issuer="01")
    return world


def quantities(db, **filters) -> dict[tuple[str, str | None], int]:
    return {(r["location"], r["product"]): r["quantity"] for r in stock.on_hand(db, **filters)}


def card(db, iccid):
    with db.read() as conn:
        return conn.execute(select(sims.c.state, sims.c.location).where(sims.c.iccid == iccid)).one()


def sim_actions(db, iccid) -> list[tuple[str, str | None, str | None]]:
    with db.read() as conn:
        rows = audit_query(conn, subject=iccid, entity="sim", limit=100)
    return [(r["action"], r["from_state"], r["to_state"]) for r in reversed(rows)]


def assert_ledger_agrees(db):
    """Every card's last ledger row ends where sims.location says, and on-hand = the ledger's sum."""
    with db.read() as conn:
        last = dict(conn.execute(
            select(stock_moves.c.iccid, stock_moves.c.to_location)
            .where(stock_moves.c.id.in_(select(func.max(stock_moves.c.id)).group_by(stock_moves.c.iccid)))).all())
        where = dict(conn.execute(select(sims.c.iccid, sims.c.location).where(sims.c.location.is_not(None))).all())
        placed = dict(conn.execute(
            select(sims.c.location, func.count()).where(sims.c.location.not_in(list(stock.VIRTUAL)))
            .group_by(sims.c.location)).all())
    assert last == where
    by_location: dict[str, int] = {}
    for row in stock.on_hand(db):
        by_location[row["location"]] = by_location.get(row["location"], 0) + row["quantity"]
    assert by_location == placed


# ---------------------------------------------------------------- receipts into the ledger


def test_cards_imported_at_a_location_enter_the_ledger_as_a_receipt_under_the_batch_name(depot):
    rows = stock.ledger(depot, document=f"{CM}-WH-BJ-0")
    assert len(rows) == 10 and {(r["from_location"], r["to_location"], r["kind"]) for r in rows} == {
        ("VENDOR", "WH-BJ", "receipt")}
    assert quantities(depot) == {("WH-BJ", CM): 10, ("WH-BJ", CU): 3}
    assert_ledger_agrees(depot)


def test_an_import_naming_an_unknown_location_registers_it_as_a_warehouse(depot, tmp_path):
    stock_up(depot, tmp_path, 2, start=100, location="Tianjin depot")
    with depot.write() as conn:
        assert stock.location_kind(conn, "Tianjin depot") == "warehouse"
    assert quantities(depot, location="Tianjin depot") == {("Tianjin depot", CM): 2}
    stock_up(depot, tmp_path, 1, start=200, location="wh-sh")  # a known code in any letter case
    assert quantities(depot, location="WH-SH") == {("WH-SH", CM): 1}


# ---------------------------------------------------------------- order-facing moves


def test_picking_takes_the_lowest_in_stock_card_of_the_product_and_conflicts_when_none_is_left(depot):
    with depot.write() as conn:
        first = stock.pick_unit(conn, "WH-BJ", CU, "SO000001", actor="ana")
        second = stock.pick_unit(conn, "WH-BJ", CU, "SO000002", actor="ana")
    assert [first, second] == depot.cu[:2]
    assert card(depot, first) == ("allocated", "WH-BJ")
    assert sim_actions(depot, first) == [("allocate", "in_stock", "allocated")]
    with depot.write() as conn:
        stock.pick_unit(conn, "WH-BJ", CU, "SO000003", actor="ana")
        with pytest.raises(Conflict, match="no CU-NANO card is in stock at WH-BJ"):
            stock.pick_unit(conn, "WH-BJ", CU, "SO000004", actor="ana")
        with pytest.raises(Conflict, match="no CM-NANO card is in stock at AG-001"):
            stock.pick_unit(conn, "AG-001", CM, "SO000004", actor="ana")
        with pytest.raises(NotFound, match="WH-XX"):
            stock.pick_unit(conn, "WH-XX", CM, "SO000004", actor="ana")


def test_concurrent_pickers_never_take_the_same_card(depot):
    def pick(order: int) -> str:
        with depot.write() as conn:
            return stock.pick_unit(conn, "WH-BJ", CM, f"SO{order:06d}", actor="ana")

    with ThreadPoolExecutor(4) as pool:
        picked = list(pool.map(pick, range(10)))
    assert sorted(picked) == depot.cm
    with depot.write() as conn, pytest.raises(Conflict):
        stock.pick_unit(conn, "WH-BJ", CM, "SO000011", actor="ana")


def test_unpicking_puts_an_allocated_card_back_and_refuses_any_other(depot):
    with depot.write() as conn:
        iccid = stock.pick_unit(conn, "WH-BJ", CM, "SO000001", actor="ana")
        stock.unpick_unit(conn, iccid, "SO000001", actor="ana")
    assert card(depot, iccid) == ("in_stock", "WH-BJ")
    assert sim_actions(depot, iccid)[-1] == ("unallocate", "allocated", "in_stock")
    with depot.write() as conn, pytest.raises(IllegalTransition, match="it is in_stock"):
        stock.unpick_unit(conn, iccid, "SO000001", actor="ana")


def test_selling_moves_a_picked_card_to_the_customer_and_taking_it_back_restocks_it(depot):
    with depot.write() as conn:
        iccid = stock.pick_unit(conn, "WH-BJ", CM, "SO000001", actor="ana")
        stock.sell_unit(conn, iccid, "WH-BJ", "SO000001", actor="ana")
    assert card(depot, iccid) == ("allocated", "CUSTOMER")
    assert quantities(depot, location="WH-BJ")[("WH-BJ", CM)] == 9
    sale = stock.ledger(depot, iccid=iccid)[0]
    assert (sale["from_location"], sale["to_location"], sale["kind"], sale["document"]) == (
        "WH-BJ", "CUSTOMER", "sale", "SO000001")
    with depot.write() as conn:
        stock.take_back_unit(conn, iccid, "WH-SH", "SO000001", actor="ana")
    assert card(depot, iccid) == ("in_stock", "WH-SH")
    back = stock.ledger(depot, iccid=iccid)[0]
    assert (back["from_location"], back["to_location"], back["kind"]) == ("CUSTOMER", "WH-SH", "return")
    assert quantities(depot) == {("WH-BJ", CM): 9, ("WH-BJ", CU): 3, ("WH-SH", CM): 1}
    assert [a for a, _, _ in sim_actions(depot, iccid)] == ["allocate", "sell", "take_back"]
    assert_ledger_agrees(depot)


def test_a_card_not_picked_or_not_at_the_location_cannot_be_sold_and_nothing_moves(depot):
    before = snapshot(depot)
    with depot.write() as conn, pytest.raises(InvalidValues) as caught:
        stock.sell_unit(conn, depot.cm[0], "WH-BJ", "SO000001", actor="ana")
    assert "is in_stock" in str(caught.value) and depot.cm[0] in str(caught.value)
    assert snapshot(depot) == before
    with depot.write() as conn:
        iccid = stock.pick_unit(conn, "WH-BJ", CM, "SO000001", actor="ana")
    before = snapshot(depot)
    with depot.write() as conn, pytest.raises(InvalidValues, match=f"{iccid}.*is not at WH-SH"):
        stock.sell_unit(conn, iccid, "WH-SH", "SO000001", actor="ana")
    with depot.write() as conn, pytest.raises(InvalidValues, match="is not at CUSTOMER"):
        stock.take_back_unit(conn, iccid, "WH-BJ", "SO000001", actor="ana")
    assert snapshot(depot) == before


# ---------------------------------------------------------------- transfers and returns


def test_a_transfer_by_list_range_or_count_moves_in_stock_cards_as_one_audited_document(depot):
    by_list = stock.transfer(depot, "WH-BJ", "AG-001", iccids=depot.cm[:2], actor="ana", reason="launch")
    by_range = stock.transfer(depot, "WH-BJ", "AG-001", first=depot.cm[2], last=depot.cm[4], actor="ana")
    with depot.write() as conn:
        picked = stock.pick_unit(conn, "WH-BJ", CM, "SO000001", actor="ana")  # the lowest left: cm[5]
    by_count = stock.transfer(depot, "WH-BJ", "WH-SH", count=2, product=CM, actor="ana")
    assert [(t.document, t.count) for t in (by_list, by_range, by_count)] == [
        ("TR000001", 2), ("TR000002", 3), ("TR000003", 2)]
    assert picked == depot.cm[5] and (by_count.first_iccid, by_count.last_iccid) == (depot.cm[6], depot.cm[7])
    assert quantities(depot) == {("AG-001", CM): 5, ("WH-BJ", CM): 3, ("WH-BJ", CU): 3, ("WH-SH", CM): 2}
    assert {card(depot, i).location for i in depot.cm[:5]} == {"AG-001"}
    assert [(r["iccid"], r["kind"]) for r in reversed(stock.ledger(depot, document="TR000002"))] == [
        (i, "transfer") for i in depot.cm[2:5]]
    with depot.read() as conn:
        events = audit_query(conn, subject="TR000001")
    assert [(e["entity"], e["action"], e["reason"]) for e in events] == [("stock", "transfer", "launch")]
    assert events[0]["details"] == {"from": "WH-BJ", "to": "AG-001", "count": 2, "first_iccid": depot.cm[0],
                                    "last_iccid": depot.cm[1]}
    assert_ledger_agrees(depot)


def test_transferring_a_serial_that_is_not_at_the_source_is_refused_naming_it_and_nothing_moves(depot):
    stock.transfer(depot, "WH-BJ", "AG-001", iccids=[depot.cm[0]], actor="ana")
    before = snapshot(depot)
    with pytest.raises(InvalidValues) as caught:
        stock.transfer(depot, "WH-BJ", "WH-SH", iccids=depot.cm[:3], actor="ana")
    assert [(p.field, p.value) for p in caught.value.problems] == [("iccid", depot.cm[0])]
    assert "is not at WH-BJ (it is at AG-001)" in str(caught.value)
    assert snapshot(depot) == before
    with depot.write() as conn:
        picked = stock.pick_unit(conn, "WH-BJ", CM, "SO000001", actor="ana")
    before = snapshot(depot)
    with pytest.raises(InvalidValues, match=f"{picked}.*is allocated"):
        stock.transfer(depot, "WH-BJ", "WH-SH", iccids=[picked, depot.cm[5]], actor="ana")
    with pytest.raises(InvalidValues, match="is not in the inventory"):
        stock.transfer(depot, "WH-BJ", "WH-SH", iccids=[make_iccid("8986000000000009999")], actor="ana")
    with pytest.raises(InvalidValue, match="only 8 CM-NANO card"):
        stock.transfer(depot, "WH-BJ", "WH-SH", count=9, product=CM, actor="ana")
    with pytest.raises(InvalidValue, match="virtual location"):
        stock.transfer(depot, "WH-BJ", "SCRAP", iccids=[depot.cm[5]], actor="ana")
    with pytest.raises(InvalidValue, match="exactly one of"):
        stock.transfer(depot, "WH-BJ", "WH-SH", iccids=[depot.cm[5]], count=1, product=CM, actor="ana")
    assert snapshot(depot) == before


def test_a_transfer_of_thousands_of_cards_moves_them_all_or_none(depot, tmp_path):
    many = stock_up(depot, tmp_path, 2_000, start=1_000)
    stock.transfer(depot, "WH-BJ", "AG-001", iccids=[many[1_500]], actor="ana")
    before = snapshot(depot)
    with pytest.raises(InvalidValues) as caught:
        stock.transfer(depot, "WH-BJ", "WH-SH", iccids=many, actor="ana")
    assert [p.value for p in caught.value.problems] == [many[1_500]]
    assert snapshot(depot) == before
    rest = many[:1_500] + many[1_501:]
    moved = stock.transfer(depot, "WH-BJ", "WH-SH", iccids=list(reversed(rest)), actor="ana")
    assert (moved.count, moved.first_iccid, moved.last_iccid) == (1_999, many[0], many[-1])
    assert quantities(depot, location="WH-SH") == {("WH-SH", CM): 1_999}
    assert_ledger_agrees(depot)


def test_an_agent_returns_stock_to_a_warehouse(depot):
    stock.transfer(depot, "WH-BJ", "AG-001", count=4, product=CM, actor="ana")
    back = stock.return_units(depot, depot.cm[:2], "AG-001", "WH-SH", actor="ana", reason="agent closed")
    assert (back.document, back.count) == ("RT000001", 2)
    assert quantities(depot, product=CM) == {("AG-001", CM): 2, ("WH-BJ", CM): 6, ("WH-SH", CM): 2}
    assert {r["kind"] for r in stock.ledger(depot, document="RT000001")} == {"return"}
    with pytest.raises(InvalidValue, match="not a warehouse"):
        stock.return_units(depot, depot.cm[2:3], "WH-SH", "AG-001", actor="ana", reason="wrong way")
    assert_ledger_agrees(depot)


# ---------------------------------------------------------------- scrapping and counts


def test_scrapped_cards_are_marked_faulty_destroyed_and_moved_to_scrap(depot):
    done = stock.scrap(depot, depot.cm[:2], "WH-BJ", actor="ana", reason="chips cracked")
    assert (done.document, done.count, done.to_location) == ("SX000001", 2, "SCRAP")
    assert card(depot, depot.cm[0]) == ("destroyed", "SCRAP")
    assert sim_actions(depot, depot.cm[0]) == [("mark_faulty", "in_stock", "faulty"), ("destroy", "faulty", "destroyed")]
    assert quantities(depot, location="WH-BJ")[("WH-BJ", CM)] == 8
    before = snapshot(depot)
    with pytest.raises(InvalidValues, match="cannot mark faulty SIM .*destroyed"):
        stock.scrap(depot, [depot.cm[0], depot.cm[3]], "WH-BJ", actor="ana", reason="again")
    with pytest.raises(InvalidValue, match="say why"):
        stock.scrap(depot, depot.cm[3:4], "WH-BJ", actor="ana", reason=" ")
    assert snapshot(depot) == before
    assert_ledger_agrees(depot)


def test_a_count_moves_missing_cards_to_missing_and_found_ones_here_and_keeps_the_variances(depot):
    stock.transfer(depot, "WH-BJ", "AG-001", iccids=depot.cm[8:], actor="ana")
    counted = depot.cm[2:8] + depot.cu + [depot.cm[9], depot.cm[2]]  # cm[0:2] lost, cm[9] turned up here
    dry = stock.count(depot, "WH-BJ", counted, actor="ana", apply=False)
    assert (dry.number, dry.expected, dry.counted, dry.missing, dry.unexpected) == (
        None, 11, 10, depot.cm[:2], [depot.cm[9]])
    assert quantities(depot, location="WH-BJ")[("WH-BJ", CM)] == 8
    result = stock.count(depot, "WH-BJ", counted, actor="ana")
    assert (result.number, result.missing, result.unexpected) == ("CT000001", depot.cm[:2], [depot.cm[9]])
    assert quantities(depot) == {("AG-001", CM): 1, ("WH-BJ", CM): 7, ("WH-BJ", CU): 3}
    assert card(depot, depot.cm[0]).location == "MISSING" and card(depot, depot.cm[9]).location == "WH-BJ"
    assert {(r["from_location"], r["to_location"]) for r in stock.ledger(depot, document="CT000001")} == {
        ("WH-BJ", "MISSING"), ("AG-001", "WH-BJ")}
    with depot.read() as conn:
        row = conn.execute(select(stock_counts)).mappings().one()
    assert (row["expected"], row["counted"], row["missing"], row["unexpected"]) == (11, 10, 2, 1)
    again = stock.count(depot, "WH-BJ", counted + depot.cm[:1], actor="ana")  # a missing card is found again
    assert (again.number, again.missing, again.unexpected) == ("CT000002", [], depot.cm[:1])
    with pytest.raises(InvalidValues, match="not in the inventory"):
        stock.count(depot, "WH-BJ", [make_iccid("8986000000000009999")], actor="ana")
    assert_ledger_agrees(depot)


# ---------------------------------------------------------------- figures


def test_low_stock_alerts_suggest_a_reorder_covering_recent_sales_and_the_minimum(depot):
    stock.set_minimum(depot, "WH-BJ", CM, 5, actor="ana")
    stock.set_minimum(depot, "WH-BJ", CU, 1, actor="ana")
    now = utc_now()  # one explicit clock for the sales and the day asked about
    today = now.astimezone(SHANGHAI).date()
    assert stock.low_stock(depot, today=today) == []
    with depot.write() as conn:
        for n in range(4):
            iccid = stock.pick_unit(conn, "WH-BJ", CM, f"SO{n:06d}", actor="ana")
            stock.sell_unit(conn, iccid, "WH-BJ", f"SO{n:06d}", actor="ana", now=now)
        old = stock.pick_unit(conn, "WH-BJ", CM, "SO000009", actor="ana")
        stock.sell_unit(conn, old, "WH-BJ", "SO000009", actor="ana", now=now - timedelta(days=40))
    alerts = stock.low_stock(depot, days=30, today=today)
    assert alerts == [stock.Alert("WH-BJ", CM, on_hand=5, minimum=5, sold_last_days=4, suggested_reorder=4)], \
        (stock.on_hand(depot), stock.ledger(depot, location="WH-BJ", limit=10))
    assert stock.low_stock(depot, days=60, today=today)[0].sold_last_days == 5
    assert stock.low_stock(depot, today=(utc_now() - timedelta(days=60)).date()) == []
    stock.set_minimum(depot, "WH-BJ", CM, 0, actor="ana")
    assert stock.low_stock(depot) == []
    with pytest.raises(NotFound):
        stock.set_minimum(depot, "WH-BJ", "NOPE", 1, actor="ana")


def test_low_stock_counts_the_sales_of_a_morning_made_in_a_jupyter_kernel(depot, kernel_sqlite3):
    stock.set_minimum(depot, "WH-BJ", CM, 5, actor="ana")
    day = utc_now().astimezone(SHANGHAI).date() - timedelta(days=1)
    morning = datetime.combine(day, time(11), SHANGHAI)  # 03:00 UTC: the same UTC date as the day's end
    with depot.write() as conn:
        for n in range(4):
            iccid = stock.pick_unit(conn, "WH-BJ", CM, f"SO{n:06d}", actor="ana")
            stock.sell_unit(conn, iccid, "WH-BJ", f"SO{n:06d}", actor="ana", now=morning)
    assert [a.sold_last_days for a in stock.low_stock(depot, days=1, today=day)] == [4]


def test_on_hand_equals_the_ledger_sums_per_location_and_product(depot):
    stock.transfer(depot, "WH-BJ", "AG-001", count=3, product=CM, actor="ana")
    stock.transfer(depot, "WH-BJ", "AG-001", count=1, product=CU, actor="ana")
    with depot.read() as conn:
        moves = conn.execute(select(stock_moves.c.iccid, stock_moves.c.from_location, stock_moves.c.to_location)).all()
        products = dict(conn.execute(select(sims.c.iccid, sim_batches.c.product)
                                     .join(sim_batches, sims.c.batch_id == sim_batches.c.id)).all())
    sums: dict[tuple[str, str], int] = {}
    for iccid, source, target in moves:
        for place, delta in ((source, -1), (target, 1)):
            if place not in stock.VIRTUAL:
                sums[(place, products[iccid])] = sums.get((place, products[iccid]), 0) + delta
    assert quantities(depot) == {k: v for k, v in sums.items() if v}
    assert quantities(depot, location="AG-001", product=CU) == {("AG-001", CU): 1}
