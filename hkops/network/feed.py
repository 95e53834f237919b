"""The network's live usage feed: records as they happen, appended in micro-batches.

``hkops usage stream`` plays the network: every ``batch_s`` seconds it writes the records
made since the last batch (billable usage of the cards in service, and the refused attempts
of suspended, lost, terminated and replaced cards) as one Arrow IPC file
``<usage store>/stream/batch-<sequence>.arrow``. A file is written under a temporary name
and linked to its final name, which fails if it exists: a batch appears whole or not at all
and is never rewritten, so a consumer that remembers the last sequence it read (the
monitor's watermark) resumes exactly there.

A batch has the columns of :data:`hkops.network.usage.RECORD_SCHEMA` plus ``written_at``,
the moment the batch was handed to the feed (the monitor's lag is measured from it).

Who makes the records: the same per-card activity as ``generate_usage`` (the same seed gives
each card the same multipliers, so a card's live use matches its history in the Parquet
store), spread over the seconds of the batch in proportion to each card's expected records
per day. ``rate`` (records per second) defaults to the population's own rate; a higher rate
is a load test (every card then uses more than it does in its history). ``outage`` silences
the named provinces (a regional outage to watch for), ``clone_share`` puts that share of
records in another province than the card's (a cloned card: one card in two places).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from hkops.errors import InvalidValue

#: The feed's folder under the usage store.
STREAM_FOLDER = "stream"
_NAME = re.compile(r"^batch-(\d{12})\.arrow$")
#: Stream record ids: this bit set (ids of generated days are below 2**48), the batch sequence, the row.
_ID_FLAG = 1 << 62
_ROWS_BITS = 24


def stream_dir(out_dir: str | Path | None = None) -> Path:
    """The feed folder of the usage store ``out_dir`` (default ``HKOPS_USAGE_STORE``, else ``data/usage``)."""
    from hkops.analytics.engine import store_location

    return Path(store_location(out_dir)) / STREAM_FOLDER


def feed_schema():
    """The schema of a feed batch: the usage record schema plus ``written_at``."""
    import pyarrow as pa

    from hkops.network.usage import RECORD_SCHEMA

    return RECORD_SCHEMA.append(pa.field("written_at", pa.timestamp("us", tz="UTC")))


def _path(folder: Path, sequence: int) -> Path:
    return folder / f"batch-{sequence:012d}.arrow"


def batches(folder: str | Path, after: int = 0, limit: int | None = None) -> list[tuple[int, Path]]:
    """The feed's batches with a sequence above ``after``, oldest first (at most ``limit``):
    (sequence, path). A consumer whose last batch is still there probes the sequences after it
    (batches are numbered without gaps), so a look costs the new batches, not the whole folder."""
    folder = Path(folder)
    if after > 0 and _path(folder, after).exists():
        found, sequence = [], after + 1
        while (limit is None or len(found) < limit) and _path(folder, sequence).exists():
            found.append((sequence, _path(folder, sequence)))
            sequence += 1
        return found
    if not folder.is_dir():
        return []
    found = []
    for entry in os.scandir(folder):
        match = _NAME.match(entry.name)
        if match and int(match.group(1)) > after:
            found.append((int(match.group(1)), Path(entry.path)))
    return sorted(found)[:limit]


def last_sequence(folder: str | Path) -> int:
    """The sequence of the newest batch (0 for an empty feed)."""
    found = batches(folder)
    return found[-1][0] if found else 0


def append(folder: str | Path, table, sequence: int | None = None) -> tuple[int, Path]:
    """Append ``table`` (the feed schema; ``written_at`` is set now) as the next batch.

    Returns (sequence, path). The file is complete before it gets its name; a sequence
    taken meanwhile by another writer moves this batch to the next free one.
    """
    import pyarrow as pa

    from hkops.timeutil import utc_now

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    schema = feed_schema()
    missing = [name for name in schema.names if name not in table.schema.names and name != "written_at"]
    if missing:
        raise InvalidValue("batch", ", ".join(table.schema.names), f"missing column(s) {', '.join(missing)}")
    if "written_at" in table.schema.names:
        table = table.drop_columns(["written_at"])
    now = pa.array([utc_now()] * table.num_rows, type=pa.timestamp("us", tz="UTC"))
    table = table.select([n for n in schema.names if n != "written_at"]).append_column("written_at", now)
    table = table.cast(schema)
    sequence = sequence or last_sequence(folder) + 1
    temporary = folder / f".batch-{os.getpid()}-{time.monotonic_ns()}.tmp"
    with pa.OSFile(str(temporary), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        writer.write_table(table)
    try:
        while True:
            path = _path(folder, sequence)
            try:
                os.link(temporary, path)
                return sequence, path
            except FileExistsError:
                sequence += 1
    finally:
        temporary.unlink()


def table_from_frame(frame):
    """A feed batch from a pandas frame of records: ``msisdn`` and ``start`` (UTC) are needed;
    the other columns of the record schema default to a billable data record in 北京市
    (``refusal`` set makes a refused record)."""
    import pandas as pd
    import pyarrow as pa

    from hkops.network.usage import RECORD_SCHEMA

    frame = frame.reset_index(drop=True).copy()
    n = len(frame)
    defaults = {"record_id": range(n), "type": "data", "imsi": frame["msisdn"].astype(str), "duration_s": 60,
                "bytes_up": 1_000, "bytes_down": 10_000, "cell_id": 1, "area": "北京市", "region": "北京市",
                "rat": "5G", "charge_fen": 0, "refusal": None}
    for column, value in defaults.items():
        if column not in frame.columns:
            frame[column] = list(value) if isinstance(value, (range, pd.Series)) else [value] * n
    frame["refused"] = frame["refusal"].notna()
    frame["start"] = pd.to_datetime(frame["start"], utc=True)
    return pa.Table.from_pandas(frame[RECORD_SCHEMA.names], schema=RECORD_SCHEMA, preserve_index=False)


def prune(folder: str | Path, keep_s: float, now: float | None = None) -> int:
    """Delete the batches written more than ``keep_s`` seconds ago (the feed's retention);
    returns how many. The newest batch is always kept, so that sequence numbers are never
    reused. A consumer stopped for longer than that loses them, as with any feed that keeps a
    fixed time of history."""
    cutoff = (now if now is not None else time.time()) - keep_s
    gone = 0
    for _, path in batches(folder)[:-1]:
        try:
            if path.stat().st_mtime >= cutoff:
                break  # written in order: the rest are newer
            path.unlink()
            gone += 1
        except FileNotFoundError:
            continue
    return gone


def read(paths: Iterable[Path], columns: list[str] | None = None):
    """The records of the batches at ``paths`` as one Arrow table (memory-mapped)."""
    import pyarrow as pa

    tables = []
    for path in paths:
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_file(source).read_all()
        tables.append(table.select(columns) if columns else table)
    if not tables:
        return feed_schema().empty_table().select(columns) if columns else feed_schema().empty_table()
    return pa.concat_tables(tables)


@dataclass
class FeedSource:
    """Makes the feed's records for a population of cards (the ``cards`` frame of
    :mod:`hkops.network.usage`)."""

    cards: object
    seed: int = 7
    clone_share: float = 0.0
    outage: tuple[str, ...] = ()
    _rng: object = field(init=False, repr=False)

    def __post_init__(self):
        import numpy as np

        from hkops.network import usage as u

        if not 0 <= self.clone_share <= 1:
            raise InvalidValue("clone_share", self.clone_share, "must be between 0 and 1")
        frame = u._check_cards(self.cards)
        # The same seed as generate_usage: each card gets the activity it has in the Parquet history.
        self.pop = pop = u._population(frame, np.random.default_rng(np.random.SeedSequence([self.seed, 0])))
        self._rng = np.random.default_rng(np.random.SeedSequence([self.seed, 2, time.time_ns()]))
        per_type = np.array([u.RECORDS_PER_DAY[t] for t in range(5)])
        # Each card's expected records a day, as in the generated history (refusals for refusing cards).
        self.per_day = np.zeros(pop.n)
        active, refusing = np.flatnonzero(pop.active), np.flatnonzero(~pop.active)
        self.per_day[active] = u._usage_rates(pop, active).sum(axis=1)
        self.per_day[refusing] = u._refusal_rates(pop, refusing)
        provinces = pop.provinces.to_pylist()
        unknown = [p for p in self.outage if not any(name.startswith(p) for name in provinces)]
        if unknown:
            raise InvalidValue("outage", unknown[0], "no card of the feed is in that province")
        silenced = [i for i, name in enumerate(provinces) if any(name.startswith(p) for p in self.outage)]
        self._silent = np.isin(pop.city_province[pop.city], silenced)
        self._active_mix = per_type / per_type.sum()

    @property
    def natural_rate(self) -> float:
        """Records per second that the cards make by themselves."""
        return float(self.per_day.sum() / 86_400)

    def records(self, start_us: int, end_us: int, count: int, first_id: int = 0):
        """``count`` records spread over [start_us, end_us) (UTC microseconds), as an Arrow table
        (without ``written_at``). Cards not yet activated and silenced provinces make none."""
        import numpy as np

        from hkops.network import usage as u

        pop, rng = self.pop, self._rng
        weights = np.where((pop.activated_us <= end_us) & ~self._silent, self.per_day, 0.0)
        cumulative = np.cumsum(weights)
        if count <= 0 or not pop.n or cumulative[-1] <= 0:
            return u._records_table(pop, first_id, *([np.zeros(0, np.int64)] * 9), None)
        card = np.searchsorted(cumulative, rng.random(count) * cumulative[-1], side="right")
        np.minimum(card, pop.n - 1, out=card)
        start = np.sort(rng.integers(start_us, max(end_us, start_us + 1), count))
        active = pop.active[card]
        rtype = np.where(active, rng.choice(5, size=count, p=self._active_mix),
                         rng.choice(5, size=count, p=u.REFUSAL_TYPE_P)).astype(np.int8)
        duration, bytes_up, bytes_down = u._sessions(rng, rtype, np.sqrt(pop.m_data[card]))
        city = pop.city[card].copy()
        if self.clone_share:
            cloned = rng.random(count) < self.clone_share
            far = pop.city[rng.integers(0, pop.n, int(cloned.sum()))]
            city[cloned] = far
        cell = pop.city_cell_base[city] + pop.home_cell[card] % pop.city_cells[city]
        charge = np.zeros(count, dtype=np.int64)  # records leave the network unrated, as in the store
        billable = u._records_table(pop, first_id, rtype[active], card[active], city[active], start[active],
                                    duration[active], bytes_up[active], bytes_down[active], cell[active],
                                    charge[active], None)
        refused = ~active
        refusals = u._refusals_table(pop, first_id + billable.num_rows, rtype[refused], card[refused],
                                     city[refused], start[refused])
        import pyarrow as pa

        return pa.concat_tables([billable, refusals]).sort_by("start")


@dataclass
class StreamSummary:
    """What one ``stream`` run appended."""

    folder: str
    batches: int = 0
    records: int = 0
    refused: int = 0
    seconds: float = 0.0
    rate: float = 0.0
    first_batch: int | None = None
    last_batch: int | None = None

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {**asdict(self), "seconds": round(self.seconds, 3), "rate": round(self.rate, 1)}


def stream(source: FeedSource, folder: str | Path, *, rate: float | None = None, duration: float | None = None,
           batch_s: float = 0.2, stop: Callable[[], bool] | None = None, keep_s: float | None = None,
           clock: Callable[[], float] = time.time) -> StreamSummary:
    """Append ``source``'s records to the feed at ``rate`` records a second (default: the
    cards' own rate), one batch every ``batch_s`` seconds, for ``duration`` seconds (None:
    until ``stop()`` says so, or Ctrl+C); with ``keep_s``, batches older than that are
    deleted as it goes (:func:`prune`, once a minute)."""
    import numpy as np

    rate = source.natural_rate if rate is None else rate
    if rate <= 0:
        raise InvalidValue("rate", rate, "must be above 0 records a second")
    if not 0.01 <= batch_s <= 60:
        raise InvalidValue("batch_s", batch_s, "must be between 0.01 and 60 seconds")
    folder = Path(folder)
    summary = StreamSummary(folder=str(folder), rate=rate)
    began = last = clock()
    owed = 0.0
    poisson = np.random.default_rng()
    sequence = last_sequence(folder)
    pruned_at = began
    try:
        while True:
            now = clock()
            if duration is not None and now - began >= duration:
                break
            if stop is not None and stop():
                break
            owed += rate * (now - last)
            count = int(poisson.poisson(owed)) if owed < 50 else int(round(owed))
            owed = max(owed - count, 0.0)
            start_us, end_us = int(last * 1_000_000), int(now * 1_000_000)
            last = now
            if count:
                table = source.records(start_us, end_us, count, _ID_FLAG | ((sequence + 1) << _ROWS_BITS))
                sequence, _ = append(folder, table, sequence + 1)
                summary.batches += 1
                summary.records += table.num_rows
                summary.refused += int(np.asarray(table.column("refused")).sum())
                summary.first_batch = summary.first_batch or sequence
                summary.last_batch = sequence
            if keep_s is not None and now - pruned_at >= 60:
                prune(folder, keep_s)
                pruned_at = now
            pause = batch_s - (clock() - now)
            if pause > 0:
                time.sleep(pause)
    except KeyboardInterrupt:
        pass
    summary.seconds = clock() - began
    return summary
