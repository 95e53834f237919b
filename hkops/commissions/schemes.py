"""Commission schemes as data: a TOML file per scheme version (DOMAIN.md section 9).

::

    name = "CM-58 2026"
    plans = ["CM-58"]
    effective = 2026-01-01          # applies to events on or after this date (Asia/Shanghai)
    window_days = 60                # assessment window: a stop inside it claws back
    timing = "next_month"           # or "instant"

    [[rules]]
    event = "activation"            # order_paid | activation | first_topup | in_network
    amounts = [3000, 1000, 500]     # fen per chain position: seller, its parent, ...

    [[rules]]
    event = "first_topup"
    min_fen = 5000
    within_days = 30
    percent = ["10", "5"]           # of the plan's monthly fee (strings or integers)

    [[rules]]
    event = "in_network"
    months = [2, 3]                 # months N..M after activation (activation month is 1)
    model = "price_difference"      # each level keeps its price minus the level below's
    min_spend_fen = 8000            # optional minimums that month, from the usage store: spend
    min_data_mb = 500               #   (the plan fee + charges), data (MiB), outgoing voice minutes,
    min_voice_min = 30              #   top-ups; the card active the whole month
    min_topup_fen = 5000
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

from hkops.errors import InvalidFile, InvalidValue

EVENTS = ("order_paid", "activation", "first_topup", "in_network")
TIMINGS = ("instant", "next_month")
#: Minimums an in-network month may require, each a whole non-negative number: the month's billable
#: charges (fen), data up and down (MiB), outgoing voice (minutes), top-ups (fen).
USAGE_MINIMUMS = ("min_spend_fen", "min_data_mb", "min_voice_min", "min_topup_fen")
#: The fields a rule may have, by event (the amount fields are common to all).
_RULE_FIELDS = {"event", "amounts", "percent", "model"}
_EVENT_FIELDS = {"first_topup": {"min_fen", "within_days"}, "in_network": {"months", *USAGE_MINIMUMS}}


@dataclass(frozen=True)
class Rule:
    event: str
    amounts: tuple[int, ...] = ()
    percent: tuple[Decimal, ...] = ()
    price_difference: bool = False
    min_fen: int = 0
    within_days: int | None = None
    months: tuple[int, int] = (0, 0)
    #: In-network minimums of the month (``USAGE_MINIMUMS``); 0 = none.
    min_spend_fen: int = 0
    min_data_mb: int = 0
    min_voice_min: int = 0
    min_topup_fen: int = 0
    #: The line of the rule's amounts in its file, for messages.
    line: int = field(default=0, compare=False)

    @property
    def positions(self) -> int:
        return len(self.amounts or self.percent)

    @property
    def minimums(self) -> dict[str, int]:
        """The in-network minimums this rule sets (those above 0)."""
        return {name: getattr(self, name) for name in USAGE_MINIMUMS if getattr(self, name)}


@dataclass(frozen=True)
class Scheme:
    name: str
    plans: tuple[str, ...]
    effective: date
    window_days: int
    timing: str
    rules: tuple[Rule, ...]


def _rule_lines(text: str) -> list[int]:
    return [n for n, line in enumerate(text.splitlines(), 1) if re.match(r"\s*\[\[\s*rules\s*\]\]", line)]


def _line_of(text: str, key: str, start: int = 1) -> int:
    for n, line in enumerate(text.splitlines()[start - 1:], start):
        if re.match(rf"\s*{key}\s*=", line):
            return n
    return start


def _fen(value, field: str, line: int, unit: str = "fen") -> int:
    if isinstance(value, float):
        raise InvalidValue(field, value, "money is integer fen, never a float" if unit == "fen"
                           else f"must be a whole number of {unit}, not a float", line=line)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidValue(field, value, f"must be an integer number of {unit}", line=line)
    if value < 0:
        raise InvalidValue(field, value, "must not be negative", line=line)
    return value


def parse(text: str, source: str = "scheme") -> Scheme:
    """The scheme in ``text``; every problem found raises :class:`InvalidFile` naming field, value and line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InvalidFile(source, [InvalidValue("scheme", source, str(error))]) from None
    problems: list[InvalidValue] = []

    def check(fn):
        try:
            return fn()
        except InvalidValue as problem:
            problems.append(problem)

    def top(key, kind, reason):
        value = data.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise InvalidValue(key, value, reason, line=_line_of(text, key))
        return value

    name = check(lambda: top("name", str, "a name is required"))
    plans = check(lambda: top("plans", list, "a list of plan codes is required"))
    effective = check(lambda: top("effective", date, "a date (YYYY-MM-DD) is required"))
    window = check(lambda: top("window_days", int, "a whole number of days is required"))
    if window is not None and window < 0:
        problems.append(InvalidValue("window_days", window, "must not be negative", line=_line_of(text, "window_days")))
    timing = data.get("timing", "next_month")
    if timing not in TIMINGS:
        problems.append(InvalidValue("timing", timing, f"must be one of {', '.join(TIMINGS)}",
                                     line=_line_of(text, "timing")))
    starts = _rule_lines(text)
    rules = []
    for i, raw in enumerate(data.get("rules") or []):
        start = starts[i] if i < len(starts) else 1
        rule = check(lambda: _rule(raw, text, start))
        if rule:
            rules.append(rule)
    if not data.get("rules"):
        problems.append(InvalidValue("rules", None, "at least one rule is required"))
    if problems:
        raise InvalidFile(source, problems)
    return Scheme(name, tuple(str(p).upper() for p in plans), effective, window, timing, tuple(rules))


