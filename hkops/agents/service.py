"""The agent tree (代理): agents under agents, any depth, each with its own stock location.

An agent without parent is level 1, one below it level 2, and so on. Moving an agent
re-levels its whole subtree; it never rewrites history (orders keep their own copy of
the chain they were sold through). Every change is audited (entity ``agent``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import Connection, literal, select

from hkops import audit
from hkops.agents.tables import agents
from hkops.audit import Event
from hkops.catalogue.service import MAX_PRICE_LEVEL, canonical_province, check_name
from hkops.errors import Conflict, InvalidValue, NotFound
from hkops.ids import parse_phone
from hkops.security.access import agent_scope, out_of_scope, require
from hkops.stock import service as stock
from hkops.stock.model import LocationKind
from hkops.store.engine import Store, unit_of_work
from hkops.timeutil import utc_now
from hkops.security import access

LOCATION_PREFIX = "AG-"
MAX_CODE = 32 - len(LOCATION_PREFIX)
_CHUNK = 900


@dataclass(frozen=True)
class Agent:
    """An agent and where it sits in the tree."""

    id: int
    code: str
    name: str
    parent_id: int | None
    #: The parent's code, None at the top.
    parent: str | None
    level: int
    price_level: int
    location: str
    province: str | None
    contact_name: str | None
    contact_phone: str | None
    active: bool
    created_at: datetime
    changed_at: datetime

    def as_dict(self) -> dict:
        return asdict(self)


_parents = agents.alias("parents")


def _select():
    return select(agents, _parents.c.code.label("parent_code")).select_from(
        agents.outerjoin(_parents, _parents.c.id == agents.c.parent_id))


def _agent(row) -> Agent:
    return Agent(id=row.id, code=row.code, name=row.name, parent_id=row.parent_id, parent=row.parent_code,
                 level=row.level, price_level=row.price_level, location=row.location, province=row.province,
                 contact_name=row.contact_name, contact_phone=row.contact_phone, active=bool(row.active),
                 created_at=row.created_at, changed_at=row.changed_at)


def _code(value: str, field: str = "agent") -> str:
    code = str(value or "").strip().upper()
    if not 0 < len(code) <= MAX_CODE or not all(c.isascii() and (c.isalnum() or c in "-_") for c in code):
        raise InvalidValue(field, value, f"must be 1 to {MAX_CODE} letters, digits, '-' or '_'")
    return code


def _load(conn: Connection, code_or_id: str | int, field: str = "agent", lock: bool = False) -> Agent:
    stmt = _select()
    if isinstance(code_or_id, int) and not isinstance(code_or_id, bool):
        stmt = stmt.where(agents.c.id == code_or_id)
    else:
        stmt = stmt.where(agents.c.code == _code(code_or_id, field))
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=agents)
    row = conn.execute(stmt).first()
    if row is None:
        raise NotFound(f"agent {code_or_id!r} does not exist")
    return _agent(row)


def get_agent(db: Store | Connection, code_or_id: str | int) -> Agent:
    """The agent with this code (text) or id (int); NotFound if there is none."""
    if isinstance(db, Connection):
        return _load(db, code_or_id)
    with db.read() as conn:
        return _load(conn, code_or_id)


def add_agent(db: Store | Connection, code: str, name: str, *, parent: str | None = None,
              price_level: int | None = None, province: str | None = None, contact_name: str | None = None,
              contact_phone: str | None = None, location: str | None = None, actor: str) -> Agent:
    """Add an agent under ``parent`` (at the top when None) with its stock location ``AG-<CODE>``
    (or the existing ``location``); its price level defaults to its level in the tree."""
    access.require(actor, "agents.write", f"add agent {code}", db)
    code = _code(code)
    name = check_name(name)
    if price_level is not None and (isinstance(price_level, bool) or not isinstance(price_level, int)
                                    or not 0 <= price_level <= MAX_PRICE_LEVEL):
        raise InvalidValue("price_level", price_level, f"must be a whole number from 0 to {MAX_PRICE_LEVEL}")
    province = canonical_province(province) if province else None
    contact_name = check_name(contact_name, "contact_name") if contact_name else None
    contact_phone = parse_phone(contact_phone, "contact_phone") if contact_phone else None
    with unit_of_work(db) as conn:
        above = _load(conn, parent, "parent", lock=True) if parent else None
        if above is not None and not above.active:
            raise Conflict(f"parent {above.code} is inactive")
        if conn.execute(select(agents.c.id).where(agents.c.code == code)).first():
            raise Conflict(f"agent {code} exists already")
        if location is not None:
            location = str(location).strip().upper()
            if stock.location_kind(conn, location) == LocationKind.VIRTUAL:
                raise InvalidValue("location", location, "is a virtual location")
        level = above.level + 1 if above else 1
        price_level = level if price_level is None else price_level
        now = utc_now()
        agent_id = conn.execute(agents.insert().values(
            code=code, name=name, parent_id=above.id if above else None, level=level, price_level=price_level,
            location=location or LOCATION_PREFIX + code, province=province, contact_name=contact_name,
            contact_phone=contact_phone, active=True, created_at=now, changed_at=now,
        )).inserted_primary_key[0]
        if location is None:
            stock.add_location(conn, LOCATION_PREFIX + code, name, LocationKind.AGENT.value, actor=actor,
                               province=province, agent_id=agent_id)
        audit.record(conn, actor, [Event("agent", code, "create", None, "active", None, {
            "parent": above.code if above else None, "level": level, "price_level": price_level,
            "location": location or LOCATION_PREFIX + code, "province": province})], now)
        return _load(conn, agent_id)


def move_agent(db: Store | Connection, code: str, new_parent: str | None, *, actor: str,
               reason: str | None = None) -> Agent:
    """Put agent ``code`` under ``new_parent`` (at the top when None) and re-level its subtree.

    Refused under itself or one of its own descendants (a cycle) and under an inactive agent.
    """
    access.require(actor, "agents.write", f"move agent {code}", db)
    with unit_of_work(db) as conn:
        if conn.dialect.name == "postgresql":
            # Moves and additions in the tree one at a time: two crossing moves cannot make a cycle.
            conn.exec_driver_sql("LOCK TABLE agents IN SHARE ROW EXCLUSIVE MODE")
        agent = _load(conn, code)
        above = _load(conn, new_parent, "parent") if new_parent else None
        if (above.id if above else None) == agent.parent_id:
            raise Conflict(f"agent {agent.code} is already {'under ' + above.code if above else 'at the top'}")
        children: dict[int, list[int]] = {}
        for row in conn.execute(select(agents.c.id, agents.c.parent_id)):
            children.setdefault(row.parent_id, []).append(row.id)
        subtree, pending = [], [agent.id]
        while pending:
            current = pending.pop()
            subtree.append(current)
            pending.extend(children.get(current, []))
        if above is not None and above.id in subtree:
            where = f"is {agent.code} itself" if above.id == agent.id else f"is below {agent.code}"
            raise InvalidValue("parent", above.code, f"{where}; the tree would have a cycle")
        if above is not None and not above.active:
            raise Conflict(f"parent {above.code} is inactive")
        shift = (above.level + 1 if above else 1) - agent.level
        now = utc_now()
        conn.execute(agents.update().where(agents.c.id == agent.id)
                     .values(parent_id=above.id if above else None, changed_at=now))
        events = [Event("agent", agent.code, "move", f"level {agent.level}", f"level {agent.level + shift}", reason,
                        {"from_parent": agent.parent, "to_parent": above.code if above else None,
                         "subtree": len(subtree)})]
        if shift:
            moved = []
            for start in range(0, len(subtree), _CHUNK):
                chunk = subtree[start:start + _CHUNK]
                conn.execute(agents.update().where(agents.c.id.in_(chunk))
                             .values(level=agents.c.level + literal(shift), changed_at=now))
                moved += conn.execute(select(agents.c.code, agents.c.level).where(agents.c.id.in_(chunk))).all()
            events += [Event("agent", row.code, "relevel", f"level {row.level - shift}", f"level {row.level}",
                             f"moved with {agent.code}") for row in moved if row.code != agent.code]
        audit.record(conn, actor, events, now)
        return _load(conn, agent.id)


def set_active(db: Store | Connection, code: str, active: bool, *, actor: str, reason: str | None = None) -> Agent:
    """Activate or deactivate agent ``code`` (an inactive agent takes no new orders)."""
    access.require(actor, "agents.write", f"{'activate' if active else 'deactivate'} agent {code}", db)
    with unit_of_work(db) as conn:
        agent = _load(conn, code, lock=True)
        if agent.active == active:
            raise Conflict(f"agent {agent.code} is already {'active' if active else 'inactive'}")
        now = utc_now()
        conn.execute(agents.update().where(agents.c.id == agent.id).values(active=active, changed_at=now))
        states = ("inactive", "active") if active else ("active", "inactive")
        audit.record(conn, actor, [Event("agent", agent.code, "activate" if active else "deactivate", *states,
                                         reason)], now)
        return _load(conn, agent.id)


def chain(conn: Connection, agent_id: int) -> list[dict]:
    """The agent and those above it, self first up to level 1: dicts of id, code, name, level, price_level."""
    up = select(agents.c.id, agents.c.parent_id).where(agents.c.id == agent_id).cte("up", recursive=True)
    up = up.union_all(select(agents.c.id, agents.c.parent_id).join(up, agents.c.id == up.c.parent_id))
    rows = conn.execute(
        select(agents.c.id, agents.c.code, agents.c.name, agents.c.level, agents.c.price_level)
        .join(up, up.c.id == agents.c.id).order_by(agents.c.level.desc())
    ).mappings().all()
    if not rows:
        raise NotFound(f"agent {agent_id!r} does not exist")
    return [dict(r) for r in rows]


def subtree_query(code: str):
    """A SELECT of the ids of agent ``code`` and every agent below it (a recursive query, set-wise)."""
    down = select(agents.c.id).where(agents.c.code == _code(code)).cte("down", recursive=True)
    down = down.union_all(select(agents.c.id).join(down, agents.c.parent_id == down.c.id))
    return select(down.c.id)


def subtree_ids(conn: Connection, code: str) -> set[int]:
    """Ids of agent ``code`` and every agent below it (empty if there is no such agent)."""
    return set(conn.execute(subtree_query(code)).scalars())


def scope_query(actor: str):
    """For an agent user, a SELECT of the agent ids it may see (its subtree); None for anyone else."""
    code = agent_scope(actor)
    return None if code is None else subtree_query(code)


def scope_locations(conn: Connection, actor: str) -> set[str] | None:
    """For an agent user, the stock locations of its subtree; None for anyone else."""
    ids = scope_query(actor)
    if ids is None:
        return None
    return set(conn.execute(select(agents.c.location).where(agents.c.id.in_(ids))).scalars())


def show_agent(db: Store | Connection, code: str, *, actor: str | None = None) -> tuple[Agent, list[dict]]:
    """Agent ``code`` with its chain up to level 1, for a reader: ``agents.read``, and an agent
    user sees only its own subtree (anything else is refused)."""
    require(actor, "agents.read", f"see agent {code}")
    with unit_of_work(db) if isinstance(db, Connection) else db.read() as conn:
        scope = scope_query(actor)
        try:
            agent = _load(conn, code)
        except NotFound:
            if scope is not None:
                raise out_of_scope(actor, f"see agent {code}") from None
            raise
        if scope is not None and agent.id not in set(conn.execute(scope).scalars()):
            raise out_of_scope(actor, f"see agent {code}")
        return agent, chain(conn, agent.id)


def agent_tree(db: Store | Connection, *, actor: str | None = None) -> list[Agent]:
    """Every agent in display order: depth first, siblings by code (an agent user: its subtree,
    its own agent at the top)."""
    require(actor, "agents.read", "see the agent tree")
    scope = scope_query(actor)

    def load(conn: Connection) -> list[Agent]:
        stmt = _select().order_by(agents.c.code)
        if scope is not None:
            stmt = stmt.where(agents.c.id.in_(scope))
        return [_agent(r) for r in conn.execute(stmt)]

    if isinstance(db, Connection):
        everyone = load(db)
    else:
        with db.read() as conn:
            everyone = load(conn)
    children: dict[int | None, list[Agent]] = {}
    for agent in everyone:
        children.setdefault(agent.parent_id, []).append(agent)
    ordered: list[Agent] = []
    seen = {agent.id for agent in everyone}
    tops = [agent for agent in everyone if agent.parent_id not in seen]
    pending = list(reversed(tops))
    while pending:
        agent = pending.pop()
        ordered.append(agent)
        pending.extend(reversed(children.get(agent.id, [])))
    return ordered
