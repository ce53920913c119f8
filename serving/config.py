"""Server settings: one pydantic-settings `Settings`, read from `PATRONAGE_*` variables.

Every field `name` may be given as the environment variable `PATRONAGE_<NAME>` (any case); the
MLflow tracking URI also honours the standard `MLFLOW_TRACKING_URI` (`PATRONAGE_TRACKING_URI`
wins when both are set). Keyword arguments win over the environment. `Settings.from_env` is the
entry point of the server and the CLI: it turns pydantic's errors into a `SettingsError` that
names the variable and never shows a value (API keys are secrets).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

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


_ENVIRONMENT: ContextVar[Mapping[str, str] | None] = ContextVar("_ENVIRONMENT", default=None)
"""The variables `Settings.from_env` was given instead of `os.environ` (None: `os.environ`)."""


@contextmanager
def _environment(environ: Mapping[str, str] | None) -> Iterator[None]:
    token = _ENVIRONMENT.set(environ)
    try:
        yield
    finally:
        _ENVIRONMENT.reset(token)


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of `os.environ`."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # case-insensitive, as for os.environ (the config sets case_sensitive=False)
        return {name.lower(): value for name, value in self._environ.items()}


class Settings(BaseSettings):
    """Everything the server can be told; immutable once built."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        frozen=True,
        extra="ignore",
        populate_by_name=True,  # tracking_uri=... as well as its variable names
    )

    api_keys: str = Field(
        default="",
        repr=False,  # keys are never printed or logged
        description="comma-separated `scope=key` pairs; scopes storefront, crm, admin",
    )
    insecure_dev: bool = Field(
        default=False, description="serve without any API key (local development only)"
    )
    tracking_uri: str = Field(
        default=DEFAULT_TRACKING_URI,
        validation_alias=AliasChoices(f"{ENV_PREFIX}TRACKING_URI", "MLFLOW_TRACKING_URI"),
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
    events_url: str = Field(
        default="",
        description="postgresql://USER@HOST:PORT/DB?schema=SCHEMA: keep posted events in "
        "PostgreSQL, shared by every replica (docs/postgresql.md); empty: the file log in "
        "events_dir",
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
    next_need_weight: float | None = Field(
        default=None,
        ge=0,
        le=10,
        description="for a customer with purchases posted since training, what goes with them "
        "(the cross-sell model's answer for them as a basket) weighs this much beside the "
        "champion's places in their answer; unset: the weight training chose for the served "
        "version on the shop's validation window (0: the champion alone)",
    )
    load_on_start: bool = Field(
        default=True, description="load the champion models in a background thread at start"
    )
    crm_session_minutes: float = Field(
        default=480.0,
        gt=0,
        le=7 * 24 * 60,
        description="the CRM console's sign-in lasts this many minutes (8 hours); then the "
        "marketer enters the crm key again",
    )
    crm_session_secret: str = Field(
        default="",
        repr=False,  # a secret, never printed or logged
        description="secret that signs the CRM console's session cookies; empty: derived from "
        "the configured crm keys (every worker derives the same, and changing the keys ends "
        "every session)",
    )
    crm_data_dir: Path | None = Field(
        default=None,
        description="the shop's data directory the CRM console reads orders, feedback and item "
        "names from; empty: the directory the served champion was trained on",
    )
    challenger_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share of shoppers (0 to 1, by a fixed BLAKE2b hash of the customer or "
        "session id) answered by the shop's @challenger recommender when it exists and differs "
        "from the champion; 0: everyone gets the champion and no challenger is loaded",
    )
    opentelemetry: bool = Field(
        default=False,
        description="FastAPI's native OpenTelemetry spans and metrics (for a configured "
        "OpenTelemetry SDK); off, each request skips looking for a provider",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the environment (`from_env`'s mapping when given); no .env
        or secrets files."""
        environ = _ENVIRONMENT.get()
        if environ is not None:
            env_settings = _MappingEnvSource(settings_cls, environ)
        return init_settings, env_settings

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
        """Build settings from `PATRONAGE_<FIELD>` variables (of `environ`, default
        `os.environ`), then `overrides` (None ignored).

        Raises `SettingsError` naming the variable when a value does not parse; the message
        holds pydantic's reason, never the value."""
        values = {k: v for k, v in overrides.items() if v is not None}
        try:
            with _environment(environ):
                return cls(**values)
        except ValidationError as error:
            problems = "; ".join(f"{_variable(e['loc'])}: {e['msg']}" for e in error.errors())
            raise SettingsError(f"invalid server settings: {problems}") from None


def _variable(location: tuple[int | str, ...]) -> str:
    """The environment variable of a validation error's location (a field name or alias)."""
    name = ".".join(str(part) for part in location).upper()
    return name if name.startswith(ENV_PREFIX) or name.startswith("MLFLOW_") else ENV_PREFIX + name
