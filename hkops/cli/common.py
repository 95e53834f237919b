"""What every CLI command shares: the store, the actor, JSON output, progress bars, and the
one way to read a resident ID (never from the command line)."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import typer

from hkops.audit import default_actor
from hkops.errors import HkopsError
from hkops.store.engine import Store, get_store
from hkops.timeutil import SHANGHAI, as_utc

_state: dict = {"actor": None, "url": None}


class NotLoggedIn(HkopsError):
    """The database has users and this command came without a valid login or API token."""


def reset_actor() -> None:
    """Forget who acts (each command invocation finds out afresh)."""
    _state.update(actor=None, url=None)


def actor() -> str:
    """Who is acting: the user of ``HKOPS_TOKEN``, else of the session ``hkops login`` saved.

    While the database has no user at all (a fresh installation) the CLI is the local installer,
    a trusted plain ``str`` (``HKOPS_ACTOR`` or the OS user, a label only); once any user
    exists, a command without a valid token or session stops with exit status 2.
    """
    # Not store(): commands call actor() inside their write transaction, where migrating again
    # (or a first look-up that writes last_seen) would wait for that very transaction.
    return _who(get_store())


def store(*, login: bool = True) -> Store:
    """The configured database, migrated to the newest schema; with ``login``, also finds out
    who acts (see :func:`actor`) and refuses to go on without a valid login."""
    from hkops.store import migrate

    db = get_store()
    migrate.upgrade(db)
    if login:
        _who(db)
    return db


def _who(db: Store) -> str:
    if _state["actor"] is not None and _state["url"] == db.url:
        return _state["actor"]
    from hkops.security import users

    if not users.any_user(db):
        who: str = default_actor()
    else:
        token = os.environ.get("HKOPS_TOKEN") or saved_session(db)
        if not token:
            raise NotLoggedIn("this database has users: run hkops login or set HKOPS_TOKEN")
        try:
            who = users.principal_for_token(db, token)
        except users.TokenRefused as exc:
            source = "HKOPS_TOKEN" if os.environ.get("HKOPS_TOKEN") else f"the session in {session_file()}"
            raise NotLoggedIn(f"{exc} ({source}); run hkops login or set HKOPS_TOKEN") from None
    _state.update(actor=who, url=db.url)
    return who


# ------------------------------------------------------------------ the saved login session


def session_file() -> Path:
    """Where ``hkops login`` keeps session tokens: ``HKOPS_SESSION_FILE``, else
    ``session.json`` in the user's config folder (owner-only, 0600)."""
    configured = os.environ.get("HKOPS_SESSION_FILE")
    if configured:
        return Path(configured)
    from platformdirs import user_config_dir

    return Path(user_config_dir("hkops")) / "session.json"


def _database_key(db: Store) -> str:
    return db.engine.url.render_as_string(hide_password=True)


def _read_sessions() -> dict:
    path = session_file()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {}
    if mode & 0o077:
        raise NotLoggedIn(f"session file {path} can be read by others (mode {mode & 0o777:o}); "
                          "delete it and run hkops login again")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_sessions(data: dict) -> None:
    path = session_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2)


def saved_session(db: Store) -> str | None:
    """The session token ``hkops login`` saved for this database (None if none)."""
    entry = _read_sessions().get(_database_key(db))
    if not isinstance(entry, dict) or not entry.get("token"):
        return None
    return entry["token"]


def save_session(db: Store, user: str, token: str, expires_at: datetime) -> Path:
    """Keep ``token`` for this database in the owner-only session file; returns its path."""
    data = _read_sessions()
    data[_database_key(db)] = {"user": user, "token": token, "expires_at": as_utc(expires_at).isoformat()}
    _write_sessions(data)
    return session_file()


def forget_session(db: Store) -> str | None:
    """Remove this database's session from the session file; returns its token, if there was one."""
    data = _read_sessions()
    entry = data.pop(_database_key(db), None)
    if entry is not None:
        _write_sessions(data)
    return entry.get("token") if isinstance(entry, dict) else None


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


def echo(text: str, err: bool = False) -> None:
    typer.echo(text, err=err)


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
