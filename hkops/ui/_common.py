"""Pieces every console shares: state names and colours, the status line, the busy bar, styles."""

from __future__ import annotations

import html
import logging
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import anywidget
import ipywidgets as widgets
import traitlets

from hkops.errors import HkopsError
from hkops.security import access
from hkops.security.access import Principal, is_principal
from hkops.network.client import ProvisioningClient, connect
from hkops.network.errors import ProvisioningError

log = logging.getLogger("hkops.ui")

ANY = "全部 any"

#: Chinese names of the number states, as ops staff say them.
STATE_ZH = {
    "planned": "规划",
    "available": "可用",
    "reserved": "预占",
    "assigned": "已分配",
    "active": "在用",
    "suspended": "停机",
    "quarantined": "冷冻",
    "blocked": "锁定",
}
STATE_COLOURS = {
    "planned": "#9ca3af",
    "available": "#16a34a",
    "reserved": "#f59e0b",
    "assigned": "#2563eb",
    "active": "#4f46e5",
    "suspended": "#dc2626",
    "quarantined": "#9333ea",
    "blocked": "#374151",
}


@dataclass(frozen=True)
class StateBadges:
    """Labels ("中文 state") and coloured badges for the states of one kind of thing."""

    css_class: str  # hkops-state (numbers), hkops-sim, hkops-order
    names_zh: dict[str, str]
    colours: dict[str, str]

    def label(self, state: str) -> str:
        zh = self.names_zh.get(state)
        return f"{zh} {state}" if zh else state

    def badge(self, state: str) -> str:
        return (f"<span class='hkops-state {self.css_class}-{html.escape(state)}'>"
                f"{html.escape(self.label(state))}</span>")

    def css(self) -> str:
        return "".join(f".{self.css_class}-{s} {{ background: {c}; }}\n" for s, c in self.colours.items())


NUMBER_BADGES = StateBadges("hkops-state", STATE_ZH, STATE_COLOURS)
STATE_LABELS = {state: NUMBER_BADGES.label(state) for state in STATE_ZH}


#: Who a console served behind the login acts as until its page request brings the user
#: (a preheated kernel builds its console before anyone asks for the page): nobody, no permission.
NOBODY = Principal("(not logged in)")
#: Mirrors of hkops.ui.login's names (not imported: that module pulls in Voilà's server).
_SESSION_ENV = "HTTP_X_HKOPS_CONSOLE_SESSION"
_LOGIN_ENV = "HKOPS_CONSOLE_LOGIN"


class NotLoggedIn(HkopsError):
    """A console served behind the login came without a valid session."""


def current_actor(*, required: bool = False) -> str:
    """Who this console acts as: the logged-in user whose page this kernel serves.

    Behind ``hkops serve``'s login (:mod:`hkops.ui.login`) that is the principal of the page's
    console session, checked now (expired, revoked or disabled: ``TokenRefused``). Before the
    page request reaches a preheated kernel there is nobody yet: :data:`NOBODY` (no permission),
    or :class:`NotLoggedIn` with ``required``. Outside a served console (a notebook of one's
    own, tests) it is the CLI's idea of who acts (``hkops.audit.default_actor``)."""
    token = os.environ.get(_SESSION_ENV)
    if token:
        from hkops.security.users import principal_for_token
        from hkops.store.engine import get_store

        return principal_for_token(get_store(), token, kinds=("console",))
    if os.environ.get(_LOGIN_ENV) == "1":
        if required:
            raise NotLoggedIn("这个页面没有登录 This console page came without a login: log in again")
        return NOBODY
    from hkops.audit import default_actor

    return default_actor()


def console_actor() -> str:
    """Who a console built without an explicit actor acts as: :func:`current_actor`, or
    :data:`NOBODY` when the login is not valid (``hkops.ui.show`` then says so on the page).

    A preheated kernel builds its console before anyone asks for the page: as nobody, so
    it reads nothing that the visitor it is handed to might not be allowed to see."""
    try:
        return current_actor()
    except HkopsError:
        return NOBODY


def is_nobody(actor) -> bool:
    """Whether a console was built for :data:`NOBODY` (a preheated kernel before its visitor)."""
    return repr(actor) == repr(NOBODY)


