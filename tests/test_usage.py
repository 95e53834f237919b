"""Usage records and top-ups: generation (hkops.network.usage) and statistics (hkops.analytics.usage_stats)."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hkops.analytics import engine, usage_stats
from hkops.errors import InvalidValue
from hkops.network.usage import (DEMO_CITIES, DOU_GIB, GIB, VOICE_MO_MINUTES, _province_factors, generate_usage,
                                 synthetic_cards)

START = date(2026, 11, 2)  # a Monday
DAYS = 30
SEED = 11


def _read(path) -> pd.DataFrame:
    return pd.read_parquet(path)


@pytest.fixture(scope="module")
def cards() -> pd.DataFrame:
    frame = synthetic_cards(3_000, seed=5)
    # A few cards in every refusing state and some the network does not know, whatever the draw.
    frame.loc[0:9, "state"] = "lost"
    frame.loc[10:19, "state"] = "suspended"
    frame.loc[20:24, "state"] = "terminated"
    frame.loc[25:29, "state"] = "replaced"
    frame.loc[30:39, "state"] = "in_stock"
    return frame


@pytest.fixture(scope="module")
def store(cards, tmp_path_factory):
    out = tmp_path_factory.mktemp("usage")
    summary = generate_usage(cards, start=START, days=DAYS, seed=SEED, out_dir=out)
    return out, summary


@pytest.fixture(scope="module")
def records(store) -> pd.DataFrame:
    return _read(store[0] / "records")


@pytest.fixture(scope="module")
def topups(store) -> pd.DataFrame:
    return _read(store[0] / "topups")


@pytest.fixture(scope="module")
def billable(records) -> pd.DataFrame:
    return records[~records["refused"]]


def _active(cards) -> pd.DataFrame:
    return cards[cards["state"] == "active"]


# --- generation ---------------------------------------------------------------------


def test_the_same_seed_gives_the_same_records_and_another_seed_does_not(cards, tmp_path):
    small = cards.iloc[:400]
    a = generate_usage(small, start=START, days=2, seed=1, out_dir=tmp_path / "a")
    b = generate_usage(small.sample(frac=1, random_state=3), start=START, days=2, seed=1, out_dir=tmp_path / "b")
    c = generate_usage(small, start=START, days=2, seed=2, out_dir=tmp_path / "c")
    ra, rb, rc = (_read(tmp_path / x / "records") for x in "abc")
    assert a.records == b.records == len(ra) > 0
    pd.testing.assert_frame_equal(ra, rb)  # the frame's row order does not matter either
    assert len(rc) != len(ra) or not ra["start"].equals(rc["start"])
    pd.testing.assert_frame_equal(_read(tmp_path / "a" / "topups"), _read(tmp_path / "b" / "topups"))
    assert c.records == len(rc)


def test_a_day_is_the_same_whatever_window_it_is_generated_in(cards, tmp_path):
    small = cards.iloc[:300]
    generate_usage(small, start=START, days=3, seed=4, out_dir=tmp_path / "three")
    generate_usage(small, start=date(2026, 11, 4), days=1, seed=4, out_dir=tmp_path / "one")
    day = "day=2026-11-04"
    pd.testing.assert_frame_equal(_read(tmp_path / "three" / "records" / day), _read(tmp_path / "one" / "records" / day))


def test_record_ids_are_unique_across_a_run(records, topups):
    assert records["record_id"].is_unique
    assert topups["topup_id"].is_unique


def test_summary_counts_what_was_written(store, records, topups):
    _, summary = store
    assert summary.records == len(records)
    assert summary.refused == int(records["refused"].sum())
    assert summary.topups == len(topups)
    assert summary.data_bytes == int((records["bytes_up"] + records["bytes_down"]).sum())
    assert summary.charge_fen == int(records["charge_fen"].sum())
    assert summary.topup_fen == int(topups["amount_fen"].sum())
    assert len(summary.files) == 2 * DAYS + 1  # and the cards
    assert json.loads(json.dumps(summary.to_dict()))["records"] == len(records)


def test_non_active_cards_produce_no_billable_usage_but_their_refusals_are_recorded(cards, records):
    state = cards.set_index("msisdn")["state"]
    refusing = state[state.isin(["suspended", "lost", "terminated", "replaced"])].index
    theirs = records[records["msisdn"].isin(refusing)]
    assert len(theirs) > 0
    assert theirs["refused"].all()
    assert (theirs[["duration_s", "bytes_up", "bytes_down", "charge_fen"]] == 0).all().all()
    # The reason is the card's state, and every refusing state shows up (a lost card in use is a fraud signal).
    assert (theirs["refusal"].astype(str).to_numpy() == state.loc[theirs["msisdn"]].to_numpy()).all()
    assert set(theirs["refusal"].astype(str)) == {"suspended", "lost", "terminated", "replaced"}
    # Active cards are never refused.
    active = records[records["msisdn"].isin(_active(cards)["msisdn"])]
    assert not active["refused"].any()
    assert active["refusal"].isna().all()


def test_cards_not_in_the_network_produce_nothing(cards, records, topups):
    unknown = cards[cards["state"] == "in_stock"]["msisdn"]
    assert not records["msisdn"].isin(unknown).any()
    assert not topups["msisdn"].isin(unknown).any()


def test_a_day_without_billable_usage_reports_zeros_and_its_refusals(tmp_path):
    frame = synthetic_cards(60, seed=3)
    frame["state"] = "lost"
    frame.loc[:9, "state"] = "in_stock"
    summary = generate_usage(frame, start=START, days=1, seed=2, out_dir=tmp_path)
    rep = usage_stats.report(tmp_path)
    assert rep["day"] == START.isoformat()
    assert rep["billable_records"] == 0 and rep["active_cards"] == 0 and rep["charges_yuan"] is None
    assert rep["refusals"] == {"lost": summary.refused} and summary.refused > 0
    assert rep["peak_hour"] is None and "busiest" not in usage_stats.format_report(rep)


def test_a_card_makes_no_usage_before_its_activation(tmp_path):
    frame = synthetic_cards(200, seed=2, state_shares={"active": 1.0})
    activated = datetime(2026, 11, 3, 12, 0, tzinfo=timezone.utc)
    frame["activated_at"] = pd.Series([activated] * 100 + [pd.NaT] * 100, dtype="datetime64[us, UTC]")
    generate_usage(frame, start=START, days=4, seed=3, out_dir=tmp_path)
    recs = _read(tmp_path / "records")
    late = recs[recs["msisdn"].isin(frame.loc[:99, "msisdn"])]
    assert len(late) > 0
    assert late["start"].min() >= pd.Timestamp(activated)
    always = recs[recs["msisdn"].isin(frame.loc[100:, "msisdn"])]
    assert always["start"].min() < pd.Timestamp(activated)
    tops = _read(tmp_path / "topups")
    assert (tops[tops["msisdn"].isin(frame.loc[:99, "msisdn"])]["at"] >= pd.Timestamp(activated)).all()


def test_a_cards_frame_without_required_columns_is_refused(tmp_path):
    with pytest.raises(InvalidValue, match="state"):
        generate_usage(pd.DataFrame({"msisdn": [13800138000], "imsi": ["460001234567890"], "province": ["广东省"],
                                     "city": ["深圳市"]}), start=START, days=1, seed=1, out_dir=tmp_path)
    with pytest.raises(InvalidValue, match="days"):
        generate_usage(synthetic_cards(5), start=START, days=0, seed=1, out_dir=tmp_path)


# --- calibration (DOMAIN.md section 7) ------------------------------------------------


@pytest.fixture(scope="module")
def nationwide_store(tmp_path_factory):
    """40,000 active cards spread over the provinces by population, one whole week (so that the
    weekday rhythm averages out): the store and the cards."""
    frame = synthetic_cards(40_000, seed=21, state_shares={"active": 1.0})
    out = tmp_path_factory.mktemp("nationwide")
    generate_usage(frame, start=START, days=7, seed=5, out_dir=out)
    return out, frame


@pytest.fixture(scope="module")
def nationwide(nationwide_store) -> pd.DataFrame:
    """Per card of the nationwide store its province, data (GiB) and outgoing voice minutes, both
    scaled to 30 days. Large enough that a mean's standard error is about 1%."""
    out, frame = nationwide_store
    recs = pd.read_parquet(out / "records", columns=["msisdn", "type", "duration_s", "bytes_up", "bytes_down"])
    data = (recs["bytes_up"] + recs["bytes_down"]).groupby(recs["msisdn"]).sum()
    voice = recs.loc[recs["type"] == "voice_mo", "duration_s"].groupby(recs["msisdn"]).sum()
    per_card = frame.set_index("msisdn")[["province"]]
    per_card["data_gib"] = data.reindex(per_card.index, fill_value=0) / GIB * 30 / 7
    per_card["voice_min"] = voice.reindex(per_card.index, fill_value=0) / 60 * 30 / 7
    return per_card


