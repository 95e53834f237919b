"""Order intake (DOMAIN.md section 5): an order asked for is checked, then refused or approved.

An order is placed by an agent (channel = the agent's code) or by a customer directly
(channel ``direct``). Intake checks the customer (real-name ID, age, 一证五号, blacklist,
ship-to province) and the number, and either writes nothing and says every reason, or
approves the order: the subscriber is registered, the number reserved for the order, the
price quoted at the channel's price level and the agent chain copied onto the order. What
happens after approval (payment, allocation, shipping, activation, cancellation, return) is
:mod:`hkops.orders.service`.

Intake is set-wise: :func:`create_orders` takes a whole batch (a channel feed, an order file:
:func:`import_orders`) in a handful of queries; :func:`create_order` is the same code for one.
:func:`check_order` runs intake's checks without writing anything (the orders console's live
checks); :func:`submit_order` puts a stored draft through the same checks.

Each use case is one unit of work and audits every state change (entity ``order``, subject
the order number).
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.exc import IntegrityError

from hkops import audit
from hkops.agents.tables import agents as agents_table
from hkops.audit import Event
from hkops.catalogue import service as catalogue
from hkops.catalogue.tables import plan_prices, sim_products
from hkops.errors import Conflict, InvalidFile, InvalidValue, InvalidValues, NotFound
from hkops.ids import mask_id_text, parse_msisdn, parse_phone, parse_resident_id
from hkops.numbers import service as numbers
from hkops.numbers.model import NumberState
from hkops.orders.model import OrderState, order_target
from hkops.orders.records import (
    DIRECT,
    Order,
    check_channel,
    check_text,
    chunks,
    load_order_row,
    order_event,
    order_from_row,
)
from hkops.orders.tables import orders
from hkops.security.crypto import Keyring, load_keyring
from hkops.stock.model import LocationKind
from hkops.stock.tables import stock_locations
from hkops.store.engine import Store, unit_of_work
from hkops.subscribers import service as subscribers
from hkops.subscribers.service import NUMBERS_PER_CARRIER
from hkops.textfiles import csv_rows
from hkops.timeutil import SHANGHAI, utc_now
from hkops.security import access

O = OrderState
#: An approved order holds its number until it is paid (then assigned), cancelled, or expires unpaid after the
#: setting order_payment_ttl (hkops.orders.service.expire_unpaid releases it then).
NUMBER_HOLD = timedelta(days=3650)
_SEALED_CONTEXT = "orders.resident_id:{}"


# ---------------------------------------------------------------- intake: what is asked for


@dataclass(frozen=True)
class OrderRequest:
    """One order asked for, with the values :func:`create_order` takes. ``msisdn`` None: the
    first available plain number of the plan's carrier (the ship-to province's blocks first);
    ``product`` None: the carrier's first active product; ``location`` None: the agent's stock,
    or the first warehouse for direct orders; ``submit`` False: a draft, checked for form only."""

    channel: str
    plan: str
    customer_name: str
    resident_id: str = field(repr=False)
    contact: str
    ship_province: str
    ship_address: str
    msisdn: str | None = None
    product: str | None = None
    client_order_id: str | None = None
    location: str | None = None
    submit: bool = True


@dataclass(frozen=True)
class OrderCheck:
    """What :func:`check_order` found: every problem, the number the order would get and its
    quote; ``blacklisted`` (the reason) and ``held`` (numbers of the plan's carrier the person
    holds, bound or on open orders) once the resident ID and the plan are good enough to look."""

    problems: list[InvalidValue]
    msisdn: str | None
    quote: catalogue.Quote | None
    blacklisted: str | None = None
    held: int | None = None


@dataclass(frozen=True)
class _Seller:
    """A selling agent as intake needs it; ``chain`` is the JSON of :func:`hkops.agents.service.chain`."""

    id: int
    code: str
    active: bool
    location: str
    price_level: int
    chain: str


@dataclass
class _Item:
    """One request on its way through the checks: its values as checked and what was found."""

    request: OrderRequest
    #: Where the request stands in the batch or file (problems name it); None for a single order.
    line: int | None
    problems: list[InvalidValue] = field(default_factory=list)
    channel: str | None = None
    client_order_id: str | None = None
    customer_name: str | None = None
    rid: str | None = field(default=None, repr=False)
    contact: str | None = None
    province: str | None = None
    address: str | None = None
    #: The number asked for.
    wanted: str | None = None
    plan: catalogue.Plan | None = None
    agent: _Seller | None = None
    product: str | None = None
    location: str | None = None
    digest: str | None = field(default=None, repr=False)
    #: The order an earlier intake with this client order id made (the request is a retry).
    retry: Order | None = None
    #: Why the client order id cannot be reused (it was used with other values).
    conflict: str | None = None
    subscriber_id: int | None = None
    blacklisted: str | None = None
    held: int | None = None
    #: The number the order gets, its row (stored state, fees) and the quote.
    msisdn: str | None = None
    number_row: object = None
    quote: catalogue.Quote | None = None

    def refuse(self, field_name: str, value: object, reason: str) -> None:
        self.problems.append(InvalidValue(field_name, value, reason, line=self.line))

    def attempt(self, check, *args):
        """``check(*args)``, or None with its InvalidValue noted as a problem of this request."""
        try:
            return check(*args)
        except InvalidValue as exc:
            self.refuse(exc.field, exc.value, exc.reason)
            return None

    @property
    def to_approve(self) -> bool:
        return self.request.submit and self.retry is None and self.conflict is None

    @property
    def masked(self) -> str:
        return _mask(self.rid)


def _mask(rid: str) -> str:
    """:func:`hkops.ids.mask_resident_id` of an ID already parsed."""
    return mask_id_text(rid)


def _client_id(value: str | None) -> str | None:
    if value is None:
        return None
    text_value = str(value).strip()
    if not 0 < len(text_value) <= 64:
        raise InvalidValue("client_order_id", value, "must be 1 to 64 characters")
    return text_value


def _read_form(request: OrderRequest, line: int | None) -> _Item:
    """The request's values checked for form (no database)."""
    item = _Item(request, line)
    item.channel = item.attempt(check_channel, request.channel)
    item.client_order_id = item.attempt(_client_id, request.client_order_id)
    item.customer_name = item.attempt(check_text, request.customer_name, "customer_name", 64)
    item.rid = item.attempt(parse_resident_id, request.resident_id)
    item.contact = item.attempt(parse_phone, request.contact)
    item.province = item.attempt(catalogue.canonical_province, request.ship_province, "ship_province")
    item.address = item.attempt(check_text, request.ship_address, "ship_address", 200)
    if request.msisdn is not None:
        item.wanted = item.attempt(parse_msisdn, request.msisdn)
    return item


