"""``hkops po ...``: Purchase orders (采购): create, confirm, receive vendor card files, close, cancel.

Money is given and shown in yuan (元); it is stored as integer fen. Deliveries are
received with ``hkops stock receive PO FILE``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Optional

import typer

from hkops.cli.common import actor, echo, emit_json, store
from hkops.errors import InvalidValue
from hkops.money import fen_to_yuan, format_yuan, yuan_to_fen
from hkops.timeutil import local

app = typer.Typer(rich_markup_mode="markdown", help="Purchase orders (采购): create, confirm, receive vendor card files, close, cancel.",
                  no_args_is_help=True)

Reason = typer.Option(None, "--reason", help="Why (kept in the audit trail).")
Json = typer.Option(False, "--json", help="Print only JSON.")


def parse_line(text: str) -> tuple[str, int, int]:
    """``PRODUCT:QUANTITY:UNIT_COST_YUAN`` as (product, quantity, unit cost in fen)."""
    parts = text.split(":")
    if len(parts) != 3:
        raise InvalidValue("line", text, "must be PRODUCT:QUANTITY:UNIT_COST_YUAN, e.g. CM-NANO:5000:3.50")
    product, quantity, cost = (p.strip() for p in parts)
    if not quantity.isdigit():
        raise InvalidValue("quantity", quantity, f"of line {text!r} must be a whole number of cards")
    return product, int(quantity), yuan_to_fen(cost, "unit cost")


def as_dict(order) -> dict:
    """A purchase order for --json: money in fen and in yuan."""
    data = asdict(order)
    for item in [data, *data["lines"], *data["receipts"]]:
        for key in [k for k in item if k.endswith("_fen")]:
            item[key.removesuffix("_fen")] = fen_to_yuan(item[key])
    return data


def show_order(order) -> None:
    echo(f"{order.number}  {order.state}  vendor {order.vendor} -> {order.warehouse}  "
         f"ordered {order.ordered}, received {order.received}"
         + (f", {order.under_delivered} never delivered" if order.under_delivered else "")
         + (f", {order.over_received} over" if order.over_received else ""))
    for line in order.lines:
        echo(f"  {line.product:<12} {line.quantity:>8} × {format_yuan(line.unit_cost_fen)}  received {line.received}"
             + (f", {line.outstanding} outstanding" if line.outstanding else ""))
    echo(f"  extra cost {format_yuan(order.extra_cost_fen)}; ordered {format_yuan(order.ordered_cost_fen)}, "
         f"received landed {format_yuan(order.received_cost_fen)}")
    for r in order.receipts:
        echo(f"  {local(r.at)}  {r.product:<12} batch {r.batch}: {r.quantity} card(s)"
             + (f" ({r.over_quantity} over)" if r.over_quantity else "")
             + f", landed {format_yuan(r.landed_unit_cost_fen)} a card")


@app.command("vendor-add")
def vendor_add(code: str = typer.Argument(..., help="Vendor code, e.g. ACME."),
               name: str = typer.Argument(..., help="The vendor's name."),
               contact: Optional[str] = typer.Option(None, "--contact")):
    """Register a SIM vendor."""
    from hkops.procurement import service

    echo(f"added vendor {service.add_vendor(store(), code, name, contact=contact, actor=actor())}")


@app.command()
def create(
    vendor: str = typer.Option(..., "--vendor", help="Vendor code."),
    warehouse: str = typer.Option(..., "--warehouse", help="The warehouse deliveries are received into."),
    lines: list[str] = typer.Option(..., "--line", help="PRODUCT:QUANTITY:UNIT_COST_YUAN (repeat for more lines)."),
    extra_cost: str = typer.Option("0", "--extra-cost", help="Freight, duty... in yuan, shared over the cards."),
    note: Optional[str] = typer.Option(None, "--note"),
    as_json: bool = Json,
):
    """Create a draft purchase order."""
    from hkops.procurement import service

    parsed = [parse_line(text) for text in lines]
    db = store()
    number = service.create_po(db, vendor, warehouse, parsed, extra_cost_fen=yuan_to_fen(extra_cost, "extra cost"),
                               note=note, actor=actor())
    if as_json:
        emit_json(as_dict(service.get_po(db, number)))
    else:
        echo(f"created purchase order {number} (draft)")


def _move(action: str, help_text: str):
    def command(number: str = typer.Argument(..., help="PO number, e.g. PO000001."), reason: Optional[str] = Reason,
                as_json: bool = Json):
        from hkops.procurement import service

        order = getattr(service, action)(store(), number, actor=actor(), reason=reason)
        if as_json:
            emit_json(as_dict(order))
        else:
            short = f"; {order.under_delivered} card(s) never delivered" if order.under_delivered else ""
            echo(f"purchase order {order.number}: {order.state}{short}")

    command.__doc__ = help_text
    app.command(action)(command)


_move("confirm", "Confirm a draft purchase order with the vendor.")
_move("cancel", "Cancel a purchase order before anything was received.")
_move("close", "Close a (partially) received purchase order; what never came is recorded.")


@app.command()
def show(number: str = typer.Argument(..., help="PO number."), as_json: bool = Json):
    """A purchase order: lines, receipts, figures."""
    from hkops.procurement import service

    order = service.get_po(store(), number)
    emit_json(as_dict(order)) if as_json else show_order(order)


@app.command("list")
def list_orders(state: Optional[str] = typer.Option(None, "--state"),
                vendor: Optional[str] = typer.Option(None, "--vendor"), as_json: bool = Json):
    """Purchase orders, newest first."""
    from hkops.procurement import service

    orders = service.list_pos(store(), state=state, vendor=vendor)
    if as_json:
        emit_json([as_dict(o) for o in orders])
        return
    for o in orders:
        echo(f"{o.number}  {o.state:<18} {o.vendor:<10} {o.warehouse:<10} ordered {o.ordered:>8}  "
             f"received {o.received:>8}  {format_yuan(o.ordered_cost_fen)}")
