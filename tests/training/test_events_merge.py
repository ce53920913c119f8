"""Events posted to the server join the next training: merged once, unknown items dropped."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from features.loading import load_shop
from patronage.cli import main
from training.pipeline import TrainOptions, _merge_events


def test_event_log_purchases_are_merged_once(sample_shop_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from serving.events import EventLog, read_event_log

    shop = load_shop(sample_shop_dir).shop
    known = shop.purchases.iloc[0]
    item = str(shop.items["item_id"].iloc[0])
    rows = [
        # a repeat of a line already in the files (a client retry after the export)
        {**known.to_dict(), "ordered_at": known["ordered_at"].isoformat()},
        {"order_id": "EV-1", "customer_id": "C-new", "item_id": item, "quantity": 2,
         "ordered_at": "2026-01-02T10:00:00+00:00"},
        {"order_id": "EV-2", "customer_id": "C-new", "item_id": "not-in-catalog", "quantity": 1,
         "ordered_at": "2026-01-02T11:00:00+00:00"},
    ]  # fmt: skip
    EventLog(tmp_path / "events").append(rows, [], datetime(2026, 1, 2, 12, tzinfo=UTC))
    purchases, feedback = read_event_log(tmp_path / "events")
    options = TrainOptions(
        sample_shop_dir, extra_purchases=purchases, extra_feedback=feedback, progress=False
    )
    merged, digest = _merge_events(shop, options)
    assert len(merged.purchases) == len(shop.purchases) + 1
    added = merged.purchases[merged.purchases["order_id"] == "EV-1"]
    assert added["ordered_at"].iloc[0] == pd.Timestamp("2026-01-02T10:00:00Z")
    assert len(digest) == 64
    unchanged, nothing = _merge_events(shop, TrainOptions(sample_shop_dir))
    assert unchanged is shop and nothing == ""


def test_missing_event_directory_is_a_clear_error(sample_shop_dir, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["train", str(sample_shop_dir), "--events", str(tmp_path / "nope")]) == 1
    assert "--events" in capsys.readouterr().err
