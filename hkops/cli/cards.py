"""``hkops cards ...``: the SIM card lifecycle, kept in step with the HLR."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

from hkops.cli.common import ID_FILE_HELP, ID_HELP, actor, echo, emit_json, read_resident_id, store

app = typer.Typer(rich_markup_mode="markdown", help="SIM card lifecycle: pair, activate, suspend/resume, loss, replace, terminate.",
                  no_args_is_help=True)

Reason = typer.Option(None, "--reason", help="Why (kept in the audit trail).")
Hlr = typer.Option(None, "--hlr", help="The HLR's HOST:PORT (default $HKOPS_HLR or 127.0.0.1:7500).")


def network(address: str | None):
    """A provisioning client for the HLR at ``address``; short retries so the CLI answers fast."""
    from hkops.network import connect

    return connect(address, connect_timeout=2, timeout=3, retries=2, backoff=0.2)


def report(card, as_json: bool) -> None:
    if as_json:
        emit_json(asdict(card))
        return
    pending = f", waiting for the HLR to confirm '{card.pending_action}'" if card.pending_action else ""
    if card.network_sync == "failed":
        pending = ", the HLR refused its last move (see hkops hlr pending; retry or abandon it)"
    echo(f"SIM {card.iccid}: {card.state}{pending} (number {card.msisdn or '-'}, HLR {card.network_sync})")


@app.command()
def pair(iccid: str, msisdn: str, subscriber: int = typer.Option(..., "--subscriber", help="Subscriber id."),
         reason: Optional[str] = Reason, as_json: bool = typer.Option(False, "--json")):
    """Bind a SIM in stock to a number and a registered subscriber."""
    from hkops.cards import service

    report(service.pair(store(), iccid, msisdn, subscriber, actor=actor(), reason=reason), as_json)


def _move(name: str, help_text: str):
    def command(iccid: str, hlr: Optional[str] = Hlr, reason: Optional[str] = Reason,
                as_json: bool = typer.Option(False, "--json")):
        from hkops.cards import service

        report(getattr(service, name)(store(), iccid, actor=actor(), network=network(hlr), reason=reason), as_json)

    command.__doc__ = help_text
    app.command(name.replace("_", "-"))(command)


_move("activate", "Provision the subscriber in the HLR; active once the HLR confirms.")
_move("resume", "Resume service after a suspension.")
_move("report_loss", "Loss report: the card is lost at once and the HLR bars its services.")
_move("lift_loss", "Lift a loss report.")
_move("terminate", "End the card; its number goes into quarantine.")


@app.command()
def suspend(iccid: str, why: str = typer.Option(..., "--why", help="arrears, customer_request or fraud."),
            hlr: Optional[str] = Hlr, reason: Optional[str] = Reason, as_json: bool = typer.Option(False, "--json")):
    """Suspend service."""
    from hkops.cards import service

    report(service.suspend(store(), iccid, why, actor=actor(), network=network(hlr), reason=reason), as_json)


@app.command()
def replace(old: str, new: str, resident_id: Optional[str] = typer.Option(None, "--id", help=ID_HELP),
            id_file: Optional[Path] = typer.Option(None, "--id-file", help=ID_FILE_HELP),
            hlr: Optional[str] = Hlr, reason: Optional[str] = Reason, as_json: bool = typer.Option(False, "--json")):
    """Replace a card (new SIM, same number); the old card can never come back."""
    from hkops.cards import service

    resident_id = read_resident_id(resident_id, id_file)
    report(service.replace(store(), old, new, resident_id, actor=actor(), network=network(hlr), reason=reason),
           as_json)


@app.command()
def show(value: str = typer.Argument(..., help="MSISDN or ICCID."), hlr: Optional[str] = Hlr,
         as_json: bool = typer.Option(False, "--json")):
    """A card: state, subscriber (masked), number, HLR record and full history."""
    from hkops import audit
    from hkops.cards import service
    from hkops.network import ProvisioningError
    from hkops.subscribers import service as subscribers
    from hkops.timeutil import local

    db = store()
    card = service.get_card(db, value, actor=actor())
    person = subscribers.get(db, card.subscriber_id) if card.subscriber_id else None
    try:
        record = network(hlr).get(card.msisdn) if card.msisdn else None
        hlr_view = asdict(record) if record else "absent"
    except ProvisioningError as exc:
        hlr_view = f"unreachable ({exc})"
    with db.read() as conn:
        history = audit.query(conn, subject=card.iccid, limit=1000)
        if card.msisdn:
            history += audit.query(conn, subject=card.msisdn, limit=1000)
    history.sort(key=lambda r: r["id"])
    data = {"card": asdict(card), "subscriber": {"id": person.id, "id_masked": person.id_masked} if person else None,
            "hlr": hlr_view, "history": history}
    if as_json:
        emit_json(data)
        return
    report(card, False)
    if person:
        echo(f"subscriber {person.id}: {person.id_masked}")
    echo(f"HLR: {hlr_view}")
    for item in history:
        echo(f"  {local(item['at'])}  {item['actor']:<10} {item['subject']:<20} {item['action']:<18} "
             f"{item['from_state'] or '-'} -> {item['to_state'] or '-'}  {item['reason'] or ''}")
