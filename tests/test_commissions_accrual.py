"""Commission accrual (issue 10): incremental from a watermark, safe to rerun and to run from two
processes at once, and in-network months with a minimum spend or usage read from the usage store."""

from __future__ import annotations

import multiprocessing
from datetime import date, datetime, time, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from distribution_world import advance, distribution, place_order  # noqa: F401  (distribution: fixture)
from hkops.cards import service as card_service
from hkops.commissions import service as commissions
from hkops.commissions.tables import commission_accrual, commission_entries
from hkops.errors import InvalidFile
from hkops.network.usage import RECORD_SCHEMA
from hkops.orders import service as orders
from test_cards_lifecycle import hlr  # noqa: F401  (fixture)
from test_commissions import NOW, SCHEME, _at, _counts, _scheme, _sold_by_a3, clock  # noqa: F401  (clock: fixture)

#: Months 2 and 3 pay only with at least ¥30 of charges, 500 MiB of data and 20 outgoing minutes.
MINIMUMS = SCHEME.replace("months = [2, 3]", "months = [2, 3]\nmin_spend_fen = 3000\nmin_data_mb = 500\n"
                          "min_voice_min = 20")


def _usage(folder, day: date, used: dict[int, tuple[int, int, int]]):
    """A usage store at ``folder`` with, on ``day``, per msisdn one data record and one outgoing call:
    (charge in fen, data MiB, voice minutes)."""
    start = datetime.combine(day, time(2), tzinfo=timezone.utc)  # 10:00 in Asia/Shanghai
    made = [(msisdn, kind, seconds, mib, fen) for msisdn, (fen, mib, minutes) in used.items()
            for kind, seconds, mib in (("data", 0, mib), ("voice_mo", minutes * 60, 0))]
    rows = [{"record_id": n, "type": kind, "imsi": f"4600{msisdn}", "msisdn": msisdn, "start": start,
             "duration_s": seconds, "bytes_up": 0, "bytes_down": mib << 20, "cell_id": 1, "area": "北京市",
             "region": "北京市", "rat": "4G", "charge_fen": fen // 2, "refused": False, "refusal": None}
            for n, (msisdn, kind, seconds, mib, fen) in enumerate(made)]
    table = pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)
    target = folder / "records" / f"day={day.isoformat()}"
    target.mkdir(parents=True)
    pq.write_table(table, target / "part-0.parquet")
    return folder


def _in_network(db, number):
    return sorted((e["month"], e["agent"], e["amount_fen"]) for e in commissions.list_entries(db, order=number)
                  if e["event"] == "in_network")


def test_an_in_network_month_pays_only_when_its_minimums_were_used(distribution, hlr, clock, tmp_path):
    """Two orders activated on 10 December; in January (month 2) one number used ¥40, 600 MiB and 25
    minutes, the other ¥40, 600 MiB but 10 minutes: only the first earns month 2."""
    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path, MINIMUMS), actor="finance", now=NOW)
    meets = _sold_by_a3(db, 21, hlr[1], clock)
    misses = _sold_by_a3(db, 22, hlr[1], clock)
    msisdn = {n: int(orders.get_order(db, n).msisdn) for n in (meets, misses)}
    store = _usage(tmp_path / "usage", date(2027, 1, 15), {msisdn[meets]: (4_000, 600, 25),
                                                          msisdn[misses]: (4_000, 600, 10)})
    result = commissions.accrue(db, as_of=date(2027, 2, 1), actor="finance", now=NOW, usage_dir=store)
    assert result["accrued"] == 2 * 5 + 3
    assert _in_network(db, meets) == [(2, "A1", 100), (2, "A2", 200), (2, "A3", 800)]
    assert _in_network(db, misses) == []
    # February (month 3) has no usage at all: nothing, for either.
    assert commissions.accrue(db, as_of=date(2027, 3, 1), actor="finance", now=NOW, usage_dir=store)["accrued"] == 0


def test_a_missing_usage_store_is_refused_with_nothing_changed(distribution, hlr, clock, tmp_path):
    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path, MINIMUMS), actor="finance", now=NOW)
    _sold_by_a3(db, 23, hlr[1], clock)
    before = _counts(db)
    with pytest.raises(Exception, match="usage store"):
        commissions.accrue(db, as_of=date(2027, 2, 1), actor="finance", now=NOW, usage_dir=tmp_path / "none")
    assert _counts(db) == before


