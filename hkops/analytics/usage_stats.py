"""Usage monitoring and statistics over the Parquet usage store, with DuckDB.

The store is what ``hkops.network.usage.generate_usage`` writes (``store_dir`` is its
``out_dir``, by default ``data/usage``): ``records/day=YYYY-MM-DD/*.parquet`` and
``topups/day=YYYY-MM-DD/*.parquet``, ``day`` being the Asia/Shanghai business day.

Every function opens its own in-memory DuckDB connection, reads the Parquet files in
place (hive partitions, so a day filter only opens that day's files) and returns a
pandas DataFrame or a plain dict ready for JSON. Money stays integer fen in frames
(``charge_fen``) and becomes Decimal yuan *strings* in reports; never float. Volumes:
``data_bytes`` are integers; ``data_gb`` in reports counts GB of 2**30 bytes, as
operators' DOU does. Hours are local (Asia/Shanghai, UTC+8, no daylight saving).

Refused attempts (suspended, lost, terminated, replaced cards) are kept apart from
billable usage: billable columns exclude them, ``refused`` columns count them.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import pandas as pd

from hkops.errors import InvalidValue
from hkops.money import fen_to_yuan

GIB = 1 << 30
#: Local hour (Asia/Shanghai) of a UTC ``start``, without relying on time-zone data.
HOUR_SQL = "CAST((epoch_us({col}) // 3600000000 + 8) % 24 AS INTEGER)"

_BILLABLE = "NOT refused"
_DATA_BYTES = "coalesce(sum(bytes_up + bytes_down) FILTER (WHERE NOT refused), 0)::BIGINT"


def _files(store_dir: Path | str, dataset: str, required: bool = True) -> str | None:
    root = Path(store_dir) / dataset
    if not any(root.glob("day=*/*.parquet")):
        if required:
            raise InvalidValue("usage store", str(store_dir),
                               f"holds no {dataset} (expected {root}/day=YYYY-MM-DD/*.parquet); run `hkops usage generate`")
        return None
    return str(root / "day=*" / "*.parquet").replace("'", "''")


def _connect() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(database=":memory:")


def _source(store_dir, dataset: str = "records") -> str:
    return f"read_parquet('{_files(store_dir, dataset)}', hive_partitioning = true)"


def _as_day(value: date | str | None, field: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InvalidValue(field, value, "must be a day such as 2026-11-01") from None


def _where(*, start=None, end=None, msisdn=None, region=None, area=None) -> tuple[str, list]:
    clauses, params = [], []
    start, end = _as_day(start, "start"), _as_day(end, "end")
    if start is not None:
        clauses.append("day >= ?")
        params.append(start)
    if end is not None:
        clauses.append("day <= ?")
        params.append(end)
    if msisdn is not None:
        clauses.append("msisdn = ?")
        params.append(int(msisdn))
    if region is not None:
        clauses.append("region = ?")
        params.append(str(region))
    if area is not None:
        clauses.append("area = ?")
        params.append(str(area))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _usage_columns() -> str:
    return f"""
        count(*) FILTER (WHERE {_BILLABLE}) AS records,
        count(*) FILTER (WHERE type = 'voice_mo' AND {_BILLABLE}) AS voice_mo_calls,
        coalesce(sum(duration_s) FILTER (WHERE type = 'voice_mo' AND {_BILLABLE}), 0)::BIGINT AS voice_mo_s,
        coalesce(sum(duration_s) FILTER (WHERE type = 'voice_mt' AND {_BILLABLE}), 0)::BIGINT AS voice_mt_s,
        count(*) FILTER (WHERE type = 'sms_mo' AND {_BILLABLE}) AS sms_mo,
        count(*) FILTER (WHERE type = 'sms_mt' AND {_BILLABLE}) AS sms_mt,
        count(*) FILTER (WHERE type = 'data' AND {_BILLABLE}) AS data_records,
        coalesce(sum(bytes_up) FILTER (WHERE {_BILLABLE}), 0)::BIGINT AS bytes_up,
        coalesce(sum(bytes_down) FILTER (WHERE {_BILLABLE}), 0)::BIGINT AS bytes_down,
        {_DATA_BYTES} AS data_bytes,
        coalesce(sum(charge_fen), 0)::BIGINT AS charge_fen,
        count(*) FILTER (WHERE refused) AS refused"""


def usage_per_card(store_dir, msisdn: int | None = None, *, start=None, end=None, region=None,
                   order_by: str = "data_bytes", limit: int | None = None) -> pd.DataFrame:
    """Usage per number: volumes, durations, charge, refusals, where and when it is used.

    One row per MSISDN seen (cards with only refused attempts included: a lost card in
    use is a fraud signal). ``home_area`` is the area of most records, ``peak_hour``
    the local hour of most records, ``imsis`` the distinct IMSIs seen (2 after a SIM
    swap). Sorted by ``order_by`` (a column, descending), then msisdn.
    """
    where, params = _where(start=start, end=end, msisdn=msisdn, region=region)
    columns = {"data_bytes", "records", "voice_mo_s", "charge_fen", "refused", "sms_mo", "msisdn"}
    if order_by not in columns:
        raise InvalidValue("order_by", order_by, f"must be one of {', '.join(sorted(columns))}")
    sql = f"""
        SELECT msisdn,
               {_usage_columns()},
               count(DISTINCT imsi) AS imsis,
               count(DISTINCT day) AS days,
               count(DISTINCT area) AS areas,
               mode(area) AS home_area,
               mode({HOUR_SQL.format(col='start')}) AS peak_hour,
               min(start) AS first_start,
               max(start) AS last_start
        FROM {_source(store_dir)}{where}
        GROUP BY msisdn
        ORDER BY {order_by} DESC, msisdn
        {f'LIMIT {int(limit)}' if limit else ''}"""
    with _connect() as con:
        return con.execute(sql, params).df()


def usage_per_region(store_dir, *, level: str = "region", start=None, end=None, region=None) -> pd.DataFrame:
    """Usage per province (``level="region"``) or per city (``level="area"``), where it happened.

    ``cards`` counts the distinct numbers with billable usage there (travellers count
    where they were); ``cells`` the distinct cells used.
    """
    if level not in ("region", "area"):
        raise InvalidValue("level", level, "must be region or area")
    keys = "region" if level == "region" else "region, area"
    where, params = _where(start=start, end=end, region=region)
    sql = f"""
        SELECT {keys},
               {_usage_columns()},
               count(DISTINCT msisdn) FILTER (WHERE {_BILLABLE}) AS cards,
               count(DISTINCT cell_id) AS cells
        FROM {_source(store_dir)}{where}
        GROUP BY {keys}
        ORDER BY data_bytes DESC, {keys}"""
    with _connect() as con:
        return con.execute(sql, params).df()


def usage_per_day(store_dir, *, msisdn: int | None = None, region: str | None = None, start=None, end=None) -> pd.DataFrame:
    """Usage per local day: volumes, durations, charge, refusals and active cards."""
    where, params = _where(start=start, end=end, msisdn=msisdn, region=region)
    sql = f"""
        SELECT day,
               {_usage_columns()},
               count(DISTINCT msisdn) FILTER (WHERE {_BILLABLE}) AS cards
        FROM {_source(store_dir)}{where}
        GROUP BY day
        ORDER BY day"""
    with _connect() as con:
        return con.execute(sql, params).df()


def topups_per_day(store_dir, *, msisdn: int | None = None, start=None, end=None) -> pd.DataFrame:
    """Top-ups per local day: count, numbers and amount in integer fen."""
    where, params = _where(start=start, end=end, msisdn=msisdn)
    sql = f"""
        SELECT day, count(*) AS topups, count(DISTINCT msisdn) AS cards,
               coalesce(sum(amount_fen), 0)::BIGINT AS amount_fen
        FROM {_source(store_dir, 'topups')}{where}
        GROUP BY day ORDER BY day"""
    with _connect() as con:
        return con.execute(sql, params).df()


def totals_per_number(store_dir, msisdns, *, start, end) -> dict[int, dict]:
    """For each of ``msisdns``, its billable charges (``spend_fen``), data up and down (``data_bytes``),
    outgoing voice (``voice_mo_s``) and top-ups (``topup_fen``) on the days ``start`` .. ``end``
    (inclusive); a number without records has zeros. Reads records and top-ups (the top-ups may be
    absent); the records must be there."""
    where, params = _where(start=start, end=end)
    wanted = sorted({int(m) for m in msisdns})
    out = {m: {"spend_fen": 0, "data_bytes": 0, "voice_mo_s": 0, "topup_fen": 0} for m in wanted}
    if not wanted:
        return out
    keep = f"{where} AND msisdn IN (SELECT unnest(?::BIGINT[]))"
    with _connect() as con:
        for msisdn, spend, data, voice in con.execute(f"""
                SELECT msisdn, coalesce(sum(charge_fen) FILTER (WHERE {_BILLABLE}), 0)::BIGINT,
                       {_DATA_BYTES},
                       coalesce(sum(duration_s) FILTER (WHERE type = 'voice_mo' AND {_BILLABLE}), 0)::BIGINT
                FROM {_source(store_dir)}{keep} GROUP BY msisdn""", [*params, wanted]).fetchall():
            out[int(msisdn)].update(spend_fen=int(spend), data_bytes=int(data), voice_mo_s=int(voice))
        topups = _files(store_dir, "topups", required=False)
        if topups:
            for msisdn, amount in con.execute(f"""
                    SELECT msisdn, coalesce(sum(amount_fen), 0)::BIGINT
                    FROM read_parquet('{topups}', hive_partitioning = true){keep} GROUP BY msisdn""",
                                              [*params, wanted]).fetchall():
                out[int(msisdn)]["topup_fen"] = int(amount)
    return out


def time_of_day_profile(store_dir, *, msisdn: int | None = None, region: str | None = None, start=None, end=None,
                        type: str | None = None) -> pd.DataFrame:
    """Billable usage per local hour 0..23 (all 24 rows): records, voice seconds, data bytes, share of records."""
    where, params = _where(start=start, end=end, msisdn=msisdn, region=region)
    where += (" AND " if where else " WHERE ") + _BILLABLE
    if type is not None:
        where += " AND type = ?"
        params.append(str(type))
    sql = f"""
        WITH usage AS (
            SELECT {HOUR_SQL.format(col='start')} AS hour, count(*) AS records,
                   coalesce(sum(duration_s) FILTER (WHERE type IN ('voice_mo', 'voice_mt')), 0)::BIGINT AS voice_s,
                   coalesce(sum(bytes_up + bytes_down), 0)::BIGINT AS data_bytes
            FROM {_source(store_dir)}{where}
            GROUP BY hour)
        SELECT h.hour::INTEGER AS hour, coalesce(records, 0)::BIGINT AS records,
               coalesce(voice_s, 0)::BIGINT AS voice_s, coalesce(data_bytes, 0)::BIGINT AS data_bytes
        FROM range(24) AS h(hour) LEFT JOIN usage ON usage.hour = h.hour
        ORDER BY hour"""
    with _connect() as con:
        frame = con.execute(sql, params).df()
    total = frame["records"].sum()
    frame["share"] = frame["records"] / total if total else 0.0
    return frame


def available_days(store_dir) -> list[date]:
    """The days the store holds usage records for, oldest first."""
    root = Path(store_dir) / "records"
    days = []
    for path in root.glob("day=*"):
        if any(path.glob("*.parquet")):
            try:
                days.append(date.fromisoformat(path.name.split("=", 1)[1]))
            except ValueError:
                continue
    return sorted(days)


def _gb(data_bytes: int) -> str:
    return str((Decimal(int(data_bytes)) / GIB).quantize(Decimal("0.001")))


def _minutes(seconds: int) -> str:
    return str((Decimal(int(seconds)) / 60).quantize(Decimal("0.1")))


def _yuan(fen: int) -> str:
    return str(fen_to_yuan(int(fen)))


def daily_report(store_dir, day: date | str, *, top: int = 5) -> dict:
    """The statistics of one local day, as a plain dict ready for JSON.

    Money as Decimal yuan strings, data in GB (2**30 bytes) and minutes as Decimal
    strings, counts as ints. ``active_cards`` counts numbers with billable usage that
    day; ``refusals`` the refused attempts by reason and ``refusing_cards`` the
    numbers behind them (lost or replaced cards attempting use are fraud signals).
    """
    day = _as_day(day, "day")
    records = _source(store_dir)
    known = available_days(store_dir)
    if day not in known:
        raise InvalidValue("day", str(day), f"has no usage records (days in the store: {known[0]}..{known[-1]})")
    with _connect() as con:
        totals = con.execute(f"""
            SELECT count(*) AS all_records, {_usage_columns()},
                   count(DISTINCT msisdn) FILTER (WHERE {_BILLABLE}) AS active_cards,
                   count(DISTINCT cell_id) FILTER (WHERE {_BILLABLE}) AS cells
            FROM {records} WHERE day = ?""", [day]).df().iloc[0]
        refusals = con.execute(f"""
            SELECT refusal, count(*) AS attempts, count(DISTINCT msisdn) AS cards
            FROM {records} WHERE day = ? AND refused GROUP BY refusal ORDER BY refusal""", [day]).fetchall()
        regions = con.execute(f"""
            SELECT region, count(*) AS records, count(DISTINCT msisdn) AS cards,
                   {_DATA_BYTES} AS data_bytes,
                   coalesce(sum(duration_s) FILTER (WHERE type = 'voice_mo'), 0)::BIGINT AS voice_mo_s
            FROM {records} WHERE day = ? AND {_BILLABLE}
            GROUP BY region ORDER BY data_bytes DESC, region LIMIT ?""", [day, int(top)]).fetchall()
        hours = con.execute(f"""
            SELECT {HOUR_SQL.format(col='start')} AS hour, count(*) AS n
            FROM {records} WHERE day = ? AND {_BILLABLE} GROUP BY hour ORDER BY n DESC, hour""", [day]).fetchall()
        topup_files = _files(store_dir, "topups", required=False)
        topup_rows = []
        if topup_files:
            topup_rows = con.execute(f"""
                SELECT channel, count(*), coalesce(sum(amount_fen), 0)::BIGINT
                FROM read_parquet('{topup_files}', hive_partitioning = true)
                WHERE day = ? GROUP BY channel ORDER BY channel""", [day]).fetchall()

    topup_count = sum(int(r[1]) for r in topup_rows)
    topup_fen = sum(int(r[2]) for r in topup_rows)
    return {
        "day": day.isoformat(),
        "records": int(totals["all_records"]),
        "billable_records": int(totals["records"]),
        "refused_records": int(totals["refused"]),
        "active_cards": int(totals["active_cards"]),
        "cells": int(totals["cells"]),
        "data_bytes": int(totals["data_bytes"]),
        "data_gb": _gb(totals["data_bytes"]),
        "data_gb_per_active_card": _gb(int(totals["data_bytes"]) // max(int(totals["active_cards"]), 1)),
        "voice_mo_calls": int(totals["voice_mo_calls"]),
        "voice_mo_minutes": _minutes(totals["voice_mo_s"]),
        "voice_mt_minutes": _minutes(totals["voice_mt_s"]),
        "sms_mo": int(totals["sms_mo"]),
        "sms_mt": int(totals["sms_mt"]),
        "charges_yuan": _yuan(totals["charge_fen"]),
        "topups": {
            "count": topup_count,
            "yuan": _yuan(topup_fen),
            "by_channel": {str(ch): {"count": int(n), "yuan": _yuan(fen)} for ch, n, fen in topup_rows},
        },
        "refusals": {str(reason): int(n) for reason, n, _ in refusals},
        "refusing_cards": {str(reason): int(cards) for reason, _, cards in refusals},
        "peak_hour": int(hours[0][0]) if hours else None,
        "quietest_hour": int(hours[-1][0]) if hours else None,
        "top_regions": [
            {"region": str(r), "records": int(n), "cards": int(c), "data_gb": _gb(b), "voice_mo_minutes": _minutes(v)}
            for r, n, c, b, v in regions
        ],
    }


def report(store_dir, day: date | str | None = None) -> dict:
    """``daily_report`` of ``day``, or of the latest day in the store (for ``hkops usage stats``)."""
    if day is None:
        days = available_days(store_dir)
        if not days:
            _files(store_dir, "records")  # raises the "run hkops usage generate" error
        day = days[-1]
    return daily_report(store_dir, day)


def format_report(rep: dict) -> str:
    """The daily report as text lines for people."""
    lines = [
        f"usage on {rep['day']} (Asia/Shanghai)",
        f"  records          {rep['records']:,} ({rep['billable_records']:,} billable, {rep['refused_records']:,} refused)",
        f"  active cards     {rep['active_cards']:,} on {rep['cells']:,} cells",
        f"  data             {rep['data_gb']} GB ({rep['data_gb_per_active_card']} GB per active card)",
        f"  voice            {rep['voice_mo_minutes']} min outgoing in {rep['voice_mo_calls']:,} calls, "
        f"{rep['voice_mt_minutes']} min incoming",
        f"  SMS              {rep['sms_mo']:,} sent, {rep['sms_mt']:,} received",
        f"  charges          ¥{Decimal(rep['charges_yuan']):,}",
        f"  top-ups          {rep['topups']['count']:,} for ¥{Decimal(rep['topups']['yuan']):,}",
    ]
    if rep["peak_hour"] is not None:
        lines.append(f"  busiest hour     {rep['peak_hour']}:00, quietest {rep['quietest_hour']}:00 (of hours with usage)")
    if rep["refusals"]:
        shown = ", ".join(f"{reason} {n:,} ({rep['refusing_cards'][reason]:,} cards)" for reason, n in rep["refusals"].items())
        lines.append(f"  refused          {shown}")
    if rep["top_regions"]:
        lines.append("  top regions      " + ", ".join(f"{r['region']} {r['data_gb']} GB" for r in rep["top_regions"]))
    return "\n".join(lines)
