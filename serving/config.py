"""Server settings: one pydantic model, read from `PATRONAGE_*` environment variables.

`pydantic-settings` is not a dependency, so `Settings.from_env` does the one thing we need from
it: every field `name` may be given as the variable `PATRONAGE_<NAME>` (upper case). The MLflow
tracking URI also honours the standard `MLFLOW_TRACKING_URI`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "PATRONAGE_"
SCOPES = ("storefront", "crm", "admin")
"""storefront: recommendation routes; crm: customer scores, batch, segments, events;
admin: models and reload."""

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"


class SettingsError(ValueError):
    """The settings cannot be used as given; the message says which variable to fix."""


def parse_api_keys(raw: str) -> tuple[tuple[str, str], ...]:
    """Parse `scope=key,scope=key` pairs (a scope may repeat) into `(scope, key)` tuples.

    Whitespace around pairs is ignored. Raises `SettingsError` for a pair without `=`, an unknown
    scope or an empty key; the message never contains a key."""
    pairs: list[tuple[str, str]] = []
    for position, chunk in enumerate(raw.split(","), start=1):
        chunk = chunk.strip()
        if not chunk:
            continue
        scope, sep, key = chunk.partition("=")
        scope, key = scope.strip(), key.strip()
        if not sep or not key:
            raise SettingsError(
                f"PATRONAGE_API_KEYS entry {position} is not `scope=key` "
                f"(scopes: {', '.join(SCOPES)})"
            )
        if scope not in SCOPES:
            raise SettingsError(
                f"PATRONAGE_API_KEYS entry {position} has unknown scope {scope!r}; "
                f"use one of {', '.join(SCOPES)}"
            )
        pairs.append((scope, key))
    return tuple(pairs)


class Settings(BaseModel):
    """Everything the server can be told; immutable once built."""

    model_config = ConfigDict(frozen=True)

    api_keys: str = Field(
        default="",
        repr=False,  # keys are never printed or logged
        description="comma-separated `scope=key` pairs; scopes storefront, crm, admin",
    )
    insecure_dev: bool = Field(
        default=False, description="serve without any API key (local development only)"
    )
    tracking_uri: str = Field(
        default_factory=lambda: os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI),
        description="MLflow tracking/registry URI the champion models are read from",
    )
    model_alias: str = Field(default="champion", description="registry alias that is served")
    shop: str = Field(
        default="",
        description="the shop whose champions are served (its models are patronage.SHOP.ROLE); "
        "empty: the store's only shop",
    )
    poll_seconds: float = Field(
        default=30.0, ge=0, description="registry poll interval in seconds; 0 turns polling off"
    )
    events_dir: Path = Field(
        default=Path("data/events"), description="directory of the append-only event log"
    )
    events_follow_seconds: float = Field(
        default=1.0,
        ge=0,
        description="read what other worker processes appended to the event log this often "
        "(seconds); 0 reads it only at start-up",
    )
    max_batch_customers: int = Field(default=1000, ge=1, le=100_000)
    max_events_per_request: int = Field(default=10_000, ge=1)
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="request bodies over this many bytes answer 413 body_too_large, before "
        "they are read (16 MiB)",
    )
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="a request line and headers over this many bytes answer 431 and the "
        "connection closes, before the request reaches the app (64 KiB)",
    )
    request_read_timeout_seconds: float = Field(
        default=15.0,
        ge=0,
        description="a request (headers and body) not fully received this many seconds after "
        "its connection opened or its first byte arrived answers 408 and the connection closes; "
        "0 turns it off",
    )
    future_tolerance_seconds: float = Field(
        default=300.0, ge=0, description="events dated further in the future are rejected"
    )
    precompute_top_k: int = Field(
        default=50,
        ge=0,
        le=1000,
        description="precompute this many default recommendations per known customer at load "
        "(0: score every request)",
    )
    load_on_start: bool = Field(
        default=True, description="load the champion models in a background thread at start"
    )
    opentelemetry: bool = Field(
        default=False,
        description="FastAPI's native OpenTelemetry spans and metrics (for a configured "
        "OpenTelemetry SDK); off, each request skips looking for a provider",
    )

    @field_validator("api_keys")
    @classmethod
    def _keys_parse(cls, value: str) -> str:
        parse_api_keys(value)
        return value

    def keys_by_scope(self) -> tuple[tuple[str, str], ...]:
        """The configured `(scope, key)` pairs."""
        return parse_api_keys(self.api_keys)

    def check_can_start(self) -> None:
        """Refuse to start without keys unless `insecure_dev`; raises `SettingsError`."""
        if not self.keys_by_scope() and not self.insecure_dev:
            raise SettingsError(
                "no API key configured: set PATRONAGE_API_KEYS='storefront=KEY,crm=KEY,admin=KEY' "
                "or pass --insecure-dev for local development without keys"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from `PATRONAGE_<FIELD>` variables, then `overrides` (None ignored).

        Raises `SettingsError` naming the variable when a value does not parse."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            variable = ENV_PREFIX + name.upper()
            if variable in environ:
                values[name] = environ[variable]
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except SettingsError:
            raise
        except ValidationError as error:
            problems = "; ".join(
                f"{ENV_PREFIX}{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
                for e in error.errors()
            )
            raise SettingsError(f"invalid server settings: {problems}") from None
