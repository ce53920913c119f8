"""Two serving replicas on one PostgreSQL event store (issue 25, with issue 23's events): views
and carts posted to one replica fold into the other's personal answers within a second,
impressions, clicks and a purchase naming its answer count in the other's online metrics
(`/v1/models`, `/metrics`), and the same rows posted again to the other replica count once.
Real parts: the session's PostgreSQL server, the real app (`create_app`) with its follow thread
on the checkerboard bundle, whose answers are obvious (tests/serving/test_live_fold_in.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from features.recommendation_ids import origin_of
from serving.app import create_app
from serving.config import Settings
from tests.serving.conftest import API_KEYS, key
from tests.serving.test_live_fold_in import RIGHT, _interaction, _store, _top

CRM, STOREFRONT, ADMIN = key("crm"), key("storefront"), key("admin")
SCHEMA = "replicas"


@pytest.fixture
def replicas(postgres_database: str, tmp_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    """Replicas A and B (each its own app, overlay and follow thread) on one event store."""
    settings = [
        Settings(
            api_keys=API_KEYS,
            events_dir=tmp_path / name,  # unused: the events go to PostgreSQL
            events_url=f"{postgres_database}?schema={SCHEMA}",
            events_follow_seconds=1.0,
            poll_seconds=0,
            load_on_start=False,
            tracking_uri="sqlite:///unused.db",
        )
        for name in ("a", "b")
    ]
    with (
        TestClient(create_app(settings[0], model_store=_store())) as a,
        TestClient(create_app(settings[1], model_store=_store())) as b,
    ):
        yield a, b
    assert not any((tmp_path / name).exists() for name in ("a", "b")), "a file log was written"


def _seconds_until(condition: object, limit: float = 3.0) -> float:
    """Seconds until `condition()` holds (polled every 10 ms), or `limit` when it never does."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if condition():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.01)
    return limit


def test_views_and_carts_posted_to_one_replica_fold_into_the_others_answer_within_1s(
    replicas: tuple[TestClient, TestClient],
) -> None:
    a, b = replicas
    before = _top(b, "c02", k=8)
    rows = [_interaction("c02", f"i{n:02d}", "view") for n in (12, 13, 14)]
    rows.append(_interaction("c02", "i15", "cart"))
    posted = a.post("/v1/events", json={"interactions": rows}, headers=CRM)
    assert posted.status_code == 201, posted.text
    assert posted.json()["log_file"] == f"postgresql:{SCHEMA}"
    after = _top(a, "c02", k=8)  # the replica that took the post, at once
    assert after != before and len(RIGHT & set(after)) >= 4, (before, after)
    waited = _seconds_until(lambda: _top(b, "c02", k=8) == after)
    assert waited < 1.0, f"replica B answered as A only after {waited:.2f} s"


def test_impressions_and_clicks_posted_to_one_replica_count_once_on_both(
    replicas: tuple[TestClient, TestClient], postgres_database: str
) -> None:
    a, b = replicas
    answer = a.get("/v1/customers/c03/recommendations?k=3", headers=STOREFRONT).json()
    rid, shown = answer["recommendation_id"], [item["item_id"] for item in answer["items"]]
    body = {
        "impressions": [{"recommendation_id": rid, "customer_id": "c03", "items": shown,
                         "shown_at": "2026-01-05T08:00:00Z"}],
        "clicks": [{"recommendation_id": rid, "item_id": shown[1],
                    "clicked_at": "2026-01-05T08:00:05Z"}],
        "purchases": [{"order_id": "o-9", "customer_id": "c03", "item_id": shown[1],
                       "quantity": 2, "unit_price": 2.5, "ordered_at": "2026-01-05T08:03:00Z",
                       "recommendation_id": rid}],
    }  # fmt: skip
    assert a.post("/v1/events", json=body, headers=CRM).status_code == 201
    assert b.post("/v1/events", json=body, headers=CRM).status_code == 201  # a retry, to B
    origin = origin_of(rid)
    for replica in (b, a):
        (group,) = replica.get("/v1/models", headers=ADMIN).json()["online"]["groups"]
        assert (group["model_version"], group["route"]) == (origin.model_version, "personal")
        assert (group["impressions"], group["clicked"], group["bought"]) == (1, 1, 1)
        assert group["revenue"] == 5.0
    labels = (
        f'model_version="{origin.model_version}",route="personal",'
        f'strategy="{origin.strategy}",variant="champion"'
    )
    exposition = b.get("/metrics").text
    assert f"patronage_online_impressions_total{{{labels}}} 1.0" in exposition
    assert f"patronage_online_clicked_impressions_total{{{labels}}} 1.0" in exposition
    with psycopg.connect(postgres_database) as connection:
        stored = connection.execute(
            f"SELECT (SELECT count(*) FROM {SCHEMA}.impressions), "
            f"(SELECT count(*) FROM {SCHEMA}.clicks), (SELECT count(*) FROM {SCHEMA}.purchases)"
        ).fetchone()
    assert stored == (1, 1, 1), "the retry to the other replica was stored again"
