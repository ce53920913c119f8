"""Shared fixtures: where the shared reference data lives, and BLAS pinned to one thread."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("PATRONAGE_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`; fails (never skips) when it is missing, saying where it was looked for."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.fail(
            f"reference data not found at {SHARED_DATA}: clone the project with ../shared beside "
            "it or set PATRONAGE_SHARED_DATA"
        )
    return SHARED_DATA


SAMPLE_SHOP_SIZE = {"customers": 800, "items": 120, "days": 365, "seed": 7}
"""The size of the shared small sample shop (`sample_shop_dir`); tests may read it."""


@pytest.fixture(scope="session")
def sample_shop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated sample shop (CSV, planted truths in `_truth/`), made once per session.

    800 customers, 120 items, 365 days from 2025-01-01, seed 7. Read-only: copy it before
    changing anything in it."""
    from features.sample_shop import generate_shop

    directory = tmp_path_factory.mktemp("sample_shop")
    generate_shop(directory, **SAMPLE_SHOP_SIZE)
    return directory