# Statements of the hot path, built once (SQLAlchemy then only binds the values).
_FIRST_WAREHOUSE = (select(stock_locations.c.code).where(stock_locations.c.kind == LocationKind.WAREHOUSE.value)
                    .order_by(stock_locations.c.created_at, stock_locations.c.code).limit(1))
_FIRST_PRODUCT = (select(sim_products.c.code).where(sim_products.c.carrier == bindparam("carrier"),
                                                    sim_products.c.active.is_(True))
                  .order_by(sim_products.c.code).limit(1))
_SELLING = (LocationKind.WAREHOUSE.value, LocationKind.AGENT.value)
_LOCATION_KINDS = select(stock_locations.c.code, stock_locations.c.kind).where(
    stock_locations.c.code.in_(bindparam("codes", expanding=True)))


def _sellers(conn: Connection, codes: set[str]) -> dict[str, _Seller]:
    """The agents with these codes, each with its chain up to level 1 (two queries for all)."""
    if not codes:
        return {}
    found = {}
    for chunk in chunks(sorted(codes)):
        found.update({r.code: r for r in conn.execute(
            select(agents_table.c.id, agents_table.c.code, agents_table.c.active, agents_table.c.location,
                   agents_table.c.price_level).where(agents_table.c.code.in_(chunk)))})
    chains: dict[int, list[dict]] = {}
    for chunk in chunks(sorted(r.id for r in found.values())):
        up = (select(agents_table.c.id.label("start"), agents_table.c.id, agents_table.c.parent_id)
              .where(agents_table.c.id.in_(chunk)).cte("up", recursive=True))
        up = up.union_all(select(up.c.start, agents_table.c.id, agents_table.c.parent_id)
                          .join(up, agents_table.c.id == up.c.parent_id))
        for row in conn.execute(select(up.c.start, agents_table.c.id, agents_table.c.code, agents_table.c.name,
                                       agents_table.c.level, agents_table.c.price_level)
                                .join(up, up.c.id == agents_table.c.id)
                                .order_by(up.c.start, agents_table.c.level.desc())).mappings():
            chains.setdefault(row["start"], []).append({k: row[k] for k in ("id", "code", "name", "level",
                                                                             "price_level")})
    return {code: _Seller(r.id, r.code, bool(r.active), r.location, r.price_level,
                          json.dumps(chains.get(r.id, []), ensure_ascii=False)) for code, r in found.items()}


