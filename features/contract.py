"""The data contract: the four tables a shop brings, their columns and rules.

One directory holds up to four tables, each as `NAME.csv` or `NAME.parquet`:
`purchases` (required), `feedback` (optional: absent means no feedback), `items` (optional,
inferred from purchases when absent) and `customers` (optional, inferred when absent). Ids are
strings. Timestamps are ISO 8601; a timestamp without a zone is UTC. Every timestamp inside
Patronage is a timezone-aware UTC `pandas.Timestamp`. `docs/data-contract.md` is the
human-readable version of this module; `features/validation.py` applies its rules, to a shop's
files and to rows posted to the server alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Literal, get_args

ColumnKind = Literal["id", "int", "float", "timestamp", "text", "bool", "choice", "id_list"]
"""`id_list`: a non-empty list of distinct ids (an impression's items in shown order; posted
rows only)."""

FeedbackKind = Literal["rating", "review", "complaint", "return"]
FEEDBACK_KINDS: tuple[str, ...] = get_args(FeedbackKind)

InteractionKind = Literal["view", "cart"]
INTERACTION_KINDS: tuple[str, ...] = get_args(InteractionKind)
"""What a customer did with an item short of buying it: looked at it, put it in the cart."""

# Limits of a posted row (`POST /v1/events`), whose values arrive typed (JSON); a shop's files
# are held to the rules of the tables below, which do not cap lengths.
MAX_ID_LENGTH = 256
"""Ids in request bodies, as in paths: 1 to 256 characters."""
MAX_TEXT_LENGTH = 5000
"""Free text (a review, a complaint, an item name), in characters."""
MAX_INTEGER = 2**63 - 1
"""The largest whole number a table holds (int64)."""
ISO_8601 = re.compile(  # an ISO 8601 date, optional time and zone
    r"\d{4}-\d{2}-\d{2}([T ]\d{2}(:\d{2}(:\d{2}([.,]\d+)?)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?"
)
"""The form of a timestamp in a request body: an ISO 8601 date in the extended form, optionally
with time and zone (no zone means UTC). Files also take what pandas reads as ISO 8601 (e.g. the
basic form 20250105T1000Z); neither takes words such as "now" or "today"."""


@dataclass(frozen=True)
class Column:
    """One column of a contract table."""

    name: str
    kind: ColumnKind
    required: bool = True
    """A required column must be present in the file and non-empty in every row."""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Table:
    """One contract table: its columns and whether the directory must contain it."""

    name: str
    columns: tuple[Column, ...]
    must_exist: bool
    key: tuple[str, ...] = ()
    """Rows sharing these values are duplicates (see docs/data-contract.md)."""
    extra_columns_allowed: bool = False
    timestamp_column: str | None = None
    """The column checked against `as_of` (rows dated after `as_of` are rejected)."""
    columns_by_name: dict[str, Column] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns_by_name", {c.name: c for c in self.columns})

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Columns the file must have."""
        return tuple(c.name for c in self.columns if c.required)


PURCHASES = Table(
    name="purchases",
    columns=(
        Column("order_id", "id"),
        Column("customer_id", "id"),
        Column("item_id", "id"),
        Column("quantity", "int", minimum=1),
        Column("unit_price", "float", required=False, minimum=0),
        Column("ordered_at", "timestamp"),
        Column("channel", "text", required=False),
    ),
    must_exist=True,
    key=("order_id", "item_id"),
    timestamp_column="ordered_at",
)

FEEDBACK = Table(
    name="feedback",
    columns=(
        Column("customer_id", "id"),
        Column("created_at", "timestamp"),
        Column("kind", "choice", choices=FEEDBACK_KINDS),
        Column("item_id", "id", required=False),
        Column("order_id", "id", required=False),
        Column("rating", "int", required=False, minimum=1, maximum=5),
        Column("text", "text", required=False),
    ),
    must_exist=False,
    timestamp_column="created_at",
)

ITEMS = Table(
    name="items",
    columns=(
        Column("item_id", "id"),
        Column("name", "text", required=False),
        Column("category", "text", required=False),
        Column("price", "float", required=False, minimum=0),
        Column("available", "bool", required=False),
    ),
    must_exist=False,
    key=("item_id",),
)

CUSTOMERS = Table(
    name="customers",
    columns=(
        Column("customer_id", "id"),
        Column("signed_up_at", "timestamp", required=False),
    ),
    must_exist=False,
    key=("customer_id",),
    extra_columns_allowed=True,
)

TABLES: dict[str, Table] = {t.name: t for t in (PURCHASES, FEEDBACK, ITEMS, CUSTOMERS)}

INTERACTIONS = Table(
    name="interactions",
    columns=(
        Column("customer_id", "id"),
        Column("item_id", "id"),
        Column("kind", "choice", choices=INTERACTION_KINDS),
        Column("occurred_at", "timestamp"),
    ),
    must_exist=False,
    timestamp_column="occurred_at",
)
"""Views and carts, posted to the server only (`POST /v1/events`, field `interactions`): a
shop's files have no such table. A row repeated exactly within one request is a duplicate;
the same view at another time is another row."""

FILE_SUFFIXES = (".csv", ".parquet")

# What was shown and what was clicked: rows only the server takes (`POST /v1/events`), never a
# shop's files. A recommendation answer carries a `recommendation_id`; the storefront posts it
# back with what it showed, what was clicked and, optionally, on the purchase it led to.
MAX_SHOWN_ITEMS = 1000
"""The most item ids one impression may list."""

RECOMMENDATION_ID = Column("recommendation_id", "id", required=False)
"""The `recommendation_id` of the answer a row is about (`features.recommendation_ids`)."""

IMPRESSIONS = Table(
    name="impressions",
    columns=(
        Column("recommendation_id", "id"),
        Column("customer_id", "id", required=False),
        Column("session_id", "id", required=False),
        Column("items", "id_list"),
        Column("shown_at", "timestamp"),
    ),
    must_exist=False,
    key=("recommendation_id",),
    timestamp_column="shown_at",
)
"""One recommendation answer as shown: to whom (`customer_id` or `session_id`, at least one),
the item ids in shown order, when. The same `recommendation_id` again is the same impression."""

CLICKS = Table(
    name="clicks",
    columns=(
        Column("recommendation_id", "id"),
        Column("item_id", "id"),
        Column("clicked_at", "timestamp"),
    ),
    must_exist=False,
    key=("recommendation_id", "item_id"),
    timestamp_column="clicked_at",
)
"""One click on a shown item; a second click on the same item of the same answer counts once."""

POSTED_TABLE_NAMES = ("purchases", "feedback", "items", "interactions", "impressions", "clicks")
"""The tables a client may post rows of (`POST /v1/events`), in the order rejects are listed."""


def posted_row_tables() -> dict[str, Table]:
    """The rules of posted rows, by table: the shop's `purchases` (plus the optional
    `recommendation_id` it came from, kept in the event log for the online metrics; training
    reads the contract's columns only), `feedback` and `items` as in `TABLES` at the time of the
    call, then `interactions` (views and carts), `impressions` and `clicks`."""
    purchases = TABLES["purchases"]
    return {
        "purchases": replace(purchases, columns=(*purchases.columns, RECOMMENDATION_ID)),
        "feedback": TABLES["feedback"],
        "items": TABLES["items"],
        "interactions": INTERACTIONS,
        "impressions": IMPRESSIONS,
        "clicks": CLICKS,
    }
