"""``hkops usage stream``, ``hkops monitor`` and ``hkops alerts`` from the command line."""

from __future__ import annotations

import json

from test_cli_usage import hkops


def test_stream_monitor_and_alerts_from_the_command_line(tmp_path):
    database, out = tmp_path / "hkops.db", str(tmp_path / "usage")
    made = hkops("usage", "stream", "--synthetic", "--cards", "3000", "--rate", "3000", "--duration", "1.5",
                 "--clone-share", "0.02", "--out", out, "--json", database=database)
    assert made.returncode == 0, made.stderr
    streamed = json.loads(made.stdout)
    assert streamed["records"] > 1000 and streamed["batches"] >= 3
    ran = hkops("monitor", "--once", "--out", out, "--json", database=database)
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    assert (summary["batches"], summary["records"]) == (streamed["batches"], streamed["records"])
    assert summary["raised"] > 0 and summary["watermark"] == streamed["last_batch"]
    again = json.loads(hkops("monitor", "--once", "--out", out, "--json", database=database).stdout)
    assert (again["batches"], again["raised"]) == (0, 0)

    listed = json.loads(hkops("alerts", "list", "--state", "open", "--json", database=database).stdout)
    assert len(listed) == summary["raised"] and {"impossible_travel"} <= {a["rule"] for a in listed}
    first = listed[-1]["id"]
    assert hkops("alerts", "ack", str(first), "--reason", "looking", database=database).returncode == 0
    twice = hkops("alerts", "ack", str(first), database=database)
    assert twice.returncode == 2 and f"alert {first} is already acknowledged" in twice.stderr
    closed = hkops("alerts", "close", str(first), "--reason", "cloned SIM blocked", "--json", database=database)
    assert closed.returncode == 0 and json.loads(closed.stdout)["state"] == "closed"
    assert json.loads(hkops("check", "--json", database=database).stdout)["clean"]


def test_a_rules_file_with_an_unknown_field_is_refused_by_name(tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text('[rules.spike]\nkind = "usage_spike"\nwindow = 3\n', encoding="utf-8")
    ran = hkops("monitor", "--once", "--rules", str(rules), "--out", str(tmp_path / "usage"),
                database=tmp_path / "hkops.db")
    assert ran.returncode == 2
    assert "line 3: rule spike field 'window': unknown field for a usage_spike rule" in ran.stderr
    bad_time = hkops("monitor", "--once", "--as-of", "tomorrow", "--out", str(tmp_path / "usage"),
                     database=tmp_path / "hkops.db")
    assert bad_time.returncode == 2 and "as-of 'tomorrow'" in bad_time.stderr
    bad_state = hkops("alerts", "list", "--state", "done", database=tmp_path / "hkops.db")
    assert bad_state.returncode == 2 and "state 'done'" in bad_state.stderr
