"""Sales figures from the orders and their audit trail: orders as a frame, the funnel
from order to first top-up, and daily orders. No personal data leaves here: no names,
no resident IDs, no addresses; people appear only as pseudonymous keys.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from hkops.audit import audit_log
from hkops.orders.model import PIPELINE
from hkops.orders.tables import orders
from hkops.security.access import require
from hkops.store.engine import Store
from hkops.timeutil import SHANGHAI

if TYPE_CHECKING:
    import pandas as pd

#: Funnel stages: the audited order action that marks reaching each one.
FUNNEL = [("placed", "create"), ("approved", "approve"), ("paid", "pay"), ("allocated", "allocate"),
          ("shipped", "ship"), ("delivered", "deliver"), ("activated", "activate"),
          ("first top-up", "first_topup"), ("completed", "complete")]


def _scope(actor: str | None):
    """Check ``analytics.read``; for an agent user, a SELECT of its subtree's agent ids, else None."""
    require(actor, "analytics.read", "analyse sales")
    from hkops.agents.service import scope_query

    return scope_query(actor)


def orders_frame(db: Store, *, actor: str | None = None) -> pd.DataFrame:
    """One row per order: number, placed (Asia/Shanghai), day, channel, top-level agent, plan,
    carrier, state, total in yuan, ship-to province, and ``customer``: a pseudonymous key of the
    person (the same for one person's orders, so distinct customers can be counted; see
    :func:`hkops.subscribers.service.pseudonyms`). Needs ``analytics.read``; an agent user gets
    only its subtree's orders."""
    import pandas as pd

    from hkops.subscribers.service import pseudonyms

    scope = _scope(actor)
    columns = [orders.c.number, orders.c.created_at, orders.c.channel, orders.c.agent_chain, orders.c.plan,
               orders.c.carrier, orders.c.state, orders.c.total_fen, orders.c.ship_province,
               orders.c.resident_id_hash]
    stmt = select(*columns).order_by(orders.c.id)
    if scope is not None:
        stmt = stmt.where(orders.c.agent_id.in_(scope))
    with db.read() as conn:
        frame = pd.DataFrame(conn.execute(stmt).all(), columns=[c.name for c in columns])
        keys = pseudonyms(conn, frame["resident_id_hash"])
    frame["customer"] = frame["resident_id_hash"].map(keys)
    frame["placed"] = pd.to_datetime(frame["created_at"], utc=True).dt.tz_convert(SHANGHAI)
    frame["day"] = frame["placed"].dt.date
    chains = [json.loads(chain) if isinstance(chain, str) else [] for chain in frame["agent_chain"]]
    frame["top_agent"] = [chain[-1]["code"] if chain else "direct" for chain in chains]
    frame["total_yuan"] = frame["total_fen"] / 100  # for charts only; money stays fen in the database
    frame["state"] = pd.Categorical(frame["state"], [s.value for s in PIPELINE] + ["rejected", "cancelled",
                                                                                   "returned", "expired"])
    return frame.drop(columns=["created_at", "agent_chain", "resident_id_hash"])


def funnel(db: Store, *, actor: str | None = None) -> pd.DataFrame:
    """How many orders reached each stage (from the audit trail, so cancelled and returned
    orders count for the stages they passed), with the share of placed orders.
    Needs ``analytics.read``; an agent user counts only its subtree's orders."""
    import pandas as pd

    scope = _scope(actor)
    stmt = (select(audit_log.c.action, func.count(func.distinct(audit_log.c.subject)))
            .where(audit_log.c.entity == "order", audit_log.c.action.in_([a for _, a in FUNNEL]))
            .group_by(audit_log.c.action))
    if scope is not None:
        stmt = stmt.where(audit_log.c.subject.in_(select(orders.c.number).where(orders.c.agent_id.in_(scope))))
    with db.read() as conn:
        reached = dict(conn.execute(stmt).all())
    frame = pd.DataFrame([(stage, reached.get(action, 0)) for stage, action in FUNNEL], columns=["stage", "orders"])
    placed = frame["orders"].iloc[0] or 1
    frame["share %"] = (100 * frame["orders"] / placed).round(1)
    return frame


