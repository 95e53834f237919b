"""Receiving SIM batches: a vendor card-data file becomes cards in stock, all or nothing.

Secrets (Ki, OPc, PIN/PUK, ADM and extra columns named like keys) are encrypted with the
keyring before anything is written; they never reach the audit trail, an error, a log
line or a return value in plain text.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from pathlib import Path
from typing import Callable

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from hkops import audit, carriers
from hkops.audit import Event
from hkops.cards.tables import IN_STOCK, SIM_SECRET_COLUMNS, sim_batches, sims
from hkops.cards.vendor_files import SECRET_FIELDS, CardFile, read_card_file
from hkops.errors import Conflict, InvalidFile, InvalidValue, NotFound
from hkops.security.crypto import Keyring, Secret, load_keyring
from hkops.stock import service as stock
from hkops.store import bulk
from hkops.store.engine import Store, unit_of_work
from hkops.timeutil import utc_now
from hkops.security import access

Progress = Callable[[int], None]
CHUNK = 20_000
MAX_BATCH_NAME = 40
_VENDOR_KEYS = ("vendor", "manufacturer", "supplier")
_INSERT_COLUMNS = ("iccid", "imsi", "batch_id", "state", "location", *(SIM_SECRET_COLUMNS[f] for f in SECRET_FIELDS),
                   "extra", "extra_enc")


@dataclass(frozen=True)
class BatchSummary:
    """What was received (no secrets)."""

    id: int
    name: str
    carrier: str
    vendor: str | None
    source_file: str
    layout: str
    quantity: int
    first_iccid: str
    last_iccid: str
    received_at: datetime
    received_by: str
    #: Extra vendor columns kept in plain text, and those kept encrypted (named like keys).
    extra_columns: tuple[str, ...] = ()
    sealed_columns: tuple[str, ...] = ()


def _batch_name(name: str | None, path: Path) -> str:
    text = (path.stem if name is None else str(name)).strip()
    if not text:
        raise InvalidValue("batch", name, "a batch name cannot be empty")
    if len(text) > MAX_BATCH_NAME:
        raise InvalidValue("batch", text, f"at most {MAX_BATCH_NAME} characters (give a shorter --batch name)")
    return text


def _seal(cards: CardFile, keyring: Keyring) -> dict[str, list[str | None]]:
    """Token columns of the cards, by sims column name."""
    sealed: dict[str, list[str | None]] = {}
    for name, values in cards.secrets.items():
        sealed[SIM_SECRET_COLUMNS[name]] = keyring.encrypt_column(values, f"sims.{name}", cards.iccid)
    if cards.sealed_extra:
        names = list(cards.sealed_extra)
        blobs = [json.dumps(dict(zip(names, values)), ensure_ascii=False) for values in zip(*cards.sealed_extra.values())]
        sealed["extra_enc"] = keyring.encrypt_column(blobs, "sims.extra", cards.iccid)
    return sealed


def _plain_extra(cards: CardFile) -> list[str] | None:
    if not cards.extra:
        return None
    names = list(cards.extra)
    return [json.dumps(dict(zip(names, values)), ensure_ascii=False) for values in zip(*cards.extra.values())]


def _existing(conn: Connection, column, values: list[str]) -> dict[str, str]:
    """Which of ``values`` are in ``column`` already, and the name of their batch."""
    found: dict[str, str] = {}
    query = select(column, sim_batches.c.name).select_from(sims.join(sim_batches, sims.c.batch_id == sim_batches.c.id))
    for clause in stock.matching(conn, column, values):
        found.update(conn.execute(query.where(clause)).all())
    return found


def import_sim_file(
    db: Store | Connection,
    path: str | Path,
    *,
    carrier: str,
    actor: str,
    batch_name: str | None = None,
    vendor: str | None = None,
    location: str | None = None,
    keyring: Keyring | None = None,
    progress: Progress | None = None,
    document: str | None = None,
    product: str | None = None,
    purchase_order: str | None = None,
) -> BatchSummary:
    """Receive a vendor card-data file as a batch of cards ``in_stock``; all cards or none.

    ``carrier`` (English or Chinese name) must be configured, and every IMSI must belong
    to it. The batch is named ``batch_name`` (default: the file name without extension)
    and must be new. A file with any bad line, an ICCID or IMSI already received, or a
    batch name in use raises :class:`~hkops.errors.InvalidFile` listing every problem.
    ``vendor`` defaults to a Vendor/Manufacturer/Supplier header field of a .out file.
    Cards received at a ``location`` enter the stock ledger as a receipt from VENDOR under
    ``document`` (default: the batch name); a location not known yet is registered as a
    warehouse (hkops.stock.service.receiving_location). ``product`` and ``purchase_order``
    name the catalogue product and the PO the batch is received against (hkops.procurement).
    """
    access.require(actor, "cards.write", f"import SIM file {path}", db)
    path = Path(path)
    carrier = carriers.canonical_name(carrier)
    name = _batch_name(batch_name, path)
    if location is not None:
        location = location.strip()
        if not 0 < len(location) <= 32:
            raise InvalidValue("location", location, "must be 1 to 32 characters (a stock location code)")
    cards = read_card_file(path, carrier=carrier)
    vendor = vendor or next((v for k, v in cards.header.items() if k.strip().lower() in _VENDOR_KEYS and v), None)
    if vendor is not None and len(vendor) > 64:
        raise InvalidValue("vendor", vendor, "at most 64 characters")
    keyring = keyring or load_keyring()
    # Encrypt before taking the write lock: the lock is held only for checks and inserts.
    sealed = _seal(cards, keyring)
    plain_extra = _plain_extra(cards)
    header_enc = (keyring.encrypt(json.dumps(cards.sealed_header, ensure_ascii=False), f"sim_batches.header:{name}")
                  if cards.sealed_header else None)
    now = utc_now()
    try:
        with unit_of_work(db) as conn:
            configured = carriers.configured(conn)
            if carrier not in configured:
                raise InvalidValue("carrier", carrier,
                                   f"is not a configured carrier ({', '.join(configured) or 'none'})")
            problems: list[InvalidValue] = []
            if conn.execute(select(sim_batches.c.id).where(sim_batches.c.name == name)).first():
                problems.append(InvalidValue("batch", name, "was received already (give another batch name)"))
            for field, values in (("iccid", cards.iccid), ("imsi", cards.imsi)):
                known = _existing(conn, sims.c[field], values)
                problems += [InvalidValue(field, value, f"is already in stock (batch {known[value]})", line=line)
                             for value, line in zip(values, cards.lines) if value in known]
            if problems:
                problems.sort(key=lambda p: p.line or 0)
                raise InvalidFile(str(path), problems)
            if location is not None:
                location = stock.receiving_location(conn, location, actor=actor)

            batch_id = conn.execute(sim_batches.insert().values(
                name=name, carrier=carrier, vendor=vendor, source_file=path.name[:255], layout=cards.layout,
                quantity=len(cards), header=json.dumps(cards.header, ensure_ascii=False, sort_keys=True) if cards.header else None,
                header_enc=header_enc, received_at=now, received_by=actor, product=product,
                purchase_order=purchase_order,
            )).inserted_primary_key[0]
            columns = [cards.iccid, cards.imsi, repeat(batch_id), repeat(IN_STOCK), repeat(location)]
            columns += [sealed.get(SIM_SECRET_COLUMNS[f], repeat(None)) for f in SECRET_FIELDS]
            columns += [plain_extra or repeat(None), sealed.get("extra_enc", repeat(None))]
            rows = list(zip(*columns))
            for start in range(0, len(rows), CHUNK):
                chunk = rows[start:start + CHUNK]
                bulk.insert_rows(conn, sims, _INSERT_COLUMNS, chunk)
                if progress:
                    progress(len(chunk))
            if location is not None:
                stock.record_receipt(conn, batch_id, location, document or name, actor=actor, now=now)
            bulk.refresh_statistics(conn, sims)
            audit.record(conn, actor, [Event(
                "sim_batch", name, "receive", None, IN_STOCK, f"{len(cards)} SIM cards received from {path.name}",
                {"carrier": carrier, "vendor": vendor, "count": len(cards), "layout": cards.layout,
                 "first_iccid": cards.iccid[0], "last_iccid": cards.iccid[-1]},
            )], now)
    except (IntegrityError, _psycopg_integrity_error()):
        raise Conflict(f"{path}: another import received some of these cards (or batch {name!r}) meanwhile; "
                       "nothing imported, run the import again to see which") from None
    return BatchSummary(
        id=batch_id, name=name, carrier=carrier, vendor=vendor, source_file=path.name, layout=cards.layout,
        quantity=len(cards), first_iccid=cards.iccid[0], last_iccid=cards.iccid[-1], received_at=now,
        received_by=actor, extra_columns=tuple(cards.extra), sealed_columns=tuple(cards.sealed_extra),
    )


def card_secrets(db: Store | Connection, iccid: str, *, keyring: Keyring | None = None) -> dict[str, Secret | None]:
    """The secrets of one card, decrypted and wrapped in :class:`Secret` (for provisioning).

    Keys: ki, opc, pin1, puk1, pin2, puk2, adm1 (None when the vendor gave none), then the
    extra columns named like keys (OP, K4, KIC1...).
    """
    keyring = keyring or load_keyring()
    fields = [f for f in SIM_SECRET_COLUMNS if f != "extra"]
    with db.read() if isinstance(db, Store) else nullcontext(db) as conn:
        row = conn.execute(select(*(sims.c[SIM_SECRET_COLUMNS[f]] for f in fields), sims.c.extra_enc)
                           .where(sims.c.iccid == str(iccid))).first()
    if row is None:
        raise NotFound(f"SIM {iccid} is not in the inventory")
    result: dict[str, Secret | None] = {
        f: None if token is None else keyring.reveal(token, f"sims.{f}:{iccid}") for f, token in zip(fields, row)}
    if row.extra_enc is not None:
        extra = json.loads(keyring.decrypt(row.extra_enc, f"sims.extra:{iccid}"))
        result.update({name: Secret(value) for name, value in extra.items()})
    return result


def _psycopg_integrity_error() -> type:
    """psycopg's IntegrityError, imported only once an import has failed (commands start without it)."""
    import psycopg.errors

    return psycopg.errors.IntegrityError
