"""Analytics: one question, usage by day and province, on ~100,000,000 usage records.

``python -m bench analytics --json [--records N] [--no-spark] [--monitor-seconds S]``

- ``day_region_s``: :func:`hkops.analytics.queries.day_region` through the hkops engine
  (Ibis on DuckDB, ``hkops.analytics.engine``), reading the Parquet usage store.
- ``duckdb_sql_s`` (anchor): the same question as hand-written DuckDB SQL on the same files,
  with the same thread setting. Goal: ``day_region_s`` ≤ 1.2 × ``duckdb_sql_s``.
- ``pandas_s`` (anchor): the best a pandas user does (see :func:`pandas_day_region`), on as many
  whole days as hold :data:`PANDAS_ROWS` rows, scaled to the full row count when that is fewer
  than all the days (stated in ``pandas_note``). Goal: hkops ≥ 8 × faster.
- ``spark_local_s``: the same Ibis expression on Spark ``local[2]`` (reported, no goal).
- ``monitor_lag_p95_s`` (goal ≤ 5 s): :func:`bench.monitoring.run`, the usage feed at 50,000
  records a second into the monitor, for ``monitor_seconds``.
- ``forecast_all_regions_s`` (reported, no goal): :func:`forecast_all_regions`.

Every answer (SQL, pandas, Spark) is checked equal to hkops's before its figure is kept;
``*_cpu_s`` are the CPU seconds of this process, which a busy machine does not inflate, and
``load_average`` the machine's load at the start and after each figure.

The usage store is generated once with :func:`hkops.network.usage.generate_usage` (synthetic
cards, 30 days; ``--records`` picks the number of cards) and cached under
``bench/_work/analytics/``; reruns skip the generation. So is the demo world of the forecasts.
"""

from __future__ import annotations

import json
import os
import time
from datetime import date
from pathlib import Path

WORK = Path(__file__).resolve().parent / "_work" / "analytics"
START = date(2026, 10, 1)
#: About 11.6 records per card-day: 290,000 cards × 30 days ≈ 100,000,000 records.
CARDS, DAYS, SEED = 290_000, 30, 11


def usage_store(cards: int = CARDS, days: int = DAYS, log=None) -> tuple[Path, dict]:
    """The cached usage store of ``cards`` × ``days`` (generated on first use), and its summary."""
    say = log or (lambda *_: None)
    out = WORK / f"usage-{cards}x{days}-seed{SEED}"
    marker = out / "summary.json"
    if marker.is_file():
        return out, json.loads(marker.read_text())
    from hkops.network.usage import generate_usage, synthetic_cards

    say(f"generating {cards:,} cards × {days} days into {out} (once; cached)")
    summary = generate_usage(synthetic_cards(cards, seed=SEED), start=START, days=days, seed=SEED, out_dir=out)
    result = summary.to_dict()
    marker.write_text(json.dumps(result, indent=2))
    return out, result


#: The same question as ``hkops.analytics.queries.day_region``, written by hand for DuckDB.
DAY_REGION_SQL = """
SELECT day, region,
       count(*) FILTER (WHERE NOT refused) AS records,
       coalesce(sum(duration_s) FILTER (WHERE NOT refused AND type = 'voice_mo'), 0)::BIGINT AS voice_mo_s,
       coalesce(sum(duration_s) FILTER (WHERE NOT refused AND type = 'voice_mt'), 0)::BIGINT AS voice_mt_s,
       count(*) FILTER (WHERE NOT refused AND type = 'sms_mo') AS sms_mo,
       coalesce(sum(bytes_up + bytes_down) FILTER (WHERE NOT refused), 0)::BIGINT AS data_bytes,
       coalesce(sum(charge_fen), 0)::BIGINT AS charge_fen,
       count(*) FILTER (WHERE refused) AS refused,
       count(DISTINCT msisdn) FILTER (WHERE NOT refused) AS cards
FROM read_parquet('{files}', hive_partitioning = true)
GROUP BY day, region
ORDER BY day, region
"""
_PANDAS_COLUMNS = ["day", "type", "msisdn", "duration_s", "bytes_up", "bytes_down", "region", "charge_fen", "refused"]


