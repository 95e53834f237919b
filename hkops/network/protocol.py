"""The MML-style provisioning protocol between hkops and the HLR/HSS: pure text, no I/O.

One command per line, one reply per line, in order::

    ADD SUB: ISDN="8613800138000", IMSI="460001234567890", KI="<32 hex>", OPC="<32 hex>", REQ="a-1";
    RETCODE = 0  Operation succeeded; REQ="a-1", ISDN="8613800138000", IMSI="460001234567890"

Grammar of a command: ``NAME: PARAM=VALUE, PARAM=VALUE, ...;`` where NAME is one or two
words (``ADD SUB``, ``PING``), names are case-insensitive, a text value is quoted
(no ``"``, ``\\`` or control characters inside) and a number is bare digits.
Grammar of a reply: ``RETCODE = <code>  <text>[; PARAM=VALUE, ...]``.

Every command carries the client's request id ``REQ``; the HLR answers a repeated REQ
with the reply it gave the first time, so a client may resend a command whose reply it
lost. ISDNs travel in international form (``86`` + 11 digits). Ki and OPc travel on the
wire (a trusted provisioning link) but never appear in a reply, a ``repr`` or a log line
(:func:`redact`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Union

MASK = "***"
MAX_LINE = 4096
MAX_PAGE = 1000
DEFAULT_PAGE = 100


class ResultCode(IntEnum):
    """Result codes of the HLR, each with its fixed text. 5xxx are transient: retry."""

    def __new__(cls, code: int, text: str):
        member = int.__new__(cls, code)
        member._value_ = code
        member.text = text
        return member

    OK = 0, "Operation succeeded"
    SYNTAX_ERROR = 1001, "Syntax error"
    UNKNOWN_COMMAND = 1002, "Unknown command"
    BAD_PARAMETER = 1003, "Invalid parameter"
    SUBSCRIBER_NOT_FOUND = 3001, "Subscriber not found"
    SUBSCRIBER_EXISTS = 3002, "Subscriber already exists"
    IMSI_IN_USE = 3003, "IMSI already in use"
    REQUEST_ID_REUSED = 3004, "Request id already used for another command"
    SYSTEM_BUSY = 5001, "System busy"

    @property
    def retryable(self) -> bool:
        return is_transient(self)


def is_transient(code: int) -> bool:
    """A 5xxx code: the command was not applied and may be sent again as it is."""
    return 5000 <= code < 6000


class BarringReason(str, Enum):
    """Why all services of a subscriber are barred (operator-determined barring, ODB)."""

    LOSS = "LOSS"            # loss report (挂失)
    SUSPEND = "SUSPEND"      # suspension (停机), e.g. unpaid
    FRAUD = "FRAUD"
    REGULATOR = "REGULATOR"
    OPERATOR = "OPERATOR"


NOT_BARRED = "NONE"


class ProtocolError(ValueError):
    """A command or reply that breaks the grammar or carries a bad value.

    ``code`` is the result code the HLR answers with; ``param`` names the parameter at
    fault (if any); ``req`` is the request id when it could still be read. The message
    never contains a key.
    """

    def __init__(self, code: ResultCode, detail: str, *, param: str | None = None, req: str | None = None):
        self.code = code
        self.detail = detail
        self.param = param
        self.req = req
        super().__init__(detail)


# --------------------------------------------------------------------------- values

_ISDN = re.compile(r"861\d{10}")
_IMSI = re.compile(r"\d{15}")
_KEY = re.compile(r"[0-9A-Fa-f]{32}")
_REQ = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_TEXT_OK = re.compile(r'[^"\\\x00-\x1f\x7f]*')
_SECRET_PARAMS = frozenset({"KI", "OPC"})


def _bad(param: str, reason: str) -> ProtocolError:
    return ProtocolError(ResultCode.BAD_PARAMETER, f"{param} {reason}", param=param)


def check_isdn(value: object, param: str = "ISDN") -> str:
    """An ISDN in international form: ``86`` and an 11-digit number starting with 1."""
    if not isinstance(value, str) or not _ISDN.fullmatch(value):
        raise _bad(param, f"must be 86 and 11 digits starting with 1, got {value!r}")
    return value


def check_imsi(value: object, param: str = "IMSI") -> str:
    if not isinstance(value, str) or not _IMSI.fullmatch(value):
        raise _bad(param, f"must be 15 digits, got {value!r}")
    return value


def check_key(value: object, param: str = "KI") -> str:
    """A 128-bit key as 32 upper-case hex digits. The value is never quoted in the error."""
    if not isinstance(value, str) or not _KEY.fullmatch(value):
        raise _bad(param, "must be 32 hex digits")
    return value.upper()


def check_req(value: object, param: str = "REQ") -> str:
    if not isinstance(value, str) or not _REQ.fullmatch(value):
        raise _bad(param, f"must be 1-64 of A-Z a-z 0-9 . _ : -, got {value!r}")
    return value


def check_reason(value: object, param: str = "ODBRSN") -> str:
    try:
        return BarringReason(value).value
    except ValueError:
        names = ", ".join(r.value for r in BarringReason)
        raise _bad(param, f"must be one of {names}, got {value!r}") from None


def _set(obj, name: str, value) -> None:
    object.__setattr__(obj, name, value)


# --------------------------------------------------------------------------- commands

Value = Union[str, int]


@dataclass(frozen=True, slots=True)
class _KeyedSim:
    """An ISDN served by the IMSI of a SIM with its keys (ADD SUB and MOD IMSI name the IMSI differently)."""

    isdn: str
    imsi: str
    ki: str = field(repr=False)
    opc: str = field(repr=False)
    req: str

    IMSI_PARAM = "IMSI"
    MODIFIES = True

    def __post_init__(self):
        check_isdn(self.isdn)
        check_imsi(self.imsi, self.IMSI_PARAM)
        _set(self, "ki", check_key(self.ki, "KI"))
        _set(self, "opc", check_key(self.opc, "OPC"))
        check_req(self.req)

    def params(self) -> list[tuple[str, Value]]:
        return [("ISDN", self.isdn), (self.IMSI_PARAM, self.imsi), ("KI", self.ki), ("OPC", self.opc),
                ("REQ", self.req)]


@dataclass(frozen=True, slots=True)
class AddSub(_KeyedSim):
    """Create a subscriber: the ISDN served by the IMSI of a SIM with its keys."""

    NAME = "ADD SUB"


@dataclass(frozen=True, slots=True)
class ModImsi(_KeyedSim):
    """Replacement SIM: point the ISDN at a new IMSI with new keys; the old IMSI is gone."""

    NAME = "MOD IMSI"
    IMSI_PARAM = "NEWIMSI"


@dataclass(frozen=True, slots=True)
class ModOdb:
    """Bar all services (``barred``, with a reason) or lift the barring."""

    isdn: str
    barred: bool
    reason: str | None
    req: str

    NAME = "MOD ODB"
    MODIFIES = True

    def __post_init__(self):
        check_isdn(self.isdn)
        if not isinstance(self.barred, bool):
            raise _bad("ODBSS", "must be 1 (bar all services) or 0 (lift barring)")
        if self.barred:
            if self.reason is None:
                raise _bad("ODBRSN", "is required when ODBSS=1")
            _set(self, "reason", check_reason(self.reason))
        elif self.reason is not None:
            raise _bad("ODBRSN", "is only allowed with ODBSS=1")
        check_req(self.req)

    def params(self) -> list[tuple[str, Value]]:
        out: list[tuple[str, Value]] = [("ISDN", self.isdn), ("ODBSS", int(self.barred))]
        if self.barred:
            out.append(("ODBRSN", self.reason))
        out.append(("REQ", self.req))
        return out


@dataclass(frozen=True, slots=True)
class RmvSub:
    """Remove a subscriber (termination)."""

    isdn: str
    req: str

    NAME = "RMV SUB"
    MODIFIES = True

    def __post_init__(self):
        check_isdn(self.isdn)
        check_req(self.req)

    def params(self) -> list[tuple[str, Value]]:
        return [("ISDN", self.isdn), ("REQ", self.req)]


@dataclass(frozen=True, slots=True)
class LstSub:
    """Show one subscriber, by ISDN or by IMSI (exactly one of them)."""

    req: str
    isdn: str | None = None
    imsi: str | None = None

    NAME = "LST SUB"
    MODIFIES = False

    def __post_init__(self):
        if (self.isdn is None) == (self.imsi is None):
            raise _bad("ISDN", "or IMSI: give exactly one")
        if self.isdn is not None:
            check_isdn(self.isdn)
        else:
            check_imsi(self.imsi)
        check_req(self.req)

    def params(self) -> list[tuple[str, Value]]:
        key = ("ISDN", self.isdn) if self.isdn is not None else ("IMSI", self.imsi)
        return [key, ("REQ", self.req)]


@dataclass(frozen=True, slots=True)
class LstAll:
    """One page of subscribers in ISDN order: those after ``after`` (all when None)."""

    req: str
    after: str | None = None
    count: int = DEFAULT_PAGE

    NAME = "LST ALL"
    MODIFIES = False

    def __post_init__(self):
        if self.after is not None:
            check_isdn(self.after, "FROM")
        if not isinstance(self.count, int) or isinstance(self.count, bool) or not 1 <= self.count <= MAX_PAGE:
            raise _bad("COUNT", f"must be 1..{MAX_PAGE}, got {self.count!r}")
        check_req(self.req)

    def params(self) -> list[tuple[str, Value]]:
        out: list[tuple[str, Value]] = [("FROM", self.after)] if self.after is not None else []
        return out + [("COUNT", self.count), ("REQ", self.req)]


@dataclass(frozen=True, slots=True)
class Ping:
    """Is the HLR there? Answers with the number of subscribers."""

    req: str

    NAME = "PING"
    MODIFIES = False

    def __post_init__(self):
        check_req(self.req)

    def params(self) -> list[tuple[str, Value]]:
        return [("REQ", self.req)]


Command = Union[AddSub, ModOdb, ModImsi, RmvSub, LstSub, LstAll, Ping]


def _odbss(value: int) -> bool:
    if value not in (0, 1):
        raise _bad("ODBSS", f"must be 1 (bar all services) or 0 (lift barring), got {value}")
    return bool(value)


# command name -> (class, {wire param: (attribute, kind, required)})
_S, _I = str, int
_SPECS: dict[str, tuple[type, dict[str, tuple[str, type, bool]]]] = {
    "ADD SUB": (AddSub, {"ISDN": ("isdn", _S, True), "IMSI": ("imsi", _S, True), "KI": ("ki", _S, True),
                         "OPC": ("opc", _S, True), "REQ": ("req", _S, True)}),
    "MOD ODB": (ModOdb, {"ISDN": ("isdn", _S, True), "ODBSS": ("barred", _I, True),
                         "ODBRSN": ("reason", _S, False), "REQ": ("req", _S, True)}),
    "MOD IMSI": (ModImsi, {"ISDN": ("isdn", _S, True), "NEWIMSI": ("imsi", _S, True), "KI": ("ki", _S, True),
                           "OPC": ("opc", _S, True), "REQ": ("req", _S, True)}),
    "RMV SUB": (RmvSub, {"ISDN": ("isdn", _S, True), "REQ": ("req", _S, True)}),
    "LST SUB": (LstSub, {"ISDN": ("isdn", _S, False), "IMSI": ("imsi", _S, False), "REQ": ("req", _S, True)}),
    "LST ALL": (LstAll, {"FROM": ("after", _S, False), "COUNT": ("count", _I, False), "REQ": ("req", _S, True)}),
    "PING": (Ping, {"REQ": ("req", _S, True)}),
}
COMMAND_NAMES = tuple(_SPECS)


# --------------------------------------------------------------------------- text

_HEAD = re.compile(r"\s*([A-Za-z]+(?:[ \t]+[A-Za-z]+)?)\s*:")
_PARAM = re.compile(r'\s*([A-Za-z]+)\s*=\s*(?:"([^"\\\x00-\x1f\x7f]*)"|(\d+))\s*')
_REQ_ANYWHERE = re.compile(r'REQ\s*=\s*"([A-Za-z0-9._:-]{1,64})"', re.I)
_SECRET_VALUE = re.compile(r'\b(KI|OPC)(\s*=\s*)("[^"]*"?|[^,;\s]*)', re.I)


def _quote(value: Value) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"cannot put {type(value).__name__} on the wire")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("numbers on the wire are not negative")
        return str(value)
    if not _TEXT_OK.fullmatch(value):
        raise ValueError("text on the wire may not hold quotes, backslashes or control characters")
    return f'"{value}"'


def _params_text(params) -> str:
    return ", ".join(f"{name}={_quote(value)}" for name, value in params)


def format_command(command: Command) -> str:
    """The command's line (without the line end), parameters in canonical order."""
    params = command.params()
    return f"{command.NAME}: {_params_text(params)};" if params else f"{command.NAME}:;"


