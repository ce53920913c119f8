"""Churn model and the CRM score table on the generated sample shop: shape, no leakage,
persistence, direction of complaints and ratings, plain-words reasons, and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.customers import customer_features
from features.loading import load_shop
from features.shop import Shop
from models.churn import MIN_REASON_EFFECT, ChurnModel, describe_reason, training_cutoffs
from models.customer_scores import SCORE_COLUMNS, SPEND_COLUMN, CustomerScorer
from patronage.cli import main

AS_OF = pd.Timestamp("2025-11-01", tz="UTC")
HORIZON_DAYS = 60


@pytest.fixture(scope="module")
def shop(sample_shop_dir: Path) -> Shop:
    return load_shop(sample_shop_dir).shop


@pytest.fixture(scope="module")
def cli_run(sample_shop_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`patronage score` fitted on the fly, table as CSV, scorer saved."""
    out = tmp_path_factory.mktemp("score")
    paths = {"table": out / "scores.csv", "model": out / "model"}
    code = main(
        [
            "score",
            str(sample_shop_dir),
            "--as-of",
            AS_OF.isoformat(),
            "--churn-horizon-days",
            str(HORIZON_DAYS),
            "--out",
            str(paths["table"]),
            "--save-model",
            str(paths["model"]),
            "--fit",
        ]
    )
    assert code == 0
    return paths


@pytest.fixture(scope="module")
def scorer(cli_run: dict[str, Path]) -> CustomerScorer:
    return CustomerScorer.load(cli_run["model"])


def test_cutoffs_keep_label_windows_before_as_of() -> None:
    first = pd.Timestamp("2025-01-01", tz="UTC")
    cutoffs = training_cutoffs(AS_OF, 90, first, n_cutoffs=6, step_days=28)
    assert all(c + pd.Timedelta(days=90) <= AS_OF for c in cutoffs)
    assert cutoffs == sorted(cutoffs, reverse=True) and len(cutoffs) == 6
    with pytest.raises(ValueError, match="too short"):
        training_cutoffs(AS_OF, 250, first)


def test_score_table_has_the_crm_columns(cli_run: dict[str, Path], shop: Shop) -> None:
    table = pd.read_csv(cli_run["table"], dtype={"customer_id": str})
    assert tuple(table.columns) == SCORE_COLUMNS
    buyers = shop.purchases.loc[shop.purchases["ordered_at"] < AS_OF, "customer_id"].unique()
    assert sorted(table["customer_id"]) == sorted(buyers)
    assert table["churn_probability"].between(0, 1).all()
    assert table["loyalty_score"].between(0, 100).all()
    assert table["satisfaction"].between(0, 100).all()
    assert set(table["churn_risk"]) == {"low", "medium", "high"}
    high = table[table["churn_risk"] == "high"]
    assert (high["churn_probability"] >= 0.6).all()
    assert high["churn_reasons"].fillna("").str.len().gt(0).mean() > 0.9
    # a low risk is not explained: nothing in it is worth acting on
    low = table[table["churn_risk"] == "low"]
    assert len(low) > 0 and (low["churn_probability"] <= 0.3).all()  # rounded to 4 places
    assert (low["churn_reasons"].fillna("") == "").all()
    # P(alive) is 1 for one-time buyers, which is why it is never the churn score
    one_timers = table["avg_days_between_orders"].isna()
    assert (table.loc[one_timers, "p_alive"] == 1.0).all()
    next_order = pd.to_datetime(table["expected_next_order_at"], utc=True)
    assert (next_order.dropna() >= AS_OF).all()
    assert (next_order.dropna() <= AS_OF + pd.Timedelta(days=365)).all()


