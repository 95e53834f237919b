"""Read vendor card-data files (DOMAIN.md section 4) and validate every record.

Two layouts are accepted, told apart by their content (not their file name):

* CSV with a header row, as pySim's card-key files: ``iccid,imsi,ki,opc,...`` in any order,
  quoted or not, comma, semicolon, tab or ``|`` separated; other columns are kept.
* The operator ".out" file: ``Key: value`` header lines (``*``/``#`` lines are comments),
  a ``var_out:`` line naming the columns separated by ``/``, then one whitespace-separated
  record per line.

UTF-8 with or without BOM, CRLF or LF, trailing blank lines: all the same. A file is
taken whole or not at all: :func:`read_card_file` raises :class:`~hkops.errors.InvalidFile`
listing every bad line with its number and reason. Secret values never appear in errors.

Validation is column by column with fast checks (regular expressions, a vectorised Luhn
check, carrier look-ups cached per IMSI prefix); a value that fails them goes through
the precise parser of :mod:`hkops.ids`, which either accepts it in a normalised form
(an ICCID written in groups, say) or gives the reason.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from hkops import ids
from hkops.errors import InvalidFile, InvalidValue
from hkops.ids import HIDDEN
from hkops.security.crypto import Secret

#: The columns hkops knows, in their canonical names.
IDENTITY_FIELDS = ("iccid", "imsi")
SECRET_FIELDS = ("ki", "opc", "pin1", "puk1", "pin2", "puk2", "adm1")
REQUIRED = ("iccid", "imsi", "ki")
#: Other names vendors use for known columns.
ALIASES = {"k": "ki", "op_c": "opc", "adm": "adm1", "pin": "pin1", "puk": "puk1"}
#: Extra columns (and .out header fields) whose names say they hold keys or codes: OP, K4,
#: EKI, OTA keys KIC/KID/KIK, other ADM/PIN/PUK codes, anything named key/secret/password.
SECRET_NAME = re.compile(r"(k\d*|op|eki|kic\d*|kid\d*|kik\d*|adm\d*|pin\d*|puk\d*|.*(key|secret|pass|pwd).*)\Z")

_VAR_OUT = re.compile(r"\s*var_out\s*:(.*)\Z", re.IGNORECASE)
_DELIMITERS = (",", ";", "\t", "|")
_ICCID = re.compile(r"89\d{17,18}\Z").match
_IMSI = re.compile(r"\d{15}\Z").match
_KEY = re.compile(r"[0-9A-Fa-f]{32}\Z").match
_PIN = re.compile(r"\d{4,8}\Z").match
_PUK = re.compile(r"\d{8}\Z").match
_ADM = re.compile(r"(\d{8}|[0-9A-Fa-f]{16})\Z").match

_FAST: dict[str, Callable] = {
    "ki": _KEY, "opc": _KEY, "pin1": _PIN, "pin2": _PIN, "puk1": _PUK, "puk2": _PUK, "adm1": _ADM,
}
_PRECISE: dict[str, Callable[[str, str], str]] = {
    "ki": ids.parse_key, "opc": ids.parse_key, "pin1": ids.parse_pin, "pin2": ids.parse_pin,
    "puk1": ids.parse_puk, "puk2": ids.parse_puk, "adm1": ids.parse_adm,
}
_UPPER = ("ki", "opc", "adm1")


@dataclass(repr=False)
class CardFile:
    """The validated records of a card-data file, column by column (record i of every list
    is line ``lines[i]``). Secret columns hold plain text: hand them to the keyring and
    let go; ``repr`` shows only the shape."""

    source: str
    layout: str
    header: dict[str, str]
    lines: list[int]
    iccid: list[str]
    imsi: list[str]
    secrets: dict[str, list[str | None]]
    extra: dict[str, list[str]] = field(default_factory=dict)
    sealed_extra: dict[str, list[str]] = field(default_factory=dict)
    sealed_header: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.iccid)

    def __repr__(self) -> str:
        return (f"CardFile({self.source!r}, layout={self.layout!r}, records={len(self)}, "
                f"secrets={list(self.secrets)}, extra={list(self.extra)}, sealed_extra={list(self.sealed_extra)})")

    def records(self) -> Iterator[dict[str, object]]:
        """One dict per card, secrets wrapped in :class:`Secret` (slower; for small files)."""
        for i in range(len(self)):
            record: dict[str, object] = {"line": self.lines[i], "iccid": self.iccid[i], "imsi": self.imsi[i]}
            for name, values in self.secrets.items():
                record[name] = None if values[i] is None else Secret(values[i])
            for name, values in self.extra.items():
                record[name] = values[i]
            for name, values in self.sealed_extra.items():
                record[name] = Secret(values[i])
            yield record


def _canonical(name: str) -> str:
    text = re.sub(r"[\s-]+", "_", name.strip().strip('"').strip().lower())
    return ALIASES.get(text, text)


def _not_a_card_file(source: str) -> InvalidValue:
    return InvalidValue("file", source, "is not a card-data file: expected a CSV header naming iccid, imsi and ki, "
                                        "or a .out file with a 'var_out:' line")


def _check_columns(source: str, names: list[str], line: int) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise InvalidFile(source, [InvalidValue("column", name, "appears twice in the header", line=line)])
        seen.add(name)
    missing = [name for name in REQUIRED if name not in seen]
    if missing:
        raise InvalidFile(source, [InvalidValue("header", ", ".join(names), f"names no {' or '.join(missing)} column",
                                                line=line)])


def _read_text(path: Path) -> str:
    from hkops.textfiles import read_text  # the one reader of handed-in files, with its size limits

    return read_text(path)


def _layout(lines: list[str], source: str) -> tuple[str, int, list[str], dict[str, str] | str]:
    """(layout, index of the column line, column names, header fields or CSV delimiter)."""
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise InvalidValue("file", source, "is empty")
    for index, line in enumerate(lines):
        match = _VAR_OUT.match(line)
        if match:
            names = [_canonical(n) for n in match[1].split("/") if n.strip()]
            header: dict[str, str] = {}
            for text in lines[:index]:
                text = text.strip()
                if text and text[0] not in "*#" and ":" in text:
                    key, value = text.split(":", 1)
                    header[key.strip()] = value.strip()
            return "out", index, names, header
    for delimiter in _DELIMITERS:
        names = [_canonical(n) for n in next(csv.reader([lines[first]], delimiter=delimiter))]
        if "iccid" in names and "imsi" in names:
            return "csv", first, names, delimiter
    raise _not_a_card_file(source)


def _rows(layout: str, lines: list[str], start: int, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank record after the column line."""
    if layout == "out":
        for number, line in enumerate(lines[start + 1:], start=start + 2):
            fields = line.split()
            if fields and not fields[0].startswith(("*", "#")):
                yield number, fields
        return
    reader = csv.reader(lines[start + 1:], delimiter=delimiter)
    for fields in reader:
        fields = [value.strip() for value in fields]
        if any(fields):
            yield start + 1 + reader.line_num, fields