def _mean_and_se(values: pd.Series) -> tuple[float, float]:
    return float(values.mean()), float(values.std() / np.sqrt(len(values)))


def test_data_per_active_card_over_30_days_is_the_national_dou(nationwide):
    mean, se = _mean_and_se(nationwide["data_gib"])
    assert se < 0.015 * DOU_GIB
    assert abs(mean - DOU_GIB) <= 3 * se, (mean, se)


def test_outgoing_voice_minutes_per_active_card_over_30_days_are_the_national_figure(nationwide):
    mean, se = _mean_and_se(nationwide["voice_min"])
    assert se < 0.015 * VOICE_MO_MINUTES
    assert abs(mean - VOICE_MO_MINUTES) <= 3 * se, (mean, se)


def test_the_statistics_dou_and_mou_are_the_national_figures_within_sampling_error(nationwide_store, nationwide):
    """MIIT's national monthly means, as ``usage_stats.per_user`` computes them from the store."""
    tables = engine.store_tables(nationwide_store[0])
    national = usage_stats.per_user(tables["records"], tables["cards"]).to_pandas().iloc[0]
    assert national["users"] == len(nationwide) and national["days"] == 7
    for column, published, per_card in (("dou_gb", DOU_GIB, "data_gib"), ("mou", VOICE_MO_MINUTES, "voice_min")):
        mean, se = _mean_and_se(nationwide[per_card])
        assert national[column] == pytest.approx(mean)
        assert abs(national[column] - published) <= 3 * se, (column, national[column], published, se)


