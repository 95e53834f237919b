"""The orders console, driven like a user would (type, pick, click, confirm), without a browser."""

from __future__ import annotations

import ipywidgets as widgets
import pytest

from distribution_world import (  # noqa: F401  (distribution is a fixture)
    PLAN, PLAN_UNICOM, PRICES, WAREHOUSE, advance, birth_for_age, distribution, place_order, rid,
)
from hkops.cards import service as cards
from hkops.ids import display_msisdn
from hkops.money import fen_to_yuan, format_yuan
from hkops.orders import service as orders
from hkops.subscribers import service as subscribers
from hkops.ui import orders_console
from hkops.ui.orders import OrdersConsole
from test_cards_lifecycle import hlr  # noqa: F401  (fixture)


@pytest.fixture
def console(distribution, hlr) -> OrdersConsole:
    return orders_console(distribution.db, actor="desk", network=hlr[1])


def fill(console: OrdersConsole, resident_id: str, **values) -> None:
    """Type a customer into the intake form (a Beijing customer of the China Mobile plan by default)."""
    typed = dict(channel="direct", plan=PLAN, customer_name="王芳", contact="13900000000", ship_province="北京",
                 ship_address="北京市朝阳区建国路 1 号") | values
    console.resident_id.value = resident_id
    for name, value in typed.items():
        getattr(console, name).value = value


def check(console: OrdersConsole, name: str) -> str:
    """The class (ok, bad, wait) and text of the check line starting with ``name``."""
    for line in console.checks.value.split("<div class='hkops-check ")[1:]:
        css, _, text = line.partition("'>")
        if name in text:
            return f"{css.removeprefix('hkops-check-')}: {text.removesuffix('</div></div>').removesuffix('</div>')}"
    raise AssertionError(f"no check {name!r} in {console.checks.value}")


def shown(widget) -> str:
    """Every HTML the console shows (what a browser would render)."""
    if isinstance(widget, widgets.HTML):
        return widget.value
    return "".join(shown(child) for child in getattr(widget, "children", ()))


def open_order(console: OrdersConsole, number: str) -> None:
    console.order_query.value = number
    console.open_button.click()


def test_a_valid_customer_passes_every_check_and_sees_the_quote_before_placing(console):
    person = rid(1)
    assert console.submit_button.disabled and "wait" in check(console, "Resident ID")

    fill(console, person)

    for name in ("Resident ID", "Age", "Ship-to province", "Blacklist", "Numbers per person", "Order check"):
        assert check(console, name).startswith("ok:"), console.checks.value
    assert "11***************" in check(console, "Resident ID") and "110105" not in check(console, "Resident ID")
    assert "34" not in check(console, "Resident ID")
    assert "holds 0 China Mobile number(s)" in check(console, "Numbers per person")
    assert "can be placed: number 138 0013" in check(console, "Order check")
    assert "¥100.00" in console.quote.value and "合计 Total" in console.quote.value
    assert not console.submit_button.disabled
    assert orders.pipeline_counts(console.store)["approved"] == 0  # checking wrote nothing
    assert person not in shown(console)


def test_the_checks_follow_the_typing_of_the_resident_id(console):
    fill(console, rid(1)[:10])
    assert check(console, "Resident ID").startswith("bad:") and "must be 18 characters" in console.checks.value
    assert check(console, "Age").startswith("wait:") and console.submit_button.disabled

    console.resident_id.value = rid(1)[:17] + ("0" if rid(1)[17] != "0" else "1")
    assert "check character" in check(console, "Resident ID") and console.submit_button.disabled

    console.resident_id.value = rid(1)
    assert check(console, "Order check").startswith("ok:") and not console.submit_button.disabled


def test_a_15_year_old_fails_the_age_check_and_cannot_be_submitted(console):
    fill(console, rid(2, birth=birth_for_age(15)))

    assert check(console, "Age").startswith("bad:") and "15; plan CM-58 takes 16–60" in check(console, "Age")
    assert check(console, "Order check").startswith("wait:") and console.quote.value == ""
    assert console.submit_button.disabled

    console.resident_id.value = rid(2, birth=birth_for_age(16))
    assert check(console, "Age").startswith("ok:") and not console.submit_button.disabled


