"""Number planning: utilisation now and over time, demand, quarantine flows and the runway, on
hand-built pools worked out by hand, then on the database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import ibis
import pandas as pd
import pytest

from hkops.analytics import planning
from hkops.errors import InvalidValue
from hkops.numbers import service as numbers
from hkops.store.engine import Store

#: The blocks of the ``world`` fixture (tests/conftest.py; not imported: notebooks/ has a conftest too).
BEIJING_MOBILE, SHENZHEN_UNICOM = "1380013", "1860755"

NOW = datetime(2026, 11, 20, 4, 0)  # UTC, noon in Shanghai
BJ, SZ = 1380013, 1860755


def pool():
    """Block BJ (Beijing, added 1 Nov) with 6 numbers, block SZ (Guangdong, added 15 Nov) with 4."""
    msisdn = [BJ * 10_000 + n for n in range(6)] + [SZ * 10_000 + n for n in range(4)]
    states = ["available", "reserved", "reserved", "active", "quarantined", "blocked",
              "available", "available", "assigned", "quarantined"]
    reserved_until = [None, NOW + timedelta(minutes=5), NOW - timedelta(minutes=5)] + [None] * 7  # one lapsed
    quarantine_until = [None] * 4 + [datetime(2026, 11, 25, 2)] + [None] * 4 + [datetime(2026, 11, 10)]
    numbers_t = ibis.memtable(pd.DataFrame({
        "msisdn": msisdn, "state": states, "grade": ["plain"] * 9 + ["AAAA"],
        "reserved_until": pd.to_datetime(reserved_until), "quarantine_until": pd.to_datetime(quarantine_until)}))
    blocks = ibis.memtable(pd.DataFrame({"prefix": [BJ, SZ], "province": ["Beijing", "Guangdong"],
                                         "city": ["Beijing", "Shenzhen"],
                                         "created_at": [datetime(2026, 10, 31, 20), datetime(2026, 11, 15)]}))
    # audit: in Beijing, number 3 allocated on 5 Nov and activated on 6 Nov, number 4 allocated
    # on 2 Nov and terminated on 10 Nov, number 1 reserved on 19 Nov (all local days)
    trail = [(BJ * 10_000 + 3, "available", "assigned", datetime(2026, 11, 5, 1)),
             (BJ * 10_000 + 3, "assigned", "active", datetime(2026, 11, 6, 1)),
             (BJ * 10_000 + 4, "available", "assigned", datetime(2026, 11, 2, 1)),
             (BJ * 10_000 + 4, "assigned", "quarantined", datetime(2026, 11, 10, 1)),
             (BJ * 10_000 + 1, "available", "reserved", datetime(2026, 11, 19, 1)),
             (BJ * 10_000 + 2, "available", "reserved", datetime(2026, 11, 19, 2)),
             (SZ * 10_000 + 2, "available", "assigned", datetime(2026, 11, 16, 1))]
    audit = ibis.memtable(pd.DataFrame({"entity": "number", "subject": [str(m) for m, _, _, _ in trail],
                                        "from_state": [f for _, f, _, _ in trail], "to_state": [t for _, _, t, _ in trail],
                                        "at": [a for _, _, _, a in trail], "action": "move"}))
    return numbers_t, blocks, audit


def test_utilisation_now_per_region_counts_lapsed_reservations_as_available():
    numbers_t, blocks, _ = pool()
    now = planning.pool_utilisation(numbers_t, blocks, "region", as_of=NOW).to_pandas().set_index("region")
    bj = now.loc["Beijing"]
    assert (bj.total, bj.available, bj.reserved, bj.active, bj.quarantined, bj.blocked) == (6, 2, 1, 1, 1, 1)
    assert bj.in_use == 2 and bj.utilisation == pytest.approx(2 / 6) and bj.available_share == pytest.approx(2 / 6)
    assert now.loc["Guangdong", "in_use"] == 1
    by_block = planning.pool_utilisation(numbers_t, blocks, "block", as_of=NOW).to_pandas()
    assert by_block["block"].tolist() == [BJ, SZ] and by_block["total"].tolist() == [6, 4]
    by_grade = planning.pool_utilisation(numbers_t, blocks, "grade", as_of=NOW).to_pandas().set_index("grade")
    assert by_grade.loc["AAAA", "quarantined"] == 1
    with pytest.raises(InvalidValue, match="by 'city'"):
        planning.pool_utilisation(numbers_t, blocks, "city")


def test_utilisation_over_time_is_rebuilt_backwards_from_the_audit_trail():
    numbers_t, blocks, audit = pool()
    days = [date(2026, 11, d) for d in (1, 3, 5, 7, 12, 16, 20)]
    history = planning.utilisation_history(numbers_t, blocks, audit, days).to_pandas()
    bj = history[history.region == "Beijing"].set_index("day")["in_use"]
    # raw states count (the lapsed reservation is still "reserved" in the table): 1, 2, 3 in use now
    assert {d.day: n for d, n in bj.items()} == {1: 0, 3: 1, 5: 2, 7: 2, 12: 1, 16: 1, 20: 3}
    gd = history[history.region == "Guangdong"].set_index("day")
    assert [d.day for d in gd.index] == [16, 20]  # the block exists from 15 November
    assert gd["in_use"].tolist() == [1, 1] and gd["total"].tolist() == [4, 4]
    assert history[history.region == "Beijing"]["utilisation"].iloc[-1] == pytest.approx(3 / 6)
    by_grade = planning.utilisation_history(numbers_t, blocks, audit, [date(2026, 11, 20)], "grade").to_pandas()
    assert by_grade.set_index("grade")["in_use"].to_dict() == {"plain": 4, "AAAA": 0}
    by_block = planning.utilisation_history(numbers_t, blocks, audit, [date(2026, 11, 3)], "block").to_pandas()
    assert by_block[["block", "in_use", "total"]].values.tolist() == [[BJ, 1, 6]]  # SZ not added yet


def test_demand_and_quarantine_flows():
    numbers_t, blocks, audit = pool()
    demand = planning.demand_history(numbers_t, blocks, audit).to_pandas()
    assert demand.groupby("region")["taken"].sum().to_dict() == {"Beijing": 4, "Guangdong": 1}
    inflow = planning.quarantine_inflow(numbers_t, blocks, audit).to_pandas()
    assert inflow[["region", "quarantined"]].values.tolist() == [["Beijing", 1]]
    out = planning.recycle_outflow(numbers_t, blocks, date(2026, 11, 20), 30).to_pandas()
    # Guangdong's number was due on 10 Nov: it counts today; Beijing's on 25 Nov (10:00 local)
    assert {(r.region, r.day.day): r.recycled for r in out.itertuples()} == {("Guangdong", 20): 1, ("Beijing", 25): 1}
    assert len(planning.recycle_outflow(numbers_t, blocks, date(2026, 11, 20), 2).to_pandas()) == 1


def test_the_runway_finds_the_day_a_region_runs_out_and_the_blocks_to_request():
    today = date(2026, 11, 20)
    plan = planning.runway({"Beijing": 100, "Hubei": 50}, {"Beijing": 10, "Hubei": 0},
                           {"Beijing": {today + timedelta(days=5): 20}}, today=today, months_of_cover=3,
                           block_size=100).set_index("region")
    # 100 + 20 recycled on day 5 - 10 a day: the 13th day (day 12) goes below zero
    assert plan.loc["Beijing", "days_left"] == 12 and plan.loc["Beijing", "runs_out_on"] == today + timedelta(days=12)
    # 90 days of demand = 900, minus 100 available and 20 recycled = 780: 8 blocks of 100
    assert plan.loc["Beijing", "blocks_to_request"] == 8
    assert pd.isna(plan.loc["Hubei", "days_left"]) and plan.loc["Hubei", "blocks_to_request"] == 0
    plain = planning.runway({"X": 100}, {"X": 10}, {}, today=today, months_of_cover=1)
    assert plain.loc[0, "days_left"] == 10 and plain.loc[0, "blocks_to_request"] == 1  # short by 200: one whole block
    with pytest.raises(InvalidValue, match="months_of_cover 0"):
        planning.runway({}, {}, {}, today=today, months_of_cover=0)


def test_on_the_database_utilisation_history_and_plan(world):
    db: Store = world
    bj = int(BEIJING_MOBILE) * 10_000
    numbers.reserve(db, str(bj + 1), "C1", actor="tester", ttl="1h")
    numbers.allocate(db, str(bj + 2), "C2", actor="tester")
    numbers.allocate(db, str(int(SHENZHEN_UNICOM) * 10_000 + 1), "C3", actor="tester")
    numbers.activate(db, str(bj + 2), actor="tester")
    numbers.terminate(db, str(bj + 2), actor="tester")
    now = planning.utilisation_report(db, actor="tester").set_index("region")
    beijing = now.loc["Beijing"]
    assert (beijing.total, beijing.reserved, beijing.quarantined, beijing.available) == (20_000, 1, 1, 19_998)
    assert now.loc["Guangdong", "assigned"] == 1
    from hkops.analytics.filters import today

    history = planning.history_report(db, today() - timedelta(days=1), today(), actor="tester")
    # the blocks were added today: yesterday there was no pool to count
    assert history[history.region == "Beijing"][["total", "in_use"]].values.tolist() == [[20_000, 1]]
    plan = planning.block_plan(db, months_of_cover=1, window_days=1, actor="tester").set_index("region")
    # 2 taken in Beijing today: 2 a day
    assert plan.loc["Beijing", "demand_per_day"] == 2 and plan.loc["Beijing", "available"] == 19_998
    # 19,998 numbers at 2 a day last beyond the ten years the runway looks at
    assert pd.isna(plan.loc["Beijing", "days_left"]) and plan.loc["Beijing", "blocks_to_request"] == 0
    outlook = planning.quarantine_outlook(db, horizon_days=120, window_days=30, actor="tester").set_index("region")
    assert outlook.loc["Beijing", "recycle_due"] == 1  # the 90-day cool-off ends within 120 days
    assert outlook.loc["Beijing", "inflow_expected"] == 4  # 1 in 30 days, carried over 120