def user_line(actor: str) -> widgets.HTML:
    """The line at the top of a console saying who is logged in, with a link to log out."""
    if not is_principal(actor):
        return widgets.HTML(f"<div class='hkops-user hkops-muted'>{html.escape(str(actor))}</div>")
    scope = f" · 代理商 agent {html.escape(actor.agent)}" if actor.agent else ""
    logout = os.environ.get("VOILA_BASE_URL", "/").rstrip("/") + "/logout"
    return widgets.HTML(
        f"<div class='hkops-user'>登录 Logged in as <b class='hkops-user-name'>{html.escape(actor.name)}</b> "
        f"<span class='hkops-muted'>({html.escape(', '.join(actor.roles))}){scope}</span> · "
        f"<a class='hkops-logout' href='{html.escape(logout)}'>退出 Log out</a></div>")


def login_required_message(error: BaseException) -> widgets.HTML:
    """What a console page shows instead of the console when its login is not valid."""
    login = os.environ.get("VOILA_BASE_URL", "/").rstrip("/") + "/login"
    return widgets.HTML(f"<div class='hkops-msg hkops-msg-error hkops-login-needed'>✗ {html.escape(str(error))} "
                        f"<a href='{html.escape(login)}'>登录 Log in</a></div>")


@dataclass(frozen=True)
class PendingMove:
    """A move waiting for the operator's confirmation: ``run`` makes it and says what it did;
    ``subject`` is what it moves (an order number, a stock form)."""

    subject: str
    question: str
    run: Callable[[], str]

MAX_MESSAGE = 300


class StatusLine(widgets.HTML):
    """One line telling the operator what happened: success, information or a readable error."""

    def __init__(self):
        super().__init__()
        self.kind = ""
        self.text = ""
        self.last_error: BaseException | None = None
        self.add_class("hkops-status")

    def _show(self, kind: str, text: str) -> None:
        self.kind, self.text = kind, text
        mark = {"ok": "✓", "error": "✗", "info": "ℹ"}[kind]
        self.value = f"<div class='hkops-msg hkops-msg-{kind}'>{mark} {html.escape(text)}</div>"

    def ok(self, text: str) -> None:
        self._show("ok", text)

    def info(self, text: str) -> None:
        self._show("info", text)

    def error(self, text: str) -> None:
        self._show("error", text)

    def failure(self, error: BaseException) -> None:
        """Show ``error`` readably: an HkopsError's own message, anything else in one short line."""
        self.last_error = error
        if isinstance(error, HkopsError):
            self.error(_short(str(error)))
            return
        if isinstance(error, ProvisioningError):
            self.error(f"HLR 不可达 HLR unreachable or refused: {_short(one_line(error))}")
            return
        log.debug("console action failed", exc_info=error)
        detail = _short(str(error).strip().splitlines()[0] if str(error).strip() else "")
        self.error(f"出错了 Something went wrong ({type(error).__name__}){': ' + detail if detail else ''}. "
                   "Nothing was changed by the failed step; try again or tell the hkops team.")


