"""Feature tables as pandas hands them back: canonical types and row order, whatever the engine."""

from __future__ import annotations

from collections.abc import Collection

import pandas as pd

FLOAT = "float64"
"""The type of every feature that is not a whole count (NaN = not defined)."""


def canonical_frame(
    frame: pd.DataFrame,
    id_column: str,
    count_columns: Collection[str],
    text_columns: Collection[str] = (),
) -> pd.DataFrame:
    """Engine output sorted by `id_column` (kept as str), `count_columns` int64, `text_columns`
    as they are, every other column float64."""
    frame = frame.sort_values(id_column, kind="stable").reset_index(drop=True)
    types = {
        column: ("int64" if column in count_columns else FLOAT)
        for column in frame.columns
        if column != id_column and column not in text_columns
    }
    frame = frame.astype(types)
    frame[id_column] = frame[id_column].astype(str)
    return frame
