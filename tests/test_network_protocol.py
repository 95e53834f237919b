"""The MML provisioning protocol: commands and replies round-trip, bad text is refused
with its own result code, and keys never come back out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hkops.network import protocol as p
from hkops.network.protocol import ProtocolError, ResultCode

KI = "000102030405060708090A0B0C0D0E0F"
OPC = "F0E0D0C0B0A090807060504030201000"

isdns = st.from_regex(r"861[0-9]{10}", fullmatch=True)
imsis = st.from_regex(r"[0-9]{15}", fullmatch=True)
keys = st.from_regex(r"[0-9A-Fa-f]{32}", fullmatch=True)
reqs = st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True)
reasons = st.sampled_from([r.value for r in p.BarringReason])

commands = st.one_of(
    st.builds(p.AddSub, isdn=isdns, imsi=imsis, ki=keys, opc=keys, req=reqs),
    st.one_of(st.builds(p.ModOdb, isdn=isdns, barred=st.just(True), reason=reasons, req=reqs),
              st.builds(p.ModOdb, isdn=isdns, barred=st.just(False), reason=st.none(), req=reqs)),
    st.builds(p.ModImsi, isdn=isdns, imsi=imsis, ki=keys, opc=keys, req=reqs),
    st.builds(p.RmvSub, isdn=isdns, req=reqs),
    st.one_of(st.builds(p.LstSub, req=reqs, isdn=isdns), st.builds(p.LstSub, req=reqs, imsi=imsis)),
    st.builds(p.LstAll, req=reqs, after=st.none() | isdns, count=st.integers(1, p.MAX_PAGE)),
    st.builds(p.Ping, req=reqs),
)
texts = st.text(st.characters(blacklist_characters='"\\', blacklist_categories=("Cc", "Cs")), max_size=40)
field_values = st.one_of(texts, st.integers(0, 10**9 - 1))


def refused(line: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        p.parse_command(line)
    return caught.value


# --------------------------------------------------------------------------- commands


@given(commands)
def test_every_command_parses_back_from_its_own_text(command):
    assert p.parse_command(p.format_command(command)) == command


@given(commands)
def test_a_command_line_is_one_line_ending_in_a_semicolon(command):
    line = p.format_command(command)
    assert "\n" not in line and line.endswith(";") and line.startswith(command.NAME + ":")


def test_the_add_command_reads_like_mml():
    command = p.AddSub(isdn="8613800138000", imsi="460001234567890", ki=KI.lower(), opc=OPC, req="act-1")
    assert p.format_command(command) == (
        f'ADD SUB: ISDN="8613800138000", IMSI="460001234567890", KI="{KI}", OPC="{OPC}", REQ="act-1";')


def test_names_are_case_insensitive_spacing_is_free_and_parameters_come_in_any_order():
    line = f' add   sub :req = "a1" ,opc="{OPC}",KI="{KI}", imsi="460001234567890", isdn="8613800138000" ;\r\n'
    assert p.parse_command(line) == p.AddSub(isdn="8613800138000", imsi="460001234567890", ki=KI, opc=OPC,
                                             req="a1")


def test_barring_needs_a_reason_and_lifting_it_takes_none():
    assert p.parse_command('MOD ODB: ISDN="8613800138000", ODBSS=1, ODBRSN="LOSS", REQ="b";').reason == "LOSS"
    assert p.parse_command('MOD ODB: ISDN="8613800138000", ODBSS=0, REQ="b";').barred is False
    assert refused('MOD ODB: ISDN="8613800138000", ODBSS=1, REQ="b";').param == "ODBRSN"
    assert refused('MOD ODB: ISDN="8613800138000", ODBSS=0, ODBRSN="LOSS", REQ="b";').param == "ODBRSN"


@pytest.mark.parametrize("line, code, param", [
    ('ADD SUB ISDN="8613800138000";', ResultCode.SYNTAX_ERROR, None),
    ('PING: REQ="a"', ResultCode.SYNTAX_ERROR, None),
    ('PING: REQ="a";;', ResultCode.SYNTAX_ERROR, None),
    ('PING: REQ="a"; PING: REQ="b";', ResultCode.SYNTAX_ERROR, None),
    ('PING: REQ="a" REQ="b";', ResultCode.SYNTAX_ERROR, None),
    ('PING: REQ="a", REQ="b";', ResultCode.SYNTAX_ERROR, "REQ"),
    ('PING: REQ="a\\"b";', ResultCode.SYNTAX_ERROR, None),
    ('PING: REQ=a;', ResultCode.SYNTAX_ERROR, None),
    ('PING: REQ=-1;', ResultCode.SYNTAX_ERROR, None),
    ('', ResultCode.SYNTAX_ERROR, None),
    ('DEL SUB: ISDN="8613800138000", REQ="a";', ResultCode.UNKNOWN_COMMAND, None),
    ('RMV SUB: ISDN="8613800138000", REQ="a", FORCE=1;', ResultCode.BAD_PARAMETER, "FORCE"),
    ('RMV SUB: REQ="a";', ResultCode.BAD_PARAMETER, "ISDN"),
    ('RMV SUB: ISDN="8613800138000";', ResultCode.BAD_PARAMETER, "REQ"),
    ('RMV SUB: ISDN="13800138000", REQ="a";', ResultCode.BAD_PARAMETER, "ISDN"),
    ('RMV SUB: ISDN=8613800138000, REQ="a";', ResultCode.BAD_PARAMETER, "ISDN"),
    ('RMV SUB: ISDN="8613800138000", REQ="has space";', ResultCode.BAD_PARAMETER, "REQ"),
    ('RMV SUB: ISDN="8613800138000", REQ="";', ResultCode.BAD_PARAMETER, "REQ"),
    ('MOD ODB: ISDN="8613800138000", ODBSS=2, REQ="a";', ResultCode.BAD_PARAMETER, "ODBSS"),
    ('MOD ODB: ISDN="8613800138000", ODBSS="1", ODBRSN="LOSS", REQ="a";', ResultCode.BAD_PARAMETER, "ODBSS"),
    ('MOD ODB: ISDN="8613800138000", ODBSS=1, ODBRSN="BORED", REQ="a";', ResultCode.BAD_PARAMETER, "ODBRSN"),
    ('LST SUB: REQ="a";', ResultCode.BAD_PARAMETER, "ISDN"),
    ('LST SUB: ISDN="8613800138000", IMSI="460001234567890", REQ="a";', ResultCode.BAD_PARAMETER, "ISDN"),
    ('LST SUB: IMSI="46000123456789", REQ="a";', ResultCode.BAD_PARAMETER, "IMSI"),
    ('LST ALL: COUNT=0, REQ="a";', ResultCode.BAD_PARAMETER, "COUNT"),
    ('LST ALL: COUNT=1001, REQ="a";', ResultCode.BAD_PARAMETER, "COUNT"),
    ('LST ALL: FROM="", REQ="a";', ResultCode.BAD_PARAMETER, "FROM"),
    (f'MOD IMSI: ISDN="8613800138000", IMSI="460001234567890", KI="{KI}", OPC="{OPC}", REQ="a";',
     ResultCode.BAD_PARAMETER, "IMSI"),
])
def test_bad_command_text_is_refused_with_its_own_result_code(line, code, param):
    error = refused(line)
    assert (error.code, error.param) == (code, param)


def test_a_line_longer_than_the_limit_is_refused():
    assert refused('PING: REQ="a";' + " " * p.MAX_LINE).code == ResultCode.SYNTAX_ERROR


def test_a_refusal_still_names_the_request_id_when_it_can_be_read():
    assert refused('RMV SUB: ISDN="123", REQ="keep-me";').req == "keep-me"
    assert refused('NOPE: REQ="r9";').req == "r9"
    assert refused('NOPE;').req is None


@pytest.mark.parametrize("bad_key", [KI[:-1], KI + "0", KI[:-1] + "G"])
def test_a_bad_key_is_refused_without_showing_it(bad_key):
    line = f'ADD SUB: ISDN="8613800138000", IMSI="460001234567890", KI="{bad_key}", OPC="{OPC}", REQ="a";'
    error = refused(line)
    assert error.param == "KI" and bad_key not in str(error) and bad_key.upper() not in str(error)


@given(st.text(max_size=300))
def test_any_text_either_parses_or_is_refused_with_a_result_code(line):
    try:
        command = p.parse_command(line)
    except ProtocolError as error:
        assert error.code in (ResultCode.SYNTAX_ERROR, ResultCode.UNKNOWN_COMMAND, ResultCode.BAD_PARAMETER)
    else:
        assert p.parse_command(p.format_command(command)) == command


@given(st.builds(p.AddSub, isdn=isdns, imsi=imsis, ki=keys, opc=keys, req=reqs))
def test_keys_are_hidden_from_repr_and_redacted_from_log_lines(command):
    line = p.format_command(command)
    for shown in (repr(command), p.redact(line), p.redact(line.lower())):
        assert command.ki not in shown.upper() and command.opc not in shown.upper()
    assert p.redact(line).count(p.MASK) == 2


def test_redaction_covers_keys_in_lines_that_do_not_parse():
    assert KI not in p.redact(f"ADD SUB: KI = {KI}, OPC=\"{OPC}") and OPC not in p.redact(f'OPC="{OPC}')


# --------------------------------------------------------------------------- replies


@given(st.sampled_from(list(ResultCode)),
       st.dictionaries(st.from_regex(r"[A-Z]{1,10}", fullmatch=True).filter(lambda n: n not in ("KI", "OPC")),
                       field_values, max_size=6))
def test_every_reply_parses_back_from_its_own_text(code, fields):
    reply = p.make_reply(code, fields)
    line = p.format_reply(reply)
    assert "\n" not in line and p.parse_reply(line) == reply


def test_a_reply_reads_retcode_then_text_then_values():
    reply = p.make_reply(ResultCode.SUBSCRIBER_NOT_FOUND, [("REQ", "a1"), ("ISDN", "8613800138000")])
    assert p.format_reply(reply) == 'RETCODE = 3001  Subscriber not found; REQ="a1", ISDN="8613800138000"'
    assert p.format_reply(p.make_reply(ResultCode.OK)) == "RETCODE = 0  Operation succeeded"


def test_a_reply_may_carry_a_key_only_as_stars():
    assert p.make_reply(ResultCode.OK, [("KI", p.MASK)]).fields["KI"] == p.MASK
    with pytest.raises(ValueError):
        p.make_reply(ResultCode.OK, [("KI", KI)])


@pytest.mark.parametrize("line", ["", "RETCODE=0 ok", "RETCODE = x  text", "RETCODE = 0  ok; REQ=", "OK",
                                  'RETCODE = 0  ok; REQ="a" B=1'])
def test_a_line_that_is_not_a_reply_is_refused(line):
    with pytest.raises(ProtocolError):
        p.parse_reply(line)


def test_only_5xxx_codes_are_transient():
    assert [c for c in ResultCode if c.retryable] == [ResultCode.SYSTEM_BUSY]
    assert p.Reply(5999, "x").retryable and not p.Reply(3001, "x").retryable
    assert ResultCode.SUBSCRIBER_NOT_FOUND.text == "Subscriber not found"


@given(st.lists(st.tuples(isdns, imsis, st.booleans(), reasons, st.just("2024-06-01T08:00:00Z")), max_size=5))
def test_a_page_of_subscriber_records_round_trips(records):
    assert p.parse_records(p.format_records(records)) == records
