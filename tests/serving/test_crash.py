"""`kill -9` during posts loses no acknowledged event (issue 22), impressions and clicks
included (issue 23): two cycles of the crash
benchmark's code (`benchmarks/crash.py`, 20 cycles in `make bench`) on a real server."""

from __future__ import annotations

from pathlib import Path

from benchmarks.crash import crash_cycles


def test_every_acknowledged_row_survives_kill_9_and_torn_tails(tmp_path: Path) -> None:
    run = crash_cycles(tmp_path, cycles=2, clients=8, seed=1)
    assert run.posts_acknowledged > 0, "no post was acknowledged: the run proves nothing"
    assert run.refused == {}, f"valid posts were refused: {run.refused}"
    assert run.torn_fragments == 1
    assert run.missing == [], f"{len(run.missing)} acknowledged rows lost, e.g. {run.missing[:3]}"
    assert run.replayed is not None and run.replayed >= len(run.acknowledged)
    assert run.impressions, "no impression was acknowledged: the run proves nothing"
    assert run.missing_impressions == [], (
        f"acknowledged impressions lost: {run.missing_impressions[:3]}"
    )
    assert run.missing_clicks == [], f"acknowledged clicks lost: {run.missing_clicks[:3]}"
