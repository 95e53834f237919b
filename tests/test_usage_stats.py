"""Usage statistics on Ibis (hkops.analytics.usage_stats): usage by service, time, place, plan and
channel against pandas recomputations, per-user figures, charges by the plans sold, filters that
refuse bad input, and day/week/month reports exported to Excel and CSV."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from datetime import date
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from distribution_world import advance, distribution, place_order  # noqa: F401  (distribution is a fixture)
from hkops.analytics import engine
from hkops.analytics import usage_stats as us
from hkops.errors import InvalidValue
from hkops.network.usage import GIB, generate_usage, synthetic_cards
from test_cards_lifecycle import hlr  # noqa: F401  (fixture)

START = date(2026, 10, 27)  # a Tuesday: the window crosses a week and a month boundary, and is in the past
DAYS = 8
TODAY = date(2026, 11, 29)
MIB = 1 << 20
#: The demo plans, with small allowances on CT-29 so that its cards go beyond them.
PLANS = pd.DataFrame([
    dict(code="CM-58", monthly_fee_fen=5_800, data_mb=30_720, voice_minutes=300, sms=100),
    dict(code="CM-128", monthly_fee_fen=12_800, data_mb=102_400, voice_minutes=1_000, sms=300),
    dict(code="CU-39", monthly_fee_fen=3_900, data_mb=40_960, voice_minutes=100, sms=0),
    dict(code="CT-29", monthly_fee_fen=2_900, data_mb=512, voice_minutes=5, sms=0),
]).assign(overage_data_fen_per_gb=500, overage_voice_fen_per_min=15, overage_sms_fen=10)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("usage-stats")
    generate_usage(synthetic_cards(1_500, seed=8), start=START, days=DAYS, seed=3, out_dir=out)
    return out


@pytest.fixture(scope="module")
def frames(store):
    """Billable records joined with their card's plan, channel, agent and home; and the cards."""
    records = pd.read_parquet(store / "records")
    cards = pd.read_parquet(store / "cards")
    records["type"] = records["type"].astype(str)
    for column in ("region", "area"):
        records[column] = records[column].astype(str)
    records["day"] = pd.to_datetime(records["day"].astype(str)).dt.date
    local = records["start"].dt.tz_convert("Asia/Shanghai")
    records["hour"] = local.dt.hour
    records["month"] = local.dt.strftime("%Y-%m")
    records = records.merge(cards[["msisdn", "plan", "channel", "agent", "province"]], on="msisdn", how="left")
    return records[~records["refused"]], cards


def _tables(store):
    return engine.store_tables(store)


def _run(expr) -> pd.DataFrame:
    return expr.to_pandas()


# --- usage by volume, time and place --------------------------------------------------


@pytest.mark.parametrize("by", ["service", "hour", "day", "week", "month", "region", "area", "plan", "channel",
                                "agent", "type"])
def test_usage_by_any_dimension_adds_up_to_the_whole(store, frames, by):
    billable, _ = frames
    t = _tables(store)
    got = _run(us.usage_by(t["records"], t["cards"], by=[by]))
    assert int(got["data_bytes"].sum()) == int((billable["bytes_up"] + billable["bytes_down"]).sum())
    assert int(got["records"].sum()) == len(billable)
    assert int(got["voice_mo_s"].sum()) == int(billable.loc[billable["type"] == "voice_mo", "duration_s"].sum())


def test_hours_weeks_and_months_are_asia_shanghai(store, frames):
    billable, _ = frames
    t = _tables(store)
    hours = _run(us.usage_by(t["records"], by=["hour"])).set_index("hour")["records"]
    assert hours.to_dict() == billable.groupby("hour").size().to_dict()
    weeks = _run(us.usage_by(t["records"], by=["week"]))
    assert [str(w)[:10] for w in weeks["week"]] == ["2026-10-26", "2026-11-02"]  # ISO weeks start on Monday
    monday = billable["day"] >= date(2026, 11, 2)
    assert list(weeks["records"]) == [int((~monday).sum()), int(monday.sum())]
    months = _run(us.usage_by(t["records"], by=["month"]))
    assert [str(m)[:7] for m in months["month"]] == ["2026-10", "2026-11"]
    assert list(months["records"]) == list(billable.groupby("month").size())


