"""Real-name registration (实名制), the ID blacklist and the 一证五号 limit.

One subscriber per person: registering a resident ID again returns the subscriber already
registered (refused if the name differs). The clear ID is used only to validate, mask,
encrypt and hash; it never reaches the audit trail, an error (IDs are shown masked), a log
line or a return value. See :mod:`hkops.subscribers.tables` for the lookup hash.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cache
from datetime import date, datetime
from typing import Callable, Iterable, Sequence

from sqlalchemy import Connection, bindparam, select, text

from hkops import audit, carriers
from hkops.audit import Event
from hkops.errors import Conflict, InvalidValue, NotFound
from hkops.ids import mask_id_text, parse_msisdn, parse_phone, parse_resident_id
from hkops.security.access import out_of_scope, require
from hkops.security.crypto import KEY_BYTES, Keyring, Secret, load_keyring
from hkops.store.engine import Store, unit_of_work
from hkops.subscribers.tables import id_blacklist, subscriber_keys, subscriber_numbers, subscribers
from hkops.timeutil import utc_now
from hkops.security import access

#: 一证五号: live numbers one person may hold with one carrier (MIIT practice).
NUMBERS_PER_CARRIER = 5
LOOKUP_KEY_NAME = "resident_id_lookup"
_LOOKUP_CONTEXT = f"subscriber_keys.key:{LOOKUP_KEY_NAME}"
MAX_NAME = 64


@dataclass(frozen=True)
class Subscriber:
    """A registered person, as safe to show: the resident ID only masked."""

    id: int
    name: str
    id_masked: str
    #: Only the year: with the month and day beside the mask, the ID could be rebuilt.
    birth_year: int
    gender: str
    contact: str
    address: str | None
    created_at: datetime
    created_by: str
    #: Keyed hash of the resident ID (not the ID; useless without the lookup key).
    resident_id_hash: str = field(repr=False)
    #: False when :func:`register` found this person already registered.
    created: bool = field(default=True, compare=False)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in (
            "id", "name", "id_masked", "birth_year", "gender", "contact", "address", "created_at", "created_by")}


def _subscriber(row, created: bool = True) -> Subscriber:
    return Subscriber(id=row.id, name=row.name, id_masked=row.id_masked, birth_year=row.birth_year,
                      gender=row.gender, contact=row.contact, address=row.address, created_at=row.created_at,
                      created_by=row.created_by, resident_id_hash=row.resident_id_hash, created=created)


_COLUMNS = [subscribers.c[c] for c in ("id", "name", "id_masked", "birth_year", "gender", "contact", "address",
                                       "created_at", "created_by", "resident_id_hash")]
_SHOWN = ("name", "id_masked", "birth_year", "gender", "contact", "address", "resident_id_hash")
# Rows inserted together come back matched by their unique hash: one multi-row INSERT ... RETURNING
# (asking for parameter order instead makes SQLite insert them one by one).
_INSERT_RETURNING_ID = subscribers.insert().returning(subscribers.c.resident_id_hash, subscribers.c.id)
_SET_TOKEN = (subscribers.update().where(subscribers.c.id == bindparam("row_id"))
              .values(resident_id_enc=bindparam("token")))
_CHUNK = 900


# ---------------------------------------------------------------- the lookup hash


def _dialect_insert(conn: Connection):
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _lookup_key(conn: Connection, keyring: Keyring, *, create: bool) -> bytes | None:
    """The HMAC key of resident-ID hashes, decrypted; made (once, race-free) when ``create``."""
    query = select(subscriber_keys.c.key_enc).where(subscriber_keys.c.name == LOOKUP_KEY_NAME)
    token = conn.execute(query).scalar()
    if token is None:
        if not create:
            return None
        new = os.urandom(KEY_BYTES).hex()
        conn.execute(_dialect_insert(conn)(subscriber_keys).values(
            name=LOOKUP_KEY_NAME, key_enc=keyring.encrypt(new, _LOOKUP_CONTEXT), created_at=utc_now(),
        ).on_conflict_do_nothing())
        token = conn.execute(query).scalar_one()
    return bytes.fromhex(keyring.decrypt(token, _LOOKUP_CONTEXT))


def _hash(key: bytes, rid: str) -> str:
    return hmac.new(key, b"resident_id\0" + rid.encode("ascii"), hashlib.sha256).hexdigest()


def lookup_hash(conn: Connection, resident_id: str, keyring: Keyring, *, create: bool) -> str | None:
    """The keyed lookup hash of ``resident_id`` (validated first). Without a lookup key yet:
    made when ``create``, else None (nobody is registered or blacklisted then)."""
    found = lookup_hashes(conn, [parse_resident_id(resident_id)], keyring, create=create)
    return None if found is None else found[0]


def lookup_hashes(conn: Connection, resident_ids: Sequence[str], keyring: Keyring, *,
                  create: bool) -> list[str] | None:
    """:func:`lookup_hash` of many resident IDs, already validated by :func:`parse_resident_id`
    (the key is read once); None when no key exists and ``create`` is False."""
    key = _lookup_key(conn, keyring, create=create)
    return None if key is None else [_hash(key, rid) for rid in resident_ids]


def pseudonyms(conn: Connection, hashes: Iterable[str], *, keyring: Keyring | None = None) -> dict[str, str]:
    """Pseudonymous customer keys for analysts: lookup hash -> ``P`` + 16 hex characters, the
    same for one person everywhere, under a key derived one-way from the lookup key (so a key
    neither reveals the lookup hash nor can be computed from a resident ID without the key file)."""
    hashes = sorted(set(hashes) - {None})
    if not hashes:
        return {}
    key = _lookup_key(conn, keyring or load_keyring(), create=False)
    if key is None:
        return {}
    derived = hmac.new(key, b"hkops analytics pseudonym key\0", hashlib.sha256).digest()
    return {h: "P" + hmac.new(derived, h.encode("ascii"), hashlib.sha256).hexdigest()[:16] for h in hashes}


def resident_id_hash(conn: Connection, resident_id: str, *, keyring: Keyring | None = None) -> str | None:
    """The stored lookup hash of ``resident_id`` (validated first); None before any is stored."""
    return lookup_hash(conn, resident_id, keyring or load_keyring(), create=False)


# ---------------------------------------------------------------- validation


def _name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidValue("name", "", "a name is required")
    text = " ".join(name.split())
    if len(text) > MAX_NAME:
        raise InvalidValue("name", f"<{len(text)} characters>", f"at most {MAX_NAME} characters")
    return text


def birth_date(rid: str) -> date:
    """The birth date in a resident ID already parsed (:func:`hkops.ids.parse_resident_id` checked it is real)."""
    return date(int(rid[6:10]), int(rid[10:12]), int(rid[12:14]))


def _masked(rid: str) -> str:
    """:func:`hkops.ids.mask_resident_id` of an ID already parsed."""
    return mask_id_text(rid)


def _blacklist_reason(conn: Connection, digest: str) -> str | None:
    return blacklisted(conn, [digest]).get(digest)


def _chunks(values: Sequence, size: int = _CHUNK):
    for start in range(0, len(values), size):
        yield values[start:start + size]


# Set-wise statements, built once: ``hashes`` is a list of up to _CHUNK lookup hashes.
_HASHES = bindparam("hashes", expanding=True)
_BLACKLISTED = select(id_blacklist.c.resident_id_hash, id_blacklist.c.reason).where(
    id_blacklist.c.resident_id_hash.in_(_HASHES))
_REGISTERED = select(*_COLUMNS).where(subscribers.c.resident_id_hash.in_(_HASHES))
_REGISTERED_LOCKED = _REGISTERED.with_for_update()

def blacklisted(conn: Connection, hashes: Iterable[str]) -> dict[str, str]:
    """The blacklist reason of each lookup hash that is on the blacklist."""
    found: dict[str, str] = {}
    for chunk in _chunks(sorted(set(hashes))):
        found.update(conn.execute(_BLACKLISTED, {"hashes": chunk}).all())
    return found


def registered(conn: Connection, hashes: Iterable[str], *, lock: bool = False) -> dict[str, Subscriber]:
    """The subscriber registered under each of these lookup hashes (those that are); with
    ``lock`` their rows stay locked until the end of the transaction (PostgreSQL)."""
    found: dict[str, Subscriber] = {}
    for chunk in _chunks(sorted(set(hashes))):
        for row in conn.execute(_REGISTERED_LOCKED if lock else _REGISTERED, {"hashes": chunk}):
            found[row.resident_id_hash] = _subscriber(row, created=False)
    return found


# ---------------------------------------------------------------- registration


def register(
    db: Store | Connection,
    *,
    name: str,
    resident_id: str,
    contact: str,
    actor: str,
    address: str | None = None,
    keyring: Keyring | None = None,
) -> Subscriber:
    """Register a person by resident ID (checksum, real birth date, not in the future, known
    area); refused when the ID is blacklisted. The same ID again returns the subscriber
    already registered (``created`` False), or is refused if the name differs."""
    access.require(actor, "subscribers.write", f"register subscriber {name}", db)
    rid = parse_resident_id(resident_id)
    masked = _masked(rid)
    name = _name(name)
    contact = parse_phone(contact)
    address = " ".join(address.split()) or None if address is not None else None
    keyring = keyring or load_keyring()
    with unit_of_work(db) as conn:
        digest = lookup_hashes(conn, [rid], keyring, create=True)[0]
        reason = _blacklist_reason(conn, digest)
        if reason is not None:
            raise Conflict(f"resident ID {masked} is blacklisted ({reason}); it cannot be registered")
        existing = registered(conn, [digest], lock=True).get(digest)
        if existing is not None:
            if existing.name != name:
                raise Conflict(f"resident ID {masked} is already registered as subscriber {existing.id} "
                               "under another name")
            return existing
        return add_subscribers(conn, [NewSubscriber(name, rid, digest, contact, address)], actor=actor,
                               keyring=keyring)[0]


@dataclass(frozen=True)
class NewSubscriber:
    """A person to register: values already checked, the resident ID as :func:`parse_resident_id` gives it."""

    name: str
    resident_id: str = field(repr=False)
    resident_id_hash: str = field(repr=False)
    contact: str
    address: str | None = None


def add_subscribers(conn: Connection, people: Sequence[NewSubscriber], *, actor: str, keyring: Keyring,
                    now: datetime | None = None) -> list[Subscriber]:
    """Insert people the caller has checked are neither registered nor blacklisted (under its
    locks), in its transaction: their resident IDs encrypted, one audit record each."""
    if not people:
        return []
    now = now or utc_now()
    rows = [dict(name=p.name, resident_id_enc="", resident_id_hash=p.resident_id_hash,
                 id_masked=_masked(p.resident_id), birth_year=int(p.resident_id[6:10]),
                 gender="male" if int(p.resident_id[16]) % 2 else "female", contact=p.contact, address=p.address,
                 created_at=now, created_by=actor) for p in people]
    made = dict(conn.execute(_INSERT_RETURNING_ID, rows).all())
    ids = [made[p.resident_id_hash] for p in people]
    # Each token is bound to its row id, known only once inserted (same transaction).
    tokens = keyring.encrypt_column([p.resident_id for p in people], "subscribers.resident_id", [str(i) for i in ids])
    conn.execute(_SET_TOKEN, [{"row_id": i, "token": t} for i, t in zip(ids, tokens)])
    audit.record(conn, actor, [Event("subscriber", str(i), "register", None, "registered",
                                     f"real-name registration, resident ID {row['id_masked']}",
                                     {"id_masked": row["id_masked"]}) for i, row in zip(ids, rows)], now)
    return [Subscriber(id=i, **{k: row[k] for k in _SHOWN}, created_at=now, created_by=actor)
            for i, row in zip(ids, rows)]


def find(
    db: Store | Connection,
    *,
    resident_id: str | None = None,
    masked: str | None = None,
    subscriber_id: int | None = None,
    keyring: Keyring | None = None,
    actor: str | None = None,
) -> list[Subscriber]:
    """Subscribers matching exactly one criterion: the resident ID (0 or 1), a masked ID
    such as ``11***************X`` (many people share one; an older, wider mask such as
    ``110105********002X`` is narrowed to it), or the subscriber id.
    Needs ``subscribers.read``; an agent user finds only the people of its subtree's orders."""
    require(actor, "subscribers.read", "find subscribers")
    given = [c for c in (resident_id, masked, subscriber_id) if c is not None]
    if len(given) != 1:
        raise InvalidValue("find", f"{len(given)} criteria", "give exactly one of resident_id, masked, subscriber_id")
    with db.read() if isinstance(db, Store) else nullcontext(db) as conn:
        query = select(*_COLUMNS).order_by(subscribers.c.id)
        if resident_id is not None:
            digest = resident_id_hash(conn, resident_id, keyring=keyring)
            if digest is None:
                return []
            query = query.where(subscribers.c.resident_id_hash == digest)
        elif masked is not None:
            text = masked.strip().upper()
            if len(text) != 18:
                raise InvalidValue("masked", mask_id_text(text), "a masked ID is 18 characters, like 11***************X")
            query = query.where(subscribers.c.id_masked == mask_id_text(text))
        else:
            query = query.where(subscribers.c.id == int(subscriber_id))
        scope = _scope(actor)
        if scope is not None:
            query = query.where(subscribers.c.id.in_(scope))
        return [_subscriber(row) for row in conn.execute(query)]


