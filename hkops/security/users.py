"""Users, passwords, login sessions and API tokens (issue 9).

The server side of every login, for the CLI and the consoles alike:

* :func:`add_user`, :func:`disable_user`, :func:`enable_user`, :func:`set_password`,
  :func:`list_users` keep the ``users`` table (argon2id password hashes, roles from the role
  file, the agent of an agent user, a disabled flag, the lock-out state).
* :func:`authenticate` checks a name and password and returns the :class:`Principal`; after
  ``login_max_failures`` failures in a row (setting, 5) the user is locked for
  ``login_lockout`` (setting, 15m), and even the right password is refused until then.
  Every failure and every lock-out is audited; a password never is.
* :func:`start_session` turns a principal into a session token (kind ``cli`` or ``console``),
  :func:`issue_token` makes an API token for scripts; both are random, shown once, and
  stored only as their SHA-256. :func:`principal_for_token` turns either back into the
  principal, refusing a token that is unknown (forged, truncated), expired, revoked, or whose
  user is disabled with :class:`TokenRefused`. :func:`revoke_session` and
  :func:`revoke_token` end them.

The first user must be an admin (it is the only one who can add the others); while no user
exists the CLI acts as the local installer (see README, Security).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, func, select, update

from hkops.audit import Event, record
from hkops.errors import Conflict, HkopsError, InvalidValue, NotFound
from hkops.security.access import DEFAULT_ROLES_FILE, Principal, is_principal, load_roles, require
from hkops.security.tables import user_tokens, users
from hkops.store.engine import Store
from hkops.timeutil import local, parse_duration, utc_now

#: Shortest password accepted.
MIN_PASSWORD = 8
#: Session kinds; API tokens have the kind ``api``.
SESSION_KINDS = ("cli", "console")
API = "api"
#: How a token starts: ``hks_`` for a session, ``hkt_`` for an API token, then 43 random
#: URL-safe characters (32 bytes).
_TOKEN_START = {"cli": "hks_", "console": "hks_", API: "hkt_"}
_RANDOM_CHARS = 43
TOKEN_LENGTH = 4 + _RANDOM_CHARS
#: Characters of a token kept in clear to tell tokens apart (``users tokens``, ``revoke-token``).
PREFIX_LENGTH = 12
#: Default lifetimes.
CLI_SESSION_TTL = timedelta(hours=12)
CONSOLE_SESSION_TTL = timedelta(hours=8)
API_TOKEN_TTL = timedelta(days=90)
#: ``last_seen`` is written at most this often per token.
_SEEN_EVERY = timedelta(minutes=1)
#: The role an agent user must have, and which needs an agent.
AGENT_ROLE = "agent"
#: The permission that makes someone an admin of users.
USERS_ADMIN = "users.admin"

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789._-")


class LoginRefused(HkopsError):
    """A login failed: unknown user or wrong password (one message for both), locked, or disabled."""


class TokenRefused(HkopsError):
    """A session or API token that is unknown, malformed, expired, revoked, or whose user is disabled."""


@dataclass(frozen=True)
class User:
    """A user as everyone may see it (never the password hash)."""

    id: int
    name: str
    roles: tuple[str, ...]
    agent: str | None
    disabled: bool
    locked_until: datetime | None
    created_at: datetime
    changed_at: datetime

    def as_dict(self) -> dict:
        return {"name": self.name, "roles": list(self.roles), "agent": self.agent, "disabled": self.disabled,
                "locked_until": self.locked_until, "created_at": self.created_at, "changed_at": self.changed_at}


# --------------------------------------------------------------------------- roles and names


def roles_file() -> Path:
    """The role file in force: ``HKOPS_ROLES_FILE``, else the one shipped with hkops."""
    return Path(os.environ.get("HKOPS_ROLES_FILE") or DEFAULT_ROLES_FILE)


def available_roles() -> dict[str, frozenset[str]]:
    """Role name -> permissions, from :func:`roles_file` (bad permission names refused with their line)."""
    return load_roles(roles_file())


def _name(value: str) -> str:
    name = str(value or "").strip().lower()
    if not 0 < len(name) <= 64 or not set(name) <= _NAME_CHARS or not name[0].isalnum():
        raise InvalidValue("user", value, "must be 1 to 64 lower-case letters, digits, '.', '_' or '-', "
                                          "starting with a letter or digit")
    return name


def _roles(value, known: dict[str, frozenset[str]]) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else list(value or [])
    names = [r.strip() for n in names for r in str(n).split(",") if r.strip()]
    if not names:
        raise InvalidValue("role", value, f"give at least one role; known: {', '.join(known)}")
    for role in names:
        if role not in known:
            raise InvalidValue("role", role, f"no such role in {roles_file().name}; known: {', '.join(known)}")
    return tuple(dict.fromkeys(names))


def _check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        # The value itself is never put into a message.
        raise InvalidValue("password", "(hidden)", f"must be at least {MIN_PASSWORD} characters")
    if password != password.strip() or "\n" in password:
        raise InvalidValue("password", "(hidden)", "must not start or end with blanks or hold a line break")
    return password


def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (after checking its length)."""
    return _hasher().hash(_check_password(password))


