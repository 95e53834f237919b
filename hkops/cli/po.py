"""``hkops po ...``: Purchase orders (采购): create, confirm, receive vendor card files, close, cancel."""

from __future__ import annotations

import typer

app = typer.Typer(help="Purchase orders (采购): create, confirm, receive vendor card files, close, cancel.", no_args_is_help=True)
