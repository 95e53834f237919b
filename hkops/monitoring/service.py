"""Live monitoring's use cases: consume the usage feed into alerts, list, acknowledge and
close alerts. The only writer of :mod:`hkops.monitoring.tables`.

:func:`consume` reads the feed's micro-batches after the consumer's watermark, evaluates the
rules on them (:mod:`hkops.monitoring.detect`, vectorised) and, in one transaction, stores
the alerts (new ones audited as raised; one alert per rule, subject and window: a rule firing
again adds hits to it) and moves the watermark past those batches. A monitor stopped at any
moment therefore resumes without losing or counting twice a record.

An alert is ``open`` → ``acknowledged`` → ``closed`` (or ``open`` → ``closed``); each move is
audited (entity ``alert``, subject its id). Acknowledging an alert that is not open, or
closing a closed one, is refused.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, and_, bindparam, func, select, tuple_

from hkops.audit import Event, audit_log, record
from hkops.errors import IllegalTransition, InvalidValue, NotFound
from hkops.monitoring.tables import alerts, monitor_watermarks
from hkops.security import access
from hkops.store.engine import Store
from hkops.timeutil import as_utc, local, utc_now

STATES = ("open", "acknowledged", "closed")
CONSUMER = "monitor"
#: The most feed batches evaluated (and committed) together when the monitor is behind.
MAX_BATCHES = 100


@dataclass
class Step:
    """What one :func:`consume` call did."""

    batches: int = 0
    records: int = 0
    raised: int = 0
    updated: int = 0
    watermark: int = 0
    #: Seconds from each raised alert's first record entering the feed to the alert stored.
    lags: list[float] = field(default_factory=list)


@dataclass
class Monitor:
    """A running monitor: its rules and detectors, the feed it reads, the usage history."""

    db: Store
    rules: list
    feed_dir: Path
    history_dir: Path | None = None
    consumer: str = CONSUMER
    detector: object = None
    last_census: float | None = None

    def __post_init__(self):
        from hkops.monitoring.detect import Detector

        self.detector = Detector(self.rules, self.history_dir)


def watermark(db: Store | Connection, consumer: str = CONSUMER) -> tuple[int, int]:
    """(last batch consumed, records consumed) of ``consumer``; (0, 0) before its first batch."""
    def query(conn):
        row = conn.execute(select(monitor_watermarks.c.batch, monitor_watermarks.c.records)
                           .where(monitor_watermarks.c.consumer == consumer)).first()
        return (row.batch, row.records) if row else (0, 0)

    if isinstance(db, Connection):
        return query(db)
    with db.read() as conn:
        return query(conn)


def _swaps(conn: Connection, since: datetime, activations: bool = False):
    """The latest SIM swap (UTC µs) per MSISDN since ``since``: replacement cards' swapped_at,
    and with ``activations`` the activation of cards activated since then (CAMARA counts a new
    subscription as a swap)."""
    import numpy as np
    import pandas as pd

    from hkops.cards.tables import sims

    when = func.coalesce(sims.c.swapped_at, sims.c.activated_at) if activations else sims.c.swapped_at
    rows = conn.execute(select(sims.c.msisdn, func.max(when))
                        .where(when >= since, sims.c.msisdn.is_not(None))
                        .group_by(sims.c.msisdn)).all()
    if not rows:
        return pd.Series(dtype=np.int64)
    stamps = [int(as_utc(at).timestamp() * 1_000_000) for _, at in rows]
    return pd.Series(stamps, index=np.array([m for m, _ in rows], dtype=np.int64))


def consume(monitor: Monitor, *, actor: str, now: datetime | None = None, max_batches: int = MAX_BATCHES) -> Step:
    """Evaluate the feed batches after the watermark (at most ``max_batches``) and store their
    alerts with the new watermark, in one transaction."""
    from hkops.monitoring.detect import FEED_COLUMNS, as_frame
    from hkops.network import feed

    access.require(actor, "monitoring.write", "run the monitor", monitor.db)
    db, detector = monitor.db, monitor.detector
    position, _ = watermark(db, monitor.consumer)
    if detector.position != position:  # first step, or another monitor moved on: read the state back
        detector.rebuild(monitor.feed_dir, position)
    pending = feed.batches(monitor.feed_dir, after=position, limit=max_batches)
    step = Step(watermark=position)
    if not pending:
        return step
    frame = as_frame(feed.read([path for _, path in pending], FEED_COLUMNS))
    swaps = None
    swap_rules = [r for r in detector.rules if r.kind == "sim_swap_traffic"]
    if swap_rules and len(frame):
        oldest = int(frame["start"].min()) / 1e6 - max(r["max_age_hours"] for r in swap_rules) * 3600
        with db.read() as conn:
            swaps = _swaps(conn, _when(oldest * 1e6), any(r["count_activation"] for r in swap_rules))
    found = detector.evaluate(frame, swaps)
    last = pending[-1][0]
    with db.write() as conn:
        current, records = watermark(conn, monitor.consumer)
        if current != position:
            raise IllegalTransition(f"monitor {monitor.consumer}: another monitor consumed batches "
                                    f"{position + 1}..{current} meanwhile; run one monitor per consumer name")
        raised, updated, new_rows = _store(conn, found, actor, now or utc_now())
        _set_watermark(conn, monitor.consumer, last, records + len(frame))
    stored = time.time()
    detector.absorb(frame)
    detector.position = last
    step.batches, step.records, step.raised, step.updated, step.watermark = len(pending), len(frame), raised, updated, last
    step.lags = [stored - written / 1e6 for written in new_rows]
    return step


def _set_watermark(conn: Connection, consumer: str, batch: int, records: int) -> None:
    values = {"batch": batch, "records": records, "updated_at": utc_now()}
    done = conn.execute(monitor_watermarks.update().where(monitor_watermarks.c.consumer == consumer).values(**values))
    if not done.rowcount:
        conn.execute(monitor_watermarks.insert().values(consumer=consumer, **values))


def _when(us) -> datetime:
    from datetime import timezone

    return datetime.fromtimestamp(int(us) / 1e6, tz=timezone.utc)


def _store(conn: Connection, found, actor: str, now: datetime) -> tuple[int, int, list[int]]:
    """Store findings: new (rule, subject, window) → a new open alert (audited); known and not
    closed → more hits. Returns (raised, updated, written_at of each raised alert in µs)."""
    if found is None or not len(found):
        return 0, 0, []
    keys = list(zip(found["rule"], found["subject"], found["window"]))
    existing: dict[tuple, tuple] = {}
    for i in range(0, len(keys), 300):
        chunk = keys[i:i + 300]
        for row in conn.execute(select(alerts.c.id, alerts.c.rule, alerts.c.subject, alerts.c.window, alerts.c.state)
                                .where(tuple_(alerts.c.rule, alerts.c.subject, alerts.c.window).in_(chunk))):
            existing[(row.rule, row.subject, row.window)] = (row.id, row.state)
    new, bumps, lags = [], [], []
    for item, key in zip(found.itertuples(index=False), keys):
        if key in existing:
            alert_id, state = existing[key]
            if state != "closed":
                bumps.append({"b_id": alert_id, "b_hits": int(item.hits), "b_last": _when(item.last_seen)})
            continue
        new.append({"rule": item.rule, "kind": item.kind, "severity": item.severity, "subject": item.subject,
                    "window": item.window, "state": "open", "first_seen": _when(item.first_seen),
                    "last_seen": _when(item.last_seen), "hits": int(item.hits), "details": item.details,
                    "raised_at": now})
        lags.append(int(item.written_at))
    if bumps:
        conn.execute(alerts.update().where(alerts.c.id == bindparam("b_id"))
                     .values(hits=alerts.c.hits + bindparam("b_hits"),
                             last_seen=bindparam("b_last", type_=alerts.c.last_seen.type)), bumps)
    if new:
        ids = conn.execute(alerts.insert().returning(alerts.c.id, sort_by_parameter_order=True), new).scalars().all()
        record(conn, actor, [Event("alert", str(alert_id), "raise", None, "open", None,
                                   {"rule": row["rule"], "subject": row["subject"], "window": row["window"]})
                             for alert_id, row in zip(ids, new)], at=now)
    return len(new), len(bumps), lags


def census(monitor: Monitor, *, actor: str, now: datetime | None = None) -> int:
    """Run the rules that look at the inventory rather than the feed (``never_used``: cards
    active for N days without a billable record in the usage store or the feed). Returns the
    alerts raised."""
    import numpy as np
    import pandas as pd

    from hkops.cards.tables import sims
    from hkops.monitoring.detect import FINDING_COLUMNS, labels, window_start

    access.require(actor, "monitoring.write", "run the monitor", monitor.db)
    now = now or utc_now()
    rules = [r for r in monitor.rules if r.enabled and r.kind == "never_used"]
    parts = []
    for rule in rules:
        cutoff = now - timedelta(days=rule["days"])
        with monitor.db.read() as conn:
            cards = pd.DataFrame(conn.execute(select(sims.c.msisdn, sims.c.activated_at).where(
                sims.c.state == "active", sims.c.activated_at <= cutoff, sims.c.msisdn.is_not(None))).all(),
                columns=["msisdn", "activated_at"])
        if cards.empty:
            continue
        used = _used_numbers(monitor, cards["msisdn"].astype(np.int64).to_numpy())
        idle = cards[~cards["msisdn"].astype(np.int64).isin(used)]
        if idle.empty:
            continue
        activated = np.array([int(as_utc(a).timestamp() * 1_000_000) for a in idle["activated_at"]], dtype=np.int64)
        now_us = int(now.timestamp() * 1_000_000)
        days_idle = ((now_us - activated) // (86_400 * 1_000_000)).astype(int)
        parts.append(pd.DataFrame({
            "rule": rule.name, "kind": rule.kind, "severity": rule.severity,
            "subject": idle["msisdn"].astype(np.int64).astype(str).to_numpy(),
            "window": "activated " + labels(window_start(activated, 24), minutes=False),
            "first_seen": activated, "last_seen": now_us, "hits": 1,
            "details": [json.dumps({"activated_at": local(as_utc(a)), "days": int(d)})
                        for a, d in zip(idle["activated_at"], days_idle)],
            "written_at": now_us}, columns=FINDING_COLUMNS))
    if not parts:
        return 0
    with monitor.db.write() as conn:
        raised, _, _ = _store(conn, pd.concat(parts, ignore_index=True), actor, now)
    monitor.last_census = time.monotonic()
    return raised


def _used_numbers(monitor: Monitor, candidates) -> set[int]:
    """The candidates that made a billable record in the usage store or in the feed."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    used: set[int] = set()
    wanted = pa.array(np.unique(candidates))
    sources = []
    if monitor.history_dir and Path(monitor.history_dir).is_dir():
        files = sorted(str(p) for p in Path(monitor.history_dir).glob("day=*/*.parquet"))
        if files:
            sources.append(ds.dataset(files, format="parquet"))
    feed_files = sorted(str(p) for p in Path(monitor.feed_dir).glob("batch-*.arrow")) if \
        Path(monitor.feed_dir).is_dir() else []
    if feed_files:
        sources.append(ds.dataset(feed_files, format="ipc"))
    for source in sources:
        table = source.to_table(columns=["msisdn"], filter=(~pc.field("refused")) & pc.field("msisdn").isin(wanted))
        used.update(pc.unique(table.column("msisdn")).to_pylist())
    return used