def _user(row) -> User:
    return User(id=row.id, name=row.name, roles=tuple(r for r in row.roles.split(",") if r), agent=row.agent_code,
                disabled=bool(row.disabled), locked_until=row.locked_until, created_at=row.created_at,
                changed_at=row.changed_at)


def _principal(row, known: dict[str, frozenset[str]] | None = None) -> Principal:
    """The principal of a users row (or any row with name, roles, agent_code and user id)."""
    known = available_roles() if known is None else known
    roles = tuple(r for r in row.roles.split(",") if r)
    # A role the operator has since removed from the role file grants nothing.
    granted = frozenset().union(*(known.get(r, frozenset()) for r in roles))
    user_id = row.user_id if "user_id" in row._fields else row.id
    return Principal(row.name, roles=roles, permissions=granted, agent=row.agent_code, user_id=user_id)


def _load(conn: Connection, name: str, *, lock: bool = False):
    stmt = select(users).where(users.c.name == name)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return conn.execute(stmt).first()


def _require_user(conn: Connection, name: str, *, lock: bool = False):
    row = _load(conn, _name(name), lock=lock)
    if row is None:
        raise NotFound(f"user {name!r} does not exist")
    return row


# --------------------------------------------------------------------------- managing users


def any_user(db: Store | Connection) -> bool:
    """Whether at least one user exists (if not, the installation is still being bootstrapped)."""
    if isinstance(db, Connection):
        return db.execute(select(users.c.id).limit(1)).first() is not None
    with db.read() as conn:
        return any_user(conn)


def add_user(db: Store, name: str, roles, *, actor: str, password: str | None = None, agent: str | None = None,
             reason: str | None = None) -> User:
    """Add user ``name`` with ``roles`` (names from the role file) and, for an agent user,
    ``agent`` (an existing agent code). The first user must be an admin. ``password`` may be
    None (the user cannot log in until :func:`set_password`)."""
    require(actor, USERS_ADMIN, f"add user {name}")
    name = _name(name)
    known = available_roles()
    roles = _roles(roles, known)
    if AGENT_ROLE in roles and not agent:
        raise InvalidValue("agent", "(none)", f"user {name} has the role {AGENT_ROLE!r}, so it needs --agent CODE "
                                           "(the agent whose subtree it sees)")
    if agent and AGENT_ROLE not in roles:
        raise InvalidValue("agent", agent, f"only a user with the role {AGENT_ROLE!r} has an agent")
    hashed = hash_password(password) if password is not None else None
    now = utc_now()
    with db.write() as conn:
        if agent:
            from hkops.agents.service import get_agent

            agent = get_agent(conn, agent).code
        if not any_user(conn) and not any(USERS_ADMIN in known[r] for r in roles):
            raise InvalidValue("role", ",".join(roles), "the first user must be an admin (--role admin): "
                                                        "only an admin can add the others")
        if _load(conn, name) is not None:
            raise Conflict(f"user {name!r} exists already")
        conn.execute(users.insert().values(name=name, password_hash=hashed, roles=",".join(roles), agent_code=agent,
                                           disabled=False, failed_logins=0, created_at=now, changed_at=now))
        record(conn, str(actor), [Event("user", name, "add", None, "active", reason,
                                        {"roles": list(roles), "agent": agent, "password set": hashed is not None})],
               at=now)
        return _user(_load(conn, name))


