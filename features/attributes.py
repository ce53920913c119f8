"""Customer attributes as codes: the customers table's descriptive text columns (gender, age
band, region, ...) for a given list of customers, ready for a model to read as evidence.

Which columns count: every column of the customers table except `customer_id` and
`signed_up_at` whose values are text and that has between 2 and `MAX_VALUES` distinct values
among the customers asked (a column with one value says nothing; one with hundreds, such as a
post code or an e-mail address, identifies people rather than describing them). Values are
compared as given (after stripping spaces); a missing or empty value is "unknown" and carries
no evidence. Attributes carry no date: they are read as the table holds them now.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.shop import Shop

MAX_VALUES = 50
"""An attribute with more distinct values than this is left out (too fine to describe taste)."""
NOT_ATTRIBUTES = ("customer_id", "signed_up_at")


@dataclass(frozen=True)
class CustomerAttributes:
    """Attribute codes of a list of customers (in the order asked).

    `codes[r, a]` is the value of attribute `names[a]` for customer r as an index into the
    flat value list (`values[offsets[a] + j]` is the j-th value of attribute a), or -1 when
    unknown. `offsets` has one entry per attribute plus the total number of values."""

    names: tuple[str, ...]
    values: tuple[str, ...]
    offsets: np.ndarray
    codes: np.ndarray

    @property
    def n_values(self) -> int:
        """Number of distinct (attribute, value) pairs."""
        return len(self.values)

    def __len__(self) -> int:
        return int(self.codes.shape[0])


def customer_attributes(
    shop: Shop, customer_ids: np.ndarray | list[str], max_values: int = MAX_VALUES
) -> CustomerAttributes:
    """The descriptive attributes of `customer_ids` (see the module docstring for which
    columns count). A customer missing from the customers table has every attribute unknown;
    a shop without such columns gives zero attributes."""
    ids = pd.Index([str(c) for c in customer_ids], dtype=object)
    table = shop.customers
    table = table.assign(customer_id=table["customer_id"].astype(str)).drop_duplicates(
        "customer_id"
    )
    table = table.set_index("customer_id").reindex(ids)
    names: list[str] = []
    values: list[str] = []
    offsets = [0]
    columns: list[np.ndarray] = []
    for name in table.columns:
        if name in NOT_ATTRIBUTES or not _is_text(table[name]):
            continue
        text = table[name].astype("string").str.strip()
        text = text.mask(text == "")
        codes, uniques = pd.factorize(text, sort=True)
        if not 2 <= len(uniques) <= max_values:
            continue
        names.append(str(name))
        values.extend(str(u) for u in uniques)
        columns.append(np.where(codes >= 0, codes + offsets[-1], -1).astype(np.int32))
        offsets.append(offsets[-1] + len(uniques))
    codes_matrix = np.column_stack(columns) if columns else np.empty((len(ids), 0), dtype=np.int32)
    return CustomerAttributes(
        names=tuple(names),
        values=tuple(values),
        offsets=np.asarray(offsets, dtype=np.int64),
        codes=codes_matrix.astype(np.int32),
    )


def _is_text(column: pd.Series) -> bool:
    return bool(
        pd.api.types.is_object_dtype(column)
        or pd.api.types.is_string_dtype(column)
        or isinstance(column.dtype, pd.CategoricalDtype)
    )
