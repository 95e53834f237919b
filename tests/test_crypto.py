"""Secrets at rest: AES-256-GCM tokens bound to their place, a keyring from the environment
or an owner-only key file, key rotation that never stops reads, and a Secret that never
prints."""

from __future__ import annotations

import logging
import os
import pickle
import stat
import threading

import pytest
from sqlalchemy import select

from hkops import carriers
from hkops.cards.batches import card_secrets, import_sim_file
from hkops.cards.tables import SEALED_COLUMNS, sims
from hkops.security.crypto import (
    KEY_ENV,
    KEY_FILE_ENV,
    Keyring,
    Secret,
    SecretError,
    count_by_key,
    load_keyring,
    new_key,
    retire_key,
    rotate,
)
from test_vendor_files import card_csv, make_cards


@pytest.fixture
def no_key_env(monkeypatch, tmp_path):
    """No HKOPS_SECRET_KEY, and the key file in a temporary folder."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    path = tmp_path / "keys" / "secret.key"
    monkeypatch.setenv(KEY_FILE_ENV, str(path))
    return path


def test_a_value_encrypted_for_a_place_decrypts_there_to_the_same_text():
    keyring = Keyring.generate("k1")
    for text in ("00112233445566778899AABBCCDDEEFF", "1234", "", "张三 110105194912310025"):
        token = keyring.encrypt(text, "sims.ki:89860012345678901234")
        assert token.startswith("v1.k1.")
        assert text.encode() not in token.encode() or text == ""
        assert keyring.decrypt(token, "sims.ki:89860012345678901234") == text
    assert keyring.encrypt(Secret("abc"), "x:1") != keyring.encrypt(Secret("abc"), "x:1")  # a fresh nonce each time


def test_a_token_moved_to_another_row_or_field_does_not_decrypt():
    keyring = Keyring.generate()
    token = keyring.encrypt("00112233445566778899AABBCCDDEEFF", "sims.ki:89860012345678901234")
    for context in ("sims.ki:89860012345678901235", "sims.opc:89860012345678901234", "sims.ki:", ""):
        with pytest.raises(SecretError, match="does not decrypt"):
            keyring.decrypt(token, context)


def test_a_token_with_any_character_changed_or_cut_does_not_decrypt():
    keyring = Keyring.generate("k1")
    token = keyring.encrypt("00112233445566778899AABBCCDDEEFF", "sims.ki:1")
    body_start = len("v1.k1.")
    for position in range(body_start, len(token)):
        flipped = "A" if token[position] != "A" else "B"
        tampered = token[:position] + flipped + token[position + 1:]
        with pytest.raises(SecretError):
            keyring.decrypt(tampered, "sims.ki:1")
    for broken in (token[:-1], token[:body_start + 10], token + "AA", "v2" + token[2:], "plain text", "v1.k1."):
        with pytest.raises(SecretError):
            keyring.decrypt(broken, "sims.ki:1")


def test_a_token_of_a_key_not_in_the_keyring_names_the_missing_key():
    token = Keyring.generate("gone").encrypt("x", "c:1")
    with pytest.raises(SecretError, match="key 'gone', which is not in the keyring"):
        Keyring.generate("k2").decrypt(token, "c:1")


def test_a_secret_prints_logs_and_formats_as_stars_and_cannot_be_pickled(caplog):
    secret = Secret("00112233445566778899AABBCCDDEEFF")
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", "%s" % secret, repr([secret]), repr({"ki": secret})]
    assert all("0011" not in text for text in shown) and shown[0] == "***"
    with caplog.at_level(logging.INFO):
        logging.getLogger("hkops.test").info("ki is %s", secret)
    assert "0011" not in caplog.text and "***" in caplog.text
    assert secret.reveal() == "00112233445566778899AABBCCDDEEFF" and secret == Secret(secret.reveal())
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    keyring = Keyring.generate("k1")
    assert repr(keyring) == "Keyring(active='k1', keys=['k1'])"
    assert keyring.dump().split(":")[1].strip() not in repr(keyring)


def test_the_key_file_is_created_owner_only_on_first_use_and_then_reused(no_key_env):
    assert not no_key_env.exists()
    first = load_keyring()
    assert stat.S_IMODE(no_key_env.stat().st_mode) == 0o600
    content = no_key_env.read_bytes()
    token = first.encrypt("secret", "c:1")
    again = load_keyring()
    assert no_key_env.read_bytes() == content
    assert again.active_id == first.active_id and again.decrypt(token, "c:1") == "secret"
    assert [p.name for p in no_key_env.parent.iterdir()] == ["secret.key"]  # no temporary file left


def test_processes_starting_together_all_end_up_with_the_one_key_created(no_key_env):
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(load_keyring().active_id)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert load_keyring().active_id == results[0]


def test_a_key_file_that_others_may_read_is_refused(no_key_env):
    load_keyring()
    os.chmod(no_key_env, 0o644)
    with pytest.raises(SecretError, match="chmod 600"):
        load_keyring()


def test_hkops_secret_key_wins_over_the_key_file_and_its_first_entry_encrypts(no_key_env, monkeypatch):
    old, new = Keyring.generate("old"), Keyring.generate("new")
    token = old.encrypt("x", "c:1")
    monkeypatch.setenv(KEY_ENV, f"{new.dump(',')},{old.dump(',')}")
    keyring = load_keyring()
    assert keyring.key_ids == ["new", "old"] and keyring.active_id == "new"
    assert keyring.decrypt(token, "c:1") == "x"
    assert not no_key_env.exists()
    bare = Keyring.generate().dump(",").split(":", 1)[1]  # one key without an id
    monkeypatch.setenv(KEY_ENV, bare)
    assert load_keyring().active_id.startswith("k")
    for bad, reason in (("id:bm90IGEga2V5", "is 9 bytes, a key is 32"), ("a b:" + bare, "key id"), ("x:!!", "not base64")):
        monkeypatch.setenv(KEY_ENV, bad)
        with pytest.raises(SecretError, match=reason):
            load_keyring()
    with pytest.raises(SecretError, match=KEY_ENV):
        new_key()


def test_rotation_reencrypts_in_batches_and_old_tokens_decrypt_until_the_old_key_is_retired(db, tmp_path, no_key_env):
    with db.write() as conn:
        carriers.configure(conn, ["China Mobile"], actor="tester")
    cards = make_cards(7)
    path = tmp_path / "batch.csv"
    path.write_text(card_csv(cards))
    import_sim_file(db, path, carrier="China Mobile", actor="tester")  # the key file's first key
    first = load_keyring()
    with db.read() as conn:
        before = dict(conn.execute(select(sims.c.iccid, sims.c.ki_enc)).all())
    assert {first.key_id_of(t) for t in before.values()} == {first.active_id}

    second_id = new_key()
    keyring = load_keyring()
    assert keyring.key_ids == [second_id, first.active_id]
    # Reads keep working before the rotation...
    assert card_secrets(db, cards[3]["iccid"])["ki"].reveal() == cards[3]["ki"]
    with pytest.raises(SecretError, match="still encrypts 49 value"):
        retire_key(first.active_id, db=db, columns=SEALED_COLUMNS)

    batches: list[int] = []
    assert rotate(db, SEALED_COLUMNS, batch_size=3, progress=batches.append) == 49  # 7 cards x 7 secrets
    assert batches == [21, 21, 7]
    assert count_by_key(db, SEALED_COLUMNS) == {second_id: 49, first.active_id: 0, "other": 0}
    with db.read() as conn:
        after = dict(conn.execute(select(sims.c.iccid, sims.c.ki_enc)).all())
    assert all(after[i] != before[i] and keyring.key_id_of(after[i]) == second_id for i in before)
    assert rotate(db, SEALED_COLUMNS) == 0  # nothing left to do
    # ...and after it, with both keys still there: old tokens (a backup, say) still open.
    iccid = cards[0]["iccid"]
    assert keyring.decrypt(before[iccid], f"sims.ki:{iccid}") == cards[0]["ki"]

    retire_key(first.active_id, db=db, columns=SEALED_COLUMNS)
    retired = load_keyring()
    assert retired.key_ids == [second_id]
    assert stat.S_IMODE(no_key_env.stat().st_mode) == 0o600
    assert {name: s.reveal() if s else None for name, s in card_secrets(db, iccid).items()} == {
        name: cards[0][name] for name in ("ki", "opc", "pin1", "puk1", "pin2", "puk2", "adm1")}
    with pytest.raises(SecretError, match="not in the keyring"):
        retired.decrypt(before[iccid], f"sims.ki:{iccid}")
    with pytest.raises(SecretError, match="active key"):
        retire_key(second_id, db=db, columns=SEALED_COLUMNS)
