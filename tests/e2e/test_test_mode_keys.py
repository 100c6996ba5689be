"""Test-mode keys (`lg_test_`, issue 9 item 13, checked again for issue 14) beyond the basic
path tests/e2e/test_tenancy.py covers: a test key never reaches a provider even where a live
key would use the project's own provider key or the project's own endpoint, never feeds the
live router statistics, is charged to the test balance only (the live balance and the
finance ledger never see it), and its audit record says `mode: test`. Real HTTP, the real
openai SDK, simulated OpenAI-format upstreams, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from uuid import UUID

import httpx
import pytest

from domain import commands as c
from domain.account import Account
from domain.ids import account_id
from tests.e2e.helpers import gateway_on_shared_upstream
from tests.support.harness import Gateway, Tenant

MESSAGES = [{"role": "user", "content": "Is this real?"}]
SECRET_KEY = "test-mode-secret-key-0123456789"
BYOK_KEY = "sk-project-own-provider-key-123"


@pytest.fixture
def test_gateway(backend: dict[str, str], upstreams: Any) -> Iterator[Gateway]:
    with gateway_on_shared_upstream(
        backend, upstreams, managed_key="sk-managed", secret_key=SECRET_KEY
    ) as gateway:
        yield gateway


def _test_key(gateway: Gateway, tenant: Tenant, balance: str = "2.00") -> Tenant:
    created = gateway.execute(c.CreateApiKey(project_id=tenant.project_id, test=True))
    gateway.execute(
        c.TopUp(
            project_id=tenant.project_id,
            amount=Decimal(balance),
            currency=tenant.currency,
            reference=f"test-{created['key_id']}",
            test=True,
        )
    )
    assert created["api_key"].startswith("lg_test_")
    return Tenant(tenant.project_id, created["api_key"], UUID(created["key_id"]), tenant.currency)


def test_a_test_key_never_uses_the_projects_own_provider_key_or_any_provider(
    test_gateway: Gateway, upstreams: Any
) -> None:
    (_, shared), _ = upstreams
    tenant = test_gateway.tenant(balance="5.00")
    stored = test_gateway.store_provider_key(tenant, BYOK_KEY)
    assert stored.status_code == 200, stored.text
    test_key = _test_key(test_gateway, tenant)
    raw = test_gateway.openai(test_key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    assert raw.headers["x-lg-key-source"] == "managed"  # no key at all: the simulator
    assert raw.parse().choices[0].message.content.startswith("This is Ledgergate's simulated")
    assert shared.requests == [] and shared.authorizations == []
    # The live key of the same project does use its own provider key.
    test_gateway.openai(tenant).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert shared.authorizations == [f"Bearer {BYOK_KEY}"]


def test_a_test_key_never_reaches_the_projects_own_endpoint(
    test_gateway: Gateway, upstreams: Any
) -> None:
    (_, shared), (private_server, private) = upstreams
    tenant = test_gateway.tenant(balance="5.00")
    test_gateway.add_own_endpoint(tenant, private_server.base_url, ["gpt-4o-mini"])
    test_key = _test_key(test_gateway, tenant)
    for stream in (False, True):
        response = test_gateway.openai(test_key).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=stream
        )
        if stream:
            assert "".join(
                chunk.choices[0].delta.content or "" for chunk in response if chunk.choices
            )
    assert private.requests == [] and shared.requests == []


def test_test_traffic_moves_only_the_test_balance_and_never_the_live_router_statistics(
    test_gateway: Gateway, upstreams: Any
) -> None:
    tenant = test_gateway.tenant(balance="5.00")
    test_key = _test_key(test_gateway, tenant, balance="1.00")
    router = test_gateway.services.routing.router
    before = {row["model"]: row for row in router.leaderboard()}
    client = test_gateway.openai(test_key)
    charged = Decimal(0)
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
        charged += Decimal(raw.headers["x-lg-actual-cost"])
    after = {row["model"]: row for row in router.leaderboard()}
    assert after == before  # simulated attempts teach the live router nothing
    app = test_gateway.services.app
    test_account = app.repository.get(account_id(tenant.project_id, "test"))
    live_account = app.repository.get(account_id(tenant.project_id))
    assert isinstance(test_account, Account) and test_account.posted == charged > 0
    assert live_account.posted == 0 and live_account.pending_total == 0
    live_events = [type(e).__name__ for e in app.events.get(account_id(tenant.project_id))]
    assert "ChargePosted" not in live_events and "Reserved" not in live_events
    test_gateway.settle()
    with test_gateway.client() as http:
        audit = http.get("/v1/data/audit", headers=tenant.headers()).json()["data"]
        usage = http.get("/v1/billing/usage", headers=tenant.headers()).json()
    assert [record["mode"] for record in audit] == ["test"] * 3
    assert usage["data"] == []


def test_a_test_key_with_no_test_balance_is_refused_and_never_touches_the_live_one(
    test_gateway: Gateway,
) -> None:
    tenant = test_gateway.tenant(balance="5.00")
    created = test_gateway.execute(c.CreateApiKey(project_id=tenant.project_id, test=True))
    with httpx.Client(base_url=test_gateway.base_url) as http:
        response = http.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": MESSAGES},
            headers={"Authorization": f"Bearer {created['api_key']}", "X-User-Id": "t"},
        )
    assert response.status_code == 402
    assert response.json()["error"]["mode"] == "test"
    live = test_gateway.services.app.repository.get(account_id(tenant.project_id))
    assert live.pending_total == 0 and live.available == Decimal("5.00")
