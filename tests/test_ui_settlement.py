"""The settlement console, driven like a finance clerk would (pick, type, click, confirm), without a
browser; and the batch statement exported to Excel and CSV."""

from __future__ import annotations

import csv
from datetime import date
from decimal import Decimal

import ipywidgets as widgets
import pytest
from sqlalchemy import func, select

from distribution_world import distribution  # noqa: F401  (fixture)
from hkops.commissions import service as commissions
from hkops.commissions.tables import agent_ledger, settlement_batches
from hkops.errors import InvalidValue
from hkops.orders import service as orders
from hkops.security.access import Principal
from hkops.ui import settlement_console
from hkops.ui.settlement import SettlementConsole
from test_cards_lifecycle import hlr  # noqa: F401  (fixture)
from test_commissions import NOW, RULES, _at, _scheme, _sold_by_a3, clock  # noqa: F401  (clock is a fixture)

FINANCE = Principal("fin", roles=("finance",), permissions={"settlement.read", "settlement.write", "orders.read",
                                                            "agents.read"})
ANALYST = Principal("ana", roles=("analyst",), permissions={"settlement.read", "orders.read", "agents.read"})
A2_USER = Principal("a2-user", roles=("agent",), permissions={"settlement.read", "orders.read", "agents.read"},
                    agent="A2")


@pytest.fixture
def month(distribution, hlr, clock, tmp_path):
    """Two orders sold by A3 (chain A3 > A2 > A1), activated and topped up on 10 December 2026 and
    accrued to 31 December; the second returned on 20 January (clawed back, accrued to 28 February).
    December per agent: A3 8320, A2 3160, A1 1000 fen."""
    db = distribution.db
    commissions.add_scheme(db, _scheme(tmp_path), actor="finance", now=NOW)
    first = _sold_by_a3(db, 1, hlr[1], clock)
    second = _sold_by_a3(db, 2, hlr[1], clock)
    commissions.accrue(db, as_of=date(2026, 12, 31), actor="finance", now=_at(date(2026, 12, 31)))
    return {"db": db, "orders": (first, second), "hlr": hlr, "clock": clock, "tmp": tmp_path}


def console_for(month, actor=FINANCE, as_of=date(2027, 1, 1)) -> SettlementConsole:
    console = settlement_console(month["db"], actor=actor, export_dir=month["tmp"] / "exports")
    console.as_of.value = as_of
    return console


def shown(widget) -> str:
    """Every HTML the console shows (what a browser would render)."""
    if isinstance(widget, widgets.HTML):
        return widget.value
    return "".join(shown(child) for child in getattr(widget, "children", ()))


def batches(db) -> dict[str, dict]:
    return {b["agent"]: b for b in commissions.list_batches(db)}


def ledger_rows(db) -> int:
    with db.read() as conn:
        return conn.execute(select(func.count()).select_from(agent_ledger)).scalar()


def confirm(console: SettlementConsole, confirm_row) -> None:
    assert confirm_row.layout.display == "flex", console.status.text
    confirm_row.confirm_button.click()


def test_a_month_is_settled_through_the_console_and_the_ledger_follows(month):
    db = month["db"]
    console = console_for(month)
    assert console.period.value == "2026-12"  # the month before "as of"
    assert "¥83.20" in console.balances_table.value and "¥31.60" in console.balances_table.value

    steps = []
    console.progress.bar.observe(lambda change: steps.append((console.progress.label.value, change.new)), "value")
    console.create_button.click()
    assert "<b>3</b> draft batch(es)" in console.batch_confirm.text.value
    assert "¥124.80" in console.batch_confirm.text.value  # 8320 + 3160 + 1000 fen
    assert commissions.list_batches(db) == []  # nothing before the confirmation
    confirm(console, console.batch_confirm)
    assert console.status.kind == "ok" and "Created 3 draft batch(es) for 2026-12" in console.status.text
    made = batches(db)
    assert {a: b["state"] for a, b in made.items()} == {"A1": "draft", "A2": "draft", "A3": "draft"}
    assert ("生成结算单 Creating batches…", 3) in steps  # the bar reaches the 3 batches made
    assert console.progress.layout.visibility == "hidden"

    a3 = made["A3"]["id"]
    console.batch_pick.value = a3
    assert "¥83.20" in console.batch_detail.value and month["orders"][0] in console.batch_detail.value
    for action, clicked in (("confirmed", console.confirm_batch_button), ("approved", console.approve_button)):
        clicked.click()
        assert ledger_rows(db) == 0
        confirm(console, console.batch_confirm)
        assert commissions.show_batch(db, a3)["state"] == action, console.status.text
        assert f"→ {action}" in console.status.text

    console.reference.value = "BANK-DEC-A3"
    console.pay_button.click()
    assert "BANK-DEC-A3" in console.batch_confirm.text.value and commissions.show_batch(db, a3)["state"] == "approved"
    confirm(console, console.batch_confirm)
    paid = commissions.show_batch(db, a3)
    assert (paid["state"], paid["reference"]) == ("paid", "BANK-DEC-A3")
    assert {line["state"] for line in paid["lines"]} == {"paid"}
    assert commissions.balance(db, "A3")["balance_fen"] == 8_320 and ledger_rows(db) == 1
    assert "approved → paid" in console.status.text
    assert "BANK-DEC-A3" in console.batches_table.value and "hkops-batch-paid" in console.batches_table.value
    with db.read() as conn:
        assert commissions.inconsistencies(conn) == []


