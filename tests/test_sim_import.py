"""Receiving SIM batches: a vendor file becomes cards in stock with their secrets encrypted,
all cards or none, one audit record per batch, and no secret ever in the database, the
audit trail, an error or a return value in plain text."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from hkops import audit, carriers
from hkops.cards.batches import card_secrets, import_sim_file
from hkops.cards.tables import sim_batches, sims
from hkops.errors import InvalidFile, InvalidValue, NotFound
from hkops.security.crypto import Keyring
from strategies import history, snapshot
from test_vendor_files import COLUMNS, card_csv, card_out, make_cards

SECRETS = ("ki", "opc", "pin1", "puk1", "pin2", "puk2", "adm1")


@pytest.fixture
def operator(db):
    """An operator running China Mobile and China Unicom, with no cards yet."""
    with db.write() as conn:
        carriers.configure(conn, ["中国移动", "China Unicom"], actor="tester")
    return db


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.generate("test1")


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def count(db, table=sims) -> int:
    with db.read() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


def refused(db, error, *args, **kwargs):
    before = snapshot(db)
    with pytest.raises(error) as caught:
        import_sim_file(db, *args, **kwargs)
    assert snapshot(db) == before
    return caught.value


def test_a_vendor_file_becomes_a_batch_of_cards_in_stock_with_one_audit_record(operator, tmp_path, keyring):
    cards = make_cards(20)
    path = write(tmp_path, "CMCC-2026-11.csv", card_csv(cards))
    seen: list[int] = []
    summary = import_sim_file(operator, path, carrier="中国移动", actor="ana", keyring=keyring,
                              location="Beijing warehouse", progress=seen.append)
    assert (summary.name, summary.carrier, summary.quantity, summary.layout, summary.source_file, summary.received_by) == (
        "CMCC-2026-11", "China Mobile", 20, "csv", "CMCC-2026-11.csv", "ana")
    assert (summary.first_iccid, summary.last_iccid) == (cards[0]["iccid"], cards[-1]["iccid"])
    assert sum(seen) == 20
    with operator.read() as conn:
        rows = conn.execute(select(sims).order_by(sims.c.iccid)).mappings().all()
        batch = conn.execute(select(sim_batches)).mappings().one()
    assert [(r["iccid"], r["imsi"], r["state"], r["location"], r["batch_id"], r["msisdn"]) for r in rows] == [
        (c["iccid"], c["imsi"], "in_stock", "Beijing warehouse", batch["id"], None) for c in cards]
    assert (batch["name"], batch["carrier"], batch["quantity"], batch["received_by"]) == ("CMCC-2026-11", "China Mobile", 20, "ana")
    for card in (cards[0], cards[13]):
        secrets = card_secrets(operator, card["iccid"], keyring=keyring)
        assert {name: secrets[name].reveal() for name in SECRETS} == {name: card[name] for name in SECRETS}
    records = history(operator, "CMCC-2026-11")
    assert [(r["actor"], r["entity"], r["action"], r["to_state"]) for r in records] == [("ana", "sim_batch", "receive", "in_stock")]
    assert records[0]["details"]["count"] == 20
    text = json.dumps(records, default=str) + repr(summary)
    assert not any(card[name] in text for card in cards for name in ("ki", "opc", "puk1", "puk2", "adm1"))


def test_an_out_file_records_its_vendor_and_header_and_keeps_key_like_fields_encrypted(operator, tmp_path, keyring):
    cards = make_cards(3)
    for n, card in enumerate(cards):
        card.update({"acc": f"000{n + 1}", "kic1": f"{n + 7:032X}"})
    path = write(tmp_path, "acme.out", card_out(cards, COLUMNS + ("acc", "kic1")))
    summary = import_sim_file(operator, path, carrier="China Mobile", actor="ana", keyring=keyring, batch_name="ACME-1")
    assert (summary.vendor, summary.layout, summary.extra_columns, summary.sealed_columns) == (
        "Acme Cards", "out", ("acc",), ("kic1",))
    with operator.read() as conn:
        batch = conn.execute(select(sim_batches)).mappings().one()
        extra = conn.execute(select(sims.c.extra, sims.c.extra_enc).where(sims.c.iccid == cards[1]["iccid"])).one()
    assert json.loads(batch["header"])["Batch"] == "B-2026-11" and "Transport key" not in batch["header"]
    assert keyring.decrypt(batch["header_enc"], "sim_batches.header:ACME-1") == json.dumps(
        {"Transport key": "0123456789ABCDEF0123456789ABCDEF"})
    assert json.loads(extra.extra) == {"acc": "0002"} and cards[1]["kic1"] not in extra.extra_enc
    assert card_secrets(operator, cards[1]["iccid"], keyring=keyring)["kic1"].reveal() == cards[1]["kic1"]


def test_a_bad_luhn_digit_at_line_537_of_1000_imports_nothing_and_lists_that_line(operator, tmp_path, keyring):
    cards = make_cards(999)
    good = cards[535]["iccid"]
    cards[535]["iccid"] = good[:-1] + str((int(good[-1]) + 3) % 10)
    error = refused(operator, InvalidFile, write(tmp_path, "cards.csv", card_csv(cards)),
                    carrier="China Mobile", actor="ana", keyring=keyring)
    assert [(p.line, p.field, p.value) for p in error.problems] == [(537, "iccid", cards[535]["iccid"])]
    assert "line 537" in str(error) and "nothing imported" in str(error)
    assert count(operator) == 0 and count(operator, sim_batches) == 0


def test_an_imsi_of_another_carrier_imports_nothing(operator, tmp_path, keyring):
    cards = make_cards(5)
    cards[4]["imsi"] = "460030000000004"
    error = refused(operator, InvalidFile, write(tmp_path, "mixed.csv", card_csv(cards)),
                    carrier="China Mobile", actor="ana", keyring=keyring)
    assert [(p.line, p.reason) for p in error.problems] == [(6, "MNC 03 belongs to China Telecom, not China Mobile")]


def test_cards_received_before_are_refused_with_their_batch_and_nothing_is_imported(operator, tmp_path, keyring):
    import_sim_file(operator, write(tmp_path, "first.csv", card_csv(make_cards(10))), carrier="China Mobile",
                    actor="ana", keyring=keyring)
    overlap = make_cards(10, start=8, seed=1)  # the first two are cards 8 and 9 again
    error = refused(operator, InvalidFile, write(tmp_path, "second.csv", card_csv(overlap)),
                    carrier="China Mobile", actor="ana", keyring=keyring)
    assert [(p.line, p.field, p.reason) for p in error.problems] == [
        (2, "iccid", "is already in stock (batch first)"), (2, "imsi", "is already in stock (batch first)"),
        (3, "iccid", "is already in stock (batch first)"), (3, "imsi", "is already in stock (batch first)")]
    assert count(operator) == 10


def test_a_batch_name_in_use_or_a_carrier_not_configured_is_refused(operator, tmp_path, keyring):
    import_sim_file(operator, write(tmp_path, "b.csv", card_csv(make_cards(2))), carrier="China Mobile",
                    actor="ana", keyring=keyring, batch_name="B1")
    error = refused(operator, InvalidFile, write(tmp_path, "c.csv", card_csv(make_cards(2, start=5))),
                    carrier="China Mobile", actor="ana", keyring=keyring, batch_name="B1")
    assert [(p.field, p.reason) for p in error.problems] == [("batch", "was received already (give another batch name)")]
    telecom = write(tmp_path, "t.csv", card_csv(make_cards(2, mnc="03", issuer="03")))
    error = refused(operator, InvalidValue, telecom, carrier="China Telecom", actor="ana", keyring=keyring)
    assert "is not a configured carrier (China Mobile, China Unicom)" in str(error)
    error = refused(operator, InvalidValue, telecom, carrier="Vodafone", actor="ana", keyring=keyring)
    assert "unknown carrier" in str(error)
    with pytest.raises(NotFound):
        card_secrets(operator, "89860000000000000000", keyring=keyring)


def _database_bytes(db) -> bytes:
    """Everything the database keeps on disk: the SQLite file and its WAL, or a pg_dump."""
    if db.dialect == "sqlite":
        db.dispose()
        path = make_url(db.url).database
        return b"".join(open(p, "rb").read() for p in (path, path + "-wal") if os.path.exists(p))
    pg_dump = shutil.which("pg_dump") or "/usr/bin/pg_dump"
    if not os.path.exists(pg_dump):
        pytest.skip("pg_dump is not installed")
    url = make_url(db.url).set(drivername="postgresql").render_as_string(hide_password=False)
    return subprocess.run([pg_dump, "--no-owner", url], check=True, capture_output=True, timeout=60).stdout


def test_known_ki_values_appear_nowhere_in_the_database_in_plain_text(operator, tmp_path, keyring):
    cards = make_cards(50, seed=42)
    # A refused file first: its secrets must not leak through the error either.
    bad = [dict(card) for card in cards]
    bad[7]["iccid"] = bad[7]["iccid"][:-1] + str((int(bad[7]["iccid"][-1]) + 1) % 10)
    with pytest.raises(InvalidFile) as caught:
        import_sim_file(operator, write(tmp_path, "bad.csv", card_csv(bad)), carrier="China Mobile", actor="ana",
                        keyring=keyring)
    summary = import_sim_file(operator, write(tmp_path, "good.csv", card_csv(cards)), carrier="China Mobile",
                              actor="ana", keyring=keyring)
    assert summary.quantity == 50
    with operator.read() as conn:
        trail = json.dumps(audit.query(conn, limit=1000), default=str)
    dump = _database_bytes(operator)
    assert cards[0]["iccid"].encode() in dump  # the search does see the data
    for card in cards:
        for name in ("ki", "opc"):
            for form in (card[name].upper(), card[name].lower()):
                assert form.encode() not in dump, f"{name} of {card['iccid']} is in the database in plain text"
                assert form not in str(caught.value) and form not in trail and form not in repr(summary)
