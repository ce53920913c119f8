"""Loading a data directory: file formats, unreadable files, inferred tables, rejects, CLI codes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.loading import RejectsNotWritable, UnreadableTable, load_shop
from patronage.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
AS_OF = pd.Timestamp("2025-06-01", tz="UTC")
PURCHASES_HEADER = "order_id,customer_id,item_id,quantity,unit_price,ordered_at,channel\n"
GOOD_PURCHASES = PURCHASES_HEADER + (
    "O1,007,I1,2,3.50,2025-01-01T10:00:00Z,web\n"
    "O1,007,I2,1,1.00,2025-01-01T10:00:00Z,web\n"
    "O2,008,I1,1,4.50,2025-01-02T10:00:00Z,app\n"
)


def _shop_dir(tmp_path: Path, purchases: str = GOOD_PURCHASES) -> Path:
    directory = tmp_path / "shop"
    directory.mkdir()
    (directory / "purchases.csv").write_text(purchases)
    return directory


def test_items_and_customers_are_inferred_from_purchases(tmp_path: Path) -> None:
    loaded = load_shop(_shop_dir(tmp_path), as_of=AS_OF)
    items = loaded.shop.items.set_index("item_id")
    assert items.loc["I1", "price"] == 4.0  # median of 3.50 and 4.50
    assert bool(items["available"].all()) and items["category"].isna().all()
    customers = loaded.shop.customers
    assert customers["customer_id"].tolist() == ["007", "008"]
    assert customers["signed_up_at"].iloc[0] == pd.Timestamp("2025-01-01T10:00", tz="UTC")
    assert loaded.report.tables["items"].inferred
    assert list(loaded.shop.feedback.columns) == [
        "customer_id",
        "created_at",
        "kind",
        "item_id",
        "order_id",
        "rating",
        "text",
    ]
    assert len(loaded.shop.feedback) == 0
    assert not (tmp_path / "shop" / "_rejects").exists()  # nothing rejected, nothing written


def test_parquet_tables_are_read_with_their_types(tmp_path: Path) -> None:
    directory = tmp_path / "shop"
    directory.mkdir()
    pd.DataFrame(
        {
            "order_id": ["O1", "O2", "O3"],
            "customer_id": [12, 13, 12],  # numeric ids become text
            "item_id": ["I1", "I1", "I2"],
            "quantity": [1, 2, 0],
            "unit_price": [1.5, 2.5, 1.0],
            "ordered_at": pd.to_datetime(
                ["2025-01-01 10:00", "2025-01-02 00:00", "2025-01-03 00:00"]
            ),
        }
    ).to_parquet(directory / "purchases.parquet")
    pd.DataFrame(
        {"item_id": ["I1", "I2"], "name": ["Tea", "Mug"], "available": [True, False]}
    ).to_parquet(directory / "items.parquet")
    loaded = load_shop(directory, as_of=AS_OF, max_reject_rate=1.0)
    purchases = loaded.shop.purchases
    assert purchases["customer_id"].tolist() == ["12", "13"]
    assert purchases["ordered_at"].iloc[0] == pd.Timestamp("2025-01-01T10:00", tz="UTC")
    assert str(purchases["ordered_at"].dtype) == "datetime64[ns, UTC]"
    assert loaded.shop.items["available"].tolist() == [True, False]
    rejects = pd.read_csv(directory / "_rejects" / "purchases.rejects.csv", dtype=str)
    # Parquet rows are numbered from 1; the rejected row's values are written as text.
    assert rejects[["line", "reason", "quantity", "customer_id"]].values.tolist() == [
        ["3", "out_of_range", "0", "12"]
    ]
    assert rejects["ordered_at"].iloc[0].startswith("2025-01-03")


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("purchases.csv", b"\x00\x01\x02PK\x03\x04 junk \x00\xff" * 20, "binary data"),
        (
            "purchases.csv",
            PURCHASES_HEADER.encode() + "O1,Zoë,I1,1,1,2025-01-01,web\n".encode("latin-1"),
            "not valid UTF-8 text (first bad byte on line 2)",
        ),
        ("purchases.csv", b"order_id,customer_id,quantity\nO1,c,1\n", "missing required column"),
        ("purchases.csv", b"", "the file is empty"),
        ("purchases.parquet", b"this is not parquet at all", "not a readable Parquet file"),
        ("purchases.csv", "order_id,customer_id\n".encode("utf-16"), "UTF-16"),
        ("purchases.csv", b"order_id;customer_id;item_id\nO1;c;i\n", "separated by ';'"),
    ],
    ids=["binary", "encoding", "missing-column", "empty", "bad-parquet", "utf-16", "semicolons"],
)
def test_unreadable_files_name_the_file_and_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes, expected: str
) -> None:
    directory = tmp_path / "shop"
    directory.mkdir()
    (directory / name).write_bytes(content)
    with pytest.raises(UnreadableTable, match="purchases") as caught:
        load_shop(directory, as_of=AS_OF)
    assert expected in str(caught.value)
    assert str(directory / name) in str(caught.value)
    assert main(["validate", str(directory)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and str(directory / name) in error


def test_both_csv_and_parquet_for_one_table_is_an_error(tmp_path: Path) -> None:
    directory = _shop_dir(tmp_path)
    pd.read_csv(directory / "purchases.csv", dtype=str).to_parquet(directory / "purchases.parquet")
    with pytest.raises(UnreadableTable, match="both exist"):
        load_shop(directory, as_of=AS_OF)
    assert main(["validate", str(directory)]) == 1


def test_missing_purchases_table_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UnreadableTable, match="purchases table is required"):
        load_shop(tmp_path, as_of=AS_OF)


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _shop_dir(tmp_path)
    assert main(["validate", str(good), "--as-of", "2025-06-01"]) == 0
    assert "every table within the allowed reject rate" in capsys.readouterr().out
    bad = tmp_path / "bad"
    shutil.copytree(FIXTURES / "bad_shop", bad)
    assert main(["validate", str(bad), "--as-of", "2025-06-01"]) == 2
    captured = capsys.readouterr()
    assert "above the limit of 1.00%" in captured.err
    assert str(bad / "_rejects" / "purchases.rejects.csv") in captured.out
    assert main(["validate", str(bad), "--as-of", "2025-06-01", "--max-reject-rate", "0.9"]) == 0


def test_rejects_dir_is_configurable_and_errors_clearly(tmp_path: Path) -> None:
    directory = _shop_dir(tmp_path, GOOD_PURCHASES + "O3,009,I1,0,1,2025-01-03,web\n")
    elsewhere = tmp_path / "elsewhere"
    loaded = load_shop(directory, as_of=AS_OF, max_reject_rate=1.0, rejects_dir=elsewhere)
    assert loaded.report.tables["purchases"].rejects_path == elsewhere / "purchases.rejects.csv"
    assert (elsewhere / "purchases.rejects.csv").exists()
    assert not (directory / "_rejects").exists()
    not_a_dir = tmp_path / "a_file"
    not_a_dir.write_text("")
    with pytest.raises(RejectsNotWritable, match="--rejects-dir"):
        load_shop(directory, as_of=AS_OF, max_reject_rate=1.0, rejects_dir=not_a_dir)


def test_an_outdated_rejects_file_is_removed(tmp_path: Path) -> None:
    directory = _shop_dir(tmp_path, GOOD_PURCHASES + "O3,009,I1,0,1,2025-01-03,web\n")
    load_shop(directory, as_of=AS_OF, max_reject_rate=1.0)
    rejects = directory / "_rejects" / "purchases.rejects.csv"
    assert rejects.exists()
    (directory / "purchases.csv").write_text(GOOD_PURCHASES)
    load_shop(directory, as_of=AS_OF)
    assert not rejects.exists()


def test_extra_columns_and_unknown_files_are_noted(tmp_path: Path) -> None:
    purchases = GOOD_PURCHASES.replace("channel\n", "channel,coupon\n", 1).replace(
        "web\n", "web,X\n"
    )
    directory = _shop_dir(tmp_path, purchases)
    (directory / "purchase.csv").write_text("typo")
    report = load_shop(directory, as_of=AS_OF, max_reject_rate=1.0).report
    assert "coupon" in " ".join(report.tables["purchases"].notes)
    assert "purchase.csv" in " ".join(report.notes)


def test_large_csv_line_numbers_stay_exact(tmp_path: Path) -> None:
    """The fast reader's line numbers with quoted line breaks in many rows."""
    n = 30_000
    order = np.arange(n)
    text = np.where(order % 1000 == 0, '"two\nlines"', "web")
    quantity = np.where(order % 9973 == 5, "0", "1")
    body = pd.DataFrame(
        {
            "order_id": order.astype(str),
            "customer_id": (order % 300).astype(str),
            "item_id": (order % 40).astype(str),
            "quantity": quantity,
            "ordered_at": "2025-01-01",
            "channel": text,
        }
    )
    lines = body["order_id"]
    for column in body.columns[1:]:
        lines = lines + "," + body[column]
    directory = _shop_dir(tmp_path, "order_id,customer_id,item_id,quantity,ordered_at,channel\n")
    with open(directory / "purchases.csv", "a") as handle:
        handle.write("\n".join(lines) + "\n")
    report = load_shop(directory, as_of=AS_OF, max_reject_rate=1.0).report
    rejects = pd.read_csv(directory / "_rejects" / "purchases.rejects.csv", dtype=str)
    bad = np.flatnonzero(quantity == "0")
    # Row i sits on line 2 + i plus one extra line per earlier multi-line row.
    expected = [2 + i + (i - 1) // 1000 + 1 for i in bad]
    assert rejects["line"].astype(int).tolist() == expected
    assert report.tables["purchases"].read == n


def test_bom_crlf_and_spaces_around_header_names(tmp_path: Path) -> None:
    content = "\ufefforder_id , customer_id,item_id,quantity,ordered_at\r\n"
    content += "O1,c1,i1,1,2025-01-01\r\n\r\nO2,c1,i1,0,2025-01-02\r\n"
    directory = _shop_dir(tmp_path)
    (directory / "purchases.csv").write_bytes(content.encode("utf-8"))
    loaded = load_shop(directory, as_of=AS_OF, max_reject_rate=1.0)
    assert loaded.shop.purchases["order_id"].tolist() == ["O1"]
    rejects = pd.read_csv(directory / "_rejects" / "purchases.rejects.csv", dtype=str)
    assert rejects[["line", "reason"]].values.tolist() == [["4", "out_of_range"]]  # blank line 3


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("multiline", [False, True], ids=["one-line-values", "multi-line-value"])
def test_line_numbers_with_blank_and_malformed_lines(
    tmp_path: Path, newline: str, multiline: bool
) -> None:
    """Blank, whitespace-only and malformed lines: each path (the vectorised one, and Python's
    csv module when a quoted value also spans lines) numbers rows the same way."""
    channel = '"web\nshop"' if multiline else '"web, shop"'
    rows = [
        "order_id,customer_id,item_id,quantity,ordered_at,channel",
        "O1,c1,i1,1,2025-01-01,web",
        "",
        "O2,c1,i1,0,2025-01-01,web",  # line 4: quantity 0
        "   ",
        "O3,c1,i1,1,2025-01-01,web,extra",  # line 6: one value too many
        f"O4,c1,i1,1,2025-01-01,{channel}",
        "O5,c1,i1,0,2025-01-01,web",  # line 8 (9 when the value above spans two lines)
        "O3,c1,i1,1,2025-01-01,web,extra",  # the same malformed line again
    ]
    directory = _shop_dir(tmp_path)
    (directory / "purchases.csv").write_bytes(newline.join(rows).encode() + b"\n\n")
    loaded = load_shop(directory, as_of=AS_OF, max_reject_rate=1.0)
    assert loaded.shop.purchases["order_id"].tolist() == ["O1", "O4"]
    shift = 1 if multiline else 0
    rejects = pd.read_csv(directory / "_rejects" / "purchases.rejects.csv", dtype=str)
    assert rejects[["line", "reason", "order_id"]].values.tolist() == [
        ["4", "out_of_range", "O2"],
        ["6", "bad_row", "O3"],
        [str(8 + shift), "out_of_range", "O5"],
        [str(9 + shift), "bad_row", "O3"],
    ]
    assert "found 7" in rejects["detail"].iloc[1]
