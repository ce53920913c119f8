"""The overview's charts, drawn on the server as SVG with matplotlib (Agg, no display).

Each function takes the numbers of `overview.py` and returns a `Chart`: the SVG (text kept as
text, a `<title>` and `<desc>` inside for screen readers) and the sentence the page uses as the
image's alt text. The page also shows each chart's numbers as a table, so nothing is only in
a picture. Figures are built with the object API (no pyplot state), one at a time.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from html import escape

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from serving.crm.overview import Grid, GroupRow

WIDTH_INCHES, HEIGHT_INCHES = 6.4, 3.2
PALETTE = ("#1f5f8b", "#e07b39", "#3a8d5c", "#b8434b", "#7a5ea8", "#8c6d31", "#4d4d4d")
"""Colour-blind-safe enough, and every series also has a label in the legend."""
RISK_COLOURS = {"high": "#b8434b", "medium": "#e0a339", "low": "#3a8d5c"}

_DRAWING = threading.Lock()  # matplotlib's font cache and text layout are not thread-safe


@dataclass(frozen=True)
class Chart:
    """One drawn chart: SVG bytes and its one-sentence description."""

    svg: bytes
    alt: str


def _figure() -> Figure:
    figure = Figure(figsize=(WIDTH_INCHES, HEIGHT_INCHES), layout="constrained")
    return figure


def _to_svg(figure: Figure, title: str, description: str) -> bytes:
    """The figure as standalone SVG with an accessible title and description."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "patronage"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    accessible = (
        f'<title id="chart-title">{escape(title)}</title><desc>{escape(description)}</desc>'
    )
    svg = re.sub(
        r"(<svg\b[^>]*?)>",
        lambda m: m.group(1) + ' role="img" aria-labelledby="chart-title">' + accessible,
        svg,
        count=1,
    )
    return svg.encode("utf-8")


def _draw(title: str, description: str, paint: Callable[[Figure], None]) -> Chart:
    with _DRAWING:
        figure = _figure()
        paint(figure)
        return Chart(svg=_to_svg(figure, title, description), alt=description)


def segments_chart(rows: list[GroupRow]) -> Chart:
    """Each segment's share of customers beside its share of predicted value."""
    names = [row.name for row in rows]
    description = "Segments by share of customers and share of predicted value: " + "; ".join(
        f"{r.name} {r.share:.0%} of customers, {r.value_share:.0%} of value" for r in rows
    )

    def paint(figure: Figure) -> None:
        axes = figure.add_subplot()
        positions = np.arange(len(rows))
        axes.barh(
            positions - 0.2, [r.share * 100 for r in rows], 0.4, label="customers", color=PALETTE[0]
        )
        axes.barh(
            positions + 0.2,
            [r.value_share * 100 for r in rows],
            0.4,
            label="predicted value (365 days)",
            color=PALETTE[1],
        )
        axes.set_yticks(positions, names)
        axes.invert_yaxis()
        axes.set_xlabel("share of the shop (%)")
        axes.legend(loc="lower right", frameon=False)
        axes.set_title("Segments: customers and value")

    return _draw("Segments: share of customers and of value", description, paint)


def risk_chart(rows: list[GroupRow]) -> Chart:
    """Customers per churn-risk tier."""
    description = "Customers by churn risk: " + "; ".join(
        f"{r.name} {r.customers:,} ({r.share:.0%})" for r in rows
    )

    def paint(figure: Figure) -> None:
        axes = figure.add_subplot()
        names = [r.name for r in rows]
        bars = axes.bar(
            names,
            [r.customers for r in rows],
            color=[RISK_COLOURS.get(n, PALETTE[6]) for n in names],
        )
        axes.bar_label(bars, labels=[f"{r.customers:,}" for r in rows])
        axes.set_ylabel("customers")
        axes.set_xlabel("churn risk")
        axes.set_title("Churn-risk tiers")

    return _draw("Churn-risk tiers", description, paint)


