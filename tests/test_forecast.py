"""Forecasts and anomalies on synthetic series whose weekly season is known, and on the business's
own series (orders per region from the database, usage per region from a Parquet store)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from hkops.analytics import forecast as fc
from hkops.errors import InvalidValue
from scoping_world import two_agents  # noqa: F401  (fixture)

DAYS = 120
SPIKE_DAY = 90


def weekly(seed: int = 1, days: int = DAYS, spike: float = 0.0) -> pd.Series:
    """100 a day, ±30 over the week, a slow upward trend and noise of 3; ``spike`` added on day 90."""
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    values = 100 + 0.2 * t + 30 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 3, days)
    if spike:
        values[SPIKE_DAY] += spike
    return pd.Series(values, index=pd.date_range("2026-01-01", periods=days, freq="D"))


@pytest.mark.parametrize("method", fc.METHODS)
def test_a_weekly_series_is_forecast_with_a_small_back_test_error_and_intervals_around_the_season(method):
    series = weekly()
    result = fc.forecast(series, name="demo", method=method, horizon=14, level=0.9)
    assert result.mape is not None and result.mape < 8, result.mape  # noise is 3 on about 120: ~2.5%
    truth = 100 + 0.2 * np.arange(DAYS, DAYS + 14) + 30 * np.sin(2 * np.pi * np.arange(DAYS, DAYS + 14) / 7)
    assert np.mean(np.abs(result.mean.to_numpy() - truth)) < 8
    assert (result.lower.to_numpy() <= result.mean.to_numpy()).all() and (result.mean <= result.upper).all()
    assert ((result.lower.to_numpy() <= truth) & (truth <= result.upper.to_numpy())).mean() >= 0.7
    assert list(result.mean.index) == list(pd.date_range("2026-05-01", periods=14, freq="D"))
    frame = result.frame()
    assert (frame.kind == "history").sum() == DAYS and (frame.kind == "forecast").sum() == 14


def test_the_back_test_holds_back_the_last_28_days():
    series = weekly()
    shifted = series.copy()
    shifted.iloc[-28:] *= 2  # a level change the model could not have seen
    assert fc.backtest(shifted) > 30 > fc.backtest(series)
    assert fc.mape([0, 10, 20], [5, 11, 18]) == pytest.approx(100 * (0.1 + 0.1) / 2)  # zero days left out
    assert fc.mape([0, 0], [1, 2]) is None


def test_an_injected_spike_is_flagged_as_an_anomaly_and_little_else():
    found = fc.anomalies(weekly(spike=150))
    assert pd.Timestamp("2026-01-01") + pd.Timedelta(days=SPIKE_DAY) in set(found["day"])
    assert len(found) <= 3
    spike = found.loc[found.score.idxmax()]
    assert spike.score > 10 and spike.value - spike.expected == pytest.approx(150, abs=15)
    assert len(fc.anomalies(weekly())) <= 2


def test_short_empty_and_bad_series_are_refused_clearly():
    with pytest.raises(InvalidValue, match=r"activations Hubei '30 days': is too short: a forecast needs at least 42"):
        fc.forecast(weekly(days=30), name="activations Hubei")
    with pytest.raises(InvalidValue, match="has no data"):
        fc.forecast(pd.Series([], dtype=float), name="orders")
    with pytest.raises(InvalidValue, match="must be counts or volumes"):
        fc.forecast(pd.Series([-1.0] * 50, index=pd.date_range("2026-01-01", periods=50)))
    with pytest.raises(InvalidValue, match="method 'arima'"):
        fc.forecast(weekly(), method="arima")
    with pytest.raises(InvalidValue, match="horizon 0"):
        fc.forecast(weekly(), horizon=0)


def test_missing_days_count_as_zero_and_a_flat_series_forecasts_flat():
    gappy = pd.Series([5.0, 7.0], index=[date(2026, 1, 1), date(2026, 1, 4)])
    assert fc.daily_series(gappy).tolist() == [5, 0, 0, 7]
    flat = fc.forecast(pd.Series(4.0, index=pd.date_range("2026-01-01", periods=60)), horizon=3)
    assert flat.mean.tolist() == [4, 4, 4] and flat.mape == 0 and flat.anomalies.empty


def test_forecast_all_regions_forecasts_each_region_and_names_those_it_cannot():
    long = pd.concat([
        pd.DataFrame({"day": weekly(seed=2).index, "region": "Beijing", "value": weekly(seed=2).to_numpy()}),
        pd.DataFrame({"day": weekly(seed=3).index, "region": "Hubei", "value": weekly(seed=3).to_numpy() * 2}),
        pd.DataFrame({"day": weekly(days=20).index, "region": "Tibet", "value": weekly(days=20).to_numpy()})])
    forecasts, summary = fc.forecast_all_regions(long, horizon=7)
    summary = summary.set_index("region")
    assert summary.loc["Beijing", "mape"] < 8 and summary.loc["Hubei", "mape"] < 8
    assert "Tibet" in summary.index and "too short" in summary.loc["Tibet", "problem"]
    assert set(forecasts.region) == {"Beijing", "Hubei"}
    assert ((forecasts.region == "Hubei") & (forecasts.kind == "forecast")).sum() == 7
    with pytest.raises(InvalidValue, match="has no data"):
        fc.forecast_all_regions(long.iloc[:0])


def test_usage_per_region_and_day_comes_from_the_parquet_store(tmp_path):
    from hkops.network.usage import generate_usage, synthetic_cards

    generate_usage(synthetic_cards(60, provinces={"北京市": ["北京市"], "湖北省": ["武汉市"]}),
                   start=date(2026, 10, 1), days=3, seed=3, out_dir=tmp_path)
    series = fc.usage_series(tmp_path, "records")
    assert sorted(set(series.region)) == ["北京市", "湖北省"]
    assert sorted(set(series.day)) == [date(2026, 10, 1), date(2026, 10, 2), date(2026, 10, 3)]
    import duckdb

    with duckdb.connect() as con:
        (billable,) = con.execute(f"SELECT count(*) FROM read_parquet('{tmp_path}/records/*/*.parquet') "
                                  "WHERE NOT refused").fetchone()
    assert series.value.sum() == billable
    one = fc.usage_series(tmp_path, "data_bytes", region="湖北省", start=date(2026, 10, 2))
    assert set(one.region) == {"湖北省"} and min(one.day) == date(2026, 10, 2)
    with pytest.raises(InvalidValue, match="measure 'minutes'"):
        fc.usage_series(tmp_path, "minutes")
    with pytest.raises(InvalidValue, match="usage store"):
        fc.usage_series(tmp_path / "nothing")


def test_orders_per_region_come_from_the_database(two_agents):
    series = fc.sales_series(two_agents.db, "placed", actor="tester")
    assert series.columns.tolist() == ["day", "region", "value"] and series.value.sum() == 2
    with pytest.raises(InvalidValue, match="step 'sold'"):
        fc.sales_series(two_agents.db, "sold", actor="tester")

