"""``hkops agents ...``: The multi-level agent tree (代理)."""

from __future__ import annotations

import typer

app = typer.Typer(help="The multi-level agent tree (代理).", no_args_is_help=True)
