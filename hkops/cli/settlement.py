"""``hkops settlement ...``: settlement batches per agent and period: draft -> confirmed -> approved -> paid."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hkops.cli.commissions import as_of_date, now
from hkops.cli.common import actor, echo, emit_json, store
from hkops.money import format_yuan

app = typer.Typer(rich_markup_mode="markdown", help="Settlement batches per agent and period.", no_args_is_help=True)

Json = typer.Option(False, "--json", help="Print only JSON.")


def _show(batch: dict, as_json: bool) -> None:
    if as_json:
        emit_json(batch)
        return
    echo(f"batch {batch['id']}  {batch['agent']}  {batch['period']}  {batch['state']}  "
         f"total {format_yuan(batch['total_fen'])}  {len(batch['lines'])} line(s)")
    for line in batch["lines"]:
        echo(f"  {line['order_number']}  {line['event']:<11} m{line['month']}  #{line['position']} "
             f"{line['kind']:<8} {format_yuan(line['amount_fen']):>12}")


@app.command("create")
def create(period: str = typer.Option(..., "--period", help="YYYY-MM, a month that has ended."),
           agent: Optional[str] = typer.Option(None, "--agent"), as_of: Optional[str] = typer.Option(None, "--as-of"),
           as_json: bool = Json):
    """Gather eligible entries and reversals into a draft batch per agent."""
    from hkops.commissions import service

    ids = service.create_batches(store(), period, as_of=as_of_date(as_of), agent=agent, actor=actor(), now=now())
    if as_json:
        emit_json({"batches": ids})
        return
    echo(f"{len(ids)} batch(es) created: {', '.join(map(str, ids))}")


@app.command("show")
def show(batch: int = typer.Argument(...), as_json: bool = Json):
    """A batch with its lines."""
    from hkops.commissions import service
    from hkops.security.access import require

    db = store()
    require(actor(), "settlement.read", f"show settlement batch {batch}")
    _show(service.show_batch(db, batch, actor=actor()), as_json)


def _move(action: str):
    def command(batch: int = typer.Argument(...), as_json: bool = Json):
        from hkops.commissions import service

        _show(service.move_batch(store(), batch, action, actor=actor(), now=now()), as_json)
    command.__doc__ = f"{action.capitalize()} a batch."
    return command


app.command("confirm")(_move("confirm"))
app.command("approve")(_move("approve"))


@app.command("pay")
def pay(batch: int = typer.Argument(...), reference: str = typer.Option(..., "--reference"), as_json: bool = Json):
    """Pay an approved batch: its total goes to the agent's balance."""
    from hkops.commissions import service

    _show(service.move_batch(store(), batch, "pay", actor=actor(), now=now(), reference=reference), as_json)


@app.command("export")
def export(batch: int = typer.Argument(...),
           path: Path = typer.Option(..., "--out", help="File to write: .xlsx (Excel) or .csv.")):
    """The batch's statement as Excel (.xlsx) or CSV (.csv), chosen by the file's suffix: one line per
    entry, traceable to its order and event (entry, order, event, month, position, kind, time,
    scheme version), the amount in integer fen and in yuan, then a total line."""
    from hkops.commissions import service

    lines = service.export_batch(store(), batch, path, actor=actor())
    echo(f"{lines} line(s) written to {path}")
