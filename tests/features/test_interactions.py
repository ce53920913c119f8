"""Interactions: point in time, the documented weighting, co-purchase counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.interactions import (
    build_interactions,
    co_purchase_counts,
    purchase_counts,
)
from features.shop import Shop

AS_OF = pd.Timestamp("2025-03-01", tz="UTC")


def _shop(lines: list[tuple], feedback: list[tuple] = ()) -> Shop:
    purchases = pd.DataFrame(
        lines, columns=["order_id", "customer_id", "item_id", "quantity", "ordered_at"]
    )
    purchases["ordered_at"] = pd.to_datetime(purchases["ordered_at"], utc=True)
    purchases["unit_price"] = np.nan
    purchases["channel"] = None
    fb = pd.DataFrame(
        list(feedback), columns=["customer_id", "created_at", "kind", "item_id", "rating"]
    )
    fb["created_at"] = pd.to_datetime(fb["created_at"], utc=True)
    fb["rating"] = fb["rating"].astype("Int64")
    fb["order_id"] = None
    fb["text"] = None
    items = pd.DataFrame({"item_id": sorted(set(purchases["item_id"]) | {"never_bought"})})
    items["category"] = None
    items["available"] = True
    customers = pd.DataFrame({"customer_id": sorted(set(purchases["customer_id"]))})
    return Shop(purchases, fb, items, customers)


LINES = [
    ("o1", "ann", "milk", 1, "2025-02-28 12:00"),  # 12 hours before as_of
    ("o1", "ann", "bread", 3, "2025-02-28 12:00"),
    ("o2", "ann", "milk", 1, "2025-01-30 00:00"),  # 30 days before as_of
    ("o3", "bob", "milk", 2, "2025-02-01 00:00"),
    ("o3", "bob", "bread", 1, "2025-02-01 00:00"),
    ("o3", "bob", "jam", 1, "2025-02-01 00:00"),
    ("o4", "bob", "jam", 1, "2025-03-01 00:00"),  # exactly at as_of: excluded
    ("o5", "cid", "jam", 1, "2025-03-05 00:00"),  # after as_of: excluded
]


def test_rows_are_customers_with_history_and_columns_are_the_catalog() -> None:
    interactions = build_interactions(_shop(LINES), AS_OF, half_life_days=None)
    assert list(interactions.customer_ids) == ["ann", "bob"]
    assert list(interactions.item_ids) == ["bread", "jam", "milk", "never_bought"]
    assert interactions.matrix.dtype == np.float32
    assert interactions.customer_rows(["bob", "zed"]).tolist() == [1, -1]
    assert interactions.item_rows(["milk"]).tolist() == [2]


def test_quantity_is_log_damped_and_lines_add_up_without_decay() -> None:
    matrix = build_interactions(_shop(LINES), AS_OF, half_life_days=None).matrix.toarray()
    assert matrix[0, 2] == pytest.approx(2.0)  # ann: milk twice, quantity 1
    assert matrix[0, 0] == pytest.approx(1 + np.log(3))  # ann: bread x3 once
    assert matrix[1, 1] == pytest.approx(1.0)  # bob's jam at as_of does not count


def test_recency_half_life_halves_weight() -> None:
    shop = _shop([("o1", "ann", "milk", 1, "2025-01-30 00:00")])
    matrix = build_interactions(shop, AS_OF, half_life_days=30.0).matrix.toarray()
    assert matrix[0, 0] == pytest.approx(0.5, rel=1e-6)


def test_rows_at_or_after_as_of_change_nothing() -> None:
    before = build_interactions(_shop(LINES[:6]), AS_OF).matrix.toarray()
    with_later = build_interactions(_shop(LINES), AS_OF).matrix.toarray()
    np.testing.assert_array_equal(before, with_later)


def test_ratings_scale_confidence() -> None:
    feedback = [
        ("ann", "2025-02-28 13:00", "rating", "milk", 5),
        ("bob", "2025-02-10 00:00", "rating", "milk", 1),
        ("bob", "2025-03-02 00:00", "rating", "bread", 1),  # after as_of: ignored
    ]
    plain = build_interactions(_shop(LINES), AS_OF, half_life_days=None, use_ratings=False)
    rated = build_interactions(_shop(LINES, feedback), AS_OF, half_life_days=None)
    ratio = rated.matrix.toarray() / np.where(
        plain.matrix.toarray() == 0, 1, plain.matrix.toarray()
    )
    assert ratio[0, 2] == pytest.approx(2.0)  # 5 stars doubles
    assert ratio[1, 2] == pytest.approx(0.5)  # 1 star halves
    assert ratio[1, 0] == pytest.approx(1.0)  # rating after as_of ignored


def test_returns_remove_or_turn_negative() -> None:
    feedback = [("bob", "2025-02-03 00:00", "return", "jam", pd.NA)]
    shop = _shop(LINES, feedback)
    removed = build_interactions(shop, AS_OF, half_life_days=None).matrix.toarray()
    negative = build_interactions(shop, AS_OF, half_life_days=None, returns="negative")
    kept = build_interactions(shop, AS_OF, half_life_days=None, returns="ignore")
    assert removed[1, 1] == 0.0
    assert negative.matrix.toarray()[1, 1] == pytest.approx(-1.0)
    assert kept.matrix.toarray()[1, 1] == pytest.approx(1.0)
    assert removed[0, 2] == pytest.approx(2.0)  # other pairs untouched


def test_purchase_counts_count_distinct_orders() -> None:
    counts = purchase_counts(_shop(LINES), AS_OF).matrix.toarray()
    assert counts[0].tolist() == [1.0, 0.0, 2.0, 0.0]
    assert counts[1].tolist() == [1.0, 1.0, 1.0, 0.0]


def test_co_purchase_counts_orders_containing_both() -> None:
    shop = _shop(LINES)
    item_ids = np.array(["bread", "jam", "milk"])
    counts = co_purchase_counts(shop, AS_OF, item_ids).toarray()
    # o1: bread+milk, o2: milk, o3: milk+bread+jam (o4 at as_of excluded)
    expected = np.array([[2, 1, 2], [1, 1, 1], [2, 1, 3]], dtype=np.float32)
    np.testing.assert_array_equal(counts, expected)


def test_naive_as_of_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_interactions(_shop(LINES), pd.Timestamp("2025-03-01"))


def test_builder_gives_each_half_life_like_a_fresh_build() -> None:
    from features.interactions import InteractionsBuilder

    feedback = [
        ("bob", "2025-02-03 00:00", "return", "jam", pd.NA),
        ("ann", "2025-02-28 13:00", "rating", "milk", 4),
    ]
    shop = _shop(list(reversed(LINES)), feedback)  # unsorted input
    builder = InteractionsBuilder(shop, AS_OF)
    for half_life in (None, 7.0, 30.0):
        expected = build_interactions(shop, AS_OF, half_life_days=half_life).matrix.toarray()
        np.testing.assert_allclose(builder.build(half_life).matrix.toarray(), expected)
    # And by hand for one cell: ann's milk, lines 0.5 and 30 days old, 4 stars.
    cell = builder.build(30.0).matrix.toarray()[0, 2]
    assert cell == pytest.approx((2 ** (-0.5 / 30) + 0.5) * 2**0.5, rel=1e-5)
