"""Usage statistics by volume, time and place, charges by the plans sold, and reports.

The analyses are written once as Ibis expressions: pure functions of Ibis tables that
return Ibis tables, so that the same expression runs on DuckDB (the default) or on
Spark. The tables they take:

``records``
    The usage records of the Parquet store (``hkops.network.usage``): ``type``,
    ``msisdn``, ``start`` (UTC), ``duration_s``, ``bytes_up``, ``bytes_down``,
    ``area`` (city), ``region`` (province), ``refused``, ``day`` (Asia/Shanghai), ...
``cards``
    One row per card (``hkops.network.usage.CARD_COLUMNS``): ``msisdn``, home
    ``province`` and ``city``, ``plan``, ``channel`` (the selling agent's code or
    ``direct``) and ``agent``.
``plans``
    The catalogue's plans (``hkops.catalogue``): ``code``, ``monthly_fee_fen``,
    ``data_mb``, ``voice_minutes``, ``sms`` and the overage rates
    ``overage_data_fen_per_gb``, ``overage_voice_fen_per_min``, ``overage_sms_fen``.

Charges follow the plan each card was sold with: the monthly fee covers the month's
allowances; beyond them data costs the plan's rate per GB (2**30 bytes), outgoing voice
its rate per started minute of each call, outgoing SMS its rate each (incoming calls and
SMS are free). ``rate`` prices every record (its share of the overage, so that any
period's charges add up), ``bills`` gives each card's month.

The wrappers below (``usage_per_card``, ``daily_report``, ``period_report``, ...) take
a store directory, read it through :func:`hkops.analytics.engine.store_tables` on ``con``
(default: a new DuckDB; pass a Spark backend to run there), validate their filters
(:mod:`hkops.analytics.filters`: an unknown region, plan or agent, an empty or future date
range: ``InvalidValue`` naming the field and value), run the expression and return pandas
frames or plain dicts ready for JSON. Money stays integer fen in frames and
becomes Decimal yuan strings in reports, never float. Data in GB counts 2**30 bytes, as
operators' DOU does. Hours, days, ISO weeks and months are Asia/Shanghai (UTC+8, no
daylight saving). Refused attempts are kept apart: billable columns exclude them,
``refused`` counts them.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from hkops.analytics import filters as checks
from hkops.analytics.engine import execute as _execute
from hkops.analytics.engine import store_tables
from hkops.errors import InvalidValue
from hkops.money import fen_to_yuan

if TYPE_CHECKING:
    import ibis
    import pandas as pd

GIB = 1 << 30
MIB = 1 << 20
#: What ``usage_by`` can group by: record type, service (voice/sms/data), local hour, day,
#: ISO week (its Monday), month (its first day), where the record was made (region =
#: province, area = city), the card's plan, sales channel and agent, the number, 4G/5G.
DIMENSIONS = ("type", "service", "hour", "day", "week", "month", "region", "area", "plan", "channel", "agent",
              "msisdn", "rat")
#: What ``per_user`` can group by besides the month: the card's home province and city, plan, channel, agent.
CARD_DIMENSIONS = ("region", "area", "plan", "channel", "agent")
PERIODS = ("day", "week", "month")
_SERVICE = {"voice_mo": "voice", "voice_mt": "voice", "sms_mo": "sms", "sms_mt": "sms", "data": "data"}
#: Days a month counts for DOU, MOU and SMS per user (the generator's calibration is per 30 days).
MONTH_DAYS = 30


# --------------------------------------------------------------------------- tables


def plans_table(plans) -> "ibis.Table":
    """``plans`` (a list of ``hkops.catalogue.service.Plan``, a DataFrame or an Ibis table) as an Ibis table."""
    import ibis
    import pandas as pd

    if isinstance(plans, ibis.Table):
        return plans
    if not isinstance(plans, pd.DataFrame):
        plans = pd.DataFrame([p.as_dict() for p in plans])
    columns = ["code", "monthly_fee_fen", "data_mb", "voice_minutes", "sms", "overage_data_fen_per_gb",
               "overage_voice_fen_per_min", "overage_sms_fen"]
    frame = plans[columns].copy()
    frame[columns[1:]] = frame[columns[1:]].astype("int64")
    return ibis.memtable(frame)


def sold_cards(db) -> "pd.DataFrame":
    """What each number was sold with, from the orders that activated it: ``msisdn``, ``plan``,
    ``channel`` (the selling agent's code, or ``direct``) and ``agent`` (None for direct sales);
    the latest such order of a number wins. To join on the cards ``generate_usage`` takes."""
    import pandas as pd
    from sqlalchemy import select

    from hkops.orders.model import RETURNABLE
    from hkops.orders.tables import orders

    with db.read() as conn:
        rows = conn.execute(select(orders.c.msisdn, orders.c.plan, orders.c.channel)
                            .where(orders.c.msisdn.is_not(None), orders.c.state.in_([s.value for s in RETURNABLE]))
                            .order_by(orders.c.id)).all()
    frame = pd.DataFrame(rows, columns=["msisdn", "plan", "channel"]).drop_duplicates("msisdn", keep="last")
    frame["msisdn"] = frame["msisdn"].astype("int64")
    frame["agent"] = [None if channel == "direct" else channel for channel in frame["channel"]]
    return frame.reset_index(drop=True)


# --------------------------------------------------------------------------- expressions


def with_time(records: "ibis.Table") -> "ibis.Table":
    """``records`` with local ``hour`` (0..23), ``week`` (the ISO week's Monday), ``month`` (its
    first day) and ``service`` (voice, sms, data)."""
    hour = ((records.start.epoch_seconds() // 3600 + 8) % 24).cast("int32")
    return records.mutate(hour=hour, week=records.day.truncate("W"), month=records.day.truncate("M"),
                          service=records.type.substitute(_SERVICE))


def _with_cards(records: "ibis.Table", cards: "ibis.Table | None") -> "ibis.Table":
    if cards is None:
        import ibis

        return records.mutate(plan=ibis.null("string"), channel=ibis.null("string"), agent=ibis.null("string"))
    return _left_join(records, cards.select("msisdn", "plan", "channel", "agent"), ["msisdn"])


def _left_join(left: "ibis.Table", right: "ibis.Table", keys: list[str]) -> "ibis.Table":
    """``left`` with the other columns of ``right`` where the ``keys`` match (null where none does)."""
    joined = left.left_join(right, keys)
    return joined.select(*left.columns, *[c for c in right.columns if c not in keys])


def filtered(records: "ibis.Table", cards: "ibis.Table | None" = None, *, start: date | None = None,
             end: date | None = None, region: str | None = None, area: str | None = None,
             msisdn: int | None = None, plan: str | None = None, channel: str | None = None,
             agent: str | None = None, type: str | None = None) -> "ibis.Table":
    """``records`` with time columns and the card's plan, channel and agent, filtered (None: no filter).
    Days are local days, both ends included."""
    t = _with_cards(with_time(records), cards)
    conditions = []
    if start is not None:
        conditions.append(t.day >= start)
    if end is not None:
        conditions.append(t.day <= end)
    for column, value in (("region", region), ("area", area), ("plan", plan), ("channel", channel),
                          ("agent", agent), ("type", type)):
        if value is not None:
            conditions.append(t[column] == value)
    if msisdn is not None:
        conditions.append(t.msisdn == int(msisdn))
    return t.filter(*conditions) if conditions else t


def _metrics(t: "ibis.Table") -> dict:
    """Volumes of billable usage and the count of refused attempts."""
    ok = ~t.refused

    def total(column, where):
        return column.sum(where=where).fill_null(0).cast("int64")

    return {
        "records": t.count(where=ok),
        "voice_mo_calls": t.count(where=ok & (t.type == "voice_mo")),
        "voice_mo_s": total(t.duration_s, ok & (t.type == "voice_mo")),
        "voice_mt_s": total(t.duration_s, ok & (t.type == "voice_mt")),
        "sms_mo": t.count(where=ok & (t.type == "sms_mo")),
        "sms_mt": t.count(where=ok & (t.type == "sms_mt")),
        "data_records": t.count(where=ok & (t.type == "data")),
        "bytes_up": total(t.bytes_up, ok),
        "bytes_down": total(t.bytes_down, ok),
        "data_bytes": total(t.bytes_up + t.bytes_down, ok),
        "refused": t.count(where=t.refused),
        "cards": t.msisdn.nunique(where=ok),
    }


def usage_by(records: "ibis.Table", cards: "ibis.Table | None" = None, *, by: Iterable[str], **filters) -> "ibis.Table":
    """Usage grouped by ``by`` (names of ``DIMENSIONS``; none for the grand total), ordered by them.

    Columns: the keys, ``records`` (billable), ``voice_mo_calls``, ``voice_mo_s``, ``voice_mt_s``,
    ``sms_mo``, ``sms_mt``, ``data_records``, ``bytes_up``, ``bytes_down``, ``data_bytes``,
    ``refused`` (attempts) and ``cards`` (numbers with billable usage). ``filters``: see ``filtered``.
    """
    by = list(by)
    for key in by:
        if key not in DIMENSIONS:
            raise InvalidValue("by", key, f"must be one of {', '.join(DIMENSIONS)}")
    t = filtered(records, cards, **filters)
    if not by:
        return t.aggregate(**_metrics(t))
    return t.group_by(by).aggregate(**_metrics(t)).order_by(by)


def top_users(records: "ibis.Table", cards: "ibis.Table | None" = None, *, n: int = 10,
              order_by: str = "data_bytes", **filters) -> "ibis.Table":
    """The ``n`` numbers using most by ``order_by`` (a ``usage_by`` column), with their plan and channel."""
    columns = set(_METRICS_COLUMNS) - {"cards"}
    if order_by not in columns:
        raise InvalidValue("order_by", order_by, f"must be one of {', '.join(sorted(columns))}")
    import ibis

    t = filtered(records, cards, **filters)
    metrics = _metrics(t)
    del metrics["cards"]
    per_card = t.group_by("msisdn").aggregate(**metrics, plan=t.plan.max(), channel=t.channel.max())
    per_card = _left_join(per_card, most_common(t, "msisdn", "area", "home_area"), ["msisdn"])
    return per_card.order_by([ibis.desc(order_by), "msisdn"]).limit(int(n))


def most_common(t: "ibis.Table", key: str, column: str, name: str) -> "ibis.Table":
    """Per ``key``, the non-null value of ``column`` in most rows of ``t``, ties to the smallest, as
    ``name``: a mode that gives the same answer on every engine (Spark has no ``mode``)."""
    import ibis

    kept = t.filter(t[column].notnull())
    counts = kept.group_by([key, column]).aggregate(rows=kept.count())
    order = [ibis.desc(counts.rows), counts[column]]
    ranked = counts.mutate(rank=ibis.row_number().over(group_by=counts[key], order_by=order))
    return ranked.filter(ranked["rank"] == 0).select(key, **{name: ranked[column]})


_METRICS_COLUMNS = ("records", "voice_mo_calls", "voice_mo_s", "voice_mt_s", "sms_mo", "sms_mt", "data_records",
                    "bytes_up", "bytes_down", "data_bytes", "refused", "cards")


def _ceil_div(numerator, denominator: int):
    return (numerator + (denominator - 1)) // denominator


def rate(records: "ibis.Table", cards: "ibis.Table", plans: "ibis.Table", **filters) -> "ibis.Table":
    """Billable records priced by the card's plan: ``units`` (bytes, started minutes, SMS),
    ``month_units``: the card's units of that service in the month up to and including this
    record, and ``overage_fen``: the record's share of what goes beyond the allowance.

    Cumulative per card, month and service in the order of ``start`` then ``record_id``, so the
    overage of a month is split over the records that made it and any period's charges add
    up. The month is counted from the first record of ``records`` kept by the filters (give
    whole months for whole bills). Records of cards without a (known) plan cost nothing.
    """
    import ibis

    t = filtered(records, cards, **filters)
    t = t.filter(~t.refused, t.type.isin(["voice_mo", "sms_mo", "data"]))
    p = plans.select(plan_code=plans.code, data_allow=plans.data_mb.cast("int64") * MIB,
                     voice_allow=plans.voice_minutes.cast("int64"), sms_allow=plans.sms.cast("int64"),
                     data_rate=plans.overage_data_fen_per_gb.cast("int64"),
                     voice_rate=plans.overage_voice_fen_per_min.cast("int64"),
                     sms_rate=plans.overage_sms_fen.cast("int64"))
    t = t.inner_join(p, t.plan == p.plan_code)
    units = ibis.cases((t.type == "data", (t.bytes_up + t.bytes_down).cast("int64")),
                       (t.type == "voice_mo", _ceil_div(t.duration_s.cast("int64"), 60)),
                       else_=ibis.literal(1, "int64"))
    t = t.mutate(units=units)
    window = ibis.window(group_by=[t.msisdn, t.month, t.type], order_by=[t.start, t.record_id], preceding=None,
                         following=0)
    t = t.mutate(month_units=t.units.sum().over(window))
    before = t.month_units - t.units

    def over(used, allowance):
        return ibis.greatest(used - allowance, 0)

    data_fen = (_ceil_div(over(t.month_units, t.data_allow) * t.data_rate, GIB)
                - _ceil_div(over(before, t.data_allow) * t.data_rate, GIB))
    voice_fen = (over(t.month_units, t.voice_allow) - over(before, t.voice_allow)) * t.voice_rate
    sms_fen = (over(t.month_units, t.sms_allow) - over(before, t.sms_allow)) * t.sms_rate
    overage = ibis.cases((t.type == "data", data_fen), (t.type == "voice_mo", voice_fen), else_=sms_fen)
    return t.mutate(overage_fen=overage.cast("int64")).drop("plan_code", "data_allow", "voice_allow", "sms_allow",
                                                             "data_rate", "voice_rate", "sms_rate")


def bills(records: "ibis.Table", cards: "ibis.Table", plans: "ibis.Table", **filters) -> "ibis.Table":
    """Each card's bill per month it used the network in: ``monthly_fee_fen`` of its plan, its
    usage (``data_bytes``, ``voice_mo_minutes`` in started minutes, ``sms_mo``), the overage of
    each service beyond the plan's allowances at the plan's rates, and ``bill_fen`` (fee +
    overage). Cards without a known plan are left out. ``filters``: see ``filtered``."""
    import ibis

    t = filtered(records, cards, **filters)
    t = t.filter(~t.refused)
    billable = t.type.isin(["voice_mo", "sms_mo", "data"])
    per_card = t.group_by(["msisdn", "month"]).aggregate(
        plan=t.plan.max(),
        data_bytes=(t.bytes_up + t.bytes_down).sum(where=billable).fill_null(0).cast("int64"),
        voice_mo_minutes=_ceil_div(t.duration_s.cast("int64"), 60).sum(where=t.type == "voice_mo").fill_null(0).cast("int64"),
        sms_mo=t.count(where=t.type == "sms_mo"),
    )
    j = per_card.inner_join(plans, per_card.plan == plans.code)
    over_data = _ceil_div(ibis.greatest(j.data_bytes - j.data_mb.cast("int64") * MIB, 0)
                          * j.overage_data_fen_per_gb.cast("int64"), GIB)
    over_voice = ibis.greatest(j.voice_mo_minutes - j.voice_minutes.cast("int64"), 0) * j.overage_voice_fen_per_min.cast("int64")
    over_sms = ibis.greatest(j.sms_mo - j.sms.cast("int64"), 0) * j.overage_sms_fen.cast("int64")
    fee = j.monthly_fee_fen.cast("int64")
    return j.select(
        "msisdn", "month", "plan", "data_bytes", "voice_mo_minutes", "sms_mo",
        monthly_fee_fen=fee,
        overage_data_fen=over_data.cast("int64"),
        overage_voice_fen=over_voice.cast("int64"),
        overage_sms_fen=over_sms.cast("int64"),
        bill_fen=(fee + over_data + over_voice + over_sms).cast("int64"),
    ).order_by(["month", "msisdn"])


def per_user(records: "ibis.Table", cards: "ibis.Table", plans: "ibis.Table | None" = None, *,
             by: Iterable[str] = (), **filters) -> "ibis.Table":
    """Per month and ``by`` (names of ``CARD_DIMENSIONS``: the card's home province ``region``,
    city ``area``, ``plan``, ``channel``, ``agent``): ``users`` (cards with billable usage),
    ``days`` (days of the month with records), DOU ``dou_gb`` (GB per user per 30 days), MOU
    ``mou`` (outgoing minutes per user per 30 days, as MIIT's 去话 figure), ``sms_per_user``
    (outgoing, per 30 days) and, with ``plans``, ``bill_fen`` (what the users' bills add up to)
    and ARPU ``arpu_fen`` (per user, whole fen rounded half up)."""
    import ibis

    by = list(by)
    for key in by:
        if key not in CARD_DIMENSIONS:
            raise InvalidValue("by", key, f"must be one of {', '.join(CARD_DIMENSIONS)}")
    t = filtered(records, cards, **filters)
    t = t.filter(~t.refused)
    days = t.group_by("month").aggregate(days=t.day.nunique())
    per_card = t.group_by(["msisdn", "month"]).aggregate(
        data_bytes=(t.bytes_up + t.bytes_down).sum().fill_null(0).cast("int64"),
        voice_mo_s=t.duration_s.sum(where=t.type == "voice_mo").fill_null(0).cast("int64"),
        sms_mo=t.count(where=t.type == "sms_mo"),
    )
    home = cards.select("msisdn", region=cards.province, area=cards.city, plan=cards.plan, channel=cards.channel,
                        agent=cards.agent)
    per_card = _left_join(per_card, home, ["msisdn"])
    if plans is not None:
        billed = bills(records, cards, plans, **filters).select("msisdn", "month", "bill_fen")
        per_card = _left_join(per_card, billed, ["msisdn", "month"])
        per_card = per_card.mutate(bill_fen=per_card.bill_fen.fill_null(0))
    keys = ["month", *by]
    metrics = dict(users=per_card.count(), data_bytes=per_card.data_bytes.sum(), voice_mo_s=per_card.voice_mo_s.sum(),
                   sms_mo=per_card.sms_mo.sum())
    if plans is not None:
        metrics["bill_fen"] = per_card.bill_fen.sum().cast("int64")
    g = per_card.group_by(keys).aggregate(**metrics)
    g = g.inner_join(days, "month")
    scale = MONTH_DAYS / g.days.cast("float64") / g.users.cast("float64")
    out = g.mutate(dou_gb=g.data_bytes.cast("float64") / GIB * scale,
                   mou=g.voice_mo_s.cast("float64") / 60 * scale,
                   sms_per_user=g.sms_mo.cast("float64") * scale)
    if plans is not None:
        out = out.mutate(arpu_fen=((2 * out.bill_fen + out.users) // (2 * out.users)).cast("int64"))
    return out.order_by(keys)


def topups_by(topups: "ibis.Table", *, by: Iterable[str] = ("day",), start: date | None = None,
              end: date | None = None, msisdn: int | None = None) -> "ibis.Table":
    """Top-ups grouped by ``by`` (``day``, ``channel``, ``msisdn``): count, numbers, amount in fen."""
    t = topups
    if start is not None:
        t = t.filter(t.day >= start)
    if end is not None:
        t = t.filter(t.day <= end)
    if msisdn is not None:
        t = t.filter(t.msisdn == int(msisdn))
    by = list(by)
    return t.group_by(by).aggregate(topups=t.count(), cards=t.msisdn.nunique(),
                                    amount_fen=t.amount_fen.sum().fill_null(0).cast("int64")).order_by(by)


# --------------------------------------------------------------------------- validation


# --------------------------------------------------------------------------- frames over a store


def statistics(store_dir, *, by: Iterable[str], plans=None, con=None, **filters) -> "pd.DataFrame":
    """``usage_by`` over the store at ``store_dir``, filters checked first
    (:func:`hkops.analytics.filters.check_usage_filters`)."""
    tables = store_tables(store_dir, con=con)
    checked = checks.check_usage_filters(tables, plans=None if plans is None else plans_table(plans), **filters)
    return _execute(usage_by(tables["records"], tables.get("cards"), by=by, **checked))


def usage_per_card(store_dir, msisdn: int | None = None, *, start=None, end=None, region=None,
                   order_by: str = "data_bytes", limit: int | None = None, con=None) -> "pd.DataFrame":
    """Usage per number: volumes, durations, refusals, where and when it is used.

    One row per MSISDN seen (cards with only refused attempts included: a lost card in
    use is a fraud signal). ``home_area`` is the area of most records, ``peak_hour``
    the local hour of most records, ``imsis`` the distinct IMSIs seen (2 after a SIM
    swap). Sorted by ``order_by`` (a column, descending), then msisdn.
    """
    import ibis

    columns = {"data_bytes", "records", "voice_mo_s", "refused", "sms_mo", "msisdn"}
    if order_by not in columns:
        raise InvalidValue("order_by", order_by, f"must be one of {', '.join(sorted(columns))}")
    start, end = checks.as_day(start, "start"), checks.as_day(end, "end")
    records = store_tables(store_dir, con=con)["records"]
    t = filtered(records, start=start, end=end, region=region and checks.store_region(records, region), msisdn=msisdn)
    metrics = _metrics(t)
    del metrics["cards"]
    per_card = t.group_by("msisdn").aggregate(
        **metrics, imsis=t.imsi.nunique(), days=t.day.nunique(), areas=t.area.nunique(),
        first_start=t.start.min(), last_start=t.start.max())
    per_card = _left_join(_left_join(per_card, most_common(t, "msisdn", "area", "home_area"), ["msisdn"]),
                          most_common(t, "msisdn", "hour", "peak_hour"), ["msisdn"])
    columns = [*metrics, "imsis", "days", "areas", "home_area", "peak_hour", "first_start", "last_start"]
    expr = per_card.select("msisdn", *columns).order_by([ibis.desc(order_by), "msisdn"])
    if limit:
        expr = expr.limit(int(limit))
    return _execute(expr)


def usage_per_region(store_dir, *, level: str = "region", start=None, end=None, region=None,
                     con=None) -> "pd.DataFrame":
    """Usage per province (``level="region"``) or per city (``level="area"``), where it happened.

    ``cards`` counts the distinct numbers with billable usage there (travellers count
    where they were); ``cells`` the distinct cells used.
    """
    import ibis

    if level not in ("region", "area"):
        raise InvalidValue("level", level, "must be region or area")
    keys = ["region"] if level == "region" else ["region", "area"]
    records = store_tables(store_dir, con=con)["records"]
    t = filtered(records, start=checks.as_day(start, "start"), end=checks.as_day(end, "end"),
                 region=region and checks.store_region(records, region))
    expr = t.group_by(keys).aggregate(**_metrics(t), cells=t.cell_id.nunique())
    return _execute(expr.order_by([ibis.desc("data_bytes"), *keys]))


def usage_per_day(store_dir, *, msisdn: int | None = None, region: str | None = None, start=None,
                  end=None, con=None) -> "pd.DataFrame":
    """Usage per local day: volumes, durations, refusals and active cards."""
    t = store_tables(store_dir, con=con)["records"]
    region = region and checks.store_region(t, region)
    return _execute(usage_by(t, by=["day"], msisdn=msisdn, region=region, start=checks.as_day(start, "start"),
                             end=checks.as_day(end, "end")))


def topups_per_day(store_dir, *, msisdn: int | None = None, start=None, end=None, con=None) -> "pd.DataFrame":
    """Top-ups per local day: count, numbers and amount in integer fen."""
    from hkops.analytics.engine import connect, usage_table

    topups = usage_table(con if con is not None else connect(), store_dir, "topups")
    return _execute(topups_by(topups, start=checks.as_day(start, "start"), end=checks.as_day(end, "end"),
                              msisdn=msisdn))


def totals_per_number(store_dir, msisdns, *, start: date, end: date, con=None) -> dict[int, dict]:
    """For each of ``msisdns``, what it used on the days ``start`` .. ``end`` (inclusive, the store's
    days): the charges its records carry (``charge_fen``: rated records, 0 in unrated ones), data up
    and down (``data_bytes``), outgoing voice (``voice_mo_s``) and top-ups (``topup_fen``); a number
    without records has zeros. The records must be there; the top-ups may be absent."""
    wanted = sorted({int(m) for m in msisdns})
    out = {m: {"charge_fen": 0, "data_bytes": 0, "voice_mo_s": 0, "topup_fen": 0} for m in wanted}
    if not wanted:
        return out
    tables = store_tables(store_dir, con=con)

    def kept(t):
        day = t.day.cast("date")
        return t.filter(day >= start, day <= end, t.msisdn.isin(wanted))

    t = kept(tables["records"])
    t = t.filter(~t.refused)
    billable = t.type.isin(["voice_mo", "sms_mo", "data"])
    used = t.group_by("msisdn").aggregate(
        charge_fen=t.charge_fen.sum(where=billable).fill_null(0).cast("int64"),
        data_bytes=(t.bytes_up + t.bytes_down).sum(where=billable).fill_null(0).cast("int64"),
        voice_mo_s=t.duration_s.sum(where=t.type == "voice_mo").fill_null(0).cast("int64"))
    for row in _execute(used).to_dict("records"):
        out[int(row.pop("msisdn"))].update({k: int(v) for k, v in row.items()})
    if "topups" in tables:
        p = kept(tables["topups"])
        for row in _execute(p.group_by("msisdn").aggregate(topup_fen=p.amount_fen.sum().cast("int64"))).itertuples():
            out[int(row.msisdn)]["topup_fen"] = int(row.topup_fen)
    return out


def time_of_day_profile(store_dir, *, msisdn: int | None = None, region: str | None = None, start=None, end=None,
                        type: str | None = None, con=None) -> "pd.DataFrame":
    """Billable usage per local hour 0..23 (all 24 rows): records, voice seconds, data bytes, share of records."""
    import pandas as pd

    records = store_tables(store_dir, con=con)["records"]
    t = filtered(records, msisdn=msisdn, region=region and checks.store_region(records, region),
                 start=checks.as_day(start, "start"), end=checks.as_day(end, "end"), type=type)
    t = t.filter(~t.refused)
    expr = t.group_by("hour").aggregate(
        records=t.count(),
        voice_s=t.duration_s.sum(where=t.type.isin(["voice_mo", "voice_mt"])).fill_null(0).cast("int64"),
        data_bytes=(t.bytes_up + t.bytes_down).sum().fill_null(0).cast("int64"))
    got = _execute(expr).set_index("hour")
    frame = pd.DataFrame({"hour": range(24)})
    for column in ("records", "voice_s", "data_bytes"):
        frame[column] = frame["hour"].map(got[column]).fillna(0).astype("int64")
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


# --------------------------------------------------------------------------- reports


def _gb(data_bytes: int) -> str:
    return str((Decimal(int(data_bytes)) / GIB).quantize(Decimal("0.001")))


def _minutes(seconds: int) -> str:
    return str((Decimal(int(seconds)) / 60).quantize(Decimal("0.1")))


def _yuan(fen: int) -> str:
    return str(fen_to_yuan(int(fen)))


def _overage(tables: dict, plans, first: date, last: date) -> int | None:
    """Overage charges (fen) of the records made from ``first`` to ``last``, each card's month
    counted from its first day; None without plans or cards to rate by. The same as summing
    ``rate``'s ``overage_fen`` over those days, from two sets of bills instead of a sort."""
    cards = tables.get("cards")
    if plans is None or cards is None:
        return None
    p = plans_table(plans)

    def overage(end: date) -> int:
        b = bills(tables["records"], cards, p, start=first.replace(day=1), end=end)
        return int(_execute(b.aggregate(fen=(b.bill_fen - b.monthly_fee_fen).sum().fill_null(0)))["fen"].iloc[0])

    return overage(last) - (overage(first - timedelta(days=1)) if first.day > 1 else 0)


def daily_report(store_dir, day: date | str, *, top: int = 5, plans=None, con=None) -> dict:
    """The statistics of one local day, as a plain dict ready for JSON.

    Money as Decimal yuan strings, data in GB (2**30 bytes) and minutes as Decimal
    strings, counts as ints. ``active_cards`` counts numbers with billable usage that
    day; ``refusals`` the refused attempts by reason and ``refusing_cards`` the
    numbers behind them (lost or replaced cards attempting use are fraud signals).
    ``charges_yuan`` is the day's overage by the cards' plans (``plans``: the catalogue's),
    None without plans.
    """
    import ibis

    day = checks.as_day(day, "day")
    tables = store_tables(store_dir, con=con)
    known = available_days(store_dir)
    if day not in known:
        raise InvalidValue("day", str(day), f"has no usage records (days in the store: {known[0]}..{known[-1]})")
    records = tables["records"]
    t = filtered(records, start=day, end=day)
    totals = _execute(t.aggregate(all_records=t.count(), **_metrics(t),
                                  cells=t.cell_id.nunique(where=~t.refused))).iloc[0]
    refused = t.filter(t.refused)
    refusals = _execute(refused.group_by("refusal").aggregate(attempts=refused.count(), cards=refused.msisdn.nunique())
                        .order_by("refusal"))
    ok = t.filter(~t.refused)
    regions = _execute(ok.group_by("region").aggregate(
        records=ok.count(), cards=ok.msisdn.nunique(), data_bytes=(ok.bytes_up + ok.bytes_down).sum().cast("int64"),
        voice_mo_s=ok.duration_s.sum(where=ok.type == "voice_mo").fill_null(0).cast("int64"),
    ).order_by([ibis.desc("data_bytes"), "region"]).limit(int(top)))
    hours = _execute(ok.group_by("hour").aggregate(n=ok.count()).order_by([ibis.desc("n"), "hour"]))
    topup_rows = []
    if "topups" in tables:
        topup_rows = _execute(topups_by(tables["topups"], by=["channel"], start=day, end=day)).itertuples()
        topup_rows = [(r.channel, r.topups, r.amount_fen) for r in topup_rows]
    charges = _overage(tables, plans, day, day)

    topup_count = sum(int(r[1]) for r in topup_rows)
    topup_fen = sum(int(r[2]) for r in topup_rows)
    return {
        "day": day.isoformat(),
        "records": int(totals["all_records"]),
        "billable_records": int(totals["records"]),
        "refused_records": int(totals["refused"]),
        "active_cards": int(totals["cards"]),
        "cells": int(totals["cells"]),
        "data_bytes": int(totals["data_bytes"]),
        "data_gb": _gb(totals["data_bytes"]),
        "data_gb_per_active_card": _gb(int(totals["data_bytes"]) // max(int(totals["cards"]), 1)),
        "voice_mo_calls": int(totals["voice_mo_calls"]),
        "voice_mo_minutes": _minutes(totals["voice_mo_s"]),
        "voice_mt_minutes": _minutes(totals["voice_mt_s"]),
        "sms_mo": int(totals["sms_mo"]),
        "sms_mt": int(totals["sms_mt"]),
        "charges_yuan": None if charges is None else _yuan(charges),
        "topups": {
            "count": topup_count,
            "yuan": _yuan(topup_fen),
            "by_channel": {str(ch): {"count": int(n), "yuan": _yuan(fen)} for ch, n, fen in topup_rows},
        },
        "refusals": {str(r.refusal): int(r.attempts) for r in refusals.itertuples()},
        "refusing_cards": {str(r.refusal): int(r.cards) for r in refusals.itertuples()},
        "peak_hour": int(hours["hour"].iloc[0]) if len(hours) else None,
        "quietest_hour": int(hours["hour"].iloc[-1]) if len(hours) else None,
        "top_regions": [
            {"region": str(r.region), "records": int(r.records), "cards": int(r.cards), "data_gb": _gb(r.data_bytes),
             "voice_mo_minutes": _minutes(r.voice_mo_s)}
            for r in regions.itertuples()
        ],
    }


def report(store_dir, day: date | str | None = None, *, plans=None, con=None) -> dict:
    """``daily_report`` of ``day``, or of the latest day in the store (for ``hkops usage stats``)."""
    if day is None:
        days = available_days(store_dir)
        if not days:
            store_tables(store_dir, con=con)  # raises the "run hkops usage generate" error
        day = days[-1]
    return daily_report(store_dir, day, plans=plans, con=con)


def format_report(rep: dict) -> str:
    """The daily report as text lines for people."""
    charges = "no plans to rate by" if rep["charges_yuan"] is None else f"¥{Decimal(rep['charges_yuan']):,} beyond the plans' allowances"
    lines = [
        f"usage on {rep['day']} (Asia/Shanghai)",
        f"  records          {rep['records']:,} ({rep['billable_records']:,} billable, {rep['refused_records']:,} refused)",
        f"  active cards     {rep['active_cards']:,} on {rep['cells']:,} cells",
        f"  data             {rep['data_gb']} GB ({rep['data_gb_per_active_card']} GB per active card)",
        f"  voice            {rep['voice_mo_minutes']} min outgoing in {rep['voice_mo_calls']:,} calls, "
        f"{rep['voice_mt_minutes']} min incoming",
        f"  SMS              {rep['sms_mo']:,} sent, {rep['sms_mt']:,} received",
        f"  overage          {charges}",
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


def period_range(period: str, day: date | str) -> tuple[date, date]:
    """The first and last local day of the ``period`` (day, ISO week Monday to Sunday, or month) holding ``day``."""
    if period not in PERIODS:
        raise InvalidValue("period", period, f"must be one of {', '.join(PERIODS)}")
    day = checks.as_day(day, "date")
    if period == "day":
        return day, day
    if period == "week":
        first = day - timedelta(days=day.weekday())
        return first, first + timedelta(days=6)
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following - timedelta(days=1)


def for_people(frame: "pd.DataFrame") -> "pd.DataFrame":
    """Integer fen columns as Decimal yuan (``..._fen`` becomes ``..._yuan``); GB and minutes for people."""
    frame = frame.copy()
    for column in [c for c in frame.columns if c.endswith("_fen")]:
        frame[column.removesuffix("_fen") + "_yuan"] = [fen_to_yuan(int(v)) for v in frame[column]]
        frame = frame.drop(columns=column)
    if "data_bytes" in frame.columns:
        frame["data_gb"] = [(Decimal(int(v)) / GIB).quantize(Decimal("0.001")) for v in frame["data_bytes"]]
    for column in ("voice_mo_s", "voice_mt_s"):
        if column in frame.columns:
            frame[column.removesuffix("_s") + "_min"] = [(Decimal(int(v)) / 60).quantize(Decimal("0.1"))
                                                           for v in frame[column]]
    for column in ("dou_gb", "mou", "sms_per_user"):
        if column in frame.columns:
            frame[column] = [Decimal(repr(float(v))).quantize(Decimal("0.01"), ROUND_HALF_UP) for v in frame[column]]
    for column in ("day", "week", "month"):
        if column in frame.columns:
            frame[column] = [str(v)[:10] for v in frame[column]]
    if "week" in frame.columns:
        frame["iso_week"] = [f"{date.fromisoformat(v).isocalendar()[0]}-W{date.fromisoformat(v).isocalendar()[1]:02d}"
                             for v in frame["week"]]
    return frame


def period_report(store_dir, period: str, day: date | str, *, plans=None, top: int = 20,
                  today: date | None = None, con=None) -> dict[str, "pd.DataFrame"]:
    """The usage report of the day, ISO week or month holding ``day``: named tables (sheets).

    ``summary`` (one row per measure), usage ``by_day``, ``by_hour``, ``by_service``,
    ``by_region`` and ``by_area`` (where used), ``by_plan`` and ``by_channel`` (the cards'),
    ``per_user`` (DOU, MOU, SMS and, with ``plans``, ARPU per plan and home province, per
    month), ``top_users``; with ``plans`` also ``charges``: fees and overage per plan of the
    months the period touches. Refuses a day in the future or a period without records.
    """
    import pandas as pd

    first, last = period_range(period, day)
    day = checks.as_day(day, "date")
    checks.not_future(day, "date", today)
    days = [d for d in available_days(store_dir) if first <= d <= last]
    if not days:
        raise InvalidValue("date", day.isoformat(),
                           f"has no usage records in the {period} {first.isoformat()}..{last.isoformat()}")
    tables = store_tables(store_dir, con=con)
    records, cards = tables["records"], tables.get("cards")
    p = None if plans is None else plans_table(plans)
    window = dict(start=first, end=last)

    def usage(by):
        return for_people(_execute(usage_by(records, cards, by=by, **window)))

    total = _execute(usage_by(records, cards, by=[], **window)).iloc[0]
    charges = _overage(tables, plans, first, last)
    summary = [
        ("period", period), ("first_day", first.isoformat()), ("last_day", last.isoformat()),
        ("days_with_records", len(days)), ("billable_records", int(total["records"])),
        ("refused_records", int(total["refused"])), ("active_cards", int(total["cards"])),
        ("data_gb", _gb(total["data_bytes"])), ("voice_mo_minutes", _minutes(total["voice_mo_s"])),
        ("voice_mt_minutes", _minutes(total["voice_mt_s"])), ("sms_mo", int(total["sms_mo"])),
        ("sms_mt", int(total["sms_mt"])),
        ("overage_yuan", "no plans to rate by" if charges is None else _yuan(charges)),
    ]
    sheets = {"summary": pd.DataFrame(summary, columns=["measure", "value"])}
    sheets["by_day"] = usage(["day"])
    sheets["by_hour"] = usage(["hour"])
    sheets["by_service"] = usage(["service"])
    sheets["by_region"] = usage(["region"])
    sheets["by_area"] = usage(["region", "area"])
    if cards is not None:
        sheets["by_plan"] = usage(["plan"])
        sheets["by_channel"] = usage(["channel"])
        sheets["per_user"] = for_people(_execute(per_user(records, cards, p, by=["plan", "region"], **window)))
    sheets["top_users"] = for_people(_execute(top_users(records, cards, n=top, **window)))
    if p is not None and cards is not None:
        month_window = dict(start=first.replace(day=1), end=last)
        b = bills(records, cards, p, **month_window)
        per_plan = b.group_by(["month", "plan"]).aggregate(
            cards=b.count(), monthly_fee_fen=b.monthly_fee_fen.sum(), overage_data_fen=b.overage_data_fen.sum(),
            overage_voice_fen=b.overage_voice_fen.sum(), overage_sms_fen=b.overage_sms_fen.sum(),
            bill_fen=b.bill_fen.sum()).order_by(["month", "plan"])
        sheets["charges"] = for_people(_execute(per_plan))
    return sheets


def export_report(sheets: dict[str, "pd.DataFrame"], path: Path | str) -> Path:
    """Write the report's tables to ``path``: ``.xlsx`` (one sheet each, openpyxl) or ``.csv``
    (one tidy table: sheet, row, column, value). Written to a temporary file first, so a
    failed export leaves nothing behind."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".xlsx", ".csv"):
        raise InvalidValue("out", str(path), "must end in .xlsx or .csv")
    if not path.parent.exists():
        raise InvalidValue("out", str(path), f"is in a folder that does not exist ({path.parent})")
    from hkops import spreadsheets

    if suffix == ".xlsx":
        return spreadsheets.save([spreadsheets.from_frame(name, frame) for name, frame in sheets.items()], path)
    tidy = ([name, number, column, value] for name, frame in sheets.items()
            for number, row in enumerate(frame.itertuples(index=False, name=None), start=1)
            for column, value in zip(frame.columns, row))
    return spreadsheets.save([spreadsheets.Sheet("report", ["sheet", "row", "column", "value"], tidy)], path)
