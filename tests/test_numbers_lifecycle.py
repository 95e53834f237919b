"""The number lifecycle of DOMAIN.md section 5: reserve, allocate, release, block,
terminate into quarantine, reclaim, recycle; illegal moves are refused and change nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hkops import settings as hk_settings
from hkops.errors import Conflict, HkopsError, IllegalTransition, InvalidValue, NotFound
from hkops.numbers import service
from hkops.numbers.service import Move
from hkops.timeutil import local
from strategies import actions, audit_count, clock, history, snapshot  # noqa: F401

N = "13800130127"
M = "18607550127"


def state_of(db, msisdn: str) -> tuple:
    number = service.get_number(db, msisdn)
    return number.state.value, number.holder


def refusal(db, error, call, *args, match: str | None = None, **kwargs) -> str:
    """Run a call that must be refused; return the reason."""
    with pytest.raises(error, match=match) as caught:
        call(db, *args, **kwargs)
    return str(caught.value)


def refused(db, error, call, *args, match: str | None = None, **kwargs) -> str:
    """Run a call that must be refused; check it changed nothing; return the reason."""
    before, records = snapshot(db), audit_count(db)
    reason = refusal(db, error, call, *args, match=match, **kwargs)
    assert snapshot(db) == before
    assert audit_count(db) == records
    return reason


def put_in_state(db, msisdn: str, state: str, holder: str = "C1") -> None:
    """Walk a number from available to ``state`` through the lifecycle."""
    paths = {
        "available": [],
        "reserved": [("reserve", holder)],
        "assigned": [("allocate", holder)],
        "active": [("allocate", holder), ("activate",)],
        "suspended": [("allocate", holder), ("activate",), ("suspend",)],
        "quarantined": [("allocate", holder), ("terminate",)],
        "blocked": [("block",)],
    }
    for action, *args in paths[state]:
        getattr(service, action)(db, msisdn, *args, actor="setup")
    assert service.get_number(db, msisdn).state.value == state


# --------------------------------------------------------------------- reservation


def test_reserving_holds_a_number_for_its_holder_until_the_ttl_runs_out(world, clock):
    move = service.reserve(world, N, "C1", actor="ana", ttl="2h", reason="customer is deciding")
    assert move == Move(N, "reserve", "available", "reserved", "C1")
    number = service.get_number(world, N)
    assert (number.state, number.holder, number.reserved_until) == ("reserved", "C1", clock.now + timedelta(hours=2))
    record = history(world, N)[-1]
    assert (record["actor"], record["action"], record["from_state"], record["to_state"], record["reason"]) == (
        "ana", "reserve", "available", "reserved", "customer is deciding")
    assert record["details"] == {"holder": "C1"}


def test_a_reservation_without_a_ttl_lasts_the_configured_reservation_ttl(world, clock):
    for setting, span in [(None, timedelta(minutes=30)), ("45m", timedelta(minutes=45)), ("2d", timedelta(days=2))]:
        if setting:
            with world.write() as conn:
                hk_settings.set_value(conn, "reservation_ttl", setting)
        service.reserve(world, N, "C1", actor="ana")
        assert service.get_number(world, N).reserved_until == clock.now + span
        service.release(world, N, actor="ana")


def test_reserving_a_reserved_number_is_refused(world, clock):
    service.reserve(world, N, "C1", actor="ana")
    before = snapshot(world)
    reason = refusal(world, IllegalTransition, service.reserve, N, "C1", actor="bo")
    assert f"cannot reserve {N}: it is reserved (held by C1)" in reason
    reason = refusal(world, Conflict, service.reserve, N, "C2", actor="bo")
    assert f"cannot reserve {N} for C2: it is reserved for C1 until" in reason
    assert snapshot(world) == before


def test_a_reservation_with_a_bad_ttl_is_refused(world, clock):
    before = snapshot(world)
    for ttl in ("0m", "soon", "-5m", "5 minutes"):
        reason = refusal(world, InvalidValue, service.reserve, N, "C1", actor="ana", ttl=ttl)
        assert reason.startswith(f"ttl {ttl!r}: must be a positive duration such as 45s, 30m")
    for ttl in ("3651d", "99999999w"):
        assert refusal(world, InvalidValue, service.reserve, N, "C1", actor="ana", ttl=ttl) == (
            f"ttl {ttl!r}: must be at most 3650 days")
    assert snapshot(world) == before


def test_an_expired_reservation_does_not_stop_another_holder_from_reserving_or_allocating(world, clock):
    for msisdn in (N, M):
        service.reserve(world, msisdn, "C1", actor="ana", ttl="30m")
    clock.advance(minutes=30)
    move = service.reserve(world, N, "C2", actor="bo", ttl="1h")
    assert (move.from_state, move.to_state, move.holder) == ("available", "reserved", "C2")
    assert state_of(world, N) == ("reserved", "C2")
    expiry, reservation = history(world, N)[-2:]
    assert (expiry["action"], expiry["from_state"], expiry["to_state"]) == ("expire", "reserved", "available")
    assert "C1" in expiry["reason"] and expiry["at"] == clock.now
    assert (reservation["action"], reservation["details"]) == ("reserve", {"holder": "C2"})
    service.allocate(world, M, "C3", actor="bo")
    assert state_of(world, M) == ("assigned", "C3")
    assert actions(world, M)[-2:] == [("expire", "reserved", "available"), ("allocate", "available", "assigned")]


def test_a_reserved_number_can_be_allocated_by_its_holder_only(world, clock):
    service.reserve(world, N, "C1", actor="ana", ttl="30m")
    clock.advance(minutes=29)
    reason = refused(world, Conflict, service.allocate, N, "C2", actor="bo")
    assert f"cannot allocate {N} to C2: it is reserved for C1 until {local(clock.now + timedelta(minutes=1))}" in reason
    move = service.allocate(world, N, "C1", actor="ana")
    assert (move.from_state, move.to_state) == ("reserved", "assigned")
    number = service.get_number(world, N)
    assert (number.state, number.holder, number.reserved_until) == ("assigned", "C1", None)


def test_a_holder_whose_reservation_expired_gets_the_number_only_if_nobody_else_reserved_it(world, clock):
    for msisdn in (N, M):
        service.reserve(world, msisdn, "C1", actor="ana", ttl="30m")
    clock.advance(hours=1)
    service.reserve(world, N, "C2", actor="bo", ttl="30m")
    reason = refused(world, Conflict, service.allocate, N, "C1", actor="ana")
    assert "it is reserved for C2" in reason
    move = service.allocate(world, M, "C1", actor="ana")
    assert (move.from_state, move.holder) == ("available", "C1")


def test_expiring_reservations_frees_only_the_lapsed_ones_and_audits_each(world, clock):
    service.reserve(world, N, "C1", actor="ana", ttl="30m")
    service.reserve(world, M, "C2", actor="ana", ttl="2h")
    clock.advance(minutes=45)
    assert service.expire_reservations(world, actor="system") == [N]
    number = service.get_number(world, N)
    assert (number.state, number.holder, number.reserved_until) == ("available", None, None)
    assert state_of(world, M) == ("reserved", "C2")
    record = history(world, N)[-1]
    assert (record["actor"], record["action"], record["from_state"], record["to_state"]) == (
        "system", "expire", "reserved", "available")
    assert service.expire_reservations(world, actor="system") == []


# --------------------------------------------------------------------- allocation


def test_allocating_one_available_number_assigns_it_to_the_holder(world, clock):
    move = service.allocate(world, N, "C1", actor="ana", reason="walk-in sale")
    assert move == Move(N, "allocate", "available", "assigned", "C1")
    assert state_of(world, N) == ("assigned", "C1")
    assert history(world, N)[-1]["reason"] == "walk-in sale"


def test_allocating_a_batch_by_region_and_grade_takes_only_matching_numbers(world, clock):
    taken = service.allocate_batch(world, 12, "AG-BJ-01", actor="ana", region="北京", grade="AABB, abab")
    assert len(set(taken)) == 12
    for msisdn in taken:
        number = service.get_number(world, msisdn)
        assert msisdn[:7] in ("1380013", "1891010")
        assert (number.state, number.holder) == ("assigned", "AG-BJ-01")
        assert number.grade in ("AABB", "ABAB")
        assert actions(world, msisdn) == [("allocate", "available", "assigned")]
    shenzhen = service.allocate_batch(world, 20, "AG-GD-01", actor="ana", region="Shenzhen", carrier="china unicom")
    assert len(shenzhen) == 20 and all(m.startswith("1860755") for m in shenzhen)


def test_a_batch_that_cannot_be_filled_allocates_nothing(world, clock):
    reason = refused(world, Conflict, service.allocate_batch, 3, "AG-BJ-01", actor="ana", region="Beijing",
                     grade="AAAAA")
    assert "only 2 available numbers match region Beijing, grade AAAAA; 3 were asked for, none allocated" in reason


def test_a_batch_skips_active_reservations_but_takes_expired_ones(world, clock):
    service.reserve(world, "13800133333", "C1", actor="ana", ttl="30m")
    refused(world, Conflict, service.allocate_batch, 2, "AG", actor="ana", region="北京", grade="AAAAA")
    clock.advance(minutes=30)
    taken = service.allocate_batch(world, 2, "AG", actor="ana", region="北京", grade="AAAAA")
    assert sorted(taken) == ["13800133333", "18910100000"]
    expiry, allocation = history(world, "13800133333")[-2:]
    assert (expiry["actor"], expiry["action"], expiry["from_state"]) == ("system", "expire", "reserved")
    assert (allocation["actor"], allocation["action"], allocation["from_state"]) == ("ana", "allocate", "available")


BAD_BATCHES = [
    ({"count": 0}, InvalidValue, "count 0: must be a whole number from 1"),
    ({"count": -3}, InvalidValue, "count -3"),
    ({"count": "5"}, InvalidValue, "count '5'"),
    ({"holder": " "}, InvalidValue, "holder"),
    ({"grade": "GOLD"}, InvalidValue, "grade 'GOLD': unknown grade; known: AAAAA, AAAA, ABCDE"),
    ({"region": "火星"}, InvalidValue, "region '火星': matches no block"),
    ({"carrier": "Vodafone"}, InvalidValue, "carrier 'Vodafone': unknown carrier"),
    ({"carrier": "China Broadnet"}, Conflict, "only 0 available numbers match carrier China Broadnet"),
]


def test_a_batch_with_bad_filters_is_refused_naming_the_field(world, clock):
    before = snapshot(world)
    for kwargs, error, fragment in BAD_BATCHES:
        arguments = {"count": 5, "holder": "AG"} | kwargs
        count, holder = arguments.pop("count"), arguments.pop("holder")
        reason = refusal(world, error, service.allocate_batch, count, holder, actor="ana", **arguments)
        assert fragment in reason
    assert snapshot(world) == before


# --------------------------------------------------------------------- release


def test_releasing_returns_a_held_number_to_the_pool(world, clock):
    for msisdn, state in [(N, "reserved"), (M, "assigned")]:
        put_in_state(world, msisdn, state)
        move = service.release(world, msisdn, actor="ana", reason="customer walked away")
        assert (move.from_state, move.to_state, move.holder) == (state, "available", None)
        number = service.get_number(world, msisdn)
        assert (number.state, number.holder, number.reserved_until) == ("available", None, None)
        assert history(world, msisdn)[-1]["reason"] == "customer walked away"
    reason = refused(world, IllegalTransition, service.release, N, actor="ana")
    assert f"cannot release {N}: it is available; release needs a number that is assigned, reserved" in reason


# --------------------------------------------------------------------- block and unblock


def test_unblocking_returns_a_number_to_the_state_it_was_blocked_from(world, clock):
    service.add_blocks(world, ["1380014"], actor="ana", planned=True)
    for msisdn, state in [(N, "available"), (M, "reserved"), ("13800130137", "quarantined"), ("13800140001", "planned")]:
        if state != "planned":
            put_in_state(world, msisdn, state)
        before = service.get_number(world, msisdn)
        service.block(world, msisdn, actor="regulator", reason="fraud report")
        blocked = service.get_number(world, msisdn)
        assert (blocked.state, blocked.blocked_from) == ("blocked", state)
        for action in (service.reserve, service.allocate):
            refusal(world, IllegalTransition, action, msisdn, "C9", actor="ana", match="it is blocked")
        assert service.get_number(world, msisdn) == blocked
        move = service.unblock(world, msisdn, actor="regulator", reason="cleared")
        assert (move.from_state, move.to_state) == ("blocked", state)
        after = service.get_number(world, msisdn)
        assert (after.state, after.holder, after.reserved_until, after.quarantine_until, after.last_holder) == (
            before.state, before.holder, before.reserved_until, before.quarantine_until, before.last_holder)
        assert after.blocked_from is None
        assert actions(world, msisdn)[-2:] == [("block", state, "blocked"), ("unblock", "blocked", state)]
    refused(world, IllegalTransition, service.unblock, N, actor="regulator", match="unblock needs a number that is blocked")


def test_blocking_a_number_in_use_or_already_blocked_is_refused(world, clock):
    for msisdn, state in [(N, "assigned"), (M, "active"), ("13800130137", "suspended"), ("13800130147", "blocked")]:
        put_in_state(world, msisdn, state)
        reason = refused(world, IllegalTransition, service.block, msisdn, actor="regulator")
        assert f"cannot block {msisdn}: it is {state}" in reason
        assert "block needs a number that is available, planned, quarantined, reserved" in reason


# --------------------------------------------------------------------- termination, quarantine, reclaim, recycle


def test_terminating_puts_the_number_in_quarantine_for_the_default_ninety_days(world, clock):
    for msisdn, state in [(N, "assigned"), (M, "active"), ("13800130137", "suspended")]:
        put_in_state(world, msisdn, state, holder=f"C-{state}")
        move = service.terminate(world, msisdn, actor="ana", reason="account closed")
        assert (move.from_state, move.to_state, move.holder) == (state, "quarantined", None)
        number = service.get_number(world, msisdn)
        assert (number.state, number.holder, number.last_holder) == ("quarantined", None, f"C-{state}")
        assert number.quarantine_until == clock.now + timedelta(days=90)
    refused(world, IllegalTransition, service.terminate, "13800130147", actor="ana",
            match="terminate needs a number that is active, assigned, suspended")


def test_the_cool_off_follows_the_quarantine_days_setting(world, clock):
    with world.write() as conn:
        hk_settings.set_value(conn, "quarantine_days", "45")
    put_in_state(world, N, "quarantined")
    assert service.get_number(world, N).quarantine_until == clock.now + timedelta(days=45)


def test_a_bad_quarantine_days_setting_is_refused(db):
    before = snapshot(db)
    for value in ("-1", "ninety", "3651", "4.5", ""):
        with pytest.raises(InvalidValue, match=f"quarantine_days '{value}': must be a whole number of days"):
            with db.write() as conn:
                hk_settings.set_value(conn, "quarantine_days", value)
    assert snapshot(db) == before


def test_only_the_last_holder_can_reclaim_a_number_during_quarantine(world, clock):
    put_in_state(world, N, "quarantined", holder="C1")
    clock.advance(days=10)
    reason = refused(world, Conflict, service.reclaim, N, "C2", actor="ana")
    assert f"cannot reclaim {N} for C2: only its last holder (C1) may reclaim it" in reason
    move = service.reclaim(world, N, "C1", actor="ana", reason="changed their mind")
    assert (move.from_state, move.to_state, move.holder) == ("quarantined", "assigned", "C1")
    number = service.get_number(world, N)
    assert (number.state, number.holder, number.quarantine_until) == ("assigned", "C1", None)


def test_recycling_is_refused_before_the_cool_off_ends_and_returns_the_number_to_the_pool_after(world, clock):
    put_in_state(world, N, "quarantined")
    ends = clock.now + timedelta(days=90)
    clock.advance(days=89, hours=23)
    reason = refused(world, Conflict, service.recycle, N, actor="ana")
    assert f"cannot recycle {N}: its cool-off ends at {local(ends)} (Asia/Shanghai)" in reason
    clock.advance(hours=1)
    move = service.recycle(world, N, actor="ana")
    assert (move.from_state, move.to_state) == ("quarantined", "available")
    number = service.get_number(world, N)
    assert (number.state, number.last_holder, number.quarantine_until) == ("available", None, None)
    service.reserve(world, N, "C7", actor="ana")


def test_recycle_due_recycles_only_numbers_whose_cool_off_has_ended(world, clock):
    start = clock.now
    put_in_state(world, N, "quarantined")
    clock.advance(days=30)
    put_in_state(world, M, "quarantined")
    assert service.recycle_due(world, actor="ana", now=start + timedelta(days=89)) == []
    assert service.recycle_due(world, actor="ana", now=start + timedelta(days=100)) == [N]
    assert state_of(world, N) == ("available", None) and state_of(world, M) == ("quarantined", None)
    record = history(world, N)[-1]
    assert (record["action"], record["from_state"], record["to_state"], record["reason"]) == (
        "recycle", "quarantined", "available", "cool-off ended")
    assert service.recycle_due(world, actor="ana", now=start + timedelta(days=120)) == [M]


# --------------------------------------------------------------------- planned blocks and the whole path


def test_opening_a_planned_block_makes_its_numbers_available(world, clock):
    service.add_blocks(world, ["1380014"], actor="ana", planned=True)
    refused(world, IllegalTransition, service.reserve, "13800140127", "C1", actor="ana", match="it is planned")
    assert service.open_planned(world, "1380014", actor="ana", reason="launch") == 10_000
    assert state_of(world, "13800140127") == ("available", None)
    record = history(world, "1380014")[-1]
    assert (record["action"], record["from_state"], record["to_state"], record["details"]) == (
        "open", "planned", "available", {"count": 10_000})
    refused(world, Conflict, service.open_planned, "1380014", actor="ana", match="no planned numbers")
    refused(world, InvalidValue, service.open_planned, "13800", actor="ana", match="block '13800'")


def test_a_number_walks_the_whole_lifecycle_and_every_step_is_audited(world, clock):
    steps = [
        (service.reserve, ("C1",), "reserved"), (service.allocate, ("C1",), "assigned"), (service.activate, (), "active"),
        (service.suspend, (), "suspended"), (service.resume, (), "active"), (service.terminate, (), "quarantined"),
    ]
    for call, args, _ in steps:
        call(world, N, *args, actor="ana")
    clock.advance(days=90)
    service.recycle(world, N, actor="ana")
    states = ["available"] + [s for *_, s in steps] + ["available"]
    names = ["reserve", "allocate", "activate", "suspend", "resume", "terminate", "recycle"]
    assert actions(world, N) == list(zip(names, states, states[1:]))


def test_a_move_on_a_malformed_number_or_one_outside_the_pool_is_refused_naming_it(world):
    before = snapshot(world)
    for msisdn in ("1380013012", "138001301270", "1380013012a", "", "+1 202 555 0100"):
        reason = refusal(world, InvalidValue, service.reserve, msisdn, "C1", actor="ana")
        assert reason.startswith(f"msisdn {msisdn!r}")
    assert snapshot(world) == before
    refused(world, NotFound, service.allocate, "13900001234", "C1", actor="ana", match="13900001234 is not in the pool")


# --------------------------------------------------------------------- every move against a reference


ALLOWED = {
    "reserve": {"available"}, "allocate": {"available", "reserved"}, "release": {"reserved", "assigned"},
    "activate": {"assigned"}, "suspend": {"active"}, "resume": {"suspended"},
    "terminate": {"assigned", "active", "suspended"}, "reclaim": {"quarantined"}, "recycle": {"quarantined"},
    "block": {"planned", "available", "reserved", "quarantined"}, "unblock": {"blocked"},
}
WITH_HOLDER = {"reserve", "allocate", "reclaim"}
TTL = timedelta(minutes=30)
COOL_OFF = timedelta(days=90)


class Reference:
    """What DOMAIN.md section 5 says a number's record should be, kept by hand."""

    def __init__(self):
        self.state, self.holder, self.until, self.last, self.cool_off_ends, self.blocked_from = (
            "available", None, None, None, None, None)

    def effective(self, now):
        if self.state == "reserved" and self.until <= now:
            return "available", None
        return self.state, self.holder

    def apply(self, action: str, holder: str, now) -> str | None:
        """The new state, or None when the move must be refused."""
        state, current_holder = self.effective(now)
        if state not in ALLOWED[action]:
            return None
        if action == "allocate" and state == "reserved" and holder != current_holder:
            return None
        if action == "reclaim" and holder != self.last:
            return None
        if action == "recycle" and now < self.cool_off_ends:
            return None
        if action == "reserve":
            self.state, self.holder, self.until = "reserved", holder, now + TTL
        elif action in ("allocate", "reclaim"):
            self.state, self.holder, self.until, self.cool_off_ends = "assigned", holder, None, None
        elif action == "release":
            self.state, self.holder, self.until = "available", None, None
        elif action in ("activate", "resume"):
            self.state = "active"
        elif action == "suspend":
            self.state = "suspended"
        elif action == "terminate":
            self.state, self.last, self.holder, self.cool_off_ends = "quarantined", current_holder, None, now + COOL_OFF
        elif action == "recycle":
            self.state, self.last, self.cool_off_ends = "available", None, None
        elif action == "block":
            self.blocked_from, self.state, self.holder = state, "blocked", current_holder
        elif action == "unblock":
            self.state, self.blocked_from = self.blocked_from, None
        return self.state


