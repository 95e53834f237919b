"""Search patterns for numbers, parsed into index-friendly pieces. No I/O here.

A pattern is made of digits, ``?`` (one digit), ``*`` (any run of digits) and capital
letters (the same letter is the same digit, different letters are different digits).
A pattern shorter than 11 positions without ``*`` is matched against the tail, as
vanity sellers search (``8888`` = ``*8888``). Examples: ``*8888``, ``1380013????``,
``138*520``, ``*AABB``.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from hkops.errors import InvalidValue

DIGITS = 11
SEGMENT_DIGITS = 3
MAX_EXPANSIONS = 200
_ALLOWED = re.compile(r"^[0-9?*A-Z]+$")


@dataclass(frozen=True)
class Anchor:
    """A digit pattern (digits, ``?``, ``*``) with the index ranges that find it."""

    pattern: str
    msisdn_range: tuple[int, int] | None
    rev_range: tuple[int, int] | None
    like: str | None

    @property
    def anchored(self) -> bool:
        return self.msisdn_range is not None or self.rev_range is not None


@dataclass(frozen=True)
class ParsedPattern:
    """What a search pattern asks for: a grade class, digit patterns, or a regex."""

    text: str
    grade: str | None = None
    anchors: tuple[Anchor, ...] = ()
    regex: str | None = None


def normalise(text: str) -> str:
    return re.sub(r"[\s\-]", "", str(text)).upper()


def parse_pattern(text: str, grade_names: list[str] = ()) -> ParsedPattern:
    """Parse a search pattern; a pattern equal to a grade class (AABB, ABCD) means that grade."""
    raw = text
    text = normalise(text)
    if not text:
        raise InvalidValue("pattern", raw, "is empty")
    for grade in grade_names:
        if text == grade.upper():
            return ParsedPattern(text, grade=grade)
    if not _ALLOWED.match(text):
        bad = sorted(set(re.sub(r"[0-9?*A-Z]", "", text)))
        raise InvalidValue("pattern", raw, f"may hold only digits, ?, * and capital letters, not {' '.join(bad)}")
    positions = len(text.replace("*", ""))
    if positions > DIGITS:
        raise InvalidValue("pattern", raw, f"has {positions} positions; a number has {DIGITS}")
    if "*" not in text and positions < DIGITS:
        text = "*" + text
    text = re.sub(r"\*+", "*", text)
    letters = list(dict.fromkeys(c for c in text if c.isalpha()))
    if len(letters) > 10:
        raise InvalidValue("pattern", raw, "uses more than 10 different letters")
    expansions = 1
    for i in range(len(letters)):
        expansions *= 10 - i
    if expansions > MAX_EXPANSIONS:
        return ParsedPattern(text, regex=to_regex(text))
    anchors = []
    for digits in itertools.permutations("0123456789", len(letters)):
        concrete = text
        for letter, digit in zip(letters, digits):
            concrete = concrete.replace(letter, digit)
        anchors.append(anchor(concrete))
    return ParsedPattern(text, anchors=tuple(anchors))


def anchor(pattern: str) -> Anchor:
    """The one index range that finds a digit pattern, plus a LIKE filter for the rest.

    Leading digits select little (every number starts 13x-19x) while trailing digits are
    spread evenly, so a prefix range is used only when it fixes more digits beyond the
    3-digit segment than the tail does.
    """
    if "*" in pattern:
        head, tail = pattern.split("*", 1)[0], pattern.rsplit("*", 1)[1]
    else:
        head = tail = pattern
    prefix = re.match(r"\d*", head).group(0)
    suffix = re.search(r"\d*$", tail).group(0)
    if prefix and len(prefix) - SEGMENT_DIGITS >= len(suffix):
        msisdn_range, rev_range = _range(prefix), None
        covered = _only_wildcards(pattern[len(prefix):])
    elif suffix:
        msisdn_range, rev_range = None, _range(suffix[::-1])
        covered = _only_wildcards(pattern[: len(pattern) - len(suffix)])
    elif prefix:
        msisdn_range, rev_range = _range(prefix), None
        covered = _only_wildcards(pattern[len(prefix):])
    else:
        msisdn_range = rev_range = None
        covered = False
    like = None if covered else pattern.replace("?", "_").replace("*", "%")
    return Anchor(pattern, msisdn_range, rev_range, like)


def _only_wildcards(rest: str) -> bool:
    """Whether ``rest`` adds nothing to an anchor: any run (*) or exactly the missing digits."""
    return rest == "*" or (set(rest) <= {"?"} and "*" not in rest) and rest.count("?") == len(rest)


def _range(digits: str) -> tuple[int, int]:
    scale = 10 ** (DIGITS - len(digits))
    return int(digits) * scale, (int(digits) + 1) * scale - 1


def to_regex(pattern: str) -> str:
    """A Python regex for a pattern (letters become back-references)."""
    groups: dict[str, int] = {}
    parts = []
    for char in pattern:
        if char.isdigit():
            parts.append(char)
        elif char == "?":
            parts.append(r"\d")
        elif char == "*":
            parts.append(r"\d*")
        elif char in groups:
            parts.append(f"(?:\\{groups[char]})")
        else:
            others = "".join(f"(?!\\{g})" for g in groups.values())
            groups[char] = len(groups) + 1
            parts.append(f"{others}(\\d)")
    return "^" + "".join(parts) + "$"
