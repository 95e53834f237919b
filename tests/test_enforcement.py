"""Access control in the service layer (issue 9, item 2): every use case that writes checks the
acting principal's permission before it writes, a refusal changes nothing and is audited in a
transaction of its own, agent users act only for their own subtree of the agent tree, and a
full resident ID is revealed only to a role with ``pii.read``, with a reason, audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from distribution_world import (  # noqa: F401  (distribution is a fixture)
    PLAN, WAREHOUSE, distribution, place_order, rid,
)
from hkops.agents import service as agents
from hkops.audit import audit_log
from hkops.cards.batches import import_sim_file
from hkops.catalogue import service as catalogue
from hkops.errors import InvalidValue
from hkops.numbers import service as numbers
from hkops.orders import service as orders
from hkops.payments import service as payments
from hkops.procurement import service as procurement
from hkops.security import access, users
from hkops.stock import service as stock
from hkops.subscribers import service as subscribers
from strategies import hkops_cli, snapshot  # noqa: F401  (hkops_cli is a fixture)
from test_vendor_files import card_csv, make_cards

ROLES = access.load_roles()
FREE_NUMBER = "13800138888"


def principal(role: str, *, agent: str | None = None, extra: tuple[str, ...] = ()) -> access.Principal:
    """A logged-in user holding ``role`` (and ``extra`` permissions)."""
    if role == "agent" and agent is None:
        agent = "A1"
    return access.Principal(f"{role}-user", roles=[role], permissions=ROLES[role] | set(extra), agent=agent)


def denials(db) -> list[dict]:
    with db.read() as conn:
        return [dict(r) for r in conn.execute(
            select(audit_log).where(audit_log.c.entity == "access").order_by(audit_log.c.id)).mappings()]


def without_audit(rows: dict) -> dict:
    """Every table but the audit trail; a token's last_seen left out (using a login is not a change)."""
    rows = {table: values for table, values in rows.items() if table != "audit_log"}
    rows["user_tokens"] = [row[:-1] for row in rows["user_tokens"]]
    return rows


@pytest.fixture
def shop(distribution, tmp_path):
    """The distribution world with an approved, half-paid direct order and a subscriber."""
    db = distribution.db
    order = place_order(db, 1)
    orders.pay_order(db, order.number, 2_000, method="wechat", reference="wx-shop", actor="desk")
    person = subscribers.register(db, name="张三", resident_id=rid(2), contact="13900000001", actor="desk")
    distribution.order = order.number
    distribution.subscriber = person.id
    distribution.folder = tmp_path
    return distribution


def _import_cards(shop, actor):
    path = shop.folder / "more-cards.csv"
    path.write_text(card_csv(make_cards(2, start=900)), encoding="utf-8")
    return import_sim_file(shop.db, path, carrier="China Mobile", actor=actor, location=WAREHOUSE)


#: A representative write of every folder, and the permission it needs.
USE_CASES = [
    ("numbers.write", lambda s, a: numbers.reserve(s.db, FREE_NUMBER, "H1", actor=a)),
    ("cards.write", _import_cards),
    ("subscribers.write", lambda s, a: subscribers.register(s.db, name="李四", resident_id=rid(3),
                                                            contact="13900000002", actor=a)),
    ("pii.read", lambda s, a: subscribers.reveal_resident_id(s.db, s.subscriber, actor=a, reason="identity check")),
    ("catalogue.write", lambda s, a: catalogue.set_price(s.db, PLAN, 1, 6_100, actor=a)),
    ("procurement.write", lambda s, a: procurement.add_vendor(s.db, "V9", "Vendor nine", actor=a)),
    ("stock.write", lambda s, a: stock.transfer(s.db, WAREHOUSE, "AG-A1", iccids=s.warehouse_iccids[:1], actor=a)),
    ("agents.write", lambda s, a: agents.add_agent(s.db, "B9", "Agent B9", actor=a)),
    ("orders.write", lambda s, a: place_order(s.db, 4, channel="A3", actor=a)),
    ("payments.write", lambda s, a: orders.pay_order(s.db, s.order, 1_000, method="alipay", reference="ali-1",
                                                     actor=a)),
    ("refunds.write", lambda s, a: payments.refund(s.db, s.order, 500, method="wechat", reference="wx-back",
                                                   actor=a)),
]


