"""What every CLI command shares: the store, the actor, JSON output, progress bars, and the
one way to read a resident ID (never from the command line)."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
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


#: What a resident ID option says in ``--help``.
ID_HELP = "Resident ID: `-` reads it from standard input; leave it out to be asked (typing hidden)."
ID_FILE_HELP = "Read the resident ID from this file (first line)."
#: At most this many characters are read for one ID from standard input or a file.
ID_MAX_CHARS = 256


def _first_line(text: str, source: str) -> str:
    if len(text) > ID_MAX_CHARS:
        from hkops.errors import InvalidValue

        raise InvalidValue("resident_id", source, f"holds more than {ID_MAX_CHARS} characters; give one ID")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""


def read_resident_id(value: str | None, path: Path | None = None, *, option: str = "--id",
                     required: bool = True) -> str | None:
    """The resident ID an ``--id``/``--id-file`` pair names, never taken from the command line
    (``ps`` and shell history would keep it): ``--id -`` reads standard input, ``--id-file PATH``
    a file, and with neither it is asked for with hidden typing, or read from standard input
    when that is not a terminal (None instead when not ``required``). Any other ``--id`` value
    is refused, shown masked (exit status 2)."""
    from hkops.errors import InvalidValue
    from hkops.ids import mask_id_text

    if value is not None and value.strip() != "-":
        raise InvalidValue("resident_id", mask_id_text(value),
                           f"a resident ID is never taken on the command line (ps and shell history keep it): "
                           f"use `{option} -` and give it on standard input, `{option}-file PATH`, "
                           f"or leave {option} out to be asked for it")
    if value is not None and path is not None:
        raise InvalidValue(f"{option}-file", str(path), f"give either `{option} -` or `{option}-file`, not both")
    if path is None and (value is not None or required and not sys.stdin.isatty()):
        # Piped input needs no prompt (getpass would warn that it cannot hide the typing).
        text = _first_line(sys.stdin.read(ID_MAX_CHARS + 1), "<standard input>")
        source = "standard input"
    elif path is not None:
        try:
            with open(path, encoding="utf-8") as handle:
                text = _first_line(handle.read(ID_MAX_CHARS + 1), str(path))
        except OSError as exc:
            raise InvalidValue(f"{option}-file", str(path), f"cannot be read: {exc.strerror}") from None
        source = str(path)
    elif not required:
        return None
    else:
        text = typer.prompt("Resident ID (居民身份证号)", hide_input=True, err=True).strip()
        source = "the prompt"
    if not text:
        raise InvalidValue("resident_id", "", f"none was given ({source})")
    return text
