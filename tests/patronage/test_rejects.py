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


def _rejected_lines(rejects_dir: Path) -> list[str]:
    return (rejects_dir / "purchases.rejects.csv").read_text().splitlines()[1:]


def test_rejects_go_to_rejects_dir(shop_with_a_bad_row: Path, tmp_path: Path) -> None:
    """Within the limit the command succeeds; the bad row, whole, with its reason, is in D."""
    rejects = tmp_path / "rejects"
    out = tmp_path / "features.parquet"
    args = ["features", str(shop_with_a_bad_row), "--as-of", "2025-12-01", "--out", str(out)]
    assert main([*args, "--rejects-dir", str(rejects)]) == 0
    [line] = _rejected_lines(rejects)
    assert "bad_integer" in line and "BAD-1" in line and "many" in line
    assert out.is_file()
    assert not (shop_with_a_bad_row / "_rejects").exists()


def test_rejects_dir_defaults_to_dir_rejects(shop_with_a_bad_row: Path, tmp_path: Path) -> None:
    out = tmp_path / "features.parquet"
    assert (
        main(["features", str(shop_with_a_bad_row), "--as-of", "2025-12-01", "--out", str(out)])
        == 0
    )
    [line] = _rejected_lines(shop_with_a_bad_row / "_rejects")
    assert "bad_integer" in line


@pytest.mark.parametrize(
    "command",
    [
        ["features", "--as-of", "2025-12-01", "--out", "{tmp}/features.parquet"],
        ["score", "--fit", "--out", "{tmp}/scores.csv"],
        ["train", "--quiet"],
        ["recommend-fit", "--model-dir", "{tmp}/bundle"],
    ],
    ids=lambda command: command[0],
)
def test_every_loading_command_takes_rejects_dir(
    command: list[str],
    shop_with_a_bad_row: Path,
    tmp_path: Path,
    mlflow_store,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """features, score, train and recommend-fit: above the limit, exit 2 and the summary points
    at the rejects written to --rejects-dir (nothing written into the shop directory)."""
    rejects = tmp_path / "rejects"
    name, *options = (part.replace("{tmp}", str(tmp_path)) for part in command)
    code = main(
        [name, str(shop_with_a_bad_row), *options]
        + ["--max-reject-rate", "0", "--rejects-dir", str(rejects)]
    )
    out, err = capsys.readouterr()
    assert code == 2, err
    assert str(rejects / "purchases.rejects.csv") in out
    [line] = _rejected_lines(rejects)
    assert "bad_integer" in line
    assert not (shop_with_a_bad_row / "_rejects").exists()
