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
