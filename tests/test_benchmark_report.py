"""BENCHMARKS.md says when each figure was measured: when a benchmark wrote it, not a clone."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.report import write_report, write_result


def test_a_result_carries_its_measurement_time_through_a_clone(tmp_path: Path) -> None:
    results = tmp_path / "results"
    before = datetime.now(UTC).replace(microsecond=0)
    write_result(results / "speed.json", {"title": "Speed", "requests_per_second": 12.5})
    stored = json.loads((results / "speed.json").read_text())
    measured = datetime.fromisoformat(stored["measured_at"])
    assert before <= measured <= datetime.now(UTC)
    assert stored["requests_per_second"] == 12.5
    # A clone stamps the file with its own time: the report still says when it was measured.
    later = (measured + timedelta(days=13)).timestamp()
    os.utime(results / "speed.json", (later, later))
    report = write_report(results, tmp_path / "BENCHMARKS.md").read_text()
    assert f"_Measured {measured:%Y-%m-%d %H:%M} UTC (`speed.json`)._" in report
    assert "| requests_per_second | 12.5 |" in report


def test_an_unstamped_result_falls_back_to_its_file_time_and_keeps_it(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    path = results / "old.json"
    path.write_text(json.dumps({"title": "Old", "seconds": 3}))
    written = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    os.utime(path, (written.timestamp(), written.timestamp()))
    report = write_report(results, tmp_path / "BENCHMARKS.md").read_text()
    assert "_Measured 2026-01-02 03:04 UTC (`old.json`)._" in report
    assert json.loads(path.read_text())["measured_at"].startswith("2026-01-02T03:04")
