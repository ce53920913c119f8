"""POST /v1/events is checked by the validator of shop files (issue 20, "one contract"): one
answer lists every rejected row of every table, and the route has no row checker of its own."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

import features.posted_rows
from features.contract import PURCHASES, TABLES, Table
from features.validation import RawTable, TableVerdict, check_tables
from serving.config import Settings
from tests.serving.conftest import key

CRM = key("crm")


def _purchase(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "order_id": "o-1",
        "customer_id": "c2",
        "item_id": "i0",
        "quantity": 1,
        "ordered_at": "2026-01-05T08:30:00Z",
    }
    row.update(changes)
    return row


def _log_lines(settings: Settings) -> list[str]:
    files = sorted(Path(settings.events_dir).glob("events-*.jsonl"))
    return [line for f in files for line in f.read_text().splitlines()]


@pytest.fixture
def validator_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, RawTable]]:
    """Every call of the contract's validator from the posted-rows check, recorded."""
    calls: list[dict[str, RawTable]] = []

    def recording(
        raw: dict[str, RawTable], as_of: pd.Timestamp, tables: Mapping[str, Table]
    ) -> dict[str, TableVerdict]:
        calls.append(raw)
        return check_tables(raw, as_of, tables)

    monkeypatch.setattr(features.posted_rows, "check_tables", recording)
    return calls


def test_errors_in_every_table_come_back_in_one_answer_from_one_validator_run(
    client: TestClient, settings: Settings, validator_calls: list[dict[str, RawTable]]
) -> None:
    body: dict[str, Any] = {
        "purchases": [
            _purchase(),
            _purchase(order_id="o-2", quantity="2"),  # the row model: a string is no quantity
            _purchase(order_id="o-3", ordered_at="2200-01-01T00:00:00Z"),
            _purchase(customer_id="c1"),  # o-1 already belongs to c2
        ],
        "feedback": [
            {"customer_id": "c1", "created_at": "2026-01-02T00:00:00Z", "kind": "review"},
            {"customer_id": "c1", "created_at": "2026-01-02T00:00:00Z", "kind": "rating"},
        ],
        "items": [
            {"item_id": "i1", "available": False},
            {"item_id": "i1", "available": True},
        ],
    }
    answer = client.post("/v1/events", json=body, headers=CRM)
    assert answer.status_code == 422
    rejected = [
        (r["table"], r["row"], r["reason"].split(":")[0]) for r in answer.json()["rejected"]
    ]
    assert rejected == [
        ("purchases", 1, "quantity"),
        ("purchases", 2, "after_as_of"),
        ("purchases", 3, "order_conflict"),
        ("feedback", 1, "missing_rating"),
        ("items", 1, "duplicate_item"),
    ]
    # One run of the shared validator saw every row that fits its row model, of all tables.
    assert len(validator_calls) == 1
    seen = validator_calls[0]
    assert {name: list(raw.line_numbers) for name, raw in seen.items()} == {
        "purchases": [0, 2, 3],
        "feedback": [0, 1],
        "items": [0, 1],
    }
    assert _log_lines(settings) == []


def test_a_rule_changed_in_the_contract_reaches_the_route(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No copy of the rules in serving: a maximum added to the contract's `quantity` column (not
    to the request's row model) refuses a posted row, in the validator's words."""
    quantity = dataclasses.replace(PURCHASES.columns_by_name["quantity"], maximum=3)
    columns = tuple(quantity if c.name == "quantity" else c for c in PURCHASES.columns)
    monkeypatch.setitem(TABLES, "purchases", dataclasses.replace(PURCHASES, columns=columns))
    answer = client.post("/v1/events", json={"purchases": [_purchase(quantity=5)]}, headers=CRM)
    assert answer.status_code == 422
    assert answer.json()["rejected"] == [
        {"table": "purchases", "row": 0, "reason": "out_of_range: quantity 5 is above 3"}
    ]


def test_the_route_has_no_timestamp_check_of_its_own(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A timestamp after `as_of` is refused by the validator alone: given a later `as_of`, the
    same row is accepted (before issue 20 a second, per-cell check in serving refused it too)."""
    late = _purchase(ordered_at="2200-01-01T00:00:00Z")
    assert client.post("/v1/events", json={"purchases": [late]}, headers=CRM).status_code == 422
    monkeypatch.setattr(
        features.posted_rows,
        "check_tables",
        lambda raw, as_of, tables: check_tables(raw, pd.Timestamp("2250-01-01", tz="UTC"), tables),
    )
    answer = client.post("/v1/events", json={"purchases": [late]}, headers=CRM)
    assert answer.status_code == 201, answer.text


def test_serving_holds_no_row_checker() -> None:
    """The old per-cell checker and its second run of the validator are gone from serving."""
    import serving.overlay
    import serving.routes.events

    for module in (serving.overlay, serving.routes.events):
        for name in ("validate_event_rows", "contract_rejects", "_check_cell"):
            assert not hasattr(module, name), f"{module.__name__}.{name}"
    serving_dir = Path(serving.overlay.__file__).parent
    for path in serving_dir.rglob("*.py"):
        assert "features.validation" not in path.read_text(), path


@pytest.mark.parametrize("price", ["NaN", "Infinity"])
def test_a_price_must_be_a_finite_json_number(client: TestClient, price: str) -> None:
    """Python's JSON reader takes NaN and Infinity; the old per-cell check refused them, the row
    model does now (the validator would read NaN as an empty price)."""
    body = '{"items": [{"item_id": "i1", "available": false, "price": PRICE}]}'
    answer = client.post(
        "/v1/events",
        content=body.replace("PRICE", price),
        headers={**CRM, "Content-Type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["rejected"][0]["reason"].startswith("price:")
