"""Trusted skops loading: other types refused by name; each file's bytes built once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression

from models.skops_files import load_trusted

TRUSTED = ["sklearn.linear_model._logistic.LogisticRegression"]


def _fitted(seed: int) -> LogisticRegression:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(40, 3))
    return LogisticRegression().fit(features, features[:, 0] > 0)


class Smuggled:
    """A type nobody listed as trusted (skops trusts scikit-learn's estimators by itself)."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


def test_a_file_with_an_untrusted_type_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    skops.io.dump([_fitted(0), Smuggled()], path)
    with pytest.raises(ValueError, match="not trusted.*Smuggled"):
        load_trusted(path, TRUSTED)


def test_the_same_bytes_are_built_once_and_new_bytes_again(tmp_path: Path) -> None:
    first, copy, other = tmp_path / "a.skops", tmp_path / "b.skops", tmp_path / "c.skops"
    skops.io.dump(_fitted(0), first)
    copy.write_bytes(first.read_bytes())
    skops.io.dump(_fitted(1), other)
    loaded = load_trusted(first, TRUSTED)
    assert isinstance(loaded, LogisticRegression)
    assert load_trusted(copy, TRUSTED) is loaded
    changed = load_trusted(other, TRUSTED)
    assert changed is not loaded
    assert not np.array_equal(changed.coef_, loaded.coef_)
