"""The catalogue: products, plans and their validation, prices per agent level with
fallback, quotes with a vanity number's fees, and who may have a plan where."""

from __future__ import annotations

from datetime import date

import pytest

from hkops.catalogue import service
from hkops.catalogue.service import Quote
from hkops.errors import Conflict, InvalidValue, InvalidValues, NotFound
from strategies import actions, audit_count, history, snapshot

PLAN = dict(monthly_fee_fen=5800, data_mb=30_720, voice_minutes=300, sms=100)


def gold(db, **changes):
    return service.add_plan(db, "gold58", "Gold 58", "中国移动", **{**PLAN, **changes}, actor="ana")


def test_a_product_is_one_carrier_and_form_factor_and_is_audited(world):
    code = service.add_product(world, "cm-nano", "China Mobile nano SIM", "china mobile", "NANO", actor="ana")
    assert code == "CM-NANO"
    service.add_product(world, "CU-ESIM", "Unicom eSIM", "China Unicom", "esim", actor="ana")
    product = service.get_product(world, "cm-nano")
    assert (product.carrier, product.form_factor, product.active) == ("China Mobile", "nano", True)
    assert [p.code for p in service.products_of(world, "中国移动")] == ["CM-NANO"]
    assert [p.code for p in service.products_of(world)] == ["CM-NANO", "CU-ESIM"]
    assert actions(world, "CM-NANO") == [("create", None, "active")]
    assert history(world, "CM-NANO")[0]["entity"] == "product"


def test_bad_products_are_refused_and_nothing_is_written(world):
    service.add_product(world, "CM-NANO", "nano", "China Mobile", "nano", actor="ana")
    before = snapshot(world)
    with pytest.raises(InvalidValue, match="form_factor 'pico'"):
        service.add_product(world, "CM-PICO", "pico", "China Mobile", "pico", actor="ana")
    with pytest.raises(InvalidValue, match="carrier 'China Broadnet': is not a configured carrier"):
        service.add_product(world, "CB-NANO", "nano", "China Broadnet", "nano", actor="ana")
    with pytest.raises(InvalidValue, match="carrier 'Vodafone'"):
        service.add_product(world, "VF-NANO", "nano", "Vodafone", "nano", actor="ana")
    with pytest.raises(Conflict, match="product CM-NANO exists already"):
        service.add_product(world, "cm-nano", "nano again", "China Mobile", "micro", actor="ana")
    with pytest.raises(NotFound):
        service.get_product(world, "NOPE")
    assert snapshot(world) == before


def test_a_plan_keeps_its_terms_and_stores_excluded_provinces_by_their_english_name(world):
    plan = gold(world, contract_months=12, first_topup_fen=10_000, min_age=18, max_age=65,
                excluded_provinces=["新疆", "Tibet", "xinjiang"])
    assert plan == service.get_plan(world, "GOLD58")
    assert (plan.code, plan.carrier, plan.monthly_fee_fen, plan.contract_months) == ("GOLD58", "China Mobile", 5800, 12)
    assert (plan.first_topup_fen, plan.min_age, plan.max_age) == (10_000, 18, 65)
    assert plan.excluded_provinces == ("Tibet", "Xinjiang")
    record = history(world, "GOLD58")[0]
    assert (record["entity"], record["action"], record["details"]["excluded_provinces"]) == (
        "plan", "create", ["Tibet", "Xinjiang"])
    assert record["details"]["monthly_fee_fen"] == 5800


@pytest.mark.parametrize(("changes", "message"), [
    ({"min_age": 30, "max_age": 20}, "min_age 30: is above max_age 20"),
    ({"max_age": 130}, "max_age 130: must be from 0 to 120"),
    ({"monthly_fee_fen": -1}, "monthly_fee -1: must be at least 0"),
    ({"data_mb": 1.5}, "data_mb 1.5: must be a whole number"),
    ({"excluded_provinces": ["Atlantis"]}, "excluded_province 'Atlantis': is not a province"),
    ({"contract_months": 999}, "contract_months 999"),
])
def test_a_plan_with_a_bad_value_is_refused_naming_the_field_and_value(world, changes, message):
    before = snapshot(world)
    with pytest.raises(InvalidValue, match=message):
        gold(world, **changes)
    assert snapshot(world) == before


def test_every_bad_value_of_a_plan_is_reported_at_once(world):
    with pytest.raises(InvalidValues) as refused:
        service.add_plan(world, "bad plan!", "", "Vodafone", monthly_fee_fen=-5, data_mb=0, voice_minutes=0, sms=0,
                         min_age=70, max_age=60, actor="ana")
    fields = [p.field for p in refused.value.problems]
    assert fields == ["plan", "name", "monthly_fee", "min_age", "carrier"]
    with pytest.raises(NotFound):
        service.get_plan(world, "GOLD58")


def test_a_plan_code_is_taken_once(world):
    gold(world)
    with pytest.raises(Conflict, match="plan GOLD58 exists already"):
        gold(world)


