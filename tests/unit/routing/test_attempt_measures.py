"""gateway/routing/requests.py measure_chat / measure_embeddings: what one successful attempt
tells the router statistics (its list-price cost, and for chat whether the output was valid)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from domain.catalog import Catalog
from gateway.providers.base import ChatResult, EmbeddingResult, Usage
from gateway.routing.requests import measure_chat, measure_embeddings

PRICED_AT = datetime(2026, 6, 1, tzinfo=UTC)
BEFORE_ANY_PRICE = datetime(2000, 1, 1, tzinfo=UTC)
JSON_ASKED = {"response_format": {"type": "json_object"}}
JSON_ANSWER = {"choices": [{"message": {"role": "assistant", "content": '{"ok": true}'}}]}


def _target(model: str) -> SimpleNamespace:
    return SimpleNamespace(spec=Catalog.shipped().require(model))


def test_a_chat_attempt_is_measured_at_the_list_price_in_effect_and_judged_for_validity() -> None:
    target = _target("gpt-4o-mini")
    usage = Usage(1000, 200, 100)
    cost, valid = measure_chat(JSON_ASKED, PRICED_AT)((ChatResult(JSON_ANSWER, usage), target))
    price = target.spec.price_at(PRICED_AT)
    assert cost == price.cost(1000, 200, 100)
    assert valid is True


def test_a_chat_attempt_without_a_price_still_reports_its_output_validity() -> None:
    target = _target("gpt-4o-mini")
    measure = measure_chat(JSON_ASKED, BEFORE_ANY_PRICE)
    assert measure((ChatResult(JSON_ANSWER, Usage(10, 2)), target)) == (None, True)


def test_an_embeddings_attempt_prices_its_input_only_and_has_no_validity() -> None:
    target = _target("text-embedding-3-small")
    result = EmbeddingResult({"object": "list", "data": []}, Usage(500, 0))
    cost, valid = measure_embeddings(PRICED_AT)((result, target))
    assert cost == target.spec.price_at(PRICED_AT).cost(500, 0, 0)
    assert valid is None
    assert measure_embeddings(BEFORE_ANY_PRICE)((result, target)) == (None, None)


def test_an_attempt_of_the_other_kind_is_not_measured() -> None:
    embedding = EmbeddingResult({"object": "list", "data": []}, Usage(5, 0))
    assert measure_chat({}, PRICED_AT)((embedding, _target("gpt-4o-mini"))) == (None, None)