def test_the_provinces_dou_follows_the_published_ordering_within_sampling_error(nationwide_store, nationwide):
    """Per home province, ``per_user``'s DOU ranks as ``_PROVINCE_DOU_GB`` does (rank correlation), and
    no pair of provinces is the wrong way round by more than 3 standard errors of their difference."""
    tables = engine.store_tables(nationwide_store[0])
    got = usage_stats.per_user(tables["records"], tables["cards"], by=["region"]).to_pandas().set_index("region")
    published = pd.Series({p: _province_factors(p)[0] for p in got.index})
    se = nationwide.groupby("province")["data_gib"].agg(lambda v: v.std() / np.sqrt(len(v)))
    rank_correlation = np.corrcoef(got["dou_gb"].rank(), published.loc[got.index].rank())[0, 1]
    assert rank_correlation > 0.7, rank_correlation
    wrong = [(a, b) for a in got.index for b in got.index
             if published[a] > published[b]
             and got.loc[a, "dou_gb"] - got.loc[b, "dou_gb"] < -3 * np.hypot(se[a], se[b])]
    assert wrong == []
    top = got["dou_gb"].idxmax()
    assert top.startswith("西藏") or got.loc[top, "dou_gb"] - got.loc["西藏自治区", "dou_gb"] < 3 * np.hypot(se[top], se["西藏自治区"])