def daily_orders(frame: pd.DataFrame, by: str = "top_agent") -> pd.DataFrame:
    """Orders placed per day (rows) and ``by`` (columns), drafts and rejections left out."""
    placed = frame[~frame["state"].isin(["draft", "rejected"])]
    return placed.groupby(["day", by], observed=True).size().unstack(fill_value=0).sort_index()


# ---------------------------------------------------------------- the funnel and its figures, as Ibis expressions
#
# The functions below are pure functions of Ibis tables (the hkops tables as
# hkops.analytics.engine.state_table gives them) returning Ibis expressions, so the same analysis
# runs on DuckDB or on Spark. The ``*_report`` functions read the database on ``con`` (default: a
# new DuckDB), apply the caller's scope and filters, and return pandas frames.

#: The steps of the sales funnel and the audited order action that marks reaching each one
#: ("placed" is the order's creation).
STEPS = ("placed", "paid", "shipped", "delivered", "activated", "first_topup")
STEP_ACTIONS = {"paid": "pay", "shipped": "ship", "delivered": "deliver", "activated": "activate",
                "first_topup": "first_topup"}
#: Outcomes read from the audit trail beside the steps.
OUTCOME_ACTIONS = {"cancelled": "cancel", "returned": "return"}
#: What the funnel, trends and rates can be broken down by.
DIMENSIONS = ("agent", "channel", "plan", "province")
#: The tables the sales analyses read.
SALES_TABLES = ("orders", "audit_log", "agents")


def _local(ts):
    """A UTC timestamp expression as Asia/Shanghai wall time."""
    import ibis

    from hkops.analytics.engine import LOCAL_OFFSET_H

    return ts + ibis.interval(hours=LOCAL_OFFSET_H)


def order_steps(orders, audit, agents):
    """One row per order: its dimensions (``agent``: the selling agent's code or ``direct``;
    ``channel``: ``direct`` or ``level-N agent``; ``plan``; ``province``: ship-to), ``order_id``,
    ``number``, ``total_fen``, ``state``, and the UTC time it first reached each of :data:`STEPS`
    and the outcomes ``cancelled`` and ``returned`` (null when it never did)."""
    import ibis

    events = audit.filter(audit.entity == "order")
    reached = events.group_by(subject=events.subject).aggregate(
        **{step: events.at.min(where=events.action == action)
           for step, action in {**STEP_ACTIONS, **OUTCOME_ACTIONS}.items()})
    sellers = agents.select(seller_id=agents.id, seller_code=agents.code, seller_level=agents.level)
    joined = orders.left_join(sellers, orders.agent_id == sellers.seller_id).left_join(
        reached, orders.number == reached.subject)
    direct = joined.agent_id.isnull()
    return joined.select(
        order_id=joined.id, number=joined.number,
        agent=ibis.ifelse(direct, "direct", joined.seller_code.fill_null("direct")),
        channel=ibis.ifelse(direct, "direct", "level-" + joined.seller_level.cast("string") + " agent"),
        plan=joined.plan, province=joined.ship_province, agent_id=joined.agent_id,
        state=joined.state, total_fen=joined.total_fen, placed=joined.created_at,
        **{name: joined[name] for name in (*STEP_ACTIONS, *OUTCOME_ACTIONS)})


def _whole_seconds(ts):
    """Seconds since 1970 of a timestamp, whole (DuckDB's epoch keeps the fraction, Spark's drops it)."""
    return ts.epoch_seconds().floor().cast("int64")


def _keys(by) -> list[str]:
    keys = [by] if isinstance(by, str) else list(by or [])
    for key in keys:
        if key not in DIMENSIONS:
            from hkops.errors import InvalidValue

            raise InvalidValue("by", key, f"must be one of {', '.join(DIMENSIONS)}")
    return keys