def _scope(actor: str | None):
    """For an agent user, a SELECT of the ids of the people on its subtree's orders; else None."""
    from hkops.agents.service import scope_query
    from hkops.orders.tables import orders

    agents = scope_query(actor)
    return None if agents is None else select(orders.c.subscriber_id).where(orders.c.agent_id.in_(agents))


def get(db: Store | Connection, subscriber_id: int, *, actor: str | None = None) -> Subscriber:
    """The subscriber with this id; :class:`NotFound` if there is none (an agent user: refused
    alike when the person is on none of its subtree's orders)."""
    found = find(db, subscriber_id=subscriber_id, actor=actor)
    if not found:
        if _scope(actor) is not None:
            raise out_of_scope(actor, f"see subscriber {subscriber_id}")
        raise NotFound(f"subscriber {subscriber_id} does not exist")
    return found[0]


def reveal_resident_id(db: Store | Connection, subscriber_id: int, *, actor: str,
                       keyring: Keyring | None = None, reason: str | None = None) -> Secret:
    """The clear resident ID of a subscriber, as a :class:`Secret`: only for a role with
    ``pii.read`` and with a ``reason``; each reveal is audited with that reason."""
    access.require(actor, "pii.read", f"reveal the resident ID of subscriber {subscriber_id}", db)
    reason = " ".join(str(reason or "").split())
    if not reason:
        raise InvalidValue("reason", reason, "say why the full resident ID is needed (the reveal is audited with it)")
    keyring = keyring or load_keyring()
    with unit_of_work(db) as conn:
        token = conn.execute(select(subscribers.c.resident_id_enc).where(subscribers.c.id == subscriber_id)).scalar()
        if token is None:
            raise NotFound(f"subscriber {subscriber_id} does not exist")
        secret = keyring.reveal(token, f"subscribers.resident_id:{subscriber_id}")
        audit.record(conn, actor, [Event("subscriber", str(subscriber_id), "reveal_id", reason=reason)])
    return secret


