"""OpenAI chat completions and embeddings (also the base for OpenAI-compatible providers:
Mistral, Moonshot, xAI)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from gateway import json_bytes
from gateway.providers.base import (
    ChatResult,
    ChatStream,
    EmbeddingResult,
    ProviderAdapter,
    Usage,
)
from gateway.providers.common import open_sse, truncated
from gateway.providers.errors import (
    error_from_response,
    error_from_status,
    error_from_transport,
    malformed,
)
from gateway.providers.sse import SseTooLarge, iter_sse
from gateway.validation import GATEWAY_EXTENSION_FIELDS as _GATEWAY_EXTENSION_FIELDS

# Fields the gateway accepts beside OpenAI's; never forwarded upstream.
# One home: gateway/validation.py (the same list chat and embeddings strip).
GATEWAY_EXTENSION_FIELDS = _GATEWAY_EXTENSION_FIELDS


def _reported_count(value: Any) -> Any:
    """A token count as reported: an integral number as int; a fractional one is kept as it
    came, so settlement flags it as an upstream error (domain/usage.py) instead of silently
    truncating it."""
    if isinstance(value, float) and not value.is_integer():
        return value
    return int(value or 0)


def usage_from_openai(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    try:
        prompt = _reported_count(raw.get("prompt_tokens"))
        completion = _reported_count(raw.get("completion_tokens"))
    except (TypeError, ValueError, OverflowError):
        return None
    details = raw.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    return Usage(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached)


class OpenAIAdapter(ProviderAdapter):
    provider = "openai"
    supports_embeddings = True
    chat_path = "/chat/completions"
    embeddings_path = "/embeddings"
    # OpenAI-compatible providers that reject (or ignore) stream_options report usage on the
    # last chunk anyway; subclasses switch this off rather than send a field they refuse.
    send_stream_options = True

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.endpoint.api_key:
            headers["authorization"] = f"Bearer {self.endpoint.api_key}"
        return headers

    def url(self, path: str) -> str:
        return self.endpoint.base_url.rstrip("/") + path

    def native_body(self, body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
        native = {k: v for k, v in body.items() if k not in GATEWAY_EXTENSION_FIELDS}
        native["model"] = upstream_model
        return native

    async def _post(self, path: str, payload: dict[str, Any]) -> Any:
        try:
            response = await self.client.post(
                self.url(path), content=json_bytes.dumps(payload), headers=self.headers()
            )
        except httpx.HTTPError as error:
            raise error_from_transport(self.provider, error) from None
        if response.status_code >= 400:
            raise error_from_response(self.provider, response)
        try:
            return response.json()
        except ValueError:
            raise malformed(self.provider, "body is not JSON") from None

    async def chat(self, body: dict[str, Any], upstream_model: str) -> ChatResult:
        payload = self.native_body(body, upstream_model)
        payload.pop("stream", None)
        payload.pop("stream_options", None)
        data = await self._post(self.chat_path, payload)
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise malformed(self.provider, "no choices in chat completion")
        usage = usage_from_openai(data.get("usage"))
        if usage is None:
            raise malformed(self.provider, "chat completion without usage")
        return ChatResult(body=data, usage=usage)

    async def chat_stream(self, body: dict[str, Any], upstream_model: str) -> ChatStream:
        payload = self.native_body(body, upstream_model)
        payload["stream"] = True
        # Always ask for usage so charges are exact; the gateway hides it if the client did not ask.
        if self.send_stream_options:
            payload["stream_options"] = {"include_usage": True}
        else:
            payload.pop("stream_options", None)
        response = await open_sse(self, self.url(self.chat_path), self.headers(), payload)
        return OpenAIChatStream(self.provider, response)

    async def embeddings(self, body: dict[str, Any], upstream_model: str) -> EmbeddingResult:
        payload = self.native_body(body, upstream_model)
        data = await self._post(self.embeddings_path, payload)
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise malformed(self.provider, "no data in embeddings response")
        raw_usage = data.get("usage") or {}
        prompt = int(raw_usage.get("prompt_tokens") or raw_usage.get("total_tokens") or 0)
        return EmbeddingResult(body=data, usage=Usage(prompt_tokens=prompt, completion_tokens=0))


class OpenAIChatStream(ChatStream):
    def __init__(self, provider: str, response: httpx.Response) -> None:
        self.provider = provider
        self.response = response
        self.usage = None
        self.finish_reason = None

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        saw_done = False
        try:
            async for event in iter_sse(self.response):
                if event.data == "[DONE]":
                    saw_done = True
                    break
                if not event.data:
                    continue
                try:
                    chunk = orjson.loads(event.data)
                except orjson.JSONDecodeError:
                    raise malformed(self.provider, "stream chunk is not JSON") from None
                if not isinstance(chunk, dict):
                    raise malformed(self.provider, "stream chunk is not an object")
                if "error" in chunk:
                    message = chunk["error"]
                    status = 502
                    if isinstance(message, dict) and isinstance(message.get("code"), int):
                        status = message["code"]
                    raise error_from_status(self.provider, status, {}, chunk)
                usage = usage_from_openai(chunk.get("usage"))
                if usage is not None:
                    self.usage = usage
                chunk.pop("usage", None)
                choices = chunk.get("choices")
                if not isinstance(choices, list):
                    raise malformed(self.provider, "stream chunk without choices")
                if not choices:
                    continue  # the include_usage chunk: usage captured above
                for choice in choices:
                    if not isinstance(choice, dict):
                        continue
                    # Moonshot puts usage inside the finishing choice rather than the chunk.
                    choice_usage = usage_from_openai(choice.pop("usage", None))
                    if choice_usage is not None:
                        self.usage = choice_usage
                    if choice.get("finish_reason"):
                        self.finish_reason = choice["finish_reason"]
                yield chunk
        except SseTooLarge as error:
            raise malformed(self.provider, str(error)) from None
        except httpx.HTTPError as error:
            raise error_from_transport(self.provider, error) from None
        finally:
            await self.response.aclose()
        if not saw_done:
            raise truncated(self.provider, "[DONE]")

    async def aclose(self) -> None:
        await self.response.aclose()
