"""`patronage online-report` and `patronage promote NAME --online` (issue 23, builds 4-5): the
report prints the hand-counted fixture, `--log` writes beside the offline backtest, and the
challenger is promoted only when its buy-through beats the champion's beyond doubt."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from features.event_log import EventBatch, EventLog
from features.recommendation_ids import new_recommendation_id
from patronage.cli import main

FIXTURE = Path(__file__).parents[1] / "features" / "fixtures" / "online_events"
NAME = "patronage.shop.recommender"


def test_the_report_prints_the_hand_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["online-report", "--events", str(FIXTURE)]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if "recommender/1  personal" in line)
    assert row.split()[:5] == [f"{NAME}/1", "personal", "discovery", "champion", "2"]
    assert "0.5000" in row and "1.0000" in row and "20.00" in row
    assert "challenger minus champion" in table and "Wilson" in table
    assert main(["online-report", "--events", str(FIXTURE), "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert [g["impressions"] for g in groups] == [1, 2, 1, 1, 1]


def test_nothing_to_report_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["online-report", "--events", str(tmp_path / "none")]) == 1
    assert "no event log" in capsys.readouterr().err
    assert main(["online-report", "--events", str(FIXTURE), "--since", "2027-01-01"]) == 1
    assert "no impressions shown since 2027-01-01" in capsys.readouterr().err
    assert main(["online-report", "--events", str(FIXTURE), "--since", "last week"]) == 1
    assert "not an ISO 8601 time" in capsys.readouterr().err


def _registry_with_two_versions() -> dict[str, str]:
    """patronage.shop.recommender versions 1 (champion) and 2 (challenger); their run ids."""
    from mlflow import MlflowClient

    from models.registry_names import ROLE_TAG, SHOP_TAG

    client = MlflowClient()
    experiment = client.create_experiment("shop")
    client.create_registered_model(NAME, tags={SHOP_TAG: "shop", ROLE_TAG: "recommender"})
    runs = {}
    for version in ("1", "2"):
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "ndcg_at_10", 0.2)  # its offline backtest
        client.set_terminated(run.info.run_id)
        client.create_model_version(NAME, f"runs:/{run.info.run_id}/model", run.info.run_id)
        runs[version] = run.info.run_id
    client.set_registered_model_alias(NAME, "champion", "1")
    client.set_registered_model_alias(NAME, "challenger", "2")
    return runs


def _traffic(directory: Path, bought: dict[str, int], shown: int = 200) -> None:
    """`shown` personal impressions per variant; the first `bought[variant]` lead to a purchase
    of the first shown item a day later."""
    day = pd.Timestamp("2026-01-05", tz="UTC")
    impressions, purchases = [], []
    for variant, version in (("champion", "1"), ("challenger", "2")):
        for n in range(shown):
            customer = f"{variant}-{n}"
            rid = new_recommendation_id(variant, "personal", f"{NAME}/{version}", "discovery")  # type: ignore[arg-type]
            impressions.append(
                {"recommendation_id": rid, "customer_id": customer, "session_id": None,
                 "items": ["i1", "i2"], "shown_at": day}
            )  # fmt: skip
            if n < bought[variant]:
                purchases.append(
                    {"order_id": f"o-{customer}", "customer_id": customer, "item_id": "i1",
                     "quantity": 1, "unit_price": 5.0, "ordered_at": day + timedelta(days=1)}
                )  # fmt: skip
    EventLog(directory).append(EventBatch(purchases=purchases, impressions=impressions), day)


def test_promote_online_waits_for_a_clear_win_then_promotes(
    mlflow_store: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow import MlflowClient

    runs = _registry_with_two_versions()
    close, clear = tmp_path / "close", tmp_path / "clear"
    _traffic(close, {"champion": 20, "challenger": 28})  # 10% vs 14%: the interval spans 0
    _traffic(clear, {"champion": 20, "challenger": 60})  # 10% vs 30%
    command = ["promote", "recommender", "--online", "--shop", "shop", "--events"]
    assert main([*command, str(close)]) == 1
    said = capsys.readouterr().err
    assert "not promoted" in said and "does not exclude zero" in said
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"

    assert main(["online-report", "--events", str(clear), "--log"]) == 0
    assert "logged the online metrics" in capsys.readouterr().out
    metrics = client.get_run(runs["2"]).data.metrics
    assert metrics["ndcg_at_10"] == 0.2  # beside the offline backtest
    assert metrics["online.personal.challenger.buy_through_rate"] == pytest.approx(0.3)

    assert main([*command, str(clear)]) == 0
    assert "champion is now version 2" in capsys.readouterr().out
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "2"
    assert main([*command, str(clear)]) == 1  # champion and challenger are one version now
    assert "no challenger distinct from the champion" in capsys.readouterr().err