def test_an_excluded_province_fails_its_check_and_another_plan_may_ship_there(console):
    fill(console, rid(3), ship_province="新疆")

    assert "does not ship to Xinjiang" in check(console, "Ship-to province") and console.submit_button.disabled

    console.plan.value = PLAN_UNICOM
    assert check(console, "Ship-to province") == "ok: ✓ 收货省份 Ship-to province: Xinjiang"
    assert not console.submit_button.disabled and "¥80.00" in console.quote.value

    console.ship_province.value = "Atlantis"
    assert "not a province" in check(console, "Ship-to province") and console.submit_button.disabled


def test_blacklist_and_one_id_five_numbers_are_checked_as_soon_as_the_id_is_typed(console, distribution):
    listed, busy = rid(4), rid(5)
    subscribers.blacklist_add(distribution.db, listed, "fraud", "desk")
    for _ in range(5):
        place_order(distribution.db, 5)

    fill(console, listed, customer_name="", contact="", ship_address="")
    assert check(console, "Blacklist").startswith("bad:") and console.submit_button.disabled

    console.resident_id.value = busy
    assert check(console, "Blacklist").startswith("ok:")
    assert "holds 5 China Mobile number(s)" in check(console, "Numbers per person")
    assert check(console, "Numbers per person").startswith("bad:") and console.submit_button.disabled

    console.plan.value = PLAN_UNICOM
    assert check(console, "Numbers per person").startswith("ok:")


def test_a_number_picked_from_the_plans_carrier_is_quoted_with_its_fee_and_sold(console, distribution):
    picked = console.number.options[0]  # the most valuable available China Mobile number first
    msisdn = picked.split(" · ")[0]
    assert msisdn.startswith("1380013") and all(o.startswith("1380013") for o in console.number.options)
    fill(console, rid(14), number=picked)
    assert f"number {display_msisdn(msisdn)} (chosen)" in check(console, "Order check")

    console.submit_button.click()

    placed = orders.get_order(distribution.db, console.order.number)
    assert placed.msisdn == msisdn and placed.vanity_fee_fen > 0
    assert format_yuan(placed.vanity_fee_fen) in console.detail.value


def test_a_problem_only_the_full_check_finds_keeps_submit_disabled(console):
    fill(console, rid(6), number="13800130000", contact="12")

    assert check(console, "Order check").startswith("bad:") and "contact" in check(console, "Order check")
    assert console.submit_button.disabled


def test_a_valid_order_placed_through_the_form_appears_in_the_pipeline(console, distribution):
    person = rid(7)
    fill(console, person, channel="A3", client_order_id="A3-77")

    console.submit_button.click()

    assert console.status.kind == "ok" and "approved" in console.status.text, console.status.text
    placed = orders.get_order(distribution.db, "A3-77")
    number = placed.number
    assert number == "SO00000001"  # the live checks wrote nothing, not even a PostgreSQL sequence value
    assert f"Order {number} approved" in console.status.text
    assert (placed.state, placed.channel, placed.client_order_id, placed.price_fen) == ("approved", "A3", "A3-77",
                                                                                      PRICES[3])
    assert console.stage_buttons["approved"].description.endswith("(1)")
    assert f"data-order='{number}'" in console.order_table.value and console.order_pick.value == number
    assert number in console.detail.value and "A3 (L3) › A2 (L2) › A1 (L1)" in console.detail.value
    assert console.resident_id.value == "" and console.customer_name.value == ""
    assert person not in shown(console) and placed.id_masked in console.detail.value


def test_paying_shipping_delivering_and_activating_move_the_order(console, distribution, hlr):
    order = place_order(distribution.db, 8)
    open_order(console, order.number)
    assert console.pay_amount.value == str(fen_to_yuan(order.total_fen))

    console.pay_reference.value = "WX-0008"
    console.pay_button.click()
    assert console.status.kind == "ok" and "approved → allocated" in console.status.text, console.status.text
    console.ship_tracking.value = "SF0000000008"
    console.ship_button.click()
    assert console.status.kind == "ok" and "allocated → shipped" in console.status.text, console.status.text
    assert "SF0000000008" in console.shipment.value and "data-action='ship'" in console.timeline.value
    assert orders.get_order(distribution.db, order.number).state == "shipped"

    console.deliver_button.click()
    assert orders.get_order(distribution.db, order.number).state == "delivered"
    console.activate_button.click()

    moved = orders.get_order(distribution.db, order.number)
    assert moved.state == "activated" and console.status.kind == "ok", console.status.text
    assert hlr[1].get(moved.msisdn) is not None and cards.get_card(distribution.db, moved.iccid).state == "active"
    assert "WX-0008" in console.payments.value and "activated" in console.detail.value


