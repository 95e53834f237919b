"""One query layer, two engines: analyses written once as Ibis expressions, run on DuckDB or Spark.

The engine is chosen by ``HKOPS_ANALYTICS`` (or the ``setting`` argument of :func:`connect`):

=====================  =================================================================
``duckdb`` (default)   embedded DuckDB in this process, all cores
``local[N]``           Spark in this process with N worker threads (``local[*]``: all cores)
``spark://HOST:PORT``  a Spark standalone cluster; its port is probed first, so a master
                       that does not answer fails within seconds instead of hanging
=====================  =================================================================

The data:

- :func:`usage_table`: the Parquet usage store (``records``, ``topups`` or ``cards``, what
  :func:`hkops.network.usage.generate_usage` writes) as an Ibis table (:func:`store_tables`: all three). The store is
  ``HKOPS_USAGE_STORE`` when set (a local folder, a shared NFS path, or for Spark an
  ``hdfs://`` / ``s3a://`` URI every executor can read), else ``data/usage``. Each local
  file's schema is checked from its Parquet footer: a file with a missing column or a
  column of the wrong type is refused by name (a warning, or an error with ``strict=True``)
  and the rest of the store stays readable.
- :func:`state_table`: a table of the hkops database (orders, sims, numbers, ...) read
  through hkops (SQLAlchemy) into Arrow and registered in the engine, so no database
  extension has to be downloaded. Only :func:`readable_columns` are read (never secrets or
  personal data); with ``scoped=True`` an agent user gets only its subtree's rows (orders,
  commission entries, its orders' audit events, its locations' stock: :data:`AGENT_SCOPED_TABLES`),
  else it is refused.

Every analysis of hkops (usage statistics, sales, planning, forecasts' series) reads through
these functions, on one connection its caller may pass as ``con``.

Analyses are pure functions from Ibis tables to an Ibis expression (see
:mod:`hkops.analytics.queries`), registered in :data:`ANALYSES`; :func:`execute` runs one
and returns a pandas DataFrame. The same function gives the same result on both engines.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from hkops.errors import HkopsError, InvalidValue, InvalidValues

if TYPE_CHECKING:  # pragma: no cover
    import ibis.expr.types as ir
    import pandas as pd

    from hkops.store.engine import Store

#: The environment variables this module reads.
ENGINE_VARIABLE = "HKOPS_ANALYTICS"
STORE_VARIABLE = "HKOPS_USAGE_STORE"
#: Seconds to wait for a Spark master's port to answer before giving up.
SPARK_PROBE_TIMEOUT_S = 3.0
#: Seconds a probed master has to stay silent (a Spark server never answers the probe's frame).
SPARK_REPLY_WAIT_S = 1.0
#: Spark's network message type of an RPC response (org.apache.spark.network.protocol.Message.Type).
_RPC_RESPONSE = 4
#: Spark settings hkops starts a session with (overridden by ``HKOPS_SPARK_CONF``: ``key=value,key=value``).
SPARK_DEFAULTS = {
    "spark.ui.enabled": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "16",
    "spark.sql.ansi.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}

_LOCAL = re.compile(r"^local(\[(\d+|\*)\])?$")
_MASTER = re.compile(r"^spark://(?P<host>[^:/\s]+):(?P<port>\d{1,5})$")

# name → function(tables) returning an Ibis expression; filled by hkops.analytics.queries.
ANALYSES: dict[str, Callable[..., "ir.Table"]] = {}


class EngineUnavailable(HkopsError):
    """The analytics engine named by the setting cannot be reached or started."""


def analysis(name: str):
    """Register ``function`` in :data:`ANALYSES` under ``name`` (a decorator).

    An analysis takes keyword arguments named after the tables it reads (``usage``,
    ``topups``, ``orders``, ...), each an Ibis table, and returns an Ibis expression.
    """

    def register(function):
        ANALYSES[name] = function
        return function

    return register


# --- engines ---------------------------------------------------------------------------

def engine_setting(setting: str | None = None) -> str:
    """The engine setting in force: ``setting``, else ``HKOPS_ANALYTICS``, else ``duckdb``; validated."""
    value = (setting if setting is not None else os.environ.get(ENGINE_VARIABLE, "")).strip() or "duckdb"
    if value == "duckdb" or _LOCAL.match(value) or _MASTER.match(value):
        return value
    raise InvalidValue(ENGINE_VARIABLE, value, "must be duckdb, local[N] (Spark in this process) "
                                               "or spark://HOST:PORT (a Spark standalone master)")


def connect(setting: str | None = None, *, threads: int | None = None):
    """An Ibis backend for the engine ``setting`` names (see the module text for the values).

    ``threads`` caps DuckDB's threads (default: all cores). Raises :class:`InvalidValue` for an
    unknown setting and :class:`EngineUnavailable` when Spark cannot be reached or started.
    """
    value = engine_setting(setting)
    if value == "duckdb":
        import ibis

        con = ibis.duckdb.connect()
        if threads:
            con.raw_sql(f"SET threads = {int(threads)}")
        return con
    return _spark(value)


def _probe_master(master: str) -> str:
    """Check that a Spark master answers at ``master``; the local address that reaches it (for the driver).

    Spark's own client would retry for a minute. The probe connects with a timeout, then sends a
    frame a Spark server ignores (a reply to an RPC it never made): a Spark master stays silent,
    while another service on that port (a web UI, a proxy) answers and is refused by name.
    """
    match = _MASTER.match(master)
    host, port = match["host"], int(match["port"])
    try:
        with socket.create_connection((host, port), timeout=SPARK_PROBE_TIMEOUT_S) as probe:
            local = probe.getsockname()[0]
            probe.sendall(struct.pack(">qbqi", 21, _RPC_RESPONSE, -1, 0))
            probe.settimeout(SPARK_REPLY_WAIT_S)
            try:
                reply = probe.recv(80)
            except (TimeoutError, ConnectionError):
                reply = b""
    except OSError as error:
        reason = "timed out" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise EngineUnavailable(
            f"{ENGINE_VARIABLE}={master}: the Spark master at {host}:{port} does not answer "
            f"({reason} within {SPARK_PROBE_TIMEOUT_S:g} s); start it or set {ENGINE_VARIABLE}=duckdb") from None
    if reply:
        shown = reply.split(b"\r\n", 1)[0][:60].decode("latin-1")
        raise EngineUnavailable(
            f"{ENGINE_VARIABLE}={master}: the Spark master at {host}:{port} does not answer: another service "
            f"replied ({shown!r}); a master listens on its RPC port (7077 by default, not its web UI's 8080), "
            f"or set {ENGINE_VARIABLE}=duckdb")
    return local


def _spark_conf() -> dict[str, str]:
    conf = dict(SPARK_DEFAULTS)
    extra = os.environ.get("HKOPS_SPARK_CONF", "").strip()
    for item in filter(None, (part.strip() for part in extra.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidValue("HKOPS_SPARK_CONF", item, "must be key=value pairs separated by commas")
        conf[key.strip()] = value.strip()
    return conf


def _spark(master: str):
    driver_host = _probe_master(master) if master.startswith("spark://") else None
    try:
        import ibis
        from pyspark.sql import SparkSession
    except ImportError:
        raise EngineUnavailable(f"{ENGINE_VARIABLE}={master} needs PySpark: pip install 'hkops[spark]'") from None
    active = SparkSession.getActiveSession()
    if active is not None and active.sparkContext.master != master:
        active.stop()  # a process has one SparkContext: switching engines replaces it
    builder = SparkSession.builder.master(master).appName("hkops")
    for key, value in _spark_conf().items():
        builder = builder.config(key, value)
    if driver_host is not None:
        # Executors connect back to the driver: use the address that reached the master.
        builder = builder.config("spark.driver.host", driver_host)
        builder = builder.config("spark.pyspark.python", sys.executable)
    try:
        session = builder.getOrCreate()
    except Exception as error:  # the JVM did not start: no Java, or a refused application
        raise EngineUnavailable(f"{ENGINE_VARIABLE}={master}: Spark did not start ({str(error).splitlines()[0]}); "
                                "it needs Java 17 or newer on PATH or JAVA_HOME") from None
    session.sparkContext.setLogLevel("ERROR")
    return ibis.pyspark.connect(session)


def is_spark(con) -> bool:
    """Whether ``con`` is a Spark backend."""
    return con.name == "pyspark"


def execute(expr, *, days: bool = False) -> "pd.DataFrame":
    """Run an Ibis expression on its backend; a pandas DataFrame (date columns as datetime64, on
    every engine). ``days=True``: date columns hold ``datetime.date`` values instead, for callers
    that compare them with days (sales, planning, forecasts)."""
    import pandas as pd

    frame = expr.to_pandas()
    for name, dtype in expr.schema().items():
        if days and dtype.is_date() and len(frame):
            frame[name] = [None if pd.isna(v) else pd.Timestamp(v).date() for v in frame[name]]
    return frame


# --- the Parquet usage store -----------------------------------------------------------

def _string(dtype) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype)


#: The datasets of the usage store; ``cards`` is one file, the others one folder per local day.
DATASETS = ("records", "topups", "cards")


def _expected(dataset: str):
    from hkops.network.usage import CARD_SCHEMA, RECORD_SCHEMA, TOPUP_SCHEMA

    try:
        return {"records": RECORD_SCHEMA, "topups": TOPUP_SCHEMA, "cards": CARD_SCHEMA}[dataset]
    except KeyError:
        raise InvalidValue("dataset", dataset, f"must be one of {', '.join(DATASETS)}") from None


def _pattern(dataset: str) -> str:
    return "*.parquet" if dataset == "cards" else "day=*/*.parquet"


def _compatible(expected, found) -> bool:
    import pyarrow as pa

    if _string(expected):
        return _string(found)
    if pa.types.is_timestamp(expected):
        return pa.types.is_timestamp(found) and found.tz is not None
    return expected == found


class UsageFileRefused(UserWarning):
    """A file of the usage store was left out (missing column, wrong type, not Parquet)."""


@dataclass
class StoreScan:
    """The files of one dataset of the usage store: those that can be read, and those refused."""

    root: str
    dataset: str
    files: list[str] = field(default_factory=list)
    #: (file, column, reason) of every refused file.
    refused: list[tuple[str, str, str]] = field(default_factory=list)

    def problems(self) -> list[InvalidValue]:
        """One :class:`InvalidValue` per refused file, naming the file and the column."""
        return [InvalidValue(column, path, reason) for path, column, reason in self.refused]


def is_uri(location: str) -> bool:
    """Whether the usage store ``location`` is a URI a cluster reads (``hdfs://``, ``s3a://``), not a local folder."""
    return "://" in location and not location.startswith("file://")


def store_location(store_dir: str | Path | None = None) -> str:
    """Where the usage store is: ``store_dir``, else ``HKOPS_USAGE_STORE``, else ``data/usage``."""
    if store_dir is not None:
        return str(store_dir)
    from_env = os.environ.get(STORE_VARIABLE, "").strip()
    if from_env:
        return from_env
    from hkops import config

    return str(Path(config.DATA_DIR) / "usage")


def scan_store(store_dir: str | Path | None = None, dataset: str = "records") -> StoreScan:
    """Check every Parquet file of ``dataset`` (``records``, ``topups`` or ``cards``) from its footer only.

    A file lacking a column of the dataset's schema, holding one of another type, or not
    readable as Parquet is refused with the column and the reason; extra columns are allowed.
    """
    import pyarrow.parquet as pq

    expected = _expected(dataset)
    root = Path(store_location(store_dir).removeprefix("file://")) / dataset
    scan = StoreScan(root=str(root), dataset=dataset)
    for path in sorted(root.glob(_pattern(dataset))):
        try:
            found = pq.read_schema(path)
        except Exception as error:  # not Parquet, truncated: refused like a bad column
            scan.refused.append((str(path), "file", f"is not a readable Parquet file ({error})"))
            continue
        for column in expected:
            index = found.get_field_index(column.name)
            if index < 0:
                scan.refused.append((str(path), column.name, f"missing column {column.name}"))
                break
            if not _compatible(column.type, found.field(index).type):
                scan.refused.append((str(path), column.name, f"column {column.name} is {found.field(index).type}, "
                                                              f"expected {column.type}"))
                break
        else:
            scan.files.append(str(path))
    return scan


def usage_table(con, store_dir: str | Path | None = None, dataset: str = "records", *, strict: bool = False):
    """The usage store's ``dataset`` (``records``, ``topups`` or ``cards``) as an Ibis table on ``con``.

    Columns as :data:`hkops.network.usage.RECORD_SCHEMA` / ``TOPUP_SCHEMA`` / ``CARD_SCHEMA``,
    strings plain, plus for records and top-ups ``day`` (date, the Asia/Shanghai business day of
    the partition). Local files are
    checked first (:func:`scan_store`): refused files are left out with a warning naming each
    file and column (``strict=True``: :class:`hkops.errors.InvalidValues` instead). A URI
    (``hdfs://``, ``s3a://``, on Spark) is read as it is, without the per-file check.
    """
    import ibis

    expected = _expected(dataset)
    location = store_location(store_dir)
    if is_uri(location):
        if not is_spark(con):
            raise InvalidValue(STORE_VARIABLE, location, "a URI store is read by Spark only; "
                                                         f"set {ENGINE_VARIABLE}=spark://HOST:PORT or use a local path")
        root = location.rstrip("/") + "/" + dataset
        files = [root]
    else:
        scan = scan_store(location, dataset)
        if scan.refused:
            if strict:
                raise InvalidValues(f"usage store {scan.root}", scan.problems())
            for path, _, reason in scan.refused:
                warnings.warn(f"usage file {path} left out: {reason}", UsageFileRefused, stacklevel=2)
        if not scan.files:
            layout = "part-0.parquet" if dataset == "cards" else "day=YYYY-MM-DD/*.parquet"
            readable = "readable " if scan.refused else ""
            raise InvalidValue("usage store", location, f"holds no {readable}{dataset} "
                                                        f"(expected {scan.root}/{layout}); "
                                                        "run `hkops usage generate`")
        root, files = scan.root, scan.files
    name = ibis.util.gen_name(f"usage_{dataset}")
    if is_spark(con):
        frame = con._session.read.option("basePath", root).parquet(*files)
        frame.createOrReplaceTempView(name)
        table = con.table(name)
    else:
        table = con.read_parquet(files, table_name=name, hive_partitioning=dataset != "cards")
    wanted = [c.name for c in expected] + ([] if dataset == "cards" else ["day"])
    if dataset != "cards" and not table["day"].type().is_date():
        table = table.mutate(day=table["day"].cast("date"))  # DuckDB and Spark infer the partition's type differently
    # a projection only where the files hold more: each layer costs Ibis time to compile
    return table if list(table.columns) == wanted else table.select(*wanted)


def has_dataset(store_dir: str | Path | None, dataset: str) -> bool:
    """Whether the usage store holds any file of ``dataset`` (a URI store: assumed so for records only)."""
    location = store_location(store_dir)
    if is_uri(location):
        return dataset == "records"
    return any((Path(location.removeprefix("file://")) / dataset).glob(_pattern(dataset)))


def store_tables(store_dir: str | Path | None = None, *, con=None, strict: bool = False) -> dict:
    """The usage store's datasets as Ibis tables on ``con`` (default: :func:`connect`): ``records``
    (required), and ``topups`` and ``cards`` when the store has them (see :func:`usage_table`)."""
    con = con if con is not None else connect()
    tables = {"records": usage_table(con, store_dir, "records", strict=strict)}
    for dataset in ("topups", "cards"):
        if has_dataset(store_dir, dataset):
            tables[dataset] = usage_table(con, store_dir, dataset, strict=strict)
    return tables


# --- hkops database tables -------------------------------------------------------------

#: Hours from UTC to Asia/Shanghai (no daylight saving): analyses shift UTC times by it for local days.
LOCAL_OFFSET_H = 8

#: The columns an analysis may read of the tables listed (no personal data: names, resident IDs,
#: contacts, addresses); the other tables are read whole but for :func:`_hidden` columns.
READABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "orders": ("id", "number", "channel", "agent_id", "plan", "product", "carrier", "state", "location",
               "ship_province", "price_fen", "vanity_fee_fen", "prepay_fen", "total_fen", "min_monthly_fen",
               "first_topup_fen", "created_at", "changed_at"),
    "audit_log": ("id", "at", "entity", "subject", "action", "from_state", "to_state"),
    "agents": ("id", "code", "parent_id", "level", "price_level", "location", "province", "active", "created_at"),
    "stock_locations": ("code", "kind", "province", "agent_id"),
    "stock_moves": ("id", "iccid", "from_location", "to_location", "kind", "at"),
    "commission_entries": ("id", "order_id", "order_number", "event", "month", "agent_id", "kind", "amount_fen",
                           "event_at", "state"),
    "numbers": ("msisdn", "state", "grade", "level", "price_fen", "reserved_until", "quarantine_until",
                "changed_at"),
    "number_blocks": ("prefix", "carrier", "province", "city", "created_at"),
    "plans": ("code", "name", "carrier", "monthly_fee_fen", "data_mb", "voice_minutes", "sms",
              "overage_data_fen_per_gb", "overage_voice_fen_per_min", "overage_sms_fen", "contract_months",
              "first_topup_fen", "active"),
}
#: Personal columns never read from any table (beside secrets ``*_enc`` and hashes ``*_hash``).
_PERSONAL_COLUMNS = {"customer_name", "contact", "contact_name", "contact_phone", "address", "ship_address",
                     "id_masked", "password", "holder", "last_holder"}
