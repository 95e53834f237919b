"""``hkops sims import`` from the command line: a good batch, and a bad one that imports nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from sqlalchemy import func, select

from hkops import carriers
from hkops.cards.tables import sims
from test_vendor_files import card_csv, make_cards


def hkops(db, tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HKOPS_DATABASE_URL": db.url, "HKOPS_SECRET_KEY_FILE": str(tmp_path / "secret.key")}
    return subprocess.run([sys.executable, "-m", "hkops", *args], capture_output=True, text=True, env=env, timeout=120)


def test_a_vendor_file_is_received_as_a_batch_and_a_bad_one_changes_nothing(db, tmp_path):
    with db.write() as conn:
        carriers.configure(conn, ["China Mobile"], actor="tester")
    cards = make_cards(50)
    good = tmp_path / "batch-1.csv"
    good.write_text(card_csv(cards), encoding="utf-8")
    result = hkops(db, tmp_path, "sims", "import", str(good), "--carrier", "中国移动", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["quantity"] == 50
    assert cards[0]["ki"] not in result.stdout + result.stderr

    again = hkops(db, tmp_path, "sims", "import", str(good), "--carrier", "China Mobile", "--batch", "second")
    assert again.returncode == 2 and again.stdout == ""
    assert "nothing imported" in again.stderr.splitlines()[0]
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(sims)).scalar() == 50


def test_keys_rotate_moves_every_stored_secret_to_the_new_key_and_the_old_one_can_then_retire(db, tmp_path):
    with db.write() as conn:
        carriers.configure(conn, ["China Mobile"], actor="tester")
    batch = tmp_path / "batch.csv"
    batch.write_text(card_csv(make_cards(20)), encoding="utf-8")
    assert hkops(db, tmp_path, "sims", "import", str(batch), "--carrier", "China Mobile").returncode == 0
    old = json.loads(hkops(db, tmp_path, "keys", "status", "--json").stdout)["active"]
    assert hkops(db, tmp_path, "keys", "new").returncode == 0
    refused = hkops(db, tmp_path, "keys", "retire", old)
    assert refused.returncode == 2 and "still encrypts" in refused.stderr
    assert hkops(db, tmp_path, "keys", "rotate").returncode == 0
    status = json.loads(hkops(db, tmp_path, "keys", "status", "--json").stdout)
    assert status["active"] != old and status["values_by_key"][old] == 0
    assert status["values_by_key"][status["active"]] == 20 * 7
    assert hkops(db, tmp_path, "keys", "retire", old).returncode == 0
