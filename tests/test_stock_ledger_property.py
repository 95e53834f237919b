"""Random sequences of receipts against purchase orders, transfers, sales (pick then sell),
take-backs, returns, scraps and counts, checked after every step: each serial is in exactly
one place (its last ledger row ends where ``sims.location`` says and where the model has
it, and exactly one location nets it), and on-hand equals the ledger's sum."""

from __future__ import annotations

import os
import tempfile

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import func, select

from hkops import carriers, check
from hkops.cards.tables import sims
from hkops.catalogue.service import add_product
from hkops.errors import Conflict, InvalidValues
from hkops.procurement import service as procurement
from hkops.stock import service as stock
from hkops.stock.model import VENDOR, VIRTUAL
from hkops.stock.tables import stock_moves
from hkops.store import migrate
from hkops.store.engine import Store
from test_vendor_files import card_csv, make_cards

PRODUCT = "CM-NANO"
WAREHOUSES = ["WH-A", "WH-B"]
PLACES = WAREHOUSES + ["AG-1"]
MAX_CARDS = 40


class StockLedger(RuleBasedStateMachine):
    @initialize()
    def world(self):
        self.folder = tempfile.TemporaryDirectory()
        self.store = Store(f"sqlite:///{self.folder.name}/stock.db")
        migrate.upgrade(self.store)
        self.saved_key_file = os.environ.get("HKOPS_SECRET_KEY_FILE")
        os.environ["HKOPS_SECRET_KEY_FILE"] = f"{self.folder.name}/secret.key"
        with self.store.write() as conn:
            carriers.configure(conn, ["China Mobile"], actor="setup")
        add_product(self.store, PRODUCT, "China Mobile nano SIM", "China Mobile", "nano", actor="setup")
        procurement.add_vendor(self.store, "ACME", "Acme Cards", actor="setup")
        for code in WAREHOUSES:
            stock.add_location(self.store, code, code, actor="setup")
        stock.add_location(self.store, "AG-1", "Agent", "agent", actor="setup")
        self.where: dict[str, str] = {}  # the model: each card's place
        self.unavailable: set[str] = set()  # sold (allocated) or scrapped (destroyed): not in stock
        self.received = 0
        self.receive(6, False, "WH-A")

    def teardown(self):
        if hasattr(self, "store"):
            report = check.run(self.store)  # hkops check finds the whole world consistent
            assert report.clean, report.violations[:5]
            self.store.dispose()
            self.folder.cleanup()
            if self.saved_key_file is None:
                os.environ.pop("HKOPS_SECRET_KEY_FILE", None)
            else:
                os.environ["HKOPS_SECRET_KEY_FILE"] = self.saved_key_file

    def _at(self, place: str) -> list[str]:
        return sorted(i for i, p in self.where.items() if p == place and i not in self.unavailable)

    def _some(self, data, place: str) -> list[str]:
        """Mostly in-stock cards at ``place``; sometimes a card from anywhere (which may be refused)."""
        here = self._at(place)
        if here and data.draw(st.integers(0, 4), label="fitting") > 0:
            return data.draw(st.lists(st.sampled_from(here), min_size=1, max_size=5, unique=True), label="cards")
        if not self.where:
            return []
        return [data.draw(st.sampled_from(sorted(self.where)), label="any card")]

    @rule(quantity=st.integers(1, 8), ordered_more=st.booleans(), warehouse=st.sampled_from(WAREHOUSES))
    def receive(self, quantity, ordered_more, warehouse):
        if self.received + quantity > MAX_CARDS:
            return
        cards = make_cards(quantity, start=self.received)
        path = f"{self.folder.name}/delivery-{self.received}.csv"
        with open(path, "w", encoding="utf-8") as out:
            out.write(card_csv(cards))
        number = procurement.create_po(self.store, "ACME", warehouse, [(PRODUCT, quantity + ordered_more, 300)],
                                       actor="t")
        procurement.confirm(self.store, number, actor="t")
        receipt = procurement.receive(self.store, number, path, actor="t")
        assert receipt.state == ("partially_received" if ordered_more else "received")
        self.received += quantity
        self.where.update({c["iccid"]: warehouse for c in cards})

    @rule(data=st.data(), source=st.sampled_from(PLACES), destination=st.sampled_from(PLACES))
    def transfer(self, data, source, destination):
        cards = self._some(data, source)
        if not cards or source == destination:
            return
        try:
            stock.transfer(self.store, source, destination, iccids=cards, actor="t")
        except InvalidValues:
            assert not set(cards) <= set(self._at(source))
            return
        assert set(cards) <= set(self._at(source))
        self.where.update({i: destination for i in cards})

    @rule(source=st.sampled_from(PLACES), take_back=st.booleans(), back_to=st.sampled_from(PLACES))
    def sell(self, source, take_back, back_to):
        order = f"SO{len(self.where)}-{source}"
        try:
            with self.store.write() as conn:
                iccid = stock.pick_unit(conn, source, PRODUCT, order, actor="t")
                stock.sell_unit(conn, iccid, source, order, actor="t")
        except Conflict:
            assert not self._at(source)
            return
        assert iccid == self._at(source)[0]  # the lowest in-stock ICCID
        self.where[iccid] = "CUSTOMER"
        self.unavailable.add(iccid)
        if take_back:
            with self.store.write() as conn:
                stock.take_back_unit(conn, iccid, back_to, order, actor="t")
            self.where[iccid] = back_to
            self.unavailable.discard(iccid)

    @rule(data=st.data(), warehouse=st.sampled_from(WAREHOUSES))
    def agent_returns(self, data, warehouse):
        cards = self._some(data, "AG-1")
        if not cards:
            return
        try:
            stock.return_units(self.store, cards, "AG-1", warehouse, actor="t", reason="returned")
        except InvalidValues:
            assert not set(cards) <= set(self._at("AG-1"))
            return
        self.where.update({i: warehouse for i in cards})

    @rule(data=st.data(), place=st.sampled_from(PLACES))
    def scrap(self, data, place):
        cards = self._some(data, place)
        if not cards:
            return
        try:
            stock.scrap(self.store, cards, place, actor="t", reason="faulty")
        except InvalidValues:
            assert not set(cards) <= set(self._at(place))
            return
        self.where.update({i: "SCRAP" for i in cards})
        self.unavailable.update(cards)

    @rule(data=st.data(), place=st.sampled_from(PLACES))
    def count(self, data, place):
        """Mostly what is there, a card or two short, and a card or two found from elsewhere."""
        expected = sorted(i for i, p in self.where.items() if p == place)
        others = sorted(i for i, p in self.where.items() if p != place)
        lost = data.draw(st.lists(st.sampled_from(expected), max_size=2, unique=True), label="lost") if expected else []
        found = data.draw(st.lists(st.sampled_from(others), max_size=2, unique=True), label="found") if others else []
        counted = [i for i in expected if i not in lost] + found
        result = stock.count(self.store, place, counted, actor="t")
        assert (result.missing, result.unexpected) == (sorted(lost), sorted(found))
        self.where.update({i: "MISSING" for i in lost})
        self.where.update({i: place for i in found})

    @invariant()
    def each_serial_is_in_exactly_one_place_and_on_hand_is_the_ledger_sum(self):
        if not hasattr(self, "store"):
            return
        with self.store.read() as conn:
            located = dict(conn.execute(select(sims.c.iccid, sims.c.location)).all())
            last = dict(conn.execute(select(stock_moves.c.iccid, stock_moves.c.to_location).where(
                stock_moves.c.id.in_(select(func.max(stock_moves.c.id)).group_by(stock_moves.c.iccid)))).all())
            moves = conn.execute(select(stock_moves.c.iccid, stock_moves.c.from_location,
                                        stock_moves.c.to_location)).all()
        assert located == last == self.where
        net: dict[tuple[str, str], int] = {}
        for iccid, source, target in moves:
            net[(iccid, source)] = net.get((iccid, source), 0) - 1
            net[(iccid, target)] = net.get((iccid, target), 0) + 1
        holding = {}
        for (iccid, place), amount in net.items():
            if amount and place != VENDOR:
                assert amount == 1 and iccid not in holding, (iccid, place, amount)
                holding[iccid] = place
        assert holding == self.where
        expected: dict[str, int] = {}
        for place in self.where.values():
            if place not in VIRTUAL:
                expected[place] = expected.get(place, 0) + 1
        assert {r["location"]: r["quantity"] for r in stock.on_hand(self.store)} == expected


StockLedger.TestCase.settings = settings(
    max_examples=50, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_every_serial_is_in_exactly_one_place_and_on_hand_is_the_ledger_sum = StockLedger.TestCase
