"""The SIM card lifecycle, kept in step with the HLR (DOMAIN.md section 5).

Each move is one unit of work that changes inventory and writes the HLR command into
``provisioning_outbox``; :func:`sync` then sends the pending commands (pipelined, each
with its own request id, so a repeat is never applied twice). Moves that take service
away (suspend, report loss, terminate) change inventory at once; moves that give service
(activate, resume, lift a loss, replace) take effect when the HLR confirms. Until then the
card is visibly ``pending`` and ``hkops hlr sync`` (or the next move) sends it again.

A definite refusal (a result code other than OK that is not the idempotent "ADD SUB of a
subscriber the HLR has") ends the move visibly (:func:`_refused`): the card's
``network_sync`` becomes ``failed`` with the HLR's reason kept on its outbox row, it no
longer waits, and :func:`retry` or :func:`abandon` settle it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable

from sqlalchemy import Connection, and_, bindparam, func, or_, select, update

from hkops import audit
from hkops.audit import Event
from hkops.cards.model import MOVES, NetworkSync, SimState, SuspendReason, target_state
from hkops.cards.tables import provisioning_outbox as outbox
from hkops.cards.tables import sim_batches, sims
from hkops.errors import Conflict, IllegalTransition, InvalidValue, InvalidValues, NotFound
from hkops.ids import mask_resident_id, parse_iccid, parse_msisdn
from hkops.network import BarringReason, ProvisioningClient, ProvisioningUnavailable, add_sub, mod_imsi, mod_odb, rmv_sub
from hkops.numbers import service as numbers
from hkops.numbers.model import NumberState
from hkops.numbers.tables import number_blocks
from hkops.numbers.tables import numbers as numbers_table
from hkops.security.access import agent_scope, out_of_scope, require
from hkops.security.crypto import Keyring, load_keyring
from hkops.stock import service as stock
from hkops.store.engine import Store, unit_of_work
from hkops.subscribers import service as subscribers
from hkops.timeutil import utc_now
from hkops.security import access

C = SimState
#: Moves whose inventory change waits for the HLR's confirmation.
ENABLING = frozenset({"activate", "resume", "lift_loss", "replace"})
LIVE = frozenset({C.PAIRED, C.ACTIVE, C.SUSPENDED, C.LOST})
_OK_EXISTS = 3002  # ADD SUB for a subscriber the HLR already has (a forgotten repeat)
#: Who the audit trail names for what the HLR decided.
HLR_ACTOR = "hlr"


@dataclass(frozen=True)
class Card:
    """A SIM card as inventory sees it (no secrets)."""

    iccid: str
    imsi: str
    state: str
    msisdn: str | None
    subscriber_id: int | None
    network_sync: str
    pending_action: str | None
    suspend_reason: str | None
    carrier: str
    activated_at: datetime | None
    replaced_by: str | None
    swapped_at: datetime | None


@dataclass
class SyncReport:
    """What one :func:`sync` achieved."""

    sent: int = 0
    confirmed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    pending: int = 0


def _card(conn: Connection, iccid: str, *, lock: bool = True) -> Card:
    stmt = (select(sims, sim_batches.c.carrier).join(sim_batches, sims.c.batch_id == sim_batches.c.id)
            .where(sims.c.iccid == iccid))
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=sims)
    row = conn.execute(stmt).mappings().first()
    if row is None:
        raise NotFound(f"SIM {iccid} is not in the inventory")
    return _card_from(row)


def _card_from(row) -> Card:
    return Card(iccid=row["iccid"], imsi=row["imsi"], state=row["state"],
                msisdn=str(row["msisdn"]) if row["msisdn"] else None, subscriber_id=row["subscriber_id"],
                network_sync=row["network_sync"], pending_action=row["pending_action"],
                suspend_reason=row["suspend_reason"], carrier=row["carrier"], activated_at=row["activated_at"],
                replaced_by=row["replaced_by"], swapped_at=row["swapped_at"])


def get_card(db: Store | Connection, value: str, *, actor: str | None = None) -> Card:
    """The card by ICCID, or the live card of an MSISDN (``cards.read``; an agent user: only cards
    at its subtree's stock locations or on its subtree's orders)."""
    require(actor, "cards.read", f"see SIM card {value}")
    with unit_of_work(db) as conn:
        if agent_scope(actor) is None:
            return _find_card(conn, value)
        try:
            card = _find_card(conn, value)
        except NotFound:
            card = None
        if card is None or not _in_scope(conn, card.iccid, actor):
            raise out_of_scope(actor, f"see SIM card {value}")
        return card


def _in_scope(conn: Connection, iccid: str, actor: str) -> bool:
    """Whether an agent user may see card ``iccid``: it is at a stock location of its subtree,
    or on an order of its subtree."""
    from hkops.agents.service import scope_locations, scope_query
    from hkops.orders.tables import orders

    if conn.execute(select(sims.c.location).where(sims.c.iccid == iccid)).scalar() in scope_locations(conn, actor):
        return True
    return conn.execute(select(orders.c.id).where(orders.c.iccid == iccid, orders.c.agent_id.in_(scope_query(actor)))
                        .limit(1)).first() is not None


def _find_card(conn: Connection, value: str) -> Card:
    digits = str(value).replace(" ", "")
    if digits.startswith("89") and len(digits) in (19, 20):
        return _card(conn, parse_iccid(digits), lock=False)
    msisdn = int(parse_msisdn(value))
    rows = conn.execute(select(sims.c.iccid, sims.c.state).where(sims.c.msisdn == msisdn)).all()
    live = [r.iccid for r in rows if r.state in LIVE] or [r.iccid for r in rows]
    if not live:
        raise NotFound(f"no SIM card is paired with {msisdn}")
    return _card(conn, live[-1], lock=False)


def _set(conn: Connection, iccid: str, **values) -> None:
    conn.execute(update(sims).where(sims.c.iccid == iccid).values(changed_at=utc_now(), **values))


def _event(card: Card, action: str, to_state: str, reason: str | None, **details) -> Event:
    return Event("sim", card.iccid, action, card.state, to_state, reason,
                 {k: v for k, v in {"msisdn": card.msisdn, **details}.items() if v is not None} or None)


def _refuse_if_pending(card: Card, action: str) -> None:
    if card.pending_action:
        raise Conflict(f"cannot {action.replace('_', ' ')} SIM {card.iccid}: it waits for the HLR to confirm "
                       f"'{card.pending_action}'; run `hkops hlr sync` (or `hkops hlr reconcile --fix`)")


def _queue(conn: Connection, card: Card, action: str, command: str, *, actor: str, reason: str | None,
           msisdn: str | None = None, other_iccid: str | None = None, before: Card | None = None,
           suspend_reason: str | None = None) -> None:
    """Write the HLR command of a move; ``before``: the card as it was before a move that
    changed inventory at once (what a refusal restores)."""
    now = utc_now()
    count = conn.execute(select(func.count()).select_from(outbox).where(outbox.c.iccid == card.iccid)).scalar()
    conn.execute(outbox.insert().values(
        req=f"{action[:6]}-{card.iccid}-{count + 1}", action=action, iccid=card.iccid,
        msisdn=int(msisdn or card.msisdn), other_iccid=other_iccid, command=command, state="pending",
        actor=actor, reason=reason, created_at=now, before_state=before.state if before else None,
        before_suspend_reason=before.suspend_reason if before else None, suspend_reason=suspend_reason))
    _set(conn, card.iccid, network_sync=NetworkSync.PENDING.value, pending_action=action)


# ---------------------------------------------------------------- moves


def pair(db: Store | Connection, iccid: str, msisdn: str, subscriber_id: int, *, actor: str,
         reason: str | None = None) -> Card:
    """Bind a SIM in stock to a number and a registered subscriber (开卡).

    The number must be of the SIM's carrier and available, reserved or assigned; an
    available one is allocated to the subscriber. 一证五号 and the blacklist are checked
    (:func:`hkops.subscribers.service.bind_number`). A card in stock on a shelf leaves it
    for the customer through the stock ledger (:func:`hkops.stock.service.hand_over`); a
    card allocated to an order leaves when the order ships; a card reserved for a pending
    replacement is refused.
    """
    access.require(actor, "cards.write", f"pair card {iccid} with number {msisdn}", db)
    iccid, msisdn = parse_iccid(iccid), parse_msisdn(msisdn)
    with unit_of_work(db) as conn:
        card = _card(conn, iccid)
        to_state = target_state("pair", iccid, C(card.state))
        subscriber = subscribers.get(conn, subscriber_id)
        block = conn.execute(select(number_blocks.c.carrier).where(number_blocks.c.prefix == int(msisdn) // 10_000)).scalar()
        if block != card.carrier:
            raise Conflict(f"cannot pair SIM {iccid} ({card.carrier}) with {msisdn}: the number is "
                           f"{'of ' + block if block else 'in no block'}")
        taken = conn.execute(select(sims.c.iccid).where(sims.c.msisdn == int(msisdn),
                                                        sims.c.state.in_([s.value for s in LIVE]))).first()
        if taken:
            raise Conflict(f"cannot pair {msisdn} with SIM {iccid}: SIM {taken.iccid} already serves it")
        _refuse_if_swapping(conn, [iccid])
        number = numbers.get_number(conn, msisdn)
        now = utc_now()
        if number.effective_state(now) in (NumberState.AVAILABLE, NumberState.RESERVED):
            holder = number.holder if number.effective_state(now) == NumberState.RESERVED else f"S{subscriber_id}"
            numbers.allocate(conn, msisdn, holder, actor=actor, reason=f"paired with SIM {iccid}")
        elif number.effective_state(now) != NumberState.ASSIGNED:
            raise Conflict(f"cannot pair {msisdn}: it is {number.effective_state(now).value}; "
                           "pairing needs a number that is available, reserved or assigned")
        subscribers.bind_number(conn, subscriber.id, msisdn, card.carrier, actor)
        if card.state == C.IN_STOCK:  # an order's allocated card leaves with the order when it ships
            stock.hand_over(conn, [iccid], actor=actor, reason=f"paired with {msisdn}")
        _set(conn, iccid, state=to_state.value, msisdn=int(msisdn), subscriber_id=subscriber.id)
        audit.record(conn, actor, [_event(card, "pair", to_state.value, reason, msisdn=msisdn,
                                          subscriber=subscriber.id)])
        return _card(conn, iccid)


def pair_many(db: Store | Connection, requests: list[tuple[str, str, int]], *, actor: str,
              reason: str | None = None) -> int:
    """:func:`pair` for many (iccid, msisdn, subscriber id) at once, checked set-wise: every
    problem is listed and none is paired unless all can be. Numbers must be available or
    assigned (a reserved number goes through :func:`pair`)."""
    access.require(actor, "cards.write", f"pair cards {access.few(i for i, _, _ in requests)}", db)
    parsed = [(parse_iccid(i), parse_msisdn(m), int(s)) for i, m, s in requests]
    problems: list[InvalidValue] = []
    with unit_of_work(db) as conn:
        found = _cards(conn, [i for i, _, _ in parsed])
        msisdns = [int(m) for _, m, _ in parsed]
        blocks = dict(conn.execute(select(number_blocks.c.prefix, number_blocks.c.carrier)
                                   .where(number_blocks.c.prefix.in_(sorted({m // 10_000 for m in msisdns})))).all())
        taken, pool = set(), {}
        for chunk in _chunks(msisdns):
            taken |= set(conn.execute(select(sims.c.msisdn).where(
                sims.c.msisdn.in_(chunk), sims.c.state.in_([s.value for s in LIVE]))).scalars())
            pool.update({r.msisdn: r for r in conn.execute(select(
                numbers_table.c.msisdn, numbers_table.c.state).where(numbers_table.c.msisdn.in_(chunk)))})
        seen: set = set()
        to_allocate: dict[int, dict] = {}
        for iccid, msisdn, sid in parsed:
            card = found.get(iccid)
            try:
                if card is None:
                    raise NotFound(f"SIM {iccid} is not in the inventory")
                target_state("pair", iccid, C(card.state))
                number = pool.get(int(msisdn))
                if blocks.get(int(msisdn) // 10_000) != card.carrier or number is None:
                    raise Conflict(f"{msisdn} is not a {card.carrier} number in the pool")
                if int(msisdn) in taken or msisdn in seen or iccid in seen:
                    raise Conflict(f"{msisdn} or SIM {iccid} is already being paired or served")
                if number.state == NumberState.AVAILABLE.value:
                    to_allocate[int(msisdn)] = {"holder": f"S{sid}"}
                elif number.state != NumberState.ASSIGNED.value:
                    raise Conflict(f"{msisdn} is {number.state}; bulk pairing needs available or assigned numbers")
                seen |= {msisdn, iccid}
            except (Conflict, NotFound, IllegalTransition) as exc:
                problems.append(InvalidValue("pairing", f"{iccid} {msisdn}", str(exc)))
        if problems:
            raise InvalidValues("pairing", problems)
        _refuse_if_swapping(conn, [i for i, _, _ in parsed])
        now = utc_now()
        numbers.allocate_to_holders(conn, {m: v["holder"] for m, v in to_allocate.items()}, actor=actor, now=now,
                                    reason="paired with a SIM")
        subscribers.bind_numbers(conn, [(sid, int(m), found[i].carrier) for i, m, sid in parsed], actor)
        stock.hand_over(conn, [i for i, _, _ in parsed if found[i].state == C.IN_STOCK], actor=actor,
                        reason=reason or "paired", now=now)
        conn.execute(update(sims).where(sims.c.iccid == bindparam("i")).values(
            state=C.PAIRED.value, msisdn=bindparam("m"), subscriber_id=bindparam("s"), changed_at=now),
            [{"i": i, "m": int(m), "s": sid} for i, m, sid in parsed])
        audit.record(conn, actor, [Event("sim", i, "pair", found[i].state, C.PAIRED.value, reason,
                                         {"msisdn": m, "subscriber": sid}) for i, m, sid in parsed], now)
    return len(parsed)


def _chunks(values: list, size: int = 900):
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _cards(conn: Connection, iccids: list[str]) -> dict[str, Card]:
    """Many cards by ICCID (the ones that exist)."""
    found: dict[str, Card] = {}
    for chunk in _chunks(iccids):
        rows = conn.execute(select(sims, sim_batches.c.carrier).join(sim_batches, sims.c.batch_id == sim_batches.c.id)
                            .where(sims.c.iccid.in_(chunk))).mappings()
        for row in rows:
            found[row["iccid"]] = _card_from(row)
    return found


def activate(db: Store, iccid: str, *, actor: str, network: ProvisioningClient | None = None,
             reason: str | None = None) -> Card:
    """Provision the card's subscriber in the HLR; active once the HLR confirms."""
    access.require(actor, "cards.write", f"activate card {iccid}", db)
    return _request(db, iccid, "activate", actor=actor, reason=reason, network=network)


