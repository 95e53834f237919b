"""``hkops stock ...``: Serial stock: receive, transfer, return, on-hand, counts, scrap, low-stock alerts.

Files of ICCIDs hold one ICCID a line (or a CSV whose first column is the ICCID).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Optional

import typer

from hkops.cli.common import actor, echo, emit_json, progress, store
from hkops.errors import InvalidValue
from hkops.money import fen_to_yuan, format_yuan
from hkops.timeutil import local

app = typer.Typer(rich_markup_mode="markdown", help="Serial stock: receive, transfer, return, on-hand, counts, scrap, low-stock alerts.",
                  no_args_is_help=True)

Json = typer.Option(False, "--json", help="Print only JSON.")
Reason = typer.Option(None, "--reason", help="Why (kept in the audit trail).")
Iccids = typer.Option(None, "--iccid", help="A card's ICCID (repeat for more).")
IccidFile = typer.Option(None, "--file", help="A file of ICCIDs, one a line.")


def _cards(iccids: list[str] | None, file: str | None) -> list[str] | None:
    """The cards named by --iccid and/or --file (None when neither was given)."""
    from hkops.stock import service

    if not iccids and not file:
        return None
    return list(iccids or []) + (service.read_iccid_file(file) if file else [])


def _report(moved, as_json: bool, verb: str) -> None:
    if as_json:
        emit_json(asdict(moved))
    else:
        echo(f"{moved.document}: {moved.count} card(s) {verb} {moved.from_location} -> {moved.to_location} "
             f"(ICCID {moved.first_iccid} … {moved.last_iccid})")


@app.command("location-add")
def location_add(code: str = typer.Argument(..., help="Location code, e.g. WH-BJ."),
                 name: str = typer.Argument(..., help="What people call it."),
                 kind: str = typer.Option("warehouse", "--kind", help="warehouse or agent."),
                 province: Optional[str] = typer.Option(None, "--province")):
    """Register a warehouse or an agent's stock location."""
    from hkops.stock import service

    echo(f"added {kind} location {service.add_location(store(), code, name, kind, actor=actor(), province=province)}")


@app.command()
def receive(
    po: str = typer.Argument(..., help="Purchase order number, e.g. PO000001."),
    file: str = typer.Argument(..., help="The vendor's card-data file (CSV or .out)."),
    product: Optional[str] = typer.Option(None, "--product", help="The PO line received (default: the only line)."),
    accept_over: bool = typer.Option(False, "--accept-over", help="Take more cards than the line still expects."),
    batch: Optional[str] = typer.Option(None, "--batch", help="Batch name (default: the file name)."),
    as_json: bool = Json,
):
    """Receive a vendor card file against a purchase order, into its warehouse; all or nothing."""
    from hkops.procurement import service

    with progress(None, "cards", "receiving") as bar:
        receipt = service.receive(store(), po, file, product=product, accept_over=accept_over, batch_name=batch,
                                  actor=actor(), progress=bar.update)
    if as_json:
        emit_json({**asdict(receipt), "landed_unit_cost": fen_to_yuan(receipt.landed_unit_cost_fen)})
        return
    over = f" ({receipt.over_quantity} over the order)" if receipt.over_quantity else ""
    echo(f"{receipt.po}: {receipt.quantity} {receipt.product} card(s) received{over} as batch {receipt.batch}, "
         f"landed {format_yuan(receipt.landed_unit_cost_fen)} a card; order {receipt.state}")


@app.command()
def transfer(
    from_location: str = typer.Argument(..., metavar="FROM"),
    to_location: str = typer.Argument(..., metavar="TO"),
    iccids: Optional[list[str]] = Iccids,
    range_: Optional[tuple[str, str]] = typer.Option(None, "--range", metavar="FIRST LAST",
                                                     help="The in-stock cards at FROM from FIRST to LAST ICCID."),
    count: Optional[int] = typer.Option(None, "--count", help="This many in-stock cards of --product."),
    product: Optional[str] = typer.Option(None, "--product"),
    file: Optional[str] = IccidFile,
    reason: Optional[str] = Reason,
    as_json: bool = Json,
):
    """Move in-stock cards between locations as one transfer document."""
    from hkops.stock import service

    first, last = range_ if range_ else (None, None)
    if count is None and product is not None:
        raise InvalidValue("product", product, "goes with --count")
    cards = _cards(iccids, file)
    with progress(None, "cards", "moving") as bar:
        moved = service.transfer(store(), from_location, to_location, iccids=cards, first=first, last=last,
                                 count=count, product=product, actor=actor(), reason=reason, progress=bar.update)
    _report(moved, as_json, "moved")