def _best(runs: int, work) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process in that run, result) of the fastest of ``runs``.

    The CPU seconds count every thread of this process (DuckDB's, pandas'), not Spark's JVM:
    on a shared machine they show the work done whatever the load.
    """
    best, cpu, result = float("inf"), 0.0, None
    for _ in range(runs):
        began, began_cpu = time.perf_counter(), time.process_time()
        result = work()
        took = time.perf_counter() - began
        if took < best:
            best, cpu = took, time.process_time() - began_cpu
    return best, cpu, result


def hkops_day_region(store: Path, setting: str = "duckdb", threads: int | None = None):
    """The question through hkops: the usage store as an Ibis table, ``day_region``, to pandas."""
    from hkops.analytics import engine, queries

    con = engine.connect(setting, threads=threads)
    return lambda: engine.execute(queries.day_region(engine.usage_table(con, store)))


def duckdb_day_region(store: Path, threads: int):
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute(f"SET threads = {int(threads)}")
    sql = DAY_REGION_SQL.format(files=str(store / "records" / "day=*" / "*.parquet"))
    return lambda: con.execute(sql).df()


def pandas_day_region(store: Path, days: list[str]):
    """Read the columns of ``days`` with pandas and answer the question with a pandas group-by.

    The best a pandas user does without hkops: only the columns needed (``columns=``) and only the
    days (``filters=``, partition pruning), the pyarrow engine (multi-threaded decoding; ``type``,
    ``region`` and the ``day`` partition arrive as categoricals from their Parquet dictionaries), one
    vectorised pass building the per-row measures, one ``groupby(..., observed=True).sum()`` over the
    categorical keys, and ``nunique`` per group for the cards (faster here than ``drop_duplicates``).
    """
    import pandas as pd

    def work():
        frame = pd.read_parquet(store / "records", engine="pyarrow", columns=_PANDAS_COLUMNS,
                                filters=[("day", "in", days)])
        billable = ~frame["refused"]
        kind = frame["type"]
        duration = frame["duration_s"].astype("int64")
        measures = pd.DataFrame({
            "day": frame["day"], "region": frame["region"],
            "records": billable,
            "voice_mo_s": duration.where(billable & (kind == "voice_mo"), 0),
            "voice_mt_s": duration.where(billable & (kind == "voice_mt"), 0),
            "sms_mo": billable & (kind == "sms_mo"),
            "data_bytes": (frame["bytes_up"] + frame["bytes_down"]).where(billable, 0),
            "charge_fen": frame["charge_fen"],
            "refused": frame["refused"],
        }, copy=False)
        result = measures.groupby(["day", "region"], observed=True, sort=True).sum().astype("int64")
        cards = frame.loc[billable].groupby(["day", "region"], observed=True)["msisdn"].nunique()
        result["cards"] = cards.reindex(result.index, fill_value=0).astype("int64")
        return result.reset_index()

    return work


def demo_database(log=None) -> str:
    """The SQLite URL of a demo world (``hkops.demo.build``: 3,000 orders over 90 days), built once
    under ``bench/_work/analytics/`` in its own process (its data folder keeps the keys it makes)."""
    import subprocess
    import sys

    folder = WORK / "demo-seed7"
    database = folder / "hkops.db"
    url = f"sqlite:///{database}"
    if not (folder / "built").is_file():
        (log or (lambda *_: None))(f"building the demo world into {database} (once; cached)")
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        env = dict(os.environ, HKOPS_DATA_DIR=str(folder), HKOPS_DATABASE_URL=url)
        subprocess.run([sys.executable, "-c", "from hkops import demo; from hkops.store.engine import Store; "
                        f"demo.build(Store({url!r}))"], env=env, check=True, stdout=subprocess.DEVNULL)
        (folder / "built").write_text("ok\n")
    return url


#: The usage store the usage forecasts read: 90 days (a forecast needs 14 days to fit and 28 held
#: back for its back-test), 10,000 cards in every province.
FORECAST_CARDS, FORECAST_DAYS = 10_000, 90


def forecast_all_regions(log=None) -> dict:
    """Time :func:`hkops.analytics.forecast.forecast_all_regions` (ETS, 28 days ahead, back-test
    over the last 28 days, anomalies) over every region of three daily series: activations and
    orders placed of the demo world, billable data bytes of a 90-day usage store. The series'
    queries are included (``forecast_series_s``), as a user of the console waits for both."""
    from hkops.analytics import forecast
    from hkops.store.engine import Store

    say = log or (lambda *_: None)
    db = Store(demo_database(log))
    store, _ = usage_store(FORECAST_CARDS, FORECAST_DAYS, log=say)
    say("forecasts of every region: activations, orders, usage")
    began = time.perf_counter()
    series = {"activations": forecast.sales_series(db, "activated", actor="bench"),
              "orders": forecast.sales_series(db, "placed", actor="bench"),
              "usage_data_bytes": forecast.usage_series(store, "data_bytes")}
    queried = time.perf_counter()
    regions, failed, mapes = 0, 0, []
    for frame in series.values():
        _, summary = forecast.forecast_all_regions(frame)
        regions += int(summary["problem"].isna().sum())
        failed += int(summary["problem"].notna().sum())
        mapes += [m for m in summary["mape"].dropna()]
    done = time.perf_counter()
    db.dispose()
    say(f"  {done - began:.2f} s for {regions} regions' forecasts ({failed} too short)")
    return {"forecast_all_regions_s": round(done - began, 2), "forecast_series_s": round(queried - began, 2),
            "forecast_regions": regions, "forecast_regions_too_short": failed,
            "forecast_median_mape_pct": round(sorted(mapes)[len(mapes) // 2], 1) if mapes else None,
            "forecast_note": "activations and orders placed per ship-to province of the demo world (3,000 orders "
                             f"over 90 days), billable data bytes per province of {FORECAST_CARDS:,} cards over "
                             f"{FORECAST_DAYS} days; ETS, 28 days ahead, back-test over 28 days, anomalies; "
                             "series queries included"}


def cards_for(records: int) -> int:
    """Cards that make about ``records`` usage records over :data:`DAYS` days (as the 100M store)."""
    return max(1_000, round(CARDS * records / 100_000_000))


#: The goals of issue 11 item 9, as printed in the JSON.
GOALS = {"day_region_s": "<= 1.2 x duckdb_sql_s", "pandas_s": ">= 8 x day_region_s (hkops at least 8 times faster)",
         "monitor_lag_p95_s": "<= 5 s at 50,000 records/s", "spark_local_s": None, "forecast_all_regions_s": None}


def _load() -> list[float]:
    """The machine's load average over 1, 5 and 15 minutes, now."""
    return [round(x, 1) for x in os.getloadavg()]


