"""Sales orders from intake to completion, cancellation and return (DOMAIN.md section 5).

An order is placed by an agent (channel = the agent's code) or by a customer directly
(channel ``direct``). Intake checks the customer (real-name ID, age, 一证五号, blacklist,
ship-to province) and the number, and either writes nothing and says every reason, or
approves the order: the subscriber is registered, the number reserved for the order, the
price quoted at the channel's price level and the agent chain copied onto the order.
Payment in full assigns the number and picks a card from the selling location's stock;
shipping sells the card to the customer; activation pairs and activates it through the
card lifecycle. Cancelling undoes every step taken; an activated order is returned instead.

Each use case is one unit of work and audits every state change (entity ``order``, subject
the order number); only activation and return talk to the HLR, after their commit.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from types import SimpleNamespace

import phonenumbers
from sqlalchemy import Connection, bindparam, exists, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from stdnum.cn import ric

from hkops import audit
from hkops.agents import service as agents
from hkops.audit import Event, audit_log
from hkops.cards import service as cards
from hkops.cards.model import SimState
from hkops.cards.tables import sims
from hkops.catalogue import service as catalogue
from hkops.catalogue.tables import sim_products
from hkops.errors import Conflict, IllegalTransition, InvalidValue, InvalidValues, NotFound
from hkops.ids import mask_resident_id, parse_msisdn, parse_resident_id
from hkops.money import format_yuan
from hkops.network import ProvisioningClient
from hkops.numbers import service as numbers
from hkops.numbers.model import NumberState
from hkops.numbers.search import ranges_of
from hkops.numbers.tables import number_blocks
from hkops.numbers.tables import numbers as numbers_table
from hkops.orders.model import OPEN, PIPELINE, OrderState, ShipmentState, order_target, shipment_target
from hkops.orders.tables import orders, shipments
from hkops.payments import service as payments
from hkops.security.crypto import Keyring, load_keyring
from hkops.stock import service as stock
from hkops.stock.model import LocationKind
from hkops.stock.tables import stock_locations
from hkops.store.engine import Store, unit_of_work
from hkops.subscribers import service as subscribers
from hkops.subscribers.service import NUMBERS_PER_CARRIER
from hkops.subscribers.tables import id_blacklist, subscriber_numbers
from hkops.subscribers.tables import subscribers as subscribers_table
from hkops.timeutil import SHANGHAI, utc_now

O = OrderState
DIRECT = "direct"
#: An approved order holds its number until it is paid (then assigned) or cancelled.
NUMBER_HOLD = timedelta(days=3650)
_SEALED_CONTEXT = "orders.resident_id:{}"


@dataclass(frozen=True)
class Order:
    """A sales order as safe to show: the resident ID only masked. Money in fen."""

    id: int
    number: str
    channel: str
    client_order_id: str | None
    agent_id: int | None
    #: The agent chain when the order was placed, selling agent first up to level 1.
    agent_chain: tuple[dict, ...]
    plan: str
    product: str
    carrier: str
    state: str
    reason: str | None
    msisdn: str | None
    iccid: str | None
    location: str
    subscriber_id: int | None
    customer_name: str
    id_masked: str
    contact: str
    ship_province: str
    ship_address: str
    price_fen: int
    vanity_fee_fen: int
    prepay_fen: int
    total_fen: int
    min_monthly_fen: int
    first_topup_fen: int | None
    created_at: datetime
    created_by: str
    changed_at: datetime
    #: False when an intake retried with the same client order id returned this order.
    created: bool = field(default=True, compare=False)

    def as_dict(self) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k != "created"}, "agent_chain": list(self.agent_chain)}


def _order(row, created: bool = True) -> Order:
    return Order(
        id=row.id, number=row.number, channel=row.channel, client_order_id=row.client_order_id,
        agent_id=row.agent_id, agent_chain=tuple(json.loads(row.agent_chain or "[]")), plan=row.plan,
        product=row.product, carrier=row.carrier, state=row.state, reason=row.reason,
        msisdn=str(row.msisdn) if row.msisdn else None, iccid=row.iccid, location=row.location,
        subscriber_id=row.subscriber_id, customer_name=row.customer_name, id_masked=row.id_masked,
        contact=row.contact, ship_province=row.ship_province, ship_address=row.ship_address,
        price_fen=row.price_fen, vanity_fee_fen=row.vanity_fee_fen, prepay_fen=row.prepay_fen,
        total_fen=row.total_fen, min_monthly_fen=row.min_monthly_fen, first_topup_fen=row.first_topup_fen,
        created_at=row.created_at, created_by=row.created_by, changed_at=row.changed_at, created=created)


def _event(number: str, action: str, from_state: str | None, to_state: str | None, reason: str | None = None,
           **details) -> Event:
    return Event("order", number, action, from_state, to_state, reason,
                 {k: v for k, v in details.items() if v is not None} or None)


# ---------------------------------------------------------------- intake: the values given


@dataclass
class _Intake:
    """What an intake asks for, checked for form and resolved against the catalogue and agents."""

    channel: str
    client_order_id: str | None
    plan: catalogue.Plan
    agent: agents.Agent | None
    product: str
    location: str
    customer_name: str
    resident_id: str
    id_masked: str
    birth_date: date
    contact: str
    ship_province: str
    ship_address: str
    msisdn: str | None


def _channel(value: str) -> str:
    text_value = str(value or "").strip()
    if text_value.lower() == DIRECT:
        return DIRECT
    return catalogue.check_code(text_value, "channel")


def _contact(value: str) -> str:
    try:
        number = phonenumbers.parse(str(value or ""), "CN")
    except phonenumbers.NumberParseException:
        raise InvalidValue("contact", value, "is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidValue("contact", value, "is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _text(value: str, field_name: str, limit: int) -> str:
    text_value = " ".join(str(value or "").split())
    if not 0 < len(text_value) <= limit:
        raise InvalidValue(field_name, value, f"is required (at most {limit} characters)")
    return text_value


def _client_id(value: str | None) -> str | None:
    if value is None:
        return None
    text_value = str(value).strip()
    if not 0 < len(text_value) <= 64:
        raise InvalidValue("client_order_id", value, "must be 1 to 64 characters")
    return text_value


def _try(problems: list[InvalidValue], check, *args):
    try:
        return check(*args)
    except InvalidValue as exc:
        problems.append(exc)
        return None


def _raise(source: str, problems: list[InvalidValue]) -> None:
    if problems:
        raise InvalidValues(source, problems)


# Statements of the hot path, built once (SQLAlchemy then only binds the values).
_FIRST_WAREHOUSE = (select(stock_locations.c.code).where(stock_locations.c.kind == LocationKind.WAREHOUSE.value)
                    .order_by(stock_locations.c.created_at, stock_locations.c.code).limit(1))
_LOCATION_KIND = select(stock_locations.c.kind).where(stock_locations.c.code == bindparam("code"))
_FIRST_PRODUCT = (select(sim_products.c.code).where(sim_products.c.carrier == bindparam("carrier"),
                                                    sim_products.c.active.is_(True))
                  .order_by(sim_products.c.code).limit(1))


def _intake(conn: Connection, *, channel, plan, customer_name, resident_id, contact, ship_province, ship_address,
            msisdn, product, client_order_id, location) -> _Intake:
    """Check every value for form and resolve plan, agent, product and location; InvalidValues lists every problem."""
    problems: list[InvalidValue] = []
    channel = _try(problems, _channel, channel)
    client_order_id = _try(problems, _client_id, client_order_id)
    name = _try(problems, _text, customer_name, "customer_name", 64)
    rid = _try(problems, parse_resident_id, resident_id)
    contact = _try(problems, _contact, contact)
    province = _try(problems, catalogue.canonical_province, ship_province, "ship_province")
    address = _try(problems, _text, ship_address, "ship_address", 200)
    msisdn = _try(problems, parse_msisdn, msisdn) if msisdn is not None else None
    the_plan = agent = None
    try:
        the_plan = catalogue.get_plan(conn, plan)
        if not the_plan.active:
            problems.append(InvalidValue("plan", the_plan.code, "is no longer sold"))
    except NotFound as exc:
        problems.append(InvalidValue("plan", plan, str(exc)))
    if channel not in (None, DIRECT):
        try:
            agent = agents.get_agent(conn, channel)
            if not agent.active:
                problems.append(InvalidValue("channel", channel, f"agent {agent.code} is inactive"))
        except NotFound:
            problems.append(InvalidValue("channel", channel, "is neither 'direct' nor an agent's code"))
    if location is None:
        location = agent.location if agent else conn.execute(_FIRST_WAREHOUSE).scalar() if channel == DIRECT else None
        if location is None and channel == DIRECT:
            problems.append(InvalidValue("location", "", "no warehouse exists to sell direct orders from"))
    else:
        location = str(location).strip().upper()
        if conn.execute(_LOCATION_KIND, {"code": location}).scalar() not in (LocationKind.WAREHOUSE.value,
                                                                             LocationKind.AGENT.value):
            problems.append(InvalidValue("location", location, "is not a warehouse or agent stock location"))
    if the_plan is not None:
        product = _product(conn, the_plan, product, problems)
    _raise("order", problems)
    return _Intake(channel=channel, client_order_id=client_order_id, plan=the_plan, agent=agent, product=product,
                   location=location, customer_name=name, resident_id=rid, id_masked=mask_resident_id(rid),
                   birth_date=ric.get_birth_date(rid), contact=contact, ship_province=province,
                   ship_address=address, msisdn=msisdn)


def _product(conn: Connection, plan: catalogue.Plan, product: str | None, problems: list[InvalidValue]) -> str | None:
    """The product asked for (of the plan's carrier), else the first active product of that carrier."""
    if product is None:
        code = conn.execute(_FIRST_PRODUCT, {"carrier": plan.carrier}).scalar()
        if code is None:
            problems.append(InvalidValue("product", "", f"no active {plan.carrier} SIM product exists"))
        return code
    try:
        found = catalogue.get_product(conn, product)
    except NotFound as exc:
        problems.append(InvalidValue("product", product, str(exc)))
        return None
    if found.carrier != plan.carrier:
        problems.append(InvalidValue("product", found.code, f"is a {found.carrier} SIM; plan {plan.code} is "
                                                            f"{plan.carrier}"))
    elif not found.active:
        problems.append(InvalidValue("product", found.code, "is no longer sold"))
    return found.code


# ---------------------------------------------------------------- intake: the checks


def _lookup_hash(conn: Connection, rid: str, keyring: Keyring) -> str:
    """The subscribers' keyed hash of the resident ID (the lookup key is made if none exists yet)."""
    return subscribers._hash(subscribers._lookup_key(conn, keyring, create=True), rid)


def _lock_person(conn: Connection, digest: str) -> None:
    """Serialise intakes of one person on PostgreSQL (SQLite writers are serial already), so
    two concurrent orders cannot both pass 一证五号."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"hkops-person-{digest}"})


_BLACKLISTED = select(id_blacklist.c.reason).where(id_blacklist.c.resident_id_hash == bindparam("digest"))
_REGISTERED = (select(subscribers_table.c.id, subscribers_table.c.name)
               .where(subscribers_table.c.resident_id_hash == bindparam("digest")))
_OPEN_ORDERS = select(func.count()).select_from(orders).where(
    orders.c.resident_id_hash == bindparam("digest"), orders.c.carrier == bindparam("carrier"),
    orders.c.state.in_([s.value for s in OPEN]),
    ~exists().where(subscriber_numbers.c.msisdn == orders.c.msisdn, subscriber_numbers.c.until.is_(None)))
_CARRIER_BLOCKS = (select(number_blocks.c.prefix, number_blocks.c.province)
                   .where(number_blocks.c.carrier == bindparam("carrier")).order_by(number_blocks.c.prefix))


def _held_numbers(conn: Connection, digest: str, carrier: str) -> int:
    """Numbers of ``carrier`` this person holds: bound ones plus open orders' not bound yet."""
    bound = subscribers.count_numbers(conn, digest, carrier)
    return bound + conn.execute(_OPEN_ORDERS, {"digest": digest, "carrier": carrier}).scalar_one()


def _number_problem(conn: Connection, msisdn: str, carrier: str, now: datetime) -> str | None:
    """Why the chosen number cannot be sold with a plan of ``carrier`` (None: it can); locks it."""
    stmt = (select(numbers_table, number_blocks.c.carrier.label("block_carrier"))
            .select_from(numbers_table.outerjoin(number_blocks, number_blocks.c.prefix == int(msisdn) // 10_000))
            .where(numbers_table.c.msisdn == int(msisdn)))
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=numbers_table)
    row = conn.execute(stmt).mappings().first()
    if row is None:
        return "is not in the number pool"
    if row["block_carrier"] != carrier:
        return f"is a {row['block_carrier']} number; the plan is {carrier}"
    state = numbers.record_from_row(row).effective_state(now)
    if state != NumberState.AVAILABLE:
        held = f" (held by {row['holder']})" if row["holder"] else ""
        return f"is {state.value}{held}, not available"
    return None


@lru_cache(maxsize=256)
def _first_free(prefixes: tuple[int, ...], grades: tuple[str, ...], lock: bool):
    """The statement taking the first available number of these grades in these blocks (built once per shape)."""
    stmt = (select(numbers_table.c.msisdn)
            .where(numbers_table.c.state == NumberState.AVAILABLE.value, numbers_table.c.grade.in_(grades),
                   or_(*ranges_of(list(prefixes))))
            .order_by(numbers_table.c.msisdn).limit(1))
    return stmt.with_for_update(skip_locked=True) if lock else stmt


def _free_number(conn: Connection, carrier: str, province: str) -> str | None:
    """The first available plain-grade number of ``carrier``, in the ship-to province's blocks
    if it has any there; locked (skipping numbers other intakes hold) on PostgreSQL."""
    blocks = conn.execute(_CARRIER_BLOCKS, {"carrier": carrier}).all()
    everywhere = tuple(b.prefix for b in blocks)
    nearby = tuple(b.prefix for b in blocks if b.province == province)
    grades = tuple(numbers.plain_grades(conn))
    for prefixes in [nearby, everywhere] if nearby != everywhere else [everywhere]:
        if prefixes:
            found = conn.execute(_first_free(prefixes, grades, conn.dialect.name == "postgresql")).scalar()
            if found is not None:
                return str(found)
    return None


@dataclass
class _Verdict:
    """The outcome of the checks: every problem, the number chosen, its quote, the subscriber already registered."""

    problems: list[InvalidValue]
    msisdn: str | None = None
    quote: catalogue.Quote | None = None
    subscriber_id: int | None = None
    #: Whether the number was picked from the pool (rather than chosen by the customer).
    picked: bool = False


def _verify(conn: Connection, intake: _Intake, digest: str, now: datetime) -> _Verdict:
    """Every reason the order cannot be approved, the number it gets and its quote."""
    plan, masked = intake.plan, intake.id_masked
    today = now.astimezone(SHANGHAI).date()
    verdict = _Verdict([InvalidValue("customer", masked, reason) for reason in catalogue.customer_problems(
        plan, intake.birth_date, intake.ship_province, today)])
    problems = verdict.problems
    listed = conn.execute(_BLACKLISTED, {"digest": digest}).scalar()
    if listed is not None:
        problems.append(InvalidValue("resident_id", masked, f"is blacklisted ({listed})"))
    registered = conn.execute(_REGISTERED, {"digest": digest}).first()
    if registered is not None:
        verdict.subscriber_id = registered.id
        if registered.name != intake.customer_name:
            problems.append(InvalidValue("customer_name", intake.customer_name,
                                         f"resident ID {masked} is registered under another name"))
    held = _held_numbers(conn, digest, plan.carrier)
    if held >= NUMBERS_PER_CARRIER:
        problems.append(InvalidValue("resident_id", masked, f"already holds {held} {plan.carrier} numbers (bound or on "
                                     f"open orders); one person may hold at most {NUMBERS_PER_CARRIER} (一证五号)"))
    msisdn = intake.msisdn
    if msisdn is not None:
        problem = _number_problem(conn, msisdn, plan.carrier, now)
        if problem:
            problems.append(InvalidValue("msisdn", msisdn, problem))
            msisdn = None
    else:
        msisdn = _free_number(conn, plan.carrier, intake.ship_province)
        verdict.picked = True
        if msisdn is None:
            problems.append(InvalidValue("msisdn", "", f"no plain {plan.carrier} number is available"))
    if msisdn is not None:
        try:
            verdict.quote = catalogue.quote(conn, plan, msisdn, intake.agent.price_level if intake.agent else 0)
            verdict.msisdn = msisdn
        except (Conflict, InvalidValue, NotFound) as exc:
            problems.append(InvalidValue("plan", plan.code, str(exc)))
    return verdict


# ---------------------------------------------------------------- intake: writing

_INSERT = orders.insert()
_SET_NUMBER = (update(orders).where(orders.c.id == bindparam("order_id"))
               .values(number=bindparam("number"), resident_id_enc=bindparam("sealed")))


def _seal(keyring: Keyring, rid: str, number: str) -> str:
    return keyring.encrypt(rid, _SEALED_CONTEXT.format(number))


def _values(intake: _Intake, digest: str, state: OrderState, *, actor: str, now: datetime) -> dict:
    """The order row as intake stores it (no price yet)."""
    return dict(
        channel=intake.channel, client_order_id=intake.client_order_id,
        agent_id=intake.agent.id if intake.agent else None, agent_chain=None, plan=intake.plan.code,
        product=intake.product, carrier=intake.plan.carrier, state=state.value, reason=None,
        msisdn=int(intake.msisdn) if intake.msisdn else None, iccid=None, location=intake.location,
        subscriber_id=None, customer_name=intake.customer_name, id_masked=intake.id_masked,
        resident_id_hash=digest, contact=intake.contact, ship_province=intake.ship_province,
        ship_address=intake.ship_address, price_fen=0, vanity_fee_fen=0, prepay_fen=0, total_fen=0,
        min_monthly_fen=0, first_topup_fen=None, created_at=now, created_by=actor, changed_at=now)


def _insert(conn: Connection, values: dict, rid: str, keyring: Keyring) -> dict:
    """Insert the order row; returns its values with id and number (``SO`` and the id)."""
    order_id = conn.execute(_INSERT, {**values, "number": secrets.token_hex(12), "resident_id_enc": ""}
                            ).inserted_primary_key[0]
    number = f"SO{order_id:08d}"
    conn.execute(_SET_NUMBER, {"order_id": order_id, "number": number, "sealed": _seal(keyring, rid, number)})
    return {**values, "id": order_id, "number": number}


def _approval(conn: Connection, intake: _Intake, verdict: _Verdict, *, actor: str, now: datetime,
              keyring: Keyring) -> dict:
    """What approval sets on the order: the subscriber (registered if new), number, agent chain and price."""
    person = verdict.subscriber_id or subscribers.register(
        conn, name=intake.customer_name, resident_id=intake.resident_id, contact=intake.contact,
        address=intake.ship_address, actor=actor, keyring=keyring).id
    quote = verdict.quote
    chain = agents.chain(conn, intake.agent.id) if intake.agent else []
    return dict(state=O.APPROVED.value, msisdn=int(verdict.msisdn), subscriber_id=person,
                agent_chain=json.dumps(chain, ensure_ascii=False), price_fen=quote.price_fen,
                vanity_fee_fen=quote.vanity_fee_fen, prepay_fen=quote.prepay_fen, total_fen=quote.total_fen,
                min_monthly_fen=quote.min_monthly_fen, changed_at=now)


def _approve_event(number: str, verdict: _Verdict) -> Event:
    return _event(number, "approve", O.VERIFYING.value, O.APPROVED.value, None, msisdn=verdict.msisdn,
                  total_fen=verdict.quote.total_fen)


def _hold_number(conn: Connection, verdict: _Verdict, number: str, *, actor: str, now: datetime) -> None:
    """Reserve the order's number for it (a number picked from the pool is known to be available)."""
    if verdict.picked:
        numbers.move_many(conn, [int(verdict.msisdn)], NumberState.AVAILABLE, NumberState.RESERVED, "reserve",
                          actor=actor, reason=f"order {number}", now=now,
                          values={"holder": number, "reserved_until": now + NUMBER_HOLD})
    else:
        numbers.reserve(conn, verdict.msisdn, number, actor=actor, ttl=NUMBER_HOLD, reason=f"order {number}")


_BY_CLIENT_ID = select(orders).where(orders.c.channel == bindparam("channel"),
                                     orders.c.client_order_id == bindparam("client_id"))


def _same_intake(row, intake: _Intake, digest: str, explicit: dict) -> Order:
    """The order a retried intake returns; Conflict if the retry asks for something else."""
    wanted = {"plan": intake.plan.code, "customer_name": intake.customer_name, "resident_id": digest,
              "contact": intake.contact, "ship_province": intake.ship_province, "ship_address": intake.ship_address}
    have = {"plan": row.plan, "customer_name": row.customer_name, "resident_id": row.resident_id_hash,
            "contact": row.contact, "ship_province": row.ship_province, "ship_address": row.ship_address}
    if explicit.get("msisdn"):
        wanted["msisdn"], have["msisdn"] = intake.msisdn, str(row.msisdn) if row.msisdn else None
    for name in ("product", "location"):
        if explicit.get(name):
            wanted[name], have[name] = getattr(intake, name), getattr(row, name)
    differ = [name for name in wanted if wanted[name] != have[name]]
    if differ:
        raise Conflict(f"client order id {row.client_order_id} of channel {row.channel} was used for order "
                       f"{row.number} with another {', '.join(differ)}; nothing written")
    return _order(row, created=False)


def create_order(db: Store | Connection, *, channel: str, plan: str, customer_name: str, resident_id: str,
                 contact: str, ship_province: str, ship_address: str, msisdn: str | None = None,
                 product: str | None = None, client_order_id: str | None = None, location: str | None = None,
                 submit: bool = True, actor: str, now: datetime | None = None,
                 keyring: Keyring | None = None) -> Order:
    """Take an order; with ``submit`` (default) check it and approve it at once.

    Idempotent on (channel, client_order_id): a retry returns the first order (``created``
    False); the same id with another payload is a Conflict. A refused intake writes nothing
    and raises :class:`InvalidValues` listing every reason. ``msisdn`` None: the first
    available plain number of the plan's carrier (the ship-to province's blocks first).
    ``location`` defaults to the agent's stock, or the first warehouse for direct orders;
    ``product`` to the first active product of the plan's carrier. A draft
    (``submit=False``) is stored with its values checked for form only.
    """
    now = now or utc_now()
    keyring = keyring or load_keyring()
    explicit = {"msisdn": msisdn is not None, "product": product is not None, "location": location is not None}
    try:
        with unit_of_work(db) as conn:
            intake = _intake(conn, channel=channel, plan=plan, customer_name=customer_name, resident_id=resident_id,
                             contact=contact, ship_province=ship_province, ship_address=ship_address, msisdn=msisdn,
                             product=product, client_order_id=client_order_id, location=location)
            digest = _lookup_hash(conn, intake.resident_id, keyring)
            if intake.client_order_id is not None:
                existing = conn.execute(_BY_CLIENT_ID, {"channel": intake.channel,
                                                        "client_id": intake.client_order_id}).first()
                if existing is not None:
                    return _same_intake(existing, intake, digest, explicit)
            created = _event("", "create", None, O.DRAFT.value, None, channel=intake.channel, plan=intake.plan.code)
            if not submit:
                order = _insert(conn, _values(intake, digest, O.DRAFT, actor=actor, now=now), intake.resident_id,
                                keyring)
                created.subject = order["number"]
                audit.record(conn, actor, [created], now)
                return _order(SimpleNamespace(**order))
            _lock_person(conn, digest)
            verdict = _verify(conn, intake, digest, now)
            _raise("order", verdict.problems)
            values = _values(intake, digest, O.APPROVED, actor=actor, now=now)
            values.update(_approval(conn, intake, verdict, actor=actor, now=now, keyring=keyring))
            order = _insert(conn, values, intake.resident_id, keyring)
            number = created.subject = order["number"]
            audit.record(conn, actor, [created, _event(number, "submit", O.DRAFT.value, O.VERIFYING.value),
                                       _approve_event(number, verdict)], now)
            _hold_number(conn, verdict, number, actor=actor, now=now)
            return _order(SimpleNamespace(**order))
    except IntegrityError:
        # Another intake with the same client order id committed first: answer as to a retry.
        if client_order_id is None or not isinstance(db, Store):
            raise
        with db.read() as conn:
            if conn.execute(_BY_CLIENT_ID, {"channel": _channel(channel),
                                            "client_id": _client_id(client_order_id)}).first() is None:
                raise
        return create_order(db, channel=channel, plan=plan, customer_name=customer_name, resident_id=resident_id,
                            contact=contact, ship_province=ship_province, ship_address=ship_address, msisdn=msisdn,
                            product=product, client_order_id=client_order_id, location=location, submit=submit,
                            actor=actor, now=now, keyring=keyring)


_BY_NUMBER = select(orders).where(orders.c.number == bindparam("number"))
_BY_NUMBER_LOCKED = _BY_NUMBER.with_for_update(of=orders)  # plain SELECT on SQLite, whose writers are serial


def _load(conn: Connection, number: str, *, lock: bool = False):
    row = conn.execute(_BY_NUMBER_LOCKED if lock else _BY_NUMBER,
                       {"number": str(number or "").strip().upper()}).first()
    if row is None:
        raise NotFound(f"order {number} does not exist")
    return row


def submit_order(db: Store | Connection, number: str, *, actor: str, now: datetime | None = None,
                 keyring: Keyring | None = None) -> Order:
    """Check a draft and approve it; if it fails, the draft is rejected (reasons kept on the
    order and audited) and :class:`InvalidValues` gives every reason."""
    now = now or utc_now()
    keyring = keyring or load_keyring()
    with unit_of_work(db) as conn:
        row = _load(conn, number, lock=True)
        order_target("submit", row.number, O(row.state))
        rid = keyring.decrypt(row.resident_id_enc, _SEALED_CONTEXT.format(row.number))
        try:
            intake = _intake(conn, channel=row.channel, plan=row.plan, customer_name=row.customer_name,
                             resident_id=rid, contact=row.contact, ship_province=row.ship_province,
                             ship_address=row.ship_address, msisdn=str(row.msisdn) if row.msisdn else None,
                             product=row.product, client_order_id=row.client_order_id, location=row.location)
            _lock_person(conn, row.resident_id_hash)
            verdict = _verify(conn, intake, row.resident_id_hash, now)
        except InvalidValues as exc:
            verdict = _Verdict(exc.problems)
        events = [_event(row.number, "submit", O.DRAFT.value, O.VERIFYING.value)]
        if not verdict.problems:
            values = _approval(conn, intake, verdict, actor=actor, now=now, keyring=keyring)
            conn.execute(update(orders).where(orders.c.id == row.id).values(**values))
            audit.record(conn, actor, events + [_approve_event(row.number, verdict)], now)
            _hold_number(conn, verdict, row.number, actor=actor, now=now)
            return _order(SimpleNamespace(**{**row._mapping, **values}))
        reason = "; ".join(str(p) for p in verdict.problems)
        conn.execute(update(orders).where(orders.c.id == row.id).values(
            state=O.REJECTED.value, reason=reason, changed_at=now))
        audit.record(conn, actor, events + [_event(row.number, "reject", O.VERIFYING.value, O.REJECTED.value,
                                                   reason)], now)
    raise InvalidValues(f"order {row.number} rejected", verdict.problems)


# ---------------------------------------------------------------- payment and allocation


def _move(conn: Connection, row, action: str, *, actor: str, now: datetime, reason: str | None = None,
          values: dict | None = None, **details) -> Event:
    """Move the order along its state machine (checked); returns the audit event to record."""
    to_state = order_target(action, row.number, O(row.state))
    conn.execute(update(orders).where(orders.c.id == row.id).values(state=to_state.value, changed_at=now,
                                                                    **(values or {})))
    return _event(row.number, action, row.state, to_state.value, reason, **details)


_ALLOCATED = (update(orders).where(orders.c.id == bindparam("order_id"))
              .values(state=O.ALLOCATED.value, iccid=bindparam("iccid"), changed_at=bindparam("now")))


def _settle(conn: Connection, row, *, actor: str, now: datetime) -> dict:
    """A fully paid order: paid, then its number assigned and a card picked (allocated). Returns the changed values."""
    order_target("pay", row.number, O(row.state))
    numbers.allocate(conn, str(row.msisdn), row.number, actor=actor, reason=f"order {row.number} paid")
    iccid = stock.pick_unit(conn, row.location, row.product, row.number, actor=actor, now=now)
    conn.execute(_ALLOCATED, {"order_id": row.id, "iccid": iccid, "now": now})
    audit.record(conn, actor, [
        _event(row.number, "pay", row.state, O.PAID.value, None, total_fen=row.total_fen),
        _event(row.number, "allocate", O.PAID.value, O.ALLOCATED.value, None, iccid=iccid, location=row.location)],
        now)
    return {"state": O.ALLOCATED.value, "iccid": iccid, "changed_at": now}


def settle_if_paid(conn: Connection, number: str, *, actor: str) -> bool:
    """Move an approved order that has netted its total on to paid and allocated (for
    payments recorded outside :func:`pay_order`, such as a statement import)."""
    row = _load(conn, number, lock=True)
    if row.state != O.APPROVED.value or payments.balance(conn, row.id) < row.total_fen:
        return False
    _settle(conn, row, actor=actor, now=utc_now())
    return True


def pay_order(db: Store | Connection, number: str, amount_fen: int, *, method: str, reference: str, actor: str,
              note: str | None = None) -> Order:
    """Collect a payment for an approved order. Partial payments leave it approved; the one
    that completes the total moves it on to paid and allocated (number assigned, card picked
    from the selling location) in the same transaction. The same (method, reference) again
    returns the order as it is; a fully paid order refuses more money. An order that costs
    nothing is settled with an amount of 0 (nothing enters the ledger)."""
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or amount_fen < 0:
        raise InvalidValue("amount", amount_fen, "must be a whole number of fen")
    method, reference = payments.check_method(method), payments.check_reference(reference)
    now = utc_now()
    with unit_of_work(db) as conn:
        row = _load(conn, number, lock=True)
        if O(row.state) in payments.SHOULD_BE_PAID:
            if payments.find(conn, method, reference) is None:
                raise Conflict(f"order {row.number} is already paid ({format_yuan(row.total_fen)}); nothing recorded")
            # The payment that completed it, again (returned as it is), or another one under its reference.
            payments.record(conn, row.id, row.number, payments.COLLECTION, amount_fen, method=method,
                            reference=reference, actor=actor)
            return _order(row)
        order_target("pay", row.number, O(row.state))
        due = row.total_fen - payments.balance(conn, row.id)
        if amount_fen > due:
            raise InvalidValue("amount", format_yuan(amount_fen), f"is more than the {format_yuan(due)} order "
                               f"{row.number} still owes")
        if amount_fen:
            paid = payments.record(conn, row.id, row.number, payments.COLLECTION, amount_fen, method=method,
                                   reference=reference, actor=actor, note=note, at=now)
            if not paid.created:
                return _order(row)
        elif due:
            raise InvalidValue("amount", amount_fen, "must be more than 0")
        if amount_fen < due:
            return _order(row)
        return _order(SimpleNamespace(**{**row._mapping, **_settle(conn, row, actor=actor, now=now)}))


# ---------------------------------------------------------------- shipping and delivery


def _shipment(conn: Connection, order_id: int):
    return conn.execute(select(shipments).where(shipments.c.order_id == order_id)
                        .order_by(shipments.c.id.desc()).limit(1)).first()


def ship_order(db: Store | Connection, number: str, *, courier: str, tracking_no: str, actor: str) -> Order:
    """Hand an allocated order's card to a courier: a shipment is created and the card leaves
    stock for the customer. (courier, tracking_no) is unique; any courier name is accepted."""
    courier = _text(courier, "courier", 32)
    tracking = str(tracking_no or "").strip()
    if not 0 < len(tracking) <= 40:
        raise InvalidValue("tracking_no", tracking_no, "a tracking number is required (at most 40 characters)")
    now = utc_now()
    with unit_of_work(db) as conn:
        row = _load(conn, number, lock=True)
        order_target("ship", row.number, O(row.state))
        used = conn.execute(select(orders.c.number).join(shipments, shipments.c.order_id == orders.c.id)
                            .where(shipments.c.courier == courier, shipments.c.tracking_no == tracking)).scalar()
        if used is not None:
            raise Conflict(f"{courier} tracking number {tracking} is already used by order {used}")
        stock.sell_unit(conn, row.iccid, row.location, row.number, actor=actor, now=now)
        conn.execute(shipments.insert().values(order_id=row.id, courier=courier, tracking_no=tracking,
                                               state=ShipmentState.CREATED.value, created_at=now, changed_at=now))
        audit.record(conn, actor, [
            _move(conn, row, "ship", actor=actor, now=now, courier=courier, tracking_no=tracking, iccid=row.iccid),
            Event("shipment", row.number, "create", None, ShipmentState.CREATED.value, None,
                  {"courier": courier, "tracking_no": tracking})], now)
        return _order(_load(conn, row.number))


_SHIPMENT_ACTIONS = {ShipmentState.IN_TRANSIT: "pick_up", ShipmentState.EXCEPTION: "exception",
                     ShipmentState.DELIVERED: "deliver", ShipmentState.RETURNED: "return"}


def _move_shipment(conn: Connection, row, action: str, *, actor: str, now: datetime, reason: str | None) -> Event:
    parcel = _shipment(conn, row.id)
    if parcel is None:
        raise IllegalTransition(f"order {row.number} has no shipment")
    to_state = shipment_target(action, parcel.tracking_no, ShipmentState(parcel.state))
    conn.execute(update(shipments).where(shipments.c.id == parcel.id).values(state=to_state.value, changed_at=now))
    return Event("shipment", row.number, action, parcel.state, to_state.value, reason,
                 {"courier": parcel.courier, "tracking_no": parcel.tracking_no})


def update_shipment(db: Store | Connection, number: str, state: str, *, actor: str,
                    reason: str | None = None) -> Order:
    """Record where an order's parcel is: in_transit, exception, delivered (the order is
    delivered) or returned (the customer refused it: the order is cancelled, see :func:`cancel_order`)."""
    try:
        target = ShipmentState(str(state).strip().lower())
        action = _SHIPMENT_ACTIONS[target]
    except (ValueError, KeyError):
        raise InvalidValue("state", state, "must be in_transit, exception, delivered or returned") from None
    if target == ShipmentState.DELIVERED:
        return deliver_order(db, number, actor=actor)
    if target == ShipmentState.RETURNED:
        return cancel_order(db, number, actor=actor, reason=reason or "the parcel came back")
    now = utc_now()
    with unit_of_work(db) as conn:
        row = _load(conn, number, lock=True)
        if row.state != O.SHIPPED.value:
            raise IllegalTransition(f"cannot update the shipment of order {row.number}: the order is {row.state}")
        audit.record(conn, actor, [_move_shipment(conn, row, action, actor=actor, now=now, reason=reason)], now)
        return _order(row)


def deliver_order(db: Store | Connection, number: str, *, actor: str) -> Order:
    """The customer signed for the parcel: shipment and order delivered."""
    now = utc_now()
    with unit_of_work(db) as conn:
        row = _load(conn, number, lock=True)
        order_target("deliver", row.number, O(row.state))
        audit.record(conn, actor, [_move_shipment(conn, row, "deliver", actor=actor, now=now, reason=None),
                                   _move(conn, row, "deliver", actor=actor, now=now)], now)
        return _order(_load(conn, row.number))


# ---------------------------------------------------------------- activation and after


def _promote_active(conn: Connection, numbers_: list[str] | None, *, actor: str) -> list[str]:
    """Delivered orders whose card the HLR has activated become activated; returns them."""
    stmt = (select(orders.c.id, orders.c.number, orders.c.state, orders.c.iccid)
            .join(sims, sims.c.iccid == orders.c.iccid)
            .where(orders.c.state == O.DELIVERED.value, sims.c.state == SimState.ACTIVE.value)
            .with_for_update(of=orders))
    if numbers_ is not None:
        stmt = stmt.where(orders.c.number.in_(numbers_))
    rows = conn.execute(stmt).all()
    now = utc_now()
    events = [_move(conn, row, "activate", actor=actor, now=now, iccid=row.iccid) for row in rows]
    audit.record(conn, actor, events, now)
    return [row.number for row in rows]


def activate_order(db: Store, number: str, *, actor: str, network: ProvisioningClient | None = None) -> Order:
    """Pair the delivered order's card with its number and subscriber and ask the HLR to
    activate it; with ``network`` the request is sent at once. The order is activated when
    the card is; until the HLR confirms it stays delivered and its card shows the pending
    activation (:func:`sync_activations`, or this again, finishes it)."""
    with unit_of_work(db) as conn:
        row = _load(conn, number, lock=True)
        order_target("activate", row.number, O(row.state))
        card = cards.get_card(conn, row.iccid)
        if card.state == SimState.ALLOCATED:
            card = cards.pair(conn, row.iccid, str(row.msisdn), row.subscriber_id, actor=actor,
                              reason=f"order {row.number}")
        if card.state == SimState.PAIRED and card.pending_action is None:
            cards.activate(conn, row.iccid, actor=actor, reason=f"order {row.number}")
            audit.record(conn, actor, [_event(row.number, "activate_requested", row.state, row.state, None,
                                              iccid=row.iccid)])
    if network is not None:
        cards.sync(db, network, iccids=[row.iccid])
    with unit_of_work(db) as conn:
        _promote_active(conn, [row.number], actor=actor)
        return _order(_load(conn, row.number))


def sync_activations(db: Store, network: ProvisioningClient | None = None, *, actor: str) -> list[str]:
    """Send pending HLR commands (with ``network``), then move every delivered order whose card
    is now active to activated; returns those orders' numbers."""
    if network is not None:
        cards.sync(db, network)
    with unit_of_work(db) as conn:
        return _promote_active(conn, None, actor=actor)


def record_first_topup(db: Store | Connection, number: str, amount_fen: int, *, actor: str) -> Order:
    """The customer's first top-up (首充) on the activated card: at least the plan's amount."""
    amount_fen = payments.check_amount(amount_fen)
    now = utc_now()
    with unit_of_work(db) as conn:
        row = _load(conn, number, lock=True)
        order_target("first_topup", row.number, O(row.state))
        needed = catalogue.get_plan(conn, row.plan).first_topup_fen
        if amount_fen < needed:
            raise InvalidValue("amount", format_yuan(amount_fen), f"is below plan {row.plan}'s first top-up of "
                               f"{format_yuan(needed)}")
        audit.record(conn, actor, [_move(conn, row, "first_topup", actor=actor, now=now,
                                         values={"first_topup_fen": amount_fen}, amount_fen=amount_fen)], now)
        return _order(_load(conn, row.number))


def complete_order(db: Store | Connection, number: str, *, actor: str, reason: str | None = None) -> Order:
    """Close an order after its first top-up."""
    now = utc_now()
    with unit_of_work(db) as conn:
        row = _load(conn, number, lock=True)
        audit.record(conn, actor, [_move(conn, row, "complete", actor=actor, now=now, reason=reason)], now)
        return _order(_load(conn, row.number))


# ---------------------------------------------------------------- cancellation and return


def _refund_all(conn: Connection, row, why: str, *, actor: str, limit: int | None = None) -> int:
    """Refund what the order has netted (at most ``limit``), per payment method; returns the fen refunded."""
    left = limit
    refunded = 0
    for method, net in sorted(payments.net_by_method(conn, row.id).items(), key=lambda item: -item[1]):
        amount = net if left is None else min(net, left)
        if amount <= 0:
            continue
        payments.record(conn, row.id, row.number, payments.REFUND, amount, method=method,
                        reference=f"{row.number}-{why}", actor=actor, note=f"order {why}")
        refunded += amount
        if left is not None:
            left -= amount
    return refunded


def _reason(reason: str | None) -> str:
    text_value = " ".join(str(reason or "").split())
    if not text_value:
        raise InvalidValue("reason", reason, "a reason is required")
    return text_value


def cancel_order(db: Store | Connection, number: str, *, actor: str, reason: str) -> Order:
    """Cancel an order before activation, undoing everything done: a shipped card comes back
    into stock (shipment returned), a picked card goes back on the shelf, the number returns to
    the pool, payments are refunded. An activated order must be returned instead."""
    reason = _reason(reason)
    now = utc_now()
    with unit_of_work(db) as conn:
        row = _load(conn, number, lock=True)
        order_target("cancel", row.number, O(row.state))
        events, done = [], {}
        if row.iccid:
            card = cards.get_card(conn, row.iccid)
            if card.state not in (SimState.ALLOCATED, SimState.IN_STOCK):
                raise Conflict(f"cannot cancel order {row.number}: its SIM {row.iccid} is {card.state} (paired with "
                               f"the number); activate it and return the order instead")
            if O(row.state) in (O.SHIPPED, O.DELIVERED):
                parcel = _shipment(conn, row.id)
                if parcel is not None and parcel.state != ShipmentState.RETURNED.value:
                    events.append(_move_shipment(conn, row, "return", actor=actor, now=now, reason=reason))
                stock.take_back_unit(conn, row.iccid, row.location, row.number, actor=actor, now=now)
            else:
                stock.unpick_unit(conn, row.iccid, row.number, actor=actor, now=now)
            done["card_back_at"] = row.location
        if row.msisdn and row.state != O.DRAFT.value:
            held = numbers.get_number(conn, str(row.msisdn))
            if held.effective_state(now) in (NumberState.RESERVED, NumberState.ASSIGNED) and held.holder == row.number:
                numbers.release(conn, str(row.msisdn), actor=actor, reason=f"order {row.number} cancelled")
                done["number_released"] = str(row.msisdn)
        done["refunded_fen"] = _refund_all(conn, row, "cancel", actor=actor) or None
        events.append(_move(conn, row, "cancel", actor=actor, now=now, reason=reason, values={"reason": reason},
                            **done))
        audit.record(conn, actor, events, now)
        return _order(_load(conn, row.number))


def return_order(db: Store, number: str, *, actor: str, reason: str, refund_fen: int | None = None,
                 network: ProvisioningClient | None = None) -> Order:
    """Take back an activated order: the card is terminated (HLR record removed, the number
    quarantined) and ``refund_fen`` (default: all it netted) paid back."""
    reason = _reason(reason)
    if refund_fen is not None and (isinstance(refund_fen, bool) or not isinstance(refund_fen, int) or refund_fen < 0):
        raise InvalidValue("refund", refund_fen, "must be a whole number of fen, 0 or more")
    now = utc_now()
    with unit_of_work(db) as conn:
        row = _load(conn, number, lock=True)
        order_target("return", row.number, O(row.state))
        net = payments.balance(conn, row.id)
        if refund_fen is not None and refund_fen > net:
            raise InvalidValue("refund", format_yuan(refund_fen), f"is more than the {format_yuan(net)} order "
                               f"{row.number} has netted")
        card = cards.get_card(conn, str(row.msisdn))  # the number's live card (a replacement, if any)
        if card.state != SimState.TERMINATED:
            cards.terminate(conn, card.iccid, actor=actor, reason=f"order {row.number} returned: {reason}")
        refunded = _refund_all(conn, row, "return", actor=actor, limit=refund_fen)
        audit.record(conn, actor, [_move(conn, row, "return", actor=actor, now=now, reason=reason,
                                         values={"reason": reason}, refunded_fen=refunded, iccid=card.iccid)], now)
    if network is not None:
        cards.sync(db, network, iccids=[card.iccid])
    return get_order(db, row.number)


# ---------------------------------------------------------------- reading


def get_order(db: Store | Connection, number_or_client_id: str) -> Order:
    """An order by its number, else by a client order id (NotFound, or Conflict if several channels used it)."""
    with unit_of_work(db) if isinstance(db, Connection) else db.read() as conn:
        value = str(number_or_client_id or "").strip()
        row = conn.execute(select(orders).where(orders.c.number == value.upper())).first()
        if row is not None:
            return _order(row)
        rows = conn.execute(select(orders).where(orders.c.client_order_id == value)).all()
        if not rows:
            raise NotFound(f"no order has number or client order id {value!r}")
        if len(rows) > 1:
            raise Conflict(f"client order id {value!r} is used by orders {', '.join(r.number for r in rows)}; "
                           "give the order number")
        return _order(rows[0])


def order_detail(db: Store | Connection, number: str) -> dict:
    """The order with its shipment, payments, balance, card and timeline (the audit records of
    the order and, since it was placed, of its number and card). Resident ID masked only."""
    with unit_of_work(db) if isinstance(db, Connection) else db.read() as conn:
        row = _load(conn, number)
        parcel = _shipment(conn, row.id)
        card = cards.get_card(conn, row.iccid) if row.iccid else None
        subjects = [row.number] + [str(s) for s in (row.msisdn, row.iccid) if s]
        timeline = conn.execute(select(audit_log).where(audit_log.c.subject.in_(subjects),
                                                        audit_log.c.at >= row.created_at)
                                .order_by(audit_log.c.id)).mappings().all()
        ledger = payments.list_payments(conn, order=row.number)
        net = payments.balance(conn, row.id)
    return {
        "order": _order(row).as_dict(),
        "shipment": {k: parcel._mapping[k] for k in ("courier", "tracking_no", "state", "created_at", "changed_at")}
        if parcel else None,
        "payments": [p.as_dict() for p in reversed(ledger)],
        "paid_fen": net,
        "due_fen": row.total_fen - net if row.state not in (O.CANCELLED.value, O.RETURNED.value) else 0,
        "card": {"iccid": card.iccid, "state": card.state, "network_sync": card.network_sync,
                 "pending_action": card.pending_action} if card else None,
        "timeline": [{**dict(r), "details": json.loads(r["details"]) if r["details"] else None} for r in timeline],
    }


def list_orders(db: Store | Connection, *, state: str | None = None, agent: str | None = None,
                since: datetime | None = None, limit: int = 100) -> list[Order]:
    """Orders, newest first: in ``state``, placed through ``agent`` (its code), created since ``since``."""
    stmt = select(orders).order_by(orders.c.id.desc()).limit(limit)
    if state is not None:
        try:
            stmt = stmt.where(orders.c.state == OrderState(str(state).strip().lower()).value)
        except ValueError:
            raise InvalidValue("state", state, f"must be one of {', '.join(s.value for s in OrderState)}") from None
    if agent is not None:
        stmt = stmt.where(orders.c.channel == _channel(agent))
    if since is not None:
        stmt = stmt.where(orders.c.created_at >= since)
    with unit_of_work(db) if isinstance(db, Connection) else db.read() as conn:
        return [_order(row) for row in conn.execute(stmt)]


def pipeline_counts(db: Store | Connection) -> dict[str, int]:
    """Orders per state, along the pipeline then rejected, cancelled, returned."""
    with unit_of_work(db) if isinstance(db, Connection) else db.read() as conn:
        found = dict(conn.execute(select(orders.c.state, func.count()).group_by(orders.c.state)).all())
    order = list(PIPELINE) + [O.REJECTED, O.CANCELLED, O.RETURNED]
    return {state.value: found.get(state.value, 0) for state in order}
