"""``hkops alerts ...``: the monitor's alerts: list, acknowledge, close (``hkops monitor`` raises them)."""

from __future__ import annotations

from typing import Optional

import typer

from hkops.cli.common import actor, echo, emit_json, store

app = typer.Typer(rich_markup_mode="markdown", help="The monitor's alerts: list, acknowledge, close.", no_args_is_help=True)

Json = typer.Option(False, "--json", help="Print only JSON.")


def _line(alert: dict) -> str:
    details = ", ".join(f"{k} {v}" for k, v in alert["details"].items())
    return (f"{alert['id']:>6}  {alert['state']:<12} {alert['severity']:<6} {alert['rule']:<18} {alert['subject']:<12} "
            f"{alert['window']:<16} hits {alert['hits']:<5} last {alert['last_seen']}  {details}")


@app.command("list")
def list_(state: Optional[str] = typer.Option(None, "--state", help="open, acknowledged, closed, or active "
                                                                     "(open and acknowledged)."),
          rule: Optional[str] = typer.Option(None, "--rule", help="Only this rule's alerts."),
          limit: int = typer.Option(200, "--limit", min=1, max=100_000),
          as_json: bool = Json):
    """Alerts, newest first (times in Asia/Shanghai)."""
    from hkops.monitoring import service

    rows = service.list_alerts(store(), actor=actor(), state=state, rule=rule, limit=limit)
    if as_json:
        emit_json(rows)
        return
    echo("\n".join(_line(a) for a in rows) if rows else "no alerts")


@app.command("ack")
def ack(alert: int = typer.Argument(..., help="The alert's id."),
        reason: Optional[str] = typer.Option(None, "--reason", help="What is being done about it."),
        as_json: bool = Json):
    """Acknowledge an open alert (someone is on it)."""
    from hkops.monitoring import service

    row = service.acknowledge(store(), alert, actor=actor(), reason=reason)
    emit_json(row) if as_json else echo(f"alert {row['id']} acknowledged by {row['acknowledged_by']}")


@app.command("close")
def close(alert: int = typer.Argument(..., help="The alert's id."),
          reason: str = typer.Option(..., "--reason", help="Why it is closed (what was found or done)."),
          as_json: bool = Json):
    """Close an open or acknowledged alert, with the reason."""
    from hkops.monitoring import service

    row = service.close(store(), alert, actor=actor(), reason=reason)
    emit_json(row) if as_json else echo(f"alert {row['id']} closed by {row['closed_by']}: {row['reason']}")


def monitor(
    once: bool = typer.Option(False, "--once", help="Consume what the feed holds now, run the inventory rules, stop."),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="The time the inventory rules count from "
                                                               "(ISO, e.g. 2026-11-29T08:00+08:00; default now)."),
    rules: Optional[str] = typer.Option(None, "--rules", help="The rules file (default $HKOPS_ALERT_RULES or "
                                                               "the rules shipped with hkops)."),
    out: Optional[str] = typer.Option(None, "--out", help="The usage store (default HKOPS_USAGE_STORE, else data/usage): its stream/ "
                                                           "folder is the feed, its records/ the history."),
    interval: float = typer.Option(0.2, "--interval", min=0.01, max=60, help="Seconds between looks at the feed."),
    as_json: bool = Json,
):
    """Consume the usage feed incrementally and raise alerts by the rules (Ctrl+C stops; a
    restart resumes at the watermark stored in the database)."""
    import time
    from datetime import datetime
    from pathlib import Path

    from hkops.errors import InvalidValue
    from hkops.monitoring import service
    from hkops.monitoring.rules import load_rules
    from hkops.network.feed import stream_dir
    from hkops.analytics.engine import store_location
    from hkops.timeutil import as_utc

    when = None
    if as_of:
        try:
            when = as_utc(datetime.fromisoformat(as_of))
        except ValueError:
            raise InvalidValue("as-of", as_of, "must be a time such as 2026-11-29T08:00+08:00") from None
    usage = Path(store_location(out))
    loaded = load_rules(rules)
    db, who = store(), actor()
    running = service.Monitor(db, loaded, stream_dir(usage), usage / "records")
    total = service.Step()
    try:
        while True:
            step = service.consume(running, actor=who, now=when)
            total.batches += step.batches
            total.records += step.records
            total.raised += step.raised
            total.updated += step.updated
            total.watermark = step.watermark
            if step.raised and not once and not as_json:
                echo(f"batch {step.watermark}: {step.raised} new alert(s)")
            if service.census_due(running) and (once or not step.batches):
                total.raised += service.census(running, actor=who, now=when)
            if not step.batches:
                if once:
                    break
                time.sleep(interval)
    except KeyboardInterrupt:
        pass
    summary = {"batches": total.batches, "records": total.records, "raised": total.raised,
               "updated": total.updated, "watermark": total.watermark, "open": service.counts(db, actor=who)["open"]}
    if as_json:
        emit_json(summary)
    else:
        echo(f"consumed {summary['batches']} batch(es), {summary['records']:,} record(s) up to batch "
             f"{summary['watermark']}: {summary['raised']} new alert(s), {summary['updated']} updated; "
             f"{summary['open']} open")
