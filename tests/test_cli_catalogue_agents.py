"""``hkops catalogue ...`` and ``hkops agents ...``: money in yuan, ``--json`` that is only
JSON, and bad input that exits 2 with one line naming the field and value, changing nothing.

Most commands run in this process (``hkops_cli``); one runs as a real subprocess."""

from __future__ import annotations

import json

from strategies import actions, hkops_cli, snapshot  # noqa: F401
from test_cli import hkops, one_line_refusal, sqlite_only


def setup_catalogue(world, hkops_cli) -> None:
    for args in (
        ("catalogue", "product-add", "CM-NANO", "China Mobile nano", "--carrier", "中国移动", "--form", "nano"),
        ("catalogue", "plan-add", "GOLD58", "Gold 58", "--carrier", "China Mobile", "--monthly-fee", "58",
         "--data-mb", "30720", "--voice", "300", "--sms", "100", "--contract-months", "12", "--first-topup", "100.50",
         "--min-age", "18", "--exclude", "新疆", "--exclude", "Tibet"),
        ("catalogue", "price-set", "GOLD58", "0", "99"),
        ("catalogue", "price-set", "gold58", "2", "80.5"),
    ):
        status, _out, err = hkops_cli(world, *args)
        assert status == 0, err


def test_the_catalogue_is_built_listed_and_quoted_in_yuan(world, hkops_cli):
    setup_catalogue(world, hkops_cli)
    status, out, _ = hkops_cli(world, "catalogue", "list", "--json")
    listed = json.loads(out)
    assert [(p["code"], p["carrier"], p["form_factor"]) for p in listed["products"]] == [
        ("CM-NANO", "China Mobile", "nano")]
    (plan,) = listed["plans"]
    assert (plan["monthly_fee"], plan["monthly_fee_fen"], plan["first_topup"], plan["min_age"]) == (
        "58.00", 5800, "100.50", 18)
    assert plan["excluded_provinces"] == ["Tibet", "Xinjiang"] and plan["prices"] == {"0": "99.00", "2": "80.50"}
    text = hkops_cli(world, "catalogue", "list")[1]
    assert "GOLD58" in text and "level 2 ¥80.50" in text and "not to Tibet, Xinjiang" in text

    status, out, _ = hkops_cli(world, "catalogue", "quote", "GOLD58", "13800138888", "--level", "3", "--json")
    quoted = json.loads(out)
    assert (quoted["price"], quoted["vanity_fee"], quoted["prepay"], quoted["min_monthly"], quoted["total"]) == (
        "80.50", "2888.00", "2000.00", "889.00", "4968.50")
    assert quoted["total_fen"] == 496_850
    text = hkops_cli(world, "catalogue", "quote", "GOLD58", "13800138888")[1]
    assert "vanity fee" in text and "¥2,888.00" in text and "¥4,987.00" in text  # 99 + 2,888 + 2,000 at retail


def test_bad_catalogue_input_exits_2_with_one_line_and_changes_nothing(world, hkops_cli):
    setup_catalogue(world, hkops_cli)
    before = snapshot(world)
    plan = ("catalogue", "plan-add", "SILVER", "Silver", "--carrier", "China Mobile", "--data-mb", "1", "--voice", "1",
            "--sms", "1")
    one_line_refusal(hkops_cli(world, *plan, "--monthly-fee", "-5"), "monthly-fee '-5'", "non-negative")
    one_line_refusal(hkops_cli(world, *plan, "--monthly-fee", "5", "--min-age", "70"), "min_age 70", "max_age 60")
    one_line_refusal(hkops_cli(world, *plan, "--monthly-fee", "5", "--exclude", "Atlantis"),
                     "excluded_province 'Atlantis'")
    one_line_refusal(hkops_cli(world, "catalogue", "product-add", "X", "x", "--carrier", "Vodafone", "--form", "nano"),
                     "carrier 'Vodafone'")
    one_line_refusal(hkops_cli(world, "catalogue", "price-set", "GOLD58", "1", "abc"), "price 'abc'")
    one_line_refusal(hkops_cli(world, "catalogue", "quote", "GOLD58", "18607558888"),
                     "msisdn '18607558888': is a China Unicom number; plan GOLD58 is China Mobile")
    assert snapshot(world) == before