def test_saved_scorer_reproduces_the_table_as_parquet(
    cli_run: dict[str, Path], sample_shop_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "again.parquet"
    args = ["score", str(sample_shop_dir), "--as-of", AS_OF.isoformat(), "--out", str(out)]
    assert main([*args, "--model-dir", str(cli_run["model"])]) == 0
    again = pd.read_parquet(out)
    first = pd.read_csv(cli_run["table"], dtype={"customer_id": str})
    assert list(again["customer_id"]) == list(first["customer_id"])
    np.testing.assert_allclose(again["churn_probability"], first["churn_probability"])
    assert list(again["churn_reasons"].fillna("")) == list(first["churn_reasons"].fillna(""))


def test_value_horizon_adds_the_expected_spend(
    cli_run: dict[str, Path],
    sample_shop_dir: Path,
    shop: Shop,
    scorer: CustomerScorer,
    tmp_path: Path,
) -> None:
    """`--value-horizon-days N` appends predicted_spend: BG/NBD expected orders in N days x
    Gamma-Gamma order value, so it grows with N and matches expected_orders_90d at N = 90."""
    tables = {}
    for days in (30, 90):
        out = tmp_path / f"spend_{days}.csv"
        args = ["score", str(sample_shop_dir), "--as-of", AS_OF.isoformat(), "--out", str(out)]
        horizon = ["--value-horizon-days", str(days)]
        assert main([*args, "--model-dir", str(cli_run["model"]), *horizon]) == 0
        tables[days] = pd.read_csv(out, dtype={"customer_id": str})
    assert tuple(tables[90].columns) == (*SCORE_COLUMNS, SPEND_COLUMN)
    short, long = tables[30][SPEND_COLUMN], tables[90][SPEND_COLUMN]
    assert (short >= 0).all() and (long >= short - 0.01).all() and long.sum() > short.sum()
    features = customer_features(shop, AS_OF)
    features = features.set_index("customer_id").loc[tables[90]["customer_id"]]
    value = scorer.gamma_gamma_.expected_order_value(
        features["btyd_frequency"], np.nan_to_num(features["btyd_monetary_value"])
    )
    expected = tables[90]["expected_orders_90d"].to_numpy() * value
    np.testing.assert_allclose(long, expected, rtol=1e-3, atol=0.02)
    assert main([*args, "--model-dir", str(cli_run["model"]), "--value-horizon-days", "0"]) == 1


def test_scoring_before_the_first_order(
    scorer: CustomerScorer, shop: Shop, sample_shop_dir: Path, tmp_path: Path, capsys
) -> None:
    """Nobody had ordered yet: the library gives an empty table with the CRM columns, the CLI
    says which --as-of to choose (it was a model error from scikit-learn)."""
    first = shop.purchases["ordered_at"].min()
    empty = scorer.score(shop, first)
    assert len(empty) == 0 and tuple(empty.columns) == SCORE_COLUMNS
    early = (first - pd.Timedelta(days=400)).isoformat()
    out = tmp_path / "early.csv"
    args = ["score", str(sample_shop_dir), "--as-of", early, "--out", str(out)]
    assert main([*args, "--model-dir", str(tmp_path / "unused")]) == 1
    error = capsys.readouterr().err
    assert "no customer has ordered before --as-of" in error and "later --as-of" in error
    assert not out.exists()


def test_rows_after_as_of_change_nothing(shop: Shop, scorer: CustomerScorer) -> None:
    """No leakage: a scorer fitted on the shop cut at as_of gives the same churn scores."""
    blind = CustomerScorer().fit(shop.before(AS_OF), AS_OF, HORIZON_DAYS, seed=0)
    ours = scorer.score(shop, AS_OF)
    theirs = blind.score(shop.before(AS_OF), AS_OF)
    np.testing.assert_allclose(ours["churn_probability"], theirs["churn_probability"])


def _with_feedback(shop: Shop, customers: list[str], **row: object) -> Shop:
    when = AS_OF - pd.Timedelta(days=10)
    extra = pd.DataFrame(
        [{"customer_id": c, "created_at": when, **row} for c in customers for _ in range(2)]
    )
    extra = extra.astype({"created_at": shop.feedback["created_at"].dtype})
    if "rating" in extra:
        extra["rating"] = extra["rating"].astype(shop.feedback["rating"].dtype)
    feedback = pd.concat([shop.feedback, extra], ignore_index=True)
    return Shop(shop.purchases, feedback, shop.items, shop.customers)


@pytest.mark.parametrize(
    "feedback",
    [{"kind": "complaint"}, {"kind": "rating", "rating": 1}],
    ids=["complaints", "1-star"],
)
def test_bad_feedback_raises_churn_all_else_equal(
    shop: Shop, scorer: CustomerScorer, feedback: dict[str, object]
) -> None:
    before = scorer.score(shop, AS_OF).set_index("customer_id")
    quiet = shop.feedback.loc[shop.feedback["created_at"] < AS_OF, "customer_id"].unique()
    customers = [c for c in before.index if c not in set(quiet)][:60]
    after = scorer.score(_with_feedback(shop, customers, **feedback), AS_OF)
    after = after.set_index("customer_id")
    change = after.loc[customers, "churn_probability"] - before.loc[customers, "churn_probability"]
    untouched = before.index.difference(customers)
    np.testing.assert_allclose(
        after.loc[untouched, "churn_probability"], before.loc[untouched, "churn_probability"]
    )
    assert change.mean() > 0.02
    assert (change >= -1e-9).mean() >= 0.95
    assert (after.loc[customers, "satisfaction"] < before.loc[customers, "satisfaction"]).all()


def test_reason_texts_use_the_customers_values() -> None:
    lapsed = {"days_since_last_order": 94.0, "overdue_ratio": 3.1, "orders": 4}
    assert describe_reason("recency", lapsed) == "no order for 94 days, 3.1x the usual gap"
    assert describe_reason("complaints", {"complaints_last_90d": 2, "complaints": 3}) == (
        "2 complaints in the last 90 days"
    )
    assert describe_reason("recency", {"days_since_last_order": 40.0, "orders": 1}) == (
        "only one order so far, 40 days ago"
    )


def test_recency_reason_counts_orders_as_the_features_do() -> None:
    """Two orders at the same time (CDNOW's two lines on one day) are two orders, as in the
    features and the frequency reason; they have no gap, hence no overdue ratio."""
    same_day = {"days_since_last_order": 534.0, "overdue_ratio": np.nan, "orders": 2,
                "tenure_days": 534.0}  # fmt: skip
    recency = describe_reason("recency", same_day)
    assert recency == "2 orders, all on one day 534 days ago, none since"
    assert describe_reason("frequency", same_day) == "2 orders in 534 days as a customer"


def _synthetic_purchases(directory: Path, seed: int = 7) -> pd.Timestamp:
    """A small CDNOW-like shop in `directory/purchases.csv`; returns its as_of.

    400 customers, first order in the first 60 of 420 days. 40% buy on one day only, half of
    them in two orders that day (CDNOW's separate lines); the others buy every ~70 days."""
    rng = np.random.default_rng(seed)
    start, days = pd.Timestamp("2024-01-01", tz="UTC"), 420
    rows = []
    for number in range(400):
        customer, day = f"C{number:04d}", float(rng.uniform(0, 60))
        if rng.random() < 0.4:
            rows += [(f"{customer}-{n}", customer, day) for n in range(1 + (rng.random() < 0.5))]
            continue
        while day < days:
            rows.append((f"{customer}-{len(rows)}", customer, day))
            day += float(rng.exponential(70))
    frame = pd.DataFrame(rows, columns=["order_id", "customer_id", "day"])
    frame = frame[frame["day"] < days]
    frame["ordered_at"] = start + pd.to_timedelta(frame.pop("day").round(), unit="D")
    frame = frame.assign(item_id="cd", quantity=1, unit_price=12.5)
    frame.to_csv(directory / "purchases.csv", index=False)
    return start + pd.Timedelta(days=days)


def test_reasons_count_orders_one_way_and_every_risk_is_explained(tmp_path: Path) -> None:
    """On a small shop with customers whose two orders fall on one day: a reason never says
    "only one order" of a customer with two, every number of orders in a reason is the
    features' `orders`, and every customer at medium or high risk gets a reason."""
    from features.customers import customer_features

    as_of = _synthetic_purchases(tmp_path)
    shop = load_shop(tmp_path).shop
    table = CustomerScorer().fit(shop, as_of, churn_horizon_days=60).score(shop, as_of)
    features = customer_features(shop, as_of).set_index("customer_id")
    table = table.join(features[["orders", "overdue_ratio"]], on="customer_id")
    reasons = table["churn_reasons"].fillna("")
    same_day = table["orders"].gt(1) & table["overdue_ratio"].isna() & reasons.ne("")
    assert same_day.sum() >= 20  # the case is there: explained customers with one order day
    assert not (reasons.str.contains("only one order") & table["orders"].gt(1)).any()
    for pattern in (r"(\d+) orders?, all on one day", r"(\d+) orders? in \d+ days as a customer"):
        stated = reasons.str.extract(pattern)[0].dropna().astype(int)
        assert len(stated) and (stated == table.loc[stated.index, "orders"]).all()
    at_risk = table["churn_risk"].isin(["medium", "high"])
    assert (reasons[at_risk] != "").all()
    assert (reasons[~at_risk] == "").all()


def test_every_customer_at_risk_gets_a_reason() -> None:
    """Features that tell nothing in a shop where most customers lapse (CDNOW, Groceries): the
    risk is high for everyone, and no group moves it by a point for most customers. Each gets
    the group that raises the risk most; one whose values are all typical, that no single cause
    stands out."""
    rng = np.random.default_rng(0)
    n = 2000
    features = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "orders": rng.integers(1, 8, n),
            "days_since_last_order": rng.uniform(0, 200, n).round(),
            "tenure_days": rng.uniform(200, 400, n).round(),
            "orders_last_90d": rng.integers(0, 3, n),
            "mean_order_value": rng.gamma(4, 5, n).round(2),
        }
    )
    lapsed = (rng.random(n) < 0.75).astype(int)
    model = ChurnModel(max_iter=50).fit(features, lapsed)
    typical = pd.DataFrame([dict(zip(model.feature_names_, model.reference_, strict=True))])
    churn, reasons = model.explain(pd.concat([features, typical], ignore_index=True))
    effects = model.group_effects(features).max(axis=1).to_numpy()
    at_risk = churn[:n] >= model.risk_thresholds[0]
    assert (at_risk & (effects < MIN_REASON_EFFECT)).sum() > 100  # the case is there
    assert all(reasons[i] for i in np.flatnonzero(at_risk))
    assert churn[n] >= 0.6 and reasons[n] == [
        f"no single cause: churn is common here (a typical returning customer scores "
        f"{100 * churn[n]:.0f}%)"
    ]


