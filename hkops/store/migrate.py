"""Schema migrations with Alembic, run on a :class:`~hkops.store.engine.Store`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from hkops.store.engine import Store

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(store: Store, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (default: the newest)."""
    config = _config()
    with store.engine.connect().execution_options(hkops_write=True) as conn:
        with conn.begin():
            config.attributes["connection"] = conn
            command.upgrade(config, revision)


def current_revision(store: Store) -> str | None:
    """The revision the database is at, or None before the first upgrade."""
    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()


def make_revision(store: Store, message: str) -> None:
    """Autogenerate a new migration from the tables (for developers)."""
    config = _config()
    with store.engine.connect() as conn:
        config.attributes["connection"] = conn
        command.revision(config, message=message, autogenerate=True)
