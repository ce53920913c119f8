"""A shop's tables in PostgreSQL (issue 25, build 1): bad rows in a database table are reported
with their key and reason, a missing table is a clear error. A real PostgreSQL server (the
session's `postgres_url`). Training from the database: tests/test_postgresql.py."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from patronage.cli import main


def test_bad_rows_in_a_database_table_are_reported_with_their_key_and_reason(
    postgres_database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(postgres_database) as connection:
        connection.execute(
            "CREATE SCHEMA bad; CREATE TABLE bad.purchases (order_id text, customer_id text, "
            "item_id text, quantity integer, unit_price numeric(10, 2), ordered_at text)"
        )
        connection.execute(
            "INSERT INTO bad.purchases VALUES "
            "('O1', 'C1', 'I1', 1, 2.50, '2025-01-02T10:00:00Z'),"
            "('O2', 'C2', 'I1', 0, 2.50, '2025-01-03T10:00:00Z'),"
            "('O3', 'C3', 'I2', 1, 4.00, 'last tuesday'),"
            "('O1', 'C1', 'I1', 3, 2.50, '2025-01-02T10:00:00Z'),"
            "('O4', 'C4', 'I3', 1, 1.00, '2025-02-01T10:00:00Z')"
        )
    url = f"{postgres_database}?schema=bad"
    assert main(["validate", url, "--as-of", "2025-06-01", "--max-reject-rate", "1",
                 "--rejects-dir", str(tmp_path / "rejects")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "bad.purchases: read 5, accepted 2, rejected 3" in out
    assert "rejected order_id=O2 item_id=I1: out_of_range" in out
    assert "rejected order_id=O1 item_id=I1: duplicate_order_item" in out
    assert "rejected order_id=O3 item_id=I2: bad_timestamp" in out
    assert "line" not in out.split("bad.purchases")[1].split("Result")[0]
    rejects = (tmp_path / "rejects" / "purchases.rejects.csv").read_text().splitlines()
    assert rejects[0].startswith("key,reason,detail,")
    assert sorted(line.split(",")[:2] for line in rejects[1:]) == [
        ["order_id=O1 item_id=I1", "duplicate_order_item"],
        ["order_id=O2 item_id=I1", "out_of_range"],
        ["order_id=O3 item_id=I2", "bad_timestamp"],
    ]
    # Over the limit: exit 2, and the reasons still name the rows by key.
    assert main(["validate", url, "--as-of", "2025-06-01"]) == 2
    assert "rejected order_id=O2 item_id=I1: out_of_range" in capsys.readouterr().out


def test_a_missing_table_or_server_is_a_clear_error(
    postgres_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", f"{postgres_database}?schema=nothing_here"]) == 1
    assert "no table or view named purchases in schema nothing_here" in capsys.readouterr().err
