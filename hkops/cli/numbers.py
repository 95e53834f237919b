"""``hkops numbers ...``: blocks, pool, search and the number lifecycle."""

from __future__ import annotations

from typing import Optional

import typer

from hkops import audit
from hkops.cli.common import actor, echo, emit_json, progress, store
from hkops.errors import InvalidValue
from hkops.ids import format_msisdn, parse_msisdn
from hkops.money import yuan_to_fen
from hkops.numbers import search as number_search
from hkops.numbers import service
from hkops.timeutil import local

app = typer.Typer(rich_markup_mode="markdown", help="Number resources (号码资源): blocks, pool, grading, search, lifecycle.", no_args_is_help=True)

Reason = typer.Option(None, "--reason", help="Why (kept in the audit trail).")


@app.command("add-block")
def add_block(
    prefixes: list[str] = typer.Argument(..., help="7-digit block prefixes (号段), e.g. 1380013."),
    planned: bool = typer.Option(False, "--planned", help="Create the numbers as planned, not yet for sale."),
    empty: bool = typer.Option(False, "--empty", help="Register the blocks only; import their numbers later."),
):
    """Add blocks and create their 10,000 graded numbers each."""
    db = store()
    with progress(len(prefixes) * service.BLOCK_SIZE, "numbers", "creating") as bar:
        infos = service.add_blocks(db, prefixes, actor=actor(), planned=planned, empty=empty, progress=bar.update)
    created = "no numbers yet" if empty else f"{service.BLOCK_SIZE} numbers {'planned' if planned else 'available'}"
    for info in infos:
        echo(f"added block {info.prefix}: {info.carrier}, {info.province_zh}{info.city_zh if info.city_zh != info.province_zh else ''}, "
             f"{created}")


@app.command("open")
def open_block(prefix: str = typer.Argument(..., help="A planned block's prefix."), reason: Optional[str] = Reason):
    """Open a planned block for sale."""
    count = service.open_planned(store(), prefix, actor=actor(), reason=reason)
    echo(f"opened block {prefix}: {count} numbers available")


@app.command("import")
def import_file(file: str = typer.Argument(..., help="CSV with an msisdn column, or TXT with one number a line.")):
    """Import numbers into their blocks; a file with any bad line imports nothing."""
    db = store()
    entries = service.read_number_file(file)
    with progress(len(entries), "numbers", "importing") as bar:
        count = service.import_numbers(db, file, actor=actor(), progress=bar.update)
    echo(f"imported {count} numbers from {file}")


@app.command()
def search(
    pattern: Optional[str] = typer.Argument(None, help=r"\*8888, 1380013????, 138\*520, AABB, ABCD, \*ABAB ..."),
    region: Optional[str] = typer.Option(None, "--region", help="Province or city, Chinese or English."),
    carrier: Optional[str] = typer.Option(None, "--carrier"),
    grade: Optional[str] = typer.Option(None, "--grade", help="Grade class(es), comma-separated."),
    state: str = typer.Option("available", "--state", help="available (default), reserved, assigned, ..., or any."),
    min_price: Optional[str] = typer.Option(None, "--min-price", help="Yuan."),
    max_price: Optional[str] = typer.Option(None, "--max-price", help="Yuan."),
    limit: int = typer.Option(50, "--limit"),
    as_json: bool = typer.Option(False, "--json", help="Print only JSON."),
):
    """Search the pool."""
    query = number_search.SearchQuery(
        pattern=pattern, region=region, carrier=carrier, grade=grade, state=state,
        min_price_fen=yuan_to_fen(min_price, "min-price") if min_price is not None else None,
        max_price_fen=yuan_to_fen(max_price, "max-price") if max_price is not None else None,
        limit=limit,
    )
    hits = number_search.search(store(), query, actor=actor())
    if as_json:
        emit_json([h.as_dict() for h in hits])
        return
    for h in hits:
        holder = f"  {h.holder}" if h.holder else ""
        echo(f"{h.display}  {h.carrier:<13} {h.province}{h.city if h.city != h.province else '':<6} "
             f"{h.grade:<9} ¥{h.price:>8}  min ¥{h.min_monthly}/month  {h.state}{holder}")
    echo(f"{len(hits)} number(s)")


