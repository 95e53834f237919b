"""Vendor card-data files: pySim-style CSV and the operator .out layout, Windows files
included; every record is checked and a file with any bad line is refused whole, each bad
line listed with its number and reason, and no secret ever shown."""

from __future__ import annotations

import random

import pytest

from hkops.cards.vendor_files import read_card_file
from hkops.errors import InvalidFile, InvalidValue
from hkops.ids import make_iccid
from hkops.security.crypto import Secret

COLUMNS = ("iccid", "imsi", "ki", "opc", "pin1", "puk1", "pin2", "puk2", "adm1")


def make_cards(count: int, *, start: int = 0, mnc: str = "00", issuer: str = "00", seed: int = 0) -> list[dict[str, str]]:
    """Valid cards of one carrier (China Mobile by default): 20-digit ICCIDs 8986<issuer>...,
    IMSIs 460<mnc>..., random keys and codes."""
    rnd = random.Random(seed)
    cards = []
    for n in range(start, start + count):
        cards.append({
            "iccid": make_iccid(f"8986{issuer}{n:013d}"),
            "imsi": f"460{mnc}{n:010d}",
            "ki": f"{rnd.getrandbits(128):032X}",
            "opc": f"{rnd.getrandbits(128):032X}",
            "pin1": f"{rnd.randrange(10_000):04d}",
            "puk1": f"{rnd.randrange(10 ** 8):08d}",
            "pin2": f"{rnd.randrange(10_000):04d}",
            "puk2": f"{rnd.randrange(10 ** 8):08d}",
            "adm1": f"{rnd.getrandbits(64):016X}",
        })
    return cards


def card_csv(cards: list[dict[str, str]], columns=COLUMNS, *, quote: bool = False, sep: str = ",") -> str:
    """A pySim-style CSV: header row, one card a line (line 2 is the first card)."""
    q = '"' if quote else ""
    lines = [sep.join(f"{q}{c}{q}" for c in columns)]
    lines += [sep.join(f"{q}{card[c]}{q}" for c in columns) for card in cards]
    return "\n".join(lines) + "\n"


OUT_HEADER = ["*" * 30, "* SIM DATA FILE", "*" * 30, "Customer: hkops test", "Quantity: {n}", "Type: USIM 128K",
              "Batch: B-2026-11", "Vendor: Acme Cards", "Transport key: 0123456789ABCDEF0123456789ABCDEF"]


def card_out(cards: list[dict[str, str]], columns=COLUMNS, *, header=OUT_HEADER) -> str:
    """An operator .out file: header block, var_out line, then one record a line
    (the first card is on line len(header) + 2)."""
    lines = [h.format(n=len(cards)) for h in header]
    lines.append("var_out: " + "/".join(c.upper() for c in columns))
    lines += [" ".join(card[c] for c in columns) for card in cards]
    return "\n".join(lines) + "\n"


def write(tmp_path, name: str, text: str, *, windows: bool = False):
    path = tmp_path / name
    if windows:
        path.write_bytes(b"\xef\xbb\xbf" + (text.replace("\n", "\r\n") + "\r\n \r\n\r\n").encode("utf-8"))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def refusal(path, carrier="China Mobile") -> InvalidFile:
    with pytest.raises(InvalidFile) as caught:
        read_card_file(path, carrier=carrier)
    return caught.value


def problems(error: InvalidFile) -> list[tuple[int | None, str, str]]:
    return [(p.line, p.field, p.reason) for p in error.problems]


# ------------------------------------------------------------------ layouts


def test_a_pysim_csv_with_columns_in_any_order_quoted_or_not_is_read_whole(tmp_path):
    cards = make_cards(5)
    shuffled = ("ki", "imsi", "puk2", "iccid", "adm1", "pin1", "opc", "pin2", "puk1")
    for quote in (False, True):
        parsed = read_card_file(write(tmp_path, f"q{quote}.csv", card_csv(cards, shuffled, quote=quote)),
                                carrier="China Mobile")
        assert parsed.layout == "csv"
        assert parsed.iccid == [c["iccid"] for c in cards]
        assert parsed.imsi == [c["imsi"] for c in cards]
        assert parsed.lines == [2, 3, 4, 5, 6]
        for name in ("ki", "opc", "pin1", "puk1", "pin2", "puk2", "adm1"):
            assert parsed.secrets[name] == [c[name] for c in cards]


