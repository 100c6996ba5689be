"""Temporary credentials end to end (issue 14), on SQLite and PostgreSQL, over real HTTP with
the real openai SDK as the client holding the credential: minting, using it wherever an API
key is accepted, each rule (grant 403, expiry 401, no minting 403, budget 402 with zero
overshoot under concurrency, revocation at once), and what the ledger records."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from domain.account import Account
from domain.clock import FixedClock
from domain.credentials import Credential, credential_id
from domain.ids import account_id
from domain.limits import LimitsHeld
from tests.support.harness import ADMIN_TOKEN, Gateway, Tenant, start_gateway
from tests.support.ledger import start_clocked_gateway

SECRET = "credential-secret-for-the-e2e-tests-0123456789"
MESSAGES = [{"role": "user", "content": "Say hello to the ledger"}]


def _env(backend: dict[str, str], upstream: str) -> dict[str, str]:
    return {
        **backend,
        "LEDGERGATE_OPENAI_BASE_URL": upstream + "/v1",
        "LEDGERGATE_OPENAI_API_KEY": "sk-test",
        "LEDGERGATE_CREDENTIAL_SECRET": SECRET,
    }


@pytest.fixture
def gateway(backend: dict[str, str], simulator: Any) -> Iterator[Gateway]:
    running = start_gateway(_env(backend, simulator[0].base_url))
    try:
        running.set_price("gpt-4o-mini", "0.15", "0.60")
        yield running
    finally:
        running.server.stop()


def mint(gateway: Gateway, tenant: Tenant, **body: Any) -> httpx.Response:
    with gateway.client() as http:
        return http.post("/v1/credentials", json=body, headers=tenant.headers())


def minted(gateway: Gateway, tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = mint(gateway, tenant, **body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def sdk(gateway: Gateway, token: str, user: str | None = "alice") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.base_url + "/v1",
        api_key=token,
        default_headers={"X-User-Id": user} if user else {},
        max_retries=0,
        timeout=30,
    )


def audit_of(gateway: Gateway, tenant: Tenant) -> list[dict[str, Any]]:
    gateway.settle()
    with gateway.client() as http:
        response = http.get("/v1/data/audit", headers=tenant.headers())
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def test_a_credential_is_a_bearer_for_chat_embeddings_models_and_data_reads_through_the_sdk(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tenant = gateway.tenant(balance="5.00")
    credential = minted(gateway, tenant, models=["gpt-4o-mini", "text-embedding-3-small"])
    token = credential["token"]
    assert token.count(".") == 2 and credential["expires_at"] and credential["kid"]
    assert credential["models"] == ["gpt-4o-mini", "text-embedding-3-small"]
    client = sdk(gateway, token)
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert answer.choices[0].message.content
    assert client.embeddings.create(model="text-embedding-3-small", input="hi").data
    listed = {model.id for model in client.models.list()}
    assert "gpt-4o-mini" in listed
    # Data reads answer as the issuing key's project.
    gateway.settle()
    with gateway.client() as http:
        own = http.get("/v1/data/audit", headers={"Authorization": f"Bearer {token}"})
        balance = http.get("/v1/billing/balance", headers={"Authorization": f"Bearer {token}"})
    assert own.status_code == 200 and balance.status_code == 200
    assert balance.json()["project_id"] == str(tenant.project_id)
    records = audit_of(gateway, tenant)
    used = [r for r in records if r.get("credential_id") == credential["id"]]
    assert len(used) == 2 and {r["key_id"] for r in used} == {str(tenant.key_id)}
    # The token is nowhere in the ledger: not in any event of the store.
    notifications = gateway.services.app.recorder.select_notifications(start=1, limit=100_000)
    assert all(token.encode() not in n.state for n in notifications)
    assert all(token.split(".")[2].encode() not in n.state for n in notifications)
    assert caplog.records and token.split(".")[2] not in caplog.text  # nor in any log line


def test_a_model_outside_the_grant_is_a_403_and_auto_stays_inside_the_grant(
    gateway: Gateway,
) -> None:
    tenant = gateway.tenant(balance="5.00")
    credential = minted(gateway, tenant, models=["gpt-4o-mini"])
    client = sdk(gateway, credential["token"])
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    assert refused.value.body["code"] == "credential_model_not_granted"
    assert refused.value.body["granted"] == ["gpt-4o-mini"]
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES)
    assert raw.headers["x-lg-model"] == "gpt-4o-mini"
    refused_record = [r for r in audit_of(gateway, tenant) if r["status"] == "rejected"]
    assert refused_record and refused_record[0]["credential_id"] == credential["id"]
    assert refused_record[0]["error_code"] == "credential_model_not_granted"


def test_a_credential_cannot_mint_another_nor_revoke_another(gateway: Gateway) -> None:
    tenant = gateway.tenant(balance="5.00")
    first = minted(gateway, tenant)
    second = minted(gateway, tenant)
    with gateway.client() as http:
        nested = http.post(
            "/v1/credentials", json={}, headers={"Authorization": f"Bearer {first['token']}"}
        )
        sideways = http.post(
            f"/v1/credentials/{second['id']}/revoke",
            headers={"Authorization": f"Bearer {first['token']}"},
        )
    assert nested.status_code == 403 and nested.json()["error"]["code"] == "credential_cannot_issue"
    assert sideways.status_code == 403
    assert first["token"] not in nested.text


@pytest.mark.parametrize(
    "body, param",
    [
        ({"ttl_seconds": 86_401}, "ttl_seconds"),
        ({"ttl_seconds": 0}, "ttl_seconds"),
        ({"ttl_seconds": "600"}, "ttl_seconds"),
        ({"models": "gpt-4o-mini"}, "models"),
        ({"models": ["no-such-model"]}, "models"),
        ({"budget": 0.5}, "budget"),
        ({"budget": "-1"}, "budget"),
        ({"user": 7}, "user"),
        ({"scopes": ["admin"]}, "scopes"),
    ],
)
def test_a_bad_issuance_is_a_clear_4xx_naming_the_field(
    gateway: Gateway, body: dict[str, Any], param: str
) -> None:
    tenant = gateway.tenant(balance="5.00")
    response = mint(gateway, tenant, **body)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["param"] == param


def test_the_default_ttl_is_ten_minutes_and_the_maximum_a_day(gateway: Gateway) -> None:
    tenant = gateway.tenant(balance="5.00")
    default = minted(gateway, tenant)
    longest = minted(gateway, tenant, ttl_seconds=86_400)
    issued = datetime.fromisoformat(default["issued_at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(default["expires_at"].replace("Z", "+00:00"))
    assert expires - issued == timedelta(seconds=600)
    issued = datetime.fromisoformat(longest["issued_at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(longest["expires_at"].replace("Z", "+00:00"))
    assert expires - issued == timedelta(days=1)


def test_revocation_takes_effect_at_once_and_is_recorded(gateway: Gateway) -> None:
    tenant = gateway.tenant(balance="5.00")
    credential = minted(gateway, tenant)
    client = sdk(gateway, credential["token"])
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with gateway.client() as http:
        revoked = http.post(
            f"/v1/credentials/{credential['id']}/revoke",
            json={"reason": "user logged out"},
            headers=tenant.headers(),
        )
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    with pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert refused.value.body["code"] == "credential_revoked"
    with gateway.client() as http:
        read = http.get(
            "/v1/data/audit", headers={"Authorization": f"Bearer {credential['token']}"}
        )
    assert read.status_code == 401
    events = list(gateway.services.app.events.get(credential_id(credential["id"])))
    assert [type(e).__name__ for e in events] == ["Issued", "Revoked"]
    assert events[1].reason == "user logged out"


def test_another_projects_key_cannot_revoke_a_credential_it_did_not_issue(
    gateway: Gateway,
) -> None:
    owner, stranger = gateway.tenant(balance="5.00"), gateway.tenant(balance="5.00")
    credential = minted(gateway, owner)
    with gateway.client() as http:
        response = http.post(
            f"/v1/credentials/{credential['id']}/revoke", headers=stranger.headers()
        )
        admin = http.post(
            f"/v1/credentials/{credential['id']}/revoke",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "credential_not_found"
    assert admin.status_code == 200 and admin.json()["revoked"] is True


def test_a_credential_fixes_its_user_and_refuses_another(gateway: Gateway) -> None:
    tenant = gateway.tenant(balance="5.00")
    credential = minted(gateway, tenant, user="kiosk-7")
    sdk(gateway, credential["token"], user=None).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    with pytest.raises(openai.PermissionDeniedError) as refused:
        sdk(gateway, credential["token"], user="mallory").chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
    assert refused.value.body["code"] == "credential_actor_mismatch"
    completed = [r for r in audit_of(gateway, tenant) if r["status"] == "completed"]
    assert [r["actor_id"] for r in completed] == ["kiosk-7"]


def test_spend_beyond_the_budget_is_a_402(gateway: Gateway) -> None:
    tenant = gateway.tenant(balance="5.00")
    with gateway.client() as http:
        probe = http.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 64},
            headers=tenant.headers(),
        )
    estimate = Decimal(probe.headers["x-lg-estimated-cost"])
    credential = minted(gateway, tenant, budget=format(estimate * Decimal("1.5"), "f"))
    client = sdk(gateway, credential["token"])
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=64)
    spent = Decimal(0)
    try:
        for _ in range(5):
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=MESSAGES, max_tokens=64
            )
            spent += Decimal(raw.headers["x-lg-actual-cost"])
        raise AssertionError("the budget never refused")
    except openai.APIStatusError as refused:
        assert refused.status_code == 402
        assert refused.body["code"] == "credential_budget_exceeded"


def _replay_credential_spend(gateway: Gateway, tenant: Tenant, jti: str) -> Decimal:
    """The credential's spend counted from the Account's events (not from any read model):
    what was charged to requests that held the credential's limit."""
    holders: set[str] = set()
    spent = Decimal(0)
    for event in gateway.services.app.events.get(account_id(tenant.project_id)):
        if isinstance(event, LimitsHeld) and f"credential:{jti}" in event.names:
            holders.add(event.request_id)
        elif isinstance(event, Account.ChargePosted) and event.request_id in holders:
            spent += event.amount
    return spent


