"""``hkops usage ...``: usage and top-up records the network produces, and their statistics."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Optional

import typer

from hkops.cli.common import echo, emit_json, progress
from hkops.errors import InvalidValue

app = typer.Typer(rich_markup_mode="markdown", help="Usage records (话单) and top-ups: generate them, read their statistics.", no_args_is_help=True)

Out = typer.Option(None, "--out", help="The Parquet store (default HKOPS_USAGE_STORE, else data/usage).")


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

    from hkops.analytics.engine import store_location
    from hkops.cli.common import store
    from hkops.network.usage import generate_usage, inventory_cards, synthetic_cards
    from hkops.timeutil import SHANGHAI, utc_now

    from hkops.cli.common import actor
    from hkops.security import access

    db = store()  # migrated and logged in first: actor() needs the users table
    access.require(actor(), "usage.write", "generate usage records", db)
    first = _day(start, "start") or (utc_now().astimezone(SHANGHAI).date() - timedelta(days=days))
    population = None if synthetic else inventory_cards(db)
    if population is None or population.empty:
        population = synthetic_cards(cards, seed=seed)
        source = f"{cards:,} synthetic cards"
    else:
        source = f"{len(population):,} cards of the inventory"
    with progress(days, "days", "generating") as bar:
        summary = generate_usage(population, start=first, days=days, seed=seed,
                                 out_dir=store_location(out), progress=lambda done, total: bar.update(1))
    if as_json:
        emit_json(summary.to_dict())
    else:
        echo(f"{summary.records:,} records ({summary.refused:,} refused) and {summary.topups:,} top-ups "
             f"for {days} day(s) from {first}, {source}, in {summary.out_dir} ({summary.records_per_s:,.0f} records/s)")


def _plans(db):
    """The catalogue's plans, or None when it has none (charges are then not rated)."""
    from hkops.catalogue.service import all_plans

    return all_plans(db) or None


def _reader():
    """The store, after checking that the user may read every card's usage (``analytics.read``;
    agent users, who see only their own subtree, are refused)."""
    from hkops.cli.common import actor, store
    from hkops.security import access

    db = store()  # migrated and logged in first: actor() needs the users table
    access.require_whole(actor(), "analytics.read", "read the usage statistics of every card", db)
    return db


@app.command()
def stats(
    day: Optional[str] = typer.Option(None, "--day", help="The day to report (default: the latest)."),
    by: Optional[str] = typer.Option(None, "--by", help="Group instead by these, comma-separated: service, type, "
                                     "hour, day, week, month, region, area, plan, channel, agent, msisdn, rat."),
    start: Optional[str] = typer.Option(None, "--start", help="With --by: first local day."),
    end: Optional[str] = typer.Option(None, "--end", help="With --by: last local day."),
    region: Optional[str] = typer.Option(None, "--region", help="With --by: only this province (广东省)."),
    plan: Optional[str] = typer.Option(None, "--plan", help="With --by: only cards of this plan."),
    agent: Optional[str] = typer.Option(None, "--agent", help="With --by: only cards this agent sold."),
    channel: Optional[str] = typer.Option(None, "--channel", help="With --by: only cards of this channel."),
    out: Optional[Path] = Out,
    as_json: bool = typer.Option(False, "--json"),
):
    """The daily statistics report over the Parquet store, or usage grouped ``--by`` dimensions
    with filters; needs ``analytics.read``."""
    from hkops.analytics import usage_stats
    from hkops.analytics.engine import store_location

    db = _reader()
    store_dir = store_location(out)
    if by is None:
        report = usage_stats.report(store_dir, _day(day, "day"), plans=_plans(db))
        emit_json(report) if as_json else echo(usage_stats.format_report(report))
        return
    keys = [k.strip() for k in by.split(",") if k.strip()]
    frame = usage_stats.statistics(store_dir, by=keys, plans=_plans(db), start=_day(start, "start"),
                                   end=_day(end, "end"), region=region, plan=plan, agent=agent, channel=channel)
    frame = usage_stats.for_people(frame)
    if as_json:
        emit_json(json.loads(frame.to_json(orient="records", force_ascii=False, default_handler=str)))
    else:
        echo(frame.to_string(index=False))


