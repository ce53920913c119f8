"""The hot routes' JSON encoder: compact, UTF-8, numpy values as numbers, never invalid JSON."""

from __future__ import annotations

import json
import math

import numpy as np

from serving.deps import dumps


def test_dumps_is_compact_utf8_json_that_the_standard_library_reads_back() -> None:
    payload = {"customer_id": "kundin-ß-東京", "items": ["a", "b"], "score": 0.125, "k": 10}
    body = dumps(payload)
    assert isinstance(body, bytes)
    assert b" " not in body  # no padding after , or :
    assert "東京".encode() in body  # not escaped to \\u sequences
    assert json.loads(body) == payload


def test_dumps_writes_numpy_scalars_and_arrays_as_numbers() -> None:
    body = dumps(
        {
            "probability": np.float64(0.25),
            "score": np.float32(0.5),
            "orders": np.int64(3),
            "scores": np.array([1.5, 2.0]),
        }
    )
    assert json.loads(body) == {
        "probability": 0.25,
        "score": 0.5,
        "orders": 3,
        "scores": [1.5, 2.0],
    }


def test_dumps_writes_a_missing_float_as_null_never_as_invalid_nan() -> None:
    body = dumps({"clv": math.nan, "next": float("inf"), "p": np.float64("nan")})
    assert b"NaN" not in body and b"Infinity" not in body
    assert json.loads(body) == {"clv": None, "next": None, "p": None}
