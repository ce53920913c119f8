"""A shop's four contract tables in PostgreSQL: read them (through Ibis's PostgreSQL backend)
for the validator, and write a shop directory's accepted rows into a schema.

`read_database(url)` is what `features.loading.load_shop` calls for a
`postgresql://USER@HOST:PORT/DB?schema=SCHEMA` source: each table (or view) named like a
contract table is read whole, in a fixed order (its time column, then its columns in contract
order), as native values; the validator then applies the same rules as to files. Rows are named
by their key (`order_id=O1 item_id=I4`) since a database row has no line number.
`export_shop(directory, url)` writes a validated shop directory into a schema (typed columns,
primary keys on the contract's keys), which is how `patronage export-db` loads a shop.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract import TABLES, Column, Table
from features.postgres_url import DatabaseUrl, split_url
from features.validation_results import RawTable

if TYPE_CHECKING:
    import ibis

    from features.shop import Shop

ROW_KEYS: dict[str, tuple[str, ...]] = {
    "purchases": ("order_id", "item_id"),
    "feedback": ("customer_id", "created_at", "kind"),
    "items": ("item_id",),
    "customers": ("customer_id",),
}
"""The columns that name a database row in reports (the contract's key; feedback has none, so
its customer, time and kind)."""
SQL_TYPES = {
    "id": "text",
    "int": "bigint",
    "float": "double precision",
    "timestamp": "timestamptz",
    "text": "text",
    "bool": "boolean",
    "choice": "text",
    "id_list": "text[]",
}
"""The PostgreSQL type of a contract column of each kind (`export_shop`, the event store)."""


class DatabaseUnreadable(ValueError):
    """The database cannot be read as a shop (no server, no purchases table, a missing column)."""


@contextmanager
def ibis_connection(url: DatabaseUrl) -> Iterator[ibis.BaseBackend]:
    """Ibis's PostgreSQL backend on `url` (psycopg underneath); closed afterwards.

    Raises `DatabaseUnreadable` when the server cannot be reached."""
    import ibis
    import psycopg

    try:
        connection = psycopg.connect(url.conninfo, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as error:
        raise DatabaseUnreadable(f"cannot connect to {url.masked}: {error}") from error
    try:
        yield ibis.postgres.from_connection(connection)
    finally:
        connection.close()


def read_database(url_text: str) -> tuple[dict[str, RawTable], list[str]]:
    """Every contract table (or view) present in the URL's schema, as raw tables for the
    validator; notes list what was ignored. Raises `DatabaseUnreadable` when there is no
    purchases table or a required column is missing."""
    url = split_url(url_text)
    with ibis_connection(url) as backend:
        present = set(backend.list_tables(database=url.schema))
        if "purchases" not in present:
            raise DatabaseUnreadable(
                f"{url.masked}: no table or view named purchases in schema {url.schema}; "
                "the purchases table is required (see docs/data-contract.md, docs/postgresql.md)"
            )
        raw = {
            name: _read_table(backend, url, table)
            for name, table in TABLES.items()
            if name in present
        }
    return raw, []


def _read_table(backend: ibis.BaseBackend, url: DatabaseUrl, table: Table) -> RawTable:
    """One table, whole, ordered by its time column and then its contract columns."""
    expression = backend.table(table.name, database=url.schema)
    columns = list(expression.columns)
    missing = [name for name in table.required_columns if name not in columns]
    if missing:
        raise DatabaseUnreadable(
            f"{url.schema}.{table.name}: missing required column(s) {', '.join(missing)} "
            f"(found: {', '.join(columns) or 'none'}); see docs/data-contract.md"
        )
    order = [table.timestamp_column] if table.timestamp_column in columns else []
    order += [c.name for c in table.columns if c.name in columns and c.name not in order]
    arrow = expression.order_by(order).to_pyarrow()
    frame = _native_frame(arrow)
    return RawTable(
        table.name,
        frame,
        np.arange(1, len(frame) + 1),
        source=f"{url.schema}.{table.name}",
        row_name="row",
        key_columns=tuple(c for c in ROW_KEYS[table.name] if c in columns),
    )


def _native_frame(arrow: pa.Table) -> pd.DataFrame:
    """The table as pandas: decimals as float64 and dates as UTC midnight, so that the
    validator sees the kinds it reads from Parquet."""
    columns = []
    for field, column in zip(arrow.schema, arrow.columns, strict=True):
        if pa.types.is_decimal(field.type):
            column = column.cast(pa.float64())
        elif pa.types.is_date(field.type):
            column = column.cast(pa.timestamp("s", tz="UTC"))
        columns.append(column)
    return pa.table(columns, names=arrow.column_names).to_pandas()


def export_shop(shop: Shop, url_text: str, replace: bool = False) -> dict[str, int]:
    """Write the shop's four tables into the URL's schema (created if absent); returns the rows
    written per table. Refuses (DatabaseUnreadable) when a contract table already exists there,
    unless `replace` (then it is dropped first)."""
    import psycopg
    from psycopg import sql

    url = split_url(url_text)
    written: dict[str, int] = {}
    try:
        connection = psycopg.connect(url.conninfo, connect_timeout=10)
    except psycopg.OperationalError as error:
        raise DatabaseUnreadable(f"cannot connect to {url.masked}: {error}") from error
    with connection, connection.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(url.schema)))
        for name, table in TABLES.items():
            frame: pd.DataFrame = getattr(shop, name)
            target = sql.Identifier(url.schema, name)
            exists = cursor.execute("SELECT to_regclass(%s)", [f"{url.schema}.{name}"]).fetchone()
            if exists and exists[0] is not None:
                if not replace:
                    raise DatabaseUnreadable(
                        f"{url.schema}.{name} already exists in {url.masked}; "
                        "pass --replace to overwrite it"
                    )
                cursor.execute(sql.SQL("DROP TABLE {} CASCADE").format(target))
            cursor.execute(_create_table(target, table, list(frame.columns)))
            names = sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(target, names)
            with cursor.copy(copy_sql) as copy:
                for row in _python_rows(frame):
                    copy.write_row(row)
            written[name] = len(frame)
    return written


def _create_table(target: Any, table: Table, columns: list[str]) -> Any:
    """CREATE TABLE for the shop frame's columns: contract columns typed, extras as text."""
    from psycopg import sql

    kinds: dict[str, Column] = table.columns_by_name
    parts = [
        sql.SQL("{} {}").format(
            sql.Identifier(name), sql.SQL(SQL_TYPES[kinds[name].kind] if name in kinds else "text")
        )
        for name in columns
    ]
    if table.key:
        keys = sql.SQL(", ").join(sql.Identifier(c) for c in table.key)
        parts.append(sql.SQL("PRIMARY KEY ({})").format(keys))
    return sql.SQL("CREATE TABLE {} ({})").format(target, sql.SQL(", ").join(parts))


def _python_rows(frame: pd.DataFrame) -> Iterator[tuple[Any, ...]]:
    """Rows as Python values for COPY: missing values (NaN, NaT, NA) as None."""
    values = frame.astype(object).where(frame.notna(), None)
    yield from values.itertuples(index=False, name=None)