@app.command()
def report(
    period: str = typer.Option(..., "--period", help="day, week (ISO, Monday to Sunday) or month."),
    on: str = typer.Option(..., "--date", help="A day of the period, such as 2026-11-01."),
    to: Path = typer.Option(..., "--out", help="The report to write: FILE.xlsx (a sheet per table) or FILE.csv."),
    top: int = typer.Option(20, "--top", min=1, max=1000, help="How many top users to list."),
    store_dir: Optional[Path] = typer.Option(None, "--store", help="The Parquet store (default HKOPS_USAGE_STORE, else data/usage)."),
):
    """Usage report of a day, week or month (volumes by time, place, service, plan and channel; DOU,
    MOU, SMS and ARPU per plan and province; charges by the plans sold; top users) to Excel or CSV."""
    from hkops.analytics import usage_stats
    from hkops.analytics.engine import store_location

    db = _reader()
    if to.suffix.lower() not in (".xlsx", ".csv"):
        raise InvalidValue("out", str(to), "must end in .xlsx or .csv")
    sheets = usage_stats.period_report(store_location(store_dir), period, _day(on, "date"), plans=_plans(db), top=top)
    usage_stats.export_report(sheets, to)
    echo(f"{period} report of {sheets['summary'].iloc[1, 1]}..{sheets['summary'].iloc[2, 1]} written to {to} "
         f"({', '.join(sheets)})")


@app.command()
def stream(
    rate: Optional[float] = typer.Option(None, "--rate", min=0.001, help="Records a second (default: the cards' "
                                                                          "own rate; more is a load test)."),
    duration: Optional[float] = typer.Option(None, "--duration", min=0.1, help="Seconds to run (default: until "
                                                                               "Ctrl+C)."),
    batch_ms: int = typer.Option(200, "--batch-ms", min=10, max=60_000, help="Milliseconds per micro-batch."),
    seed: int = typer.Option(7, "--seed", help="The seed of `usage generate`: cards keep their activity."),
    cards: int = typer.Option(10_000, "--cards", min=1, max=10_000_000,
                              help="How many synthetic cards, when the inventory has no activated card."),
    synthetic: bool = typer.Option(False, "--synthetic", help="Use synthetic cards even if the inventory has some."),
    outage: list[str] = typer.Option([], "--outage", help="Silence a province (e.g. 广东), to see the monitor "
                                                          "notice; repeatable."),
    clone_share: float = typer.Option(0.0, "--clone-share", min=0, max=1,
                                      help="Share of records made in another province than the card's (cloning)."),
    keep_hours: Optional[float] = typer.Option(None, "--keep-hours", min=0.01,
                                               help="Delete feed batches older than this (default: keep all)."),
    out: Optional[Path] = Out,
    as_json: bool = typer.Option(False, "--json"),
):
    """Play the network's live usage feed: records of the cards in service as they happen (and
    the refused attempts of suspended, lost, terminated and replaced cards), appended as Arrow
    IPC micro-batches to the usage store's stream/ folder, which ``hkops monitor`` consumes."""
    from hkops.cards.service import network_cards
    from hkops.cli.common import actor, store
    from hkops.network import feed
    from hkops.network.usage import synthetic_cards
    from hkops.security import access

    db = store()
    access.require(actor(), "usage.write", "stream usage records", db)
    population = None if synthetic else network_cards(db)
    if population is None or population.empty:
        population = synthetic_cards(cards, seed=seed)
    source = feed.FeedSource(population, seed=seed, clone_share=clone_share, outage=tuple(outage))
    folder = feed.stream_dir(out)
    if not as_json:
        echo(f"streaming {rate or source.natural_rate:,.1f} records/s of {len(population):,} cards to {folder}"
             + ("" if duration else " (Ctrl+C stops)"))
    summary = feed.stream(source, folder, rate=rate, duration=duration, batch_s=batch_ms / 1000,
                          keep_s=None if keep_hours is None else keep_hours * 3600)
    if as_json:
        emit_json(summary.to_dict())
    else:
        echo(f"{summary.records:,} records ({summary.refused:,} refused) in {summary.batches} batch(es) "
             f"{summary.first_batch}..{summary.last_batch}, {summary.seconds:.1f} s")
