"""Shared helpers for the provider adapter tests."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from gateway.providers.base import AdapterLimits, ProviderAdapter, ProviderEndpoint, UpstreamError
from gateway.providers.registry import build_adapter, build_client
from tests.fakes.server import FakeUpstreamBase

TEST_TIMEOUT_S = 10.0

MODELS = {
    "openai": "gpt-4o-mini",
    "mistral": "mistral-small-latest",
    "moonshot": "kimi-k2-0905-preview",
    "xai": "grok-4",
    "anthropic": "claude-sonnet-4-5",
    "google": "gemini-2.5-flash",
    "bedrock": "anthropic.claude-3-haiku-20240307-v1:0",
    "cohere": "command-a-03-2025",
}
EMBEDDING_MODELS = {
    "openai": "text-embedding-3-small",
    "mistral": "mistral-embed",
    "google": "text-embedding-004",
    "bedrock": "amazon.titan-embed-text-v2:0",
    "cohere": "embed-v4.0",
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def make_adapter(
    provider: str, fake: FakeUpstreamBase, *, read_timeout_s: float = 5.0
) -> tuple[ProviderAdapter, httpx.AsyncClient]:
    # The gateway's own client (its transport included), with these tests' timeouts.
    client = build_client(
        AdapterLimits(
            connect_timeout_s=5.0,
            read_timeout_s=read_timeout_s,
            write_timeout_s=5.0,
            pool_timeout_s=5.0,
        )
    )
    endpoint = ProviderEndpoint(
        provider=provider, base_url=fake.base_url, api_key="test-key", region="us-east-1"
    )
    return build_adapter(provider, endpoint, client), client


async def chat_error(provider: str, fake: FakeUpstreamBase) -> UpstreamError:
    """The error `provider`'s adapter raises for one chat against `fake` as it is scripted."""
    adapter, client = make_adapter(provider, fake)
    async with client:
        with pytest.raises(UpstreamError) as caught:
            await adapter.chat(chat_body(provider), MODELS[provider])
    return caught.value


def chat_body(provider: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODELS[provider],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello?"},
        ],
    }
    body.update(extra)
    return body


async def collect(stream: Any) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        return [chunk async for chunk in stream]

    return await asyncio.wait_for(run(), TEST_TIMEOUT_S)


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )


def tool_calls_of(chunks: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    """Reassemble streamed tool calls the way the openai SDK does."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for delta in choice["delta"].get("tool_calls") or []:
                call = calls.setdefault(delta["index"], {"id": "", "name": "", "arguments": ""})
                if delta.get("id"):
                    call["id"] = delta["id"]
                function = delta.get("function") or {}
                if function.get("name"):
                    call["name"] = function["name"]
                call["arguments"] += function.get("arguments") or ""
    return calls
