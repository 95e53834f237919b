"""One view of everything: from a number, a card, an order, a subscriber or an agent to
all the others (DOMAIN.md section 1: the two systems meet on the order).

:func:`lookup` works out what ``value`` is, then follows the links: number ⇄ cards (by
``sims.msisdn``) ⇄ subscriber ⇄ orders (by msisdn, iccid, subscriber or agent) ⇄ agent
chain, shipment, payments and the card's stock moves. Resident IDs appear only masked.
"""

from __future__ import annotations

import json
import re

from sqlalchemy import Connection, func, or_, select

from hkops.agents.service import scope_query
from hkops.agents.tables import agents
from hkops.cards.tables import sim_batches, sims
from hkops.errors import InvalidValue, NotFound
from hkops.ids import looks_like_resident_id, mask_id_text, parse_resident_id
from hkops.numbers.tables import number_blocks, numbers
from hkops.orders.tables import orders, shipments
from hkops.commissions.tables import commission_entries
from hkops.payments.tables import payments
from hkops.security.access import out_of_scope, require, sees_personal_data
from hkops.stock.tables import stock_moves
from hkops.store.engine import Store
from hkops.subscribers.tables import subscriber_numbers, subscribers

#: How many orders an agent or a subscriber look-up lists (newest first).
ORDER_LIMIT = 20

_ORDER_COLUMNS = [c for c in orders.c if c.name not in ("resident_id_enc", "resident_id_hash")]
#: What an actor without ``subscribers.read`` (an analyst) does not see of orders and people.
_PERSONAL = ("customer_name", "contact", "ship_address", "name", "birth_year", "gender")
_SUBSCRIBER_COLUMNS = [subscribers.c[c] for c in ("id", "name", "id_masked", "birth_year", "gender", "contact",
                                                   "created_at")]


def classify(value: str) -> tuple[str, str]:
    """What ``value`` looks like: (kind, normalised value). Kinds: msisdn, iccid, imsi,
    resident_id, order, subscriber, agent."""
    text = (value or "").strip()
    digits = re.sub(r"[\s-]", "", text)
    if not text:
        raise InvalidValue("value", value, "give an MSISDN, ICCID, IMSI, order number, resident ID, "
                           "subscriber (S123) or agent code")
    if digits.startswith("+86"):
        digits = digits[3:]
    if digits.isdigit():
        if len(digits) == 13 and digits.startswith("86"):
            digits = digits[2:]
        if len(digits) == 11 and digits.startswith("1"):
            return "msisdn", digits
        if len(digits) in (19, 20) and digits.startswith("89"):
            return "iccid", digits
        if len(digits) == 15:
            return "imsi", digits
    if looks_like_resident_id(digits):
        try:
            return "resident_id", parse_resident_id(digits)
        except InvalidValue:
            pass  # a client's order id, or a mistyped ID: never echoed in clear (see _lookup)
    match = re.fullmatch(r"[Ss](?:ubscriber[: ]?)?(\d+)", text)
    if match:
        return "subscriber", match.group(1)
    if re.fullmatch(r"SO\d+", text.upper()):
        return "order", text.upper()
    return "agent_or_order", text


def lookup(db: Store | Connection, value: str, *, actor: str | None = None) -> dict:
    """The whole chain around ``value``; NotFound when nothing matches it.

    Needs ``orders.read``. An agent user sees only what hangs on orders of its own subtree (and
    agents of it): anything else is refused with one message whether it exists elsewhere or not.
    Without ``subscribers.read`` (an analyst) names, contacts and addresses are left out."""
    require(actor, "orders.read", "look up orders, numbers, cards and subscribers")
    if isinstance(db, Connection):
        return _scoped(db, value, actor)
    with db.read() as conn:
        return _scoped(conn, value, actor)


def _scoped(conn: Connection, value: str, actor: str | None) -> dict:
    scope = scope_query(actor)
    if scope is None:
        found = _lookup(conn, value)
    else:
        shown = mask_id_text(value) if looks_like_resident_id(value) else str(value).strip()
        try:
            found = _lookup(conn, value, scope)
        except NotFound:
            raise out_of_scope(actor, f"look up {shown!r}") from None
        if found is None:
            raise out_of_scope(actor, f"look up {shown!r}")
        if found["agent"] is not None:  # not the agents above the user's own
            mine = set(conn.execute(scope).scalars())
            found["agent"]["parents"] = [p for p in found["agent"]["parents"] if p["id"] in mine]
    if not sees_personal_data(actor):
        for row in found["orders"]:
            for column in _PERSONAL:
                row.pop(column, None)
        found["subscribers"] = [{k: v for k, v in row.items() if k not in _PERSONAL} for row in found["subscribers"]]
    return found


