"""Who acts, and what they may do: principals, permissions and roles (issue 9).

A :class:`Principal` is the acting user. It is a ``str`` (the user name), so every use case
that takes ``actor: str`` and writes it to the audit trail takes a principal unchanged;
the principal also carries the user's roles, permissions and, for an agent user, the
agent code whose subtree it may see.

Permissions are the fixed vocabulary in :data:`PERMISSIONS`; roles are data: a role file
(``data/roles.toml`` by default) maps each role to permissions, and an operator adds a role
by editing it. :func:`require` is the one check a use case makes before it reads or writes.

A plain ``str`` actor (not a :class:`Principal`) is a trusted in-process caller: the demo
builder, the HLR, tests, a notebook run by whoever holds the database and its key file.
Those callers can read and change everything anyway; roles protect the doors people come
through (the CLI, the consoles), which always pass a :class:`Principal`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Iterable

from hkops.errors import HkopsError, InvalidValue

#: Every permission hkops knows, with what it allows.
PERMISSIONS: dict[str, str] = {
    "numbers.read": "see numbers, blocks and the pool",
    "numbers.write": "reserve, allocate, release, block, terminate, recycle numbers; add blocks",
    "cards.read": "see SIM cards, batches and their timelines",
    "cards.write": "receive card files; pair, activate, suspend, resume, replace, terminate cards",
    "hlr.operate": "sync, retry, abandon and reconcile HLR commands",
    "subscribers.read": "see subscribers (masked resident IDs)",
    "subscribers.write": "register subscribers, manage the blacklist",
    "pii.read": "reveal a full resident ID (each reveal audited with its reason)",
    "catalogue.read": "see products, plans and prices",
    "catalogue.write": "change products, plans and prices",
    "procurement.write": "vendors, purchase orders, receiving",
    "stock.read": "see locations, on-hand and the stock ledger",
    "stock.write": "transfer, return, count and scrap stock",
    "agents.read": "see the agent tree",
    "agents.write": "add and move agents",
    "orders.read": "see orders",
    "orders.write": "take, pay, ship, deliver, activate, cancel and return orders",
    "payments.read": "see the payment ledger and reconciliation",
    "payments.write": "record collections and import statements",
    "refunds.write": "refund payments",
    "settlement.read": "see commissions, settlements and withdrawals",
    "settlement.write": "accrue, settle, approve and pay commissions and withdrawals",
    "analytics.read": "run analyses (personal data pseudonymised)",
    "usage.write": "generate and import usage records",
    "monitoring.read": "see the monitor's alerts and how far it has read the usage feed",
    "monitoring.write": "run the monitor; acknowledge and close alerts",
    "audit.read": "read the audit trail",
    "audit.verify": "verify and checkpoint the audit trail",
    "users.admin": "add, disable and change users; issue and revoke tokens",
    "keys.admin": "rotate and retire encryption keys",
    "settings.write": "change operator settings and carriers",
}

#: The role file shipped with hkops; ``HKOPS_ROLES_FILE`` names another.
DEFAULT_ROLES_FILE = Path(__file__).resolve().parent / "roles.toml"


class AccessDenied(HkopsError):
    """The principal lacks a permission, or the object is outside its agent subtree."""

    def __init__(self, who: str, what: str, permission: str | None = None, *, detail: str | None = None):
        self.who, self.what, self.permission = who, what, permission
        why = detail or f"it needs the permission {permission!r}, which no role of {who!r} grants"
        #: Whether the refusal's audit record is written (see :func:`deny`).
        self.audited = False
        super().__init__(f"{who} may not {what}: {why}")


class Principal(str):
    """The acting user: its name (the ``str`` value), roles, permissions and agent scope."""

    roles: tuple[str, ...]
    permissions: frozenset[str]
    agent: str | None
    user_id: int | None

    def __new__(cls, name: str, *, roles=(), permissions=(), agent: str | None = None, user_id: int | None = None):
        self = super().__new__(cls, name)
        self.roles = tuple(roles)
        self.permissions = frozenset(permissions)
        self.agent = agent
        self.user_id = user_id
        return self

    @property
    def name(self) -> str:
        return str.__str__(self)

    def can(self, permission: str) -> bool:
        """Whether any of the principal's roles grants ``permission``."""
        return permission in self.permissions

    def __repr__(self) -> str:
        scope = f", agent={self.agent!r}" if self.agent else ""
        return f"Principal({self.name!r}, roles={list(self.roles)!r}{scope})"

    def __reduce__(self):
        return (_principal, (self.name, self.roles, tuple(sorted(self.permissions)), self.agent, self.user_id))


def _principal(name, roles, permissions, agent, user_id) -> Principal:
    return Principal(name, roles=roles, permissions=permissions, agent=agent, user_id=user_id)


def is_principal(actor: object) -> bool:
    """True for a logged-in user; False for a trusted in-process caller (a plain ``str``)."""
    return isinstance(actor, Principal)


def require(actor: str, permission: str, what: str, db=None) -> None:
    """Raise :class:`AccessDenied` unless ``actor`` may use ``permission`` to do ``what``.

    ``what`` says the action in words for the message ("release number 13800138000").
    A use case calls this once at its public entry point, before it writes, passing its
    ``db``: given a :class:`~hkops.store.engine.Store`, a refusal is audited (:func:`deny`)
    before it is raised. Given a ``Connection`` the call runs inside another use case's
    transaction, which made its own check on the way in, so nothing is checked again
    (a clerk's order cancellation releases the number without ``numbers.write``). Without
    ``db`` the refusal is raised unaudited and the CLI or console that catches it audits it.
    """
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")
    if not isinstance(actor, Principal) or actor.can(permission) or _inside_transaction(db):
        return
    refused = AccessDenied(actor.name, what, permission)
    if db is not None:
        deny(db, refused)
    raise refused