def _resolve(conn: Connection, items: list[_Item]) -> None:
    """Plans, agents, locations and products of the requests, each looked up once for all."""
    plans: dict[str, catalogue.Plan | NotFound] = {}
    for code in {str(i.request.plan or "").strip().upper() for i in items}:
        try:
            plans[code] = catalogue.get_plan(conn, code)
        except NotFound as exc:
            plans[code] = exc
    sellers = _sellers(conn, {i.channel for i in items if i.channel not in (None, DIRECT)})
    named = sorted({str(i.request.location).strip().upper() for i in items if i.request.location is not None})
    kinds = {}
    for chunk in chunks(named):
        kinds.update(conn.execute(_LOCATION_KINDS, {"codes": chunk}).all())
    warehouse = []
    products: dict[str, catalogue.Product | NotFound | None] = {}
    for item in items:
        request = item.request
        plan = plans[str(request.plan or "").strip().upper()]
        if isinstance(plan, NotFound):
            item.refuse("plan", request.plan, str(plan))
        else:
            item.plan = plan
            if not plan.active:
                item.refuse("plan", plan.code, "is no longer sold")
        if item.channel not in (None, DIRECT):
            item.agent = sellers.get(item.channel)
            if item.agent is None:
                item.refuse("channel", item.channel, "is neither 'direct' nor an agent's code")
            elif not item.agent.active:
                item.refuse("channel", item.channel, f"agent {item.agent.code} is inactive")
        if request.location is not None:
            item.location = str(request.location).strip().upper()
            if kinds.get(item.location) not in _SELLING:
                item.refuse("location", item.location, "is not a warehouse or agent stock location")
        elif item.agent is not None:
            item.location = item.agent.location
        elif item.channel == DIRECT:
            if not warehouse:
                warehouse.append(conn.execute(_FIRST_WAREHOUSE).scalar())
            item.location = warehouse[0]
            if item.location is None:
                item.refuse("location", "", "no warehouse exists to sell direct orders from")
        if item.plan is not None:
            item.product = _product(conn, item, products)


def _product(conn: Connection, item: _Item, products: dict) -> str | None:
    """The product asked for (of the plan's carrier), else the first active product of that carrier."""
    plan, asked = item.plan, item.request.product
    if asked is None:
        key = f"first of {plan.carrier}"
        if key not in products:
            products[key] = conn.execute(_FIRST_PRODUCT, {"carrier": plan.carrier}).scalar()
        if products[key] is None:
            item.refuse("product", "", f"no active {plan.carrier} SIM product exists")
        return products[key]
    code = str(asked).strip().upper()
    if code not in products:
        try:
            products[code] = catalogue.get_product(conn, code)
        except NotFound as exc:
            products[code] = exc
    found = products[code]
    if isinstance(found, NotFound):
        item.refuse("product", asked, str(found))
        return None
    if found.carrier != plan.carrier:
        item.refuse("product", found.code, f"is a {found.carrier} SIM; plan {plan.code} is {plan.carrier}")
    elif not found.active:
        item.refuse("product", found.code, "is no longer sold")
    return found.code


_BY_CLIENT_ID = select(orders).where(orders.c.channel == bindparam("channel"),
                                     orders.c.client_order_id == bindparam("client_id"))
_BY_CLIENT_IDS = select(orders).where(orders.c.client_order_id.in_(bindparam("client_ids", expanding=True)))


def _find_retries(conn: Connection, items: list[_Item]) -> None:
    """Requests whose (channel, client order id) has an order already: a retry gets that order,
    a request with other values under the id a conflict. One query for all."""
    first: dict[tuple[str, str], _Item] = {}
    for item in items:
        if item.client_order_id is None or item.problems:
            continue
        key = (item.channel, item.client_order_id)
        if key in first:
            item.refuse("client_order_id", item.client_order_id, f"repeats line {first[key].line}")
        else:
            first[key] = item
    for chunk in chunks(sorted({client_id for _, client_id in first})):
        for row in conn.execute(_BY_CLIENT_IDS, {"client_ids": chunk}):
            item = first.get((row.channel, row.client_order_id))
            if item is None:
                continue
            differ = _differences(row, item)
            if differ:
                item.conflict = (f"client order id {row.client_order_id} of channel {row.channel} was used for order "
                                 f"{row.number} with another {', '.join(differ)}; nothing written")
            else:
                item.retry = order_from_row(row, created=False)


