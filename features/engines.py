"""Where feature expressions run: DuckDB (the default) or PySpark, through Ibis.

The feature modules write Ibis expressions over the four contract tables; this module connects
an engine, hands it a `Shop` as Ibis tables, and holds the time arithmetic every expression
shares, so that DuckDB and Spark count seconds and days the same way:

- a row's time is its UTC epoch second, truncated to a whole second (both engines truncate);
- a day is a UTC calendar day (`epoch_second // 86400`);
- `as_of` is exclusive: rows dated strictly before it are used, the filter sits inside the
  expressions, so a warehouse holding later rows gives the same answer.

Both engines are switched to UTC for the session (DuckDB `SET TimeZone`, Spark
`spark.sql.session.timeZone`), because both convert zoned timestamps through the session zone.
"""

from __future__ import annotations

import functools
import os
import sys
import uuid
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa

from features.shop import Shop

if TYPE_CHECKING:  # pyspark is optional and slow to import
    from pyspark.sql import SparkSession

ENGINES = ("duckdb", "spark")
SECONDS_PER_DAY = 86_400

_ID = pa.string()
_TIME = pa.timestamp("us", tz="UTC")
# The columns (and Arrow types) each contract table has once handed to an engine; optional
# columns the shop lacks are added as all-missing so that every expression can rely on them.
SHOP_SCHEMAS: dict[str, pa.Schema] = {
    "purchases": pa.schema(
        [
            ("order_id", _ID),
            ("customer_id", _ID),
            ("item_id", _ID),
            ("quantity", pa.int64()),
            ("unit_price", pa.float64()),
            ("ordered_at", _TIME),
            ("channel", pa.string()),
        ]
    ),
    "feedback": pa.schema(
        [
            ("customer_id", _ID),
            ("created_at", _TIME),
            ("kind", pa.string()),
            ("item_id", _ID),
            ("order_id", _ID),
            ("rating", pa.int64()),
        ]
    ),
    "items": pa.schema([("item_id", _ID), ("category", pa.string())]),
    "customers": pa.schema([("customer_id", _ID), ("signed_up_at", _TIME)]),
}


@dataclass(frozen=True)
class ShopTables:
    """The contract tables as Ibis tables on one engine (columns as in `SHOP_SCHEMAS`)."""

    purchases: ir.Table
    feedback: ir.Table
    items: ir.Table
    customers: ir.Table


