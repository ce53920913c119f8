"""API keys: header `X-API-Key`, one scope per key, compared in constant time, never logged.

401 when the header is missing or matches no configured key; 403 when the key is valid but
lacks the route's scope. Health and metrics routes do not use this (they are open by design:
load balancers and Prometheus scrape them without credentials).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi.security import APIKeyHeader

from serving.errors import ApiError

API_KEY_HEADER = "X-API-Key"

api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="API key; scopes: storefront (recommendations), crm (customer scores, "
    "segments, events), admin (models, reload)",
)


@dataclass(frozen=True)
class KeyRing:
    """The configured keys, as bytes, each with its scope."""

    entries: tuple[tuple[str, bytes], ...]
    open_access: bool = False
    """True only with `--insecure-dev` and no key configured: every route is open."""

    @classmethod
    def from_pairs(cls, pairs: tuple[tuple[str, str], ...], insecure_dev: bool) -> KeyRing:
        """Build from `(scope, key)` pairs; open access only when dev mode has no keys."""
        entries = tuple((scope, key.encode()) for scope, key in pairs)
        return cls(entries=entries, open_access=insecure_dev and not entries)

    def scopes_of(self, presented: str) -> frozenset[str]:
        """The scopes granted to `presented`; compares against every key, in constant time each.

        No early exit: the time taken does not depend on which key (if any) matched."""
        candidate = presented.encode()
        granted = set()
        for scope, key in self.entries:
            if hmac.compare_digest(candidate, key):
                granted.add(scope)
        return frozenset(granted)

    def check(self, presented: str | None, scope: str) -> None:
        """Raise `ApiError` 401 (no or unknown key) or 403 (wrong scope); return when allowed."""
        if self.open_access:
            return
        if not presented:
            raise ApiError(
                401, "missing_api_key", f"send an API key with scope {scope!r} in {API_KEY_HEADER}"
            )
        granted = self.scopes_of(presented)
        if not granted:
            raise ApiError(401, "invalid_api_key", f"the {API_KEY_HEADER} given is not valid")
        if scope not in granted:
            raise ApiError(
                403,
                "forbidden",
                f"this API key has scope {', '.join(sorted(granted))}; this route needs {scope!r}",
            )
