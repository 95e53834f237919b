"""Building the pool: blocks (号段) from phonenumbers, and numbers imported from CSV or TXT
files, Windows files included; a bad block or a bad line refuses the whole batch."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from hkops import carriers
from hkops.errors import InvalidFile, InvalidValue, InvalidValues
from hkops.numbers import service
from hkops.numbers.grading import load_rules
from hkops.numbers.tables import number_blocks, numbers
from strategies import history, snapshot


@pytest.fixture
def operator(db):
    """An operator running China Mobile and China Unicom, with no blocks yet."""
    with db.write() as conn:
        carriers.configure(conn, ["中国移动", "china unicom"], actor="tester")
    return db


@pytest.fixture
def empty_blocks(operator):
    """Blocks 1380013 and 1860755 registered without numbers, and block 1380014 full."""
    service.add_blocks(operator, ["1380013", "1860755"], actor="setup", empty=True)
    service.add_blocks(operator, ["1380014"], actor="setup")
    return operator


def count_numbers(db) -> int:
    with db.read() as conn:
        return conn.execute(select(func.count()).select_from(numbers)).scalar()


def refused(db, error, call, *args, **kwargs):
    before = snapshot(db)
    with pytest.raises(error) as caught:
        call(db, *args, **kwargs)
    assert snapshot(db) == before
    return caught.value


# --------------------------------------------------------------------- blocks


def test_adding_blocks_takes_carrier_and_region_from_phonenumbers_and_creates_their_numbers(operator):
    infos = service.add_blocks(operator, ["1380013", "1860755"], actor="ana")
    assert [(i.prefix, i.carrier, i.province_zh, i.city_zh) for i in infos] == [
        ("1380013", "China Mobile", "北京市", "北京市"), ("1860755", "China Unicom", "广东省", "深圳市")]
    with operator.read() as conn:
        blocks = {b.prefix: b for b in conn.execute(select(number_blocks))}
        states = dict(conn.execute(select(numbers.c.state, func.count()).group_by(numbers.c.state)).all())
    assert (blocks[1860755].province, blocks[1860755].city, blocks[1860755].created_by) == ("Guangdong", "Shenzhen", "ana")
    assert (blocks[1380013].province, blocks[1380013].city) == ("Beijing", "Beijing")
    assert states == {"available": 20_000}
    record = history(operator, "1860755")[-1]
    assert (record["actor"], record["action"], record["to_state"], record["details"]) == (
        "ana", "add_block", "available", {"carrier": "China Unicom", "region": "广东省深圳市"})


def test_a_block_of_a_carrier_that_is_not_configured_is_refused(operator):
    error = refused(operator, InvalidValue, service.add_blocks, ["1891010"], actor="ana")
    assert str(error) == ("block '1891010': belongs to China Telecom, which is not a configured carrier "
                          "(China Mobile, China Unicom)")
    error = refused(operator, InvalidValue, service.add_blocks, ["1920000"], actor="ana")
    assert "belongs to China Broadnet, which is not a configured carrier" in str(error)


def test_a_block_prefix_of_the_wrong_length_or_with_letters_is_refused(operator):
    for prefix, reason in [("138001", "a block prefix is 7 digits, got 6"), ("13800131", "a block prefix is 7 digits, got 8"),
                           ("138001a", "must contain digits only"), ("abcdefg", "must contain digits only"),
                           ("1380013.5", "must contain digits only"), ("0000000", "not a China mobile number block")]:
        error = refused(operator, InvalidValue, service.add_blocks, [prefix], actor="ana")
        assert str(error) == f"block {prefix!r}: {reason}"
    refused(operator, InvalidValue, service.add_blocks, [], actor="ana")


def test_a_block_added_twice_is_refused(operator):
    service.add_blocks(operator, ["1380013"], actor="ana")
    error = refused(operator, InvalidValue, service.add_blocks, ["138 0013"], actor="ana")
    assert str(error) == "block '138 0013': was added already"


def test_a_batch_of_blocks_with_one_bad_prefix_adds_none(operator):
    error = refused(operator, InvalidValues, service.add_blocks, ["1380014", "13x0015", "1380016", "1380014"], actor="ana")
    assert [(p.field, p.value) for p in error.problems] == [("block", "13x0015"), ("block", "1380014")]
    assert "given twice" in str(error.problems[1])
    assert count_numbers(operator) == 0


# --------------------------------------------------------------------- importing numbers


def test_a_csv_file_with_an_msisdn_column_among_others_is_imported_and_graded(empty_blocks, tmp_path):
    path = tmp_path / "numbers.csv"
    path.write_text('iccid,MSISDN ,note\n'
                    '8986001,13800138888,"golden, keep"\n'
                    '8986002,138 0013 0127,\n'
                    '8986003,+86 186 0755 1234,from agent\n', encoding="utf-8")
    assert service.import_numbers(empty_blocks, path, actor="ana") == 3
    rules = load_rules().by_grade()
    for msisdn, grade in [("13800138888", "AAAA"), ("13800130127", "ORDINARY"), ("18607551234", "ABCD")]:
        number = service.get_number(empty_blocks, msisdn)
        assert (number.state, number.grade, number.price_fen) == ("available", grade, rules[grade].price_fen)
    assert count_numbers(empty_blocks) == 10_003
    record = history(empty_blocks, "1380013")[-1]
    assert (record["actor"], record["action"], record["to_state"], record["details"]) == (
        "ana", "import", "available", {"count": 2})
    assert record["reason"] == "2 numbers imported from numbers.csv"


def test_a_txt_file_with_one_number_a_line_is_imported(empty_blocks, tmp_path):
    path = tmp_path / "numbers.txt"
    path.write_text("13800130001\n\n  13800130002  \n18607550003\n", encoding="utf-8")
    assert service.import_numbers(empty_blocks, path, actor="ana") == 3
    assert service.get_number(empty_blocks, "18607550003").state == "available"


@pytest.mark.parametrize("layout", ["csv", "txt"])
def test_files_from_windows_with_bom_crlf_and_trailing_blank_lines_are_imported(empty_blocks, tmp_path, layout):
    lines = (["msisdn,name"] if layout == "csv" else []) + ["13800130001" + (",王" if layout == "csv" else ""),
                                                             "18607550002" + (",李" if layout == "csv" else "")]
    path = tmp_path / f"windows.{layout}"
    path.write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(lines) + "\r\n\r\n  \r\n").encode("utf-8"))
    assert service.read_number_file(path) == [(2 if layout == "csv" else 1, "13800130001"),
                                              (3 if layout == "csv" else 2, "18607550002")]
    assert service.import_numbers(empty_blocks, path, actor="ana") == 2


def test_line_numbers_in_a_csv_count_blank_lines_and_a_leading_blank_line(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("\nmsisdn,note\n13800130001,a\n\n13800130002,b\n,\n13800130003\n", encoding="utf-8")
    assert service.read_number_file(path) == [(3, "13800130001"), (5, "13800130002"), (7, "13800130003")]


def test_a_file_with_bad_lines_among_ten_thousand_good_ones_imports_nothing_and_lists_every_bad_line(empty_blocks, tmp_path):
    good = [f"1380013{i:04d}" for i in range(10_000)]
    bad = {
        2_501: ("1380013000a", "must contain digits only"),
        5_002: ("138001300", "must be 11 digits, got 9"),
        6_003: ("13900001234", "is outside every block (add block 1390000 first)"),
        7_004: ("13800130042", "repeats line 43"),
        9_005: ("13800140001", "is already in the pool"),
    }
    lines = good[:]
    for line in sorted(bad):
        lines.insert(line - 1, bad[line][0])
    path = tmp_path / "big.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    error = refused(empty_blocks, InvalidFile, service.import_numbers, path, actor="ana")
    assert [(p.line, p.value) for p in error.problems] == [(line, value) for line, (value, _) in sorted(bad.items())]
    for problem, (line, (value, reason)) in zip(error.problems, sorted(bad.items())):
        assert str(problem) == f"line {line}: msisdn {value!r}: {reason}"
    assert str(error).startswith(f"{path}: 5 bad line(s), nothing imported: line 2501: msisdn '1380013000a'")
    assert count_numbers(empty_blocks) == 10_000


def test_a_file_with_one_bad_line_among_ten_thousand_good_ones_imports_nothing(empty_blocks, tmp_path):
    lines = [f"1380013{i:04d}" for i in range(10_000)]
    lines.insert(4_000, "1380O130000")
    path = tmp_path / "one_bad.csv"
    path.write_text("msisdn\n" + "\n".join(lines) + "\n", encoding="utf-8")
    error = refused(empty_blocks, InvalidFile, service.import_numbers, path, actor="ana")
    assert [str(p) for p in error.problems] == ["line 4002: msisdn '1380O130000': must contain digits only"]
    del lines[4_000]
    path.write_text("msisdn\n" + "\n".join(lines) + "\n", encoding="utf-8")
    assert service.import_numbers(empty_blocks, path, actor="ana") == 10_000
    assert count_numbers(empty_blocks) == 20_000
    assert service.get_number(empty_blocks, "13800133333").grade == "AAAAA"


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "holds no numbers"),
    (b"\r\n \r\n", "holds no numbers"),
    (b"msisdn,name\r\n", "holds no numbers"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "is not text: expected UTF-8, UTF-16 with a byte-order mark, or GB18030/GBK"),
])
def test_an_empty_or_unreadable_file_is_refused_naming_it(empty_blocks, tmp_path, content, reason):
    path = tmp_path / "odd.txt"
    path.write_bytes(content)
    error = refused(empty_blocks, InvalidValue, service.import_numbers, path, actor="ana")
    assert str(error) == f"file {str(path)!r}: {reason}"


@pytest.mark.parametrize("encoding", ["utf-16", "gbk"])
def test_a_number_file_from_windows_in_utf16_or_gbk_is_read(empty_blocks, tmp_path, encoding):
    path = tmp_path / f"{encoding}.csv"
    path.write_bytes("手机号码,备注 note\r\n13800130000,北京 吉祥号\r\n13800130001,\r\n".encode(encoding))
    assert service.import_numbers(empty_blocks, path, actor="ana") == 2
    assert service.get_number(empty_blocks, "13800130001").msisdn == "13800130001"


def test_a_missing_file_is_refused_naming_it(empty_blocks, tmp_path):
    error = refused(empty_blocks, InvalidValue, service.import_numbers, tmp_path / "nowhere.csv", actor="ana")
    assert "nowhere.csv" in str(error) and "cannot be read" in str(error)