def one_line(error: BaseException) -> str:
    """The first line of an error's message (its type when it has none), at most 200 characters."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return first if len(first) <= 200 else first[:199] + "…"


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


class GuardedConsole:
    """What every console does around a move: buttons off while it runs, any error shown in
    the status line (never raised), and a pending move that can be cancelled.

    A console sets ``status``, ``confirm_row`` and ``pending`` and lists its buttons in
    ``_buttons()``; one with a confirm row per form lists them in ``_confirm_rows()``.
    """

    def _guard(self, work, announce: bool = False) -> None:
        """Run ``work``; show its error in the status line instead of raising."""
        buttons = self._buttons()
        for button in buttons:
            button.disabled = True
        try:
            work()
            if announce:
                self.status.ok("已刷新 Refreshed.")
        except Exception as error:  # noqa: BLE001 - the console must never show a traceback
            if isinstance(error, access.AccessDenied) and getattr(self, "store", None) is not None:
                access.deny(self.store, error)  # a refusal raised inside a transaction
            self.status.failure(error)
        finally:
            for button in buttons:
                button.disabled = False

    def cancel(self, quiet: bool = False) -> None:
        """Drop the pending move; nothing changes."""
        had = self.pending is not None
        self.pending = None
        for row in self._confirm_rows():
            row.close()
        if had and not quiet:
            self.status.info("已取消 Cancelled: nothing changed.")

    def _confirm_rows(self) -> tuple:
        return (self.confirm_row,)

    def _ask(self, pending, question: str, row: "ConfirmRow | None" = None) -> None:
        """Hold ``pending`` until the operator confirms ``question`` in ``row`` (default: the confirm row)."""
        self.cancel(quiet=True)
        self.pending = pending
        (row or self.confirm_row).ask(question)
        self.status.info("请确认 Confirm or cancel the move below.")

    #: What the operator is told to do first when Confirm is clicked with nothing pending.
    nothing_pending = "choose a move first"

    def _take_pending(self):
        """The pending move, its question closed; None (and a message) when there is none."""
        pending = self.pending
        if pending is None:
            self.status.error(f"没有待确认的操作 Nothing to confirm: {self.nothing_pending}.")
            return None
        self.cancel(quiet=True)
        return pending

    def refresh(self) -> None:
        """Reload what the console shows (``_refresh``); a failure shows in the status line.
        ``hkops.ui.show`` calls this when the page opens."""
        self._guard(self._refresh)

    def first_load(self) -> None:
        """The console's first read, at the end of building it: none when it was built for
        nobody (a preheated kernel before anyone asked for the page), so it holds nothing a
        visitor might not be allowed to see; ``hkops.ui.show`` reads as the visitor."""
        if not is_nobody(self.actor):
            self.refresh()

    def confirm(self) -> None:
        """Make the pending move, then show the figures again (``_refresh``); a move made whose
        screen could not be refreshed says both."""
        pending = self._take_pending()
        if pending is None:
            return

        def run():
            done = pending.run()
            try:
                self._refresh()
            except Exception as error:  # noqa: BLE001 - the move is made; say so, then the problem
                self.status.failure(error)
                self.status.error(f"{done} But the screen could not be refreshed: {self.status.text}")
                return
            self.status.ok(done)

        self._guard(run)


class UsesHlr:
    """A console that talks to the HLR through ``self._network``: the client it was given, or
    one made on first use for $HKOPS_HLR (short timeouts, so the page answers fast)."""

    _network: ProvisioningClient | None = None

    @property
    def network(self) -> ProvisioningClient:
        if self._network is None:
            self._network = connect(connect_timeout=1, timeout=2, retries=1, backoff=0.1)
        return self._network


class ConfirmRow(widgets.VBox):
    """The question a console asks before a move, with Confirm and Cancel; hidden otherwise."""

    def __init__(self):
        self.text = widgets.HTML().add_class("hkops-confirm-text")
        self.confirm_button = widgets.Button(description="确认 Confirm", button_style="danger", icon="check",
                                             layout=widgets.Layout(width="auto")).add_class("hkops-confirm")
        self.cancel_button = widgets.Button(description="取消 Cancel", icon="times",
                                            layout=widgets.Layout(width="auto")).add_class("hkops-cancel")
        super().__init__([self.text, widgets.HBox([self.confirm_button, self.cancel_button])],
                         layout=widgets.Layout(display="none"))
        self.add_class("hkops-confirm-row")

    def ask(self, question: str) -> None:
        """Show ``question`` (HTML, already escaped) with the two buttons."""
        self.text.value = f"<div class='hkops-question'>{question}</div>"
        self.layout.display = "flex"

    def close(self) -> None:
        self.layout.display = "none"
        self.text.value = ""


class PageConnected(anywidget.AnyWidget):
    """Invisible: tells the kernel that the page showing it has connected, and runs ``on_connect``
    then, once (or after ``fallback_s`` seconds if no page says so).

    A kernel's widget changes reach a page only once its widget manager has loaded every model;
    changes sent while it is still loading are lost. This widget's view is drawn after that, so
    a console that loads in the background starts when it comes, its progress bar on the page."""

    _esm = """
