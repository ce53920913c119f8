"""Item features: hand-computed values on the tiny shop and the point-in-time property."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings

from features.engines import connect
from features.items import ITEM_COUNT_COLUMNS, item_features
from tests.features.test_customer_features import (
    PROPERTY_AS_OF,
    TINY_AS_OF,
    assert_same_features,
    generated_shop,
    shops,
    tiny_shop,
    with_later_rows,
)


@pytest.fixture(scope="module")
def duckdb_backend():
    """One in-memory DuckDB backend for this module."""
    return connect("duckdb")


def test_hand_computed_values(duckdb_backend) -> None:
    features = item_features(tiny_shop(), TINY_AS_OF, connection=duckdb_backend)
    assert features["item_id"].tolist() == ["I1", "I2", "I3", "I4"]
    rows = features.set_index("item_id")
    # I1: A bought 2 units on Jan 1 12:00 (58.5 days before as_of) and 1 on Feb 1 12:00 (27.5)
    trend = 2 * 0.5 ** (58.5 / 30) + 0.5 ** (27.5 / 30)
    assert rows.loc["I1", "trend_score"] == pytest.approx(trend, rel=1e-12)
    expected = {
        "I1": dict(buyers=1, units=3, orders=2, purchase_lines=2, buyers_last_30d=1,
                   units_last_30d=1, buyers_last_90d=1, units_last_90d=3,
                   repeat_purchase_rate=1.0, ratings=1, rating_mean=4.0, returns=0,
                   return_rate=0.0, category="fruit"),
        "I2": dict(buyers=2, units=2, orders=2, purchase_lines=2, buyers_last_30d=1,
                   units_last_30d=1, buyers_last_90d=2, units_last_90d=2,
                   repeat_purchase_rate=0.0, ratings=1, rating_mean=2.0, returns=1,
                   return_rate=0.5, category="dairy"),
        "I4": dict(buyers=0, units=0, orders=0, purchase_lines=0, buyers_last_30d=0,
                   units_last_30d=0, buyers_last_90d=0, units_last_90d=0, trend_score=0.0,
                   repeat_purchase_rate=math.nan, ratings=0, rating_mean=math.nan, returns=0,
                   return_rate=math.nan, category="bakery"),
    }  # fmt: skip
    for item_id, values in expected.items():
        for column, value in values.items():
            got = rows.loc[item_id, column]
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(got), f"{item_id}.{column}: {got} instead of NaN"
            else:
                assert got == value, f"{item_id}.{column}: {got} != {value}"
    for column in ITEM_COUNT_COLUMNS:
        assert str(features[column].dtype) == "int64", column


def test_bad_half_life_raises() -> None:
    with pytest.raises(ValueError, match="half_life_days must be positive"):
        item_features(tiny_shop(), TINY_AS_OF, half_life_days=0)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(shops)
def test_rows_at_or_after_as_of_change_nothing(duckdb_backend, generated: tuple) -> None:
    purchases, feedback, later_purchases, later_feedback = generated
    shop = generated_shop(purchases, feedback, PROPERTY_AS_OF)
    trimmed = item_features(shop.before(PROPERTY_AS_OF), PROPERTY_AS_OF, connection=duckdb_backend)
    grown = item_features(
        with_later_rows(shop, later_purchases, later_feedback),
        PROPERTY_AS_OF,
        connection=duckdb_backend,
    )
    assert_same_features(trimmed, grown)
    assert len(trimmed) == len(shop.items)


def test_public_data_point_in_time(groceries_shop, duckdb_backend) -> None:
    as_of = pd.Timestamp("2015-10-01", tz="UTC")
    features = item_features(groceries_shop, as_of, connection=duckdb_backend)
    trimmed = item_features(groceries_shop.before(as_of), as_of, connection=duckdb_backend)
    assert_same_features(features, trimmed)
    assert features["buyers"].sum() > 0