def test_concurrent_use_of_a_budgeted_credential_overshoots_it_by_zero(
    gateway: Gateway, simulator: Any
) -> None:
    _, state = simulator
    tenant = gateway.tenant(balance="5.00")
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 64}
    with gateway.client() as http:
        probe = http.post("/v1/chat/completions", json=body, headers=tenant.headers())
    estimate = Decimal(probe.headers["x-lg-estimated-cost"])
    budget = estimate * Decimal("6.5")
    credential = minted(gateway, tenant, budget=format(budget, "f"))
    state.response_delay_s = 0.3  # every request is in flight at once
    headers = {"Authorization": f"Bearer {credential['token']}", "X-User-Id": "alice"}

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post("/v1/chat/completions", json=body, headers=headers)
                    for _ in range(24)
                )
            )

    responses = asyncio.run(fire())
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 402}, statuses
    assert 1 <= statuses.count(200) <= 6 and statuses.count(402) >= 18
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 402} == {
        "credential_budget_exceeded"
    }
    gateway.settle()
    spent = _replay_credential_spend(gateway, tenant, credential["id"])
    assert Decimal(0) < spent <= budget  # zero overshoot, counted by replay
    served = sum(Decimal(r.headers["x-lg-actual-cost"]) for r in responses if r.status_code == 200)
    assert served == spent


