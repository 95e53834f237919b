"""Attacks on reading (issue 9, item 8): agent A's user goes after agent B's orders through each
CLI command, each console (widget values set directly, as a hand-crafted widget message would)
and look-up, and is refused every time or shown nothing of B's; an analyst looks everywhere for
a full resident ID (and its birth date) and finds none. SQLite and PostgreSQL."""

from __future__ import annotations

import json

import ipywidgets as widgets
import pytest

from hkops.analytics import sales
from hkops.network import ProvisioningClient, TcpTransport
from hkops.security import users
from hkops.stock import service as stock
from hkops.ui import allocation_console, lifecycle_console, orders_console, stock_console
from scoping_world import two_agents  # noqa: F401  (fixture)
from strategies import hkops_cli  # noqa: F401  (fixture)


def down_client() -> ProvisioningClient:
    """A client for an HLR nobody runs (port 1 refuses at once)."""
    return ProvisioningClient(TcpTransport("127.0.0.1", 1, connect_timeout=0.2), retries=1, backoff=0, timeout=0.5)


def b_data(w) -> dict[str, str]:
    """What must never reach agent A's user: B's order, client id, number, card, person."""
    return {"order": w.b.number, "client id": "B-CLIENT-1", "number": str(w.b.msisdn), "card": w.b.iccid,
            "name": w.b.customer_name, "resident id": w.b_rid}


def leaked(text: str, w, asked: str = "") -> list[str]:
    """Which of B's data ``text`` shows (leaving out the value that was asked for)."""
    return [what for what, value in b_data(w).items() if value and value != asked and value in text]


@pytest.fixture
def as_user(hkops_cli, monkeypatch):
    """Run hkops as user ``name`` through an API token in HKOPS_TOKEN: (status, stdout, stderr)."""
    tokens: dict[str, str] = {}

    def run(db, name: str, *args, stdin: str = ""):
        if name not in tokens:
            tokens[name] = users.issue_token(db, name, actor="installer")[0]
        monkeypatch.setenv("HKOPS_TOKEN", tokens[name])
        return hkops_cli(db, *args, stdin=stdin)

    return run


def shown(widget) -> str:
    """Every value a console holds (HTML, text fields, dropdown options): what a browser could get."""
    parts = []
    if isinstance(widget, (widgets.HTML, widgets.Text, widgets.Textarea, widgets.Label)):
        parts.append(str(widget.value))
    if hasattr(widget, "options") and not isinstance(widget, widgets.Box):
        parts.append(repr(list(widget.options)))
    for child in getattr(widget, "children", ()) or ():
        parts.append(shown(child))
    if hasattr(widget, "to_json"):  # a plotly FigureWidget
        parts.append(widget.to_json())
    return "\n".join(parts)


def console_text(console) -> str:
    return shown(console) + "\n" + console.status.value


# ------------------------------------------------------------------ the CLI


def test_agent_a_is_refused_each_cli_command_that_names_b_s_data(two_agents, as_user):
    w = two_agents
    attacks = [
        ("orders", "show", w.b.number, "--json"), ("orders", "show", w.b.number), ("orders", "show", "B-CLIENT-1"),
        ("lookup", w.b.number), ("lookup", "B-CLIENT-1"), ("lookup", w.b.msisdn), ("lookup", w.b.iccid),
        ("lookup", f"S{w.b.subscriber_id}"), ("lookup", "B"), ("lookup", "--json", w.b.number),
        ("stock", "onhand", "--location", "AG-B"), ("stock", "ledger", "--location", "AG-B"),
        ("agents", "show", "B"), ("agents", "show", "B", "--json"),
        ("payments", "list", "--order", w.b.number), ("payments", "list", "--json"),
        ("numbers", "show", w.b.msisdn), ("cards", "show", w.b.iccid), ("audit", "--subject", w.b.number),
        ("audit", "log", "--json"), ("hlr", "pending", "--json"), ("usage", "stats", "--json"),
    ]
    for command in attacks:
        status, out, err = as_user(w.db, "ua", *command)
        assert status == 2, (command, out, err)
        assert "ua may not" in err and not leaked(out + err, w, str(command[2 if len(command) > 2 else 1])), \
            (command, err)
    # B's customer is "not registered", word for word as someone nobody registered.
    status, out, err = as_user(w.db, "ua", "subscribers", "show", "--subscriber", w.b.subscriber_id)
    assert (status, err.replace(str(w.b.subscriber_id), "N")) == \
        (2, as_user(w.db, "ua", "subscribers", "show", "--subscriber", 999_999)[2].replace("999999", "N"))
    assert as_user(w.db, "ua", "subscribers", "show", "--subscriber", w.a.subscriber_id)[0] == 0
    status, out, err = as_user(w.db, "ua", "lookup", "-", stdin=w.b_rid + "\n")  # B's customer's resident ID
    assert status == 2 and "ua may not look up" in err and not leaked(out + err, w), err
    # The same commands work for A's own order, so the refusals are the scope, not a broken command.
    assert as_user(w.db, "ua", "orders", "show", w.a.number, "--json")[0] == 0
    assert as_user(w.db, "ua", "lookup", w.a.iccid)[0] == 0


