"""The stock console, driven like a user would (pick, paste, click, confirm), without a browser."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from distribution_world import PRODUCT, WAREHOUSE, distribution  # noqa: F401  (distribution is a fixture)
from hkops.cards.tables import sims
from hkops.stock import service as stock
from hkops.ui import stock_console
from hkops.ui.stock import StockConsole

AGENT = "AG-A3"


@pytest.fixture
def console(distribution) -> StockConsole:
    return stock_console(distribution.db, actor="tester")


def where(db, iccids: list[str]) -> dict[str, str]:
    with db.read() as conn:
        return dict(conn.execute(select(sims.c.iccid, sims.c.location).where(sims.c.iccid.in_(iccids))).all())


def units(db, location: str) -> int:
    return sum(r["quantity"] for r in stock.on_hand(db, location=location))


def test_on_hand_is_listed_by_location_and_product_and_drawn_stacked_by_product(console, distribution):
    assert console.status.kind != "error", console.status.text
    table = console.on_hand_table.value
    assert f"data-location='{WAREHOUSE}'" in table and f"data-location='{AGENT}'" in table
    assert ">9<" in table and ">3<" in table and ">12<" in table  # the warehouse, A3, the total
    (bar,) = console.chart.data
    assert bar.name == PRODUCT and dict(zip(bar.x, bar.y)) == {AGENT: 3, WAREHOUSE: 9}

    console.location_filter.value = AGENT

    assert f"data-location='{WAREHOUSE}'" not in console.on_hand_table.value
    assert list(console.chart.data[0].x) == [AGENT]


def test_a_transfer_through_the_form_asks_first_then_moves_the_cards_and_shows_the_document(console, distribution):
    moving = distribution.warehouse_iccids[:2]
    console.transfer_from.value, console.transfer_to.value = WAREHOUSE, "AG-A1"
    console.transfer_iccids.value = "\n".join(moving)

    console.transfer_button.click()

    assert console.transfer_confirm.layout.display != "none"
    question = console.transfer_confirm.text.value
    assert "<b>2</b> card(s)" in question and moving[0] in question and moving[1] in question
    assert set(where(distribution.db, moving).values()) == {WAREHOUSE}  # nothing moved yet
    console.transfer_confirm.confirm_button.click()

    assert console.status.kind == "ok", console.status.text
    assert "Transferred 2 card(s) WH-BJ → AG-A1, document TR000002" in console.status.text
    assert set(where(distribution.db, moving).values()) == {"AG-A1"}
    assert "data-document='TR000002'" in console.ledger_table.value
    assert "data-location='AG-A1'" in console.on_hand_table.value
    assert console.transfer_iccids.value == "" and console.transfer_confirm.layout.display == "none"


def test_a_range_or_a_number_of_units_of_a_product_can_be_transferred(console, distribution):
    first, last = distribution.warehouse_iccids[0], distribution.warehouse_iccids[2]
    console.transfer_from.value, console.transfer_to.value = WAREHOUSE, "AG-A2"
    console.transfer_mode.value = "range"
    assert console.transfer_iccids.layout.display == "none"
    console.transfer_first.value, console.transfer_last.value = first, last
    console.transfer_button.click()
    console.transfer_confirm.confirm_button.click()
    assert units(distribution.db, "AG-A2") == 3, console.status.text

    console.transfer_mode.value = "count"
    console.transfer_count.value = 4
    console.transfer_product.value = PRODUCT
    console.transfer_button.click()
    assert "<b>4</b> card(s)" in console.transfer_confirm.text.value
    console.transfer_confirm.confirm_button.click()

    assert console.status.kind == "ok" and "TR000003" in console.status.text
    assert units(distribution.db, "AG-A2") == 7 and units(distribution.db, WAREHOUSE) == 2


def test_a_card_that_is_not_at_the_source_refuses_the_transfer_and_nothing_moves(console, distribution):
    console.transfer_from.value, console.transfer_to.value = WAREHOUSE, "AG-A1"
    elsewhere = distribution.agent_iccids[0]
    console.transfer_iccids.value = f"{distribution.warehouse_iccids[0]}, {elsewhere}"

    console.transfer_button.click()

    assert console.status.kind == "error" and f"is not at {WAREHOUSE} (it is at {AGENT})" in console.status.text
    assert "Traceback" not in console.status.value and console.pending is None
    assert console.transfer_confirm.layout.display == "none"
    assert units(distribution.db, WAREHOUSE) == 9 and units(distribution.db, "AG-A1") == 0
    assert len(stock.ledger(distribution.db, document="TR000002")) == 0


def test_cancelling_a_transfer_changes_nothing(console, distribution):
    console.transfer_iccids.value = distribution.warehouse_iccids[0]
    console.transfer_to.value = "AG-A1"
    console.transfer_button.click()

    console.transfer_confirm.cancel_button.click()

    assert console.pending is None and "nothing changed" in console.status.text
    console.transfer_confirm.confirm_button.click()  # nothing pending any more
    assert units(distribution.db, "AG-A1") == 0 and console.status.kind == "error"


def test_a_count_shows_its_variances_then_applies_them_after_confirming(console, distribution):
    found, lost = distribution.agent_iccids[:2], distribution.agent_iccids[2]
    stray = distribution.warehouse_iccids[0]
    console.count_location.value = AGENT
    console.count_iccids.value = "\n".join(found + [stray, found[0]])

    console.count_button.click()

    assert console.status.kind == "info" and "1 missing, 1 unexpected" in console.status.text
    assert "expected <b>3</b>, counted <b>3</b>" in console.count_result.value
    assert lost in console.count_result.value and stray in console.count_result.value
    assert where(distribution.db, [lost, stray]) == {lost: AGENT, stray: WAREHOUSE}  # a check writes nothing

    console.count_apply_button.click()
    console.count_confirm.confirm_button.click()

    assert console.status.kind == "ok" and "Count CT000001 at AG-A3 recorded" in console.status.text
    assert where(distribution.db, [lost, stray]) == {lost: "MISSING", stray: AGENT}
    assert "data-document='CT000001'" in console.ledger_table.value


def test_applying_a_count_needs_a_check_of_the_same_list_first(console, distribution):
    console.count_location.value = AGENT
    console.count_iccids.value = distribution.agent_iccids[0]
    console.count_button.click()
    console.count_iccids.value = ""  # the checked list no longer stands

    console.count_apply_button.click()

    assert console.status.kind == "error" and "Check the count first" in console.status.text
    assert console.pending is None and units(distribution.db, AGENT) == 3


def test_scrapping_destroys_the_cards_and_moves_them_to_scrap(console, distribution):
    faulty = distribution.warehouse_iccids[-1]
    console.scrap_location.value = WAREHOUSE
    console.scrap_iccids.value = faulty
    console.scrap_button.click()
    assert console.status.kind == "error" and "why" in console.status.text  # no reason given

    console.scrap_reason.value = "chip cracked"
    console.scrap_button.click()
    console.scrap_confirm.confirm_button.click()

    assert console.status.kind == "ok" and "SX000001" in console.status.text, console.status.text
    with distribution.db.read() as conn:
        row = conn.execute(select(sims.c.state, sims.c.location).where(sims.c.iccid == faulty)).one()
    assert tuple(row) == ("destroyed", "SCRAP")


def test_a_minimum_set_in_the_form_raises_a_low_stock_alert_with_the_reorder(console, distribution):
    assert "Nothing is running low" in console.alerts.value
    console.minimum_location.value, console.minimum_product.value = WAREHOUSE, PRODUCT
    console.minimum_value.value = 20

    console.minimum_button.click()

    assert console.status.kind == "ok", console.status.text
    assert f"data-product='{PRODUCT}'" in console.alerts.value and "<b>11</b>" in console.alerts.value
    alert = stock.low_stock(distribution.db)[0]
    assert (alert.on_hand, alert.minimum, alert.suggested_reorder) == (9, 20, 11)


def test_the_ledger_filters_by_location_card_and_document(console, distribution):
    card = distribution.agent_iccids[0]
    console.ledger_iccid.value = card
    console.ledger_button.click()
    rows = console.ledger_table.value.count("<tr data-document=")
    assert rows == 2 and "TR000001" in console.ledger_table.value  # received, then transferred

    console.ledger_iccid.value = ""
    console.ledger_document.value = "tr000001"
    console.ledger_button.click()
    assert console.ledger_table.value.count("data-document='TR000001'") == 3

    console.ledger_iccid.value = "not an iccid"
    console.ledger_button.click()
    assert console.status.kind == "error" and "iccid" in console.status.text


def test_the_index_links_to_the_stock_console():
    from hkops.ui import index

    assert "href='stock.ipynb'" in index().children[1].value