def _parse_params(text: str, pos: int, end: str, where: str) -> dict[str, Value]:
    """PARAM=VALUE pairs separated by commas from ``pos``; ``end`` is ';' or '' (end of text)."""
    found: dict[str, Value] = {}
    if end == ";" and re.match(r"\s*;\s*$", text[pos:]):
        return found
    if end == "" and not text[pos:].strip():
        return found
    while True:
        match = _PARAM.match(text, pos)
        if match is None:
            raise ProtocolError(ResultCode.SYNTAX_ERROR, f"expected PARAM=\"text\" or PARAM=number {where}"
                                f" at column {pos + 1}")
        name = match[1].upper()
        if name in found:
            raise ProtocolError(ResultCode.SYNTAX_ERROR, f"{name} given twice", param=name)
        found[name] = match[2] if match[2] is not None else int(match[3])
        pos = match.end()
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        if end == ";":
            if pos < len(text) and text[pos] == ";" and not text[pos + 1:].strip():
                return found
            raise ProtocolError(ResultCode.SYNTAX_ERROR, f"expected ',' or a final ';' {where} at column {pos + 1}")
        if pos == len(text):
            return found
        raise ProtocolError(ResultCode.SYNTAX_ERROR, f"expected ',' {where} at column {pos + 1}")


