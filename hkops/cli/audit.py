"""``hkops audit ...``: the audit trail: list records, verify the chain, write checkpoints.

``hkops audit [--subject ...]`` without a sub-command lists records as ``hkops audit log`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hkops.cli.common import echo, emit_json, store
from hkops.errors import InvalidValue

app = typer.Typer(rich_markup_mode="markdown", help="The audit trail: list records (log), verify the chain, write checkpoints.",
                  invoke_without_command=True)

Subject = typer.Option(None, "--subject", help="A number, block or other subject.")
By = typer.Option(None, "--by", help="Only this actor's records.")
Action = typer.Option(None, "--action")
Entity = typer.Option(None, "--entity", help="number, block, setting, carrier, grading, order...")
Since = typer.Option(None, "--since", help="ISO date/time (Asia/Shanghai), e.g. 2026-11-01.")
Until = typer.Option(None, "--until", help="ISO date/time (Asia/Shanghai), exclusive.")
Limit = typer.Option(100, "--limit", min=1, max=100_000)
Json = typer.Option(False, "--json")


def _list(subject, actor_name, action, entity, since, until, limit, as_json) -> None:
    from datetime import datetime

    from hkops import audit as audit_module
    from hkops.ids import parse_msisdn
    from hkops.timeutil import SHANGHAI, local

    def moment(field: str, value: str | None):
        if not value:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidValue(field, value, "must be an ISO date or date-time such as 2026-11-01 or 2026-11-01T08:00") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=SHANGHAI)

    if subject and subject.replace(" ", "").lstrip("+").isdigit() and len(subject.replace(" ", "")) >= 11:
        subject = parse_msisdn(subject)
    from hkops.cli.common import actor
    from hkops.security.access import require

    db = store()
    require(actor(), "audit.read", "read the audit trail")
    with db.read() as conn:
        rows = audit_module.query(conn, subject=subject, actor=actor_name, action=action, entity=entity,
                                  since=moment("since", since), until=moment("until", until), limit=limit)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        echo(f"{local(r['at'])}  {r['actor']:<10} {r['entity']:<7} {r['subject']:<12} {r['action']:<10} "
             f"{r['from_state'] or '-'} -> {r['to_state'] or '-'}  {r['reason'] or ''}")


@app.callback()
def audit(
    ctx: typer.Context,
    subject: Optional[str] = Subject,
    actor_name: Optional[str] = By,
    action: Optional[str] = Action,
    entity: Optional[str] = Entity,
    since: Optional[str] = Since,
    until: Optional[str] = Until,
    limit: int = Limit,
    as_json: bool = Json,
):
    """List audit records, newest first (as ``hkops audit log``), or run a sub-command."""
    if ctx.invoked_subcommand is None:
        _list(subject, actor_name, action, entity, since, until, limit, as_json)


@app.command("log")
def log(
    subject: Optional[str] = Subject,
    actor_name: Optional[str] = By,
    action: Optional[str] = Action,
    entity: Optional[str] = Entity,
    since: Optional[str] = Since,
    until: Optional[str] = Until,
    limit: int = Limit,
    as_json: bool = Json,
):
    """List audit records, newest first."""
    _list(subject, actor_name, action, entity, since, until, limit, as_json)


@app.command("verify")
def verify(
    checkpoints: list[Path] = typer.Option([], "--checkpoint",
                                           help="A checkpoint file kept elsewhere (repeatable); those in the "
                                                "data folder's audit-checkpoints/ are always compared."),
    as_json: bool = Json,
):
    """Check the chain of audit records and compare it with the checkpoints. Exit 1 when
    a record or a checkpoint does not match (the first bad record is named), 0 when intact."""
    from hkops import audit as audit_module

    files = list(dict.fromkeys([*audit_module.kept_checkpoints(), *checkpoints]))
    verdict = audit_module.verify(store(), files)
    if as_json:
        emit_json(verdict.as_dict())
    elif verdict.intact and not verdict.count:
        echo("audit trail empty: nothing to verify")
    elif verdict.intact:
        echo(f"audit trail intact: {verdict.count} records, last {verdict.last_id}; "
             f"{len(verdict.checkpoints)} checkpoint(s) agree")
    else:
        echo(f"audit trail BROKEN: {verdict.problem}")
        if verdict.bad_records > 1:
            echo(f"{verdict.bad_records} records in all do not fit the chain")
        for check in verdict.checkpoints:
            if not check["ok"] and check["problem"] != verdict.problem:
                echo(check["problem"])
    raise typer.Exit(0 if verdict.intact else 1)


@app.command("checkpoint")
def checkpoint(
    file: Optional[Path] = typer.Option(None, "--file", help="Where to write it (default: a new file in the data "
                                                             "folder's audit-checkpoints/)."),
):
    """Verify the chain and write its head (database identity, last id, last hash, count,
    time) to a file: copy it somewhere the database's administrators cannot write."""
    from hkops import audit as audit_module

    path, verdict = audit_module.checkpoint(store(), file)
    echo(f"checkpoint of record {verdict.last_id} ({verdict.count} records) written to {path}")