def test_a_semicolon_csv_with_lower_case_keys_reads_them_in_upper_case(tmp_path):
    cards = make_cards(2)
    text = card_csv(cards, sep=";").replace(cards[0]["ki"], cards[0]["ki"].lower())
    parsed = read_card_file(write(tmp_path, "semi.csv", text), carrier="China Mobile")
    assert parsed.secrets["ki"] == [cards[0]["ki"], cards[1]["ki"]]


def test_an_out_file_gives_its_header_fields_and_records_in_var_out_order(tmp_path):
    cards = make_cards(4)
    parsed = read_card_file(write(tmp_path, "batch.out", card_out(cards)), carrier="China Mobile")
    assert parsed.layout == "out"
    assert parsed.header == {"Customer": "hkops test", "Quantity": "4", "Type": "USIM 128K", "Batch": "B-2026-11",
                             "Vendor": "Acme Cards"}
    assert parsed.sealed_header == {"Transport key": "0123456789ABCDEF0123456789ABCDEF"}
    assert parsed.lines == [11, 12, 13, 14]
    assert parsed.iccid == [c["iccid"] for c in cards]
    assert parsed.secrets["adm1"] == [c["adm1"] for c in cards]


def test_an_out_file_whose_quantity_disagrees_with_its_records_is_refused(tmp_path):
    header = [h.replace("{n}", "5") for h in OUT_HEADER]
    error = refusal(write(tmp_path, "short.out", card_out(make_cards(4), header=header)))
    assert problems(error) == [(5, "quantity", "but the file holds 4 records")]


@pytest.mark.parametrize("layout", ["csv", "out"])
def test_windows_files_with_bom_crlf_and_trailing_blank_lines_read_like_unix_files(tmp_path, layout):
    cards = make_cards(3)
    text = card_csv(cards) if layout == "csv" else card_out(cards)
    unix = read_card_file(write(tmp_path, f"unix.{layout}", text), carrier="China Mobile")
    windows = read_card_file(write(tmp_path, f"win.{layout}", text, windows=True), carrier="China Mobile")
    assert (windows.iccid, windows.imsi, windows.secrets, windows.lines, windows.header) == (
        unix.iccid, unix.imsi, unix.secrets, unix.lines, unix.header)
    assert windows.iccid == [c["iccid"] for c in cards]


def test_a_gbk_out_file_with_chinese_header_fields_reads_its_header_and_records(tmp_path):
    cards = make_cards(3)
    header = ["* 东信和平 SIM 卡数据文件", "客户名称: 中国移动 北京", "Quantity: {n}", "卡类型: USIM 128K 普通白卡"]
    path = tmp_path / "gbk.out"
    path.write_bytes(card_out(cards, header=header).replace("\n", "\r\n").encode("gbk"))
    parsed = read_card_file(path, carrier="China Mobile")
    assert parsed.header == {"客户名称": "中国移动 北京", "Quantity": "3", "卡类型": "USIM 128K 普通白卡"}
    assert parsed.iccid == [c["iccid"] for c in cards] and parsed.lines == [6, 7, 8]


def test_19_digit_iccids_padded_with_f_as_read_from_the_cards_are_stored_without_it(tmp_path):
    cards = make_cards(3)
    for n, card in enumerate(cards):
        card["iccid"] = make_iccid(f"898600{n:012d}")
    padded = [{**card, "iccid": card["iccid"] + "F"} for card in cards]
    parsed = read_card_file(write(tmp_path, "padded.out", card_out(padded)), carrier="China Mobile")
    assert parsed.iccid == [c["iccid"] for c in cards] and all(len(i) == 19 for i in parsed.iccid)