def suspend(db: Store, iccid: str, why: str, *, actor: str, network: ProvisioningClient | None = None,
            reason: str | None = None) -> Card:
    """Suspend service (停机) for arrears, at the customer's request, or for fraud."""
    access.require(actor, "cards.write", f"suspend card {iccid}", db)
    try:
        why = SuspendReason(why).value
    except ValueError:
        raise InvalidValue("suspend reason", why, f"must be one of {', '.join(r.value for r in SuspendReason)}") from None
    return _request(db, iccid, "suspend", actor=actor, reason=reason or why, network=network, suspend_reason=why)


def resume(db: Store, iccid: str, *, actor: str, network: ProvisioningClient | None = None,
           reason: str | None = None) -> Card:
    """Resume service (复机) once the HLR lifts the barring."""
    access.require(actor, "cards.write", f"resume card {iccid}", db)
    return _request(db, iccid, "resume", actor=actor, reason=reason, network=network)


def report_loss(db: Store, iccid: str, *, actor: str, network: ProvisioningClient | None = None,
                reason: str | None = None) -> Card:
    """Loss report (挂失): the card is lost at once and the HLR bars all its services."""
    access.require(actor, "cards.write", f"report loss card {iccid}", db)
    return _request(db, iccid, "report_loss", actor=actor, reason=reason, network=network)


