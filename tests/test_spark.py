"""Spark gives the tables DuckDB and `patronage score` give: features and scores, one JVM.

Both checks share the session's `spark_session` (a real local[2] Spark, UI off, two shuffle
partitions) in one module, so that the test run starts one JVM and warms it up once (each
module on its own cost a JVM and a first-query warm-up, about 40 s of a test worker's time).

Features. DuckDB and PySpark run the same Ibis feature expressions and give the same tables.

Spark costs seconds per query whatever the data size, so the customer comparison runs ONE query
per engine over one shop that holds, side by side (ids prefixed, times shifted by whole days so
that every part's cut-off falls on the same `as_of`): the tiny hand-computed shop, the generated
sample shop, all of Groceries and all of CDNOW_master. Shifting by whole days changes no feature
(all are differences of times, windows are relative to `as_of`, days are UTC days).

Scores. The sample shop's registered churn champion (`trained_sample_store`): `patronage score
--engine spark` computes the features as Spark SQL and runs the champion's scorer on each
partition; its table must equal the DuckDB one to 1e-9 on every number and exactly on every
text and time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.customers import customer_features
from features.shop import Shop
from models.score_columns import SCORE_COLUMNS, SPEND_COLUMN
from tests.conftest import SAMPLE_SHOP_NAME, TrainedSampleStore
from tests.features.test_customer_features import TINY_AS_OF, tiny_shop

AS_OF = pd.Timestamp("2025-10-01T00:00:00Z")


def shifted(shop: Shop, prefix: str, cut_off: pd.Timestamp) -> Shop:
    """`shop` with ids prefixed and times moved by whole days so that `cut_off` becomes AS_OF."""
    shift = AS_OF - cut_off
    assert shift % pd.Timedelta(days=1) == pd.Timedelta(0)

    def move(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
        frame = frame.copy()
        for column in ("order_id", "customer_id", "item_id"):
            if column in frame.columns:
                frame[column] = (prefix + frame[column].astype("str")).where(frame[column].notna())
        for column in columns:
            if column in frame.columns:
                frame[column] = frame[column] + shift
        return frame

    return Shop(
        purchases=move(shop.purchases, ("ordered_at",)),
        feedback=move(shop.feedback, ("created_at",)),
        items=move(shop.items, ()),
        customers=move(shop.customers, ("signed_up_at",)),
    )


def combined(shops: list[Shop]) -> Shop:
    """One shop holding the rows of all `shops` (ids must already be distinct)."""
    return Shop(
        *(
            pd.concat([getattr(shop, name) for shop in shops], ignore_index=True)
            for name in ("purchases", "feedback", "items", "customers")
        )
    )


def assert_same_table(duckdb_table: pd.DataFrame, spark_table: pd.DataFrame) -> None:
    """Same columns, rows and types; integers exact, floats within 1e-9 relative (or 1e-9
    absolute near zero), NaN in the same places."""
    assert list(duckdb_table.columns) == list(spark_table.columns)
    assert len(duckdb_table) == len(spark_table)
    for column in duckdb_table.columns:
        left, right = duckdb_table[column], spark_table[column]
        assert left.dtype == right.dtype, column
        if pd.api.types.is_float_dtype(left):
            # 1e-9 absolute too: a difference of two sums (spend_trend_90d_diff) summed in
            # another order can be 0 on one engine and 1e-14 on the other
            np.testing.assert_allclose(
                right.to_numpy(), left.to_numpy(), rtol=1e-9, atol=1e-9, equal_nan=True,
                err_msg=column,
            )  # fmt: skip
        else:
            assert left.equals(right), column


@pytest.fixture(scope="module")
def parity_shop(sample_shop_dir, groceries_shop, cdnow_shop) -> Shop:
    """Tiny + sample + Groceries + CDNOW in one shop, each part's cut-off moved to AS_OF."""
    from features.loading import load_shop

    sample = load_shop(sample_shop_dir).shop
    return combined(
        [
            shifted(tiny_shop(), "tiny-", TINY_AS_OF),
            shifted(sample, "sample-", AS_OF),
            shifted(groceries_shop, "groceries-", pd.Timestamp("2015-10-01", tz="UTC")),
            shifted(cdnow_shop, "cdnow-", pd.Timestamp("1997-10-01", tz="UTC")),
        ]
    )


def test_customer_features_duckdb_equals_spark(parity_shop, spark_session) -> None:
    on_duckdb = customer_features(parity_shop, AS_OF)
    on_spark = customer_features(parity_shop, AS_OF, engine="spark", connection=spark_session)
    assert_same_table(on_duckdb, on_spark)
    parts = on_duckdb["customer_id"].str.split("-").str[0].value_counts()
    assert set(parts.index) == {"tiny", "sample", "groceries", "cdnow"}
    assert parts["cdnow"] == 23_570
    # the shift kept the hand-computed values: customer A of the tiny shop
    tiny_a = on_spark.set_index("customer_id").loc["tiny-A"]
    assert (tiny_a["orders"], tiny_a["btyd_T_days"], tiny_a["total_spend"]) == (3, 58.0, 41.0)


def test_cli_spark_engine_writes_the_duckdb_tables(
    sample_shop_dir, tmp_path, spark_session
) -> None:
    """`patronage features --engine spark` (reusing this session) writes the same customer and
    item tables as DuckDB, on the generated sample shop (item parity is checked here only)."""
    from patronage.cli import main

    written = {}
    for engine in ("duckdb", "spark"):
        customers, items = tmp_path / f"{engine}.parquet", tmp_path / f"{engine}-items.parquet"
        arguments = ["features", str(sample_shop_dir), "--as-of", "2025-10-01"]
        arguments += ["--out", str(customers), "--items-out", str(items), "--engine", engine]
        assert main(arguments) == 0
        written[engine] = (pd.read_parquet(customers), pd.read_parquet(items))
    assert spark_session.sparkContext._jsc is not None  # the CLI reused, did not stop, it
    assert_same_table(written["duckdb"][0], written["spark"][0])
    assert_same_table(written["duckdb"][1], written["spark"][1])
    assert len(written["spark"][1]) == 120  # every item of the sample shop


TOLERANCE = 1e-9
"""Scores: the largest absolute difference allowed between the engines."""
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
