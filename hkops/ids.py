"""Parse, validate and format the identifiers of DOMAIN.md section 3.

Numbering data comes from ``phonenumbers``, check digits and MNCs from ``python-stdnum``.
Secrets (Ki, OPc, PIN, PUK, ADM) never appear in an error; a resident ID appears masked
(:func:`mask_id_text`, the one mask).
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType
from stdnum import imsi as std_imsi
from stdnum import luhn
from stdnum.cn import ric
from stdnum.exceptions import ValidationError
from stdnum.util import clean

from hkops.errors import InvalidValue

DIGITS = "0123456789"
HEX_DIGITS = "0123456789ABCDEF"
HIDDEN = "<hidden>"

_MOBILE_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)
_ICCID_ISSUERS = {"00": "China Mobile", "01": "China Unicom", "03": "China Telecom"}
# The geocoder's zh text uses the short names of the autonomous regions ("新疆乌鲁木齐市").
_AUTONOMOUS_REGIONS = {
    "内蒙古": "内蒙古自治区",
    "广西": "广西壮族自治区",
    "西藏": "西藏自治区",
    "宁夏": "宁夏回族自治区",
    "新疆": "新疆维吾尔自治区",
}


def _text(value: object, field: str, shown: object, seps: str = " -", ints: bool = False) -> str:
    if ints and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise InvalidValue(field, shown, "must be text")
    return clean(value, seps).strip()


def _only(text: str, alphabet: str) -> bool:
    return all(c in alphabet for c in text)


def _digits(value: object, field: str, shown: object, seps: str = " -", ints: bool = False) -> str:
    text = _text(value, field, shown, seps, ints)
    if not _only(text, DIGITS):
        raise InvalidValue(field, shown, "must contain digits only")
    return text


# --- MSISDN and number blocks -------------------------------------------------------------


def _china_number(national: str) -> phonenumbers.PhoneNumber | None:
    try:
        number = phonenumbers.parse(national, "CN")
    except phonenumbers.NumberParseException:
        return None
    if str(number.national_number) != national or not phonenumbers.is_valid_number(number):
        return None
    return number if phonenumbers.number_type(number) in _MOBILE_TYPES else None


def parse_msisdn(value: str | int, field: str = "msisdn") -> str:
    """Return the 11-digit national form of a China mobile number (+86/0086/86 prefixes allowed)."""
    text = _text(value, field, value, ints=True)
    for prefix in ("+86", "0086"):
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    else:
        if text.startswith("+"):
            raise InvalidValue(field, value, "must be a China (+86) number")
        if len(text) == 13 and text.startswith("86"):
            text = text[2:]
    if not _only(text, DIGITS):
        raise InvalidValue(field, value, "must contain digits only")
    if len(text) != 11:
        raise InvalidValue(field, value, f"must be 11 digits, got {len(text)}")
    if _china_number(text) is None:
        raise InvalidValue(field, value, "not a valid China mobile number")
    return text


def format_msisdn(msisdn: str) -> str:
    """Display form: ``138 0013 8000``."""
    number = phonenumbers.parse(parse_msisdn(msisdn), "CN")
    return phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)


def parse_phone(value: object, field: str = "contact") -> str:
    """A contact phone number (mobile or fixed line, China unless it says +CC) in E.164 form."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue(field, value, "a contact phone number is required")
    try:
        number = phonenumbers.parse(value, "CN")
    except phonenumbers.NumberParseException:
        raise InvalidValue(field, value, "is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidValue(field, value, "is not a valid phone number")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def display_msisdn(msisdn: str | int) -> str:
    """Display form of a number already known to be valid (from the pool): the same as
    :func:`format_msisdn` gives, without parsing it again. For hot paths such as search."""
    text = str(msisdn)
    return f"{text[:3]} {text[3:7]} {text[7:]}"


def msisdn_e164(msisdn: str) -> str:
    """Export form: ``+8613800138000``."""
    number = phonenumbers.parse(parse_msisdn(msisdn), "CN")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def parse_block_prefix(value: str | int, field: str = "block") -> str:
    """Return a 7-digit block prefix (号段) that phonenumbers places as China mobile."""
    text = _digits(value, field, value, ints=True)
    if len(text) != 7:
        raise InvalidValue(field, value, f"a block prefix is 7 digits, got {len(text)}")
    if _china_number(text + "0000") is None:
        raise InvalidValue(field, value, "not a China mobile number block")
    return text


@dataclass(frozen=True)
class BlockInfo:
    """Carrier and region of a number block; region fields are "" when only the country is known."""

    prefix: str
    carrier: str
    carrier_zh: str
    province: str
    city: str
    province_zh: str
    city_zh: str


def split_region(en: str, zh: str) -> tuple[str, str, str, str]:
    """(province, city, province_zh, city_zh) from phonenumbers' "City, Province" and Chinese
    geocoder texts; a municipality is its own province and city."""
    if en in ("", "China"):
        return "", "", "", ""
    if ", " not in en:
        zh = zh if zh.endswith("市") else zh + "市"  # one Tianjin block says "天津"
        return en, en, zh, zh
    city, province = en.rsplit(", ", 1)
    split = re.fullmatch(r"(.+?(?:省|自治区))(.+)", zh)
    if split:
        return province, city, split[1], split[2]
    for short, full in _AUTONOMOUS_REGIONS.items():
        if zh.startswith(short):
            return province, city, full, zh[len(short):]
    return province, city, "", zh


def block_info(prefix: str) -> BlockInfo:
    """Carrier and province/city of a block, from phonenumbers' carrier and geocoder data."""
    from phonenumbers import carrier as pn_carrier  # large data tables: loaded only when needed
    from phonenumbers import geocoder

    prefix = parse_block_prefix(prefix)
    number = phonenumbers.parse(prefix + "0000", "CN")
    carrier = pn_carrier.name_for_number(number, "en")
    if not carrier:
        raise InvalidValue("block", prefix, "no carrier is known for this block")
    province, city, province_zh, city_zh = split_region(
        geocoder.description_for_number(number, "en"),
        geocoder.description_for_number(number, "zh"),
    )
    return BlockInfo(
        prefix=prefix,
        carrier=carrier,
        carrier_zh=pn_carrier.name_for_number(number, "zh"),
        province=province,
        city=city,
        province_zh=province_zh,
        city_zh=city_zh,
    )


# --- SIM card identifiers -------------------------------------------------------------------


def parse_iccid(value: str, field: str = "iccid") -> str:
    """Return a 19- or 20-digit ICCID starting 89 whose Luhn check digit is right (a 19-digit
    one padded with ``F`` to 20, as read from the card's EF.ICCID, is taken without the ``F``)."""
    padded = isinstance(value, str) and value.strip()[-1:] in ("F", "f")
    text = _digits(value.strip()[:-1] if padded else value, field, value)
    if padded and len(text) != 19:
        raise InvalidValue(field, value, f"only a 19-digit ICCID is padded with F, this one has {len(text)} digits")
    if len(text) not in (19, 20):
        raise InvalidValue(field, value, f"must be 19 or 20 digits, got {len(text)}")
    if not text.startswith("89"):
        raise InvalidValue(field, value, "must start with 89 (telecom)")
    check = luhn.calc_check_digit(text[:-1])
    if text[-1] != check:
        raise InvalidValue(field, value, f"check digit should be {check}")
    return text


def make_iccid(body: str) -> str:
    """Append the Luhn check digit to an 18- or 19-digit ICCID body."""
    text = _digits(body, "iccid", body)
    if len(text) not in (18, 19):
        reason = f"the body before the check digit is 18 or 19 digits, got {len(text)}"
        raise InvalidValue("iccid", body, reason)
    if not text.startswith("89"):
        raise InvalidValue("iccid", body, "must start with 89 (telecom)")
    return text + luhn.calc_check_digit(text)


def iccid_issuer(iccid: str) -> str | None:
    """Carrier that issued a Chinese (8986) ICCID, or None if unknown or not Chinese."""
    text = parse_iccid(iccid)
    return _ICCID_ISSUERS.get(text[4:6]) if text.startswith("8986") else None


def _china_imsi(value: str, field: str) -> str:
    text = _digits(value, field, value)
    if len(text) != 15:
        raise InvalidValue(field, value, f"must be 15 digits, got {len(text)}")
    if not text.startswith("460"):
        raise InvalidValue(field, value, f"MCC must be 460 (China), got {text[:3]}")
    try:
        return std_imsi.validate(text)
    except ValidationError:
        raise InvalidValue(field, value, "not a valid IMSI") from None


def _mnc_carrier(imsi: str) -> str | None:
    info = std_imsi.info(imsi)
    return info.get("brand") or info.get("operator")


def parse_imsi(value: str, field: str = "imsi", carrier: str | None = None) -> str:
    """Return a 15-digit China IMSI; with ``carrier``, its MNC must belong to that carrier."""
    text = _china_imsi(value, field)
    owner = _mnc_carrier(text)
    mnc = text[3:5]
    if owner is None:
        raise InvalidValue(field, value, f"MNC {mnc} belongs to no known carrier")
    if carrier is not None and owner != carrier:
        raise InvalidValue(field, value, f"MNC {mnc} belongs to {owner}, not {carrier}")
    return text


def imsi_carrier(imsi: str) -> str | None:
    """Carrier owning the IMSI's MNC per stdnum (brand, else operator), or None if unknown."""
    return _mnc_carrier(_china_imsi(imsi, "imsi"))


def parse_key(value: str, field: str = "ki") -> str:
    """Return a 128-bit key (Ki, OPc) as 32 upper-case hex digits."""
    text = _text(value, field, HIDDEN).upper()
    if not _only(text, HEX_DIGITS):
        raise InvalidValue(field, HIDDEN, "must be hexadecimal")
    if len(text) != 32:
        raise InvalidValue(field, HIDDEN, f"must be 32 hex digits, got {len(text)}")
    return text


def parse_pin(value: str, field: str = "pin1") -> str:
    """Return a PIN of 4 to 8 digits."""
    text = _digits(value, field, HIDDEN, seps="")
    if not 4 <= len(text) <= 8:
        raise InvalidValue(field, HIDDEN, f"must be 4 to 8 digits, got {len(text)}")
    return text


def parse_puk(value: str, field: str = "puk1") -> str:
    """Return a PUK of exactly 8 digits."""
    text = _digits(value, field, HIDDEN, seps="")
    if len(text) != 8:
        raise InvalidValue(field, HIDDEN, f"must be 8 digits, got {len(text)}")
    return text


def parse_adm(value: str, field: str = "adm1") -> str:
    """Return an ADM key: 8 digits, or 16 hex digits (upper-case)."""
    text = _text(value, field, HIDDEN, seps="").upper()
    if len(text) == 8 and _only(text, DIGITS) or len(text) == 16 and _only(text, HEX_DIGITS):
        return text
    if len(text) == 8:
        raise InvalidValue(field, HIDDEN, "an 8-character ADM must contain digits only")
    if len(text) == 16:
        raise InvalidValue(field, HIDDEN, "must be hexadecimal")
    reason = f"must be 8 digits or 16 hex digits, got {len(text)} characters"
    raise InvalidValue(field, HIDDEN, reason)


# --- Resident ID (居民身份证) ----------------------------------------------------------------


#: Characters of a resident ID a mask keeps visible: the first 2 (province) and the last one
#: (the check character). Hidden: the area within the province, the birth date and the
#: sequence with its sex digit. With what hkops stores in clear beside a mask (birth year,
#: gender, name, contact, ship-to address, even if it gave the whole area code) about 16,000
#: valid IDs still match one mask (365 days x 500 sequences of one parity / 11 check characters).
MASK_HEAD, MASK_TAIL = 2, 1


def mask_id_text(text: str) -> str:
    """The one screen form of a resident ID, or of text typed as one (valid or not, or an older
    mask): ``11***************X``. Short text (under 8 characters) is hidden whole."""
    text = str(text).strip().upper()
    if len(text) < 8:
        return "*" * len(text)
    return text[:MASK_HEAD] + "*" * (len(text) - MASK_HEAD - MASK_TAIL) + text[-MASK_TAIL:]


def looks_like_resident_id(value: str) -> bool:
    """Whether ``value`` has the shape of a resident ID (17 digits and a check character), valid
    or not: such text is shown only masked."""
    text = re.sub(r"[\s-]", "", str(value or "")).upper()
    return len(text) == 18 and text[:17].isdigit() and text[17] in DIGITS + "X"


def parse_resident_id(value: str, field: str = "resident_id") -> str:
    """Return an 18-character resident ID, upper-case; errors show it masked."""
    text = _text(value, field, mask_id_text(str(value)), seps=" ").upper()
    shown = mask_id_text(text)
    if len(text) != 18:
        raise InvalidValue(field, shown, f"must be 18 characters, got {len(text)}")
    if not _only(text[:17], DIGITS) or text[17] not in DIGITS + "X":
        raise InvalidValue(field, shown, "must be 17 digits and a check character (0-9 or X)")
    check = ric.calc_check_digit(text)
    if text[17] != check:
        raise InvalidValue(field, shown, f"check character should be {check}")
    try:
        birth = ric.get_birth_date(text)
    except ValidationError:
        raise InvalidValue(field, shown, "birth date is not a real date") from None
    if birth > datetime.date.today():
        raise InvalidValue(field, shown, "birth date is in the future")
    try:
        ric.validate(text)
    except ValidationError:
        reason = "its area code is unknown or was not in use in the birth year"
        raise InvalidValue(field, shown, reason) from None
    return text


def resident_id_birth_date(rid: str) -> datetime.date:
    """Birth date encoded in a resident ID."""
    return ric.get_birth_date(parse_resident_id(rid))


def resident_id_gender(rid: str) -> str:
    """"male" or "female", from the parity of the sequence number."""
    return "male" if int(parse_resident_id(rid)[16]) % 2 else "female"


def mask_resident_id(rid: str) -> str:
    """Screen form of a valid resident ID (:func:`mask_id_text`): ``11***************X``."""
    return mask_id_text(parse_resident_id(rid))


def age_on(rid: str, day: datetime.date) -> int:
    """Age in whole years on ``day`` (a 29 February birthday counts from 1 March)."""
    birth = resident_id_birth_date(rid)
    if day < birth:
        raise InvalidValue("day", day, "is before the birth date")
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))
