"""Analyses written once as Ibis expressions; they run on DuckDB and on Spark alike.

Each analysis is a pure function of Ibis tables named by its parameters (``usage``: the usage
records, ``topups``: the top-ups, or an hkops database table such as ``orders``; see
:func:`hkops.analytics.engine.tables_for`) returning an Ibis expression, registered in
:data:`hkops.analytics.engine.ANALYSES` with :func:`hkops.analytics.engine.analysis`.

Rules that keep the engines' answers identical: integer sums and counts only (money in fen,
volumes in bytes, durations in seconds; ratios are computed by the caller), every sum filled
with 0 where nothing matched, local (Asia/Shanghai, UTC+8, no daylight saving) hours and days
from a fixed offset on UTC (both engines' sessions run in UTC), and ties broken by a key.
"""

from __future__ import annotations

from hkops.analytics.engine import analysis

#: Asia/Shanghai is UTC+8 all year.
SHANGHAI_OFFSET_S = 8 * 3600


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
