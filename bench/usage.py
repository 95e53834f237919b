"""Usage records: generation and Parquet writing throughput, and statistics over the store.

- ``usage_records_per_s`` (goal ≥ 1,000,000): records generated *and* written per
  second by ``generate_usage`` (100,000 synthetic cards × 7 days, snappy Parquet),
  wall time including generation, top-ups and the card set-up.
- ``usage_records_per_s_uncompressed``: the same run without compression.
- anchor ``pandas_write_records_per_s``: one day of the same records written the usual
  way, a pandas frame with plain string columns through ``DataFrame.to_parquet``
  (writing only, no generation).
- ``daily_report_s`` / ``usage_per_card_s``: DuckDB statistics over the written store.
"""

from __future__ import annotations

import tempfile
import time
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq


def _size_mib(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*.parquet")) / (1 << 20), 1)


def run(cards: int = 100_000, days: int = 7, log=None) -> dict:
    from hkops.analytics import usage_stats
    from hkops.network.usage import generate_usage, synthetic_cards

    say = log or (lambda *_: None)
    start = date(2026, 11, 2)
    frame = synthetic_cards(cards, seed=7)
    result: dict = {"usage_cards": cards, "usage_days": days}
    with tempfile.TemporaryDirectory(prefix="hkops-bench-usage-") as tmp:
        tmp = Path(tmp)
        generate_usage(frame.iloc[:2_000], start=start, days=1, seed=1, out_dir=tmp / "warm")  # imports, caches
        say(f"generating {cards:,} cards × {days} days (snappy)")
        snappy = generate_usage(frame, start=start, days=days, seed=1, out_dir=tmp / "snappy")
        say(f"  {snappy.records:,} records in {snappy.seconds:.2f} s")
        say("the same, uncompressed")
        plain = generate_usage(frame, start=start, days=days, seed=1, out_dir=tmp / "none", compression="none")
        result.update({
            "usage_records": snappy.records,
            "usage_topups": snappy.topups,
            "usage_seconds": round(snappy.seconds, 2),
            "usage_records_per_s": round(snappy.records_per_s),
            "usage_records_per_s_uncompressed": round(plain.records_per_s),
            "usage_store_mib": _size_mib(tmp / "snappy" / "records"),
            "usage_store_mib_uncompressed": _size_mib(tmp / "none" / "records"),
        })

        say("anchor: one day through pandas.DataFrame.to_parquet")
        day_dir = tmp / "snappy" / "records" / f"day={start.isoformat()}"
        day_frame = pq.read_table(day_dir).to_pandas()
        for column in day_frame.select_dtypes("category").columns:
            day_frame[column] = day_frame[column].astype(object)
        began = time.perf_counter()
        day_frame.to_parquet(tmp / "pandas.parquet", compression="snappy")
        result["pandas_write_records_per_s"] = round(len(day_frame) / (time.perf_counter() - began))
        result["usage_to_pandas_write_ratio"] = round(result["usage_records_per_s"] / result["pandas_write_records_per_s"], 2)
        del day_frame

        say("statistics over the store")
        began = time.perf_counter()
        usage_stats.daily_report(tmp / "snappy", start)
        result["daily_report_s"] = round(time.perf_counter() - began, 3)
        began = time.perf_counter()
        usage_stats.usage_per_card(tmp / "snappy", limit=100)
        result["usage_per_card_s"] = round(time.perf_counter() - began, 3)
        result["usage_goal_met"] = result["usage_records_per_s"] >= 1_000_000
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(run(log=print), indent=2))
