"""One CPU thread for the numeric libraries (BLAS and OpenMP) of a training run or a server.

threadpoolctl limits only the thread pools of libraries already loaded, and Patronage loads
scikit-learn (OpenMP, for HistGradientBoosting) and SciPy (its own OpenBLAS) lazily: a limit set
before they load leaves them on every core. On a shared or busy machine their idle threads spin
for work: a HistGradientBoosting fit measured 1.0 CPU-s on one thread and 32.9 CPU-s on two
while the other core was busy (4,800 rows, 200 trees)."""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def one_thread() -> threadpool_limits:
    """`threadpool_limits(1)` over every pool Patronage uses, loaded first; use as a context
    manager (or call `.restore_original_limits()`)."""
    import scipy.linalg  # noqa: F401  (SciPy's OpenBLAS)
    import sklearn.ensemble  # noqa: F401  (scikit-learn's OpenMP runtime)

    return threadpool_limits(1)
