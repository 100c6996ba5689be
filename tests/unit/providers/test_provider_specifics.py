"""Provider-specific behaviour beyond the common contract: SigV4 signing, Gemini candidates,
Cohere logprobs, Moonshot's usage placement, Mistral's field whitelist on the wire."""

from __future__ import annotations

import httpx
import pytest
from botocore.credentials import Credentials

from gateway.providers.base import ProviderEndpoint
from gateway.providers.bedrock import BedrockAdapter
from gateway.providers.cohere import from_cohere
from gateway.providers.google import from_gemini
from tests.fakes.fixtures import start_fake
from tests.unit.providers.helpers import MODELS, chat_body, collect, make_adapter, text_of


async def test_bedrock_without_an_api_key_signs_with_sigv4_for_its_region():
    fake = start_fake("bedrock")
    try:
        endpoint = ProviderEndpoint("bedrock", fake.base_url, api_key=None, region="eu-central-1")
        async with httpx.AsyncClient(timeout=5.0) as client:
            adapter = BedrockAdapter(endpoint, client, credentials=Credentials("AKIDEXAMPLE", "secret"))
            result = await adapter.chat(chat_body("bedrock"), MODELS["bedrock"])
        authorization = fake.received[-1].headers["authorization"]
    finally:
        fake.stop()
    assert result.body["choices"][0]["message"]["content"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-central-1/bedrock/aws4_request" in authorization
    assert "secret" not in authorization


async def test_bedrock_model_ids_with_colons_are_sent_as_one_encoded_path_segment():
    fake = start_fake("bedrock")
    try:
        adapter, client = make_adapter("bedrock", fake)
        async with client:
            await adapter.chat(chat_body("bedrock"), "anthropic.claude-3-haiku-20240307-v1:0")
        request = fake.received[-1]
    finally:
        fake.stop()
    assert request.raw_path == "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    assert request.headers["authorization"] == "Bearer test-key"


async def test_gemini_candidate_count_becomes_n_choices_streamed_and_not():
    fake = start_fake("google")
    try:
        fake.script(text="same")
        adapter, client = make_adapter("google", fake)
        async with client:
            result = await adapter.chat(chat_body("google", n=2), MODELS["google"])
        sent = fake.requests[-1]
    finally:
        fake.stop()
    assert sent["generationConfig"]["candidateCount"] == 2
    assert [choice["index"] for choice in result.body["choices"]] == [0, 1]


def test_gemini_logprobs_map_to_openai_token_logprobs():
    data = {
        "candidates": [
            {
                "content": {"parts": [{"text": "Hi"}], "role": "model"},
                "finishReason": "STOP",
                "logprobsResult": {
                    "chosenCandidates": [{"token": "Hi", "logProbability": -0.1}],
                    "topCandidates": [{"candidates": [{"token": "Hi", "logProbability": -0.1}, {"token": "Hey", "logProbability": -2.5}]}],
                },
            }
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1, "thoughtsTokenCount": 4},
    }
    body, usage = from_gemini(data, "gemini-2.5-flash")
    logprobs = body["choices"][0]["logprobs"]["content"]
    assert logprobs[0]["token"] == "Hi" and logprobs[0]["logprob"] == -0.1
    assert [alt["token"] for alt in logprobs[0]["top_logprobs"]] == ["Hi", "Hey"]
    assert usage.completion_tokens == 5  # thinking tokens are billed as output


def test_gemini_prompt_blocked_is_a_content_filter_finish_not_a_crash():
    body, _ = from_gemini({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4}}, "g")
    assert body["choices"][0]["finish_reason"] == "content_filter"


def test_cohere_billed_units_are_the_usage_and_logprobs_are_mapped():
    data = {
        "finish_reason": "MAX_TOKENS",
        "message": {"role": "assistant", "content": [{"type": "text", "text": "Hi"}]},
        "usage": {"billed_units": {"input_tokens": 5, "output_tokens": 1}, "tokens": {"input_tokens": 70, "output_tokens": 1}},
        "logprobs": [{"token_ids": [42], "text": "Hi", "logprobs": [-0.3]}],
    }
    body, usage = from_cohere(data, "command-a-03-2025")
    assert (usage.prompt_tokens, usage.completion_tokens) == (5, 1)
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["logprobs"]["content"][0] == {"token": "Hi", "logprob": -0.3, "bytes": None, "top_logprobs": []}


def test_a_cohere_generation_that_ended_in_error_is_an_upstream_error():
    from gateway.providers.base import UpstreamError

    with pytest.raises(UpstreamError) as caught:
        from_cohere({"finish_reason": "ERROR", "message": {"role": "assistant"}, "usage": {"billed_units": {}}}, "c")
    assert caught.value.status == 502


async def test_moonshot_usage_inside_the_finishing_choice_is_captured():
    fake = start_fake("moonshot")
    try:
        fake.script(text="hello", prompt_tokens=40, completion_tokens=2)
        adapter, client = make_adapter("moonshot", fake)
        async with client:
            stream = await adapter.chat_stream(chat_body("moonshot", stream=True, stream_options={"include_usage": True}), MODELS["moonshot"])
            chunks = await collect(stream)
        sent = fake.requests[-1]
    finally:
        fake.stop()
    assert "stream_options" not in sent
    assert text_of(chunks) == "hello"
    assert stream.usage is not None and (stream.usage.prompt_tokens, stream.usage.completion_tokens) == (40, 2)
    assert all("usage" not in choice for chunk in chunks for choice in chunk["choices"])


async def test_mistral_receives_no_field_it_would_reject_even_from_an_openai_sdk_body():
    fake = start_fake("mistral")
    try:
        adapter, client = make_adapter("mistral", fake)
        body = chat_body("mistral", stream=True, stream_options={"include_usage": True}, user="u", max_completion_tokens=9, seed=4)
        async with client:
            stream = await adapter.chat_stream(body, MODELS["mistral"])
            await collect(stream)
        sent = fake.requests[-1]
    finally:
        fake.stop()
    assert sent["max_tokens"] == 9 and sent["random_seed"] == 4
    assert stream.usage is not None  # on the finishing chunk, as Mistral sends it