def parse_command(line: str) -> Command:
    """Parse one command line (a trailing line end is allowed).

    Raises:
        ProtocolError: with RETCODE 1001 (grammar), 1002 (unknown command) or 1003
            (missing, unknown or bad parameter); ``req`` set when it could be read.
    """
    try:
        return _parse_command(line)
    except ProtocolError as error:
        if error.req is None:
            found = _REQ_ANYWHERE.search(line) if isinstance(line, str) else None
            error.req = found[1] if found else None
        raise


def _parse_command(line: str) -> Command:
    if not isinstance(line, str):
        raise ProtocolError(ResultCode.SYNTAX_ERROR, "a command is text")
    if len(line) > MAX_LINE:
        raise ProtocolError(ResultCode.SYNTAX_ERROR, f"longer than {MAX_LINE} characters")
    line = line.rstrip("\r\n")
    head = _HEAD.match(line)
    if head is None:
        raise ProtocolError(ResultCode.SYNTAX_ERROR, "expected a command name and ':'")
    name = " ".join(head[1].upper().split())
    spec = _SPECS.get(name)
    if spec is None:
        raise ProtocolError(ResultCode.UNKNOWN_COMMAND, f"{name} is not a command; known: {', '.join(_SPECS)}")
    cls, schema = spec
    given = _parse_params(line, head.end(), ";", f"in {name}")
    kwargs = {}
    for param, value in given.items():
        if param not in schema:
            raise ProtocolError(ResultCode.BAD_PARAMETER, f"{name} takes no {param}", param=param)
        attr, kind, _required = schema[param]
        if not isinstance(value, kind):
            raise _bad(param, "must be a number" if kind is int else "must be quoted text")
        kwargs[attr] = value
    for param, (attr, _kind, required) in schema.items():
        if required and attr not in kwargs:
            raise ProtocolError(ResultCode.BAD_PARAMETER, f"{name} needs {param}", param=param)
    if cls is ModOdb:
        kwargs["barred"] = _odbss(kwargs["barred"])
        kwargs.setdefault("reason", None)
    try:
        return cls(**kwargs)
    except ProtocolError as error:
        error.req = kwargs.get("req") if isinstance(kwargs.get("req"), str) and _REQ.fullmatch(kwargs["req"]) else None
        raise


