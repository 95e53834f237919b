"""The carriers this operator runs numbers for (China Mobile, China Unicom, ...)."""

from __future__ import annotations

from sqlalchemy import Column, Connection, String, Table, select

from hkops.errors import InvalidValue
from hkops.store.schema import metadata
from hkops.security import access

carriers_table = Table(
    "carriers",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("name_zh", String(32), nullable=False),
)

#: Carriers that phonenumbers knows for China, English name to Chinese name.
KNOWN = {
    "China Mobile": "中国移动",
    "China Unicom": "中国联通",
    "China Telecom": "中国电信",
    "China Broadnet": "中国广电",
}
MAIN_THREE = ("China Mobile", "China Unicom", "China Telecom")


def _canonical(name: str) -> str:
    for en, zh in KNOWN.items():
        if name.strip().lower() in (en.lower(), zh):
            return en
    raise InvalidValue("carrier", name, f"unknown carrier; known: {', '.join(KNOWN)}")


def configure(conn: Connection, names: list[str], *, actor: str) -> list[str]:
    """Add carriers (English or Chinese names) to the configured set; returns the set."""
    access.require(actor, "settings.write", f"configure carriers {access.few(names)}")
    from hkops.audit import Event, record

    for name in names:
        en = _canonical(name)
        if en not in configured(conn):
            conn.execute(carriers_table.insert().values(name=en, name_zh=KNOWN[en]))
            record(conn, actor, [Event("carrier", en, "configure", None, "configured")])
    return configured(conn)


def configured(conn: Connection) -> list[str]:
    """The configured carriers' English names."""
    return list(conn.execute(select(carriers_table.c.name).order_by(carriers_table.c.name)).scalars())


def canonical_name(name: str) -> str:
    """``中国移动`` or ``china mobile`` to ``China Mobile``."""
    return _canonical(name)
