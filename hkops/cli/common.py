"""What every CLI command shares: the store, the actor, JSON output, progress bars."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Iterator

import typer

from hkops.audit import default_actor
from hkops.store.engine import Store, get_store
from hkops.timeutil import SHANGHAI, as_utc

_state = {"actor": None}


def set_actor(actor: str | None) -> None:
    _state["actor"] = actor


def actor() -> str:
    """Who is acting: --actor, else HKOPS_ACTOR, else the OS user."""
    return _state["actor"] or default_actor()


def store() -> Store:
    """The configured database, migrated to the newest schema."""
    from hkops.store import migrate

    db = get_store()
    migrate.upgrade(db)
    return db


def _default(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return as_utc(value).astimezone(SHANGHAI).isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def emit_json(data) -> None:
    """Write ``data`` as the only thing on stdout (times in Asia/Shanghai, with their offset)."""
    json.dump(data, sys.stdout, ensure_ascii=False, indent=2, default=_default)
    sys.stdout.write("\n")


@contextmanager
def progress(total: int | None, unit: str, desc: str) -> Iterator["tqdm"]:
    """A progress bar on stderr when it is a terminal (stdout stays clean for --json)."""
    from tqdm import tqdm

    with tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, unit_scale=True, mininterval=0.3, disable=None) as bar:
        yield bar


def echo(text: str) -> None:
    typer.echo(text)
