"""Events posted since training change the next answer: purchases, views and carts join the
customer's history for scoring at once (the ALS vector re-solved), in every worker once it
follows the log; anonymous sessions get item-based answers. On the checkerboard bundle, whose
answers are obvious: customers c00..c11 buy items i00..i07, c12..c23 items i08..i15."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from features.event_log import read_event_log, read_interactions
from features.recommendation_ids import origin_of
from serving.app import create_app
from serving.availability import BundleRecommender
from serving.config import Settings
from serving.model_store import ModelStore
from tests.serving.checkerboard_bundle import CheckerboardSource
from tests.serving.conftest import key

CRM, STOREFRONT = key("crm"), key("storefront")
RIGHT = {f"i{n:02d}" for n in range(8, 16)}
"""The items customers c12..c23 buy: foreign to c00..c11."""


def _store(
    next_need_weight: float | None = 0.0, trained_weights: dict[str, float] | None = None
) -> ModelStore:
    store = ModelStore(CheckerboardSource(next_need_weight, trained_weights), poll_seconds=0)
    assert store.reload().outcome == "loaded"
    recommender = store.current.recommender  # type: ignore[union-attr]
    assert isinstance(recommender, BundleRecommender) and recommender.precomputed is not None
    deadline = time.monotonic() + 10
    while not recommender.precomputed.progress()["done"] and time.monotonic() < deadline:
        time.sleep(0.01)  # the lists fill in the background: answers below bypass them
    return store


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, model_store=_store())) as test_client:
        yield test_client


def _top(client: TestClient, customer: str, k: int = 4) -> list[str]:
    """The customer's top-k item ids (k=4: each customer has 4 own-group items unbought)."""
    answer = client.get(f"/v1/customers/{customer}/recommendations?k={k}", headers=STOREFRONT)
    assert answer.status_code == 200, answer.text
    return [item["item_id"] for item in answer.json()["items"]]


def _purchase(customer: str, item: str, order: str) -> dict[str, object]:
    return {
        "order_id": order,
        "customer_id": customer,
        "item_id": item,
        "quantity": 1,
        "ordered_at": "2026-01-05T08:30:00Z",
    }


def _interaction(customer: str, item: str, kind: str, at: str = "2026-01-05T08:00:00Z") -> dict:
    return {"customer_id": customer, "item_id": item, "kind": kind, "occurred_at": at}


def test_posted_purchase_moves_the_answer_towards_the_bought_items_neighbours(
    client: TestClient,
) -> None:
    before = _top(client, "c00")
    assert not RIGHT & set(before), before  # the trained answer: the customer's own group
    bought = [_purchase("c00", f"i{n:02d}", "o-1") for n in (8, 9, 10)]
    posted = client.post("/v1/events", json={"purchases": bought}, headers=CRM)
    assert posted.status_code == 201, posted.text
    after = _top(client, "c00", k=5)
    assert not {"i08", "i09", "i10"} & set(after)  # bought: excluded as before
    assert len(RIGHT & set(after)) >= 3, after  # what goes with them moved up
    assert _top(client, "c01") == _top(client, "c01", k=10)[:4]  # others unchanged
    assert not RIGHT & set(_top(client, "c01"))


def test_next_need_weight_brings_up_what_goes_with_one_purchase(settings: Settings) -> None:
    """One purchase barely moves a customer of 4 orders through ALS; with the next-need
    weight the bought item's item-kNN neighbours (its group) come up; weight 0 is ALS alone."""
    bought = {"purchases": [_purchase("c06", "i08", "o-4")]}
    counts = []
    for weight in (0.0, 1.0):
        with TestClient(create_app(settings, model_store=_store(weight))) as served:
            # Each app's own post (a retry of the same line counts once in the overlay).
            assert served.post("/v1/events", json=bought, headers=CRM).status_code == 201
            counts.append(len(RIGHT & set(_top(served, "c06"))))
    assert counts[1] >= 3 > counts[0], counts


