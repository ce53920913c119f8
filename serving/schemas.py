"""Request and response bodies of the HTTP API (they also make the OpenAPI document at /docs).

Hot routes build their JSON by hand from precomputed values (see `serving.responses`); these
models still describe every answer, and the schemathesis test checks the answers against them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from features.contract import (
    FEEDBACK,
    ISO_8601,
    ITEMS,
    MAX_ID_LENGTH,
    MAX_INTEGER,
    MAX_SHOWN_ITEMS,
    MAX_TEXT_LENGTH,
    PURCHASES,
    FeedbackKind,
    InteractionKind,
    Table,
)

ExcludePurchased = Literal["non-repeatable", "all", "none"]
MAX_K = 100
MAX_BASKET = 100


def _iso_8601(value: str) -> str:
    """An ISO 8601 date or time (no zone = UTC); words such as "now" or "today" are refused."""
    if not ISO_8601.fullmatch(value.strip()):
        raise ValueError(f"{value[:40]!r} is not an ISO 8601 timestamp (e.g. 2026-01-05T08:30:00Z)")
    return value


# Constrained like these, pydantic refuses a lone UTF-16 surrogate ("\\ud800" in JSON) with a 422
# naming the field ("unable to parse raw data as a unicode string"); a plain `str` let it through
# to orjson and pyarrow, which answered 500 (tests/serving/test_limits.py).
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
Text = Annotated[str, Field(max_length=MAX_TEXT_LENGTH)]
Timestamp = Annotated[
    str,
    Field(
        min_length=1, max_length=64, description="ISO 8601; no zone means UTC; not in the future"
    ),
    AfterValidator(_iso_8601),
]


class RecommendedItem(BaseModel):
    """One recommended item; higher scores are better (scale depends on the strategy)."""

    item_id: str
    score: float | None


class RecommendationAnswerFields(BaseModel):
    """The fields every recommendation answer has (personal, cross-sell, session, similar
    items), as `serving.recommendation_answers.answer_fields` fills them; each answer model
    adds what it was asked about."""

    items: list[RecommendedItem]
    strategy: str = Field(description="what produced the list, e.g. `trending` for fallbacks")
    note: str | None = Field(description="why a fallback answered, e.g. `new customer`")
    model_version: str = Field(description="`registered-name/version` of the recommender")
    variant: Literal["champion", "challenger"] = Field(
        description="which model answered: the champion, or the @challenger for the share of "
        "shoppers set by PATRONAGE_CHALLENGER_SHARE"
    )
    recommendation_id: str = Field(
        description="unique id of this answer; post it back with the impression, the clicks "
        "and the purchase it led to (`POST /v1/events`); opaque, at most 256 characters"
    )


class RecommendationsAnswer(RecommendationAnswerFields):
    """Items for one customer, best first."""

    customer_id: str
    excluded_recent_purchases: int = Field(
        description="items this list leaves out because posted events say the customer bought "
        "them since the model's as_of and the rule drops bought items: the same question "
        "without those purchases would show them (a bought item the rule keeps is not counted)"
    )


class RecommendationQuery(BaseModel):
    """The query of personal recommendations. The route validates it with this model itself
    and declares its parameters from this model's schema (`serving.deps.hand_checked_openapi`)."""

    k: int = Field(default=10, ge=1, le=MAX_K, description="number of items")
    # A plain string (empty: no filter), not `str | None`: a query value is always a string,
    # and the schema then says so (schemathesis takes a number for an invalid `anyOf` member).
    category: str = Field(
        default="", max_length=256, description="only items of this category (empty: all)"
    )
    exclude_purchased: ExcludePurchased = Field(
        default="non-repeatable",
        description="drop items the customer bought: all, none, or non-repeatable (the rule "
        "the shop's training learned on its own validation window: none, all, or all but the "
        "most re-bought items)",
    )


class CrossSellRequest(BaseModel):
    """A basket (item ids) and optionally who is looking at it."""

    model_config = ConfigDict(extra="forbid")

    items: list[Id] = Field(min_length=1, max_length=MAX_BASKET)
    customer_id: Id | None = None
    k: int = Field(default=10, ge=1, le=MAX_K)


