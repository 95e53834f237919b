"""The card lifecycle console, driven like a user would (type, click, confirm), without a browser."""

from __future__ import annotations

import pytest

from hkops.cards import service as cards
from hkops.errors import Conflict
from hkops.network import ProvisioningClient, TcpTransport
from hkops.ui import lifecycle_console
from hkops.ui.lifecycle import LifecycleConsole
from test_cards_lifecycle import N, RID, active_card, hlr, shop  # noqa: F401 - fixtures
from test_subscribers import make_rid


def down_client() -> ProvisioningClient:
    """A client for an HLR nobody runs (port 1 refuses at once)."""
    return ProvisioningClient(TcpTransport("127.0.0.1", 1, connect_timeout=0.2), retries=1, backoff=0, timeout=0.5)


@pytest.fixture
def console(shop, hlr) -> LifecycleConsole:
    return lifecycle_console(shop, network=hlr[1], actor="tester")


def find(console: LifecycleConsole, value: str) -> None:
    console.query.value = value
    console.find_button.click()


def test_finding_a_card_by_msisdn_shows_its_state_number_subscriber_and_hlr_record(console, shop, hlr):
    active_card(shop, hlr)

    find(console, N)

    assert console.card is not None and console.card.iccid == shop.iccids[0]
    assert console.status.kind == "ok", console.status.text
    assert "active" in console.detail.value and "138 0013 0127" in console.detail.value
    assert "王芳" in console.detail.value and RID not in console.detail.value  # masked ID only
    assert shop.imsis[0] in console.hlr.value and "unreachable" not in console.hlr.value


def test_finding_by_iccid_and_by_masked_resident_id_reach_the_same_card(console, shop, hlr):
    active_card(shop, hlr)
    find(console, shop.iccids[0])
    assert console.card.msisdn == N

    masked = RID[:2] + "*" * 15 + RID[-1:]
    find(console, masked)

    assert [c.iccid for c in console.found] == [shop.iccids[0]] and console.card.iccid == shop.iccids[0]


def test_finding_an_unknown_number_says_so_without_an_error(console):
    find(console, "13800139999")

    assert console.card is None and console.status.kind == "info" and "No SIM card" in console.status.text


def test_reporting_a_loss_after_confirming_makes_the_card_lost_and_the_hlr_barred(console, shop, hlr):
    active_card(shop, hlr)
    find(console, N)

    console.report_loss_button.click()
    assert console.confirm_row.layout.display != "none" and shop.iccids[0] in console.confirm_text.value
    assert cards.get_card(shop, N).state == "active"
    console.confirm_button.click()

    assert cards.get_card(shop, N).state == "lost"
    assert hlr[1].get(N).barred
    assert console.status.kind == "ok" and "active → lost" in console.status.text
    assert "lost" in console.detail.value and "yes" in console.hlr.value


def test_suspending_uses_the_reason_picked_in_the_dropdown(console, shop, hlr):
    active_card(shop, hlr)
    find(console, N)
    console.suspend_reason.value = "fraud"

    console.suspend_button.click()
    console.confirm_button.click()

    card = cards.get_card(shop, N)
    assert (card.state, card.suspend_reason) == ("suspended", "fraud")


def test_replacing_with_a_wrong_resident_id_shows_the_conflict_and_changes_nothing(console, shop, hlr):
    active_card(shop, hlr)
    wrong = make_rid(seq="125")
    with pytest.raises(Conflict) as conflict:
        cards.replace(shop, shop.iccids[0], shop.iccids[1], wrong, actor="x", network=hlr[1])
    find(console, N)
    console.new_iccid.value = shop.iccids[1]
    console.resident_id.value = wrong

    console.replace_button.click()
    assert wrong not in console.confirm_text.value  # the question shows the ID masked
    console.confirm_button.click()

    assert console.status.kind == "error" and console.status.text == str(conflict.value)
    assert "is not the card holder's" in console.status.text and "Traceback" not in console.status.value
    assert cards.get_card(shop, shop.iccids[1]).state == "in_stock"
    assert cards.get_card(shop, N).iccid == shop.iccids[0]


def test_replacing_with_the_right_resident_id_moves_the_number_to_the_new_card(console, shop, hlr):
    active_card(shop, hlr)
    find(console, N)
    console.new_iccid.value = shop.iccids[1]
    console.resident_id.value = RID

    console.replace_button.click()
    console.confirm_button.click()

    assert console.status.kind == "ok", console.status.text
    assert console.card.iccid == shop.iccids[1] and cards.get_card(shop, N).iccid == shop.iccids[1]
    assert hlr[1].get(N).imsi == shop.imsis[1] and console.resident_id.value == ""


def test_cancelling_the_confirmation_changes_nothing(console, shop, hlr):
    active_card(shop, hlr)
    find(console, N)
    console.terminate_button.click()

    console.cancel_button.click()

    assert console.pending is None and console.confirm_row.layout.display == "none"
    assert "nothing changed" in console.status.text
    console.confirm_button.click()  # nothing pending any more
    assert cards.get_card(shop, N).state == "active" and hlr[1].get(N) is not None


