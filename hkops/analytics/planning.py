"""Number planning (号码规划): how full the pool is, when each region runs out, how many blocks to ask for.

The relational parts are pure functions of Ibis tables (``numbers``, ``number_blocks``,
``audit_log`` as :func:`hkops.analytics.engine.state_table` gives them) returning Ibis expressions:

- :func:`pool_utilisation`: the pool now per block, region or grade, by state;
- :func:`utilisation_history`: numbers in use per day, rebuilt backwards from today's states
  through the audit trail (every number move is audited), with the pool's size on that day
  (blocks count from the day they were added);
- :func:`demand_history`: numbers taken from the pool (available → reserved or assigned) per day;
- :func:`quarantine_inflow` and :func:`recycle_outflow`: terminations per day so far, and the
  quarantined numbers coming back to the pool per day ahead (their ``quarantine_until``, set
  from the setting ``quarantine_days``).

:func:`runway` (pandas) turns available numbers, expected demand and recycling into the day a
region runs out and the blocks (10,000 numbers each) to request for a target months of cover;
:func:`block_plan` and the other ``*_report`` functions read the database.
"""

from __future__ import annotations

from datetime import date, timedelta

from hkops.errors import InvalidValue
from hkops.store.engine import Store

#: Numbers in a block (号段: the 7-digit prefix of an 11-digit number).
BLOCK_SIZE = 10_000
#: States in which a number is taken (it has a holder).
IN_USE = ("reserved", "assigned", "active", "suspended")
#: What the pool can be broken down by.
LEVELS = ("block", "region", "grade")
#: Days in a month of cover.
MONTH_DAYS = 30
PLANNING_TABLES = ("numbers", "number_blocks", "audit_log")


def _local_day(ts):
    import ibis

    from hkops.analytics.engine import LOCAL_OFFSET_H

    return (ts + ibis.interval(hours=LOCAL_OFFSET_H)).date()


def _level(by: str) -> str:
    if by not in LEVELS:
        raise InvalidValue("by", by, f"must be one of {', '.join(LEVELS)}")
    return by


