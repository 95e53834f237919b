"""The rules' detectors: vectorised over a micro-batch of the usage feed (pandas and numpy,
never a Python loop over records), with the little state they carry between batches.

:class:`Detector` keeps, for the batches consumed so far: each card's last place and time
(impossible travel), each card's data of the current local day (usage spike), and the
records per province per time bucket (region drop). That state is derived from the feed
alone, so a restarted monitor rebuilds it from the batches up to its watermark
(:meth:`Detector.rebuild`) and goes on exactly where it stopped.

A *finding* is one row of the frame :meth:`Detector.evaluate` returns: rule, kind,
severity, subject, window, first_seen and last_seen (UTC microseconds), hits (records),
details (JSON text) and written_at (when the earliest record behind it entered the feed).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from hkops.monitoring.rules import Rule

US_PER_S = 1_000_000
US_PER_MINUTE = 60 * US_PER_S
US_PER_HOUR = 3_600 * US_PER_S
US_PER_DAY = 24 * US_PER_HOUR
SHANGHAI_OFFSET_US = 8 * US_PER_HOUR
FINDING_COLUMNS = ["rule", "kind", "severity", "subject", "window", "first_seen", "last_seen", "hits", "details",
                   "written_at"]
#: Columns of the feed the detectors read.
FEED_COLUMNS = ["msisdn", "start", "region", "bytes_up", "bytes_down", "refused", "refusal", "written_at"]

#: Where each province is, for distances: its capital (latitude, longitude in degrees).
PROVINCE_PLACES = {
    "北京": (39.90, 116.41), "天津": (39.13, 117.20), "河北": (38.04, 114.51), "山西": (37.87, 112.55),
    "内蒙古": (40.84, 111.75), "辽宁": (41.80, 123.43), "吉林": (43.82, 125.32), "黑龙江": (45.80, 126.53),
    "上海": (31.23, 121.47), "江苏": (32.06, 118.80), "浙江": (30.27, 120.16), "安徽": (31.82, 117.23),
    "福建": (26.07, 119.30), "江西": (28.68, 115.86), "山东": (36.65, 117.12), "河南": (34.75, 113.62),
    "湖北": (30.59, 114.31), "湖南": (28.23, 112.94), "广东": (23.13, 113.26), "广西": (22.82, 108.37),
    "海南": (20.04, 110.20), "重庆": (29.56, 106.55), "四川": (30.57, 104.07), "贵州": (26.65, 106.63),
    "云南": (25.04, 102.71), "西藏": (29.65, 91.14), "陕西": (34.34, 108.94), "甘肃": (36.06, 103.83),
    "青海": (36.62, 101.78), "宁夏": (38.49, 106.23), "新疆": (43.83, 87.62),
}


def place_of(region: str) -> tuple[float, float]:
    """(latitude, longitude) of a province's capital; NaN for a province not in the table."""
    for key, place in PROVINCE_PLACES.items():
        if str(region).startswith(key):
            return place
    return (np.nan, np.nan)


