"""``hkops orders ...``: Sales orders: create, pay, ship, deliver, activate, cancel, return, show."""

from __future__ import annotations

import typer

app = typer.Typer(help="Sales orders: create, pay, ship, deliver, activate, cancel, return, show.", no_args_is_help=True)