def test_the_weight_training_chose_is_served_unless_the_setting_overrides_it(
    settings: Settings,
) -> None:
    """With `PATRONAGE_NEXT_NEED_WEIGHT` unset the bundle's own weight answers (and
    `/v1/models` says so); a set weight replaces it for every role."""
    bought = {"purchases": [_purchase("c06", "i08", "o-4")]}
    admin = key("admin")
    found = []
    for setting in (None, 0.0):
        store = _store(setting, trained_weights={"repeat": 1.0, "discovery": 0.25})
        with TestClient(create_app(settings, model_store=store)) as served:
            assert served.post("/v1/events", json=bought, headers=CRM).status_code == 201
            status = served.get("/v1/models", headers=admin).json()["recommender_status"]
            found.append((len(RIGHT & set(_top(served, "c06"))), status))
    (trained_count, trained_status), (zero_count, zero_status) = found
    assert trained_count >= 3 > zero_count, found
    assert trained_status["next_need_weights"] == {"repeat": 1.0, "discovery": 0.25}
    assert trained_status["next_need_weights_from"] == "training"
    assert zero_status["next_need_weights"] == {"repeat": 0.0, "discovery": 0.0}
    assert zero_status["next_need_weights_from"] == "setting"


def test_views_and_carts_fold_in_without_being_excluded(client: TestClient) -> None:
    rows = [_interaction("c02", f"i{n:02d}", "view") for n in (12, 13, 14)]
    rows += [_interaction("c02", "i15", "cart"), _interaction("c02", "i15", "cart", "2026-01-06")]
    posted = client.post("/v1/events", json={"interactions": rows}, headers=CRM)
    assert posted.status_code == 201, posted.text
    assert posted.json()["accepted_interactions"] == 5
    after = _top(client, "c02", k=8)
    assert len(RIGHT & set(after)) >= 4, after


def test_interactions_are_validated_with_reasons_and_nothing_written(
    client: TestClient, settings: Settings
) -> None:
    rows = [
        _interaction("c03", "i08", "view"),
        _interaction("c03", "i08", "wishlist"),
        _interaction("c03", "i08", "cart", at="2199-01-01T00:00:00Z"),
        {"customer_id": "c03", "kind": "view", "occurred_at": "2026-01-05"},
        _interaction("c03", "i09", "view", at="yesterday"),
    ]
    answer = client.post("/v1/events", json={"interactions": rows}, headers=CRM)
    assert answer.status_code == 422, answer.text
    rejected = {r["row"]: r["reason"] for r in answer.json()["rejected"]}
    assert set(rejected) == {1, 2, 3, 4}
    assert all(r["table"] == "interactions" for r in answer.json()["rejected"])
    assert "kind" in rejected[1] and "after_as_of" in rejected[2]
    assert "item_id" in rejected[3] and "occurred_at" in rejected[4]
    assert not list(Path(settings.events_dir).glob("events-*.jsonl"))
    assert not RIGHT & set(_top(client, "c03"))


def test_logged_as_view_and_cart_events_that_training_reads_apart(
    client: TestClient, settings: Settings
) -> None:
    rows = [_interaction("c04", "i09", "view"), _interaction("c04", "i09", "cart")]
    purchase = _purchase("c04", "i08", "o-2")
    body = {"interactions": rows, "purchases": [purchase]}
    assert client.post("/v1/events", json=body, headers=CRM).status_code == 201
    files = sorted(Path(settings.events_dir).glob("events-*.jsonl"))
    events = [json.loads(line)["event"] for f in files for line in f.read_text().splitlines()]
    assert events == ["purchase", "view", "cart"]
    purchases, _ = read_event_log(settings.events_dir)
    assert purchases["item_id"].tolist() == ["i08"]
    logged = read_interactions(settings.events_dir)
    assert logged[["item_id", "kind"]].values.tolist() == [["i09", "view"], ["i09", "cart"]]
    assert str(logged["occurred_at"].dt.tz) == "UTC"


