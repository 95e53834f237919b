"""Time helpers: stored in UTC, shown in Asia/Shanghai."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hkops.errors import InvalidValue

SHANGHAI = ZoneInfo("Asia/Shanghai")

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_DURATION = timedelta(days=3650)


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def local(moment: datetime | None) -> str:
    """Format a stored time for people: Asia/Shanghai, to the second."""
    if moment is None:
        return ""
    return as_utc(moment).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def parse_duration(value: str, field: str = "ttl") -> timedelta:
    """Parse ``30m``, ``2h``, ``7d``, ``1w``, ``45s`` (up to ten years) into a timedelta."""
    match = _DURATION.match(str(value))
    if not match or int(match.group(1)) == 0:
        raise InvalidValue(field, value, "must be a positive duration such as 45s, 30m, 2h, 7d or 1w")
    amount, unit = int(match.group(1)), _UNITS[match.group(2).lower()]
    if amount > MAX_DURATION / timedelta(**{unit: 1}):
        raise InvalidValue(field, value, f"must be at most {MAX_DURATION.days} days")
    return timedelta(**{unit: amount})
