"""Notebooks are executed by the test suite (nbval, lax mode) against a demo database.

The database is built once, before any notebook's kernel starts, and handed to the
kernels through HKOPS_DATABASE_URL.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def pytest_collection_modifyitems(session, config, items):
    if not any(str(item.fspath).endswith(".ipynb") for item in items):
        return
    if os.environ.get("HKOPS_NOTEBOOK_DATABASE_URL"):
        os.environ["HKOPS_DATABASE_URL"] = os.environ["HKOPS_NOTEBOOK_DATABASE_URL"]
        return
    from hkops import demo
    from hkops.store.engine import Store

    folder = Path(tempfile.mkdtemp(prefix="hkops-notebooks-"))
    url = f"sqlite:///{folder / 'demo.db'}"
    store = Store(url)
    demo.build(store, per_province=1, orders=200)
    store.dispose()
    os.environ["HKOPS_DATABASE_URL"] = url
