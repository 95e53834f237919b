"""Real-name subscribers (实名制): the resident ID is validated, stored only encrypted and
hashed, shown masked; the blacklist; at most 5 live numbers per person and carrier."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date

import pytest
from sqlalchemy import select, text
from stdnum.cn import ric

from hkops import audit
from hkops.errors import Conflict, InvalidValue
from hkops.security.crypto import Keyring, rotate
from hkops.store.tables import metadata
from hkops.subscribers import service
from hkops.subscribers.tables import SEALED_COLUMNS, subscribers

RID = "11010519491231002X"  # the standard example: Beijing Chaoyang, 1949-12-31, female
MASKED = "11***************X"
CONTACT = "13800138000"


def make_rid(area: str = "110105", birth: str = "19900307", seq: str = "123") -> str:
    body = area + birth + seq
    return body + ric.calc_check_digit(body + "0")


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.generate()


def _all_stored_text(db) -> str:
    """Every value of every table, as text."""
    parts = []
    with db.read() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                parts.append(" ".join(str(v) for v in row))
    return "\n".join(parts)


def test_a_valid_registration_stores_no_clear_resident_id_anywhere(db, keyring, tmp_path):
    subscriber = service.register(db, name="张三", resident_id=RID, contact=CONTACT, actor="clerk", keyring=keyring)
    assert (subscriber.id_masked, subscriber.birth_year, subscriber.gender) == (MASKED, 1949, "female")
    assert subscriber.contact == "+8613800138000"
    assert RID not in _all_stored_text(db)
    assert RID not in repr(subscriber) and RID not in json.dumps(subscriber.as_dict(), default=str)
    if db.is_sqlite:
        path = db.url.split("///", 1)[1]
        db.dispose()
        raw = b"".join(open(p, "rb").read() for p in (path, path + "-wal") if os.path.exists(p))
        assert "张三".encode() in raw  # the bytes searched are really the data
        assert RID.encode() not in raw and RID[:17].encode() not in raw
    else:
        with db.read() as conn:
            dumped = conn.execute(text(
                "select string_agg(t::text, '|') from subscribers t")).scalar()
        assert "张三" in dumped and RID not in dumped and RID[:17] not in dumped
    # ...yet the ID is there, encrypted, for whoever holds the key.
    assert service.reveal_resident_id(db, subscriber.id, actor="auditor", keyring=keyring, reason="test").reveal() == RID


def test_a_wrong_check_character_is_refused_with_the_reason_and_the_id_masked(db, keyring):
    wrong = RID[:17] + "1"
    with pytest.raises(InvalidValue) as caught:
        service.register(db, name="张三", resident_id=wrong, contact=CONTACT, actor="clerk", keyring=keyring)
    assert caught.value.field == "resident_id"
    assert "check character should be X" in str(caught.value)
    assert "11***************1" in str(caught.value) and wrong not in str(caught.value)
    assert service.find(db, masked="110105********0021") == []


def test_a_birth_date_in_the_future_is_refused(db, keyring):
    future = make_rid(birth=f"{date.today().year + 1}0101")
    with pytest.raises(InvalidValue, match="birth date is in the future"):
        service.register(db, name="未来人", resident_id=future, contact=CONTACT, actor="clerk", keyring=keyring)


def test_the_same_person_registering_again_gets_the_same_subscriber_and_another_name_is_refused(db, keyring):
    first = service.register(db, name="张三", resident_id=RID, contact=CONTACT, actor="clerk", keyring=keyring)
    again = service.register(db, name="张三", resident_id=RID.lower(), contact="18607550000", actor="clerk",
                             keyring=keyring)
    assert again.id == first.id and not again.created and first.created
    with pytest.raises(Conflict, match=r"11\*{15}X is already registered as subscriber"):
        service.register(db, name="李四", resident_id=RID, contact=CONTACT, actor="clerk", keyring=keyring)
    assert [s.id for s in service.find(db, resident_id=RID, keyring=keyring)] == [first.id]


def test_a_blacklisted_id_is_refused_until_it_is_taken_off_the_list(db, keyring):
    assert not service.is_blacklisted(db, RID, keyring=keyring)
    assert service.blacklist_add(db, RID, "fraud report 2026-118", "risk", keyring=keyring) == MASKED
    assert service.is_blacklisted(db, RID, keyring=keyring)
    assert not service.is_blacklisted(db, make_rid(), keyring=keyring)
    with pytest.raises(Conflict, match=r"11\*{15}X is blacklisted \(fraud report 2026-118\)"):
        service.register(db, name="张三", resident_id=RID, contact=CONTACT, actor="clerk", keyring=keyring)
    with pytest.raises(Conflict, match="already blacklisted"):
        service.blacklist_add(db, RID, "again", "risk", keyring=keyring)
    service.blacklist_remove(db, RID, "risk", keyring=keyring)
    assert service.register(db, name="张三", resident_id=RID, contact=CONTACT, actor="clerk", keyring=keyring).created


def test_the_sixth_number_for_one_id_and_carrier_is_refused_while_another_carrier_and_a_freed_slot_are_fine(db, keyring):
    person = service.register(db, name="张三", resident_id=RID, contact=CONTACT, actor="clerk", keyring=keyring)
    other = service.register(db, name="李四", resident_id=make_rid(), contact=CONTACT, actor="clerk", keyring=keyring)
    with db.write() as conn:
        for n in range(5):
            service.bind_number(conn, person.id, f"1380013800{n}", "China Mobile", "lifecycle")
        assert service.count_numbers(conn, person.resident_id_hash, "中国移动") == 5
    with db.write() as conn, pytest.raises(Conflict) as caught:
        service.bind_number(conn, person.id, "13800138005", "China Mobile", "lifecycle")
    assert str(caught.value) == ("resident ID 11***************X already holds 5 China Mobile numbers (bound or on open "
                                 "orders); one person may hold at most 5 (一证五号)")
    with db.write() as conn:
        service.bind_number(conn, person.id, "18607550000", "China Unicom", "lifecycle")
        service.bind_number(conn, other.id, "13800138005", "China Mobile", "lifecycle")  # another person
        with pytest.raises(Conflict, match="already bound to subscriber"):
            service.bind_number(conn, person.id, "13800138005", "China Mobile", "lifecycle")
        service.unbind_number(conn, person.id, "13800138000", "lifecycle", reason="terminated")
        service.bind_number(conn, person.id, "13800138006", "China Mobile", "lifecycle")
        assert service.count_numbers(conn, person.resident_id_hash, "China Mobile") == 5
        assert service.count_numbers(conn, person.resident_id_hash, "China Unicom") == 1
    assert len(service.numbers_of(db, person.id)) == 6
    assert len(service.numbers_of(db, person.id, live_only=False)) == 7


def test_people_are_found_by_masked_id_and_the_masked_form_is_all_that_is_shown(db, keyring):
    cousin = "11010819500118058X"  # another person (Haidian, born 1950-01-18) with the same masked form
    for name, rid in (("张三", RID), ("王五", cousin), ("李四", make_rid())):
        service.register(db, name=name, resident_id=rid, contact=CONTACT, actor="clerk", keyring=keyring)
    shown = service.find(db, masked=MASKED.lower())
    assert [s.name for s in shown] == ["张三", "王五"]
    assert {s.birth_year for s in shown} == {1949, 1950}
    assert all(s.id_masked == MASKED for s in shown)
    # An older, wider mask someone still has on paper is narrowed to the one mask.
    assert [s.name for s in service.find(db, masked="110105********002X")] == ["张三", "王五"]
    with pytest.raises(InvalidValue, match="exactly one"):
        service.find(db, masked=MASKED, subscriber_id=1)


def test_audit_records_carry_no_clear_id_and_no_name(db, keyring):
    person = service.register(db, name="张三", resident_id=RID, contact=CONTACT, actor="clerk", keyring=keyring)
    service.blacklist_add(db, make_rid(), "stolen card", "risk", keyring=keyring)
    with db.write() as conn:
        service.bind_number(conn, person.id, "13800138000", "China Mobile", "lifecycle")
    with db.read() as conn:
        records = audit.query(conn)
    assert {r["action"] for r in records} == {"register", "blacklist", "bind_number"}
    dumped = json.dumps(records, default=str, ensure_ascii=False)
    assert RID not in dumped and make_rid() not in dumped and "张三" not in dumped
    assert {r["subject"] for r in records} == {str(person.id), make_rid()[:2] + "*" * 15 + make_rid()[-1:]}


def test_rotating_the_keyring_keeps_people_findable_without_rehashing(db, keyring):
    person = service.register(db, name="张三", resident_id=RID, contact=CONTACT, actor="clerk", keyring=keyring)
    service.blacklist_add(db, make_rid(), "fraud", "risk", keyring=keyring)
    newer = keyring.with_new_key()
    assert rotate(db, SEALED_COLUMNS, keyring=newer) == 2  # the ID token and the lookup key
    only_new = newer.without(keyring.active_id)
    assert [s.id for s in service.find(db, resident_id=RID, keyring=only_new)] == [person.id]
    assert service.is_blacklisted(db, make_rid(), keyring=only_new)
    assert service.reveal_resident_id(db, person.id, actor="auditor", keyring=only_new, reason="test").reveal() == RID
    with db.read() as conn:
        assert conn.execute(select(subscribers.c.resident_id_hash)).scalar() == person.resident_id_hash


# ---------------------------------------------------------------- CLI


def hkops(db, tmp_path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HKOPS_DATABASE_URL": db.url, "HKOPS_SECRET_KEY_FILE": str(tmp_path / "secret.key")}
    env.pop("HKOPS_SECRET_KEY", None)
    return subprocess.run([sys.executable, "-m", "hkops", *args], capture_output=True, text=True, env=env, timeout=120,
                          input=stdin if stdin is not None else "")


def test_the_cli_adds_and_shows_a_subscriber_masked_and_refuses_a_bad_id(db, tmp_path):
    added = hkops(db, tmp_path, "subscribers", "add", "--name", "张三", "--id", "-", "--contact", CONTACT, "--json",
                  stdin=RID + "\n")
    assert added.returncode == 0, added.stderr
    data = json.loads(added.stdout)
    assert data["id_masked"] == MASKED and data["created"] is True and RID not in added.stdout

    (tmp_path / "id.txt").write_text(RID.lower() + "\n")
    shown = hkops(db, tmp_path, "subscribers", "show", "--id-file", str(tmp_path / "id.txt"))
    assert shown.returncode == 0, shown.stderr
    assert MASKED in shown.stdout and "张三" in shown.stdout and RID not in shown.stdout

    bad = hkops(db, tmp_path, "subscribers", "add", "--name", "张三", "--id", "-", "--contact", CONTACT,
                stdin=RID[:17] + "1")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip() == "hkops: error: resident_id '11***************1': check character should be X"

    listed = hkops(db, tmp_path, "subscribers", "blacklist", "add", "--id", "-", "--reason", "fraud", stdin=make_rid())
    assert listed.returncode == 0 and "11***************9" in listed.stdout and make_rid() not in listed.stdout
    refused = hkops(db, tmp_path, "subscribers", "add", "--name", "李四", "--contact", CONTACT, stdin=make_rid())
    assert refused.returncode == 2 and "is blacklisted (fraud)" in refused.stderr  # asked for: read as typed
