"""Logins on the consoles, attacked over HTTP against a real Voilà as ``hkops serve`` runs it.

No cookie, a wrong password, brute force, an expired, revoked or forged session, a login
without its XSRF token, and user B reaching for user A's kernel: each refused.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import pytest
import requests
from tornado.web import create_signed_value

from hkops import demo
from hkops.security import users
from hkops.store.engine import Store
from hkops.ui import login
from hkops.ui.serving import VoilaServer

pytestmark = pytest.mark.browser  # a real Voilà with kernels: slow, run with the browser tests

PAGE = "/voila/render/allocation.ipynb"
KERNEL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
VICTIM_PASSWORD = "victim-password-1"


@pytest.fixture(scope="module")
def database_url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('login') / 'demo.db'}"
    store = Store(url)
    demo.build(store, per_province=1, orders=50)  # adds the demo users (ops, sales, ... with demo-NAME)
    users.add_user(store, "victim", "ops", actor="test", password=VICTIM_PASSWORD)
    store.dispose()
    return url


@pytest.fixture(scope="module")
def store(database_url):
    store = Store(database_url)
    yield store
    store.dispose()


@pytest.fixture(scope="module")
def voila(database_url, tmp_path_factory):
    server = VoilaServer(database_url, log_path=tmp_path_factory.mktemp("voila") / "voila.log")
    try:
        server.start()
        server.wait_for_pools()
        yield server
    finally:
        server.stop()


def _form(voila, session: requests.Session) -> str:
    """Open the login page (which sets the _xsrf cookie); the form's XSRF token."""
    page = session.get(voila.url + "/login")
    assert page.status_code == 200 and "name=\"password\"" in page.text
    return session.cookies["_xsrf"]


def log_in(voila, name: str, password: str, **extra) -> tuple[requests.Session, requests.Response]:
    session = requests.Session()
    xsrf = _form(voila, session)
    answer = session.post(voila.url + "/login", data={"username": name, "password": password, "_xsrf": xsrf, **extra},
                          allow_redirects=False)
    return session, answer


def logged_in(voila, name: str) -> requests.Session:
    session, answer = log_in(voila, name, users.demo_password(name))
    assert answer.status_code == 302, answer.text
    return session


def session_with(voila, token: str, secret: bytes | None = None) -> requests.Session:
    """A browser that presents ``token`` as its console session, signed with ``secret``."""
    session = requests.Session()
    value = create_signed_value(secret or login.cookie_secret(), login.COOKIE_NAME, token).decode()
    session.cookies.set(login.COOKIE_NAME, value, domain="127.0.0.1", path="/")
    return session


def admitted(voila, session: requests.Session) -> bool:
    """Whether ``session`` gets the consoles' folder page (else it is sent to the login page)."""
    answer = session.get(voila.url + "/", allow_redirects=False)
    if answer.status_code == 302:
        assert "/login" in answer.headers["Location"]
        return False
    assert answer.status_code == 200
    return True


def token_of(session: requests.Session) -> str:
    """The session token inside a logged-in browser's signed cookie."""
    from tornado.web import decode_signed_value

    value = session.cookies[login.COOKIE_NAME].strip('"')
    return decode_signed_value(login.cookie_secret(), login.COOKIE_NAME, value).decode()


def open_page(voila, session: requests.Session) -> tuple[str, str]:
    """Load the allocation console; its HTML and the id of the kernel serving it."""
    page = session.get(voila.url + PAGE)
    assert page.status_code == 200
    kernel_ids = set(KERNEL_ID.findall(page.text))
    assert len(kernel_ids) == 1, kernel_ids
    return page.text, kernel_ids.pop()


