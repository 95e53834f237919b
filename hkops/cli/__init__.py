"""The ``hkops`` command. Bad input: a one-line reason on stderr and exit status 2."""

from __future__ import annotations

import os
import sys
import warnings

import typer
from sqlalchemy.exc import IntegrityError, OperationalError
from typer.core import TyperGroup

from hkops.cli import alerts as alerts_cli
from hkops.cli import check as check_cli
from hkops.cli import users as users_cli
from hkops.cli.common import actor, echo, emit_json, progress, reset_actor, store
from hkops.errors import HkopsError, InvalidValue, InvalidValues

try:
    from typer._click.exceptions import ClickException, UsageError
except ImportError:
    from click.exceptions import ClickException, UsageError

#: Sub-command groups: name -> module under hkops.cli holding its ``app``. A group's module (and
#: what it imports) is loaded only when one of its commands runs, so that every command starts fast.
LAZY_GROUPS = {
    "numbers": "numbers",
    "usage": "usage",
    "hlr": "hlr",
    "sims": "sims",
    "cards": "cards",
    "subscribers": "subscribers",
    "keys": "keys",
    "catalogue": "catalogue",
    "po": "po",
    "stock": "stock",
    "agents": "agents",
    "orders": "orders",
    "payments": "payments",
    "audit": "audit",
    "users": "users",
    "commissions": "commissions",
    "settlement": "settlement",
    "withdrawals": "withdrawals",
    "alerts": "alerts",
}


class _LazyGroups(TyperGroup):
    """The top-level ``hkops`` group: imports a sub-command group's module when it is asked for."""

    def list_commands(self, ctx):
        names = super().list_commands(ctx)
        return names + [name for name in LAZY_GROUPS if name not in names]

    def get_command(self, ctx, name):
        if name in LAZY_GROUPS and name not in self.commands:
            import importlib

            group = typer.main.get_group(importlib.import_module(f"hkops.cli.{LAZY_GROUPS[name]}").app)
            group.name = name
            self.commands[name] = group
        return super().get_command(ctx, name)

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except UsageError as error:  # suggest the groups not loaded yet too ("Did you mean 'numbers'?")
            from difflib import get_close_matches

            close = get_close_matches(args[0], self.list_commands(ctx)) if args else []
            if close and "Did you mean" not in error.message:
                error.message = f"{error.message.rstrip('.')}. Did you mean {', '.join(map(repr, close))}?"
            raise