@pytest.mark.parametrize("change, field, reason", [
    (("min_data_mb = 500", "min_data_mb = 500.5"), "min_data_mb", "float"),
    (("min_spend_fen = 3000", "min_spend_fen = 30.0"), "min_spend_fen", "float"),
    (("min_voice_min = 20", "min_voice_min = -1"), "min_voice_min", "negative"),
    (("min_voice_min = 20", "min_voice_min = \"20\""), "min_voice_min", "integer"),
    (("min_voice_min = 20", "min_usage = 20"), "min_usage", "unknown field"),
    (("amounts = [3000, 1000, 500]", "amounts = [3000, 1000, 500]\nmin_spend_fen = 100"), "min_spend_fen",
     "only for event in_network"),
])
def test_bad_minimums_are_refused_naming_field_value_and_line(distribution, tmp_path, change, field, reason):
    db = distribution.db
    text = MINIMUMS.replace(*change)
    before = _counts(db)
    with pytest.raises(InvalidFile) as error:
        commissions.add_scheme(db, _scheme(tmp_path, text), actor="finance", now=NOW)
    problem = error.value.problems[0]
    assert problem.field == field and reason in str(problem)
    assert text.splitlines()[problem.line - 1].startswith(field)
    assert _counts(db) == before


def _mark(db):
    with db.read() as conn:
        return conn.execute(select(commission_accrual)).mappings().one()


def _head(db):
    from hkops.audit import audit_log

    with db.read() as conn:
        return conn.execute(select(func.max(audit_log.c.id))).scalar()


def _sold(db, n, network, clock, day):
    """An order sold by A3, activated and topped up ¥50 on ``day``."""
    order = advance(db, place_order(db, n, channel="A3", client_order_id=f"A3-{n}").number, "delivered")
    clock.now = _at(day)
    orders.activate_order(db, order.number, actor="desk", network=network)
    orders.record_first_topup(db, order.number, 5_000, actor="desk")
    return order.number


def test_accrual_reads_only_what_is_new_and_never_loses_an_event_beyond_until(distribution, hlr, clock, tmp_path):
    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path), actor="finance", now=NOW)
    early = _sold(db, 24, hlr[1], clock, date(2026, 12, 10))
    late = _sold(db, 25, hlr[1], clock, date(2026, 12, 20))
    # Up to 15 December: the early order's activation and top-up (5 entries); the late order's
    # events stay beyond the watermark.
    assert commissions.accrue(db, as_of=date(2026, 12, 31), until=date(2026, 12, 15), actor="finance",
                              now=NOW)["accrued"] == 5
    assert _mark(db)["audit_id"] < _head(db) and _mark(db)["until"] == date(2026, 12, 15)
    assert commissions.accrue(db, as_of=date(2026, 12, 31), actor="finance", now=NOW)["accrued"] == 5
    assert {e["order_number"] for e in commissions.list_entries(db)} == {early, late}
    # Nothing new: nothing written; the watermark is past the accrual's own audit record.
    head = _head(db)
    assert commissions.accrue(db, as_of=date(2026, 12, 31), actor="finance", now=NOW)["accrued"] == 0
    assert head <= _mark(db)["audit_id"] < _head(db)
    # Month 2 of both (January) is over at the end of 31 January: evaluated once, when it has ended.
    assert commissions.accrue(db, as_of=date(2027, 1, 30), actor="finance", now=NOW)["accrued"] == 0
    assert commissions.accrue(db, as_of=date(2027, 1, 31), actor="finance", now=NOW)["accrued"] == 6
    assert _mark(db)["month_end"] == date(2027, 2, 1)
    assert commissions.accrue(db, as_of=date(2027, 2, 28), actor="finance", now=NOW)["accrued"] == 6
    assert commissions.accrue(db, as_of=date(2027, 3, 5), actor="finance", now=NOW)["accrued"] == 0
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(commission_entries)).scalar() == 22


def test_a_version_added_inside_what_was_accrued_applies_from_its_date_and_changes_nothing_before(
        distribution, hlr, clock, tmp_path):
    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path), actor="finance", now=NOW)
    early = _sold(db, 26, hlr[1], clock, date(2026, 12, 10))
    late = _sold(db, 27, hlr[1], clock, date(2026, 12, 20))
    assert commissions.accrue(db, as_of=date(2026, 12, 15), actor="finance", now=NOW)["accrued"] == 5
    later = SCHEME.replace("2026-01-01", "2026-12-16").replace("[3000, 1000, 500]", "[9000, 1000, 500]")
    commissions.add_scheme(db, _scheme(tmp_path, later, "v2.toml"), actor="finance", now=NOW)
    assert commissions.accrue(db, as_of=date(2026, 12, 31), actor="finance", now=NOW)["accrued"] == 5
    seller = {e["order_number"]: e["amount_fen"] for e in commissions.list_entries(db, agent="A3")
              if e["event"] == "activation"}
    assert seller == {early: 3_000, late: 9_000}


def _accrue_in_process(url: str, start, results) -> None:
    """One OS process: wait for the other, then accrue."""
    from hkops.store.engine import Store

    store = Store(url)
    start.wait(timeout=120)
    try:
        results.put(commissions.accrue(store, as_of=date(2027, 2, 1), actor="finance", now=NOW))
    except Exception as exc:  # reported to the test, which fails on it
        results.put(f"{type(exc).__name__}: {exc}")
    finally:
        store.dispose()