#: Tables whose ``name`` column names a person.
_NAMED_PEOPLE = {"subscribers", "users"}
#: Tables an agent user sees only its own subtree's rows of: those with an ``agent_id``, the
#: audit trail's events of its orders, the stock moves and locations of its agents' locations.
AGENT_SCOPED_TABLES = ("orders", "commission_entries", "audit_log", "stock_moves", "stock_locations")


def _subtree_rows(table, agent_ids):
    """The condition keeping the rows of ``table`` (one of :data:`AGENT_SCOPED_TABLES`) that
    belong to the agents ``agent_ids`` (a SELECT of ids: ``agents.service.scope_query``)."""
    from sqlalchemy import or_, select

    from hkops.agents.tables import agents
    from hkops.orders.tables import orders

    if "agent_id" in table.c:
        return table.c.agent_id.in_(agent_ids)
    if table.name == "audit_log":
        return (table.c.entity == "order") & table.c.subject.in_(
            select(orders.c.number).where(orders.c.agent_id.in_(agent_ids)))
    locations = select(agents.c.location).where(agents.c.id.in_(agent_ids))
    if table.name == "stock_moves":
        return or_(table.c.from_location.in_(locations), table.c.to_location.in_(locations))
    return table.c.code.in_(locations)


def _hidden(table_name: str, column: str) -> bool:
    if column.endswith("_enc") or column.endswith("_hash") or column in _PERSONAL_COLUMNS:
        return True
    return column == "name" and table_name in _NAMED_PEOPLE