def test_cancel_leaves_everything_as_it_was(month):
    db = month["db"]
    console = console_for(month)
    console.create_button.click()
    console.batch_confirm.cancel_button.click()
    assert console.batch_confirm.layout.display == "none" and "Cancelled" in console.status.text
    console.batch_confirm.confirm_button.click()  # nothing pending any more
    assert console.status.kind == "error" and "Nothing to confirm" in console.status.text
    assert commissions.list_batches(db) == []


def test_refused_moves_show_a_readable_message_and_change_nothing(month):
    db = month["db"]
    console = console_for(month, as_of=date(2026, 12, 31))
    console.period.value = "2026-12"
    console.create_button.click()
    assert console.status.kind == "error" and "has not ended" in console.status.text
    assert console.batch_confirm.layout.display == "none" and commissions.list_batches(db) == []

    console.as_of.value = date(2027, 1, 1)
    console.batch_agent.value = "A3"
    console.create_button.click()
    confirm(console, console.batch_confirm)
    [batch] = commissions.list_batches(db)
    console.batch_pick.value = batch["id"]
    console.approve_button.click()
    confirm(console, console.batch_confirm)
    assert console.status.kind == "error"
    assert f"batch {batch['id']} is draft; approve needs it confirmed" in console.status.text
    assert "Traceback" not in shown(console) and commissions.show_batch(db, batch["id"])["state"] == "draft"
    console.pay_button.click()  # no reference typed
    assert console.status.kind == "error" and "reference" in console.status.text
    assert console.batch_confirm.layout.display == "none"

    reader = console_for(month, actor=ANALYST)
    assert "Read only" in reader.write_note.value
    reader.batch_pick.value = batch["id"]
    reader.confirm_batch_button.click()
    assert reader.status.kind == "error" and "ana may not confirm settlement batch" in reader.status.text
    assert "settlement.write" in reader.status.text and reader.batch_confirm.layout.display == "none"
    reader.create_button.click()
    assert "may not create settlement" in reader.status.text
    assert commissions.show_batch(db, batch["id"])["state"] == "draft" and len(commissions.list_batches(db)) == 1


def test_an_agent_user_sees_its_own_subtree_only(month):
    db = month["db"]
    made = commissions.create_batches(db, "2026-12", as_of=date(2027, 1, 1), actor="finance", now=NOW)
    console = console_for(month, actor=A2_USER)
    assert console.status.kind != "error", console.status.text
    page = console.balances_table.value
    assert "data-agent='A2'" in page and "data-agent='A3'" in page and "data-agent='A1'" not in page
    assert {value for _, value in console.agent_pick.options} == {"", "A2", "A3"}
    listed = {commissions.show_batch(db, b)["agent"]: b for b in made}
    assert f"data-batch='{listed['A1']}'" not in console.batches_table.value
    assert f"data-batch='{listed['A2']}'" in console.batches_table.value
    assert listed["A1"] not in {value for _, value in console.batch_pick.options}

    console.agent_pick.value = "A3"
    console.order_pick.value = month["orders"][0]
    detail = console.order_detail.value
    assert month["orders"][0] in detail and "A2" in detail and "¥30.00" in detail  # A3's activation
    assert "¥5.00" not in detail  # what A1, above A2, earns on the order is not shown
    assert console.status.kind != "error", console.status.text