# ---------------------------------------------------------------- blacklist


def blacklist_add(db: Store | Connection, resident_id: str, reason: str, actor: str, *,
                  keyring: Keyring | None = None) -> str:
    """Put a resident ID on the blacklist (it can no longer register or take numbers).
    Returns the masked ID; :class:`Conflict` if it is listed already."""
    access.require(actor, "subscribers.write", "add a resident ID to the blacklist", db)
    rid = parse_resident_id(resident_id)
    masked = _masked(rid)
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidValue("reason", reason, "a reason is required")
    reason = reason.strip()
    keyring = keyring or load_keyring()
    now = utc_now()
    with unit_of_work(db) as conn:
        digest = _hash(_lookup_key(conn, keyring, create=True), rid)
        if _blacklist_reason(conn, digest) is not None:
            raise Conflict(f"resident ID {masked} is already blacklisted")
        conn.execute(id_blacklist.insert().values(resident_id_hash=digest, id_masked=masked, reason=reason,
                                                  added_at=now, added_by=actor))
        audit.record(conn, actor, [Event("id_blacklist", masked, "blacklist", None, "blacklisted", reason)], now)
    return masked


def blacklist_remove(db: Store | Connection, resident_id: str, actor: str, *, reason: str | None = None,
                     keyring: Keyring | None = None) -> str:
    """Take a resident ID off the blacklist; :class:`NotFound` if it is not on it. Returns the masked ID."""
    access.require(actor, "subscribers.write", "remove a resident ID from the blacklist", db)
    rid = parse_resident_id(resident_id)
    masked = _masked(rid)
    keyring = keyring or load_keyring()
    with unit_of_work(db) as conn:
        key = _lookup_key(conn, keyring, create=False)
        removed = 0
        if key is not None:
            removed = conn.execute(id_blacklist.delete().where(
                id_blacklist.c.resident_id_hash == _hash(key, rid))).rowcount
        if not removed:
            raise NotFound(f"resident ID {masked} is not blacklisted")
        audit.record(conn, actor, [Event("id_blacklist", masked, "unblacklist", "blacklisted", None, reason)])
    return masked


