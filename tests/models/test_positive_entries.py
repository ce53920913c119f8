"""`positive_entries` is the matrix `matrix.multiply(matrix > 0)` gives, entry for entry."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from models.recommenders.base import positive_entries


def _by_product(matrix: sp.csr_matrix, binary: bool) -> sp.csr_matrix:
    """What the models computed before: the sparse product, as float32 CSR (1.0 if binary)."""
    product = sp.csr_matrix(matrix.multiply(matrix > 0), dtype=np.float32)
    if binary:
        product.eliminate_zeros()
        product.data[:] = 1.0
    return product


def _random_matrices(seed: int) -> list[sp.csr_matrix]:
    rng = np.random.default_rng(seed)
    matrices = []
    for case in range(60):
        rows, columns = int(rng.integers(1, 12)), int(rng.integers(1, 30))
        dense = rng.normal(size=(rows, columns)) * (rng.random((rows, columns)) < 0.3)
        dense[rng.random((rows, columns)) < 0.03] = rng.choice([np.inf, -np.inf, np.nan])
        dtype = np.float64 if case % 4 == 0 else np.float32
        matrix = sp.csr_matrix(dense.astype(dtype))
        if case % 3 == 0:  # duplicates and unsorted columns: not in canonical format
            order = rng.permutation(matrix.nnz) if matrix.nnz else np.arange(0)
            row_of = np.repeat(np.arange(rows), np.diff(matrix.indptr))[order]
            pairs = np.lexsort((order, row_of))
            doubled = np.concatenate([matrix.data[order][pairs], matrix.data[order][pairs]])
            indices = np.concatenate([matrix.indices[order][pairs]] * 2)
            counts = 2 * np.bincount(row_of, minlength=rows)
            indptr = np.concatenate([[0], np.cumsum(counts)])
            grouped = np.argsort(np.concatenate([row_of[pairs], row_of[pairs]]), kind="stable")
            matrix = sp.csr_matrix((doubled[grouped], indices[grouped], indptr), shape=matrix.shape)
        matrices.append(matrix)
    return matrices


@pytest.mark.parametrize("binary", [False, True])
def test_positive_entries_match_the_sparse_product(binary: bool) -> None:
    canonical = 0
    for matrix in _random_matrices(seed=4):
        canonical += matrix.has_canonical_format
        expected, found = _by_product(matrix, binary), positive_entries(matrix, binary)
        assert found.dtype == np.float32 and found.shape == expected.shape
        assert np.array_equal(found.indptr, expected.indptr)
        assert np.array_equal(found.indices, expected.indices)
        assert np.array_equal(found.data, expected.data, equal_nan=True)
    assert 0 < canonical < 60  # both kinds were tried
