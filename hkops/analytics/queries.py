"""Analyses written once as Ibis expressions; they run on DuckDB and on Spark alike.

Each analysis is a pure function of Ibis tables named by its parameters (``usage``: the usage
records, ``topups``: the top-ups, or an hkops database table such as ``orders``; see
:func:`hkops.analytics.engine.tables_for`) returning an Ibis expression, registered in
:data:`hkops.analytics.engine.ANALYSES` with :func:`hkops.analytics.engine.analysis`.

Beside the analyses written here, the analyses of :mod:`~hkops.analytics.usage_stats`,
:mod:`~hkops.analytics.sales` and :mod:`~hkops.analytics.planning` are registered through small
wrappers naming their tables (forecasts, fitted by statsmodels, are not Ibis and stay outside).

Rules that keep the engines' answers identical: integer sums and counts (money in fen, volumes
in bytes, durations in whole seconds; ratios and medians, where an analysis gives them, are
float64 and agree to 12 significant digits), every sum filled with 0 where nothing matched,
local (Asia/Shanghai, UTC+8, no daylight saving) hours and days from a fixed offset on UTC
(both engines' sessions run in UTC), no ``mode`` (Spark has none; see
:func:`hkops.analytics.usage_stats.most_common`), and ties broken by a key.
"""

from __future__ import annotations

from hkops.analytics.engine import analysis

#: Asia/Shanghai is UTC+8 all year.
SHANGHAI_OFFSET_S = 8 * 3600


def _registered(name: str, doc: str, function):
    """``function`` named ``name`` with ``doc``, registered in :data:`ANALYSES`."""
    function.__name__, function.__doc__ = name, doc
    return analysis(name)(function)


def _sum(column, where=None):
    return column.sum(where=where).fill_null(0).cast("int64")