def is_blacklisted(db: Store | Connection, resident_id: str, *, keyring: Keyring | None = None) -> bool:
    """Whether the resident ID is on the blacklist."""
    with db.read() if isinstance(db, Store) else nullcontext(db) as conn:
        digest = resident_id_hash(conn, resident_id, keyring=keyring)
        return digest is not None and _blacklist_reason(conn, digest) is not None


# ---------------------------------------------------------------- 一证五号
#
# One count and one lock for every path that gives a person a number (order intake, pairing,
# bulk pairing, replacement, reclaim). A person's numbers of a carrier are the DISTINCT
# numbers of their live bindings and of their open orders; the lock is a PostgreSQL advisory
# lock per lookup hash, taken before counting (SQLite writers are serial already).


def lock_people(conn: Connection, hashes: Iterable[str]) -> None:
    """Take the 一证五号 lock of these people (by lookup hash) until the end of the
    transaction, in one order so two callers never deadlock. Every path that gives a person
    a number takes it before :func:`numbers_held` (PostgreSQL; SQLite's writers are serial)."""
    keys = sorted(set(hashes))
    if keys and conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('hkops-person-' || k)) "
                          "FROM unnest(CAST(:keys AS text[])) AS k"), {"keys": keys})


@cache
def _held_statements():
    from hkops.orders.model import OPEN
    from hkops.orders.tables import orders

    bound = (select(subscribers.c.resident_id_hash, subscriber_numbers.c.carrier, subscriber_numbers.c.msisdn)
             .select_from(subscriber_numbers.join(subscribers, subscribers.c.id == subscriber_numbers.c.subscriber_id))
             .where(subscribers.c.resident_id_hash.in_(_HASHES), subscriber_numbers.c.until.is_(None)))
    ordered = (select(orders.c.resident_id_hash, orders.c.carrier, orders.c.msisdn, orders.c.id)
               .where(orders.c.resident_id_hash.in_(_HASHES), orders.c.state.in_([s.value for s in OPEN])))
    return bound, ordered