def redact(line: str) -> str:
    """``line`` with the values of KI and OPC replaced by ``***``: what may go to a log."""
    return _SECRET_VALUE.sub(lambda m: f'{m[1]}{m[2]}"{MASK}"', line)


# --------------------------------------------------------------------------- replies

_REPLY = re.compile(r"RETCODE = (\d{1,9})  ([^;\r\n]*?)(?:; (.*))?")


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply line: the code, its text and the named values that came with it."""

    code: int
    text: str
    fields: dict[str, Value] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.code == ResultCode.OK

    @property
    def retryable(self) -> bool:
        return is_transient(self.code)

    @property
    def req(self) -> str | None:
        value = self.fields.get("REQ")
        return value if isinstance(value, str) else None


def make_reply(code: ResultCode, fields: list[tuple[str, Value]] | dict[str, Value] = ()) -> Reply:
    """The reply for ``code``, with its standard text. Keys are refused: they never go back."""
    items = dict(fields)
    for name in _SECRET_PARAMS & items.keys():
        if items[name] != MASK:
            raise ValueError(f"{name} may only be sent back as {MASK}")
    return Reply(int(code), code.text, items)


def format_reply(reply: Reply) -> str:
    """The reply's line, without the line end."""
    head = f"RETCODE = {reply.code}  {reply.text}"
    return f"{head}; {_params_text(reply.fields.items())}" if reply.fields else head