def test_every_folder_is_in_the_table_and_every_role_is_tried():
    assert {p.split(".")[0] for p, _ in USE_CASES} >= {
        "numbers", "cards", "subscribers", "pii", "catalogue", "procurement", "stock", "agents", "orders",
        "payments", "refunds"}
    assert {"admin", "ops", "warehouse", "sales", "finance", "analyst", "agent", "auditor"} <= set(ROLES)


@pytest.mark.parametrize("role", sorted(ROLES))
def test_a_write_is_allowed_exactly_when_the_role_grants_its_permission(shop, role):
    db = shop.db
    actor = principal(role)
    for permission, use_case in USE_CASES:
        if actor.can(permission):
            use_case(shop, actor)  # no AccessDenied, and the write goes through
            continue
        before, audited = snapshot(db), len(denials(db))
        with pytest.raises(access.AccessDenied) as refused:
            use_case(shop, actor)
        message = str(refused.value)
        assert message.startswith(f"{actor.name} may not ") and repr(permission) in message, message
        assert without_audit(snapshot(db)) == without_audit(before), f"{role} / {permission} changed something"
        new = denials(db)[audited:]
        assert [(r["actor"], r["subject"], r["action"], r["reason"]) for r in new] == [
            (actor.name, actor.name, "denied", message)], f"{role} / {permission}"


def test_an_analyst_cannot_move_anything(shop):
    analyst = principal("analyst")
    for _, use_case in USE_CASES:
        with pytest.raises(access.AccessDenied):
            use_case(shop, analyst)
    assert len(denials(shop.db)) == len(USE_CASES)
    assert numbers.get_number(shop.db, FREE_NUMBER).state.value == "available"


def test_a_sales_clerk_takes_payments_but_cannot_refund_nor_cancel_a_paid_order(shop):
    db, clerk = shop.db, principal("sales")
    orders.pay_order(db, shop.order, 1_000, method="alipay", reference="ali-2", actor=clerk)
    before = snapshot(db)
    with pytest.raises(access.AccessDenied, match=r"sales-user may not refund order .*'refunds.write'"):
        payments.refund(db, shop.order, 500, method="wechat", reference="wx-back", actor=clerk)
    with pytest.raises(access.AccessDenied, match=r"may not cancel order .*which refunds ¥30.00.*'refunds.write'"):
        orders.cancel_order(db, shop.order, actor=clerk, reason="customer changed her mind")
    assert without_audit(snapshot(db)) == without_audit(before)
    assert [r["action"] for r in denials(db)] == ["denied", "denied"]
    unpaid = place_order(db, 5, actor=clerk)
    assert orders.cancel_order(db, unpaid.number, actor=clerk, reason="typo").state == "cancelled"
    finance = principal("finance", extra=("orders.write",))
    assert orders.cancel_order(db, shop.order, actor=finance, reason="customer changed her mind").state == "cancelled"


def test_a_warehouse_keeper_cannot_release_numbers(shop):
    db = shop.db
    numbers.reserve(db, FREE_NUMBER, "H1", actor="desk")
    before = snapshot(db)
    with pytest.raises(access.AccessDenied, match=f"warehouse-user may not release number {FREE_NUMBER}: "
                                                  r".*'numbers.write'"):
        numbers.release(db, FREE_NUMBER, actor=principal("warehouse"))
    assert without_audit(snapshot(db)) == without_audit(before)
    assert numbers.get_number(db, FREE_NUMBER).state.value == "reserved"
    assert numbers.release(db, FREE_NUMBER, actor=principal("ops")).to_state == "available"


def test_an_agent_sells_only_through_its_own_subtree(shop):
    db = shop.db
    agents.add_agent(db, "B1", "Agent B1", actor="desk")  # another branch of the tree
    a2 = principal("agent", agent="A2")
    assert place_order(db, 6, channel="A3", actor=a2).channel == "A3"  # below A2
    assert place_order(db, 7, channel="A2", actor=a2).channel == "A2"  # itself
    for channel, location in (("B1", None), ("A1", None), ("direct", None), ("A3", "AG-B1"), ("A3", WAREHOUSE)):
        before = snapshot(db)
        extra = {"location": location} if location else {}
        with pytest.raises(access.AccessDenied, match=r"agent-user may not place an order: .* outside the "
                                                      r"subtree of agent A2"):
            place_order(db, 8, channel=channel, actor=a2, **extra)
        assert without_audit(snapshot(db)) == without_audit(before), (channel, location)
    assert len(denials(db)) == 5


