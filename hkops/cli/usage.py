"""``hkops usage ...``: usage and top-up records the network produces, and their statistics."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Optional

import typer

from hkops.cli.common import echo, emit_json, progress
from hkops.errors import InvalidValue

app = typer.Typer(help="Usage records (话单) and top-ups: generate them, read their statistics.", no_args_is_help=True)

Out = typer.Option(None, "--out", help="The Parquet store (default data/usage).")


def _day(value: str | None, field: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidValue(field, value, "must be a date such as 2026-11-01") from None


@app.command()
def generate(
    days: int = typer.Option(..., "--days", min=1, max=366, help="How many days of records."),
    seed: int = typer.Option(7, "--seed"),
    start: Optional[str] = typer.Option(None, "--start", help="First day (default: DAYS days before today)."),
    cards: int = typer.Option(10_000, "--cards", min=1, max=10_000_000,
                              help="How many synthetic cards, when the inventory has no activated card."),
    synthetic: bool = typer.Option(False, "--synthetic", help="Use synthetic cards even if the inventory has some."),
    out: Optional[Path] = Out,
    as_json: bool = typer.Option(False, "--json"),
):
    """Generate voice, SMS and data records and top-ups, partitioned by day as Parquet."""
    from datetime import timedelta

    from hkops.cards.service import network_cards
    from hkops.cli.common import store
    from hkops.network.usage import DEFAULT_OUT_DIR, generate_usage, synthetic_cards
    from hkops.timeutil import SHANGHAI, utc_now

    from hkops.cli.common import actor
    from hkops.security import access

    db = store()  # migrated and logged in first: actor() needs the users table
    access.require(actor(), "usage.write", "generate usage records", db)
    first = _day(start, "start") or (utc_now().astimezone(SHANGHAI).date() - timedelta(days=days))
    population = None if synthetic else network_cards(store())
    if population is None or population.empty:
        population = synthetic_cards(cards, seed=seed)
        source = f"{cards:,} synthetic cards"
    else:
        source = f"{len(population):,} cards of the inventory"
    with progress(days, "days", "generating") as bar:
        summary = generate_usage(population, start=first, days=days, seed=seed,
                                 out_dir=out or DEFAULT_OUT_DIR, progress=lambda done, total: bar.update(1))
    if as_json:
        emit_json(summary.to_dict())
    else:
        echo(f"{summary.records:,} records ({summary.refused:,} refused) and {summary.topups:,} top-ups "
             f"for {days} day(s) from {first}, {source}, in {summary.out_dir} ({summary.records_per_s:,.0f} records/s)")


@app.command()
def stats(
    day: Optional[str] = typer.Option(None, "--day", help="The day to report (default: the latest)."),
    out: Optional[Path] = Out,
    as_json: bool = typer.Option(False, "--json"),
):
    """The daily statistics report over the Parquet store (DuckDB); needs ``analytics.read``
    (usage covers every card, so agent users, who see only their own subtree, are refused)."""
    from hkops.analytics import usage_stats
    from hkops.cli.common import actor, store
    from hkops.network.usage import DEFAULT_OUT_DIR
    from hkops.security import access

    db = store()  # migrated and logged in first: actor() needs the users table
    access.require(actor(), "analytics.read", "read the usage statistics of every card", db)

    report = usage_stats.report(out or DEFAULT_OUT_DIR, _day(day, "day"))
    emit_json(report) if as_json else echo(usage_stats.format_report(report))
