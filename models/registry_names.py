"""Names the MLflow registry uses, shared by training (writes them) and serving (reads them).

One MLflow store can hold many shops. Every shop has a name (`--shop`, default: its data
directory's name) and three registered models, one per role: `patronage.<shop>.recommender`,
`patronage.<shop>.churn`, `patronage.<shop>.loyalty`. Champions are compared only within a shop.
Each registered model carries the tags `patronage.shop` and `patronage.role`, so listing never
parses names; a role that training skipped carries `patronage.skipped` (why, in words) until a
version of it is trained.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

Role = Literal["recommender", "churn", "loyalty"]
ROLES: tuple[Role, ...] = ("recommender", "churn", "loyalty")
RECOMMENDER: Role = "recommender"
CHURN: Role = "churn"
LOYALTY: Role = "loyalty"

MODEL_PREFIX = "patronage"
CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"
"""The alias of every newly trained version; served to a share of shoppers when the server's
`PATRONAGE_CHALLENGER_SHARE` is above 0 (docs/serving.md)."""
SHOP_TAG = "patronage.shop"
ROLE_TAG = "patronage.role"
SKIPPED_TAG = "patronage.skipped"
"""Registered-model tag: why the last training skipped this role (removed once it trains)."""
METRIC_TAG_PREFIX = "patronage.metric."
"""Version tags holding the key backtest metrics, so listing needs no run lookups."""
BASELINE_TAG = "patronage.beats_baseline"
"""Version tag: `true` when the backtest beat the role's plain baseline, else `false`."""
BASELINE_NOTE_TAG = "patronage.baseline_note"
"""Version tag: the sentence comparing the backtest with the plain baseline."""
SOURCE_TAG = "patronage.data_source"
ROWS_TAG = "patronage.data_rows"
"""Version tag: JSON object of rows per contract table trained on."""
AS_OF_TAG = "patronage.as_of"
"""Version (and run) tag: the training's `as_of`, ISO 8601 UTC (data strictly before it)."""
DATA_SHA256_TAG = "patronage.data_sha256"
"""Version (and run) tag: the content hash of the data trained on."""
SEED_TAG = "patronage.seed"
DECISION_TAG = "patronage.decision"
"""Version tag: `first`, `promoted`, `kept`, `forced`, `manual` or `rollback`."""
REASON_TAG = "patronage.reason"
"""Version tag: the sentence saying why the decision was taken."""
BACKTEST_KEY_TAG = "patronage.backtest_key"
"""Version tag: identity of the backtest (same data, window and settings: same key)."""
BACKTEST_CUT_TAG = "patronage.backtest_cut"
"""Version tag: where the backtest's window starts (its model saw only data before it)."""
BACKTEST_MODEL_URI_TAG = "patronage.backtest_model_uri"
"""Version tag: the run artifact of the backtest model (fitted before the cut)."""

MLFLOW_CLIENT_DEFAULTS = {
    # Fail fast on an unreachable tracking server (MLflow's own default retries for minutes).
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    # Per-file download bars would drown our own progress lines and the service log.
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
"""Environment defaults for every process that talks to the registry (a user's setting wins)."""

_SHOP_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def shop_name(text: str) -> str:
    """A shop name as the registry uses it: lower case letters, digits, `-` and `_`, 1 to 64
    characters, starting with a letter or digit. Other characters become `-`.

    Raises ValueError when nothing usable is left (the message says what to pass)."""
    name = re.sub(r"[^a-z0-9_-]+", "-", text.strip().lower()).strip("-_")[:64]
    if not _SHOP_NAME.match(name):
        raise ValueError(
            f"{text!r} is not usable as a shop name: pass --shop NAME (letters, digits, - and _)"
        )
    return name


def shop_of_directory(directory: str | Path) -> str:
    """The default shop name of a data directory: its own name (`data/groceries` ->
    `groceries`), resolved, so `.` names the current directory. For a PostgreSQL URL: its
    schema (`?schema=groceries` -> `groceries`), or its database when the schema is `public`."""
    from features.postgres_url import is_postgres_url, split_url

    if is_postgres_url(directory):
        url = split_url(str(directory))
        return shop_name(url.schema if url.schema != "public" else url.database)
    return shop_name(Path(directory).resolve().name)


def registered_name(shop: str, role: Role | str) -> str:
    """The registered model name of `role` in `shop`, e.g. `patronage.sample.churn`."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    return f"{MODEL_PREFIX}.{shop}.{role}"


def recorded_metrics(tags: Mapping[str, str]) -> dict[str, float]:
    """The key backtest metrics a version carries as `patronage.metric.<name>` tags (values that
    are not numbers are left out)."""
    metrics = {}
    for key, value in tags.items():
        if key.startswith(METRIC_TAG_PREFIX):
            try:
                metrics[key.removeprefix(METRIC_TAG_PREFIX)] = float(value)
            except ValueError:
                continue
    return metrics


def beats_baseline(tags: Mapping[str, str]) -> bool | None:
    """Whether a version's backtest beat its plain baseline (None: not recorded)."""
    value = tags.get(BASELINE_TAG)
    return None if value is None else value == "true"


def shop_models(client: Any) -> list[Any]:
    """Every registered model of every shop in the store behind an `MlflowClient` (those
    tagged with shop and role), all pages."""
    query = f"name LIKE '{MODEL_PREFIX}.%'"
    found = client.search_registered_models(filter_string=query)
    models = list(found)
    while getattr(found, "token", None):
        found = client.search_registered_models(filter_string=query, page_token=found.token)
        models += list(found)
    return [m for m in models if (m.tags or {}).get(SHOP_TAG) and (m.tags or {}).get(ROLE_TAG)]


def shops(client: Any) -> list[str]:
    """The names of the shops with registered models in the store, sorted."""
    return sorted({m.tags[SHOP_TAG] for m in shop_models(client)})
