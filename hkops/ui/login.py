"""Logins on the consoles: Voilà behind a login page, and kernels that belong to their user.

``hkops serve`` runs :class:`ConsoleVoila` (``python -m hkops.ui.login``), Voilà with:

* :class:`ConsoleIdentityProvider`: a login page (``/login``) posting a name and password to
  :func:`hkops.security.users.authenticate` (lock-out after repeated failures lives there),
  then a server-side console session (:func:`~hkops.security.users.start_session`) whose token
  is kept in a signed cookie (HttpOnly, SameSite=Strict, Secure over TLS). Every request
  checks the session (:func:`~hkops.security.users.principal_for_token`: expired, revoked or
  disabled is refused); ``/logout`` revokes it. The login form is XSRF-protected (tornado's
  ``_xsrf``), and so is every other POST.
* the cookie secret in the data folder (:func:`cookie_secret`, owner-only, made on first use,
  kept across restarts so that a restart logs nobody out);
* :class:`KernelOwnerAuthorizer`: the kernel that serves a page belongs to the user who asked
  for the page; another user may not open its websocket, use its API, or shut it down
  (Voilà's ``/voila/api/shutdown/<id>`` only checks that someone is logged in: replaced);
* the page's session token handed to its kernel in the request header :data:`SESSION_HEADER`
  (``VoilaConfiguration.http_header_envs``; a preheated kernel receives it after
  ``voila.utils.wait_for_request()``), which the console turns back into the acting user
  (:func:`hkops.ui._common.current_actor`). An open page's websocket is closed once its
  session has expired or was revoked (:class:`SessionCheckedConnection`). The header is stripped from every incoming
  request, so only the server sets it; the channel that carries it to a preheated kernel
  (``/voila/query/<kernel>``) answers loopback connections only, once per kernel.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from jupyter_core.utils import ensure_async
from jupyter_server.auth.authorizer import Authorizer
from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.auth.identity import IdentityProvider, User
from jupyter_server.auth.login import LoginFormHandler
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from tornado import web
from traitlets import default
from voila.app import Voila
from voila.request_info_handler import RequestInfoSocketHandler
from voila.shutdown_kernel_handler import VoilaShutdownKernelHandler
from voila.tornado.handler import TornadoVoilaHandler

from hkops.config import DATA_DIR
from hkops.errors import HkopsError

#: The cookie holding the console session (its token, signed with the cookie secret).
COOKIE_NAME = "hkops-console"
#: The cookie secret's file in the data folder.
SECRET_FILE = "console_cookie_secret"
#: The request header (set by the server only) that hands the page's session to its kernel,
#: and the environment variable the kernel finds it in.
SESSION_HEADER = "X-Hkops-Console-Session"
SESSION_ENV = "HTTP_X_HKOPS_CONSOLE_SESSION"
#: Set in the environment of Voilà and hence of every kernel: this console needs a login.
LOGIN_ENV = "HKOPS_CONSOLE_LOGIN"
#: A signed cookie older than this is refused outright (the session itself expires sooner).
COOKIE_MAX_AGE_DAYS = 1
#: An open console's session is checked again at most this often (seconds), on its next message.
RECHECK_S = 30.0


class ConsoleSecretError(HkopsError):
    """The cookie secret file cannot be used (readable by others, or empty)."""


def cookie_secret(path: str | Path | None = None) -> bytes:
    """The consoles' cookie secret: read from ``path`` (default ``DATA_DIR/console_cookie_secret``),
    made there on first use (32 random bytes, hex, mode 0600). A file others may read is refused."""
    path = Path(path) if path else DATA_DIR / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise ConsoleSecretError(f"{path} may be read by others (mode {mode:o}); chmod 600 it") from None
        secret = path.read_bytes().strip()
        if len(secret) < 32:
            raise ConsoleSecretError(f"{path} is empty or too short; delete it to make a new one "
                                     "(everyone will have to log in again)")
        return secret
    secret = secrets.token_hex(32).encode("ascii")
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret)
    return secret


def _store():
    from hkops.store.engine import get_store

    return get_store()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def _off_loop(function, *args):
    """Run a blocking database call (argon2, a session look-up) off tornado's event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


# --------------------------------------------------------------------------- who is logged in