def numbers_held(conn: Connection, hashes: Iterable[str]) -> dict[tuple[str, str], set]:
    """The distinct numbers each person holds per (lookup hash, carrier): live bindings and
    numbers of open orders (an open order without a number yet counts as one, ``"order-<id>"``).
    Call :func:`lock_people` first when the answer decides a write."""
    bound, ordered = _held_statements()
    held: dict[tuple[str, str], set] = {}
    for chunk in _chunks(sorted(set(hashes))):
        for digest, carrier, msisdn in conn.execute(bound, {"hashes": chunk}):
            held.setdefault((digest, carriers.canonical_name(carrier)), set()).add(int(msisdn))
        for digest, carrier, msisdn, order_id in conn.execute(ordered, {"hashes": chunk}):
            held.setdefault((digest, carriers.canonical_name(carrier)), set()).add(
                int(msisdn) if msisdn is not None else f"order-{order_id}")
    return held


def count_numbers(conn: Connection, resident_id_hash: str, carrier: str) -> int:
    """Numbers of ``carrier`` the person with this lookup hash holds (:func:`numbers_held`)."""
    return count_numbers_many(conn, [resident_id_hash]).get((resident_id_hash, carriers.canonical_name(carrier)), 0)


def count_numbers_many(conn: Connection, hashes: Iterable[str]) -> dict[tuple[str, str], int]:
    """Numbers held per (lookup hash, carrier), bound or on open orders, for the people with
    these hashes (those holding any)."""
    return {key: len(found) for key, found in numbers_held(conn, hashes).items()}


