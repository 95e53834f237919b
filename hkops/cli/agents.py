"""``hkops agents ...``: The multi-level agent tree (代理)."""

from __future__ import annotations

from typing import Optional

import typer

from hkops.cli.common import actor, echo, emit_json, store
from hkops.errors import InvalidValue

app = typer.Typer(rich_markup_mode="markdown", help="The multi-level agent tree (代理).", no_args_is_help=True)

Reason = typer.Option(None, "--reason", help="Why (kept in the audit trail).")


def _line(agent) -> str:
    where = f", {agent.province}" if agent.province else ""
    inactive = "" if agent.active else "  (inactive)"
    return (f"{agent.code}  {agent.name}  level {agent.level}, price level {agent.price_level}, "
            f"stock {agent.location}{where}{inactive}")


@app.command("add")
def add(
    code: str = typer.Argument(..., help="Agent code, e.g. BJ-HD."),
    name: str = typer.Argument(..., help="The agent's name."),
    parent: Optional[str] = typer.Option(None, "--parent", help="The agent above it (none: a level-1 agent)."),
    price_level: Optional[int] = typer.Option(None, "--price-level", help="Price list it buys at (default: level)."),
    province: Optional[str] = typer.Option(None, "--province", help="Province, English or Chinese."),
    contact_name: Optional[str] = typer.Option(None, "--contact-name"),
    contact_phone: Optional[str] = typer.Option(None, "--contact-phone"),
):
    """Add an agent, with its own stock location AG-<CODE>."""
    from hkops.agents import service

    agent = service.add_agent(store(), code, name, parent=parent, price_level=price_level, province=province,
                              contact_name=contact_name, contact_phone=contact_phone, actor=actor())
    echo(f"added agent {_line(agent)}")


@app.command("move")
def move(
    code: str = typer.Argument(..., help="The agent to move (its agents move with it)."),
    parent: Optional[str] = typer.Option(None, "--parent", help="The new agent above it."),
    top: bool = typer.Option(False, "--top", help="Make it a level-1 agent."),
    reason: Optional[str] = Reason,
):
    """Put an agent under another (or at the top); its whole subtree is re-levelled."""
    from hkops.agents import service

    if (parent is None) == (not top):
        raise InvalidValue("parent", parent or "", "give exactly one of --parent CODE or --top")
    agent = service.move_agent(store(), code, parent, actor=actor(), reason=reason)
    echo(f"moved agent {agent.code} {'under ' + agent.parent if agent.parent else 'to the top'}: level {agent.level}")


@app.command("list")
def list_all(as_json: bool = typer.Option(False, "--json", help="Print only JSON.")):
    """The agent tree, indented by level."""
    from hkops.agents import service

    tree = service.agent_tree(store(), actor=actor())
    if as_json:
        emit_json([a.as_dict() for a in tree])
        return
    for agent in tree:
        echo("  " * (agent.level - 1) + _line(agent))
    if not tree:
        echo("no agents")


@app.command("show")
def show(code: str = typer.Argument(..., help="Agent code."), as_json: bool = typer.Option(False, "--json")):
    """One agent and its chain up to level 1."""
    from hkops.agents import service

    agent, links = service.show_agent(store(), code, actor=actor())
    if as_json:
        emit_json({**agent.as_dict(), "chain": links})
        return
    echo(_line(agent))
    if agent.contact_name or agent.contact_phone:
        echo(f"contact: {' '.join(v for v in (agent.contact_name, agent.contact_phone) if v)}")
    echo("chain: " + " > ".join(f"{c['code']} (level {c['level']})" for c in reversed(links)))


@app.command("deactivate")
def deactivate(code: str = typer.Argument(...), reason: Optional[str] = Reason):
    """Deactivate an agent (no new agents can be put below it)."""
    from hkops.agents import service

    agent = service.set_active(store(), code, False, actor=actor(), reason=reason)
    echo(f"agent {agent.code} is inactive")


@app.command("activate")
def activate(code: str = typer.Argument(...), reason: Optional[str] = Reason):
    """Activate an agent again."""
    from hkops.agents import service

    agent = service.set_active(store(), code, True, actor=actor(), reason=reason)
    echo(f"agent {agent.code} is active")