def _set_disabled(db: Store, name: str, disabled: bool, *, actor: str, reason: str | None) -> User:
    verb = "disable" if disabled else "enable"
    require(actor, USERS_ADMIN, f"{verb} user {name}")
    now = utc_now()
    with db.write() as conn:
        row = _require_user(conn, name, lock=True)
        if bool(row.disabled) == disabled:
            return _user(row)
        values = {"disabled": disabled, "changed_at": now}
        if not disabled:
            values.update(failed_logins=0, locked_until=None)
        conn.execute(users.update().where(users.c.id == row.id).values(**values))
        revoked = 0
        if disabled:
            revoked = conn.execute(user_tokens.update().where(user_tokens.c.user_id == row.id,
                                                              user_tokens.c.revoked_at.is_(None))
                                   .values(revoked_at=now)).rowcount
        record(conn, str(actor), [Event("user", row.name, verb, "disabled" if row.disabled else "active",
                                        "disabled" if disabled else "active", reason,
                                        {"tokens revoked": revoked} if revoked else None)], at=now)
        return _user(_load(conn, row.name))


def disable_user(db: Store, name: str, *, actor: str, reason: str | None = None) -> User:
    """Disable user ``name``: it can no longer log in, and its sessions and tokens are revoked."""
    return _set_disabled(db, name, True, actor=actor, reason=reason)


def enable_user(db: Store, name: str, *, actor: str, reason: str | None = None) -> User:
    """Enable a disabled user again (and lift a lock-out)."""
    return _set_disabled(db, name, False, actor=actor, reason=reason)


def set_password(db: Store, name: str, password: str, *, actor: str, reason: str | None = None) -> None:
    """Set the password of ``name`` (an admin for anyone, a user for itself); lifts a lock-out."""
    if not (is_principal(actor) and str(actor) == str(name).strip().lower()):
        require(actor, USERS_ADMIN, f"change the password of {name}")
    hashed = hash_password(password)
    now = utc_now()
    with db.write() as conn:
        row = _require_user(conn, name, lock=True)
        conn.execute(users.update().where(users.c.id == row.id)
                     .values(password_hash=hashed, failed_logins=0, locked_until=None, changed_at=now))
        record(conn, str(actor), [Event("user", row.name, "passwd", None, None, reason)], at=now)


def list_users(db: Store, *, actor: str) -> list[User]:
    """Every user, by name (no password hashes)."""
    require(actor, USERS_ADMIN, "list users")
    with db.read() as conn:
        return [_user(row) for row in conn.execute(select(users).order_by(users.c.name))]


def principal_of(db: Store | Connection, name: str) -> Principal:
    """The principal of user ``name`` without a password: for trusted in-process callers
    (tests, the demo), never for a door people come through."""
    if isinstance(db, Connection):
        return _principal(_require_user(db, name))
    with db.read() as conn:
        return principal_of(conn, name)


# --------------------------------------------------------------------------- logging in

_DUMMY_HASH: list[str] = []


def _lockout(conn: Connection) -> tuple[int, timedelta]:
    from hkops import settings

    return int(settings.get(conn, "login_max_failures")), parse_duration(settings.get(conn, "login_lockout"),
                                                                         "login_lockout")


