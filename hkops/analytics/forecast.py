"""Forecasts and anomalies of daily series (activations, orders, usage per region), with statsmodels.

Two methods, both with weekly seasonality (7 days):

- ``"ets"``: exponential smoothing (Holt-Winters: additive damped trend and additive weekly
  season, as a state-space ETS model, so that it has prediction intervals);
- ``"stl"``: STL decomposition (robust LOESS) of the weekly season, the rest forecast by ETS.

Every forecast reports its back-test error beside it: the same method fitted without the last
:data:`HOLDOUT_DAYS` days, forecast over them and compared with what happened (MAPE in percent,
over the held-back days that were not zero). Anomalies are robust residuals: the residuals of a
robust STL decomposition, scored as (residual − median) / (1.4826 × MAD); a day whose score is
beyond :data:`ANOMALY_SCORE` either way is flagged.

A series is a pandas Series of numbers indexed by day; missing days count as 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from hkops.errors import InvalidValue

SEASON = 7
#: Days held back to measure a forecast's error.
HOLDOUT_DAYS = 28
#: Days a model needs to fit: two weekly seasons.
FIT_DAYS = 2 * SEASON
#: |robust score| beyond which a day is an anomaly.
ANOMALY_SCORE = 4.0
METHODS = ("ets", "stl")
#: STL smoothing windows (days) for anomalies: a season that changes slowly and a trend over about
#: a month, so that a spike stays in the residual instead of being absorbed.
STL_SEASONAL = 31
STL_TREND = 29
#: MAD to standard deviation, for normally distributed residuals.
MAD_SCALE = 1.4826


@dataclass
class Forecast:
    """A series' forecast: ``mean``, ``lower`` and ``upper`` (the ``level`` prediction interval),
    indexed by the days ahead; the back-test error ``mape`` (percent; None when every held-back
    day was 0) and the ``anomalies`` found in the history (day, value, expected, score)."""

    name: str
    method: str
    level: float
    history: "pd.Series"
    mean: "pd.Series"
    lower: "pd.Series"
    upper: "pd.Series"
    mape: float | None
    anomalies: "pd.DataFrame" = field(repr=False)

    def frame(self):
        """History and forecast as one table: day, kind (history or forecast), value, lower, upper,
        anomaly (True on flagged days)."""
        import pandas as pd

        past = pd.DataFrame({"day": self.history.index, "kind": "history", "value": self.history.to_numpy(dtype=float)})
        past["anomaly"] = past["day"].isin(set(self.anomalies["day"]))
        ahead = pd.DataFrame({"day": self.mean.index, "kind": "forecast", "value": self.mean.to_numpy(),
                              "lower": self.lower.to_numpy(), "upper": self.upper.to_numpy(), "anomaly": False})
        return pd.concat([past, ahead], ignore_index=True)


def daily_series(values, name: str = "series"):
    """``values`` (a Series indexed by day, or a DataFrame with ``day`` and ``value``) as a float
    Series over every day from its first to its last, missing days 0. InvalidValue when empty, not
    numeric or negative."""
    import pandas as pd

    if isinstance(values, pd.DataFrame):
        if not {"day", "value"} <= set(values.columns):
            raise InvalidValue(name, list(values.columns), "needs the columns day and value")
        values = values.set_index("day")["value"]
    if values is None or len(values) == 0:
        raise InvalidValue(name, "no days", "has no data to forecast (pick a wider date range, region or plan)")
    try:
        series = pd.Series(pd.to_numeric(values.to_numpy(), errors="raise"), dtype=float,
                           index=pd.to_datetime(pd.Index(values.index)))
    except (TypeError, ValueError):
        raise InvalidValue(name, str(values.dtype), "must hold numbers") from None
    if series.isna().any() or (series < 0).any():
        raise InvalidValue(name, "missing or negative values", "must be counts or volumes of 0 or more")
    series = series.groupby(level=0).sum()
    days = pd.date_range(series.index.min(), series.index.max(), freq="D")
    return series.reindex(days, fill_value=0.0).asfreq("D")


def _check(series, name: str, method: str, holdout: int) -> None:
    if method not in METHODS:
        raise InvalidValue("method", method, f"must be one of {', '.join(METHODS)}")
    needed = FIT_DAYS + holdout
    if len(series) < needed:
        raise InvalidValue(name, f"{len(series)} days",
                           f"is too short: a forecast needs at least {needed} days ({FIT_DAYS} to fit and "
                           f"{holdout} held back to measure its error)")


def _predict(series, method: str, horizon: int, level: float):
    """(mean, lower, upper) for ``horizon`` days after ``series``."""
    import warnings

    import numpy as np
    import pandas as pd
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    y = series.astype(float)
    flat = float(y.std()) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on short or flat series
        if flat:  # nothing to fit: the level goes on, with no spread
            value = float(y.iloc[-1])
            mean = np.full(horizon, value)
            lower, upper = mean.copy(), mean.copy()
        elif method == "ets":
            fitted = ETSModel(y, error="add", trend="add", damped_trend=True, seasonal="add",
                              seasonal_periods=SEASON).fit(disp=False)
            frame = fitted.get_prediction(start=len(y), end=len(y) + horizon - 1).summary_frame(alpha=1 - level)
            mean, lower, upper = frame["mean"].to_numpy(), frame["pi_lower"].to_numpy(), frame["pi_upper"].to_numpy()
        else:
            from statsmodels.tsa.forecasting.stl import STLForecast

            fitted = STLForecast(y, ETSModel, model_kwargs={"error": "add", "trend": "add", "damped_trend": True},
                                 period=SEASON, robust=True).fit(fit_kwargs={"disp": False})
            frame = fitted.get_prediction(start=len(y), end=len(y) + horizon - 1).summary_frame(alpha=1 - level)
            # STL's wrapper names the ETS prediction interval mean_ci_*
            mean, lower, upper = (frame["mean"].to_numpy(), frame["mean_ci_lower"].to_numpy(),
                                  frame["mean_ci_upper"].to_numpy())
    index = pd.date_range(y.index[-1] + pd.Timedelta(days=1), periods=horizon, freq="D")
    clip = lambda a: pd.Series(np.maximum(a, 0.0), index=index)  # noqa: E731 - counts never go below 0
    return clip(mean), clip(lower), clip(upper)


def mape(actual, predicted) -> float | None:
    """Mean absolute percentage error over the days whose actual value is not 0 (None if none is)."""
    import numpy as np

    actual, predicted = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    kept = actual != 0
    if not kept.any():
        return None
    return float(100 * np.mean(np.abs(actual[kept] - predicted[kept]) / np.abs(actual[kept])))


def backtest(series, method: str = "ets", holdout: int = HOLDOUT_DAYS, level: float = 0.9) -> float | None:
    """MAPE (percent) of ``method`` fitted without the last ``holdout`` days, forecasting them."""
    mean, _, _ = _predict(series.iloc[:-holdout], method, holdout, level)
    return mape(series.iloc[-holdout:].to_numpy(), mean.to_numpy())


def anomalies(series, threshold: float = ANOMALY_SCORE):
    """Days whose robust STL residual scores beyond ``threshold``: day, value, expected (the
    trend and season there), score."""
    import numpy as np
    import pandas as pd
    from statsmodels.tsa.seasonal import STL

    if len(series) < FIT_DAYS:
        raise InvalidValue("series", f"{len(series)} days", f"is too short to look for anomalies (needs {FIT_DAYS})")
    result = STL(series.astype(float), period=SEASON, seasonal=STL_SEASONAL, trend=STL_TREND, robust=True).fit()
    resid = result.resid.to_numpy()
    centre = float(np.median(resid))
    deviation = resid - centre
    negligible = 1e-9 * max(1.0, float(np.abs(series.to_numpy()).max()))
    spread = MAD_SCALE * float(np.median(np.abs(deviation)))
    if spread <= negligible:  # most days fit exactly: scale by the mean deviation instead
        spread = 1.2533 * float(np.mean(np.abs(deviation)))
    score = deviation / spread if spread > negligible else np.zeros_like(deviation)  # nothing stands out
    flagged = np.abs(score) > threshold
    return pd.DataFrame({"day": series.index[flagged], "value": series.to_numpy()[flagged],
                         "expected": (series.to_numpy() - resid)[flagged], "score": score[flagged]})


def forecast(values, *, name: str = "series", method: str = "ets", horizon: int = 28, level: float = 0.9,
             holdout: int = HOLDOUT_DAYS) -> Forecast:
    """Forecast ``values`` (see :func:`daily_series`) ``horizon`` days ahead with ``method``, its
    ``level`` prediction interval, back-test MAPE and anomalies. InvalidValue naming the series
    when it is empty or shorter than :data:`FIT_DAYS` + ``holdout`` days."""
    if not 1 <= int(horizon) <= 366:
        raise InvalidValue("horizon", horizon, "must be 1 to 366 days")
    if not 0.5 <= float(level) < 1:
        raise InvalidValue("level", level, "must be a fraction from 0.5 to below 1, such as 0.9")
    series = daily_series(values, name)
    _check(series, name, method, holdout)
    mean, lower, upper = _predict(series, method, int(horizon), float(level))
    return Forecast(name, method, float(level), series, mean, lower, upper, backtest(series, method, holdout, level),
                    anomalies(series))


def forecast_all_regions(frame, *, value: str = "value", method: str = "ets", horizon: int = 28,
                         level: float = 0.9, holdout: int = HOLDOUT_DAYS):
    """Forecast every region of ``frame`` (columns ``day``, ``region`` and ``value``).

    Returns (forecasts, summary): forecasts has one row per region and day (history and
    forecast, as :meth:`Forecast.frame`, with ``region``); summary one row per region with its
    ``mape``, the number of ``anomalies`` and ``problem`` (why a region could not be forecast,
    e.g. too few days; the other regions are still forecast)."""
    import pandas as pd

    if frame is None or len(frame) == 0:
        raise InvalidValue("series", "no rows", "has no data to forecast (pick a wider date range, region or plan)")
    missing = {"day", "region", value} - set(frame.columns)
    if missing:
        raise InvalidValue("series", sorted(missing), "columns missing: needs day, region and the value")
    parts, summary = [], []
    for region, rows in frame.groupby("region", sort=True):
        try:
            result = forecast(rows.set_index("day")[value], name=f"{region}", method=method, horizon=horizon,
                              level=level, holdout=holdout)
        except InvalidValue as problem:
            summary.append({"region": region, "method": method, "mape": None, "anomalies": 0, "problem": str(problem)})
            continue
        parts.append(result.frame().assign(region=region))
        summary.append({"region": region, "method": method, "mape": result.mape, "anomalies": len(result.anomalies),
                        "problem": None})
    forecasts = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["day", "kind", "value", "lower", "upper", "anomaly", "region"])
    return forecasts, pd.DataFrame(summary, columns=["region", "method", "mape", "anomalies", "problem"])


# ---------------------------------------------------------------- the series of the business


def sales_series(db, step: str = "activated", *, actor=None, filters=None, con=None):
    """Orders reaching ``step`` (placed, activated, ...) per local day and region (ship-to
    province): columns day, region, value."""
    from hkops.analytics import sales
    from hkops.analytics.engine import execute

    if step not in (*sales.STEPS, *sales.OUTCOME_ACTIONS):
        raise InvalidValue("step", step, f"must be one of {', '.join((*sales.STEPS, *sales.OUTCOME_ACTIONS))}")
    steps = sales.steps_for(db, actor=actor, filters=filters, con=con)
    long = execute(sales.trends(steps, "day", by="province"), days=True)
    long = long[long["step"] == step]
    return long.rename(columns={"period": "day", "province": "region", "orders": "value"})[["day", "region", "value"]]


USAGE_MEASURES = ("data_bytes", "voice_s", "sms", "records")


def usage_series(store_dir, measure: str = "data_bytes", *, start: date | None = None, end: date | None = None,
                 region: str | None = None, con=None):
    """Billable usage per local day and region from the Parquet usage store (on ``con``, default a
    new DuckDB): ``measure`` one of data_bytes, voice_s, sms, records; columns day, region, value."""
    from hkops.analytics.engine import connect, execute, usage_table

    if measure not in USAGE_MEASURES:
        raise InvalidValue("measure", measure, f"must be one of {', '.join(USAGE_MEASURES)}")
    records = usage_table(con if con is not None else connect(), store_dir, "records")
    billable = records.filter(~records.refused)
    if start is not None:
        billable = billable.filter(billable.day >= start)
    if end is not None:
        billable = billable.filter(billable.day <= end)
    if region is not None:
        billable = billable.filter(billable.region == region)
    measures = {"data_bytes": (billable.bytes_up + billable.bytes_down).sum(),
                "voice_s": billable.duration_s.sum(where=billable.type.isin(["voice_mo", "voice_mt"])),
                "sms": billable.count(where=billable.type.isin(["sms_mo", "sms_mt"])),
                "records": billable.count()}
    per_day = billable.group_by(["day", "region"]).aggregate(value=measures[measure].fill_null(0))
    frame = execute(per_day.order_by(["day", "region"]), days=True)
    frame["day"] = [d if isinstance(d, date) else date.fromisoformat(str(d)[:10]) for d in frame["day"]]
    return frame