def test_sms_is_small_next_to_calls(cards, billable):
    per_card_day = (billable["type"] == "sms_mo").sum() / len(_active(cards)) / DAYS
    assert 0.05 <= per_card_day <= 1.0
    assert (billable["type"] == "sms_mo").sum() < (billable["type"] == "voice_mo").sum()


def test_usage_peaks_in_the_evening_and_dips_before_dawn(billable):
    hour = (billable["start"].dt.tz_convert("Asia/Shanghai").dt.hour).value_counts()
    evening = hour.loc[[19, 20, 21, 22]].mean()
    pre_dawn = hour.loc[[2, 3, 4, 5]].mean()
    assert evening > 3 * pre_dawn
    data = billable[billable["type"] == "data"]
    volume = (data["bytes_down"] + data["bytes_up"]).groupby(data["start"].dt.tz_convert("Asia/Shanghai").dt.hour).sum()
    assert volume.loc[[19, 20, 21, 22]].mean() > 3 * volume.loc[[2, 3, 4, 5]].mean()


def test_weekends_carry_less_voice_and_more_data_than_weekdays(billable):
    day = pd.to_datetime(billable["day"].astype(str))
    weekend = day.dt.day_of_week >= 5
    n_weekend, n_weekday = day[weekend].nunique(), day[~weekend].nunique()
    voice = billable["type"] == "voice_mo"
    assert (voice & weekend).sum() / n_weekend < 0.95 * (voice & ~weekend).sum() / n_weekday
    data_bytes = billable["bytes_down"] + billable["bytes_up"]
    assert data_bytes[weekend].sum() / n_weekend > data_bytes[~weekend].sum() / n_weekday


