"""Every adapter against its provider's fake upstream, over real HTTP: replies, streams, tool
calls, usage to the token, errors before and after the first chunk, malformed output."""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway.providers.base import UpstreamError
from tests.fakes.fixtures import ALL_PROVIDERS, start_fake
from tests.fakes.server import ToolCall
from tests.unit.providers.helpers import (
    EMBEDDING_MODELS,
    MODELS,
    TEST_TIMEOUT_S,
    WEATHER_TOOL,
    chat_body,
    chat_error,
    collect,
    make_adapter,
    text_of,
    tool_calls_of,
)

pytestmark = pytest.mark.parametrize("provider", ALL_PROVIDERS)


@pytest.fixture
def fake(provider: str):  # type: ignore[no-untyped-def]
    upstream = start_fake(provider)
    yield upstream
    upstream.stop()


async def test_a_plain_reply_comes_back_as_an_openai_chat_completion_with_exact_usage(
    provider, fake
):
    fake.script(text="Bonjour.", prompt_tokens=21, completion_tokens=3)
    adapter, client = make_adapter(provider, fake)
    async with client:
        result = await asyncio.wait_for(
            adapter.chat(chat_body(provider), MODELS[provider]), TEST_TIMEOUT_S
        )
    assert result.body["object"] == "chat.completion"
    assert result.body["choices"][0]["message"]["content"] == "Bonjour."
    assert result.body["choices"][0]["finish_reason"] == "stop"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (21, 3)
    assert result.usage.source == "provider"
    assert result.body["usage"]["total_tokens"] == 24


async def test_a_stream_yields_openai_chunks_and_exact_usage_at_the_end(provider, fake):
    fake.script(text="One two three four.", prompt_tokens=30, completion_tokens=5, pieces=4)
    adapter, client = make_adapter(provider, fake)
    async with client:
        stream = await adapter.chat_stream(chat_body(provider, stream=True), MODELS[provider])
        chunks = await collect(stream)
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert text_of(chunks) == "One two three four."
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert stream.finish_reason == "stop"
    assert stream.usage is not None
    assert (stream.usage.prompt_tokens, stream.usage.completion_tokens) == (30, 5)
    assert all("usage" not in chunk for chunk in chunks)


async def test_tool_calls_come_back_with_json_arguments_and_finish_reason_tool_calls(
    provider, fake
):
    fake.script(text="", tool_calls=[ToolCall("get_weather", {"city": "Paris"}, id="call_1")])
    adapter, client = make_adapter(provider, fake)
    async with client:
        result = await adapter.chat(chat_body(provider, tools=[WEATHER_TOOL]), MODELS[provider])
    message = result.body["choices"][0]["message"]
    assert result.body["choices"][0]["finish_reason"] == "tool_calls"
    assert message["tool_calls"][0]["function"]["name"] == "get_weather"
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}