app = typer.Typer(rich_markup_mode="markdown", help="hkops: numbers, SIM cards, core network, distribution and settlement.", cls=_LazyGroups,
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.command("check")(check_cli.check)
app.command("monitor")(alerts_cli.monitor)


# Logging in is every user's first command: its module is light, so these load with the CLI.
app.command("login")(users_cli.login)
app.command("logout")(users_cli.logout)
app.command("whoami")(users_cli.whoami)
db_app = typer.Typer(rich_markup_mode="markdown", help="The database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
settings_app = typer.Typer(rich_markup_mode="markdown", help="Operator settings (quarantine days, reservation TTL).", no_args_is_help=True)
app.add_typer(settings_app, name="settings")
carriers_app = typer.Typer(rich_markup_mode="markdown", help="The carriers this operator runs numbers for.", no_args_is_help=True)
app.add_typer(carriers_app, name="carriers")


@app.callback()
def _global():
    # Who acts is found out afresh for each command: HKOPS_TOKEN or the `hkops login` session.
    reset_actor()


@db_app.command("upgrade")
def db_upgrade():
    """Apply the schema migrations (Alembic) to the configured database."""
    from hkops.store import migrate
    from hkops.store.engine import get_store

    db = get_store()
    migrate.upgrade(db)
    echo(f"database at revision {migrate.current_revision(db)} ({db.engine.url.render_as_string(hide_password=True)})")


@db_app.command("current")
def db_current():
    """Show the schema revision of the configured database."""
    from hkops.store import migrate
    from hkops.store.engine import get_store

    echo(str(migrate.current_revision(get_store())))


@app.command()
def demo(
    seed: int = typer.Option(7, "--seed", help="The same seed builds the same world."),
    per_province: int = typer.Option(2, "--blocks-per-province", min=1, max=20),
    fresh: bool = typer.Option(False, "--fresh", help="Empty the database first (deletes all its data)."),
    orders: int = typer.Option(3_000, "--orders", min=0, max=100_000, help="Sales orders to place."),
    cards: int = typer.Option(3_000, "--cards", min=0, max=100_000, help="SIM cards sold before hkops took orders."),
):
    """Build the reproducible demo world into the configured database (its HLR registry in
    the database's own folder, see ``hkops.network.registry.folder_for``)."""
    from hkops import demo as demo_module
    from hkops.network.registry import folder_for

    db = store()
    if fresh:
        demo_module.empty(db, folder_for(db), demo_module.usage_folder())
    with progress(len(demo_module.PROVINCES) * per_province * 10_000, "numbers", "demo numbers") as bar, \
            progress(orders, "orders", "demo orders") as order_bar:
        summary = demo_module.build(db, seed=seed, per_province=per_province, progress=bar.update, orders=orders,
                                    cards=cards, hlr_dir=folder_for(db), order_progress=order_bar.update,
                                    usage_dir=demo_module.usage_folder())
    echo(f"demo world (seed {summary.seed}): {summary.numbers} numbers in {summary.blocks} blocks; "
         + ", ".join(f"{k} {v}" for k, v in summary.by_state.items() if v))
    echo(f"{sum(summary.orders_by_state.values())} orders: "
         + ", ".join(f"{k} {v}" for k, v in summary.orders_by_state.items() if v))
    money = summary.commissions
    echo(f"commissions: {sum(money['entries'].values())} ledger entries ({money['entries'].get('reversal', 0)} "
         "clawbacks); settlement batches " + (", ".join(f"{k} {v}" for k, v in money["batches"].items()) or "none")
         + "; withdrawals " + (", ".join(f"{k} {v}" for k, v in money["withdrawals"].items()) or "none"))
    echo("demo users, each with the password demo-NAME (hkops login admin, password demo-admin): admin, ops, "
         "warehouse, sales, finance, analyst, auditor, and the agent users a-east (level 1) and a-east-1 (level 2)")


@app.command()
def serve(
    port: int = typer.Option(8866, "--port", help="Port for the consoles."),
    demo_seed: int = typer.Option(7, "--seed", help="Seed of the demo built on first start."),
):
    """Serve the consoles with Voilà, and the HLR simulator beside them (the demo world is
    built first if the database is empty)."""
    import signal
    import subprocess

    from hkops import demo as demo_module
    from hkops.network.registry import folder_for
    from hkops.numbers import service
    from hkops.ui.serving import stop_processes, voila_command

    # The server runs as the machine's operator, who holds the data folder and its key file
    # anyway (README, Security); the people using the consoles log in there.
    import getpass

    db = store(login=False)
    if service.stats(db)["blocks"] == 0:
        echo("empty database: building the demo world first")
        with progress(len(demo_module.PROVINCES) * 2 * 10_000, "numbers", "demo numbers") as bar, \
                progress(3_000, "orders", "demo orders") as order_bar:
            demo_module.build(db, seed=demo_seed, progress=bar.update, hlr_dir=folder_for(db),
                              order_progress=order_bar.update, usage_dir=demo_module.usage_folder())
    changed = service.regrade_if_rules_changed(db, actor=getpass.getuser())
    if changed:
        echo(f"grading rules changed: {sum(changed.values())} number(s) re-graded")
    from hkops.security import users

    if not users.any_user(db):
        echo("warning: the database has no users, so nobody can log in to the consoles; add an admin with "
             "`hkops users add NAME --role admin`", err=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops serve as Ctrl+C does
    hlr = _start_hlr(folder_for(db))
    voila = None
    try:
        echo(f"consoles at http://localhost:{port}/voila/render/index.ipynb  (Ctrl+C stops)")
        sys.stdout.flush()
        # its own session: Ctrl+C reaches serve alone, which stops Voilà, its kernels and the HLR
        voila = subprocess.Popen(voila_command(port), start_new_session=True)
        voila.wait()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_processes([voila, hlr])


def _start_hlr(data_dir):
    """Start the HLR simulator beside the consoles unless one answers at $HKOPS_HLR already."""
    import socket
    import subprocess

    address = os.environ.setdefault("HKOPS_HLR", "127.0.0.1:7500")
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        echo(f"HLR at {address}")
        return None
    except OSError:
        pass
    echo(f"starting the HLR simulator at {address} (registry {data_dir})")
    return subprocess.Popen([sys.executable, "-m", "hkops", "hlr", "serve", "--host", host, "--port", port,
                             "--data", str(data_dir)], stdout=subprocess.DEVNULL)


@app.command()
def lookup(
    value: str = typer.Argument(..., help="An MSISDN, ICCID, IMSI, order number or client order id, "
                                          "subscriber (S123) or agent code; `-` reads the value (a resident "
                                          "ID) from standard input."),
    as_json: bool = typer.Option(False, "--json"),
):
    """The whole chain around VALUE: number, card, subscriber (masked), orders, agent chain,
    shipment, payments and stock moves. A resident ID is never taken on the command line:
    give `-` and type it on standard input."""
    from hkops import lookup as lookup_module
    from hkops.cli.common import read_resident_id
    from hkops.ids import mask_id_text

    if value.strip() == "-":
        value = read_resident_id("-")
    elif lookup_module.classify(value)[0] == "resident_id":
        raise InvalidValue("value", mask_id_text(value), "a resident ID is never taken on the command line "
                           "(ps and shell history keep it): use `hkops lookup -` and give it on standard input")
    found = lookup_module.lookup(store(), value, actor=actor())
    if as_json:
        emit_json(found)
    else:
        echo(lookup_module.format_lookup(found))


@settings_app.command("show")
def settings_show(as_json: bool = typer.Option(False, "--json")):
    """Show every setting."""
    from hkops import settings

    with store().read() as conn:
        values = {key: settings.get(conn, key) for key in settings.DEFAULTS}
    emit_json(values) if as_json else [echo(f"{k} = {v}") for k, v in values.items()]


@settings_app.command("set")
def settings_set(key: str, value: str):
    """Change a setting (e.g. quarantine_days 90, reservation_ttl 30m)."""
    from hkops import settings

    with store().write() as conn:
        settings.set_value(conn, key, value, actor=actor())
    echo(f"{key} = {value}")


@carriers_app.command("add")
def carriers_add(names: list[str]):
    """Configure carriers (China Mobile, China Unicom, China Telecom, China Broadnet)."""
    from hkops import carriers

    with store().write() as conn:
        echo("configured carriers: " + ", ".join(carriers.configure(conn, names, actor=actor())))


@carriers_app.command("list")
def carriers_list():
    """Show the configured carriers."""
    from hkops import carriers

    with store().read() as conn:
        echo("\n".join(carriers.configured(conn)) or "no carriers configured (hkops carriers add ...)")


def _refused_option(args: list[str]) -> str | None:
    """Why an argument is refused outright: a password on the command line, or ``--actor``."""
    for arg in args:
        if arg == "--":
            break
        option = str(arg).split("=", 1)[0]
        if option.startswith("--pass") and option != "--password-stdin":
            return (f"{option} is refused: a password is never given on the command line (the process list and "
                    "the shell history would show it); leave it out to be asked, or pipe it in with --password-stdin")
        if option == "--actor":
            return ("--actor no longer decides who acts: hkops acts as the user logged in with hkops login, "
                    "or the user of the API token in HKOPS_TOKEN")
    return None


def _audit_refusal(error: HkopsError) -> None:
    """Audit a refusal the use case could not audit itself (one raised inside a transaction)."""
    from hkops.security.access import AccessDenied, deny

    if isinstance(error, AccessDenied) and not error.audited:
        from hkops.store.engine import get_store

        deny(get_store(), error)


_show_warning = warnings.showwarning


def _warn_user(message, category, filename, lineno, file=None, line=None) -> None:
    """hkops's own warnings (a usage file left out, ...) as one line for the user, without the
    line of code that raised them; other libraries' warnings as Python shows them."""
    if category.__module__.split(".")[0] == "hkops":
        print(f"hkops: warning: {message}", file=file or sys.stderr)
    else:
        _show_warning(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn user errors into exit status 2."""
    warnings.showwarning = _warn_user
    refused = _refused_option(sys.argv[1:] if argv is None else argv)
    if refused:
        print(f"hkops: error: {refused}", file=sys.stderr)
        sys.exit(2)
    try:
        status = app(args=argv, prog_name="hkops", standalone_mode=False)
    except InvalidValues as exc:
        print(f"hkops: error: {exc.summary()}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        sys.exit(2)
    except HkopsError as exc:
        _audit_refusal(exc)
        print(f"hkops: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except IntegrityError as exc:
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig else ""
        print(f"hkops: error: a concurrent change got there first, nothing was changed ({detail}); try again",
              file=sys.stderr)
        sys.exit(2)
    except OperationalError as exc:
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        print(f"hkops: error: the database cannot be used: {detail}", file=sys.stderr)
        sys.exit(1)
    except ClickException as exc:
        message = exc.format_message().strip()
        if message:
            print(message if "\n" in message else f"hkops: error: {message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("hkops: aborted", file=sys.stderr)
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)
