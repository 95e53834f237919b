import datetime
import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from stdnum.cn import ric

from hkops.errors import InvalidValue
from hkops.ids import (
    BlockInfo,
    age_on,
    block_info,
    format_msisdn,
    iccid_issuer,
    imsi_carrier,
    make_iccid,
    mask_resident_id,
    msisdn_e164,
    parse_adm,
    parse_block_prefix,
    parse_iccid,
    parse_imsi,
    parse_key,
    parse_msisdn,
    parse_pin,
    parse_puk,
    parse_resident_id,
    resident_id_birth_date,
    resident_id_gender,
)


def resident_id(area: str, birth: str, sequence: str) -> str:
    body = area + birth + sequence
    return body + ric.calc_check_digit(body + "0")  # stdnum ignores the last character


WANG = resident_id("110105", "19491231", "002")  # 11010519491231002X, Beijing Chaoyang, female
LI = resident_id("440305", "19900101", "123")  # Shenzhen Nanshan, male
LEAP = resident_id("110105", "20000229", "011")
CM_ICCID = make_iccid("8986001020123456789")
CU_ICCID = make_iccid("898601181234567890")
CT_ICCID = make_iccid("8986031901234567890")
KI = "000102030405060708090a0b0c0d0e0f"
NOT_IN_USE = "is unknown or was not in use in the birth year"


def refusal(call, *args, **kwargs) -> InvalidValue:
    with pytest.raises(InvalidValue) as caught:
        call(*args, **kwargs)
    return caught.value


# --- MSISDN -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    ["13800138000", "138 0013 8000", "138-0013-8000", "+8613800138000", "+86 138 0013 8000",
     "8613800138000", "008613800138000", " 13800138000\n", 13800138000],
)
def test_a_mobile_number_written_any_usual_way_parses_to_its_national_form(written):
    assert parse_msisdn(written) == "13800138000"


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("1380013800", "must be 11 digits, got 10"),
        ("138001380001", "must be 11 digits, got 12"),
        ("", "must be 11 digits, got 0"),
        ("1380013800O", "must contain digits only"),
        ("+4420 7946 0958", "must be a China (+86) number"),
        ("23800138000", "not a valid China mobile number"),
        ("01012345678", "not a valid China mobile number"),
        ("14400000000", "not a valid China mobile number"),
        (-13800138000, "must contain digits only"),
        (None, "must be text"),
    ],
)
def test_a_number_that_is_not_a_china_mobile_is_refused_with_the_reason(bad, reason):
    error = refusal(parse_msisdn, bad)
    assert (error.field, error.value, error.reason) == ("msisdn", bad, reason)


def test_a_mobile_number_is_shown_in_groups_and_exported_in_e164():
    assert format_msisdn("13800138000") == "138 0013 8000"
    assert msisdn_e164("138 0013 8000") == "+8613800138000"


def test_formatting_an_invalid_number_is_refused():
    assert refusal(format_msisdn, "12345").field == "msisdn"
    assert refusal(msisdn_e164, "23800138000").field == "msisdn"


# --- Blocks -------------------------------------------------------------------------------


@pytest.mark.parametrize("written", ["1380013", 1380013, " 1380013 "])
def test_a_block_prefix_parses_to_seven_digits(written):
    assert parse_block_prefix(written) == "1380013"


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("138001", "a block prefix is 7 digits, got 6"),
        ("13800130", "a block prefix is 7 digits, got 8"),
        ("1000000", "not a China mobile number block"),
        ("0101234", "not a China mobile number block"),
    ],
)
def test_a_block_prefix_of_the_wrong_length_or_outside_mobile_ranges_is_refused(bad, reason):
    assert refusal(parse_block_prefix, bad).reason == reason


def test_a_block_prefix_with_letters_is_refused():
    assert refusal(parse_block_prefix, "13800a3").reason == "must contain digits only"


def test_block_info_gives_the_carrier_and_a_municipality_as_both_province_and_city():
    assert block_info("1380013") == BlockInfo(
        prefix="1380013", carrier="China Mobile", carrier_zh="中国移动",
        province="Beijing", city="Beijing", province_zh="北京市", city_zh="北京市",
    )


