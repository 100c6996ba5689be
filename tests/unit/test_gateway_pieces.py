"""Gateway pieces without IO: actor tokens, cursors, SSE parsing, error mapping."""

from __future__ import annotations

import time
from uuid import uuid4

import httpx
import pytest

from gateway.auth import issue_actor_token, verify_actor_token
from gateway.errors import GatewayError
from gateway.providers.errors import error_from_status
from gateway.providers.sse import iter_sse
from projections.queries import InvalidCursor, decode_cursor, encode_cursor


def test_an_actor_token_names_its_actor_and_is_bound_to_project_secret_and_time() -> None:
    project = uuid4()
    token = issue_actor_token(b"secret", project, "dana", ttl_s=60)
    assert verify_actor_token(token, project, b"secret") == "dana"
    for bad in (
        lambda: verify_actor_token(token, uuid4(), b"secret"),
        lambda: verify_actor_token(token, project, b"other"),
        lambda: verify_actor_token(token, project, b"secret", now=time.time() + 120),
        lambda: verify_actor_token(token.replace("d", "e", 1), project, b"secret"),
        lambda: verify_actor_token("garbage", project, b"secret"),
    ):
        with pytest.raises(GatewayError) as caught:
            bad()
        assert caught.value.code == "invalid_actor_token"


def test_cursors_round_trip_and_foreign_cursors_are_refused() -> None:
    cursor = encode_cursor("2026-11-21T10:00:00.000000+00:00", "lg_req_abc")
    assert decode_cursor(cursor) == ("2026-11-21T10:00:00.000000+00:00", "lg_req_abc")
    with pytest.raises(InvalidCursor):
        decode_cursor("bm90IGpzb24")


def test_a_429_in_a_400_body_is_not_a_rate_limit() -> None:
    error = error_from_status(
        "openai", 400, {}, {"error": {"message": "limit 429 exceeded in field", "code": None}}
    )
    assert error.status == 400 and error.code == "upstream_bad_request"


def test_a_rate_limit_takes_retry_after_from_the_provider_or_says_it_is_the_gateways_default() -> (
    None
):
    with_header = error_from_status("anthropic", 429, {"retry-after": "12"}, None)
    without = error_from_status("anthropic", 429, {}, None)
    assert (with_header.retry_after_seconds, with_header.retry_after_source) == (
        12.0,
        "provider_header",
    )
    assert without.retry_after_source == "gateway_default" and without.status == 429


async def test_sse_events_are_split_on_blank_lines_and_comments_ignored() -> None:
    raw = b': ping\n\nevent: message_start\ndata: {"a": 1}\n\ndata: one\ndata: two\n\ndata: [DONE]\n\n'
    response = httpx.Response(200, content=raw)
    events = [event async for event in iter_sse(response)]
    assert [(e.event, e.data) for e in events] == [
        ("message_start", '{"a": 1}'),
        (None, "one\ntwo"),
        (None, "[DONE]"),
    ]
