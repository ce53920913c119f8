"""The fresh-answer memory: one answer per bundle, question and events, least recently used out."""

from __future__ import annotations

import pytest

from serving.fresh_answers import FreshAnswers, question_key
from serving.model_store import RecommendationList


def _answer(item: str) -> RecommendationList:
    return RecommendationList((item,), (1.0,), "als")


def _key(customer: str, bought: tuple[str, ...] = ("i1",)) -> object:
    return question_key(customer, 10, None, "non-repeatable", bought, (), None)


def test_an_answer_is_kept_per_question_and_events_for_one_bundle() -> None:
    memory, bundle, other = FreshAnswers(capacity=2), object(), object()
    assert memory.get(bundle, _key("c1")) is None
    memory.put(bundle, _key("c1"), _answer("i2"))
    assert memory.get(bundle, _key("c1")) == _answer("i2")
    assert memory.get(bundle, _key("c1", ("i1", "i3"))) is None  # another event since
    assert memory.get(other, _key("c1")) is None  # a new bundle forgets every answer
    memory.put(bundle, _key("c1"), _answer("i2"))  # scored by the old bundle: not kept
    assert memory.get(other, _key("c1")) is None
    assert memory.status() == {"remembered": 0, "hits": 1, "misses": 4}


def test_the_least_recently_used_answer_goes_first() -> None:
    memory, bundle = FreshAnswers(capacity=2), object()
    memory.get(bundle, _key("c0"))
    for customer in ("c1", "c2"):
        memory.put(bundle, _key(customer), _answer(customer))
    assert memory.get(bundle, _key("c1")) is not None  # c1 used last: c2 is the oldest now
    memory.put(bundle, _key("c3"), _answer("c3"))
    assert memory.get(bundle, _key("c2")) is None
    assert memory.get(bundle, _key("c1")) == _answer("c1")
    assert memory.get(bundle, _key("c3")) == _answer("c3")
    with pytest.raises(ValueError, match="at least 1"):
        FreshAnswers(capacity=0)