def _luhn_ok(values: list[str]) -> np.ndarray:
    """Luhn check of digit strings (all 19 or 20 long), vectorised."""
    import numpy as np  # imported where used, so that commands start fast

    ok = np.zeros(len(values), dtype=bool)
    lengths = np.fromiter((len(v) for v in values), dtype=np.int64, count=len(values))
    for length in (19, 20):
        where = np.flatnonzero(lengths == length)
        if not len(where):
            continue
        joined = "".join(values[i] for i in where.tolist()).encode("ascii")
        digits = (np.frombuffer(joined, dtype=np.uint8).reshape(-1, length) - 48)[:, ::-1].astype(np.int64)
        doubled = digits[:, 1::2] * 2
        doubled -= 9 * (doubled > 9)
        ok[where] = (digits[:, 0::2].sum(axis=1) + doubled.sum(axis=1)) % 10 == 0
    return ok


class _Checker:
    """Collects problems, one InvalidValue per bad value, with line numbers."""

    def __init__(self, lines: list[int]):
        self.lines = lines
        self.problems: list[InvalidValue] = []
        self.bad_rows: set[int] = set()

    def fail(self, row: int, field_name: str, value: object, reason: str) -> None:
        self.problems.append(InvalidValue(field_name, value, reason, line=self.lines[row]))
        self.bad_rows.add(row)

    def precise(self, row: int, parse: Callable[[], str], field_name: str, shown: object) -> str | None:
        try:
            return parse()
        except InvalidValue as exc:
            self.fail(row, field_name, shown, exc.reason)
            return None


def _check_iccids(values: list[str], carrier: str | None, check: _Checker) -> None:
    import numpy as np

    fast = [bool(_ICCID(v)) for v in values]
    candidates = [i for i, ok in enumerate(fast) if ok]
    luhn = _luhn_ok([values[i] for i in candidates])
    good = np.zeros(len(values), dtype=bool)
    good[np.asarray(candidates, dtype=np.int64)] = luhn
    for i in np.flatnonzero(~good).tolist():
        raw = values[i]
        if not raw:
            check.fail(i, "iccid", raw, "is missing")
            continue
        parsed = check.precise(i, lambda: ids.parse_iccid(raw), "iccid", raw)
        if parsed is not None:
            values[i] = parsed
    if carrier is None:
        return
    issuers: dict[str, str | None] = {}
    for i, value in enumerate(values):
        if i in check.bad_rows:
            continue
        prefix = value[:6]
        if prefix not in issuers:
            issuers[prefix] = ids.iccid_issuer(value)
        issuer = issuers[prefix]
        if issuer is not None and issuer != carrier:
            check.fail(i, "iccid", value, f"issuer code {value[4:6]} belongs to {issuer}, not {carrier}")