def lift_loss(db: Store, iccid: str, *, actor: str, network: ProvisioningClient | None = None,
              reason: str | None = None) -> Card:
    """Lift a loss report (解挂): service returns when the HLR lifts the barring."""
    access.require(actor, "cards.write", f"lift loss card {iccid}", db)
    return _request(db, iccid, "lift_loss", actor=actor, reason=reason, network=network)


def terminate(db: Store, iccid: str, *, actor: str, network: ProvisioningClient | None = None,
              reason: str | None = None) -> Card:
    """Termination (销户): the card ends, the number goes into quarantine, the HLR record goes."""
    access.require(actor, "cards.write", f"terminate card {iccid}", db)
    return _request(db, iccid, "terminate", actor=actor, reason=reason, network=network)


_COMMANDS = {"activate": "add", "suspend": "bar", "resume": "unbar", "report_loss": "bar", "lift_loss": "unbar",
             "terminate": "remove"}


def _request(db: Store, iccid: str, action: str, *, actor: str, reason: str | None,
             network: ProvisioningClient | None, suspend_reason: str | None = None) -> Card:
    iccid = parse_iccid(iccid)
    with unit_of_work(db) as conn:
        _record_request(conn, iccid, action, actor=actor, reason=reason, suspend_reason=suspend_reason)
    if network is not None:
        sync(db, network, iccids=[iccid])
    return get_card(db, iccid)


def activate_many(db: Store, iccids: list[str], *, actor: str, network: ProvisioningClient | None = None,
                  reason: str | None = None, keyring: Keyring | None = None) -> SyncReport | None:
    """Activate many paired cards: one transaction to record them, one pipelined exchange
    with the HLR, one transaction to apply what it confirmed (all or none of the requests)."""
    access.require(actor, "cards.write", f"activate cards {access.few(iccids)}", db)
    iccids = [parse_iccid(i) for i in iccids]
    with unit_of_work(db) as conn:
        found = _cards(conn, iccids)
        for iccid in iccids:
            if iccid not in found:
                raise NotFound(f"SIM {iccid} is not in the inventory")
            target_state("activate", iccid, C(found[iccid].state))
            _refuse_if_pending(found[iccid], "activate")
        sent_before: dict[str, int] = {}
        for chunk in _chunks(iccids):
            sent_before.update(dict(conn.execute(select(outbox.c.iccid, func.count()).where(outbox.c.iccid.in_(chunk))
                                                 .group_by(outbox.c.iccid)).all()))
        now = utc_now()
        conn.execute(outbox.insert(), [
            {"req": f"activa-{i}-{sent_before.get(i, 0) + 1}", "action": "activate", "iccid": i,
             "msisdn": int(found[i].msisdn), "other_iccid": None, "command": "add", "state": "pending",
             "actor": actor, "reason": reason, "created_at": now} for i in iccids])
        conn.execute(update(sims).where(sims.c.iccid == bindparam("i")).values(
            network_sync=NetworkSync.PENDING.value, pending_action="activate", changed_at=now),
            [{"i": i} for i in iccids])
        audit.record(conn, actor, [_event(found[i], "activate_requested", found[i].state, reason) for i in iccids], now)
    return sync(db, network, iccids=iccids, keyring=keyring) if network is not None else None


