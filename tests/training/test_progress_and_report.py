"""Progress output (bar on a terminal, plain lines in CI) and the report files."""

from __future__ import annotations

import io

import numpy as np

from training.progress import Progress
from training.report import EvaluationReport


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(total=2, stream=stream)
    progress.step("loading")
    progress.step("fitting")
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[train 1/2") and lines[0].endswith("loading")
    assert lines[1].startswith("[train 2/2") and lines[2].startswith("[train done")
    assert "\r" not in stream.getvalue()


def test_a_bar_on_a_terminal() -> None:
    stream = _Terminal()
    progress = Progress(total=2, stream=stream)
    progress.step("loading")
    progress.step("fitting")
    progress.close()
    assert "\r" in stream.getvalue() and "2/2" in stream.getvalue()
    assert "[train" not in stream.getvalue()


def test_report_writes_pngs_and_one_self_contained_page(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, 200)
    report = EvaluationReport(
        title="test",
        summary=[("as_of", "2026-01-01")],
        metric_tables={"Churn": {"model": {"roc_auc": 0.8}, "recency": {"roc_auc": 0.7}}},
        churn_label=label,
        churn_scores={"model": np.clip(label * 0.5 + rng.random(200) * 0.5, 0, 1)},
        recommendation_curves={"model": {"ndcg": [0.1, 0.2, 0.3]}},
        segment_sizes={"Champions": 10, "Lost": 5},
    )
    written = {path.name for path in report.write(tmp_path)}
    assert {"churn_roc.png", "churn_calibration.png", "churn_lift.png", "segments.png",
            "recommendations_ndcg_at_k.png", "report.html"} == written  # fmt: skip
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 5 and "roc_auc" in page
