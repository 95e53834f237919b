"""The consoles' side of the login, without a server: the acting user, the cookie secret."""

from __future__ import annotations

import stat

import pytest

from hkops.audit import default_actor
from hkops.security import users
from hkops.security.access import is_principal
from hkops.ui import _common, login, serving

PASSWORD = "password-1234"


@pytest.fixture
def served(db, monkeypatch):
    """``db`` with an admin and an ops user, as a console behind the login sees it."""
    users.add_user(db, "root", "admin", actor="installer", password=PASSWORD)
    users.add_user(db, "olga", "ops", actor="installer", password=PASSWORD)
    monkeypatch.setenv("HKOPS_DATABASE_URL", db.url)
    monkeypatch.setenv(login.LOGIN_ENV, "1")
    monkeypatch.delenv(login.SESSION_ENV, raising=False)
    monkeypatch.delenv("VOILA_PREHEAT", raising=False)
    return db


class FakeConsole:
    """Stands for a console: who it acts as, and how often it was refreshed."""

    def __init__(self, actor):
        self.actor, self.refreshed = actor, 0

    def refresh(self):
        self.refreshed += 1


def test_the_kernel_finds_the_names_the_server_uses():
    assert (_common._SESSION_ENV, _common._LOGIN_ENV) == (login.SESSION_ENV, login.LOGIN_ENV)
    assert login.SESSION_ENV == "HTTP_" + login.SESSION_HEADER.upper().replace("-", "_")


def test_a_console_acts_as_the_user_whose_session_its_page_brought(served, monkeypatch):
    olga = users.authenticate(served, "olga", PASSWORD)
    monkeypatch.setenv(login.SESSION_ENV, users.start_session(served, olga, kind="console"))
    actor = _common.current_actor()
    assert is_principal(actor) and actor.name == "olga" and actor.roles == ("ops",)
    assert actor.can("numbers.write") and not actor.can("users.admin")

    console = FakeConsole(default_actor())  # built before anyone was known
    serving.show(console)
    assert is_principal(console.actor) and console.actor.name == "olga"
    assert console.refreshed == 1  # what it showed was loaded for someone else


def test_a_preheated_console_refused_to_its_visitor_shows_the_refusal_not_what_it_holds(served, monkeypatch):
    from hkops.ui import stock_console

    monkeypatch.setenv("HKOPS_ACTOR", "root")  # the user Voilà's kernels run as
    held = stock_console(served)  # as a preheated kernel builds it: read as the kernel's own user
    assert held.status.kind != "error", held.status.text
    users.add_user(served, "fiona", "finance", actor="installer", password=PASSWORD)  # no stock.read
    monkeypatch.setenv(login.SESSION_ENV, users.start_session(served, users.principal_of(served, "fiona"),
                                                              kind="console"))
    displayed = []
    monkeypatch.setattr("IPython.display.display", lambda *widgets: displayed.extend(widgets))
    serving.show(held)
    user_line, shown = displayed
    assert "hkops-user-name'>fiona<" in user_line.value
    assert shown is held.status and "needs the permission 'stock.read'" in shown.text
    monkeypatch.setenv(login.SESSION_ENV, users.start_session(served, users.principal_of(served, "olga"),
                                                              kind="console"))
    displayed.clear()
    serving.show(held)  # a visitor who may see it gets the console, read again for her
    assert displayed[1] is held and held.actor.name == "olga" and held.status.last_error is None


def test_a_revoked_or_cli_session_gives_no_actor(served, monkeypatch):
    olga = users.authenticate(served, "olga", PASSWORD)
    token = users.start_session(served, olga, kind="console")
    users.revoke_session(served, token)
    monkeypatch.setenv(login.SESSION_ENV, token)
    with pytest.raises(users.TokenRefused, match="revoked"):
        _common.current_actor()
    monkeypatch.setenv(login.SESSION_ENV, users.start_session(served, olga, kind="cli"))
    with pytest.raises(users.TokenRefused):
        _common.current_actor()
    console = FakeConsole("someone")
    serving.show(console)  # shows the refusal instead of the console
    assert console.actor == "someone" and console.refreshed == 0


def test_behind_the_login_without_a_session_nobody_acts(served):
    nobody = _common.current_actor()
    assert nobody is _common.NOBODY and is_principal(nobody) and not nobody.permissions
    with pytest.raises(_common.NotLoggedIn):
        _common.current_actor(required=True)


def test_outside_the_login_the_console_acts_as_before(monkeypatch):
    monkeypatch.delenv(login.LOGIN_ENV, raising=False)
    monkeypatch.delenv(login.SESSION_ENV, raising=False)
    assert _common.current_actor() == default_actor() and not is_principal(_common.current_actor())


def test_the_user_line_names_the_user_and_links_to_log_out(served):
    line = _common.user_line(users.principal_of(served, "olga")).value
    assert "hkops-user-name'>olga<" in line and "(ops)" in line and "href='/logout'" in line


def test_the_cookie_secret_is_owner_only_and_kept(tmp_path):
    path = tmp_path / "data" / login.SECRET_FILE
    first = login.cookie_secret(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 64 and login.cookie_secret(path) == first  # not random at each start
    path.chmod(0o644)
    with pytest.raises(login.ConsoleSecretError, match="chmod 600"):
        login.cookie_secret(path)


CONSOLES = {  # module, factory, class, keyword arguments besides the store
    "allocation": ("allocation_console", "AllocationConsole", {}),
    "stock": ("stock_console", "StockConsole", {}),
    "orders": ("orders_console", "OrdersConsole", {}),
    "settlement": ("settlement_console", "SettlementConsole", {"export_dir": "exports"}),
    "lifecycle": ("lifecycle_console", "LifecycleConsole", {}),
    "monitoring": ("monitoring_console", "MonitoringConsole", {"refresh_s": None}),
}


@pytest.mark.parametrize("name", sorted(CONSOLES))
def test_a_console_built_before_the_login_reads_nothing_then_reads_as_the_visitor(name, served, tmp_path,
                                                                                 monkeypatch):
    """A preheated kernel builds its console before anyone asks for the page: it must hold
    nothing read for the kernel's own user (every permission) when a visitor gets it."""
    import importlib

    from hkops import audit

    factory, cls, kwargs = CONSOLES[name]
    module = importlib.import_module(f"hkops.ui.{name}")
    reads = []
    real = getattr(module, cls)._refresh
    monkeypatch.setattr(getattr(module, cls), "_refresh", lambda self: reads.append(repr(self.actor)) or real(self))
    kwargs = {k: tmp_path / v if k == "export_dir" else v for k, v in kwargs.items()}
    console = getattr(module, factory)(served, **kwargs)
    assert _common.is_nobody(console.actor) and reads == []
    monkeypatch.setenv(login.SESSION_ENV, users.start_session(served, users.principal_of(served, "root"),
                                                              kind="console"))
    displayed = []
    monkeypatch.setattr("IPython.display.display", lambda *widgets: displayed.extend(widgets))
    serving.show(console)
    assert console.actor.name == "root" and reads == [repr(console.actor)]
    assert displayed[-1] is console and console.status.kind != "error", console.status.text
    with served.read() as conn:
        assert audit.query(conn, action="denied") == []