def test_excels_unicode_text_utf16_tab_separated_reads_like_the_csv(tmp_path):
    cards = make_cards(3)
    path = tmp_path / "excel.txt"
    path.write_bytes(b"\xff\xfe" + card_csv(cards, sep="\t").replace("\n", "\r\n").encode("utf-16-le"))
    parsed = read_card_file(path, carrier="China Mobile")
    assert parsed.iccid == [c["iccid"] for c in cards] and parsed.secrets["ki"] == [c["ki"] for c in cards]


def test_extra_vendor_columns_are_kept_and_those_named_like_keys_are_set_apart_for_encryption(tmp_path):
    cards = make_cards(2)
    for n, card in enumerate(cards):
        card.update({"acc": f"000{n + 1}", "kic1": f"{n:032X}", "Print Run": f"run {n}"})
    parsed = read_card_file(write(tmp_path, "extra.csv", card_csv(cards, COLUMNS + ("acc", "kic1", "Print Run"))),
                            carrier="China Mobile")
    assert parsed.extra == {"acc": ["0001", "0002"], "print_run": ["run 0", "run 1"]}
    assert parsed.sealed_extra == {"kic1": [f"{0:032X}", f"{1:032X}"]}
    record = next(parsed.records())
    assert isinstance(record["ki"], Secret) and record["ki"].reveal() == cards[0]["ki"]
    assert cards[0]["ki"] not in repr(parsed) + repr(record)


def test_optional_secret_columns_may_be_absent_or_blank(tmp_path):
    cards = make_cards(2)
    cards[1]["opc"] = ""
    parsed = read_card_file(write(tmp_path, "min.csv", card_csv(cards, ("iccid", "imsi", "ki", "opc"))),
                            carrier="China Mobile")
    assert set(parsed.secrets) == {"ki", "opc"}
    assert parsed.secrets["opc"] == [cards[0]["opc"], None]


# ------------------------------------------------------------------ refusals


def test_a_bad_luhn_digit_at_line_537_of_1000_is_refused_naming_that_line_only(tmp_path):
    cards = make_cards(999)
    good = cards[535]["iccid"]
    cards[535]["iccid"] = good[:-1] + str((int(good[-1]) + 1) % 10)  # line 537: the header is line 1
    error = refusal(write(tmp_path, "cards.csv", card_csv(cards)))
    assert problems(error) == [(537, "iccid", f"check digit should be {good[-1]}")]
    assert error.problems[0].value == cards[535]["iccid"]


def test_an_imsi_of_another_carrier_is_refused(tmp_path):
    cards = make_cards(3)
    cards[1]["imsi"] = "460011234567890"
    error = refusal(write(tmp_path, "mixed.csv", card_csv(cards)))
    assert problems(error) == [(3, "imsi", "MNC 01 belongs to China Unicom, not China Mobile")]
    assert read_card_file(write(tmp_path, "unicom.csv", card_csv(make_cards(2, mnc="01", issuer="01"))),
                          carrier="China Unicom").imsi[0].startswith("46001")


def test_an_iccid_issued_by_another_carrier_is_refused(tmp_path):
    cards = make_cards(2, issuer="03")
    error = refusal(write(tmp_path, "telecom-iccid.csv", card_csv(cards)))
    assert problems(error) == [(2, "iccid", "issuer code 03 belongs to China Telecom, not China Mobile"),
                               (3, "iccid", "issuer code 03 belongs to China Telecom, not China Mobile")]


def test_a_ki_of_31_hex_digits_is_refused_without_showing_it(tmp_path):
    cards = make_cards(3)
    cards[2]["ki"] = cards[2]["ki"][:31]
    for name, text, line in (("short-ki.csv", card_csv(cards), 4), ("short-ki.out", card_out(cards), 13)):
        error = refusal(write(tmp_path, name, text))
        assert problems(error) == [(line, "ki", "must be 32 hex digits, got 31")]
        assert cards[2]["ki"] not in str(error) and "<hidden>" in str(error)


