"""``hkops subscribers ...``: real-name registration (实名制) and the resident-ID blacklist.

Resident IDs are shown masked only (``11***************X``); a bad one exits with status 2
naming the field, the masked value and the reason. They are never taken on the command line:
``--id -`` reads standard input, ``--id-file PATH`` a file, and without either hkops asks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hkops.cli.common import ID_FILE_HELP, ID_HELP, actor, echo, emit_json, read_resident_id, store
from hkops.errors import InvalidValue, NotFound

app = typer.Typer(rich_markup_mode="markdown", help="Real-name subscribers (实名制) and the resident-ID blacklist.", no_args_is_help=True)
blacklist_app = typer.Typer(rich_markup_mode="markdown", help="Resident IDs that may not register or take numbers.", no_args_is_help=True)
app.add_typer(blacklist_app, name="blacklist")


def _show(subscriber, as_json: bool, numbers: list[dict] | None = None) -> None:
    if as_json:
        data = subscriber.as_dict()
        if numbers is not None:
            data["numbers"] = numbers
        emit_json(data)
        return
    echo(f"subscriber {subscriber.id}: {subscriber.name}, resident ID {subscriber.id_masked}, "
         f"{subscriber.gender}, born {subscriber.birth_year}, contact {subscriber.contact}")
    for n in numbers or []:
        echo(f"  {n['msisdn']}  {n['carrier']}")


@app.command("add")
def add(
    name: str = typer.Option(..., "--name", help="The person's name as on the ID card."),
    resident_id: Optional[str] = typer.Option(None, "--id", help=ID_HELP),
    id_file: Optional[Path] = typer.Option(None, "--id-file", help=ID_FILE_HELP),
    contact: str = typer.Option(..., "--contact", help="Contact phone number."),
    address: Optional[str] = typer.Option(None, "--address"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Register a person (the same ID again shows the subscriber already registered)."""
    from hkops.subscribers import service

    resident_id = read_resident_id(resident_id, id_file)
    subscriber = service.register(store(), name=name, resident_id=resident_id, contact=contact,
                                  address=address, actor=actor())
    if as_json:
        emit_json({**subscriber.as_dict(), "created": subscriber.created})
        return
    if not subscriber.created:
        echo(f"already registered as subscriber {subscriber.id}")
    _show(subscriber, False)


@app.command("show")
def show(
    resident_id: Optional[str] = typer.Option(None, "--id", help="Resident ID: `-` reads it from standard input."),
    id_file: Optional[Path] = typer.Option(None, "--id-file", help=ID_FILE_HELP),
    subscriber_id: Optional[int] = typer.Option(None, "--subscriber", help="Subscriber id."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Show one subscriber (resident ID masked) and their live numbers."""
    from hkops.subscribers import service

    resident_id = read_resident_id(resident_id, id_file, required=False)
    if (resident_id is None) == (subscriber_id is None):
        raise InvalidValue("show", "", "give exactly one of --id - (or --id-file) or --subscriber")
    db = store()
    found = service.find(db, resident_id=resident_id, subscriber_id=subscriber_id, actor=actor())
    if not found:
        from hkops.ids import mask_resident_id

        what = f"resident ID {mask_resident_id(resident_id)}" if resident_id is not None else f"subscriber {subscriber_id}"
        raise NotFound(f"{what} is not registered")
    _show(found[0], as_json, service.numbers_of(db, found[0].id))


@blacklist_app.command("add")
def blacklist_add(
    reason: str = typer.Option(..., "--reason"),
    resident_id: Optional[str] = typer.Option(None, "--id", help=ID_HELP),
    id_file: Optional[Path] = typer.Option(None, "--id-file", help=ID_FILE_HELP),
):
    """Put a resident ID on the blacklist."""
    from hkops.subscribers import service

    masked = service.blacklist_add(store(), read_resident_id(resident_id, id_file), reason, actor())
    echo(f"resident ID {masked} blacklisted")


@blacklist_app.command("remove")
def blacklist_remove(
    reason: Optional[str] = typer.Option(None, "--reason"),
    resident_id: Optional[str] = typer.Option(None, "--id", help=ID_HELP),
    id_file: Optional[Path] = typer.Option(None, "--id-file", help=ID_FILE_HELP),
):
    """Take a resident ID off the blacklist."""
    from hkops.subscribers import service

    masked = service.blacklist_remove(store(), read_resident_id(resident_id, id_file), actor(), reason=reason)
    echo(f"resident ID {masked} is no longer blacklisted")