def _ratio(numerator, denominator):
    import ibis

    return ibis.ifelse(denominator == 0, ibis.null("float64"), numerator.cast("float64") / denominator)


def funnel_by(steps, by=None):
    """The funnel per group of ``by`` (a dimension, a list of them, or None for one row): how many
    orders reached each step, the conversion from the step before (``<step>_conv``, a fraction)
    and the median hours from the step before to it (``<step>_hours``, over the orders that
    reached both)."""
    keys = _keys(by)
    aggregates = {step: steps[step].count() for step in STEPS}
    for before, step in zip(STEPS, STEPS[1:]):
        hours = (_whole_seconds(steps[step]) - _whole_seconds(steps[before])) / 3600
        aggregates[f"{step}_hours"] = hours.median()
    grouped = steps.group_by(keys).aggregate(**aggregates) if keys else steps.aggregate(**aggregates)
    conversions = {f"{step}_conv": _ratio(grouped[step], grouped[before]) for before, step in zip(STEPS, STEPS[1:])}
    columns = [*keys, *STEPS, *conversions, *(f"{s}_hours" for s in STEPS[1:])]
    return grouped.mutate(**conversions).select(columns).order_by([*keys] or [grouped.placed.desc()])


def trends(steps, freq: str = "day", by=None):
    """Orders per local day (``freq="day"``) or week (Monday, ``"week"``) and step: a long table of
    ``period``, the ``by`` dimensions, ``step`` (one of :data:`STEPS` or cancelled/returned) and
    ``orders`` (how many reached that step in that period)."""
    import ibis

    if freq not in ("day", "week"):
        from hkops.errors import InvalidValue

        raise InvalidValue("freq", freq, "must be day or week")
    keys = _keys(by)
    parts = []
    for step in (*STEPS, *OUTCOME_ACTIONS):
        local = _local(steps[step])
        period = local.date() if freq == "day" else local.truncate("W").date()
        parts.append(steps.filter(steps[step].notnull()).select(
            period=period, **{k: steps[k] for k in keys}, step=ibis.literal(step)))
    events = ibis.union(*parts)
    return events.group_by(["period", *keys, "step"]).aggregate(orders=events.count()).order_by(
        ["period", *keys, "step"])


def rates(steps, by=None):
    """Cancellation and return rates per group: ``cancel_rate`` = cancelled / placed,
    ``return_rate`` = returned / activated (fractions; null when there is nothing to divide by)."""
    keys = _keys(by)
    aggregates = dict(placed=steps.placed.count(), activated=steps.activated.count(),
                      cancelled=steps.cancelled.count(), returned=steps.returned.count())
    grouped = steps.group_by(keys).aggregate(**aggregates) if keys else steps.aggregate(**aggregates)
    return grouped.mutate(cancel_rate=_ratio(grouped.cancelled, grouped.placed),
                          return_rate=_ratio(grouped.returned, grouped.activated)).order_by(keys or ["placed"])


def league_table(steps):
    """Agents ranked by activations (then revenue, then code): orders placed, paid, activated,
    first top-ups, cancelled, returned, ``revenue_fen`` (the totals of paid orders neither
    cancelled nor returned), the activation rate (activated / placed) and ``rank`` from 1.
    Direct orders are left out."""
    import ibis

    sold = steps.filter(steps.agent != "direct")
    kept = sold.paid.notnull() & sold.cancelled.isnull() & sold.returned.isnull()
    table = sold.group_by("agent").aggregate(
        placed=sold.placed.count(), paid=sold.paid.count(), activated=sold.activated.count(),
        first_topup=sold.first_topup.count(), cancelled=sold.cancelled.count(), returned=sold.returned.count(),
        revenue_fen=sold.total_fen.sum(where=kept).fill_null(0).cast("int64"))
    table = table.mutate(activation_rate=_ratio(table.activated, table.placed))
    order = [table.activated.desc(), table.revenue_fen.desc(), table.agent]
    return table.mutate(rank=ibis.row_number().over(order_by=order) + 1).order_by("rank")


