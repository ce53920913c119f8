"""A shop in PostgreSQL (issue 25, build 1): `patronage export-db` loads a shop directory, the
same shop trains from the database to the data hash and metrics it trains to from files, and
bad rows in a database table are reported with their key and reason. A real PostgreSQL server
(the session's `postgres_url`), a real MLflow SQLite store."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from patronage.cli import main

TINY_SHOP = {"customers": 200, "items": 30, "days": 150, "seed": 3}


def test_a_shop_trains_from_postgresql_to_the_hash_and_metrics_of_its_files(
    postgres_database: str, mlflow_store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow

    from features.sample_shop import generate_shop
    from models.registry_names import DATA_SHA256_TAG

    shop_dir = tmp_path / "tiny"
    generate_shop(shop_dir, **TINY_SHOP)
    url = f"{postgres_database}?schema=tiny_db"
    assert main(["export-db", str(shop_dir), url]) == 0
    assert "purchases" in capsys.readouterr().out
    # The schema's name is the shop's default name: the two runs register apart.
    rejects = str(tmp_path / "rejects")
    options = ["--roles", "loyalty", "--quiet", "--as-of", "2025-05-25", "--rejects-dir", rejects]
    for source in (str(shop_dir), url):
        assert main(["train", source, *options]) == 0
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    by_source = {run.data.params["data.source"]: run for run in runs}
    assert len(by_source) == 2, f"expected one run per source, got {list(by_source)}"
    from_files = by_source[str(shop_dir.resolve())]
    from_database = next(run for source, run in by_source.items() if "tiny_db" in source)
    assert from_files.data.tags[DATA_SHA256_TAG] == from_database.data.tags[DATA_SHA256_TAG]
    assert from_files.data.metrics, "the run logged no metrics: the comparison proves nothing"
    assert from_files.data.metrics == from_database.data.metrics


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
