"""``hkops withdrawals ...``: agents' withdrawals: requested (frozen) -> approved -> paid | rejected."""

from __future__ import annotations

from typing import Optional

import typer

from hkops.cli.commissions import as_of_date, now
from hkops.cli.common import actor, echo, emit_json, store
from hkops.money import format_yuan

app = typer.Typer(rich_markup_mode="markdown", help="Withdrawals from agents' balances.", no_args_is_help=True)

Json = typer.Option(False, "--json", help="Print only JSON.")


def _show(w: dict, as_json: bool) -> None:
    if as_json:
        emit_json(w)
        return
    echo(f"withdrawal {w['id']}  {w['agent']}  {format_yuan(w['amount_fen'])} (fee {format_yuan(w['fee_fen'])}, "
         f"tax {format_yuan(w['tax_fen'])})  {w['state']}")


@app.command("request")
def request(agent: str = typer.Argument(...), amount: str = typer.Option(..., "--amount", help="Yuan, e.g. 80.00."),
            as_of: Optional[str] = typer.Option(None, "--as-of"), as_json: bool = Json):
    """Freeze an amount of the agent's available balance."""
    from hkops.commissions import service

    _show(service.request_withdrawal(store(), agent, amount, as_of=as_of_date(as_of), actor=actor(), now=now()),
          as_json)


@app.command("list")
def list_(agent: Optional[str] = typer.Option(None, "--agent"), state: Optional[str] = typer.Option(None, "--state"),
          as_json: bool = Json):
    """Withdrawals, oldest first."""
    from hkops.commissions import service
    from hkops.security.access import require

    db = store()
    require(actor(), "settlement.read", "list withdrawals")
    rows = service.list_withdrawals(db, agent=agent, state=state)
    if as_json:
        emit_json(rows)
        return
    for w in rows:
        _show(w, False)


@app.command("approve")
def approve(withdrawal: int = typer.Argument(...), as_json: bool = Json):
    """Approve a requested withdrawal."""
    from hkops.commissions import service

    _show(service.move_withdrawal(store(), withdrawal, "approve", actor=actor(), now=now()), as_json)


@app.command("pay")
def pay(withdrawal: int = typer.Argument(...), reference: Optional[str] = typer.Option(None, "--reference"),
        as_json: bool = Json):
    """Pay an approved withdrawal: the amount leaves the balance (fee and tax withheld)."""
    from hkops.commissions import service

    _show(service.move_withdrawal(store(), withdrawal, "pay", actor=actor(), now=now(), reference=reference), as_json)


@app.command("reject")
def reject(withdrawal: int = typer.Argument(...), reason: str = typer.Option(..., "--reason"), as_json: bool = Json):
    """Reject a withdrawal not yet paid: the frozen amount is released."""
    from hkops.commissions import service

    _show(service.move_withdrawal(store(), withdrawal, "reject", actor=actor(), now=now(), reason=reason), as_json)