def test_single_class_labels_are_refused() -> None:
    frame = pd.DataFrame({"customer_id": ["a", "b"], "orders": [1, 2]})
    with pytest.raises(ValueError, match="single class"):
        ChurnModel().fit(frame, [1, 1])


def test_spend_reason_compares_with_a_typical_customer() -> None:
    typical = {"mean_order_value": 40.0}
    low = describe_reason("spend", {"mean_order_value": 12.5}, typical)
    high = describe_reason("spend", {"mean_order_value": 95.0}, typical)
    assert low == "low spend: mean order value 12.50 against a typical 40.00"
    assert not high.startswith("low spend")


def test_reason_effects_equal_predicting_every_bag_on_every_row(
    shop: Shop, scorer: CustomerScorer
) -> None:
    """The explanation skips bags and rows that cannot change; the effects must be exactly
    those of replacing each group and predicting everything again."""
    from features.customers import customer_features
    from models.churn import REASON_GROUPS, add_btyd_outputs

    features = add_btyd_outputs(
        customer_features(shop, AS_OF), scorer.bgnbd_, scorer.churn_horizon_days_
    )
    model = scorer.churn_model_
    effects = model.group_effects(features)
    matrix = model._matrix(features)
    base = model._probability(matrix)
    assert len(model.bag_columns_) > 1
    for group, columns in REASON_GROUPS.items():
        idx = [i for i, c in enumerate(model.feature_names_) if c in columns]
        if not idx:
            continue
        changed = matrix.copy()
        changed[:, idx] = model.reference_[idx]
        np.testing.assert_array_equal(effects[group], base - model._probability(changed))
    churn, reasons = model.explain(features)
    np.testing.assert_array_equal(churn, model.predict_proba(features)[:, 1])
    assert reasons == model.reasons(features)
