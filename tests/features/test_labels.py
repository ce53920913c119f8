"""Churn and buy labels: the definition on the tiny shop and against a brute-force count."""

from __future__ import annotations

import pandas as pd
import pytest

from features.labels import buy_labels, churn_labels
from tests.features.test_customer_features import TINY_AS_OF, tiny_shop


def test_tiny_shop_labels() -> None:
    labels = churn_labels(tiny_shop(), TINY_AS_OF)
    assert labels.name == "churned"
    assert labels.index.name == "customer_id"
    # A orders exactly at as_of (inside [as_of, as_of + 90 d)); B never again; C is new
    assert labels.to_dict() == {"A": 0, "B": 1}
    assert str(labels.dtype) == "int64"
    # a window that ends exactly at A's order: [as_of - 1 s, as_of) + nothing after
    earlier = churn_labels(tiny_shop(), TINY_AS_OF - pd.Timedelta(days=1), horizon_days=1)
    assert earlier.to_dict() == {"A": 1, "B": 1}


def test_buy_labels_are_one_minus_churn() -> None:
    churned = churn_labels(tiny_shop(), TINY_AS_OF, horizon_days=10)
    bought = buy_labels(tiny_shop(), TINY_AS_OF, horizon_days=10)
    assert bought.name == "bought"
    pd.testing.assert_series_equal(bought, (1 - churned).rename("bought"))


def test_bad_horizon_raises() -> None:
    with pytest.raises(ValueError, match="horizon_days must be positive"):
        churn_labels(tiny_shop(), TINY_AS_OF, horizon_days=0)


def test_cdnow_base_rate_matches_published_protocol(cdnow_shop) -> None:
    """13-week protocol of ../shared/data/README.md: bought in weeks 39-51, base rate 17.8 %."""
    as_of = pd.Timestamp("1997-10-01", tz="UTC")
    bought = buy_labels(cdnow_shop, as_of, horizon_days=91)
    assert len(bought) == 23_570
    assert round(bought.mean(), 3) == 0.178
    purchases = cdnow_shop.purchases
    window = purchases[
        (purchases["ordered_at"] >= as_of)
        & (purchases["ordered_at"] < as_of + pd.Timedelta(days=91))
    ]
    assert set(bought[bought == 1].index) == set(window["customer_id"])