def _report(move, as_json: bool = False) -> None:
    if as_json:
        emit_json(move.__dict__)
    else:
        holder = f" ({move.holder})" if move.holder else ""
        echo(f"{format_msisdn(move.msisdn)}: {move.from_state} -> {move.to_state}{holder}")


@app.command()
def reserve(
    msisdn: str,
    holder: str = typer.Option(..., "--for", help="Who the number is held for."),
    ttl: Optional[str] = typer.Option(None, "--ttl", help="How long: 30m, 2h, 7d (default: setting reservation_ttl)."),
    reason: Optional[str] = Reason,
    as_json: bool = typer.Option(False, "--json"),
):
    """Reserve a number; the reservation lapses after the TTL."""
    move = service.reserve(store(), msisdn, holder, actor=actor(), ttl=ttl, reason=reason)
    _report(move, as_json)


@app.command()
def allocate(
    msisdn: Optional[str] = typer.Argument(None, help="One number; or use --count."),
    holder: str = typer.Option(..., "--to", help="Customer, agent or order id."),
    count: Optional[int] = typer.Option(None, "--count", help="Allocate this many available numbers."),
    region: Optional[str] = typer.Option(None, "--region"),
    carrier: Optional[str] = typer.Option(None, "--carrier"),
    grade: Optional[str] = typer.Option(None, "--grade", help="Grade class(es); without it a batch takes plain numbers only."),
    reason: Optional[str] = Reason,
    as_json: bool = typer.Option(False, "--json", help="Print only the allocated numbers as JSON."),
):
    """Allocate one number, or a batch chosen by region and grade."""
    if (msisdn is None) == (count is None):
        raise InvalidValue("msisdn", msisdn or "", "give either one MSISDN or --count N, not both or neither")
    if msisdn is not None:
        if region or carrier or grade:
            raise InvalidValue("region/carrier/grade", region or carrier or grade, "filters go with --count only")
        allocated = [service.allocate(store(), msisdn, holder, actor=actor(), reason=reason).msisdn]
    else:
        allocated = service.allocate_batch(store(), count, holder, actor=actor(), region=region, carrier=carrier,
                                           grade=grade, reason=reason)
    if as_json:
        emit_json(allocated)
        return
    for value in allocated:
        echo(format_msisdn(value))
    echo(f"{len(allocated)} number(s) allocated to {holder}")


def _simple(action: str, help_text: str):
    def command(msisdn: str, reason: Optional[str] = Reason, as_json: bool = typer.Option(False, "--json")):
        _report(getattr(service, action)(store(), msisdn, actor=actor(), reason=reason), as_json)

    command.__doc__ = help_text
    app.command(action)(command)


_simple("release", "Give a reserved or assigned number back to the pool.")
_simple("block", "Hold a number out of sale (fraud, regulator).")
_simple("unblock", "Lift a block; the number returns to the state it was in.")


@app.command()
def terminate(
    msisdn: str,
    hlr: Optional[str] = typer.Option(None, "--hlr", help="The HLR's HOST:PORT (default $HKOPS_HLR or "
                                                          "127.0.0.1:7500), for a number in service."),
    reason: Optional[str] = Reason,
    as_json: bool = typer.Option(False, "--json"),
):
    """End a number's use; it goes into quarantine (cool-off). A number a live SIM serves ends
    with its card: HLR record, card, subscriber binding and number together."""
    from hkops.cards import service as cards
    from hkops.cards.model import SimState
    from hkops.cli.cards import network
    from hkops.errors import NotFound

    db = store()
    try:
        card = cards.get_card(db, msisdn)
    except NotFound:
        card = None
    if card is None or card.state not in (SimState.PAIRED, SimState.ACTIVE, SimState.SUSPENDED, SimState.LOST):
        _report(service.terminate(db, msisdn, actor=actor(), reason=reason), as_json)
        return
    ended = cards.terminate(db, card.iccid, actor=actor(), network=network(hlr), reason=reason)
    number = service.get_number(db, msisdn)
    if as_json:
        emit_json({"msisdn": number.msisdn, "to_state": number.state.value, "card": ended.iccid,
                   "card_state": ended.state, "network_sync": ended.network_sync,
                   "pending_action": ended.pending_action})
        return
    waiting = (f"; the HLR has not confirmed yet ('{ended.pending_action}' pending: hkops hlr sync)"
               if ended.pending_action else "; HLR record removed")
    echo(f"{format_msisdn(number.msisdn)} was in service on SIM {ended.iccid}: terminated through the card "
         f"(card {ended.state}, subscriber binding ended, number {number.state.value}){waiting}")


