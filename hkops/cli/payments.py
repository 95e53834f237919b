"""``hkops payments ...``: The payment ledger: collections, refunds, reconciliation against orders."""

from __future__ import annotations

import typer

app = typer.Typer(help="The payment ledger: collections, refunds, reconciliation against orders.", no_args_is_help=True)
