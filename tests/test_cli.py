"""The ``hkops`` command: every number command of the issue, ``--json`` that is only JSON,
and bad input that exits 2 with a one-line reason and changes nothing.

A few tests run the real command as a subprocess (about a second each); the rest call
the same entry point in this process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest

from hkops.numbers import service
from strategies import audit_count, clock, history, hkops_cli, snapshot  # noqa: F401

N = "13800130127"


def hkops(db, *args: str, actor: str = "cli-user") -> subprocess.CompletedProcess:
    """Run ``python -m hkops ...`` against ``db``."""
    env = {**os.environ, "HKOPS_DATABASE_URL": db.url, "HKOPS_ACTOR": actor}
    return subprocess.run([sys.executable, "-m", "hkops", *args], capture_output=True, text=True, env=env, timeout=120)


def one_line_refusal(result: subprocess.CompletedProcess | tuple, *fragments: str) -> None:
    status, out, err = (result.returncode, result.stdout, result.stderr) if hasattr(result, "returncode") else result
    assert status == 2, err
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("hkops: error: ")
    for fragment in fragments:
        assert fragment in err


sqlite_only = pytest.mark.parametrize("db", ["sqlite"], indirect=True)
postgresql_only = pytest.mark.parametrize("db", ["postgresql"], indirect=True)


# --------------------------------------------------------------------- as a subprocess


@sqlite_only
def test_json_output_is_only_json_on_stdout(world):
    found = hkops(world, "numbers", "search", "*8888", "--region", "北京", "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert sorted(h["msisdn"] for h in hits) == ["13800138888", "18910108888"]
    assert hits[0]["display"] == "138 0013 8888" and hits[0]["price"] == "2888.00"


@sqlite_only
def test_bad_input_exits_2_with_a_one_line_reason_and_changes_nothing(world):
    service.reserve(world, N, "C1", actor="ana")
    before, records = snapshot(world), audit_count(world)
    one_line_refusal(hkops(world, "numbers", "reserve", N, "--for", "C2"),
                     f"cannot reserve {N} for C2: it is reserved for C1 until")
    one_line_refusal(hkops(world, "numbers", "search", "13x!"), "pattern '13x!'", "not !")
    assert snapshot(world) == before and audit_count(world) == records


@sqlite_only
def test_importing_a_bad_file_lists_every_bad_line_and_imports_nothing(world, tmp_path):
    path = tmp_path / "pool.csv"
    lines = ["msisdn,source"] + [f"1380014{i:04d},vendor" for i in range(2_000)]
    lines[10] = "1380014000X,vendor"
    lines[20] = "13800130001,vendor"
    lines[1_500] = "13800140005,vendor"
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8-sig")
    service.add_blocks(world, ["1380014"], actor="ana", empty=True)
    before = snapshot(world)
    result = hkops(world, "numbers", "import", str(path))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"hkops: error: {path}: 3 bad line(s); nothing imported",
        "  line 11: msisdn '1380014000X': must contain digits only",
        "  line 21: msisdn '13800130001': is already in the pool",
        "  line 1501: msisdn '13800140005': repeats line 7",
    ]
    assert snapshot(world) == before


@postgresql_only
def test_the_cli_allocates_and_refuses_on_postgresql(world, clock):
    taken = hkops(world, "numbers", "allocate", "--count", "2", "--region", "北京", "--grade", "AAAAA",
                  "--to", "C9", "--json")
    assert taken.returncode == 0, taken.stderr
    assert sorted(json.loads(taken.stdout)) == ["13800133333", "18910100000"]
    for msisdn in ("13800133333", "18910100000"):
        assert (service.get_number(world, msisdn).state, service.get_number(world, msisdn).holder) == ("assigned", "C9")
        assert (history(world, msisdn)[-1]["actor"], history(world, msisdn)[-1]["action"]) == ("cli-user", "allocate")
    service.allocate(world, N, "C1", actor="ana")
    service.terminate(world, N, actor="ana")
    before, records = snapshot(world), audit_count(world)
    one_line_refusal(hkops(world, "numbers", "recycle", N), f"cannot recycle {N}: its cool-off ends at")
    assert snapshot(world) == before and audit_count(world) == records


# --------------------------------------------------------------------- every command, in this process


def test_setting_up_carriers_settings_and_blocks_from_the_command_line(db, hkops_cli, tmp_path):
    assert hkops_cli(db, "carriers", "list")[1] == "no carriers configured (hkops carriers add ...)\n"
    assert hkops_cli(db, "carriers", "add", "中国移动", "China Unicom")[1] == (
        "configured carriers: China Mobile, China Unicom\n")
    one_line_refusal(hkops_cli(db, "carriers", "add", "Vodafone"), "carrier 'Vodafone': unknown carrier")
    assert hkops_cli(db, "settings", "set", "quarantine_days", "45")[1] == "quarantine_days = 45\n"
    one_line_refusal(hkops_cli(db, "settings", "set", "quarantine_days", "soon"), "quarantine_days 'soon'")
    one_line_refusal(hkops_cli(db, "settings", "set", "colour", "red"), "setting 'colour': unknown setting")
    status, out, _ = hkops_cli(db, "settings", "show", "--json")
    assert status == 0 and json.loads(out)["quarantine_days"] == "45" and json.loads(out)["reservation_ttl"] == "30m"

    status, out, _ = hkops_cli(db, "numbers", "add-block", "1380013", "1860755")
    assert status == 0 and out.splitlines() == [
        "added block 1380013: China Mobile, 北京市, 10000 numbers available",
        "added block 1860755: China Unicom, 广东省深圳市, 10000 numbers available"]
    one_line_refusal(hkops_cli(db, "numbers", "add-block", "1891010"), "belongs to China Telecom")
    one_line_refusal(hkops_cli(db, "numbers", "add-block", "13800"), "block '13800': a block prefix is 7 digits, got 5")
    assert hkops_cli(db, "numbers", "add-block", "1380014", "--planned")[0] == 0
    assert hkops_cli(db, "numbers", "open", "1380014", "--reason", "launch")[1] == "opened block 1380014: 10000 numbers available\n"
    assert hkops_cli(db, "numbers", "add-block", "1380015", "--empty")[1] == (
        "added block 1380015: China Mobile, 北京市, no numbers yet\n")
    path = tmp_path / "new.txt"
    path.write_text("\ufeff13800150001\r\n13800158888\r\n\r\n", encoding="utf-8")
    assert hkops_cli(db, "numbers", "import", str(path))[1] == f"imported 2 numbers from {path}\n"
    status, out, _ = hkops_cli(db, "numbers", "stats", "--json")
    stats = json.loads(out)
    assert (stats["total"], stats["blocks"], stats["by_state"]["available"]) == (30_002, 4, 30_002)
    assert stats["by_carrier"] == {"China Mobile": 20_002, "China Unicom": 10_000}


def test_the_lifecycle_commands_move_numbers_and_report_each_move(world, hkops_cli, clock):
    run = hkops_cli
    status, out, err = run(world, "numbers", "reserve", N, "--for", "C1", "--ttl", "2h", "--reason", "deciding")
    assert (status, out) == (0, "138 0013 0127: available -> reserved (C1)\n")
    assert service.get_number(world, N).reserved_until == clock.now + timedelta(hours=2)
    assert json.loads(run(world, "numbers", "allocate", N, "--to", "C1", "--json")[1]) == [N]
    assert run(world, "numbers", "release", N)[1] == "138 0013 0127: assigned -> available\n"
    assert run(world, "numbers", "block", N, "--reason", "fraud")[1] == "138 0013 0127: available -> blocked\n"
    assert json.loads(run(world, "numbers", "unblock", N, "--json")[1])["to_state"] == "available"
    run(world, "numbers", "allocate", N, "--to", "C1")
    assert run(world, "numbers", "terminate", N)[1] == "138 0013 0127: assigned -> quarantined\n"
    one_line_refusal(run(world, "numbers", "reclaim", N, "--for", "C2"), "only its last holder (C1)")
    assert run(world, "numbers", "reclaim", N, "--for", "C1")[1] == "138 0013 0127: quarantined -> assigned (C1)\n"
    run(world, "numbers", "terminate", N)
    one_line_refusal(run(world, "numbers", "recycle", N), "cool-off ends at")
    one_line_refusal(run(world, "numbers", "recycle"), "give either one MSISDN or --due")
    assert json.loads(run(world, "numbers", "recycle", "--due", "--json")[1]) == []
    clock.advance(days=90)
    assert json.loads(run(world, "numbers", "recycle", "--due", "--json")[1]) == [N]
    run(world, "numbers", "reserve", "18607550001", "--for", "C3", "--ttl", "5m")
    clock.advance(minutes=5)
    assert run(world, "numbers", "expire")[1] == "1 reservation(s) expired\n"

    status, out, _ = run(world, "numbers", "show", N, "--json")
    shown = json.loads(out)
    assert shown["number"]["state"] == "available"
    assert [h["action"] for h in shown["history"]][:3] == ["recycle", "terminate", "reclaim"]
    assert all(h["actor"] == "cli-user" and h["at"].endswith("+08:00") for h in shown["history"])
    _, out, _ = run(world, "numbers", "show", N)
    assert out.startswith("138 0013 0127  available  grade ORDINARY (level 1)  holder -\n")


def test_the_search_and_batch_commands_take_every_filter(world, hkops_cli):
    status, out, _ = hkops_cli(world, "numbers", "search", "*8888", "--carrier", "中国联通")
    assert status == 0 and out.splitlines()[-1] == "1 number(s)" and out.startswith("186 0755 8888  China Unicom")
    _, out, _ = hkops_cli(world, "numbers", "search", "ABCD", "--region", "Shenzhen", "--min-price", "888",
                          "--max-price", "888.00", "--state", "available", "--limit", "3", "--json")
    hits = json.loads(out)
    assert len(hits) == 3 and {(h["grade"], h["price"], h["msisdn"][:7]) for h in hits} == {("ABCD", "888.00", "1860755")}
    one_line_refusal(hkops_cli(world, "numbers", "search", "--min-price", "1.005"), "min-price '1.005'")
    one_line_refusal(hkops_cli(world, "numbers", "search", "--limit", "many"), "Invalid value for '--limit'")
    one_line_refusal(hkops_cli(world, "numbers", "search", "1380013888888"), "has 13 positions")
    one_line_refusal(hkops_cli(world, "numbers", "search", ""), "pattern '': is empty")
    before = snapshot(world)
    one_line_refusal(hkops_cli(world, "numbers", "allocate", "--count", "4", "--region", "北京", "--grade", "AAAAA",
                               "--to", "AG"), "only 2 available numbers match", "none allocated")
    one_line_refusal(hkops_cli(world, "numbers", "allocate", N, "--count", "2", "--to", "AG"), "not both")
    one_line_refusal(hkops_cli(world, "numbers", "allocate", "--to", "AG"), "give either one MSISDN or --count")
    one_line_refusal(hkops_cli(world, "numbers", "allocate", "--count", "2"), "Missing option '--to'")
    assert snapshot(world) == before


def test_regrade_takes_a_rule_file_and_refuses_a_broken_one(world, hkops_cli, tmp_path):
    from hkops.numbers.grading import default_rules_path

    path = tmp_path / "rules.toml"
    path.write_text(default_rules_path().read_text(encoding="utf-8").replace('price = "2888"', 'price = "3000"'),
                    encoding="utf-8")
    status, out, _ = hkops_cli(world, "numbers", "regrade", "--rules", str(path))
    assert (status, out) == (0, "27 number(s) changed grade: AAAA 27\n")
    assert service.get_number(world, "13800138888").price_fen == 300_000
    path.write_text('[[grade]]\nclass = "ONLY"\nends = ["8"]\nlevel = 1\n', encoding="utf-8")
    before = snapshot(world)
    one_line_refusal(hkops_cli(world, "numbers", "regrade", "--rules", str(path)), "the last [[grade]] must have no test")
    assert snapshot(world) == before


def test_an_unreachable_database_gives_a_one_line_reason_and_exit_status_1():
    class Unreachable:
        url = "postgresql://postgres@127.0.0.1:1/none"

    result = hkops(Unreachable(), "numbers", "stats")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("hkops: error: the database cannot be used: ")