class CrossSellAnswer(RecommendationAnswerFields):
    """Items that go with the basket, best first; basket items are never returned."""

    basket: list[str]
    customer_id: str | None


class SessionRequest(BaseModel):
    """The items an anonymous visitor viewed or carted in this session, oldest first."""

    model_config = ConfigDict(extra="forbid")

    items: list[Id] = Field(min_length=1, max_length=MAX_BASKET)
    k: int = Field(default=10, ge=1, le=MAX_K)
    session_id: Id | None = Field(
        default=None,
        description="the storefront's id of the visit: with PATRONAGE_CHALLENGER_SHARE, the "
        "same session always gets the same variant; post it back on the impression",
    )


class SessionAnswer(RecommendationAnswerFields):
    """Items for the session, best first (the session's own items never come back), and the
    session's item ids the model does not know (ignored for scoring)."""

    session_id: str | None
    session_items: list[str]
    unknown_items: list[str]


class SimilarItemsAnswer(RecommendationAnswerFields):
    """Items similar to one item, best first."""

    item_id: str


class ChurnAnswer(BaseModel):
    """Churn risk of one customer, scored at `as_of` by the champion churn model."""

    customer_id: str
    churn_probability: float | None = Field(description="P(no order in the horizon), 0-1")
    churn_risk: str | None = Field(description="risk tier: low, medium or high")
    churn_reasons: list[str] = Field(
        description="up to three reasons in plain words (days in them count to as_of); at "
        "least one for a medium or high risk, none for a low one"
    )
    as_of: str = Field(description="scores use data strictly before this UTC time")
    model_version: str
    strategy: str


class LoyaltyAnswer(BaseModel):
    """Loyalty, value and timing of one customer at `as_of`, with events posted since."""

    customer_id: str
    loyalty_score: float | None = Field(description="0-100")
    segment: str | None
    p_alive: float | None = Field(description="BG/NBD P(alive); 1 without a repeat order")
    expected_orders_90d: float | None
    predicted_clv_365d: float | None = Field(description="discounted value, shop currency")
    expected_next_order_at: str | None = Field(description="ISO 8601 UTC")
    avg_days_between_orders: float | None
    satisfaction: float | None
    last_order_at: str | None = Field(description="latest known order, posted events included")
    days_since_last_order: float | None = Field(
        description="days from last_order_at to as_of (not to now: every field here is at "
        "as_of); negative when the last order was posted after as_of"
    )
    orders_posted_since_as_of: int = Field(
        description="distinct orders (order_id) posted at or after as_of"
    )
    as_of: str = Field(description="the scores' clock: data strictly before this UTC time")
    model_version: str
    strategy: str


class BatchScoresRequest(BaseModel):
    """Up to 1,000 customer ids (CRM sync)."""

    model_config = ConfigDict(extra="forbid")

    # The upper limit is the route's (settings.max_batch_customers), so that more ids get the
    # documented `batch_too_large` rather than a schema error.
    customer_ids: list[Id] = Field(
        min_length=1,
        description="1 to PATRONAGE_MAX_BATCH_CUSTOMERS (default 1,000) ids; more: 422 "
        "batch_too_large",
    )


class CustomerScores(BaseModel):
    """Churn and loyalty fields of one customer."""

    customer_id: str
    churn_probability: float | None
    churn_risk: str | None
    churn_reasons: list[str]
    loyalty_score: float | None
    segment: str | None
    p_alive: float | None
    expected_orders_90d: float | None
    predicted_clv_365d: float | None
    expected_next_order_at: str | None
    avg_days_between_orders: float | None
    satisfaction: float | None


class BatchScoresAnswer(BaseModel):
    """Scores of the known customers, in request order (repeats answered once), and the rest."""

    scores: list[CustomerScores]
    unknown_customer_ids: list[str]
    as_of: str
    model_versions: dict[str, str | None]
    unavailable: dict[str, str] = Field(
        default_factory=dict,
        description="churn or loyalty when the shop has no such model, with why (its fields "
        "are then null)",
    )


