"""``hkops commissions ...``: commission schemes, accrual, the ledger and agent balances (issue 10).

Money in JSON as integer fen. Commands that depend on today take ``--as-of`` (default: today in
Asia/Shanghai) so that a month-end can be run for any date.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Optional

import typer

from hkops.cli.common import actor, echo, emit_json, store
from hkops.money import format_yuan

app = typer.Typer(rich_markup_mode="markdown", help="Commission schemes, accrual, the commission ledger and agent balances.",
                  no_args_is_help=True)

Json = typer.Option(False, "--json", help="Print only JSON.")


def as_of_date(value: Optional[str], field: str = "as-of") -> date:
    """``value`` (YYYY-MM-DD) as a date, today in Asia/Shanghai when not given."""
    from hkops.errors import InvalidValue
    from hkops.timeutil import SHANGHAI, utc_now

    if not value:
        return utc_now().astimezone(SHANGHAI).date()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidValue(field, value, "must be a date YYYY-MM-DD") from None


def now() -> datetime:
    from hkops.timeutil import utc_now

    return utc_now()


@app.command("scheme-add")
def scheme_add(path: Path = typer.Argument(..., help="A scheme file (TOML)."), as_json: bool = Json):
    """Add a scheme version for each plan it names (refused whole on any bad field)."""
    from hkops.commissions import service

    ids = service.add_scheme(store(), path, actor=actor(), now=now())
    if as_json:
        emit_json({"ids": ids})
        return
    echo(f"{len(ids)} scheme version(s) added")


@app.command("schemes")
def schemes(as_json: bool = Json):
    """Scheme versions by plan and date."""
    from hkops.commissions import service

    db = store()
    from hkops.security.access import require

    require(actor(), "settlement.read", "list commission schemes")
    rows = service.list_schemes(db)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        echo(f"{r['plan']:<12} from {r['effective']}  {r['name']}  window {r['window_days']} days, {r['timing']}")


@app.command("accrue")
def accrue(until: Optional[str] = typer.Option(None, "--until", help="Events up to this date (default: --as-of)."),
           as_of: Optional[str] = typer.Option(None, "--as-of", help="Today for this run (YYYY-MM-DD)."),
           usage_dir: Optional[str] = typer.Option(None, "--usage-dir",
                                                   help="Usage store for in-network minimums (default HKOPS_USAGE_STORE, else data/usage)."),
           as_json: bool = Json):
    """Turn the order and card events since the last run, and the month ends passed, into ledger
    entries and clawbacks (incremental; safe to rerun)."""
    from hkops.commissions import service

    day = as_of_date(as_of)
    result = service.accrue(store(), as_of=day, until=as_of_date(until, "until") if until else None,
                            actor=actor(), now=now(), usage_dir=usage_dir)
    if as_json:
        emit_json(result)
        return
    echo(f"{result['accrued']} accrued, {result['clawed_back']} clawed back, {result['eligible']} now eligible, "
         f"{result['held']} held")


@app.command("list")
def list_entries(agent: Optional[str] = typer.Option(None, "--agent"), order: Optional[str] = typer.Option(None, "--order"),
                 state: Optional[str] = typer.Option(None, "--state"), as_json: bool = Json):
    """Ledger entries, oldest first."""
    from hkops.commissions import service

    rows = service.list_entries(store(), agent=agent, order=order, state=state, actor=actor())
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        echo(f"{r['id']:>6}  {r['order_number']}  {r['event']:<11} m{r['month']}  {r['agent']:<8} #{r['position']} "
             f"{r['kind']:<8} {format_yuan(r['amount_fen']):>12}  {r['state']}")


@app.command("balance")
def balance(agent: str = typer.Argument(...), as_json: bool = Json):
    """The agent's balance, frozen and available amounts, and commission not settled yet."""
    from hkops.commissions import service

    result = service.balance(store(), agent, actor=actor())
    if as_json:
        emit_json(result)
        return
    echo(f"{result['agent']}: balance {format_yuan(result['balance_fen'])}, frozen {format_yuan(result['frozen_fen'])}, "
         f"available {format_yuan(result['available_fen'])}")
    for state, fen in sorted(result["pending_fen"].items()):
        echo(f"  {state}: {format_yuan(fen)}")


@app.command("history")
def history(entry: int = typer.Argument(..., help="The ledger entry's id (hkops commissions list)."),
            as_json: bool = Json):
    """A ledger entry's moves from the audit trail: when, who, from which state to which, and why.
    Exits 1 when a batch's lines were changed after one of its moves (its digest no longer matches)."""
    from hkops.commissions import service
    from hkops.timeutil import SHANGHAI

    moves = service.entry_history(store(), entry, actor=actor())
    if as_json:
        emit_json(moves)
    else:
        for m in moves:
            echo(f"{m['at'].astimezone(SHANGHAI):%Y-%m-%d %H:%M}  {m['actor']:<12} {m['from_state'] or '-':>8} -> "
                 f"{m['to_state']:<8}  {m['subject']}: {m['reason']}")
            if m["warning"]:
                echo(f"    {m['warning']}")
    if any(m["tampered"] for m in moves):
        raise typer.Exit(1)
