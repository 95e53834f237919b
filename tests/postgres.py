"""Where the PostgreSQL tests run: the server, and whether it answers (shared by conftest.py and
tests that start their own databases; a module of its own, since notebooks/ has a conftest too)."""

from __future__ import annotations

import os

from sqlalchemy import create_engine, text

POSTGRES_ADMIN_URL = os.environ.get("HKOPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def postgres_reachable() -> str | None:
    try:
        engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure to connect means "not reachable"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