def authenticate(db: Store, name: str, password: str, *, now: datetime | None = None) -> Principal:
    """The principal of ``name`` if ``password`` is right, else :class:`LoginRefused`.

    An unknown user and a wrong password get the same message. After ``login_max_failures``
    failures in a row the user is locked for ``login_lockout``; while locked even the right
    password is refused. Failures, lock-outs and logins of disabled users are audited (the
    password never is). A success resets the failure count."""
    from argon2.exceptions import InvalidHashError, VerificationError

    now = now or utc_now()
    hasher = _hasher()
    generic = "login refused: unknown user or wrong password"
    try:
        key = _name(name)
    except InvalidValue:
        key = None
    outcome: Principal | str
    with db.write() as conn:
        row = _load(conn, key, lock=True) if key else None
        if row is None:
            # Spend the same time as for a real user, so timing does not tell names apart.
            if not _DUMMY_HASH:
                _DUMMY_HASH.append(hasher.hash("not a password of anyone"))
            try:
                hasher.verify(_DUMMY_HASH[0], str(password))
            except VerificationError:
                pass
            record(conn, str(name)[:64] or "?", [Event("user", str(name)[:40] or "?", "login_failed", None, None,
                                                       "unknown user")], at=now)
            outcome = generic
        elif row.locked_until is not None and row.locked_until > now:
            record(conn, row.name, [Event("user", row.name, "login_failed", "locked", "locked",
                                          "locked after too many failed logins")], at=now)
            outcome = (f"login refused: {row.name} is locked after too many failed logins until "
                       f"{local(row.locked_until)} (or until an admin sets a new password)")
        else:
            try:
                ok = row.password_hash is not None and hasher.verify(row.password_hash, str(password))
            except (VerificationError, InvalidHashError):
                ok = False
            if not ok:
                limit, lock_for = _lockout(conn)
                failures = row.failed_logins + 1
                events = [Event("user", row.name, "login_failed", None, None, "wrong password",
                                {"failures in a row": failures})]
                if failures >= limit:
                    conn.execute(users.update().where(users.c.id == row.id)
                                 .values(failed_logins=0, locked_until=now + lock_for))
                    events.append(Event("user", row.name, "lock", "active", "locked",
                                        f"{failures} failed logins in a row", {"until": (now + lock_for).isoformat()}))
                else:
                    conn.execute(users.update().where(users.c.id == row.id).values(failed_logins=failures))
                record(conn, row.name, events, at=now)
                outcome = generic
            elif row.disabled:
                record(conn, row.name, [Event("user", row.name, "login_failed", "disabled", "disabled",
                                              "user disabled")], at=now)
                outcome = f"login refused: user {row.name} is disabled"
            else:
                values = {"failed_logins": 0, "locked_until": None}
                if hasher.check_needs_rehash(row.password_hash):
                    values["password_hash"] = hasher.hash(str(password))
                if row.failed_logins or row.locked_until is not None or len(values) > 2:
                    conn.execute(users.update().where(users.c.id == row.id).values(**values))
                outcome = _principal(row)
    if isinstance(outcome, Principal):
        return outcome
    raise LoginRefused(outcome)


def _new_token(kind: str) -> str:
    return _TOKEN_START[kind] + secrets.token_urlsafe(32)[:_RANDOM_CHARS]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _store_token(conn: Connection, user_id: int, kind: str, expires_at: datetime, now: datetime) -> str:
    token = _new_token(kind)
    conn.execute(user_tokens.insert().values(user_id=user_id, kind=kind, token_hash=_digest(token),
                                             prefix=token[:PREFIX_LENGTH], created_at=now, expires_at=expires_at))
    return token


def start_session(db: Store, principal: Principal, kind: str = "cli", ttl: timedelta | None = None, *,
                  now: datetime | None = None) -> str:
    """A new session for ``principal`` (from :func:`authenticate`): returns its token, which
    is shown to the client once and stored only as its SHA-256. ``kind`` is ``cli`` or
    ``console``; the session expires after ``ttl`` (12 h for the CLI, 8 h for a console)."""
    if kind not in SESSION_KINDS:
        raise InvalidValue("session kind", kind, f"must be one of {', '.join(SESSION_KINDS)}")
    if not is_principal(principal) or principal.user_id is None:
        raise InvalidValue("principal", str(principal), "a session starts only for a user who logged in")
    ttl = ttl or (CLI_SESSION_TTL if kind == "cli" else CONSOLE_SESSION_TTL)
    now = now or utc_now()
    with db.write() as conn:
        token = _store_token(conn, principal.user_id, kind, now + ttl, now)
        record(conn, principal.name, [Event("user", principal.name, "login", None, None, None,
                                            {"session": kind, "token": token[:PREFIX_LENGTH],
                                             "expires_at": (now + ttl).isoformat()})], at=now)
    return token