class SegmentSummary(BaseModel):
    """One loyalty segment."""

    segment: str
    customers: int
    share: float
    loyalty_score_min: float | None
    loyalty_score_max: float | None
    thresholds: Any = Field(default=None, description="the model's rule for this segment")


class SegmentsAnswer(BaseModel):
    """Segment sizes at `as_of`."""

    segments: list[SegmentSummary]
    customers: int
    as_of: str
    model_version: str
    strategy: str


def _minimum(table: Table, column: str) -> float | None:
    """A contract column's lower bound (None: none), for pydantic's `ge`."""
    return table.columns_by_name[column].minimum


def _maximum(table: Table, column: str, largest: float | None = None) -> float | None:
    """A contract column's upper bound for pydantic's `le`; `largest` when the contract sets
    none."""
    maximum = table.columns_by_name[column].maximum
    return largest if maximum is None else maximum


# The row models take the shape and the JSON types of a row (the contract's own validation,
# `features.posted_rows`, applies its rules after them); their ranges are the contract's, so
# that a value out of range is named as FastAPI names every other field error.
class PurchaseEvent(BaseModel):
    """One purchase line in the contract's `purchases` shape (docs/data-contract.md). Strict
    types: `quantity` a JSON integer (not `true` or `"2"`), timestamps ISO 8601 text."""

    model_config = ConfigDict(extra="forbid", strict=True)

    order_id: Id
    customer_id: Id
    item_id: Id
    quantity: int = Field(
        ge=_minimum(PURCHASES, "quantity"), le=_maximum(PURCHASES, "quantity", MAX_INTEGER)
    )
    unit_price: float | None = Field(
        default=None,
        allow_inf_nan=False,
        ge=_minimum(PURCHASES, "unit_price"),
        le=_maximum(PURCHASES, "unit_price"),
    )
    ordered_at: Timestamp
    channel: Id | None = None
    recommendation_id: Id | None = Field(
        default=None,
        description="the `recommendation_id` of the answer this purchase came from, if any "
        "(otherwise the online metrics attribute it to the last impression that showed the item "
        "to this customer within 7 days)",
    )


class FeedbackEvent(BaseModel):
    """One feedback row in the contract's `feedback` shape."""

    model_config = ConfigDict(extra="forbid", strict=True)

    customer_id: Id
    created_at: Timestamp
    kind: FeedbackKind
    item_id: Id | None = None
    order_id: Id | None = None
    rating: int | None = Field(
        default=None,
        ge=_minimum(FEEDBACK, "rating"),
        le=_maximum(FEEDBACK, "rating"),
        description="required for kind=rating",
    )
    text: Text | None = None


class ItemEvent(BaseModel):
    """One item row in the contract's `items` shape: a catalog change (e.g. out of stock).

    `available: false` takes the item out of every recommendation answer at once; the other
    fields, and `available: true` for an item the model was trained as unavailable, take effect
    at the next `patronage train --events`. Strict types: `available` must be a JSON boolean
    (not "no" or 0), `price` a JSON number."""

    model_config = ConfigDict(extra="forbid", strict=True)

    item_id: Id
    available: bool
    name: Text | None = None
    category: Text | None = None
    price: float | None = Field(
        default=None,
        allow_inf_nan=False,
        ge=_minimum(ITEMS, "price"),
        le=_maximum(ITEMS, "price"),
    )


class ImpressionEvent(BaseModel):
    """One recommendation answer as the shopper saw it (contract table `impressions`)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    recommendation_id: Id = Field(description="the answer's `recommendation_id`, verbatim")
    customer_id: Id | None = Field(default=None, description="who saw it (or `session_id`)")
    session_id: Id | None = Field(default=None, description="an anonymous visitor's session")
    items: list[Id] = Field(
        min_length=1, max_length=MAX_SHOWN_ITEMS, description="item ids in shown order"
    )
    shown_at: Timestamp


class ClickEvent(BaseModel):
    """One click on an item of a shown answer (contract table `clicks`)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    recommendation_id: Id = Field(description="the answer's `recommendation_id`, verbatim")
    item_id: Id
    clicked_at: Timestamp


