"""Commands that load a shop: rejected rows and their reasons, and exit code 2 above the limit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from patronage.cli import main

BAD_PURCHASE = '"BAD-1","C525","I001",many,35.99,"2025-03-01T10:00:00Z","web"\n'
"""One purchase line whose quantity is not a number (reason `bad_integer`)."""


@pytest.fixture
def shop_with_a_bad_row(sample_shop_dir: Path, tmp_path: Path) -> Path:
    """A copy of the small sample shop's four tables with one bad purchase line at the end."""
    shop = tmp_path / "shop"
    shop.mkdir()
    for table in sample_shop_dir.glob("*.csv"):
        shutil.copyfile(table, shop / table.name)
    with (shop / "purchases.csv").open("a") as purchases:
        purchases.write(BAD_PURCHASE)
    return shop


def test_train_refuses_rejected_data_with_exit_2(
    shop_with_a_bad_row: Path, mlflow_store, capsys: pytest.CaptureFixture[str]
) -> None:
    """Like validate, features and score: the rejects summary on stdout, exit code 2."""
    code = main(["train", str(shop_with_a_bad_row), "--max-reject-rate", "0", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert "bad_integer" in out and "purchases.rejects.csv" in out
    assert "registry unchanged" in err
