"""Live monitoring: the usage feed, the monitor's watermark, each alert rule, and alerts'
acknowledge and close (audited), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from hkops import check
from hkops.audit import audit_log
from hkops.errors import IllegalTransition, InvalidValue, NotFound
from hkops.monitoring import service
from hkops.monitoring.detect import Detector, as_frame
from hkops.monitoring.rules import Rule, load_rules, parse_rules
from hkops.monitoring.tables import alerts
from hkops.network import feed
from hkops.network.usage import generate_usage, synthetic_cards
from hkops.security.access import AccessDenied, Principal, load_roles
from hkops.timeutil import utc_now
from test_cards_lifecycle import RID, active_card, hlr, shop  # noqa: F401  (fixtures)

LOST, OTHER, TRAVELLER = 13800000001, 13800000002, 13800000003
T0 = pd.Timestamp("2026-11-29 02:00", tz="UTC")


def records(rows: list[tuple], **columns) -> pd.DataFrame:
    """Feed records from (msisdn, seconds after T0, region, refusal) tuples."""
    frame = pd.DataFrame(rows, columns=["msisdn", "seconds", "region", "refusal"])
    frame["start"] = T0 + pd.to_timedelta(frame.pop("seconds"), unit="s")
    return frame.assign(**columns)


def append(folder, rows, **columns):
    return feed.append(folder, feed.table_from_frame(records(rows, **columns)))


def rules(*names: str, **overrides) -> list[Rule]:
    chosen = [r for r in load_rules() if r.name in names]
    return [Rule(r.name, r.kind, r.severity, r.enabled, r.window_hours, {**r.params, **overrides}) for r in chosen]


@pytest.fixture
def monitor(db, tmp_path):
    return service.Monitor(db, rules("lost_card_use", "impossible_travel"), tmp_path / "stream", tmp_path / "records")


def test_the_feed_appends_whole_batches_in_sequence_and_reads_them_back(tmp_path):
    source = feed.FeedSource(synthetic_cards(300, seed=3, state_shares={"active": 0.5, "suspended": 0.3, "lost": 0.2}))
    summary = feed.stream(source, tmp_path, rate=2_000, duration=0.6, batch_s=0.1)
    found = feed.batches(tmp_path)
    assert [seq for seq, _ in found] == list(range(1, summary.batches + 1)) and summary.batches >= 3
    table = feed.read([path for _, path in found])
    assert table.num_rows == summary.records > 300
    assert table.schema.names == feed.feed_schema().names
    assert len(set(table.column("record_id").to_pylist())) == table.num_rows
    assert {"lost", "suspended"} & set(table.column("refusal").drop_null().to_pylist())
    assert feed.batches(tmp_path, after=summary.batches) == []


def test_a_batch_missing_a_column_is_refused_by_name(tmp_path):
    table = feed.table_from_frame(records([(OTHER, 0, "北京市", None)])).drop_columns(["region"])
    with pytest.raises(InvalidValue, match="missing column.*region"):
        feed.append(tmp_path, table)
    assert feed.batches(tmp_path) == []


def test_a_lost_card_in_use_raises_one_alert_per_window_and_the_watermark_moves_with_it(monitor):
    append(monitor.feed_dir, [(LOST, 0, "北京市", "lost"), (LOST, 5, "北京市", "lost"), (OTHER, 1, "北京市", None)])
    step = service.consume(monitor, actor="ops")
    assert (step.batches, step.records, step.raised, step.watermark) == (1, 3, 1, 1)
    append(monitor.feed_dir, [(LOST, 60, "北京市", "lost")])
    assert service.consume(monitor, actor="ops").raised == 0
    (alert,) = service.list_alerts(monitor.db, actor="ops")
    assert (alert["rule"], alert["subject"], alert["state"], alert["hits"]) == ("lost_card_use", str(LOST), "open", 3)
    assert alert["window"] == "2026-11-29" and alert["details"] == {"state": "lost"}
    assert service.watermark(monitor.db) == (2, 4)


def test_a_restarted_monitor_neither_loses_nor_counts_twice(monitor, monkeypatch):
    append(monitor.feed_dir, [(LOST, 0, "北京市", "lost")])
    service.consume(monitor, actor="ops")
    append(monitor.feed_dir, [(LOST, 10, "北京市", "lost"), (LOST, 11, "北京市", "lost")])

    def crash(*args, **kwargs):
        raise RuntimeError("killed while storing")

    monkeypatch.setattr(service, "record", crash)  # dies inside the transaction that stores alerts and watermark
    append(monitor.feed_dir, [(TRAVELLER, 0, "北京市", None), (TRAVELLER, 300, "广东省", None)])
    with pytest.raises(RuntimeError):
        service.consume(monitor, actor="ops")
    assert service.watermark(monitor.db) == (1, 1)
    monkeypatch.undo()

    restarted = service.Monitor(monitor.db, monitor.rules, monitor.feed_dir, monitor.history_dir)
    step = service.consume(restarted, actor="ops")
    assert (step.batches, step.records, step.raised, step.updated) == (2, 4, 1, 1)
    found = {a["rule"]: a for a in service.list_alerts(monitor.db, actor="ops")}
    assert found["lost_card_use"]["hits"] == 3 and found["impossible_travel"]["subject"] == str(TRAVELLER)
    assert service.consume(restarted, actor="ops").batches == 0
    assert service.watermark(monitor.db) == (3, 5)


def test_the_travel_state_is_rebuilt_from_the_feed_after_a_restart(monitor):
    append(monitor.feed_dir, [(TRAVELLER, 0, "北京市", None)])
    service.consume(monitor, actor="ops")
    append(monitor.feed_dir, [(TRAVELLER, 600, "新疆维吾尔自治区", None)])
    restarted = service.Monitor(monitor.db, monitor.rules, monitor.feed_dir, monitor.history_dir)
    assert service.consume(restarted, actor="ops").raised == 1
    (alert,) = service.list_alerts(monitor.db, actor="ops", rule="impossible_travel")
    assert alert["details"]["from"] == "北京市" and alert["details"]["to"] == "新疆维吾尔自治区"
    assert alert["details"]["km"] > 2000 and alert["details"]["minutes"] == 10.0


def test_travel_within_a_province_or_slow_enough_raises_nothing():
    detector = Detector(rules("impossible_travel"))
    frame = as_frame(feed.table_from_frame(records([
        (OTHER, 0, "广东省", None), (OTHER, 120, "广东省", None),          # same province
        (TRAVELLER, 0, "北京市", None), (TRAVELLER, 4 * 3600, "上海市", None),  # 1,070 km in 4 hours
    ])))
    assert detector.evaluate(frame).empty


def test_traffic_soon_after_a_sim_swap_is_flagged_and_later_traffic_is_not(db):
    detector = Detector(rules("sim_swap_traffic", max_age_hours=24))
    swapped = int((T0 - pd.Timedelta(hours=2)).value // 1000)
    frame = as_frame(feed.table_from_frame(records([(OTHER, 0, "北京市", None), (LOST, 0, "北京市", None)])))
    found = detector.evaluate(frame, pd.Series([swapped, swapped - 48 * 3_600_000_000], index=[OTHER, LOST]))
    assert list(found["subject"]) == [str(OTHER)] and '"hours_after_swap": 2.0' in found["details"][0]


def test_a_replaced_card_s_number_in_use_raises_a_sim_swap_alert(shop, hlr, tmp_path):  # noqa: F811
    from hkops.cards import service as cards

    active_card(shop, hlr)
    cards.report_loss(shop, shop.iccids[0], actor="ana", network=hlr[1])
    cards.replace(shop, shop.iccids[0], shop.iccids[1], RID, actor="ana", network=hlr[1])
    monitor = service.Monitor(shop, rules("sim_swap_traffic", "lost_card_use"), tmp_path / "stream")
    now = pd.Timestamp(utc_now())
    feed.append(monitor.feed_dir, feed.table_from_frame(pd.DataFrame({
        "msisdn": [13800130127, 13800130127], "start": [now, now], "refusal": [None, "replaced"]})))
    assert service.consume(monitor, actor="ops").raised == 2
    assert {a["rule"] for a in service.list_alerts(shop, actor="ops")} == {"sim_swap_traffic", "lost_card_use"}


def test_a_card_never_used_n_days_after_activation_is_a_candidate_once(shop, hlr, tmp_path):  # noqa: F811
    active_card(shop, hlr, 0, "13800130127")
    active_card(shop, hlr, 1, "13800130128")
    monitor = service.Monitor(shop, rules("never_used"), tmp_path / "stream", tmp_path / "records")
    feed.append(monitor.feed_dir, feed.table_from_frame(records([(13800130128, 0, "北京市", None)])))
    later = utc_now() + timedelta(days=31)
    assert service.census(monitor, actor="ops", now=utc_now()) == 0  # not 30 days yet
    assert service.census(monitor, actor="ops", now=later) == 1
    assert service.census(monitor, actor="ops", now=later + timedelta(days=1)) == 0
    (alert,) = service.list_alerts(shop, actor="ops")
    assert alert["subject"] == "13800130127" and alert["details"]["days"] == 31


def test_a_card_far_above_its_own_profile_is_flagged_by_its_robust_z_score(tmp_path):
    cards = synthetic_cards(200, seed=5, state_shares={"active": 1.0})
    generate_usage(cards, start=(T0 - pd.Timedelta(days=14)).date(), days=14, seed=7, out_dir=tmp_path)
    detector = Detector(rules("usage_spike", min_bytes=1 << 20), tmp_path / "records")
    heavy, usual = int(cards["msisdn"][0]), int(cards["msisdn"][1])
    frame = as_frame(feed.table_from_frame(records([(heavy, 0, "北京市", None), (usual, 0, "北京市", None)],
                                                   bytes_down=[400 << 30, 1 << 20])))
    found = detector.evaluate(frame)
    assert list(found["subject"]) == [str(heavy)]
    assert '"z": ' in found["details"][0] and float(found["details"][0].split('"z": ')[1].rstrip("}")) > 5


def test_a_region_whose_volume_drops_raises_an_outage_alert(monitor):
    monitor.detector.__init__(rules("region_drop", bucket_minutes=1, baseline_buckets=3, min_baseline=5))
    for minute in range(4):  # ten records a minute in each province
        rows = [(OTHER, minute * 60 + s, region, None) for s in range(0, 60, 6) for region in ("北京市", "广东省")]
        append(monitor.feed_dir, rows)
    append(monitor.feed_dir, [(OTHER, 240 + s, "北京市", None) for s in range(0, 60, 6)])  # 广东 goes quiet
    append(monitor.feed_dir, [(OTHER, 300, "北京市", None)])  # closes the quiet minute
    monitor.rules = monitor.detector.rules
    service.consume(monitor, actor="ops")
    (alert,) = service.list_alerts(monitor.db, actor="ops")
    assert (alert["rule"], alert["subject"], alert["window"]) == ("region_drop", "广东省", "2026-11-29 10:04")
    assert alert["details"] == {"records": 0, "baseline": 10.0}


def test_acknowledge_and_close_are_audited_and_twice_is_refused(monitor):
    append(monitor.feed_dir, [(LOST, 0, "北京市", "terminated")])
    service.consume(monitor, actor="ops")
    (alert,) = service.list_alerts(monitor.db, actor="ops")
    with pytest.raises(InvalidValue, match="reason"):
        service.close(monitor.db, alert["id"], actor="ops", reason="  ")
    service.acknowledge(monitor.db, alert["id"], actor="ops", reason="calling the customer")
    with pytest.raises(IllegalTransition, match="already acknowledged.*by ops"):
        service.acknowledge(monitor.db, alert["id"], actor="ops")
    closed = service.close(monitor.db, alert["id"], actor="ops", reason="card destroyed")
    assert (closed["state"], closed["closed_by"], closed["reason"]) == ("closed", "ops", "card destroyed")
    with pytest.raises(IllegalTransition, match="already closed"):
        service.close(monitor.db, alert["id"], actor="ops", reason="again")
    with pytest.raises(NotFound):
        service.acknowledge(monitor.db, 999, actor="ops")
    with monitor.db.read() as conn:
        trail = conn.execute(select(audit_log.c.action, audit_log.c.from_state, audit_log.c.to_state)
                             .where(audit_log.c.entity == "alert").order_by(audit_log.c.id)).all()
    assert [tuple(t) for t in trail] == [("raise", None, "open"), ("acknowledge", "open", "acknowledged"),
                                         ("close", "acknowledged", "closed")]
    # A closed alert stays closed: the card's use in the same window adds nothing to it.
    append(monitor.feed_dir, [(LOST, 30, "北京市", "terminated")])
    assert service.consume(monitor, actor="ops").raised == 0
    assert service.get_alert(monitor.db, alert["id"], actor="ops")["hits"] == 1


def test_check_finds_an_alert_whose_state_differs_from_its_audit(monitor):
    append(monitor.feed_dir, [(LOST, 0, "北京市", "lost")])
    service.consume(monitor, actor="ops")
    assert check.run(monitor.db).clean
    with monitor.db.write() as conn:
        conn.execute(alerts.update().values(state="closed"))  # behind the service's back
    report = check.run(monitor.db)
    assert [v.kind for v in report.violations] == ["alert_state_differs_from_audit"]
    assert report.violations[0].ids["audited_state"] == "open"


def test_analysts_see_alerts_ops_acknowledge_them(monitor):
    roles = load_roles()
    analyst = Principal("ann", roles=("analyst",), permissions=roles["analyst"])
    ops = Principal("oleg", roles=("ops",), permissions=roles["ops"])
    append(monitor.feed_dir, [(LOST, 0, "北京市", "lost")])
    service.consume(monitor, actor=ops)
    (alert,) = service.list_alerts(monitor.db, actor=analyst)
    with pytest.raises(AccessDenied, match="monitoring.write"):
        service.acknowledge(monitor.db, alert["id"], actor=analyst)
    with pytest.raises(AccessDenied):
        service.consume(monitor, actor=analyst)
    assert service.acknowledge(monitor.db, alert["id"], actor=ops)["state"] == "acknowledged"


@pytest.mark.parametrize("text, message", [
    ('[rules.x]\nkind = "usage_spike"\nthresold = 3\n', "line 3: rule x field 'thresold': unknown field"),
    ('[rules.x]\nkind = "teleport"\n', "line 2: rule x field kind 'teleport': unknown kind"),
    ('[rules.x]\nkind = "sim_swap_traffic"\nmax_age_hours = 5000\n', "max_age_hours 5000: must be between 1 and 2400"),
    ('[rules.x]\nkind = "lost_card_use"\nstates = ["active"]\n', "states 'active': is not a state"),
    ('[rules.x]\nkind = "region_drop"\ndrop = "half"\n', "drop 'half': must be a number"),
    ('[rules.x]\nkind = "never_used"\nseverity = "urgent"\n', "severity 'urgent': must be one of"),
])
def test_a_bad_rule_is_refused_naming_its_field(text, message):
    with pytest.raises(InvalidValue) as refused:
        parse_rules(text)
    assert message in str(refused.value)


def test_the_distance_table_knows_every_province_of_the_synthetic_cards():
    from hkops.monitoring.detect import place_of
    from hkops.network.usage import DEMO_CITIES

    assert all(not np.isnan(place_of(p)[0]) for p in DEMO_CITIES)


def test_an_outage_silences_a_province_of_the_feed_and_an_unknown_province_is_refused():
    cards = synthetic_cards(2_000, seed=4)
    source = feed.FeedSource(cards, outage=("广东",))
    table = source.records(0, 60_000_000, 5_000)
    regions = set(table.column("region").to_pylist())
    assert "广东省" not in regions and len(regions) > 10 and table.num_rows > 4_500
    with pytest.raises(InvalidValue, match="outage 'Atlantis'"):
        feed.FeedSource(cards, outage=("Atlantis",))


def test_a_new_subscription_counts_as_a_swap_only_when_the_rule_says_so(shop, hlr, tmp_path):  # noqa: F811
    active_card(shop, hlr, 0, "13800130127")
    now = pd.Timestamp(utc_now())
    for count, expected in ((False, 0), (True, 1)):
        folder = tmp_path / f"stream-{count}"
        monitor = service.Monitor(shop, rules("sim_swap_traffic", count_activation=count), folder,
                                  consumer=f"m-{count}")
        feed.append(folder, feed.table_from_frame(pd.DataFrame({"msisdn": [13800130127], "start": [now]})))
        assert service.consume(monitor, actor="ops").raised == expected


def test_pruned_batches_are_gone_and_a_monitor_still_finds_the_newer_ones(monitor):
    import os

    for second in range(3):
        append(monitor.feed_dir, [(LOST, second, "北京市", "lost")])
    service.consume(monitor, actor="ops")
    for n, (_, path) in enumerate(feed.batches(monitor.feed_dir)):
        os.utime(path, (1_000 + n, 1_000 + n))  # written long ago
    append(monitor.feed_dir, [(LOST, 10, "北京市", "lost")])
    assert feed.prune(monitor.feed_dir, keep_s=3600) == 3
    assert [seq for seq, _ in feed.batches(monitor.feed_dir)] == [4]
    restarted = service.Monitor(monitor.db, monitor.rules, monitor.feed_dir)
    assert service.consume(restarted, actor="ops").batches == 1
    assert service.list_alerts(monitor.db, actor="ops")[0]["hits"] == 4
    os.utime(feed.batches(monitor.feed_dir)[0][1], (1_000, 1_000))
    assert feed.prune(monitor.feed_dir, keep_s=3600) == 0  # the newest stays: sequences are never reused
    assert feed.last_sequence(monitor.feed_dir) == 4


def test_a_card_s_day_adds_up_over_batches_and_restarts_before_its_spike_shows(db, tmp_path):
    cards = synthetic_cards(100, seed=6, state_shares={"active": 1.0})
    day = pd.Timestamp(utc_now()).tz_convert("Asia/Shanghai").normalize()
    generate_usage(cards, start=(day - pd.Timedelta(days=10)).date(), days=10, seed=7, out_dir=tmp_path)
    monitor = service.Monitor(db, rules("usage_spike", min_bytes=1), tmp_path / "stream", tmp_path / "records")
    card = int(cards["msisdn"][0])
    profile = monitor.detector.profiles(int(day.value // 1000), 28).loc[card]
    limit = profile["median"] + 5 * profile["mad"] / 0.6745
    start = max(day.tz_convert("UTC"), pd.Timestamp(utc_now()) - pd.Timedelta(minutes=5))
    batch = pd.DataFrame({"msisdn": [card], "start": [start], "bytes_down": [int(limit * 0.6)]})
    feed.append(monitor.feed_dir, feed.table_from_frame(batch))
    assert service.consume(monitor, actor="ops").raised == 0
    feed.append(monitor.feed_dir, feed.table_from_frame(batch.assign(start=start + pd.Timedelta(seconds=1))))
    restarted = service.Monitor(db, monitor.rules, monitor.feed_dir, monitor.history_dir)  # rebuilds the day
    assert service.consume(restarted, actor="ops").raised == 1
    (alert,) = service.list_alerts(db, actor="ops")
    assert alert["details"]["bytes_today"] == 2 * int(limit * 0.6) + 2 * 1_000  # and the default upload
