"""Customer features: hand-computed values, point in time (property test and real data), units."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.customers import COUNT_COLUMNS, channel_share_columns, customer_features
from features.engines import connect
from features.shop import Shop

TINY_AS_OF = pd.Timestamp("2025-03-01T00:00:00Z")


def _utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).tz_convert("UTC")


def tiny_shop() -> Shop:
    """Three customers, four items; every value of `test_hand_computed_values` follows from it.

    A: orders A1 (Jan 1 12:00, web: 2 x I1 at 10, 1 x I2 at 5), A2 (Feb 1 12:00, app: I1 at 10),
    A3 (Feb 19 12:00, web: 3 x I3 at 2), A4 exactly at as_of (ignored). B: one unpriced line of I2
    on Feb 20 06:00, no channel. C: only after as_of. Categories: I1, I3 fruit; I2 dairy."""
    rows = [
        ("A1", "A", "I1", 2, 10.0, "2025-01-01T12:00:00Z", "web"),
        ("A1", "A", "I2", 1, 5.0, "2025-01-01T12:00:00Z", "web"),
        ("A2", "A", "I1", 1, 10.0, "2025-02-01T12:00:00Z", "app"),
        ("A3", "A", "I3", 3, 2.0, "2025-02-19T12:00:00Z", "web"),
        ("A4", "A", "I2", 9, 100.0, "2025-03-01T00:00:00Z", "store"),
        ("B1", "B", "I2", 1, np.nan, "2025-02-20T06:00:00Z", None),
        ("C1", "C", "I4", 1, 3.0, "2025-03-05T00:00:00Z", "web"),
    ]
    purchases = pd.DataFrame(
        rows,
        columns=[
            "order_id",
            "customer_id",
            "item_id",
            "quantity",
            "unit_price",
            "ordered_at",
            "channel",
        ],
    )
    purchases["ordered_at"] = pd.to_datetime(purchases["ordered_at"], utc=True)
    feedback = pd.DataFrame(
        [
            ("A", "2025-01-05T00:00:00Z", "rating", "I1", "A1", 4),
            ("A", "2025-01-06T00:00:00Z", "rating", "I2", "A1", 2),
            ("A", "2025-01-07T00:00:00Z", "return", "I2", "A1", None),
            ("A", "2025-02-20T00:00:00Z", "complaint", None, "A2", None),
            ("A", "2025-03-02T00:00:00Z", "complaint", None, "A4", None),
            ("B", "2025-02-21T00:00:00Z", "review", "I2", "B1", None),
        ],
        columns=["customer_id", "created_at", "kind", "item_id", "order_id", "rating"],
    )
    feedback["created_at"] = pd.to_datetime(feedback["created_at"], utc=True)
    feedback["rating"] = feedback["rating"].astype("Int64")
    items = pd.DataFrame(
        {"item_id": ["I1", "I2", "I3", "I4"], "category": ["fruit", "dairy", "fruit", "bakery"]}
    )
    customers = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C"],
            "signed_up_at": pd.to_datetime(
                ["2024-12-01T00:00:00Z", None, "2025-01-01T00:00:00Z"], utc=True
            ),
        }
    )
    return Shop(purchases, feedback, items, customers)


NAN = math.nan
EXPECTED = {
    "A": {
        "orders": 3,
        "purchase_lines": 4,
        "units": 7,
        "days_since_last_order": 9.5,
        "tenure_days": 58.5,
        "days_since_signup": 90.0,
        "order_gap_mean_days": 24.5,
        "order_gap_std_days": 6.5,
        "overdue_ratio": 9.5 / 24.5,
        "orders_last_30d": 2,
        "orders_last_90d": 3,
        "orders_last_365d": 3,
        "total_spend": 41.0,
        "mean_order_value": 41.0 / 3,
        "spend_last_30d": 16.0,
        "spend_last_90d": 41.0,
        "spend_last_365d": 41.0,
        "spend_previous_90d": 0.0,
        "spend_trend_90d_diff": 41.0,
        "spend_trend_90d_ratio": NAN,
        "distinct_items": 3,
        "distinct_categories": 2.0,
        "top_category_share": 0.75,
        "repeat_item_share": 1 / 3,
        "returns": 1,
        "return_rate": 0.25,
        "ratings": 2,
        "rating_mean": 3.0,
        "rating_min": 2.0,
        "complaints": 1,
        "complaints_last_90d": 1,
        "days_since_last_complaint": 9.0,
        "feedback": 4,
        "negative_feedback_share": 0.75,
        "top_channel_share": 2 / 3,
        "channel_share_app": 1 / 3,
        "channel_share_web": 2 / 3,
        "btyd_frequency": 2,
        "btyd_recency_days": 49.0,
        "btyd_T_days": 58.0,
        "btyd_monetary_value": 8.0,
    },
    "B": {
        "orders": 1,
        "purchase_lines": 1,
        "units": 1,
        "days_since_last_order": 8.75,
        "tenure_days": 8.75,
        "days_since_signup": NAN,
        "order_gap_mean_days": NAN,
        "order_gap_std_days": NAN,
        "overdue_ratio": NAN,
        "orders_last_30d": 1,
        "orders_last_90d": 1,
        "orders_last_365d": 1,
        "total_spend": NAN,
        "mean_order_value": NAN,
        "spend_last_30d": NAN,
        "spend_last_90d": NAN,
        "spend_last_365d": NAN,
        "spend_previous_90d": 0.0,
        "spend_trend_90d_diff": NAN,
        "spend_trend_90d_ratio": NAN,
        "distinct_items": 1,
        "distinct_categories": 1.0,
        "top_category_share": 1.0,
        "repeat_item_share": 0.0,
        "returns": 0,
        "return_rate": 0.0,
        "ratings": 0,
        "rating_mean": NAN,
        "rating_min": NAN,
        "complaints": 0,
        "complaints_last_90d": 0,
        "days_since_last_complaint": NAN,
        "feedback": 1,
        "negative_feedback_share": 0.0,
        "top_channel_share": NAN,
        "channel_share_app": NAN,
        "channel_share_web": NAN,
        "btyd_frequency": 0,
        "btyd_recency_days": 0.0,
        "btyd_T_days": 8.0,
        "btyd_monetary_value": NAN,
    },
}


@pytest.fixture(scope="module")
def duckdb_backend():
    """One in-memory DuckDB backend reused by the tests of this module (connecting costs time)."""
    return connect("duckdb")


def test_hand_computed_values(duckdb_backend) -> None:
    features = customer_features(tiny_shop(), TINY_AS_OF, connection=duckdb_backend)
    assert features["customer_id"].tolist() == ["A", "B"]  # C ordered only after as_of
    assert features.columns[0] == "customer_id"
    assert set(features.columns) == {"customer_id", *EXPECTED["A"]}
    for row in features.itertuples(index=False):
        expected = EXPECTED[row.customer_id]
        for column, value in expected.items():
            got = getattr(row, column)
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(got), f"{row.customer_id}.{column}: {got} instead of NaN"
            else:
                # exact: every expected value is a short binary fraction or the same division
                assert got == value, f"{row.customer_id}.{column}: {got} != {value}"


def test_types_counts_int_others_float(duckdb_backend) -> None:
    features = customer_features(tiny_shop(), TINY_AS_OF, connection=duckdb_backend)
    for column in features.columns[1:]:
        expected = "int64" if column in COUNT_COLUMNS else "float64"
        assert str(features[column].dtype) == expected, column
    assert features[list(COUNT_COLUMNS)].notna().all().all()


def test_naive_as_of_is_utc_and_string_as_of_accepted(duckdb_backend) -> None:
    shop = tiny_shop()
    zoned = customer_features(shop, TINY_AS_OF, connection=duckdb_backend)
    naive = customer_features(shop, "2025-03-01 00:00:00", connection=duckdb_backend)
    pd.testing.assert_frame_equal(zoned, naive)


def test_bad_engine_and_as_of_raise_value_error() -> None:
    with pytest.raises(ValueError, match="engine must be one of"):
        customer_features(tiny_shop(), TINY_AS_OF, engine="postgres")
    with pytest.raises(ValueError, match="as_of must be a time"):
        customer_features(tiny_shop(), "not a date")


def test_no_orders_before_as_of_gives_empty_table(duckdb_backend) -> None:
    features = customer_features(tiny_shop(), "2024-01-01", connection=duckdb_backend)
    assert len(features) == 0
    assert features.columns[0] == "customer_id"


def test_duckdb_file_connection(tmp_path) -> None:
    in_file = customer_features(tiny_shop(), TINY_AS_OF, connection=tmp_path / "features.duckdb")
    in_memory = customer_features(tiny_shop(), TINY_AS_OF)
    pd.testing.assert_frame_equal(in_file, in_memory)


# ---- point in time: generated shops -------------------------------------------------------

PROPERTY_AS_OF = pd.Timestamp("2025-06-01T00:00:00Z")
_SECONDS = st.one_of(
    st.integers(-400 * 86_400, 60 * 86_400), st.sampled_from([-86_400, -1, 0, 1, 86_400])
)
_PURCHASE = st.tuples(
    st.sampled_from(["C1", "C2", "C3", "C4"]),
    st.integers(0, 4),
    st.sampled_from(["I1", "I2", "I3", "I4", "I5"]),
    st.integers(1, 4),
    st.one_of(st.none(), st.sampled_from([0.5, 2.25, 9.99, 0.0])),
    _SECONDS,
    st.sampled_from([None, "web", "app", "store"]),
)
_FEEDBACK = st.tuples(
    st.sampled_from(["C1", "C2", "C3", "C4", "C5"]),
    _SECONDS,
    st.sampled_from(["rating", "review", "complaint", "return"]),
    st.one_of(st.none(), st.sampled_from(["I1", "I2", "I3"])),
    st.one_of(st.none(), st.integers(1, 5)),
)


def _purchases(rows: list[tuple], as_of: pd.Timestamp, later: bool = False) -> pd.DataFrame:
    """Purchase lines from generated tuples; `later` rows are moved to at or after `as_of`."""
    frame = pd.DataFrame(
        rows,
        columns=[
            "customer_id",
            "order_no",
            "item_id",
            "quantity",
            "unit_price",
            "second",
            "channel",
        ],
    )
    seconds = frame["second"].abs() if later else frame["second"]
    prefix = "L" if later else "O"
    return pd.DataFrame(
        {
            "order_id": prefix + frame["customer_id"] + "-" + frame["order_no"].astype(str),
            "customer_id": frame["customer_id"].astype(str),
            "item_id": frame["item_id"].astype(str),
            "quantity": frame["quantity"].astype("int64"),
            "unit_price": frame["unit_price"].astype("float64"),
            "ordered_at": as_of + pd.to_timedelta(seconds, unit="s"),
            "channel": frame["channel"],
        }
    )


def _feedback(rows: list[tuple], as_of: pd.Timestamp, later: bool = False) -> pd.DataFrame:
    """Feedback rows from generated tuples; `later` rows are moved to at or after `as_of`."""
    frame = pd.DataFrame(rows, columns=["customer_id", "second", "kind", "item_id", "rating"])
    seconds = frame["second"].abs() if later else frame["second"]
    return pd.DataFrame(
        {
            "customer_id": frame["customer_id"].astype(str),
            "created_at": as_of + pd.to_timedelta(seconds, unit="s"),
            "kind": frame["kind"].astype(str),
            "item_id": frame["item_id"],
            "order_id": None,
            "rating": frame["rating"].astype("Int64"),
        }
    )


def generated_shop(purchases: list[tuple], feedback: list[tuple], as_of: pd.Timestamp) -> Shop:
    """A small shop from hypothesis tuples (times relative to `as_of`); fixed items/customers."""
    items = pd.DataFrame(
        {"item_id": ["I1", "I2", "I3", "I4", "I5"], "category": ["a", "b", "a", None, "c"]}
    )
    customers = pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3"],
            "signed_up_at": [as_of - pd.Timedelta(days=500), pd.NaT, as_of + pd.Timedelta(days=1)],
        }
    )
    customers["signed_up_at"] = customers["signed_up_at"].astype("datetime64[ns, UTC]")
    return Shop(_purchases(purchases, as_of), _feedback(feedback, as_of), items, customers)


def with_later_rows(shop: Shop, purchases: list[tuple], feedback: list[tuple]) -> Shop:
    """`shop` plus rows dated at or after PROPERTY_AS_OF (new orders, new customers too)."""
    return Shop(
        pd.concat([shop.purchases, _purchases(purchases, PROPERTY_AS_OF, later=True)]),
        pd.concat([shop.feedback, _feedback(feedback, PROPERTY_AS_OF, later=True)]),
        shop.items,
        shop.customers,
    )


shops = st.tuples(
    st.lists(_PURCHASE, min_size=1, max_size=25),
    st.lists(_FEEDBACK, max_size=10),
    st.lists(_PURCHASE, max_size=8),
    st.lists(_FEEDBACK, max_size=5),
)


def assert_same_features(left: pd.DataFrame, right: pd.DataFrame) -> None:
    """Same rows and columns; counts exact, floats equal to 1e-12 (same engine, same rows)."""
    pd.testing.assert_frame_equal(left, right, check_exact=False, rtol=1e-12, atol=0)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(shops)
def test_rows_at_or_after_as_of_change_nothing(duckdb_backend, generated: tuple) -> None:
    purchases, feedback, later_purchases, later_feedback = generated
    shop = generated_shop(purchases, feedback, PROPERTY_AS_OF)
    features = customer_features(shop, PROPERTY_AS_OF, connection=duckdb_backend)
    trimmed = customer_features(
        shop.before(PROPERTY_AS_OF), PROPERTY_AS_OF, connection=duckdb_backend
    )
    grown = customer_features(
        with_later_rows(shop, later_purchases, later_feedback),
        PROPERTY_AS_OF,
        connection=duckdb_backend,
    )
    assert_same_features(features, trimmed)
    assert_same_features(features, grown)
    before = shop.purchases[shop.purchases["ordered_at"] < PROPERTY_AS_OF]
    assert features["customer_id"].tolist() == sorted(before["customer_id"].unique())
    assert (features["orders_last_365d"] <= features["orders"]).all()


# ---- point in time: the public data sets -------------------------------------------------


def _moved_later(shop: Shop, as_of: pd.Timestamp, fraction: float, seed: int) -> Shop:
    """`shop` with a random `fraction` of its rows at or after `as_of` dropped, and copies of
    some earlier lines (new order ids) added at or after `as_of`."""
    rng = np.random.default_rng(seed)
    purchases = shop.purchases
    late = purchases["ordered_at"] >= as_of
    kept = purchases[~late | (rng.random(len(purchases)) > fraction)]
    copies = purchases[~late].sample(frac=0.05, random_state=seed).copy()
    copies["order_id"] = "later-" + copies["order_id"].astype(str)
    offset = pd.to_timedelta(rng.integers(0, 200 * 86_400, len(copies)), unit="s")
    copies["ordered_at"] = as_of + offset
    return Shop(pd.concat([kept, copies]), shop.feedback, shop.items, shop.customers)


@pytest.mark.parametrize(
    ("data_set", "as_of"),
    [("groceries_shop", "2015-10-01"), ("cdnow_shop", "1997-10-01")],
)
def test_public_data_point_in_time(request, duckdb_backend, data_set: str, as_of: str) -> None:
    shop = request.getfixturevalue(data_set)
    as_of_time = pd.Timestamp(as_of, tz="UTC")
    features = customer_features(shop, as_of_time, connection=duckdb_backend)
    trimmed = customer_features(shop.before(as_of_time), as_of_time, connection=duckdb_backend)
    changed = customer_features(
        _moved_later(shop, as_of_time, 0.5, seed=1), as_of_time, connection=duckdb_backend
    )
    assert (
        len(features)
        == shop.purchases.loc[shop.purchases["ordered_at"] < as_of_time, "customer_id"].nunique()
    )
    assert_same_features(features, trimmed)
    assert_same_features(features, changed)


def test_cdnow_btyd_inputs_match_published_summary(shared_data, duckdb_backend) -> None:
    """Per-day transactions reproduce Fader & Hardie's CDNOW calibration summary (in weeks)."""
    from features.importers import cdnow_tables

    tables = cdnow_tables(shared_data / "cdnow/CDNOW_sample.txt").tables
    sample = tables["purchases"].copy()
    empty = pd.DataFrame(
        {"customer_id": pd.Series(dtype="str"), "signed_up_at": pd.Series(dtype="M8[ns, UTC]")}
    )
    shop = Shop(sample, tables["feedback"], tables["items"], empty)
    features = customer_features(shop, "1997-10-01", connection=duckdb_backend)
    published = pd.read_csv(shared_data / "cdnow/cdnow_customers_summary_with_transactions.csv")
    # the sample's 4th column is the sample id 1..2357, which the published ID refers to
    raw = pd.read_csv(
        shared_data / "cdnow/CDNOW_sample.txt", sep=r"\s+", header=None, dtype=str
    ).drop_duplicates(0)
    sample_id = dict(zip(raw[0].str.strip(), raw[1].astype(int), strict=True))
    features["ID"] = features["customer_id"].map(sample_id)
    merged = published.merge(features, on="ID", validate="one_to_one")
    assert len(merged) == len(published) == 2357
    assert (merged["btyd_frequency"] == merged["x"]).all()
    np.testing.assert_allclose(merged["btyd_recency_days"] / 7, merged["t_x"], atol=0.005)
    np.testing.assert_allclose(merged["btyd_T_days"] / 7, merged["T"], atol=0.005)
    repeaters = merged[merged["x"] > 0]
    assert len(repeaters) == 946
    np.testing.assert_allclose(repeaters["btyd_monetary_value"], repeaters["zbar"], atol=0.005)
    assert merged.loc[merged["x"] == 0, "btyd_monetary_value"].isna().all()


