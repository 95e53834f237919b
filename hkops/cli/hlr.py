"""``hkops hlr ...``: the simulated HLR/HSS that hkops provisions over TCP."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hkops.cli.common import echo
from hkops.errors import InvalidValue

app = typer.Typer(help="The core network's HLR/HSS simulator (MML provisioning over TCP).", no_args_is_help=True)


@app.command()
def serve(
    port: int = typer.Option(7500, "--port", min=0, max=65535),
    host: str = typer.Option("127.0.0.1", "--host"),
    data: Optional[Path] = typer.Option(None, "--data", help="Registry folder (default data/hlr)."),
    latency_ms: float = typer.Option(0.0, "--latency-ms", help="Delay before each reply."),
    error_rate: float = typer.Option(0.0, "--error-rate", help="Share of commands answered 'system busy' (0-1)."),
    drop_rate: float = typer.Option(0.0, "--drop-rate", help="Share of commands after which the connection drops (0-1)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Makes the injected faults repeatable."),
    no_fsync: bool = typer.Option(False, "--no-fsync", help="Do not fsync the registry journal (faster, less safe)."),
):
    """Run the HLR simulator in this process until Ctrl+C; its registry survives restarts."""
    from hkops.config import DATA_DIR
    from hkops.network import serve as serve_hlr

    for name, rate in (("error-rate", error_rate), ("drop-rate", drop_rate)):
        if not 0 <= rate <= 1:
            raise InvalidValue(name, rate, "must be a share from 0 to 1, e.g. 0.2")
    if latency_ms < 0:
        raise InvalidValue("latency-ms", latency_ms, "must not be negative")
    serve_hlr(port, data or DATA_DIR / "hlr", host=host, latency_ms=latency_ms, error_rate=error_rate,
              drop_rate=drop_rate, seed=seed, fsync=not no_fsync, announce=echo)
