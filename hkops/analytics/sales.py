"""Sales figures from the orders and their audit trail: orders as a frame, the funnel
from order to first top-up, and daily orders. No personal data leaves here: no names,
no resident IDs, no addresses; people appear only as pseudonymous keys.
"""

from __future__ import annotations

import json

import pandas as pd
from sqlalchemy import func, select

from hkops.audit import audit_log
from hkops.orders.model import PIPELINE
from hkops.orders.tables import orders
from hkops.security.access import require
from hkops.store.engine import Store
from hkops.timeutil import SHANGHAI

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