# ---- command line ---------------------------------------------------------------------------


def test_cli_writes_the_customer_table(sample_shop_dir, tmp_path, duckdb_backend) -> None:
    from features.loading import load_shop
    from patronage.cli import main

    out = tmp_path / "features" / "customers.parquet"
    code = main(["features", str(sample_shop_dir), "--as-of", "2025-10-01", "--out", str(out)])
    assert code == 0
    written = pd.read_parquet(out)
    expected = customer_features(
        load_shop(sample_shop_dir).shop, "2025-10-01", connection=duckdb_backend
    )
    pd.testing.assert_frame_equal(written, expected)


def test_cli_rejects_a_bad_out_suffix(sample_shop_dir, tmp_path, capsys) -> None:
    from patronage.cli import main

    code = main(["features", str(sample_shop_dir), "--as-of", "2025-10-01", "--out", "x.csv"])
    assert code == 1
    assert ".parquet" in capsys.readouterr().err


def test_channel_share_columns_are_unique_names() -> None:
    assert channel_share_columns(["web", "Web", "in store", ""]) == [
        "channel_share_web",
        "channel_share_web_2",
        "channel_share_in_store",
        "channel_share__",
    ]


def test_feature_table_on_warehouse_tables_without_pandas(tmp_path) -> None:
    """The lower-level expression runs on tables stored in a DuckDB file (a warehouse)."""
    from features.customers import canonical_customer_frame, customer_feature_table
    from features.engines import SHOP_SCHEMAS, contract_arrow_table

    shop = tiny_shop()
    warehouse = connect("duckdb", tmp_path / "warehouse.duckdb")
    for name in SHOP_SCHEMAS:
        warehouse.create_table(name, contract_arrow_table(getattr(shop, name), name))
    expression = customer_feature_table(
        warehouse.table("purchases"),
        warehouse.table("feedback"),
        warehouse.table("items"),
        warehouse.table("customers"),
        TINY_AS_OF,
    )  # channels=None: asked from the warehouse
    from_warehouse = canonical_customer_frame(warehouse.execute(expression))
    pd.testing.assert_frame_equal(from_warehouse, customer_features(shop, TINY_AS_OF))