def _record_request(conn: Connection, iccid: str, action: str, *, actor: str, reason: str | None,
                    suspend_reason: str | None = None) -> None:
    card = _card(conn, iccid)
    to_state = target_state(action, iccid, C(card.state))
    _refuse_if_pending(card, action)
    if action == "terminate" and card.state == C.PAIRED:
        _apply_now(conn, card, action, to_state, actor=actor, reason=reason)
        return
    if action not in ENABLING:
        _apply_now(conn, card, action, to_state, actor=actor, reason=reason, suspend_reason=suspend_reason)
    else:
        audit.record(conn, actor, [_event(card, f"{action}_requested", card.state, reason)])
    _queue(conn, card, action, _COMMANDS[action], actor=actor, reason=reason,
           before=card if action not in ENABLING else None, suspend_reason=suspend_reason)


def _number_move(conn: Connection, card: Card, number_action: str, *, actor: str, reason: str) -> None:
    """The card's number makes ``number_action`` (hkops.numbers.service) on the card's behalf."""
    on_behalf = {"card": card.iccid} if number_action in ("release", "block", "terminate") else {}
    getattr(numbers, number_action)(conn, card.msisdn, actor=actor, reason=reason, **on_behalf)


def _apply_now(conn: Connection, card: Card, action: str, to_state: SimState, *, actor: str, reason: str | None,
               suspend_reason: str | None = None) -> None:
    """The inventory side of a move: the card, its number and the subscriber binding."""
    values: dict = {"state": to_state.value}
    if action == "suspend":
        values["suspend_reason"] = suspend_reason
    if action in ("resume", "lift_loss"):
        values["suspend_reason"] = None
    if action == "activate":
        values["activated_at"] = utc_now()
    number_action = MOVES[action].number_action
    if action == "lift_loss" and card.suspend_reason:
        to_state = C.SUSPENDED  # a loss reported while suspended returns to the suspension
        values["state"] = to_state.value
        values.pop("suspend_reason")
    if number_action and card.msisdn:
        _number_move(conn, card, number_action, actor=actor, reason=f"SIM {card.iccid}: {action}")
    if action == "terminate" and card.subscriber_id and card.msisdn:
        subscribers.unbind_number(conn, card.subscriber_id, card.msisdn, actor, reason="terminated")
    _set(conn, card.iccid, **values)
    audit.record(conn, actor, [_event(card, action, to_state.value, reason)])


def replace(db: Store, old_iccid: str, new_iccid: str, resident_id: str, *, actor: str,
            network: ProvisioningClient | None = None, reason: str | None = None,
            keyring: Keyring | None = None) -> Card:
    """Replacement (补卡/换卡): a new SIM takes the number; the old one can never come back.

    The holder's identity is checked again against ``resident_id``. The new card must be in
    stock on a shelf (a warehouse or agent location); it is reserved (``allocated``) for the
    swap, linked through the outbox row, and carries no number yet, so one number never has
    two live cards. The HLR points the number at the new IMSI and keys (and lifts a loss
    barring); then, in one unit of work, the new card leaves stock for the customer, the old
    card becomes ``replaced`` and the new one takes its number and service, with the swap time
    recorded. The person's 一证五号 count does not change (same number).
    """
    access.require(actor, "cards.write", f"replace card {old_iccid} with {new_iccid}", db)
    old_iccid, new_iccid = parse_iccid(old_iccid), parse_iccid(new_iccid)
    with unit_of_work(db) as conn:
        old = _card(conn, old_iccid)
        target_state("replace", old_iccid, C(old.state))
        _refuse_if_pending(old, "replace")
        holder = subscribers.find(conn, resident_id=resident_id, keyring=keyring)
        if not holder or holder[0].id != old.subscriber_id:
            raise Conflict(f"cannot replace SIM {old_iccid}: resident ID {mask_resident_id(resident_id.strip().upper())} "
                           "is not the card holder's")
        _record_replace(conn, old, new_iccid, actor=actor, reason=reason)
    if network is not None:
        sync(db, network, iccids=[old_iccid], keyring=keyring)
    return get_card(db, new_iccid)


def _record_replace(conn: Connection, old: Card, new_iccid: str, *, actor: str, reason: str | None) -> None:
    """Reserve the new card for the swap and queue the HLR commands of a replacement."""
    new = _card(conn, new_iccid)
    if new.state != C.IN_STOCK:
        target_state("pair", new_iccid, C(new.state))  # says why a live or final card cannot be used
        raise Conflict(f"cannot replace SIM {old.iccid} with SIM {new_iccid}: it is {new.state} (allocated to an "
                       "order or another replacement); a replacement card must be in stock")
    if new.carrier != old.carrier:
        raise Conflict(f"cannot replace SIM {old.iccid} ({old.carrier}) with SIM {new_iccid} ({new.carrier})")
    if new_iccid not in stock.shelf_of(conn, [new_iccid]):
        where = conn.execute(select(sims.c.location).where(sims.c.iccid == new_iccid)).scalar()
        raise Conflict(f"cannot replace SIM {old.iccid} with SIM {new_iccid}: it is not in stock at a location "
                       f"({'at no location' if where is None else f'at {where}, a virtual location'}); "
                       "receive or transfer it to a warehouse or agent location first")
    subscribers.check_number_limit(conn, old.subscriber_id, old.carrier, msisdn=old.msisdn)
    _set(conn, new_iccid, state=C.ALLOCATED.value)
    audit.record(conn, actor, [_event(new, "allocate", C.ALLOCATED.value, f"replacement for SIM {old.iccid}",
                                      msisdn=old.msisdn),
                               _event(old, "replace_requested", old.state, reason, new_iccid=new_iccid)])
    _queue(conn, old, "replace", "change_imsi", actor=actor, reason=reason, other_iccid=new_iccid)
    if old.state == C.LOST:
        _queue(conn, old, "replace", "unbar", actor=actor, reason=reason, other_iccid=new_iccid)