#: Rows pandas reads at most (whole days): beyond, its figure is measured on fewer days and scaled.
PANDAS_ROWS = 20_000_000


def run(log=None, *, records: int = 100_000_000, days: int = DAYS, runs: int = 5, spark: bool = True,
        monitor_seconds: float = 30) -> dict:
    """Every figure of the suite on a usage store of about ``records`` records (cached)."""
    say = log or (lambda *_: None)
    threads = os.cpu_count() or 1
    cards = cards_for(records)
    loads = {"start": _load()}
    store, summary = usage_store(cards, days, log=say)
    rows = summary["records"]
    result: dict = {"records": rows, "files": len(list((store / "records").glob("day=*/*.parquet"))),
                    "store_mib": round(sum(p.stat().st_size for p in (store / "records").rglob("*.parquet")) / (1 << 20)),
                    "threads": threads}

    say(f"hkops day_region on DuckDB and hand-written DuckDB SQL, in turn ({rows:,} records, {threads} threads)")
    hkops_run, sql_run = hkops_day_region(store, "duckdb", threads), duckdb_day_region(store, threads)
    hkops_s = sql_s = float("inf")
    for _ in range(runs):  # alternated, so that both see the same load on a shared machine
        took, cpu, frame = _best(1, hkops_run)
        if took < hkops_s:
            hkops_s, hkops_cpu = took, cpu
        took, cpu, anchor = _best(1, sql_run)
        if took < sql_s:
            sql_s, sql_cpu = took, cpu
    say(f"  hkops {hkops_s:.2f} s, SQL {sql_s:.2f} s (best of {runs} each)")
    assert agrees(frame, anchor), "hkops and SQL disagree"
    result.update(day_region_s=round(hkops_s, 3), duckdb_sql_s=round(sql_s, 3),
                  day_region_cpu_s=round(hkops_cpu, 2), duckdb_sql_cpu_s=round(sql_cpu, 2),
                  day_region_to_sql=round(hkops_s / sql_s, 3), day_region_goal_met=hkops_s <= 1.2 * sql_s)
    loads["day_region_s"] = _load()

    all_days = sorted(p.name.split("=", 1)[1] for p in (store / "records").glob("day=*"))
    days = all_days[:max(1, min(len(all_days), len(all_days) * PANDAS_ROWS // rows))]
    say(f"pandas on {len(days)} of the days, scaled to all the rows")
    pandas_run = pandas_day_region(store, days)
    part_s, part_cpu, part = _best(3, pandas_run)  # the first run of a process pays for fresh memory
    part_rows = int(part["records"].sum() + part["refused"].sum())
    assert agrees(frame, part), "hkops and pandas disagree"
    pandas_s = part_s * rows / part_rows
    say(f"  {part_s:.2f} s for {part_rows:,} rows: {pandas_s:.1f} s scaled")
    result.update(pandas_s=round(pandas_s, 2), pandas_rows=part_rows, pandas_measured_s=round(part_s, 2),
                  pandas_cpu_s=round(part_cpu * rows / part_rows, 2),
                  pandas_note=f"measured on {len(days)} of {len(all_days)} days ({part_rows:,} rows)"
                              + (f" and scaled linearly to {rows:,} rows (memory: at most {PANDAS_ROWS:,} rows "
                                 "read)" if len(days) < len(all_days) else ""),
                  pandas_to_day_region=round(pandas_s / hkops_s, 1), pandas_goal_met=pandas_s >= 8 * hkops_s,
                  pandas_to_day_region_cpu=round(part_cpu * rows / part_rows / hkops_cpu, 1))
    # DuckDB spreads the question over every core, pandas' group-by runs on one: on this machine the
    # wall-clock ratio cannot honestly exceed the CPU ratio times the cores; more is load on pandas' longer run.
    bound = round(part_cpu * rows / part_rows / hkops_cpu * threads, 1)
    result.update(pandas_to_day_region_bound=bound, pandas_goal_note=(
        f"pandas does {result['pandas_to_day_region_cpu']} x hkops's CPU work; with {threads} cores the wall-clock "
        f"ratio is at most about {bound} x" + (": 8 x is out of reach on this machine without a pre-aggregate"
                                               if bound < 8 else
                                               "; pandas' memory-bound work costs more CPU on a busy machine, "
                                               "so judge the goal on a quiet one (load_average)")))
    loads["pandas_s"] = _load()

    if spark:
        say("the same expression on Spark local[2]")
        began = time.perf_counter()
        spark_run = hkops_day_region(store, "local[2]")
        result["spark_start_s"] = round(time.perf_counter() - began, 2)
        spark_s, _, spark_frame = _best(2, spark_run)
        say(f"  {spark_s:.2f} s (session start {result['spark_start_s']} s, not included)")
        assert agrees(frame, spark_frame), "Spark disagrees"
        result["spark_local_s"] = round(spark_s, 2)
        loads["spark_local_s"] = _load()

    from bench import monitoring

    say(f"monitor lag: the usage feed at {monitoring.RATE:,} records/s for {monitor_seconds:.0f} s")
    lag = monitoring.run(seconds=monitor_seconds, log=say)
    result.update({key: lag[key] for key in ("monitor_lag_p95_s", "monitor_lag_p50_s", "monitor_lag_max_s",
                                             "monitor_stream_records_per_s", "monitor_alerts")})
    result["monitor_lag_goal_met"] = lag["monitor_lag_p95_s"] <= 5
    loads["monitor_lag_p95_s"] = _load()
    result.update(forecast_all_regions(say))
    result["forecast_all_regions_goal_met"] = None  # issue 11 sets no goal: reported
    loads["forecast_all_regions_s"] = _load()
    result["goals"] = GOALS
    result["load_average"] = loads  # 1, 5 and 15 minutes, at the start and after each figure
    return result


def agrees(answer, other) -> bool:
    """Whether ``other`` (hand SQL, pandas, Spark) holds hkops's ``answer`` for its days: the same
    rows in the same order, the same columns and values (days and provinces compared as values)."""
    other = other.reset_index(drop=True)
    other["day"] = pd_dates(other["day"], answer["day"].dtype)
    mine = answer[answer["day"].isin(set(other["day"]))].reset_index(drop=True)
    return list(mine.columns) == list(other.columns) and \
        mine.astype({"region": object}).equals(other.astype({"region": object}))


def pd_dates(column, dtype):
    """Partition values as read by pandas (strings or categories) in the dtype of ``dtype``."""
    import pandas as pd

    return pd.to_datetime(column.astype(str)).astype(dtype)


if __name__ == "__main__":
    print(json.dumps(run(log=print), indent=2))
