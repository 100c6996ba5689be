from __future__ import annotations

from decimal import Decimal

from domain.tiers import effective_tier
from gateway.routing.router import Router

PRIMITIVES = (str, int, bool, Decimal, type(None))


def _only_primitives(value: object) -> bool:
    if isinstance(value, tuple):
        return all(_only_primitives(item) for item in value)
    return isinstance(value, PRIMITIVES)


def test_event_fields_hold_only_primitives_and_tuples(router: Router) -> None:
    fields = router.decide("auto", effective_tier("unrestricted")).as_event_fields()
    assert all(_only_primitives(value) for value in fields.values()), fields


def test_event_fields_never_carry_an_endpoint_url_or_key(router: Router) -> None:
    fields = router.decide("gpt-5", effective_tier("unrestricted")).as_event_fields()
    text = repr(fields)
    assert "https://" not in text and "api_key" not in text


def test_headers_name_model_endpoint_reason_and_confidence(router: Router) -> None:
    decision = router.decide("eu-strict:floor", effective_tier("unrestricted"))
    headers = decision.headers()
    assert headers["X-LG-Model"] == "mistral-small"
    assert headers["X-LG-Endpoint"] == "mistral:default"
    assert headers["X-LG-Route-Confidence"] == "1.000"
    assert all(value.isascii() for value in headers.values())


def test_headers_after_failover_say_so(router: Router) -> None:
    decision = router.decide("gpt-5", effective_tier("unrestricted"), fallback_models=True)
    headers = decision.headers(decision.failover[1])
    assert headers["X-LG-Route-Reason"].startswith("failover from gpt-5@")
    assert headers["X-LG-Model"] == decision.failover[1].spec.name
