"""The Complete Journey importer: a small synthetic directory of Parquet files with known answers,
the command line's refusals, and the real files from ../shared/data/completejourney."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.importers import completejourney_tables, import_completejourney
from features.loading import load_shop
from patronage.cli import main

TRANSACTION_COLUMNS = [
    "household_id",
    "store_id",
    "basket_id",
    "product_id",
    "quantity",
    "sales_value",
    "retail_disc",
    "coupon_disc",
    "coupon_match_disc",
    "week",
    "transaction_timestamp",
]

# household, basket, product, quantity, sales_value, retail_disc, coupon_disc, time (naive, UTC)
LINES = [
    (1, 100, 11, 1, 2.50, 0.0, 0.0, "2017-01-02 15:00:07"),
    (1, 100, 12, 2, 3.00, 0.5, 0.0, "2017-01-02 15:00:07"),
    (1, 100, 11, 1, 2.00, 0.5, 0.0, "2017-01-02 15:00:07"),  # same basket and product: merged
    (1, 100, 13, 0, 0.00, 0.0, 1.0, "2017-01-02 15:00:07"),  # coupon line: zero_quantity
    (2, 200, 12, 1, 1.70, 0.0, 0.0, "2017-01-03 09:30:00"),
    (2, 200, 14, 1, 0.00, 3.99, 0.0, "2017-01-03 09:30:00"),  # given away: non_positive_value
    (2, 201, 14, 1, -1.00, 0.0, 0.0, "2017-01-05 10:00:00"),  # adjustment: non_positive_value
    (3, 300, 99, 1, 5.00, 0.0, 0.0, "2017-01-04 20:15:00"),  # product not in products.parquet
]

PRODUCTS = pd.DataFrame(
    {
        "product_id": [11, 12, 13, 14, 16],
        "manufacturer_id": [2, 69, 69, 5, 5],
        "department": ["GROCERY", "PRODUCE", "COUPON", "DRUG GM", "GROCERY"],
        "brand": ["National", "Private", "National", "National", "National"],
        "product_category": ["SOFT DRINKS", None, None, "VITAMINS", "CHEESE"],
        "product_type": ["SOFT DRINKS 12/18&15PK CAN CAR", "BANANAS", None, "VITAMIN C", "BRIE"],
        "package_size": ["12 OZ", None, None, "60 CT", "8 OZ"],
    }
)

DEMOGRAPHICS = pd.DataFrame(
    {
        "household_id": [1, 4],  # household 4 bought nothing; 2 and 3 have no demographics
        "age": ["45-54", "65+"],
        "income": ["50-74K", "Under 15K"],
        "home_ownership": ["Homeowner", None],
        "marital_status": [None, "Married"],
        "household_size": ["2", "1"],
        "household_comp": ["2 Adults No Kids", "1 Adult No Kids"],
        "kids_count": ["0", "0"],
    }
)


def _transactions(lines: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(
        lines,
        columns=[
            "household_id",
            "basket_id",
            "product_id",
            "quantity",
            "sales_value",
            "retail_disc",
            "coupon_disc",
            "transaction_timestamp",
        ],
    )
    frame["transaction_timestamp"] = pd.to_datetime(frame["transaction_timestamp"])
    frame = frame.assign(store_id=367, coupon_match_disc=0.0, week=1)
    return frame[TRANSACTION_COLUMNS]


def _source(directory: Path, lines: list[tuple] = LINES) -> Path:
    """A Complete Journey directory: the three files the importer reads, plus one it ignores."""
    directory.mkdir(parents=True, exist_ok=True)
    _transactions(lines).to_parquet(directory / "transactions.parquet", index=False)
    PRODUCTS.to_parquet(directory / "products.parquet", index=False)
    DEMOGRAPHICS.to_parquet(directory / "demographics.parquet", index=False)
    pd.DataFrame({"campaign_id": [1], "household_id": [1]}).to_parquet(
        directory / "campaigns.parquet", index=False
    )
    return directory


def _utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_synthetic_directory_gives_the_expected_tables(tmp_path: Path) -> None:
    converted = completejourney_tables(_source(tmp_path / "cj"))
    converted.check_accounting()
    tables = converted.tables
    assert tables["purchases"].values.tolist() == [
        ["100", "1", "11", 2, pytest.approx(2.25), _utc("2017-01-02 15:00:07"), "store"],
        ["100", "1", "12", 2, pytest.approx(1.50), _utc("2017-01-02 15:00:07"), "store"],
        ["200", "2", "12", 1, pytest.approx(1.70), _utc("2017-01-03 09:30:00"), "store"],
        ["300", "3", "99", 1, pytest.approx(5.00), _utc("2017-01-04 20:15:00"), "store"],
    ]
    assert converted.rows_behind["purchases"].tolist() == [2, 1, 1, 1]
    assert len(tables["feedback"]) == 0

    items = tables["items"].replace({np.nan: None})
    assert items.values.tolist() == [
        ["11", "SOFT DRINKS 12/18&15PK CAN CAR, 12 OZ", "SOFT DRINKS", pytest.approx(2.25), True],
        # No product_category: the department is the category; the retailer's own brand.
        ["12", "BANANAS, private label", "PRODUCE", pytest.approx(1.60), True],
        ["99", None, None, pytest.approx(5.0), True],
    ]

    customers = tables["customers"].replace({np.nan: None})
    assert customers.columns.tolist() == [
        "customer_id",
        "age",
        "income",
        "home_ownership",
        "marital_status",
        "household_size",
        "household_comp",
        "kids_count",
    ]
    assert customers.values.tolist() == [
        ["1", "45-54", "50-74K", "Homeowner", None, "2", "2 Adults No Kids", "0"],
        ["2", None, None, None, None, None, None, None],
        ["3", None, None, None, None, None, None, None],
    ]

    rejects = converted.source_rejects
    assert rejects[["line", "reason", "basket_id", "product_id"]].values.tolist() == [
        [4, "zero_quantity", "100", "13"],
        [6, "non_positive_value", "200", "14"],
        [7, "non_positive_value", "201", "14"],
    ]
    assert rejects["detail"].tolist() == [
        "quantity is 0 (a coupon or adjustment line; sales_value 0.00, coupon_disc 1.00)",
        "sales_value is 0.00 for quantity 1, retail_disc 3.99",
        "sales_value is -1.00 for quantity 1",
    ]
    notes = " | ".join(converted.notes)
    assert "1 lines repeating a product in a basket merged" in notes
    assert "1 products bought are not in products.parquet" in notes
    assert "1 households in demographics.parquet have no purchase line" in notes
    assert "holds UTC" in notes and "campaigns" in notes


def test_synthetic_import_accounts_for_every_line(tmp_path: Path) -> None:
    source = _source(tmp_path / "cj")
    summary = import_completejourney(source, tmp_path / "out", max_reject_rate=0.5)
    assert (summary.input_rows, summary.accepted, summary.rejected) == (8, 5, 3)
    assert summary.accepted + summary.rejected == summary.input_rows
    assert summary.rejected_by_reason == {"zero_quantity": 1, "non_positive_value": 2}
    assert summary.within_limit
    written = pd.read_csv(summary.source_rejects_path, dtype=str)
    assert written[["line", "reason"]].values.tolist() == [
        ["4", "zero_quantity"],
        ["6", "non_positive_value"],
        ["7", "non_positive_value"],
    ]
    assert "coupon_disc" in written.columns  # the source row, whole
    shop = load_shop(tmp_path / "out").shop
    assert len(shop.purchases) == 4 and len(shop.items) == 3 and len(shop.customers) == 3
    assert shop.customers.set_index("customer_id").loc["1", "household_comp"] == "2 Adults No Kids"


def test_cli_imports_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _source(tmp_path / "cj")
    out = tmp_path / "out"
    args = ["import", "completejourney", str(source), "--out", str(out)]
    assert main([*args, "--max-reject-rate", "0.5", "--file-format", "parquet"]) == 0
    assert "input rows 8: accepted 5, rejected 3" in capsys.readouterr().out
    assert (out / "purchases.parquet").exists()
    # 3 of 8 lines rejected is above the default 1%: refused, naming the reasons.
    assert main([*args, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "non_positive_value: 2 rows" in err and "zero_quantity: 1 rows" in err


def test_cli_exits_2_when_every_line_is_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    coupons = [line for line in LINES if line[3] == 0 or line[4] <= 0]
    source = _source(tmp_path / "cj", coupons)
    out = tmp_path / "out"
    args = ["import", "completejourney", str(source), "--out", str(out), "--max-reject-rate", "1"]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert "input rows 3: accepted 0, rejected 3" in captured.out
    assert "no row was accepted" in captured.err
    assert str(out / "_rejects" / "source.rejects.csv") in captured.err


def test_cli_refuses_a_file_or_an_incomplete_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _source(tmp_path / "cj")
    out = str(tmp_path / "out")
    # The source cannot be read: exit 1, like every importer (2 is for rows rejected).
    assert (
        main(["import", "completejourney", str(source / "transactions.parquet"), "--out", out]) == 1
    )
    assert "is a file: completejourney imports the directory" in capsys.readouterr().err
    (source / "demographics.parquet").unlink()
    assert main(["import", "completejourney", str(source), "--out", out]) == 1
    assert "missing demographics.parquet" in capsys.readouterr().err
    assert main(["import", "completejourney", str(tmp_path / "nowhere"), "--out", out]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out" / "purchases.csv").exists()


def test_missing_column_and_date_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _source(tmp_path / "cj")
    _transactions(LINES).drop(columns="sales_value").to_parquet(
        source / "transactions.parquet", index=False
    )
    with pytest.raises(ValueError, match="missing column\\(s\\) sales_value"):
        completejourney_tables(source)
    args = ["import", "completejourney", str(source), "--out", str(tmp_path / "out")]
    assert main([*args, "--day-first"]) == 1
    assert "drop --date-format/--day-first" in capsys.readouterr().err


def test_real_complete_journey(shared_data: Path, tmp_path: Path) -> None:
    """The published files: every line accounted for, coupon lines rejected, spend kept."""
    source = shared_data / "completejourney"
    transactions = source / "transactions.parquet"
    before = hashlib.sha256(transactions.read_bytes()).hexdigest()
    summary = import_completejourney(source, tmp_path / "cj", file_format="parquet")
    assert hashlib.sha256(transactions.read_bytes()).hexdigest() == before
    raw = pd.read_parquet(transactions)
    coupon = raw["quantity"] == 0
    no_value = ~coupon & (raw["sales_value"] <= 0)
    kept = raw[~coupon & ~no_value]
    assert summary.input_rows == len(raw) == 1_469_307
    assert summary.rejected_by_reason == {
        "zero_quantity": int(coupon.sum()),
        "non_positive_value": int(no_value.sum()),
    }
    assert summary.accepted == len(kept) and summary.accepted + summary.rejected == len(raw)
    assert summary.within_limit  # 0.77% rejected

    shop = load_shop(tmp_path / "cj").shop
    purchases = shop.purchases
    assert purchases["order_id"].nunique() == kept["basket_id"].nunique()
    assert len(shop.customers) == kept["household_id"].nunique() == 2_469
    spend = float((purchases["quantity"] * purchases["unit_price"]).sum())
    assert spend == pytest.approx(float(kept["sales_value"].sum()), rel=1e-9)
    assert int(purchases["quantity"].sum()) == int(kept["quantity"].sum())
    # Naive times are UTC: the first line of the file, 06:53 in the stores' New York time.
    assert purchases["ordered_at"].min() == pd.Timestamp("2017-01-01T11:53:26Z")
    assert shop.customers["age"].notna().sum() == 801
    assert shop.items["category"].notna().mean() > 0.99