def test_an_agent_acts_only_on_orders_sold_in_its_own_subtree(shop):
    db = shop.db
    agents.add_agent(db, "B1", "Agent B1", actor="desk")
    theirs = place_order(db, 9, channel="B1", actor="desk")
    a2 = principal("agent", agent="A2")
    for number in (shop.order, theirs.number):  # a direct order, another branch's order
        before = snapshot(db)
        with pytest.raises(access.AccessDenied, match=f"agent-user may not cancel order {number}: agent "
                                                      "(direct|B1) is outside the subtree of agent A2"):
            orders.cancel_order(db, number, actor=a2, reason="not mine")
        with pytest.raises(access.AccessDenied, match="outside the subtree of agent A2"):
            orders.ship_order(db, number, courier="SF", tracking_no="SF-1", actor=a2)
        assert without_audit(snapshot(db)) == without_audit(before)
    mine = place_order(db, 10, channel="A3", actor="desk")
    assert orders.cancel_order(db, mine.number, actor=a2, reason="customer left").state == "cancelled"
    assert len(denials(db)) == 4


def test_an_agent_moves_stock_only_out_of_its_own_locations(shop):
    db = shop.db
    agents.add_agent(db, "B1", "Agent B1", actor="desk")
    stock.transfer(db, WAREHOUSE, "AG-B1", iccids=shop.warehouse_iccids[:1], actor="desk")
    # An operator's own role that lets agents move stock: still only their own.
    a2 = principal("agent", agent="A2", extra=("stock.write",))
    moved = stock.transfer(db, "AG-A3", "AG-A2", iccids=shop.agent_iccids[:1], actor=a2)
    assert moved.count == 1
    for source, iccid in (("AG-B1", shop.warehouse_iccids[0]), (WAREHOUSE, shop.warehouse_iccids[1]),
                          ("AG-A1", shop.agent_iccids[1])):
        before = snapshot(db)
        with pytest.raises(access.AccessDenied, match=f"transfer stock from {source}: location {source} is "
                                                      "outside the subtree of agent A2"):
            stock.transfer(db, source, "AG-A2", iccids=[iccid], actor=a2)
        assert without_audit(snapshot(db)) == without_audit(before)
    with pytest.raises(access.AccessDenied, match="scrap stock at AG-B1"):
        stock.scrap(db, [shop.warehouse_iccids[0]], "AG-B1", actor=a2, reason="broken")
    assert len(denials(db)) == 4


def test_a_full_resident_id_needs_pii_read_and_a_reason_and_each_reveal_is_audited(shop):
    db = shop.db
    for role in sorted(r for r, granted in ROLES.items() if "pii.read" not in granted):
        with pytest.raises(access.AccessDenied, match="'pii.read'"):
            subscribers.reveal_resident_id(db, shop.subscriber, actor=principal(role), reason="curious")
    admin = principal("admin")
    with pytest.raises(InvalidValue, match="reason"):
        subscribers.reveal_resident_id(db, shop.subscriber, actor=admin, reason="  ")
    secret = subscribers.reveal_resident_id(db, shop.subscriber, actor=admin, reason="police request 42")
    assert secret.reveal() == rid(2)
    with db.read() as conn:
        reveals = conn.execute(select(audit_log.c.actor, audit_log.c.reason).where(
            audit_log.c.action == "reveal_id")).all()
    assert [tuple(r) for r in reveals] == [("admin-user", "police request 42")]


# ---------------------------------------------------------------- through the CLI


@pytest.fixture
def logged_in(shop, hkops_cli, monkeypatch, tmp_path):
    """``run(user, *args)``: hkops as ``user`` (a warehouse keeper ``wendy``, or ``root``) with an API token."""
    db = shop.db
    monkeypatch.setenv("HKOPS_SESSION_FILE", str(tmp_path / "config" / "session.json"))
    users.add_user(db, "root", "admin", actor="installer", password="correct horse battery")
    users.add_user(db, "wendy", "warehouse", actor="root", password="correct horse battery")
    tokens = {name: users.issue_token(db, name, actor="root")[0] for name in ("root", "wendy")}

    def run(user, *args):
        monkeypatch.setenv("HKOPS_TOKEN", tokens[user])
        return hkops_cli(db, *args)

    return run