def commission_per_activation(steps, entries, by="agent"):
    """Commission cost per activation per group of ``by``: the commissions accrued on the group's
    orders (clawbacks included, so net; in fen), the group's activations, and
    ``per_activation_fen`` (rounded to whole fen; null without activations)."""
    import ibis

    keys = _keys(by)
    cost = entries.group_by(order_id=entries.order_id).aggregate(commission_fen=entries.amount_fen.sum())
    joined = steps.left_join(cost, steps.order_id == cost.order_id)
    grouped = joined.group_by(keys).aggregate(
        activations=joined.activated.count(),
        commission_fen=joined.commission_fen.sum().fill_null(0).cast("int64"))
    per = ibis.ifelse(grouped.activations == 0, ibis.null("int64"),
                      (grouped.commission_fen.cast("float64") / grouped.activations).round().cast("int64"))
    return grouped.mutate(per_activation_fen=per).order_by(keys)


def stock_turnover(moves, locations, start, end):
    """Stock turnover per held location (warehouses and agents) over [``start``, ``end``) (aware
    datetimes): cards on hand at the start and end, cards ``issued`` (sold to customers or
    transferred on) and ``sold`` in the period, ``turnover`` = issued / mean of the start and end
    on hand, and ``days_of_stock`` = end on hand / issued per day (null when nothing was issued)."""
    import ibis

    days = max((end - start).total_seconds() / 86400, 1e-9)
    held = locations.filter(locations.kind != "virtual").select(location=locations.code)
    inflow = moves.select(location=moves.to_location, delta=ibis.literal(1), at=moves.at, kind=moves.kind,
                          out=ibis.literal(False))
    outflow = moves.select(location=moves.from_location, delta=ibis.literal(-1), at=moves.at, kind=moves.kind,
                           out=ibis.literal(True))
    flows = ibis.union(inflow, outflow)
    in_period = (flows.at >= start) & (flows.at < end)
    per = flows.group_by("location").aggregate(
        start_on_hand=flows.delta.sum(where=flows.at < start).fill_null(0),
        end_on_hand=flows.delta.sum(where=flows.at < end).fill_null(0),
        issued=flows.count(where=flows.out & in_period & flows.kind.isin(["sale", "transfer"])),
        sold=flows.count(where=flows.out & in_period & (flows.kind == "sale")))
    joined = held.left_join(per, held.location == per.location).select(
        location=held.location,
        start_on_hand=per.start_on_hand.fill_null(0).cast("int64"), end_on_hand=per.end_on_hand.fill_null(0).cast("int64"),
        issued=per.issued.fill_null(0).cast("int64"), sold=per.sold.fill_null(0).cast("int64"))
    mean_on_hand = (joined.start_on_hand + joined.end_on_hand).cast("float64") / 2
    return joined.mutate(
        turnover=ibis.ifelse(mean_on_hand == 0, ibis.null("float64"), joined.issued.cast("float64") / mean_on_hand),
        days_of_stock=ibis.ifelse(joined.issued == 0, ibis.null("float64"),
                                  joined.end_on_hand.cast("float64") / (joined.issued.cast("float64") / days)),
    ).order_by("location")


# ---------------------------------------------------------------- reading the database (scope and filters)


def _connection(con):
    from hkops.analytics.engine import connect

    return con if con is not None else connect()


def steps_for(db: Store, *, actor=None, filters=None, con=None):
    """:func:`order_steps` of ``db`` for ``actor`` (an agent user: its subtree's orders only), with
    ``filters`` (:class:`hkops.analytics.filters.Filters`: placed within its days, its region,
    plan and agent subtree) applied; an Ibis table on ``con`` (default: a new DuckDB)."""
    from hkops.analytics.engine import state_tables_of

    _scope(actor)
    tables = state_tables_of(_connection(con), db, SALES_TABLES, actor=actor)
    steps = order_steps(tables["orders"], tables["audit_log"], tables["agents"])
    return filtered(steps, filters)


