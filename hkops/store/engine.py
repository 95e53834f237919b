"""Engines and transactions: SQLite (WAL, writers wait their turn) or PostgreSQL."""

from __future__ import annotations

from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Iterator

from sqlalchemy import Connection, Engine, create_engine, event, inspect

from hkops.config import database_url

SQLITE_BUSY_TIMEOUT_MS = 120_000
#: Page cache per connection and memory-mapped reads: searches probe rows all over a
#: large pool, and reading them through the mmap avoids a system call per page.
SQLITE_CACHE_KIB = 65_536
SQLITE_MMAP_BYTES = 4 << 30
_WRITE = "hkops_write"
#: pg_advisory_xact_lock key every PostgreSQL write transaction takes first ("hkopsaud"): writers are
#: serialised as SQLite's BEGIN IMMEDIATE serialises them, so the audit chain has one order, and no
#: writer can hold a row or person lock while waiting for the audit chain (which would deadlock).
WRITE_LOCK_KEY = 0x686B6F7073617564
#: What every hkops SQLite connection is set to (the numbers benchmark's tuned anchor uses the same).
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}",
    f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}",
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys=ON",
)


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record):
            # Let SQLAlchemy's "begin" event issue BEGIN itself, so writers can ask for
            # BEGIN IMMEDIATE and queue on the busy timeout instead of failing later.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            for pragma in SQLITE_PRAGMAS:
                cursor.execute(pragma)
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection):
            write = conn.get_execution_options().get(_WRITE, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True)


class Store:
    """One database: hands out read and write transactions (units of work)."""

    def __init__(self, url: str | None = None):
        self.url = url or database_url()
        self.engine = _make_engine(self.url)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that commits when the block ends and rolls back on error."""
        with self.engine.connect().execution_options(**{_WRITE: True}) as conn:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (rolled back at the end)."""
        with self.engine.connect() as conn:
            with conn.begin() as tx:
                yield conn
                tx.rollback()

    @cached_property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def has_schema(self) -> bool:
        """Whether migrations have been applied to this database."""
        return inspect(self.engine).has_table("numbers")

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def unit_of_work(db: "Store | Connection") -> Iterator[Connection]:
    """Use ``db``'s open transaction if it is a Connection, else open a write transaction."""
    if isinstance(db, Connection):
        yield db
    else:
        with db.write() as conn:
            yield conn


_stores: dict[str, Store] = {}


def get_store(url: str | None = None) -> Store:
    """The shared Store for ``url`` (default: the configured database)."""
    url = url or database_url()
    if url not in _stores:
        _stores[url] = Store(url)
    return _stores[url]
