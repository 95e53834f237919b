"""Live monitoring: the lag from a record entering the usage feed to its alert stored.

- ``monitor_lag_p95_s`` (goal ≤ 5 s): ``hkops usage stream``'s feed (its own process) writes
  50,000 records a second in 0.2 s micro-batches for ``seconds`` seconds (200,000 synthetic
  cards, 1% lost, 2% terminated, 0.05% of records in another province: a steady flow of
  lost-card and impossible-travel alerts); the monitor (this process, SQLite, the rules
  shipped with hkops) consumes it. For every alert raised: the time from the feed batch that
  fired it being written to the transaction storing the alert committed. p50, p95 and max.
- ``monitor_records_per_s``: records the monitor consumed per second of its own work.
- anchor ``travel_per_record_python_s``: the impossible-travel rule written as a Python loop
  over the records of one second of feed (50,000: a dict of each card's last place), against
  ``travel_vectorised_s`` (the monitor's detector, numpy) and ``all_rules_vectorised_s``
  (every feed rule of the monitor) on the same records; both find the same records.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

RATE = 50_000
CARDS = 200_000
_STREAM = """
import sys
from hkops.network import feed
from hkops.network.usage import synthetic_cards
cards = synthetic_cards({cards}, seed=11, state_shares={{"active": 0.95, "lost": 0.01, "terminated": 0.02,
                                                        "suspended": 0.02}})
source = feed.FeedSource(cards, seed=11, clone_share=0.0005)
print("ready", flush=True)
summary = feed.stream(source, sys.argv[1], rate={rate}, duration={seconds}, batch_s=0.2)
print(summary.records, summary.batches, summary.seconds, flush=True)
"""


def run(seconds: float = 30, rate: int = RATE, cards: int = CARDS, log=None) -> dict:
    """Stream ``rate`` records a second for ``seconds`` while the monitor consumes; the figures."""
    import numpy as np

    from hkops.monitoring import service
    from hkops.monitoring.rules import load_rules
    from hkops.store import migrate
    from hkops.store.engine import Store

    say = log or (lambda *_: None)
    with tempfile.TemporaryDirectory(prefix="hkops-bench-monitoring-") as tmp:
        tmp = Path(tmp)
        db = Store(f"sqlite:///{tmp / 'hkops.db'}")
        migrate.upgrade(db)
        monitor = service.Monitor(db, load_rules(), tmp / "stream", tmp / "records")
        say(f"streaming {rate:,} records/s for {seconds:.0f} s over {cards:,} cards; the monitor consumes")
        stream = subprocess.Popen([sys.executable, "-c", _STREAM.format(cards=cards, rate=rate, seconds=seconds),
                                   str(monitor.feed_dir)], stdout=subprocess.PIPE, text=True)
        assert stream.stdout.readline().strip() == "ready"
        lags, consumed, busy, raised = [], 0, 0.0, 0
        try:
            while True:
                began = time.perf_counter()
                step = service.consume(monitor, actor="bench")
                if step.batches:
                    busy += time.perf_counter() - began
                    lags += step.lags
                    consumed += step.records
                    raised += step.raised
                elif stream.poll() is not None:
                    break
                else:
                    time.sleep(0.05)
        finally:
            if stream.poll() is None:
                stream.kill()
        written, batches, stream_s = stream.stdout.read().split()
        lag = np.array(lags) if lags else np.array([np.nan])
        result = {
            "monitor_rate_records_per_s": rate,
            "monitor_stream_records": int(written),
            "monitor_stream_records_per_s": round(int(written) / float(stream_s)),
            "monitor_stream_batches": int(batches),
            "monitor_records_consumed": consumed,
            "monitor_alerts": raised,
            "monitor_lag_p50_s": round(float(np.percentile(lag, 50)), 3),
            "monitor_lag_p95_s": round(float(np.percentile(lag, 95)), 3),
            "monitor_lag_max_s": round(float(lag.max()), 3),
            "monitor_records_per_s": round(consumed / busy) if busy else None,
        }
        say(f"  {consumed:,} records, {raised} alerts, lag p95 {result['monitor_lag_p95_s']} s")
        result.update(_anchor(monitor, rate))
        db.dispose()
    return result


def _anchor(monitor, rate: int) -> dict:
    """The impossible-travel rule on one second of feed: a Python loop over the records (a dict
    of each card's last place) against the vectorised detector; and every feed rule vectorised."""
    import math

    from hkops.monitoring.detect import FEED_COLUMNS, Detector, as_frame, place_of
    from hkops.network import feed

    paths = [path for _, path in feed.batches(monitor.feed_dir)]
    table = feed.read(paths[-60:], FEED_COLUMNS).slice(0, rate)
    frame = as_frame(table)
    rule = next(r for r in monitor.rules if r.kind == "impossible_travel")
    rows = table.select(["msisdn", "start", "region"]).to_pylist()
    began = time.perf_counter()
    last: dict = {}
    fired = 0
    for record in rows:
        lat, lon = place_of(record["region"])
        at = record["start"].timestamp()
        seen = last.get(record["msisdn"])
        if seen is not None:
            p1, p2 = math.radians(seen[1]), math.radians(lat)
            a = (math.sin((p2 - p1) / 2) ** 2
                 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon - seen[2]) / 2) ** 2)
            km = 2 * 6371.0 * math.asin(math.sqrt(min(max(a, 0.0), 1.0)))
            minutes = (at - seen[0]) / 60
            if km >= rule["min_km"] and minutes <= rule["within_minutes"] and \
                    km / max(minutes, 1 / 60) * 60 >= rule["max_kmh"]:
                fired += 1
        last[record["msisdn"]] = (at, lat, lon)
    loop_s = time.perf_counter() - began
    detector = Detector(monitor.rules, monitor.history_dir)
    began = time.perf_counter()
    found = detector._impossible_travel(rule, frame, None)
    travel_s = time.perf_counter() - began
    began = time.perf_counter()
    detector.evaluate(frame)
    return {"anchor_records": len(rows), "travel_per_record_python_s": round(loop_s, 4),
            "travel_vectorised_s": round(travel_s, 4), "all_rules_vectorised_s": round(time.perf_counter() - began, 4),
            "travel_found_python": fired, "travel_found_vectorised": 0 if found is None else int(found["hits"].sum())}


def monitor_lag_p95_s(seconds: float = 30, rate: int = RATE) -> float:
    """p95 seconds from a record written to the usage feed to its alert stored, at ``rate``
    records a second (for ``python -m bench analytics``)."""
    return run(seconds=seconds, rate=rate)["monitor_lag_p95_s"]