class ConsoleIdentityProvider(IdentityProvider):
    """Users log in with their hkops name and password; the session lives in the database."""

    @default("cookie_name")
    def _cookie_name_default(self):
        return COOKIE_NAME

    @default("token")
    def _token_default(self):
        return ""  # no shared Jupyter token: only user logins

    @default("need_token")
    def _need_token_default(self):
        return False

    @property
    def auth_enabled(self) -> bool:
        return True

    @property
    def login_available(self) -> bool:
        return True

    def get_handlers(self) -> list:
        # Voilà passes its own login handler class; the consoles use theirs.
        return [(r"/login", LoginHandler), (r"/logout", LogoutHandler)]

    def session_token(self, handler: web.RequestHandler) -> str | None:
        """The session token in the request's signed cookie (None if absent or its signature is bad)."""
        value = handler.get_secure_cookie(self.get_cookie_name(handler), max_age_days=COOKIE_MAX_AGE_DAYS)
        return value.decode("ascii", "replace") if value else None

    async def get_user(self, handler: web.RequestHandler) -> User | None:
        """The logged-in user of a request, checked against the database every time."""
        if SESSION_HEADER in handler.request.headers:
            del handler.request.headers[SESSION_HEADER]  # only the server hands a session to a kernel
        token = self.session_token(handler)
        if not token:
            return None
        from hkops.security.users import TokenRefused, principal_for_token

        try:
            principal = await _off_loop(lambda: principal_for_token(_store(), token, kinds=("console",)))
        except TokenRefused as refused:
            self.log.info("console session refused: %s", refused)
            self.clear_login_cookie(handler)
            return None
        handler.hkops_session = token
        if isinstance(handler, ConsolePageHandler):
            handler.request.headers[SESSION_HEADER] = token
        roles = ", ".join(principal.roles)
        return User(username=principal.name, name=principal.name, display_name=f"{principal.name} ({roles})")

    def set_session_cookie(self, handler: web.RequestHandler, token: str) -> None:
        """Keep the session ``token`` in the browser: signed, HttpOnly, SameSite=Strict, Secure over TLS."""
        secure = self.secure_cookie if self.secure_cookie is not None else handler.request.protocol == "https"
        options = {"httponly": True, "samesite": "Strict", "path": handler.base_url,
                   "expires_days": None, **self.cookie_options}
        if secure:
            options["secure"] = True
        handler.set_secure_cookie(self.get_cookie_name(handler), token, **options)


def log_in(name: str, password: str) -> str:
    """Check ``name`` and ``password`` (lock-out included) and start a console session: its token."""
    from hkops.security import users

    db = _store()
    return users.start_session(db, users.authenticate(db, name, password), kind="console")


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hkops 登录 Log in</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f3f4f6; }}
form {{ max-width: 340px; margin: 12vh auto; background: #fff; padding: 24px 28px; border-radius: 6px;
        box-shadow: 0 1px 4px rgba(0,0,0,.15); }}