def readable_columns(name: str) -> list[str]:
    """The columns of the hkops table ``name`` an analysis may read: :data:`READABLE_COLUMNS` for the
    tables listed there, else every column; never secrets or personal data."""
    table = state_tables()[name]
    wanted = READABLE_COLUMNS.get(name, tuple(table.columns.keys()))
    return [column for column in wanted if not _hidden(name, column)]


def state_tables() -> dict:
    """The hkops database tables :func:`state_table` can register, by name."""
    from hkops.store.tables import metadata

    refused = {"users", "user_tokens", "subscriber_keys", "id_blacklist"}
    return {name: table for name, table in metadata.tables.items() if name not in refused}


def _arrow_type(column):
    import pyarrow as pa
    from sqlalchemy import BigInteger, Boolean, Date, Integer, SmallInteger

    from hkops.store.schema import UTCDateTime

    kind = column.type
    if isinstance(kind, UTCDateTime):
        return pa.timestamp("us", tz="UTC")
    if isinstance(kind, Boolean):
        return pa.bool_()
    if isinstance(kind, Date):
        return pa.date32()
    if isinstance(kind, (BigInteger, Integer, SmallInteger)):
        return pa.int64()
    return pa.string()


def state_arrow(db: "Store", name: str, *, actor=None, scoped: bool = False):
    """The hkops table ``name`` as an Arrow table, only its :func:`readable_columns`.

    Needs ``analytics.read``. An agent user is refused, unless ``scoped``: then it gets only its
    subtree's rows of :data:`AGENT_SCOPED_TABLES` (the other tables whole: agents, plans).
    """
    import pyarrow as pa
    from sqlalchemy import select

    from hkops.agents.service import scope_query
    from hkops.security.access import require, require_whole

    what = f"read the whole {name} table for analysis"
    if scoped:
        require(actor, "analytics.read", what, db)
    else:
        require_whole(actor, "analytics.read", what, db, why="it sees its own subtree through the sales reports")
    agent_ids = scope_query(actor) if scoped else None  # a subquery: read in the same transaction
    tables = state_tables()
    if name not in tables:
        raise InvalidValue("table", name, f"must be one of {', '.join(sorted(tables))}")
    table = tables[name]
    columns = [table.c[column] for column in readable_columns(name)]
    schema = pa.schema([(c.name, _arrow_type(c)) for c in columns])
    statement = select(*columns)
    if agent_ids is not None and name in AGENT_SCOPED_TABLES:
        statement = statement.where(_subtree_rows(table, agent_ids))
    with db.read() as conn:
        rows = conn.execute(statement).all()
    data = list(zip(*rows)) if rows else [[] for _ in columns]
    arrays = []
    for column, values, kind in zip(columns, data, schema.types):
        if pa.types.is_string(kind):
            values = [None if v is None else str(v) for v in values]
        arrays.append(pa.array(values, type=kind))
    return pa.Table.from_arrays(arrays, schema=schema)