def _lookup(conn: Connection, value: str, scope=None) -> dict | None:
    """The look-up; with ``scope`` (a SELECT of the agent ids an agent user sees) only orders of
    those agents, and only the numbers, cards and people on them; None when none is in scope."""
    kind, key = classify(value)
    msisdns: set[int] = set()
    iccids: set[str] = set()
    subscriber_ids: set[int] = set()
    order_filter = None
    agent = None
    if kind == "msisdn":
        msisdns.add(int(key))
        order_filter = orders.c.msisdn == int(key)
    elif kind in ("iccid", "imsi"):
        column = sims.c.iccid if kind == "iccid" else sims.c.imsi
        row = conn.execute(select(sims.c.iccid, sims.c.msisdn).where(column == key)).first()
        if row is None:
            raise NotFound(f"no SIM card with {kind.upper()} {key}")
        iccids.add(row.iccid)
        order_filter = orders.c.iccid == row.iccid
    elif kind in ("resident_id", "subscriber"):
        subscriber_id = _subscriber_id(conn, kind, key)
        subscriber_ids.add(subscriber_id)
        order_filter = orders.c.subscriber_id == subscriber_id
    elif kind == "order":
        order_filter = orders.c.number == key
    else:
        agent = conn.execute(select(agents).where(agents.c.code == key.upper())).mappings().first()
        if agent is not None and scope is not None and agent["id"] not in set(conn.execute(scope).scalars()):
            return None
        if agent is not None:
            kind, order_filter = "agent", orders.c.agent_id == agent["id"]
        else:
            kind, order_filter = "order", orders.c.client_order_id == key

    if scope is not None:
        order_filter = order_filter & orders.c.agent_id.in_(scope)
    found_orders = [dict(r) for r in conn.execute(
        select(*_ORDER_COLUMNS).where(order_filter).order_by(orders.c.id.desc()).limit(ORDER_LIMIT)).mappings()]
    if scope is not None and kind != "agent":
        if not found_orders:
            return None
        # Only what the agent's own orders name: not other holders of the same number or card.
        msisdns = {o["msisdn"] for o in found_orders} - {None}
        iccids = {o["iccid"] for o in found_orders} - {None}
        subscriber_ids = {o["subscriber_id"] for o in found_orders} - {None}
    if kind == "order" and not found_orders:
        shown = mask_id_text(value) if looks_like_resident_id(value) else value
        raise NotFound(f"nothing known as {shown!r}: not a number, card, order, subscriber or agent")
    if kind != "agent" and scope is None:
        for order in found_orders:
            msisdns |= {order["msisdn"]} - {None}
            iccids |= {order["iccid"]} - {None}
            subscriber_ids |= {order["subscriber_id"]} - {None}
        # A number leads to its cards and holder; a card to its number and holder.
        for row in conn.execute(select(sims.c.iccid, sims.c.msisdn, sims.c.subscriber_id).where(or_(
                sims.c.iccid.in_(iccids), sims.c.msisdn.in_(msisdns)))):
            iccids.add(row.iccid)
            msisdns |= {row.msisdn} - {None}
            subscriber_ids |= {row.subscriber_id} - {None}
        if kind == "subscriber" or kind == "resident_id":
            msisdns |= set(conn.execute(select(subscriber_numbers.c.msisdn).where(
                subscriber_numbers.c.subscriber_id.in_(subscriber_ids))).scalars())
            iccids |= set(conn.execute(select(sims.c.iccid).where(sims.c.msisdn.in_(msisdns))).scalars())

    result = {
        # A resident ID asked for is echoed only masked.
        "query": mask_id_text(key) if kind == "resident_id" else value,
        "kind": kind,
        "numbers": _numbers(conn, msisdns),
        "cards": _cards(conn, iccids),
        "subscribers": [dict(r) for r in conn.execute(
            select(*_SUBSCRIBER_COLUMNS).where(subscribers.c.id.in_(subscriber_ids)).order_by(subscribers.c.id)
        ).mappings()],
        "orders": [_order_chain(conn, order, scope) for order in found_orders],
        "agent": _agent(conn, agent) if agent is not None else None,
        "stock_moves": [dict(r) for r in conn.execute(
            select(stock_moves.c.iccid, stock_moves.c.from_location, stock_moves.c.to_location, stock_moves.c.kind,
                   stock_moves.c.document, stock_moves.c.actor, stock_moves.c.at)
            .where(stock_moves.c.iccid.in_(iccids)).order_by(stock_moves.c.id)).mappings()] if iccids else [],
    }
    if kind in ("msisdn",) and not (result["numbers"] or result["cards"] or result["orders"]):
        raise NotFound(f"{key} is not in the number pool")
    return result


