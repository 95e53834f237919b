"""Vanity grading (靓号): rules loaded from a TOML file, applied to arrays of numbers.

Rules are data (see data/grading_rules.toml). Grading is vectorised with numpy so that
a million numbers are graded in well under a second. No I/O but reading the rule file.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from hkops.config import DATA_DIR, shipped_path
from hkops.errors import InvalidValue
from hkops.money import yuan_to_fen

DIGITS = 11


def default_rules_path() -> Path:
    """``HKOPS_GRADING_RULES``, else grading_rules.toml in the data folder when the operator keeps
    one there, else the rules hkops ships (data/grading_rules.toml of the checkout)."""
    configured = os.environ.get("HKOPS_GRADING_RULES")
    if configured:
        return Path(configured)
    own = DATA_DIR / "grading_rules.toml"
    return own if own.is_file() else shipped_path("data/grading_rules.toml")


@dataclass(frozen=True)
class GradeRule:
    """One grade and the tests that put a number in it."""

    grade: str
    label: str
    level: int
    price_fen: int
    min_monthly_fen: int
    prepay_fen: int
    tails: tuple[str, ...] = ()
    sequence: int | None = None
    ends: tuple[str, ...] = ()
    regex: str | None = None

    @property
    def is_fallback(self) -> bool:
        return not (self.tails or self.sequence or self.ends or self.regex)


@dataclass(frozen=True)
class RuleSet:
    """An ordered list of grade rules; the first that matches wins."""

    rules: tuple[GradeRule, ...]
    digest: str = field(default="")

    def by_grade(self) -> dict[str, GradeRule]:
        return {r.grade: r for r in self.rules}

    @property
    def tail_digits(self) -> int | None:
        """How many last digits decide the grade, or None when a regex looks at all 11."""
        if any(r.regex for r in self.rules):
            return None
        lengths = [len(t) for r in self.rules for t in r.tails]
        lengths += [len(e) for r in self.rules for e in r.ends]
        lengths += [r.sequence for r in self.rules if r.sequence]
        return max(lengths, default=1)

    def grade(self, msisdns: np.ndarray) -> np.ndarray:
        """Index into ``rules`` of each number's grade (int64 array of msisdns in)."""
        import numpy as np  # imported where used, so that commands start fast

        msisdns = np.asarray(msisdns, dtype=np.int64)
        tail = self.tail_digits
        if tail is not None and tail <= _TABLE_MAX_DIGITS:
            return _tail_table(self, tail)[msisdns % (10**tail)]
        return self._grade_each(msisdns)

    def _grade_each(self, msisdns: np.ndarray) -> np.ndarray:
        import numpy as np

        digits = (msisdns[:, None] // 10 ** np.arange(DIGITS - 1, -1, -1, dtype=np.int64)) % 10
        result = np.full(len(msisdns), -1, dtype=np.int16)
        text: list[str] | None = None
        for index, rule in enumerate(self.rules):
            open_ = result < 0
            if not open_.any():
                break
            if rule.is_fallback:
                result[open_] = index
                continue
            hit = np.zeros(len(msisdns), dtype=bool)
            for tail in rule.tails:
                hit |= _tail_matches(digits, tail)
            if rule.sequence:
                hit |= _sequence_matches(digits, rule.sequence)
            for end in rule.ends:
                hit |= msisdns % (10 ** len(end)) == int(end)
            if rule.regex:
                if text is None:
                    text = [str(m) for m in msisdns.tolist()]
                search = re.compile(rule.regex).search
                hit |= np.fromiter((search(t) is not None for t in text), dtype=bool, count=len(text))
            result[open_ & hit] = index
        return result

    def grade_one(self, msisdn: str) -> GradeRule:
        import numpy as np

        return self.rules[int(self.grade(np.array([int(msisdn)]))[0])]


_TABLE_MAX_DIGITS = 6
_tables: dict[tuple[str, int], np.ndarray] = {}


def _tail_table(rules: RuleSet, tail: int) -> np.ndarray:
    """Grade of every possible tail of ``tail`` digits, computed once per rule set."""
    import numpy as np

    key = (rules.digest or str(id(rules)), tail)
    if key not in _tables:
        _tables[key] = rules._grade_each(np.arange(10**tail, dtype=np.int64))
    return _tables[key]


def _tail_matches(digits: np.ndarray, pattern: str) -> np.ndarray:
    import numpy as np

    tail = digits[:, DIGITS - len(pattern):]
    first_position: dict[str, int] = {}
    hit = np.ones(len(digits), dtype=bool)
    for position, letter in enumerate(pattern):
        if letter in first_position:
            hit &= tail[:, position] == tail[:, first_position[letter]]
        else:
            for other in first_position.values():
                hit &= tail[:, position] != tail[:, other]
            first_position[letter] = position
    return hit


def _sequence_matches(digits: np.ndarray, length: int) -> np.ndarray:
    import numpy as np

    steps = np.diff(digits[:, DIGITS - length:], axis=1)
    return (steps == 1).all(axis=1) | (steps == -1).all(axis=1)


def _tuple(value, name: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidValue(name, value, f"{where}: must be a list of strings")
    return tuple(value)


def parse_rules(text: str, source: str = "grading rules") -> RuleSet:
    """Parse and check a TOML rule file's text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidValue("grading rules", source, f"not valid TOML: {exc}") from None
    entries = data.get("grade")
    if not isinstance(entries, list) or not entries:
        raise InvalidValue("grading rules", source, "needs at least one [[grade]] table")
    rules, seen = [], set()
    for number, entry in enumerate(entries, start=1):
        where = f"{source}, grade #{number}"
        if not isinstance(entry, dict):
            raise InvalidValue("grade", entry, f"{where}: must be a [[grade]] table")
        name = entry.get("class")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_]{1,24}", name):
            raise InvalidValue("class", name, f"{where}: must be 1-24 letters, digits or _")
        if name in seen:
            raise InvalidValue("class", name, f"{where}: defined twice")
        seen.add(name)
        tails = _tuple(entry.get("tail"), "tail", where)
        for tail in tails:
            if not re.fullmatch(r"[A-Z]{2,11}", tail) or len(set(tail)) > 10:
                raise InvalidValue("tail", tail, f"{where}: must be 2-11 capital letters such as AABB")
        ends = _tuple(entry.get("ends"), "ends", where)
        for end in ends:
            if not re.fullmatch(r"[0-9]{1,10}", end):
                raise InvalidValue("ends", end, f"{where}: must be 1-10 digits")
        sequence = entry.get("sequence")
        if sequence is not None and (not isinstance(sequence, int) or not 3 <= sequence <= 10):
            raise InvalidValue("sequence", sequence, f"{where}: must be a whole number from 3 to 10")
        regex = entry.get("regex")
        if regex is not None:
            try:
                re.compile(regex)
            except (re.error, TypeError) as exc:
                raise InvalidValue("regex", regex, f"{where}: not a regular expression ({exc})") from None
        level = entry.get("level")
        if not isinstance(level, int) or not 0 <= level <= 99:
            raise InvalidValue("level", level, f"{where}: must be a whole number from 0 to 99")
        rules.append(
            GradeRule(
                grade=name,
                label=str(entry.get("label", name)),
                level=level,
                price_fen=yuan_to_fen(str(entry.get("price", "0")), f"{where}: price"),
                min_monthly_fen=yuan_to_fen(str(entry.get("min_monthly", "0")), f"{where}: min_monthly"),
                prepay_fen=yuan_to_fen(str(entry.get("prepay", "0")), f"{where}: prepay"),
                tails=tails,
                sequence=sequence,
                ends=ends,
                regex=regex,
            )
        )
    if not rules[-1].is_fallback:
        raise InvalidValue(
            "grading rules", source, "the last [[grade]] must have no test, so that every number gets a grade"
        )
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return RuleSet(tuple(rules), digest)


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Load the rule file (default: :func:`default_rules_path`)."""
    path = Path(path) if path else default_rules_path()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidValue("grading rules", str(path), f"cannot be read ({exc.strerror})") from None
    return parse_rules(text, str(path))