@pytest.mark.parametrize("field, value, reason", [
    ("opc", "G" * 32, "must be hexadecimal"),
    ("pin1", "123", "must be 4 to 8 digits, got 3"),
    ("pin2", "123456789", "must be 4 to 8 digits, got 9"),
    ("puk1", "1234567", "must be 8 digits, got 7"),
    ("puk2", "1234567a", "must contain digits only"),
    ("adm1", "1234567A", "an 8-character ADM must contain digits only"),
    ("adm1", "0123456789ABCDEG", "must be hexadecimal"),
    ("adm1", "123456", "must be 8 digits or 16 hex digits, got 6 characters"),
    ("ki", "", "is missing"),
])
def test_bad_keys_and_codes_are_refused_with_the_reason_and_the_value_hidden(tmp_path, field, value, reason):
    cards = make_cards(2)
    cards[0][field] = value
    error = refusal(write(tmp_path, "bad.csv", card_csv(cards)))
    assert problems(error) == [(2, field, reason)]
    assert [p.value for p in error.problems] == ["<hidden>"]


def test_the_same_iccid_or_imsi_twice_is_refused_naming_the_first_line(tmp_path):
    cards = make_cards(4)
    cards[2]["iccid"] = cards[0]["iccid"]
    cards[3]["imsi"] = cards[1]["imsi"]
    error = refusal(write(tmp_path, "dupes.csv", card_csv(cards)))
    assert problems(error) == [(4, "iccid", "repeats line 2"), (5, "imsi", "repeats line 3")]


def test_every_bad_line_is_listed_not_just_the_first(tmp_path):
    cards = make_cards(6)
    cards[0]["iccid"] = "8986001234"
    cards[2]["imsi"] = "31026123456789"
    cards[4]["pin1"] = "12"
    text = card_csv(cards).replace(cards[5]["adm1"] + "\n", cards[5]["adm1"] + ",surplus\n")
    error = refusal(write(tmp_path, "many.csv", text))
    assert problems(error) == [
        (2, "iccid", "must be 19 or 20 digits, got 10"),
        (4, "imsi", "must be 15 digits, got 14"),
        (6, "pin1", "must be 4 to 8 digits, got 2"),
        (7, "record", "the columns line names 9"),
    ]
    assert "nothing imported" in str(error)


@pytest.mark.parametrize("content, reason", [
    (b"", "is empty"),
    (b"\xef\xbb\xbf\r\n  \r\n", "is empty"),
    (b"msisdn\n13800138000\n", "is not a card-data file"),
    (b"Dear customer,\nplease find the cards attached.\n", "is not a card-data file"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "is not text"),
    (b"\xff\xfe" + "iccid\timsi\tki\r\n".encode("utf-16-le")[:-1], "is not text"),  # UTF-16 cut mid-character
    (b"iccid,imsi,ki\r\n\r\n", "holds no card records"),
])
def test_a_file_that_is_not_a_card_file_is_refused_with_a_clear_reason(tmp_path, content, reason):
    path = tmp_path / "mystery.txt"
    path.write_bytes(content)
    with pytest.raises(InvalidValue) as caught:
        read_card_file(path, carrier="China Mobile")
    assert reason in str(caught.value)


def test_a_header_without_a_ki_column_is_refused_on_its_line(tmp_path):
    error = refusal(write(tmp_path, "noki.csv", card_csv(make_cards(1), ("iccid", "imsi", "opc"))))
    assert problems(error) == [(1, "header", "names no ki column")]


def test_a_hundred_thousand_records_parse_and_validate_whole(tmp_path):
    base = make_cards(1)[0]
    lines = ["iccid,imsi,ki,opc,pin1,puk1,pin2,puk2,adm1"]
    for n in range(100_000):  # fast Luhn-valid ICCIDs: body digits vary, check digit by make_iccid
        lines.append(f"{make_iccid(f'898600{n:013d}')},46000{n:010d},{base['ki']},{base['opc']},"
                     f"1234,12345678,5678,87654321,{base['adm1']}")
    path = write(tmp_path, "big.csv", "\n".join(lines) + "\n")
    parsed = read_card_file(path, carrier="China Mobile")
    assert len(parsed) == 100_000
    assert parsed.iccid[-1] == make_iccid(f"898600{99_999:013d}") and parsed.lines[-1] == 100_001
