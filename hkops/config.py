"""Where hkops keeps its data and how it reaches its database."""

from __future__ import annotations

import os
from pathlib import Path

#: The project's data folder: the embedded SQLite demo, grading rules, usage files.
DATA_DIR = Path(os.environ.get("HKOPS_DATA_DIR", Path(__file__).resolve().parent.parent / "data"))

DEFAULT_SQLITE_PATH = DATA_DIR / "hkops.db"


def database_url() -> str:
    """The database to use: ``HKOPS_DATABASE_URL`` or the SQLite file under data/."""
    url = os.environ.get("HKOPS_DATABASE_URL")
    if url:
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return url
    return f"sqlite:///{DEFAULT_SQLITE_PATH}"
