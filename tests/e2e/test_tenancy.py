"""Tenancy (issue 9, items 7, 9 and 10): a project's custom models, their prices and its own
endpoints belong to that project alone, and an endpoint an admin registers can never carry
the server's secrets. Real HTTP, the real openai SDK, simulated OpenAI-format upstreams, on
SQLite and on the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest

from domain.routing import ProjectRouting
from tests.e2e.helpers import gateway_on_shared_upstream
from tests.support.harness import (
    ADMIN_TOKEN,
    Gateway,
    Tenant,
    custom_model,
)

MESSAGES = [{"role": "user", "content": "Tell me about residency"}]
SECRET_KEY = "tenancy-test-secret-key-0123456789"
MANAGED_KEY = "sk-managed-server-key"


@pytest.fixture
def tenancy_gateway(backend: dict[str, str], upstreams: Any) -> Iterator[Gateway]:
    with gateway_on_shared_upstream(
        backend,
        upstreams,
        managed_key=MANAGED_KEY,
        secret_key=SECRET_KEY,
        LEDGERGATE_ACTOR_TOKEN_SECRET="actor-secret-for-tests",
    ) as gateway:
        yield gateway


def charged(raw: Any, input_price: str, output_price: str) -> Decimal:
    usage = raw.parse().usage
    provider_cost = (
        Decimal(usage.prompt_tokens) * Decimal(input_price)
        + Decimal(usage.completion_tokens) * Decimal(output_price)
    ) / Decimal(1_000_000)
    provider_cost = provider_cost.quantize(Decimal("0.000000001"))
    return provider_cost + (provider_cost * Decimal("0.05")).quantize(Decimal("0.000000001"))


# ---- item 7: one price book per project for custom models --------------------------------


def test_two_projects_custom_models_of_one_name_are_each_charged_their_own_price(
    tenancy_gateway: Gateway, upstreams: Any
) -> None:
    gateway = tenancy_gateway
    _, (private_server, _) = upstreams
    a, b = gateway.tenant(balance="100.00"), gateway.tenant(balance="100.00")
    # A first at 1/Mtok; B later with the same name at 5000/Mtok, once with the same
    # effective date (B was silently charged A's price) and once with a later one (A was
    # charged B's 5000x price).
    for tenant, price, since in (
        (a, "1", "2026-01-01T00:00:00Z"),
        (b, "5000", "2026-01-01T00:00:00Z"),
    ):
        gateway.add_own_model(tenant, custom_model("shared-llm", price, price, since))
        gateway.add_own_endpoint(tenant, private_server.base_url, ["shared-llm"])
    later = gateway.admin_post(
        "/v1/admin/prices",
        {"model": "shared-llm", "project_id": str(b.project_id), "input_per_mtok": "6000",
         "output_per_mtok": "6000", "currency": "USD", "effective_from": "2026-06-01T00:00:00Z"},
    )  # fmt: skip
    assert later.status_code == 200, later.text
    for tenant, price in ((a, "1"), (b, "6000"), (a, "1")):
        raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
            model="shared-llm", messages=MESSAGES, max_tokens=200
        )
        assert Decimal(raw.headers["x-lg-actual-cost"]) == charged(raw, price, price)


def test_a_project_never_reads_another_projects_private_model_or_price(
    tenancy_gateway: Gateway, upstreams: Any
) -> None:
    gateway = tenancy_gateway
    a, b = gateway.tenant(), gateway.tenant()
    for tenant, name, price in ((a, "shared-llm", "1"), (b, "shared-llm", "5000"),
                                (b, "b-private", "7")):  # fmt: skip
        gateway.add_own_model(tenant, custom_model(name, price, price, "2026-01-01T00:00:00Z"))
    gateway.settle()
    with gateway.client() as http:
        foreign = http.get("/v1/data/pricing", params={"model": "b-private"}, headers=a.headers())
        own = http.get("/v1/data/pricing", params={"model": "shared-llm"}, headers=a.headers())
        theirs = http.get("/v1/data/pricing", params={"model": "shared-llm"}, headers=b.headers())
        catalog = http.get("/v1/data/pricing", params={"model": "gpt-4o-mini"}, headers=a.headers())
    assert foreign.status_code == 404, foreign.text
    assert foreign.json()["error"]["code"] == "price_not_found" and "price" not in foreign.json()
    assert Decimal(own.json()["price"]["input_per_mtok"]) == Decimal(1)
    assert Decimal(theirs.json()["price"]["input_per_mtok"]) == Decimal(5000)
    assert Decimal(catalog.json()["price"]["input_per_mtok"]) == Decimal("0.15")


# ---- item 9: an endpoint's key reference names the project's own stored key, nothing else --


@pytest.mark.parametrize(
    "reference",
    [
        "LEDGERGATE_SECRET_KEY",
        "LEDGERGATE_ADMIN_TOKEN",
        "LEDGERGATE_OPENAI_API_KEY",
        "HOME",
        "byok:openai",
    ],  # fmt: skip
)
def test_an_endpoint_naming_a_server_secret_or_an_unstored_key_is_refused_with_a_400(
    tenancy_gateway: Gateway, upstreams: Any, reference: str
) -> None:
    gateway = tenancy_gateway
    _, (private_server, private) = upstreams
    tenant = gateway.tenant()
    response = gateway.admin_post(
        f"/v1/admin/projects/{tenant.project_id}/endpoints",
        {"provider": "openai", "name": "exfil", "base_url": private_server.base_url + "/v1",
         "api_key_ref": reference},
    )  # fmt: skip
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "api_key_ref" and error["type"] == "invalid_request_error"
    assert response.headers["x-should-retry"] == "false"
    gateway.openai(tenant).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert private.authorizations == []  # nothing was ever sent there


def test_an_endpoint_using_the_projects_own_stored_key_sends_only_that_key(
    tenancy_gateway: Gateway, upstreams: Any
) -> None:
    gateway = tenancy_gateway
    (_, shared), (private_server, private) = upstreams
    tenant = gateway.tenant()
    stored = gateway.store_provider_key(tenant, "sk-acme-own-key")
    assert stored.status_code == 200, stored.text
    gateway.add_own_endpoint(
        tenant, private_server.base_url, ["gpt-4o-mini"], api_key_ref="byok:openai"
    )
    client = gateway.openai(tenant)
    for _ in range(4):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    seen = set(private.authorizations) | set(shared.authorizations)
    assert seen == {"Bearer sk-acme-own-key"}
    assert private.authorizations  # the project's endpoint was used


def test_a_recorded_endpoint_naming_a_server_variable_is_never_used_with_its_value(
    tenancy_gateway: Gateway, upstreams: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: an EndpointAdded recorded before the rule (or written around the
    admin API) that names LEDGERGATE_ADMIN_TOKEN is left out at the point of use."""
    monkeypatch.setenv("LEDGERGATE_ADMIN_TOKEN", ADMIN_TOKEN)  # where the server keeps it
    gateway = tenancy_gateway
    (_, shared), (private_server, private) = upstreams
    tenant = gateway.tenant()
    routing = ProjectRouting(str(tenant.project_id))
    routing.trigger_event(  # the event as an older release recorded it, unvalidated
        ProjectRouting.EndpointAdded, provider="openai", name="legacy", base_url=private_server.base_url + "/v1", region="",
        api_key_ref="LEDGERGATE_ADMIN_TOKEN", models=("gpt-4o-mini",), added_by="admin",
    )  # fmt: skip
    gateway.services.app.save(routing)
    for _ in range(5):  # the shared endpoint goes down: only the legacy one could serve
        gateway.services.routing.board.get("openai:default").record_failure("test outage")
    with pytest.raises(openai.APIStatusError):
        gateway.openai(tenant).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert private.authorizations == []
    assert all(ADMIN_TOKEN not in (value or "") for value in shared.authorizations)


