"""Which customers-table columns become attributes, and how their values are coded."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.attributes import MAX_VALUES, customer_attributes
from features.shop import Shop


def _shop(customers: pd.DataFrame) -> Shop:
    empty = pd.DataFrame()
    return Shop(purchases=empty, feedback=empty, items=empty, customers=customers)


def test_descriptive_text_columns_become_coded_attributes() -> None:
    customers = pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3", "c4"],
            "signed_up_at": pd.Timestamp("2025-01-01", tz="UTC"),
            "gender": ["female", "male", " female ", ""],
            "country": ["fr", "fr", "fr", "fr"],  # one value: says nothing
            "email": [f"{i}@shop.example" for i in range(4)],
        }
    )
    asked = ["c3", "c9", "c2", "c4", "c1"]  # c9 is not in the customers table
    found = customer_attributes(_shop(customers), asked, max_values=3)
    assert found.names == ("gender",)  # e-mail: 4 values among those asked, more than 3
    assert found.values == ("female", "male")
    assert found.offsets.tolist() == [0, 2]
    # spaces stripped; an empty value and a customer missing from the table are unknown (-1)
    assert found.codes.tolist() == [[0], [-1], [1], [-1], [0]]
    # values are counted among the customers asked: for c1 and c3 alone gender has one value
    assert customer_attributes(_shop(customers), ["c1", "c3"], max_values=3).names == ("email",)


def test_values_of_several_attributes_share_one_flat_list() -> None:
    customers = pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3"],
            "gender": ["male", "female", None],
            "age_band": ["25-34", "18-24", "65+"],
        }
    )
    found = customer_attributes(_shop(customers), ["c1", "c2", "c3"])
    assert found.names == ("gender", "age_band")
    assert found.values == ("female", "male", "18-24", "25-34", "65+")
    assert found.offsets.tolist() == [0, 2, 5]
    assert found.codes.tolist() == [[1, 3], [0, 2], [-1, 4]]


def test_too_many_values_or_numbers_are_not_attributes() -> None:
    many = [f"v{i}" for i in range(MAX_VALUES + 1)]
    customers = pd.DataFrame(
        {"customer_id": [f"c{i}" for i in range(len(many))], "post_code": many}
    ).assign(visits=np.arange(len(many)))
    found = customer_attributes(_shop(customers), customers["customer_id"])
    assert found.names == ()
    assert found.codes.shape == (len(many), 0)