def test_another_worker_answers_the_same_once_it_follows_the_log(
    client: TestClient, settings: Settings
) -> None:
    bought = [_purchase("c05", f"i{n:02d}", "o-3") for n in (8, 9, 11)]
    posted = client.post("/v1/events", json={"purchases": bought}, headers=CRM)
    assert posted.status_code == 201, posted.text
    with TestClient(create_app(settings, model_store=_store())) as other:
        # A second worker process: its own overlay, filled from the shared log.
        other.app.state.services.overlay.follow(settings.events_dir)  # type: ignore[attr-defined]
        assert _top(other, "c05", k=10) == _top(client, "c05", k=10)
        assert len(RIGHT & set(_top(other, "c05", k=5))) >= 3


def test_session_answers_from_its_items_later_ones_weighing_more(client: TestClient) -> None:
    def session(items: list[str], k: int = 4) -> dict:
        answer = client.post(
            "/v1/recommendations/session", json={"items": items, "k": k}, headers=STOREFRONT
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    right_last = session(["i01", "i09"])
    left_last = session(["i09", "i01"])
    assert right_last["strategy"] == "session_item_based" and right_last["unknown_items"] == []
    assert right_last["items"][0]["item_id"] in RIGHT
    assert left_last["items"][0]["item_id"] not in RIGHT
    shown = {item["item_id"] for item in right_last["items"]}
    assert not {"i01", "i09"} & shown and len(shown) == 4
    mixed = session(["nope", "i09", "also-unknown"])
    assert mixed["unknown_items"] == ["nope", "also-unknown"]
    assert {item["item_id"] for item in mixed["items"]} <= RIGHT - {"i09"}
    unknown = session(["nope"])
    assert unknown["strategy"] == "trending" and unknown["note"] == "empty or unknown session"
    assert unknown["unknown_items"] == ["nope"] and len(unknown["items"]) == 4
    # Named like every recommendation answer, so the storefront can post its impression back.
    assert right_last["variant"] == "champion" and right_last["session_id"] is None
    origin = origin_of(right_last["recommendation_id"])
    assert (origin.route, origin.variant) == ("session", "champion")
    assert origin.strategy == "session_item_based"
    assert right_last["recommendation_id"] != left_last["recommendation_id"]


@pytest.mark.parametrize(
    "body",
    [{}, {"items": []}, {"items": ["i01"], "k": 0}, {"items": "i01"}, {"items": ["i01"], "x": 1}],
)
def test_session_rejects_bad_bodies(client: TestClient, body: dict) -> None:
    answer = client.post("/v1/recommendations/session", json=body, headers=STOREFRONT)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]


def test_session_needs_a_storefront_key(client: TestClient) -> None:
    body = {"items": ["i01"]}
    assert client.post("/v1/recommendations/session", json=body).status_code == 401
    assert client.post("/v1/recommendations/session", json=body, headers=CRM).status_code == 403


def test_asking_again_is_answered_from_memory_until_the_next_event(client: TestClient) -> None:
    admin = key("admin")

    def memory() -> dict[str, int]:
        status = client.get("/v1/models", headers=admin).json()["recommender_status"]
        return status["fresh_answers"]  # type: ignore[no-any-return]

    bought = [_purchase("c01", "i08", "o-7")]
    assert client.post("/v1/events", json={"purchases": bought}, headers=CRM).status_code == 201
    first = _top(client, "c01", k=5)
    assert memory() == {"remembered": 1, "hits": 0, "misses": 1}
    assert _top(client, "c01", k=5) == first
    assert memory() == {"remembered": 1, "hits": 1, "misses": 1}
    carted = {"interactions": [_interaction("c01", "i09", "cart", "2026-01-05T09:00:00Z")]}
    assert client.post("/v1/events", json=carted, headers=CRM).status_code == 201
    _top(client, "c01", k=5)  # a new event: scored afresh, the cart folded in
    assert memory() == {"remembered": 2, "hits": 1, "misses": 2}
    _top(client, "c01", k=4)  # a k within the precomputed depth (10): the same scoring
    assert memory() == {"remembered": 2, "hits": 2, "misses": 2}
    _top(client, "c01", k=12)  # deeper than the lists: scored to that depth
    assert memory() == {"remembered": 3, "hits": 2, "misses": 3}