def census_due(monitor: Monitor) -> bool:
    """Whether the inventory rules are due (every ``every_minutes`` of the shortest)."""
    minutes = [r["every_minutes"] for r in monitor.rules if r.enabled and r.kind == "never_used"]
    if not minutes:
        return False
    return monitor.last_census is None or time.monotonic() - monitor.last_census >= min(minutes) * 60


# ---------------------------------------------------------------- alerts


def _row(row) -> dict:
    return {"id": row.id, "rule": row.rule, "kind": row.kind, "severity": row.severity, "subject": row.subject,
            "window": row.window, "state": row.state, "first_seen": local(row.first_seen),
            "last_seen": local(row.last_seen), "hits": row.hits,
            "details": json.loads(row.details) if row.details else {}, "raised_at": local(row.raised_at),
            "acknowledged_by": row.acknowledged_by,
            "acknowledged_at": local(row.acknowledged_at) if row.acknowledged_at else None,
            "closed_by": row.closed_by, "closed_at": local(row.closed_at) if row.closed_at else None,
            "reason": row.reason}


def list_alerts(db: Store, *, actor: str, state: str | None = None, rule: str | None = None,
                limit: int = 500) -> list[dict]:
    """Alerts, newest first, optionally of one state (or ``active``: open and acknowledged) and rule."""
    access.require(actor, "monitoring.read", "see alerts", db)
    query = select(alerts).order_by(alerts.c.id.desc()).limit(limit)
    if state == "active":
        query = query.where(alerts.c.state.in_(("open", "acknowledged")))
    elif state:
        if state not in STATES:
            raise InvalidValue("state", state, f"must be one of {', '.join(STATES)} or active")
        query = query.where(alerts.c.state == state)
    if rule:
        query = query.where(alerts.c.rule == rule)
    with db.read() as conn:
        return [_row(r) for r in conn.execute(query)]


