"""The thin slice end to end: the real openai SDK over real HTTP, through the gateway, to a
simulated OpenAI-format upstream — on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest

from domain.ids import request_aggregate_id
from domain.request import Request
from tests.support.harness import Gateway

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Say hello to the auditors"},
]


def expected_charge(prompt_tokens: int, completion_tokens: int) -> Decimal:
    provider_cost = (
        Decimal(prompt_tokens) * Decimal("0.15") + Decimal(completion_tokens) * Decimal("0.60")
    ) / Decimal(1_000_000)
    provider_cost = provider_cost.quantize(Decimal("0.000000001"))
    fee = (provider_cost * Decimal("0.05")).quantize(Decimal("0.000000001"))
    return provider_cost + fee


def test_a_completion_is_answered_charged_with_fee_and_audited(gateway: Gateway) -> None:
    tenant = gateway.tenant(balance="10.00")
    client = gateway.openai(tenant)
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    completion = raw.parse()
    assert completion.choices[0].message.content.startswith(
        "This is Ledgergate's simulated upstream"
    )
    request_id = raw.headers["x-request-id"]
    assert request_id.startswith("lg_req_")
    charge = expected_charge(completion.usage.prompt_tokens, completion.usage.completion_tokens)
    assert Decimal(raw.headers["x-lg-actual-cost"]) == charge
    assert raw.headers["x-lg-model"] == "gpt-4o-mini"
    assert raw.headers["x-lg-provider"] == "openai"
    assert Decimal(raw.headers["x-lg-estimated-cost"]) >= charge
    assert int(raw.headers["x-lg-overhead-ms"]) >= 0

    gateway.settle()
    with gateway.client() as http:
        record = http.get(f"/v1/data/audit/{request_id}", headers=tenant.headers()).json()
        balance = http.get("/v1/billing/balance", headers=tenant.headers()).json()
    assert record["status"] == "completed"
    assert record["actor_id"] == "alice"
    assert record["input_tokens"] == completion.usage.prompt_tokens
    assert record["output_tokens"] == completion.usage.completion_tokens
    assert Decimal(record["cost"]) == charge
    assert record["currency"] == "USD"
    assert record["pricing"]["price_id"]
    assert record["pricing"]["effective_from"]
    assert record["usage_source"] == "provider"
    assert Decimal(balance["available"]) == Decimal("10.00") - charge
    assert Decimal(balance["pending"]) == 0
    assert balance["as_of_position"] > 0


def test_a_stream_is_relayed_as_openai_chunks_with_usage_and_charged_before_done(
    gateway: Gateway,
) -> None:
    tenant = gateway.tenant(balance="10.00")
    client = gateway.openai(tenant)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    text, usage = [], None
    for chunk in stream:
        if chunk.choices:
            text.append(chunk.choices[0].delta.content or "")
        if chunk.usage is not None:
            usage = chunk.usage
    assert "".join(text).startswith("This is Ledgergate's simulated upstream")
    assert usage is not None and usage.completion_tokens > 0
    gateway.settle()
    with gateway.client() as http:
        audit = http.get("/v1/data/audit", headers=tenant.headers()).json()
    [record] = audit["data"]
    assert record["status"] == "completed"
    assert record["stream"] is True
    assert record["output_tokens"] == usage.completion_tokens
    assert Decimal(record["cost"]) == expected_charge(usage.prompt_tokens, usage.completion_tokens)
    # The short stream's first chunk is recorded by its settlement's command, with the time
    # it arrived: the same events as a separate MarkStreaming would have recorded.
    events = list(gateway.services.app.events.get(request_aggregate_id(record["request_id"])))
    *_, streaming, completed = events
    assert isinstance(streaming, Request.StreamingStarted)
    assert isinstance(completed, Request.Completed)
    assert streaming.started_at <= completed.completed_at
    assert 0 <= streaming.first_chunk_ms <= completed.latency_ms


def test_a_stream_without_include_usage_hides_usage_but_is_still_charged_exactly(
    gateway: Gateway,
) -> None:
    tenant = gateway.tenant()
    client = gateway.openai(tenant)
    chunks = list(
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    )
    assert all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)
    gateway.settle()
    with gateway.client() as http:
        [record] = http.get("/v1/data/audit", headers=tenant.headers()).json()["data"]
    assert record["usage_source"] == "provider"  # the gateway asked upstream for usage anyway
    assert Decimal(record["cost"]) > 0


def test_an_unknown_key_is_refused_with_401_in_the_openai_envelope_and_recorded(
    gateway: Gateway,
) -> None:
    tenant = gateway.tenant()
    client = gateway.openai(tenant)
    client.api_key = "lg_live_" + "x" * 43
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert caught.value.response.headers["x-request-id"].startswith("lg_req_")
    gateway.settle()
    with gateway.services.store.transaction(write=False) as tx:
        row = tx.execute(
            "SELECT status, error_code, http_status FROM lg_audit WHERE request_id = %s",
            (caught.value.response.headers["x-request-id"],),
        ).fetchone()
    assert row == {"status": "rejected", "error_code": "invalid_api_key", "http_status": 401}


def test_a_missing_user_is_refused_with_400_missing_user_id(gateway: Gateway) -> None:
    tenant = gateway.tenant()
    with gateway.client() as http:
        response = http.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": MESSAGES},
            headers={"Authorization": f"Bearer {tenant.api_key}"},
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "missing_user_id"
    assert response.json()["error"]["type"] == "invalid_request_error"
    gateway.settle()
    with gateway.client() as http:
        [record] = http.get("/v1/data/audit", headers=tenant.headers()).json()["data"]
    assert record["status"] == "rejected" and record["error_code"] == "missing_user_id"


def test_the_body_user_field_names_the_actor_when_no_header_is_sent(gateway: Gateway) -> None:
    tenant = gateway.tenant()
    with gateway.client() as http:
        response = http.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": MESSAGES, "user": "bob"},
            headers={"Authorization": f"Bearer {tenant.api_key}"},
        )
    assert response.status_code == 200
    gateway.settle()
    with gateway.client() as http:
        [record] = http.get(
            "/v1/data/audit", params={"actor_id": "bob"}, headers=tenant.headers()
        ).json()["data"]
    assert record["actor_id"] == "bob"


def test_an_insufficient_balance_is_refused_with_402_and_nothing_is_reserved(
    gateway: Gateway,
) -> None:
    tenant = gateway.tenant(balance="0.000001")
    client = gateway.openai(tenant)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.status_code == 402
    assert caught.value.code == "insufficient_balance"
    gateway.settle()
    with gateway.client() as http:
        [record] = http.get(
            "/v1/data/audit", params={"status": "rejected"}, headers=tenant.headers()
        ).json()["data"]
        balance = http.get("/v1/billing/balance", headers=tenant.headers()).json()
    assert record["error_code"] == "insufficient_balance" and record["http_status"] == 402
    assert Decimal(balance["available"]) == Decimal("0.000001")
    assert Decimal(balance["pending"]) == 0


def test_invalid_bodies_get_a_400_naming_the_field_never_a_500(gateway: Gateway) -> None:
    tenant = gateway.tenant()
    cases = [
        (b"{not json", "invalid_json", None),
        (b"[]", "invalid_json", None),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "invalid_request", "model"),
        (b'{"model": "gpt-4o-mini", "messages": []}', "invalid_request", "messages"),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "x"}]}',
            "invalid_request",
            "messages[0].role",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "temperature": 9}',
            "invalid_request",
            "temperature",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
            "invalid_request",
            "stream",
        ),
    ]
    with gateway.client() as http:
        for raw, code, param in cases:
            response = http.post(
                "/v1/chat/completions",
                content=raw,
                headers={**tenant.headers(), "Content-Type": "application/json"},
            )
            assert response.status_code == 400, raw
            error = response.json()["error"]
            assert error["code"] == code, raw
            assert error["param"] == param, raw
            assert response.headers["x-request-id"].startswith("lg_req_")
    gateway.settle()
    with gateway.client() as http:
        audit = http.get("/v1/data/audit", headers=tenant.headers()).json()
    assert len(audit["data"]) == len(cases)
    assert {r["status"] for r in audit["data"]} == {"rejected"}


def test_an_unknown_route_answers_in_the_openai_envelope_with_a_request_id(
    gateway: Gateway,
) -> None:
    with gateway.client() as http:
        response = http.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unsupported_endpoint"
    assert response.headers["x-request-id"].startswith("lg_req_")


def test_a_key_sees_only_its_own_projects_audit_records(gateway: Gateway) -> None:
    first, second = gateway.tenant(), gateway.tenant()
    response = gateway.openai(first).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    request_id = response.headers["x-request-id"]
    gateway.settle()
    with gateway.client() as http:
        mine = http.get(f"/v1/data/audit/{request_id}", headers=first.headers())
        theirs = http.get(f"/v1/data/audit/{request_id}", headers=second.headers())
        listing = http.get("/v1/data/audit", headers=second.headers()).json()
    assert mine.status_code == 200
    assert theirs.status_code == 404
    assert listing["data"] == []


def test_audit_pages_with_a_cursor_and_filters(gateway: Gateway) -> None:
    tenant = gateway.tenant()
    client = gateway.openai(tenant)
    for user in ("ann", "ann", "ben", "ann", "ben"):
        client.with_options(default_headers={"X-User-Id": user}).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
    gateway.settle()
    seen: list[str] = []
    cursor = None
    with gateway.client() as http:
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = http.get("/v1/data/audit", params=params, headers=tenant.headers()).json()
            seen.extend(r["request_id"] for r in page["data"])
            cursor = page["next_cursor"]
            if not page["has_more"]:
                break
        anns = http.get(
            "/v1/data/audit", params={"actor_id": "ann"}, headers=tenant.headers()
        ).json()["data"]
        bad = http.get("/v1/data/audit", params={"cursor": "garbage!"}, headers=tenant.headers())
        bad_time = http.get(
            "/v1/data/audit", params={"since": "yesterday"}, headers=tenant.headers()
        )
    assert len(seen) == 5 and len(set(seen)) == 5
    assert len(anns) == 3
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cursor"
    assert bad_time.status_code == 400 and bad_time.json()["error"]["param"] == "since"


def test_no_prompt_text_completion_text_or_secret_ever_lands_in_the_event_store(
    gateway: Gateway, caplog
) -> None:
    caplog.set_level("DEBUG")
    tenant = gateway.tenant()
    canary = "zebra-canary-7731 my secret plan"
    client = gateway.openai(tenant)
    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": canary}]
    )
    list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": canary}], stream=True
        )
    )
    answer = completion.choices[0].message.content
    bad = gateway.openai(tenant)
    bad.api_key = "lg_live_" + "S" * 43
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": canary}]
        )
    gateway.settle()
    secrets_and_text = [canary, "zebra-canary", answer, tenant.api_key, "S" * 43, "sk-test"]
    states = [
        n.state.decode()
        for n in gateway.services.app.recorder.select_notifications(start=1, limit=100_000)
    ]
    assert states
    for needle in secrets_and_text:
        assert not any(needle in state for state in states), needle
        assert needle not in caplog.text, needle


def test_a_provider_error_echoing_the_prompt_reaches_the_client_but_never_the_ledger(
    gateway: Gateway, simulator
) -> None:
    _, state = simulator
    state.error_status = 400
    state.error_message = "Invalid content in request: {prompt}"
    tenant = gateway.tenant()
    canary = "quokka-canary-4412 private note"
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.openai(tenant).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": canary}]
        )
    assert canary in str(caught.value)  # the client sees what the provider said
    gateway.settle()
    states = [
        n.state.decode()
        for n in gateway.services.app.recorder.select_notifications(start=1, limit=100_000)
    ]
    assert not any("quokka-canary" in state for state in states)
    with gateway.client() as http:
        [record] = http.get("/v1/data/audit", headers=tenant.headers()).json()["data"]
    assert record["status"] == "failed" and record["http_status"] == 400
    assert "provider's own message is not recorded" in record["error_message"]
