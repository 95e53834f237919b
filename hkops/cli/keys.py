"""``hkops keys ...``: the keys that encrypt secrets at rest, and their rotation.

Rotation without downtime: ``keys new`` (new writes use the new key once processes
restart; old keys still decrypt), ``keys rotate`` (re-encrypts stored values in short
batches while reads go on), ``keys retire OLD_ID`` (refused while any value still uses it).
"""

from __future__ import annotations

import typer

from hkops.cli.common import echo, emit_json, progress, store

app = typer.Typer(rich_markup_mode="markdown", help="Encryption keys for secrets at rest (Ki, OPc, PIN/PUK/ADM, resident IDs).", no_args_is_help=True)


def sealed_columns() -> list:
    """Every encrypted column hkops keeps, for rotation and status."""
    from importlib import import_module

    columns = []
    for module in ("hkops.cards.tables", "hkops.subscribers.tables", "hkops.orders.tables"):
        try:
            columns += import_module(module).SEALED_COLUMNS
        except ModuleNotFoundError:
            continue
    return columns


@app.command()
def status(as_json: bool = typer.Option(False, "--json")):
    """How many stored values each key encrypts; the active key comes first."""
    from hkops.security.crypto import count_by_key, load_keyring

    keyring = load_keyring()
    counts = count_by_key(store(), sealed_columns(), keyring)
    if as_json:
        emit_json({"active": keyring.active_id, "values_by_key": counts})
        return
    for key_id, count in counts.items():
        echo(f"{key_id:<14} {'active ' if key_id == keyring.active_id else '       '} {count} value(s)")


@app.command()
def new():
    """Add a new active key to the key file (old keys stay, for reading)."""
    from hkops.security.crypto import new_key

    _require_keys_admin("add a new key")
    echo(f"new active key {new_key()}; restart running processes, then run `hkops keys rotate`")


@app.command()
def rotate():
    """Re-encrypt every stored secret with the active key, in short batches."""
    from hkops.security.crypto import rotate as rotate_values

    _require_keys_admin("re-encrypt the stored secrets")
    with progress(None, "values", "re-encrypting") as bar:
        changed = rotate_values(store(), sealed_columns(), progress=bar.update)
    echo(f"{changed} value(s) re-encrypted with the active key")


@app.command()
def retire(key_id: str):
    """Drop an old key; refused while any stored value still uses it."""
    from hkops.security.crypto import retire_key

    _require_keys_admin(f"retire key {key_id}")
    retire_key(key_id, db=store(), columns=sealed_columns())
    echo(f"key {key_id} retired")


def _require_keys_admin(what: str) -> None:
    from hkops.cli.common import actor
    from hkops.security import access

    db = store()  # migrated and logged in first: actor() needs the users table
    access.require(actor(), "keys.admin", what, db)
