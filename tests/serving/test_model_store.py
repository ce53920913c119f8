"""The model store: atomic swaps, failures that keep the old models, polling, and the CLI gate."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from serving.model_store import ModelStore
from tests.serving.doubles import TinySource


def test_readers_never_see_a_missing_or_mixed_snapshot_during_swaps() -> None:
    source = TinySource()
    store = ModelStore(source, poll_seconds=0)
    store.reload()
    problems: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            models = store.current
            if models is None:
                problems.append("no snapshot")
                continue
            versions = {m.version for m in models.versions.values()}
            tag = models.recommender.recommend_for("c1", 1, None, "non-repeatable", []).strategy
            if len(versions) != 1 or tag != f"tiny-v{versions.pop()}":
                problems.append(f"mixed snapshot {tag}")
            time.sleep(0.0002)  # leave the GIL to the loader now and then

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    for version in range(2, 8):
        source.version = str(version)
        assert store.reload().outcome == "loaded"
    stop.set()
    for reader in readers:
        reader.join()
    assert problems == []
    assert store.current is not None and store.current.version_of("churn") == "churn/7"


def test_unchanged_versions_do_not_reload_unless_forced() -> None:
    source = TinySource()
    store = ModelStore(source, poll_seconds=0)
    store.reload()
    assert store.reload().outcome == "unchanged" and source.loads == 1
    assert store.reload(force=True).outcome == "loaded" and source.loads == 2


def test_first_load_failure_leaves_store_empty_and_reports() -> None:
    source = TinySource()
    source.fail_next_load = True
    store = ModelStore(source, poll_seconds=0)
    outcome = store.reload()
    assert outcome.outcome == "failed" and "no models loaded" in outcome.detail
    assert store.current is None and store.reload_failures == 1


def test_background_thread_loads_then_polls_for_new_champions() -> None:
    source = TinySource()
    store = ModelStore(source, poll_seconds=0.05)
    store.start()
    try:
        deadline = time.monotonic() + 5
        while store.current is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.current is not None
        source.version = "7"
        while store.current.version_of("loyalty") != "loyalty/7" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.current.version_of("loyalty") == "loyalty/7"
    finally:
        store.stop()


def test_slow_load_does_not_block_readers() -> None:
    source = TinySource()
    store = ModelStore(source, poll_seconds=0)
    store.reload()
    source.version = "2"
    source.load_gate = threading.Event()
    loader = threading.Thread(target=store.reload)
    loader.start()
    time.sleep(0.05)
    assert store.current is not None and store.current.version_of("churn") == "churn/1"
    source.load_gate.set()
    loader.join(5)
    assert store.current.version_of("churn") == "churn/2"


def test_serve_refuses_to_start_without_keys() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PATRONAGE_API_KEYS"}
    result = subprocess.run(
        [sys.executable, "-m", "patronage", "serve", "--port", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert "PATRONAGE_API_KEYS" in result.stderr and "--insecure-dev" in result.stderr


def test_bundle_fallbacks_are_named_trending_with_a_note() -> None:
    """The bundle's fallback answers keep strategy `trending` and their note, as `patronage
    recommend` writes them; a model's own strategy passes through without a note."""
    from models.recommenders.bundle import Recommendation
    from serving.mlflow_source import BundleRecommender

    for why in ("new customer", "empty or unknown basket", "unknown item"):
        cold = BundleRecommender._convert(Recommendation(["i1"], [1.0], "trending", why))
        assert (cold.strategy, cold.note) == ("trending", why)
    own = BundleRecommender._convert(Recommendation(["i1"], [1.0], "co_purchase_l0"))
    assert (own.strategy, own.note) == ("co_purchase_l0", None)
