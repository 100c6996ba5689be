"""The gateway's pure trace pieces: how a request's headers become its join, how a trace's
allowed models narrow a route decision, and the OTLP/JSON shape of a span tree."""

from __future__ import annotations

from typing import Any

import pytest

from domain.tiers import effective_tier
from gateway.errors import GatewayError
from gateway.lifecycle.traces import trace_join
from gateway.otlp_export import trace_as_otlp
from tests.unit.routing.conftest import make_router

TRACE = "lg_tr_" + "ab" * 16
SPAN = "lg_req_0123456789abcdef01234567"


def test_a_governed_trace_id_joins_with_its_parent_and_a_free_label_joins_nothing() -> None:
    assert trace_join(TRACE, {}) is not None and trace_join(TRACE, {}).parent_span_id is None
    joined = trace_join(TRACE, {"x-parent-span-id": SPAN})
    assert joined is not None and joined.parent_span_id == SPAN
    assert trace_join("trace-1", {}) is None
    assert trace_join(None, {}) is None


@pytest.mark.parametrize(
    ("trace_id", "parent"),
    [("trace-1", SPAN), (TRACE, "not-a-request"), (TRACE, "lg_req_has space")],
)
def test_a_parent_span_without_a_governed_trace_or_of_the_wrong_shape_is_refused(
    trace_id: str, parent: str
) -> None:
    with pytest.raises(GatewayError) as refused:
        trace_join(trace_id, {"x-parent-span-id": parent})
    assert refused.value.param == "x-parent-span-id" and refused.value.status == 400


def decide(model: str, allowed: frozenset[str] | None = None) -> Any:
    tier = effective_tier("unrestricted", None, plan="pro")
    return make_router().decide(model, tier, allowed_models=allowed)


def test_auto_chooses_among_the_allowed_models_and_a_named_model_is_never_swapped() -> None:
    allowed = frozenset({"mistral-small", "gpt-4.1"})
    unrestricted = decide("auto")
    assert unrestricted.chosen.spec.name not in allowed  # what auto picks without a trace
    narrowed = decide("auto", allowed)
    assert narrowed.targets and {t.spec.name for t in narrowed.targets} <= allowed
    for shorthand in ("auto:fast", "auto:best", "eu-cloud"):
        assert {t.spec.name for t in decide(shorthand, allowed).targets} <= allowed
    named = decide("gpt-4o-mini", allowed)
    assert named.chosen.spec.name == "gpt-4o-mini"  # refused at admission, never swapped
    assert {t.spec.name for t in named.failover} <= allowed | {"gpt-4o-mini"}
    nothing = decide("auto", frozenset({"no-such-model"}))
    assert nothing.chosen.spec.name == unrestricted.chosen.spec.name


def span(span_id: str, parent: str | None, children: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "span_id": span_id,
        "parent_span_id": parent,
        "depth": 1 if parent is None else 2,
        "endpoint": "chat.completions",
        "status": "completed",
        "model": "gpt-4o-mini",
        "provider": "openai",
        "attempts": 1,
        "input_tokens": 10,
        "output_tokens": 5,
        "cached_tokens": 0,
        "cost": "0.000010000",
        "started_at": "2026-12-01T09:00:00.250000Z",
        "first_chunk_ms": None,
        "finished_at": "2026-12-01T09:00:01Z",
        "latency_ms": 750,
        "error_code": None,
        "subtree": {"spans": 1 + len(children), "cost": "0.000020000"},
        "children": children,
    }


def test_the_otlp_export_has_otlp_ids_times_and_the_tree_as_parent_links() -> None:
    child = span("lg_req_ffffffffffffffff00000000", SPAN, [])
    tree = {
        "id": TRACE,
        "name": "agent",
        "status": "closed",
        "budget": "1.000000000",
        "currency": "EUR",
        "max_depth": 3,
        "opened_at": "2026-12-01T09:00:00Z",
        "closed_at": "2026-12-01T09:00:02Z",
        "expired_at": None,
        "root": {
            "subtree": {
                "spans": 2,
                "cost": "0.000020000",
                "input_tokens": 20,
                "output_tokens": 10,
                "finished_at": "2026-12-01T09:00:01Z",
            },
            "children": [span(SPAN, None, [child])],
        },
    }
    [resource] = trace_as_otlp(tree, project_id="p")["resourceSpans"]
    [scope] = resource["scopeSpans"]
    root, first, second = scope["spans"]
    assert root["traceId"] == "ab" * 16 and "parentSpanId" not in root
    assert first["spanId"] == "0123456789abcdef" and first["parentSpanId"] == root["spanId"]
    assert second["spanId"] == "ffffffffffffffff" and second["parentSpanId"] == first["spanId"]
    assert first["startTimeUnixNano"] == "1796115600250000000"
    assert root["endTimeUnixNano"] == "1796115602000000000"  # the close
    tokens = {a["key"]: a["value"] for a in first["attributes"]}
    assert tokens["gen_ai.usage.input_tokens"] == {"intValue": "10"}
    assert tokens["ledgergate.cost"] == {"stringValue": "0.000010000"}
    assert first["status"] == {"code": 1} and first["kind"] == 3