def _refuse_if_swapping(conn: Connection, iccids: list[str]) -> None:
    """Conflict when one of these cards is reserved for a replacement still waiting for the HLR."""
    for chunk in _chunks(iccids):
        row = conn.execute(select(outbox.c.other_iccid, outbox.c.iccid).where(
            outbox.c.other_iccid.in_(chunk), outbox.c.state == "pending", outbox.c.action == "replace")).first()
        if row is not None:
            raise Conflict(f"SIM {row.other_iccid} is reserved to replace SIM {row.iccid}, which waits for the HLR")


# ---------------------------------------------------------------- talking to the HLR


def _command(conn: Connection, row, keyring: Keyring | None):
    """The MML command for an outbox row other than ``add`` (those are built in bulk in :func:`sync`)."""
    msisdn = str(row.msisdn)
    if row.command == "change_imsi":
        new = _card(conn, row.other_iccid, lock=False)
        from hkops.cards.batches import card_secrets

        keys = card_secrets(conn, row.other_iccid, keyring=keyring)
        return mod_imsi(msisdn, new.imsi, keys["ki"].reveal(), keys["opc"].reveal(), req=row.req)
    if row.command == "bar":
        why = BarringReason.LOSS if row.action == "report_loss" else BarringReason.SUSPEND
        return mod_odb(msisdn, True, why, req=row.req)
    if row.command == "unbar":
        return mod_odb(msisdn, False, req=row.req)
    return rmv_sub(msisdn, req=row.req)


def sync(db: Store, network: ProvisioningClient, *, iccids: Iterable[str] | None = None,
         keyring: Keyring | None = None, limit: int = 10_000) -> SyncReport:
    """Send pending HLR commands (all, or those of ``iccids``) and apply what the HLR confirms;
    a definite refusal ends its move (:func:`_refused`). Only commands of the move a card
    waits for are sent (a stale row is :func:`reconcile`'s to drop)."""
    report = SyncReport()
    keyring = keyring or load_keyring()
    with db.read() as conn:
        stmt = (select(outbox).join(sims, and_(sims.c.iccid == outbox.c.iccid, sims.c.pending_action == outbox.c.action))
                .where(outbox.c.state == "pending").order_by(outbox.c.id).limit(limit))
        if iccids is not None:
            stmt = stmt.where(outbox.c.iccid.in_(list(iccids)))
        rows = conn.execute(stmt).all()
        keys = _provisioning_keys(conn, [row.iccid for row in rows if row.command == "add"], keyring)
        commands = [add_sub(str(row.msisdn), *keys[row.iccid], req=row.req) if row.command == "add"
                    else _command(conn, row, keyring) for row in rows]
    if not rows:
        return report
    report.sent = len(rows)
    try:
        replies = network.run_many(commands)
    except ProvisioningUnavailable as exc:
        replies = exc.replies
    with db.write() as conn:
        states = {}
        for chunk in _chunks([row.id for row in rows]):
            states.update(dict(conn.execute(select(outbox.c.id, outbox.c.state).where(outbox.c.id.in_(chunk))).all()))
        activated, ended = [], set()
        for row, reply in zip(rows, replies):
            if states.get(row.id) != "pending" or row.iccid in ended:
                continue  # another sync got there first, or the move was refused already
            if reply is not None and reply.code == 0 and row.action == "activate":
                activated.append(row)
                report.confirmed.append(row.iccid)
            elif reply is None:
                conn.execute(update(outbox).where(outbox.c.id == row.id)
                             .values(attempts=outbox.c.attempts + 1, last_error="no answer from the HLR"))
                report.pending += 1
            elif reply.code == 0 or (reply.code == _OK_EXISTS and row.command == "add"
                                     and _hlr_has(network, row.msisdn, _card(conn, row.iccid).imsi)):
                _confirm(conn, row)
                report.confirmed.append(row.iccid)
            else:
                _refused(conn, row, f"{reply.code} {reply.text}")
                ended.add(row.iccid)
                report.failed.append(row.iccid)
        _confirm_activations(conn, activated)
    return report


def _provisioning_keys(conn: Connection, iccids: list[str], keyring: Keyring) -> dict[str, tuple[str, str, str]]:
    """iccid -> (imsi, Ki, OPc) in clear, for the commands about to be sent (never stored)."""
    result = {}
    for chunk in _chunks(iccids):
        for row in conn.execute(select(sims.c.iccid, sims.c.imsi, sims.c.ki_enc, sims.c.opc_enc)
                                .where(sims.c.iccid.in_(chunk))):
            result[row.iccid] = (row.imsi, keyring.decrypt(row.ki_enc, f"sims.ki:{row.iccid}"),
                                 keyring.decrypt(row.opc_enc, f"sims.opc:{row.iccid}"))
    return result


def _confirm_activations(conn: Connection, rows: list) -> None:
    """The HLR confirmed these activations: cards and numbers become active, set-wise."""
    if not rows:
        return
    now = utc_now()
    found = _cards(conn, [row.iccid for row in rows])
    for row in rows:
        target_state("activate", row.iccid, C(found[row.iccid].state))
    conn.execute(update(outbox).where(outbox.c.id == bindparam("o")).values(
        state="done", attempts=outbox.c.attempts + 1, last_error=None, done_at=now), [{"o": r.id} for r in rows])
    by_actor: dict[str, list] = {}
    for row in rows:
        by_actor.setdefault(row.actor, []).append(row)
    for actor, group in by_actor.items():
        numbers.activate_many(conn, [r.msisdn for r in group], actor=actor, now=now, reason="SIM activated")
        audit.record(conn, actor, [_event(found[r.iccid], "activate", C.ACTIVE.value, r.reason) for r in group], now)
    conn.execute(update(sims).where(sims.c.iccid == bindparam("i")).values(
        state=C.ACTIVE.value, activated_at=now, network_sync=NetworkSync.SYNCED.value, pending_action=None,
        changed_at=now), [{"i": r.iccid} for r in rows])


def _hlr_has(network: ProvisioningClient, msisdn: int, imsi: str) -> bool:
    record = network.get(str(msisdn))
    return record is not None and record.imsi == imsi


