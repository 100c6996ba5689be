"""One place that knows every provider: its adapter class, its default base URL, and how its
endpoint is read from the environment (LEDGERGATE_<P>_BASE_URL / LEDGERGATE_<P>_API_KEY,
plus LEDGERGATE_BEDROCK_REGION).

What each provider honours of the OpenAI request (✓ translated/passed through; ✗ refused with
400 `unsupported_parameter` naming the parameter — never silently dropped):

| parameter          | openai | xai | mistral      | moonshot | anthropic | google          | bedrock | cohere        |
|--------------------|--------|-----|--------------|----------|-----------|-----------------|---------|---------------|
| n > 1              | ✓      | ✓   | ✓            | ✓        | ✗         | ✓ candidateCount| ✗       | ✗             |
| seed               | ✓      | ✓   | ✓ random_seed| ✗        | ✗         | ✓               | ✗       | ✓             |
| logprobs           | ✓      | ✓   | ✗            | ✗        | ✗         | ✓ (mapped)      | ✗       | ✓ (no top-k)  |
| response_format    | ✓      | ✓   | ✓            | ✓        | ✗ json    | ✓ mime+schema   | ✗ json  | ✓             |
| penalties          | ✓      | ✓   | ✓            | ✓        | ✗         | ✓               | ✗       | ✓             |
| images             | ✓      | ✓   | ✓            | ✓        | ✓         | ✓ (URL by ext.) | inline  | ✓             |
| PDF documents      | ✓ 4o+  | ✗   | ✗            | ✗        | ✓ native  | ✓ inlineData    | ✓ native| ✗             |
| embeddings         | ✓      | ✗   | ✓            | ✗        | ✗         | ✓ (est. usage)  | ✓ Titan | ✓             |
| cached tokens      | ✓      | ✓   | ✓            | ✓        | ✓ reads   | ✓               | ✓ reads | ✓             |
| usage in stream    | ✓      | ✓   | finish chunk | in choice| ✓         | last chunk      | metadata| message-end   |
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping

import httpx

from gateway.providers.anthropic import AnthropicAdapter
from gateway.providers.base import (
    DEFAULT_BASE_URLS,
    AdapterLimits,
    ProviderAdapter,
    ProviderEndpoint,
)
from gateway.providers.bedrock import DEFAULT_REGION, BedrockAdapter
from gateway.providers.cohere import CohereAdapter
from gateway.providers.google import GoogleAdapter
from gateway.providers.http1 import Http1Transport
from gateway.providers.mistral import MistralAdapter
from gateway.providers.moonshot import MoonshotAdapter
from gateway.providers.openai import OpenAIAdapter
from gateway.providers.transport import AiohttpTransport, ProviderClient
from gateway.providers.xai import XaiAdapter

ADAPTER_CLASSES: dict[str, type[ProviderAdapter]] = {
    "openai": OpenAIAdapter,
    "anthropic": AnthropicAdapter,
    "mistral": MistralAdapter,
    "google": GoogleAdapter,
    "bedrock": BedrockAdapter,
    "cohere": CohereAdapter,
    "moonshot": MoonshotAdapter,
    "xai": XaiAdapter,
}
PROVIDERS: tuple[str, ...] = tuple(ADAPTER_CLASSES)


class UnknownProvider(ValueError):
    pass


def endpoint_from_env(provider: str, env: Mapping[str, str]) -> ProviderEndpoint | None:
    """The endpoint for one provider, or None when it is not configured (no key and no base
    URL; Bedrock also counts as configured with AWS credentials in the environment)."""
    prefix = f"LEDGERGATE_{provider.upper()}_"
    base_url = (env.get(prefix + "BASE_URL") or "").strip()
    api_key = (env.get(prefix + "API_KEY") or "").strip() or None
    region = None
    if provider == "bedrock":
        region = (
            env.get("LEDGERGATE_BEDROCK_REGION") or env.get("AWS_REGION") or ""
        ).strip() or None
        has_aws_credentials = bool(env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_PROFILE"))
        if not (base_url or api_key or has_aws_credentials):
            return None
        region = region or DEFAULT_REGION
    elif not (base_url or api_key):
        return None
    return ProviderEndpoint(
        provider=provider,
        base_url=base_url or DEFAULT_BASE_URLS[provider],
        api_key=api_key,
        region=region,
    )


def endpoints_from_env(env: Mapping[str, str]) -> dict[str, ProviderEndpoint]:
    """Every configured provider's endpoint, keyed by provider name."""
    endpoints: dict[str, ProviderEndpoint] = {}
    for provider in PROVIDERS:
        endpoint = endpoint_from_env(provider, env)
        if endpoint is not None:
            endpoints[provider] = endpoint
    return endpoints


def build_adapter(
    provider: str, endpoint: ProviderEndpoint, client: httpx.AsyncClient
) -> ProviderAdapter:
    try:
        adapter_class = ADAPTER_CLASSES[provider]
    except KeyError:
        raise UnknownProvider(
            f"unknown provider {provider[:40]!r}; known: {', '.join(PROVIDERS)}"
        ) from None
    return adapter_class(endpoint, client)


def build_client(limits: AdapterLimits | None = None) -> httpx.AsyncClient:
    """One pooled client for all adapters, with every timeout and pool limit named."""
    limits = limits or AdapterLimits()
    timeout = limits.httpx_timeout()
    transport: httpx.AsyncBaseTransport
    if any(scheme != "no" for scheme in urllib.request.getproxies_environment()):
        # A proxy in the environment (with its NO_PROXY list): aiohttp's client speaks to it
        # (gateway/providers/transport.py).
        transport = AiohttpTransport(limits.max_connections, timeout)
    else:
        # Straight to the providers: a keep-alive pool of asyncio protocols with a C parser,
        # a fraction of aiohttp's CPU per call (gateway/providers/http1.py).
        transport = Http1Transport(limits.max_connections, timeout)
    return ProviderClient(
        timeout=timeout,
        transport=transport,
        # Providers never legitimately redirect an API call; following one could leak the key.
        follow_redirects=False,
    )


def build_adapters_from_env(
    env: Mapping[str, str], client: httpx.AsyncClient
) -> dict[str, ProviderAdapter]:
    return {
        provider: build_adapter(provider, endpoint, client)
        for provider, endpoint in endpoints_from_env(env).items()
    }
