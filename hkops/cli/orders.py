"""``hkops orders ...``: Sales orders: create or import, pay, allocate, ship, deliver, activate, cancel, return, show.

Money is given and shown in yuan (元); the resident ID is only ever shown masked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hkops.cli.cards import Hlr, network
from hkops.cli.common import ID_FILE_HELP, ID_HELP, actor, echo, emit_json, read_resident_id, store
from hkops.ids import display_msisdn
from hkops.money import fen_to_yuan, format_yuan, yuan_to_fen
from hkops.timeutil import local

app = typer.Typer(rich_markup_mode="markdown", help="Sales orders: create or import, pay, allocate, ship, deliver, activate, cancel, return, "
                       "show.",
                  no_args_is_help=True)

Json = typer.Option(False, "--json", help="Print only JSON.")
Reason = typer.Option(..., "--reason", help="Why (kept on the order and in the audit trail).")


def _as_json(order) -> dict:
    return {**order.as_dict(), "total": str(fen_to_yuan(order.total_fen))}


def report(order, as_json: bool) -> None:
    if as_json:
        emit_json(_as_json(order))
        return
    number = display_msisdn(order.msisdn) if order.msisdn else "-"
    card = f", SIM {order.iccid}" if order.iccid else ""
    reason = (f" ({order.reason})" if order.reason and order.state in ("rejected", "cancelled", "returned", "expired")
              else "")
    retried = "" if order.created else " (taken before under this client order id; nothing new was written)"
    echo(f"order {order.number}: {order.state}{reason}; {order.plan} for {order.customer_name} ({order.id_masked}), "
         f"number {number}{card}, total {format_yuan(order.total_fen)}{retried}")


@app.command()
def create(
    plan: str = typer.Option(..., "--plan", help="Plan code."),
    name: str = typer.Option(..., "--name", help="The customer's real name."),
    resident_id: Optional[str] = typer.Option(None, "--id", help=ID_HELP),
    id_file: Optional[Path] = typer.Option(None, "--id-file", help=ID_FILE_HELP),
    contact: str = typer.Option(..., "--contact", help="The customer's phone number."),
    province: str = typer.Option(..., "--province", help="Ship-to province (北京, Beijing...)."),
    address: str = typer.Option(..., "--address", help="Ship-to address."),
    msisdn: Optional[str] = typer.Option(None, "--msisdn",
                                         help="The number chosen (default: the first free plain one)."),
    agent: Optional[str] = typer.Option(None, "--agent", help="The selling agent's code (default: a direct order)."),
    client_id: Optional[str] = typer.Option(None, "--client-id", help="The channel's own order id (a retry returns "
                                                                     "the first order)."),
    product: Optional[str] = typer.Option(None, "--product", help="SIM product (default: the carrier's first)."),
    location: Optional[str] = typer.Option(None, "--location", help="Stock location to sell from."),
    draft: bool = typer.Option(False, "--draft", help="Store as a draft without checks (submit it later)."),
    as_json: bool = Json,
):
    """Take an order: checked and approved at once (the number reserved), or refused with every reason."""
    from hkops.orders import intake
    from hkops.orders.records import DIRECT

    resident_id = read_resident_id(resident_id, id_file)
    order = intake.create_order(
        store(), channel=agent or DIRECT, plan=plan, customer_name=name, resident_id=resident_id,
        contact=contact, ship_province=province, ship_address=address, msisdn=msisdn, product=product,
        client_order_id=client_id, location=location, submit=not draft, actor=actor())
    report(order, as_json)


@app.command("import")
def import_file(
    path: Path = typer.Argument(..., help="CSV with a header naming its columns: plan, customer_name, resident_id, "
                                          "contact, ship_province, ship_address; optional channel (empty: direct), "
                                          "msisdn, product, client_order_id, location."),
    as_json: bool = Json,
):
    """Take the orders of a file, one per line: every line or none (bad lines listed with their numbers)."""
    from hkops.orders import intake

    placed = intake.import_orders(store(), path, actor=actor())
    new = [o for o in placed if o.created]
    if as_json:
        emit_json({"created": len(new), "already_placed": len(placed) - len(new),
                   "orders": [o.number for o in placed], "total_fen": sum(o.total_fen for o in new)})
        return
    echo(f"{len(new)} order(s) placed ({format_yuan(sum(o.total_fen for o in new))} due), "
         f"{len(placed) - len(new)} placed before (same client order id)")


@app.command()
def submit(number: str, as_json: bool = Json):
    """Check a draft and approve it (or reject it with its reasons)."""
    from hkops.orders import intake

    report(intake.submit_order(store(), number, actor=actor()), as_json)


@app.command()
def pay(
    number: str,
    amount: str = typer.Option(..., "--amount", metavar="YUAN", help="Amount paid, in yuan."),
    method: str = typer.Option(..., "--method", help="alipay, wechat, bank, cash..."),
    reference: str = typer.Option(..., "--reference", help="The payment's transaction id."),
    as_json: bool = Json,
):
    """Record a payment; the one that completes the total allocates the number and a card (none left: paid, waiting)."""
    from hkops.orders import service

    report(service.pay_order(store(), number, yuan_to_fen(amount, "amount"), method=method, reference=reference,
                             actor=actor()), as_json)


@app.command()
def allocate(location: Optional[str] = typer.Option(None, "--location", help="Only orders sold from here."),
             as_json: bool = Json):
    """Pick cards for paid orders waiting for stock, oldest first, as far as the stock goes."""
    from hkops.orders import service

    done = service.allocate_waiting(store(), location=location, actor=actor())
    if as_json:
        emit_json(done)
    else:
        echo(f"{len(done)} order(s) allocated" + (f": {', '.join(done)}" if done else ""))


@app.command()
def ship(
    number: str,
    courier: str = typer.Option(..., "--courier", help="The courier's name."),
    tracking: str = typer.Option(..., "--tracking", help="The tracking number."),
    as_json: bool = Json,
):
    """Hand the order's card to a courier: it leaves stock for the customer."""
    from hkops.orders import service

    report(service.ship_order(store(), number, courier=courier, tracking_no=tracking, actor=actor()), as_json)


