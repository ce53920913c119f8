"""Spark batch scoring gives the numbers `patronage score` gives.

A real local[2] Spark (the session's `spark_session`, UI off, two shuffle partitions) and the
sample shop's registered churn champion (`trained_sample_store`): `patronage score --engine
spark` computes the features as Spark SQL and runs the champion's scorer on each partition;
its table must equal the DuckDB one to 1e-9 on every number and exactly on every text and time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.score_columns import SCORE_COLUMNS, SPEND_COLUMN
from tests.conftest import SAMPLE_SHOP_NAME, TrainedSampleStore

TOLERANCE = 1e-9
VALUE_HORIZON_DAYS = "30"


def largest_difference(duckdb_table: pd.DataFrame, spark_table: pd.DataFrame) -> float:
    """The largest absolute difference over the float columns (NaN in the same places, or
    infinity); asserts same columns, types, rows, texts and times first."""
    assert list(spark_table.columns) == list(duckdb_table.columns)
    assert spark_table.dtypes.equals(duckdb_table.dtypes)
    assert len(spark_table) == len(duckdb_table)
    largest = 0.0
    for column in duckdb_table.columns:
        left, right = duckdb_table[column], spark_table[column]
        if pd.api.types.is_float_dtype(left):
            left_values, right_values = left.to_numpy(), right.to_numpy()
            if not np.array_equal(np.isnan(left_values), np.isnan(right_values)):
                return float("inf")
            known = ~np.isnan(left_values)
            gaps = np.abs(left_values[known] - right_values[known])
            largest = max(largest, float(gaps.max(initial=0.0)))
        else:
            assert left.equals(right), column
    return largest


@pytest.fixture
def registry(trained_sample_store: TrainedSampleStore, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The trained store as the registry `patronage score` reads (read-only here)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_sample_store.tracking_uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    return trained_sample_store.shop_dir


def test_score_engine_spark_equals_patronage_score(
    registry: Path, spark_session: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from patronage.cli import main

    tables = {}
    for engine in ("duckdb", "spark"):
        out = tmp_path / f"{engine}.parquet"
        arguments = ["score", str(registry), "--shop", SAMPLE_SHOP_NAME, "--out", str(out)]
        arguments += ["--value-horizon-days", VALUE_HORIZON_DAYS, "--engine", engine]
        assert main(arguments) == 0
        tables[engine] = pd.read_parquet(out)
    assert spark_session.sparkContext._jsc is not None  # type: ignore[attr-defined]
    duckdb_table, spark_table = tables["duckdb"], tables["spark"]
    assert list(duckdb_table.columns) == [*SCORE_COLUMNS, SPEND_COLUMN]
    assert largest_difference(duckdb_table, spark_table) <= TOLERANCE
    # the comparison had something to compare: every customer, churn scored with reasons
    assert len(spark_table) > 600
    assert set(spark_table["churn_risk"]) == {"low", "medium", "high"}
    assert (spark_table["churn_reasons"] != "").sum() > 100
    assert spark_table["expected_next_order_at"].notna().sum() > 100
    said = capsys.readouterr().out
    assert said.count(f"{len(spark_table):,} customers scored at") == 2  # one line per engine


def test_scores_do_not_depend_on_the_partitioning(
    registry: Path, trained_sample_store: TrainedSampleStore, spark_session: object
) -> None:
    """`score_on_spark` on a Spark DataFrame cut into uneven partitions (DuckDB's features,
    shuffled into three) gives `CustomerScorer.score`'s table on the whole frame."""
    from features.customers import customer_features
    from features.loading import load_shop
    from models.customer_scores import CustomerScorer
    from models.spark_scores import collected_scores, score_on_spark
    from patronage.commands._registry import champion_uri, model_artifact

    as_of = pd.Timestamp(trained_sample_store.as_of)
    uri, _ = champion_uri(SAMPLE_SHOP_NAME, ("churn",), use="score with")
    scorer = CustomerScorer.load(model_artifact(uri, "scorer"))
    features = customer_features(load_shop(registry).shop, as_of)
    frame = spark_session.createDataFrame(features).repartition(3)  # type: ignore[attr-defined]
    assert frame.rdd.getNumPartitions() == 3
    on_spark = collected_scores(score_on_spark(scorer, frame, as_of))
    assert largest_difference(scorer.score(features, as_of), on_spark) <= TOLERANCE


def test_an_unfitted_scorer_is_refused_before_spark_runs() -> None:
    from models.customer_scores import CustomerScorer
    from models.spark_scores import score_on_spark

    with pytest.raises(ValueError, match="not fitted"):
        score_on_spark(CustomerScorer(), features=None, as_of="2025-12-02")