def require_agent(db, actor: str, agents: Iterable[str | None], what: str, *, locations: bool = False) -> None:
    """Refuse an agent user acting for an agent outside its own subtree of the agent tree.

    ``agents`` are agent codes (``None`` or ``direct``: no agent, refused too) or, with
    ``locations``, stock location codes, which must be those of the subtree's agents. Users
    who are not agent users pass. A refusal is audited like :func:`require`'s.
    """
    scope = agent_scope(actor)
    if scope is None or _inside_transaction(db):
        return
    from sqlalchemy import select

    from hkops.agents.service import scope_query
    from hkops.agents.tables import agents as agents_table

    column = agents_table.c.location if locations else agents_table.c.code
    with db.read() as conn:  # the subtree as the read paths scope it (one recursive query)
        allowed = set(conn.execute(select(column).where(agents_table.c.id.in_(scope_query(actor)))).scalars())
    outside = sorted({str(code) for code in agents if code is None or str(code).upper() not in allowed}, key=str)
    if not outside:
        return
    kind = "location" if locations else "agent"
    refused = AccessDenied(actor.name, what, detail=f"{kind} {outside[0]} is outside the subtree of agent {scope}"
                                                    f" ({actor.name!r} acts for agent {scope} and those below it)")
    deny(db, refused)
    raise refused


def few(values: Iterable, shown: int = 3) -> str:
    """The first ``shown`` of ``values`` for a message: "a, b, c and 7 more"."""
    values = [str(v) for v in values]
    head = ", ".join(values[:shown])
    return f"{head} and {len(values) - shown} more" if len(values) > shown else head


def require_whole(actor: str, permission: str, what: str, db=None, *,
                  why: str = "it reads every agent's data, not a subtree's") -> None:
    """:func:`require`, and refuse an agent user (audited like a missing permission): for what is
    not confined to an agent's subtree (the whole number pool, every card's usage, a whole table)."""
    require(actor, permission, what, db)
    if agent_scope(actor) is not None:
        refused = AccessDenied(str(actor), what, detail=f"an agent user sees its own subtree only; {why}")
        deny(db, refused)
        raise refused


def deny(db, refused: AccessDenied) -> None:
    """Audit a refusal (entity ``access``, subject the user, action ``denied``, reason the
    message) in its own transaction, once; the refused use case's transaction rolls back."""
    from hkops.store.engine import Store

    if refused.audited or not isinstance(db, Store):
        return
    from hkops import audit

    with db.write() as conn:
        audit.record(conn, refused.who, [audit.Event("access", refused.who, "denied", reason=str(refused),
                                                     details={"permission": refused.permission} if refused.permission
                                                     else None)])
    refused.audited = True


def _inside_transaction(db) -> bool:
    from sqlalchemy.engine import Connection

    return isinstance(db, Connection)


def agent_scope(actor: str) -> str | None:
    """The agent code whose subtree ``actor`` is confined to, or None (not an agent user)."""
    return actor.agent if isinstance(actor, Principal) else None


def out_of_scope(actor: str, what: str) -> AccessDenied:
    """The refusal for an object outside an agent user's subtree, worded the same whether the
    object exists elsewhere or not at all (so a refusal does not tell that it exists)."""
    return AccessDenied(str(actor), what, detail=f"it is not in the subtree of agent {agent_scope(actor)} "
                                                 "(or does not exist)")


def sees_personal_data(actor: str) -> bool:
    """Whether ``actor`` may see people's names, contacts and addresses (``subscribers.read``);
    others (analysts) get pseudonymous keys and masks only."""
    return not isinstance(actor, Principal) or actor.can("subscribers.read")


def load_roles(path: str | Path | None = None) -> dict[str, frozenset[str]]:
    """Role name -> permissions from a role file; every permission must be one hkops knows.

    Bad input (an unknown permission, a role without a list) is an :class:`InvalidValue`
    naming the role, the value and the line of the file.
    """
    path = Path(path) if path is not None else DEFAULT_ROLES_FILE
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidValue("role file", str(path), str(exc)) from None
    roles: dict[str, frozenset[str]] = {}
    for name, body in data.get("roles", {}).items():
        line = _line_of(text, f"[roles.{name}]")
        granted = body.get("permissions") if isinstance(body, dict) else None
        if not isinstance(granted, list) or not all(isinstance(p, str) for p in granted):
            raise InvalidValue(f"role {name} permissions", granted, "must be a list of permission names", line=line)
        unknown = [p for p in granted if p not in PERMISSIONS]
        if unknown:
            raise InvalidValue(f"role {name} permission", unknown[0],
                               f"is not a permission hkops knows ({path.name}); known: {', '.join(PERMISSIONS)}",
                               line=_line_of(text, f'"{unknown[0]}"') or line)
        roles[name] = frozenset(granted)
    if not roles:
        raise InvalidValue("role file", str(path), "defines no [roles.NAME] table")
    return roles


def _line_of(text: str, needle: str) -> int | None:
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    return None
