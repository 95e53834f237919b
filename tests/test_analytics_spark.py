"""The same analyses on Spark and on DuckDB give identical results.

A real Spark standalone cluster (a master and two workers, from the pyspark package's
``spark-class``, on Java 17) runs on 127.0.0.1 for the session; every analysis registered in
:data:`hkops.analytics.engine.ANALYSES` runs on it through ``HKOPS_ANALYTICS=spark://…`` and on
DuckDB over the same files, and the sorted results must be equal, exactly. Then the same on
Spark ``local[2]``. Java is required: outside CI a machine without it skips, in CI (CI=true,
whose ``.ci/run`` installs ``openjdk-17-jre-headless``) the tests fail instead; likewise without PySpark.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pytest

from hkops.analytics import engine, queries  # noqa: F401  (queries registers the analyses)
from hkops.network.usage import generate_usage, synthetic_cards
from postgres import IN_CI
from scoping_world import two_agents  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

#: Analyses that read hkops database tables (any parameter other than the usage store's datasets).
DATABASE_ANALYSES = {name for name, function in engine.ANALYSES.items()
                     if {p for p, spec in inspect.signature(function).parameters.items()
                         if spec.default is inspect.Parameter.empty} - {"usage", "topups", "cards"}}
#: Database analyses whose answer may be empty in the test world (no quarantined numbers there).
MAY_BE_EMPTY = {"quarantine_inflow", "recycle_outflow"}


def _spark_or_skip() -> None:
    """Fail in CI, skip elsewhere, when PySpark or Java is missing."""
    import importlib.util

    missing = None
    if importlib.util.find_spec("pyspark") is None:
        missing = "PySpark is not installed: pip install -e '.[test]'"
    elif shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        missing = "no Java (Spark needs Java 17): apt-get install openjdk-17-jre-headless, as .ci/run does"
    if missing and IN_CI:
        pytest.fail(missing)
    if missing:
        pytest.skip(missing)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _alive_workers(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as answer:
            return int(json.load(answer).get("aliveworkers", 0))
    except (OSError, ValueError):
        return 0


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory):
    """``spark://127.0.0.1:PORT`` of a standalone master with two 1-core workers, stopped at the end."""
    _spark_or_skip()
    home = _spark_home()
    folder = tmp_path_factory.mktemp("spark")
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_DAEMON_MEMORY": "256m",
           "SPARK_LOG_DIR": str(folder), "SPARK_WORKER_DIR": str(folder / "work")}
    port, ui_port = _free_port(), _free_port()
    master = f"spark://127.0.0.1:{port}"
    spark_class = str(home / "bin" / "spark-class")
    started: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> None:
        log = open(folder / f"{name}.log", "wb")
        started.append(subprocess.Popen([spark_class, *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True))

    try:
        start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
              "--webui-port", str(ui_port))
        for n in (1, 2):
            start(f"worker{n}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1",
                  "--memory", "1g", "--webui-port", str(_free_port()), "--work-dir", str(folder / f"work{n}"), master)
        deadline = time.monotonic() + 180
        while _alive_workers(ui_port) < 2:
            if time.monotonic() > deadline or any(p.poll() is not None for p in started):
                logs = "\n".join((folder / f"{n}.log").read_text(errors="replace")[-2000:]
                                 for n in ("master", "worker1", "worker2"))
                pytest.fail(f"the Spark cluster did not come up with two workers:\n{logs}")
            time.sleep(1)
        yield master
    finally:
        _stop_spark_session()
        for process in reversed(started):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _stop_spark_session() -> None:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return
    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()


@pytest.fixture(scope="module")
def usage_store(tmp_path_factory):
    """Three days of usage of 1,500 cards sold with the distribution world's plans (CM-58, CU-39) and others."""
    out = tmp_path_factory.mktemp("usage")
    cards = synthetic_cards(1_500, seed=21)
    cards["activated_at"] = "2026-11-02T10:00:00Z"  # some usage before activation is dropped
    cards.loc[cards.index % 3 != 0, "activated_at"] = None
    generate_usage(cards, start=date(2026, 11, 1), days=3, seed=22, out_dir=out)
    return out


