"""1,000 cards activated, suspended, lost and replaced, and terminated through an HLR over
TCP that fails 20% of commands and drops connections: afterwards every card is where it
was asked to go or visibly pending, and after reconciliation the HLR equals inventory."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from hkops.cards import service as cards
from hkops.cards.batches import import_sim_file
from hkops.cards.tables import sims
from hkops.network import BackgroundServer, ProvisioningClient, Simulator, TcpTransport
from hkops.network.simulator import Faults
from hkops.security.crypto import load_keyring
from hkops.subscribers import service as subscribers
from test_subscribers import make_rid
from test_vendor_files import card_csv, make_cards

CARDS = 1_000


def sync_until_quiet(db, client, keyring, rounds: int = 20) -> None:
    for _ in range(rounds):
        cards.sync(db, client, keyring=keyring)
        if not cards.pending(db):
            return


@pytest.mark.slow
def test_a_faulty_hlr_never_leaves_inventory_and_hlr_disagreeing_for_good(world, tmp_path, monkeypatch):
    monkeypatch.setenv("HKOPS_SECRET_KEY_FILE", str(tmp_path / "secret.key"))
    keyring = load_keyring()
    stock = make_cards(CARDS + 100)
    (tmp_path / "cards.csv").write_text(card_csv(stock), encoding="utf-8")
    import_sim_file(world, tmp_path / "cards.csv", carrier="China Mobile", actor="t", keyring=keyring, location="WH-BJ")
    people = [subscribers.register(world, name=f"用户{n}", resident_id=make_rid(seq=f"{100 + n:03d}"),
                                   contact="13900000000", actor="t", keyring=keyring).id for n in range(CARDS // 5)]
    iccids = [c["iccid"] for c in stock]
    with world.write() as conn:
        for n in range(CARDS):
            cards.pair(conn, iccids[n], f"1380013{n:04d}", people[n // 5], actor="t")

    simulator = Simulator(error_rate=0.2, drop_rate=0.1, seed=11)
    with BackgroundServer(simulator) as server:
        client = ProvisioningClient(TcpTransport(*server.address), retries=3, backoff=0.001, max_backoff=0.01,
                                    timeout=2)
        cards.activate_many(world, iccids[:CARDS], actor="t", network=client, keyring=keyring)
        sync_until_quiet(world, client, keyring, rounds=1)
        wanted = {i: "active" for i in iccids[:CARDS]}
        for iccid in iccids[:200]:
            if cards.get_card(world, iccid).state == "active":
                cards.suspend(world, iccid, "arrears", actor="t")
                wanted[iccid] = "suspended"
        for iccid in iccids[200:300]:
            if cards.get_card(world, iccid).state == "active":
                cards.report_loss(world, iccid, actor="t")
                wanted[iccid] = "lost"
        for iccid in iccids[300:400]:
            if cards.get_card(world, iccid).state == "active":
                cards.terminate(world, iccid, actor="t")
                wanted[iccid] = "terminated"
        sync_until_quiet(world, client, keyring, rounds=1)

        with world.read() as conn:
            rows = {r.iccid: r for r in conn.execute(select(sims.c.iccid, sims.c.state, sims.c.pending_action,
                                                            sims.c.network_sync))}
        for iccid, state in wanted.items():
            row = rows[iccid]
            assert row.state == state or row.network_sync == "pending", (iccid, state, row)
        assert any(r.network_sync == "pending" for r in rows.values()), "the faults never bit"

        sync_until_quiet(world, client, keyring)
        for n, iccid in enumerate(iccids[200:300]):
            if cards.get_card(world, iccid).state == "lost":
                cards.replace(world, iccid, iccids[CARDS + n], make_rid(seq=f"{100 + (200 + n) // 5:03d}"), actor="t")
        sync_until_quiet(world, client, keyring)
        for _ in range(5):
            if not cards.reconcile(world, client, fix=True, actor="t", keyring=keyring):
                break
        simulator.faults = Faults()
        assert cards.reconcile(world, client, actor="t", keyring=keyring) == []
        assert cards.pending(world) == []
    with world.read() as conn:
        states = [r.state for r in conn.execute(select(sims.c.state))]
    assert states.count("replaced") > 0 and states.count("terminated") > 0