def test_two_processes_accruing_at_once_pay_each_entry_once(distribution, hlr, clock, tmp_path):
    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path), actor="finance", now=NOW)
    for n in (28, 29, 30):
        _sold_by_a3(db, n, hlr[1], clock)
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(2), context.Queue()
    processes = [context.Process(target=_accrue_in_process, args=(db.url, start, results)) for _ in range(2)]
    for process in processes:
        process.start()
    reports = [results.get(timeout=300) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert sorted(r["accrued"] for r in reports) == [0, 3 * 8], reports
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(commission_entries)).scalar() == 3 * 8


def test_next_month_entries_are_held_through_the_window_then_become_eligible(distribution, hlr, clock, tmp_path):
    """Next-month timing, 60-day window: what was earned on 10 December is eligible on 8 February;
    month 2 (ended 1 February) on 2 April."""
    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path, SCHEME.replace('"instant"', '"next_month"')), actor="finance",
                           now=NOW)
    number = _sold(db, 31, hlr[1], clock, date(2026, 12, 10))
    assert commissions.accrue(db, as_of=date(2026, 12, 31), actor="finance", now=NOW) == {
        "accrued": 5, "clawed_back": 0, "eligible": 0, "held": 5}
    assert {e["eligible_on"] for e in commissions.list_entries(db, order=number)} == {date(2027, 2, 8)}
    assert commissions.accrue(db, as_of=date(2027, 2, 8), actor="finance", now=NOW) == {
        "accrued": 3, "clawed_back": 0, "eligible": 5, "held": 3}
    states = sorted((e["event"], e["state"], e["eligible_on"]) for e in commissions.list_entries(db, order=number))
    assert set(states) == {("activation", "eligible", date(2027, 2, 8)), ("first_topup", "eligible", date(2027, 2, 8)),
                           ("in_network", "held", date(2027, 4, 2))}


def test_a_months_spend_is_the_plans_fee_plus_the_charges_of_its_records(distribution, hlr, clock, tmp_path):
    """Plan fee ¥58; the rule asks ¥80 of spend in month 2: ¥30 of charges make ¥88 and pay, ¥10
    make ¥68 and do not (both used data and voice enough)."""
    db = distribution.db
    rule = MINIMUMS.replace("min_spend_fen = 3000", "min_spend_fen = 8000")
    commissions.add_scheme(db, _scheme(tmp_path, rule), actor="finance", now=NOW)
    pays = _sold_by_a3(db, 24, hlr[1], clock)
    short = _sold_by_a3(db, 25, hlr[1], clock)
    msisdn = {n: int(orders.get_order(db, n).msisdn) for n in (pays, short)}
    store = _usage(tmp_path / "usage", date(2027, 1, 15), {msisdn[pays]: (3_000, 600, 25),
                                                          msisdn[short]: (1_000, 600, 25)})
    commissions.accrue(db, as_of=date(2027, 2, 1), actor="finance", now=NOW, usage_dir=store)
    assert [m for m, _, _ in _in_network(db, pays)] == [2, 2, 2]
    assert _in_network(db, short) == []


def test_a_credit_clawed_back_before_it_settles_nets_out_in_the_same_batch(distribution, hlr, clock, tmp_path):
    """Next-month timing: the activation of 10 December is held until 8 February (60 days); the card
    is suspended on 15 January. The reversal waits with its credit, so no batch goes negative: the
    January batch has neither, the February batch has both, netting to zero."""
    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path, SCHEME.replace('"instant"', '"next_month"')), actor="finance",
                           now=NOW)
    number = _sold_by_a3(db, 26, hlr[1], clock)
    clock.now = _at(date(2027, 1, 15))
    card_service.suspend(db, orders.get_order(db, number).iccid, "arrears", actor="desk", network=hlr[1])
    commissions.accrue(db, as_of=date(2027, 2, 1), actor="finance", now=NOW)
    mine = [e for e in commissions.list_entries(db, order=number) if e["agent"] == "A3"]
    assert {e["kind"] for e in mine} == {"credit", "reversal"} and {e["state"] for e in mine} == {"held"}
    assert commissions.create_batches(db, "2027-01", as_of=date(2027, 2, 1), actor="finance", now=NOW) == []
    commissions.accrue(db, as_of=date(2027, 3, 1), actor="finance", now=NOW)
    made = commissions.create_batches(db, "2027-02", as_of=date(2027, 3, 1), actor="finance", now=NOW)
    totals = {commissions.show_batch(db, b)["agent"]: commissions.show_batch(db, b)["total_fen"] for b in made}
    assert totals["A3"] == 0 and all(t == 0 for t in totals.values())
