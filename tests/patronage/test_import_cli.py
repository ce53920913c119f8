"""`patronage import`: exit codes, what it says about dates and rejected rows (synthetic files)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.loading import load_shop
from patronage.cli import main

RETAIL_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"


def _retail_csv(path: Path, dates: list[str], customers: list[str] | None = None) -> Path:
    """An Online Retail I file: one sale per date, invoice 1000+i."""
    customers = customers or ["17850.0"] * len(dates)
    rows = [RETAIL_HEADER]
    for i, (date, customer) in enumerate(zip(dates, customers, strict=True)):
        rows.append(f"{1000 + i},85123A,WHITE HANGING HEART,6,{date},2.55,{customer},UK")
    path.write_text("\n".join(rows) + "\n")
    return path


def _import(*args: str) -> int:
    return main(["import", *args])


def test_two_digit_years_import_with_exit_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _retail_csv(tmp_path / "retail.csv", ["12/1/10 8:26", "12/1/10 8:28", "12/13/10 9:00"])
    assert _import("online-retail", str(source), "--out", str(tmp_path / "out")) == 0
    out = capsys.readouterr().out
    assert "input rows 3: accepted 3, rejected 0" in out
    assert "month/day/year" in out
    ordered_at = load_shop(tmp_path / "out").shop.purchases["ordered_at"]
    assert ordered_at.max() == pd.Timestamp("2010-12-13T09:00", tz="UTC")


@pytest.mark.parametrize(
    ("importer", "header", "line", "reason"),
    [
        ("online-retail", RETAIL_HEADER, "1,85123A,HEART,6,someday,2.55,17850,UK", "bad_timestamp"),
        ("groceries", "Member_number,Date,itemDescription", "1808,someday,milk", "bad_timestamp"),
        (
            "cdnow",
            "customer_id date number_of_cds dollar_value",
            "00001 1997 1 9.99",
            "bad_timestamp",
        ),
    ],
)
def test_every_row_rejected_exits_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    importer: str,
    header: str,
    line: str,
    reason: str,
) -> None:
    source = tmp_path / "source.txt"
    source.write_text(f"{header}\n{line}\n{line}\n")
    out = tmp_path / "out"
    assert _import(importer, str(source), "--out", str(out), "--max-reject-rate", "1") == 2
    captured = capsys.readouterr()
    assert "input rows 2: accepted 0, rejected 2" in captured.out
    assert "no row was accepted" in captured.err
    assert reason in captured.err
    assert str(out / "_rejects" / "source.rejects.csv") in captured.err
    rejects = pd.read_csv(out / "_rejects" / "source.rejects.csv", dtype=str)
    assert rejects["reason"].tolist() == [reason, reason]


def test_source_rejects_above_the_limit_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One line in ten has a date nobody can read: 10% of the source rows, above the default 1%.
    dates = ["2010-12-01 08:26"] * 9 + ["yesterday"]
    source = _retail_csv(tmp_path / "retail.csv", dates)
    assert _import("online-retail", str(source), "--out", str(tmp_path / "a")) == 2
    err = capsys.readouterr().err
    assert "1 of 10 source rows rejected (10.00%)" in err
    assert "bad_timestamp" in err and "--max-reject-rate" in err
    assert str(tmp_path / "a" / "_rejects" / "source.rejects.csv") in err
    args = ["online-retail", str(source), "--out", str(tmp_path / "b"), "--max-reject-rate", "0.1"]
    assert _import(*args) == 0


def test_guest_lines_are_set_aside_not_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A quarter of the lines without a customer (as in the UCI export): kept in the rejects
    # file with their reason, listed, not counted toward the limit.
    customers = ["17850"] * 3 + [""]
    source = _retail_csv(tmp_path / "retail.csv", ["2010-12-01 08:26"] * 4, customers)
    assert _import("online-retail", str(source), "--out", str(tmp_path / "a")) == 0
    assert "set aside 1 rows (guest lines without a customer id)" in capsys.readouterr().out
    rejects = pd.read_csv(tmp_path / "a" / "_rejects" / "source.rejects.csv", dtype=str)
    assert rejects["reason"].tolist() == ["no_customer"]
    # Only guests: nothing accepted, refused all the same.
    only_guests = _retail_csv(tmp_path / "guests.csv", ["2010-12-01 08:26"] * 2, ["", ""])
    assert _import("online-retail", str(only_guests), "--out", str(tmp_path / "b")) == 2


def test_ambiguous_dates_are_flagged_and_day_first_reads_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _retail_csv(tmp_path / "retail.csv", ["3/4/2011 9:00", "5/6/2011 9:00"])
    assert _import("online-retail", str(source), "--out", str(tmp_path / "a")) == 0
    captured = capsys.readouterr()
    assert "--day-first" in captured.out and "--day-first" in captured.err
    assumed = load_shop(tmp_path / "a").shop.purchases["ordered_at"]
    assert assumed.iloc[0] == pd.Timestamp("2011-03-04T09:00", tz="UTC")
    args = ["online-retail", str(source), "--out", str(tmp_path / "b"), "--day-first"]
    assert _import(*args) == 0
    assert "day/month/year (--day-first)" in capsys.readouterr().out
    told = load_shop(tmp_path / "b").shop.purchases["ordered_at"]
    assert told.iloc[0] == pd.Timestamp("2011-04-03T09:00", tz="UTC")


def test_import_help_names_formats_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["import", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("M/D/YY", "D/M/YYYY", "--day-first", ".xlsx", "byte-order mark", "exit 2"):
        assert words in text
