"""Fixtures: every database test runs on SQLite and, when a server is reachable, on
PostgreSQL. In CI (CI=true) an unreachable PostgreSQL fails the run instead of skipping."""

from __future__ import annotations

import shutil
import uuid

import pytest
from sqlalchemy import create_engine, text

from hkops import carriers
from hkops.store import migrate
from hkops.store.engine import Store
from hkops.store.tables import metadata
from postgres import IN_CI, POSTGRES_ADMIN_URL, postgres_reachable as _postgres_reachable

@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """A migrated SQLite file that each test copies."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    store = Store(f"sqlite:///{path}")
    migrate.upgrade(store)
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    store.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_database():
    """A fresh, migrated PostgreSQL database for this test session (dropped at the end)."""
    problem = _postgres_reachable()
    if problem:
        if IN_CI:
            pytest.fail(f"PostgreSQL is not reachable in CI at {POSTGRES_ADMIN_URL}: {problem}")
        pytest.skip(f"PostgreSQL not reachable ({problem}); set HKOPS_TEST_POSTGRES_URL")
    name = f"hkops_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    store = Store(url)
    migrate.upgrade(store)
    store.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path, sqlite_template) -> Store:
    """An empty, migrated database: a fresh SQLite file, or the PostgreSQL test database emptied."""
    if request.param == "sqlite":
        path = tmp_path / "hkops.db"
        shutil.copy(sqlite_template, path)
        store = Store(f"sqlite:///{path}")
    else:
        url = request.getfixturevalue("postgres_database")
        store = Store(url)
        tables = ", ".join(t.name for t in metadata.sorted_tables)
        with store.engine.begin() as conn:
            # The audit trail's triggers refuse TRUNCATE; as superuser, this session skips them.
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield store
    store.dispose()


BEIJING_MOBILE = "1380013"
SHENZHEN_UNICOM = "1860755"
BEIJING_TELECOM = "1891010"


@pytest.fixture
def world(db) -> Store:
    """The three main carriers configured and three blocks (30,000 numbers) added."""
    from hkops.numbers import service

    with db.write() as conn:
        carriers.configure(conn, list(carriers.MAIN_THREE), actor="tester")
    service.add_blocks(db, [BEIJING_MOBILE, SHENZHEN_UNICOM, BEIJING_TELECOM], actor="tester")
    return db