def distance_km(lat1, lon1, lat2, lon2):
    """Great-circle distance (haversine, Earth radius 6371 km), element-wise."""
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(a, dtype=float)) for a in (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


def window_start(us: np.ndarray, hours: int) -> np.ndarray:
    """The start (UTC µs) of the ``hours``-long window holding each time, windows aligned on
    Asia/Shanghai midnight."""
    width = hours * US_PER_HOUR
    return (us + SHANGHAI_OFFSET_US) // width * width - SHANGHAI_OFFSET_US


def labels(starts: np.ndarray, minutes: bool = True) -> np.ndarray:
    """Window labels in Asia/Shanghai time: "2026-11-29 14:05" (or "2026-11-29")."""
    unique, inverse = np.unique(starts, return_inverse=True)
    text = (pd.to_datetime(unique + SHANGHAI_OFFSET_US, unit="us")
            .strftime("%Y-%m-%d %H:%M" if minutes else "%Y-%m-%d").to_numpy(object))
    return text[inverse]


def as_frame(table) -> pd.DataFrame:
    """A feed batch (Arrow table) as the frame the detectors read: times as int64 µs UTC,
    ``region`` and ``refusal`` categorical, and each record's ``lat``/``lon`` (its province)."""
    columns = [c for c in FEED_COLUMNS if c in table.schema.names]
    frame = table.select(columns).to_pandas()
    if "written_at" not in frame.columns:  # records from elsewhere than the feed: no feed time
        frame["written_at"] = pd.Series(np.zeros(len(frame), "datetime64[us]"))
    for column in ("start", "written_at"):
        frame[column] = frame[column].to_numpy("datetime64[us]").astype(np.int64) if len(frame) else \
            np.zeros(0, np.int64)
    for column in ("region", "refusal"):
        if not isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype("category")
    regions = frame["region"].cat
    places = np.array([place_of(name) for name in regions.categories], dtype=float).reshape(-1, 2)
    codes = regions.codes.to_numpy()
    frame["lat"], frame["lon"] = places[codes, 0], places[codes, 1]
    return frame


def _findings(rule: Rule, frame: pd.DataFrame) -> pd.DataFrame:
    """Group the records that fired ``rule`` (columns subject, start, written_at, window and the
    detail columns) into one finding per subject and window; the details are the last record's."""
    if frame.empty:
        return pd.DataFrame(columns=FINDING_COLUMNS)
    subject = frame["subject"].to_numpy(object)
    window = frame["window"].to_numpy(object)
    codes, _ = pd.factorize(pd.Series(subject + "\x00" + window))
    k = int(codes.max()) + 1
    start, written = frame["start"].to_numpy(np.int64), frame["written_at"].to_numpy(np.int64)
    first, last = np.full(k, np.iinfo(np.int64).max), np.full(k, np.iinfo(np.int64).min)
    earliest, final = np.full(k, np.iinfo(np.int64).max), np.full(k, -1)
    np.minimum.at(first, codes, start)
    np.maximum.at(last, codes, start)
    np.minimum.at(earliest, codes, written)
    np.maximum.at(final, codes, np.arange(len(codes)))
    detail_columns = [c for c in frame.columns if c not in ("subject", "window", "start", "written_at")]
    details = frame[detail_columns].iloc[final].to_dict("records") if detail_columns else [None] * k
    return pd.DataFrame({
        "rule": rule.name, "kind": rule.kind, "severity": rule.severity, "subject": subject[final],
        "window": window[final], "first_seen": first, "last_seen": last, "hits": np.bincount(codes, minlength=k),
        "details": [None if d is None else json.dumps(d, ensure_ascii=False, default=_plain) for d in details],
        "written_at": earliest}, columns=FINDING_COLUMNS)


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value).__name__)