async def test_streamed_tool_call_arguments_reassemble_into_the_full_call(provider, fake):
    fake.script(
        text="", tool_calls=[ToolCall("get_weather", {"city": "Paris", "unit": "C"}, id="call_1")]
    )
    adapter, client = make_adapter(provider, fake)
    async with client:
        stream = await adapter.chat_stream(
            chat_body(provider, tools=[WEATHER_TOOL], stream=True), MODELS[provider]
        )
        chunks = await collect(stream)
    calls = tool_calls_of(chunks)
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather"
    assert calls[0]["id"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris", "unit": "C"}
    assert stream.finish_reason == "tool_calls"


async def test_cached_prompt_tokens_are_reported_as_openai_cached_tokens(provider, fake):
    fake.script(text="ok", prompt_tokens=100, completion_tokens=1, cached_tokens=80)
    adapter, client = make_adapter(provider, fake)
    async with client:
        result = await adapter.chat(chat_body(provider), MODELS[provider])
    assert result.usage.prompt_tokens == 100
    assert result.usage.cached_tokens == 80
    assert result.body["usage"]["prompt_tokens_details"]["cached_tokens"] == 80


@pytest.mark.parametrize(
    ("upstream_status", "client_status", "code"),
    [
        (401, 401, "upstream_authentication_failed"),
        (404, 404, None),
        (500, 502, "upstream_error"),
        (503, 503, "upstream_overloaded"),
    ],
)
async def test_an_error_before_streaming_maps_to_the_openai_status(
    provider, fake, upstream_status, client_status, code
):
    fake.script(error_status=upstream_status)
    adapter, client = make_adapter(provider, fake)
    async with client:
        with pytest.raises(UpstreamError) as caught:
            await adapter.chat(chat_body(provider), MODELS[provider])
        fake.script(error_status=upstream_status)
        with pytest.raises(UpstreamError) as caught_stream:
            await adapter.chat_stream(chat_body(provider, stream=True), MODELS[provider])
    for error in (caught.value, caught_stream.value):
        assert error.status == client_status
        if code is not None:
            assert error.code == code
        assert error.provider == provider
        assert "test-key" not in error.message


async def test_a_rate_limit_is_429_with_the_providers_retry_after(provider, fake):
    fake.script(error_status=429, error_headers={"retry-after": "7"})
    error = await chat_error(provider, fake)
    assert error.status == 429
    assert error.retry_after_seconds == 7.0
    assert error.retry_after_source == "provider_header"


async def test_a_rate_limit_without_retry_after_gets_the_gateway_default(provider, fake):
    fake.script(error_status=429)
    error = await chat_error(provider, fake)
    assert error.status == 429
    assert error.retry_after_source == "gateway_default"
    assert error.retry_after_seconds and error.retry_after_seconds > 0


async def test_an_error_after_the_first_chunk_is_raised_after_the_delivered_chunks(provider, fake):
    fake.script(text="abcdefghij", pieces=5, error_after_chunks=2)
    adapter, client = make_adapter(provider, fake)
    delivered = []
    async with client:
        stream = await adapter.chat_stream(chat_body(provider, stream=True), MODELS[provider])
        with pytest.raises(UpstreamError) as caught:
            async for chunk in stream:
                delivered.append(chunk)
    assert text_of(delivered) == "abcd"
    assert caught.value.status in (429, 502, 503)
    # No final usage arrived: the gateway charges an estimate of what was delivered.
    assert stream.usage is None


@pytest.mark.parametrize("kind", ["truncated", "bad_json", "reset"])
async def test_malformed_stream_output_is_a_clean_upstream_error_not_a_hang(provider, fake, kind):
    fake.script(malformed=kind, text="some words here", pieces=3)
    adapter, client = make_adapter(provider, fake)
    async with client:
        with pytest.raises(UpstreamError) as caught:
            stream = await adapter.chat_stream(chat_body(provider, stream=True), MODELS[provider])
            await collect(stream)
    assert caught.value.status == 502
    assert caught.value.code in (
        "upstream_malformed_response",
        "upstream_stream_truncated",
        "upstream_connection_error",
    )


@pytest.mark.parametrize("kind", ["truncated", "bad_json", "wrong_content_type", "reset"])
async def test_malformed_json_output_is_a_clean_upstream_error(provider, fake, kind):
    fake.script(malformed=kind)
    adapter, client = make_adapter(provider, fake)
    async with client:
        with pytest.raises(UpstreamError) as caught:
            await asyncio.wait_for(
                adapter.chat(chat_body(provider), MODELS[provider]), TEST_TIMEOUT_S
            )
    assert caught.value.status == 502
    assert caught.value.code in ("upstream_malformed_response", "upstream_connection_error")


async def test_a_stream_with_the_wrong_content_type_is_refused_before_the_first_chunk(
    provider, fake
):
    fake.script(malformed="wrong_content_type")
    adapter, client = make_adapter(provider, fake)
    async with client:
        with pytest.raises(UpstreamError) as caught:
            await adapter.chat_stream(chat_body(provider, stream=True), MODELS[provider])
    assert caught.value.code == "upstream_malformed_response"


async def test_an_upstream_that_never_answers_is_a_504_after_the_read_timeout(provider, fake):
    fake.script(malformed="hang")
    adapter, client = make_adapter(provider, fake, read_timeout_s=0.3)
    async with client:
        with pytest.raises(UpstreamError) as caught:
            await asyncio.wait_for(
                adapter.chat(chat_body(provider), MODELS[provider]), TEST_TIMEOUT_S
            )
    assert caught.value.status == 504
    assert caught.value.code == "upstream_timeout"


async def test_a_stream_without_usage_leaves_usage_empty_for_the_gateway_to_estimate(
    provider, fake
):
    fake.script(malformed="no_usage", text="four words right here")
    adapter, client = make_adapter(provider, fake)
    async with client:
        stream = await adapter.chat_stream(chat_body(provider, stream=True), MODELS[provider])
        chunks = await collect(stream)
    if provider == "anthropic":
        # Anthropic always sends usage in message_start/message_delta: the fake cannot omit it.
        assert stream.usage is not None
        return
    assert text_of(chunks) == "four words right here"
    assert stream.usage is None


async def test_embeddings_come_back_as_floats_or_little_endian_base64(provider, fake):
    if provider not in EMBEDDING_MODELS:
        adapter, client = make_adapter(provider, fake)
        async with client:
            with pytest.raises(UpstreamError) as caught:
                await adapter.embeddings({"model": "x", "input": "hi"}, "x")
        assert caught.value.status == 400
        assert caught.value.code == "embeddings_not_supported"
        return
    import base64
    import struct

    model = EMBEDDING_MODELS[provider]
    adapter, client = make_adapter(provider, fake)
    async with client:
        as_floats = await adapter.embeddings(
            {"model": model, "input": ["alpha", "beta"], "encoding_format": "float"}, model
        )
        as_base64 = await adapter.embeddings(
            {"model": model, "input": ["alpha", "beta"], "encoding_format": "base64"}, model
        )
    floats = [item["embedding"] for item in as_floats.body["data"]]
    assert len(floats) == 2 and all(len(vector) == 8 for vector in floats)
    for index, item in enumerate(as_base64.body["data"]):
        raw = base64.b64decode(item["embedding"])
        decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
        assert decoded == pytest.approx(floats[index], abs=1e-6)
    assert as_floats.usage.prompt_tokens > 0


async def test_a_stream_that_stalls_after_the_first_chunks_ends_in_a_504_not_a_hang(provider, fake):
    fake.script(text="a b c d e f", pieces=6, stall_after_chunks=2)
    adapter, client = make_adapter(provider, fake, read_timeout_s=0.3)
    delivered = []
    async with client:
        stream = await adapter.chat_stream(chat_body(provider, stream=True), MODELS[provider])
        with pytest.raises(UpstreamError) as caught:

            async def consume() -> None:
                async for chunk in stream:
                    delivered.append(chunk)

            await asyncio.wait_for(consume(), TEST_TIMEOUT_S)
    assert caught.value.status == 504
    assert caught.value.code == "upstream_timeout"
    assert delivered  # the chunks before the stall were delivered
