"""The contract every provider adapter honours.

The gateway's internal request format is the OpenAI chat-completions request body (a dict
already validated by gateway/validation.py). An adapter translates it to the provider's
native wire format, calls the provider with a pooled httpx.AsyncClient, and translates the
answer back into OpenAI objects. Streaming always comes out as OpenAI
`chat.completion.chunk` dicts, whatever the provider streams in; the gateway serialises
them as SSE and adds the usage chunk and `[DONE]` itself.

Errors: an adapter raises UpstreamError (never a bare httpx error) with the HTTP status the
client should see and an OpenAI-style `type` / `code`. Timeouts map to 504, connection
failures to 502, malformed upstream output to 502 `upstream_malformed_response`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

# Each provider's public API root, where LEDGERGATE_<PROVIDER>_BASE_URL does not say
# otherwise. OpenAI-shaped providers take a base URL that already ends in /v1 (as their SDKs
# do); the native ones take the host, and the adapter adds the versioned path. Kept here,
# beside the endpoint type, not in the registry: the admin commands (BYOK keys) need the
# URLs without importing every adapter and the HTTP transport.
DEFAULT_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "mistral": "https://api.mistral.ai/v1",
    "google": "https://generativelanguage.googleapis.com",
    "bedrock": "",  # derived from the region: https://bedrock-runtime.<region>.amazonaws.com
    "cohere": "https://api.cohere.com",
    "moonshot": "https://api.moonshot.ai/v1",
    "xai": "https://api.x.ai/v1",
}

USAGE_SOURCE_PROVIDER = "provider"
USAGE_SOURCE_ESTIMATED = "estimated"


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    source: str = USAGE_SOURCE_PROVIDER  # "provider" | "estimated"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_openai(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }


@dataclass(frozen=True, slots=True)
class ProviderEndpoint:
    """Where and how to reach one provider (from LEDGERGATE_<P>_BASE_URL / _API_KEY)."""

    provider: (
        str  # "openai", "anthropic", "mistral", "google", "bedrock", "cohere", "moonshot", "xai"
    )
    base_url: str
    api_key: str | None = field(default=None, repr=False)  # never in a repr, hence a log
    region: str | None = None  # bedrock
    name: str = "default"  # an endpoint label when several serve one model


class UpstreamError(Exception):
    """A provider call failed. `status` is what the gateway answers the client."""

    def __init__(
        self,
        *,
        status: int,
        code: str,
        message: str,
        error_type: str = "api_error",
        provider: str,
        param: str | None = None,
        retry_after_seconds: float | None = None,
        retry_after_source: str | None = None,  # "provider_header" | "gateway_default"
        hint: str | None = None,
        retryable: bool = False,
        provider_text: bool = False,
        local: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.error_type = error_type
        self.provider = provider
        self.param = param
        self.retry_after_seconds = retry_after_seconds
        self.retry_after_source = retry_after_source
        self.hint = hint
        self.retryable = retryable
        # True when `message` carries the provider's own words, which may echo the prompt:
        # the client sees them, the ledger never records them.
        self.provider_text = provider_text
        # True when the gateway itself failed before reaching the provider (its own upstream
        # connection pool was exhausted): says nothing about the provider, so it never feeds
        # a breaker or the router's statistics.
        self.local = local


def invalid_request(
    provider: str, code: str, message: str, param: str | None = None
) -> UpstreamError:
    """The client's own mistake, refused before (or instead of) a provider call: a 400 of type
    invalid_request_error naming the field at fault."""
    return UpstreamError(
        status=400,
        code=code,
        message=message,
        error_type="invalid_request_error",
        provider=provider,
        param=param,
    )


@dataclass(slots=True)
class ChatResult:
    body: dict[str, Any]  # an OpenAI `chat.completion` object, `usage` included
    usage: Usage


@dataclass(slots=True)
class EmbeddingResult:
    body: dict[str, Any]  # an OpenAI `list` of `embedding` objects, `usage` included
    usage: Usage


class ChatStream(ABC):
    """An async iterator of OpenAI chunk dicts (without usage). After iteration ends,
    `usage` holds the provider's usage, or None if it gave none (the gateway then estimates)
    and `finish_reason` the last finish reason seen."""

    usage: Usage | None = None
    finish_reason: str | None = None
    # The prompt size the provider reported early in the stream (Anthropic's message_start,
    # Gemini's running usageMetadata), kept even when the stream breaks before its final
    # usage: a failed stream is then charged the provider's prompt count, not an estimate.
    prompt_tokens_reported: int | None = None

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[dict[str, Any]]: ...

    @abstractmethod
    async def aclose(self) -> None:
        """Cancel the upstream call (closes the HTTP response)."""


@dataclass(slots=True)
class AdapterLimits:
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 120.0
    write_timeout_s: float = 30.0
    pool_timeout_s: float = 5.0
    max_connections: int = 200
    max_keepalive_connections: int = 50
    extra: dict[str, Any] = field(default_factory=dict)

    def httpx_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect_timeout_s,
            read=self.read_timeout_s,
            write=self.write_timeout_s,
            pool=self.pool_timeout_s,
        )


class ProviderAdapter(ABC):
    provider: str = ""
    supports_embeddings: bool = False

    def __init__(self, endpoint: ProviderEndpoint, client: httpx.AsyncClient) -> None:
        self.endpoint = endpoint
        self.client = client

    @abstractmethod
    async def chat(self, body: dict[str, Any], upstream_model: str) -> ChatResult: ...

    @abstractmethod
    async def chat_stream(self, body: dict[str, Any], upstream_model: str) -> ChatStream:
        """Start the call; raise UpstreamError if it fails before the first chunk."""

    async def embeddings(self, body: dict[str, Any], upstream_model: str) -> EmbeddingResult:
        raise invalid_request(
            self.provider,
            "embeddings_not_supported",
            f"provider {self.provider} offers no embeddings endpoint",
            param="model",
        )
