"""The ``hkops`` command. Bad input: a one-line reason on stderr and exit status 2."""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer
from sqlalchemy.exc import IntegrityError, OperationalError

from hkops import audit as audit_module
from hkops.cli import numbers as numbers_cli
from hkops.cli import cards as cards_cli
from hkops.cli import hlr as hlr_cli
from hkops.cli import keys as keys_cli
from hkops.cli import sims as sims_cli
from hkops.cli import subscribers as subscribers_cli
from hkops.cli import usage as usage_cli
from hkops.cli import agents as agents_cli
from hkops.cli import catalogue as catalogue_cli
from hkops.cli import orders as orders_cli
from hkops.cli import payments as payments_cli
from hkops.cli import po as po_cli
from hkops.cli import stock as stock_cli
from hkops.cli import users as users_cli
from hkops.cli.common import actor, echo, emit_json, progress, reset_actor, store
from hkops.errors import HkopsError, InvalidValue, InvalidValues

try:
    from typer._click.exceptions import ClickException
except ImportError:
    from click.exceptions import ClickException

app = typer.Typer(help="hkops: numbers, SIM cards, core network, distribution and settlement.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(numbers_cli.app, name="numbers")
app.add_typer(usage_cli.app, name="usage")
app.add_typer(hlr_cli.app, name="hlr")
app.add_typer(sims_cli.app, name="sims")
app.add_typer(cards_cli.app, name="cards")
app.add_typer(subscribers_cli.app, name="subscribers")
app.add_typer(keys_cli.app, name="keys")
app.add_typer(catalogue_cli.app, name="catalogue")
app.add_typer(po_cli.app, name="po")
app.add_typer(stock_cli.app, name="stock")
app.add_typer(agents_cli.app, name="agents")
app.add_typer(orders_cli.app, name="orders")
app.add_typer(payments_cli.app, name="payments")
app.add_typer(users_cli.app, name="users")
app.command("login")(users_cli.login)
app.command("logout")(users_cli.logout)
app.command("whoami")(users_cli.whoami)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
settings_app = typer.Typer(help="Operator settings (quarantine days, reservation TTL).", no_args_is_help=True)
app.add_typer(settings_app, name="settings")
carriers_app = typer.Typer(help="The carriers this operator runs numbers for.", no_args_is_help=True)
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
):
    """Build the reproducible demo world into the configured database."""
    from hkops import demo as demo_module

    from hkops.config import DATA_DIR

    db = store()
    if fresh:
        demo_module.empty(db, DATA_DIR / "hlr")
    with progress(len(demo_module.PROVINCES) * per_province * 10_000, "numbers", "demo numbers") as bar, \
            progress(orders, "orders", "demo orders") as order_bar:
        summary = demo_module.build(db, seed=seed, per_province=per_province, progress=bar.update, orders=orders,
                                    hlr_dir=DATA_DIR / "hlr", order_progress=order_bar.update)
    echo(f"demo world (seed {summary.seed}): {summary.numbers} numbers in {summary.blocks} blocks; "
         + ", ".join(f"{k} {v}" for k, v in summary.by_state.items() if v))
    echo(f"{sum(summary.orders_by_state.values())} orders: "
         + ", ".join(f"{k} {v}" for k, v in summary.orders_by_state.items() if v))
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
    from hkops.config import DATA_DIR
    from hkops.numbers import service
    from hkops.ui.serving import voila_command

    # The server runs as the machine's operator, who holds the data folder and its key file
    # anyway (README, Security); the people using the consoles log in there.
    import getpass

    db = store(login=False)
    if service.stats(db)["blocks"] == 0:
        echo("empty database: building the demo world first")
        with progress(len(demo_module.PROVINCES) * 2 * 10_000, "numbers", "demo numbers") as bar, \
                progress(3_000, "orders", "demo orders") as order_bar:
            demo_module.build(db, seed=demo_seed, progress=bar.update, hlr_dir=DATA_DIR / "hlr",
                              order_progress=order_bar.update)
    changed = service.regrade_if_rules_changed(db, actor=getpass.getuser())
    if changed:
        echo(f"grading rules changed: {sum(changed.values())} number(s) re-graded")
    hlr = _start_hlr(DATA_DIR / "hlr")
    echo(f"consoles at http://localhost:{port}/voila/render/index.ipynb  (Ctrl+C stops)")
    sys.stdout.flush()
    voila = subprocess.Popen(voila_command(port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        voila.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for child in (voila, hlr):
            if child is not None and child.poll() is None:
                child.terminate()
                child.wait(timeout=30)


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
                                          "resident ID, subscriber (S123) or agent code."),
    as_json: bool = typer.Option(False, "--json"),
):
    """The whole chain around VALUE: number, card, subscriber (masked), orders, agent chain,
    shipment, payments and stock moves."""
    from hkops import lookup as lookup_module

    found = lookup_module.lookup(store(), value)
    if as_json:
        emit_json(found)
    else:
        echo(lookup_module.format_lookup(found))


@app.command()
def audit(
    subject: Optional[str] = typer.Option(None, "--subject", help="A number, block or other subject."),
    actor_name: Optional[str] = typer.Option(None, "--by", help="Only this actor's records."),
    action: Optional[str] = typer.Option(None, "--action"),
    entity: Optional[str] = typer.Option(None, "--entity", help="number, block, setting, carrier, grading."),
    since: Optional[str] = typer.Option(None, "--since", help="ISO date/time (Asia/Shanghai), e.g. 2026-11-01."),
    until: Optional[str] = typer.Option(None, "--until", help="ISO date/time (Asia/Shanghai), exclusive."),
    limit: int = typer.Option(100, "--limit", min=1, max=100_000),
    as_json: bool = typer.Option(False, "--json"),
):
    """List audit records, newest first."""
    from datetime import datetime

    from hkops.ids import parse_msisdn
    from hkops.timeutil import SHANGHAI, local

    def moment(field: str, value: str | None):
        if not value:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidValue(field, value, "must be an ISO date or date-time such as 2026-11-01 or 2026-11-01T08:00") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=SHANGHAI)

    if subject and subject.replace(" ", "").lstrip("+").isdigit() and len(subject.replace(" ", "")) >= 11:
        subject = parse_msisdn(subject)
    with store().read() as conn:
        rows = audit_module.query(conn, subject=subject, actor=actor_name, action=action, entity=entity,
                                  since=moment("since", since), until=moment("until", until), limit=limit)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        echo(f"{local(r['at'])}  {r['actor']:<10} {r['entity']:<7} {r['subject']:<12} {r['action']:<10} "
             f"{r['from_state'] or '-'} -> {r['to_state'] or '-'}  {r['reason'] or ''}")


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


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn user errors into exit status 2."""
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