def _locked_subscriber(conn: Connection, subscriber_id: int):
    """The subscriber row, with the 一证五号 lock of the person taken (:func:`lock_people`)."""
    row = conn.execute(select(*_COLUMNS).where(subscribers.c.id == subscriber_id)).first()
    if row is None:
        raise NotFound(f"subscriber {subscriber_id} does not exist")
    lock_people(conn, [row.resident_id_hash])
    return row


def _too_many(masked: str, held: int, carrier: str) -> Conflict:
    return Conflict(f"resident ID {masked} already holds {held} {carrier} numbers (bound or on open orders); "
                    f"one person may hold at most {NUMBERS_PER_CARRIER} (一证五号)")


def check_number_limit(
    conn: Connection,
    subscriber_id: int,
    carrier: str,
    active_count_fn: Callable[[Connection, str, str], int] | None = None,
    *,
    msisdn: str | int | None = None,
) -> int:
    """Take the person's 一证五号 lock and raise :class:`Conflict` if giving them a number of
    ``carrier`` would make more than 5; else return how many they hold now. ``msisdn``: the
    number to give, which does not count again when they hold it already (a replacement, the
    number of their own open order). ``active_count_fn(conn, resident_id_hash, carrier)``
    overrides the count (default: :func:`numbers_held`)."""
    carrier = carriers.canonical_name(carrier)
    row = _locked_subscriber(conn, subscriber_id)
    if active_count_fn is not None:
        held = active_count_fn(conn, row.resident_id_hash, carrier)
        if held >= NUMBERS_PER_CARRIER:
            raise _too_many(row.id_masked, held, carrier)
        return held
    found = numbers_held(conn, [row.resident_id_hash]).get((row.resident_id_hash, carrier), set())
    if (msisdn is None or int(msisdn) not in found) and len(found) >= NUMBERS_PER_CARRIER:
        raise _too_many(row.id_masked, len(found), carrier)
    return len(found)


def bind_number(conn: Connection, subscriber_id: int, msisdn: str | int, carrier: str, actor: str) -> int:
    """Bind a number to a subscriber (called by the card lifecycle, in its transaction).
    Refused for a blacklisted ID, a number already bound, or a sixth number for one person
    and carrier (:func:`check_number_limit`). Returns the link id."""
    number = parse_msisdn(msisdn)
    carrier = carriers.canonical_name(carrier)
    row = _locked_subscriber(conn, subscriber_id)
    if _blacklist_reason(conn, row.resident_id_hash) is not None:
        raise Conflict(f"resident ID {row.id_masked} is blacklisted; no number can be bound to it")
    holder = conn.execute(select(subscriber_numbers.c.subscriber_id).where(
        subscriber_numbers.c.msisdn == int(number), subscriber_numbers.c.until.is_(None))).scalar()
    if holder is not None:
        raise Conflict(f"number {number} is already bound to subscriber {holder}")
    check_number_limit(conn, subscriber_id, carrier, msisdn=number)
    now = utc_now()
    link_id = conn.execute(subscriber_numbers.insert().values(
        subscriber_id=subscriber_id, msisdn=int(number), carrier=carrier, since=now)).inserted_primary_key[0]
    audit.record(conn, actor, [Event("subscriber", str(subscriber_id), "bind_number", None, "bound",
                                     details={"msisdn": number, "carrier": carrier})], now)
    return link_id


