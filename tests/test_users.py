"""Users, passwords, sessions and API tokens (hkops.security.users), on SQLite and PostgreSQL:
the first admin, bad input that changes nothing, brute force locked out, expired, revoked,
forged and truncated tokens refused, and passwords never stored or audited in clear."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from hkops.agents import service as agents
from hkops.errors import Conflict, InvalidValue, NotFound
from hkops.security import users
from hkops.security.access import AccessDenied, Principal
from hkops.security.tables import user_tokens
from hkops.security.tables import users as users_table
from hkops.timeutil import utc_now
from strategies import audit_count, history, snapshot

PASSWORD = "correct horse battery"


@pytest.fixture
def staffed(db):
    """An admin (root) and an ops clerk (olga), both with PASSWORD."""
    users.add_user(db, "root", "admin", actor="installer", password=PASSWORD)
    users.add_user(db, "olga", "ops", actor="installer", password=PASSWORD)
    return db


def _audit_text(db) -> str:
    with db.read() as conn:
        from hkops.audit import audit_log

        return json.dumps([list(map(str, row)) for row in conn.execute(select(audit_log))], ensure_ascii=False)


def test_the_first_user_must_be_an_admin_and_every_add_is_audited(db):
    with pytest.raises(InvalidValue, match="the first user must be an admin"):
        users.add_user(db, "olga", "ops", actor="installer", password=PASSWORD)
    assert not users.any_user(db) and audit_count(db) == 0
    root = users.add_user(db, "root", "admin", actor="installer", password=PASSWORD)
    users.add_user(db, "olga", "ops", actor="installer", password=PASSWORD)
    assert root.roles == ("admin",) and users.count_users(db) == 2
    assert [(h["actor"], h["action"], h["details"]["roles"]) for h in history(db, "olga")] == [
        ("installer", "add", ["ops"])]


def test_bad_input_is_refused_with_a_clear_message_and_changes_nothing(staffed):
    db = staffed
    agents.add_agent(db, "AG-1", "Agent one", actor="tester")
    before, records = snapshot(db), audit_count(db)
    cases = [
        (dict(name="zed", roles="nosuch"), InvalidValue, "role 'nosuch': no such role in roles.toml; known: admin"),
        (dict(name="zed", roles="agent"), InvalidValue, "has the role 'agent', so it needs --agent CODE"),
        (dict(name="zed", roles="agent", agent="AG-404"), NotFound, "agent 'AG-404' does not exist"),
        (dict(name="zed", roles="ops", agent="AG-1"), InvalidValue, "only a user with the role 'agent' has an agent"),
        (dict(name="zed", roles="ops", password="short"), InvalidValue, "password '(hidden)': must be at least 8"),
        (dict(name="Bad Name!", roles="ops"), InvalidValue, "user 'Bad Name!': must be 1 to 64 lower-case"),
        (dict(name="olga", roles="ops"), Conflict, "user 'olga' exists already"),
    ]
    for arguments, error, message in cases:
        name, roles = arguments.pop("name"), arguments.pop("roles")
        with pytest.raises(error) as refused:
            users.add_user(db, name, roles, actor="installer", **arguments)
        assert message in str(refused.value)
    assert "short" not in _audit_text(db)
    assert snapshot(db) == before and audit_count(db) == records


def test_an_agent_user_names_an_existing_agent_and_its_principal_carries_it(staffed):
    agents.add_agent(staffed, "AG-1", "Agent one", actor="tester")
    users.add_user(staffed, "ag1", "agent", actor="installer", password=PASSWORD, agent="ag-1")
    me = users.authenticate(staffed, "ag1", PASSWORD)
    assert me.agent == "AG-1" and me.roles == ("agent",) and me.can("orders.read") and not me.can("users.admin")


def test_roles_are_data_and_a_permission_the_role_file_does_not_know_is_refused_with_its_line(db, tmp_path,
                                                                                            monkeypatch):
    custom = tmp_path / "roles.toml"
    custom.write_text('[roles.boss]\npermissions = ["users.admin", "orders.read"]\n\n'
                      '[roles.clerk]\npermissions = ["orders.read"]\n', encoding="utf-8")
    monkeypatch.setenv("HKOPS_ROLES_FILE", str(custom))
    users.add_user(db, "root", "boss", actor="installer", password=PASSWORD)
    assert users.authenticate(db, "root", PASSWORD).permissions == {"users.admin", "orders.read"}
    with pytest.raises(InvalidValue, match="no such role"):
        users.add_user(db, "olga", "ops", actor="installer", password=PASSWORD)  # not in this file
    custom.write_text('[roles.clerk]\npermissions = [\n  "orders.read",\n  "orders.destroy",\n]\n', encoding="utf-8")
    before = snapshot(db)
    with pytest.raises(InvalidValue) as refused:
        users.add_user(db, "carl", "clerk", actor="installer", password=PASSWORD)
    assert "line 4" in str(refused.value) and "'orders.destroy'" in str(refused.value)
    assert snapshot(db) == before


def test_unknown_user_and_wrong_password_get_one_message_and_are_audited_without_the_password(staffed):
    for name, password in (("nobody", PASSWORD), ("olga", "wrong password 1")):
        with pytest.raises(users.LoginRefused) as refused:
            users.authenticate(staffed, name, password)
        assert str(refused.value) == "login refused: unknown user or wrong password"
    assert [h["action"] for h in history(staffed, "nobody")] == ["login_failed"]
    assert history(staffed, "olga")[-1]["reason"] == "wrong password"
    text = _audit_text(staffed)
    assert "wrong password 1" not in text and PASSWORD not in text
    with staffed.read() as conn:
        stored = conn.execute(select(users_table.c.password_hash).where(users_table.c.name == "olga")).scalar()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_brute_force_locks_the_user_out_and_even_the_right_password_waits(staffed):
    start = utc_now()
    for attempt in range(5):
        with pytest.raises(users.LoginRefused, match="unknown user or wrong password"):
            users.authenticate(staffed, "olga", f"guess number {attempt}", now=start + timedelta(seconds=attempt))
    assert [h["action"] for h in history(staffed, "olga")][-2:] == ["login_failed", "lock"]
    with pytest.raises(users.LoginRefused, match="olga is locked after too many failed logins"):
        users.authenticate(staffed, "olga", PASSWORD, now=start + timedelta(minutes=5))
    assert history(staffed, "olga")[-1]["action"] == "login_failed"
    # After the lock-out (15 minutes by default) the right password works again.
    assert users.authenticate(staffed, "olga", PASSWORD, now=start + timedelta(minutes=16)) == "olga"


def test_the_lock_out_is_a_setting(staffed):
    from hkops import settings

    with staffed.write() as conn:
        settings.set_value(conn, "login_max_failures", "2", actor="root")
        settings.set_value(conn, "login_lockout", "1h", actor="root")
    start = utc_now()
    for attempt in range(2):
        with pytest.raises(users.LoginRefused):
            users.authenticate(staffed, "olga", "nope nope nope", now=start)
    with pytest.raises(users.LoginRefused, match="locked"):
        users.authenticate(staffed, "olga", PASSWORD, now=start + timedelta(minutes=59))
    with pytest.raises(InvalidValue, match="login_lockout"), staffed.write() as conn:
        settings.set_value(conn, "login_lockout", "soon")


def test_a_new_password_from_an_admin_lifts_a_lock_out(staffed):
    for _ in range(5):
        with pytest.raises(users.LoginRefused):
            users.authenticate(staffed, "olga", "nope nope nope")
    users.set_password(staffed, "olga", "a brand new one", actor=users.principal_of(staffed, "root"))
    assert users.authenticate(staffed, "olga", "a brand new one") == "olga"
    with pytest.raises(users.LoginRefused):
        users.authenticate(staffed, "olga", PASSWORD)


def test_a_user_changes_only_its_own_password_unless_admin(staffed):
    olga = users.authenticate(staffed, "olga", PASSWORD)
    users.set_password(staffed, "olga", "olgas new password", actor=olga)
    with pytest.raises(AccessDenied, match="olga may not change the password of root"):
        users.set_password(staffed, "root", "taken over!", actor=olga)
    assert users.authenticate(staffed, "root", PASSWORD) == "root"


def test_a_disabled_user_cannot_log_in_and_its_sessions_and_tokens_stop(staffed):
    olga = users.authenticate(staffed, "olga", PASSWORD)
    session = users.start_session(staffed, olga, "console")
    token, _ = users.issue_token(staffed, "olga", actor="installer")
    users.disable_user(staffed, "olga", actor=users.principal_of(staffed, "root"), reason="left the company")
    with pytest.raises(users.LoginRefused, match="user olga is disabled"):
        users.authenticate(staffed, "olga", PASSWORD)
    for secret in (session, token):
        with pytest.raises(users.TokenRefused, match="revoked"):
            users.principal_for_token(staffed, secret)
    with pytest.raises(users.LoginRefused, match="unknown user or wrong password"):
        users.authenticate(staffed, "olga", "wrong password")  # a wrong password tells nothing more
    users.enable_user(staffed, "olga", actor="installer")
    assert users.authenticate(staffed, "olga", PASSWORD) == "olga"
    assert [h["action"] for h in history(staffed, "olga") if h["action"] in ("disable", "enable")] == [
        "disable", "enable"]


def test_a_session_gives_back_the_principal_until_it_expires_or_is_revoked(staffed):
    start = utc_now()
    olga = users.authenticate(staffed, "olga", PASSWORD)
    token = users.start_session(staffed, olga, "cli", timedelta(hours=1), now=start)
    again = users.principal_for_token(staffed, token, now=start + timedelta(minutes=59))
    assert isinstance(again, Principal) and again == "olga" and again.permissions == olga.permissions
    with pytest.raises(users.TokenRefused, match="the session hks_.* of olga expired at"):
        users.principal_for_token(staffed, token, now=start + timedelta(hours=1))
    other = users.start_session(staffed, olga, "console", timedelta(hours=1))
    assert users.revoke_session(staffed, other) and not users.revoke_session(staffed, other)
    with pytest.raises(users.TokenRefused, match="the session hks_.* of olga was revoked at"):
        users.principal_for_token(staffed, other)
    assert [h["action"] for h in history(staffed, "olga")][-3:] == ["login", "login", "logout"]


def test_forged_and_truncated_tokens_are_refused(staffed):
    olga = users.authenticate(staffed, "olga", PASSWORD)
    token = users.start_session(staffed, olga)
    forged = token[:4] + ("A" if token[4] != "A" else "B") + token[5:]
    for bad, message in ((forged, "no such session"), ("hkt_" + "x" * (users.TOKEN_LENGTH - 4), "no such API token"),
                         (token[:-1], "wrong form or length"), (token + "x", "wrong form or length"),
                         ("", "wrong form or length"), (token[:users.PREFIX_LENGTH], "wrong form or length")):
        with pytest.raises(users.TokenRefused, match=message):
            users.principal_for_token(staffed, bad)
    assert users.principal_for_token(staffed, token) == "olga"
    with pytest.raises(users.TokenRefused, match="no such session"):
        users.principal_for_token(staffed, token, kinds=("console",))  # a CLI session is no console cookie


def test_an_api_token_is_stored_hashed_listed_by_prefix_and_revocable(staffed):
    root = users.principal_of(staffed, "root")
    olga = users.principal_of(staffed, "olga")
    with pytest.raises(AccessDenied, match="users.admin"):
        users.issue_token(staffed, "olga", actor=olga)
    start = utc_now()
    token, info = users.issue_token(staffed, "olga", actor=root, expires="7d", now=start)
    assert info["prefix"] == token[:users.PREFIX_LENGTH] and info["expires_at"] == start + timedelta(days=7)
    with staffed.read() as conn:
        stored = [tuple(map(str, row)) for row in conn.execute(select(user_tokens))]
    assert not any(token in value for row in stored for value in row)
    assert users.principal_for_token(staffed, token, now=start + timedelta(days=6)).roles == ("ops",)
    with pytest.raises(users.TokenRefused, match="API token hkt_.* expired"):
        users.principal_for_token(staffed, token, now=start + timedelta(days=7, seconds=1))
    listed = users.list_tokens(staffed, actor=root, name="olga")
    assert [(t["prefix"], t["kind"]) for t in listed] == [(info["prefix"], "api")] and "token_hash" not in listed[0]
    with pytest.raises(InvalidValue, match="first 12 characters"):
        users.revoke_token(staffed, token[:6], actor=root)
    assert users.revoke_token(staffed, info["prefix"], actor=root)["user"] == "olga"
    with pytest.raises(users.TokenRefused, match="revoked"):
        users.principal_for_token(staffed, token)
    with pytest.raises(NotFound):
        users.revoke_token(staffed, info["prefix"], actor=root)


def test_listing_users_shows_no_hashes_and_needs_users_admin(staffed):
    listed = [u.as_dict() for u in users.list_users(staffed, actor=users.principal_of(staffed, "root"))]
    assert [u["name"] for u in listed] == ["olga", "root"]
    assert "argon2" not in json.dumps(listed, default=str) and all("password_hash" not in u for u in listed)
    with pytest.raises(AccessDenied):
        users.list_users(staffed, actor=users.principal_of(staffed, "olga"))
