"""The analytics query layer on its default engine (DuckDB): the usage store as a table, files
refused by name, hkops tables read through hkops, and bad engine settings refused quickly.
The same analyses on Spark: tests/test_analytics_spark.py."""

from __future__ import annotations

import inspect
import socket
import time
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hkops.analytics import engine, queries
from hkops.errors import HkopsError, InvalidValue, InvalidValues
from hkops.network.usage import generate_usage, synthetic_cards
from hkops.security.access import AccessDenied, Principal

START = date(2026, 11, 2)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("usage")
    generate_usage(synthetic_cards(800, seed=5), start=START, days=3, seed=4, out_dir=out)
    return out


def _day_file(store, day: str):
    return store / "records" / f"day={day}" / "part-0.parquet"


def test_day_region_on_duckdb_matches_the_records_counted_by_hand(store):
    frame = engine.execute(queries.day_region(engine.usage_table(engine.connect(), store)))
    raw = pq.read_table(store / "records").to_pandas()
    billable = raw[~raw["refused"]]
    assert int(frame["records"].sum()) == len(billable)
    assert int(frame["refused"].sum()) == int(raw["refused"].sum())
    assert int(frame["data_bytes"].sum()) == int((billable["bytes_up"] + billable["bytes_down"]).sum())
    assert int(frame["charge_fen"].sum()) == int(raw["charge_fen"].sum())
    first = frame[(frame["day"] == "2026-11-02") & (frame["region"] == "广东省")].iloc[0]
    there = billable[(billable["day"].astype(str) == "2026-11-02") & (billable["region"] == "广东省")]
    assert int(first["cards"]) == there["msisdn"].nunique()
    assert int(first["voice_mo_s"]) == int(there.loc[there["type"] == "voice_mo", "duration_s"].sum())
    assert list(frame.columns[:2]) == ["day", "region"] and frame["day"].is_monotonic_increasing


def test_every_registered_analysis_is_an_ibis_expression_over_named_tables(store):
    con = engine.connect()
    store_datasets = {"usage", "topups", "cards"}
    for name, function in engine.ANALYSES.items():
        tables = {p for p, spec in inspect.signature(function).parameters.items() if spec.default is spec.empty}
        if not tables <= store_datasets:
            continue  # reads the database: tests/test_analytics_spark.py runs every one of those
        frame = engine.execute(function(**engine.tables_for(function, con, store_dir=store)))
        assert len(frame) > 0, name
    assert engine.run("top_users", store_dir=store)["data_bytes"].is_monotonic_decreasing
    hours = engine.run("hour_profile", store_dir=store).set_index(["hour", "type"])["records"]
    assert hours[(21, "data")] > 3 * hours[(4, "data")]  # the evening peak and pre-dawn trough, local time


def test_the_store_setting_names_the_usage_store(store, monkeypatch):
    monkeypatch.setenv(engine.STORE_VARIABLE, str(store))
    assert engine.store_location() == str(store)
    assert len(engine.run("day_region")) > 0
    monkeypatch.setenv(engine.STORE_VARIABLE, "hdfs://namenode:8020/hkops/usage")
    with pytest.raises(InvalidValue, match="read by Spark only"):
        engine.usage_table(engine.connect())


def test_a_file_with_a_missing_column_or_a_wrong_type_is_refused_by_name_and_the_rest_stays_readable(
        store, tmp_path):
    import shutil

    copy = tmp_path / "usage"
    shutil.copytree(store, copy)
    missing, wrong, garbage = _day_file(copy, "2026-11-02"), _day_file(copy, "2026-11-03"), _day_file(copy, "2026-11-04")
    pq.write_table(pq.read_table(missing).drop_columns(["region"]), missing)
    table = pq.read_table(wrong)
    index = table.schema.get_field_index("bytes_up")
    pq.write_table(table.set_column(index, "bytes_up", table["bytes_up"].cast(pa.string())), wrong)
    extra = copy / "records" / "day=2026-11-05" / "part-0.parquet"
    extra.parent.mkdir()
    extra.write_bytes(b"not parquet at all")

    scan = engine.scan_store(copy)
    assert [(p.split("/")[-2], column) for p, column, _ in scan.refused] == [
        ("day=2026-11-02", "region"), ("day=2026-11-03", "bytes_up"), ("day=2026-11-05", "file")]
    assert "bytes_up is string, expected int64" in scan.refused[1][2]
    with pytest.warns(engine.UsageFileRefused) as warned:
        usage = engine.usage_table(engine.connect(), copy)
    messages = [str(w.message) for w in warned]
    assert any("missing column region" in m and "day=2026-11-02" in m for m in messages)
    assert any("bytes_up" in m and "day=2026-11-03" in m for m in messages)
    frame = engine.execute(queries.day_region(usage))
    assert sorted(frame["day"].astype(str).unique()) == ["2026-11-04"]
    with pytest.raises(InvalidValues) as refused:
        engine.usage_table(engine.connect(), copy, strict=True)
    assert "region" in str(refused.value) and "day=2026-11-03" in str(refused.value)
    assert "3 bad value(s)" in str(refused.value)