def test_the_cli_refuses_a_user_without_the_permission_with_one_line_and_exit_2(shop, logged_in):
    db = shop.db
    numbers.reserve(db, FREE_NUMBER, "H1", actor="desk")
    before = snapshot(db)
    status, out, err = logged_in("wendy", "numbers", "release", FREE_NUMBER, "--reason", "not needed")
    assert status == 2, err
    assert err == (f"hkops: error: wendy may not release number {FREE_NUMBER}: it needs the permission "
                   "'numbers.write', which no role of 'wendy' grants\n")
    assert without_audit(snapshot(db)) == without_audit(before)
    assert [(r["subject"], r["action"]) for r in denials(db)] == [("wendy", "denied")]
    assert logged_in("root", "numbers", "release", FREE_NUMBER, "--reason", "not needed")[0] == 0


def test_a_refusal_inside_a_transaction_is_audited_by_the_cli(shop, logged_in):
    status, _, err = logged_in("wendy", "settings", "set", "quarantine_days", "30")
    assert status == 2 and "wendy may not set quarantine_days" in err and "'settings.write'" in err, err
    assert [(r["subject"], r["reason"]) for r in denials(shop.db)] == [("wendy", err.removeprefix("hkops: error: ")
                                                                         .strip())]


# ---------------------------------------------------------------- through a console


def test_a_console_shows_a_refusal_as_a_readable_message_and_it_is_audited(shop):
    from hkops.ui.allocation import allocation_console

    db = shop.db
    console = allocation_console(db, actor=principal("analyst"))
    console.pattern.value = "*8888"
    console.search_button.click()
    msisdn = console.hits[0].msisdn
    console.selected.value = msisdn
    console.holder.value = "C000222"
    console.reserve_button.click()
    console.confirm_button.click()
    assert console.status.kind == "error"
    assert console.status.text == (f"analyst-user may not reserve number {msisdn}: it needs the permission "
                                   "'numbers.write', which no role of 'analyst-user' grants")
    assert numbers.get_number(db, msisdn).state.value == "available"
    assert [(r["subject"], r["reason"]) for r in denials(db)] == [("analyst-user", console.status.text)]


def test_a_console_audits_a_refusal_the_use_case_could_not_audit(db):
    from hkops.ui._common import GuardedConsole, StatusLine

    class Probe(GuardedConsole):
        def __init__(self, store):
            self.store, self.status = store, StatusLine()

        def _buttons(self):
            return []

    probe = Probe(db)
    probe._guard(lambda: access.require(principal("analyst"), "settings.write", "set quarantine_days"))
    assert probe.status.kind == "error" and "analyst-user may not set quarantine_days" in probe.status.text
    assert [(r["subject"], r["reason"]) for r in denials(db)] == [("analyst-user", probe.status.text)]


@pytest.mark.parametrize("command, what, permission", [
    (("keys", "rotate"), "re-encrypt the stored secrets", "keys.admin"),
    (("keys", "new"), "add a new key", "keys.admin"),
    (("usage", "generate", "--days", "1", "--synthetic", "--cards", "5"), "generate usage records", "usage.write"),
    (("hlr", "sync", "--hlr", "127.0.0.1:9"), "sync HLR commands", "hlr.operate"),
    (("hlr", "abandon", "89860000000000000019", "--reason", "x"), "abandon the HLR move of card", "hlr.operate"),
    (("carriers", "add", "China Broadnet"), "configure carriers China Broadnet", "settings.write"),
    (("check", "--fix"), "repair the database (check --fix)", "settings.write"),
])
def test_operator_commands_refuse_a_warehouse_keeper(shop, logged_in, command, what, permission, tmp_path):
    before = snapshot(shop.db)
    status, out, err = logged_in("wendy", *command, *(("--out", tmp_path / "usage") if "usage" in command else ()))
    assert status == 2, err
    assert err.startswith(f"hkops: error: wendy may not {what}") and f"'{permission}'" in err, err
    assert without_audit(snapshot(shop.db)) == without_audit(before)
    assert [(r["subject"], r["action"]) for r in denials(shop.db)] == [("wendy", "denied")]
    assert not (tmp_path / "usage").exists()
