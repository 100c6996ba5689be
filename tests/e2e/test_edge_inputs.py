"""What a client sends is checked at the edge before anything keeps it: text storage cannot
hold (NUL, lone surrogates) is a 400 naming the field, kept ids and model names have a
strict syntax and are screened for personal data, nothing rejected is echoed into the
ledger, gateway-only fields never reach the provider, and reads refuse unknown filter
values. Real HTTP, both backends."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from gateway.validation import NESTING_DEPTH_MAX
from tests.e2e.helpers import audit_rows

IBAN = "DE89370400440532013000"
EMAIL = "jean.dubois@example.com"


def chat(model: str = "gpt-4o-mini", content: Any = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


def post_raw(http, path: str, body: Any, headers: dict[str, str]):
    # json.dumps keeps NUL and lone surrogates as \u escapes: what a hostile client sends.
    raw = json.dumps(body).encode()
    return http.post(path, content=raw, headers={**headers, "Content-Type": "application/json"})


def assert_views_at_head(gateway) -> None:
    gateway.settle()
    head = gateway.services.app.recorder.max_notification_id() or 0
    assert set(gateway.services.runner.positions().values()) == {head}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat("gpt-4o-mini\x00"), "model"),
        (chat(user="alice\x00"), "user"),
        (chat(trace_id="t-1\x00"), "trace_id"),
        (chat(content="hello \x00 world"), "messages[0].content"),
        (chat(content=[{"type": "text", "text": "a\ud800b"}]), "messages[0].content[0].text"),
        (chat(metadata={"note": "x\x00"}), "metadata.note"),
    ],
)
def test_unstorable_text_anywhere_in_a_chat_body_is_a_400_naming_the_field(
    gateway, body, param
) -> None:
    tenant = gateway.tenant()
    with gateway.client() as http:
        response = post_raw(http, "/v1/chat/completions", body, tenant.headers())
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_request", param)
    rows = audit_rows(gateway, tenant, limit=500)
    assert [(r["status"], r["error_code"]) for r in rows] == [("rejected", "invalid_request")]
    assert rows[0]["model_requested"] in (None, "gpt-4o-mini")
    assert_views_at_head(gateway)


def test_unstorable_text_in_an_embeddings_model_and_a_user_header_is_refused(gateway) -> None:
    tenant = gateway.tenant()
    with gateway.client() as http:
        embed = post_raw(
            http,
            "/v1/embeddings",
            {"model": "text-embedding-3-small\x00", "input": "x"},
            tenant.headers(),
        )
        header = http.post(
            "/v1/chat/completions", json=chat(), headers=tenant.headers(user="alice\tbob")
        )
    assert (embed.status_code, embed.json()["error"]["param"]) == (400, "model")
    assert (header.status_code, header.json()["error"]["param"]) == (400, "x-user-id")
    assert_views_at_head(gateway)


def test_nesting_past_the_bound_is_a_400_and_below_it_reaches_the_provider(
    gateway, simulator
) -> None:
    tenant = gateway.tenant()
    deep_part = [{"type": "text", "text": "hi", "extra": nested(NESTING_DEPTH_MAX + 100)}]
    # Past orjson's own 255 levels, below the bound: hashed and forwarded without a 500.
    ok_part = [{"type": "text", "text": "hi", "extra": nested(300)}]
    with gateway.client() as http:
        refused = post_raw(http, "/v1/chat/completions", chat(content=deep_part), tenant.headers())
        served = post_raw(http, "/v1/chat/completions", chat(content=ok_part), tenant.headers())
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "invalid_request"
    assert served.status_code == 200, served.text
    assert simulator[1].requests[-1]["messages"][0]["content"][0]["extra"] == nested(300)


def test_an_iban_as_model_and_an_email_as_trace_id_are_refused_and_never_stored(gateway) -> None:
    tenant = gateway.tenant()
    with gateway.client() as http:
        as_model = http.post("/v1/chat/completions", json=chat(IBAN), headers=tenant.headers())
        as_trace = http.post(
            "/v1/chat/completions", json=chat(trace_id=EMAIL), headers=tenant.headers()
        )
        as_header = http.post(
            "/v1/chat/completions",
            json=chat(),
            headers={**tenant.headers(), "X-Trace-Id": IBAN},
        )
        as_conversation = http.post(
            "/v1/chat/completions", json=chat(conversation_id=IBAN), headers=tenant.headers()
        )
    for response, param in (
        (as_model, "model"),
        (as_trace, "trace_id"),
        (as_header, "x-trace-id"),
        (as_conversation, "conversation_id"),
    ):
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == param
        assert IBAN not in error["message"] and EMAIL not in error["message"]
    rows = audit_rows(gateway, tenant, limit=500)
    assert len(rows) == 4
    stored = orjson.dumps(rows).decode()
    assert IBAN not in stored and EMAIL not in stored
    # Nothing of it in any event either.
    for notification in gateway.services.app.recorder.select_notifications(start=1, limit=10_000):
        assert IBAN.encode() not in notification.state
        assert EMAIL.encode() not in notification.state


def test_gateway_only_fields_never_reach_the_provider(gateway, simulator) -> None:
    tenant = gateway.tenant()
    body = chat(
        trace_id="trace-1",
        conversation_id="conv-1",
        routing_preferences={"fallback_models": False},
        pii_policy={"enabled": False},
        temperature=0.5,
    )
    # A pii_policy makes the gateway load the PII engine on first need (seconds of CPU).
    with gateway.client(timeout=180) as http:
        response = http.post("/v1/chat/completions", json=body, headers=tenant.headers())
    assert response.status_code == 200, response.text
    forwarded = simulator[1].requests[-1]
    assert not {"trace_id", "conversation_id", "routing_preferences", "pii_policy"} & set(forwarded)
    assert forwarded["temperature"] == 0.5  # OpenAI fields do go through
    rows = audit_rows(gateway, tenant, limit=500)
    assert rows[0]["trace_id"] == "trace-1"


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/v1/data/audit", {"status": "bogus"}, "status"),
        ("/v1/data/audit", {"model": "gpt 4o; drop"}, "model"),
        ("/v1/data/audit", {"since": "yesterday"}, "since"),
        ("/v1/data/audit", {"actor_id": "a\x00b"}, "actor_id"),
        ("/v1/billing/usage", {"group_by": "colour"}, "group_by"),
        ("/v1/billing/usage", {"until": "2024-13-45"}, "until"),
        ("/v1/data/pricing", {"model": "gpt-4o-mini\x01"}, "model"),
    ],
)
def test_an_unknown_filter_value_on_a_read_is_a_400_recorded_in_the_audit_log(
    gateway, path, params, param
) -> None:
    tenant = gateway.tenant()
    with gateway.client() as http:
        response = http.get(path, params=params, headers=tenant.headers())
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    rows = audit_rows(gateway, tenant, limit=500)
    assert [(r["endpoint"], r["status"], r["http_status"]) for r in rows] == [
        (f"GET {path}", "rejected", 400)
    ]
    for value in params.values():
        assert value not in (rows[0]["error_message"] or "")


def test_a_min_position_wait_that_times_out_is_a_retryable_503_not_stale_data(
    gateway, monkeypatch
) -> None:
    import gateway.http.deps as app_module

    monkeypatch.setattr(app_module, "READ_WAIT_S_MAX", 0.3)
    # A position past the log's head is refused with a 400 without waiting (issue 9 item 2);
    # widened here so this far position stands for one the views are slow to reach.
    monkeypatch.setattr(app_module, "MIN_POSITION_AHEAD_OF_HEAD_MAX", 10**13)
    tenant = gateway.tenant()
    with gateway.client() as http:
        response = http.get(
            "/v1/billing/balance", params={"min_position": 10**12}, headers=tenant.headers()
        )
        reached = http.get(
            "/v1/billing/balance", params={"min_position": 1}, headers=tenant.headers()
        )
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "min_position_not_reached"
    assert error["min_position"] == 10**12 and error["as_of_position"] < 10**12
    assert response.headers["retry-after"] == "1"
    assert reached.status_code == 200


def test_a_405_names_the_allowed_methods(gateway) -> None:
    with gateway.client() as http:
        response = http.get("/v1/chat/completions")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"]["code"] == "unsupported_endpoint"