@app.command()
def shipment(
    number: str,
    state: str = typer.Argument(..., help="in_transit, exception, delivered or returned (cancels the order)."),
    reason: Optional[str] = typer.Option(None, "--reason"),
    as_json: bool = Json,
):
    """Record where the order's parcel is."""
    from hkops.orders import service

    report(service.update_shipment(store(), number, state, actor=actor(), reason=reason), as_json)


@app.command()
def deliver(number: str, as_json: bool = Json):
    """The customer signed for the parcel."""
    from hkops.orders import service

    report(service.deliver_order(store(), number, actor=actor()), as_json)


@app.command()
def activate(number: str, hlr: Optional[str] = Hlr, as_json: bool = Json):
    """Pair and activate the order's card through the HLR (stays delivered while the HLR has not confirmed)."""
    from hkops.orders import service

    order = service.activate_order(store(), number, actor=actor(), network=network(hlr))
    if order.state == "delivered" and not as_json:
        echo(f"order {order.number}: the HLR has not confirmed the activation yet; `hkops orders sync` finishes it")
        return
    report(order, as_json)


@app.command()
def sync(hlr: Optional[str] = Hlr, as_json: bool = Json):
    """Send pending HLR commands and move orders whose card is now active to activated."""
    from hkops.orders import service

    done = service.sync_activations(store(), network(hlr), actor=actor())
    if as_json:
        emit_json(done)
    else:
        echo(f"{len(done)} order(s) activated" + (f": {', '.join(done)}" if done else ""))


@app.command()
def topup(number: str, amount: str = typer.Option(..., "--amount", metavar="YUAN", help="First top-up, in yuan."),
          as_json: bool = Json):
    """Record the customer's first top-up (at least the plan's amount)."""
    from hkops.orders import service

    report(service.record_first_topup(store(), number, yuan_to_fen(amount, "amount"), actor=actor()), as_json)


@app.command()
def complete(number: str, as_json: bool = Json):
    """Close an order after its first top-up."""
    from hkops.orders import service

    report(service.complete_order(store(), number, actor=actor()), as_json)


