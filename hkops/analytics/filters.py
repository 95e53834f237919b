"""The filters an analyst sets (date range, region, plan, agent), checked before any query runs.

A bad filter is refused with a message naming the field and the value: an unknown region (a
province with no number block and no order shipped there), plan or agent, a range whose end is
before its start, or a range that starts or ends in the future.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from hkops.errors import InvalidValue
from hkops.store.engine import Store


@dataclass(frozen=True)
class Filters:
    """Checked filters; None means "all". ``agent_ids`` are the agent's subtree (resolved from ``agent``)."""

    start: date | None = None
    end: date | None = None
    region: str | None = None
    plan: str | None = None
    agent: str | None = None
    agent_ids: tuple[int, ...] | None = None


def _day(value, field: str) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise InvalidValue(field, value, "must be a day such as 2026-11-01") from None


def today() -> date:
    """Today in Asia/Shanghai."""
    from hkops.timeutil import SHANGHAI, utc_now

    return utc_now().astimezone(SHANGHAI).date()


def regions(db: Store) -> list[str]:
    """The regions (provinces) hkops knows: those of the number blocks and of the orders' ship-to."""
    from sqlalchemy import select, union

    from hkops.numbers.tables import number_blocks
    from hkops.orders.tables import orders

    with db.read() as conn:
        return sorted(conn.execute(union(select(number_blocks.c.province),
                                         select(orders.c.ship_province))).scalars())


def choices(db: Store) -> dict[str, list[str]]:
    """What each filter can be set to: ``regions``, ``plans`` (codes) and ``agents`` (codes), sorted."""
    from sqlalchemy import select

    from hkops.agents.tables import agents
    from hkops.catalogue.tables import plans

    with db.read() as conn:
        plan_codes = list(conn.execute(select(plans.c.code).order_by(plans.c.code)).scalars())
        agent_codes = list(conn.execute(select(agents.c.code).order_by(agents.c.code)).scalars())
    return {"regions": regions(db), "plans": plan_codes, "agents": agent_codes}


def check_filters(db: Store, *, start=None, end=None, region=None, plan=None, agent=None,
                  as_of: date | None = None) -> Filters:
    """Check the filters against ``db`` and return them; InvalidValue naming the first bad one.

    ``start`` and ``end`` are days (inclusive, Asia/Shanghai; ISO text or dates), neither after
    ``as_of`` (default today); ``region`` a known province; ``plan`` a plan code of the catalogue;
    ``agent`` an agent's code (its whole subtree is selected). Empty strings mean "all".
    """
    from sqlalchemy import select

    from hkops.agents.service import subtree_ids
    from hkops.agents.tables import agents
    from hkops.catalogue.tables import plans

    as_of = as_of or today()
    start, end = _day(start, "start"), _day(end, "end")
    for name, value in (("start", start), ("end", end)):
        if value is not None and value > as_of:
            raise InvalidValue(name, value.isoformat(), f"is in the future (today is {as_of.isoformat()})")
    if start is not None and end is not None and end < start:
        raise InvalidValue("end", end.isoformat(), f"is before start {start.isoformat()}: the date range is empty")
    region, plan, agent = (str(v).strip() or None if v is not None else None for v in (region, plan, agent))
    if region is not None and region not in regions(db):
        raise InvalidValue("region", region, "is not a region hkops knows (no number block or order there)")
    agent_ids = None
    with db.read() as conn:
        if plan is not None and conn.execute(select(plans.c.code).where(plans.c.code == plan)).first() is None:
            raise InvalidValue("plan", plan, "is not a plan of the catalogue")
        if agent is not None:
            if conn.execute(select(agents.c.id).where(agents.c.code == agent)).first() is None:
                raise InvalidValue("agent", agent, "is not an agent's code")
            agent_ids = tuple(sorted(subtree_ids(conn, agent)))
    return Filters(start, end, region, plan, agent, agent_ids)
