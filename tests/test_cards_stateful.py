"""Random sequences of card lifecycle moves against an in-process HLR that sometimes fails,
checked after every step: one live SIM per number, no number bound to two subscribers,
every move audited, and after reconciliation the HLR registry equals inventory."""

from __future__ import annotations

import os
import tempfile

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import func, select

from hkops import carriers, check
from hkops.audit import audit_log
from hkops.cards import service as cards
from hkops.cards.batches import import_sim_file
from hkops.cards.tables import sims
from hkops.errors import Conflict, IllegalTransition, NotFound
from hkops.network import InProcessTransport, ProvisioningClient, Simulator, rmv_sub
from hkops.network.protocol import format_command
from hkops.network.simulator import Faults
from hkops.numbers import service as numbers
from hkops.security.crypto import load_keyring
from hkops.store import migrate
from hkops.store.engine import Store
from hkops.subscribers import service as subscribers
from hkops.subscribers.tables import subscriber_numbers
from test_cards_hlr_refusals import consistent
from test_cards_stock import ledger_agrees
from test_subscribers import make_rid
from test_vendor_files import card_csv, make_cards

SIMS = 6
NUMBERS = ["13800130001", "13800130002", "13800130003"]
PEOPLE = [make_rid(seq="101"), make_rid(seq="103")]


