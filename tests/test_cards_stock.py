"""Every card that leaves stock leaves through the stock ledger: a walk-in pairing, a
replacement card (补卡), a faulty card; on-hand equals the ledger at every moment. A
replacement never puts two live cards on one number (checked with the partial unique index
the integrity work adds, created here by hand)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from hkops.cards import service as cards
from hkops.cards.tables import provisioning_outbox, sims
from hkops.errors import Conflict
from hkops.stock import service as stock
from hkops.stock.model import VIRTUAL
from hkops.stock.tables import stock_locations, stock_moves
from test_cards_lifecycle import N, RID, active_card, hlr, shop  # noqa: F401 - fixtures
from test_cards_hlr_refusals import consistent

LIVE = ("paired", "active", "suspended", "lost")


def ledger_agrees(db) -> None:
    """Every card the ledger knows is where its last ledger row took it; on-hand per location
    (derived from the ledger) is the number of cards there; no card in a customer's hands
    (live or final) is on a shelf."""
    with db.read() as conn:
        last = (select(stock_moves.c.iccid, func.max(stock_moves.c.id).label("id"))
                .group_by(stock_moves.c.iccid).subquery())
        placed = dict(conn.execute(select(stock_moves.c.iccid, stock_moves.c.to_location)
                                   .join(last, last.c.id == stock_moves.c.id)).all())
        where = {r.iccid: r for r in conn.execute(select(sims.c.iccid, sims.c.location, sims.c.state))}
        virtual = set(VIRTUAL) | set(conn.execute(select(stock_locations.c.code)
                                                  .where(stock_locations.c.kind == "virtual")).scalars())
    assert {i: where[i].location for i in placed} == placed
    shelves: dict[str, int] = {}
    for row in where.values():
        if row.location is not None and row.location not in virtual:
            shelves[row.location] = shelves.get(row.location, 0) + 1
            assert row.state in ("in_stock", "allocated"), row
    assert {r["location"]: r["quantity"] for r in stock.on_hand(db)} == shelves


def on_hand(db, location="WH-BJ") -> int:
    return sum(r["quantity"] for r in stock.on_hand(db, location=location))


def test_a_walk_in_pairing_takes_the_card_off_the_shelf_through_the_ledger(shop):
    assert on_hand(shop) == 10
    cards.pair(shop, shop.iccids[0], N, shop.subscriber, actor="ana")
    assert on_hand(shop) == 9
    [sale] = stock.ledger(shop, iccid=shop.iccids[0], limit=1)
    assert (sale["kind"], sale["from_location"], sale["to_location"], sale["document"]) == \
        ("sale", "WH-BJ", "CUSTOMER", "SL000001")
    ledger_agrees(shop)

    stock.add_location(shop, "WH-SH", "Shanghai", actor="ana")
    stock.transfer(shop, "WH-BJ", "WH-SH", iccids=[shop.iccids[3]], actor="ana")
    cards.pair_many(shop, [(shop.iccids[2], "13800130128", shop.subscriber),
                           (shop.iccids[3], "13800130129", shop.subscriber)], actor="ana")
    assert on_hand(shop) == 7 and on_hand(shop, "WH-SH") == 0
    documents = {m["document"] for m in stock.ledger(shop, location="CUSTOMER")}
    assert documents == {"SL000001", "SL000002", "SL000003"}  # one hand-over document per location
    ledger_agrees(shop)


def test_a_replacement_card_stays_reserved_on_the_shelf_until_the_hlr_swaps_then_leaves_it(shop, hlr):
    active_card(shop, hlr)
    active_card(shop, hlr, index=2, msisdn="13800130128")
    cards.report_loss(shop, shop.iccids[0], actor="ana", network=hlr[1])
    new = cards.replace(shop, shop.iccids[0], shop.iccids[1], RID, actor="ana")  # the HLR is not asked yet
    assert (new.state, new.msisdn) == ("allocated", None)
    assert cards.get_card(shop, N).iccid == shop.iccids[0]  # the old card still serves the number
    assert on_hand(shop) == 8  # two paired; the reserved card is still on the shelf
    with pytest.raises(Conflict, match="reserved to replace"):
        cards.pair(shop, shop.iccids[1], "13800130129", shop.subscriber, actor="ana")
    with pytest.raises(Conflict, match="must be in stock"):
        cards.replace(shop, shop.iccids[2], shop.iccids[1], RID, actor="ana")
    ledger_agrees(shop)

    cards.sync(shop, hlr[1])

    new = cards.get_card(shop, shop.iccids[1])
    assert (new.state, new.msisdn, new.subscriber_id) == ("active", N, shop.subscriber)
    assert on_hand(shop) == 7
    assert stock.ledger(shop, iccid=shop.iccids[1], limit=1)[0]["to_location"] == "CUSTOMER"
    ledger_agrees(shop)
    consistent(shop)


@pytest.mark.parametrize("where", ["no location", "a virtual location"])
def test_replacing_with_a_card_not_in_stock_at_a_location_is_refused_with_nothing_changed(shop, hlr, where):
    active_card(shop, hlr)
    if where == "no location":
        with shop.write() as conn:  # a card received without a location (older imports)
            conn.execute(sims.update().where(sims.c.iccid == shop.iccids[1]).values(location=None))
        stock_moves_before = None
    else:  # lost at a count: in MISSING, still in_stock
        stock.count(shop, "WH-BJ", [i for i in shop.iccids[2:]] + [shop.iccids[0]], actor="ana")
        stock_moves_before = stock.ledger(shop, iccid=shop.iccids[1])
    with shop.read() as conn:
        outbox_before = conn.execute(select(func.count()).select_from(provisioning_outbox)).scalar()

    with pytest.raises(Conflict, match=f"not in stock at a location .at {'no location' if where == 'no location' else 'MISSING'}"):
        cards.replace(shop, shop.iccids[0], shop.iccids[1], RID, actor="ana", network=hlr[1])

    assert cards.get_card(shop, shop.iccids[0]).state == "active"
    assert cards.get_card(shop, shop.iccids[1]).state == "in_stock"
    with shop.read() as conn:
        assert conn.execute(select(func.count()).select_from(provisioning_outbox)).scalar() == outbox_before
    if stock_moves_before is not None:
        assert stock.ledger(shop, iccid=shop.iccids[1]) == stock_moves_before
    assert hlr[1].get(N).imsi == shop.imsis[0]


def test_a_faulty_card_leaves_stock_through_the_scrap_path(shop):
    stock.scrap(shop, [shop.iccids[5]], "WH-BJ", actor="ana", reason="chip unreadable")
    card = cards.get_card(shop, shop.iccids[5])
    assert card.state == "destroyed" and on_hand(shop) == 9
    ledger_agrees(shop)


LIVE_INDEX = ("CREATE UNIQUE INDEX ux_test_sims_live_msisdn ON sims (msisdn) "
              "WHERE state IN ('paired', 'active', 'suspended', 'lost')")


@pytest.fixture
def live_index(shop):
    """The partial unique index "one live SIM per number", made by hand (the integrity work adds it)."""
    with shop.write() as conn:
        conn.execute(text(LIVE_INDEX))
    yield
    with shop.write() as conn:
        conn.execute(text("DROP INDEX ux_test_sims_live_msisdn"))


@pytest.mark.parametrize("lost", [False, True])
def test_a_replacement_never_puts_two_live_cards_on_one_number(shop, hlr, live_index, lost):
    active_card(shop, hlr)
    if lost:
        cards.report_loss(shop, shop.iccids[0], actor="ana", network=hlr[1])
    cards.replace(shop, shop.iccids[0], shop.iccids[1], RID, actor="ana")  # waits for the HLR
    with shop.read() as conn:
        live = conn.execute(select(sims.c.iccid).where(sims.c.msisdn == int(N), sims.c.state.in_(LIVE))).scalars().all()
    assert live == [shop.iccids[0]]

    cards.sync(shop, hlr[1])

    assert cards.get_card(shop, N).iccid == shop.iccids[1]
    assert cards.get_card(shop, shop.iccids[0]).state == "replaced"
    assert cards.reconcile(shop, hlr[1], actor="ana") == []
    consistent(shop)
