"""The analytics benchmark's anchors answer hkops's question (its figures are only worth comparing then)."""

from datetime import date

from bench import analytics
from hkops.network.usage import generate_usage, synthetic_cards


def test_sql_and_pandas_anchors_give_hkops_answer_and_a_difference_is_caught(tmp_path):
    generate_usage(synthetic_cards(300, seed=3), start=date(2026, 10, 1), days=3, seed=3, out_dir=tmp_path)
    answer = analytics.hkops_day_region(tmp_path, threads=1)()
    assert len(answer) > 3 and answer["cards"].sum() > 0 and answer["refused"].sum() > 0

    assert analytics.agrees(answer, analytics.duckdb_day_region(tmp_path, 1)())
    two_days = analytics.pandas_day_region(tmp_path, ["2026-10-01", "2026-10-03"])()
    assert set(two_days["day"].astype(str)) == {"2026-10-01", "2026-10-03"}
    assert analytics.agrees(answer, two_days)

    wrong = two_days.copy()
    wrong.loc[0, "cards"] += 1
    assert not analytics.agrees(answer, wrong)
    assert not analytics.agrees(answer, two_days.drop(columns="sms_mo"))
