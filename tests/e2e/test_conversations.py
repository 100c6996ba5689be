"""Conversations (issue 12): `X-Conversation-Id` or body `conversation_id` threads requests;
the id is stored on the request's Received event, shown on its audit record, never
forwarded upstream, and `/v1/data/audit?conversation_id=` lists the thread in order. The
audit filters conversation_id, trace_id, key_id and provider are scoped to the caller's
project, and a bad filter is a recorded 400. Real HTTP, the real openai SDK, on SQLite and
the real PostgreSQL."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from domain.ids import request_aggregate_id
from domain.request import Request
from tests.support.harness import Gateway

MESSAGES = [{"role": "user", "content": "hello there"}]


def audit(gateway: Gateway, headers: dict[str, str], **params: Any) -> Any:
    with gateway.client() as http:
        return http.get("/v1/data/audit", params=params, headers=headers)


def test_a_conversation_is_threaded_stored_and_listed_in_order_never_forwarded(
    gateway: Gateway, simulator: Any
) -> None:
    _, upstream = simulator
    tenant, other = gateway.tenant(), gateway.tenant()
    client = gateway.openai(tenant)
    ids = []
    for _turn in range(3):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            extra_headers={"X-Conversation-Id": "conv-7", "X-Trace-Id": "trace-1"},
        )
        ids.append(raw.headers["x-request-id"])
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_body={"conversation_id": "conv-7"}
    )
    ids.append(raw.headers["x-request-id"])
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # no thread
    gateway.settle()

    # Never forwarded: neither the body field nor the header reached the provider.
    assert len(upstream.requests) == 5
    assert all("conversation_id" not in body for body in upstream.requests)
    assert all("x-conversation-id" not in names for names in upstream.header_names)
    assert all("x-trace-id" not in names for names in upstream.header_names)

    # Stored on the request's own Received event (v3), not only in the view.
    first = gateway.services.app.repository.get(request_aggregate_id(ids[0]))
    assert isinstance(first, Request) and first.conversation_id == "conv-7"

    # The thread in order (oldest first), paged by cursor.
    page = audit(gateway, tenant.headers(), conversation_id="conv-7", limit=3).json()
    assert [r["request_id"] for r in page["data"]] == ids[:3]
    assert all(r["conversation_id"] == "conv-7" for r in page["data"])
    assert page["data"][0]["trace_id"] == "trace-1"
    rest = audit(
        gateway, tenant.headers(), conversation_id="conv-7", cursor=page["next_cursor"]
    ).json()
    assert [r["request_id"] for r in rest["data"]] == ids[3:]
    assert rest["next_cursor"] is None
    newest_first = audit(gateway, tenant.headers(), conversation_id="conv-7", order="desc")
    assert [r["request_id"] for r in newest_first.json()["data"]] == ids[::-1]

    # The single record shows it too; the unthreaded request has none.
    with gateway.client() as http:
        record = http.get(f"/v1/data/audit/{ids[1]}", headers=tenant.headers()).json()
    assert record["conversation_id"] == "conv-7"
    everything = audit(gateway, tenant.headers()).json()["data"]
    assert sorted(r["conversation_id"] or "" for r in everything) == ["", *["conv-7"] * 4]

    # Another project's key never sees the thread, nor the trace.
    assert audit(gateway, other.headers(), conversation_id="conv-7").json()["data"] == []
    assert audit(gateway, other.headers(), trace_id="trace-1").json()["data"] == []
    assert len(audit(gateway, tenant.headers(), trace_id="trace-1").json()["data"]) == 3


def test_the_header_has_the_body_fields_syntax_and_a_bad_one_is_refused_and_recorded(
    gateway: Gateway, simulator: Any
) -> None:
    _, upstream = simulator
    tenant = gateway.tenant()
    client = gateway.openai(tenant)
    for bad in ("has space", "someone@example.com", "x" * 200):
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, extra_headers={"X-Conversation-Id": bad}
            )
        assert caught.value.body["param"] == "x-conversation-id"
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, extra_body={"conversation_id": bad}
            )
        assert caught.value.body["param"] == "conversation_id"
    assert upstream.requests == []
    gateway.settle()
    rejected = audit(gateway, tenant.headers(), status="rejected").json()["data"]
    assert len(rejected) == 6
    assert all(r["conversation_id"] is None for r in rejected)  # a refused value is not kept
    assert all("example.com" not in str(r) for r in rejected)


def test_audit_filters_key_provider_and_bad_filters_are_recorded_400s(
    gateway: Gateway,
) -> None:
    tenant, other = gateway.tenant(), gateway.tenant()
    gateway.openai(tenant).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    gateway.openai(other).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    gateway.settle()
    mine = audit(gateway, tenant.headers(), key_id=str(tenant.key_id)).json()["data"]
    assert len(mine) == 1 and mine[0]["key_id"] == str(tenant.key_id)
    # Another project's key id names nothing of this project.
    assert audit(gateway, tenant.headers(), key_id=str(other.key_id)).json()["data"] == []
    served = audit(gateway, tenant.headers(), provider="openai").json()["data"]
    assert [r["provider"] for r in served] == ["openai"]
    assert audit(gateway, tenant.headers(), provider="anthropic").json()["data"] == []

    bad_filters = {
        "conversation_id": "not an id",
        "trace_id": "a@b.example.com",
        "key_id": "not-a-uuid",
        "provider": "Open AI!",
        "order": "sideways",
    }
    for name, value in bad_filters.items():
        response = audit(gateway, tenant.headers(), **{name: value})
        assert response.status_code == 400, (name, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_request" and error["param"] == name
        assert value not in error.get("message", "") or name == "order"
    gateway.settle()
    refused = audit(gateway, tenant.headers(), status="rejected").json()["data"]
    assert sorted(r["error_message"] for r in refused) == sorted(
        f"GET /v1/data/audit refused: invalid_request (param {name})" for name in bad_filters
    )
    # The other project's log holds none of these rejections.
    assert audit(gateway, other.headers(), status="rejected").json()["data"] == []
