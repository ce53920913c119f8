"""The `recommendation_id` of a recommendation answer: unique, and naming where the answer came
from, so that impressions, clicks and purchases posted back to any worker, after any restart,
are counted for the model version, route, strategy and variant that produced the answer.

Form: `UNIQUE~VARIANT~ROUTE~MODEL_VERSION~STRATEGY`, e.g.
`0f5c...9a~champion~personal~patronage.sample.recommender/3~discovery`. `UNIQUE` is 32 random
hex digits (128 bits, as a uuid4); `VARIANT` is `champion` or `challenger`; `ROUTE` one of
`ROUTES`; `MODEL_VERSION` the `registered-name/version` of the recommender (registered names
hold no `~`); `STRATEGY` what produced the list (last, so it may hold anything; cut so that
the id stays within the contract's `MAX_ID_LENGTH`, 256, and can be posted back). Clients treat
the id as opaque and post it back verbatim. Serving writes ids (`new_recommendation_id`, a few
hundred nanoseconds, no I/O); the online metrics read them (`origin_of`). This module sits below
both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, get_args

from features.contract import MAX_ID_LENGTH

Variant = Literal["champion", "challenger"]
VARIANTS: tuple[Variant, ...] = get_args(Variant)
Route = Literal["personal", "session", "cross_sell", "similar"]
ROUTES: tuple[str, ...] = get_args(Route)
SEPARATOR = "~"
UNKNOWN = "unknown"
"""Every field of the origin of an id that is not in this form (e.g. made up by a client)."""


@dataclass(frozen=True)
class Origin:
    """What produced one recommendation answer."""

    model_version: str
    route: str
    strategy: str
    variant: str


UNKNOWN_ORIGIN = Origin(UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN)


def new_recommendation_id(variant: Variant, route: Route, model_version: str, strategy: str) -> str:
    """A fresh id for one answer: 128 random bits plus its origin, at most `MAX_ID_LENGTH`
    characters (a long strategy, e.g. a blend's label, is cut to fit)."""
    head = SEPARATOR.join((os.urandom(16).hex(), variant, route, model_version))
    return head + SEPARATOR + strategy[: max(0, MAX_ID_LENGTH - len(head) - 1)]


def origin_of(recommendation_id: str) -> Origin:
    """The origin an id names; `UNKNOWN_ORIGIN` when it is not one of ours."""
    parts = recommendation_id.split(SEPARATOR, 4)
    if len(parts) != 5 or parts[1] not in VARIANTS or parts[2] not in ROUTES:
        return UNKNOWN_ORIGIN
    _, variant, route, model_version, strategy = parts
    return Origin(model_version, route, strategy, variant)