def _differences(row, item: _Item) -> list[str]:
    """What a retried request asks for that the order made for its client order id does not have."""
    wanted = {"plan": item.plan.code, "customer_name": item.customer_name, "resident_id": item.digest,
              "contact": item.contact, "ship_province": item.province, "ship_address": item.address}
    have = {"plan": row.plan, "customer_name": row.customer_name, "resident_id": row.resident_id_hash,
            "contact": row.contact, "ship_province": row.ship_province, "ship_address": row.ship_address}
    if item.request.msisdn is not None:
        wanted["msisdn"], have["msisdn"] = item.wanted, str(row.msisdn) if row.msisdn else None
    for name in ("product", "location"):
        if getattr(item.request, name) is not None:
            wanted[name], have[name] = getattr(item, name), getattr(row, name)
    return [name for name in wanted if wanted[name] != have[name]]


# ---------------------------------------------------------------- intake: the checks


def _lock_people(conn: Connection, digests: list[str]) -> None:
    """The 一证五号 lock of these people (:func:`hkops.subscribers.service.lock_people`)."""
    subscribers.lock_people(conn, digests)


def _verify(conn: Connection, items: list[_Item], now: datetime, *, lock: bool) -> None:
    """Every reason the requests to approve cannot be, set-wise: the customer (age, province,
    blacklist, name, 一证五号 counting bound numbers, open orders and earlier requests of the
    batch), the number (asked for, or picked from the pool) and the quote."""
    todo = [i for i in items if i.to_approve and i.rid and i.plan]
    if not todo:
        return
    today = now.astimezone(SHANGHAI).date()
    digests = sorted({i.digest for i in todo if i.digest})
    if lock:
        _lock_people(conn, digests)
    listed = subscribers.blacklisted(conn, digests)
    people = subscribers.registered(conn, digests)
    held = subscribers.count_numbers_many(conn, digests)
    earlier: Counter = Counter()
    named: dict[str, _Item] = {}
    for item in todo:
        plan, masked = item.plan, item.masked
        if item.province:
            for reason in catalogue.customer_problems(plan, subscribers.birth_date(item.rid), item.province, today):
                item.refuse("customer", masked, reason)
        item.blacklisted = listed.get(item.digest)
        if item.blacklisted:
            item.refuse("resident_id", masked, f"is blacklisted ({item.blacklisted})")
        person = people.get(item.digest)
        if person is not None:
            item.subscriber_id = person.id
            if item.customer_name and person.name != item.customer_name:
                item.refuse("customer_name", item.customer_name,
                            f"resident ID {masked} is registered under another name")
        elif item.customer_name:
            same = named.setdefault(item.digest, item)
            if same.customer_name != item.customer_name:
                item.refuse("customer_name", item.customer_name, f"resident ID {masked} has another name on line "
                                                                 f"{same.line}")
        key = (item.digest, plan.carrier)
        item.held = held.get(key, 0) + earlier[key]
        if item.held >= NUMBERS_PER_CARRIER:
            batch = ", counting earlier lines" if earlier[key] else ""
            item.refuse("resident_id", masked, f"already holds {item.held} {plan.carrier} numbers (bound or on open "
                                               f"orders{batch}); one person may hold at most {NUMBERS_PER_CARRIER} "
                                               "(一证五号)")
        earlier[key] += 1
    _choose_numbers(conn, todo, now, lock=lock)
    _quote(conn, todo)


def _choose_numbers(conn: Connection, items: list[_Item], now: datetime, *, lock: bool) -> None:
    """The numbers asked for, checked in one query (locked on PostgreSQL); the others picked from
    the pool by :func:`hkops.numbers.service.pick_plain_numbers`."""
    asked: dict[int, _Item] = {}
    for item in items:
        if item.wanted is None:
            continue
        if int(item.wanted) in asked:
            item.refuse("msisdn", item.wanted, f"is asked for by line {asked[int(item.wanted)].line} too")
        else:
            asked[int(item.wanted)] = item
    found = numbers.numbers_with_fees(conn, list(asked), lock=lock)
    for msisdn, item in asked.items():
        row = found.get(msisdn)
        if row is None:
            item.refuse("msisdn", item.wanted, "is not in the number pool")
        elif row["block_carrier"] != item.plan.carrier:
            item.refuse("msisdn", item.wanted, f"is a {row['block_carrier']} number; the plan is {item.plan.carrier}")
        elif (state := numbers.record_from_row(row).effective_state(now)) != NumberState.AVAILABLE:
            held = f" (held by {row['holder']})" if row["holder"] else ""
            item.refuse("msisdn", item.wanted, f"is {state.value}{held}, not available")
        else:
            item.msisdn, item.number_row = item.wanted, SimpleNamespace(**row)
    rest = [i for i in items if i.wanted is None]
    picked = numbers.pick_plain_numbers(conn, [(i.plan.carrier, i.province) for i in rest], taken=set(asked),
                                        lock=lock)
    for item, row in zip(rest, picked):
        if row is None:
            item.refuse("msisdn", "", f"no plain {item.plan.carrier} number is available")
        else:
            item.msisdn, item.number_row = str(row.msisdn), row


