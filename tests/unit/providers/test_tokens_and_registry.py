"""Token estimation (offline, bpe_openai) and provider endpoints read from the environment."""

from __future__ import annotations

import httpx

from gateway.providers.bedrock import BedrockAdapter
from gateway.providers.mistral import MistralAdapter
from gateway.providers.registry import PROVIDERS, build_adapter, build_client, endpoints_from_env
from gateway.providers.tokens import (
    count_text_tokens,
    estimate_embedding_tokens,
    estimate_prompt_tokens,
    estimate_usage,
)


def test_text_tokens_are_counted_with_o200k_base():
    # "hello world" is two tokens in o200k_base ([24912, 2375]).
    assert count_text_tokens("hello world") == 2
    assert count_text_tokens("") == 0


def test_estimated_stream_usage_counts_what_was_delivered_and_says_it_is_estimated():
    body = {"messages": [{"role": "user", "content": "hello world"}]}
    chunks = [
        {"choices": [{"delta": {"content": "hello"}}]},
        {"choices": [{"delta": {"content": " world"}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{}"}}]}}]},
    ]
    usage = estimate_usage(body, chunks)
    assert usage.source == "estimated"
    assert usage.prompt_tokens == 3 + 3 + 2  # priming + one message framing + "hello world"
    assert usage.completion_tokens == count_text_tokens("hello worldf{}")


def test_images_count_a_flat_placeholder_not_their_base64_length():
    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100000}}]}]}
    assert estimate_prompt_tokens(body) < 1000


def test_embedding_estimates_accept_strings_and_token_arrays():
    assert estimate_embedding_tokens("hello world") == 2
    assert estimate_embedding_tokens(["hello", "world"]) == 2
    assert estimate_embedding_tokens([1, 2, 3]) == 3


def test_only_configured_providers_get_an_endpoint_with_defaults_for_the_rest():
    env = {
        "LEDGERGATE_OPENAI_API_KEY": "sk-test",
        "LEDGERGATE_MISTRAL_BASE_URL": "http://127.0.0.1:9/v1",
        "LEDGERGATE_BEDROCK_API_KEY": "bedrock-key",
        "LEDGERGATE_BEDROCK_REGION": "eu-central-1",
    }
    endpoints = endpoints_from_env(env)
    assert set(endpoints) == {"openai", "mistral", "bedrock"}
    assert endpoints["openai"].base_url == "https://api.openai.com/v1"
    assert endpoints["mistral"].base_url == "http://127.0.0.1:9/v1"
    assert endpoints["bedrock"].region == "eu-central-1"


def test_bedrock_counts_as_configured_with_aws_credentials_alone():
    endpoints = endpoints_from_env({"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s"})
    assert endpoints["bedrock"].region == "us-east-1"
    assert endpoints["bedrock"].api_key is None


async def test_every_provider_builds_its_adapter_on_one_shared_client():
    env = {f"LEDGERGATE_{p.upper()}_API_KEY": "k" for p in PROVIDERS}
    client = build_client()
    async with client:
        adapters = {p: build_adapter(p, e, client) for p, e in endpoints_from_env(env).items()}
    assert set(adapters) == set(PROVIDERS)
    assert isinstance(adapters["mistral"], MistralAdapter)
    assert isinstance(adapters["bedrock"], BedrockAdapter)
    assert all(adapter.client is client for adapter in adapters.values())
    assert isinstance(client.timeout, httpx.Timeout) and client.timeout.connect == 5.0