# ---- item 10: a custom model is served by its project's endpoints only ---------------------


def test_every_call_to_a_private_model_reaches_the_projects_endpoint_and_none_the_shared_one(
    tenancy_gateway: Gateway, upstreams: Any
) -> None:
    gateway = tenancy_gateway
    (_, shared), (private_server, private) = upstreams
    tenant = gateway.tenant()
    gateway.add_own_model(tenant, custom_model("onprem-llm", "1", "2", "2026-01-01T00:00:00Z"))
    gateway.add_own_endpoint(tenant, private_server.base_url, ["onprem-llm"])
    client = gateway.openai(tenant)
    endpoints = set()
    for _ in range(24):
        raw = client.chat.completions.with_raw_response.create(
            model="onprem-llm", messages=MESSAGES, max_tokens=20
        )
        endpoints.add(raw.headers["x-lg-endpoint"])
    assert len(private.requests) == 24 and shared.requests == []
    assert len(endpoints) == 1 and endpoints.pop().endswith("-onprem")

    # The project's endpoint goes down: the request fails cleanly, on failover and with
    # fallback asked for, and nothing reaches the shared endpoint.
    private.error_status = 503
    for preferences in ({}, {"routing_preferences": {"fallback_models": True}}):
        with pytest.raises(openai.APIStatusError) as failed:
            client.chat.completions.create(
                model="onprem-llm", messages=MESSAGES, max_tokens=20, extra_body=preferences
            )
        assert failed.value.status_code in (502, 503)
    for _ in range(6):  # its breaker opens: then no route at all, still not the shared one
        gateway.services.routing.board.get(
            next(p.key for p in gateway.services.routing.pool.endpoints() if p.project)
        ).record_failure("test outage")
    with pytest.raises(openai.InternalServerError) as unrouted:
        client.chat.completions.create(model="onprem-llm", messages=MESSAGES, max_tokens=20)
    assert unrouted.value.body["code"] == "no_route_available"
    assert shared.requests == []