_PRICES = select(plan_prices.c.plan, plan_prices.c.level, plan_prices.c.price_fen).where(
    plan_prices.c.plan.in_(bindparam("plans", expanding=True)))


def _quote(conn: Connection, items: list[_Item]) -> None:
    """Each request's quote: the plan's price at the channel's level (else the nearest lower
    level that has one), the number's selection fee, prepayment and minimum spend."""
    priced = [i for i in items if i.msisdn is not None]
    prices: dict[str, dict[int, int]] = {}
    for chunk in chunks(sorted({i.plan.code for i in priced})):
        for plan, level, price in conn.execute(_PRICES, {"plans": chunk}):
            prices.setdefault(plan, {})[level] = price
    for item in priced:
        code, level = item.plan.code, item.agent.price_level if item.agent else 0
        levels = [lv for lv in prices.get(code, {}) if lv <= level]
        if not levels:
            item.refuse("plan", code, f"plan {code} has no price at level {level} or below (set one with hkops "
                                      "catalogue price-set)")
            continue
        price, fees = prices[code][max(levels)], item.number_row
        prepay = fees.prepay_fen or 0
        item.quote = catalogue.Quote(price_fen=price, vanity_fee_fen=fees.price_fen, prepay_fen=prepay,
                                     min_monthly_fen=fees.min_monthly_fen or 0,
                                     total_fen=price + fees.price_fen + prepay)


def _check(conn: Connection, requests: list[OrderRequest], lines: list[int | None], *, keyring: Keyring,
           now: datetime, write: bool, drafts: bool = False) -> list[_Item]:
    """Every check of intake on the requests, set-wise; nothing written. With ``write`` the
    lookup key is made if missing and the people and numbers are locked (PostgreSQL) for the
    writes that follow; ``drafts``: the requests are stored drafts (no client-id retries)."""
    items = [_read_form(request, line) for request, line in zip(requests, lines)]
    _resolve(conn, items)
    known = [i for i in items if i.rid]
    hashes = subscribers.lookup_hashes(conn, [i.rid for i in known], keyring, create=write) if known else None
    for item, digest in zip(known, hashes or []):
        item.digest = digest
    if not drafts:
        _find_retries(conn, items)
    _verify(conn, items, now, lock=write)
    return items


def _problems(items: list[_Item]) -> list[InvalidValue]:
    """Every problem of the requests, by line, a reused client order id included."""
    problems = [p for i in items for p in i.problems]
    problems += [InvalidValue("client_order_id", i.client_order_id, i.conflict, line=i.line) for i in items
                 if i.conflict]
    return sorted(problems, key=lambda p: p.line or 0)


def check_order(db: Store | Connection, request: OrderRequest, *, keyring: Keyring | None = None,
                now: datetime | None = None) -> OrderCheck:
    """The checks :func:`create_orders` makes on one request, writing nothing: every problem,
    the number it would get (asked for or the first free one) and its quote. A client order id
    already used is a problem (placing the order again would make nothing new)."""
    now = now or utc_now()
    keyring = keyring or load_keyring()
    with unit_of_work(db) if isinstance(db, Connection) else db.read() as conn:
        [item] = _check(conn, [request], [None], keyring=keyring, now=now, write=False)
    problems = _problems([item])
    if item.retry is not None:
        problems.append(InvalidValue("client_order_id", item.client_order_id, f"is order {item.retry.number} "
                                     "already (placing it again makes nothing new)"))
    return OrderCheck(problems, item.msisdn, item.quote, item.blacklisted, item.held)


# ---------------------------------------------------------------- intake: writing

# Rows inserted together come back matched by their provisional number (a random token until the
# id is known): one multi-row INSERT ... RETURNING.
_INSERT_RETURNING_ID = orders.insert().returning(orders.c.number, orders.c.id)
_SET_NUMBER = (update(orders).where(orders.c.id == bindparam("order_id"))
               .values(number=bindparam("number"), resident_id_enc=bindparam("sealed")))


