"""``hkops users ...``, ``hkops login``, ``hkops logout``, ``hkops whoami``: who may use hkops.

Passwords come from a hidden prompt or, for scripts, from standard input (``--password-stdin``),
never from an argument (``hkops.cli.main`` refuses ``--password``).
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

import typer

from hkops.cli.common import actor, echo, emit_json, forget_session, save_session, store
from hkops.errors import InvalidValue, NotFound
from hkops.timeutil import local, utc_now

app = typer.Typer(rich_markup_mode="markdown", help="Users, roles and API tokens (who may use hkops, and for what).", no_args_is_help=True)

Reason = typer.Option(None, "--reason", help="Why (kept in the audit trail).")
PasswordStdin = typer.Option(False, "--password-stdin",
                             help="Read the password from the first line of standard input (for scripts).")


def read_password(from_stdin: bool, *, confirm: bool, prompt: str = "Password") -> str:
    """A password from standard input (``--password-stdin``) or a hidden prompt."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise InvalidValue("password", "(hidden)", "standard input was empty (--password-stdin reads one line)")
        return line.rstrip("\r\n")
    return typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm)


def _user_line(user) -> str:
    agent = f", agent {user.agent}" if user.agent else ""
    state = "  (disabled)" if user.disabled else ""
    locked = f"  (locked until {local(user.locked_until)})" if user.locked_until and user.locked_until > utc_now() else ""
    return f"{user.name:<16} {','.join(user.roles)}{agent}{state}{locked}"


@app.command("add")
def add(
    name: str = typer.Argument(..., help="The user's login name."),
    role: List[str] = typer.Option(..., "--role", help="A role from the role file (repeat for several)."),
    agent: Optional[str] = typer.Option(None, "--agent", help="For an agent user: the agent whose subtree it sees."),
    password_stdin: bool = PasswordStdin,
    reason: Optional[str] = Reason,
):
    """Add a user (asks for its password). The first user of a database must be an admin."""
    from hkops.security import users

    db = store()
    who = actor()
    first = not users.any_user(db)
    password = read_password(password_stdin, confirm=True, prompt=f"Password for {name}")
    user = users.add_user(db, name, role, actor=who, password=password, agent=agent, reason=reason)
    echo(f"added user {_user_line(user)}")
    if first:
        echo("this was the first user: from now on every command needs a login (hkops login) or an API token "
             "(HKOPS_TOKEN)")


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json")):
    """Every user with its roles, agent and state (never a password hash)."""
    from hkops.security import users

    found = users.list_users(store(), actor=actor())
    if as_json:
        emit_json([u.as_dict() for u in found])
    else:
        echo("\n".join(_user_line(u) for u in found) or "no users yet (hkops users add NAME --role admin)")


@app.command("disable")
def disable(name: str, reason: Optional[str] = Reason):
    """Disable a user: it can no longer log in, and its sessions and tokens stop working."""
    from hkops.security import users

    echo(f"disabled {_user_line(users.disable_user(store(), name, actor=actor(), reason=reason))}")


@app.command("enable")
def enable(name: str, reason: Optional[str] = Reason):
    """Enable a disabled user again."""
    from hkops.security import users

    echo(f"enabled {_user_line(users.enable_user(store(), name, actor=actor(), reason=reason))}")


@app.command("passwd")
def passwd(name: str, password_stdin: bool = PasswordStdin, reason: Optional[str] = Reason):
    """Set a user's password (an admin for anyone, a user for itself); lifts a lock-out."""
    from hkops.security import users

    db = store()
    who = actor()
    password = read_password(password_stdin, confirm=True, prompt=f"New password for {name}")
    users.set_password(db, name, password, actor=who, reason=reason)
    echo(f"password of {name} changed")


@app.command("roles")
def roles(as_json: bool = typer.Option(False, "--json")):
    """The roles of the role file (HKOPS_ROLES_FILE, else the shipped one) and their permissions."""
    from hkops.security import users

    found = users.available_roles()
    if as_json:
        emit_json({name: sorted(granted) for name, granted in found.items()})
        return
    echo(f"roles from {users.roles_file()}:")
    for name, granted in found.items():
        echo(f"{name:<10} {', '.join(sorted(granted))}")


