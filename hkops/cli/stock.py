"""``hkops stock ...``: Serial stock: receive, transfer, return, on-hand, counts, scrap, low-stock alerts."""

from __future__ import annotations

import typer

app = typer.Typer(help="Serial stock: receive, transfer, return, on-hand, counts, scrap, low-stock alerts.", no_args_is_help=True)