def test_an_illegal_move_shows_the_refusal(console, shop, hlr):
    active_card(shop, hlr)
    find(console, N)

    console.lift_loss_button.click()
    console.confirm_button.click()

    assert console.status.kind == "error" and "lift loss needs a card that is lost" in console.status.text
    assert cards.get_card(shop, N).state == "active"


def test_the_timeline_lists_the_moves_of_the_card_and_its_number(console, shop, hlr):
    active_card(shop, hlr)
    cards.suspend(shop, shop.iccids[0], "arrears", actor="ana", network=hlr[1])

    find(console, N)

    timeline = console.timeline.value
    for action in ("pair", "activate_requested", "activate", "suspend"):
        assert f"data-action='{action}'" in timeline
    assert "allocate" in timeline  # the number's own record (hkops.numbers) is there too
    assert timeline.index("data-action='suspend'") < timeline.index("data-action='pair'")  # newest first


def test_sync_now_confirms_an_activation_made_while_the_hlr_was_down(shop, hlr):
    cards.pair(shop, shop.iccids[0], N, shop.subscriber, actor="ana")
    cards.activate(shop, shop.iccids[0], actor="ana", network=down_client())
    console = lifecycle_console(shop, network=hlr[1], actor="tester")
    assert "Pending HLR commands: <b>1</b>" in console.pending_info.value
    find(console, N)
    assert "activate" in console.detail.value and "waiting for the HLR" in console.detail.value

    console.sync_button.click()

    assert console.status.kind == "ok" and "confirmed all 1" in console.status.text
    card = cards.get_card(shop, N)
    assert (card.state, card.network_sync, card.pending_action) == ("active", "synced", None)
    assert "Pending HLR commands: <b>0</b>" in console.pending_info.value
    assert "active" in console.detail.value and shop.imsis[0] in console.hlr.value


def test_a_move_while_the_hlr_is_down_says_it_waits_for_the_hlr(shop, hlr):
    active_card(shop, hlr)
    cards.suspend(shop, shop.iccids[0], "arrears", actor="ana", network=hlr[1])
    console = lifecycle_console(shop, network=down_client(), actor="tester")
    find(console, N)
    assert "HLR unreachable" in console.hlr.value and "HLR unreachable" in console.hlr_status.value

    console.resume_button.click()
    console.confirm_button.click()

    assert console.status.kind == "info" and "waiting for the HLR" in console.status.text
    assert cards.get_card(shop, N).pending_action == "resume"
    assert "no answer" in console.latency.value


def test_reconcile_shows_the_differences_and_the_time_of_the_last_reconciliation(console, shop, hlr):
    active_card(shop, hlr)
    hlr[1].remove_subscriber(N)
    assert "never" in console.reconcile_info.value

    console.reconcile_button.click()

    assert console.status.kind == "error" and "1 difference(s)" in console.status.text
    assert "missing_in_hlr" in console.status.text
    assert "Last reconciliation" in console.reconcile_info.value and "never" not in console.reconcile_info.value
    assert "reconcile" in console.latency.value and " ms" in console.latency.value


def test_without_a_client_the_console_asks_the_hlr_of_hkops_hlr_and_says_when_it_is_unreachable(shop, monkeypatch):
    monkeypatch.setenv("HKOPS_HLR", "127.0.0.1:1")

    console = lifecycle_console(shop, actor="tester")

    assert console.network.transport.port == 1
    assert "HLR unreachable" in console.hlr_status.value
    assert console.status.kind != "error", console.status.text


def test_an_unexpected_error_shows_a_short_message_not_a_traceback(console, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("database went away\nwith a second line")

    monkeypatch.setattr("hkops.ui.lifecycle.cards.get_card", broken)
    find(console, N)

    assert console.status.kind == "error" and "RuntimeError" in console.status.text
    assert "second line" not in console.status.text and not console.find_button.disabled


def test_the_index_links_to_the_lifecycle_console():
    from hkops.ui import index

    assert "href='lifecycle.ipynb'" in index().children[1].value


def test_sync_with_nothing_pending_does_not_claim_the_hlr_answered(shop):
    console = lifecycle_console(shop, network=down_client(), actor="tester")

    console.sync_button.click()

    assert console.status.kind == "info" and "Nothing to send" in console.status.text
    assert "HLR unreachable" in console.hlr_status.value and console.last_call[0] == "ping"


def test_the_usage_chart_shows_the_cards_days_and_the_error_rate_counts_retries(shop, hlr, tmp_path):
    from datetime import date, timedelta

    from hkops.network.usage import generate_usage

    active_card(shop, hlr)
    generate_usage(cards.network_cards(shop), start=date.today() + timedelta(days=1), days=5, seed=2,
                   out_dir=tmp_path / "usage")
    console = lifecycle_console(shop, network=hlr[1], actor="ana", usage_dir=tmp_path / "usage")
    find(console, N)
    bars, line = console.usage_chart.data
    assert len(bars.x) == 5 and sum(bars.y) > 0 and len(line.y) == 5
    assert "5 day(s)" in console.usage_note.value
    assert "Error rate (24 h): <b>0.0%</b> of 1 commands" in console.pending_info.value
    empty = lifecycle_console(shop, network=hlr[1], actor="ana", usage_dir=tmp_path / "none")
    find(empty, N)
    assert "No usage records" in empty.usage_note.value and len(empty.usage_chart.data[0].x) == 0
