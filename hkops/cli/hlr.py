"""``hkops hlr ...``: the simulated HLR/HSS that hkops provisions over TCP."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hkops.cli.common import echo
from hkops.errors import InvalidValue

app = typer.Typer(rich_markup_mode="markdown", help="The core network's HLR/HSS simulator (MML provisioning over TCP).", no_args_is_help=True)


@app.command()
def serve(
    port: int = typer.Option(7500, "--port", min=0, max=65535),
    host: str = typer.Option("127.0.0.1", "--host"),
    data: Optional[Path] = typer.Option(None, "--data", help="Registry folder (default: the configured "
                                                             "database's own, data/hlr/<id>)."),
    latency_ms: float = typer.Option(0.0, "--latency-ms", help="Delay before each reply."),
    error_rate: float = typer.Option(0.0, "--error-rate", help="Share of commands answered 'system busy' (0-1)."),
    drop_rate: float = typer.Option(0.0, "--drop-rate", help="Share of commands after which the connection drops (0-1)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Makes the injected faults repeatable."),
    no_fsync: bool = typer.Option(False, "--no-fsync", help="Do not fsync the registry journal (faster, less safe)."),
):
    """Run the HLR simulator in this process until Ctrl+C; its registry survives restarts."""
    from hkops.network import serve as serve_hlr

    for name, rate in (("error-rate", error_rate), ("drop-rate", drop_rate)):
        if not 0 <= rate <= 1:
            raise InvalidValue(name, rate, "must be a share from 0 to 1, e.g. 0.2")
    if latency_ms < 0:
        raise InvalidValue("latency-ms", latency_ms, "must not be negative")
    if data is None:
        from hkops.cli.common import store
        from hkops.network.registry import folder_for

        data = folder_for(store())
    serve_hlr(port, data, host=host, latency_ms=latency_ms, error_rate=error_rate,
              drop_rate=drop_rate, seed=seed, fsync=not no_fsync, announce=echo)


@app.command()
def sync(hlr: Optional[str] = typer.Option(None, "--hlr", help="HOST:PORT (default $HKOPS_HLR or 127.0.0.1:7500).")):
    """Send the HLR commands still pending and apply what the HLR confirms."""
    from hkops.cards import service
    from hkops.cli.cards import network
    from hkops.cli.common import store

    from hkops.cli.common import actor
    from hkops.security import access

    db = store()
    access.require(actor(), "hlr.operate", "sync HLR commands", db)
    result = service.sync(db, network(hlr))
    echo(f"{result.sent} sent, {len(result.confirmed)} confirmed, {len(result.failed)} refused, "
         f"{result.pending} still pending")


@app.command()
def pending(as_json: bool = typer.Option(False, "--json")):
    """HLR moves still waiting for a definite answer, and moves the HLR refused (with its reason)."""
    from hkops.cards import service
    from hkops.cli.common import actor, emit_json, store

    rows = service.pending(store(), actor=actor())
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        echo(f"{row['req']:<32} {row['action']:<12} {row['state']:<8} SIM {row['iccid']} number {row['msisdn']} "
             f"attempts {row['attempts']} {row['last_error'] or ''}")
    failed = sum(1 for row in rows if row["state"] == "failed")
    echo(f"{len(rows) - failed} pending, {failed} refused by the HLR"
         + (" (hkops hlr retry ICCID, or hkops hlr abandon ICCID --reason ...)" if failed else ""))


@app.command()
def retry(iccid: str, hlr: Optional[str] = typer.Option(None, "--hlr", help="HOST:PORT (default $HKOPS_HLR or 127.0.0.1:7500)."),
          reason: Optional[str] = typer.Option(None, "--reason", help="Why (kept in the audit trail)."),
          as_json: bool = typer.Option(False, "--json")):
    """Send again the move the HLR refused for this card."""
    from hkops.cards import service
    from hkops.cli.cards import network, report
    from hkops.cli.common import actor, store

    report(service.retry(store(), iccid, actor=actor(), network=network(hlr), reason=reason), as_json)


@app.command()
def abandon(iccid: str, reason: str = typer.Option(..., "--reason", help="Why the refused move is given up."),
            as_json: bool = typer.Option(False, "--json")):
    """Give up the move the HLR refused for this card; the card stays as it is now."""
    from hkops.cards import service
    from hkops.cli.cards import report
    from hkops.cli.common import actor, store

    report(service.abandon(store(), iccid, actor=actor(), reason=reason), as_json)


@app.command()
def reconcile(fix: bool = typer.Option(False, "--fix", help="Make the HLR match inventory; drop stale commands, free stuck cards."),
              hlr: Optional[str] = typer.Option(None, "--hlr", help="HOST:PORT (default $HKOPS_HLR or 127.0.0.1:7500)."),
              as_json: bool = typer.Option(False, "--json")):
    """Compare inventory with the HLR registry (数据稽核) and report, or repair, each difference
    (the HLR's records, and inventory's own pending-move bookkeeping)."""
    from dataclasses import asdict

    from hkops.cards import service
    from hkops.cli.cards import network
    from hkops.cli.common import actor, emit_json, store

    differences = service.reconcile(store(), network(hlr), fix=fix, actor=actor())
    if as_json:
        emit_json({"differences": [asdict(d) for d in differences], "fixed": fix})
        return
    for d in differences:
        echo(f"{d.msisdn}  {d.kind:<18} inventory: {d.inventory:<22} HLR: {d.hlr}")
    echo(f"{len(differences)} difference(s){', repaired' if fix and differences else ''}")