def _values(item: _Item, *, actor: str, now: datetime) -> dict:
    """The order row as intake stores it: a draft, or approved with its number, price and agent chain."""
    values = dict(
        channel=item.channel, client_order_id=item.client_order_id, agent_id=item.agent.id if item.agent else None,
        agent_chain=None, plan=item.plan.code, product=item.product, carrier=item.plan.carrier, state=O.DRAFT.value,
        reason=None, msisdn=int(item.wanted) if item.wanted else None, iccid=None, location=item.location,
        subscriber_id=None, customer_name=item.customer_name, id_masked=item.masked, resident_id_hash=item.digest,
        contact=item.contact, ship_province=item.province, ship_address=item.address, price_fen=0, vanity_fee_fen=0,
        prepay_fen=0, total_fen=0, min_monthly_fen=0, first_topup_fen=None, created_at=now, created_by=actor,
        changed_at=now)
    if item.request.submit:
        values.update(_approval(item, now))
    return values


def _approval(item: _Item, now: datetime) -> dict:
    """What approval sets on an order: subscriber, number, agent chain and price."""
    quote = item.quote
    return dict(state=O.APPROVED.value, msisdn=int(item.msisdn), subscriber_id=item.subscriber_id,
                agent_chain=item.agent.chain if item.agent else "[]", price_fen=quote.price_fen,
                vanity_fee_fen=quote.vanity_fee_fen, prepay_fen=quote.prepay_fen, total_fen=quote.total_fen,
                min_monthly_fen=quote.min_monthly_fen, changed_at=now)


def _approve_events(number: str, item: _Item) -> list[Event]:
    return [order_event(number, "submit", O.DRAFT.value, O.VERIFYING.value),
            order_event(number, "approve", O.VERIFYING.value, O.APPROVED.value, None, msisdn=item.msisdn,
                        total_fen=item.quote.total_fen)]


def _register(conn: Connection, items: list[_Item], *, actor: str, now: datetime, keyring: Keyring) -> None:
    """Register the people of the approved requests who are not subscribers yet (each once)."""
    new: dict[str, subscribers.NewSubscriber] = {}
    for item in items:
        if item.subscriber_id is None and item.digest not in new:
            new[item.digest] = subscribers.NewSubscriber(item.customer_name, item.rid, item.digest, item.contact,
                                                         item.address)
    made = subscribers.add_subscribers(conn, list(new.values()), actor=actor, keyring=keyring, now=now)
    ids = {person.resident_id_hash: person.id for person in made}
    for item in items:
        item.subscriber_id = item.subscriber_id or ids[item.digest]


def _hold_numbers(conn: Connection, held: list[tuple[_Item, str]], *, actor: str, now: datetime) -> None:
    """Reserve each approved order's number for it (an expired reservation of someone else ends first)."""
    numbers.hold_for_orders(conn, {int(item.msisdn): number for item, number in held}, actor=actor, now=now,
                            until=now + NUMBER_HOLD)


def _write(conn: Connection, items: list[_Item], *, actor: str, now: datetime, keyring: Keyring) -> list[Order]:
    """Store the checked requests (retries return their order): subscribers registered, orders
    inserted with their sealed resident IDs, audited, numbers reserved."""
    new = [i for i in items if i.retry is None]
    if not new:
        return [i.retry for i in items]
    approved = [i for i in new if i.request.submit]
    _register(conn, approved, actor=actor, now=now, keyring=keyring)
    rows = [_values(item, actor=actor, now=now) for item in new]
    tokens = [secrets.token_hex(12) for _ in rows]
    made = dict(conn.execute(_INSERT_RETURNING_ID, [{**row, "number": token, "resident_id_enc": ""}
                                                    for row, token in zip(rows, tokens)]).all())
    ids = [made[token] for token in tokens]
    numbers_ = [f"SO{order_id:08d}" for order_id in ids]
    sealed = keyring.encrypt_column([item.rid for item in new], "orders.resident_id", numbers_)
    conn.execute(_SET_NUMBER, [{"order_id": order_id, "number": number, "sealed": token}
                               for order_id, number, token in zip(ids, numbers_, sealed)])
    events = []
    for item, number in zip(new, numbers_):
        events.append(order_event(number, "create", None, O.DRAFT.value, None, channel=item.channel,
                                  plan=item.plan.code))
        if item.request.submit:
            events += _approve_events(number, item)
    audit.record(conn, actor, events, now)
    _hold_numbers(conn, [(item, number) for item, number in zip(new, numbers_) if item.request.submit], actor=actor,
                  now=now)
    made = iter([order_from_row(SimpleNamespace(**row, id=order_id, number=number))
                 for row, order_id, number in zip(rows, ids, numbers_)])
    return [item.retry or next(made) for item in items]