def test_drill_down_from_an_agent_to_its_entries_and_their_order(month):
    first, second = month["orders"]
    console = console_for(month)
    console.agent_pick.value = "A3"
    assert console.entries_table.value.count("data-entry=") == 4  # activation and first top-up, two orders
    assert {value for _, value in console.order_pick.options} == {"", first, second}
    console.order_pick.value = second
    detail = console.order_detail.value
    assert second in detail and "A3 (L3)" in detail and "¥5.00" in detail  # A1's 500 on the activation
    assert "¥62.40" in detail  # 3000 + 1160 + 1000 + 580 + 500: all five credits on this order
    assert first not in detail


def test_clawbacks_and_charts_show_the_returned_order(month):
    db, (first, second) = month["db"], month["orders"]
    month["clock"].now = _at(date(2027, 1, 20))
    orders.return_order(db, second, actor="desk", reason="customer changed mind")
    commissions.accrue(db, as_of=date(2027, 3, 1), until=date(2027, 2, 28), actor="finance",
                       now=_at(date(2027, 3, 1)))
    console = console_for(month, as_of=date(2027, 3, 1))
    assert console.clawbacks_table.value.count(f"data-order='{second}'") == 5
    assert f"data-order='{first}'" not in console.clawbacks_table.value, console.clawbacks_table.value
    assert "-¥30.00" in console.clawbacks_table.value

    report = {m["month"]: m for m in commissions.commission_report(db)}
    assert report["2026-12"]["credit_fen"] == {1: 8_320, 2: 3_160, 3: 1_000}
    assert report["2026-12"]["activations"] == 2 and report["2026-12"]["cost_per_activation_fen"] == 6_240
    assert report["2026-12"]["clawback_percent"] == Decimal("50.0")  # one of two equal orders
    assert report["2027-01"]["reversal_fen"] == -6_240 and report["2027-02"]["credit_fen"] == {1: 800, 2: 200, 3: 100}
    traces = {t.name: t for t in console.level_chart.data}
    assert report["2027-03"]["credit_fen"] == {1: 800, 2: 200, 3: 100}  # month 3 ends on 1 March
    assert list(traces["回收 clawed back"].x) == ["2026-12", "2027-01", "2027-02", "2027-03"]
    assert list(traces["回收 clawed back"].y) == [0, -62.4, 0, 0]
    assert list(traces["1 销售代理 seller"].y) == [83.2, 0, 8, 8]
    assert list(console.clawback_chart.data[0].y)[0] == 50.0
    assert list(console.cost_chart.data[0].y)[0] == 62.4


def test_the_withdrawal_queue_approves_pays_and_rejects_with_a_reason(month):
    db = month["db"]
    for batch in commissions.create_batches(db, "2026-12", as_of=date(2027, 1, 1), actor="finance", now=NOW):
        for action in ("confirm", "approve"):
            commissions.move_batch(db, batch, action, actor="finance", now=NOW)
        commissions.move_batch(db, batch, "pay", actor="finance", now=NOW, reference=f"P{batch}")
    paid = commissions.request_withdrawal(db, "A3", "80.00", as_of=date(2027, 1, 5), actor="finance", now=NOW,
                                          rules=RULES)
    refused = commissions.request_withdrawal(db, "A2", "20.00", as_of=date(2027, 1, 5), actor="finance", now=NOW,
                                             rules=RULES)
    above = commissions.request_withdrawal(db, "A1", "5.00", as_of=date(2027, 1, 5), actor="finance", now=NOW,
                                           rules={**RULES, "minimum_fen": 100})
    seen_by_a2 = console_for(month, actor=A2_USER, as_of=date(2027, 1, 6)).withdrawals_table.value
    assert f"data-withdrawal='{paid['id']}'" in seen_by_a2 and f"data-withdrawal='{above['id']}'" not in seen_by_a2
    console = console_for(month, as_of=date(2027, 1, 6))
    assert f"data-withdrawal='{paid['id']}'" in console.withdrawals_table.value
    assert f"data-withdrawal='{above['id']}'" in console.withdrawals_table.value

    console.withdrawal_pick.value = refused["id"]
    console.withdrawal_reject_button.click()
    assert console.status.kind == "error" and "say why" in console.status.text
    console.withdrawal_reason.value = "bank account closed"
    console.withdrawal_reject_button.click()
    assert "bank account closed" in console.withdrawal_confirm.text.value
    confirm(console, console.withdrawal_confirm)
    assert commissions.get_withdrawal(db, refused["id"])["state"] == "rejected"
    assert commissions.balance(db, "A2")["available_fen"] == 3_160  # released

    console.withdrawal_pick.value = paid["id"]
    console.withdrawal_approve_button.click()
    confirm(console, console.withdrawal_confirm)
    console.withdrawal_pick.value = paid["id"]
    console.withdrawal_reference.value = "WD-1"
    console.withdrawal_pay_button.click()
    assert "¥74.20" in console.withdrawal_confirm.text.value  # 8000 - fee 100 - tax 480
    confirm(console, console.withdrawal_confirm)
    assert commissions.get_withdrawal(db, paid["id"])["state"] == "paid"
    assert commissions.balance(db, "A3")["balance_fen"] == 320
    assert f"data-withdrawal='{paid['id']}'" not in console.withdrawals_table.value  # the queue is pending ones
    console.withdrawal_filter.value = "paid"
    assert f"data-withdrawal='{paid['id']}'" in console.withdrawals_table.value