def websocket_status(voila, session: requests.Session, kernel_id: str) -> int:
    """Open the kernel's channels websocket with ``session``'s cookies: 101 if it opens, else the HTTP status."""
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    url = voila.url.replace("http", "ws") + f"/api/kernels/{kernel_id}/channels?session_id=test"

    async def connect() -> int:
        try:
            connection = await websocket_connect(HTTPRequest(url, headers={"Cookie": cookie}))
        except HTTPClientError as refused:
            return refused.code
        connection.close()
        return 101

    return asyncio.run(connect())


def shutdown(voila, session: requests.Session, kernel_id: str) -> int:
    """Voilà's page-closing beacon: POST /voila/api/shutdown/<kernel> with the browser's _xsrf."""
    xsrf = session.cookies.get("_xsrf") or _form(voila, session)
    return session.post(voila.url + f"/voila/api/shutdown/{kernel_id}", data={"_xsrf": xsrf}).status_code


# --------------------------------------------------------------------------- tests


def test_without_a_login_every_door_is_closed(voila):
    anyone = requests.Session()
    page = anyone.get(voila.url + PAGE, allow_redirects=False)
    assert page.status_code == 302 and page.headers["Location"].startswith("/login?next=")
    kernel = "00000000-0000-0000-0000-000000000000"
    assert anyone.get(voila.url + f"/api/kernels/{kernel}").status_code == 403
    assert websocket_status(voila, anyone, kernel) == 403
    assert shutdown(voila, anyone, kernel) == 403
    # a header claiming a session is stripped: only the server hands one to a kernel
    spoofed = anyone.get(voila.url + PAGE, headers={login.SESSION_HEADER: "hks_" + "x" * 43}, allow_redirects=False)
    assert spoofed.status_code == 302