def get_alert(db: Store, alert_id: int, *, actor: str) -> dict:
    """One alert by id."""
    access.require(actor, "monitoring.read", f"see alert {alert_id}", db)
    with db.read() as conn:
        row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()
    if row is None:
        raise NotFound(f"alert {alert_id} does not exist")
    return _row(row)


def counts(db: Store, *, actor: str) -> dict[str, int]:
    """Alerts per state."""
    access.require(actor, "monitoring.read", "see alerts", db)
    with db.read() as conn:
        found = dict(conn.execute(select(alerts.c.state, func.count()).group_by(alerts.c.state)).all())
    return {state: found.get(state, 0) for state in STATES}


def _move(db: Store, alert_id: int, *, actor: str, to: str, reason: str | None) -> dict:
    verb = {"acknowledged": "acknowledge", "closed": "close"}[to]
    access.require(actor, "monitoring.write", f"{verb} alert {alert_id}", db)
    if to == "closed" and not (reason or "").strip():
        raise InvalidValue("reason", reason or "", "say why the alert is closed (what was found or done)")
    now = utc_now()
    with db.write() as conn:
        row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()
        if row is None:
            raise NotFound(f"alert {alert_id} does not exist")
        allowed = ("open",) if to == "acknowledged" else ("open", "acknowledged")
        if row.state not in allowed:
            by = row.acknowledged_by if row.state == "acknowledged" else row.closed_by
            at = row.acknowledged_at if row.state == "acknowledged" else row.closed_at
            raise IllegalTransition(f"alert {alert_id} is already {row.state} (by {by} at {local(at)}): "
                                    f"it cannot be {to} again")
        values = ({"acknowledged_at": now, "acknowledged_by": str(actor)} if to == "acknowledged"
                  else {"closed_at": now, "closed_by": str(actor)})
        if reason:
            values["reason"] = reason.strip()
        done = conn.execute(alerts.update().where(alerts.c.id == alert_id, alerts.c.state == row.state)
                            .values(state=to, **values))
        if done.rowcount != 1:
            raise IllegalTransition(f"alert {alert_id} changed meanwhile; look again")
        record(conn, actor, [Event("alert", str(alert_id), verb, row.state, to, reason,
                                   {"rule": row.rule, "subject": row.subject})], at=now)
        return _row(conn.execute(select(alerts).where(alerts.c.id == alert_id)).one())


