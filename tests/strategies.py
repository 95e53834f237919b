"""Hypothesis strategies and small helpers shared by the number-resource tests."""

from __future__ import annotations

import io
import json
import sqlite3
from datetime import datetime, timedelta

import pytest
from hypothesis import strategies as st
from sqlalchemy import func, select

from hkops import audit
from hkops.audit import audit_log
from hkops.numbers import search, service
from hkops.numbers.tables import numbers
from hkops.store.tables import metadata
from hkops.timeutil import utc_now

DEFAULT_CLASSES = ("AAAAA", "AAAA", "ABCDE", "ABCD", "AAAB", "ABBB", "AABB", "ABAB", "ABBA",
                   "LUCKY", "PAIR", "EIGHT", "FOUR", "ORDINARY")


# --------------------------------------------------------------------- the clock


@pytest.fixture
def kernel_sqlite3():
    """The sqlite3 module as in a Jupyter kernel or Voilà, where importing nbformat registers an
    adapter that writes datetimes as ``2026-12-01T03:00:00`` (restored afterwards)."""
    key = (datetime, sqlite3.PrepareProtocol)
    before = sqlite3.adapters.get(key)
    sqlite3.register_adapter(datetime, datetime.isoformat)
    yield
    if before is None:
        sqlite3.adapters.pop(key, None)
    else:
        sqlite3.adapters[key] = before



class Clock:
    """A stand-in for ``utc_now`` that only moves when a test moves it."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """Freeze the time the number services, search and audit see (import it into a test module)."""
    frozen = Clock(utc_now().replace(microsecond=0))
    for module in (service, search, audit):
        monkeypatch.setattr(module, "utc_now", frozen)
    return frozen


# --------------------------------------------------------------------- database look-ups


def snapshot(db) -> dict[str, list[tuple]]:
    """Every table's rows, to show that a refused operation changed nothing.

    The numbers table is summed up per distinct record (all columns but the number
    itself), with the count and sum of the numbers: any change to any number shows.
    """
    with db.read() as conn:
        result = {
            table.name: [tuple(row) for row in conn.execute(select(table).order_by(*table.primary_key.columns))]
            for table in metadata.sorted_tables if table is not numbers
        }
        shape = [c for c in numbers.c if c.name not in ("msisdn", "rev")]
        summary = select(*shape, func.count(), func.sum(numbers.c.msisdn), func.sum(numbers.c.rev)).group_by(*shape)
        result["numbers"] = sorted((tuple(row) for row in conn.execute(summary)), key=repr)
        return result


def audit_count(db) -> int:
    with db.read() as conn:
        return conn.execute(select(func.count()).select_from(audit_log)).scalar()


def history(db, subject: str) -> list[dict]:
    """Audit records of ``subject``, oldest first."""
    with db.read() as conn:
        return list(reversed(audit.query(conn, subject=subject, limit=10_000)))


def actions(db, subject: str) -> list[tuple[str, str | None, str | None]]:
    """(action, from-state, to-state) of ``subject``'s audit records, oldest first."""
    return [(r["action"], r["from_state"], r["to_state"]) for r in history(db, subject)]


# --------------------------------------------------------------------- strategies


#: Tails built from few digits, so that repeats, pairs and sequences are common.
tail_heavy_numbers = st.builds(
    lambda head, tail: int(f"{head}{tail}"),
    st.integers(13_000, 19_999),
    st.sampled_from(["0123456789", "8", "88", "123", "4567", "01", "98", "1358", "520", "4"]).flatmap(
        lambda alphabet: st.text(alphabet=alphabet, min_size=6, max_size=6)
    ),
)

#: Any 11-digit number (grading does not care whether a carrier issued it).
any_numbers = st.one_of(st.integers(10**10, 10**11 - 1), tail_heavy_numbers)

_REGEXES = [r"^138", r"(\d)\1\1", r"520", r"^1[38]\d*9$", r"(?:00|11)\d$", r"^\d{3}0{2}"]


@st.composite
def rule_files(draw) -> str:
    """The text of a valid grading-rule file: a few random rules and a fallback."""
    count = draw(st.integers(1, 6))
    blocks = []
    for index in range(count):
        tests = draw(st.fixed_dictionaries({}, optional={
            "tail": st.lists(st.text(alphabet="ABC", min_size=2, max_size=8), min_size=1, max_size=2),
            "sequence": st.integers(3, 7),
            "ends": st.lists(st.text(alphabet="0123456789", min_size=1, max_size=4), min_size=1, max_size=3),
            "regex": st.sampled_from(_REGEXES),
        }))
        if not tests:
            tests = {"ends": [draw(st.text(alphabet="0123456789", min_size=1, max_size=3))]}
        lines = ["[[grade]]", f'class = "G{index}"', f"level = {draw(st.integers(0, 99))}",
                 f'price = "{draw(st.integers(0, 99_999))}.{draw(st.integers(0, 99)):02d}"']
        for key, value in tests.items():
            lines.append(f"{key} = {json.dumps(value)}" if key != "regex" else f"regex = '{value}'")
        blocks.append("\n".join(lines))
    blocks.append('[[grade]]\nclass = "REST"\nlevel = 1\nprice = "10"')
    return "\n\n".join(blocks) + "\n"


_PATTERN_TOKENS = st.one_of(
    st.sampled_from("0123456789"), st.sampled_from("0138"), st.just("?"), st.sampled_from("ABC"), st.just("*"),
)


@st.composite
def search_patterns(draw, samples: list[str] | None = None) -> str:
    """A valid search pattern: random, or a pool number with some positions masked."""
    if samples and draw(st.booleans()):
        chars = list(draw(st.sampled_from(samples)))
        for position in draw(st.sets(st.integers(0, 10), max_size=6)):
            chars[position] = draw(st.sampled_from("?ABA"))
        text = "".join(chars)
        if draw(st.booleans()):
            start = draw(st.integers(0, 10))
            end = draw(st.integers(start, 11))
            text = text[:start] + "*" + text[end:]
        elif draw(st.booleans()):
            text = text[draw(st.integers(1, 8)):]
        return text
    tokens = draw(st.lists(_PATTERN_TOKENS, min_size=1, max_size=12).filter(
        lambda ts: 0 < sum(t != "*" for t in ts) <= 11))
    return "".join(tokens)


# --------------------------------------------------------------------- the CLI in this process


@pytest.fixture
def hkops_cli(monkeypatch, capsys):
    """Run ``hkops ...`` in this process against a test database: (exit status, stdout, stderr);
    ``stdin`` is what the command reads from standard input (``--id -``)."""
    from hkops.cli import main
    from hkops.store import engine

    used = []

    def run(db, *args, actor: str = "cli-user", stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setenv("HKOPS_DATABASE_URL", db.url)
        monkeypatch.setenv("HKOPS_ACTOR", actor)
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        used.append(db.url)
        capsys.readouterr()
        with pytest.raises(SystemExit) as stopped:
            main([str(a) for a in args])
        out, err = capsys.readouterr()
        return stopped.value.code, out, err

    yield run
    for url in used:
        store = engine._stores.pop(url, None)
        if store is not None:
            store.dispose()