@app.command()
def cancel(number: str, reason: str = Reason, as_json: bool = Json):
    """Cancel before activation: card back in stock, number released, payments refunded."""
    from hkops.orders import service

    report(service.cancel_order(store(), number, actor=actor(), reason=reason), as_json)


@app.command("return")
def return_(
    number: str,
    reason: str = Reason,
    refund: Optional[str] = typer.Option(None, "--refund", metavar="YUAN", help="Refund (default: all paid)."),
    hlr: Optional[str] = Hlr,
    as_json: bool = Json,
):
    """Return an activated order: the card is terminated (number quarantined) and the money refunded."""
    from hkops.orders import service

    refund_fen = yuan_to_fen(refund, "refund") if refund is not None else None
    report(service.return_order(store(), number, actor=actor(), reason=reason, refund_fen=refund_fen,
                                network=network(hlr)), as_json)


@app.command()
def show(number: str, as_json: bool = Json):
    """An order with its shipment, payments, card and timeline (resident ID masked)."""
    from hkops.orders import service

    detail = service.order_detail(store(), number, actor=actor())
    if as_json:
        emit_json(detail)
        return
    order = service.get_order(store(), number, actor=actor())
    report(order, False)
    echo(f"  channel {order.channel}" + (" via " + " > ".join(a["code"] for a in reversed(order.agent_chain))
                                         if order.agent_chain else "") + f", sold from {order.location}")
    echo(f"  paid {format_yuan(detail['paid_fen'])}, due {format_yuan(detail['due_fen'])}")
    if detail["shipment"]:
        parcel = detail["shipment"]
        echo(f"  shipment {parcel['courier']} {parcel['tracking_no']}: {parcel['state']}")
    if detail["card"]:
        card = detail["card"]
        pending = f", waiting for the HLR to confirm '{card['pending_action']}'" if card["pending_action"] else ""
        echo(f"  SIM {card['iccid']}: {card['state']}{pending}")
    for item in detail["timeline"]:
        echo(f"  {local(item['at'])}  {item['actor']:<10} {item['entity']:<8} {item['action']:<18} "
             f"{item['from_state'] or '-'} -> {item['to_state'] or '-'}  {item['reason'] or ''}")


@app.command()
def expire(
    as_of: Optional[str] = typer.Option(None, "--as-of", help="ISO date-time to expire as of (Asia/Shanghai unless "
                                                            "it names a zone; default: now)."),
    as_json: bool = Json,
):
    """Expire approved orders left unpaid longer than the setting order_payment_ttl (default 24h):
    their numbers go back to the pool."""
    from datetime import datetime

    from hkops.errors import InvalidValue
    from hkops.orders import service
    from hkops.timeutil import SHANGHAI

    now = None
    if as_of:
        try:
            now = datetime.fromisoformat(as_of)
        except ValueError:
            raise InvalidValue("as-of", as_of, "must be an ISO date or date-time such as 2026-11-01T08:00") from None
        now = now if now.tzinfo else now.replace(tzinfo=SHANGHAI)
    expired = service.expire_unpaid(store(), actor=actor(), now=now)
    if as_json:
        emit_json(expired)
        return
    for number in expired:
        echo(f"order {number}: expired unpaid, its number released")
    echo(f"{len(expired)} order(s) expired")


@app.command("list")
def list_orders(
    state: Optional[str] = typer.Option(None, "--state"),
    agent: Optional[str] = typer.Option(None, "--agent", help="Orders placed through this agent."),
    limit: int = typer.Option(100, "--limit", min=1, max=100_000),
    as_json: bool = Json,
):
    """Orders, newest first, and the count per state."""
    from hkops.orders import service

    db = store()
    found = service.list_orders(db, state=state, agent=agent, limit=limit, actor=actor())
    if as_json:
        emit_json([_as_json(order) for order in found])
        return
    for order in found:
        number = display_msisdn(order.msisdn) if order.msisdn else "-"
        echo(f"{order.number}  {local(order.created_at)}  {order.state:<11} {order.channel:<8} {order.plan:<10} "
             f"{number:<13} {format_yuan(order.total_fen):>12}")
    counts = service.pipeline_counts(db, actor=actor())
    echo(", ".join(f"{state} {count}" for state, count in counts.items() if count) or "no orders")
