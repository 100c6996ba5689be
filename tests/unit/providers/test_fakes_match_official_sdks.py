"""The fakes are faithful, not convenient: each provider's own official SDK parses the fake's
output (JSON and stream), and raises its own typed errors for the fake's error bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakes.fixtures import start_fake
from tests.fakes.server import FakeUpstreamBase, ToolCall

WEATHER = ToolCall("get_weather", {"city": "Paris"}, id="call_w1")


@pytest.fixture
def upstream(request):  # type: ignore[no-untyped-def]
    fake = start_fake(request.param)
    yield fake
    fake.stop()


@pytest.mark.parametrize("upstream", ["openai", "xai", "moonshot"], indirect=True)
def test_the_openai_sdk_parses_the_openai_fakes_replies_streams_and_embeddings(upstream):
    import openai

    client = openai.OpenAI(base_url=upstream.base_url, api_key="k", max_retries=0)
    upstream.script(text="Hi there", prompt_tokens=9, completion_tokens=2)
    reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "Hi there"
    assert reply.usage is not None and reply.usage.prompt_tokens == 9

    upstream.script(text="", tool_calls=[WEATHER])
    stream = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    arguments = "".join(
        call.function.arguments or ""
        for c in chunks
        if c.choices
        for call in (c.choices[0].delta.tool_calls or [])
    )
    assert json.loads(arguments) == {"city": "Paris"}
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["tool_calls"]
    if upstream.flavour != "moonshot":
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7

    embedding = client.embeddings.create(model="e", input=["alpha"])  # the SDK asks for base64
    assert len(embedding.data[0].embedding) == 8


def test_the_openai_sdk_raises_its_typed_errors_for_the_openai_fakes_errors():
    import openai

    fake = start_fake("openai")
    try:
        client = openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0)
        fake.script(error_status=429, error_headers={"retry-after": "3"})
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert caught.value.response.headers["retry-after"] == "3"
        fake.script(text="abcdef", pieces=3, error_after_chunks=1)
        delivered = []
        with pytest.raises(openai.APIError):
            for chunk in client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}], stream=True
            ):
                delivered.append(chunk)
        assert "".join(c.choices[0].delta.content or "" for c in delivered) == "ab"
    finally:
        fake.stop()


def test_the_mistral_sdk_parses_the_mistral_fake_and_its_422_for_unknown_fields():
    from mistralai.client import Mistral
    from mistralai.client import errors as mistral_errors

    fake = start_fake("mistral")
    try:
        client = Mistral(api_key="k", server_url=fake.root_url)
        fake.script(text="Salut", prompt_tokens=4, completion_tokens=1)
        reply = client.chat.complete(
            model="mistral-small-latest", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content == "Salut"
        assert reply.usage.prompt_tokens == 4
        fake.script(text="", tool_calls=[WEATHER])
        events = list(
            client.chat.stream(
                model="mistral-small-latest", messages=[{"role": "user", "content": "hi"}]
            )
        )
        assert events[-1].data.usage is not None and events[-1].data.usage.completion_tokens == 7
        arguments = "".join(
            call.function.arguments
            for event in events
            for call in (event.data.choices[0].delta.tool_calls or [])
            if isinstance(call.function.arguments, str)
        )
        assert json.loads(arguments) == {"city": "Paris"}
        embedding = client.embeddings.create(model="mistral-embed", inputs=["a"])
        assert len(embedding.data[0].embedding) == 8
        fake.script(error_status=429)
        with pytest.raises(mistral_errors.SDKError):
            client.chat.complete(
                model="mistral-small-latest", messages=[{"role": "user", "content": "hi"}]
            )
    finally:
        fake.stop()


def test_the_anthropic_sdk_parses_the_anthropic_fake():
    import anthropic

    fake = start_fake("anthropic")
    try:
        client = anthropic.Anthropic(base_url=fake.base_url, api_key="k", max_retries=0)
        fake.script(text="Hello", prompt_tokens=10, completion_tokens=2, cached_tokens=4)
        message = client.messages.create(
            model="claude-x", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        )
        assert message.content[0].text == "Hello"
        assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (6, 4)
        fake.script(text="Let me check.", tool_calls=[WEATHER])
        with client.messages.stream(
            model="claude-x", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            final = stream.get_final_message()
        assert final.stop_reason == "tool_use"
        assert final.content[1].input == {"city": "Paris"}
        assert final.usage.output_tokens == 7
        fake.script(error_status=529)
        with pytest.raises(anthropic.InternalServerError) as caught:
            client.messages.create(
                model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
            )
        assert caught.value.status_code == 529
        fake.script(text="abcdef", pieces=3, error_after_chunks=1)
        with (
            pytest.raises(anthropic.APIStatusError),
            client.messages.stream(
                model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
            ) as stream,
        ):
            for _ in stream:
                pass
    finally:
        fake.stop()


def test_the_google_genai_sdk_parses_the_gemini_fake():
    from google import genai
    from google.genai import errors as genai_errors
    from google.genai import types

    fake = start_fake("google")
    try:
        client = genai.Client(
            api_key="k",
            http_options=types.HttpOptions(base_url=fake.base_url, api_version="v1beta"),
        )
        fake.script(text="Ciao", prompt_tokens=5, completion_tokens=1)
        reply = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
        assert reply.text == "Ciao"
        assert reply.usage_metadata.prompt_token_count == 5
        fake.script(text="ab", tool_calls=[WEATHER])
        chunks = list(
            client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi")
        )
        assert chunks[-1].function_calls[0].args == {"city": "Paris"}
        assert chunks[-1].usage_metadata.candidates_token_count == 7
        vectors = client.models.embed_content(model="text-embedding-004", contents=["a", "b"])
        assert len(vectors.embeddings) == 2
        fake.script(error_status=429)
        with pytest.raises(genai_errors.ClientError) as caught:
            client.models.generate_content(model="gemini-2.5-flash", contents="hi")
        assert caught.value.code == 429
    finally:
        fake.stop()


def _bedrock_client(fake: FakeUpstreamBase) -> Any:
    """boto3's bedrock-runtime client pointed at the Bedrock fake."""
    import boto3

    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=fake.base_url,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
    )


