"""Moonshot (Kimi) adapter: an OpenAI-compatible chat API.

Differences handled here: max_completion_tokens → max_tokens; stream_options is not sent
(Moonshot reports usage inside the finishing choice of the last chunk, which the shared
OpenAI stream reader picks up). Not available, refused with 400 unsupported_parameter:
logprobs, top_logprobs, logit_bias, seed. No embeddings API.
"""

from __future__ import annotations

from typing import Any

from gateway.providers.common import max_output_tokens, reject_unsupported
from gateway.providers.openai import GATEWAY_EXTENSION_FIELDS, OpenAIAdapter


class MoonshotAdapter(OpenAIAdapter):
    provider = "moonshot"
    supports_embeddings = False
    send_stream_options = False

    def native_body(self, body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
        reject_unsupported(self.provider, body, ("logprobs", "top_logprobs", "logit_bias", "seed"))
        native = {
            key: value
            for key, value in body.items()
            if key not in GATEWAY_EXTENSION_FIELDS
            and key not in ("max_completion_tokens", "stream_options", "user", "store", "metadata")
        }
        native["model"] = upstream_model
        limit = max_output_tokens(body)
        if limit is not None:
            native["max_tokens"] = limit
        return native

    async def embeddings(self, body: dict[str, Any], upstream_model: str) -> Any:
        # Moonshot offers no embeddings endpoint: the base class answers 400.
        return await super(OpenAIAdapter, self).embeddings(body, upstream_model)