class CardLifecycle(RuleBasedStateMachine):
    @initialize()
    def world(self):
        self.folder = tempfile.TemporaryDirectory()
        self.store = Store(f"sqlite:///{self.folder.name}/cards.db")
        migrate.upgrade(self.store)
        self.saved_key_file = os.environ.get("HKOPS_SECRET_KEY_FILE")
        os.environ["HKOPS_SECRET_KEY_FILE"] = f"{self.folder.name}/secret.key"
        self.keyring = load_keyring()
        with self.store.write() as conn:
            carriers.configure(conn, ["China Mobile"], actor="setup")
        numbers.add_blocks(self.store, ["1380013"], actor="setup")
        stock = make_cards(SIMS)
        path = f"{self.folder.name}/cards.csv"
        open(path, "w").write(card_csv(stock))
        import_sim_file(self.store, path, carrier="China Mobile", actor="setup", keyring=self.keyring,
                        location="WH-BJ")
        self.iccids = [c["iccid"] for c in stock]
        self.people = [subscribers.register(self.store, name=f"P{n}", resident_id=rid, contact="13900000000",
                                            actor="setup", keyring=self.keyring).id for n, rid in enumerate(PEOPLE)]
        self.simulator = Simulator(seed=3)
        self.client = ProvisioningClient(InProcessTransport(self.simulator), retries=1, backoff=0, timeout=1)
        self.moves = 0

    def teardown(self):
        if hasattr(self, "store"):
            self.check_hlr_equals_inventory()
            report = check.run(self.store, network=self.client)  # hkops check: the whole world agrees
            assert report.clean, report.violations[:5]
            self.store.dispose()
            self.folder.cleanup()
            if self.saved_key_file is None:
                os.environ.pop("HKOPS_SECRET_KEY_FILE", None)
            else:
                os.environ["HKOPS_SECRET_KEY_FILE"] = self.saved_key_file

    def _try(self, call, *args, **kwargs):
        try:
            call(self.store, *args, actor="t", **kwargs)
            self.moves += 1
        except (Conflict, IllegalTransition, NotFound):
            pass  # refused moves are the state machine doing its job

    @rule(faulty=st.booleans())
    def the_hlr_gets_better_or_worse(self, faulty):
        self.simulator.faults = Faults(error_rate=0.5) if faulty else Faults()

    @rule(sim=st.integers(0, SIMS - 1), number=st.sampled_from(NUMBERS), person=st.integers(0, 1))
    def pair(self, sim, number, person):
        self._try(cards.pair, self.iccids[sim], number, self.people[person])

    def _pick(self, data, states: tuple[str, ...]) -> str:
        """Mostly a card in one of ``states`` (so moves often succeed), sometimes any card."""
        with self.store.read() as conn:
            fitting = list(conn.execute(select(sims.c.iccid).where(sims.c.state.in_(states))).scalars())
        if fitting and data.draw(st.integers(0, 4), label="fitting") > 0:
            return data.draw(st.sampled_from(sorted(fitting)), label="card")
        return data.draw(st.sampled_from(self.iccids), label="card")

    @rule(data=st.data(), number=st.sampled_from(NUMBERS), person=st.integers(0, 1))
    def sell_a_card(self, data, number, person):
        iccid = self._pick(data, ("in_stock",))
        self._try(cards.pair, iccid, number, self.people[person])
        self._try(cards.activate, iccid, network=self.client)

    @rule(data=st.data(), move=st.sampled_from(["activate", "resume", "report_loss", "lift_loss", "terminate"]))
    def move(self, data, move):
        states = {"activate": ("paired",), "resume": ("suspended",), "report_loss": ("active", "suspended"),
                  "lift_loss": ("lost",), "terminate": ("active", "suspended", "lost", "paired")}[move]
        self._try(getattr(cards, move), self._pick(data, states), network=self.client)

    @rule(data=st.data(), why=st.sampled_from(["arrears", "fraud"]))
    def suspend(self, data, why):
        self._try(cards.suspend, self._pick(data, ("active",)), why, network=self.client)

    @rule(data=st.data(), person=st.integers(0, 1))
    def replace(self, data, person):
        old = self._pick(data, ("active", "suspended", "lost"))
        new = self._pick(data, ("in_stock",))
        self._try(cards.replace, old, new, PEOPLE[person], network=self.client, keyring=self.keyring)

    @rule(data=st.data())
    def the_hlr_loses_a_subscriber(self, data):
        """The HLR forgets a live card's subscriber: its next moves are refused for good (3001)."""
        with self.store.read() as conn:
            live = sorted(str(m) for m in conn.execute(select(sims.c.msisdn).where(
                sims.c.state.in_(["active", "suspended", "lost"]))).scalars())
        if live:
            forgotten = data.draw(st.sampled_from(live), label="forgotten")
            self.simulator.registry.execute(format_command(rmv_sub(forgotten)))  # past the injected faults
            self.simulator.commit()

    @rule(data=st.data(), again=st.booleans())
    def settle_a_refused_move(self, data, again):
        with self.store.read() as conn:
            failed = sorted(conn.execute(select(sims.c.iccid).where(sims.c.network_sync == "failed")).scalars())
        if not failed:
            return
        iccid = data.draw(st.sampled_from(failed), label="refused")
        if again:
            self._try(cards.retry, iccid, network=self.client, keyring=self.keyring)
        else:
            self._try(cards.abandon, iccid, reason="operator gave it up")

    @rule()
    def sync(self):
        cards.sync(self.store, self.client, keyring=self.keyring)

    @invariant()
    def one_live_sim_per_number_and_one_subscriber_per_number(self):
        if not hasattr(self, "store"):
            return
        with self.store.read() as conn:
            live = conn.execute(select(sims.c.msisdn, func.count()).where(
                sims.c.state.in_(["paired", "active", "suspended", "lost"]), sims.c.msisdn.is_not(None))
                .group_by(sims.c.msisdn)).all()
            bound = conn.execute(select(subscriber_numbers.c.msisdn, func.count()).where(
                subscriber_numbers.c.until.is_(None)).group_by(subscriber_numbers.c.msisdn)).all()
            audited = conn.execute(select(func.count()).select_from(audit_log).where(
                audit_log.c.entity == "sim", audit_log.c.actor == "t")).scalar()
        assert all(count == 1 for _, count in live), live
        assert all(count == 1 for _, count in bound), bound
        assert audited >= self.moves

    @invariant()
    def on_hand_equals_the_ledger(self):
        if not hasattr(self, "store"):
            return
        ledger_agrees(self.store)

    @invariant()
    def no_card_waits_without_a_command_and_numbers_agree_with_cards(self):
        if not hasattr(self, "store"):
            return
        with self.store.read() as conn:
            assert cards._bookkeeping(conn)[0] == []
        consistent(self.store)

    def check_hlr_equals_inventory(self):
        self.simulator.faults = Faults()
        for row in cards.pending(self.store):
            if row["state"] == "failed":
                cards.abandon(self.store, row["iccid"], actor="t", reason="settled before reconciling")
        cards.reconcile(self.store, self.client, fix=True, actor="t", keyring=self.keyring)
        assert cards.reconcile(self.store, self.client, actor="t", keyring=self.keyring) == []
        assert cards.pending(self.store) == []

    @rule()
    def reconciliation_leaves_no_difference(self):
        self.check_hlr_equals_inventory()


CardLifecycle.TestCase.settings = settings(
    max_examples=30, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_card_lifecycle_keeps_inventory_numbers_and_hlr_consistent = CardLifecycle.TestCase