# ---- smaller items: admin refusals over HTTP, and a configuration gap is not retried ------


def test_the_admin_api_refuses_an_unknown_model_price_and_a_strict_project_without_secret(
    sqlite_gateway: Gateway,
) -> None:
    gateway = sqlite_gateway  # no LEDGERGATE_ACTOR_TOKEN_SECRET here
    unknown = gateway.admin_post(
        "/v1/admin/prices",
        {"model": "gpt-4o-mni", "input_per_mtok": "1", "output_per_mtok": "2",
         "effective_from": "2026-01-01T00:00:00Z"},
    )  # fmt: skip
    assert unknown.status_code == 400, unknown.text
    assert unknown.json()["error"]["param"] == "model"
    assert "gpt-4o-mini" in unknown.json()["error"]["close_matches"]
    strict = gateway.admin_post("/v1/admin/projects", {"name": "acme", "strict": True})
    assert strict.status_code == 400 and strict.json()["error"]["param"] == "strict"
    assert "LEDGERGATE_ACTOR_TOKEN_SECRET" in strict.json()["error"]["message"]
    assert gateway.admin_post("/v1/admin/projects", {"name": "acme"}).status_code == 200


def test_a_missing_fx_rate_is_not_retried_by_the_openai_sdk_and_says_what_to_run(
    gateway: Gateway,
) -> None:
    tenant = gateway.tenant(currency="EUR")  # USD-priced model, no USD/EUR rate loaded
    client = gateway.openai(tenant, max_retries=2)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    error = caught.value
    assert error.response.headers["x-should-retry"] == "false"
    assert error.body["code"] == "fx_rate_not_found"
    assert error.body["type"] == "configuration_error"
    assert "ledgergate fx import" in error.body["message"]
    gateway.settle()
    with gateway.client() as http:
        audit = http.get("/v1/data/audit", headers=tenant.headers()).json()["data"]
    assert len(audit) == 1  # one attempt: the SDK honoured x-should-retry


# ---- item 13 (part): test mode --------------------------------------------------------------


def test_a_test_key_is_answered_by_the_simulator_and_charged_to_the_test_balance_only(
    gateway: Gateway, simulator: Any
) -> None:
    from uuid import UUID

    from domain import commands as c

    _, upstream = simulator  # stands in for the real provider here
    tenant = gateway.tenant(balance="10.00")
    created = gateway.execute(c.CreateApiKey(project_id=tenant.project_id, test=True))
    test_key = Tenant(tenant.project_id, created["api_key"], UUID(created["key_id"]), "USD")
    client = gateway.openai(test_key)
    with pytest.raises(openai.APIStatusError) as empty:  # no test balance yet
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert empty.value.status_code == 402 and "topup --test" in empty.value.body["message"]
    topped = gateway.admin_post("/v1/admin/topups", {"project_id": str(tenant.project_id),
                                "amount": "3.00", "currency": "USD", "reference": "t1", "test": True})  # fmt: skip
    assert topped.status_code == 200 and topped.json()["mode"] == "test", topped.text
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    answer = raw.parse().choices[0].message.content
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    ) as response:
        streamed = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    embedding = client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert answer.startswith("This is Ledgergate's simulated upstream") and streamed
    assert embedding.data and upstream.requests == []  # the provider never saw a test request
    charge = Decimal(raw.headers["x-lg-actual-cost"])
    assert charge > 0
    gateway.settle()
    with gateway.client() as http:
        test_balance = http.get("/v1/billing/balance", headers=test_key.headers()).json()
        live_balance = http.get("/v1/billing/balance", headers=tenant.headers()).json()
        audit = http.get("/v1/data/audit", headers=tenant.headers()).json()["data"]
        usage = http.get("/v1/billing/usage", headers=tenant.headers()).json()
    assert test_balance["mode"] == "test" and Decimal(test_balance["credits"]) == Decimal(3)
    assert Decimal(test_balance["posted"]) >= charge and Decimal(test_balance["pending"]) == 0
    assert live_balance["mode"] == "live" and Decimal(live_balance["available"]) == Decimal(10)
    assert {record["mode"] for record in audit} == {"test"} and len(audit) == 4
    assert usage["data"] == []  # test traffic is no usage
    # And a live key of the same project still reaches the provider and its live balance.
    gateway.openai(tenant).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(upstream.requests) == 1
