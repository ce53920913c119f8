"""The evaluation report of a training run: PNG figures plus one self-contained HTML page.

Figures: ROC, calibration and lift (cumulative gains) for churn against its baselines;
metric@K curves for recommendations against theirs; segment sizes. The HTML page embeds the
PNGs (base64) so it renders on its own in the MLflow UI's artifact viewer.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.calibration import CALIBRATION_BINS, calibration_bins


@dataclass
class EvaluationReport:
    """What the report shows; filled by the pipeline, written by `write`."""

    title: str
    summary: list[tuple[str, str]] = field(default_factory=list)
    """(label, value) pairs shown first: data, as_of, windows, decisions."""
    metric_tables: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    """table name -> row (model or baseline) -> metric -> value."""
    churn_label: np.ndarray | None = None
    """1 = churned within the horizon, per evaluated customer."""
    churn_scores: dict[str, np.ndarray] = field(default_factory=dict)
    """name -> churn probability (or any churn score: higher = more likely to churn)."""
    recommendation_curves: dict[str, dict[str, Sequence[float]]] = field(default_factory=dict)
    """name -> metric -> values at K = 1..len(values)."""
    segment_sizes: dict[str, int] = field(default_factory=dict)

    def write(self, directory: Path) -> list[Path]:
        """Write the PNGs and `report.html` into `directory`; returns the files written."""
        directory.mkdir(parents=True, exist_ok=True)
        figures: list[tuple[str, Path]] = []
        if self.churn_label is not None and self.churn_scores:
            figures.append(("Churn: ROC", _roc(self.churn_label, self.churn_scores, directory)))
            figures.append(
                ("Churn: calibration", _calibration(self.churn_label, self.churn_scores, directory))
            )
            figures.append(
                (
                    "Churn: lift (cumulative gains)",
                    _lift(self.churn_label, self.churn_scores, directory),
                )
            )
        for metric in _curve_metrics(self.recommendation_curves):
            figures.append(
                (
                    f"Recommendations: {metric}@K",
                    _curves(self.recommendation_curves, metric, directory),
                )
            )
        if self.segment_sizes:
            figures.append(("Loyalty segments", _segments(self.segment_sizes, directory)))
        page = directory / "report.html"
        page.write_text(self._html(figures), encoding="utf-8")
        return [path for _, path in figures] + [page]

    def _html(self, figures: list[tuple[str, Path]]) -> str:
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{html.escape(self.title)}</title>",
            "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
            "padding:4px 8px;text-align:right}th:first-child,td:first-child{text-align:left}"
            "img{max-width:100%;border:1px solid #eee}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1><table>",
        ]
        for label, value in self.summary:
            parts.append(f"<tr><th>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>")
        parts.append("</table>")
        for name, table in self.metric_tables.items():
            parts.append(f"<h2>{html.escape(name)}</h2>{_html_table(table)}")
        for caption, path in figures:
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            parts.append(
                f"<h2>{html.escape(caption)}</h2>"
                f"<img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
            )
        parts.append("</body></html>")
        return "\n".join(parts)


def _html_table(table: Mapping[str, Mapping[str, float]]) -> str:
    metrics: list[str] = []
    for row in table.values():
        metrics.extend(m for m in row if m not in metrics)
    head = "".join(f"<th>{html.escape(m)}</th>" for m in metrics)
    rows = []
    for name, row in table.items():
        cells = "".join(
            f"<td>{row[m]:.4f}</td>" if m in row and row[m] == row[m] else "<td>-</td>"
            for m in metrics
        )
        rows.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    return f"<table><tr><th>model</th>{head}</tr>{''.join(rows)}</table>"


def _figure(left: float = 0.11):  # type: ignore[no-untyped-def]
    """A figure with one axes, drawn by Agg without pyplot (no global figure registry to
    import and clean up) and with fixed margins: `tight_layout` measured the text of every
    chart again and was half of the report's time (about 3 of 6 CPU-s for seven charts)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4), dpi=90)
    fig.subplots_adjust(left=left, right=0.97, bottom=0.12, top=0.92)
    return fig, fig.add_subplot()


def _save(fig, path: Path) -> Path:  # type: ignore[no-untyped-def]
    fig.savefig(path, format="png")
    return path


def _roc(label: np.ndarray, scores: Mapping[str, np.ndarray], directory: Path) -> Path:
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = _figure()
    for name, score in scores.items():
        if len(np.unique(label)) < 2:
            break
        fpr, tpr, _ = roc_curve(label, score)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(label, score):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="Churn ROC")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, directory / "churn_roc.png")


def _calibration(label: np.ndarray, scores: Mapping[str, np.ndarray], directory: Path) -> Path:
    fig, ax = _figure()
    for name, score in scores.items():
        if np.nanmin(score) < 0 or np.nanmax(score) > 1:
            continue  # not a probability (e.g. days since last order): no calibration to show
        bins = calibration_bins(label, score)
        ax.plot(bins.predicted, bins.observed, marker="o", label=name)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    ax.set(
        xlabel="predicted churn probability",
        ylabel="observed churn rate",
        title=f"Churn calibration ({CALIBRATION_BINS} bins)",
    )
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, directory / "churn_calibration.png")


def _lift(label: np.ndarray, scores: Mapping[str, np.ndarray], directory: Path) -> Path:
    fig, ax = _figure()
    total = max(float(label.sum()), 1.0)
    share = np.arange(1, len(label) + 1) / max(len(label), 1)
    for name, score in scores.items():
        order = np.argsort(-score, kind="stable")
        gains = np.cumsum(label[order]) / total
        ax.plot(share, gains, label=name)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="random")
    ax.set(
        xlabel="share of customers contacted (highest risk first)",
        ylabel="share of churners reached",
        title="Churn lift (cumulative gains)",
    )
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, directory / "churn_lift.png")


def _curve_metrics(curves: Mapping[str, Mapping[str, Sequence[float]]]) -> list[str]:
    metrics: list[str] = []
    for by_metric in curves.values():
        metrics.extend(m for m in by_metric if m not in metrics)
    return metrics


def _curves(
    curves: Mapping[str, Mapping[str, Sequence[float]]], metric: str, directory: Path
) -> Path:
    fig, ax = _figure()
    for name, by_metric in curves.items():
        values = by_metric.get(metric)
        if values is None or len(values) == 0:
            continue
        ax.plot(np.arange(1, len(values) + 1), values, marker=".", label=name)
    ax.set(xlabel="K", ylabel=f"{metric}@K", title=f"Recommendations: {metric}@K on the backtest")
    ax.legend(fontsize=8)
    safe = "".join(c if c.isalnum() else "_" for c in metric)
    return _save(fig, directory / f"recommendations_{safe}_at_k.png")


def _segments(sizes: Mapping[str, int], directory: Path) -> Path:
    fig, ax = _figure(left=0.3)  # room for the segment names
    names = list(sizes)
    ax.barh(names, [sizes[n] for n in names], color="#4c72b0")
    ax.invert_yaxis()
    ax.set(xlabel="customers", title="Loyalty segments at as_of")
    return _save(fig, directory / "segments.png")