@pytest.mark.parametrize(
    "prefix, carrier, province, city, province_zh, city_zh",
    [
        ("1350755", "China Mobile", "Fujian", "Sanming", "福建省", "三明市"),
        ("1771234", "China Telecom", "Jiangsu", "Changzhou", "江苏省", "常州市"),
        ("1390000", "China Mobile", "Xinjiang", "Urumchi", "新疆维吾尔自治区", "乌鲁木齐市"),
        ("1387710", "China Mobile", "Guangxi", "Nanning", "广西壮族自治区", "南宁市"),
        ("1380471", "China Mobile", "Inner Mongolia", "Hohhot", "内蒙古自治区", "呼和浩特市"),
        ("1772600", "China Telecom", "Tianjin", "Tianjin", "天津市", "天津市"),
        ("1860000", "China Unicom", "Beijing", "Beijing", "北京市", "北京市"),
    ],
)
def test_block_info_splits_the_region_into_province_and_city(
    prefix, carrier, province, city, province_zh, city_zh
):
    info = block_info(prefix)
    assert (info.carrier, info.province, info.city) == (carrier, province, city)
    assert (info.province_zh, info.city_zh) == (province_zh, city_zh)


def test_block_info_leaves_the_region_empty_when_only_the_country_is_known():
    info = block_info("1920000")
    assert info.carrier == "China Broadnet"
    assert (info.province, info.city, info.province_zh, info.city_zh) == ("", "", "", "")


def test_block_info_refuses_a_block_with_no_known_carrier():
    error = refusal(block_info, "1620000")
    assert (error.field, error.value) == ("block", "1620000")
    assert "no carrier" in error.reason


# --- ICCID ----------------------------------------------------------------------------------


def test_make_iccid_appends_the_luhn_check_digit():
    assert CM_ICCID == "89860010201234567892"
    assert len(CU_ICCID) == 19


@pytest.mark.parametrize("iccid", [CM_ICCID, CU_ICCID, CT_ICCID, "8986 0010 2012 3456 7892"])
def test_a_well_formed_iccid_parses(iccid):
    assert parse_iccid(iccid) == iccid.replace(" ", "")


def test_a_19_digit_iccid_padded_with_f_as_on_the_card_parses_without_it():
    assert parse_iccid(CU_ICCID + "F") == parse_iccid(CU_ICCID.lower() + "f") == CU_ICCID


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("89860010201234567893", "check digit should be 2"),
        ("8986001020123456789", "check digit should be 1"),
        ("898600102012345678", "must be 19 or 20 digits, got 18"),
        ("898600102012345678921", "must be 19 or 20 digits, got 21"),
        ("8986001020123456789F", "check digit should be 1"),
        ("89860010201234567892F", "only a 19-digit ICCID is padded with F, this one has 20 digits"),
        ("8986001020123456F789", "must contain digits only"),
        ("19860010201234567897", "must start with 89 (telecom)"),
    ],
)
def test_a_malformed_iccid_is_refused_naming_what_failed(bad, reason):
    assert refusal(parse_iccid, bad).reason == reason


def test_make_iccid_refuses_a_body_of_the_wrong_length_or_prefix():
    assert "18 or 19 digits, got 17" in refusal(make_iccid, "89860010201234567").reason
    assert refusal(make_iccid, "1986001020123456789").reason == "must start with 89 (telecom)"
    assert refusal(make_iccid, "8986-00A0201234567").reason == "must contain digits only"


def test_the_issuer_of_a_chinese_iccid_is_its_carrier():
    assert iccid_issuer(CM_ICCID) == "China Mobile"
    assert iccid_issuer(CU_ICCID) == "China Unicom"
    assert iccid_issuer(CT_ICCID) == "China Telecom"


def test_the_issuer_is_unknown_for_foreign_or_unlisted_iccids():
    assert iccid_issuer(make_iccid("8944100000123456789")) is None
    assert iccid_issuer(make_iccid("8986111901234567890")) is None


def test_the_issuer_of_an_invalid_iccid_is_refused():
    assert refusal(iccid_issuer, "89860010201234567893").field == "iccid"


# --- IMSI -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "imsi, carrier",
    [
        ("460001234567890", "China Mobile"),
        ("460071234567890", "China Mobile"),
        ("460011234567890", "China Unicom"),
        ("460031234567890", "China Telecom"),
        ("460111234567890", "China Telecom"),
        ("460151234567890", "China Broadnet"),
    ],
)
def test_an_imsi_parses_and_its_mnc_names_the_carrier(imsi, carrier):
    assert parse_imsi(imsi, carrier=carrier) == imsi
    assert imsi_carrier(imsi) == carrier


def test_mnc_04_counts_as_china_mobile_although_stdnum_names_another_operator():
    assert imsi_carrier("460041234567890") == "China Mobile"