def acknowledge(db: Store, alert_id: int, *, actor: str, reason: str | None = None) -> dict:
    """open → acknowledged (someone is looking at it). Refused when not open."""
    return _move(db, alert_id, actor=actor, to="acknowledged", reason=reason)


def close(db: Store, alert_id: int, *, actor: str, reason: str) -> dict:
    """open or acknowledged → closed, with the reason (required)."""
    return _move(db, alert_id, actor=actor, to="closed", reason=reason)


def inconsistencies(conn: Connection) -> list[dict]:
    """Alerts whose state is not the one their latest audit record moved them to (or that no
    audit record raised): for ``hkops check``."""
    from sqlalchemy import Integer, cast

    latest = (select(audit_log.c.subject, func.max(audit_log.c.id).label("last"))
              .where(audit_log.c.entity == "alert").group_by(audit_log.c.subject).subquery())
    audited = (select(latest.c.subject, audit_log.c.to_state)
               .join(audit_log, audit_log.c.id == latest.c.last).subquery())
    rows = conn.execute(select(alerts.c.id, alerts.c.state, audited.c.to_state)
                        .select_from(alerts.outerjoin(audited, audited.c.subject == cast(alerts.c.id, audit_log.c.subject.type)))
                        .where((audited.c.to_state.is_(None)) | (audited.c.to_state != alerts.c.state))
                        .order_by(alerts.c.id)).all()
    return [{"alert": r.id, "state": r.state, "audited_state": r.to_state} for r in rows]