def _expire_unpaid(conn: Connection, now: datetime) -> None:
    """Expire unpaid approved orders first (their numbers and 一证五号 slots are free again)."""
    from hkops.orders.service import expire_unpaid

    expire_unpaid(conn, actor=numbers.SYSTEM_ACTOR, now=now)


def create_orders(db: Store | Connection, requests: list[OrderRequest], *, actor: str, now: datetime | None = None,
                  keyring: Keyring | None = None, source: str = "orders") -> list[Order]:
    """Take many orders at once, all or none; returns them in the order asked.

    Unpaid approved orders past the setting order_payment_ttl expire first
    (:func:`hkops.orders.service.expire_unpaid`). Every request is checked as
    :func:`create_order` checks one, set-wise (a handful of
    queries for the whole batch), and 一证五号 counts the batch's earlier requests too. Any
    bad request: :class:`InvalidValues` lists every problem, each with ``line`` = the
    request's position (from 1) when there are several, and nothing is written. A request
    whose (channel, client_order_id) has an order already returns it (``created`` False).
    """
    access.require(actor, "orders.write", f"place {len(requests)} orders" if len(requests) > 1 else "place an order", db)
    access.require_agent(db, actor, [r.channel for r in requests], "place an order")
    access.require_agent(db, actor, [r.location for r in requests if r.location], "place an order", locations=True)
    requests = list(requests)
    if not requests:
        return []
    now = now or utc_now()
    keyring = keyring or load_keyring()
    lines = list(range(1, len(requests) + 1)) if len(requests) > 1 else [None]
    for attempt in range(2):
        try:
            with unit_of_work(db) as conn:
                _expire_unpaid(conn, now)
                items = _check(conn, requests, lines, keyring=keyring, now=now, write=True)
                conflicts = [i.conflict for i in items if i.conflict]
                if lines == [None] and conflicts and not items[0].problems:
                    raise Conflict(conflicts[0])
                problems = _problems(items)
                if problems:
                    raise InvalidValues(source, problems)
                return _write(conn, items, actor=actor, now=now, keyring=keyring)
        except IntegrityError:
            # Another intake with the same client order ids committed first: answer as to a retry.
            asked = [(r.channel, r.client_order_id) for r in requests if r.client_order_id is not None]
            if attempt or not asked or not isinstance(db, Store) or not _any_taken(db, asked):
                raise
    raise AssertionError("unreachable")


def _any_taken(db: Store, asked: list[tuple[str, str]]) -> bool:
    with db.read() as conn:
        return any(conn.execute(_BY_CLIENT_ID, {"channel": check_channel(channel), "client_id": _client_id(client_id)})
                   .first() is not None for channel, client_id in asked)


def create_order(db: Store | Connection, *, channel: str, plan: str, customer_name: str, resident_id: str,
                 contact: str, ship_province: str, ship_address: str, msisdn: str | None = None,
                 product: str | None = None, client_order_id: str | None = None, location: str | None = None,
                 submit: bool = True, actor: str, now: datetime | None = None,
                 keyring: Keyring | None = None) -> Order:
    """Take an order; with ``submit`` (default) check it and approve it at once.

    Idempotent on (channel, client_order_id): a retry returns the first order (``created``
    False); the same id with another payload is a Conflict. A refused intake writes nothing
    and raises :class:`InvalidValues` listing every reason. Defaults: see :class:`OrderRequest`.
    A draft (``submit=False``) is stored with its values checked for form only.
    """
    request = OrderRequest(channel=channel, plan=plan, customer_name=customer_name, resident_id=resident_id,
                           contact=contact, ship_province=ship_province, ship_address=ship_address, msisdn=msisdn,
                           product=product, client_order_id=client_order_id, location=location, submit=submit)
    return create_orders(db, [request], actor=actor, now=now, keyring=keyring, source="order")[0]


# ---------------------------------------------------------------- intake: an order file

ORDER_COLUMNS = ("channel", "plan", "customer_name", "resident_id", "contact", "ship_province", "ship_address",
                 "msisdn", "product", "client_order_id", "location")
_REQUIRED_COLUMNS = ("plan", "customer_name", "resident_id", "contact", "ship_province", "ship_address")