def _confirm(conn: Connection, row) -> None:
    """The HLR applied ``row``: finish the move when it was the last command it waited for."""
    conn.execute(update(outbox).where(outbox.c.id == row.id).values(
        state="done", attempts=outbox.c.attempts + 1, last_error=None, done_at=utc_now()))
    waiting = conn.execute(select(func.count()).select_from(outbox).where(
        and_(outbox.c.iccid == row.iccid, outbox.c.state == "pending"))).scalar()
    if waiting:
        return
    card = _card(conn, row.iccid)
    if row.action == "replace":
        new = _card(conn, row.other_iccid)
        now = utc_now()
        keep = C.SUSPENDED if card.state == C.SUSPENDED else C.ACTIVE
        stock.hand_over(conn, [new.iccid], actor=row.actor, reason=f"replacement for SIM {card.iccid}", now=now)
        # The old card stops being live before the new one takes the number: never two live cards on one number.
        _set(conn, card.iccid, state=C.REPLACED.value, replaced_by=new.iccid, network_sync=NetworkSync.NONE.value,
             pending_action=None)
        _set(conn, new.iccid, state=keep.value, msisdn=int(card.msisdn), subscriber_id=card.subscriber_id,
             activated_at=now, swapped_at=now, suspend_reason=card.suspend_reason,
             network_sync=NetworkSync.SYNCED.value)
        audit.record(conn, row.actor, [_event(card, "replace", C.REPLACED.value, row.reason, new_iccid=new.iccid),
                                       _event(new, "take_over", keep.value, f"replaces SIM {card.iccid}",
                                              msisdn=card.msisdn, subscriber=card.subscriber_id)])
        return
    if row.action in ENABLING:
        _apply_now(conn, card, row.action, MOVES[row.action].leads_to, actor=row.actor, reason=row.reason)
    final = NetworkSync.NONE if row.action == "terminate" else NetworkSync.SYNCED
    _set(conn, row.iccid, network_sync=final.value, pending_action=None)


def pending(db: Store, *, actor: str | None = None) -> list[dict]:
    """HLR moves still waiting (``state`` pending) and moves the HLR refused that wait for the
    operator (``state`` failed, ``last_error`` the HLR's reason: :func:`retry` or
    :func:`abandon`; one row a card, the command the HLR refused last), oldest first (``cards.read``)."""
    require(actor, "cards.read", "see pending HLR moves")
    with db.read() as conn:
        rows = conn.execute(
            select(outbox.c.req, outbox.c.action, outbox.c.iccid, outbox.c.msisdn, outbox.c.attempts,
                   outbox.c.last_error, outbox.c.created_at, outbox.c.state)
            .join(sims, sims.c.iccid == outbox.c.iccid)
            .where(or_(outbox.c.state == "pending",
                       and_(outbox.c.state == "failed", sims.c.network_sync == NetworkSync.FAILED.value)))
            .order_by(outbox.c.id)).mappings().all()
    last_refused = {r["iccid"]: r["req"] for r in rows if r["state"] == "failed"}
    return [dict(r) for r in rows if r["state"] == "pending" or last_refused[r["iccid"]] == r["req"]]


# ---------------------------------------------------------------- refusals (the HLR said no)


def _refused(conn: Connection, row, error: str) -> None:
    """The HLR refused ``row`` for good: end its move visibly.

    Every command still pending for the card is ended with it (a replacement of a lost card
    has two). Moves that changed inventory at once go back to the card's state before the
    move: a refused suspension makes card and number active again, a refused loss report
    returns the card to active or suspended. A refused termination keeps the card terminated
    (its number is quarantined and the binding ended; restoring them could give the number or
    the person's 一证五号 slot away twice): every active or suspended number still has exactly one
    live card and one subscriber; only the HLR may still hold the subscriber, which retrying
    or ``hlr reconcile --fix`` removes. Enabling moves (activate, resume, lift a loss, replace)
    changed nothing yet and simply stop waiting; a replacement card reserved for the swap goes
    back in stock. In every case the card's ``network_sync`` becomes ``failed``, with the HLR's
    answer on the outbox row, until the operator retries or abandons the move (audited).
    """
    now = utc_now()
    conn.execute(update(outbox).where(outbox.c.id == row.id).values(
        state="failed", attempts=outbox.c.attempts + 1, last_error=error, done_at=now))
    conn.execute(update(outbox).where(outbox.c.iccid == row.iccid, outbox.c.state == "pending").values(
        state="skipped", last_error=f"not applied: {row.req} was refused ({error})", done_at=now))
    card = _card(conn, row.iccid)
    values: dict = {"network_sync": NetworkSync.FAILED.value, "pending_action": None}
    if row.action in ("suspend", "report_loss") and row.before_state and card.state == MOVES[row.action].leads_to:
        if row.action == "suspend" and card.msisdn:
            _number_move(conn, card, "resume", actor=HLR_ACTOR, reason=f"SIM {card.iccid}: suspension refused by the HLR")
        values.update(state=row.before_state, suspend_reason=row.before_suspend_reason)
    if row.action == "replace" and row.other_iccid:
        new = _card(conn, row.other_iccid)
        if new.state == C.ALLOCATED:
            _set(conn, new.iccid, state=C.IN_STOCK.value)
            audit.record(conn, HLR_ACTOR, [_event(new, "unallocate", C.IN_STOCK.value,
                                                  f"replacement of SIM {card.iccid} refused by the HLR")], now)
    _set(conn, card.iccid, **values)
    audit.record(conn, HLR_ACTOR, [_event(card, f"{row.action}_refused", values.get("state", card.state),
                                          f"HLR answered {error}", req=row.req)], now)


def refused_move(db: Store | Connection, iccid: str) -> dict | None:
    """The move the HLR refused for this card, while it waits for the operator (req, action,
    the HLR's answer as ``last_error``, done_at); None when there is none."""
    with db.read() if isinstance(db, Store) else unit_of_work(db) as conn:
        card = _card(conn, parse_iccid(iccid), lock=False)
        if card.network_sync != NetworkSync.FAILED:
            return None
        row = conn.execute(select(outbox.c.req, outbox.c.action, outbox.c.last_error, outbox.c.done_at)
                           .where(outbox.c.iccid == card.iccid, outbox.c.state == "failed")
                           .order_by(outbox.c.id.desc()).limit(1)).mappings().first()
        return dict(row) if row else None


def _failed_row(conn: Connection, card: Card):
    row = conn.execute(select(outbox).where(outbox.c.iccid == card.iccid, outbox.c.state == "failed")
                       .order_by(outbox.c.id.desc()).limit(1)).first()
    if row is None or card.network_sync != NetworkSync.FAILED:
        raise Conflict(f"SIM {card.iccid} has no move the HLR refused (it is {card.state}, HLR {card.network_sync})")
    return row