def issue_token(db: Store, name: str, *, actor: str, expires: str | timedelta = API_TOKEN_TTL,
                reason: str | None = None, now: datetime | None = None) -> tuple[str, dict]:
    """An API token for user ``name`` (for scripts and cron jobs, through ``HKOPS_TOKEN``):
    returns the token (shown once, stored hashed) and what is kept about it (prefix, expiry)."""
    require(actor, USERS_ADMIN, f"issue a token for {name}")
    ttl = parse_duration(expires, "expires") if isinstance(expires, str) else expires
    now = now or utc_now()
    with db.write() as conn:
        row = _require_user(conn, name)
        if row.disabled:
            raise Conflict(f"user {row.name} is disabled; enable it before issuing a token")
        token = _store_token(conn, row.id, API, now + ttl, now)
        info = {"user": row.name, "prefix": token[:PREFIX_LENGTH], "expires_at": now + ttl}
        record(conn, str(actor), [Event("user", row.name, "token", None, None, reason,
                                        {"token": info["prefix"], "expires_at": info["expires_at"].isoformat()})],
               at=now)
    return token, info


def principal_for_token(db: Store, token: str, *, kinds: tuple[str, ...] | None = None,
                        now: datetime | None = None) -> Principal:
    """The principal behind a session or API token, or :class:`TokenRefused` if the token is
    malformed or unknown (forged, truncated), expired, revoked, or its user is disabled.

    ``kinds`` limits what is accepted (a console's cookie: ``("console",)``); default: any.
    Call it outside a write transaction: it notes ``last_seen`` (at most once a minute)."""
    now = now or utc_now()
    token = str(token or "").strip()
    if len(token) != TOKEN_LENGTH or token[:4] not in set(_TOKEN_START.values()):
        raise TokenRefused("token refused: not an hkops session or API token (wrong form or length)")
    with db.read() as conn:
        row = conn.execute(select(user_tokens, users.c.name, users.c.roles, users.c.agent_code, users.c.disabled)
                           .join(users, users.c.id == user_tokens.c.user_id)
                           .where(user_tokens.c.token_hash == _digest(token))).first()
    what = "API token" if token.startswith(_TOKEN_START[API]) else "session"
    if row is None or (kinds is not None and row.kind not in kinds):
        raise TokenRefused(f"token refused: no such {what} (unknown, mistyped or forged)")
    if row.revoked_at is not None:
        raise TokenRefused(f"token refused: the {what} {row.prefix}… of {row.name} was revoked at "
                           f"{local(row.revoked_at)}")
    if row.expires_at <= now:
        raise TokenRefused(f"token refused: the {what} {row.prefix}… of {row.name} expired at "
                           f"{local(row.expires_at)}")
    if row.disabled:
        raise TokenRefused(f"token refused: user {row.name} is disabled")
    if row.last_seen is None or now - row.last_seen >= _SEEN_EVERY:
        with db.write() as conn:
            conn.execute(update(user_tokens).where(user_tokens.c.id == row.id).values(last_seen=now))
    return _principal(row)


def revoke_session(db: Store, token: str, *, now: datetime | None = None) -> bool:
    """End the session (or API token) ``token`` (logging out); False if it was not live."""
    now = now or utc_now()
    token = str(token or "").strip()
    with db.write() as conn:
        row = conn.execute(select(user_tokens.c.id, user_tokens.c.prefix, users.c.name)
                           .join(users, users.c.id == user_tokens.c.user_id)
                           .where(user_tokens.c.token_hash == _digest(token), user_tokens.c.revoked_at.is_(None))
                           ).first()
        if row is None:
            return False
        conn.execute(user_tokens.update().where(user_tokens.c.id == row.id).values(revoked_at=now))
        record(conn, row.name, [Event("user", row.name, "logout", None, None, None, {"token": row.prefix})], at=now)
    return True