def test_an_imsi_of_another_carrier_than_expected_is_refused():
    error = refusal(parse_imsi, "460011234567890", carrier="China Mobile")
    assert error.reason == "MNC 01 belongs to China Unicom, not China Mobile"


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("46000123456789", "must be 15 digits, got 14"),
        ("4600012345678901", "must be 15 digits, got 16"),
        ("46000123456789X", "must contain digits only"),
        ("310150123456789", "MCC must be 460 (China), got 310"),
        ("460991234567890", "MNC 99 belongs to no known carrier"),
    ],
)
def test_a_malformed_or_foreign_imsi_is_refused(bad, reason):
    assert refusal(parse_imsi, bad).reason == reason


def test_the_carrier_of_an_imsi_with_an_unknown_mnc_is_none():
    assert imsi_carrier("460991234567890") is None


# --- Secrets --------------------------------------------------------------------------------


def test_a_key_parses_to_upper_case_hex():
    assert parse_key(KI) == KI.upper()
    assert parse_key("00010203 04050607 08090A0B 0C0D0E0F", field="opc") == KI.upper()


@pytest.mark.parametrize(
    "bad, reason",
    [(KI[:-1], "must be 32 hex digits, got 31"), (KI + "0", "must be 32 hex digits, got 33"),
     (KI[:-1] + "g", "must be hexadecimal")],
)
def test_a_malformed_key_is_refused_without_showing_it(bad, reason):
    error = refusal(parse_key, bad)
    assert error.reason == reason
    assert bad.upper() not in str(error).upper()
    assert error.value == "<hidden>"


@pytest.mark.parametrize("pin", ["1234", "00000", "12345678"])
def test_a_pin_of_four_to_eight_digits_is_accepted(pin):
    assert parse_pin(pin) == pin


@pytest.mark.parametrize(
    "bad, reason",
    [("123", "must be 4 to 8 digits, got 3"), ("123456789", "must be 4 to 8 digits, got 9"),
     ("12a4", "must contain digits only"), ("12-34", "must contain digits only")],
)
def test_a_malformed_pin_is_refused(bad, reason):
    assert refusal(parse_pin, bad, field="pin2").reason == reason


def test_a_puk_must_be_exactly_eight_digits():
    assert parse_puk("12345678") == "12345678"
    assert refusal(parse_puk, "1234567").reason == "must be 8 digits, got 7"
    assert refusal(parse_puk, "1234567a").reason == "must contain digits only"


@pytest.mark.parametrize(
    "adm, parsed", [("12345678", "12345678"), ("0123456789abcdef", "0123456789ABCDEF")]
)
def test_an_adm_is_eight_digits_or_sixteen_hex_digits(adm, parsed):
    assert parse_adm(adm) == parsed


@pytest.mark.parametrize(
    "bad, reason",
    [("1234567A", "an 8-character ADM must contain digits only"),
     ("0123456789ABCDEG", "must be hexadecimal"),
     ("123456789", "must be 8 digits or 16 hex digits, got 9 characters")],
)
def test_a_malformed_adm_is_refused(bad, reason):
    assert refusal(parse_adm, bad).reason == reason


# --- Resident ID ----------------------------------------------------------------------------


def test_a_resident_id_parses_upper_case():
    assert WANG == "11010519491231002X"
    assert parse_resident_id(WANG.lower()) == WANG
    assert parse_resident_id(LI) == LI


def test_a_resident_id_gives_birth_date_gender_and_mask():
    assert resident_id_birth_date(WANG) == datetime.date(1949, 12, 31)
    assert resident_id_gender(WANG) == "female"
    assert resident_id_gender(LI) == "male"
    assert mask_resident_id(WANG) == "11***************X"


@pytest.mark.parametrize(
    "bad, reason",
    [
        (WANG[:-1], "must be 18 characters, got 17"),
        ("110105491231002", "must be 18 characters, got 15"),
        ("1101051949123100XX", "must be 17 digits and a check character (0-9 or X)"),
        (WANG[:-1] + "7", "check character should be X"),
        (resident_id("110105", "19491331", "002"), "birth date is not a real date"),
        (resident_id("110105", "20990101", "002"), "birth date is in the future"),
        (resident_id("999999", "19900101", "123"), f"its area code {NOT_IN_USE}"),
        (resident_id("440305", "19800101", "123"), f"its area code {NOT_IN_USE}"),  # Nanshan: 1990
    ],
)
def test_a_bad_resident_id_is_refused_with_a_distinct_reason(bad, reason):
    assert refusal(parse_resident_id, bad).reason == reason


def test_a_refused_resident_id_is_shown_masked():
    error = refusal(parse_resident_id, WANG[:-1] + "7")
    assert error.value == "11***************7"
    assert "19491231" not in str(error) and "110105" not in str(error)