def parse_reply(line: str) -> Reply:
    """Parse one reply line.

    Raises:
        ProtocolError: the line is not a reply.
    """
    if not isinstance(line, str) or len(line) > 1_000_000:
        raise ProtocolError(ResultCode.SYNTAX_ERROR, "not a reply line")
    line = line.rstrip("\r\n")
    match = _REPLY.fullmatch(line)
    if match is None:
        raise ProtocolError(ResultCode.SYNTAX_ERROR, "a reply starts 'RETCODE = <code>  <text>'")
    fields = _parse_params(match[3], 0, "", "in the reply") if match[3] is not None else {}
    return Reply(int(match[1]), match[2], fields)


# --------------------------------------------------------------------------- LST ALL pages

def format_records(records: list[tuple[str, str, bool, str, str]]) -> str:
    """``ISDN/IMSI/ODBSS/ODBRSN/UPDATED`` records joined with ``|`` (the SUBS value of LST ALL)."""
    return "|".join(f"{isdn}/{imsi}/{int(barred)}/{reason}/{updated}" for isdn, imsi, barred, reason, updated in records)


def parse_records(text: str) -> list[tuple[str, str, bool, str, str]]:
    out = []
    for item in text.split("|") if text else []:
        parts = item.split("/")
        if len(parts) != 5 or parts[2] not in ("0", "1"):
            raise ProtocolError(ResultCode.SYNTAX_ERROR, f"bad SUBS record {item!r}")
        isdn, imsi, barred, reason, updated = parts
        out.append((check_isdn(isdn), check_imsi(imsi), barred == "1", reason, updated))
    return out
