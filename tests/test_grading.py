"""Vanity grading (靓号): the default rules, a slow reference, editing rules and regrading."""

from __future__ import annotations

import re
import tomllib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from hkops.errors import InvalidValue
from hkops.numbers import service
from hkops.numbers.grading import default_rules_path, load_rules, parse_rules
from hkops.numbers.tables import number_grades, numbers
from strategies import DEFAULT_CLASSES, any_numbers, audit_count, history, rule_files, snapshot

DEFAULT_TEXT = default_rules_path().read_text(encoding="utf-8")


def reference_grade(rules: list[dict], number: str) -> str:
    """The grade the first matching rule gives, checked digit by digit (slow and plain)."""
    for rule in rules:
        if _matches(rule, number):
            return rule["class"]
    raise AssertionError(f"no rule matched {number}")


def _matches(rule: dict, number: str) -> bool:
    tests = []
    for tail in rule.get("tail", []):
        end = number[-len(tail):]
        tests.append(len(set(tail)) == len(set(end)) == len(set(zip(tail, end))))
    if "sequence" in rule:
        end = number[-rule["sequence"]:]
        tests.append(end in "0123456789" or end in "9876543210")
    tests += [number.endswith(end) for end in rule.get("ends", [])]
    if "regex" in rule:
        tests.append(re.search(rule["regex"], number) is not None)
    return any(tests) if tests else True


def reference_grades(text: str, values) -> list[str]:
    rules = tomllib.loads(text)["grade"]
    return [reference_grade(rules, str(v)) for v in values]


def vectorised_grades(text: str, values) -> list[str]:
    rule_set = parse_rules(text)
    names = [r.grade for r in rule_set.rules]
    return [names[i] for i in rule_set.grade(np.array(values, dtype=np.int64)).tolist()]


# --------------------------------------------------------------------- the default classes


EXAMPLES = [
    ("13800133333", "AAAAA"),
    ("18910100000", "AAAAA"),
    ("13800138888", "AAAA"),
    ("13800134567", "ABCDE"),
    ("18607554321", "ABCDE"),
    ("13800131234", "ABCD"),
    ("13800139876", "ABCD"),
    ("13800137778", "AAAB"),
    ("13800131888", "ABBB"),
    ("13800131122", "AABB"),
    ("13800131212", "ABAB"),
    ("13800131221", "ABBA"),
    ("13800131314", "LUCKY"),
    ("13800130520", "LUCKY"),
    ("13800131518", "LUCKY"),
    ("13800130168", "LUCKY"),
    ("13800130388", "PAIR"),
    ("13800130266", "PAIR"),
    ("13800130299", "PAIR"),
    ("13800130128", "EIGHT"),
    ("13800130124", "FOUR"),
    ("13800130127", "ORDINARY"),
]


def test_the_examples_cover_every_default_class():
    assert {grade for _, grade in EXAMPLES} == set(DEFAULT_CLASSES)
    assert [r.grade for r in load_rules().rules] == list(DEFAULT_CLASSES)


@pytest.mark.parametrize(("msisdn", "grade"), EXAMPLES)
def test_each_default_class_grades_its_example_number(msisdn, grade):
    assert load_rules().grade_one(msisdn).grade == grade
    assert reference_grades(DEFAULT_TEXT, [msisdn]) == [grade]


def test_every_number_is_graded_with_its_price_when_its_block_is_created(world):
    rules = {r.grade: r for r in load_rules().rules}
    with world.read() as conn:
        rows = conn.execute(select(numbers.c.msisdn, numbers.c.grade, numbers.c.level, numbers.c.price_fen)
                            .order_by(numbers.c.msisdn)).all()
        grades = {g.grade: g for g in conn.execute(select(number_grades))}
    assert len(rows) == 30_000
    expected = reference_grades(DEFAULT_TEXT, [r.msisdn for r in rows])
    assert [r.grade for r in rows] == expected
    assert all((r.level, r.price_fen) == (rules[r.grade].level, rules[r.grade].price_fen) for r in rows)
    assert set(grades) == set(DEFAULT_CLASSES)
    assert (grades["AAAA"].price_fen, grades["AAAA"].min_monthly_fen, grades["AAAA"].prepay_fen) == (288_800, 88_900, 200_000)
    assert all(isinstance(r.price_fen, int) for r in rows[:100])
    for msisdn, grade in EXAMPLES:
        number = service.get_number(world, msisdn)
        assert (number.grade, number.level, number.price_fen) == (grade, rules[grade].level, rules[grade].price_fen)