def test_an_expired_credential_is_a_401_credential_expired(
    backend: dict[str, str], simulator: Any
) -> None:
    clock = FixedClock(datetime.now(UTC))
    gateway = start_clocked_gateway(_env(backend, simulator[0].base_url), clock)
    try:
        gateway.set_price("gpt-4o-mini", "0.15", "0.60")
        tenant = gateway.tenant(balance="5.00")
        credential = minted(gateway, tenant, ttl_seconds=60)
        client = sdk(gateway, credential["token"])
        clock.advance(seconds=59)
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        clock.advance(seconds=1)
        with pytest.raises(openai.AuthenticationError) as refused:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert refused.value.status_code == 401
        assert refused.value.body["code"] == "credential_expired"
        assert credential["token"] not in json.dumps(refused.value.body)
    finally:
        gateway.server.stop()


def test_a_test_keys_credential_is_a_test_credential_on_the_test_balance(
    gateway: Gateway, simulator: Any
) -> None:
    from uuid import UUID

    from domain import commands as c

    _, upstream = simulator
    tenant = gateway.tenant(balance="5.00")
    created = gateway.execute(c.CreateApiKey(project_id=tenant.project_id, test=True))
    test_key = Tenant(tenant.project_id, created["api_key"], UUID(created["key_id"]), "USD")
    gateway.execute(
        c.TopUp(
            project_id=tenant.project_id,
            amount=Decimal("1.00"),
            currency="USD",
            reference="test-topup",
            test=True,
        )
    )
    credential = minted(gateway, test_key)
    assert credential["mode"] == "test"
    answer = sdk(gateway, credential["token"]).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    assert answer.choices[0].message.content.startswith("This is Ledgergate's simulated upstream")
    assert upstream.requests == []  # the provider never saw it
    records = [r for r in audit_of(gateway, tenant) if r.get("credential_id") == credential["id"]]
    assert [r["mode"] for r in records] == ["test"]
    live = gateway.services.app.repository.get(account_id(tenant.project_id))
    assert live.posted == 0 and live.pending_total == 0
    stored = gateway.services.app.repository.get(credential_id(credential["id"]))
    assert isinstance(stored, Credential) and stored.mode == "test"


def test_a_credential_reads_through_the_mcp_server_as_its_keys_project_until_revoked(
    gateway: Gateway,
) -> None:
    tenant = gateway.tenant(balance="5.00")
    credential = minted(gateway, tenant)
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "get_balance", "arguments": {}},
    }
    headers = {
        "Authorization": f"Bearer {credential['token']}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }
    gateway.settle()
    with gateway.client() as http:
        answered = http.post("/v1/mcp", content=json.dumps(body), headers=headers)
        assert answered.status_code == 200, answered.text
        balance = json.loads(answered.json()["result"]["content"][0]["text"])
        assert balance["project_id"] == str(tenant.project_id)
        http.post(f"/v1/credentials/{credential['id']}/revoke", headers=tenant.headers())
        refused = http.post("/v1/mcp", content=json.dumps(body), headers=headers)
    assert refused.status_code == 401