h1 {{ font-size: 20px; margin: 0 0 16px; }}
label {{ display: block; margin: 10px 0 4px; font-size: 13px; color: #374151; }}
input[type=text], input[type=password] {{ width: 100%; box-sizing: border-box; padding: 6px 8px; font-size: 14px; }}
button {{ margin-top: 16px; padding: 6px 18px; font-size: 14px; }}
.hkops-login-error {{ background: #fef2f2; color: #991b1b; border-left: 4px solid #ef4444; padding: 6px 10px;
                      margin-bottom: 10px; font-size: 13px; }}
</style></head>
<body><form method="post" action="{action}" class="hkops-login">
<h1>hkops 控制台登录 Log in to the consoles</h1>
{message}
{xsrf}
<input type="hidden" name="next" value="{next}">
<label for="username">用户名 User name</label>
<input type="text" id="username" name="username" value="{name}" autocomplete="username" autofocus required>
<label for="password">密码 Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<button type="submit" id="login">登录 Log in</button>
</form></body></html>
"""


class LoginHandler(LoginFormHandler):
    """``/login``: the form (GET) and the login (POST, XSRF-checked by the base handler)."""

    def _page(self, message: str | None = None, name: str = "") -> None:
        note = f"<div class='hkops-login-error'>{html.escape(message)}</div>" if message else ""
        self.set_header("Cache-Control", "no-store")
        self.write(_PAGE.format(action=html.escape(self.request.path), message=note,
                                xsrf=self.xsrf_form_html(), name=html.escape(name),
                                next=html.escape(self.get_argument("next", default=self.base_url))))

    @allow_unauthenticated
    def get(self):
        if self.current_user:
            self._redirect_safe(self.get_argument("next", default=self.base_url))
        else:
            self._page()

    @allow_unauthenticated
    async def post(self):
        from hkops.security.users import LoginRefused

        name = self.get_body_argument("username", default="")
        password = self.get_body_argument("password", default="")
        try:
            token = await _off_loop(log_in, name, password)
        except LoginRefused as refused:
            self.set_status(401)
            self._page(str(refused), name)
            return
        self.identity_provider.set_session_cookie(self, token)
        self.log.info("console login: %s", name)
        self._redirect_safe(self.get_argument("next", default=self.base_url))


class LogoutHandler(JupyterHandler):
    """``/logout``: revoke the session, shut down the kernels it holds, forget the cookie."""

    @allow_unauthenticated
    async def get(self):
        from hkops.security.users import revoke_session

        provider = self.identity_provider
        token = provider.session_token(self)
        if token:
            await _off_loop(lambda: revoke_session(_store(), token))
            authorizer = self.authorizer
            if isinstance(authorizer, KernelOwnerAuthorizer):
                for kernel_id in authorizer.kernels_of_session(token):
                    authorizer.forget(kernel_id)
                    if kernel_id in self.kernel_manager:
                        await ensure_async(self.kernel_manager.shutdown_kernel(kernel_id))
        provider.clear_login_cookie(self)
        self.redirect(self.base_url.rstrip("/") + "/login")


# --------------------------------------------------------------------------- whose kernel it is


@dataclass(frozen=True)
class KernelOwner:
    user: str
    session: str  # SHA-256 of the session token


class SessionCheckedConnection(ZMQChannelsWebsocketConnection):
    """A console's websocket to its kernel, closed when its session has expired or was revoked
    (checked on the page's messages, at most every :data:`RECHECK_S` seconds)."""

    _checked_at = 0.0

    def handle_incoming_message(self, incoming_msg) -> None:
        import time

        from hkops.security.users import TokenRefused, principal_for_token

        now = time.monotonic()
        if now - self._checked_at >= RECHECK_S:
            token = getattr(self.websocket_handler, "hkops_session", None)
            try:
                principal_for_token(_store(), token or "", kinds=("console",))
            except TokenRefused as refused:
                self.log.info("closing a console's kernel channels: %s", refused)
                self.websocket_handler.close(code=1008, reason="session ended")
                return
            self._checked_at = now
        super().handle_incoming_message(incoming_msg)


class KernelOwnerAuthorizer(Authorizer):
    """Kernels belong to the user whose page request started or took them from the pool;
    only that user may use the kernel API and websocket of a kernel."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.owners: dict[str, KernelOwner] = {}

    def claim(self, kernel_id: str, user: User, session: str) -> None:
        self.owners[kernel_id] = KernelOwner(user.username, _digest(session))

    def forget(self, kernel_id: str) -> None:
        self.owners.pop(kernel_id, None)

    def owns(self, user: User | None, kernel_id: str | None) -> bool:
        owner = self.owners.get(kernel_id or "")
        return user is not None and owner is not None and owner.user == user.username

    def kernels_of_session(self, session: str) -> list[str]:
        digest = _digest(session)
        return [kernel for kernel, owner in self.owners.items() if owner.session == digest]

    def is_authorized(self, handler, user, action, resource) -> bool:
        if user is None:
            return False
        if resource == "kernels":
            kernel_id = (handler.path_kwargs or {}).get("kernel_id") or getattr(handler, "kernel_id", None)
            if not self.owns(user, kernel_id):
                self.log.warning("refused %s: kernel %s is not one of %s's", action, kernel_id, user.username)
                return False
        return True


class _ClaimingKernelManager:
    """Voilà's kernel manager as one page request sees it: the kernel it gets is claimed for the user."""

    def __init__(self, manager, claim):
        self._manager, self._claim = manager, claim

    def __getattr__(self, name):
        return getattr(self._manager, name)

    async def get_rendered_notebook(self, *args, **kwargs):
        render_task, rendered, kernel_id = await self._manager.get_rendered_notebook(*args, **kwargs)
        self._claim(kernel_id)
        return render_task, rendered, kernel_id

    async def start_kernel(self, *args, **kwargs):
        kernel_id = await ensure_async(self._manager.start_kernel(*args, **kwargs))
        self._claim(kernel_id)
        return kernel_id


class ConsolePageHandler(TornadoVoilaHandler):
    """A console page (``/voila/render/...``): its kernel becomes the logged-in user's."""

    @property
    def kernel_manager(self):
        authorizer = self.authorizer
        manager = self.settings["kernel_manager"]
        if not isinstance(authorizer, KernelOwnerAuthorizer):
            return manager
        return _ClaimingKernelManager(manager, lambda kernel_id: authorizer.claim(
            kernel_id, self.current_user, getattr(self, "hkops_session", "")))

    @web.authenticated
    async def get(self, path=None):
        self.xsrf_token  # noqa: B018 - sets the _xsrf cookie Voilà's shutdown beacon sends back
        await super().get(path)


class OwnedKernelShutdownHandler(VoilaShutdownKernelHandler):
    """``/voila/api/shutdown/<id>`` (sent when a page closes): only the kernel's owner may."""

    @web.authenticated
    async def post(self, kernel_id):
        authorizer = self.authorizer
        if isinstance(authorizer, KernelOwnerAuthorizer):
            if not authorizer.owns(self.current_user, kernel_id):
                raise web.HTTPError(403, f"kernel {kernel_id} is not yours")
            authorizer.forget(kernel_id)
        await ensure_async(self.kernel_manager.shutdown_kernel(kernel_id))
        self.set_status(204)
        self.finish()


def _loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address((address or "").split("%")[0]).is_loopback
    except ValueError:
        return False


class KernelRequestInfoHandler(RequestInfoSocketHandler):
    """``/voila/query/<kernel>``, where a preheated kernel waits for its page's request (and session):
    loopback connections only, one per running kernel, and the request is handed over once."""

    def open(self, kernel_id: str) -> None:
        waiters, cache = RequestInfoSocketHandler._waiters, RequestInfoSocketHandler._cache
        manager = self.application.settings["kernel_manager"]
        if not _loopback(self.request.remote_ip) or kernel_id in waiters or kernel_id not in manager:
            self.close(code=1008, reason="refused")
            return
        waiters[kernel_id] = self
        payload = cache.pop(kernel_id, None)
        if payload is not None:
            self.write_message(payload)

    def on_close(self) -> None:
        waiters = RequestInfoSocketHandler._waiters
        for kernel_id in [k for k, waiter in waiters.items() if waiter is self]:
            del waiters[kernel_id]


# --------------------------------------------------------------------------- the application


class ConsoleVoila(Voila):
    """Voilà serving the consoles behind the login (see the module's docstring)."""

    _REPLACED = {VoilaShutdownKernelHandler: OwnedKernelShutdownHandler,
                 RequestInfoSocketHandler: KernelRequestInfoHandler,
                 TornadoVoilaHandler: ConsolePageHandler}

    @default("identity_provider_class")
    def _identity_provider_class_default(self):
        return ConsoleIdentityProvider

    @default("authorizer_class")
    def _authorizer_class_default(self):
        return KernelOwnerAuthorizer

    @default("cookie_secret")
    def _cookie_secret_default(self):
        return cookie_secret()

    @default("kernel_websocket_connection_class")
    def _kernel_websocket_connection_class_default(self):
        return SessionCheckedConnection

    def init_settings(self) -> dict:
        headers = list(self.voila_configuration.http_header_envs)
        if SESSION_HEADER not in headers:
            self.voila_configuration.http_header_envs = [*headers, SESSION_HEADER]
        settings = super().init_settings()
        settings.update(xsrf_cookies=True, xsrf_cookie_kwargs={"samesite": "Strict"})
        return settings

    def init_handlers(self) -> list:
        handlers = []
        for spec in super().init_handlers():
            replacement = self._REPLACED.get(spec[1])
            handlers.append((spec[0], replacement, *spec[2:]) if replacement else spec)
        return handlers


def main() -> None:
    """``python -m hkops.ui.login NOTEBOOK_DIR [Voilà options]``: what ``hkops serve`` runs."""
    os.environ[LOGIN_ENV] = "1"
    os.environ.pop(SESSION_ENV, None)
    ConsoleVoila.launch_instance()


if __name__ == "__main__":
    main()