def test_an_empty_store_says_what_to_do(tmp_path):
    with pytest.raises(InvalidValue, match="hkops usage generate"):
        engine.usage_table(engine.connect(), tmp_path)
    with pytest.raises(InvalidValue, match="records, topups, cards"):
        engine.usage_table(engine.connect(), tmp_path, "calls")


@pytest.mark.parametrize("value", ["hadoop", "spark://", "spark://host", "local[two]", "duck db"])
def test_an_unknown_engine_setting_is_refused_by_name(value, monkeypatch):
    with pytest.raises(InvalidValue, match="HKOPS_ANALYTICS") as refused:
        engine.connect(value)
    assert repr(value.strip()) in str(refused.value)
    monkeypatch.setenv(engine.ENGINE_VARIABLE, value)
    with pytest.raises(InvalidValue, match="must be duckdb, local"):
        engine.connect()


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def not_spark():
    """A port where some other service answers (as a web UI or a proxy would): host:port."""
    import threading

    server = socket.create_server(("127.0.0.1", 0))

    def answer():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=answer, daemon=True).start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.mark.parametrize("kind", ["closed port", "another service"])
def test_a_spark_master_that_does_not_answer_fails_clearly_within_seconds(kind, request, monkeypatch):
    host_port = f"127.0.0.1:{_dead_port()}" if kind == "closed port" else request.getfixturevalue("not_spark")
    monkeypatch.setenv(engine.ENGINE_VARIABLE, f"spark://{host_port}")
    began = time.monotonic()
    with pytest.raises(engine.EngineUnavailable) as failed:
        engine.connect()
    assert time.monotonic() - began < 10
    assert f"Spark master at {host_port} does not answer" in str(failed.value)
    assert "HKOPS_ANALYTICS=duckdb" in str(failed.value)
    if kind == "another service":
        assert "'HTTP/1.1 400 Bad Request'" in str(failed.value) and "7077" in str(failed.value)
    assert isinstance(failed.value, HkopsError)


def test_state_tables_are_read_through_hkops_without_secrets(world):
    from hkops.numbers.tables import numbers

    con = engine.connect()
    sims = engine.state_table(con, world, "sims", actor="analyst")
    assert "imsi" in sims.columns and not [c for c in sims.columns if c.endswith("_enc")]
    subscribers = engine.state_table(con, world, "subscribers", actor="analyst")
    assert {"name", "contact", "address", "resident_id_hash", "resident_id_enc"}.isdisjoint(subscribers.columns)
    pool = engine.state_table(con, world, "numbers", actor="analyst")
    with world.read() as conn:
        expected = conn.execute(numbers.select().with_only_columns(numbers.c.msisdn)).all()
    counted = engine.execute(pool.group_by("state").aggregate(n=pool.count()))
    assert int(counted["n"].sum()) == len(expected) == 30_000
    with pytest.raises(InvalidValue, match="must be one of"):
        engine.state_table(con, world, "user_tokens", actor="analyst")
    clerk = Principal("clerk", roles=["sales"], permissions={"orders.write"})
    with pytest.raises(AccessDenied, match="analytics.read"):
        engine.state_table(con, world, "numbers", actor=clerk)
    agent = Principal("a2-user", roles=("agent",), permissions={"analytics.read"}, agent="A2")
    with pytest.raises(AccessDenied, match="its own subtree"):
        engine.state_table(con, world, "orders", actor=agent)


def test_importing_the_query_layer_loads_no_engine():
    import subprocess
    import sys

    probe = ("import sys, hkops.analytics.engine, hkops.analytics.queries\n"
             "print(sorted(m for m in ('ibis', 'pyspark', 'duckdb', 'pandas', 'pyarrow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