def test_a_login_sets_a_signed_httponly_strict_cookie_and_the_page_shows_the_user(voila):
    session, answer = log_in(voila, "ops", "demo-ops", next=PAGE)
    assert answer.status_code == 302 and answer.headers["Location"] == PAGE
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith(f"{login.COOKIE_NAME}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # served over plain HTTP here; over TLS it is Secure
    assert users.TOKEN_LENGTH == len(token_of(session))
    html, kernel_id = open_page(voila, session)
    assert "Logged in as" in html and "hkops-user-name\\u0027\\u003eops\\u003c" in html
    assert "hkops-login-needed" not in html
    assert shutdown(voila, session, kernel_id) == 204


def test_a_wrong_password_is_refused(voila):
    session, answer = log_in(voila, "ops", "not-the-password")
    assert answer.status_code == 401
    assert "unknown user or wrong password" in answer.text
    assert login.COOKIE_NAME not in session.cookies
    assert not admitted(voila, session)


def test_brute_force_locks_the_user_out_even_with_the_right_password(voila):
    for _ in range(5):
        assert log_in(voila, "victim", "guess-guess-guess")[1].status_code == 401
    session, answer = log_in(voila, "victim", VICTIM_PASSWORD)
    assert answer.status_code == 401
    assert "locked" in answer.text
    assert login.COOKIE_NAME not in session.cookies


def test_a_login_without_its_xsrf_token_is_refused(voila):
    session = requests.Session()
    _form(voila, session)
    answer = session.post(voila.url + "/login", data={"username": "ops", "password": "demo-ops"},
                          allow_redirects=False)
    assert answer.status_code == 403
    assert login.COOKIE_NAME not in session.cookies
    forged = session.post(voila.url + "/login", data={"username": "ops", "password": "demo-ops", "_xsrf": "2|0|0|0"},
                          allow_redirects=False)
    assert forged.status_code == 403


def test_a_revoked_session_is_refused(voila, store):
    session = logged_in(voila, "sales")
    assert admitted(voila, session)
    assert users.revoke_session(store, token_of(session))
    assert not admitted(voila, session)


def test_logging_out_revokes_the_session(voila):
    session = logged_in(voila, "sales")
    kept = session.cookies[login.COOKIE_NAME]
    assert session.get(voila.url + "/logout", allow_redirects=False).status_code == 302
    assert not admitted(voila, session)
    replay = requests.Session()  # the old cookie, kept by someone, is dead too
    replay.cookies.set(login.COOKIE_NAME, kept, domain="127.0.0.1", path="/")
    assert not admitted(voila, replay)


def test_an_expired_session_is_refused(voila, store):
    ops = users.principal_of(store, "ops")
    live = users.start_session(store, ops, kind="console", ttl=timedelta(minutes=5))
    expired = users.start_session(store, ops, kind="console", ttl=timedelta(seconds=-1))
    assert admitted(voila, session_with(voila, live))
    assert not admitted(voila, session_with(voila, expired))


def test_a_cli_session_or_a_forged_cookie_is_refused(voila, store):
    ops = users.principal_of(store, "ops")
    live = users.start_session(store, ops, kind="console")
    assert not admitted(voila, session_with(voila, live, secret=b"another-secret-" * 3))  # signed by someone else
    assert not admitted(voila, session_with(voila, "hks_" + "A" * 43))  # well signed, made up
    assert not admitted(voila, session_with(voila, live[:-1]))  # truncated
    assert not admitted(voila, session_with(voila, users.start_session(store, ops, kind="cli")))
    unsigned = requests.Session()
    unsigned.cookies.set(login.COOKIE_NAME, live, domain="127.0.0.1", path="/")
    assert not admitted(voila, unsigned)


def test_user_b_cannot_attach_to_execute_in_or_shut_down_user_a_kernel(voila):
    a = logged_in(voila, "ops")
    b = logged_in(voila, "sales")
    _, kernel_id = open_page(voila, a)
    assert a.get(voila.url + f"/api/kernels/{kernel_id}").status_code == 200
    assert websocket_status(voila, a, kernel_id) == 101  # the owner attaches

    assert b.get(voila.url + f"/api/kernels/{kernel_id}").status_code == 403
    assert websocket_status(voila, b, kernel_id) == 403  # no channels: no comm messages, no execution
    assert b.post(voila.url + f"/api/kernels/{kernel_id}/interrupt",
                  headers={"X-XSRFToken": b.cookies.get("_xsrf") or _form(voila, b)}).status_code in (403, 404)
    assert shutdown(voila, b, kernel_id) == 403
    assert a.get(voila.url + f"/api/kernels/{kernel_id}").status_code == 200  # still running

    assert shutdown(voila, a, kernel_id) == 204
    assert a.get(voila.url + f"/api/kernels/{kernel_id}").status_code in (403, 404)


def test_an_open_console_loses_its_kernel_when_its_session_is_revoked(voila, store):
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    a = logged_in(voila, "ops")
    _, kernel_id = open_page(voila, a)
    cookie = "; ".join(f"{k}={v}" for k, v in a.cookies.items())
    url = voila.url.replace("http", "ws") + f"/api/kernels/{kernel_id}/channels?session_id=revoked"

    async def message_after_revoking():
        connection = await websocket_connect(HTTPRequest(url, headers={"Cookie": cookie}))
        assert users.revoke_session(store, token_of(a))
        await connection.write_message("{}")
        while True:  # status messages may come first; None once the server closed the socket
            message = await asyncio.wait_for(connection.read_message(), 10)
            if message is None:
                return connection.close_code

    assert asyncio.run(message_after_revoking()) == 1008
    assert not admitted(voila, a)


def test_the_channel_to_a_preheated_kernel_takes_loopback_kernels_only(voila):
    """/voila/query/<kernel> carries a page's session to its preheated kernel: a stranger
    cannot read it for a kernel that does not exist, nor take over a kernel's waiting line."""
    from tornado.websocket import websocket_connect

    async def first_message(kernel_id: str):
        connection = await websocket_connect(voila.url.replace("http", "ws") + f"/voila/query/{kernel_id}")
        message = await asyncio.wait_for(connection.read_message(), 5)
        connection.close()
        return message

    assert asyncio.run(first_message("00000000-0000-0000-0000-000000000000")) is None  # closed at once