export default {
  render({ model }) {
    if (!model.get("connected")) {
      model.set("connected", true);
      model.save_changes();
    }
  },
};
"""
    connected = traitlets.Bool(False).tag(sync=True)

    def __init__(self, on_connect: Callable[[], object], fallback_s: float = 30):
        super().__init__(layout=widgets.Layout(display="none"))
        self._on_connect, self._lock = on_connect, threading.Lock()
        self._fallback = threading.Timer(fallback_s, self._start)
        self._fallback.daemon = True
        self.observe(lambda change: self._start() if change["new"] else None, "connected")
        self._fallback.start()

    def _start(self) -> None:
        with self._lock:
            on_connect, self._on_connect = self._on_connect, None
        self._fallback.cancel()
        if on_connect is not None:
            on_connect()


class Busy(widgets.HBox):
    """A progress bar shown while the console works; hidden otherwise."""

    def __init__(self):
        self.bar = widgets.IntProgress(value=0, min=0, max=1, bar_style="info",
                                       layout=widgets.Layout(width="240px"))
        self.label = widgets.Label()
        super().__init__([self.bar, self.label], layout=widgets.Layout(visibility="hidden", height="28px"))
        self.add_class("hkops-progress")

    @contextmanager
    def busy(self, label: str, steps: int) -> Iterator[Callable[[], None]]:
        """Show the bar for ``steps`` steps; the block calls the yielded function after each
        (or with the number of steps done, for work that reports in chunks)."""
        outer = self.layout.visibility == "visible"
        if not outer:
            self.bar.max, self.bar.value = max(steps, 1), 0
            self.label.value = f"{label}…"
            self.layout.visibility = "visible"

        def step(done: int = 1) -> None:
            if not outer:
                self.bar.value = min(self.bar.value + done, self.bar.max)

        try:
            yield step
        finally:
            if not outer:
                self.layout.visibility = "hidden"
                self.label.value = ""


_STYLE = """
.hkops-console { font-size: 13px; max-width: 1400px; }
.hkops-title { margin: 4px 0 8px; font-size: 20px; }
.hkops-title span { color: #6b7280; font-weight: normal; font-size: 15px; }
.hkops-filters { gap: 4px 12px; }
.hkops-buttons { gap: 6px; }
.hkops-actions h3 { margin: 0 0 6px; font-size: 15px; }
.hkops-table-wrap { max-height: 420px; overflow: auto; border: 1px solid #e5e7eb; border-radius: 4px; }
.hkops-table { border-collapse: collapse; width: 100%; font-size: 12.5px; }
.hkops-table th { position: sticky; top: 0; background: #f3f4f6; text-align: left; padding: 4px 8px;
                  font-weight: 600; white-space: nowrap; border-bottom: 1px solid #d1d5db; }
.hkops-table td { padding: 3px 8px; border-bottom: 1px solid #f1f1f1; white-space: nowrap; }
.hkops-table .num { text-align: right; font-variant-numeric: tabular-nums; }
.hkops-table tr.hkops-picked td { background: #fef3c7; }
.hkops-number { font-family: ui-monospace, Menlo, Consolas, monospace; font-weight: 600; }
.hkops-state { padding: 0 6px; border-radius: 8px; font-size: 11.5px; color: #fff; white-space: nowrap; }
.hkops-msg { padding: 6px 10px; border-radius: 4px; margin: 2px 0; }
.hkops-msg-ok { background: #ecfdf5; color: #065f46; border-left: 4px solid #10b981; }
.hkops-msg-error { background: #fef2f2; color: #991b1b; border-left: 4px solid #ef4444; }
.hkops-msg-warning { background: #fffbeb; color: #92400e; border-left: 4px solid #f59e0b; }
.hkops-msg-info { background: #eff6ff; color: #1e40af; border-left: 4px solid #3b82f6; }
.hkops-question { background: #fffbeb; border: 1px solid #f59e0b; padding: 6px 10px; border-radius: 4px;
                  margin: 6px 0; }
.hkops-muted, .hkops-as-of { color: #6b7280; }
.hkops-empty { color: #6b7280; padding: 16px; border: 1px dashed #d1d5db; border-radius: 4px; }
.hkops-chart { width: 100%; min-width: 0; }
.hkops-user { text-align: right; font-size: 12.5px; margin: 0 0 4px; }
.hkops-console-link { color: #2563eb; text-decoration: underline; }
.hkops-index table { border-collapse: collapse; }
.hkops-index td { padding: 4px 12px 4px 0; vertical-align: top; }
.hkops-panel { border: 1px solid #e5e7eb; border-radius: 4px; padding: 6px 10px; margin: 4px 0; }
.hkops-panel h3 { margin: 0 0 6px; font-size: 15px; }
.hkops-checks { margin: 4px 0; }
.hkops-check { padding: 1px 0; }
.hkops-check-ok { color: #065f46; }
.hkops-check-bad { color: #991b1b; font-weight: 600; }
.hkops-check-wait { color: #6b7280; }
"""


def stylesheet() -> widgets.HTML:
    """The consoles' styles (put one in each console's children)."""
    return widgets.HTML(f"<style>{_STYLE}{NUMBER_BADGES.css()}</style>", layout=widgets.Layout(display="none"))


def field(description: str, placeholder: str = "", css: str = "", width: str = "260px",
          kind=widgets.Text, **extra) -> widgets.Widget:
    """A labelled input (Text by default) with the consoles' look; ``css`` names it for tests and browsers."""
    if placeholder:
        extra["placeholder"] = placeholder
    widget = kind(description=description, layout=widgets.Layout(width=width),
                  style={"description_width": "initial"}, **extra)
    return widget.add_class(css) if css else widget


def choice(description: str, options, css: str = "", width: str = "260px", value=None) -> widgets.Dropdown:
    """A labelled dropdown with the consoles' look."""
    options = list(options)
    widget = widgets.Dropdown(description=description, options=options,
                              value=value if value is not None else (_option_value(options[0]) if options else None),
                              layout=widgets.Layout(width=width), style={"description_width": "initial"})
    return widget.add_class(css) if css else widget


def _option_value(option):
    return option[1] if isinstance(option, tuple) else option


def set_options(dropdown: widgets.Dropdown, options: list) -> None:
    """Replace a dropdown's options, keeping its value when it is still offered (else the first)."""
    current = dropdown.value
    dropdown.options = options
    values = [_option_value(o) for o in options]
    dropdown.value = current if current in values else (values[0] if values else None)


def button(description: str, css: str, style: str = "", icon: str = "", width: str = "auto") -> widgets.Button:
    """A button named ``css`` (the class tests and browsers click)."""
    return widgets.Button(description=description, button_style=style, icon=icon,
                          layout=widgets.Layout(width=width)).add_class(css)


def panel(title: str, children: list, flex: str = "1 1 420px") -> widgets.VBox:
    """A bordered box with a heading (``title`` is HTML)."""
    return widgets.VBox([widgets.HTML(f"<h3>{title}</h3>"), *children],
                        layout=widgets.Layout(flex=flex, min_width="0")).add_class("hkops-panel")


def row(children: list, css: str = "") -> widgets.HBox:
    """Widgets side by side, wrapping when the page is narrow."""
    box = widgets.HBox(children, layout=widgets.Layout(flex_flow="row wrap", width="100%"))
    return box.add_class(css) if css else box


def html_table(head: list[str], rows: list[list[str]], *, numeric: set[int] = frozenset(),
               row_attrs: list[str] | None = None, empty: str = "没有记录 Nothing to show.") -> str:
    """An HTML table in the consoles' style. ``head`` is plain text; cells are HTML, already escaped;
    columns listed in ``numeric`` are right-aligned; ``row_attrs`` are extra ``<tr>`` attributes."""
    if not rows:
        return f"<div class='hkops-empty'>{html.escape(empty)}</div>"
    cls = lambda i: " class='num'" if i in numeric else ""  # noqa: E731
    top = "".join(f"<th{cls(i)}>{html.escape(h)}</th>" for i, h in enumerate(head))
    body = []
    for n, cells in enumerate(rows):
        attrs = f" {row_attrs[n]}" if row_attrs and row_attrs[n] else ""
        body.append(f"<tr{attrs}>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(cells)) + "</tr>")
    return (f"<div class='hkops-table-wrap'><table class='hkops-table'><thead><tr>{top}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def check_lines(checks: list[tuple[str, bool | None, str]]) -> str:
    """Checks as ✓/✗ lines: (name, passed — None while it cannot be told yet, detail)."""
    lines = []
    for name, passed, detail in checks:
        mark, css = {True: ("✓", "ok"), False: ("✗", "bad"), None: ("…", "wait")}[passed]
        tail = f": {html.escape(detail)}" if detail else ""
        lines.append(f"<div class='hkops-check hkops-check-{css}'>{mark} {html.escape(name)}{tail}</div>")
    return f"<div class='hkops-checks'>{''.join(lines)}</div>"


class _Rehearsal(Exception):
    """Raised to roll back a rehearsed use case."""


def rehearse(store, work):
    """Run ``work(conn)`` (a use case given a Connection) in a write transaction that is then
    rolled back: what the move would do, refused or not, without doing it. Returns its result."""
    outcome = []
    try:
        with store.write() as conn:
            outcome.append(work(conn))
            raise _Rehearsal
    except _Rehearsal:
        pass
    return outcome[0]
