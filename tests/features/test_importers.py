"""Importers: Groceries and CDNOW from ../shared/data, Online Retail from hand-written fixtures."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pandas as pd
import pytest

from features.importers import (
    cdnow_tables,
    groceries_tables,
    import_cdnow,
    import_groceries,
    import_online_retail,
    online_retail_tables,
)
from features.loading import load_shop
from patronage.cli import main

FIXTURES = Path(__file__).parent / "fixtures"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_groceries_import_keeps_every_line(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "groceries" / "Groceries_dataset.csv"
    before = _sha256(source)
    summary = import_groceries(source, tmp_path / "groceries")
    assert (summary.input_rows, summary.accepted, summary.rejected) == (38_765, 38_765, 0)
    assert summary.within_limit and summary.source_rejects_path is None
    assert _sha256(source) == before
    shop = load_shop(tmp_path / "groceries").shop
    assert shop.purchases["customer_id"].nunique() == 3_898
    assert len(shop.customers) == 3_898
    assert int(shop.purchases["quantity"].sum()) == 38_765  # repeated lines became quantity
    assert shop.purchases["item_id"].nunique() == 167
    # A member's lines on one date form one order, dated at midnight UTC.
    first = shop.purchases.iloc[0]
    assert first["order_id"] == f"{first['customer_id']}-{first['ordered_at']:%Y%m%d}"
    assert (shop.purchases["ordered_at"].dt.hour == 0).all()
    names = shop.items.set_index("item_id")["name"]
    assert names["uht-milk"] == "UHT-milk" and names["flower-seeds"] == "flower (seeds)"
    assert len(shop.feedback) == 0


def test_cdnow_import_keeps_every_line(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "cdnow" / "CDNOW_master.txt"
    before = _sha256(source)
    summary = import_cdnow(source, tmp_path / "cdnow", file_format="parquet")
    assert (summary.input_rows, summary.accepted, summary.rejected) == (69_659, 69_659, 0)
    assert _sha256(source) == before
    shop = load_shop(tmp_path / "cdnow").shop
    purchases = shop.purchases
    assert len(purchases) == 69_659 and purchases["order_id"].is_unique
    assert purchases["customer_id"].nunique() == 23_570
    assert purchases["customer_id"].iloc[0] == "00001"
    # Customer 00002 bought twice on 1997-01-12: 1 CD for $12.00 and 5 CDs for $77.00.
    two = purchases[purchases["customer_id"] == "00002"].head(2)
    assert two["order_id"].tolist() == ["00002-19970112-1", "00002-19970112-2"]
    assert two["quantity"].tolist() == [1, 5]
    assert two["unit_price"].tolist() == pytest.approx([12.0, 15.4])
    assert (purchases["item_id"] == "cd").all()


def test_cdnow_zero_cd_lines(tmp_path: Path) -> None:
    source = tmp_path / "cdnow.txt"
    source.write_text(
        " customer_id  date number_of_cds  dollar_value\n"
        " 00001 19970101  0   11.77\n"
        " 00002 19970102  0    0.00\n"
        " 00003 19970103  2   20.00\n"
    )
    converted = cdnow_tables(source)
    purchases = converted.tables["purchases"]
    assert purchases[["customer_id", "quantity", "unit_price"]].values.tolist() == [
        ["00001", 1, 11.77],
        ["00003", 2, 10.0],
    ]
    assert converted.source_rejects[["line", "reason"]].values.tolist() == [[3, "empty_purchase"]]


def test_online_retail_i(tmp_path: Path) -> None:
    source = FIXTURES / "online_retail_i.csv"
    before = _sha256(source)
    summary = import_online_retail(source, tmp_path / "retail")
    assert _sha256(source) == before
    assert (summary.input_rows, summary.accepted, summary.rejected) == (9, 6, 3)
    assert summary.rejected_by_reason == {"no_customer": 1, "zero_quantity": 1, "out_of_range": 1}
    # The bad-debt adjustment (negative price) is kept in purchases.csv and rejected there.
    assert not summary.within_limit
    source_rejects = pd.read_csv(summary.source_rejects_path, dtype=str)
    assert source_rejects[["line", "reason", "InvoiceNo"]].values.tolist() == [
        ["8", "no_customer", "536381"],
        ["9", "zero_quantity", "536382"],
    ]
    shop = load_shop(tmp_path / "retail", max_reject_rate=1.0).shop
    lines = shop.purchases.set_index(["order_id", "item_id"])
    # Two lines of 85123A on invoice 536365 merged: 6 x 2.55 + 2 x 2.75 = 20.80 for 8.
    assert lines.loc[("536365", "85123A"), "quantity"] == 8
    assert lines.loc[("536365", "85123A"), "unit_price"] == pytest.approx(2.6)
    assert lines.loc[("536365", "85123A"), "customer_id"] == "17850"  # "17850.0" in the file
    assert shop.purchases["ordered_at"].iloc[0] == pd.Timestamp("2010-12-01T08:26", tz="UTC")
    returns = shop.feedback
    assert returns["kind"].tolist() == ["return", "return"]
    assert returns[["customer_id", "item_id"]].values.tolist() == [
        ["14527", "D"],
        ["13047", "71053"],
    ]
    assert "returned 3 x WHITE METAL LANTERN" in returns["text"].iloc[1]


def test_online_retail_ii(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = FIXTURES / "online_retail_ii.csv"
    args = ["import", "online-retail", str(source), "--out", str(tmp_path / "retail")]
    # 2 of 8 lines have no customer (guest lines, a quarter of the UCI files): written to the
    # rejects file and listed, but set aside from the reject rate, so the import succeeds.
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "input rows 8: accepted 6, rejected 2" in out
    assert "set aside 2 rows (guest lines without a customer id)" in out
    shop = load_shop(tmp_path / "retail").shop
    assert shop.purchases["order_id"].tolist() == ["489434", "489434", "489435"]
    assert sorted(shop.feedback["item_id"]) == ["22087", "22143", "85206A"]
    assert (shop.feedback["kind"] == "return").all()
    customers = shop.customers.set_index("customer_id")
    assert customers.loc["16321", "region"] == "Australia"
    assert shop.items.set_index("item_id").loc["22350", "name"] == "CAT BOWL"


def test_online_retail_missing_columns_and_excel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("Invoice,StockCode\n1,2\n")
    with pytest.raises(ValueError, match="no column Description"):
        online_retail_tables(wrong)
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # as on a machine without openpyxl
    excel = tmp_path / "online_retail_II.xlsx"
    excel.write_bytes(b"PK")
    with pytest.raises(ValueError, match="needs openpyxl"):
        online_retail_tables(excel)


def test_import_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = str(FIXTURES / "online_retail_ii.csv")
    args = ["import", "online-retail", source, "--out", str(tmp_path / "retail")]
    args += ["--max-reject-rate", "0.3"]
    assert main(args) == 0
    assert main(args) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_groceries_day_first_dates_and_bad_lines(tmp_path: Path) -> None:
    source = tmp_path / "groceries.csv"
    source.write_text(
        "Member_number,Date,itemDescription\n"
        "1808,21-07-2015,tropical fruit\n"
        "1808,21-07-2015,tropical fruit\n"
        "1808,21-07-2015,whole milk\n"
        "2552,2015-05-01,whole milk\n"
        "2552,someday,whole milk\n"
        ",2015-05-01,whole milk\n"
    )
    summary = import_groceries(source, tmp_path / "out", max_reject_rate=1.0)
    assert (summary.input_rows, summary.accepted, summary.rejected) == (6, 4, 2)
    assert summary.rejected_by_reason == {"bad_timestamp": 1, "missing_value": 1}
    purchases = load_shop(tmp_path / "out").shop.purchases
    assert purchases[["order_id", "item_id", "quantity"]].values.tolist() == [
        ["2552-20150501", "whole-milk", 1],
        ["1808-20150721", "tropical-fruit", 2],
        ["1808-20150721", "whole-milk", 1],
    ]


RETAIL_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"


def _retail_csv(path: Path, dates: list[str], *, sep: str = ",", price: str = "2.55") -> Path:
    """An Online Retail I file: one sale per date, invoice 1000+i, customer 17850."""
    rows = [RETAIL_HEADER.replace(",", sep)]
    for i, date in enumerate(dates):
        values = [f"{1000 + i}", "85123A", "WHITE HANGING HEART", "6", date, price, "17850.0", "UK"]
        rows.append(sep.join(values))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_online_retail_two_digit_years(tmp_path: Path) -> None:
    # The common spreadsheet export of the UCI file: month first, two-digit years.
    source = _retail_csv(tmp_path / "retail.csv", ["12/1/10 8:26", "12/9/11 12:50", "1/4/11 10:00"])
    summary = import_online_retail(source, tmp_path / "out")
    assert (summary.input_rows, summary.accepted, summary.rejected) == (3, 3, 0)
    assert summary.within_limit
    ordered_at = load_shop(tmp_path / "out").shop.purchases["ordered_at"]
    assert sorted(ordered_at) == [
        pd.Timestamp("2010-12-01T08:26", tz="UTC"),
        pd.Timestamp("2011-01-04T10:00", tz="UTC"),
        pd.Timestamp("2011-12-09T12:50", tz="UTC"),
    ]
    assert any("month/day/year" in note for note in summary.notes + summary.warnings)


def test_online_retail_semicolons_bom_and_decimal_commas(tmp_path: Path) -> None:
    source = _retail_csv(tmp_path / "retail.csv", ["01.12.2010 08:26:00"] * 2, sep=";")
    source.write_bytes(b"\xef\xbb\xbf" + source.read_bytes().replace(b"2.55", b"2,55"))
    converted = online_retail_tables(source)
    converted.check_accounting()
    assert len(converted.source_rejects) == 0
    purchases = converted.tables["purchases"]
    assert purchases["unit_price"].tolist() == [2.55, 2.55]
    assert purchases["order_id"].tolist() == ["1000", "1001"]
    # 01.12.2010 cannot tell day from month: month first is assumed, loudly.
    assert purchases["ordered_at"].iloc[0] == pd.Timestamp("2010-01-12T08:26", tz="UTC")
    assert any("--day-first" in warning for warning in converted.warnings)
    day_first = online_retail_tables(source, day_first=True).tables["purchases"]
    assert day_first["ordered_at"].iloc[0] == pd.Timestamp("2010-12-01T08:26", tz="UTC")


def test_online_retail_day_first_is_inferred(tmp_path: Path) -> None:
    source = _retail_csv(tmp_path / "retail.csv", ["13/1/2011 9:00", "2/1/2011 10:00"])
    converted = online_retail_tables(source)
    assert len(converted.source_rejects) == 0 and not converted.warnings
    assert converted.tables["purchases"]["ordered_at"].tolist() == [
        pd.Timestamp("2011-01-02T10:00", tz="UTC"),
        pd.Timestamp("2011-01-13T09:00", tz="UTC"),
    ]
    assert any("day/month/year" in note and "13/1/2011" in note for note in converted.notes)


def test_online_retail_ambiguous_dates_need_a_flag(tmp_path: Path) -> None:
    source = _retail_csv(tmp_path / "retail.csv", ["3/4/2011 9:00", "5/6/2011 9:00:30"])
    assumed = online_retail_tables(source)
    assert assumed.tables["purchases"]["ordered_at"].tolist() == [
        pd.Timestamp("2011-03-04T09:00", tz="UTC"),
        pd.Timestamp("2011-05-06T09:00:30", tz="UTC"),
    ]
    assert any("--day-first" in warning for warning in assumed.warnings)
    told = online_retail_tables(source, day_first=True)
    assert not told.warnings
    assert told.tables["purchases"]["ordered_at"].tolist() == [
        pd.Timestamp("2011-04-03T09:00", tz="UTC"),
        pd.Timestamp("2011-06-05T09:00:30", tz="UTC"),
    ]
    explicit = online_retail_tables(source, date_format="%d/%m/%Y %H:%M")
    assert explicit.tables["purchases"]["ordered_at"].tolist() == [
        pd.Timestamp("2011-04-03T09:00", tz="UTC")
    ]
    assert explicit.source_rejects["reason"].tolist() == ["bad_timestamp"]
    assert "5/6/2011 9:00:30" in explicit.source_rejects["detail"].iloc[0]


def test_online_retail_excel_all_sheets(tmp_path: Path) -> None:
    sheet = {
        "InvoiceNo": ["536365", "536366"],
        "StockCode": ["85123A", "71053"],
        "Description": ["WHITE HANGING HEART", "WHITE METAL LANTERN"],
        "Quantity": [6, 2],
        "InvoiceDate": pd.to_datetime(["2010-12-01 08:26", "2010-12-01 08:28"]),
        "UnitPrice": [2.55, 3.39],
        "CustomerID": [17850.0, 13047.0],
        "Country": ["United Kingdom", "United Kingdom"],
    }
    second = dict(
        sheet,
        InvoiceNo=["536367", "C536368"],
        Quantity=[1, -1],
        InvoiceDate=pd.to_datetime(["2011-01-04 10:00", "2011-01-05 11:00"]),
    )
    source = tmp_path / "online_retail.xlsx"
    with pd.ExcelWriter(source) as writer:
        pd.DataFrame(sheet).to_excel(writer, sheet_name="Year 2009-2010", index=False)
        pd.DataFrame(second).to_excel(writer, sheet_name="Year 2010-2011", index=False)
    summary = import_online_retail(source, tmp_path / "out")
    assert (summary.input_rows, summary.accepted, summary.rejected) == (4, 4, 0)
    shop = load_shop(tmp_path / "out").shop
    assert shop.purchases["order_id"].tolist() == ["536365", "536366", "536367"]
    assert shop.purchases["customer_id"].tolist() == ["17850", "13047", "17850"]
    assert shop.purchases["unit_price"].tolist() == pytest.approx([2.55, 3.39, 2.55])
    assert shop.purchases["ordered_at"].iloc[0] == pd.Timestamp("2010-12-01T08:26", tz="UTC")
    assert shop.feedback["kind"].tolist() == ["return"]


def test_groceries_and_cdnow_read_a_byte_order_mark(tmp_path: Path) -> None:
    groceries = tmp_path / "groceries.csv"
    groceries.write_bytes(
        b"\xef\xbb\xbfMember_number;Date;itemDescription\n1808;21-07-2015;whole milk\n"
    )
    converted = groceries_tables(groceries)
    assert len(converted.source_rejects) == 0
    assert converted.tables["purchases"]["order_id"].tolist() == ["1808-20150721"]
    cdnow = tmp_path / "cdnow.txt"
    cdnow.write_bytes(
        b"\xef\xbb\xbf customer_id  date number_of_cds  dollar_value\n 00001 19970101  1  11.77\n"
    )
    converted = cdnow_tables(cdnow)
    assert len(converted.source_rejects) == 0
    assert converted.tables["purchases"]["customer_id"].tolist() == ["00001"]