class Detector:
    """The feed rules (every kind but ``never_used``, which looks at the inventory), with their
    state; ``history`` is the usage store's Parquet folder for the cards' daily profiles."""

    def __init__(self, rules: list[Rule], history: str | Path | None = None):
        self.rules = [r for r in rules if r.enabled and r.kind != "never_used"]
        self.history = Path(history) if history else None
        self.position = None  # the watermark the state stands at (None: not built)
        self._last = pd.DataFrame({"start": np.zeros(0, np.int64), "lat": np.zeros(0), "lon": np.zeros(0),
                                   "region": np.zeros(0, object)}, index=pd.Index(np.zeros(0, np.int64), name="msisdn"))
        self._day = None          # local day start (µs) of _today
        self._today = pd.Series(dtype=np.int64)
        self._buckets: dict[str, pd.DataFrame] = {}   # rule -> counts, index bucket start, columns regions
        self._evaluated: dict[str, int] = {}           # rule -> last bucket evaluated
        self._profiles: dict[tuple, pd.DataFrame] = {}

    # ---------------------------------------------------------------- state

    def reset(self, position: int) -> None:
        self.__init__(self.rules, self.history)
        self.position = position

    def rebuild(self, folder: str | Path, position: int, lookback_us: int | None = None) -> None:
        """State as it stood after the batches up to ``position`` (read back from the feed)."""
        from hkops.network import feed

        self.reset(position)
        if position <= 0:
            return
        lookback = lookback_us or self.lookback_us()
        found = [(seq, path) for seq, path in feed.batches(folder) if seq <= position]
        chosen, newest = [], None
        for seq, path in reversed(found):
            times = feed.read([path], ["start"]).column("start")
            if len(times) == 0:
                continue
            latest = int(np.asarray(times.cast("int64")).max())
            newest = newest or latest
            if latest < newest - lookback:
                break
            chosen.append(path)
        if chosen:
            frame = as_frame(feed.read(reversed(chosen), FEED_COLUMNS))
            self.absorb(frame, rebuilding=True)
        self.position = position

    def lookback_us(self) -> int:
        """How far back the state reaches: the spike rule's local day so far, the travel rule's
        minutes, the outage rule's baseline."""
        need = [10 * US_PER_MINUTE]
        for rule in self.rules:
            if rule.kind == "usage_spike":
                need.append(US_PER_DAY)
            elif rule.kind == "impossible_travel":
                need.append(rule["within_minutes"] * US_PER_MINUTE)
            elif rule.kind == "region_drop":
                need.append((rule["baseline_buckets"] + 2) * rule["bucket_minutes"] * US_PER_MINUTE)
        return max(need)

    def absorb(self, frame: pd.DataFrame, rebuilding: bool = False) -> None:
        """Take a consumed batch into the state (after its alerts are stored)."""
        if frame.empty:
            return
        ordered = frame.sort_values("start", kind="stable")
        latest = ordered.drop_duplicates("msisdn", keep="last").set_index("msisdn")[["start", "lat", "lon", "region"]]
        latest = latest.assign(region=latest["region"].astype(object))
        self._last = pd.concat([self._last[~self._last.index.isin(latest.index)], latest])
        horizon = int(frame["start"].max()) - self.lookback_us()
        if len(self._last) > 200_000:
            self._last = self._last[self._last["start"] >= horizon]
        self._today = self._day_totals(frame, commit=True)
        for rule in self.rules:
            if rule.kind == "region_drop":
                counts = self._bucket_counts(rule, frame)
                keep = counts.index.max() - (rule["baseline_buckets"] + 2) * rule["bucket_minutes"] * US_PER_MINUTE
                self._buckets[rule.name] = counts[counts.index >= keep]
                closed = self._closed(rule, counts, int(frame["start"].max()))
                if len(closed):
                    self._evaluated[rule.name] = max(self._evaluated.get(rule.name, -1), int(closed.max()))

    def _day_totals(self, frame: pd.DataFrame, commit: bool) -> pd.Series:
        """Data bytes per card in the local day of the batch's newest record: the state's, plus
        the batch's (and that becomes the state with ``commit``)."""
        day = int(window_start(np.array([frame["start"].max()]), 24)[0])
        billable = frame[(~frame["refused"]) & (frame["start"] >= day)]
        batch = (billable["bytes_up"] + billable["bytes_down"]).groupby(billable["msisdn"]).sum()
        base = self._today if self._day == day else pd.Series(dtype=np.int64)
        totals = base.add(batch, fill_value=0).astype(np.int64) if len(base) else batch.astype(np.int64)
        if commit:
            self._day = day
        return totals

    def _bucket_counts(self, rule: Rule, frame: pd.DataFrame) -> pd.DataFrame:
        """Records per bucket (index: bucket start, µs) and province (columns): the state's and the batch's."""
        width = rule["bucket_minutes"] * US_PER_MINUTE
        bucket = frame["start"].to_numpy() // width
        first = int(bucket.min())
        regions = frame["region"].cat
        k = len(regions.categories)
        counts = np.bincount((bucket - first) * k + regions.codes.to_numpy(), minlength=k * (int(bucket.max()) - first + 1))
        batch = pd.DataFrame(counts.reshape(-1, k), columns=list(regions.categories),
                             index=(np.arange(first, int(bucket.max()) + 1) * width))
        batch = batch.loc[batch.sum(axis=1) > 0]  # buckets without any record: the feed was not running
        known = self._buckets.get(rule.name)
        if known is None or known.empty:
            return batch
        return known.add(batch, fill_value=0)

    @staticmethod
    def _closed(rule: Rule, counts: pd.DataFrame, newest_us: int) -> np.ndarray:
        width = rule["bucket_minutes"] * US_PER_MINUTE
        return counts.index.to_numpy()[counts.index.to_numpy() + width <= newest_us]

    # ---------------------------------------------------------------- evaluation

    def evaluate(self, frame: pd.DataFrame, swaps: pd.Series | None = None) -> pd.DataFrame:
        """The findings of every feed rule on a batch (state not changed: see :meth:`absorb`).
        ``swaps``: the latest SIM swap (UTC µs) per MSISDN, for the SIM-swap rule."""
        if frame.empty:
            return pd.DataFrame(columns=FINDING_COLUMNS)
        parts = []
        for rule in self.rules:
            found = getattr(self, f"_{rule.kind}")(rule, frame, swaps)
            if found is not None and len(found):
                parts.append(found)
        if not parts:
            return pd.DataFrame(columns=FINDING_COLUMNS)
        return pd.concat(parts, ignore_index=True)

    def _windowed(self, rule: Rule, hits: pd.DataFrame, subject) -> pd.DataFrame:
        hits = hits.assign(subject=np.asarray(subject).astype(str).astype(object),
                           window=labels(window_start(hits["start"].to_numpy(), rule.window_hours),
                                         minutes=rule.window_hours % 24 != 0))
        return _findings(rule, hits)

    def _lost_card_use(self, rule, frame, swaps):
        hits = frame[frame["refused"] & frame["refusal"].isin(rule["states"])]
        if hits.empty:
            return None
        return self._windowed(rule, hits[["start", "written_at", "refusal"]].rename(columns={"refusal": "state"}),
                              hits["msisdn"])

    def _sim_swap_traffic(self, rule, frame, swaps):
        if swaps is None or swaps.empty:
            return None
        billable = frame[~frame["refused"]]
        swapped = billable["msisdn"].map(swaps)
        age = billable["start"] - swapped
        fired = swapped.notna() & (age >= 0) & (age <= rule["max_age_hours"] * US_PER_HOUR)
        hits = billable[fired.to_numpy()]
        if hits.empty:
            return None
        details = pd.DataFrame({"start": hits["start"], "written_at": hits["written_at"],
                                "swapped_at": pd.to_datetime(swapped[fired].astype(np.int64), unit="us", utc=True)
                                .dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                "hours_after_swap": (age[fired] / US_PER_HOUR).round(2)})
        return self._windowed(rule, details, hits["msisdn"])

    def profiles(self, day_us: int, days: int) -> pd.DataFrame:
        """Each card's daily data over the ``days`` local days before ``day_us`` in the usage
        store: median, MAD and days with use (DuckDB over the Parquet partitions)."""
        key = (day_us, days)
        if key in self._profiles:
            return self._profiles[key]
        empty = pd.DataFrame({"median": [], "mad": [], "days": []}, index=pd.Index([], name="msisdn"))
        files = sorted(self.history.glob("day=*/*.parquet")) if self.history and self.history.is_dir() else []
        first = pd.Timestamp(day_us + SHANGHAI_OFFSET_US, unit="us").normalize() - pd.Timedelta(days=days)
        last = pd.Timestamp(day_us + SHANGHAI_OFFSET_US, unit="us").normalize()
        wanted = [str(f) for f in files if first <= pd.Timestamp(f.parent.name[4:]) < last]
        if not wanted:
            self._profiles[key] = empty
            return empty
        import duckdb

        con = duckdb.connect()
        try:
            result = con.execute("""
                WITH daily AS (
                    SELECT msisdn, day, sum(bytes_up + bytes_down) AS bytes
                    FROM read_parquet(?, hive_partitioning = true) WHERE NOT refused GROUP BY msisdn, day),
                med AS (SELECT msisdn, median(bytes) AS median, count(*) AS days FROM daily GROUP BY msisdn)
                SELECT d.msisdn, any_value(m.median) AS median, median(abs(d.bytes - m.median)) AS mad,
                       any_value(m.days) AS days
                FROM daily d JOIN med m USING (msisdn) GROUP BY d.msisdn""", [wanted]).df()
        finally:
            con.close()
        profile = result.set_index("msisdn")
        self._profiles = {key: profile}
        return profile

    def _usage_spike(self, rule, frame, swaps):
        day = int(window_start(np.array([frame["start"].max()]), 24)[0])
        profile = self.profiles(day, rule["history_days"])
        if profile.empty:
            return None
        totals = self._day_totals(frame, commit=False)
        totals = totals[totals.index.isin(frame.loc[~frame["refused"], "msisdn"].unique())]
        joined = profile.join(totals.rename("bytes"), how="inner")
        joined = joined[(joined["days"] >= rule["min_history_days"]) & (joined["mad"] > 0)]
        joined["z"] = 0.6745 * (joined["bytes"] - joined["median"]) / joined["mad"]
        flagged = joined[(joined["z"] >= rule["threshold"]) & (joined["bytes"] >= rule["min_bytes"])]
        if flagged.empty:
            return None
        hits = frame[(~frame["refused"]) & frame["msisdn"].isin(flagged.index) & (frame["start"] >= day)]
        info = flagged.loc[hits["msisdn"]]
        details = pd.DataFrame({"start": hits["start"].to_numpy(), "written_at": hits["written_at"].to_numpy(),
                                "bytes_today": info["bytes"].to_numpy(np.int64),
                                "median": info["median"].to_numpy(float).round(0),
                                "mad": info["mad"].to_numpy(float).round(0), "z": info["z"].to_numpy().round(2)})
        return self._windowed(rule, details, hits["msisdn"].to_numpy())

    def _impossible_travel(self, rule, frame, swaps):
        before = self._last[self._last.index.isin(frame["msisdn"].to_numpy())]
        region = frame["region"].cat.categories.to_numpy(object)[frame["region"].cat.codes.to_numpy()]
        n_old = len(before)
        msisdn = np.concatenate([before.index.to_numpy(np.int64), frame["msisdn"].to_numpy(np.int64)])
        start = np.concatenate([before["start"].to_numpy(np.int64), frame["start"].to_numpy()])
        lat = np.concatenate([before["lat"].to_numpy(float), frame["lat"].to_numpy()])
        lon = np.concatenate([before["lon"].to_numpy(float), frame["lon"].to_numpy()])
        regions = np.concatenate([before["region"].to_numpy(object), region])
        written = np.concatenate([np.zeros(n_old, np.int64), frame["written_at"].to_numpy()])
        old = np.r_[np.ones(n_old, bool), np.zeros(len(frame), bool)]
        order = np.lexsort((start, msisdn))
        msisdn, start, lat, lon, regions, written, old = (a[order] for a in (msisdn, start, lat, lon, regions,
                                                                            written, old))
        same = np.r_[False, msisdn[1:] == msisdn[:-1]]
        km = np.r_[0.0, distance_km(lat[:-1], lon[:-1], lat[1:], lon[1:])]
        minutes = np.r_[0.0, np.diff(start) / US_PER_MINUTE]
        kmh = km / np.maximum(minutes, 1 / 60) * 60
        fired = same & ~old & (km >= rule["min_km"]) & (kmh >= rule["max_kmh"]) & (minutes <= rule["within_minutes"])
        if not fired.any():
            return None
        where = np.flatnonzero(fired)
        details = pd.DataFrame({"start": start[where], "written_at": written[where], "from": regions[where - 1],
                                "to": regions[where], "km": km[where].round(0), "minutes": minutes[where].round(1)})
        return self._windowed(rule, details, msisdn[where])

    def _region_drop(self, rule, frame, swaps):
        counts = self._bucket_counts(rule, frame)
        closed = self._closed(rule, counts, int(frame["start"].max()))
        closed = closed[closed > self._evaluated.get(rule.name, -1)]
        if not len(closed):
            return None
        width = rule["bucket_minutes"] * US_PER_MINUTE
        n = rule["baseline_buckets"]
        full = counts.reindex(np.arange(counts.index.min(), counts.index.max() + width, width))
        seen = full.notna().any(axis=1)  # buckets with any record at all (the feed was running)
        full = full.fillna(0)
        rows = []
        for bucket in closed:  # a handful of closed buckets per batch, each vectorised over provinces
            before = [b for b in range(bucket - n * width, bucket, width)]
            if not all(b in full.index and seen.get(b, False) for b in before):
                continue
            baseline = full.loc[before].median(axis=0)
            now = full.loc[bucket]
            dropped = (baseline >= rule["min_baseline"]) & (now < (1 - rule["drop"]) * baseline)
            for region in baseline.index[dropped.to_numpy()]:
                rows.append({"subject": region, "start": int(bucket), "written_at": int(frame["written_at"].min()),
                             "records": int(now[region]), "baseline": float(baseline[region])})
        if not rows:
            return None
        hits = pd.DataFrame(rows)
        hits["window"] = labels(hits["start"].to_numpy())
        found = _findings(rule, hits)
        found["hits"] = 1
        return found