@pytest.fixture
def orders_db(two_agents):
    """Two agents' allocated orders (A3's and B's) and direct orders on both plans, some paid, some
    cancelled: a funnel, a league table, stock moved to the agents and numbers reserved."""
    from distribution_world import PLAN_UNICOM, advance, place_order
    from hkops.orders import service as orders

    db = two_agents.db
    placed = [place_order(db, n) for n in range(4)]
    placed += [place_order(db, 30 + n, plan=PLAN_UNICOM) for n in range(3)]
    advance(db, placed[0].number, "allocated")
    orders.cancel_order(db, placed[1].number, reason="changed mind", actor="desk")
    return db


def _plain(value):
    """``value`` as a plain Python value, the same whatever type an engine chose for it: dates and
    times as ISO text (UTC), numbers as int when whole, else a float to 12 significant digits."""
    import pandas as pd

    if value is None or (not isinstance(value, (str, bytes)) and pd.isna(value)):  # None, NaN, NaT
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (datetime, np.datetime64)):
        stamp = pd.Timestamp(value)
        return (stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(f"{float(value):.12g}")
        return int(number) if number.is_integer() else number
    return str(value)


def _canonical(frame):
    """The columns and the rows as sorted tuples of plain values: what two engines must agree on exactly."""
    return list(frame.columns), sorted((tuple(_plain(v) for v in row) for row in frame.itertuples(index=False)),
                                       key=repr)


def _both(name: str, spark_con, *, store_dir, db=None):
    duck = engine.run(name, engine.connect(), store_dir=store_dir, db=db, actor="analyst")
    spark = engine.run(name, spark_con, store_dir=store_dir, db=db, actor="analyst")
    return duck, spark


@pytest.fixture(scope="module")
def cluster_con(spark_cluster):
    """An Ibis backend on the cluster, reached through the setting as a user would."""
    old = os.environ.get(engine.ENGINE_VARIABLE)
    os.environ[engine.ENGINE_VARIABLE] = spark_cluster
    os.environ["HKOPS_SPARK_CONF"] = "spark.executor.memory=512m,spark.executor.cores=1,spark.cores.max=2"
    try:
        con = engine.connect()
    finally:
        os.environ.pop("HKOPS_SPARK_CONF")
        if old is None:
            os.environ.pop(engine.ENGINE_VARIABLE)
        else:
            os.environ[engine.ENGINE_VARIABLE] = old
    assert engine.is_spark(con) and con._session.sparkContext.master == spark_cluster
    return con


@pytest.mark.parametrize("name", sorted(set(engine.ANALYSES) - DATABASE_ANALYSES))
def test_spark_cluster_and_duckdb_agree_on_every_usage_analysis(name, cluster_con, usage_store):
    duck, spark = _both(name, cluster_con, store_dir=usage_store)
    assert len(duck) > 0
    assert _canonical(spark) == _canonical(duck)


def test_the_cluster_ran_the_work_on_its_two_workers(cluster_con, usage_store):
    engine.execute(queries.day_region(engine.usage_table(cluster_con, usage_store)))
    executors = cluster_con._session.sparkContext._jsc.sc().getExecutorMemoryStatus().size()
    assert executors == 3  # the driver and one executor on each worker


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_spark_cluster_and_duckdb_agree_on_every_database_analysis(cluster_con, orders_db, usage_store):
    """Every analysis reading the database, on one world (built once: it takes seconds)."""
    differing, empty = [], []
    for name in sorted(DATABASE_ANALYSES):
        duck, spark = _both(name, cluster_con, store_dir=usage_store, db=orders_db)
        if len(duck) == 0 and name not in MAY_BE_EMPTY:
            empty.append(name)
        if _canonical(spark) != _canonical(duck):
            differing.append(f"{name}:\n  duckdb {_canonical(duck)}\n  spark  {_canonical(spark)}")
    assert not empty, f"no rows to compare: {empty}"
    assert not differing, "\n".join(differing)
    placed = engine.run("orders_day_plan", engine.connect(), db=orders_db, actor="analyst")
    assert int(placed["orders"].sum()) == 9  # the two agents' orders and the seven direct ones


def test_spark_local_and_duckdb_agree(usage_store, monkeypatch):
    _spark_or_skip()
    monkeypatch.setenv(engine.ENGINE_VARIABLE, "local[2]")
    con = engine.connect()
    assert con._session.sparkContext.master == "local[2]"
    for name in ("day_region", "hour_profile", "topups_day_channel"):
        duck, spark = _both(name, con, store_dir=usage_store)
        assert _canonical(spark) == _canonical(duck), name
    _stop_spark_session()
