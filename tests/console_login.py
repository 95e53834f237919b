"""Logging in to the consoles from a browser test: every console page is behind the login now.

:func:`add_console_user` gives a test database a user (an admin by default, so the existing
browser tests keep doing every move); :func:`log_in_page` logs a Playwright page in through
the login form and lands on the console asked for.
"""

from __future__ import annotations

from urllib.parse import quote

from hkops.security import users
from hkops.store.engine import Store

#: The user the browser tests act as, unless they say otherwise.
CLERK = "clerk"
CLERK_PASSWORD = "clerk-password-1"


def add_console_user(url: str, name: str = CLERK, role: str = "admin", *, password: str = CLERK_PASSWORD,
                     agent: str | None = None) -> tuple[str, str]:
    """User ``name`` with ``role`` in the database at ``url`` (added unless it exists): (name, password)."""
    store = Store(url)
    try:
        with store.read() as conn:
            exists = users.any_user(conn) and name in {u.name for u in users.list_users(store, actor="test")}
        if not exists:
            users.add_user(store, name, role, actor="test", password=password, agent=agent)
    finally:
        store.dispose()
    return name, password


def log_in_page(page, base_url: str, name: str, password: str, next_path: str = "/voila/render/index.ipynb") -> None:
    """Log ``page`` in through the consoles' login form and follow on to ``next_path``."""
    page.goto(f"{base_url}/login?next={quote(next_path)}")
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("#login")
    page.wait_for_url(f"{base_url}{next_path}*")


def http_session(base_url: str, name: str, password: str):
    """A ``requests`` session logged in to the consoles at ``base_url`` through the login form."""
    import requests

    session = requests.Session()
    session.get(f"{base_url}/login", timeout=30).raise_for_status()
    answer = session.post(f"{base_url}/login", data={"username": name, "password": password,
                                                     "_xsrf": session.cookies["_xsrf"], "next": "/"},
                          allow_redirects=False, timeout=30)
    assert answer.status_code == 302, f"login as {name} refused: {answer.status_code} {answer.text[-500:]}"
    return session
