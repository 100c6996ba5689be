"""Routing end to end: the real openai SDK over real HTTP, through the gateway's router, to
the simulated OpenAI upstream — on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest

from domain.ids import request_aggregate_id
from domain.request import Request
from domain.routing import EndpointBreaker
from gateway.providers.base import ProviderEndpoint
from tests.e2e.helpers import audit_rows
from tests.support.harness import Gateway, Tenant, custom_model

MESSAGES = [{"role": "user", "content": "Route me somewhere compliant"}]


def _add_dead_openai_endpoint(gateway: Gateway) -> None:
    """A second OpenAI endpoint nobody listens on: connection refused → retryable 502."""
    gateway.services.routing.add_endpoint(
        ProviderEndpoint("openai", "http://127.0.0.1:9/v1", api_key="sk-dead", name="dead")
    )


def _ask_for_compliance(gateway: Gateway, tenant: Tenant, compliance: str, model: str) -> None:
    """A chat request whose routing preferences ask for the compliance tier `compliance`."""
    gateway.openai(tenant).chat.completions.create(
        model=model,
        messages=MESSAGES,
        extra_body={"routing_preferences": {"compliance": compliance}},
    )


def test_a_routed_completion_names_model_endpoint_reason_and_confidence_and_records_why(
    gateway: Gateway,
) -> None:
    tenant = gateway.tenant()
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    assert raw.headers["x-lg-model"] == "gpt-4o-mini"
    assert raw.headers["x-lg-endpoint"] == "openai:default"
    assert "explicit" in raw.headers["x-lg-route-reason"]
    assert float(raw.headers["x-lg-route-confidence"]) == 1.0
    request = gateway.services.app.repository.get(request_aggregate_id(raw.headers["x-request-id"]))
    # The stored log, not the aggregate's unsaved events, is what an auditor reads.
    stored = [
        e
        for e in gateway.services.app.repository.event_store.get(request.id)
        if isinstance(e, Request.RouteDecided)
    ]
    (event,) = stored
    assert (event.model, event.endpoint, event.tier) == (
        "gpt-4o-mini",
        "openai:default",
        "unrestricted",
    )
    assert event.reason == raw.headers["x-lg-route-reason"]


def test_a_model_outside_the_project_tier_is_refused_with_compliant_alternatives(
    gateway: Gateway,
) -> None:
    tenant = gateway.tenant(tier="eu_strict")
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.openai(tenant).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    error = caught.value.body
    assert caught.value.status_code == 400 and error["code"] == "model_not_compliant"
    assert error["alternatives"] and all(
        gateway.services.routing.catalog.require(name).provider == "mistral"
        for name in error["alternatives"]
    )
    gateway.settle()
    with gateway.client() as http:
        balance = http.get("/v1/billing/balance", headers=tenant.headers()).json()
    assert Decimal(balance["pending"]) == 0  # nothing reserved for a refused request


def test_a_request_can_tighten_its_projects_tier_but_not_loosen_it(gateway: Gateway) -> None:
    loose = gateway.tenant()
    with pytest.raises(openai.BadRequestError) as caught:
        _ask_for_compliance(gateway, loose, "eu_cloud", model="gpt-4o-mini")
    assert caught.value.body["code"] == "model_not_compliant"
    strict = gateway.tenant(tier="eu_cloud")
    with pytest.raises(openai.BadRequestError):
        _ask_for_compliance(gateway, strict, "unrestricted", model="gpt-4o-mini")


def test_the_free_plan_cannot_ask_for_an_eu_tier(gateway: Gateway) -> None:
    tenant = gateway.tenant(plan="free")
    with pytest.raises(openai.PermissionDeniedError) as caught:
        _ask_for_compliance(gateway, tenant, "eu_strict", model="auto")
    assert caught.value.body["code"] == "compliance_tier_not_in_plan"


def test_an_unknown_model_is_a_404_and_an_eu_tier_without_eu_endpoints_is_a_503_not_a_detour(
    gateway: Gateway,
) -> None:
    tenant = gateway.tenant()
    with pytest.raises(openai.NotFoundError) as caught:
        gateway.openai(tenant).chat.completions.create(model="gpt-17", messages=MESSAGES)
    assert caught.value.body["code"] == "model_not_found"
    with pytest.raises(openai.InternalServerError) as unavailable:
        gateway.openai(tenant).chat.completions.create(model="eu-strict", messages=MESSAGES)
    assert unavailable.value.status_code == 503
    assert unavailable.value.body["code"] == "no_route_available"


def test_the_model_list_shows_only_what_the_callers_tier_allows(gateway: Gateway) -> None:
    loose, strict = gateway.tenant(), gateway.tenant(tier="eu_strict")
    loose_ids = {m.id for m in gateway.openai(loose).models.list()}
    strict_ids = {m.id for m in gateway.openai(strict).models.list()}
    assert "gpt-4o-mini" in loose_ids and "mistral-large" in loose_ids
    assert "gpt-4o-mini" not in strict_ids
    assert strict_ids and all(
        gateway.services.routing.catalog.require(i).provider == "mistral" for i in strict_ids
    )


def test_failover_moves_to_a_healthy_endpoint_records_the_redispatch_and_opens_the_breaker(
    sqlite_gateway: Gateway,
) -> None:
    gateway = sqlite_gateway
    _add_dead_openai_endpoint(gateway)
    tenant = gateway.tenant()
    client = gateway.openai(tenant)
    served, reasons = [], []
    for _ in range(12):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
        served.append(raw.headers["x-lg-endpoint"])
        reasons.append(raw.headers["x-lg-route-reason"])
    assert set(served) == {"openai:default"}  # every request answered, none by the dead one
    assert any(reason.startswith("failover from gpt-4o-mini@openai:dead") for reason in reasons)
    breaker = gateway.services.routing.board.get("openai:dead")
    assert breaker.state == "open"
    gateway.settle()
    history = gateway.services.app.repository.get(EndpointBreaker.create_id("openai:dead"))
    assert history.state == "open" and history.times_opened == 1
    with gateway.services.store.transaction(write=False) as tx:
        outcomes = tx.execute(
            "SELECT endpoint, success FROM lg_router_outcomes ORDER BY position"
        ).fetchall()
    assert {"endpoint": "openai:dead", "success": 0} in outcomes
    # Dropping the view and replaying the log gives the same rows as the incremental build.
    gateway.services.runner.rebuild(["router_stats"])
    with gateway.services.store.transaction(write=False) as tx:
        rebuilt = tx.execute(
            "SELECT endpoint, success FROM lg_router_outcomes ORDER BY position"
        ).fetchall()
    assert rebuilt == outcomes
    assert sum(1 for o in outcomes if o["endpoint"] == "openai:default" and o["success"]) == 12
    with gateway.client() as http:
        board = http.get("/v1/models/leaderboard", headers=tenant.headers()).json()
    (row,) = [r for r in board["data"] if r["model"] == "gpt-4o-mini"]
    assert row["successes"] == 12 and row["failures"] >= 1
    assert row["endpoints"]["openai:default"] == 12


def test_a_custom_model_added_by_admin_is_routable_and_priced_by_its_own_price(
    sqlite_gateway: Gateway, simulator
) -> None:
    gateway = sqlite_gateway
    tenant = gateway.tenant()
    entry = custom_model("acme-support-bot")
    gateway.add_own_model(tenant, entry)
    refused = gateway.admin_post(
        f"/v1/admin/projects/{tenant.project_id}/models",
        {**entry, "name": "acme-eu", "tiers": ["eu_strict", "eu_cloud", "unrestricted"], "regions": ["eu"]},
    )  # fmt: skip
    assert refused.status_code == 400  # an OpenAI-hosted model cannot claim eu_strict
    # A custom model is served only by its project's own endpoints (residency).
    gateway.add_own_endpoint(tenant, simulator[0].base_url, ["acme-support-bot"], name="own")
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="acme-support-bot", messages=MESSAGES
    )
    completion = raw.parse()
    provider_cost = (
        Decimal(completion.usage.prompt_tokens) * Decimal("1.00")
        + Decimal(completion.usage.completion_tokens) * Decimal("2.00")
    ) / Decimal(1_000_000)
    fee = (provider_cost * Decimal("0.05")).quantize(Decimal("0.000000001"))
    assert (
        Decimal(raw.headers["x-lg-actual-cost"])
        == provider_cost.quantize(Decimal("0.000000001")) + fee
    )
    other = gateway.tenant()
    with pytest.raises(openai.NotFoundError):  # custom models belong to their project
        gateway.openai(other).chat.completions.create(model="acme-support-bot", messages=MESSAGES)


def test_a_stream_fails_over_before_its_first_chunk_and_is_served_whole(
    sqlite_gateway: Gateway,
) -> None:
    gateway = sqlite_gateway
    _add_dead_openai_endpoint(gateway)
    tenant = gateway.tenant()
    client = gateway.openai(tenant)
    for _ in range(4):  # round-robin puts the dead endpoint first for half of them
        with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        ) as response:
            assert response.headers["x-lg-endpoint"] == "openai:default"
            text = "".join(
                chunk.choices[0].delta.content or "" for chunk in response.parse() if chunk.choices
            )
        assert text.startswith("This is Ledgergate's simulated upstream")
    records = audit_rows(gateway, tenant)
    assert {r["status"] for r in records} == {"completed"}
    assert max(r["attempts"] for r in records) == 2  # the failover is on the record


def test_a_projects_own_endpoint_serves_that_project_only(
    sqlite_gateway: Gateway, simulator
) -> None:
    gateway = sqlite_gateway
    owner, stranger = gateway.tenant(), gateway.tenant()
    gateway.add_own_endpoint(owner, simulator[0].base_url, ["gpt-4o-mini"], name="own")
    leaked = gateway.admin_post(
        f"/v1/admin/projects/{owner.project_id}/endpoints",
        {"provider": "openai", "name": "bad", "base_url": "https://x.test",
         "api_key_ref": "sk-live-123"},
    )  # fmt: skip
    assert leaked.status_code == 400  # a key where a variable name belongs is refused
    for _ in range(5):  # the shared endpoint goes down
        gateway.services.routing.board.get("openai:default").record_failure("test outage")
    raw = gateway.openai(owner).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    assert raw.headers["x-lg-endpoint"].startswith("openai:p") and raw.headers[
        "x-lg-endpoint"
    ].endswith("-own")
    with pytest.raises(openai.InternalServerError) as caught:
        gateway.openai(stranger).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.body["code"] == "no_route_available"