# ---------------------------------------------------------------- the statement

def _paid_batch(db, agent="A3"):
    [batch] = commissions.create_batches(db, "2026-12", as_of=date(2027, 1, 1), agent=agent, actor="finance", now=NOW)
    return batch


def test_the_console_exports_an_excel_statement_whose_totals_equal_the_batch(month):
    from openpyxl import load_workbook

    db = month["db"]
    batch = _paid_batch(db)
    console = console_for(month)
    console.batch_pick.value = batch
    console.export_button.click()
    path = month["tmp"] / "exports" / f"settlement-{batch}-A3-2026-12.xlsx"
    assert console.status.kind == "ok" and str(path) in console.status.text
    assert "hkops-download" in console.export_result.value and path.name in console.export_result.value

    sheet = load_workbook(path)["statement"]
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    head, lines, total = rows[0], rows[1:-1], rows[-1]
    assert head == commissions.STATEMENT_COLUMNS
    shown = commissions.show_batch(db, batch)
    assert [line[head.index("entry")] for line in lines] == [line["id"] for line in shown["lines"]]
    assert {line[head.index("order")] for line in lines} == set(month["orders"])
    assert total[head.index("event")] == "total"
    fen, yuan = head.index("amount_fen"), head.index("amount_yuan")
    assert sum(line[fen] for line in lines) == total[fen] == shown["total_fen"] == 8_320
    assert sum(Decimal(str(line[yuan])) for line in lines) == Decimal(str(total[yuan])) == Decimal("83.20")
    assert sheet.cell(row=2, column=yuan + 1).number_format == commissions.YUAN_FORMAT
    summary = dict(load_workbook(path)["batch"].iter_rows(values_only=True))
    assert (summary["agent"], summary["period"], summary["total_fen"]) == ("A3", "2026-12", 8_320)


def test_export_chooses_the_format_by_suffix_and_refuses_another(month):
    db, tmp = month["db"], month["tmp"]
    batch = _paid_batch(db)
    assert commissions.export_batch(db, batch, tmp / "s.csv") == 4
    assert (tmp / "s.csv").read_bytes().startswith(b"\xef\xbb\xbfbatch,")  # the byte-order mark Excel needs
    with open(tmp / "s.csv", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    assert [r["event"] for r in rows][-1] == "total" and rows[-1]["amount_fen"] == "8320"
    assert rows[-1]["amount_yuan"] == "83.20" and all(r["order"] in month["orders"] for r in rows[:-1])
    assert sum(int(r["amount_fen"]) for r in rows[:-1]) == 8_320
    with pytest.raises(InvalidValue, match="must end in .xlsx"):
        commissions.export_batch(db, batch, tmp / "s.txt")
    assert not (tmp / "s.txt").exists()
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith(".")) == []  # no partial file left


def test_the_index_links_to_the_settlement_console():
    from hkops.ui import index

    assert "href='settlement.ipynb'" in index().children[1].value


from strategies import hkops_cli  # noqa: E402,F401  (fixture)


def test_the_command_line_exports_excel_and_refuses_another_suffix(month, hkops_cli):
    from openpyxl import load_workbook

    db, tmp = month["db"], month["tmp"]
    batch = _paid_batch(db)
    status, out, err = hkops_cli(db, "settlement", "export", str(batch), "--out", str(tmp / "dec.xlsx"))
    assert status == 0, err
    assert "4 line(s) written" in out
    rows = list(load_workbook(tmp / "dec.xlsx")["statement"].iter_rows(values_only=True))
    assert rows[-1][-2] == 8_320 and len(rows) == 6  # head, 4 lines, total
    status, _, err = hkops_cli(db, "settlement", "export", str(batch), "--out", str(tmp / "dec.pdf"))
    assert status == 2 and "must end in .xlsx (Excel) or .csv" in err and not (tmp / "dec.pdf").exists()
    status, out, _ = hkops_cli(db, "settlement", "export", "--help")
    assert ".xlsx" in out