def _subscriber_id(conn: Connection, kind: str, key: str) -> int:
    if kind == "subscriber":
        row = conn.execute(select(subscribers.c.id).where(subscribers.c.id == int(key))).first()
        if row is None:
            raise NotFound(f"subscriber {key} does not exist")
        return row.id
    from hkops.subscribers.service import resident_id_hash

    digest = resident_id_hash(conn, key)
    row = conn.execute(select(subscribers.c.id).where(subscribers.c.resident_id_hash == digest)).first() \
        if digest else None
    if row is None:
        raise NotFound("no subscriber is registered with that resident ID")
    return row.id


def _numbers(conn: Connection, msisdns: set[int]) -> list[dict]:
    if not msisdns:
        return []
    rows = conn.execute(
        select(numbers.c.msisdn, numbers.c.state, numbers.c.grade, numbers.c.level, numbers.c.price_fen,
               numbers.c.holder, numbers.c.reserved_until, numbers.c.quarantine_until, number_blocks.c.carrier,
               number_blocks.c.province, number_blocks.c.city)
        .join(number_blocks, number_blocks.c.prefix == numbers.c.msisdn // 10_000, isouter=True)
        .where(numbers.c.msisdn.in_(msisdns)).order_by(numbers.c.msisdn)).mappings()
    return [dict(r) for r in rows]


def _cards(conn: Connection, iccids: set[str]) -> list[dict]:
    if not iccids:
        return []
    rows = conn.execute(
        select(sims.c.iccid, sims.c.imsi, sims.c.state, sims.c.location, sims.c.msisdn, sims.c.subscriber_id,
               sims.c.network_sync, sims.c.pending_action, sims.c.activated_at, sims.c.replaced_by,
               sims.c.swapped_at, sim_batches.c.carrier, sim_batches.c.name.label("batch"), sim_batches.c.product,
               sim_batches.c.purchase_order)
        .join(sim_batches, sim_batches.c.id == sims.c.batch_id).where(sims.c.iccid.in_(iccids))
        .order_by(sims.c.iccid)).mappings()
    return [dict(r) for r in rows]


def _order_chain(conn: Connection, order: dict, scope=None) -> dict:
    """The order with its shipments, payments and commission entries (for an agent user, ``scope``,
    only the entries of its own subtree: never what the agents above it earn)."""
    order = dict(order)
    order["agent_chain"] = json.loads(order["agent_chain"]) if order.get("agent_chain") else []
    order["shipments"] = [dict(r) for r in conn.execute(
        select(shipments.c.courier, shipments.c.tracking_no, shipments.c.state, shipments.c.created_at,
               shipments.c.changed_at).where(shipments.c.order_id == order["id"]).order_by(shipments.c.id)).mappings()]
    order["payments"] = [dict(r) for r in conn.execute(
        select(payments.c.kind, payments.c.amount_fen, payments.c.method, payments.c.reference, payments.c.at)
        .where(payments.c.order_id == order["id"]).order_by(payments.c.id)).mappings()]
    order["paid_fen"] = sum(p["amount_fen"] if p["kind"] == "collection" else -p["amount_fen"]
                            for p in order["payments"])
    entries = (select(commission_entries.c.event, commission_entries.c.month, agents.c.code.label("agent"),
                      commission_entries.c.position, commission_entries.c.kind, commission_entries.c.amount_fen,
                      commission_entries.c.state, commission_entries.c.batch_id)
               .join(agents, agents.c.id == commission_entries.c.agent_id)
               .where(commission_entries.c.order_id == order["id"]).order_by(commission_entries.c.id))
    if scope is not None:
        entries = entries.where(commission_entries.c.agent_id.in_(scope))
    order["commissions"] = [dict(r) for r in conn.execute(entries).mappings()]
    return order


def _agent(conn: Connection, agent) -> dict:
    """The agent with its current chain up to level 1 and its direct sub-agents."""
    chain, parent_id, seen = [], agent["parent_id"], {agent["id"]}
    while parent_id is not None and parent_id not in seen:
        seen.add(parent_id)
        parent = conn.execute(select(agents.c.id, agents.c.code, agents.c.name, agents.c.level, agents.c.parent_id)
                              .where(agents.c.id == parent_id)).mappings().first()
        if parent is None:
            break
        chain.append({k: parent[k] for k in ("id", "code", "name", "level")})
        parent_id = parent["parent_id"]
    children = [r.code for r in conn.execute(select(agents.c.code).where(agents.c.parent_id == agent["id"])
                                             .order_by(agents.c.code))]
    on_hand = conn.execute(select(sims.c.state, sims.c.iccid).where(sims.c.location == agent["location"])).all()
    return {**{k: agent[k] for k in ("id", "code", "name", "level", "price_level", "location", "province",
                                     "contact_name", "active")},
            "parents": chain, "children": children,
            "commissions_by_state": {state: int(fen) for state, fen in conn.execute(
                select(commission_entries.c.state, func.sum(commission_entries.c.amount_fen))
                .where(commission_entries.c.agent_id == agent["id"]).group_by(commission_entries.c.state))},
            "cards_at_location": len(on_hand),
            "cards_in_stock": sum(1 for r in on_hand if r.state == "in_stock")}


def format_lookup(found: dict) -> str:
    """The look-up as text for a person: one section per kind of thing found."""
    from hkops.ids import display_msisdn
    from hkops.money import format_yuan
    from hkops.timeutil import local

    lines = [f"{found['query']}  ({found['kind']})"]
    for n in found["numbers"]:
        lines.append(f"number   {display_msisdn(n['msisdn'])}  {n['state']}  grade {n['grade']}  "
                     f"{n['carrier'] or '-'} {n['province'] or ''}  holder {n['holder'] or '-'}")
    for c in found["cards"]:
        lines.append(f"card     {c['iccid']}  {c['state']}  at {c['location'] or '-'}  number {c['msisdn'] or '-'}  "
                     f"HLR {c['network_sync']}{' pending ' + c['pending_action'] if c['pending_action'] else ''}  "
                     f"product {c['product'] or '-'}  batch {c['batch']}")
    for s in found["subscribers"]:
        lines.append(f"person   S{s['id']}  {s.get('name', '-')}  ID {s['id_masked']}  contact {s.get('contact', '-')}")
    for o in found["orders"]:
        chain = " ← ".join(a["code"] for a in o["agent_chain"]) or o["channel"]
        lines.append(f"order    {o['number']}  {o['state']}  plan {o['plan']}  total {format_yuan(o['total_fen'])}  "
                     f"paid {format_yuan(o['paid_fen'])}  via {chain}  placed {local(o['created_at'])}")
        for s in o["shipments"]:
            lines.append(f"  shipment {s['courier']} {s['tracking_no']}  {s['state']}  {local(s['changed_at'])}")
        for p in o["payments"]:
            lines.append(f"  payment  {p['kind']} {format_yuan(p['amount_fen'])}  {p['method']} {p['reference']}  "
                         f"{local(p['at'])}")
        for c in o["commissions"]:
            lines.append(f"  commission {c['event']} m{c['month']}  {c['agent']} #{c['position']}  {c['kind']} "
                         f"{format_yuan(c['amount_fen'])}  {c['state']}")
    agent = found["agent"]
    if agent:
        parents = " ← ".join(p["code"] for p in agent["parents"]) or "(top level)"
        lines.append(f"agent    {agent['code']}  {agent['name']}  level {agent['level']}  price level "
                     f"{agent['price_level']}  under {parents}  sub-agents {', '.join(agent['children']) or '-'}")
        lines.append(f"  stock    {agent['location']}: {agent['cards_in_stock']} in stock "
                     f"({agent['cards_at_location']} cards there)")
        if agent["commissions_by_state"]:
            lines.append("  commissions " + ", ".join(f"{state} {format_yuan(fen)}"
                                                      for state, fen in sorted(agent["commissions_by_state"].items())))
    for m in found["stock_moves"]:
        lines.append(f"move     {m['iccid']}  {m['from_location']} → {m['to_location']}  {m['kind']}  "
                     f"{m['document']}  by {m['actor']}  {local(m['at'])}")
    return "\n".join(lines)
