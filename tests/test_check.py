"""``hkops check``: the whole-world audit finds each kind of inconsistency (made here by
direct SQL, as a bug or a hand edit would), names the identifiers involved, repairs what
is safe to repair and leaves the rest alone; and the demo world passes it."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select, update

from hkops import check, config, demo
from hkops.audit import audit_log
from hkops.cards import service as cards
from hkops.cards.tables import provisioning_outbox, sims
from hkops.cli import main
from hkops.errors import Conflict
from hkops.network import InProcessTransport, ProvisioningClient, Simulator, connect
from hkops.network import BarringReason, add_sub, mod_odb, rmv_sub
from hkops.network.registry import folder_for
from hkops.network.simulator import BackgroundServer
from hkops.security import users
from hkops.numbers.tables import numbers
from hkops.orders.tables import orders
from hkops.payments.tables import payments
from hkops.stock.tables import stock_moves
from hkops.store.engine import Store
from hkops.store.tables import metadata
from hkops.subscribers.tables import subscriber_numbers
from hkops.timeutil import utc_now


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """One small demo world (database and HLR registry), built once; each test takes a copy."""
    folder = tmp_path_factory.mktemp("check")
    patch = pytest.MonkeyPatch()
    patch.setenv("HKOPS_SECRET_KEY_FILE", str(folder / "secret.key"))
    store = Store(f"sqlite:///{folder / 'demo.db'}")
    demo.build(store, per_province=1, cards=200, orders=150, hlr_dir=folder / "hlr")
    (folder / "token").write_text(users.issue_token(store, "admin", actor="tester")[0])
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    store.dispose()
    yield folder
    patch.undo()


@pytest.fixture
def world(template, tmp_path, monkeypatch):
    shutil.copy(template / "demo.db", tmp_path / "demo.db")
    shutil.copytree(template / "hlr", tmp_path / "hlr")
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    monkeypatch.setenv("HKOPS_SECRET_KEY_FILE", str(template / "secret.key"))
    monkeypatch.setenv("HKOPS_DATABASE_URL", url)
    monkeypatch.setenv("HKOPS_HLR", "127.0.0.1:1")  # nothing answers there
    monkeypatch.setenv("HKOPS_TOKEN", (template / "token").read_text())  # the demo has users: act as its admin
    monkeypatch.setattr(config, "DATA_DIR", tmp_path / "data")
    store = Store(url)
    store.hlr_dir = tmp_path / "hlr"
    yield store
    store.dispose()


def run_check(capsys, *args) -> tuple[int, dict]:
    with pytest.raises(SystemExit) as done:
        main(["check", "--json", *args])
    return done.value.code, json.loads(capsys.readouterr().out)


def _one(conn, query):
    return conn.execute(query.limit(1)).one()


def _active_card(conn):
    return _one(conn, select(sims.c.iccid, sims.c.msisdn, sims.c.subscriber_id).where(sims.c.state == "active")
                .order_by(sims.c.iccid))


def _number_in_service_without_sim(conn):
    msisdn = conn.execute(select(numbers.c.msisdn).where(numbers.c.state == "available").limit(1)).scalar()
    conn.execute(update(numbers).where(numbers.c.msisdn == msisdn).values(state="active", holder="S1"))
    return "number_without_sim", {"msisdn": str(msisdn)}


def _number_without_subscriber(conn):
    card = _active_card(conn)
    conn.execute(update(subscriber_numbers).where(subscriber_numbers.c.msisdn == card.msisdn)
                 .values(until=utc_now()))
    return "number_without_subscriber", {"msisdn": str(card.msisdn)}


def _drop_guard(conn, index: str) -> None:
    """The database refuses this violation since migration 0006; check still finds it where the index
    was dropped (a restored old dump, a hand-made fix). Only for the per-test SQLite copies."""
    assert conn.dialect.name == "sqlite"
    conn.exec_driver_sql(f"DROP INDEX {index}")


def _two_sims(conn):
    _drop_guard(conn, "uq_sims_live_msisdn")
    card = _active_card(conn)
    spare = conn.execute(select(sims.c.iccid).where(sims.c.state == "in_stock").limit(1)).scalar()
    conn.execute(update(sims).where(sims.c.iccid == spare).values(state="paired", msisdn=card.msisdn,
                                                                  subscriber_id=card.subscriber_id))
    return "number_with_several_sims", {"msisdn": str(card.msisdn), "iccids": sorted([card.iccid, spare])}


def _two_subscribers(conn):
    _drop_guard(conn, "uq_subscriber_numbers_live_msisdn")
    card = _active_card(conn)
    other = conn.execute(select(subscriber_numbers.c.subscriber_id)
                         .where(subscriber_numbers.c.subscriber_id != card.subscriber_id).limit(1)).scalar()
    conn.execute(insert(subscriber_numbers).values(subscriber_id=other, msisdn=card.msisdn, carrier="China Mobile",
                                                   since=utc_now()))
    return "number_with_several_subscribers", {"msisdn": str(card.msisdn),
                                               "subscribers": sorted([card.subscriber_id, other])}


def _sim_number_quarantined(conn):
    card = _active_card(conn)
    conn.execute(update(numbers).where(numbers.c.msisdn == card.msisdn).values(state="quarantined", holder=None))
    return "sim_number_state", {"iccid": card.iccid, "msisdn": str(card.msisdn), "number_state": "quarantined"}


def _location_drift(conn):
    iccid = conn.execute(select(sims.c.iccid).where(sims.c.state == "in_stock", sims.c.location == "WH-BJ")
                         .order_by(sims.c.iccid).limit(1)).scalar()
    conn.execute(update(sims).where(sims.c.iccid == iccid).values(location="WH-GZ"))
    return "card_location_differs_from_ledger", {"iccid": iccid, "location": "WH-GZ", "ledger": "WH-BJ"}


def _ledger_broken(conn):
    iccid = conn.execute(select(sims.c.iccid).where(sims.c.state == "in_stock", sims.c.location == "WH-BJ")
                         .order_by(sims.c.iccid).limit(1)).scalar()
    conn.execute(insert(stock_moves).values(iccid=iccid, from_location="WH-GZ", to_location="WH-BJ", kind="transfer",
                                            document="TR999999", actor="x", at=utc_now()))
    return "serial_ledger_broken", {"iccid": iccid, "balances": {"WH-BJ": 2, "WH-GZ": -1}}


def _ledger_unknown_card(conn):
    conn.execute(insert(stock_moves).values(iccid="89860000000000000001", from_location="VENDOR",
                                            to_location="WH-BJ", kind="receipt", document="PO999999", actor="x",
                                            at=utc_now()))
    return "ledger_card_unknown", {"iccid": "89860000000000000001"}


def _number_in_two_open_orders(conn):
    _drop_guard(conn, "uq_orders_open_msisdn")
    first, second = conn.execute(select(orders.c.number, orders.c.msisdn).where(
        orders.c.state.in_(["allocated", "shipped", "delivered"]), orders.c.msisdn.is_not(None))
        .order_by(orders.c.number).limit(2)).all()
    conn.execute(update(orders).where(orders.c.number == second.number).values(msisdn=first.msisdn))
    return "number_in_several_open_orders", {"msisdn": str(first.msisdn), "orders": [first.number, second.number]}


def _sixth_number(conn):
    person = conn.execute(select(subscriber_numbers.c.subscriber_id).where(subscriber_numbers.c.until.is_(None))
                          .group_by(subscriber_numbers.c.subscriber_id).having(func.count() == 5).limit(1)).scalar()
    free = conn.execute(select(numbers.c.msisdn).where(numbers.c.state == "available",
                                                       numbers.c.msisdn.between(13400000000, 13999999999))
                        .limit(1)).scalar()
    conn.execute(insert(subscriber_numbers).values(subscriber_id=person, msisdn=free, carrier="China Mobile",
                                                   since=utc_now()))
    return "more_than_five_numbers", {"subscriber": person, "carrier": "China Mobile", "count": 6}


def _underpaid(conn):
    order = _one(conn, select(orders.c.id, orders.c.number, orders.c.total_fen).where(orders.c.state == "completed")
                 .order_by(orders.c.number))
    conn.execute(update(payments).where(payments.c.order_id == order.id, payments.c.kind == "collection")
                 .values(amount_fen=payments.c.amount_fen - 100))
    return "order_underpaid", {"order": order.number, "net_fen": order.total_fen - 100}


def _waits_for_nothing(conn):
    card = _active_card(conn)
    conn.execute(update(sims).where(sims.c.iccid == card.iccid).values(network_sync="pending",
                                                                       pending_action="resume"))
    return "sim_waits_for_no_command", {"iccid": card.iccid, "pending_action": "resume"}


INJECTIONS = [_number_in_service_without_sim, _number_without_subscriber, _two_sims, _two_subscribers,
              _sim_number_quarantined, _location_drift, _ledger_broken, _ledger_unknown_card,
              _number_in_two_open_orders, _sixth_number, _underpaid, _waits_for_nothing]


def test_the_small_demo_world_is_clean_and_the_hlr_is_compared_with_its_registry(world, capsys):
    status, report = run_check(capsys, "--registry", str(world.hlr_dir))
    assert (status, report["violations"]) == (0, [])
    assert "hlr_registry" in report["checked"] and report["hlr"] == f"registry {world.hlr_dir}"


@pytest.mark.parametrize("inject", INJECTIONS, ids=lambda f: f.__name__.strip("_"))
def test_check_names_each_kind_of_violation_with_its_identifiers(world, capsys, inject):
    with world.write() as conn:
        kind, ids = inject(conn)
    status, report = run_check(capsys, "--registry", str(world.hlr_dir))
    assert status == 1
    mine = [v for v in report["violations"] if v["kind"] == kind]
    assert mine, report["violations"]
    assert any(all(v.get(k) == value for k, value in ids.items()) for v in mine), mine


def test_check_finds_a_number_the_hlr_lost(world, capsys):
    with world.read() as conn:
        card = _active_card(conn)
    with Simulator(world.hlr_dir) as simulator:
        ProvisioningClient(InProcessTransport(simulator)).call(rmv_sub(str(card.msisdn)))
    status, report = run_check(capsys, "--registry", str(world.hlr_dir))
    assert status == 1
    assert [(v["kind"], v["msisdn"], v["iccid"]) for v in report["violations"]] == \
        [("hlr_missing", str(card.msisdn), card.iccid)]


def test_check_finds_the_hlr_barring_a_number_in_service_and_serving_one_nobody_has(world, capsys):
    with world.read() as conn:
        card = _active_card(conn)
        free = conn.execute(select(numbers.c.msisdn).where(numbers.c.state == "available").limit(1)).scalar()
    with Simulator(world.hlr_dir) as simulator:
        ProvisioningClient(InProcessTransport(simulator)).run_many([
            mod_odb(str(card.msisdn), True, BarringReason.FRAUD),
            add_sub(str(free), "460009999999999", "0" * 32, "1" * 32)])
    status, report = run_check(capsys, "--registry", str(world.hlr_dir))
    assert status == 1
    assert sorted((v["kind"], v["msisdn"]) for v in report["violations"]) == \
        [("hlr_barring_differs", str(card.msisdn)), ("hlr_unexpected", str(free))]


def test_fix_repairs_a_drifted_location_through_the_stock_ledger_audited(world, capsys):
    with world.write() as conn:
        _, ids = _location_drift(conn)
    status, report = run_check(capsys, "--fix", "--skip", "hlr_registry")
    assert status == 0 and report["violations"] == []
    assert {v["kind"] for v in report["fixed"]} == {"card_location_differs_from_ledger", "on_hand_differs_from_cards"}
    with world.read() as conn:
        assert conn.execute(select(sims.c.location).where(sims.c.iccid == ids["iccid"])).scalar() == "WH-BJ"
        audited = conn.execute(select(audit_log.c.action, audit_log.c.from_state, audit_log.c.to_state)
                               .where(audit_log.c.subject == ids["iccid"]).order_by(audit_log.c.id.desc())).first()
    assert tuple(audited) == ("relocate", "WH-GZ", "WH-BJ")


def test_fix_leaves_alone_what_it_cannot_fix_safely(world, capsys):
    with world.write() as conn:
        _, ids = _number_in_service_without_sim(conn)
        _location_drift(conn)
    status, report = run_check(capsys, "--fix", "--registry", str(world.hlr_dir))
    assert status == 1
    assert {(v["kind"], v["msisdn"]) for v in report["left_alone"]} == \
        {("number_without_sim", ids["msisdn"]), ("number_without_subscriber", ids["msisdn"])}
    assert "card_location_differs_from_ledger" in {v["kind"] for v in report["fixed"]}
    with world.read() as conn:
        assert conn.execute(select(numbers.c.state).where(numbers.c.msisdn == int(ids["msisdn"]))).scalar() == "active"
    with pytest.raises(SystemExit) as done:
        main(["check", "--fix", "--registry", str(world.hlr_dir)])
    assert done.value.code == 1
    assert "left alone: not safe to fix" in capsys.readouterr().out


def test_fix_sends_stale_hlr_commands_and_repairs_the_registry_through_a_running_hlr(world, capsys):
    with world.read() as conn:
        lost_in_hlr, suspended = conn.execute(select(sims.c.iccid, sims.c.msisdn).where(sims.c.state == "active")
                                              .order_by(sims.c.iccid).limit(2)).all()
    cards.suspend(world, suspended.iccid, "arrears", actor="clerk")  # no HLR reachable: the command waits
    with world.write() as conn:
        conn.execute(update(provisioning_outbox).where(provisioning_outbox.c.iccid == suspended.iccid)
                     .values(created_at=utc_now() - timedelta(hours=3)))
    with BackgroundServer(Simulator(world.hlr_dir)) as server:
        address = "%s:%d" % server.address
        with connect(address) as hlr:
            hlr.call(rmv_sub(str(lost_in_hlr.msisdn)))
        status, report = run_check(capsys, "--hlr", address)
        assert status == 1
        assert {(v["kind"], v["iccid"]) for v in report["violations"]} == \
            {("hlr_missing", lost_in_hlr.iccid), ("hlr_command_stale", suspended.iccid)}
        status, report = run_check(capsys, "--fix", "--hlr", address)
        assert (status, report["violations"]) == (0, [])
        with connect(address) as hlr:
            assert hlr.get(str(lost_in_hlr.msisdn)) is not None
            assert hlr.get(str(suspended.msisdn)).barred
    assert cards.pending(world) == []


def test_without_an_hlr_or_a_registry_the_hlr_is_not_checked(world, capsys):
    status, report = run_check(capsys)
    assert status == 0
    assert "hlr_registry" in report["not_checked"] and "hlr_registry" not in report["checked"]
    assert report["hlr"] is None


@pytest.mark.parametrize("args, field", [(["--skip", "no_such_check"], "skip"),
                                         (["--registry", "/no/such/folder"], "registry"),
                                         (["--hlr", "nowhere"], "hlr")])
def test_bad_input_is_refused_with_exit_2(world, capsys, args, field):
    with pytest.raises(SystemExit) as done:
        main(["check", *args])
    assert done.value.code == 2
    assert field in capsys.readouterr().err


def test_check_run_skips_and_lists_its_checks(world):
    report = check.run(world, skip=("order_money",))
    assert report.clean and "order_money" not in report.checked
    assert [c.name for c in check.CHECKS][:2] == ["numbers_in_service", "live_sims"]


# ---------------------------------------------------------------- demo worlds and their registries


def _demo(capsys, *args) -> int:
    with pytest.raises(SystemExit) as done:
        main(["demo", "--blocks-per-province", "1", "--orders", "120", "--cards", "150", *args])
    capsys.readouterr()
    return done.value.code


def test_two_demo_worlds_in_one_checkout_each_have_their_own_registry_and_pass_check(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(config, "DATA_DIR", tmp_path / "data")
    monkeypatch.setenv("HKOPS_SECRET_KEY_FILE", str(tmp_path / "secret.key"))
    monkeypatch.setenv("HKOPS_HLR", "127.0.0.1:1")
    folders = []
    for seed in (7, 5):
        url = f"sqlite:///{tmp_path / f'seed{seed}.db'}"
        monkeypatch.setenv("HKOPS_DATABASE_URL", url)
        assert _demo(capsys, "--seed", str(seed)) == 0
        _act_as_admin(monkeypatch, url)
        status, report = run_check(capsys)  # compared with the database's own registry
        assert (status, report["violations"], report["not_checked"]) == (0, [], {})
        store = Store(url)
        folders.append(folder_for(store))
        with store.read() as conn:
            in_service = conn.execute(select(func.count()).where(numbers.c.state.in_(["active", "suspended"]))).scalar()
            live = conn.execute(select(func.count()).where(sims.c.state.in_(["active", "suspended", "lost"]))).scalar()
        assert in_service == live > 150  # every number in service was sold with a card
        store.dispose()
    assert folders[0] != folders[1] and all(f.parent == tmp_path / "data" / "hlr" and f.is_dir() for f in folders)
    # the first demo wrote its cards' usage into the data folder's empty usage store; the second left it alone
    days = sorted((tmp_path / "data" / "usage" / "records").glob("day=*/part-0.parquet"))
    assert len(days) == demo.USAGE_DAYS
    # --fresh clears the registry the database owns, and builds anew with a new one.
    assert _demo(capsys, "--seed", "5", "--fresh") == 0
    store = Store(f"sqlite:///{tmp_path / 'seed5.db'}")
    assert not folders[1].exists() and folder_for(store).is_dir() and folders[0].is_dir()
    store.dispose()
    _act_as_admin(monkeypatch, f"sqlite:///{tmp_path / 'seed5.db'}")
    assert run_check(capsys)[0] == 0


def _act_as_admin(monkeypatch, url: str) -> None:
    """The demo has users: the CLI acts as its admin through an API token."""
    store = Store(url)
    monkeypatch.setenv("HKOPS_TOKEN", users.issue_token(store, "admin", actor="tester")[0])
    store.dispose()


def test_a_demo_that_fails_leaves_nothing_half_built(tmp_path, monkeypatch):
    monkeypatch.setenv("HKOPS_SECRET_KEY_FILE", str(tmp_path / "secret.key"))
    store = Store(f"sqlite:///{tmp_path / 'demo.db'}")
    placed = []

    def fail_after_ten(n):
        placed.append(n)
        if len(placed) > 10:
            raise RuntimeError("the power went out")

    with pytest.raises(RuntimeError, match="power"):
        demo.build(store, per_province=1, cards=50, orders=40, hlr_dir=tmp_path / "hlr", order_progress=fail_after_ten)
    with store.read() as conn:
        rows = {t.name: conn.execute(select(func.count()).select_from(t)).scalar() for t in metadata.sorted_tables}
    assert len(placed) == 11 and not any(rows.values()), {k: v for k, v in rows.items() if v}
    assert not (tmp_path / "hlr").exists()
    # ...and the same database builds afterwards.
    demo.build(store, per_province=1, cards=50, orders=20, hlr_dir=tmp_path / "hlr")
    assert check.run(store, network=ProvisioningClient(InProcessTransport(Simulator(tmp_path / "hlr")))).clean
    store.dispose()


def test_a_demo_into_a_database_that_holds_numbers_is_refused_and_changes_nothing(world, capsys):
    with world.read() as conn:
        before = conn.execute(select(func.count()).select_from(numbers)).scalar()
    assert _demo(capsys) == 2
    with world.read() as conn:
        assert conn.execute(select(func.count()).select_from(numbers)).scalar() == before
    assert world.hlr_dir.is_dir()


def test_check_runs_on_both_databases(db, tmp_path, monkeypatch):
    """The same checks (grouped queries, CTEs, IS DISTINCT FROM, EXISTS) on SQLite and PostgreSQL."""
    monkeypatch.setenv("HKOPS_SECRET_KEY_FILE", str(tmp_path / "secret.key"))
    demo.build(db, per_province=1, cards=40, orders=30, hlr_dir=tmp_path / "hlr")
    network = ProvisioningClient(InProcessTransport(Simulator(tmp_path / "hlr")))
    report = check.run(db, network=network)
    assert report.violations == [] and len(report.checked) == len(check.CHECKS)
    with db.write() as conn:
        injected = [inject(conn) for inject in (_number_in_service_without_sim, _location_drift,
                                                _sixth_number, _underpaid, _ledger_broken)]
    found = check.run(db, network=network).violations
    for kind, ids in injected:
        assert any(v.kind == kind and all(v.as_dict().get(k) == value for k, value in ids.items()) for v in found), kind
    report = check.run(db, network=network, fix=True, actor="tester")
    assert "card_location_differs_from_ledger" in {v.kind for v in report.fixed}
    assert "number_without_sim" in {v.kind for v in report.violations}


def test_a_demo_refuses_a_registry_that_already_holds_subscribers(world, tmp_path):
    empty_db = Store(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(Conflict, match="already holds"):
        demo.build(empty_db, per_province=1, cards=10, orders=0, hlr_dir=world.hlr_dir)
    with empty_db.read() as conn:
        assert conn.execute(select(func.count()).select_from(numbers)).scalar() == 0
    empty_db.dispose()
    assert world.hlr_dir.is_dir()  # someone else's registry is never removed