def test_agent_a_s_cli_listings_hold_nothing_of_b(two_agents, as_user):
    w = two_agents
    for command in (("orders", "list", "--json"), ("orders", "list"), ("stock", "onhand", "--json"),
                    ("stock", "ledger", "--json"), ("stock", "ledger", "--iccid", w.b.iccid, "--json"),
                    ("stock", "ledger", "--document", w.b.number, "--json"), ("agents", "list", "--json"),
                    ("agents", "list"), ("stock", "alerts", "--json")):
        status, out, err = as_user(w.db, "ua", *command)
        assert status == 0, (command, err)
        assert not leaked(out, w, w.b.iccid if w.b.iccid in command else "") and "AG-B" not in out, (command, out)
    assert w.a.number in as_user(w.db, "ua", "orders", "list")[1]
    assert '"code": "B"' not in as_user(w.db, "ua", "agents", "list", "--json")[1]
    assert json.loads(as_user(w.db, "ua", "stock", "ledger", "--iccid", w.b.iccid, "--json")[1]) == []
    # An admin sees B's order in the same listing.
    assert w.b.number in as_user(w.db, "root", "orders", "list")[1]


# ------------------------------------------------------------------ the consoles


def test_the_orders_console_refuses_b_s_order_typed_or_sent_as_a_widget_value(two_agents):
    w = two_agents
    console = orders_console(w.db, actor=w.ua, network=down_client())
    console.refresh()
    for value in (w.b.number, "B-CLIENT-1"):
        console.order_query.value = value  # what a hand-crafted widget message sets
        console.open_button.click()
        assert console.status.kind == "error" and "ua may not see order" in console.status.value, console.status.value
        assert console.order is None or console.order.number != w.b.number
        assert not leaked(console_text(console), w, value)
    console.status.value = console.order_query.value = ""  # what the attacker typed
    for state in ("allocated", "approved"):
        console.show_state(state)
        assert not leaked(console_text(console), w)
    assert w.b.number not in {value for _, value in console.order_pick.options}
    console.order_query.value = w.a.number
    console.open_button.click()
    assert console.order.number == w.a.number  # its own order opens


def test_the_stock_console_shows_nothing_at_or_of_b(two_agents):
    w = two_agents
    console = stock_console(w.db, actor=w.ua)
    console.refresh()
    for dropdown in (console.location_filter, console.ledger_location, console.transfer_from, console.count_location):
        assert "AG-B" not in {value for _, value in dropdown.options}
    transfer = stock.ledger(w.db, location="AG-B")[-1]["document"]
    for field, value in (("ledger_iccid", w.b.iccid), ("ledger_document", transfer),
                         ("ledger_document", w.b.number)):
        console.ledger_iccid.value = console.ledger_document.value = ""
        getattr(console, field).value = value
        console.ledger_button.click()
        assert "hkops-empty" in console.ledger_table.value or w.b.iccid not in console.ledger_table.value
        assert not leaked(console_text(console), w, value) and "AG-B" not in console.ledger_table.value
    assert "AG-B" not in console.on_hand_table.value and "AG-A3" in console.on_hand_table.value


def test_the_lifecycle_console_refuses_b_s_card_number_and_person(two_agents):
    w = two_agents
    console = lifecycle_console(w.db, network=down_client(), actor=w.ua)
    for value in (w.b.iccid, str(w.b.msisdn), w.b_rid, w.b_rid[:2] + "*" * 15 + w.b_rid[-1]):
        console.query.value = value
        console.find_button.click()
        assert console.card is None, value
        assert not leaked(console_text(console), w, value), value
        assert "ua may not" in console.status.text or "No SIM card found" in console.status.text, console.status.text


def test_the_allocation_console_refuses_an_agent_user(two_agents):
    w = two_agents
    console = allocation_console(w.db, actor=w.ua)
    console.refresh()
    console.pattern.value = str(w.b.msisdn)
    console.search()
    assert "ua may not search numbers" in console.status.value
    assert str(w.b.msisdn) not in shown(console.results if hasattr(console, "results") else console)


# ------------------------------------------------------------------ the analyst


def test_an_analyst_finds_no_full_resident_id_or_birth_date_anywhere(two_agents, as_user):
    w = two_agents
    secrets = [w.a_rid, w.b_rid, "19900307", "1990-03-07"]
    seen = []
    for command in (("orders", "list", "--json"), ("orders", "show", w.b.number, "--json"),
                    ("orders", "show", w.a.number), ("lookup", w.b.number, "--json"), ("lookup", w.b.msisdn),
                    ("lookup", w.b.iccid, "--json"), ("lookup", f"S{w.b.subscriber_id}", "--json"),
                    ("cards", "show", w.b.iccid, "--json"), ("numbers", "show", w.b.msisdn, "--json"),
                    ("payments", "list", "--json"), ("stock", "ledger", "--json"),
                    ("subscribers", "show", "--subscriber", w.b.subscriber_id)):
        status, out, err = as_user(w.db, "ann", *command)
        seen.append(out + err)
    status, out, err = as_user(w.db, "ann", "lookup", "-", "--json", stdin=w.b_rid + "\n")
    seen.append(out + err)
    orders_ui = orders_console(w.db, actor=w.ann, network=down_client())
    orders_ui.refresh()
    orders_ui.order_query.value = w.b.number
    orders_ui.open_button.click()
    assert orders_ui.order.number == w.b.number  # the analyst reads orders...
    seen.append(console_text(orders_ui))
    cards_ui = lifecycle_console(w.db, network=down_client(), actor=w.ann)
    cards_ui.query.value = w.b.iccid
    cards_ui.find_button.click()
    seen.append(console_text(cards_ui))
    frame = sales.orders_frame(w.db, actor=w.ann)
    seen += [frame.to_csv(), sales.funnel(w.db, actor=w.ann).to_csv(), sales.daily_orders(frame).to_csv()]
    text = "\n".join(seen)
    assert not [s for s in secrets if s in text]
    # ...but not who the customers are: no name, contact or address.
    assert w.b.customer_name not in text and w.b.ship_address not in text and w.b.contact not in text