_numbers = iter(range(13_800_130_000, 13_800_140_000))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(sorted(ALLOWED)), st.sampled_from(["C1", "C2"]),
                          st.sampled_from([timedelta(0), timedelta(minutes=31), timedelta(days=91)])),
                min_size=1, max_size=14))
def test_every_move_agrees_with_the_lifecycle_of_domain_section_5(world, clock, steps):
    msisdn = str(next(_numbers))
    reference = Reference()
    for action, holder, wait in steps:
        clock.advance(seconds=wait.total_seconds())
        args = (holder,) if action in WITH_HOLDER else ()
        records = audit_count(world)
        expected = reference.apply(action, holder, clock.now)
        if expected is None:
            before = service.get_number(world, msisdn)
            with pytest.raises(HkopsError):
                getattr(service, action)(world, msisdn, *args, actor="prop")
            assert service.get_number(world, msisdn) == before
            assert audit_count(world) == records
            continue
        move = getattr(service, action)(world, msisdn, *args, actor="prop")
        number = service.get_number(world, msisdn)
        state, current_holder = reference.effective(clock.now)
        assert (move.to_state, number.effective_state(clock.now).value) == (expected, state)
        if state in ("reserved", "assigned", "active", "suspended"):
            assert number.holder == current_holder
        if state == "reserved":
            assert number.reserved_until == reference.until
        if state == "quarantined":
            assert (number.last_holder, number.quarantine_until) == (reference.last, reference.cool_off_ends)
        last = history(world, msisdn)[-1]
        assert (last["action"], last["to_state"], last["actor"], last["at"]) == (action, expected, "prop", clock.now)