def _check_imsis(values: list[str], carrier: str | None, check: _Checker) -> None:
    verdicts: dict[str, bool] = {}
    for i, raw in enumerate(values):
        if _IMSI(raw):
            prefix = raw[:6]
            verdict = verdicts.get(prefix)
            if verdict is None:
                try:
                    ids.parse_imsi(prefix + "0" * 9, carrier=carrier)
                    verdict = True
                except InvalidValue:
                    verdict = False
                verdicts[prefix] = verdict
            if verdict:
                continue
        if not raw:
            check.fail(i, "imsi", raw, "is missing")
            continue
        parsed = check.precise(i, lambda: ids.parse_imsi(raw, carrier=carrier), "imsi", raw)
        if parsed is not None:
            values[i] = parsed


def _check_secret(name: str, values: list[str | None], required: bool, check: _Checker) -> None:
    fast, precise, upper = _FAST[name], _PRECISE[name], name in _UPPER
    for i, raw in enumerate(values):
        if raw and fast(raw):
            if upper:
                values[i] = raw.upper()
            continue
        if not raw:
            if required:
                check.fail(i, name, HIDDEN, "is missing")
            values[i] = None
            continue
        values[i] = check.precise(i, lambda: precise(raw, name), name, HIDDEN)


def _duplicates(name: str, values: list[str], check: _Checker) -> None:
    first: dict[str, int] = {}
    for i, value in enumerate(values):
        if not value:
            continue
        seen = first.setdefault(value, i)
        if seen != i:
            check.fail(i, name, value, f"repeats line {check.lines[seen]}")


def parse_card_text(text: str, *, carrier: str | None, source: str = "<text>") -> CardFile:
    """Parse and validate the text of a card-data file (see :func:`read_card_file`)."""
    lines = text.split("\n")
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    layout, start, names, info = _layout(lines, source)
    _check_columns(source, names, start + 1)
    header = info if isinstance(info, dict) else {}
    delimiter = info if isinstance(info, str) else ","

    problems: list[InvalidValue] = []
    numbers: list[int] = []
    good: list[list[str]] = []
    width = len(names)
    for number, fields in _rows(layout, lines, start, delimiter):
        if len(fields) != width:
            problems.append(InvalidValue("record", f"{len(fields)} fields", f"the columns line names {width}", line=number))
            continue
        numbers.append(number)
        good.append(fields)
    if not good and not problems:
        raise InvalidValue("file", source, "holds no card records")

    columns = {name: list(values) for name, values in zip(names, zip(*good))} if good else {name: [] for name in names}
    check = _Checker(numbers)
    _check_iccids(columns["iccid"], carrier, check)
    _check_imsis(columns["imsi"], carrier, check)
    secrets: dict[str, list[str | None]] = {}
    for name in SECRET_FIELDS:
        if name in columns:
            secrets[name] = columns[name]
            _check_secret(name, secrets[name], name in REQUIRED, check)
    _duplicates("iccid", columns["iccid"], check)
    _duplicates("imsi", columns["imsi"], check)
    problems += check.problems

    quantity = next((v for k, v in header.items() if k.strip().lower() == "quantity"), None)
    if quantity is not None:
        line = next(i + 1 for i, text in enumerate(lines[:start]) if text.strip().lower().startswith("quantity"))
        count = len(good) + sum(1 for p in problems if p.field == "record")
        if not quantity.isdigit():
            problems.append(InvalidValue("quantity", quantity, "must be a whole number", line=line))
        elif int(quantity) != count:
            problems.append(InvalidValue("quantity", quantity, f"but the file holds {count} records", line=line))

    if problems:
        problems.sort(key=lambda p: p.line or 0)
        raise InvalidFile(source, problems)

    known = set(IDENTITY_FIELDS) | set(SECRET_FIELDS)
    extra = {n: columns[n] for n in names if n not in known and not SECRET_NAME.match(n)}
    sealed_extra = {n: columns[n] for n in names if n not in known and SECRET_NAME.match(n)}
    plain_header = {k: v for k, v in header.items() if not SECRET_NAME.match(_canonical(k))}
    sealed_header = {k: v for k, v in header.items() if SECRET_NAME.match(_canonical(k))}
    return CardFile(source=source, layout=layout, header=plain_header, lines=numbers, iccid=columns["iccid"],
                    imsi=columns["imsi"], secrets=secrets, extra=extra, sealed_extra=sealed_extra,
                    sealed_header=sealed_header)


def read_card_file(path: str | Path, *, carrier: str | None) -> CardFile:
    """Read and validate a card-data file whose IMSIs must belong to ``carrier``.

    Raises :class:`~hkops.errors.InvalidFile` listing every bad line (bad ICCID length or
    check digit, IMSI of another carrier, bad Ki/OPc/PIN/PUK/ADM, an ICCID or IMSI twice,
    a record with the wrong number of fields), or :class:`~hkops.errors.InvalidValue` for
    a file that cannot be read or is not a card-data file.
    """
    path = Path(path)
    return parse_card_text(_read_text(path), carrier=carrier, source=str(path))
