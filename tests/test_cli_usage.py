"""``hkops usage generate`` and ``hkops usage stats`` from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def hkops(*args: str, database: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HKOPS_DATABASE_URL": f"sqlite:///{database}"}
    return subprocess.run([sys.executable, "-m", "hkops", *args], capture_output=True, text=True, timeout=300, env=env)


def test_generated_usage_is_reported_by_stats_as_json(tmp_path):
    out = str(tmp_path / "usage")
    made = hkops("usage", "generate", "--days", "2", "--cards", "500", "--start", "2026-11-01", "--out", out, "--json",
                 database=tmp_path / "hkops.db")
    assert made.returncode == 0, made.stderr
    summary = json.loads(made.stdout)
    assert summary["records"] > 0 and summary["days"] == 2
    report = hkops("usage", "stats", "--day", "2026-11-02", "--out", out, "--json", database=tmp_path / "hkops.db")
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert data["day"] == "2026-11-02"
    assert 0 < data["records"] < summary["records"]


def test_stats_of_an_empty_store_or_a_bad_day_exit_2_with_a_reason(tmp_path):
    empty = hkops("usage", "stats", "--out", str(tmp_path / "none"), database=tmp_path / "hkops.db")
    assert empty.returncode == 2 and "holds no records" in empty.stderr
    bad = hkops("usage", "stats", "--day", "yesterday", "--out", str(tmp_path / "none"), database=tmp_path / "hkops.db")
    assert bad.returncode == 2 and "day 'yesterday'" in bad.stderr


def test_every_usage_command_uses_the_store_hkops_usage_store_names(tmp_path, monkeypatch):
    """Generate, stats, report and the live feed all find the store in HKOPS_USAGE_STORE, as the
    analytics engine does (not data/usage behind its back)."""
    shared = tmp_path / "shared-usage"
    monkeypatch.setenv("HKOPS_USAGE_STORE", str(shared))
    made = hkops("usage", "generate", "--days", "1", "--cards", "200", "--start", "2026-11-01", "--json",
                 database=tmp_path / "hkops.db")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["out_dir"] == str(shared) and list(shared.glob("records/day=2026-11-01/*"))
    report = hkops("usage", "stats", "--day", "2026-11-01", "--json", database=tmp_path / "hkops.db")
    assert report.returncode == 0 and json.loads(report.stdout)["records"] > 0, report.stderr
    week = hkops("usage", "report", "--period", "day", "--date", "2026-11-01", "--out", str(tmp_path / "day.csv"),
                 database=tmp_path / "hkops.db")
    assert week.returncode == 0 and (tmp_path / "day.csv").stat().st_size > 0, week.stderr
    fed = hkops("usage", "stream", "--synthetic", "--cards", "50", "--duration", "0.5", "--rate", "200", "--json",
                database=tmp_path / "hkops.db")
    assert fed.returncode == 0 and list((shared / "stream").iterdir()), fed.stderr


def test_a_bad_usage_file_is_named_in_one_warning_line_and_the_rest_is_reported(tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "usage"
    made = hkops("usage", "generate", "--days", "2", "--cards", "200", "--start", "2026-11-01", "--out", str(out),
                 database=tmp_path / "hkops.db")
    assert made.returncode == 0, made.stderr
    bad = next((out / "records" / "day=2026-11-02").glob("*.parquet"))
    pq.write_table(pq.read_table(bad).drop(["charge_fen"]), bad)
    report = hkops("usage", "stats", "--by", "day", "--out", str(out), database=tmp_path / "hkops.db")
    assert report.returncode == 0, report.stderr
    assert report.stderr.splitlines() == [f"hkops: warning: usage file {bad} left out: missing column charge_fen"]
    assert "2026-11-01" in report.stdout and "2026-11-02" not in report.stdout
