"""``hkops catalogue ...``: The catalogue: SIM products, plans (套餐) and prices per agent level.

Money is given and shown in yuan (元); it is stored as integer fen.
"""

from __future__ import annotations

from typing import Optional

import typer

from hkops.cli.common import actor, echo, emit_json, store
from hkops.money import fen_to_yuan, format_yuan, yuan_to_fen

app = typer.Typer(rich_markup_mode="markdown", help="The catalogue: SIM products, plans (套餐) and prices per agent level.", no_args_is_help=True)


def _yuan(fen: int) -> str:
    return str(fen_to_yuan(fen))


@app.command("product-add")
def product_add(
    code: str = typer.Argument(..., help="Product code, e.g. CM-NANO."),
    name: str = typer.Argument(..., help="What people call it."),
    carrier: str = typer.Option(..., "--carrier", help="A configured carrier, English or Chinese name."),
    form: str = typer.Option(..., "--form", help="triple, standard, micro, nano or esim."),
):
    """Add a SIM product: one carrier, one form factor."""
    from hkops.catalogue import service

    code = service.add_product(store(), code, name, carrier, form, actor=actor())
    echo(f"added product {code}")


@app.command("plan-add")
def plan_add(
    code: str = typer.Argument(..., help="Plan code, e.g. GOLD58."),
    name: str = typer.Argument(..., help="What people call it."),
    carrier: str = typer.Option(..., "--carrier", help="A configured carrier, English or Chinese name."),
    monthly_fee: str = typer.Option(..., "--monthly-fee", help="Yuan a month."),
    data_mb: int = typer.Option(..., "--data-mb", help="Data allowance, MB a month."),
    voice: int = typer.Option(..., "--voice", help="Voice minutes a month."),
    sms: int = typer.Option(..., "--sms", help="SMS a month."),
    contract_months: int = typer.Option(0, "--contract-months", help="Minimum contract term (0 for none)."),
    first_topup: str = typer.Option("0", "--first-topup", help="Yuan the customer must top up on activation (首充)."),
    min_age: int = typer.Option(16, "--min-age"),
    max_age: int = typer.Option(60, "--max-age"),
    exclude: Optional[list[str]] = typer.Option(None, "--exclude", help="A province it is not shipped to (repeat)."),
    overage_data: Optional[str] = typer.Option(None, "--overage-data", help="Yuan per GB beyond the allowance (default 5)."),
    overage_voice: Optional[str] = typer.Option(None, "--overage-voice",
                                                help="Yuan per outgoing minute beyond the allowance (default 0.15)."),
    overage_sms: Optional[str] = typer.Option(None, "--overage-sms", help="Yuan per SMS beyond the allowance (default 0.10)."),
):
    """Add a plan (套餐)."""
    from hkops.catalogue import service

    plan = service.add_plan(
        store(), code, name, carrier, monthly_fee_fen=yuan_to_fen(monthly_fee, "monthly-fee"), data_mb=data_mb,
        voice_minutes=voice, sms=sms, contract_months=contract_months,
        first_topup_fen=yuan_to_fen(first_topup, "first-topup"), min_age=min_age, max_age=max_age,
        excluded_provinces=exclude or (),
        overage_data_fen_per_gb=None if overage_data is None else yuan_to_fen(overage_data, "overage-data"),
        overage_voice_fen_per_min=None if overage_voice is None else yuan_to_fen(overage_voice, "overage-voice"),
        overage_sms_fen=None if overage_sms is None else yuan_to_fen(overage_sms, "overage-sms"), actor=actor(),
    )
    echo(f"added plan {plan.code}: {plan.carrier}, {format_yuan(plan.monthly_fee_fen)} a month")


@app.command("price-set")
def price_set(
    plan: str = typer.Argument(..., help="Plan code."),
    level: int = typer.Argument(..., help="Agent price level (0 = direct retail)."),
    price: str = typer.Argument(..., metavar="YUAN", help="Price in yuan."),
):
    """Set a plan's price at one agent price level."""
    from hkops.catalogue import service

    fen = yuan_to_fen(price, "price")
    service.set_price(store(), plan, level, fen, actor=actor())
    echo(f"plan {plan.upper()} at level {level}: {format_yuan(fen)}")


@app.command("list")
def list_all(as_json: bool = typer.Option(False, "--json", help="Print only JSON.")):
    """List products, and plans with their prices per level."""
    from hkops.catalogue import service

    db = store()
    products = service.products_of(db)
    plans = [(plan, service.prices_of(db, plan.code)) for plan in service.all_plans(db)]
    if as_json:
        emit_json({
            "products": [p.as_dict() for p in products],
            "plans": [{**plan.as_dict(), "monthly_fee": _yuan(plan.monthly_fee_fen),
                       "first_topup": _yuan(plan.first_topup_fen),
                       "prices": {str(level): _yuan(fen) for level, fen in prices.items()}}
                      for plan, prices in plans],
        })
        return
    echo(f"products ({len(products)}):")
    for p in products:
        echo(f"  {p.code:<16} {p.carrier:<14} {p.form_factor:<8} {p.name}{'' if p.active else '  (inactive)'}")
    echo(f"plans ({len(plans)}):")
    for plan, prices in plans:
        excluded = f", not to {', '.join(plan.excluded_provinces)}" if plan.excluded_provinces else ""
        echo(f"  {plan.code:<16} {plan.carrier:<14} {format_yuan(plan.monthly_fee_fen)}/month, {plan.data_mb} MB, "
             f"{plan.voice_minutes} min, {plan.sms} SMS, ages {plan.min_age}–{plan.max_age}{excluded}  {plan.name}")
        listed = ", ".join(f"level {level} {format_yuan(fen)}" for level, fen in prices.items()) or "no prices set"
        echo(f"    prices: {listed}")


@app.command()
def quote(
    plan: str = typer.Argument(..., help="Plan code."),
    msisdn: str = typer.Argument(..., help="The number the customer picked."),
    level: int = typer.Option(0, "--level", help="Agent price level (0 = direct retail)."),
    as_json: bool = typer.Option(False, "--json", help="Print only JSON."),
):
    """What a plan with a number costs: price, vanity selection fee, prepayment, minimum monthly spend."""
    from hkops.catalogue import service

    with store().read() as conn:
        result = service.quote(conn, plan, msisdn, level)
    if as_json:
        emit_json({**result.as_dict(), **{name.removesuffix("_fen"): _yuan(fen)
                                         for name, fen in result.as_dict().items()}})
        return
    echo(f"plan {plan.upper()} with {msisdn} at level {level}:")
    echo(f"  price            {format_yuan(result.price_fen):>12}")
    echo(f"  vanity fee       {format_yuan(result.vanity_fee_fen):>12}")
    echo(f"  prepayment       {format_yuan(result.prepay_fen):>12}")
    echo(f"  total            {format_yuan(result.total_fen):>12}")
    echo(f"  minimum monthly spend {format_yuan(result.min_monthly_fen)}")
