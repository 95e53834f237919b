"""The HLR's subscriber registry: state, command semantics, idempotency and the disk journal.

State lives in memory; every modifying command appends one JSON line to ``journal.jsonl``
(the new record or the removal, plus the request id and its reply), written out by
:meth:`Registry.commit` (flush and fsync once per batch: group commit). When the journal
outgrows the registry it is folded into ``snapshot.jsonl`` (write, fsync, rename), so a
restart reads one snapshot and a short journal. The remembered replies (for repeated
request ids) are saved too, so a retry after a restart still gets its first answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from hkops.network.protocol import (
    MASK,
    NOT_BARRED,
    AddSub,
    LstAll,
    LstSub,
    ModImsi,
    ModOdb,
    Ping,
    ProtocolError,
    ResultCode,
    RmvSub,
    format_command,
    format_records,
    format_reply,
    make_reply,
    parse_command,
)

log = logging.getLogger("hkops.network.registry")

JOURNAL = "journal.jsonl"
SNAPSHOT = "snapshot.jsonl"
_SNAPSHOT_VERSION = 1
_DETAIL_UNSAFE = re.compile(r'["\\\x00-\x1f\x7f]')


@dataclass(slots=True)
class Subscriber:
    """One HLR record. The keys stay inside the HLR: no reply and no ``repr`` shows them."""

    isdn: str
    imsi: str
    ki: str = field(repr=False)
    opc: str = field(repr=False)
    barred: bool = False
    reason: str = NOT_BARRED
    updated: str = ""

    def row(self) -> list:
        return [self.isdn, self.imsi, self.ki, self.opc, int(self.barred), self.reason, self.updated]

    @classmethod
    def from_row(cls, row: list) -> "Subscriber":
        isdn, imsi, ki, opc, barred, reason, updated = row
        return cls(isdn, imsi, ki, opc, bool(barred), reason, updated)


@dataclass
class Stats:
    """Counters: modifying commands executed for the first time, and repeats answered from memory."""

    executed: int = 0
    replayed: int = 0
    reads: int = 0
    refused: int = 0


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest(command) -> str:
    return hashlib.blake2b(format_command(command).encode(), digest_size=8).hexdigest()


def _open_private(path: Path, mode: str):
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o600), mode + "b")


class Registry:
    """Subscribers by ISDN, the IMSI index, recent replies by request id, and their journal.

    Args:
        data_dir: folder for the snapshot and the journal; None keeps everything in memory.
        fsync: make each :meth:`commit` durable (fsync); False only flushes to the OS.
        remember: how many recent request ids (and their replies) to keep.
        compact_after: fold the journal into the snapshot once it holds this many lines
            and more than there are subscribers.
    """

    def __init__(self, data_dir: str | os.PathLike | None = None, *, fsync: bool = True,
                 remember: int = 200_000, compact_after: int = 100_000, keyring=None):
        from hkops.security.crypto import load_keyring

        # Ki and OPc are kept on disk only encrypted, as a real HLR keeps them.
        self._keyring = keyring or (load_keyring() if data_dir is not None else None)
        self.subscribers: dict[str, Subscriber] = {}
        self.by_imsi: dict[str, str] = {}
        self.stats = Stats()
        self._replies: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._remember = remember
        self._sorted: list[str] | None = None
        self._fsync = fsync
        self._compact_after = compact_after
        self._pending: list[bytes] = []
        self._journal_lines = 0
        self._journal = None
        self.data_dir = Path(data_dir) if data_dir is not None else None
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._load()
            self._compact()

    # ------------------------------------------------------------------ commands

    def execute(self, line: str) -> str:
        """Run one command line and return its reply line (journal written at :meth:`commit`)."""
        try:
            command = parse_command(line)
        except ProtocolError as error:
            self.stats.refused += 1
            fields = [("REQ", error.req)] if error.req else []
            fields.append(("DETAIL", _DETAIL_UNSAFE.sub("'", error.detail)))
            return format_reply(make_reply(error.code, fields))
        if not command.MODIFIES:
            self.stats.reads += 1
            return format_reply(self._read(command))
        digest = _digest(command)
        seen = self._replies.get(command.req)
        if seen is not None:
            if seen[0] == digest:
                self.stats.replayed += 1
                return seen[1]
            return format_reply(make_reply(ResultCode.REQUEST_ID_REUSED, [("REQ", command.req)]))
        reply, change = self._apply(command)
        line_out = format_reply(reply)
        self._remember_reply(command.req, digest, line_out)
        if self.data_dir is not None:
            entry = {"q": command.req, "h": digest, "r": line_out}
            if change is not None:
                entry.update(change)
            self._pending.append(json.dumps(entry, separators=(",", ":")).encode() + b"\n")
        self.stats.executed += 1
        return line_out

    def _remember_reply(self, req: str, digest: str, reply: str) -> None:
        self._replies[req] = (digest, reply)
        if len(self._replies) > self._remember:
            self._replies.popitem(last=False)

    def _put(self, sub: Subscriber) -> dict:
        if sub.isdn not in self.subscribers:
            self._sorted = None
        self.subscribers[sub.isdn] = sub
        self.by_imsi[sub.imsi] = sub.isdn
        return {"p": self._sealed_row(sub)}

    def _sealed_row(self, sub: Subscriber) -> list:
        """The record as written to disk: keys encrypted, bound to the subscriber's ISDN."""
        row = sub.row()
        if self._keyring is not None:
            row[2] = self._keyring.encrypt(sub.ki, f"hlr.ki:{sub.isdn}")
            row[3] = self._keyring.encrypt(sub.opc, f"hlr.opc:{sub.isdn}")
        return row

    def _opened_row(self, row: list) -> Subscriber:
        sub = Subscriber.from_row(row)
        if self._keyring is not None and sub.ki.startswith("v1."):
            sub.ki = self._keyring.decrypt(sub.ki, f"hlr.ki:{sub.isdn}")
            sub.opc = self._keyring.decrypt(sub.opc, f"hlr.opc:{sub.isdn}")
        return sub

    def _apply(self, command):
        req = ("REQ", command.req)
        found = self.subscribers.get(command.isdn)
        if isinstance(command, AddSub):
            if found is not None:
                return make_reply(ResultCode.SUBSCRIBER_EXISTS, [req, ("ISDN", command.isdn)]), None
            if command.imsi in self.by_imsi:
                return make_reply(ResultCode.IMSI_IN_USE, [req, ("IMSI", command.imsi)]), None
            change = self._put(Subscriber(command.isdn, command.imsi, command.ki, command.opc, updated=_now()))
            return make_reply(ResultCode.OK, [req, ("ISDN", command.isdn), ("IMSI", command.imsi)]), change
        if found is None:
            return make_reply(ResultCode.SUBSCRIBER_NOT_FOUND, [req, ("ISDN", command.isdn)]), None
        if isinstance(command, ModOdb):
            found.barred = command.barred
            found.reason = command.reason if command.barred else NOT_BARRED
            found.updated = _now()
            change = self._put(found)
            return make_reply(ResultCode.OK, [req, ("ISDN", found.isdn), ("ODBSS", int(found.barred)),
                                              ("ODBRSN", found.reason)]), change
        if isinstance(command, ModImsi):
            if command.imsi in self.by_imsi:
                return make_reply(ResultCode.IMSI_IN_USE, [req, ("IMSI", command.imsi)]), None
            old = found.imsi
            del self.by_imsi[old]
            found.imsi, found.ki, found.opc, found.updated = command.imsi, command.ki, command.opc, _now()
            change = self._put(found)
            return make_reply(ResultCode.OK, [req, ("ISDN", found.isdn), ("IMSI", found.imsi),
                                              ("OLDIMSI", old)]), change
        if isinstance(command, RmvSub):
            self._remove(found.isdn)
            return make_reply(ResultCode.OK, [req, ("ISDN", found.isdn), ("IMSI", found.imsi)]), {"d": found.isdn}
        raise TypeError(f"not a modifying command: {command!r}")

    def _remove(self, isdn: str) -> None:
        sub = self.subscribers.pop(isdn)
        del self.by_imsi[sub.imsi]
        self._sorted = None

    def _read(self, command):
        req = ("REQ", command.req)
        if isinstance(command, Ping):
            return make_reply(ResultCode.OK, [req, ("TOTAL", len(self.subscribers))])
        if isinstance(command, LstSub):
            isdn = command.isdn if command.isdn is not None else self.by_imsi.get(command.imsi)
            sub = self.subscribers.get(isdn) if isdn is not None else None
            if sub is None:
                given = ("ISDN", command.isdn) if command.isdn is not None else ("IMSI", command.imsi)
                return make_reply(ResultCode.SUBSCRIBER_NOT_FOUND, [req, given])
            return make_reply(ResultCode.OK, [req, ("ISDN", sub.isdn), ("IMSI", sub.imsi), ("KI", MASK),
                                              ("OPC", MASK), ("ODBSS", int(sub.barred)), ("ODBRSN", sub.reason),
                                              ("UPDATED", sub.updated)])
        if isinstance(command, LstAll):
            return self._page(command)
        raise TypeError(f"not a read command: {command!r}")

    def _page(self, command: LstAll):
        import bisect

        if self._sorted is None:
            self._sorted = sorted(self.subscribers)
        start = bisect.bisect_right(self._sorted, command.after) if command.after is not None else 0
        isdns = self._sorted[start:start + command.count]
        records = [(s.isdn, s.imsi, s.barred, s.reason, s.updated) for s in map(self.subscribers.__getitem__, isdns)]
        fields = [("REQ", command.req), ("TOTAL", len(self._sorted)), ("COUNT", len(records))]
        if start + command.count < len(self._sorted):
            fields.append(("NEXT", isdns[-1]))
        fields.append(("SUBS", format_records(records)))
        return make_reply(ResultCode.OK, fields)

    # ------------------------------------------------------------------ disk

    def commit(self) -> None:
        """Write the journal lines of the commands run since the last commit (one fsync)."""
        if not self._pending or self.data_dir is None:
            return
        if self._journal is None:
            self._journal = _open_private(self.data_dir / JOURNAL, "a")
        self._journal.write(b"".join(self._pending))
        self._journal.flush()
        if self._fsync:
            os.fsync(self._journal.fileno())
        self._journal_lines += len(self._pending)
        self._pending.clear()
        if self._journal_lines >= self._compact_after and self._journal_lines > len(self.subscribers):
            self._compact()

    def close(self) -> None:
        """Commit what is pending and close the journal."""
        self.commit()
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def _replay(self, entry: dict) -> None:
        if "p" in entry:
            sub = self._opened_row(entry["p"])
            old = self.subscribers.get(sub.isdn)
            if old is not None:
                self.by_imsi.pop(old.imsi, None)
            self._put(sub)
        elif "d" in entry and entry["d"] in self.subscribers:
            self._remove(entry["d"])
        if "q" in entry:
            self._remember_reply(entry["q"], entry["h"], entry["r"])

    def _load(self) -> None:
        snapshot = self.data_dir / SNAPSHOT
        if snapshot.exists():
            with snapshot.open("rb") as f:
                header = json.loads(f.readline())
                if header.get("version") != _SNAPSHOT_VERSION:
                    raise ValueError(f"{snapshot}: unknown snapshot version {header.get('version')!r}")
                for raw in f:
                    self._replay(json.loads(raw))
        journal = self.data_dir / JOURNAL
        if journal.exists():
            lines = journal.read_bytes().split(b"\n")
            for number, raw in enumerate(lines, 1):
                if not raw.strip():
                    continue
                try:
                    entry = json.loads(raw)
                except ValueError:
                    if number >= len(lines) - 1:  # a torn last line: the command was never answered
                        log.warning("%s: ignoring a torn last line", journal)
                        break
                    raise ValueError(f"{journal}: line {number} is not JSON") from None
                self._replay(entry)
        log.info("registry loaded from %s: %d subscriber(s)", self.data_dir, len(self.subscribers))

    def _compact(self) -> None:
        """Fold everything into a new snapshot (atomically), then empty the journal."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        tmp = self.data_dir / (SNAPSHOT + ".tmp")
        with _open_private(tmp, "w") as f:
            f.write(json.dumps({"version": _SNAPSHOT_VERSION}).encode() + b"\n")
            chunk = []
            for sub in self.subscribers.values():
                chunk.append(json.dumps({"p": self._sealed_row(sub)}, separators=(",", ":")))
                if len(chunk) >= 10_000:
                    f.write(("\n".join(chunk) + "\n").encode())
                    chunk.clear()
            for req, (digest, reply) in self._replies.items():
                chunk.append(json.dumps({"q": req, "h": digest, "r": reply}, separators=(",", ":")))
                if len(chunk) >= 10_000:
                    f.write(("\n".join(chunk) + "\n").encode())
                    chunk.clear()
            if chunk:
                f.write(("\n".join(chunk) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.data_dir / SNAPSHOT)
        dir_fd = os.open(self.data_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._journal = _open_private(self.data_dir / JOURNAL, "w")  # truncates: all of it is in the snapshot
        self._journal_lines = 0


def folder_for(db) -> Path:
    """The HLR registry folder that belongs to the database of store ``db``:
    ``<data dir>/hlr/<id>``, the id made on first use and kept in the database's settings
    (``hlr_registry``), so two databases never share a registry and a new database starts
    with an empty one. The demo, ``hkops serve``'s simulator and ``hkops hlr serve`` use it."""
    import secrets

    from sqlalchemy.exc import IntegrityError

    from hkops import config, settings

    with db.read() as conn:
        name = settings.get(conn, "hlr_registry")
    if not name:
        try:
            with db.write() as conn:
                name = settings.get(conn, "hlr_registry")
                if not name:
                    name = secrets.token_hex(6)
                    settings.set_value(conn, "hlr_registry", name)
        except IntegrityError:  # another process named it first
            with db.read() as conn:
                name = settings.get(conn, "hlr_registry")
    return Path(config.DATA_DIR) / "hlr" / name