def retry(db: Store, iccid: str, *, actor: str, network: ProvisioningClient | None = None,
          reason: str | None = None, keyring: Keyring | None = None) -> Card:
    """Queue again the move the HLR refused for this card (a new request id; a move undone
    by the refusal is made again, with the same checks); with ``network`` sent at once.
    Returns the card (for a replacement, the new card, as :func:`replace` does)."""
    access.require(actor, "hlr.operate", f"retry the HLR move of card {iccid}", db)
    iccid = parse_iccid(iccid)
    with unit_of_work(db) as conn:
        card = _card(conn, iccid)
        row = _failed_row(conn, card)
        conn.execute(update(outbox).where(outbox.c.iccid == iccid, outbox.c.state == "failed")
                     .values(state="retried"))
        audit.record(conn, actor, [_event(card, f"{row.action}_retry", card.state, reason, req=row.req)])
        why = reason or row.reason
        if row.action == "replace":
            target_state("replace", iccid, C(card.state))
            _record_replace(conn, card, row.other_iccid, actor=actor, reason=why)
        elif row.action == "terminate" and card.state == C.TERMINATED:
            _queue(conn, card, "terminate", _COMMANDS["terminate"], actor=actor, reason=why)
        else:
            _record_request(conn, iccid, row.action, actor=actor, reason=why, suspend_reason=row.suspend_reason)
    if network is not None:
        sync(db, network, iccids=[iccid], keyring=keyring)
    return get_card(db, row.other_iccid if row.action == "replace" else iccid)


def abandon(db: Store, iccid: str, *, actor: str, reason: str) -> Card:
    """Give up the move the HLR refused for this card: the card stays as it is now (audited
    with ``reason``); ``hlr reconcile`` shows whatever the HLR still holds otherwise."""
    access.require(actor, "hlr.operate", f"abandon the HLR move of card {iccid}", db)
    iccid = parse_iccid(iccid)
    reason = " ".join((reason or "").split())
    if not reason:
        raise InvalidValue("reason", reason, "say why the refused move is abandoned")
    with unit_of_work(db) as conn:
        card = _card(conn, iccid)
        row = _failed_row(conn, card)
        conn.execute(update(outbox).where(outbox.c.iccid == iccid, outbox.c.state == "failed")
                     .values(state="given_up"))
        in_hlr = card.state in (C.ACTIVE, C.SUSPENDED, C.LOST)
        _set(conn, iccid, network_sync=(NetworkSync.SYNCED if in_hlr else NetworkSync.NONE).value)
        audit.record(conn, actor, [_event(card, f"{row.action}_abandoned", card.state, reason, req=row.req,
                                          hlr_answer=row.last_error)])
    return get_card(db, iccid)


# ---------------------------------------------------------------- reconciliation (数据稽核)


@dataclass(frozen=True)
class Difference:
    """One way the HLR disagrees with inventory, and the command that repairs it."""

    msisdn: str
    # missing_in_hlr, unexpected_in_hlr, imsi_mismatch, barring_mismatch (the HLR disagrees);
    # stale_command, card_without_command (inventory's own bookkeeping of pending moves)
    kind: str
    inventory: str
    hlr: str


_HLR_KINDS = frozenset({"missing_in_hlr", "unexpected_in_hlr", "imsi_mismatch", "barring_mismatch"})


def _bookkeeping(conn: Connection) -> tuple[list[Difference], list, list]:
    """Pending outbox rows no card waits for, and cards waiting with no pending row for their move."""
    stale = conn.execute(
        select(outbox.c.id, outbox.c.req, outbox.c.action, outbox.c.iccid, outbox.c.msisdn, sims.c.pending_action)
        .select_from(outbox.outerjoin(sims, sims.c.iccid == outbox.c.iccid))
        .where(outbox.c.state == "pending",
               or_(sims.c.pending_action.is_(None), sims.c.pending_action != outbox.c.action))
        .order_by(outbox.c.id)).all()
    queued = select(outbox.c.id).where(outbox.c.iccid == sims.c.iccid, outbox.c.action == sims.c.pending_action,
                                       outbox.c.state == "pending").exists()
    stuck = conn.execute(
        select(sims.c.iccid, sims.c.msisdn, sims.c.state, sims.c.pending_action, sims.c.network_sync)
        .where(or_(sims.c.pending_action.is_not(None), sims.c.network_sync == NetworkSync.PENDING.value), ~queued)
        .order_by(sims.c.iccid)).all()
    found = [Difference(str(r.msisdn), "stale_command", f"SIM {r.iccid} waits for {r.pending_action or 'nothing'}",
                        f"{r.action} {r.req} pending") for r in stale]
    found += [Difference(str(r.msisdn or ""), "card_without_command",
                         f"SIM {r.iccid} waits for {r.pending_action or 'the HLR'}", "no command queued")
              for r in stuck]
    return found, stale, stuck


def _fix_bookkeeping(conn: Connection, stale: list, stuck: list, actor: str) -> None:
    """Drop stale pending rows; a card waiting with nothing queued stops waiting (audited)."""
    now = utc_now()
    if stale:
        conn.execute(update(outbox).where(outbox.c.id == bindparam("o")).values(
            state="dropped", done_at=now, last_error="dropped by reconciliation: no card waits for it"),
            [{"o": r.id} for r in stale])
    if stuck:
        live = {C.ACTIVE.value, C.SUSPENDED.value, C.LOST.value}
        conn.execute(update(sims).where(sims.c.iccid == bindparam("i")).values(
            pending_action=None, network_sync=bindparam("sync"), changed_at=now),
            [{"i": r.iccid, "sync": (NetworkSync.SYNCED if r.state in live else NetworkSync.NONE).value}
             for r in stuck])
    audit.record(conn, actor, [Event("hlr", r.req, "drop_command", "pending", "dropped", "no card waits for it",
                                     {"iccid": r.iccid, "action": r.action}) for r in stale]
                 + [Event("sim", r.iccid, "stop_waiting", r.state, r.state, "no HLR command was queued for it",
                          {"pending_action": r.pending_action}) for r in stuck], now)


def _expected(conn: Connection) -> dict[str, tuple[str, bool, str]]:
    """msisdn -> (imsi, barred, iccid) for every card the HLR should know."""
    rows = conn.execute(select(sims.c.msisdn, sims.c.imsi, sims.c.state, sims.c.iccid)
                        .where(sims.c.state.in_([C.ACTIVE.value, C.SUSPENDED.value, C.LOST.value]))).all()
    return {str(r.msisdn): (r.imsi, r.state != C.ACTIVE.value, r.iccid) for r in rows}


