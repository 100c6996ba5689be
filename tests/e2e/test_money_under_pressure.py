"""Money is never lost or double-counted: concurrent requests against a balance that covers
only some of them, upstream failures before and after the first chunk, and clients that
hang up mid-stream."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import openai
import pytest

from domain import commands as c
from tests.e2e.helpers import audit_record, audit_record_with_status, audit_rows, read_data_lines
from tests.support.harness import Gateway
from tests.support.ledger import replay_account

MESSAGES = [{"role": "user", "content": "Summarise the quarterly ledger in one line"}]
CONCURRENT_REQUESTS = 40


async def _fire(
    gateway: Gateway, headers: dict[str, str], count: int, body: dict
) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=60) as client:
        return await asyncio.gather(
            *(client.post("/v1/chat/completions", json=body, headers=headers) for _ in range(count))
        )


def test_concurrent_requests_never_overdraw_and_charges_sum_to_the_balance_change(
    gateway, simulator
) -> None:
    _, state = simulator
    state.response_delay_s = 0.3  # all requests are in flight at once
    tenant = gateway.tenant(balance="0.000000001")
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 64}
    with gateway.client() as http:
        probe = http.post("/v1/chat/completions", json=body, headers=tenant.headers())
    assert probe.status_code == 402
    estimate = Decimal(probe.json()["error"]["required"])
    top_up = (estimate * Decimal("10.5")).quantize(Decimal("0.000000001"))
    gateway.execute(
        c.TopUp(project_id=tenant.project_id, amount=top_up, currency="USD", reference="pressure")
    )
    credits = top_up + Decimal("0.000000001")

    responses = asyncio.run(_fire(gateway, tenant.headers(), CONCURRENT_REQUESTS, body))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 402}, statuses
    assert statuses.count(200) >= 10
    assert statuses.count(402) >= 1
    for response in responses:
        if response.status_code == 402:
            assert response.json()["error"]["code"] == "insufficient_balance"

    gateway.settle()
    replay = replay_account(gateway.services.app, tenant.project_id)
    assert replay.lowest_available >= 0
    assert replay.pending == 0
    assert replay.credits == credits
    charged = {
        r.headers["x-request-id"]: Decimal(r.headers["x-lg-actual-cost"])
        for r in responses
        if r.status_code == 200
    }
    assert replay.charges == charged  # one charge per completed request, none for refused ones
    assert replay.charge_events == len(charged)
    with gateway.client() as http:
        balance = http.get("/v1/billing/balance", headers=tenant.headers()).json()
    audit = audit_rows(gateway, tenant, limit=100)
    assert Decimal(balance["available"]) == credits - sum(charged.values())
    assert Decimal(balance["available"]) == replay.available
    assert sum(Decimal(r["cost"] or 0) for r in audit) == sum(charged.values())
    assert len(audit) == CONCURRENT_REQUESTS + 1


def test_an_upstream_error_before_streaming_releases_the_reservation_and_maps_the_status(
    gateway, simulator
) -> None:
    _, state = simulator
    state.error_status = 429
    tenant = gateway.tenant(balance="5.00")
    client = gateway.openai(tenant)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    error = caught.value.body
    assert error["retry_after_seconds"] == 7
    assert error["retry_after_source"] == "provider_header"
    assert caught.value.response.headers["retry-after"] == "7"
    state.error_status = 503
    with pytest.raises(openai.InternalServerError) as overloaded:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert overloaded.value.status_code == 503
    audit = audit_rows(gateway, tenant)
    replay = replay_account(gateway.services.app, tenant.project_id)
    assert replay.pending == 0 and replay.posted == 0 and replay.releases == 2
    assert sorted(r["error_code"] for r in audit) == ["rate_limit_exceeded", "upstream_overloaded"]
    assert {r["status"] for r in audit} == {"failed"}


def test_an_error_after_the_first_chunk_ends_the_stream_with_an_error_frame_and_charges_what_was_used(
    gateway, simulator
) -> None:
    _, state = simulator
    state.fail_after_chunks = 3
    tenant = gateway.tenant(balance="5.00")
    client = gateway.openai(tenant)
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert "simulated mid-stream failure" in str(caught.value)
    assert len(received) == 3
    [record] = audit_rows(gateway, tenant)
    assert record["status"] == "failed"
    assert record["delivered_chunks"] == 4  # the role chunk and three content chunks
    assert record["usage_source"] == "estimated"
    assert record["output_tokens"] > 0
    assert Decimal(record["cost"]) > 0
    replay = replay_account(gateway.services.app, tenant.project_id)
    assert replay.pending == 0
    assert replay.charges == {record["request_id"]: Decimal(record["cost"])}


def test_a_client_hanging_up_mid_stream_settles_the_request_as_failed_and_charged_for_what_was_delivered(
    gateway, simulator
) -> None:
    _, state = simulator
    state.chunk_delay_s = 0.05
    tenant = gateway.tenant(balance="5.00")
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    with httpx.Client(base_url=gateway.base_url, timeout=30) as http:
        with http.stream(
            "POST", "/v1/chat/completions", json=body, headers=tenant.headers()
        ) as response:
            request_id = response.headers["x-request-id"]
            read_data_lines(response, 3)  # then hang up
    record = audit_record_with_status(lambda: audit_record(gateway, tenant, request_id), "failed")
    assert record is not None and record["status"] == "failed"
    assert record["error_code"] == "client_disconnected"
    assert record["http_status"] == 499
    replay = replay_account(gateway.services.app, tenant.project_id)
    assert replay.pending == 0
    assert replay.charges[request_id] == Decimal(record["cost"]) > 0