def revoke_token(db: Store, prefix: str, *, actor: str, reason: str | None = None,
                 now: datetime | None = None) -> dict:
    """Revoke the live session or API token whose shown prefix is ``prefix`` (an admin's move)."""
    require(actor, USERS_ADMIN, f"revoke token {prefix}")
    prefix = str(prefix or "").strip().rstrip("…")
    if len(prefix) < PREFIX_LENGTH:
        raise InvalidValue("token", prefix, f"give the first {PREFIX_LENGTH} characters of the token "
                                            "(hkops users tokens lists them)")
    now = now or utc_now()
    with db.write() as conn:
        rows = conn.execute(select(user_tokens.c.id, user_tokens.c.kind, user_tokens.c.token_hash, users.c.name)
                            .join(users, users.c.id == user_tokens.c.user_id)
                            .where(user_tokens.c.prefix == prefix[:PREFIX_LENGTH],
                                   user_tokens.c.revoked_at.is_(None))).all()
        if len(prefix) > PREFIX_LENGTH:  # the whole token given: match exactly
            rows = [r for r in rows if r.token_hash == _digest(prefix)]
        if not rows:
            raise NotFound(f"no live token starts with {prefix[:PREFIX_LENGTH]!r}")
        if len(rows) > 1:
            raise Conflict(f"{len(rows)} live tokens start with {prefix[:PREFIX_LENGTH]!r}; give the whole token")
        row = rows[0]
        conn.execute(user_tokens.update().where(user_tokens.c.id == row.id).values(revoked_at=now))
        record(conn, str(actor), [Event("user", row.name, "revoke", None, None, reason,
                                        {"token": prefix[:PREFIX_LENGTH], "kind": row.kind})], at=now)
        return {"user": row.name, "prefix": prefix[:PREFIX_LENGTH], "kind": row.kind}


def list_tokens(db: Store, *, actor: str, name: str | None = None, live_only: bool = True,
                now: datetime | None = None) -> list[dict]:
    """Sessions and API tokens (prefix, kind, user, created, expires, revoked, last seen), never the tokens."""
    require(actor, USERS_ADMIN, "list tokens")
    now = now or utc_now()
    stmt = (select(users.c.name.label("user"), user_tokens.c.prefix, user_tokens.c.kind, user_tokens.c.created_at,
                   user_tokens.c.expires_at, user_tokens.c.revoked_at, user_tokens.c.last_seen)
            .join(users, users.c.id == user_tokens.c.user_id).order_by(user_tokens.c.id))
    if name:
        stmt = stmt.where(users.c.name == _name(name))
    if live_only:
        stmt = stmt.where(user_tokens.c.revoked_at.is_(None), user_tokens.c.expires_at > now)
    with db.read() as conn:
        return [dict(row) for row in conn.execute(stmt).mappings()]


def count_users(db: Store) -> int:
    """How many users exist."""
    with db.read() as conn:
        return conn.execute(select(func.count()).select_from(users)).scalar()


# --------------------------------------------------------------------------- the demo's users

#: Demo user -> role; each logs in with the password ``DEMO_PASSWORD_PREFIX + name``.
DEMO_ROLES = {"admin": "admin", "ops": "ops", "warehouse": "warehouse", "sales": "sales", "finance": "finance",
              "analyst": "analyst", "auditor": "auditor"}
DEMO_PASSWORD_PREFIX = "demo-"


def demo_password(name: str) -> str:
    """The documented password of demo user ``name`` (``demo-admin`` for ``admin``)."""
    return DEMO_PASSWORD_PREFIX + name


def add_demo_users(store: Store, actor: str = "demo") -> list[str]:
    """One user per role of the demo (see :data:`DEMO_ROLES`), plus agent users for the first
    level-1 agent of the demo tree and the first level-2 agent below it (named after the agent
    code in lower case, e.g. ``a-east`` and ``a-east-1``).
    Users that exist already are left alone. Returns the names added."""
    from hkops.agents.tables import agents

    with store.read() as conn:
        first = conn.execute(select(agents.c.id, agents.c.code).where(agents.c.level == 1)
                             .order_by(agents.c.code).limit(1)).first()
        below = first and conn.execute(select(agents.c.code).where(agents.c.parent_id == first.id)
                                       .order_by(agents.c.code).limit(1)).scalar()
        level1, level2 = (first.code if first else None), below
        existing = set(conn.execute(select(users.c.name)).scalars())
    wanted = [(name, role, None) for name, role in DEMO_ROLES.items()]
    wanted += [(code.lower(), AGENT_ROLE, code) for code in (level1, level2) if code]
    added = []
    for name, role, agent in wanted:
        if name not in existing:
            add_user(store, name, role, actor=actor, password=demo_password(name), agent=agent, reason="demo user")
            added.append(name)
    return added
