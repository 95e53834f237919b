"""The shared SQLAlchemy metadata and column types every table module builds on."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, Integer, MetaData
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateIndex
from sqlalchemy.types import TypeDecorator

from hkops.timeutil import as_utc

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

def partial_index(name: str | None, column: str, where: str, *, unique: bool = False) -> Index:
    """An index over the rows where ``where`` (SQL) holds, on SQLite and PostgreSQL alike.

    The condition is kept in ``info`` rather than passed as ``postgresql_where``, whose validation
    imports the PostgreSQL dialect into every command (about 17 ms); the migrations create the index
    with the dialects' own options, and ``_create_partial_index`` compiles it for ``create_all``."""
    return Index(name, column, unique=unique, info={"where": where})


@compiles(CreateIndex)
def _create_partial_index(create, compiler, **kw):
    sql = compiler.visit_create_index(create, **kw)
    where = create.element.info.get("where")
    return f"{sql} WHERE {where}" if where else sql


#: A 64-bit integer key that is SQLite's rowid (INTEGER PRIMARY KEY) on SQLite.
BigKey = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator):
    """A timestamp stored in UTC and always returned timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):
        return None if value is None else as_utc(value)