def as_of_utc(as_of: pd.Timestamp | str) -> pd.Timestamp:
    """`as_of` as a timezone-aware UTC Timestamp; a naive value is read as UTC.

    Raises ValueError when it cannot be read as a time."""
    try:
        stamp = pd.Timestamp(as_of)
    except (TypeError, ValueError) as error:
        raise ValueError(f"as_of must be a time like 2025-06-01T00:00Z, got {as_of!r}") from error
    if stamp is pd.NaT:
        raise ValueError("as_of must be a time, got a missing value (NaT)")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def as_of_second(as_of: pd.Timestamp) -> int:
    """`as_of` as a whole UTC epoch second (truncated, like the rows' times)."""
    return int(as_of.value // 1_000_000_000)


def last_day_before(as_of: pd.Timestamp) -> int:
    """The UTC day number (days since 1970-01-01) of the last day with any time before `as_of`.

    For `as_of` at midnight this is the day before; this is the observation-period end of the
    buy-till-you-die summaries (lifetimes' `observation_period_end`)."""
    return int((as_of.value - 1) // (SECONDS_PER_DAY * 1_000_000_000))


def epoch_second(column: ir.TimestampValue) -> ir.IntegerValue:
    """A timestamp column as whole UTC epoch seconds (int64), the same on DuckDB and Spark."""
    return column.epoch_seconds().cast("int64")


def before(column: ir.TimestampValue, as_of: pd.Timestamp) -> ir.BooleanValue:
    """True for rows dated strictly before `as_of` (the point-in-time filter)."""
    return column < ibis.literal(as_of.to_pydatetime(), type="timestamp('UTC')")


DUCKDB_THREADS = 1
"""DuckDB threads for feature queries; more than one makes float sums order-dependent."""


def connect(engine: str = "duckdb", connection: Any = None) -> ibis.BaseBackend:
    """An Ibis backend for `engine` ("duckdb" or "spark"), switched to UTC.

    `connection` may be: None (DuckDB in memory; Spark: a local[2] session, see
    `local_spark_session`), an Ibis backend, a DuckDB database file path, or a SparkSession.
    Raises ValueError for an unknown engine or a connection of the wrong kind."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "duckdb":
        if connection is None or isinstance(connection, str | Path):
            backend = ibis.duckdb.connect(str(connection) if connection else ":memory:")
            # every feature query ends in ORDER BY; keeping scan order only costs memory
            backend.raw_sql("SET preserve_insertion_order = false")
            # Parallel float sums add in a thread-dependent order: last-bit differences (seen:
            # 2.8e-14 in btyd_monetary_value) flip tree splits, so the same data and seed gave
            # different churn models. One thread makes features bit-for-bit reproducible.
            backend.raw_sql(f"SET threads = {DUCKDB_THREADS}")
        elif getattr(connection, "name", None) == "duckdb":
            backend = connection
        else:
            raise ValueError(
                "for engine duckdb, connection must be None, a database file path or an Ibis "
                f"DuckDB backend, got {type(connection).__name__}"
            )
        backend.raw_sql("SET TimeZone = 'UTC'")
        return backend
    if getattr(connection, "name", None) == "pyspark":
        session = connection._session
        backend = connection
    else:
        session = connection if connection is not None else local_spark_session()
        if type(session).__name__ != "SparkSession":
            raise ValueError(
                "for engine spark, connection must be None, a SparkSession or an Ibis PySpark "
                f"backend, got {type(connection).__name__}"
            )
        backend = ibis.pyspark.connect(session)
    session.conf.set("spark.sql.session.timeZone", "UTC")
    return backend


def _spark_session_class() -> Any:
    """pyspark's SparkSession; ImportError naming the extra when pyspark is not installed."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as error:
        raise ImportError(
            "the spark engine needs pyspark: pip install 'patronage[spark]' (and Java 17)"
        ) from error
    return SparkSession


def command_spark_session() -> SparkSession:
    """The SparkSession a command runs on: under `spark-submit`, the one spark-submit set up
    (its --master and --conf are kept, only the session time zone is set to UTC); otherwise
    `local_spark_session()`. Raises ImportError as `local_spark_session`."""
    session_class = _spark_session_class()
    if "PYSPARK_GATEWAY_PORT" in os.environ:  # set by spark-submit for the driver it starts
        session = session_class.builder.getOrCreate()
        session.conf.set("spark.sql.session.timeZone", "UTC")
    else:
        session = local_spark_session()
    session.sparkContext.setLogLevel("ERROR")
    return session  # type: ignore[no-any-return]


def local_spark_session(cores: int = 2, shuffle_partitions: int = 2) -> SparkSession:
    """A small local SparkSession (UI off, UTC, few shuffle partitions); reused if one exists.

    Its Python workers (pandas UDFs, e.g. scoring) run this interpreter unless PYSPARK_PYTHON
    names another. Needs pyspark (the `spark` extra) and Java 17; raises ImportError naming
    the extra."""
    session_class = _spark_session_class()
    # pyspark reads the workers' interpreter from this variable when the context starts (its
    # default, `python3` on PATH, may lack pandas and Patronage)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # the JVM (started by the first session) then binds to loopback, not the host's interface
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    return (  # type: ignore[no-any-return]
        session_class.builder.master(f"local[{cores}]")
        .appName("patronage")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.default.parallelism", str(shuffle_partitions))
        .config("spark.ui.enabled", "false")
        # everything stays on this machine: the driver listens on loopback only
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        # adaptive re-planning costs more than it saves on one machine's worth of data
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )


def shop_tables(shop: Shop) -> ShopTables:
    """The shop's tables as Ibis in-memory tables, usable on any engine.

    Columns are cast to `SHOP_SCHEMAS` (Arrow, zero-copy where the pandas types already match);
    optional columns the shop lacks become all-missing. Raises ValueError naming a missing
    required column."""
    return ShopTables(
        **{
            name: ibis.memtable(contract_arrow_table(getattr(shop, name), name))
            for name in SHOP_SCHEMAS
        }
    )


@contextmanager
def spark_shop_tables(backend: ibis.BaseBackend, shop: Shop) -> Iterator[ShopTables]:
    """The shop's tables as cached temporary views of a PySpark backend, for one block.

    Cached, so the many sub-queries of a feature table do not convert them again; the views
    are dropped and the cache released on exit. Raises ValueError as `shop_tables`."""
    session = backend._session  # type: ignore[attr-defined]
    prefix = f"patronage_{uuid.uuid4().hex[:12]}"
    frames = {}
    try:
        for name in SHOP_SCHEMAS:
            frames[name] = session.createDataFrame(
                contract_arrow_table(getattr(shop, name), name)
            ).cache()
            frames[name].createOrReplaceTempView(f"{prefix}_{name}")
        yield ShopTables(**{name: backend.table(f"{prefix}_{name}") for name in SHOP_SCHEMAS})
    finally:
        for name, frame in frames.items():
            session.catalog.dropTempView(f"{prefix}_{name}")
            frame.unpersist()


UNBOUND_NAMES = {name: f"patronage_shop_{name}" for name in SHOP_SCHEMAS}
"""Names of the shop's tables inside a DuckDB connection while a feature query runs."""


def unbound_shop_tables() -> ShopTables:
    """The contract tables as unbound Ibis tables (named `UNBOUND_NAMES`), for compiling SQL."""
    return ShopTables(
        **{
            name: ibis.table(ibis.Schema.from_pyarrow(schema), name=UNBOUND_NAMES[name])
            for name, schema in SHOP_SCHEMAS.items()
        }
    )


@functools.lru_cache(maxsize=64)
def duckdb_sql(builder: Callable[..., ir.Table], *arguments: Hashable) -> str:
    """DuckDB SQL of `builder(unbound_shop_tables(), *arguments)`, cached per arguments.

    Building and compiling a feature expression costs a few tenths of a second in Ibis, more
    than running it on a small shop; repeated calls (tests, scoring batches) reuse the SQL."""
    return ibis.to_sql(builder(unbound_shop_tables(), *arguments), dialect="duckdb")


@contextmanager
def registered_shop(
    backend: ibis.BaseBackend, shop: Shop
) -> Iterator[Callable[[str], pd.DataFrame]]:
    """Register the shop's tables (Arrow, zero-copy) in a DuckDB backend under `UNBOUND_NAMES`
    for the duration of the block; yields a function running SQL there into a DataFrame.

    The registrations are temporary views of this connection only and are removed on exit;
    do not run two feature computations on one connection at the same time."""
    connection = backend.con
    arrow = {name: contract_arrow_table(getattr(shop, name), name) for name in SHOP_SCHEMAS}
    for name, table in arrow.items():
        connection.register(UNBOUND_NAMES[name], table)

    def run(sql: str) -> pd.DataFrame:
        return connection.sql(sql).to_arrow_table().to_pandas()

    try:
        yield run
    finally:
        for name in arrow:
            connection.unregister(UNBOUND_NAMES[name])


@contextmanager
def shop_queries(backend: ibis.BaseBackend, shop: Shop) -> Iterator[Callable[..., pd.DataFrame]]:
    """The shop's tables on `backend` for one block; yields `query(builder, *arguments)`, which
    runs `builder(tables, *arguments)` (an Ibis expression over `ShopTables`) and returns a
    DataFrame with a fresh index.

    On DuckDB the tables are registered (`registered_shop`) and the expression runs as its
    cached SQL (`duckdb_sql`: `arguments` must be hashable); on Spark they are cached
    temporary views (`spark_shop_tables`). Raises ValueError as `shop_tables`."""
    if backend.name == "duckdb":
        with registered_shop(backend, shop) as run:
            yield lambda builder, *arguments: run(duckdb_sql(builder, *arguments))
    else:
        with spark_shop_tables(backend, shop) as tables:
            yield lambda builder, *arguments: execute(backend, builder(tables, *arguments))


def execute(backend: ibis.BaseBackend, expression: ir.Table) -> pd.DataFrame:
    """Run `expression` on `backend` and return a pandas DataFrame with a fresh index."""
    return backend.execute(expression).reset_index(drop=True)


def contract_arrow_table(frame: pd.DataFrame, name: str) -> pa.Table:
    """One contract table (`name`) as Arrow with exactly the columns and types of `SHOP_SCHEMAS`.

    Use it to load a shop into a warehouse that `customer_feature_table` then reads. Optional
    columns the frame lacks become all-missing; ids of another type become text. Raises
    ValueError naming a missing required column."""
    schema = SHOP_SCHEMAS[name]
    required = {
        "purchases": ("order_id", "customer_id", "item_id", "quantity", "ordered_at"),
        "feedback": ("customer_id", "created_at", "kind"),
        "items": ("item_id",),
        "customers": ("customer_id",),
    }[name]
    missing = [column for column in required if column not in frame.columns]
    if missing and not (name in ("feedback", "customers", "items") and frame.empty):
        raise ValueError(f"the {name} table lacks required column(s) {', '.join(missing)}")
    arrays = []
    for field in schema:
        if field.name in frame.columns and len(frame):
            arrays.append(_arrow_column(frame[field.name], field))
        else:
            arrays.append(pa.nulls(len(frame), type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _arrow_column(values: pd.Series, field: pa.Field) -> pa.Array:
    """One column converted to the field's Arrow type (timestamps to UTC microseconds)."""
    if pa.types.is_timestamp(field.type):
        stamps = pd.to_datetime(values, utc=True)
        return pa.array(stamps.dt.tz_convert("UTC").astype("datetime64[us, UTC]"), type=field.type)
    if field.type == pa.string():
        # canonical ids are str already (zero-copy); other types (e.g. int ids) become text
        array = pa.array(values, from_pandas=True)
        if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
            array = pa.array(values.astype("string"), from_pandas=True)
        return array.cast(pa.string())
    return pa.array(values, type=field.type, from_pandas=True)
