"""Random sequences of lifecycle moves on real numbers, checked against DOMAIN.md section 5
after every step: the stored state, the holder, and one audit record per change."""

from __future__ import annotations

from datetime import timedelta

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import func, select

from hkops import carriers, check
from hkops.audit import audit_log
from hkops.errors import HkopsError
from hkops.numbers import service
from hkops.numbers.tables import numbers
from hkops.store import migrate
from hkops.store.engine import Store
from hkops.timeutil import utc_now

NUMBERS = ["13800130001", "13800130002", "13800130003"]
HOLDERS = ["alice", "bob"]

# The lifecycle as DOMAIN.md section 5 draws it, written out independently of hkops.
MOVES = {
    "reserve": {"available": "reserved"},
    "allocate": {"available": "assigned", "reserved": "assigned"},
    "release": {"reserved": "available", "assigned": "available"},
    "activate": {"assigned": "active"},
    "suspend": {"active": "suspended"},
    "resume": {"suspended": "active"},
    "terminate": {"assigned": "quarantined", "active": "quarantined", "suspended": "quarantined"},
    "block": {"available": "blocked", "reserved": "blocked", "quarantined": "blocked"},
}


class NumberLifecycle(RuleBasedStateMachine):
    @initialize()
    def world(self):
        import tempfile

        self.folder = tempfile.TemporaryDirectory()
        self.store = Store(f"sqlite:///{self.folder.name}/lifecycle.db")
        migrate.upgrade(self.store)
        with self.store.write() as conn:
            carriers.configure(conn, ["China Mobile"], actor="setup")
        service.add_blocks(self.store, ["1380013"], actor="setup")
        self.expected = {n: {"state": "available", "holder": None, "last_holder": None, "before_block": None}
                         for n in NUMBERS}
        self.changes = {n: 0 for n in NUMBERS}

    def teardown(self):
        if hasattr(self, "store"):
            # hkops check finds the world consistent; numbers move here without cards, so the
            # check that numbers in service have a SIM and a subscriber is left out.
            report = check.run(self.store, skip=("numbers_in_service",))
            assert report.clean, report.violations[:5]
            self.store.dispose()
            self.folder.cleanup()

    def _attempt(self, action, number, holder=None):
        model = self.expected[number]
        if action == "unblock":
            allowed = model["state"] == "blocked"
            target = model["before_block"]
        else:
            target = MOVES[action].get(model["state"])
            allowed = target is not None
        if action == "allocate" and model["state"] == "reserved" and model["holder"] != holder:
            allowed = False
        kwargs = {"actor": "tester"}
        args = (number, holder) if action in ("reserve", "allocate") else (number,)
        if action == "reserve":
            kwargs["ttl"] = "1h"
        try:
            getattr(service, action)(self.store, *args, **kwargs)
        except HkopsError:
            assert not allowed, f"{action} {number} from {model['state']} was refused"
            return
        assert allowed, f"{action} {number} from {model['state']} was accepted"
        if action == "block":
            model["before_block"] = model["state"]
        if action in ("reserve", "allocate"):
            model["holder"] = holder
        if action == "terminate":
            model["last_holder"], model["holder"] = model["holder"], None
        if action == "release" or (action == "block" and model["state"] != "reserved"):
            model["holder"] = None
        model["state"] = target
        self.changes[number] += 1

    @rule(number=st.sampled_from(NUMBERS), holder=st.sampled_from(HOLDERS),
          action=st.sampled_from(["reserve", "allocate"]))
    def take(self, number, holder, action):
        self._attempt(action, number, holder)

    @rule(number=st.sampled_from(NUMBERS),
          action=st.sampled_from(["release", "activate", "suspend", "resume", "terminate", "block", "unblock"]))
    def move(self, number, action):
        self._attempt(action, number)

    @rule(number=st.sampled_from(NUMBERS), holder=st.sampled_from(HOLDERS))
    def reclaim(self, number, holder):
        model = self.expected[number]
        allowed = model["state"] == "quarantined" and model["last_holder"] == holder
        try:
            service.reclaim(self.store, number, holder, actor="tester")
        except HkopsError:
            assert not allowed
            return
        assert allowed
        model.update(state="assigned", holder=holder)
        self.changes[number] += 1

    @rule(days=st.sampled_from([1, 89, 91]))
    def time_passes_and_due_numbers_are_recycled(self, days):
        recycled = service.recycle_due(self.store, actor="tester", now=utc_now() + timedelta(days=days))
        for number in NUMBERS:
            model = self.expected[number]
            due = model["state"] == "quarantined" and days > 90
            assert (number in recycled) == due
            if due:
                model.update(state="available", last_holder=None)
                self.changes[number] += 1

    @invariant()
    def stored_numbers_match_the_lifecycle(self):
        if not hasattr(self, "store"):
            return
        with self.store.read() as conn:
            for number in NUMBERS:
                row = conn.execute(select(numbers).where(numbers.c.msisdn == int(number))).mappings().one()
                model = self.expected[number]
                assert row["state"] == model["state"]
                assert row["holder"] == model["holder"]
                audited = conn.execute(
                    select(func.count()).select_from(audit_log).where(audit_log.c.subject == number)
                ).scalar()
                assert audited == self.changes[number]


NumberLifecycle.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_number_lifecycle_follows_the_domain_state_machine = NumberLifecycle.TestCase
