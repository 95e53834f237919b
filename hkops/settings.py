"""Operator settings kept in the database, so every user and process sees the same."""

from __future__ import annotations

import re

from sqlalchemy import Column, Connection, String, Table, Text, select

from hkops.errors import InvalidValue
from hkops.store.schema import metadata
from hkops.security import access

settings_table = Table(
    "settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

#: Every setting, its default, and how to check a new value.
DEFAULTS: dict[str, str] = {
    "quarantine_days": "90",
    "reservation_ttl": "30m",
    # How long an approved order may stay unpaid before it expires (hkops.orders.service.expire_unpaid).
    "order_payment_ttl": "24h",
    "grading_rules_digest": "",
    # The name of this database's own HLR registry folder (hkops.network.registry.folder_for).
    "hlr_registry": "",
    "audit_database_id": "",
    "login_max_failures": "5",
    "login_lockout": "15m",
    # Withdrawals (hkops.commissions.service.request_withdrawal): amounts in fen, percentages as decimals.
    "withdrawal_minimum_fen": "1300",
    "withdrawal_fee_percent": "0",
    "withdrawal_fee_min_fen": "0",
    "withdrawal_fee_max_fen": "0",
    "withdrawal_tax_percent": "6",
    "withdrawal_every_days": "7",
    "withdrawal_monthly_cap_fen": "5000000",
}
#: Settings hkops keeps itself; a person cannot set them (the audit identity starts the chain).
INTERNAL = {"audit_database_id"}


def get(conn: Connection, key: str) -> str:
    """The value of setting ``key`` (its default when never set)."""
    if key not in DEFAULTS:
        raise InvalidValue("setting", key, f"unknown setting; known: {', '.join(DEFAULTS)}")
    value = conn.execute(select(settings_table.c.value).where(settings_table.c.key == key)).scalar()
    return DEFAULTS[key] if value is None else value


def set_value(conn: Connection, key: str, value: str, *, actor: str | None = None, reason: str | None = None) -> None:
    """Set ``key`` to ``value`` (validated for the settings that have a form).

    A change made by a person (``actor`` given) is audited; hkops's own bookkeeping
    (the digest of the grading rules) is not.
    """
    access.require(actor, "settings.write", f"set {key}")
    before = get(conn, key)
    if actor is not None and key in INTERNAL:
        raise InvalidValue("setting", key, "is kept by hkops itself and cannot be set")
    if key == "quarantine_days" and (not str(value).isdigit() or int(value) > 3650):
        raise InvalidValue("quarantine_days", value, "must be a whole number of days from 0 to 3650")
    if key == "hlr_registry" and not re.fullmatch(r"[0-9a-z][0-9a-z-]{0,31}", str(value)):
        raise InvalidValue("hlr_registry", value, "must be 1 to 32 lower-case letters, digits or dashes")
    if key == "login_max_failures" and (not str(value).isdigit() or not 1 <= int(value) <= 100):
        raise InvalidValue("login_max_failures", value, "must be a whole number of failed logins from 1 to 100")
    if key.startswith("withdrawal_") and not re.fullmatch(r"\d{1,12}" + (r"(\.\d{1,4})?" if "percent" in key else ""),
                                                          str(value)):
        raise InvalidValue(key, value, "must be a whole number (a percentage may have decimals), 0 or more")
    if key in ("reservation_ttl", "order_payment_ttl", "login_lockout"):
        from hkops.timeutil import parse_duration

        parse_duration(value, key)
    updated = conn.execute(
        settings_table.update().where(settings_table.c.key == key).values(value=str(value))
    ).rowcount
    if not updated:
        conn.execute(settings_table.insert().values(key=key, value=str(value)))
    if actor is not None:
        from hkops.audit import Event, record

        record(conn, actor, [Event("setting", key, "set", before, str(value), reason)])


def order_payment_ttl(conn: Connection):
    """How long an approved order may stay unpaid (a timedelta) before it expires."""
    from hkops.timeutil import parse_duration

    return parse_duration(get(conn, "order_payment_ttl"), "order_payment_ttl")


def quarantine_days(conn: Connection) -> int:
    """Cool-off days before a terminated number can be reissued."""
    return int(get(conn, "quarantine_days"))
