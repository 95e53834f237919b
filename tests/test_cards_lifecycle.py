"""The SIM card lifecycle kept in step with the HLR: pairing, activation, suspension,
loss and replacement, termination; pending commands when the HLR is away; reconciliation."""

from __future__ import annotations

import pytest

from hkops.audit import query as audit_query
from hkops.cards import service as cards
from hkops.cards.batches import import_sim_file
from hkops.errors import Conflict, IllegalTransition
from hkops.network import BackgroundServer, InProcessTransport, ProvisioningClient, Simulator, TcpTransport
from hkops.numbers import service as numbers
from hkops.subscribers import service as subscribers
from test_subscribers import make_rid
from test_vendor_files import card_csv, make_cards

N = "13800130127"
RID = make_rid()


@pytest.fixture
def shop(world, tmp_path, monkeypatch):
    """The world's numbers, 10 China Mobile SIMs in stock and one registered subscriber."""
    monkeypatch.setenv("HKOPS_SECRET_KEY_FILE", str(tmp_path / "secret.key"))
    path = tmp_path / "cards.csv"
    path.write_text(card_csv(make_cards(10)), encoding="utf-8")
    import_sim_file(world, path, carrier="China Mobile", actor="tester", location="WH-BJ")
    person = subscribers.register(world, name="王芳", resident_id=RID, contact="13900000000", actor="tester")
    world.iccids = [c["iccid"] for c in make_cards(10)]
    world.imsis = [c["imsi"] for c in make_cards(10)]
    world.subscriber = person.id
    return world


@pytest.fixture
def hlr():
    simulator = Simulator()
    return simulator, ProvisioningClient(InProcessTransport(simulator), retries=2, backoff=0, timeout=1)


def active_card(shop, hlr, index=0, msisdn=N):
    cards.pair(shop, shop.iccids[index], msisdn, shop.subscriber, actor="ana")
    return cards.activate(shop, shop.iccids[index], actor="ana", network=hlr[1])


def test_pairing_and_activation_make_card_number_and_hlr_agree(shop, hlr):
    card = active_card(shop, hlr)
    assert (card.state, card.network_sync, card.pending_action) == ("active", "synced", None)
    assert numbers.get_number(shop, N).state == "active"
    record = hlr[1].get(N)
    assert record.imsi == shop.imsis[0] and not record.barred
    assert cards.reconcile(shop, hlr[1], actor="ana") == []


def test_activating_while_the_hlr_is_down_leaves_the_card_pending_until_it_is_back(shop, hlr):
    simulator, client = hlr
    cards.pair(shop, shop.iccids[0], N, shop.subscriber, actor="ana")
    down = ProvisioningClient(TcpTransport("127.0.0.1", 1, connect_timeout=0.2), retries=1, backoff=0, timeout=0.5)
    card = cards.activate(shop, shop.iccids[0], actor="ana", network=down)
    assert (card.state, card.network_sync, card.pending_action) == ("paired", "pending", "activate")
    assert numbers.get_number(shop, N).state == "assigned"
    assert [p["action"] for p in cards.pending(shop)] == ["activate"]
    report = cards.sync(shop, client)
    assert report.confirmed == [shop.iccids[0]]
    assert cards.get_card(shop, N).state == "active" and cards.pending(shop) == []


def test_a_loss_report_bars_at_once_and_a_replacement_moves_the_number_to_the_new_sim(shop, hlr):
    active_card(shop, hlr)
    lost = cards.report_loss(shop, shop.iccids[0], actor="ana", network=hlr[1])
    assert lost.state == "lost" and hlr[1].get(N).barred
    new = cards.replace(shop, shop.iccids[0], shop.iccids[1], RID, actor="ana", network=hlr[1])
    assert (new.state, new.msisdn, new.network_sync) == ("active", N, "synced")
    assert new.swapped_at is not None
    old = cards.get_card(shop, shop.iccids[0])
    assert (old.state, old.replaced_by) == ("replaced", shop.iccids[1])
    record = hlr[1].get(N)
    assert record.imsi == shop.imsis[1] and not record.barred
    assert hlr[1].get(imsi=shop.imsis[0]) is None
    with pytest.raises(IllegalTransition, match="final"):
        cards.lift_loss(shop, shop.iccids[0], actor="ana", network=hlr[1])
    assert cards.reconcile(shop, hlr[1], actor="ana") == []


def test_suspension_and_resumption_follow_the_number_and_the_hlr_barring(shop, hlr):
    active_card(shop, hlr)
    card = cards.suspend(shop, shop.iccids[0], "arrears", actor="ana", network=hlr[1])
    assert (card.state, card.suspend_reason) == ("suspended", "arrears")
    assert numbers.get_number(shop, N).state == "suspended" and hlr[1].get(N).barred
    card = cards.resume(shop, shop.iccids[0], actor="ana", network=hlr[1])
    assert card.state == "active" and numbers.get_number(shop, N).state == "active" and not hlr[1].get(N).barred


def test_termination_removes_the_hlr_record_and_quarantines_the_number(shop, hlr):
    active_card(shop, hlr)
    card = cards.terminate(shop, shop.iccids[0], actor="ana", network=hlr[1])
    assert (card.state, card.network_sync) == ("terminated", "none")
    assert numbers.get_number(shop, N).state == "quarantined"
    assert hlr[1].get(N) is None
    assert subscribers.numbers_of(shop, shop.subscriber) == []


