"""``hkops check``: the whole-world consistency audit (全量稽核)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from hkops.cli.common import actor, echo, emit_json, store
from hkops.errors import InvalidValue


def check(
    as_json: bool = typer.Option(False, "--json"),
    fix: bool = typer.Option(False, "--fix", help="Repair what can be repaired safely (audited); report the rest."),
    hlr: Optional[str] = typer.Option(None, "--hlr", help="HOST:PORT of the HLR (default $HKOPS_HLR or "
                                                          "127.0.0.1:7500)."),
    registry: Optional[Path] = typer.Option(None, "--registry", help="Compare with this HLR registry folder instead "
                                                                     "of a running HLR (read from a copy)."),
    skip: list[str] = typer.Option([], "--skip", help="Leave out a check (repeatable)."),
):
    """Check that numbers, cards, subscribers, stock, orders, payments, settlement batches, agent
    balances and the HLR agree;
    exit 1 when anything disagrees. Without a reachable HLR or --registry the HLR is
    compared with this database's own registry folder if it exists, else not checked.
    A registry folder is read from a copy: compared, never repaired (repairs need a running HLR)."""
    import tempfile

    from hkops import check as check_module

    db = store()
    if fix:  # before the HLR is looked for, which records where its registry is
        from hkops.security import access

        access.require(actor(), "settings.write", "repair the database (check --fix)", db)
    with tempfile.TemporaryDirectory() as scratch:
        network, where = _hlr(db, hlr, registry, Path(scratch))
        report = check_module.run(db, network=network, hlr=where, fix=fix, actor=actor(), skip=tuple(skip),
                                  hlr_repairs=where is not None and not where.startswith("registry"))
        if network is not None:
            network.close()
    if as_json:
        emit_json({**report.as_dict(), "hlr": where})
    else:
        for v in report.fixed:
            echo(f"repaired    {v.kind:<34} {v.message}")
        for v in report.violations:
            echo(f"{'left alone' if fix else 'violation':<11} {v.kind:<34} {v.message}")
        for name, why in report.not_checked.items():
            echo(f"{name}: {why}")
        summary = f"{len(report.violations)} violation(s)"
        if fix:
            summary = f"{len(report.fixed)} repaired, {len(report.violations)} left alone: not safe to fix"
        echo(f"{summary}; checked {', '.join(report.checked)}" + (f" (HLR: {where})" if where else ""))
    return 0 if report.clean else 1


def _hlr(db, address: str | None, registry: Path | None, scratch: Path):
    """A provisioning client for the HLR to compare with and where it is, or (None, None).

    A registry folder is read from a copy, so a simulator serving it is never disturbed.
    """
    import shutil
    import socket

    from hkops.cli.cards import network
    from hkops.network import InProcessTransport, ProvisioningClient, Simulator
    from hkops.network.client import DEFAULT_ADDRESS
    from hkops.network.registry import folder_for

    if registry is None:
        address = address or os.environ.get("HKOPS_HLR") or DEFAULT_ADDRESS
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise InvalidValue("hlr", address, "must be HOST:PORT, e.g. 127.0.0.1:7500")
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return network(address), f"HLR at {address}"
        except OSError:
            own = folder_for(db)
            if not own.is_dir():
                return None, None
            registry = own
    elif not registry.is_dir():
        raise InvalidValue("registry", str(registry), "is not a folder")
    shutil.copytree(registry, scratch / "registry")
    return ProvisioningClient(InProcessTransport(Simulator(scratch / "registry"))), f"registry {registry}"
