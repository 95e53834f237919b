"""Where hkops keeps its data and how it reaches its database.

The data folder (:data:`DATA_DIR`) holds the embedded SQLite database, the HLR simulator's
registry, usage files, the secret key file and, optionally, the operator's own grading rules:

- ``HKOPS_DATA_DIR`` when set;
- else, running from a source checkout, the checkout's ``data/`` folder;
- else (an installed package) the user data folder of the platform
  (``platformdirs.user_data_dir("hkops")``, e.g. ``~/.local/share/hkops`` on Linux),
  never a folder inside the installed package.

Files hkops ships (the consoles' notebooks, the default grading rules) are read from the
checkout's ``notebooks/`` and ``data/`` folders, or from the copies a wheel carries in
``hkops/_shipped/`` (see setup.py).
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
#: The source checkout hkops runs from (editable install or PYTHONPATH), None when installed.
CHECKOUT = _PACKAGE.parent if (_PACKAGE.parent / "pyproject.toml").is_file() else None
#: Where a wheel carries the files of the checkout's notebooks/ and data/ folders it needs.
SHIPPED_DIR = _PACKAGE / "_shipped"


def _default_data_dir() -> Path:
    if CHECKOUT is not None:
        return CHECKOUT / "data"
    from platformdirs import user_data_dir

    return Path(user_data_dir("hkops", appauthor=False))


#: The data folder: the embedded SQLite database, HLR registry, usage files, key file.
DATA_DIR = Path(os.environ.get("HKOPS_DATA_DIR") or _default_data_dir())

DEFAULT_SQLITE_PATH = DATA_DIR / "hkops.db"


def shipped_path(checkout_path: str) -> Path:
    """A file or folder hkops ships, named by its place in the checkout (``notebooks/consoles``,
    ``data/grading_rules.toml``): the checkout's own, else the installed package's copy."""
    if CHECKOUT is not None:
        return CHECKOUT / checkout_path
    return SHIPPED_DIR / checkout_path


def database_url() -> str:
    """The database to use: ``HKOPS_DATABASE_URL`` or the SQLite file in the data folder."""
    url = os.environ.get("HKOPS_DATABASE_URL")
    if url:
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return url
    return f"sqlite:///{DEFAULT_SQLITE_PATH}"
