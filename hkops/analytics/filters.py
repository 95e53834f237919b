"""The filters an analyst sets (date range, region, plan, agent, ...), checked before any query runs.

The one place filters are checked, for the sales and planning reports (:func:`check_filters`,
against the hkops database) and for the usage statistics (:func:`check_usage_filters`, against
the usage store). A bad filter is refused with a message naming the field and the value: a day
that is not one, an unknown region, plan, agent or channel, a range whose end is before its
start, or a range that starts or ends in the future.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from hkops.errors import InvalidValue
from hkops.store.engine import Store

if TYPE_CHECKING:  # pragma: no cover
    import ibis


@dataclass(frozen=True)
class Filters:
    """Checked filters; None means "all". ``agent_ids`` are the agent's subtree (resolved from ``agent``)."""

    start: date | None = None
    end: date | None = None
    region: str | None = None
    plan: str | None = None
    agent: str | None = None
    agent_ids: tuple[int, ...] | None = None


def as_day(value, field: str) -> date | None:
    """``value`` (a date, ISO text, None or "") as a day; InvalidValue naming ``field`` when it is not one."""
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


def not_future(day: date | None, field: str, as_of: date | None = None) -> None:
    """Refuse ``day`` when it is after ``as_of`` (default today in Asia/Shanghai), naming ``field``."""
    as_of = as_of or today()
    if day is not None and day > as_of:
        raise InvalidValue(field, day.isoformat(), f"is in the future (today is {as_of.isoformat()} in Asia/Shanghai)")


def check_range(start, end, *, as_of: date | None = None) -> tuple[date | None, date | None]:
    """``start`` and ``end`` as days (inclusive; ISO text or dates; None or "": open), neither after
    ``as_of`` (default today), end not before start; InvalidValue naming the first bad one."""
    start, end = as_day(start, "start"), as_day(end, "end")
    for name, value in (("start", start), ("end", end)):
        not_future(value, name, as_of)
    if start is not None and end is not None and end < start:
        raise InvalidValue("end", end.isoformat(), f"is before start {start.isoformat()}: the date range is empty")
    return start, end


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

    start, end = check_range(start, end, as_of=as_of)
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


# ---------------------------------------------------------------- the usage store's filters

#: The record types of the usage store.
RECORD_TYPES = ("voice_mo", "voice_mt", "sms_mo", "sms_mt", "data")


def _distinct(table: "ibis.Table", column: str) -> list[str]:
    from hkops.analytics.engine import execute

    return sorted(str(v) for v in execute(table.select(column).distinct())[column].dropna())


def _shown(names: list[str]) -> str:
    return ", ".join(names[:8]) + (", ..." if len(names) > 8 else "") or "none"


def store_region(records: "ibis.Table", region: str) -> str:
    """The usage store's spelling of the province ``region``, given in any spelling hkops accepts
    (``Beijing``, ``北京市``, ``北京``): the store keeps what the cards' data said, the number blocks
    and orders keep English names. An unknown province raises ``InvalidValue`` naming it."""
    from hkops.catalogue.service import canonical_province

    value = str(region).strip()
    names = _distinct(records, "region")
    if value in names:
        return value

    def canonical(name):
        try:
            return canonical_province(name, "region")
        except InvalidValue:
            return None

    wanted = canonical(value)
    same = [name for name in names if wanted is not None and canonical(name) == wanted]
    if not same:
        raise InvalidValue("region", region, f"is not a province of the usage store ({_shown(names)})")
    return same[0]


def check_usage_filters(tables: dict, *, plans: "ibis.Table | None" = None, start=None, end=None, region=None,
                        area=None, plan=None, channel=None, agent=None, msisdn=None, type=None,
                        today: date | None = None) -> dict:
    """The filters as :func:`hkops.analytics.usage_stats.filtered` takes them, each checked against
    the usage store's ``tables`` (``records``, ``cards``): the range as :func:`check_range`, a
    region or area the store has records of, a plan of ``plans`` (or of the cards), a channel or
    agent the cards were sold by. Raises ``InvalidValue`` naming the first bad field and value."""
    start, end = check_range(start, end, as_of=today)
    records, cards = tables["records"], tables.get("cards")

    def known(field, value, table, column, what):
        if value is None:
            return None
        value = str(value).strip()
        if table is None:
            raise InvalidValue(field, value, f"cannot be checked: the usage store has no cards with {what}")
        names = _distinct(table, column)
        if value not in names:
            raise InvalidValue(field, value, f"is not a known {what} ({_shown(names)})")
        return value

    if region is not None:
        region = store_region(records, region)
    if area is not None:
        area = known("area", area, records, "area", "city of the usage store")
    if plan is not None:
        plan = known("plan", str(plan).strip().upper(), plans if plans is not None else cards,
                     "code" if plans is not None else "plan", "plan")
    channel = known("channel", channel, cards, "channel", "sales channel")
    agent = known("agent", agent, cards, "agent", "agent")
    if type is not None and type not in RECORD_TYPES:
        raise InvalidValue("type", type, f"must be one of {', '.join(RECORD_TYPES)}")
    if msisdn is not None:
        try:
            msisdn = int(msisdn)
        except (TypeError, ValueError):
            raise InvalidValue("msisdn", msisdn, "must be an 11-digit number such as 13800138000") from None
    return dict(start=start, end=end, region=region, area=area, plan=plan, channel=channel, agent=agent,
                msisdn=msisdn, type=type)