def filtered(steps, filters):
    """``steps`` with :class:`~hkops.analytics.filters.Filters` applied (None: all of them)."""
    if filters is None:
        return steps
    day = _local(steps.placed).date()
    if filters.start is not None:
        steps = steps.filter(day >= filters.start)
    if filters.end is not None:
        steps = steps.filter(day <= filters.end)
    if filters.region is not None:
        steps = steps.filter(steps.province == filters.region)
    if filters.plan is not None:
        steps = steps.filter(steps.plan == filters.plan)
    if filters.agent_ids is not None:
        steps = steps.filter(steps.agent_id.isin(list(filters.agent_ids)))
    return steps


def funnel_report(db: Store, by=None, *, actor=None, filters=None, con=None) -> pd.DataFrame:
    """:func:`funnel_by` on ``db`` for ``actor`` with ``filters``, as a DataFrame."""
    from hkops.analytics.engine import execute

    return execute(funnel_by(steps_for(db, actor=actor, filters=filters, con=con), by), days=True)


def trends_report(db: Store, freq: str = "day", *, actor=None, filters=None, con=None) -> pd.DataFrame:
    """:func:`trends` as a table: one row per period, one column per step (0 where none)."""
    from hkops.analytics.engine import execute

    long = execute(trends(steps_for(db, actor=actor, filters=filters, con=con), freq), days=True)
    wide = long.pivot_table(index="period", columns="step", values="orders", aggfunc="sum", fill_value=0)
    wide = wide.reindex(columns=[*STEPS, *OUTCOME_ACTIONS], fill_value=0).astype("int64")
    wide.columns.name = None
    return wide.sort_index()


def league_report(db: Store, *, actor=None, filters=None, con=None) -> pd.DataFrame:
    """:func:`league_table` on ``db`` for ``actor`` with ``filters``."""
    from hkops.analytics.engine import execute

    return execute(league_table(steps_for(db, actor=actor, filters=filters, con=con)), days=True)


def rates_report(db: Store, by=None, *, actor=None, filters=None, con=None) -> pd.DataFrame:
    """:func:`rates` on ``db`` for ``actor`` with ``filters``."""
    from hkops.analytics.engine import execute

    return execute(rates(steps_for(db, actor=actor, filters=filters, con=con), by), days=True)


def commission_report(db: Store, by="agent", *, actor=None, filters=None, con=None) -> pd.DataFrame:
    """:func:`commission_per_activation` on ``db`` (an agent user: its subtree's commissions only)."""
    from hkops.analytics.engine import execute, state_table

    con = _connection(con)
    steps = steps_for(db, actor=actor, filters=filters, con=con)
    entries = state_table(con, db, "commission_entries", actor=actor, scoped=True)
    return execute(commission_per_activation(steps, entries, by), days=True)


def turnover_report(db: Store, *, days: int = 30, end=None, actor=None, con=None) -> pd.DataFrame:
    """:func:`stock_turnover` over the ``days`` before ``end`` (default now; a naive one is UTC); an
    agent user sees its subtree's locations only."""
    from datetime import timedelta, timezone

    from hkops.analytics.engine import execute, state_tables_of
    from hkops.timeutil import utc_now

    end = end or utc_now()
    end = end.replace(tzinfo=timezone.utc) if end.tzinfo is None else end
    # scoped: an agent user reads only its agents' locations and their moves (engine.AGENT_SCOPED_TABLES)
    tables = state_tables_of(_connection(con), db, ["stock_moves", "stock_locations"], actor=actor)
    return execute(stock_turnover(tables["stock_moves"], tables["stock_locations"], end - timedelta(days=days), end),
                   days=True)
