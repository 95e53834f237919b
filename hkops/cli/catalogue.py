"""``hkops catalogue ...``: The catalogue: SIM products, plans (套餐) and prices per agent level."""

from __future__ import annotations

import typer

app = typer.Typer(help="The catalogue: SIM products, plans (套餐) and prices per agent level.", no_args_is_help=True)
