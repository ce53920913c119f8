"""The sample shop: deterministic, contract-shaped, and its planted truths are in the data."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.contract import FEEDBACK_KINDS, TABLES
from features.sample_shop import generate_shop

SMALL = {"customers": 300, "items": 60, "days": 120, "seed": 3}
PERIOD_START = pd.Timestamp("2025-01-01", tz="UTC")
PERIOD_END = PERIOD_START + pd.Timedelta(days=365)  # the size of the shared fixture


def _files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def _read(directory: Path, name: str) -> pd.DataFrame:
    """A table as the strings in the file (nothing parsed), empty cells as NaN."""
    return pd.read_csv(directory / f"{name}.csv", dtype=str, keep_default_na=False, na_values=[""])


def _utc(values: pd.Series) -> pd.Series:
    """Parse ISO 8601 timestamps that must carry an explicit UTC zone (Z or +00:00)."""
    assert values.str.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|\+00:00)$").all()
    return pd.to_datetime(values, utc=True, format="ISO8601")


@pytest.fixture(scope="module")
def shop(sample_shop_dir: Path) -> dict[str, pd.DataFrame]:
    return {name: _read(sample_shop_dir, name) for name in TABLES}


def test_same_arguments_give_identical_files_and_another_seed_differs(tmp_path: Path) -> None:
    first = generate_shop(tmp_path / "a", **SMALL)
    generate_shop(tmp_path / "b", **SMALL)
    generate_shop(tmp_path / "c", **{**SMALL, "seed": 4})
    files = _files(tmp_path / "a")
    assert files == _files(tmp_path / "b")
    assert "_truth/complementary_pairs.csv" in files and "_truth/leavers.csv" in files
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", files, shallow=False)
    assert mismatch == [] and errors == []
    assert first.purchase_lines > 0 and first.feedback_rows > 0
    for name in TABLES:
        assert not filecmp.cmp(tmp_path / "a" / f"{name}.csv", tmp_path / "c" / f"{name}.csv")


def test_parquet_is_deterministic_and_holds_the_same_rows_as_csv(tmp_path: Path) -> None:
    generate_shop(tmp_path / "csv", **SMALL)
    generate_shop(tmp_path / "p1", **SMALL, file_format="parquet")
    generate_shop(tmp_path / "p2", **SMALL, file_format="parquet")
    for name in TABLES:
        assert filecmp.cmp(tmp_path / "p1" / f"{name}.parquet", tmp_path / "p2" / f"{name}.parquet")
        table = pq.read_table(tmp_path / "p1" / f"{name}.parquet")
        as_csv = _read(tmp_path / "csv", name)
        assert table.column_names == list(as_csv.columns)
        assert table.num_rows == len(as_csv)
    purchases = pq.read_table(tmp_path / "p1" / "purchases.parquet").to_pandas()
    assert str(purchases["ordered_at"].dtype).endswith("UTC]")
    from_csv = _utc(_read(tmp_path / "csv", "purchases")["ordered_at"])
    assert (purchases["ordered_at"].to_numpy() == from_csv.to_numpy()).all()


def test_every_table_has_exactly_the_contract_columns(shop: dict[str, pd.DataFrame]) -> None:
    for name, table in TABLES.items():
        contract_columns = [c.name for c in table.columns]
        extra = ["gender", "age_band", "region"] if name == "customers" else []
        assert list(shop[name].columns) == contract_columns + extra, name
        for column in table.columns:
            if column.kind == "id":
                values = shop[name][column.name].dropna()
                assert (values.str.len() > 0).all()
        for column in table.required_columns:
            assert shop[name][column].notna().all(), (name, column)


def test_purchases_follow_the_contract(shop: dict[str, pd.DataFrame]) -> None:
    purchases = shop["purchases"]
    assert purchases["quantity"].str.fullmatch(r"\d+").all()
    assert (purchases["quantity"].astype(int) >= 1).all()
    assert (purchases["unit_price"].astype(float) >= 0).all()
    assert set(purchases["channel"]) == {"web", "app", "store"}
    assert not purchases.duplicated(["order_id", "item_id"]).any()
    ordered_at = _utc(purchases["ordered_at"])
    assert ordered_at.min() >= PERIOD_START and ordered_at.max() < PERIOD_END
    # One order belongs to one customer at one moment.
    per_order = purchases.groupby("order_id")[["customer_id", "ordered_at", "channel"]].nunique()
    assert (per_order == 1).all().all()
    assert set(purchases["customer_id"]) <= set(shop["customers"]["customer_id"])
    assert set(purchases["item_id"]) <= set(shop["items"]["item_id"])


def test_orders_come_after_sign_up(shop: dict[str, pd.DataFrame]) -> None:
    customers = shop["customers"].assign(signed_up_at=lambda t: _utc(t["signed_up_at"]))
    assert customers["signed_up_at"].max() < PERIOD_END
    assert (customers["signed_up_at"] > PERIOD_START).mean() > 0.5  # acquisition over the year
    first_order = shop["purchases"].assign(at=lambda t: _utc(t["ordered_at"]))
    first_order = first_order.groupby("customer_id")["at"].min()
    signed_up = customers.set_index("customer_id")["signed_up_at"]
    assert (first_order > signed_up[first_order.index]).all()


def test_feedback_follows_the_contract_and_its_orders(shop: dict[str, pd.DataFrame]) -> None:
    feedback = shop["feedback"]
    assert set(feedback["kind"]) == set(FEEDBACK_KINDS)
    ratings = feedback[feedback["kind"] == "rating"]
    assert ratings["rating"].notna().all()
    rated = feedback["rating"].dropna().astype(int)
    assert rated.between(1, 5).all() and set(rated) == {1, 2, 3, 4, 5}
    assert set(feedback["customer_id"]) <= set(shop["customers"]["customer_id"])
    assert set(feedback["item_id"].dropna()) <= set(shop["items"]["item_id"])
    created_at = _utc(feedback["created_at"])
    assert created_at.max() < PERIOD_END

    purchases = shop["purchases"]
    orders = purchases.drop_duplicates("order_id").set_index("order_id")
    assert feedback["order_id"].isin(orders.index).all()
    assert (
        feedback["customer_id"].to_numpy() == orders.loc[feedback["order_id"], "customer_id"]
    ).all()
    ordered_at = _utc(orders.loc[feedback["order_id"], "ordered_at"].reset_index(drop=True))
    assert (created_at.reset_index(drop=True) > ordered_at).all()
    about_item = feedback.dropna(subset=["item_id"])
    lines = set(zip(purchases["order_id"], purchases["item_id"], strict=True))
    assert all(
        pair in lines for pair in zip(about_item["order_id"], about_item["item_id"], strict=True)
    )
    assert (feedback.loc[feedback["kind"] == "return", "item_id"].notna()).all()


def test_items_and_customers_follow_the_contract(shop: dict[str, pd.DataFrame]) -> None:
    items, customers = shop["items"], shop["customers"]
    assert items["item_id"].is_unique and customers["customer_id"].is_unique
    assert (items["price"].astype(float) > 0).all()
    assert set(items["available"]) <= {"true", "false"}
    assert items["category"].nunique() >= 4
    assert set(customers["gender"]) <= {"female", "male", "unspecified"}
    assert customers["region"].nunique() > 3 and customers["age_band"].nunique() > 3


def test_item_popularity_has_a_long_tail(shop: dict[str, pd.DataFrame]) -> None:
    sales = shop["purchases"]["item_id"].value_counts()
    top_tenth = sales.iloc[: max(1, len(sales) // 10)].sum() / sales.sum()
    assert top_tenth > 0.25  # a flat catalogue would give 0.10


def test_planted_pairs_are_bought_together_far_above_chance(
    sample_shop_dir: Path, shop: dict[str, pd.DataFrame]
) -> None:
    pairs = _read(sample_shop_dir / "_truth", "complementary_pairs")
    assert list(pairs.columns) == ["item_a", "item_b"] and len(pairs) >= 3
    purchases = shop["purchases"]
    n_orders = purchases["order_id"].nunique()
    baskets = purchases.groupby("item_id")["order_id"].apply(set)
    for item_a, item_b in zip(pairs["item_a"], pairs["item_b"], strict=True):
        with_a, with_b = baskets[item_a], baskets[item_b]
        together = len(with_a & with_b)
        b_given_a = together / len(with_a)
        b_without_a = (len(with_b) - together) / (n_orders - len(with_a))
        assert together >= 5 and b_given_a > 5 * b_without_a, (item_a, item_b, together)


def test_leavers_stop_buying_and_their_history_shows_it(
    sample_shop_dir: Path, shop: dict[str, pd.DataFrame]
) -> None:
    leavers = _read(sample_shop_dir / "_truth", "leavers")
    assert list(leavers.columns[:2]) == ["customer_id", "left_at"]
    left_at = _utc(leavers.set_index("customer_id")["left_at"])
    assert left_at.max() < PERIOD_END
    customers = shop["customers"]["customer_id"]
    assert 0.05 < len(leavers) / len(customers) < 0.6

    purchases = shop["purchases"].assign(at=lambda t: _utc(t["ordered_at"]))
    by_leaver = purchases[purchases["customer_id"].isin(left_at.index)]
    assert (by_leaver["at"] < left_at[by_leaver["customer_id"]].to_numpy()).all()

    # Bad experiences make leaving more likely: learnable, but far from a perfect signal.
    feedback = shop["feedback"]
    unhappy = feedback["kind"].isin(["complaint", "return"]) | (
        feedback["rating"].astype(float) <= 2
    )
    had_bad = set(feedback.loc[unhappy, "customer_id"])
    buyers = set(purchases["customer_id"])
    left = set(left_at.index) & buyers
    share_left_bad = len(left & had_bad) / len(had_bad & buyers)
    share_left_fine = len(left - had_bad) / len(buyers - had_bad)
    assert share_left_bad > 1.3 * share_left_fine
    assert len(left - had_bad) > 0.3 * len(left)  # many leave without ever complaining


def test_consumables_are_bought_again(shop: dict[str, pd.DataFrame]) -> None:
    purchases = shop["purchases"].merge(shop["items"][["item_id", "category"]], on="item_id")
    repeats = purchases.groupby(["customer_id", "item_id", "category"]).size().rename("times")
    rebought = (repeats > 1).groupby(level="category").mean()
    assert rebought.get("coffee", 0) > 2 * rebought.get("kitchen", 0)


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="items"):
        generate_shop(tmp_path, items=3)
    with pytest.raises(ValueError, match="start"):
        generate_shop(tmp_path, start="first of May")
    with pytest.raises(ValueError, match="format"):
        generate_shop(tmp_path, file_format="xlsx")


def test_cli_generates_prints_a_summary_and_refuses_to_overwrite(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "patronage", "generate", "--out", str(tmp_path / "shop")]
    command += ["--customers", "200", "--items", "40", "--days", "60", "--seed", "1"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "customers 200" in result.stdout and "purchase lines" in result.stdout
    assert (tmp_path / "shop" / "purchases.csv").exists()
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 1 and "--overwrite" in again.stderr
    bad = subprocess.run(command + ["--overwrite", "--items", "5"], capture_output=True, text=True)
    assert bad.returncode == 1 and "items must be at least 10" in bad.stderr


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_the_validator_accepts_every_row(tmp_path: Path, file_format: str) -> None:
    from features.loading import load_shop

    summary = generate_shop(tmp_path / "shop", **SMALL, file_format=file_format)
    end = pd.Timestamp(summary.end, tz="UTC")
    loaded = load_shop(tmp_path / "shop", as_of=end, rejects_dir=tmp_path / "rejects")
    for name, report in loaded.report.tables.items():
        assert report.rejected == 0, (name, report.rejected_by_reason)
    assert len(loaded.shop.purchases) == summary.purchase_lines
    assert len(loaded.shop.feedback) == summary.feedback_rows
    assert loaded.shop.purchases["ordered_at"].max() < end


def test_unavailable_items_stop_selling_and_customers_buy_substitutes(
    sample_shop_dir: Path, shop: dict[str, pd.DataFrame]
) -> None:
    truth = _read(sample_shop_dir / "_truth", "items").set_index("item_id")
    items = shop["items"].set_index("item_id")
    flagged = items.index[items["available"] == "false"]
    assert len(flagged) > 0
    # The truth dates exactly the items the catalogue flags.
    assert set(truth.index[truth["unavailable_from"].notna()]) == set(flagged)
    stopped = _utc(truth.loc[flagged, "unavailable_from"])
    assert (stopped >= PERIOD_START).all() and (stopped < PERIOD_END).all()
    purchases = shop["purchases"]
    ordered_at = _utc(purchases["ordered_at"])
    last_sale = ordered_at.groupby(purchases["item_id"]).max()
    sold_flagged = last_sale.index.intersection(flagged)
    assert len(sold_flagged) > 0  # they did sell before they went
    assert (last_sale[sold_flagged] < stopped[sold_flagged]).all()
    # Demand moves to another item of the same category: the category keeps selling.
    for item in flagged:
        category = items.loc[item, "category"]
        same = items.index[(items["category"] == category) & (items["available"] == "true")]
        later = purchases[(ordered_at >= stopped[item]).to_numpy()]
        if len(same) and stopped[item] < PERIOD_END - pd.Timedelta(days=30):
            assert later["item_id"].isin(same).any(), item
