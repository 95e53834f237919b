"""A move the HLR refuses for good (a non-transient result code) ends visibly: the card goes
back to its state before the move (or keeps it, for termination), shows ``failed`` with the
HLR's answer in ``hlr pending`` and the lifecycle console, and the operator retries or
abandons it. ``hlr reconcile --fix`` repairs the outbox and the cards as well as the HLR."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from hkops.audit import query as audit_query
from hkops.cards import service as cards
from hkops.cards.tables import provisioning_outbox, sims
from hkops.errors import Conflict, InvalidValue
from hkops.network import add_sub, rmv_sub
from hkops.numbers import service as numbers
from hkops.numbers.tables import numbers as numbers_table
from hkops.stock import service as stock
from hkops.subscribers import service as subscribers
from hkops.subscribers.tables import subscriber_numbers
from hkops.ui import lifecycle_console
from test_cards_lifecycle import N, RID, active_card, hlr, shop  # noqa: F401 - fixtures

INTRUDER = "13800139999"
KEY = "00112233445566778899AABBCCDDEEFF"


def forget(client, msisdn: str = N) -> None:
    """The HLR loses the subscriber (any later MOD/RMV for it is refused: 3001)."""
    assert client.run_many([rmv_sub(msisdn)])[0].code == 0


def occupy(client, imsi: str) -> None:
    """Another number takes this IMSI in the HLR (ADD SUB / MOD IMSI with it are refused: 3003)."""
    assert client.run_many([add_sub(INTRUDER, imsi, KEY, KEY)])[0].code == 0


def consistent(db) -> None:
    """What ``hkops check`` asks of numbers and cards: every active or suspended number has
    exactly one live SIM and one live subscriber binding, and every live SIM's number is
    active or suspended... or assigned while the card is only paired."""
    live = ("paired", "active", "suspended", "lost")
    with db.read() as conn:
        in_service = conn.execute(select(numbers_table.c.msisdn).where(
            numbers_table.c.state.in_(["active", "suspended"]))).scalars().all()
        for msisdn in in_service:
            assert conn.execute(select(func.count()).select_from(sims).where(
                sims.c.msisdn == msisdn, sims.c.state.in_(live))).scalar() == 1, msisdn
            assert conn.execute(select(func.count()).select_from(subscriber_numbers).where(
                subscriber_numbers.c.msisdn == msisdn, subscriber_numbers.c.until.is_(None))).scalar() == 1, msisdn
        for msisdn, state in conn.execute(select(sims.c.msisdn, sims.c.state).where(sims.c.state.in_(live))):
            number = conn.execute(select(numbers_table.c.state).where(numbers_table.c.msisdn == msisdn)).scalar()
            assert number in (("assigned",) if state == "paired" else ("active", "suspended")), (msisdn, state, number)


def arrange(move: str, shop, hlr) -> tuple[str, callable]:
    """Bring card 0 to where ``move`` starts and make the HLR refuse it; returns (the card's
    state before the move, the move)."""
    simulator, client = hlr
    iccid = shop.iccids[0]
    if move == "activate":
        cards.pair(shop, iccid, N, shop.subscriber, actor="ana")
        occupy(client, shop.imsis[0])
        return "paired", lambda: cards.activate(shop, iccid, actor="ana", network=client)
    active_card(shop, hlr)
    if move == "suspend":
        forget(client)
        return "active", lambda: cards.suspend(shop, iccid, "arrears", actor="ana", network=client)
    if move == "resume":
        cards.suspend(shop, iccid, "arrears", actor="ana", network=client)
        forget(client)
        return "suspended", lambda: cards.resume(shop, iccid, actor="ana", network=client)
    if move == "report_loss":
        forget(client)
        return "active", lambda: cards.report_loss(shop, iccid, actor="ana", network=client)
    if move == "lift_loss":
        cards.report_loss(shop, iccid, actor="ana", network=client)
        forget(client)
        return "lost", lambda: cards.lift_loss(shop, iccid, actor="ana", network=client)
    if move == "replace":
        cards.report_loss(shop, iccid, actor="ana", network=client)
        occupy(client, shop.imsis[1])
        return "lost", lambda: cards.replace(shop, iccid, shop.iccids[1], RID, actor="ana", network=client)
    assert move == "terminate"
    forget(client)
    return "active", lambda: cards.terminate(shop, iccid, actor="ana", network=client)


#: The card's and its number's state after the refusal.
AFTER = {"activate": ("paired", "assigned"), "suspend": ("active", "active"), "resume": ("suspended", "suspended"),
         "report_loss": ("active", "active"), "lift_loss": ("lost", "active"), "replace": ("lost", "active"),
         "terminate": ("terminated", "quarantined")}


@pytest.mark.parametrize("move", list(AFTER))
def test_a_refused_move_ends_visibly_and_the_card_is_free_again(move, shop, hlr):
    before, make = arrange(move, shop, hlr)
    iccid = shop.iccids[0]
    on_hand = stock.on_hand(shop, location="WH-BJ")

    make()

    card = cards.get_card(shop, iccid)
    assert (card.state, card.network_sync, card.pending_action) == (AFTER[move][0], "failed", None)
    assert numbers.get_number(shop, N).state == AFTER[move][1]
    if move in ("suspend", "report_loss"):
        assert card.state == before and card.suspend_reason is None  # back to the state before the move
    [row] = [r for r in cards.pending(shop) if r["iccid"] == iccid]
    assert row["state"] == "failed" and row["action"] == move
    assert row["last_error"].startswith("3001" if move not in ("activate", "replace") else "3003")
    assert cards.refused_move(shop, iccid)["last_error"] == row["last_error"]
    with shop.read() as conn:
        refusals = audit_query(conn, subject=iccid, action=f"{move}_refused", limit=5)
    assert refusals and refusals[0]["actor"] == "hlr" and "HLR answered 300" in refusals[0]["reason"]
    if move == "replace":
        new = cards.get_card(shop, shop.iccids[1])
        assert (new.state, new.msisdn, new.subscriber_id) == ("in_stock", None, None)
        assert stock.on_hand(shop, location="WH-BJ") == on_hand  # the reserved card is back on the shelf
    if move == "terminate":
        assert subscribers.numbers_of(shop, shop.subscriber) == []
    else:
        assert [n["msisdn"] for n in subscribers.numbers_of(shop, shop.subscriber)] == [N]
    consistent(shop)

    abandoned = cards.abandon(shop, iccid, actor="ana", reason="checked with the network team")
    assert abandoned.state == card.state
    assert abandoned.network_sync == ("none" if card.state in ("paired", "terminated") else "synced")
    assert cards.pending(shop) == [] and cards.refused_move(shop, iccid) is None
    with shop.read() as conn:
        assert audit_query(conn, subject=iccid, action=f"{move}_abandoned", limit=5)[0]["reason"] == \
            "checked with the network team"
    if card.state != "terminated":  # the card no longer "waits for the HLR": the next move is accepted
        cards.reconcile(shop, hlr[1], fix=True, actor="ana")
        if card.state == "paired":
            hlr[1].run_many([rmv_sub(INTRUDER)])
            assert cards.activate(shop, iccid, actor="ana", network=hlr[1]).state == "active"
        else:
            assert cards.terminate(shop, iccid, actor="ana", network=hlr[1]).state == "terminated"
    consistent(shop)


def test_a_refused_suspension_retried_once_the_hlr_has_the_subscriber_again_suspends(shop, hlr):
    before, make = arrange("suspend", shop, hlr)
    make()
    with pytest.raises(Conflict, match="no move the HLR refused"):
        cards.retry(shop, shop.iccids[1], actor="ana")
    cards.reconcile(shop, hlr[1], fix=True, actor="ana")  # puts the subscriber back in the HLR
    card = cards.retry(shop, shop.iccids[0], actor="ana", network=hlr[1])
    assert (card.state, card.network_sync, card.suspend_reason) == ("suspended", "synced", "arrears")
    assert numbers.get_number(shop, N).state == "suspended" and hlr[1].get(N).barred
    assert cards.pending(shop) == []
    with shop.read() as conn:
        states = dict(conn.execute(select(provisioning_outbox.c.req, provisioning_outbox.c.state)).all())
    assert sorted(states.values()) == ["done", "done", "retried"]  # activate, suspend (refused, retried), retry


def test_a_refused_replacement_retried_swaps_and_the_new_card_leaves_stock(shop, hlr):
    _, make = arrange("replace", shop, hlr)
    make()
    assert [r["state"] for r in cards.pending(shop)] == ["failed"]  # the unbar was skipped with it
    hlr[1].run_many([rmv_sub(INTRUDER)])
    on_hand = stock.on_hand(shop, location="WH-BJ")[0]["quantity"]
    new = cards.retry(shop, shop.iccids[0], actor="ana", network=hlr[1])
    assert (new.iccid, new.state, new.msisdn, new.network_sync) == (shop.iccids[1], "active", N, "synced")
    assert cards.get_card(shop, shop.iccids[0]).state == "replaced"
    assert stock.on_hand(shop, location="WH-BJ")[0]["quantity"] == on_hand - 1
    assert cards.reconcile(shop, hlr[1], actor="ana") == []
    consistent(shop)


def test_abandoning_needs_a_reason_and_a_refused_move(shop, hlr):
    _, make = arrange("resume", shop, hlr)
    with pytest.raises(Conflict, match="no move the HLR refused"):
        cards.abandon(shop, shop.iccids[0], actor="ana", reason="x")
    make()
    with pytest.raises(InvalidValue, match="reason"):
        cards.abandon(shop, shop.iccids[0], actor="ana", reason="  ")
    assert cards.get_card(shop, shop.iccids[0]).network_sync == "failed"


def test_reconcile_fix_drops_stale_commands_and_frees_cards_waiting_for_nothing(shop, hlr):
    active_card(shop, hlr)
    active_card(shop, hlr, index=2, msisdn="13800130128")
    with shop.write() as conn:  # what a crash or a hand edit may leave behind
        conn.execute(provisioning_outbox.insert().values(
            req="stale-1", action="suspend", iccid=shop.iccids[0], msisdn=int(N), command="bar", state="pending",
            actor="x", created_at=cards.utc_now()))
        conn.execute(sims.update().where(sims.c.iccid == shop.iccids[2])
                     .values(pending_action="resume", network_sync="pending"))
    cards.sync(shop, hlr[1])
    assert not hlr[1].get(N).barred  # a command no card waits for is never sent
    found = cards.reconcile(shop, hlr[1], actor="ana")
    assert sorted(d.kind for d in found) == ["card_without_command", "stale_command"]
    with pytest.raises(Conflict, match="waits for the HLR"):
        cards.suspend(shop, shop.iccids[2], "arrears", actor="ana")

    cards.reconcile(shop, hlr[1], fix=True, actor="ana")

    assert cards.reconcile(shop, hlr[1], actor="ana") == [] and cards.pending(shop) == []
    freed = cards.get_card(shop, shop.iccids[2])
    assert (freed.state, freed.pending_action, freed.network_sync) == ("active", None, "synced")
    assert cards.suspend(shop, shop.iccids[2], "arrears", actor="ana", network=hlr[1]).state == "suspended"
    with shop.read() as conn:
        assert audit_query(conn, subject="stale-1", action="drop_command", limit=1)
        assert audit_query(conn, subject=shop.iccids[2], action="stop_waiting", limit=1)


def test_the_lifecycle_console_lists_refused_moves_and_retries_or_abandons_them(shop, hlr):
    _, make = arrange("suspend", shop, hlr)
    make()
    console = lifecycle_console(shop, network=hlr[1], actor="tester")
    assert "Refused moves: <b>1</b>" in console.refused_info.value and shop.iccids[0] in console.refused_info.value
    assert "3001" in console.refused_info.value
    console.query.value = shop.iccids[0]
    console.find_button.click()
    assert "Refused by the HLR" in console.detail.value and not console.retry_button.disabled

    console.retry_button.click()  # the HLR still lacks the subscriber: refused again
    assert console.status.kind == "error" and "refused" in console.status.text
    console.abandon_button.click()  # no reason typed
    assert console.status.kind == "error" and cards.get_card(shop, shop.iccids[0]).network_sync == "failed"
    console.abandon_reason.value = "the HLR lost the subscriber; a reconciliation puts it back"
    console.abandon_button.click()

    assert console.status.kind == "ok", console.status.text
    assert cards.get_card(shop, shop.iccids[0]).network_sync == "synced"
    assert "none 无" in console.refused_info.value and console.retry_button.disabled


def test_a_move_the_hlr_refuses_from_the_console_says_so(shop, hlr):
    active_card(shop, hlr)
    forget(hlr[1])
    console = lifecycle_console(shop, network=hlr[1], actor="tester")
    console.query.value = N
    console.find_button.click()
    console.report_loss_button.click()
    console.confirm_button.click()
    assert console.status.kind == "error" and "refused" in console.status.text and "3001" in console.status.text
    assert "Refused by the HLR" in console.detail.value and not console.abandon_button.disabled