def test_the_top_tenth_of_users_carry_more_than_40_percent_of_data(billable):
    per_card = (billable["bytes_up"] + billable["bytes_down"]).groupby(billable["msisdn"]).sum().sort_values(ascending=False)
    top = per_card.iloc[: len(per_card) // 10].sum()
    assert top / per_card.sum() > 0.40
    assert per_card.median() < per_card.mean()  # skewed, not merely spread


def test_per_card_activity_varies_within_sensible_bounds(cards, billable):
    per_card = (billable["bytes_up"] + billable["bytes_down"]).groupby(billable["msisdn"]).sum() / GIB * 30 / DAYS
    assert per_card.max() < 1_000  # fair use: no one streams a terabyte a month
    assert per_card.quantile(0.9) > 4 * per_card.quantile(0.1)


#: Provinces MIIT's text names (hkops.network.usage._PROVINCE_DOU_GB has the sources): above 20 GB a
#: month in April 2024 (national 17.82), the three lowest in October 2021, and the rest of the
#: northeast, the region with the lowest DOU in December 2023 (14.86 against 18.63 to 19.91).
ABOVE_20_GB = ("西藏", "青海", "宁夏", "海南", "新疆", "云南", "湖南", "贵州")
THREE_LOWEST = ("黑龙江", "上海", "河北")
REST_OF_NORTHEAST = ("辽宁", "吉林")


def _in(provinces: pd.Series, names: tuple[str, ...]) -> pd.Series:
    return provinces.map(lambda p: p.startswith(names))


@pytest.mark.parametrize("names,direction", [(ABOVE_20_GB, 1), (THREE_LOWEST, -1), (REST_OF_NORTHEAST, -1)],
                         ids=["above-20-GB", "three-lowest", "rest-of-northeast"])
def test_provincial_data_use_follows_miits_published_ordering(nationwide, names, direction):
    """The group's data per card against the rest of the country: on the side MIIT's figures put it,
    by more than 3 standard errors (flat provincial factors fail this), and within 4 standard errors
    of the ratio the provincial factors give."""
    group = _in(nationwide["province"], names)
    (inside, se_in), (outside, se_out) = _mean_and_se(nationwide.loc[group, "data_gib"]), \
        _mean_and_se(nationwide.loc[~group, "data_gib"])
    ratio = inside / outside
    se_ratio = ratio * np.sqrt((se_in / inside) ** 2 + (se_out / outside) ** 2)
    factors = nationwide["province"].map(lambda p: _province_factors(p)[0])
    expected = factors[group].mean() / factors[~group].mean()
    assert direction * (ratio - 1) > 3 * se_ratio, (ratio, se_ratio)
    assert abs(ratio - expected) <= 4 * se_ratio, (ratio, expected, se_ratio)


def test_every_province_has_a_sourced_data_figure_and_voice_has_none():
    for province in DEMO_CITIES:
        data, voice = _province_factors(province)
        assert data != 1.0 and voice == 1.0, province  # no province falls back to the national mean
    assert _province_factors("Atlantis") == (1.0, 1.0)


def test_about_half_of_active_cards_are_5g(billable):
    rat = billable.groupby("msisdn")["rat"].first().astype(str)
    assert 0.45 <= (rat == "5G").mean() <= 0.59


def test_most_usage_is_in_the_home_city_with_some_travel(cards, billable):
    home = cards.set_index("msisdn")["city"]
    at_home = (billable["area"].astype(str).to_numpy() == home.loc[billable["msisdn"]].to_numpy()).mean()
    assert 0.9 < at_home < 1.0


# --- records, money and the store ----------------------------------------------------


def test_money_is_integer_fen_and_records_leave_the_network_unrated(store, records, topups):
    out, _ = store
    day = f"day={START.isoformat()}"
    assert pq.read_schema(out / "records" / day / "part-0.parquet").field("charge_fen").type == pa.int64()
    assert pq.read_schema(out / "topups" / day / "part-0.parquet").field("amount_fen").type == pa.int64()
    assert (records["charge_fen"] == 0).all()  # billing rates by the plan sold (hkops.analytics.usage_stats.rate)
    assert (topups["amount_fen"] % 100 == 0).all() and (topups["amount_fen"] > 0).all()


def test_the_cards_are_stored_beside_the_records_with_their_plan_and_channel(store, cards):
    out, _ = store
    stored = pd.read_parquet(out / "cards")
    assert list(stored.columns) == ["msisdn", "province", "city", "state", "plan", "channel", "agent"]
    assert sorted(stored["msisdn"]) == sorted(cards["msisdn"])
    assert set(stored["plan"]) <= {"CM-58", "CM-128", "CU-39", "CT-29"}
    direct = stored["channel"] == "direct"
    assert 0.2 < direct.mean() < 0.4 and stored.loc[direct, "agent"].isna().all()
    assert (stored.loc[~direct, "agent"] == stored.loc[~direct, "channel"]).all()


def test_records_carry_the_fields_of_a_usage_record(records):
    assert list(records.columns) == ["record_id", "type", "imsi", "msisdn", "start", "duration_s", "bytes_up",
                                     "bytes_down", "cell_id", "area", "region", "rat", "charge_fen", "refused",
                                     "refusal", "day"]
    assert set(records["type"].astype(str)) == {"voice_mo", "voice_mt", "sms_mo", "sms_mt", "data"}
    assert records["imsi"].astype(str).str.fullmatch(r"\d{15}").all()
    data = records[(records["type"] == "data") & ~records["refused"]]
    assert (data["bytes_down"] > data["bytes_up"]).mean() > 0.99
    not_data = records[records["type"] != "data"]
    assert (not_data[["bytes_up", "bytes_down"]] == 0).all().all()
    assert (records.loc[records["type"].isin(["sms_mo", "sms_mt"]), "duration_s"] == 0).all()


def test_partitions_are_hive_style_by_local_day_and_strings_are_dictionary_encoded(store, records):
    out, _ = store
    days = sorted(p.name for p in (out / "records").iterdir())
    assert days[0] == f"day={START.isoformat()}" and len(days) == DAYS
    local_day = records["start"].dt.tz_convert("Asia/Shanghai").dt.strftime("%Y-%m-%d")
    assert (local_day == records["day"].astype(str)).all()
    schema = pq.read_schema(out / "records" / days[0] / "part-0.parquet")
    for name in ("type", "imsi", "area", "region", "refusal"):
        assert pa.types.is_dictionary(schema.field(name).type), name
    assert schema.field("start").type == pa.timestamp("us", tz="UTC")


def test_the_store_is_readable_by_duckdb_with_the_same_numbers_as_pandas(store, records):
    out, _ = store
    con = duckdb.connect()
    n, data_bytes, days = con.execute(
        f"SELECT count(*), sum(bytes_up + bytes_down)::BIGINT, count(DISTINCT day) "
        f"FROM read_parquet('{out}/records/*/*.parquet', hive_partitioning = true)").fetchone()
    assert n == len(records)
    assert data_bytes == int((records["bytes_up"] + records["bytes_down"]).sum())
    assert days == DAYS


# --- statistics ----------------------------------------------------------------------


def test_daily_report_equals_a_pandas_recomputation(store, records, topups):
    out, _ = store
    day = date(2026, 11, 7)
    rep = usage_stats.daily_report(out, day)
    r = records[records["day"].astype(str) == day.isoformat()]
    b = r[~r["refused"]]
    t = topups[topups["day"].astype(str) == day.isoformat()]
    data_bytes = int((b["bytes_up"] + b["bytes_down"]).sum())
    assert rep["records"] == len(r)
    assert rep["billable_records"] == len(b)
    assert rep["refused_records"] == int(r["refused"].sum())
    assert rep["active_cards"] == b["msisdn"].nunique()
    assert rep["data_bytes"] == data_bytes
    assert Decimal(rep["data_gb"]) == (Decimal(data_bytes) / GIB).quantize(Decimal("0.001"))
    vmo = int(b.loc[b["type"] == "voice_mo", "duration_s"].sum())
    assert Decimal(rep["voice_mo_minutes"]) == (Decimal(vmo) / 60).quantize(Decimal("0.1"))
    assert rep["voice_mo_calls"] == int((b["type"] == "voice_mo").sum())
    assert rep["sms_mo"] == int((b["type"] == "sms_mo").sum())
    assert rep["sms_mt"] == int((b["type"] == "sms_mt").sum())
    assert rep["charges_yuan"] is None  # no plans given to rate by
    assert rep["topups"]["count"] == len(t)
    assert Decimal(rep["topups"]["yuan"]) == Decimal(int(t["amount_fen"].sum())) / 100
    by_reason = r[r["refused"]].groupby(r["refusal"].astype(str)).size()
    assert rep["refusals"] == {k: int(v) for k, v in by_reason.items()}
    regions = (b["bytes_up"] + b["bytes_down"]).groupby(b["region"].astype(str)).sum().sort_values(ascending=False)
    assert [x["region"] for x in rep["top_regions"]] == list(regions.index[:5])
    hours = b["start"].dt.tz_convert("Asia/Shanghai").dt.hour.value_counts()
    assert rep["peak_hour"] == hours.idxmax()


def test_daily_report_is_json_ready_with_money_as_decimal_strings(store):
    rep = usage_stats.report(store[0])  # the latest day
    assert rep["day"] == date(2026, 12, 1).isoformat()
    assert json.loads(json.dumps(rep, ensure_ascii=False)) == rep
    assert isinstance(rep["topups"]["yuan"], str)
    assert all(isinstance(v["yuan"], str) for v in rep["topups"]["by_channel"].values())
    assert rep["peak_hour"] in range(17, 24)
    text = usage_stats.format_report(rep)
    assert rep["day"] in text and "refused" in text


def test_usage_per_card_agrees_with_pandas_and_shows_refused_only_cards(store, records, cards):
    out, _ = store
    per_card = usage_stats.usage_per_card(out)
    b = records[~records["refused"]]
    expected = (b["bytes_up"] + b["bytes_down"]).groupby(b["msisdn"]).sum()
    got = per_card.set_index("msisdn")["data_bytes"]
    assert per_card["msisdn"].nunique() == records["msisdn"].nunique()
    assert (got.loc[expected.index] == expected).all()
    assert per_card["data_bytes"].is_monotonic_decreasing
    assert per_card["voice_mo_s"].dtype == np.int64
    lost = cards[cards["state"] == "lost"]["msisdn"]
    seen_lost = per_card[per_card["msisdn"].isin(lost)]
    assert len(seen_lost) > 0 and (seen_lost["records"] == 0).all() and (seen_lost["refused"] > 0).all()
    one = int(expected.index[0])
    row = usage_stats.usage_per_card(out, msisdn=one)
    assert list(row["msisdn"]) == [one]
    calls = b[(b["msisdn"] == one) & (b["type"] == "voice_mo")]
    assert int(row["voice_mo_s"].iloc[0]) == int(calls["duration_s"].sum())
    assert row["home_area"].iloc[0] == cards.set_index("msisdn").loc[one, "city"]


def test_usage_per_region_and_per_day_add_up_to_the_whole(store, records):
    out, _ = store
    b = records[~records["refused"]]
    total = int((b["bytes_up"] + b["bytes_down"]).sum())
    regions = usage_stats.usage_per_region(out)
    areas = usage_stats.usage_per_region(out, level="area")
    days = usage_stats.usage_per_day(out)
    assert int(regions["data_bytes"].sum()) == int(areas["data_bytes"].sum()) == int(days["data_bytes"].sum()) == total
    assert int(days["refused"].sum()) == int(records["refused"].sum())
    assert len(days) == DAYS
    guangdong = usage_stats.usage_per_day(out, region="广东省", start="2026-11-10", end="2026-11-12")
    g = b[(b["region"] == "广东省") & b["day"].astype(str).isin(["2026-11-10", "2026-11-11", "2026-11-12"])]
    assert len(guangdong) == 3 and int(guangdong["records"].sum()) == len(g)


def test_time_of_day_profile_has_24_local_hours_summing_to_billable_records(store, records):
    out, _ = store
    profile = usage_stats.time_of_day_profile(out)
    assert list(profile["hour"]) == list(range(24))
    assert int(profile["records"].sum()) == int((~records["refused"]).sum())
    assert abs(profile["share"].sum() - 1) < 1e-9
    assert profile.loc[20, "records"] > 3 * profile.loc[4, "records"]
    voice = usage_stats.time_of_day_profile(out, type="voice_mo")
    assert int(voice["data_bytes"].sum()) == 0 and int(voice["voice_s"].sum()) > 0


def test_topups_per_day_agree_with_pandas(store, topups):
    out, _ = store
    per_day = usage_stats.topups_per_day(out)
    assert int(per_day["amount_fen"].sum()) == int(topups["amount_fen"].sum())
    assert int(per_day["topups"].sum()) == len(topups)


def test_an_empty_store_or_a_missing_day_is_explained(store, tmp_path):
    with pytest.raises(InvalidValue, match="hkops usage generate"):
        usage_stats.report(tmp_path)
    with pytest.raises(InvalidValue, match="no usage records"):
        usage_stats.daily_report(store[0], "2030-01-01")
    with pytest.raises(InvalidValue, match="2026-11-01"):
        usage_stats.daily_report(store[0], "2026-13-01")
