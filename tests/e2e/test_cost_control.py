"""Cost control end to end (issue 14) with the real openai SDK: the stream's final usage chunk
carries the actual cost in `x_lg`, non-streamed answers carry X-LG-Efficiency and
X-LG-Latency-Ms, and a key below its downgrade threshold has `auto` served by the cheapest
compliant model (a named model never swapped)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from domain import commands as c
from domain.tiers import effective_tier
from gateway.cost_signals import efficiency
from tests.support.harness import ADMIN_TOKEN, Gateway, Tenant

MESSAGES = [{"role": "user", "content": "Count the ledger's entries"}]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def record(gateway: Gateway, tenant: Tenant, request_id: str) -> dict[str, Any]:
    gateway.settle()
    with gateway.client() as http:
        response = http.get(f"/v1/data/audit/{request_id}", headers=tenant.headers())
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_a_streams_final_usage_chunk_carries_the_actual_cost_currency_and_request_id(
    gateway: Gateway,
) -> None:
    tenant = gateway.tenant(balance="5.00")
    client = gateway.openai(tenant)
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())
    final = chunks[-1]
    assert final.usage is not None and final.choices == []
    x_lg = (final.model_extra or {})["x_lg"]
    assert x_lg["request_id"] == request_id and x_lg["currency"] == "USD"
    assert isinstance(x_lg["cost"], str) and Decimal(x_lg["cost"]) > 0
    audited = record(gateway, tenant, request_id)
    assert Decimal(audited["cost"]) == Decimal(x_lg["cost"])
    # No other chunk carries it: only the usage chunk, once the charge is durable.
    assert all("x_lg" not in (chunk.model_extra or {}) for chunk in chunks[:-1])


def test_a_stream_without_include_usage_still_has_its_actual_cost_in_the_audit_record(
    gateway: Gateway,
) -> None:
    tenant = gateway.tenant(balance="5.00")
    with gateway.openai(tenant).chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    ) as response:
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())
    assert all("x_lg" not in (chunk.model_extra or {}) for chunk in chunks)
    assert Decimal(record(gateway, tenant, request_id)["cost"]) > 0


@pytest.mark.parametrize("kind", ["chat", "embeddings"])
def test_a_non_streamed_answer_states_its_efficiency_and_latency(
    gateway: Gateway, kind: str
) -> None:
    tenant = gateway.tenant(balance="5.00")
    client = gateway.openai(tenant)
    if kind == "chat":
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=200
        )
    else:
        raw = client.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input="ledger"
        )
    estimated = Decimal(raw.headers["x-lg-estimated-cost"])
    actual = Decimal(raw.headers["x-lg-actual-cost"])
    assert raw.headers["x-lg-efficiency"] == efficiency(estimated, actual)
    assert len(raw.headers["x-lg-efficiency"].split(".")[1]) == 3
    latency = int(raw.headers["x-lg-latency-ms"])
    assert latency >= int(raw.headers["x-lg-overhead-ms"]) >= 0


# --- budget downgrade ------------------------------------------------------------------------


def _key_with_threshold(gateway: Gateway, tenant: Tenant, budget: str, threshold: str) -> Tenant:
    from uuid import UUID

    created = gateway.execute(
        c.CreateApiKey(project_id=tenant.project_id, daily_budget=Decimal(budget))
    )
    with gateway.client() as http:
        response = http.post(
            f"/v1/admin/keys/{created['key_id']}/downgrade-threshold",
            json={"threshold": threshold},
            headers=ADMIN,
        )
    assert response.status_code == 200, response.text
    assert Decimal(response.json()["downgrade_threshold"]) == Decimal(threshold)
    return Tenant(tenant.project_id, created["api_key"], UUID(created["key_id"]), "USD")


def test_below_its_threshold_a_key_has_auto_served_by_the_cheapest_compliant_model(
    gateway: Gateway,
) -> None:
    tenant = gateway.tenant(balance="5.00")
    key = _key_with_threshold(gateway, tenant, budget="1.00", threshold="0.999999")
    client = gateway.openai(key)
    before = client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES)
    assert before.headers["x-lg-route-reason"] != "budget-downgrade"  # nothing spent yet
    after = client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES)
    assert after.headers["x-lg-route-reason"] == "budget-downgrade"
    router = gateway.services.routing.router
    cheapest = router.decide("auto:floor", effective_tier("unrestricted")).chosen.spec.name
    assert after.headers["x-lg-model"] == cheapest
    audited = record(gateway, key, after.headers["x-request-id"])
    assert audited["model"] == cheapest
    assert audited["route"]["reason"] == "budget-downgrade"


def test_below_its_threshold_a_named_model_is_never_swapped(gateway: Gateway) -> None:
    tenant = gateway.tenant(balance="5.00")
    key = _key_with_threshold(gateway, tenant, budget="1.00", threshold="0.999999")
    client = gateway.openai(key)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # now below it
    named = client.chat.completions.with_raw_response.create(model="gpt-4.1", messages=MESSAGES)
    assert named.headers["x-lg-model"] == "gpt-4.1"
    assert named.headers["x-lg-route-reason"] != "budget-downgrade"
    assert "explicit" in named.headers["x-lg-route-reason"]


def test_a_threshold_needs_a_daily_budget_and_can_be_cleared(gateway: Gateway) -> None:
    tenant = gateway.tenant(balance="5.00")
    with gateway.client() as http:
        refused = http.post(
            f"/v1/admin/keys/{tenant.key_id}/downgrade-threshold",
            json={"threshold": "1.00"},
            headers=ADMIN,
        )
        not_admin = http.post(
            f"/v1/admin/keys/{tenant.key_id}/downgrade-threshold",
            json={"threshold": "1.00"},
            headers=tenant.headers(),
        )
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "threshold"
    assert not_admin.status_code == 401
    key = _key_with_threshold(gateway, tenant, budget="1.00", threshold="0.50")
    with gateway.client() as http:
        cleared = http.post(
            f"/v1/admin/keys/{key.key_id}/downgrade-threshold",
            json={"threshold": None},
            headers=ADMIN,
        )
    assert cleared.status_code == 200 and cleared.json()["downgrade_threshold"] is None
