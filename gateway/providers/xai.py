"""xAI (Grok) adapter: an OpenAI-compatible chat API, stream_options and logprobs included.
No embeddings API (a 400 embeddings_not_supported, not a silent fallback)."""

from __future__ import annotations

from typing import Any

from gateway.providers.openai import OpenAIAdapter


class XaiAdapter(OpenAIAdapter):
    provider = "xai"
    supports_embeddings = False

    async def embeddings(self, body: dict[str, Any], upstream_model: str) -> Any:
        return await super(OpenAIAdapter, self).embeddings(body, upstream_model)