def local_hour(timestamp):
    """The Asia/Shanghai hour 0..23 of a UTC timestamp column."""
    return ((timestamp.epoch_seconds() + SHANGHAI_OFFSET_S) // 3600 % 24).cast("int32")


def local_day(timestamp):
    """The Asia/Shanghai day of a UTC timestamp column."""
    import ibis

    return (timestamp + ibis.interval(hours=8)).date()


def _usage_measures(usage) -> dict:
    billable = ~usage.refused
    return {
        "records": usage.count(where=billable),
        "voice_mo_s": _sum(usage.duration_s, billable & (usage.type == "voice_mo")),
        "voice_mt_s": _sum(usage.duration_s, billable & (usage.type == "voice_mt")),
        "sms_mo": usage.count(where=billable & (usage.type == "sms_mo")),
        "data_bytes": _sum(usage.bytes_up + usage.bytes_down, billable),
        "charge_fen": _sum(usage.charge_fen),
        "refused": usage.count(where=usage.refused),
    }


@analysis("day_region")
def day_region(usage):
    """Usage by local day and province: billable records, voice seconds, SMS sent, data bytes,
    charges (fen), refused attempts and active cards (numbers with billable usage there)."""
    return (usage.group_by(["day", "region"])
            .aggregate(**_usage_measures(usage), cards=usage.msisdn.nunique(where=~usage.refused))
            .order_by(["day", "region"]))


@analysis("service_day")
def service_day(usage):
    """Billable usage by local day and service (voice_mo, voice_mt, sms_mo, sms_mt, data)."""
    billable = usage.filter(~usage.refused)
    return (billable.group_by(["day", "type"])
            .aggregate(records=billable.count(), duration_s=_sum(billable.duration_s),
                       data_bytes=_sum(billable.bytes_up + billable.bytes_down),
                       charge_fen=_sum(billable.charge_fen))
            .order_by(["day", "type"]))


@analysis("hour_profile")
def hour_profile(usage):
    """Billable usage by local hour of the day and service."""
    billable = usage.filter(~usage.refused).mutate(hour=local_hour(usage.start))
    return (billable.group_by(["hour", "type"])
            .aggregate(records=billable.count(), data_bytes=_sum(billable.bytes_up + billable.bytes_down))
            .order_by(["hour", "type"]))


@analysis("area_rat")
def area_rat(usage):
    """Usage by city (area) and radio technology (4G / 5G), with distinct cells used."""
    return (usage.group_by(["region", "area", "rat"])
            .aggregate(**_usage_measures(usage), cells=usage.cell_id.nunique())
            .order_by(["region", "area", "rat"]))


@analysis("top_users")
def top_users(usage, limit: int = 100):
    """The ``limit`` numbers with the most billable data (ties by number)."""
    import ibis

    billable = usage.filter(~usage.refused)
    return (billable.group_by("msisdn")
            .aggregate(data_bytes=_sum(billable.bytes_up + billable.bytes_down),
                       voice_mo_s=_sum(billable.duration_s, billable.type == "voice_mo"),
                       records=billable.count(), days=billable.day.nunique())
            .order_by([ibis.desc("data_bytes"), "msisdn"])
            .limit(limit))


@analysis("topups_day_channel")
def topups_day_channel(topups):
    """Top-ups by local day and channel: count, numbers and amount (fen)."""
    return (topups.group_by(["day", "channel"])
            .aggregate(topups=topups.count(), cards=topups.msisdn.nunique(), amount_fen=_sum(topups.amount_fen))
            .order_by(["day", "channel"]))


@analysis("orders_day_plan")
def orders_day_plan(orders):
    """Orders by local day placed, plan and state: count and total (fen)."""
    placed = orders.mutate(day=local_day(orders.created_at))
    return (placed.group_by(["day", "plan", "state"])
            .aggregate(orders=placed.count(), total_fen=_sum(placed.total_fen))
            .order_by(["day", "plan", "state"]))


# ---------------------------------------------------------------- usage statistics (hkops.analytics.usage_stats)

#: Usage analyses by one breakdown: name → the ``usage_by`` keys; those by the card's plan or
#: channel also read the usage store's ``cards``.
USAGE_BREAKDOWNS = {
    "usage_by_service": ("service",), "usage_by_hour": ("hour",), "usage_by_day": ("day",),
    "usage_by_week": ("week",), "usage_by_month": ("month",), "usage_by_province": ("region",),
    "usage_by_city": ("region", "area"),
}
CARD_BREAKDOWNS = {"usage_by_plan": ("plan",), "usage_by_channel": ("channel",)}


def _usage_breakdown(name: str, by: tuple[str, ...], with_cards: bool):
    def by_records(usage):
        from hkops.analytics.usage_stats import usage_by

        return usage_by(usage, by=by)

    def by_cards(usage, cards):
        from hkops.analytics.usage_stats import usage_by

        return usage_by(usage, cards, by=by)

    return _registered(name, f"Usage by {' and '.join(by)} (``usage_stats.usage_by``): billable records, voice, "
                             "SMS, data, refused attempts and active cards.", by_cards if with_cards else by_records)


for _name, _by in USAGE_BREAKDOWNS.items():
    _usage_breakdown(_name, _by, with_cards=False)
for _name, _by in CARD_BREAKDOWNS.items():
    _usage_breakdown(_name, _by, with_cards=True)


@analysis("per_user")
def per_user(usage, cards):
    """DOU, MOU and SMS per user per month, by the cards' plan and home province."""
    from hkops.analytics import usage_stats

    return usage_stats.per_user(usage, cards, by=["plan", "region"])


@analysis("arpu")
def arpu(usage, cards, plans):
    """``per_user`` with the bills of the catalogue's ``plans``: ARPU per month, plan and home province."""
    from hkops.analytics import usage_stats

    return usage_stats.per_user(usage, cards, plans, by=["plan", "region"])


@analysis("bills")
def bills(usage, cards, plans):
    """Each card's bill per month: fee and overage beyond its plan's allowances."""
    from hkops.analytics import usage_stats

    return usage_stats.bills(usage, cards, plans)


@analysis("top_cards")
def top_cards(usage, cards, limit: int = 20):
    """The ``limit`` numbers with the most billable data, with their plan, channel and home area."""
    from hkops.analytics import usage_stats

    return usage_stats.top_users(usage, cards, n=limit)


# ---------------------------------------------------------------- sales (hkops.analytics.sales)


#: Sales analyses over the orders' steps: name → (function of :mod:`hkops.analytics.sales`, its
#: options, what it gives).
SALES_ANALYSES = {
    "sales_funnel": ("funnel_by", (), "The sales funnel from placed to first top-up: orders per step, "
                                      "conversions, median hours."),
    "sales_funnel_by_plan": ("funnel_by", ("plan",), "The sales funnel per plan."),
    "sales_trends": ("trends", ("day",), "Orders reaching each step per local day."),
    "league_table": ("league_table", (), "Agents ranked by activations, then revenue."),
    "cancel_return_rates": ("rates", ("agent",), "Cancellation and return rates per selling agent "
                                                 "(``direct`` for direct sales)."),
}


def _steps(orders, audit_log, agents):
    from hkops.analytics import sales

    return sales.order_steps(orders, audit_log, agents)


def _sales_analysis(name: str, function_name: str, options: tuple, doc: str):
    def over_steps(orders, audit_log, agents):
        from hkops.analytics import sales

        return getattr(sales, function_name)(_steps(orders, audit_log, agents), *options)

    return _registered(name, doc, over_steps)


for _name, (_function, _options, _doc) in SALES_ANALYSES.items():
    _sales_analysis(_name, _function, _options, _doc)


@analysis("commission_per_activation")
def commission_per_activation(orders, audit_log, agents, commission_entries):
    """Commission cost per activation per selling agent."""
    from hkops.analytics import sales

    return sales.commission_per_activation(_steps(orders, audit_log, agents), commission_entries, "agent")


@analysis("stock_turnover")
def stock_turnover(stock_moves, stock_locations, days: int = 30):
    """Stock turnover per held location over the last ``days`` days."""
    from datetime import timedelta

    from hkops.analytics import sales
    from hkops.timeutil import utc_now

    end = utc_now()
    return sales.stock_turnover(stock_moves, stock_locations, end - timedelta(days=days), end)


# ---------------------------------------------------------------- number planning (hkops.analytics.planning)


def _pool(level: str):
    def pool(numbers, number_blocks):
        from hkops.analytics import planning
        from hkops.timeutil import utc_now

        return planning.pool_utilisation(numbers, number_blocks, level, as_of=utc_now())

    return _registered(f"pool_by_{level}", f"The number pool per {level}: numbers per state, utilisation and "
                                           "the available share.", pool)


for _level in ("block", "region", "grade"):
    _pool(_level)


@analysis("number_demand")
def number_demand(numbers, number_blocks, audit_log):
    """Numbers taken from the pool per local day and region."""
    from hkops.analytics import planning

    return planning.demand_history(numbers, number_blocks, audit_log)


@analysis("quarantine_inflow")
def quarantine_inflow(numbers, number_blocks, audit_log):
    """Numbers entering quarantine per local day and region."""
    from hkops.analytics import planning

    return planning.quarantine_inflow(numbers, number_blocks, audit_log)


@analysis("utilisation_history")
def utilisation_history(numbers, number_blocks, audit_log, days: int = 14):
    """Numbers in use and the pool's size per region at the end of each of the last ``days`` local days."""
    from datetime import timedelta

    from hkops.analytics import planning
    from hkops.analytics.filters import today

    last = today()
    return planning.utilisation_history(numbers, number_blocks, audit_log,
                                        [last - timedelta(days=n) for n in range(days)])


@analysis("recycle_outflow")
def recycle_outflow(numbers, number_blocks, horizon_days: int = 90):
    """Quarantined numbers due back to the pool per local day and region over ``horizon_days``."""
    from hkops.analytics import planning
    from hkops.analytics.filters import today

    return planning.recycle_outflow(numbers, number_blocks, today(), horizon_days)