# --------------------------------------------------------------------- vectorised = reference


@settings(max_examples=60, deadline=None)
@given(st.lists(any_numbers, min_size=1, max_size=40))
def test_vectorised_grading_equals_the_reference_on_random_numbers(values):
    assert vectorised_grades(DEFAULT_TEXT, values) == reference_grades(DEFAULT_TEXT, values)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_files(), st.lists(any_numbers, min_size=1, max_size=30))
def test_vectorised_grading_equals_the_reference_for_random_rule_files(text, values):
    assert vectorised_grades(text, values) == reference_grades(text, values)


# --------------------------------------------------------------------- editing the rules


def edited_rules(tmp_path):
    """The default rules with AAAA dearer, tail 6 counted as EIGHT and ABBA gone."""
    text = DEFAULT_TEXT.replace('price = "2888"', 'price = "3888"')
    text = text.replace('ends = ["8"]', 'ends = ["8", "6"]')
    text = re.sub(r'\[\[grade\]\]\nclass = "ABBA".*?(?=\[\[grade\]\])', "", text, flags=re.S)
    assert text.count("[[grade]]") == len(DEFAULT_CLASSES) - 1
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_editing_the_rules_and_regrading_changes_grades_and_prices_and_is_audited(world, tmp_path):
    before = {n: service.get_number(world, n) for n in ("13800138888", "13800130126", "13800131221", "13800130127")}
    assert [b.grade for b in before.values()] == ["AAAA", "ORDINARY", "ABBA", "ORDINARY"]
    with world.read() as conn:
        old = dict(conn.execute(select(numbers.c.msisdn, numbers.c.grade)).all())
    path = edited_rules(tmp_path)

    changed = service.regrade(world, actor="grader", rules=load_rules(path))

    new = dict(zip(sorted(old), reference_grades(path.read_text(), sorted(old))))
    expected: dict[str, int] = {}
    for msisdn, grade in new.items():
        if grade != old[msisdn] or grade == "AAAA":
            expected[grade] = expected.get(grade, 0) + 1
    assert changed == expected
    assert changed["AAAA"] == 27 and changed["EIGHT"] > 2_000
    after = {n: service.get_number(world, n) for n in before}
    assert (after["13800138888"].grade, after["13800138888"].price_fen) == ("AAAA", 388_800)
    assert (after["13800130126"].grade, after["13800130126"].price_fen, after["13800130126"].level) == ("EIGHT", 2_000, 2)
    assert after["13800131221"].grade == "ORDINARY"
    assert after["13800130127"] == before["13800130127"]
    with world.read() as conn:
        assert conn.execute(select(numbers.c.grade).where(numbers.c.grade == "ABBA")).first() is None
        grades = dict(conn.execute(select(number_grades.c.grade, number_grades.c.price_fen)).all())
    assert "ABBA" not in grades and grades["AAAA"] == 388_800
    record = history(world, load_rules(path).digest)[-1]
    assert (record["action"], record["actor"], record["entity"]) == ("regrade", "grader", "grading")
    assert record["details"] == changed
    assert record["reason"] == f"{sum(changed.values())} numbers re-graded"


def test_regrading_with_unchanged_rules_changes_nothing_and_writes_no_audit_record(world):
    before, records = snapshot(world), audit_count(world)
    assert service.regrade(world, actor="grader", rules=load_rules()) == {}
    assert snapshot(world) == before and audit_count(world) == records