def bind_numbers(conn: Connection, bindings: list[tuple[int, int, str]], actor: str) -> None:
    """:func:`bind_number` for many (subscriber id, msisdn, carrier) at once, with the same
    refusals and the same lock and count (earlier bindings of the call counting); a refusal
    binds none. For bulk pairing."""
    if not bindings:
        return
    ids = sorted({sid for sid, _, _ in bindings})
    people = {}
    for chunk in _chunks(ids):
        rows = conn.execute(select(subscribers.c.id, subscribers.c.resident_id_hash, subscribers.c.id_masked)
                            .where(subscribers.c.id.in_(chunk))).all()
        people.update({r.id: r for r in rows})
    missing = [sid for sid in ids if sid not in people]
    if missing:
        raise NotFound(f"subscriber {missing[0]} does not exist")
    hashes = {p.resident_id_hash for p in people.values()}
    lock_people(conn, hashes)
    listed, held, bound = blacklisted(conn, hashes), numbers_held(conn, hashes), {}
    for chunk in _chunks([int(m) for _, m, _ in bindings]):
        bound.update(dict(conn.execute(select(subscriber_numbers.c.msisdn, subscriber_numbers.c.subscriber_id)
                                       .where(subscriber_numbers.c.msisdn.in_(chunk),
                                              subscriber_numbers.c.until.is_(None))).all()))
    now, rows, events = utc_now(), [], []
    for sid, msisdn, carrier in bindings:
        person, carrier = people[sid], carriers.canonical_name(carrier)
        if person.resident_id_hash in listed:
            raise Conflict(f"resident ID {person.id_masked} is blacklisted; no number can be bound to it")
        if int(msisdn) in bound:
            raise Conflict(f"number {msisdn} is already bound to subscriber {bound[int(msisdn)]}")
        mine = held.setdefault((person.resident_id_hash, carrier), set())
        if int(msisdn) not in mine and len(mine) >= NUMBERS_PER_CARRIER:
            raise _too_many(person.id_masked, len(mine), carrier)
        mine.add(int(msisdn))
        bound[int(msisdn)] = sid
        rows.append({"subscriber_id": sid, "msisdn": int(msisdn), "carrier": carrier, "since": now})
        events.append(Event("subscriber", str(sid), "bind_number", None, "bound",
                            details={"msisdn": str(msisdn), "carrier": carrier}))
    conn.execute(subscriber_numbers.insert(), rows)
    audit.record(conn, actor, events, now)


def unbind_number(conn: Connection, subscriber_id: int, msisdn: str | int, actor: str, *,
                  reason: str | None = None) -> None:
    """End the live binding of a number to a subscriber (terminated, ported away...): it no
    longer counts for 一证五号. :class:`NotFound` if it is not bound to them."""
    number = parse_msisdn(msisdn)
    now = utc_now()
    ended = conn.execute(subscriber_numbers.update().where(
        subscriber_numbers.c.subscriber_id == subscriber_id, subscriber_numbers.c.msisdn == int(number),
        subscriber_numbers.c.until.is_(None)).values(until=now)).rowcount
    if not ended:
        raise NotFound(f"number {number} is not bound to subscriber {subscriber_id}")
    audit.record(conn, actor, [Event("subscriber", str(subscriber_id), "unbind_number", "bound", None, reason,
                                     {"msisdn": number})], now)


def numbers_of(db: Store | Connection, subscriber_id: int, *, live_only: bool = True) -> list[dict]:
    """The numbers bound to a subscriber (live ones only by default), oldest first."""
    with db.read() if isinstance(db, Store) else nullcontext(db) as conn:
        query = select(subscriber_numbers.c.msisdn, subscriber_numbers.c.carrier, subscriber_numbers.c.since,
                       subscriber_numbers.c.until).where(subscriber_numbers.c.subscriber_id == subscriber_id)
        if live_only:
            query = query.where(subscriber_numbers.c.until.is_(None))
        return [{**row._mapping, "msisdn": str(row.msisdn)}
                for row in conn.execute(query.order_by(subscriber_numbers.c.id))]
