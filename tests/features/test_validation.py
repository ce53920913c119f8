"""Validation rules: a fixture directory with a bad row of every kind the contract forbids."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.loading import DataRejected, LoadedShop, load_shop
from features.validation import REASONS

FIXTURES = Path(__file__).parent / "fixtures"
AS_OF = pd.Timestamp("2025-06-01", tz="UTC")

# (table, line in the file, reason): every row of tests/features/fixtures/bad_shop that must be
# rejected. Lines not listed are accepted.
EXPECTED_REJECTS = [
    ("purchases", 5, "missing_value"),
    ("purchases", 6, "bad_integer"),
    ("purchases", 7, "bad_number"),
    ("purchases", 8, "bad_timestamp"),
    ("purchases", 9, "out_of_range"),
    ("purchases", 10, "out_of_range"),
    ("purchases", 11, "bad_integer"),
    ("purchases", 12, "duplicate_line"),
    ("purchases", 13, "duplicate_order_item"),
    ("purchases", 14, "order_conflict"),
    ("purchases", 15, "unknown_item"),
    ("purchases", 16, "after_as_of"),
    ("purchases", 19, "out_of_range"),  # after a quoted value spanning lines 17-18
    ("purchases", 20, "order_conflict"),
    ("items", 4, "bad_boolean"),
    ("items", 5, "duplicate_item"),
    ("items", 6, "out_of_range"),
    ("items", 7, "missing_value"),
    ("customers", 5, "duplicate_customer"),
    ("customers", 6, "bad_timestamp"),
    ("feedback", 4, "unknown_kind"),
    ("feedback", 5, "missing_rating"),
    ("feedback", 6, "out_of_range"),
    ("feedback", 7, "bad_integer"),
    ("feedback", 8, "unknown_customer"),
    ("feedback", 9, "unknown_item"),
    ("feedback", 10, "unknown_order"),
    ("feedback", 11, "order_customer_mismatch"),
    ("feedback", 12, "duplicate_line"),
    ("feedback", 13, "after_as_of"),
    ("feedback", 15, "bad_row"),  # line 14 is blank
    ("feedback", 16, "missing_value"),
]


def _checksums(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


@pytest.fixture(scope="module")
def bad_shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DataRejected, dict]:
    """The bad fixture shop copied to a temp dir and loaded once; checksums taken before."""
    directory = tmp_path_factory.mktemp("bad") / "shop"
    shutil.copytree(FIXTURES / "bad_shop", directory)
    before = _checksums(directory)
    with pytest.raises(DataRejected) as caught:
        load_shop(directory, as_of=AS_OF)
    return directory, caught.value, before


@pytest.fixture(scope="module")
def rejects(bad_shop: tuple[Path, DataRejected, dict]) -> dict[str, pd.DataFrame]:
    directory = bad_shop[0]
    return {
        name: pd.read_csv(directory / "_rejects" / f"{name}.rejects.csv", dtype=str)
        for name in ("purchases", "feedback", "items", "customers")
    }


def test_fixture_covers_every_reason() -> None:
    assert {reason for _, _, reason in EXPECTED_REJECTS} == set(REASONS)


@pytest.mark.parametrize(("table", "line", "reason"), EXPECTED_REJECTS)
def test_each_bad_row_is_rejected_with_its_reason_and_line(
    rejects: dict[str, pd.DataFrame], table: str, line: int, reason: str
) -> None:
    rows = rejects[table][rejects[table]["line"] == str(line)]
    assert list(rows["reason"]) == [reason]
    assert rows["detail"].iloc[0]  # a human-readable detail, never empty


def test_only_the_bad_rows_are_rejected(rejects: dict[str, pd.DataFrame]) -> None:
    found = sorted(
        (name, int(line), reason)
        for name, frame in rejects.items()
        for line, reason in zip(frame["line"], frame["reason"], strict=True)
    )
    assert found == sorted(EXPECTED_REJECTS)


def test_rejected_rows_are_written_whole(rejects: dict[str, pd.DataFrame]) -> None:
    purchases = rejects["purchases"]
    assert list(purchases.columns) == [
        "line",
        "reason",
        "detail",
        "order_id",
        "customer_id",
        "item_id",
        "quantity",
        "unit_price",
        "ordered_at",
        "channel",
    ]
    bad_quantity = purchases[purchases["line"] == "6"].iloc[0]
    assert bad_quantity[["order_id", "quantity", "ordered_at"]].tolist() == [
        "O4",
        "two",
        "2025-01-07",
    ]
    bad_row = rejects["feedback"][rejects["feedback"]["reason"] == "bad_row"].iloc[0]
    assert "too,many,fields" in bad_row["detail"]


def test_input_files_are_unchanged(bad_shop: tuple[Path, DataRejected, dict]) -> None:
    directory, _, before = bad_shop
    assert _checksums(directory) == before


def test_counts_add_up(
    bad_shop: tuple[Path, DataRejected, dict], rejects: dict[str, pd.DataFrame]
) -> None:
    report = bad_shop[1].report
    expected_read = {"purchases": 19, "feedback": 14, "items": 6, "customers": 5}
    for name, table in report.tables.items():
        assert table.read == expected_read[name]
        assert table.accepted + table.rejected == table.read
        assert table.rejected == len(rejects[name])
        assert table.rejects_path == bad_shop[0] / "_rejects" / f"{name}.rejects.csv"
    assert report.tables["purchases"].rejected_by_reason["out_of_range"] == 3


def test_rejection_message_names_rate_limit_and_rejects(
    bad_shop: tuple[Path, DataRejected, dict],
) -> None:
    message = str(bad_shop[1])
    assert "14 of 19 rows rejected (73.68%)" in message
    assert "limit of 1.00%" in message
    assert str(bad_shop[0] / "_rejects" / "purchases.rejects.csv") in message
    summary = bad_shop[1].report.summary_text()
    assert "duplicate_order_item" in summary and "rejected rows written to" in summary


def test_accepted_rows_are_canonical(bad_shop: tuple[Path, DataRejected, dict]) -> None:
    shop = load_shop(bad_shop[0], as_of=AS_OF, max_reject_rate=1.0).shop
    purchases = shop.purchases
    assert purchases["order_id"].tolist() == ["O1", "O1", "O2", "O12", "O14"]
    assert purchases["customer_id"].iloc[0] == "00012"  # ids stay text, zeros kept
    assert str(purchases["ordered_at"].dtype) == "datetime64[ns, UTC]"
    # "+02:00" and "-05:00" converted to UTC; a bare date means midnight UTC.
    assert purchases["ordered_at"].iloc[2] == pd.Timestamp("2025-01-06T10:00", tz="UTC")
    assert purchases["ordered_at"].iloc[4] == pd.Timestamp("2025-01-10T13:00", tz="UTC")
    assert purchases["quantity"].dtype == "int64"
    assert purchases["channel"].iloc[3] == "web\nshop"
    assert purchases["unit_price"].isna().iloc[2]
    items = shop.items.set_index("item_id")
    assert items.loc["I2", "available"] == False  # noqa: E712 - "no" parsed as a bool
    assert str(shop.feedback["rating"].dtype) == "Int64"
    assert shop.feedback["text"].tolist() == ["Lovely tea", "Fine, thanks"]
    customers = shop.customers.set_index("customer_id")
    assert customers.loc["C2", "region"] == "south"  # the first of two C2 rows is kept
    assert set(customers.index) == {"00012", "C2", "C3"}


def test_timestamps_after_as_of_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "purchases.csv").write_text(
        "order_id,customer_id,item_id,quantity,ordered_at\n"
        "A,c1,i1,1,2025-01-01T23:59:59Z\n"
        "B,c1,i1,1,2025-01-02T00:00:00+01:00\n"  # 23:00 UTC on the 1st: not after
        "C,c1,i1,1,2025-01-02T00:00:01Z\n"
    )
    loaded = load_shop(tmp_path, as_of=pd.Timestamp("2025-01-02"), max_reject_rate=1.0)
    assert loaded.shop.purchases["order_id"].tolist() == ["A", "B"]
    assert loaded.report.tables["purchases"].rejected_by_reason == {"after_as_of": 1}


def test_default_as_of_is_now(tmp_path: Path) -> None:
    future = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=2)).isoformat()
    (tmp_path / "purchases.csv").write_text(
        f"order_id,customer_id,item_id,quantity,ordered_at\nA,c,i,1,2025-01-01\nB,c,i,1,{future}\n"
    )
    loaded: LoadedShop = load_shop(tmp_path, max_reject_rate=1.0)
    assert loaded.report.tables["purchases"].rejected_by_reason == {"after_as_of": 1}


def test_within_the_limit_returns_the_shop(tmp_path: Path) -> None:
    lines = [f"O{i},c{i % 7},i{i % 5},1,2025-01-01" for i in range(200)]
    lines.append("BAD,c1,i1,0,2025-01-01")  # 1 of 201 rows: 0.5%
    (tmp_path / "purchases.csv").write_text(
        "order_id,customer_id,item_id,quantity,ordered_at\n" + "\n".join(lines) + "\n"
    )
    loaded = load_shop(tmp_path, as_of=AS_OF, max_reject_rate=0.01)
    assert len(loaded.shop.purchases) == 200
    with pytest.raises(DataRejected):
        load_shop(tmp_path, as_of=AS_OF, max_reject_rate=0.001)


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("2025-01-05T10:00:00.5Z", "2025-01-05T10:00:00.5"),
        ("2025-01-05T10:00+0530", "2025-01-05T04:30"),
        ("2025-01-05 10:00:00-01:00", "2025-01-05T11:00"),
        ("2025-01-05T10:00:00", "2025-01-05T10:00"),
        ("  2025-01-05  ", "2025-01-05T00:00"),
        ("20250105T1000Z", "2025-01-05T10:00"),  # ISO 8601 basic format, parsed by pandas
        ("2025-02-30T00:00:00Z", None),
        ("3000-01-01", None),  # beyond what datetime64[ns] holds: bad, not "after as_of"
        ("1.5.2025", None),
    ],
)
def test_timestamp_forms(tmp_path: Path, written: str, expected: str | None) -> None:
    """Each form next to well-formed zoned and naive rows (the fast Arrow path and the pandas
    fallback must agree row by row)."""
    (tmp_path / "purchases.csv").write_text(
        "order_id,customer_id,item_id,quantity,ordered_at\n"
        "A,c,i,1,2025-01-01T00:00:00Z\n"
        f"B,c,i,1,{written}\n"
        "C,c,i,1,2025-01-02\n"
    )
    loaded = load_shop(tmp_path, as_of=pd.Timestamp("4000-01-01"), max_reject_rate=1.0)
    times = loaded.shop.purchases.set_index("order_id")["ordered_at"]
    assert times["A"] == pd.Timestamp("2025-01-01", tz="UTC")
    assert times["C"] == pd.Timestamp("2025-01-02", tz="UTC")
    if expected is None:
        assert loaded.report.tables["purchases"].rejected_by_reason == {"bad_timestamp": 1}
    else:
        assert times["B"] == pd.Timestamp(expected, tz="UTC")


@pytest.mark.parametrize(
    ("written", "accepted"),
    [("3", 3), ("3.0", 3), (" 4 ", 4), ("+2", 2), ("1e1", 10), ("2.5", None), ("inf", None)],
)
def test_quantity_forms(tmp_path: Path, written: str, accepted: int | None) -> None:
    (tmp_path / "purchases.csv").write_text(
        "order_id,customer_id,item_id,quantity,ordered_at\n"
        "A,c,i,1,2025-01-01\n"
        f'B,c,i,"{written}",2025-01-01\n'
    )
    loaded = load_shop(tmp_path, as_of=AS_OF, max_reject_rate=1.0)
    quantities = loaded.shop.purchases.set_index("order_id")["quantity"]
    if accepted is None:
        assert loaded.report.tables["purchases"].rejected_by_reason == {"bad_integer": 1}
    else:
        assert quantities["B"] == accepted


CORRUPTIONS = {
    "quantity": ["0", "-1", "x", "1.5", ""],
    "ordered_at": ["2025-13-01", "yesterday", "01/02/2025", "", "2025-02-30T00:00:00Z"],
    "customer_id": ["", "   "],
    "unit_price": ["-0.01", "free", "nan"],
}
GOOD_TIMES = [
    "2025-01-02",
    "2025-01-02T03:04:05Z",
    "2025-01-02 03:04:05+01:00",
    " 2025-01-02T03:04 ",
]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(GOOD_TIMES),
            st.integers(1, 99),
            st.one_of(st.none(), st.sampled_from(sorted(CORRUPTIONS))),
            st.integers(0, 4),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_exactly_the_corrupted_lines_are_rejected(tmp_path: Path, rows: list) -> None:
    """Random valid lines, some with one corrupted value: the rejects are exactly those lines,
    whatever mix of well-formed (Arrow) and odd (pandas) values each column holds."""
    lines = ["order_id,customer_id,item_id,quantity,unit_price,ordered_at"]
    corrupted = set()
    for number, (when, quantity, column, pick) in enumerate(rows):
        values = {
            "order_id": f"O{number}",
            "customer_id": f"{number % 7:05d}",
            "item_id": f"I{number % 3}",
            "quantity": str(quantity),
            "unit_price": f"{quantity / 4:.2f}",
            "ordered_at": when,
        }
        if column is not None:
            options = CORRUPTIONS[column]
            values[column] = options[pick % len(options)]
            corrupted.add(number + 2)
        lines.append(",".join(f'"{v}"' for v in values.values()))
    directory = tmp_path / f"shop{len(list(tmp_path.iterdir()))}"
    directory.mkdir()
    (directory / "purchases.csv").write_text("\n".join(lines) + "\n")
    loaded = load_shop(directory, as_of=AS_OF, max_reject_rate=1.0)
    table = loaded.report.tables["purchases"]
    assert table.read == len(rows)
    assert table.accepted + table.rejected == table.read
    rejected_lines = set((table.rejected_rows + 2).tolist())
    assert rejected_lines == corrupted
    assert loaded.shop.purchases["customer_id"].str.len().eq(5).all()


@pytest.mark.parametrize("contiguous", [True, False])
def test_order_conflicts_and_duplicates_whatever_the_line_order(
    tmp_path: Path, contiguous: bool
) -> None:
    """Orders whose lines are together (checked without hashing) and orders split apart."""
    lines = [
        "A,c1,i1,1,2025-01-01",
        "A,c1,i2,1,2025-01-01",
        "A,c2,i3,1,2025-01-01",  # another customer
        "A,c1,i4,1,2025-01-02",  # another time
        "A,c1,i1,5,2025-01-01",  # same order and item, other quantity
        "A,c1,i2,1,2025-01-01",  # exact repeat
        "B,c2,i1,1,2025-01-03",
    ]
    if not contiguous:
        lines.insert(2, lines.pop())  # B between A's lines
    (tmp_path / "purchases.csv").write_text(
        "order_id,customer_id,item_id,quantity,ordered_at\n" + "\n".join(lines) + "\n"
    )
    table = load_shop(tmp_path, as_of=AS_OF, max_reject_rate=1.0).report.tables["purchases"]
    assert table.rejected_by_reason == {
        "order_conflict": 2,
        "duplicate_order_item": 1,
        "duplicate_line": 1,
    }
    assert table.accepted == 3


def _reference_order_rules(rows: list[tuple[str, str, str, int, str]]) -> list[str | None]:
    """Order conflicts, then duplicates, one row at a time: the contract in plain Python."""
    owner: dict[str, tuple[str, str]] = {}
    reasons: list[str | None] = []
    for order, customer, _, _, when in rows:
        owner.setdefault(order, (customer, when))
        reasons.append(None if owner[order] == (customer, when) else "order_conflict")
    seen_rows: set[tuple] = set()
    seen_keys: set[tuple[str, str]] = set()
    for index, row in enumerate(rows):
        if reasons[index]:
            continue
        if row in seen_rows:
            reasons[index] = "duplicate_line"
        elif (row[0], row[2]) in seen_keys:
            reasons[index] = "duplicate_order_item"
        seen_rows.add(row)
        seen_keys.add((row[0], row[2]))
    return reasons


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["A", "B", "C"]),
            st.sampled_from(["c1", "c2"]),
            st.sampled_from(["i1", "i2"]),
            st.integers(1, 2),
            st.sampled_from(["2025-01-01", "2025-01-02"]),
        ),
        min_size=1,
        max_size=12,
    ),
    grouped=st.booleans(),
)
def test_order_rules_match_a_plain_reference(tmp_path: Path, rows: list, grouped: bool) -> None:
    if grouped:  # every order's lines together: the fast path without hashing
        rows = sorted(rows, key=lambda row: row[0])
    directory = tmp_path / f"shop{len(list(tmp_path.iterdir()))}"
    directory.mkdir()
    body = "\n".join(",".join(map(str, row)) for row in rows)
    (directory / "purchases.csv").write_text(
        "order_id,customer_id,item_id,quantity,ordered_at\n" + body + "\n"
    )
    table = load_shop(directory, as_of=AS_OF, max_reject_rate=1.0).report.tables["purchases"]
    found: list[str | None] = [None] * len(rows)
    for position, reason in zip(table.rejected_rows, table.rejected_reasons, strict=True):
        found[position] = reason
    assert found == _reference_order_rules(rows)