def test_the_price_at_a_level_falls_back_to_the_nearest_lower_level_then_retail(world):
    gold(world)
    with world.read() as conn:
        with pytest.raises(Conflict, match="no price at level 2 or below"):
            service.price_of(conn, "GOLD58", 2)
    service.set_price(world, "gold58", 0, 9900, actor="ana")
    service.set_price(world, "GOLD58", 2, 7000, actor="ana")
    service.set_price(world, "GOLD58", 2, 6800, actor="ana")
    with world.read() as conn:
        prices = [service.price_of(conn, "GOLD58", level) for level in range(5)]
    assert prices == [9900, 9900, 6800, 6800, 6800]
    assert service.prices_of(world, "GOLD58") == {0: 9900, 2: 6800}
    changes = [r["details"] for r in history(world, "GOLD58") if r["action"] == "set_price"]
    assert changes == [{"level": 0, "from_fen": None, "to_fen": 9900}, {"level": 2, "from_fen": None, "to_fen": 7000},
                       {"level": 2, "from_fen": 7000, "to_fen": 6800}]


def test_a_bad_price_changes_nothing(world):
    gold(world)
    records = audit_count(world)
    with pytest.raises(InvalidValue, match="level -1"):
        service.set_price(world, "GOLD58", -1, 100, actor="ana")
    with pytest.raises(InvalidValue, match="price -100"):
        service.set_price(world, "GOLD58", 1, -100, actor="ana")
    with pytest.raises(NotFound):
        service.set_price(world, "SILVER", 1, 100, actor="ana")
    assert service.prices_of(world, "GOLD58") == {} and audit_count(world) == records


def test_a_vanity_number_is_quoted_with_its_grades_fee_prepayment_and_minimum_spend(world):
    gold(world)
    service.set_price(world, "GOLD58", 0, 9900, actor="ana")
    service.set_price(world, "GOLD58", 1, 8000, actor="ana")
    with world.read() as conn:
        vanity = service.quote(conn, "GOLD58", "13800138888", 1)
        plain = service.quote(conn, "GOLD58", "138 0013 0127", 0)
    # 8888: grade AAAA, 2,888 yuan selection fee, 2,000 prepaid, 889 a month at least.
    assert vanity == Quote(price_fen=8000, vanity_fee_fen=288_800, prepay_fen=200_000, min_monthly_fen=88_900,
                           total_fen=8000 + 288_800 + 200_000)
    assert plain == Quote(price_fen=9900, vanity_fee_fen=1000, prepay_fen=0, min_monthly_fen=0, total_fen=10_900)


def test_a_number_of_another_carrier_or_outside_the_pool_is_not_quoted(world):
    gold(world)
    service.set_price(world, "GOLD58", 0, 9900, actor="ana")
    with world.read() as conn:
        with pytest.raises(InvalidValue, match="is a China Unicom number; plan GOLD58 is China Mobile"):
            service.quote(conn, "GOLD58", "18607558888", 0)
        with pytest.raises(NotFound, match="number 13900000000 is not in the pool"):
            service.quote(conn, "GOLD58", "13900000000", 0)
        with pytest.raises(NotFound, match="plan 'SILVER'"):
            service.quote(conn, "SILVER", "13800138888", 0)


def test_customer_problems_name_the_age_and_the_province(world):
    plan = gold(world, min_age=16, max_age=60, excluded_provinces=["Xinjiang"])
    today = date(2025, 6, 1)
    assert service.customer_problems(plan, date(1990, 1, 1), "广东", today) == []
    assert service.customer_problems(plan, date(2009, 6, 2), "新疆维吾尔自治区", today) == [
        "age 15 is outside plan GOLD58's limits 16–60", "plan GOLD58 does not ship to Xinjiang"]
    assert service.customer_problems(plan, date(2009, 6, 1), "Beijing", today) == []  # 16 today
    assert service.customer_problems(plan, date(1964, 5, 31), "Beijing", today) == [
        "age 61 is outside plan GOLD58's limits 16–60"]
    with pytest.raises(InvalidValue, match="ship_province 'Narnia'"):
        service.customer_problems(plan, date(1990, 1, 1), "Narnia", today)


def test_province_names_are_accepted_in_english_and_chinese():
    assert {service.canonical_province(p) for p in ("新疆", "新疆维吾尔自治区", "XINJIANG", " Xinjiang ")} == {"Xinjiang"}
    assert service.canonical_province("内蒙古") == "Inner Mongolia"
    assert service.canonical_province("广东省") == "Guangdong"
    assert len(set(service._province_names().values())) == 31


def test_a_plan_carries_overage_rates_defaulting_to_the_common_ones(world):
    plain = gold(world)
    assert (plain.overage_data_fen_per_gb, plain.overage_voice_fen_per_min, plain.overage_sms_fen) == (500, 15, 10)
    dear = service.add_plan(world, "dear", "Dear", "中国移动", **PLAN, overage_data_fen_per_gb=1_000,
                            overage_voice_fen_per_min=19, overage_sms_fen=0, actor="ana")
    assert service.get_plan(world, "DEAR").as_dict()["overage_voice_fen_per_min"] == 19
    assert (dear.overage_data_fen_per_gb, dear.overage_sms_fen) == (1_000, 0)
    before = snapshot(world)
    with pytest.raises(InvalidValues, match="overage_sms_fen"):
        service.add_plan(world, "bad", "Bad", "中国移动", **PLAN, overage_sms_fen=-1, overage_data_fen_per_gb=2.5,
                         actor="ana")
    assert snapshot(world) == before