def heatmap_chart(grid: Grid) -> Chart:
    """Mean P(alive) by number of orders and days since the last order."""
    description = (
        "Heatmap of the mean probability of being alive, by number of orders (rows) and days "
        "since the last order (columns); darker is more likely alive."
    )

    def paint(figure: Figure) -> None:
        axes = figure.add_subplot()
        image = axes.imshow(grid.mean_p_alive, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        axes.set_xticks(range(len(grid.recency_labels)), grid.recency_labels)
        axes.set_yticks(range(len(grid.frequency_labels)), grid.frequency_labels)
        axes.set_xlabel("days since the last order")
        axes.set_ylabel("orders")
        for (row, column), value in np.ndenumerate(grid.mean_p_alive):
            if np.isfinite(value):
                colour = "white" if value > 0.6 else "black"
                axes.text(
                    column, row, f"{value:.2f}", ha="center", va="center", color=colour, fontsize=8
                )
        figure.colorbar(image, ax=axes, label="mean P(alive)")
        axes.set_title("Frequency x recency: P(alive)")

    return _draw("Frequency by recency: mean P(alive)", description, paint)


def clv_chart(values: np.ndarray, currency: str = "") -> Chart:
    """Histogram of predicted 365-day customer value (the top 1% folded into the last bar)."""
    if len(values):
        top = float(np.quantile(values, 0.99))
        median = float(np.median(values))
    else:
        top = median = 0.0
    description = (
        f"Distribution of predicted 365-day value of {len(values):,} customers; median "
        f"{median:,.2f}{currency}, 99th percentile {top:,.2f}{currency}."
    )

    def paint(figure: Figure) -> None:
        axes = figure.add_subplot()
        axes.hist(np.minimum(values, top) if len(values) else values, bins=40, color=PALETTE[0])
        axes.axvline(median, color=PALETTE[1], linestyle="--", label=f"median {median:,.0f}")
        axes.set_xlabel("predicted value, next 365 days (top 1% in the last bar)")
        axes.set_ylabel("customers")
        axes.legend(frameon=False)
        axes.set_title("Predicted customer value")

    return _draw("Predicted customer value (365 days)", description, paint)


def cohort_chart(retention: pd.DataFrame) -> Chart:
    """One retention curve per first-order month."""
    description = (
        "Cohort retention: for each month of first order, the share of its customers who "
        f"ordered again k months later ({len(retention)} cohorts)."
    )

    def paint(figure: Figure) -> None:
        axes = figure.add_subplot()
        for position, (cohort, shares) in enumerate(retention.iterrows()):
            colour = PALETTE[position % len(PALETTE)]
            style = "-" if position < len(PALETTE) else "--"
            axes.plot(
                shares.index[1:],
                shares.to_numpy()[1:] * 100,
                style,
                color=colour,
                label=str(cohort),
                marker="o",
                markersize=2,
            )
        axes.set_xlabel("months after the first order")
        axes.set_ylabel("ordered again (%)")
        if len(retention):
            axes.legend(fontsize=6, ncols=2, frameon=False, title="first order", title_fontsize=7)
        axes.set_title("Cohort retention")

    return _draw("Cohort retention by month of first order", description, paint)


def satisfaction_chart(by_month: pd.DataFrame) -> Chart:
    """Mean rating per month (line) with complaints and returns (bars)."""
    description = (
        f"Satisfaction over {len(by_month)} months: mean rating (1 to 5, line) and the number "
        "of complaints and returns (bars) per month."
    )

    def paint(figure: Figure) -> None:
        axes = figure.add_subplot()
        months = list(by_month.index)
        positions = np.arange(len(months))
        axes.bar(positions - 0.2, by_month["complaints"], 0.4, label="complaints", color=PALETTE[3])
        axes.bar(positions + 0.2, by_month["returns"], 0.4, label="returns", color=PALETTE[5])
        axes.set_ylabel("complaints and returns")
        step = max(1, len(months) // 12)
        axes.set_xticks(positions[::step], months[::step], rotation=45, ha="right")
        rating_axes = axes.twinx()
        rating_axes.plot(
            positions, by_month["mean_rating"], color=PALETTE[0], marker="o", label="mean rating"
        )
        rating_axes.set_ylim(1, 5)
        rating_axes.set_ylabel("mean rating (1-5)")
        handles = axes.get_legend_handles_labels()
        more = rating_axes.get_legend_handles_labels()
        axes.legend(
            handles[0] + more[0], handles[1] + more[1], loc="upper left", frameon=False, fontsize=7
        )
        axes.set_title("Satisfaction over time")

    return _draw("Satisfaction over time", description, paint)
