"""``hkops sims ...``: SIM cards received from vendors."""

from __future__ import annotations

from dataclasses import asdict
from typing import Optional

import typer

from hkops.cli.common import actor, echo, emit_json, progress, store

app = typer.Typer(rich_markup_mode="markdown", help="SIM cards: vendor batches (and, to come, the card lifecycle).", no_args_is_help=True)


@app.command("import")
def import_file(
    file: str = typer.Argument(..., help="Vendor card-data file: pySim-style CSV or an operator .out file."),
    carrier: str = typer.Option(..., "--carrier", help="The batch's carrier; every IMSI must be its."),
    batch: Optional[str] = typer.Option(None, "--batch", help="Batch name (default: the file name)."),
    vendor: Optional[str] = typer.Option(None, "--vendor"),
    location: Optional[str] = typer.Option(None, "--location", help="Where the cards are stocked."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Receive a batch: every card validated, secrets encrypted; a file with a bad line imports nothing."""
    from hkops.cards.batches import import_sim_file

    with progress(None, "cards", "importing") as bar:
        summary = import_sim_file(store(), file, carrier=carrier, actor=actor(), batch_name=batch, vendor=vendor,
                                  location=location, progress=bar.update)
    if as_json:
        emit_json(asdict(summary))
    else:
        echo(f"batch {summary.name}: {summary.quantity} {summary.carrier} cards in stock, "
             f"ICCID {summary.first_iccid} … {summary.last_iccid}")