def numbered(numbers, blocks):
    """``numbers`` with their ``block`` (prefix), ``region`` (province), ``city`` and ``block_added`` (UTC)."""
    prefix = (numbers.msisdn // BLOCK_SIZE).cast("int64")
    with_block = numbers.mutate(block=prefix)
    joined = with_block.left_join(blocks, with_block.block == blocks.prefix)
    return joined.select(msisdn=joined.msisdn, state=joined.state, grade=joined.grade,
                         reserved_until=joined.reserved_until, quarantine_until=joined.quarantine_until,
                         block=joined.block, region=joined.province.fill_null("?"), city=joined.city,
                         block_added=joined.created_at)


def pool_utilisation(numbers, blocks, by: str = "region", as_of=None):
    """The pool per ``by`` (block, region or grade): ``total``, numbers per state (``available``
    counts reservations that lapsed before ``as_of``, an aware datetime, default now),
    ``in_use`` (reserved, assigned, active, suspended), ``utilisation`` = in_use / total and
    ``available_share`` = available / total (fractions)."""
    import ibis

    key = _level(by)
    pool = numbered(numbers, blocks)
    now = ibis.literal(as_of) if as_of is not None else ibis.now()
    lapsed = (pool.state == "reserved") & pool.reserved_until.notnull() & (pool.reserved_until <= now)
    available = (pool.state == "available") | lapsed
    reserved = (pool.state == "reserved") & ~lapsed
    grouped = pool.group_by(key).aggregate(
        total=pool.count(), planned=pool.count(where=pool.state == "planned"), available=pool.count(where=available),
        reserved=pool.count(where=reserved), assigned=pool.count(where=pool.state == "assigned"),
        active=pool.count(where=pool.state == "active"), suspended=pool.count(where=pool.state == "suspended"),
        quarantined=pool.count(where=pool.state == "quarantined"), blocked=pool.count(where=pool.state == "blocked"))
    in_use = grouped.reserved + grouped.assigned + grouped.active + grouped.suspended
    return grouped.mutate(in_use=in_use, utilisation=in_use.cast("float64") / grouped.total,
                          available_share=grouped.available.cast("float64") / grouped.total).order_by(key)


def _number_events(audit, pool):
    events = audit.filter(audit.entity == "number")
    events = events.mutate(msisdn=events.subject.cast("int64"), day=_local_day(events.at))
    return events.join(pool.select("msisdn", "block", "region", "grade"), "msisdn")


def utilisation_history(numbers, blocks, audit, days: list[date], by: str = "region"):
    """Numbers in use at the end of each of ``days`` (local) per ``by``: ``in_use`` rebuilt from
    today's states minus the audited moves after that day, ``total`` the numbers of the blocks
    added by then, and ``utilisation`` = in_use / total."""
    import ibis

    key = _level(by)
    pool = numbered(numbers, blocks)
    events = _number_events(audit, pool)
    held = list(IN_USE)
    delta = (events.to_state.isin(held).cast("int64") - events.from_state.isin(held).cast("int64"))
    events = events.mutate(delta=delta)
    calendar = ibis.memtable({"day": list(days)}, schema={"day": "date"})
    moves = events.select(key, event_day=events.day, delta=events.delta)
    pairs = calendar.cross_join(moves)
    pairs = pairs.filter(pairs.event_day > pairs.day)
    later = pairs.group_by(["day", key]).aggregate(after=pairs.delta.sum())
    now = pool.group_by(key).aggregate(in_use_now=pool.count(where=pool.state.isin(held)))
    by_day = pool.mutate(added_day=_local_day(pool.block_added)).group_by([key, "added_day"]).aggregate(
        n=ibis._.count())
    sized = calendar.cross_join(by_day)
    sized = sized.filter(sized.added_day <= sized.day)
    totals = sized.group_by(["day", key]).aggregate(total=sized.n.sum())
    grid = totals.left_join(now, totals[key] == now[key])
    grid = grid.select(day=totals.day, **{key: totals[key]}, total=totals.total.cast("int64"),
                       now=now.in_use_now.fill_null(0))
    grid2 = grid.left_join(later, (grid.day == later.day) & (grid[key] == later[key]))
    grid = grid2.select(day=grid.day, **{key: grid[key]}, total=grid.total,
                        in_use=(grid.now - later.after.fill_null(0)).cast("int64"))
    return grid.mutate(utilisation=grid.in_use.cast("float64") / grid.total).order_by(["day", key])


def demand_history(numbers, blocks, audit, by: str = "region"):
    """Numbers taken from the pool per local day and ``by``: audited moves from available to
    reserved or assigned (long table: ``day``, key, ``taken``)."""
    key = _level(by)
    events = _number_events(audit, numbered(numbers, blocks))
    taken = events.filter((events.from_state == "available") & events.to_state.isin(["reserved", "assigned"]))
    return taken.group_by(["day", key]).aggregate(taken=taken.count()).order_by(["day", key])


def quarantine_inflow(numbers, blocks, audit, by: str = "region"):
    """Numbers entering quarantine (terminated) per local day and ``by`` (``day``, key, ``quarantined``)."""
    key = _level(by)
    events = _number_events(audit, numbered(numbers, blocks))
    entering = events.filter(events.to_state == "quarantined")
    return entering.group_by(["day", key]).aggregate(quarantined=entering.count()).order_by(["day", key])


def recycle_outflow(numbers, blocks, today: date, horizon_days: int, by: str = "region"):
    """Quarantined numbers whose cool-off ends per local day from ``today`` to ``horizon_days``
    ahead (those already due count on ``today``): ``day``, key, ``recycled``."""
    import ibis

    key = _level(by)
    pool = numbered(numbers, blocks)
    quarantined = pool.filter((pool.state == "quarantined") & pool.quarantine_until.notnull())
    due = _local_day(quarantined.quarantine_until)
    day = ibis.greatest(due, ibis.literal(today))
    ahead = quarantined.mutate(day=day).filter(lambda t: t.day <= ibis.literal(today + timedelta(days=horizon_days)))
    return ahead.group_by(["day", key]).aggregate(recycled=ahead.count()).order_by(["day", key])


# ---------------------------------------------------------------- runway (pandas)


def runway(available: dict[str, int], demand_per_day: dict[str, float], recycled: dict[str, dict[date, int]],
           *, today: date, months_of_cover: float = 3, block_size: int = BLOCK_SIZE):
    """Per region: the day its available numbers run out and the blocks to request.

    ``available`` numbers now, expected ``demand_per_day`` (numbers taken a day), ``recycled``
    numbers coming back from quarantine on given days. A region runs out on the first day its
    available numbers plus those recycled so far fall below the demand so far (None when demand is
    0 or it lasts beyond ten years). Blocks to request: enough whole blocks to cover
    ``months_of_cover`` months of demand beyond what is available and recycled in that time.
    """
    import math

    import pandas as pd

    if months_of_cover <= 0:
        raise InvalidValue("months_of_cover", months_of_cover, "must be more than 0")
    cover_days = int(round(months_of_cover * MONTH_DAYS))
    rows = []
    for region in sorted(set(available) | set(demand_per_day)):
        have, rate = int(available.get(region, 0)), float(demand_per_day.get(region, 0.0))
        returns = recycled.get(region, {})
        runs_out = None
        if rate > 0:
            supply, day = have, 0
            while day <= 3650:
                supply += returns.get(today + timedelta(days=day), 0) - rate
                if supply < 0:
                    runs_out = today + timedelta(days=day)
                    break
                day += 1
        recycled_in_cover = sum(n for d, n in returns.items() if d <= today + timedelta(days=cover_days))
        short = rate * cover_days - have - recycled_in_cover
        rows.append({"region": region, "available": have, "demand_per_day": round(rate, 2),
                     "recycled_in_cover": recycled_in_cover,
                     "days_left": (runs_out - today).days if runs_out else None, "runs_out_on": runs_out,
                     "blocks_to_request": max(0, math.ceil(short / block_size)) if short > 0 else 0})
    return pd.DataFrame(rows, columns=["region", "available", "demand_per_day", "recycled_in_cover", "days_left",
                                       "runs_out_on", "blocks_to_request"])


# ---------------------------------------------------------------- reading the database


def planning_tables(db: Store, actor=None, *, con=None) -> dict:
    """The tables planning reads (checks ``analytics.read``; the number pool is the operator's, so
    an agent user is refused) on ``con`` (default: a new DuckDB); pass them as ``tables=`` to the
    reports below to read the database once for several of them."""
    from hkops.analytics.engine import connect, state_tables_of
    from hkops.security.access import require_whole

    require_whole(actor, "analytics.read", "plan number resources", why="the number pool is the operator's")
    return state_tables_of(con if con is not None else connect(), db, PLANNING_TABLES, actor=actor, scoped=False)


def utilisation_report(db: Store, by: str = "region", *, actor=None, region: str | None = None, tables=None):
    """:func:`pool_utilisation` of ``db`` now (one region's rows only with ``region``)."""
    from hkops.analytics.engine import execute
    from hkops.timeutil import utc_now

    t = tables or planning_tables(db, actor)
    frame = execute(pool_utilisation(t["numbers"], t["number_blocks"], by, as_of=utc_now()), days=True)
    if region is not None and by == "region":
        frame = frame[frame["region"] == region]
    return frame.reset_index(drop=True)


def history_report(db: Store, start: date, end: date, by: str = "region", *, actor=None, tables=None):
    """:func:`utilisation_history` for every day from ``start`` to ``end`` (local, inclusive)."""
    from hkops.analytics.engine import execute

    if end < start:
        raise InvalidValue("end", end.isoformat(), f"is before start {start.isoformat()}: the date range is empty")
    t = tables or planning_tables(db, actor)
    days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    return execute(utilisation_history(t["numbers"], t["number_blocks"], t["audit_log"], days, by), days=True)


def block_plan(db: Store, *, months_of_cover: float = 3, window_days: int = 28, today: date | None = None,
               actor=None, tables=None):
    """Per region: available numbers, demand per day (numbers taken over the last ``window_days``
    days, per day), numbers recycled from quarantine within the cover, the day it runs out and the
    blocks to request for ``months_of_cover`` months (:func:`runway`)."""
    from hkops.analytics.engine import execute
    from hkops.analytics.filters import today as local_today
    from hkops.timeutil import utc_now

    if window_days < 1:
        raise InvalidValue("window_days", window_days, "must be 1 or more")
    today = today or local_today()
    t = tables or planning_tables(db, actor)
    pool = execute(pool_utilisation(t["numbers"], t["number_blocks"], "region", as_of=utc_now()), days=True)
    demand = execute(demand_history(t["numbers"], t["number_blocks"], t["audit_log"]), days=True)
    recent = demand[(demand["day"] > today - timedelta(days=window_days)) & (demand["day"] <= today)]
    rate = (recent.groupby("region")["taken"].sum() / window_days).to_dict()
    cover_days = int(round(months_of_cover * MONTH_DAYS))
    back = execute(recycle_outflow(t["numbers"], t["number_blocks"], today, cover_days), days=True)
    recycled: dict[str, dict[date, int]] = {}
    for row in back.itertuples():
        recycled.setdefault(row.region, {})[row.day] = int(row.recycled)
    return runway(dict(zip(pool["region"], pool["available"])), rate, recycled, today=today,
                  months_of_cover=months_of_cover)


def quarantine_outlook(db: Store, *, horizon_days: int = 90, window_days: int = 28, today: date | None = None,
                       actor=None, tables=None):
    """Per region, the ``horizon_days`` ahead: numbers expected into quarantine (the daily
    terminations of the last ``window_days`` days, carried forward) and numbers due back to the
    pool (their cool-off ends), with the net change of the quarantined stock."""
    import pandas as pd

    from hkops.analytics.engine import execute
    from hkops.analytics.filters import today as local_today

    today = today or local_today()
    t = tables or planning_tables(db, actor)
    inflow = execute(quarantine_inflow(t["numbers"], t["number_blocks"], t["audit_log"]), days=True)
    recent = inflow[(inflow["day"] > today - timedelta(days=window_days)) & (inflow["day"] <= today)]
    expected = recent.groupby("region")["quarantined"].sum() / window_days * horizon_days
    due = execute(recycle_outflow(t["numbers"], t["number_blocks"], today, horizon_days), days=True)
    due = due.groupby("region")["recycled"].sum()
    frame = pd.DataFrame({"inflow_expected": expected.round().astype("int64"), "recycle_due": due}).fillna(0)
    frame = frame.astype("int64")
    frame["net_change"] = frame["inflow_expected"] - frame["recycle_due"]
    return frame.rename_axis("region").reset_index()