def test_age_counts_whole_years_and_a_leap_day_birthday_from_the_first_of_march():
    assert age_on(WANG, datetime.date(2024, 12, 30)) == 74
    assert age_on(WANG, datetime.date(2024, 12, 31)) == 75
    assert age_on(LEAP, datetime.date(2018, 2, 28)) == 17
    assert age_on(LEAP, datetime.date(2018, 3, 1)) == 18


def test_age_before_birth_is_refused():
    assert refusal(age_on, WANG, datetime.date(1949, 12, 30)).field == "day"


# --- Every error names its field and value --------------------------------------------------


@pytest.mark.parametrize(
    "call, bad",
    [(parse_msisdn, "12345"), (parse_block_prefix, "12345"), (parse_iccid, "8986"),
     (parse_imsi, "46000")],
)
def test_an_error_names_the_field_and_the_value(call, bad):
    assert str(refusal(call, bad, field="from_file")).startswith("from_file '" + bad + "': ")


def test_an_error_from_make_iccid_names_the_field_and_the_body():
    assert str(refusal(make_iccid, "89")).startswith("iccid '89': ")


@pytest.mark.parametrize(
    "call, field",
    [(parse_key, "opc"), (parse_pin, "pin2"), (parse_puk, "puk2"), (parse_adm, "adm1")],
)
def test_an_error_about_a_secret_names_the_field_but_hides_the_value(call, field):
    message = str(refusal(call, "9876x", field=field))
    assert message.startswith(f"{field} '<hidden>'")
    assert "9876" not in message


def test_an_error_about_a_resident_id_names_the_field_and_the_masked_value():
    message = str(refusal(parse_resident_id, WANG[:-1] + "1", field="holder_id"))
    assert message.startswith("holder_id '11***************1'")


# --- Properties -----------------------------------------------------------------------------

@given(st.from_regex(r"89[0-9]{16,17}", fullmatch=True))
def test_make_iccid_output_always_parses(body):
    iccid = make_iccid(body)
    assert parse_iccid(iccid) == iccid
    assert iccid[:-1] == body


@given(st.from_regex(r"89[0-9]{16,17}", fullmatch=True), st.data())
def test_changing_any_one_digit_of_an_iccid_is_caught(body, data):
    iccid = make_iccid(body)
    where = data.draw(st.integers(2, len(iccid) - 1))
    digit = data.draw(st.sampled_from([d for d in "0123456789" if d != iccid[where]]))
    with pytest.raises(InvalidValue):
        parse_iccid(iccid[:where] + digit + iccid[where + 1:])


@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True))
def test_every_accepted_mobile_number_round_trips_through_display_and_e164(digits):
    try:
        msisdn = parse_msisdn(digits)
    except InvalidValue:
        assume(False)
    assert msisdn == digits
    shown = format_msisdn(msisdn)
    assert re.fullmatch(r"\d{3} \d{4} \d{4}", shown)
    assert parse_msisdn(shown) == msisdn
    assert parse_msisdn(msisdn_e164(msisdn)) == msisdn


@given(st.one_of(st.text(), st.integers()))
def test_any_input_either_parses_or_raises_invalid_value(junk):
    for call in (parse_msisdn, parse_block_prefix, parse_iccid, parse_imsi, parse_key,
                 parse_pin, parse_puk, parse_adm, parse_resident_id):
        try:
            call(junk)
        except InvalidValue:
            pass


@given(st.dates(datetime.date(1950, 1, 1), datetime.date(2006, 12, 31)), st.integers(0, 999))
def test_the_mask_never_contains_the_birth_date(birth, sequence):
    rid = resident_id("110105", birth.strftime("%Y%m%d"), f"{sequence:03d}")
    masked = mask_resident_id(rid)
    assert birth.strftime("%Y%m%d") not in masked
    assert masked == rid[:2] + "*" * 15 + rid[-1:]
    assert resident_id_birth_date(rid) == birth
    assert resident_id_gender(rid) == ("male" if sequence % 2 else "female")
    assert age_on(rid, birth) == 0


@given(st.text(alphabet="0123456789abcdefABCDEF", min_size=5).filter(lambda k: len(k) != 32))
def test_a_wrong_length_key_never_appears_in_the_error(key):
    assert key not in str(refusal(parse_key, key))


def test_the_fast_display_form_equals_what_phonenumbers_formats():
    from hkops.ids import display_msisdn, format_msisdn

    for number in ("13800138000", "18607550011", "18910100000", "15002100000", "19901000000", "17100000000"):
        assert display_msisdn(number) == format_msisdn(number)
        assert display_msisdn(int(number)) == format_msisdn(number)