def test_illegal_moves_and_wrong_identities_are_refused_with_nothing_changed(shop, hlr):
    cards.pair(shop, shop.iccids[0], N, shop.subscriber, actor="ana")
    with pytest.raises(IllegalTransition, match="needs a card that is active, lost, suspended"):
        cards.replace(shop, shop.iccids[0], shop.iccids[1], RID, actor="ana", network=hlr[1])
    with pytest.raises(Conflict, match="already serves it"):
        cards.pair(shop, shop.iccids[1], N, shop.subscriber, actor="ana")
    cards.activate(shop, shop.iccids[0], actor="ana", network=hlr[1])
    with pytest.raises(Conflict, match="is not the card holder's"):
        cards.replace(shop, shop.iccids[0], shop.iccids[1], make_rid(seq="125"), actor="ana", network=hlr[1])
    assert cards.get_card(shop, shop.iccids[1]).state == "in_stock"
    with pytest.raises(Conflict, match="is of China Unicom"):
        cards.pair(shop, shop.iccids[2], "18607550011", shop.subscriber, actor="ana")


def test_every_move_is_audited_under_the_card(shop, hlr):
    active_card(shop, hlr)
    cards.report_loss(shop, shop.iccids[0], actor="ana", network=hlr[1])
    with shop.read() as conn:
        actions = [r["action"] for r in reversed(audit_query(conn, subject=shop.iccids[0]))]
    assert actions == ["pair", "activate_requested", "activate", "report_loss"]


def test_reconcile_reports_each_difference_and_fix_repairs_the_hlr(shop, hlr):
    simulator, client = hlr
    active_card(shop, hlr, 0, N)
    active_card(shop, hlr, 1, "13800130128")
    cards.suspend(shop, shop.iccids[1], "fraud", actor="ana", network=client)
    client.remove_subscriber(N)
    client.set_barring("13800130128", False)
    client.add_subscriber("13800130129", "460009999999999", "00" * 16, "00" * 16)
    kinds = {(d.msisdn, d.kind) for d in cards.reconcile(shop, client, actor="ana")}
    assert kinds == {(N, "missing_in_hlr"), ("13800130128", "barring_mismatch"), ("13800130129", "unexpected_in_hlr")}
    cards.reconcile(shop, client, fix=True, actor="ana")
    assert cards.reconcile(shop, client, actor="ana") == []
    assert client.get(N).imsi == shop.imsis[0] and client.get("13800130128").barred


def test_activation_through_a_real_tcp_hlr(shop):
    with BackgroundServer(Simulator()) as server:
        client = ProvisioningClient(TcpTransport(*server.address))
        card = active_card(shop, (None, client))
        assert card.state == "active" and client.get(N).imsi == shop.imsis[0]


def test_pairing_and_activating_in_bulk_matches_one_by_one(shop, hlr):
    people = [shop.subscriber] * 3
    requests = [(shop.iccids[n], f"1380013{n:04d}", people[n]) for n in range(3)]
    assert cards.pair_many(shop, requests, actor="ana") == 3
    report = cards.activate_many(shop, shop.iccids[:3], actor="ana", network=hlr[1])
    assert sorted(report.confirmed) == sorted(shop.iccids[:3])
    for n in range(3):
        card = cards.get_card(shop, f"1380013{n:04d}")
        assert (card.iccid, card.state, card.network_sync) == (shop.iccids[n], "active", "synced")
        assert numbers.get_number(shop, f"1380013{n:04d}").state == "active"
    assert cards.reconcile(shop, hlr[1], actor="ana") == []


def test_bulk_pairing_lists_every_problem_and_pairs_none(shop):
    from hkops.errors import InvalidValues

    requests = [(shop.iccids[0], "13800130001", shop.subscriber), (shop.iccids[1], "18607550011", shop.subscriber),
                (shop.iccids[2], "13800130001", shop.subscriber)]
    with pytest.raises(InvalidValues) as refused:
        cards.pair_many(shop, requests, actor="ana")
    assert len(refused.value.problems) == 2
    assert "not a China Mobile number" in str(refused.value.problems[0])
    assert "already being paired" in str(refused.value.problems[1])
    assert cards.get_card(shop, shop.iccids[0]).state == "in_stock"
    assert numbers.get_number(shop, "13800130001").state == "available"


def test_a_sixth_number_for_one_person_is_refused_in_bulk_too(shop):
    requests = [(shop.iccids[n], f"1380013{n:04d}", shop.subscriber) for n in range(6)]
    with pytest.raises(Conflict, match="一证五号"):
        cards.pair_many(shop, requests, actor="ana")
    assert cards.get_card(shop, shop.iccids[0]).state == "in_stock"


def test_usage_is_generated_for_the_inventory_cards_and_refused_for_lost_ones(shop, hlr, tmp_path):
    from datetime import date, timedelta

    import pandas as pd

    from hkops.network.usage import generate_usage

    active_card(shop, hlr, 0, N)
    active_card(shop, hlr, 1, "13800130128")
    cards.report_loss(shop, shop.iccids[1], actor="ana", network=hlr[1])
    frame = cards.network_cards(shop)
    assert sorted(frame["state"]) == ["active", "lost"] and set(frame["province"]) == {"北京市"}
    tomorrow = date.today() + timedelta(days=1)  # after the activations
    generate_usage(frame, start=tomorrow, days=30, seed=1, out_dir=tmp_path)
    records = pd.read_parquet(tmp_path / "records")
    lost = records[records["msisdn"] == 13800130128]
    assert len(lost) > 0 and lost["refused"].all() and (lost["charge_fen"] == 0).all()
    assert not records[records["msisdn"] == int(N)]["refused"].any()