def state_table(con, db: "Store", name: str, *, actor=None, scoped: bool = False):
    """The hkops database table ``name`` (orders, sims, numbers, agents, plans, stock_moves, ...)
    registered in ``con`` and returned as an Ibis table; see :func:`state_arrow`."""
    import ibis

    data = state_arrow(db, name, actor=actor, scoped=scoped)
    view = ibis.util.gen_name(f"hkops_{name}")  # one view per read: a later read never changes this one
    if is_spark(con):
        con._session.createDataFrame(data).createOrReplaceTempView(view)
        return con.table(view)
    con.con.register(view, data)  # DuckDB reads the Arrow table in place
    return con.table(view)


def state_tables_of(con, db: "Store", names, *, actor=None, scoped: bool = True) -> dict:
    """:func:`state_table` of each of ``names`` on ``con``, by name (``scoped`` by default: an agent
    user gets its subtree's orders and commission entries)."""
    return {name: state_table(con, db, name, actor=actor, scoped=scoped) for name in names}


def tables_for(function: Callable, con, *, store_dir=None, db: "Store | None" = None, actor=None) -> dict:
    """The tables an analysis asks for by its parameter names: ``usage`` (records), ``topups``,
    ``cards`` (the usage store's), or a database table name (needs ``db``). Parameters with a
    default are options, not tables."""
    import inspect

    tables = {}
    for parameter, spec in inspect.signature(function).parameters.items():
        if spec.default is not inspect.Parameter.empty:
            continue  # an option of the analysis, not a table
        if parameter == "usage":
            tables[parameter] = usage_table(con, store_dir, "records")
        elif parameter in ("topups", "cards"):
            tables[parameter] = usage_table(con, store_dir, parameter)
        else:
            if db is None:
                raise InvalidValue("db", None, f"analysis {function.__name__} reads the {parameter} table: pass db")
            tables[parameter] = state_table(con, db, parameter, actor=actor)
    return tables


def run(name: str, con=None, *, store_dir=None, db: "Store | None" = None, actor=None) -> "pd.DataFrame":
    """Run the registered analysis ``name`` on ``con`` (default: :func:`connect`); a pandas DataFrame."""
    from hkops.analytics import queries  # noqa: F401  (registers the analyses)

    if name not in ANALYSES:
        raise InvalidValue("analysis", name, f"must be one of {', '.join(sorted(ANALYSES))}")
    con = con if con is not None else connect()
    function = ANALYSES[name]
    return execute(function(**tables_for(function, con, store_dir=store_dir, db=db, actor=actor)))