@app.command()
def reclaim(msisdn: str, holder: str = typer.Option(..., "--for", help="The number's last holder."),
            reason: Optional[str] = Reason, as_json: bool = typer.Option(False, "--json")):
    """The last holder takes a quarantined number back."""
    _report(service.reclaim(store(), msisdn, holder, actor=actor(), reason=reason), as_json)


@app.command()
def recycle(
    msisdn: Optional[str] = typer.Argument(None, help="One number; or --due for every one whose cool-off ended."),
    due: bool = typer.Option(False, "--due", help="Recycle every quarantined number whose cool-off has ended."),
    reason: Optional[str] = Reason,
    as_json: bool = typer.Option(False, "--json"),
):
    """Return quarantined numbers to the pool after their cool-off."""
    if (msisdn is None) == (not due):
        raise InvalidValue("msisdn", msisdn or "", "give either one MSISDN or --due")
    if msisdn:
        _report(service.recycle(store(), msisdn, actor=actor(), reason=reason), as_json)
        return
    recycled = service.recycle_due(store(), actor=actor(), reason=reason)
    if as_json:
        emit_json(recycled)
    else:
        echo(f"{len(recycled)} number(s) recycled")


@app.command()
def expire(as_json: bool = typer.Option(False, "--json")):
    """Turn lapsed reservations back into available numbers."""
    expired = service.expire_reservations(store(), actor=actor())
    emit_json(expired) if as_json else echo(f"{len(expired)} reservation(s) expired")


@app.command()
def show(msisdn: str, as_json: bool = typer.Option(False, "--json")):
    """A number's record and its audit history."""
    db = store()
    number = service.get_number(db, msisdn, actor=actor())
    with db.read() as conn:
        history = audit.query(conn, subject=parse_msisdn(msisdn), limit=1000)
    if as_json:
        emit_json({"number": number.__dict__, "history": history})
        return
    echo(f"{format_msisdn(number.msisdn)}  {number.state.value}  grade {number.grade} (level {number.level})"
         f"  holder {number.holder or '-'}")
    if number.reserved_until:
        echo(f"reserved until {local(number.reserved_until)}")
    if number.quarantine_until:
        echo(f"quarantined until {local(number.quarantine_until)}, last holder {number.last_holder}")
    for item in reversed(history):
        echo(f"  {local(item['at'])}  {item['actor']:<10} {item['action']:<9} {item['from_state'] or '-'} -> "
             f"{item['to_state'] or '-'}  {item['reason'] or ''}")


@app.command()
def stats(as_json: bool = typer.Option(False, "--json")):
    """Counts of the pool by state, grade, carrier and province."""
    data = service.stats(store(), actor=actor())
    if as_json:
        emit_json(data)
        return
    echo(f"{data['total']} numbers in {data['blocks']} blocks")
    for title in ("by_state", "by_grade", "by_carrier"):
        echo(title.replace("_", " ") + ": " + ", ".join(f"{k} {v}" for k, v in data[title].items() if v))


@app.command()
def regrade(rules: Optional[str] = typer.Option(None, "--rules", help="Rule file (default data/grading_rules.toml).")):
    """Grade every number again after the rules changed."""
    from hkops.numbers.grading import load_rules

    db = store()
    rule_set = load_rules(rules)
    with progress(service.count_blocks(db), "blocks", "re-grading") as bar:
        changed = service.regrade(db, actor=actor(), rules=rule_set, progress=bar.update)
    echo(f"{sum(changed.values())} number(s) changed grade" + (": " + ", ".join(f"{k} {v}" for k, v in changed.items()) if changed else ""))