def test_usage_by_plan_and_service_agrees_with_pandas(store, frames):
    billable, _ = frames
    t = _tables(store)
    got = _run(us.usage_by(t["records"], t["cards"], by=["plan", "service"]))
    service = billable["type"].str.split("_").str[0]
    expected = billable.groupby([billable["plan"], service]).size()
    assert {(r.plan, r.service): r.records for r in got.itertuples()} == expected.to_dict()
    assert set(got["service"]) == {"voice", "sms", "data"}


def test_filters_keep_only_the_cards_and_days_asked_for(store, frames):
    billable, cards = frames
    t = _tables(store)
    agent = cards["agent"].dropna().iloc[0]
    got = _run(us.usage_by(t["records"], t["cards"], by=["day"], agent=agent, plan="CU-39",
                           start=date(2026, 10, 30), end=date(2026, 11, 1)))
    mine = billable[(billable["agent"] == agent) & (billable["plan"] == "CU-39")
                    & billable["day"].between(date(2026, 10, 30), date(2026, 11, 1))]
    assert len(got) == 3 and int(got["records"].sum()) == len(mine) > 0
    assert list(got["cards"]) == list(mine.groupby("day")["msisdn"].nunique())


def test_top_users_are_the_heaviest_numbers(store, frames):
    billable, _ = frames
    t = _tables(store)
    top = _run(us.top_users(t["records"], t["cards"], n=5))
    data = (billable["bytes_up"] + billable["bytes_down"]).groupby(billable["msisdn"]).sum().sort_values(ascending=False)
    assert list(top["msisdn"]) == list(data.index[:5])
    assert top["plan"].notna().all()
    with pytest.raises(InvalidValue, match="order_by 'loudness'"):
        us.top_users(t["records"], n=5, order_by="loudness")


# --- per user and charges by the plans sold ---------------------------------------------


def test_dou_mou_and_sms_per_user_per_plan_agree_with_pandas(store, frames):
    billable, _ = frames
    t = _tables(store)
    got = _run(us.per_user(t["records"], t["cards"], by=["plan"]))
    nov = billable[billable["month"] == "2026-11"]
    row = got[(got["month"].astype(str).str[:7] == "2026-11") & (got["plan"] == "CU-39")].iloc[0]
    cu = nov[nov["plan"] == "CU-39"]
    users, days = cu["msisdn"].nunique(), nov["day"].nunique()
    assert (row["users"], row["days"]) == (users, days) == (users, 3)
    assert row["dou_gb"] == pytest.approx((cu["bytes_up"] + cu["bytes_down"]).sum() / GIB / users * 30 / days)
    assert row["mou"] == pytest.approx(cu.loc[cu["type"] == "voice_mo", "duration_s"].sum() / 60 / users * 30 / days)
    assert row["sms_per_user"] == pytest.approx((cu["type"] == "sms_mo").sum() / users * 30 / days)