def compare(expected: dict[str, tuple[str, bool, str]], records: Iterable) -> list[Difference]:
    """How the HLR's ``records`` differ from the cards it should know (``expected``: MSISDN ->
    IMSI, barred, ICCID): numbers missing, with another IMSI or barring, or served with no live card."""
    actual = {record.isdn: record for record in records}
    differences: list[Difference] = []
    for msisdn, (imsi, barred, _iccid) in sorted(expected.items()):
        record = actual.get(msisdn)
        if record is None:
            differences.append(Difference(msisdn, "missing_in_hlr", f"IMSI {imsi}", "absent"))
        elif record.imsi != imsi:
            differences.append(Difference(msisdn, "imsi_mismatch", f"IMSI {imsi}", f"IMSI {record.imsi}"))
        elif record.barred != barred:
            differences.append(Difference(msisdn, "barring_mismatch", "barred" if barred else "not barred",
                                          "barred" if record.barred else "not barred"))
    return differences + [Difference(msisdn, "unexpected_in_hlr", "no live card", f"IMSI {record.imsi}")
                          for msisdn, record in sorted(actual.items()) if msisdn not in expected]


def reconcile(db: Store, network: ProvisioningClient, *, fix: bool = False, actor: str,
              keyring: Keyring | None = None) -> list[Difference]:
    """Compare inventory with the HLR registry; with ``fix`` make the HLR match inventory.

    Inventory's own bookkeeping is checked first (pending outbox rows no card waits for,
    cards waiting with no command queued; with ``fix`` the rows are dropped and the cards stop
    waiting), then pending commands are sent, so only real disagreements remain. Moves the HLR
    refused stay for the operator (:func:`retry`, :func:`abandon`).
    """
    if fix:
        access.require(actor, "hlr.operate", "reconcile the HLR with inventory (--fix)", db)
    with db.write() if fix else db.read() as conn:
        book, stale, stuck = _bookkeeping(conn)
        if fix and book:
            _fix_bookkeeping(conn, stale, stuck, actor)
    sync(db, network, keyring=keyring)
    with db.read() as conn:
        expected = _expected(conn)
    differences = compare(expected, network.iter_all())
    if fix and differences:
        _repair(db, network, differences, expected, keyring or load_keyring())
    differences = book + differences
    with db.write() as conn:
        audit.record(conn, actor, [Event("hlr", "registry", "reconcile", None, None,
                                         f"{len(differences)} difference(s){', repaired' if fix else ''}",
                                         {d.kind: sum(1 for x in differences if x.kind == d.kind) for d in differences}
                                         or None)])
    return differences


def _repair(db: Store, network: ProvisioningClient, differences: list[Difference], expected: dict,
            keyring: Keyring) -> None:
    commands = []
    with db.read() as conn:
        for d in differences:
            if d.kind == "unexpected_in_hlr":
                commands.append(rmv_sub(d.msisdn))
                continue
            imsi, barred, iccid = expected[d.msisdn]
            from hkops.cards.batches import card_secrets

            keys = card_secrets(conn, iccid, keyring=keyring)
            if d.kind == "missing_in_hlr":
                commands.append(add_sub(d.msisdn, imsi, keys["ki"].reveal(), keys["opc"].reveal()))
            elif d.kind == "imsi_mismatch":
                commands.append(mod_imsi(d.msisdn, imsi, keys["ki"].reveal(), keys["opc"].reveal()))
            if d.kind != "unexpected_in_hlr" and barred:
                state = conn.execute(select(sims.c.state).where(sims.c.iccid == iccid)).scalar()
                why = BarringReason.LOSS if state == C.LOST.value else BarringReason.SUSPEND
                commands.append(mod_odb(d.msisdn, True, why))
            elif d.kind == "barring_mismatch":
                commands.append(mod_odb(d.msisdn, False))
    network.run_many(commands)


def network_cards(db: Store):
    """The cards the network knows, as the frame ``hkops.network.usage.generate_usage`` takes:
    msisdn, imsi, province, city, state, activated_at."""
    import pandas as pd

    states = [C.ACTIVE.value, C.SUSPENDED.value, C.LOST.value, C.TERMINATED.value, C.REPLACED.value]
    with db.read() as conn:
        rows = conn.execute(
            select(sims.c.msisdn, sims.c.imsi, number_blocks.c.province_zh.label("province"),
                   number_blocks.c.city_zh.label("city"), sims.c.state, sims.c.activated_at)
            .join(number_blocks, number_blocks.c.prefix == sims.c.msisdn // 10_000)
            .where(sims.c.state.in_(states), sims.c.activated_at.is_not(None))).all()
    frame = pd.DataFrame(rows, columns=["msisdn", "imsi", "province", "city", "state", "activated_at"])
    frame["msisdn"] = frame["msisdn"].astype("int64")
    return frame


def backdate_activations(conn: Connection, when: dict[str, datetime]) -> None:
    """Give cards their past activation times ``{iccid: at}``: the card's ``activated_at`` and
    the audit records of its pairing and activation. Only the demo does this, to spread its
    made-up sales over past days (as ``hkops.audit.retime``)."""
    if not when:
        return
    conn.execute(update(sims).where(sims.c.iccid == bindparam("i")).values(activated_at=bindparam("t")),
                 [{"i": iccid, "t": at} for iccid, at in when.items()])
    audit_log = audit.audit_log
    times = {}
    for chunk in _chunks(list(when)):
        times |= {row.id: when[row.subject] for row in conn.execute(
            select(audit_log.c.id, audit_log.c.subject).where(
                audit_log.c.entity == "sim", audit_log.c.subject.in_(chunk),
                audit_log.c.action.in_(("pair", "activate_requested", "activate"))))}
    audit.retime(conn, times)


def command_stats(db: Store, hours: int = 24) -> dict:
    """HLR commands written in the last ``hours``: how many, how many needed more than one
    try or were refused, and that share as the link's error rate (a Decimal string)."""
    from datetime import timedelta
    from decimal import Decimal

    since = utc_now() - timedelta(hours=hours)
    with db.read() as conn:
        total, troubled = conn.execute(
            select(func.count(), func.count().filter((outbox.c.attempts > 1) | (outbox.c.state == "failed")))
            .where(outbox.c.created_at >= since)).one()
    rate = (Decimal(troubled) / total * 100).quantize(Decimal("0.1")) if total else Decimal("0.0")
    return {"hours": hours, "commands": total, "troubled": troubled, "error_rate_percent": str(rate)}