class InteractionEvent(BaseModel):
    """One view or cart of an item by a customer (the contract's `interactions` shape).

    It joins the customer's history for scoring at once, weaker than a purchase
    (`models.recommenders.fresh_row`); training does not read it (docs/serving.md)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    customer_id: Id
    item_id: Id
    kind: InteractionKind
    occurred_at: Timestamp


def _rows_schema(row: type[BaseModel]) -> WithJsonSchema:
    """The OpenAPI schema of a list of `row`s."""
    return WithJsonSchema({"type": "array", "items": row.model_json_schema()})


# Rows documented as their row model's schema but taken as any JSON values: the route checks
# each row itself, so that every rejected row of a request comes back in one answer, whichever
# check it fails (a row failing here would hide the rows failing the contract's checks).
PurchaseRows = Annotated[list[Any], _rows_schema(PurchaseEvent)]
FeedbackRows = Annotated[list[Any], _rows_schema(FeedbackEvent)]
ItemRows = Annotated[list[Any], _rows_schema(ItemEvent)]
ImpressionRows = Annotated[list[Any], _rows_schema(ImpressionEvent)]
ClickRows = Annotated[list[Any], _rows_schema(ClickEvent)]
InteractionRows = Annotated[list[Any], _rows_schema(InteractionEvent)]


class EventsRequest(BaseModel):
    """Purchases, feedback, item updates, impressions and/or clicks, one or many (at least one
    row in total).

    Each row is checked by the route (`PurchaseEvent`, `FeedbackEvent`, `ItemEvent`,
    `ImpressionEvent`, `ClickEvent`, then the data contract's rules), not while the body is
    read."""

    model_config = ConfigDict(extra="forbid")

    purchases: PurchaseRows = Field(default_factory=list)
    feedback: FeedbackRows = Field(default_factory=list)
    items: ItemRows = Field(default_factory=list)
    impressions: ImpressionRows = Field(default_factory=list)
    clicks: ClickRows = Field(default_factory=list)
    interactions: InteractionRows = Field(default_factory=list)


class EventsAnswer(BaseModel):
    """How many rows were appended, and where."""

    accepted_purchases: int
    accepted_feedback: int
    accepted_items: int
    accepted_interactions: int = 0
    accepted_impressions: int = 0
    accepted_clicks: int = 0
    received_at: str
    log_file: str


class ReloadAnswer(BaseModel):
    """What a reload did."""

    at: str
    outcome: Literal["loaded", "unchanged", "failed"]
    detail: str
    versions: dict[str, str]
    seconds: float


class ModelInfo(BaseModel):
    """One loaded registered model version."""

    role: str
    name: str
    version: str
    run_id: str | None
    as_of: str | None
    loaded_at: str
    metrics: dict[str, float | None]
    beats_baseline: bool | None = Field(
        default=None, description="whether its backtest beat the role's plain baseline"
    )
    baseline_note: str = ""


class ModelsAnswer(BaseModel):
    """What is being served and how the last reload went."""

    ready: bool
    shop: str = Field(default="", description="the shop whose champions are served")
    models: list[ModelInfo]
    unavailable: dict[str, str] = Field(
        default_factory=dict, description="roles without a champion, and why"
    )
    alias: str
    poll_seconds: float
    last_reload: ReloadAnswer | None
    reload_failures: int
    recommender_status: dict[str, Any] | None = Field(
        description="progress of the precomputed default recommendations, restocked items, "
        "and the next-need weight per role (from training, or PATRONAGE_NEXT_NEED_WEIGHT)"
    )
    challenger_share: float = Field(
        default=0.0, description="share of shoppers answered by the @challenger recommender"
    )
    challenger: ModelInfo | None = Field(
        default=None,
        description="the @challenger recommender served to that share (null: none loaded, or "
        "it is the champion's version)",
    )
    online: dict[str, Any] | None = Field(
        default=None,
        description="online metrics from the event log: per model version, route, strategy "
        "and variant the impressions, click-through and buy-through rates and revenue with "
        "95% intervals, and challenger minus champion per route (docs/serving.md)",
    )


class HealthAnswer(BaseModel):
    """Liveness or readiness."""

    status: str