def test_bills_are_the_plan_fee_plus_overage_at_the_plans_rates(store, frames):
    billable, _ = frames
    t = _tables(store)
    bills = _run(us.bills(t["records"], t["cards"], us.plans_table(PLANS)))
    b = billable[billable["plan"].notna()].copy()
    b["data"] = np.where(b["type"] == "data", b["bytes_up"] + b["bytes_down"], 0)
    b["minutes"] = np.where(b["type"] == "voice_mo", -(-b["duration_s"] // 60), 0)
    b["texts"] = (b["type"] == "sms_mo").astype(int)
    per = b.groupby(["msisdn", "month", "plan"])[["data", "minutes", "texts"]].sum().reset_index()
    per = per.merge(PLANS, left_on="plan", right_on="code")
    over_data = (per["data"] - per["data_mb"] * MIB).clip(lower=0)
    fee = per["monthly_fee_fen"]
    data_fen = -(-(over_data * per["overage_data_fen_per_gb"]) // GIB)
    voice_fen = (per["minutes"] - per["voice_minutes"]).clip(lower=0) * per["overage_voice_fen_per_min"]
    sms_fen = (per["texts"] - per["sms"]).clip(lower=0) * per["overage_sms_fen"]
    per["bill_fen"] = fee + data_fen + voice_fen + sms_fen
    got = bills.assign(month=bills["month"].astype(str).str[:7]).set_index(["msisdn", "month"])["bill_fen"]
    want = per.set_index(["msisdn", "month"])["bill_fen"]
    assert len(got) == len(want) and (got.sort_index() == want.sort_index()).all()
    assert bills["bill_fen"].dtype == np.int64
    ct = bills[bills["plan"] == "CT-29"]
    assert (ct["overage_data_fen"] > 0).mean() > 0.5  # 512 MB a month is soon used up
    assert (bills.loc[bills["plan"] == "CM-128", "overage_voice_fen"] == 0).all()


def test_rated_records_add_up_to_the_bills_overage(store):
    t = _tables(store)
    plans = us.plans_table(PLANS)
    rated = _run(us.rate(t["records"], t["cards"], plans))
    bills = _run(us.bills(t["records"], t["cards"], plans))
    overage = bills["bill_fen"] - bills["monthly_fee_fen"]
    assert int(rated["overage_fen"].sum()) == int(overage.sum()) > 0
    assert (rated["overage_fen"] >= 0).all()
    per_card = rated.groupby("msisdn")["overage_fen"].sum()
    assert (per_card.reindex(bills["msisdn"].unique(), fill_value=0).sort_index()
            == (overage.groupby(bills["msisdn"]).sum()).sort_index()).all()


def test_arpu_per_plan_and_region_is_the_bills_over_the_users(store):
    t = _tables(store)
    plans = us.plans_table(PLANS)
    got = _run(us.per_user(t["records"], t["cards"], plans, by=["plan", "region"]))
    bills = _run(us.bills(t["records"], t["cards"], plans))
    assert int(got["bill_fen"].sum()) == int(bills["bill_fen"].sum())
    row = got[got["plan"] == "CM-128"].iloc[0]
    assert row["arpu_fen"] == 12_800  # the fee, no overage on the large plan
    assert ((got["arpu_fen"] * got["users"] - got["bill_fen"]).abs() <= got["users"] / 2 + 1).all()


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize("filters,field,value", [
    (dict(region="Atlantis"), "region", "Atlantis"),
    (dict(plan="GOLD-999"), "plan", "GOLD-999"),
    (dict(agent="A-NOWHERE"), "agent", "A-NOWHERE"),
    (dict(channel="telepathy"), "channel", "telepathy"),
    (dict(start="2026-11-03", end="2026-11-01"), "end", "2026-11-01"),
    (dict(start="2026-12-25"), "start", "2026-12-25"),
    (dict(start="31/10/2026"), "start", "31/10/2026"),
    (dict(type="fax"), "type", "fax"),
])
def test_bad_filters_are_refused_naming_field_and_value(store, filters, field, value):
    with pytest.raises(InvalidValue) as caught:
        us.statistics(store, by=["day"], plans=PLANS, today=TODAY, **filters)
    assert f"{field} '{value}'" in str(caught.value)


def test_good_filters_pass_and_by_is_checked(store):
    frame = us.statistics(store, by=["region"], plans=PLANS, region="广东省", plan="cu-39", today=TODAY)
    assert list(frame["region"]) == ["广东省"]
    with pytest.raises(InvalidValue, match="by 'colour'"):
        us.statistics(store, by=["colour"], today=TODAY)


# --- reports ----------------------------------------------------------------------------


def test_period_ranges_are_a_day_an_iso_week_and_a_month():
    assert us.period_range("day", "2026-10-31") == (date(2026, 10, 31), date(2026, 10, 31))
    assert us.period_range("week", "2026-10-31") == (date(2026, 10, 26), date(2026, 11, 1))
    assert us.period_range("month", "2026-02-10") == (date(2026, 2, 1), date(2026, 2, 28))
    with pytest.raises(InvalidValue, match="period 'year'"):
        us.period_range("year", "2026-10-31")


def test_a_week_report_has_every_table_and_adds_up(store, frames):
    billable, _ = frames
    sheets = us.period_report(store, "week", "2026-10-29", plans=PLANS, today=TODAY)
    assert list(sheets) == ["summary", "by_day", "by_hour", "by_service", "by_region", "by_area", "by_plan",
                            "by_channel", "per_user", "top_users", "charges"]
    week = billable[billable["day"].between(date(2026, 10, 26), date(2026, 11, 1))]
    summary = dict(zip(sheets["summary"]["measure"], sheets["summary"]["value"]))
    assert (summary["first_day"], summary["last_day"], summary["days_with_records"]) == ("2026-10-26", "2026-11-01", 6)
    assert summary["billable_records"] == len(week)
    assert list(sheets["by_day"]["day"]) == [f"2026-10-{d}" for d in range(27, 32)] + ["2026-11-01"]
    assert float(sum(sheets["by_region"]["data_gb"])) == pytest.approx((week["bytes_up"] + week["bytes_down"]).sum() / GIB,
                                                               abs=0.05)
    assert all(isinstance(v, Decimal) for v in sheets["charges"]["bill_yuan"])
    t = _tables(store)
    rated = _run(us.rate(t["records"], t["cards"], us.plans_table(PLANS)))
    days = pd.to_datetime(rated["day"]).dt.date
    in_week = rated.loc[days.between(date(2026, 10, 26), date(2026, 11, 1)), "overage_fen"]
    assert Decimal(summary["overage_yuan"]) == Decimal(int(in_week.sum())) / 100 > 0


def test_reports_export_to_excel_and_csv_and_nothing_is_left_on_failure(store, tmp_path):
    from openpyxl import load_workbook

    sheets = us.period_report(store, "month", "2026-11-02", plans=PLANS, today=TODAY)
    book = load_workbook(us.export_report(sheets, tmp_path / "november.xlsx"))
    assert book.sheetnames == list(sheets)
    by_day = book["by_day"]
    assert [c.value for c in by_day[1]][:2] == ["day", "records"]
    assert by_day.max_row == 1 + 3  # 1, 2 and 3 November
    charges = book["charges"]
    yuan = [c.value for c in charges[1]].index("bill_yuan") + 1
    assert charges.cell(2, yuan).number_format == "#,##0.00"
    us.export_report(sheets, tmp_path / "november.csv")
    with open(tmp_path / "november.csv", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    assert {r["sheet"] for r in rows} == set(sheets)
    assert [r["value"] for r in rows if r["sheet"] == "summary" and r["column"] == "value"][0] == "month"
    with pytest.raises(InvalidValue, match="out .*must end in .xlsx or .csv"):
        us.export_report(sheets, tmp_path / "november.pdf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["november.csv", "november.xlsx"]


def test_a_report_of_the_future_or_of_a_period_without_records_is_refused(store):
    with pytest.raises(InvalidValue, match="date '2026-12-01': is in the future"):
        us.period_report(store, "day", "2026-12-01", today=TODAY)
    with pytest.raises(InvalidValue, match="date '2026-09-15': has no usage records in the month 2026-09-01..2026-09-30"):
        us.period_report(store, "month", "2026-09-15", today=TODAY)


# --- with the hkops database (SQLite and PostgreSQL) -------------------------------------


def test_cards_sold_through_orders_are_reported_by_their_plan_with_the_catalogues_rates(distribution, hlr, tmp_path):
    from hkops.cards.service import network_cards
    from hkops.catalogue.service import all_plans

    db = distribution.db
    sold = advance(db, place_order(db, 1).number, "activated", network=hlr[1])
    place_order(db, 2)  # approved only: no number in service
    frame = us.sold_cards(db)
    assert frame.to_dict("records") == [{"msisdn": int(sold.msisdn), "plan": distribution.plan, "channel": "direct",
                                         "agent": None}]
    cards = network_cards(db).merge(frame, on="msisdn", how="left")
    first = pd.Timestamp(cards["activated_at"].iloc[0]).tz_convert("Asia/Shanghai").date()
    generate_usage(cards, start=first, days=2, seed=1, out_dir=tmp_path / "usage")
    plans = all_plans(db)
    day = first + pd.Timedelta(days=1)
    sheets = us.period_report(tmp_path / "usage", "day", day, plans=plans, today=day)
    charges = sheets["charges"]
    assert list(charges["plan"]) == [distribution.plan] and list(charges["cards"]) == [1]
    assert charges["monthly_fee_yuan"].iloc[0] == Decimal("58.00")
    assert list(sheets["by_plan"]["plan"]) == [distribution.plan]


# --- command line -----------------------------------------------------------------------


def _hkops(*args, database):
    env = {**os.environ, "HKOPS_DATABASE_URL": f"sqlite:///{database}"}
    return subprocess.run([sys.executable, "-m", "hkops", *args], capture_output=True, text=True, timeout=300, env=env)


def test_the_report_command_writes_excel_and_refuses_bad_input_with_exit_2(store, tmp_path):
    db = tmp_path / "hkops.db"
    made = _hkops("usage", "report", "--period", "week", "--date", "2026-10-29", "--store", str(store),
                  "--out", str(tmp_path / "week.xlsx"), database=db)
    assert made.returncode == 0, made.stderr
    assert "2026-10-26..2026-11-01" in made.stdout and (tmp_path / "week.xlsx").stat().st_size > 0
    for args, message in [
        (("--period", "fortnight", "--date", "2026-10-29"), "period 'fortnight'"),
        (("--period", "day", "--date", "2099-01-01"), "date '2099-01-01': is in the future"),
        (("--period", "day", "--date", "29.10.2026"), "date '29.10.2026'"),
    ]:
        bad = _hkops("usage", "report", *args, "--store", str(store), "--out", str(tmp_path / "bad.xlsx"), database=db)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    wrong = _hkops("usage", "report", "--period", "day", "--date", "2026-10-29", "--store", str(store),
                   "--out", str(tmp_path / "bad.txt"), database=db)
    assert wrong.returncode == 2 and "out '" in wrong.stderr
    assert not (tmp_path / "bad.xlsx").exists() and not (tmp_path / "bad.txt").exists()
    grouped = _hkops("usage", "stats", "--by", "plan,service", "--region", "Atlantis", "--out", str(store), database=db)
    assert grouped.returncode == 2 and "region 'Atlantis'" in grouped.stderr


def test_the_daily_reports_charges_are_that_days_overage_by_the_plans(store):
    t = _tables(store)
    rated = _run(us.rate(t["records"], t["cards"], us.plans_table(PLANS), start=date(2026, 11, 1)))
    day = date(2026, 11, 3)
    expected = int(rated.loc[rated["day"].astype(str) == day.isoformat(), "overage_fen"].sum())
    rep = us.daily_report(store, day, plans=PLANS)
    assert Decimal(rep["charges_yuan"]) == Decimal(expected) / 100 > 0
    assert "beyond the plans' allowances" in us.format_report(rep)
    assert us.daily_report(store, day)["charges_yuan"] is None


def test_stats_by_dimensions_prints_json_rows_with_people_units(store, frames, tmp_path):
    import json

    billable, _ = frames
    done = _hkops("usage", "stats", "--by", "plan", "--start", "2026-11-01", "--out", str(store), "--json",
                  database=tmp_path / "hkops.db")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    november = billable[billable["day"] >= date(2026, 11, 1)]
    assert {r["plan"]: r["records"] for r in rows} == november.groupby("plan").size().to_dict()
    assert all(isinstance(r["data_gb"], str) for r in rows)


def test_a_province_in_english_or_chinese_filters_the_usage_stores_spelling(store):
    """Number blocks and orders name provinces in English, the usage store as the cards' data did
    (广东省): a filter in either spelling gives the same days, and an unknown one is refused."""
    chinese = us.usage_per_day(store, region="广东省")
    assert len(chinese) and chinese.equals(us.usage_per_day(store, region="Guangdong"))
    assert chinese.equals(us.usage_per_day(store, region="广东"))
    assert int(chinese["records"].sum()) < int(us.usage_per_day(store)["records"].sum())
    with pytest.raises(InvalidValue) as refused:
        us.usage_per_day(store, region="Atlantis")
    assert refused.value.field == "region"
