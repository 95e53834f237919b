"""The provisioning client: typed calls, timeouts, retries with stable request ids.

Every command carries a request id (REQ). A command whose reply was lost (timeout,
dropped connection) or that got a transient code (5xxx) is sent again with the SAME id,
so the HLR applies it at most once and answers the retry with its first reply. When
retries run out the client raises :class:`ProvisioningUnavailable` with the commands
whose outcome is unknown: keep them and send them again later (same ids) — that is how
inventory and HLR end up agreeing. Callers that must survive a restart pass their own
stable ``req`` (e.g. derived from the order or activation id).

Numbers are given and returned in the 11-digit national form (``13800138000``); on the
wire they travel as ``8613800138000``.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import re
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

from hkops.errors import InvalidValue
from hkops.network import protocol as p
from hkops.network.errors import ProvisioningRefused, ProvisioningUnavailable, TransportError
from hkops.network.protocol import BarringReason, Reply, ResultCode
from hkops.network.transport import Transport

log = logging.getLogger("hkops.network.client")

_NATIONAL = re.compile(r"1\d{10}")
_PROCESS = f"{os.getpid():x}{random.SystemRandom().getrandbits(32):08x}"
_COUNTER = itertools.count(1)


def new_req(prefix: str = "r") -> str:
    """A request id unique to this process run (``r-<pid+random>-<n>``)."""
    return f"{prefix}-{_PROCESS}-{next(_COUNTER)}"


def wire_isdn(isdn: str) -> str:
    """``13800138000`` (or ``+86 138 0013 8000``, ``8613800138000``) -> ``8613800138000``."""
    text = str(isdn).replace(" ", "").replace("-", "")
    if text.startswith("+86"):
        text = text[3:]
    elif len(text) == 13 and text.startswith("86"):
        text = text[2:]
    if not _NATIONAL.fullmatch(text):
        raise InvalidValue("isdn", isdn, "must be an 11-digit mobile number starting with 1")
    return "86" + text


def national_isdn(wire: str) -> str:
    return wire[2:] if len(wire) == 13 and wire.startswith("86") else wire


def _build(cls, **kwargs):
    """Construct a protocol command; a bad value becomes :class:`InvalidValue` (keys hidden)."""
    try:
        return cls(**kwargs)
    except p.ProtocolError as error:
        name = _FIELDS.get(error.param or "", "value")
        shown = "<hidden>" if name in ("ki", "opc") else kwargs.get(name)
        reason = error.detail[len(error.param) + 1:] if error.param and error.detail.startswith(error.param) else error.detail
        raise InvalidValue(name, shown, reason) from None


_FIELDS = {"ISDN": "isdn", "IMSI": "imsi", "NEWIMSI": "imsi", "KI": "ki", "OPC": "opc", "REQ": "req",
           "ODBSS": "barred", "ODBRSN": "reason", "FROM": "after", "COUNT": "count"}


# ------------------------------------------------------------------ command builders

def add_sub(isdn: str, imsi: str, ki: str, opc: str, *, req: str | None = None) -> p.AddSub:
    """The ``ADD SUB`` command (for :meth:`ProvisioningClient.run_many`)."""
    return _build(p.AddSub, isdn=wire_isdn(isdn), imsi=imsi, ki=ki, opc=opc, req=req or new_req())


def mod_odb(isdn: str, barred: bool, reason: BarringReason | str | None = None, *, req: str | None = None) -> p.ModOdb:
    """The ``MOD ODB`` command: bar all services (with a reason) or lift the barring."""
    if isinstance(reason, BarringReason):
        reason = reason.value
    return _build(p.ModOdb, isdn=wire_isdn(isdn), barred=bool(barred), reason=reason,
                  req=req or new_req())


def mod_imsi(isdn: str, imsi: str, ki: str, opc: str, *, req: str | None = None) -> p.ModImsi:
    """The ``MOD IMSI`` command (replacement SIM)."""
    return _build(p.ModImsi, isdn=wire_isdn(isdn), imsi=imsi, ki=ki, opc=opc, req=req or new_req())


def rmv_sub(isdn: str, *, req: str | None = None) -> p.RmvSub:
    """The ``RMV SUB`` command (termination)."""
    return _build(p.RmvSub, isdn=wire_isdn(isdn), req=req or new_req())


# ------------------------------------------------------------------ results

@dataclass(frozen=True)
class SubscriberRecord:
    """What the HLR shows of a subscriber (never the keys)."""

    isdn: str
    imsi: str
    barred: bool
    barring_reason: BarringReason | None
    updated: str

    @classmethod
    def _of(cls, isdn: str, imsi: str, barred: bool, reason: str, updated: str) -> "SubscriberRecord":
        return cls(national_isdn(isdn), imsi, barred, BarringReason(reason) if barred else None, updated)


def _keys(command) -> tuple[str, ...]:
    keys = []
    for attr in ("isdn", "imsi"):
        value = getattr(command, attr, None)
        if value is not None:
            keys.append(f"{attr}:{value}")
    return tuple(keys)


def _waves(commands: Sequence) -> list[list[int]]:
    """Split indexes into waves so that no two commands naming the same ISDN or IMSI are in
    flight together (a transient failure could otherwise reorder them)."""
    last: dict[str, int] = {}
    waves: list[list[int]] = []
    for index, command in enumerate(commands):
        keys = _keys(command)
        wave = 1 + max((last.get(k, -1) for k in keys), default=-1)
        if wave == len(waves):
            waves.append([])
        waves[wave].append(index)
        for key in keys:
            last[key] = wave
    return waves


class ProvisioningClient:
    """Provision subscribers in an HLR through a transport.

    Args:
        transport: :class:`~hkops.network.transport.TcpTransport` or
            :class:`~hkops.network.transport.InProcessTransport`.
        timeout: seconds to wait for each reply.
        retries: how many times one command may be resent after a transient code, a
            timeout or a lost connection.
        backoff: first pause (seconds) when a round of sends got no definite answer at
            all; doubles each such round up to ``max_backoff``, with jitter.

    Raises (every call):
        ProvisioningRefused: a permanent result code (not applied; fix the request).
        ProvisioningUnavailable: retries ran out; the outcome is unknown; resend later.
        hkops.errors.InvalidValue: a bad argument (nothing was sent).
    """

    def __init__(self, transport: Transport, *, timeout: float = 5.0, retries: int = 8, backoff: float = 0.05,
                 max_backoff: float = 2.0, sleep=time.sleep):
        self.transport = transport
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self.resent = 0

    # -------------------------------------------------------------- typed calls

    def add_subscriber(self, isdn: str, imsi: str, ki: str, opc: str, *, req: str | None = None) -> Reply:
        """Create the subscriber (activation). Refused with 3002 if the ISDN exists, 3003 if the IMSI is used."""
        return self.call(add_sub(isdn, imsi, ki, opc, req=req))

    def set_barring(self, isdn: str, barred: bool, reason: BarringReason | str | None = None, *,
                    req: str | None = None) -> Reply:
        """Bar all services (``barred=True`` needs a reason: LOSS, SUSPEND, ...) or lift the barring."""
        return self.call(mod_odb(isdn, barred, reason, req=req))

    def change_imsi(self, isdn: str, imsi: str, ki: str, opc: str, *, req: str | None = None) -> Reply:
        """Point the number at a replacement SIM's IMSI and keys."""
        return self.call(mod_imsi(isdn, imsi, ki, opc, req=req))

    def remove_subscriber(self, isdn: str, *, req: str | None = None) -> Reply:
        """Remove the subscriber (termination)."""
        return self.call(rmv_sub(isdn, req=req))

    def get(self, isdn: str | None = None, *, imsi: str | None = None) -> SubscriberRecord | None:
        """The subscriber with this ISDN (or IMSI), or None when the HLR has none."""
        command = _build(p.LstSub, isdn=wire_isdn(isdn) if isdn is not None else None, imsi=imsi,
                         req=new_req("q"))
        reply = self.run_many([command])[0]
        if reply.code == ResultCode.SUBSCRIBER_NOT_FOUND:
            return None
        if not reply.ok:
            raise ProvisioningRefused(command, reply)
        f = reply.fields
        return SubscriberRecord._of(f["ISDN"], f["IMSI"], f["ODBSS"] == 1, f["ODBRSN"], f["UPDATED"])

    def iter_all(self, page_size: int = p.MAX_PAGE) -> Iterator[SubscriberRecord]:
        """Every subscriber in ISDN order, page by page (for reconciliation against inventory)."""
        after = None
        while True:
            command = p.LstAll(req=new_req("q"), after=after, count=page_size)
            reply = self.call(command)
            for record in p.parse_records(reply.fields.get("SUBS", "")):
                yield SubscriberRecord._of(*record)
            after = reply.fields.get("NEXT")
            if not after:
                return

    def list_all(self, page_size: int = p.MAX_PAGE) -> list[SubscriberRecord]:
        """Every subscriber in ISDN order."""
        return list(self.iter_all(page_size))

    def ping(self) -> int:
        """The number of subscribers in the HLR (and proof that it answers)."""
        return int(self.call(p.Ping(req=new_req("q"))).fields["TOTAL"])

    # -------------------------------------------------------------- raw calls

    def call(self, command) -> Reply:
        """Send one command (with retries); its reply if OK.

        Raises:
            ProvisioningRefused: a permanent error code came back.
            ProvisioningUnavailable: no definite answer after the retries.
        """
        reply = self.run_many([command])[0]
        if not reply.ok:
            raise ProvisioningRefused(command, reply)
        return reply

    def run_many(self, commands: Sequence) -> list[Reply]:
        """Send many commands pipelined; one reply per command, in order.

        Commands are sent in order; commands naming the same ISDN or IMSI are never in
        flight together. A permanent error comes back as its reply (not raised).

        Raises:
            ProvisioningUnavailable: some commands got no definite answer after the retries;
                ``replies`` holds the answers of the others.
        """
        commands = list(commands)
        replies: list[Reply | None] = [None] * len(commands)
        unknown: list[int] = []
        cause = ""
        waves = [list(range(len(commands)))] if not any(c.MODIFIES for c in commands) else _waves(commands)
        for wave in waves:
            failed, why = self._run_wave(commands, wave, replies)
            unknown.extend(failed)
            cause = why if failed else cause
        if unknown:
            unknown.sort()
            raise ProvisioningUnavailable([commands[i] for i in unknown], replies, cause)
        return replies  # type: ignore[return-value]

    def _run_wave(self, commands, pending: list[int], replies: list) -> tuple[list[int], str]:
        lines = {i: p.format_command(commands[i]) for i in pending}
        attempts = dict.fromkeys(pending, 0)
        failed: list[int] = []
        stalled = 0
        cause = ""
        while pending:
            error: TransportError | None = None
            try:
                got = self.transport.exchange([lines[i] for i in pending], self.timeout)
            except TransportError as caught:
                error, got, cause = caught, caught.replies, str(caught)
            retry: list[int] = []
            answered = definite = 0
            for i, line in zip(pending, got):
                try:
                    reply = p.parse_reply(line)
                except p.ProtocolError:
                    reply = None
                if reply is None or reply.req not in (None, commands[i].req):
                    self.transport.close()  # out of step with the HLR: start a fresh connection
                    error = error or TransportError("reply out of step")
                    cause = f"unexpected reply {line[:80]!r}"
                    break
                answered += 1
                if reply.retryable:
                    attempts[i] += 1
                    retry.append(i)
                    cause = f"RETCODE {reply.code} {reply.text}"
                else:
                    replies[i] = reply
                    definite += 1
            unanswered = pending[answered:]
            if unanswered and error is not None:
                attempts[unanswered[0]] += 1  # the command in flight when the link failed
            retry.extend(unanswered)
            pending = []
            for i in sorted(retry):
                (failed if attempts[i] > self.retries else pending).append(i)
            if not pending:
                break
            self.resent += len(pending)
            log.info("resending %d command(s) (first REQ=%s): %s", len(pending), commands[pending[0]].req, cause)
            stalled = 0 if definite else stalled + 1
            if stalled:
                delay = min(self.max_backoff, self.backoff * 2 ** (stalled - 1))
                self._sleep(delay * random.uniform(0.5, 1.0))
        return failed, cause

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> "ProvisioningClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: Where the HLR listens unless $HKOPS_HLR or the caller says otherwise.
DEFAULT_ADDRESS = "127.0.0.1:7500"


def connect(address: str | None = None, *, connect_timeout: float = 2, timeout: float = 3, retries: int = 2,
            backoff: float = 0.2) -> ProvisioningClient:
    """A client for the HLR at ``address`` (HOST:PORT; default $HKOPS_HLR, else 127.0.0.1:7500) over TCP."""
    from hkops.network.transport import TcpTransport

    address = address or os.environ.get("HKOPS_HLR") or DEFAULT_ADDRESS
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidValue("hlr", address, "must be HOST:PORT, e.g. 127.0.0.1:7500")
    return ProvisioningClient(TcpTransport(host, int(port), connect_timeout=connect_timeout), timeout=timeout,
                              retries=retries, backoff=backoff)
