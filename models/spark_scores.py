"""The CRM score table on Spark: a fitted `CustomerScorer` applied to every partition of a
Spark DataFrame of customer features, where the data lives.

`CustomerScorer.score` is row-wise once fitted (the BTYD models, the churn trees, the RFM
edges and the reasons' reference customer were all learned at `fit`), so scoring a partition
gives exactly the rows that scoring the whole table gives: `score_on_spark` runs the same
method on each Arrow batch (`mapInPandas`), and `collected_scores` brings the result back in
`patronage score`'s order and types. No second implementation of any score exists here.

pyspark is imported only by the functions that need it (the `spark` extra; Java 17).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import Any

import pandas as pd

from models.score_columns import SCORE_COLUMNS, SPEND_COLUMN

_TEXT_COLUMNS = ("customer_id", "churn_risk", "churn_reasons", "segment")
_TIME_COLUMNS = ("expected_next_order_at",)


def score_schema(value_horizon_days: float | None = None) -> str:
    """The Spark schema (DDL) of the score table: `SCORE_COLUMNS` (plus `SPEND_COLUMN` with a
    value horizon); text columns string, `expected_next_order_at` timestamp (UTC), the rest
    double."""
    columns = list(SCORE_COLUMNS) + ([SPEND_COLUMN] if value_horizon_days is not None else [])
    return ", ".join(f"{name} {_spark_type(name)}" for name in columns)


def _spark_type(column: str) -> str:
    if column in _TEXT_COLUMNS:
        return "string"
    return "timestamp" if column in _TIME_COLUMNS else "double"


def score_on_spark(
    scorer: Any,
    features: Any,
    as_of: pd.Timestamp | str,
    value_horizon_days: float | None = None,
) -> Any:
    """Score a Spark DataFrame of customer features (one row per customer, the columns of
    `features.customers.customer_feature_table`, e.g. from `spark_customer_frame`) with a
    fitted `CustomerScorer`; returns a Spark DataFrame with `score_schema(value_horizon_days)`,
    unsorted and not yet computed (Spark is lazy).

    The scorer travels to the executors inside the task (cloudpickle, as any Spark closure);
    each Arrow batch (`spark.sql.execution.arrow.maxRecordsPerBatch` rows, 10,000 by default)
    is scored by `CustomerScorer.score` at `as_of` (UTC). Raises ValueError when the scorer is
    not fitted or the horizon is not positive."""
    if not hasattr(scorer, "bgnbd_"):
        raise ValueError("the scorer is not fitted: call fit or load a saved scorer")
    if value_horizon_days is not None and not value_horizon_days > 0:
        raise ValueError(f"value_horizon_days must be positive, got {value_horizon_days}")
    from features.customers import COUNT_COLUMNS

    score_batches = functools.partial(
        _score_batches,
        scorer=scorer,
        count_columns=COUNT_COLUMNS,
        as_of=pd.Timestamp(as_of),
        value_horizon_days=value_horizon_days,
    )
    return features.mapInPandas(score_batches, schema=score_schema(value_horizon_days))


def _score_batches(
    batches: Iterable[pd.DataFrame],
    scorer: Any,
    count_columns: tuple[str, ...],
    as_of: pd.Timestamp,
    value_horizon_days: float | None,
) -> Iterator[pd.DataFrame]:
    """Runs on an executor: each batch of feature rows, in the canonical types (as
    `features.customers.canonical_customer_frame`, whose module, importing Ibis, the worker
    is spared), into score rows; empty batches are skipped."""
    from features.frames import canonical_frame

    for batch in batches:
        if len(batch):
            features = canonical_frame(batch, "customer_id", count_columns)
            yield scorer.score(features, as_of, value_horizon_days=value_horizon_days)


def collected_scores(scores: Any) -> pd.DataFrame:
    """A Spark score table (from `score_on_spark`) collected to the driver exactly as
    `CustomerScorer.score` returns it: sorted by customer_id (by pandas, as there),
    `expected_next_order_at` tz-aware UTC, text columns built as `score` builds them. Collect
    only what fits in the driver's memory; at scale write the Spark DataFrame out instead
    (docs/scale.md). Needs the session time zone UTC (`features.engines` sessions have it)."""
    collected = scores.toPandas()
    columns: dict[str, Any] = {}
    for column in collected.columns:
        if column in _TEXT_COLUMNS:
            # the DataFrame constructor infers the text type from Python objects, as in score
            columns[column] = collected[column].to_numpy(dtype=object)
        elif column in _TIME_COLUMNS:
            stamps = pd.to_datetime(collected[column])
            # Spark hands timestamps back as wall-clock times in the session zone (UTC)
            if stamps.dt.tz is None:
                stamps = stamps.dt.tz_localize("UTC")
            columns[column] = stamps.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
        else:
            columns[column] = collected[column].to_numpy()
    table = pd.DataFrame(columns)
    return table.sort_values("customer_id", ignore_index=True)
