"""The monitor's alert rules, kept as data (a TOML file; ``rules.toml`` beside this module).

:func:`load_rules` reads and checks a rules file: every field of every rule must be one its
kind knows, with a value of the right type and range; anything else is an
:class:`~hkops.errors.InvalidValue` naming the rule, the field and the line.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from hkops.errors import InvalidValue

DEFAULT_RULES_FILE = Path(__file__).resolve().parent / "rules.toml"
RULES_ENV = "HKOPS_ALERT_RULES"
SEVERITIES = ("low", "medium", "high")

#: Fields every rule may have: (type, default).
_COMMON = {"kind": (str, None), "severity": (str, "medium"), "enabled": (bool, True), "window_hours": (int, 24)}
#: Each kind's parameters: name -> (type, default, (minimum, maximum)).
KINDS: dict[str, dict[str, tuple]] = {
    "lost_card_use": {"states": (list, ["lost", "terminated", "replaced"], None)},
    "sim_swap_traffic": {"max_age_hours": (int, 24, (1, 2400)), "count_activation": (bool, False, None)},
    "usage_spike": {"threshold": (float, 5.0, (0.5, 1000)), "history_days": (int, 28, (3, 366)),
                    "min_history_days": (int, 7, (3, 366)), "min_bytes": (int, 1 << 30, (0, 1 << 50))},
    "never_used": {"days": (int, 30, (1, 3650)), "every_minutes": (int, 60, (1, 10_080))},
    "impossible_travel": {"max_kmh": (float, 900.0, (1, 100_000)), "min_km": (float, 300.0, (1, 10_000)),
                          "within_minutes": (int, 60, (1, 1440))},
    "region_drop": {"bucket_minutes": (int, 5, (1, 1440)), "baseline_buckets": (int, 6, (2, 1000)),
                    "drop": (float, 0.7, (0.01, 1.0)), "min_baseline": (int, 30, (1, 10**9))},
}


@dataclass(frozen=True)
class Rule:
    """One alert rule: its name, kind, severity, dedup window and parameters."""

    name: str
    kind: str
    severity: str = "medium"
    enabled: bool = True
    window_hours: int = 24
    params: dict = field(default_factory=dict)

    def __getitem__(self, key: str):
        return self.params[key]


def rules_file() -> Path:
    """``HKOPS_ALERT_RULES``, else the rules shipped with hkops."""
    configured = os.environ.get(RULES_ENV)
    return Path(configured) if configured else DEFAULT_RULES_FILE


def _line_of(text: str, needle: str, after: int = 0) -> int | None:
    for number, line in enumerate(text.splitlines(), 1):
        if number > after and line.strip().startswith(needle):
            return number
    return None


def _value(rule: str, name: str, value, kind: type, bounds, line: int | None):
    where = f"rule {rule} field {name}"
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidValue(where, value, "must be a list of names", line=line)
        return value
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidValue(where, value, f"must be {'a number' if kind is float else kind.__name__}", line=line)
    if bounds and not bounds[0] <= value <= bounds[1]:
        raise InvalidValue(where, value, f"must be between {bounds[0]} and {bounds[1]}", line=line)
    return value


def parse_rules(text: str, source: str = "rules") -> list[Rule]:
    """The rules of a rules file's ``text`` (``source`` names it in messages)."""
    from hkops.network.usage import REFUSING_STATES

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidValue("rules file", source, str(exc)) from None
    unknown_top = [key for key in data if key != "rules"]
    if unknown_top:
        raise InvalidValue("rules file field", unknown_top[0], "unknown: rules go in [rules.NAME] tables",
                           line=_line_of(text, unknown_top[0]) or _line_of(text, f"[{unknown_top[0]}"))
    rules = []
    for name, body in data.get("rules", {}).items():
        start = _line_of(text, f"[rules.{name}]") or 0
        if not isinstance(body, dict):
            raise InvalidValue(f"rule {name}", body, "must be a table [rules.NAME]", line=start or None)
        kind = body.get("kind", name)
        if kind not in KINDS:
            raise InvalidValue(f"rule {name} field kind", kind, f"unknown kind; known: {', '.join(KINDS)}",
                               line=_line_of(text, "kind", start) or start or None)
        known = {**_COMMON, **KINDS[kind]}
        for key in body:
            if key not in known:
                raise InvalidValue(f"rule {name} field", key,
                                   f"unknown field for a {kind} rule; known: {', '.join(known)}",
                                   line=_line_of(text, key, start) or start or None)
        common = {key: _value(name, key, body[key], known[key][0], None, _line_of(text, key, start))
                  for key in _COMMON if key in body}
        if common.get("severity", "medium") not in SEVERITIES:
            raise InvalidValue(f"rule {name} field severity", common["severity"],
                               f"must be one of {', '.join(SEVERITIES)}", line=_line_of(text, "severity", start))
        if not 1 <= common.get("window_hours", 24) <= 24 * 366:
            raise InvalidValue(f"rule {name} field window_hours", common["window_hours"],
                               "must be between 1 and 8784", line=_line_of(text, "window_hours", start))
        params = {}
        for key, (type_, default, bounds) in KINDS[kind].items():
            params[key] = (_value(name, key, body[key], type_, bounds, _line_of(text, key, start))
                           if key in body else default)
        if kind == "lost_card_use":
            wrong = [s for s in params["states"] if s not in REFUSING_STATES]
            if wrong:
                raise InvalidValue(f"rule {name} field states", wrong[0],
                                   f"is not a state the network refuses ({', '.join(REFUSING_STATES)})",
                                   line=_line_of(text, "states", start))
        rules.append(Rule(name=name, kind=kind, severity=common.get("severity", "medium"),
                          enabled=common.get("enabled", True), window_hours=common.get("window_hours", 24),
                          params=params))
    long_names = [r.name for r in rules if len(r.name) > 32]
    if long_names:
        raise InvalidValue("rule name", long_names[0], "must be at most 32 characters")
    return rules


def load_rules(path: str | Path | None = None) -> list[Rule]:
    """The enabled and disabled rules of the rules file at ``path`` (default :func:`rules_file`)."""
    path = Path(path) if path is not None else rules_file()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidValue("rules file", str(path), f"cannot be read ({exc.strerror})") from None
    return parse_rules(text, str(path))
