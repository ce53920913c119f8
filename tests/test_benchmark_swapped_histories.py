"""The personal-signal diagnostic's swapped copy: histories change hands, nothing else moves."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.recommenders import swap_histories


def _history_sizes_and_baskets(lines: pd.DataFrame) -> tuple[Counter, Counter]:
    sizes = Counter(lines.groupby("Member_number").size().tolist())
    baskets = Counter(
        tuple(sorted(group["itemDescription"])) for _, group in lines.groupby("Member_number")
    )
    return sizes, baskets


def test_swapped_copy_moves_whole_histories_and_leaves_the_test_period_alone(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(3)
    rows = []
    for member in range(1000, 1120):
        for _ in range(int(rng.integers(1, 12))):
            day = pd.Timestamp("2015-01-01") + pd.Timedelta(days=int(rng.integers(0, 360)))
            rows.append((member, day.strftime("%Y-%m-%d"), f"item {member % 17}"))
    source = tmp_path / "groceries.csv"
    pd.DataFrame(rows, columns=["Member_number", "Date", "itemDescription"]).to_csv(
        source, index=False
    )
    original = source.read_bytes()
    target = tmp_path / "swapped.csv"
    swap_histories(source, target, seed=0)

    assert source.read_bytes() == original  # the input is never modified
    real, swapped = pd.read_csv(source), pd.read_csv(target)
    before = pd.to_datetime(real["Date"]) < pd.Timestamp("2015-10-01")
    # the test period is untouched, line for line
    pd.testing.assert_frame_equal(real.loc[~before], swapped.loc[~before])
    # before the cut, the same members hold the same histories, only reassigned
    assert set(real.loc[before, "Member_number"]) == set(swapped.loc[before, "Member_number"])
    assert _history_sizes_and_baskets(real.loc[before]) == _history_sizes_and_baskets(
        swapped.loc[before]
    )
    own = real.loc[before].groupby("Member_number")["itemDescription"].apply(sorted)
    moved = swapped.loc[before].groupby("Member_number")["itemDescription"].apply(sorted)
    assert (own != moved.reindex(own.index)).mean() > 0.5  # most customers got another's
    # ... of about the same size: swaps stay within groups of similar line counts, so the
    # sizes before and after rank the customers alike (a free shuffle would give about 0)
    sizes = pd.DataFrame(
        {
            "own": real.loc[before].groupby("Member_number").size(),
            "swapped": swapped.loc[before].groupby("Member_number").size(),
        }
    )
    assert sizes["own"].corr(sizes["swapped"], method="spearman") > 0.9
