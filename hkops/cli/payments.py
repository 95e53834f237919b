"""``hkops payments ...``: The payment ledger: collections, refunds, reconciliation against orders.

Money is shown in yuan (元); the ledger keeps integer fen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hkops.cli.common import actor, echo, emit_json, store
from hkops.money import fen_to_yuan, format_yuan
from hkops.timeutil import local

app = typer.Typer(rich_markup_mode="markdown", help="The payment ledger: collections, refunds, reconciliation against orders.", no_args_is_help=True)

Json = typer.Option(False, "--json", help="Print only JSON.")


@app.command("import")
def import_file(path: Path = typer.Argument(..., help="CSV: order, amount (yuan), method, reference, time."),
                as_json: bool = Json):
    """Import a payment statement: every line or none (bad lines listed with their numbers)."""
    from hkops.payments import service

    imported = service.import_payments(store(), path, actor=actor())
    new = [p for p in imported if p.created]
    if as_json:
        emit_json({"imported": len(new), "already_recorded": len(imported) - len(new),
                   "amount_fen": sum(p.amount_fen for p in new)})
        return
    echo(f"{len(new)} payment(s) imported ({format_yuan(sum(p.amount_fen for p in new))}), "
         f"{len(imported) - len(new)} already recorded")


@app.command("list")
def list_payments(order: Optional[str] = typer.Option(None, "--order", help="Only this order's payments."),
                  limit: int = typer.Option(1000, "--limit", min=1, max=100_000), as_json: bool = Json):
    """Ledger rows, newest first."""
    from hkops.payments import service

    rows = service.list_payments(store(), order=order, limit=limit, actor=actor())
    if as_json:
        emit_json([{**p.as_dict(), "amount": str(fen_to_yuan(p.amount_fen))} for p in rows])
        return
    for p in rows:
        sign = "-" if p.kind == "refund" else " "
        echo(f"{local(p.at)}  {p.order}  {p.kind:<10} {sign}{format_yuan(p.amount_fen):>12}  {p.method:<8} "
             f"{p.reference}")


@app.command()
def reconcile(as_json: bool = Json):
    """Orders whose payments disagree with what they should have netted: unpaid, underpaid, overpaid."""
    from hkops.payments import service

    result = service.reconcile(store(), actor=actor())
    if as_json:
        emit_json(result.as_dict())
        return
    for name, items in (("unpaid", result.unpaid), ("underpaid", result.underpaid), ("overpaid", result.overpaid)):
        echo(f"{name}: {len(items)}")
        for item in items:
            echo(f"  {item['order']}  {item['state']:<11} total {format_yuan(item['total_fen'])}, "
                 f"netted {format_yuan(item['net_fen'])} ({'+' if item['difference_fen'] > 0 else ''}"
                 f"{fen_to_yuan(item['difference_fen'])})")
