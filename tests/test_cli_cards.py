"""The card lifecycle from the command line against ``hkops hlr serve`` over TCP:
activation while the HLR is down stays pending until ``hkops hlr sync``; a loss report
and a replacement; ``cards show``; ``hlr reconcile``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from test_cli_hlr import start, stop
from test_subscribers import make_rid
from test_vendor_files import card_csv, make_cards

N = "13800130127"


def run(db, tmp_path, hlr_port, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "HKOPS_DATABASE_URL": db.url, "HKOPS_SECRET_KEY_FILE": str(tmp_path / "secret.key"),
           "HKOPS_HLR": f"127.0.0.1:{hlr_port}", "HKOPS_ACTOR": "ana"}
    return subprocess.run([sys.executable, "-m", "hkops", *args], capture_output=True, text=True, env=env, timeout=120,
                          input=stdin)


def ok(result: subprocess.CompletedProcess) -> dict | list:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_card_goes_pending_while_the_hlr_is_down_and_is_lost_and_replaced_once_it_is_back(world, tmp_path):
    cards = make_cards(2)
    (tmp_path / "cards.csv").write_text(card_csv(cards), encoding="utf-8")
    down = 1
    assert run(world, tmp_path, down, "sims", "import", str(tmp_path / "cards.csv"), "--carrier", "China Mobile",
               "--location", "WH-BJ").returncode == 0
    rid = make_rid()
    person = ok(run(world, tmp_path, down, "subscribers", "add", "--name", "王芳", "--id", "-",
                    "--contact", "13900000000", "--json", stdin=rid))
    old, new = cards[0]["iccid"], cards[1]["iccid"]
    ok(run(world, tmp_path, down, "cards", "pair", old, N, "--subscriber", str(person["id"]), "--json"))
    pending = ok(run(world, tmp_path, down, "cards", "activate", old, "--json"))
    assert (pending["state"], pending["pending_action"]) == ("paired", "activate")

    process, port = start(tmp_path / "hlr")
    try:
        assert "1 confirmed" in run(world, tmp_path, port, "hlr", "sync").stdout
        assert ok(run(world, tmp_path, port, "cards", "report-loss", old, "--json"))["state"] == "lost"
        replaced = ok(run(world, tmp_path, port, "cards", "replace", old, new, "--id", "-", "--json", stdin=rid))
        assert (replaced["state"], replaced["msisdn"]) == ("active", N)
        shown = ok(run(world, tmp_path, port, "cards", "show", N, "--json"))
        assert shown["card"]["iccid"] == new and shown["hlr"]["imsi"] == cards[1]["imsi"]
        assert shown["subscriber"]["id_masked"] == rid[:2] + "*" * 15 + rid[-1:]
        assert rid not in json.dumps(shown) and cards[1]["ki"] not in json.dumps(shown)
        assert ok(run(world, tmp_path, port, "hlr", "reconcile", "--json"))["differences"] == []
        refused = run(world, tmp_path, port, "cards", "lift-loss", old)
        assert refused.returncode == 2 and "final" in refused.stderr
    finally:
        stop(process)


def test_a_suspension_the_hlr_refuses_shows_in_hlr_pending_and_is_abandoned_or_retried(world, tmp_path):
    from hkops.network import ProvisioningClient, TcpTransport, rmv_sub

    cards = make_cards(1)
    (tmp_path / "cards.csv").write_text(card_csv(cards), encoding="utf-8")
    iccid = cards[0]["iccid"]
    process, port = start(tmp_path / "hlr")
    try:
        assert run(world, tmp_path, port, "sims", "import", str(tmp_path / "cards.csv"), "--carrier", "China Mobile",
                   "--location", "WH-BJ").returncode == 0
        person = ok(run(world, tmp_path, port, "subscribers", "add", "--name", "王芳", "--id", "-",
                        "--contact", "13900000000", "--json", stdin=make_rid()))
        ok(run(world, tmp_path, port, "cards", "pair", iccid, N, "--subscriber", str(person["id"]), "--json"))
        assert ok(run(world, tmp_path, port, "cards", "activate", iccid, "--json"))["state"] == "active"
        ProvisioningClient(TcpTransport("127.0.0.1", port)).run_many([rmv_sub(N)])  # the HLR loses it

        card = ok(run(world, tmp_path, port, "cards", "suspend", iccid, "--why", "arrears", "--json"))
        assert (card["state"], card["network_sync"], card["pending_action"]) == ("active", "failed", None)
        shown = run(world, tmp_path, port, "hlr", "pending")
        assert "failed" in shown.stdout and "3001" in shown.stdout and "0 pending, 1 refused" in shown.stdout
        assert ok(run(world, tmp_path, port, "hlr", "pending", "--json"))[0]["state"] == "failed"
        refused = run(world, tmp_path, port, "hlr", "abandon", iccid)  # --reason is required
        assert refused.returncode == 2

        again = ok(run(world, tmp_path, port, "hlr", "retry", iccid, "--json"))  # still unknown to the HLR
        assert again["network_sync"] == "failed"
        assert ok(run(world, tmp_path, port, "hlr", "reconcile", "--fix", "--json"))["differences"]
        done = ok(run(world, tmp_path, port, "hlr", "retry", iccid, "--json"))
        assert (done["state"], done["network_sync"]) == ("suspended", "synced")
        nothing = run(world, tmp_path, port, "hlr", "abandon", iccid, "--reason", "x")
        assert nothing.returncode == 2 and "no move the HLR refused" in nothing.stderr
        assert "0 pending, 0 refused" in run(world, tmp_path, port, "hlr", "pending").stdout
    finally:
        stop(process)
