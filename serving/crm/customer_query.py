"""The customers page's query string, read into a `CustomerFilter` and written back into links.

Parameters (all optional): `view` (`all`, or `at_risk` for the at-risk-and-valuable list:
high and medium churn risk, sorted by value at risk), `segment` and `risk` (repeatable),
`min_value` / `max_value` (predicted 365-day value), `min_days` / `max_days` (days since the
last order), `min_satisfaction` / `max_satisfaction`, `sort` (a `SORT_KEYS` name),
`direction` (`asc` / `desc`), `page` (from 1) and `per_page` (`PAGE_SIZES`). A value that does
not parse is ignored and reported on the page, never a server error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from serving.crm.customer_frame import (
    AT_RISK_TIERS,
    RISK_TIERS,
    SORT_KEYS,
    CustomerFilter,
    Direction,
)

PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
AT_RISK_VIEW = "at_risk"
RANGE_FIELDS = {
    "min_value": "min_value",
    "max_value": "max_value",
    "min_days": "min_days_since_order",
    "max_days": "max_days_since_order",
    "min_satisfaction": "min_satisfaction",
    "max_satisfaction": "max_satisfaction",
}
"""Query parameter -> `CustomerFilter` field."""


@dataclass(frozen=True)
class CustomerQuery:
    """A parsed query: the filter, the page asked for, and what was ignored (and why)."""

    wanted: CustomerFilter
    view: str = "all"
    page: int = 1
    per_page: int = DEFAULT_PAGE_SIZE
    ignored: list[str] = field(default_factory=list)

    def parameters(self, page: int | None = None) -> list[tuple[str, str]]:
        """The query as (name, value) pairs, defaults left out; `page` replaces the page."""
        wanted = self.wanted
        pairs: list[tuple[str, str]] = []
        if self.view != "all":
            pairs.append(("view", self.view))
        pairs += [("segment", s) for s in wanted.segments]
        if self.view != AT_RISK_VIEW:
            pairs += [("risk", r) for r in wanted.risk_tiers]
        for name, attribute in RANGE_FIELDS.items():
            value = getattr(wanted, attribute)
            if value is not None:
                pairs.append((name, f"{value:g}"))
        if self.view != AT_RISK_VIEW:
            pairs += [("sort", wanted.sort), ("direction", wanted.direction)]
        if self.per_page != DEFAULT_PAGE_SIZE:
            pairs.append(("per_page", str(self.per_page)))
        shown = self.page if page is None else page
        if shown != 1:
            pairs.append(("page", str(shown)))
        return pairs

    def link(self, path: str, page: int | None = None) -> str:
        """`path` with this query (and another page)."""
        query = urlencode(self.parameters(page))
        return f"{path}?{query}" if query else path


def _number(raw: str | None, name: str, ignored: list[str]) -> float | None:
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw.replace(",", ""))
    except ValueError:
        ignored.append(f"{name}: {raw[:40]!r} is not a number")
        return None
    if not math.isfinite(value):
        ignored.append(f"{name}: give a finite number")
        return None
    return value


def _whole(raw: str | None, name: str, default: int, ignored: list[str]) -> int:
    if raw is None or raw.strip() == "":
        return default
    try:
        return max(1, int(raw))
    except ValueError:
        ignored.append(f"{name}: {raw[:40]!r} is not a whole number")
        return default


def parse_query(params: QueryParams, segments: list[str]) -> CustomerQuery:
    """Read the customers page's query; unknown segments or tiers are ignored and reported."""
    ignored: list[str] = []
    view = AT_RISK_VIEW if params.get("view") == AT_RISK_VIEW else "all"
    chosen_segments = tuple(s for s in params.getlist("segment") if s in segments)
    if len(chosen_segments) < len(params.getlist("segment")):
        ignored.append("segment: unknown segment names were left out")
    tiers = tuple(t for t in params.getlist("risk") if t in RISK_TIERS)
    ranges = {
        attribute: _number(params.get(name), name, ignored)
        for name, attribute in RANGE_FIELDS.items()
    }
    sort = params.get("sort", "value_at_risk")
    if sort not in SORT_KEYS:
        ignored.append(f"sort: {sort[:40]!r} is not a column to sort by")
        sort = "value_at_risk"
    direction: Direction = "asc" if params.get("direction") == "asc" else "desc"
    wanted = CustomerFilter(
        segments=chosen_segments,
        risk_tiers=tiers,
        sort=sort,
        direction=direction,
        **ranges,  # type: ignore[arg-type]
    )
    if view == AT_RISK_VIEW:
        wanted = replace(wanted, risk_tiers=AT_RISK_TIERS, sort="value_at_risk", direction="desc")
    per_page = _whole(params.get("per_page"), "per_page", DEFAULT_PAGE_SIZE, ignored)
    if per_page not in PAGE_SIZES:
        ignored.append(f"per_page: choose one of {', '.join(map(str, PAGE_SIZES))}")
        per_page = DEFAULT_PAGE_SIZE
    page = _whole(params.get("page"), "page", 1, ignored)
    return CustomerQuery(wanted=wanted, view=view, page=page, per_page=per_page, ignored=ignored)
