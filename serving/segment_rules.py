"""Each loyalty segment's rule in words the console can show: its RFM grid cells and the
scorer's learned quintile edges (the `thresholds` of `/v1/segments`)."""

from __future__ import annotations

from typing import Any


def segment_rules(python_model: Any) -> dict[str, Any]:
    """Each segment's rule: the (recency score, frequency+monetary score) cells of the RFM grid
    that map to it, with the scorer's learned quintile edges. Empty when the scorer does not
    expose them (the summary then has sizes and score ranges only)."""
    scorer = getattr(python_model, "scorer", None)
    rfm = getattr(scorer, "rfm_", None)
    try:
        from models.loyalty import SEGMENT_GRID

        edges = rfm.to_dict() if rfm is not None else None
    except (ImportError, AttributeError, ValueError):
        return {}
    cells: dict[str, list[str]] = {}
    for recency, row in enumerate(SEGMENT_GRID, start=1):
        for frequency_monetary, segment in enumerate(row, start=1):
            cells.setdefault(segment, []).append(f"R{recency}FM{frequency_monetary}")
    rules: dict[str, Any] = {}
    for segment, segment_cells in cells.items():
        rules[segment] = {"rfm_cells": segment_cells}
        if edges is not None:
            rules[segment]["quintile_edges"] = {
                # Recency is scored on minus the days since the last order.
                "days_since_last_order": sorted(-float(e) for e in edges["recency_edges"]),
                "orders": [float(e) for e in edges["frequency_edges"]],
                "monetary": [float(e) for e in edges["monetary_edges"]],
            }
    return rules