def test_cancelling_asks_first_then_undoes_the_order(console, distribution):
    order = advance(distribution.db, place_order(distribution.db, 9).number, "allocated")
    open_order(console, order.number)
    console.cancel_button.click()
    assert console.status.kind == "error" and "reason" in console.status.text  # a reason is needed

    console.cancel_reason.value = "customer changed their mind"
    console.cancel_button.click()
    assert console.confirm_row.layout.display != "none" and order.number in console.confirm_row.text.value
    assert orders.get_order(distribution.db, order.number).state == "allocated"
    console.confirm_button.click()

    assert console.status.kind == "ok" and "allocated → cancelled" in console.status.text, console.status.text
    assert orders.get_order(distribution.db, order.number).state == "cancelled"
    assert cards.get_card(distribution.db, order.iccid).state == "in_stock"
    assert "退款 refund" in console.payments.value and "cancelled" in console.detail.value
    assert console.stage_buttons["cancelled"].description.endswith("(1)")


def test_a_refused_move_shows_the_reason_in_the_status_line_and_changes_nothing(console, distribution):
    order = place_order(distribution.db, 10)
    open_order(console, order.number)

    console.deliver_button.click()
    assert console.status.kind == "error" and f"cannot deliver order {order.number}" in console.status.text
    console.ship_tracking.value = ""
    console.ship_button.click()
    assert console.status.kind == "error" and "tracking_no" in console.status.text
    console.pay_amount.value = "abc"
    console.pay_button.click()
    assert console.status.kind == "error" and "amount" in console.status.text

    assert orders.get_order(distribution.db, order.number).state == "approved"
    assert "Traceback" not in console.status.value and not console.pay_button.disabled


def test_an_activated_order_is_returned_after_confirming(console, distribution, hlr):
    order = advance(distribution.db, place_order(distribution.db, 11).number, "activated", network=hlr[1])
    open_order(console, order.number)
    console.cancel_reason.value = "too late"
    console.cancel_button.click()
    console.confirm_button.click()
    assert console.status.kind == "error" and "return" in console.status.text

    console.return_reason.value = "faulty handset"
    console.return_button.click()
    console.confirm_button.click()

    assert orders.get_order(distribution.db, order.number).state == "returned", console.status.text
    assert cards.get_card(distribution.db, order.iccid).state == "terminated"
    assert hlr[1].get(order.msisdn) is None


def test_clicking_a_state_lists_its_orders(console, distribution):
    shipped = advance(distribution.db, place_order(distribution.db, 12).number, "shipped")
    place_order(distribution.db, 13)
    console.refresh_button.click()
    assert console.stage_buttons["shipped"].description == "已发货 shipped (1)"

    console.stage_buttons["shipped"].click()

    assert f"data-order='{shipped.number}'" in console.order_table.value
    assert console.order_table.value.count("data-order=") == 1
    console.order_pick.value = shipped.number
    assert shipped.number in console.detail.value and "SF" in console.shipment.value


def test_the_index_links_to_the_orders_console():
    from hkops.ui import index

    assert "href='orders.ipynb'" in index().children[1].value


def test_expired_orders_have_their_own_stage_and_offer_no_move(console, distribution):
    from datetime import timedelta

    from hkops.timeutil import utc_now

    late = place_order(distribution.db, 14, now=utc_now() - timedelta(days=2))
    orders.expire_unpaid(distribution.db, actor="desk")
    console.refresh_button.click()
    assert console.stage_buttons["expired"].description == "已过期 expired (1)"
    console.stage_buttons["expired"].click()
    assert f"data-order='{late.number}'" in console.order_table.value
    open_order(console, late.number)
    assert "expired" in console.detail.value and "unpaid for more than 24h" in console.detail.value
