"""``hkops users``, ``login``, ``logout``, ``whoami``: who the CLI is. While no user exists the
CLI is the local installer; once one exists every database command needs a login or an API
token, ``HKOPS_ACTOR`` and ``--actor`` decide nothing, and passwords never come as arguments."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import timedelta

import pytest

from hkops.security import users
from hkops.timeutil import utc_now
from strategies import audit_count, history, hkops_cli, snapshot  # noqa: F401

PASSWORD = "correct horse battery"


@pytest.fixture
def cli(hkops_cli, monkeypatch, tmp_path):
    """hkops in this process, with its own session file, no HKOPS_TOKEN, and ``stdin=`` text."""
    monkeypatch.setenv("HKOPS_SESSION_FILE", str(tmp_path / "config" / "session.json"))
    monkeypatch.delenv("HKOPS_TOKEN", raising=False)

    def run(db, *args, stdin: str = "", actor: str = "cli-user"):
        return hkops_cli(db, *args, actor=actor, stdin=stdin)

    run.session_file = tmp_path / "config" / "session.json"
    return run


def state(db) -> dict:
    """Every table's rows, but a token's last_seen (using a login is not a change)."""
    rows = snapshot(db)
    rows["user_tokens"] = [row[:-1] for row in rows["user_tokens"]]
    return rows


def refused(result, *fragments):
    status, out, err = result
    assert status == 2, err
    assert err.startswith("hkops: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture
def staffed(db, cli):
    """root (admin) added through the CLI by the installer, and olga (ops)."""
    status, out, err = cli(db, "users", "add", "root", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n")
    assert status == 0, err
    assert "this was the first user" in out
    users.add_user(db, "olga", "ops", actor="installer", password=PASSWORD)
    return db


def login(cli, db, name="root", password=PASSWORD):
    return cli(db, "login", name, "--password-stdin", stdin=password + "\n")


def test_a_fresh_database_is_run_by_the_installer_and_the_first_user_must_be_an_admin(db, cli):
    status, out, _ = cli(db, "whoami", "--json")
    assert status == 0 and json.loads(out)["via"] == "installer"
    refused(login(cli, db), "no users yet", "hkops users add NAME --role admin")
    refused(cli(db, "users", "add", "olga", "--role", "ops", "--password-stdin", stdin=PASSWORD + "\n"),
            "the first user must be an admin (--role admin)")
    assert not users.any_user(db)
    assert cli(db, "users", "add", "root", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n")[0] == 0
    assert users.any_user(db)


def test_once_a_user_exists_every_database_command_needs_a_login(staffed, cli):
    for command in (("numbers", "stats"), ("users", "list"), ("whoami",), ("audit", "--limit", "1"),
                    ("carriers", "add", "China Mobile")):
        refused(cli(staffed, *command), "this database has users: run hkops login or set HKOPS_TOKEN")
    status, out, _ = cli(staffed, "users", "roles", "--json")  # the role file only: no database, no login
    assert status == 0 and "users.admin" in json.loads(out)["admin"]
    before = snapshot(staffed)
    refused(cli(staffed, "carriers", "add", "China Mobile"))
    assert snapshot(staffed) == before


def test_login_keeps_an_owner_only_session_that_logout_revokes(staffed, cli):
    refused(login(cli, staffed, password="not the password"), "login refused: unknown user or wrong password")
    assert not cli.session_file.exists()
    status, out, err = login(cli, staffed)
    assert status == 0, err
    assert "logged in as root (admin)" in out
    assert stat.S_IMODE(cli.session_file.stat().st_mode) == 0o600
    token = json.loads(cli.session_file.read_text())[staffed.engine.url.render_as_string(hide_password=True)]["token"]
    assert users.principal_for_token(staffed, token) == "root"
    status, out, _ = cli(staffed, "whoami", "--json")
    assert status == 0 and json.loads(out)["user"] == "root" and json.loads(out)["via"] == "login session"
    assert cli(staffed, "logout")[0] == 0
    with pytest.raises(users.TokenRefused, match="revoked"):
        users.principal_for_token(staffed, token)
    refused(cli(staffed, "whoami"), "run hkops login")


def test_a_session_file_others_can_read_is_refused(staffed, cli):
    assert login(cli, staffed)[0] == 0
    os.chmod(cli.session_file, 0o644)
    refused(cli(staffed, "whoami"), "can be read by others (mode 644)")


def test_an_expired_session_is_refused(staffed, cli, monkeypatch):
    assert login(cli, staffed)[0] == 0
    data = json.loads(cli.session_file.read_text())
    root = users.principal_of(staffed, "root")
    old = users.start_session(staffed, root, "cli", timedelta(hours=1), now=utc_now() - timedelta(hours=2))
    for entry in data.values():
        entry["token"] = old
    cli.session_file.write_text(json.dumps(data))
    refused(cli(staffed, "users", "list"), "of root expired at", "run hkops login")


def test_api_tokens_for_scripts_expired_revoked_or_forged_are_refused(staffed, cli, monkeypatch):
    assert login(cli, staffed)[0] == 0
    status, out, err = cli(staffed, "users", "token", "olga", "--expires", "30d")
    assert status == 0, err
    token = out.strip()
    assert len(token) == users.TOKEN_LENGTH and "not shown again" in err
    status, out, _ = cli(staffed, "users", "tokens", "olga", "--json")
    assert [t["prefix"] for t in json.loads(out)] == [token[:users.PREFIX_LENGTH]] and token not in out
    monkeypatch.setenv("HKOPS_TOKEN", token)
    status, out, _ = cli(staffed, "whoami", "--json")
    assert json.loads(out)["user"] == "olga" and json.loads(out)["via"] == "HKOPS_TOKEN"  # the token wins over the login
    forged = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
    for bad, message in ((forged, "no such API token"), (token[:-1], "wrong form or length")):
        monkeypatch.setenv("HKOPS_TOKEN", bad)
        refused(cli(staffed, "numbers", "stats"), message, "(HKOPS_TOKEN); run hkops login or set HKOPS_TOKEN")
    expired, _ = users.issue_token(staffed, "olga", actor="installer", expires="1d", now=utc_now() - timedelta(days=2))
    monkeypatch.setenv("HKOPS_TOKEN", expired)
    refused(cli(staffed, "numbers", "stats"), "API token", "expired at")
    monkeypatch.delenv("HKOPS_TOKEN")
    assert cli(staffed, "users", "revoke-token", token[:users.PREFIX_LENGTH])[0] == 0
    monkeypatch.setenv("HKOPS_TOKEN", token)
    refused(cli(staffed, "numbers", "stats"), "was revoked at")


def test_hkops_actor_no_longer_changes_who_the_audit_records(staffed, cli, monkeypatch):
    token, _ = users.issue_token(staffed, "root", actor="installer")  # carriers are settings: an admin's
    monkeypatch.setenv("HKOPS_TOKEN", token)
    status, _, err = cli(staffed, "carriers", "add", "China Mobile", actor="mallory")
    assert status == 0, err
    assert [(h["actor"], h["action"]) for h in history(staffed, "China Mobile")] == [("root", "configure")]
    refused(cli(staffed, "--actor", "mallory", "carriers", "add", "China Unicom"),
            "--actor no longer decides who acts")


def test_a_password_on_the_command_line_is_refused_and_changes_nothing(db, cli):
    for command in (("users", "add", "root", "--role", "admin", "--password", PASSWORD),
                    ("users", "add", "root", "--role", "admin", f"--password={PASSWORD}"),
                    ("users", "passwd", "root", "--passwd", PASSWORD),
                    ("login", "root", "--password", PASSWORD)):
        refused(cli(db, *command), "is refused: a password is never given on the command line",
                "--password-stdin")
    assert not users.any_user(db) and audit_count(db) == 0


def test_bad_input_on_the_cli_exits_2_and_changes_nothing(staffed, cli, tmp_path, monkeypatch):
    assert login(cli, staffed)[0] == 0
    before, records = state(staffed), audit_count(staffed)
    add = ("users", "add", "zed", "--password-stdin")
    refused(cli(staffed, *add, "--role", "nosuch", stdin=PASSWORD + "\n"), "role 'nosuch': no such role")
    refused(cli(staffed, *add, "--role", "agent", stdin=PASSWORD + "\n"), "needs --agent CODE")
    refused(cli(staffed, *add, "--role", "agent", "--agent", "AG-404", stdin=PASSWORD + "\n"), "'AG-404' does not exist")
    refused(cli(staffed, *add, "--role", "ops", stdin="short\n"), "must be at least 8 characters")
    refused(cli(staffed, "users", "disable", "nobody"), "user 'nobody' does not exist")
    bad_roles = tmp_path / "roles.toml"
    bad_roles.write_text('[roles.admin]\npermissions = ["users.admin", "everything"]\n', encoding="utf-8")
    monkeypatch.setenv("HKOPS_ROLES_FILE", str(bad_roles))
    refused(cli(staffed, "users", "roles"), "line 2", "'everything'", "is not a permission hkops knows")
    assert state(staffed) == before and audit_count(staffed) == records


def test_a_disabled_user_cannot_log_in_on_the_cli(staffed, cli):
    assert login(cli, staffed)[0] == 0
    status, out, _ = cli(staffed, "users", "disable", "olga", "--reason", "left")
    assert status == 0 and "(disabled)" in out
    refused(login(cli, staffed, "olga"), "login refused: user olga is disabled")
    status, out, _ = cli(staffed, "users", "list", "--json")
    listed = json.loads(out)
    assert {u["name"]: u["disabled"] for u in listed} == {"olga": True, "root": False}
    assert "argon2" not in out and "hash" not in out


def test_brute_force_on_the_cli_login_is_locked_out(staffed, cli):
    for attempt in range(5):
        refused(login(cli, staffed, "olga", f"guess {attempt} guess"), "unknown user or wrong password")
    refused(login(cli, staffed, "olga"), "olga is locked after too many failed logins")
    assert not cli.session_file.exists()


def test_passwd_from_standard_input_and_an_agent_user(staffed, cli):
    from hkops.agents import service as agents

    agents.add_agent(staffed, "AG-1", "Agent one", actor="tester")
    assert login(cli, staffed)[0] == 0
    status, out, err = cli(staffed, "users", "add", "ag1", "--role", "agent", "--agent", "AG-1", "--password-stdin",
                           stdin=PASSWORD + "\n")
    assert status == 0 and "agent AG-1" in out, err
    assert cli(staffed, "users", "passwd", "olga", "--password-stdin", stdin="olgas new password\n")[0] == 0
    assert login(cli, staffed, "olga", "olgas new password")[0] == 0
    refused(cli(staffed, "users", "passwd", "root", "--password-stdin", stdin="taken over!!\n"),
            "olga may not change the password of root")


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_the_real_command_reads_the_password_from_standard_input_and_never_echoes_it(db, tmp_path):
    env = {**os.environ, "HKOPS_DATABASE_URL": db.url, "HKOPS_SESSION_FILE": str(tmp_path / "s.json")}
    env.pop("HKOPS_TOKEN", None)
    run = [sys.executable, "-m", "hkops"]
    added = subprocess.run(run + ["users", "add", "root", "--role", "admin", "--password-stdin"], input=PASSWORD + "\n",
                           capture_output=True, text=True, env=env, timeout=120)
    assert added.returncode == 0, added.stderr
    logged = subprocess.run(run + ["login", "root", "--password-stdin"], input=PASSWORD + "\n", capture_output=True,
                            text=True, env=env, timeout=120)
    assert logged.returncode == 0, logged.stderr
    assert PASSWORD not in added.stdout + added.stderr + logged.stdout + logged.stderr
    assert stat.S_IMODE((tmp_path / "s.json").stat().st_mode) == 0o600
    who = subprocess.run(run + ["whoami"], capture_output=True, text=True, env={**env, "HKOPS_ACTOR": "mallory"},
                         timeout=120)
    assert who.returncode == 0 and who.stdout.startswith("root (admin) via login session")