def read_order_file(path: str | Path) -> tuple[list[tuple[int, OrderRequest]], list[InvalidValue]]:
    """The (line number, request) of each line of an order CSV, and the lines that are not one.

    The first line names the columns (any order): plan, customer_name, resident_id, contact,
    ship_province, ship_address, and optionally channel (empty: direct), msisdn, product,
    client_order_id, location (empty: the default).
    """
    rows = csv_rows(path)
    if not rows:
        raise InvalidValue("file", str(path), "holds no orders")
    header_line, header = rows.pop(0)
    columns = [c.lower() for c in header]
    wrong = ([f"unknown column {c!r}" for c in columns if c not in ORDER_COLUMNS]
             + [f"column {c!r} is missing" for c in _REQUIRED_COLUMNS if c not in columns]
             + [f"column {c!r} appears twice" for c in dict.fromkeys(columns) if columns.count(c) > 1])
    if wrong:
        raise InvalidFile(str(path), [InvalidValue("header", ",".join(header), f"{reason} (columns: "
                                                   f"{', '.join(ORDER_COLUMNS)})", line=header_line)
                                      for reason in wrong])
    requests, problems = [], []
    for line, cells in rows:
        if len(cells) != len(columns):
            problems.append(InvalidValue("line", f"{len(cells)} fields", f"must have {len(columns)} fields: "
                                         f"{', '.join(columns)}", line=line))
            continue
        values = dict(zip(columns, cells))
        optional = {name: values.get(name) or None for name in ORDER_COLUMNS if name not in _REQUIRED_COLUMNS}
        optional["channel"] = optional["channel"] or DIRECT
        requests.append((line, OrderRequest(**{name: values[name] for name in _REQUIRED_COLUMNS}, **optional)))
    return requests, problems


def import_orders(db: Store | Connection, path: str | Path, *, actor: str, keyring: Keyring | None = None,
                  now: datetime | None = None) -> list[Order]:
    """Take the orders of an order CSV (:func:`read_order_file`) with :func:`create_orders`:
    every line or none. Every bad line is listed with its line number (:class:`InvalidFile`)."""
    access.require(actor, "orders.write", f"import orders from {path}", db)
    entries, problems = read_order_file(path)
    access.require_agent(db, actor, [r.channel for _, r in entries], f"import orders from {path}")
    access.require_agent(db, actor, [r.location for _, r in entries if r.location], f"import orders from {path}",
                         locations=True)
    now = now or utc_now()
    keyring = keyring or load_keyring()
    with unit_of_work(db) as conn:
        _expire_unpaid(conn, now)
        items = _check(conn, [r for _, r in entries], [line for line, _ in entries], keyring=keyring, now=now,
                       write=True)
        problems = sorted(problems + _problems(items), key=lambda p: p.line or 0)
        if problems:
            raise InvalidFile(str(path), problems)
        return _write(conn, items, actor=actor, now=now, keyring=keyring)


# ---------------------------------------------------------------- intake: a draft


def submit_order(db: Store | Connection, number: str, *, actor: str, now: datetime | None = None,
                 keyring: Keyring | None = None) -> Order:
    """Check a draft and approve it; if it fails, the draft is rejected (reasons kept on the
    order and audited) and :class:`InvalidValues` gives every reason."""
    access.require(actor, "orders.write", f"submit order {number}", db)
    from hkops.orders.service import require_own_orders

    require_own_orders(db, [number], actor, f"submit order {number}")
    now = now or utc_now()
    keyring = keyring or load_keyring()
    with unit_of_work(db) as conn:
        row = load_order_row(conn, number, lock=True)
        order_target("submit", row.number, O(row.state))
        request = OrderRequest(
            channel=row.channel, plan=row.plan, customer_name=row.customer_name,
            resident_id=keyring.decrypt(row.resident_id_enc, _SEALED_CONTEXT.format(row.number)), contact=row.contact,
            ship_province=row.ship_province, ship_address=row.ship_address,
            msisdn=str(row.msisdn) if row.msisdn else None, product=row.product,
            client_order_id=row.client_order_id, location=row.location)
        [item] = _check(conn, [request], [None], keyring=keyring, now=now, write=True, drafts=True)
        if not item.problems:
            _register(conn, [item], actor=actor, now=now, keyring=keyring)
            values = _approval(item, now)
            conn.execute(update(orders).where(orders.c.id == row.id).values(**values))
            audit.record(conn, actor, _approve_events(row.number, item), now)
            _hold_numbers(conn, [(item, row.number)], actor=actor, now=now)
            return order_from_row(SimpleNamespace(**{**row._mapping, **values}))
        reason = "; ".join(str(p) for p in item.problems)
        conn.execute(update(orders).where(orders.c.id == row.id).values(
            state=O.REJECTED.value, reason=reason, changed_at=now))
        audit.record(conn, actor, [order_event(row.number, "submit", O.DRAFT.value, O.VERIFYING.value),
                                   order_event(row.number, "reject", O.VERIFYING.value, O.REJECTED.value, reason)], now)
    raise InvalidValues(f"order {row.number} rejected", item.problems)
