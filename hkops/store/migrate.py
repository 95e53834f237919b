"""Schema migrations with Alembic, run on a :class:`~hkops.store.engine.Store`."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from hkops.store.engine import Store

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config():
    from alembic.config import Config  # Alembic is imported only when there is work for it

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(store: Store, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (default: the newest)."""
    if revision == "head" and is_current(store):
        return
    from alembic import command

    config = _config()
    with store.engine.connect().execution_options(hkops_write=True) as conn:
        with conn.begin():
            config.attributes["connection"] = conn
            command.upgrade(config, revision)


def current_revision(store: Store) -> str | None:
    """The revision the database is at, or None before the first upgrade."""
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def make_revision(store: Store, message: str) -> None:
    """Autogenerate a new migration from the tables (for developers)."""
    from alembic import command

    config = _config()
    with store.engine.connect() as conn:
        config.attributes["connection"] = conn
        command.revision(config, message=message, autogenerate=True)


_REVISION = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(.+)$", re.MULTILINE)


def _file_heads() -> set[str]:
    """The newest revisions, read from the migration files without loading Alembic."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for name, value in _REVISION.findall(path.read_text(encoding="utf-8")):
            ids = set(re.findall(r"['\"]([^'\"]+)['\"]", value))
            (revisions if name == "revision" else parents).update(ids)
    return revisions - parents


def is_current(store: Store) -> bool:
    """Whether the database is at the newest revision (one query; every command asks this)."""
    try:
        with store.engine.connect() as conn:
            stamped = set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except DBAPIError:
        return False
    return bool(stamped) and stamped == _file_heads()