def test_boto3_parses_the_bedrock_fakes_converse_event_stream_and_titan_embeddings():
    fake = start_fake("bedrock")
    try:
        client = _bedrock_client(fake)
        model = "anthropic.claude-3-haiku-20240307-v1:0"
        fake.script(text="Hej", prompt_tokens=8, completion_tokens=1)
        reply = client.converse(
            modelId=model, messages=[{"role": "user", "content": [{"text": "hi"}]}]
        )
        assert reply["output"]["message"]["content"][0]["text"] == "Hej"
        assert reply["usage"]["inputTokens"] == 8
        assert fake.received[-1].headers["authorization"].startswith("AWS4-HMAC-SHA256")
        fake.script(text="ab", tool_calls=[WEATHER])
        events = list(
            client.converse_stream(
                modelId=model, messages=[{"role": "user", "content": [{"text": "hi"}]}]
            )["stream"]
        )
        kinds = [next(iter(event)) for event in events]
        assert kinds[0] == "messageStart" and kinds[-2:] == ["messageStop", "metadata"]
        arguments = "".join(
            e["contentBlockDelta"]["delta"]["toolUse"]["input"]
            for e in events
            if "contentBlockDelta" in e and "toolUse" in e["contentBlockDelta"]["delta"]
        )
        assert json.loads(arguments) == {"city": "Paris"}
        fake.script(text="abcdef", error_after_chunks=1)
        from botocore.exceptions import EventStreamError as BotocoreEventStreamError

        with pytest.raises(BotocoreEventStreamError) as caught:
            list(
                client.converse_stream(
                    modelId=model, messages=[{"role": "user", "content": [{"text": "hi"}]}]
                )["stream"]
            )
        assert caught.value.response["Error"]["Code"] == "throttlingException"
        fake.script(error_status=403)
        with pytest.raises(client.exceptions.AccessDeniedException):
            client.converse(modelId=model, messages=[{"role": "user", "content": [{"text": "hi"}]}])
        body = client.invoke_model(
            modelId="amazon.titan-embed-text-v2:0", body=json.dumps({"inputText": "hello"})
        )
        assert len(json.loads(body["body"].read())["embedding"]) == 8
    finally:
        fake.stop()


def test_botocore_refuses_the_bedrock_fakes_crc_corrupted_stream_as_the_gateway_does():
    from botocore.exceptions import EventStreamError as BotocoreEventStreamError

    fake = start_fake("bedrock")
    try:
        client = _bedrock_client(fake)
        fake.script(malformed="crc")
        from botocore.eventstream import ChecksumMismatch

        with pytest.raises((ChecksumMismatch, BotocoreEventStreamError)):
            list(
                client.converse_stream(
                    modelId="m", messages=[{"role": "user", "content": [{"text": "hi"}]}]
                )["stream"]
            )
    finally:
        fake.stop()


def test_the_cohere_sdk_parses_the_cohere_fake():
    import cohere
    from cohere.errors import TooManyRequestsError

    fake = start_fake("cohere")
    try:
        client = cohere.ClientV2(api_key="k", base_url=fake.base_url)
        fake.script(text="Hola", prompt_tokens=6, completion_tokens=1)
        reply = client.chat(model="command-a-03-2025", messages=[{"role": "user", "content": "hi"}])
        assert reply.message.content[0].text == "Hola"
        assert reply.usage.billed_units.input_tokens == 6
        fake.script(text="", tool_calls=[WEATHER])
        events = list(
            client.chat_stream(
                model="command-a-03-2025", messages=[{"role": "user", "content": "hi"}]
            )
        )
        assert events[-1].type == "message-end"
        assert events[-1].delta.finish_reason == "TOOL_CALL"
        arguments = "".join(
            e.delta.message.tool_calls.function.arguments or ""
            for e in events
            if e.type in ("tool-call-start", "tool-call-delta")
        )
        assert json.loads(arguments) == {"city": "Paris"}
        vectors = client.embed(
            model="embed-v4.0", texts=["a"], input_type="search_document", embedding_types=["float"]
        )
        assert len(vectors.embeddings.float_[0]) == 8
        fake.script(error_status=429)
        with pytest.raises(TooManyRequestsError):
            client.chat(
                model="command-a-03-2025",
                messages=[{"role": "user", "content": "hi"}],
                request_options={"max_retries": 0},  # the SDK would otherwise retry the 429
            )
    finally:
        fake.stop()