@app.command("token")
def token(
    name: str = typer.Argument(..., help="The user the token acts as."),
    expires: str = typer.Option("90d", "--expires", help="Lifetime, e.g. 30d, 12h, 1w."),
    reason: Optional[str] = Reason,
    as_json: bool = typer.Option(False, "--json"),
):
    """Issue an API token for scripts (HKOPS_TOKEN=...). It is shown once; only its hash is kept."""
    from hkops.security import users

    secret, info = users.issue_token(store(), name, actor=actor(), expires=expires, reason=reason)
    if as_json:
        emit_json({**info, "token": secret})
        return
    echo(secret)
    print(f"API token for {info['user']} (prefix {info['prefix']}), expires {local(info['expires_at'])}; "
          "it is not shown again. Scripts use it as HKOPS_TOKEN.", file=sys.stderr)


@app.command("tokens")
def tokens(
    name: Optional[str] = typer.Argument(None, help="Only this user's."),
    all_: bool = typer.Option(False, "--all", help="Also expired and revoked ones."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Sessions and API tokens by prefix (never the tokens themselves)."""
    from hkops.security import users

    found = users.list_tokens(store(), actor=actor(), name=name, live_only=not all_)
    if as_json:
        emit_json(found)
        return
    for t in found:
        state = f"revoked {local(t['revoked_at'])}" if t["revoked_at"] else \
            f"expires {local(t['expires_at'])}"
        echo(f"{t['prefix']}  {t['kind']:<7} {t['user']:<16} {state}")


@app.command("revoke-token")
def revoke_token(
    prefix: str = typer.Argument(..., help="The token's prefix as `hkops users tokens` shows it."),
    reason: Optional[str] = Reason,
):
    """Revoke a session or API token: it is refused from now on."""
    from hkops.security import users

    done = users.revoke_token(store(), prefix, actor=actor(), reason=reason)
    echo(f"revoked the {done['kind']} token {done['prefix']} of {done['user']}")


# --------------------------------------------------------------------------- login, logout, whoami


def login(
    name: Optional[str] = typer.Argument(None, help="Your user name (asked when left out)."),
    password_stdin: bool = PasswordStdin,
    ttl: str = typer.Option("12h", "--for", help="How long the session lasts, e.g. 8h, 30m."),
):
    """Log in: asks for the password and keeps a session token in an owner-only file."""
    from hkops.security import users
    from hkops.timeutil import parse_duration

    db = store(login=False)
    lifetime = parse_duration(ttl, "for")
    if not users.any_user(db):
        raise NotFound("this database has no users yet, so there is nothing to log in to: "
                       "add the first admin with hkops users add NAME --role admin")
    name = name or typer.prompt("User")
    password = read_password(password_stdin, confirm=False)
    principal = users.authenticate(db, name, password)
    now = utc_now()
    secret = users.start_session(db, principal, "cli", lifetime, now=now)
    expires = now + lifetime
    path = save_session(db, principal.name, secret, expires)
    echo(f"logged in as {principal.name} ({', '.join(principal.roles)}) until {local(expires)}; "
         f"session kept in {path}")
    if os.environ.get("HKOPS_TOKEN"):
        print("note: HKOPS_TOKEN is set and takes precedence over this login", file=sys.stderr)


def logout():
    """End this database's login session (revoked on the server, removed from the session file)."""
    from hkops.security import users

    db = store(login=False)
    secret = forget_session(db)
    if secret and users.revoke_session(db, secret):
        echo("logged out")
    else:
        echo("no live session to end")


def whoami(as_json: bool = typer.Option(False, "--json")):
    """Who the CLI acts as, with which roles and permissions."""
    from hkops.security.access import is_principal

    who = actor()
    if is_principal(who):
        found = {"user": who.name, "roles": list(who.roles), "agent": who.agent,
                 "permissions": sorted(who.permissions), "via": "HKOPS_TOKEN" if os.environ.get("HKOPS_TOKEN")
                 else "login session"}
    else:
        found = {"user": str(who), "roles": [], "agent": None, "permissions": ["(all: installer, no user exists yet)"],
                 "via": "installer"}
    if as_json:
        emit_json(found)
    else:
        agent = f", agent {found['agent']}" if found["agent"] else ""
        echo(f"{found['user']} ({', '.join(found['roles']) or 'installer'}{agent}) via {found['via']}")