def test_the_agent_tree_from_the_command_line(db, hkops_cli):
    for args in (("NORTH", "华北总代", "--province", "北京", "--contact-name", "李雷", "--contact-phone", "13800138000"),
                 ("BJ", "北京代理", "--parent", "NORTH"), ("BJ-HD", "海淀", "--parent", "BJ", "--price-level", "5"),
                 ("SOUTH", "华南总代")):
        status, out, err = hkops_cli(db, "agents", "add", *args)
        assert status == 0, err
    assert out.startswith("added agent SOUTH")
    status, out, _ = hkops_cli(db, "agents", "list")
    assert out.splitlines()[:3] == [
        "NORTH  华北总代  level 1, price level 1, stock AG-NORTH, Beijing",
        "  BJ  北京代理  level 2, price level 2, stock AG-BJ",
        "    BJ-HD  海淀  level 3, price level 5, stock AG-BJ-HD",
    ]
    shown = json.loads(hkops_cli(db, "agents", "show", "bj-hd", "--json")[1])
    assert [c["code"] for c in shown["chain"]] == ["BJ-HD", "BJ", "NORTH"] and shown["location"] == "AG-BJ-HD"
    assert "chain: NORTH (level 1) > BJ (level 2) > BJ-HD (level 3)" in hkops_cli(db, "agents", "show", "BJ-HD")[1]

    assert hkops_cli(db, "agents", "move", "BJ", "--parent", "SOUTH", "--reason", "new region")[0] == 0
    tree = json.loads(hkops_cli(db, "agents", "list", "--json")[1])
    assert [(a["code"], a["parent"], a["level"]) for a in tree] == [
        ("NORTH", None, 1), ("SOUTH", None, 1), ("BJ", "SOUTH", 2), ("BJ-HD", "BJ", 3)]
    assert hkops_cli(db, "agents", "move", "BJ", "--top")[1] == "moved agent BJ to the top: level 1\n"
    assert hkops_cli(db, "agents", "deactivate", "SOUTH")[1] == "agent SOUTH is inactive\n"
    assert hkops_cli(db, "agents", "activate", "SOUTH")[0] == 0
    assert [a[0] for a in actions(db, "BJ")] == ["create", "move", "move"]
    assert [a[0] for a in actions(db, "SOUTH")] == ["create", "deactivate", "activate"]


def test_bad_agent_input_exits_2_with_one_line_and_changes_nothing(db, hkops_cli):
    assert hkops_cli(db, "agents", "add", "NORTH", "华北总代")[0] == 0
    assert hkops_cli(db, "agents", "add", "BJ", "北京代理", "--parent", "NORTH")[0] == 0
    before = snapshot(db)
    one_line_refusal(hkops_cli(db, "agents", "add", "X", "x", "--contact-phone", "123"), "contact_phone '123'")
    one_line_refusal(hkops_cli(db, "agents", "add", "X", "x", "--province", "Atlantis"), "province 'Atlantis'")
    one_line_refusal(hkops_cli(db, "agents", "add", "X", "x", "--parent", "NOBODY"), "agent 'NOBODY' does not exist")
    one_line_refusal(hkops_cli(db, "agents", "move", "NORTH", "--parent", "BJ"), "parent 'BJ': is below NORTH")
    one_line_refusal(hkops_cli(db, "agents", "move", "BJ"), "give exactly one of --parent CODE or --top")
    one_line_refusal(hkops_cli(db, "agents", "activate", "BJ"), "agent BJ is already active")
    assert snapshot(db) == before


@sqlite_only
def test_agents_list_json_is_only_json_as_a_subprocess(db):
    assert hkops(db, "agents", "add", "NORTH", "华北总代").returncode == 0
    listed = hkops(db, "agents", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [a["code"] for a in json.loads(listed.stdout)] == ["NORTH"]