def test_a_changed_rule_file_is_picked_up_by_regrade_if_rules_changed(world, tmp_path, monkeypatch):
    assert service.regrade_if_rules_changed(world, actor="grader") is None
    monkeypatch.setenv("HKOPS_GRADING_RULES", str(edited_rules(tmp_path)))
    changed = service.regrade_if_rules_changed(world, actor="grader")
    assert changed and changed["EIGHT"] > 0
    assert service.get_number(world, "13800130126").grade == "EIGHT"
    assert service.regrade_if_rules_changed(world, actor="grader") is None


# --------------------------------------------------------------------- invalid rule files


FALLBACK = '\n[[grade]]\nclass = "REST"\nlevel = 1\n'
INVALID = [
    ("not toml", "class = ", "grading rules", "not valid TOML"),
    ("no grades", 'title = "x"\n', "grading rules", "needs at least one [[grade]] table"),
    ("grade is not a table", "grade = [1, 2]\n", "grade", "must be a [[grade]] table"),
    ("class missing", '[[grade]]\nlevel = 1\n', "class", "must be 1-24 letters"),
    ("class with a space", '[[grade]]\nclass = "A B"\nlevel = 1\n', "class", "'A B'"),
    ("class twice", '[[grade]]\nclass = "X"\nends = ["8"]\nlevel = 1\n' + '[[grade]]\nclass = "X"\nlevel = 1\n',
     "class", "defined twice"),
    ("tail with a digit", '[[grade]]\nclass = "X"\ntail = ["AAB1"]\nlevel = 1\n' + FALLBACK, "tail", "'AAB1'"),
    ("tail not a list of text", '[[grade]]\nclass = "X"\ntail = [1]\nlevel = 1\n' + FALLBACK, "tail", "list of strings"),
    ("ends with a letter", '[[grade]]\nclass = "X"\nends = ["8a"]\nlevel = 1\n' + FALLBACK, "ends", "'8a'"),
    ("sequence too short", '[[grade]]\nclass = "X"\nsequence = 2\nlevel = 1\n' + FALLBACK, "sequence", "from 3 to 10"),
    ("regex broken", '[[grade]]\nclass = "X"\nregex = "(8"\nlevel = 1\n' + FALLBACK, "regex", "not a regular expression"),
    ("level missing", '[[grade]]\nclass = "X"\nends = ["8"]\n' + FALLBACK, "level", "from 0 to 99"),
    ("level as text", '[[grade]]\nclass = "X"\nends = ["8"]\nlevel = "high"\n' + FALLBACK, "level", "'high'"),
    ("price not money", '[[grade]]\nclass = "X"\nends = ["8"]\nlevel = 1\nprice = "lots"\n' + FALLBACK, "price", "'lots'"),
    ("price in thousandths", '[[grade]]\nclass = "X"\nends = ["8"]\nlevel = 1\nprice = "1.005"\n' + FALLBACK,
     "price", "more than two decimal places"),
    ("no fallback", '[[grade]]\nclass = "X"\nends = ["8"]\nlevel = 1\n', "grading rules", "last [[grade]] must have no test"),
]


@pytest.mark.parametrize(("text", "field", "fragment"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_an_invalid_rule_file_is_refused_with_a_clear_reason(tmp_path, text, field, fragment):
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidValue) as caught:
        load_rules(path)
    message = str(caught.value)
    assert caught.value.field.endswith(field)
    assert fragment in message
    assert str(path) in message


def test_a_missing_rule_file_is_refused_naming_it(tmp_path):
    with pytest.raises(InvalidValue, match="cannot be read") as caught:
        load_rules(tmp_path / "nowhere.toml")
    assert "nowhere.toml" in str(caught.value)


def test_rule_files_written_on_windows_are_read(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_bytes(b"\xef\xbb\xbf" + DEFAULT_TEXT.replace("\n", "\r\n").encode("utf-8"))
    assert [r.grade for r in load_rules(path).rules] == list(DEFAULT_CLASSES)
