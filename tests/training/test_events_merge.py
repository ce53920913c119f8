"""Events posted to the server join the next training: merged once, unknown items dropped."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from features.loading import load_shop
from patronage.cli import main
from training.options import TrainOptions
from training.shop_data import merge_events


def test_event_log_purchases_are_merged_once(sample_shop_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from features.event_log import EventBatch, EventLog, read_event_log

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
    EventLog(tmp_path / "events").append(EventBatch(rows), datetime(2026, 1, 2, 12, tzinfo=UTC))
    purchases, feedback = read_event_log(tmp_path / "events")
    options = TrainOptions(
        sample_shop_dir, extra_purchases=purchases, extra_feedback=feedback, progress=False
    )
    merged, digest, _ = merge_events(shop, options)
    assert len(merged.purchases) == len(shop.purchases) + 1
    added = merged.purchases[merged.purchases["order_id"] == "EV-1"]
    assert added["ordered_at"].iloc[0] == pd.Timestamp("2026-01-02T10:00:00Z")
    assert len(digest) == 64
    unchanged, nothing, _ = merge_events(shop, TrainOptions(sample_shop_dir))
    assert unchanged is shop and nothing == ""


def test_missing_event_directory_is_a_clear_error(sample_shop_dir, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["train", str(sample_shop_dir), "--events", str(tmp_path / "nope")]) == 1
    assert "--events" in capsys.readouterr().err


def test_posted_item_updates_change_the_catalog_the_models_train_on(  # type: ignore[no-untyped-def]
    sample_shop_dir, tmp_path
) -> None:
    from features.event_log import EventBatch, EventLog, read_event_log, read_item_updates

    shop = load_shop(sample_shop_dir).shop
    items_before = shop.items.copy()
    first, second = (str(i) for i in shop.items["item_id"].iloc[:2])
    log = EventLog(tmp_path / "events")
    log.append(EventBatch(items=[
        {"item_id": first, "available": False},
        {"item_id": second, "available": False, "price": 1.5},
    ]), datetime(2026, 1, 2, 12, tzinfo=UTC))  # fmt: skip
    log.append(EventBatch(items=[
        {"item_id": second, "available": True},  # back in stock; its posted price stays
        {"item_id": "NEW-1", "available": True, "name": "New mug", "category": "kitchen"},
    ]), datetime(2026, 1, 3, 12, tzinfo=UTC))  # fmt: skip
    purchases, feedback = read_event_log(tmp_path / "events")
    sold_new = pd.DataFrame(
        [{"order_id": "EV-9", "customer_id": "C-new", "item_id": "NEW-1", "quantity": 1,
          "unit_price": None, "ordered_at": pd.Timestamp("2026-01-03T13:00:00Z"),
          "channel": None}]
    ).astype(purchases.dtypes.to_dict())  # fmt: skip
    options = TrainOptions(
        sample_shop_dir,
        extra_purchases=pd.concat([purchases, sold_new]),
        extra_feedback=feedback,
        extra_items=read_item_updates(tmp_path / "events"),
        progress=False,
    )
    merged, digest, _ = merge_events(shop, options)
    items = merged.items.set_index("item_id")
    assert not items.loc[first, "available"]
    assert items.loc[second, "available"] and items.loc[second, "price"] == 1.5
    assert items.loc["NEW-1", "name"] == "New mug" and items.loc["NEW-1", "available"]
    assert len(merged.items) == len(shop.items) + 1
    assert merged.items.dtypes.to_dict() == shop.items.dtypes.to_dict()
    # A purchase of the newly posted item is kept (the catalog knows it now).
    assert "EV-9" in set(merged.purchases["order_id"])
    assert len(digest) == 64
    pd.testing.assert_frame_equal(shop.items, items_before)  # the input is never modified


def test_a_purchase_posted_after_the_files_moves_as_of_and_is_used(
    sample_shop_dir, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """On main before 2026-12-07 as_of came from the files alone, so a purchase posted after
    their last order was cut off silently while the report said the events were used."""
    from features.event_log import EventBatch, EventLog, read_event_log
    from training.shop_data import load_training_data

    shop = load_shop(sample_shop_dir).shop
    last = shop.purchases["ordered_at"].max()
    item = str(shop.items["item_id"].iloc[0])
    posted_at = (last + pd.Timedelta(days=3)).floor("s")
    rows = [{"order_id": "EV-late", "customer_id": "C-late", "item_id": item, "quantity": 1,
             "ordered_at": posted_at.isoformat()},
            {"order_id": "EV-x", "customer_id": "C-late", "item_id": "not-in-catalog",
             "quantity": 1, "ordered_at": posted_at.isoformat()}]  # fmt: skip
    EventLog(tmp_path / "events").append(EventBatch(rows), posted_at.to_pydatetime())
    purchases, feedback = read_event_log(tmp_path / "events")
    options = {"extra_purchases": purchases, "extra_feedback": feedback, "progress": False}
    merged, as_of, data = load_training_data(TrainOptions(sample_shop_dir, **options))
    assert as_of == posted_at.floor("D") + pd.Timedelta(days=1)
    assert "EV-late" in set(merged.purchases["order_id"])
    assert data.last_order_at == posted_at
    assert any("name an item the catalog does not know" in note for note in data.notes)
    # An explicit --as-of before the posted purchase: left out, and said so.
    _, _, early = load_training_data(
        TrainOptions(sample_shop_dir, as_of=last.isoformat(), **options)
    )
    assert any("dated at or after --as-of" in note for note in early.notes)
