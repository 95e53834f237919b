"""Serial stock: every card is a unit in the append-only ledger; orders pick, sell and take
back single cards; transfers, returns, scrapping and counts move many at once; on-hand
figures come from the ledger; low stock raises an alert with a reorder suggestion."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from hkops.audit import audit_log
from hkops.audit import query as audit_query
from hkops.cards.batches import import_sim_file
from hkops.cards.tables import sim_batches, sims
from hkops.catalogue.service import add_product
from hkops.errors import Conflict, IllegalTransition, InvalidValue, InvalidValues, NotFound
from hkops.stock import service as stock
from hkops.stock.tables import stock_counts, stock_moves
from hkops.timeutil import utc_now
from strategies import snapshot
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