def _rule(raw: dict, text: str, start: int) -> Rule:
    line = lambda key: _line_of(text, key, start)  # noqa: E731
    event = raw.get("event")
    if event not in EVENTS:
        raise InvalidValue("event", event, f"unknown event; known: {', '.join(EVENTS)}", line=line("event"))
    allowed = _RULE_FIELDS | _EVENT_FIELDS.get(event, set())
    for key in raw:
        if key not in allowed:
            owners = [e for e, names in _EVENT_FIELDS.items() if key in names]
            raise InvalidValue(key, raw[key], f"only for event {owners[0]}" if owners else
                               f"unknown field; a {event} rule has {', '.join(sorted(allowed))}", line=line(key))
    values: dict = {"event": event, "line": start}
    if "amounts" in raw:
        values["line"] = line("amounts")
        values["amounts"] = tuple(_fen(v, "amounts", line("amounts")) for v in raw["amounts"])
    elif "percent" in raw:
        out = []
        for v in raw["percent"]:
            if isinstance(v, float):
                raise InvalidValue("percent", v, "write a percentage as a string (\"6.5\") or an integer",
                                   line=line("percent"))
            try:
                p = Decimal(str(v))
            except InvalidOperation:
                raise InvalidValue("percent", v, "not a number", line=line("percent")) from None
            if p < 0:
                raise InvalidValue("percent", v, "must not be negative", line=line("percent"))
            out.append(p)
        values["percent"], values["line"] = tuple(out), line("percent")
    elif raw.get("model") == "price_difference":
        values["price_difference"] = True
    else:
        raise InvalidValue("amounts", None, "give amounts, percent or model = \"price_difference\"", line=start)
    if event == "first_topup":
        values["min_fen"] = _fen(raw.get("min_fen", 0), "min_fen", line("min_fen"))
        if "within_days" in raw:
            values["within_days"] = int(raw["within_days"])
    if event == "in_network":
        months = raw.get("months")
        if (not isinstance(months, list) or len(months) != 2 or not all(isinstance(m, int) for m in months)
                or not 1 <= months[0] <= months[1]):
            raise InvalidValue("months", months, "give [N, M] with 1 <= N <= M", line=line("months"))
        values["months"] = (months[0], months[1])
        for name in USAGE_MINIMUMS:
            if name in raw:
                unit = {"min_data_mb": "MiB", "min_voice_min": "minutes"}.get(name, "fen")
                values[name] = _fen(raw[name], name, line(name), unit)
    return Rule(**values)