@app.command("return")
def return_cards(from_location: str = typer.Argument(..., metavar="FROM"),
                 to_location: str = typer.Argument(..., metavar="TO", help="A warehouse."),
                 iccids: Optional[list[str]] = Iccids, file: Optional[str] = IccidFile,
                 reason: Optional[str] = Reason, as_json: bool = Json):
    """An agent returns in-stock cards to a warehouse."""
    from hkops.stock import service

    cards = _cards(iccids, file)
    if cards is None:
        raise InvalidValue("cards", "", "name the cards with --iccid or --file")
    _report(service.return_units(store(), cards, from_location, to_location, actor=actor(), reason=reason),
            as_json, "returned")


@app.command()
def scrap(location: str = typer.Argument(...), iccids: Optional[list[str]] = Iccids,
          file: Optional[str] = IccidFile,
          reason: str = typer.Option(..., "--reason", help="Why the cards are scrapped."), as_json: bool = Json):
    """Faulty cards: marked faulty, destroyed, moved to SCRAP."""
    from hkops.stock import service

    cards = _cards(iccids, file)
    if cards is None:
        raise InvalidValue("cards", "", "name the cards with --iccid or --file")
    _report(service.scrap(store(), cards, location, actor=actor(), reason=reason), as_json, "scrapped")


@app.command()
def onhand(location: Optional[str] = typer.Option(None, "--location"),
           product: Optional[str] = typer.Option(None, "--product"), as_json: bool = Json):
    """Cards on hand per location and product (from the ledger)."""
    from hkops.stock import service

    rows = service.on_hand(store(), location=location, product=product, actor=actor())
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        echo(f"{r['location']:<16} {r['product'] or '-':<16} {r['quantity']:>10}")
    if not rows:
        echo("no cards on hand")


@app.command()
def ledger(location: Optional[str] = typer.Option(None, "--location"),
           iccid: Optional[str] = typer.Option(None, "--iccid"),
           document: Optional[str] = typer.Option(None, "--document"),
           limit: int = typer.Option(200, "--limit", min=1, max=1_000_000), as_json: bool = Json):
    """Ledger rows, newest first."""
    from hkops.stock import service

    rows = service.ledger(store(), location=location, iccid=iccid, document=document, limit=limit,
                          actor=actor())
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        echo(f"{local(r['at'])}  {r['iccid']}  {r['from_location']:<12} -> {r['to_location']:<12} "
             f"{r['kind']:<9} {r['document']:<12} {r['actor']}")


@app.command("count")
def count_stock(location: str = typer.Argument(...),
                file: str = typer.Argument(..., help="The ICCIDs counted, one a line."),
                dry_run: bool = typer.Option(False, "--dry-run", help="Show the variances; change nothing."),
                as_json: bool = Json):
    """A stock count: missing cards go to MISSING, cards found here that were elsewhere come here."""
    from hkops.stock import service

    result = service.count(store(), location, service.read_iccid_file(file), actor=actor(), apply=not dry_run)
    if as_json:
        emit_json(asdict(result))
        return
    echo(f"{result.number or 'dry run'} at {result.location}: expected {result.expected}, counted {result.counted}, "
         f"{len(result.missing)} missing, {len(result.unexpected)} unexpected")
    for iccid in result.missing:
        echo(f"  missing     {iccid}")
    for iccid in result.unexpected:
        echo(f"  unexpected  {iccid}")


@app.command("min")
def minimum(location: str = typer.Argument(...), product: str = typer.Argument(...),
            quantity: int = typer.Argument(..., metavar="N", help="Alert below this many cards (0: no alert).")):
    """Set the low-stock minimum of a product at a location."""
    from hkops.stock import service

    service.set_minimum(store(), location, product, quantity, actor=actor())
    echo(f"minimum of {product.upper()} at {location}: {quantity}")


@app.command()
def alerts(days: int = typer.Option(30, "--days", help="Sales of the last N days set the reorder."),
           as_json: bool = Json):
    """Products running low, with a suggested reorder."""
    from hkops.stock import service

    found = service.low_stock(store(), days=days, actor=actor())
    if as_json:
        emit_json([asdict(a) for a in found])
        return
    for a in found:
        echo(f"{a.location:<16} {a.product:<16} on hand {a.on_hand}, minimum {a.minimum}, "
             f"sold {a.sold_last_days} in {days} days: reorder {a.suggested_reorder}")
    if not found:
        echo("no product is running low")
