"""Mistral (La Plateforme) adapter: OpenAI-shaped chat and embeddings with a few renames.

Mistral rejects unknown fields (422), so the body is rebuilt from the fields it knows:
max_completion_tokens → max_tokens, seed → random_seed, stream_options is never sent (usage
rides on the final chunk). Not available, refused with 400 unsupported_parameter: logprobs,
top_logprobs, logit_bias. Embeddings are requested as floats and base64-encoded by the
gateway when the client asks for base64.
"""

from __future__ import annotations

from typing import Any

from gateway.providers.base import EmbeddingResult, Usage
from gateway.providers.common import (
    check_encoding_format,
    embedding_result,
    native_params,
    reject_unsupported,
)
from gateway.providers.errors import malformed
from gateway.providers.openai import OpenAIAdapter

MISTRAL_CHAT_FIELDS = (
    "messages",
    "temperature",
    "top_p",
    "stream",
    "stop",
    "response_format",
    "tools",
    "tool_choice",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "parallel_tool_calls",
    "prediction",
    "safe_prompt",
)
# Passed under their own names, but seed: Mistral calls it random_seed.
MISTRAL_PARAMS = {name: name for name in MISTRAL_CHAT_FIELDS} | {"seed": "random_seed"}


class MistralAdapter(OpenAIAdapter):
    provider = "mistral"
    supports_embeddings = True
    send_stream_options = False

    def native_body(self, body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
        reject_unsupported(self.provider, body, ("logprobs", "top_logprobs", "logit_bias"))
        params = native_params(body, MISTRAL_PARAMS, max_tokens_as="max_tokens")
        return {"model": upstream_model, **params}

    async def embeddings(self, body: dict[str, Any], upstream_model: str) -> EmbeddingResult:
        encoding_format = check_encoding_format(self.provider, body)
        payload: dict[str, Any] = {"model": upstream_model, "input": body.get("input")}
        if body.get("dimensions") is not None:
            payload["output_dimension"] = body["dimensions"]
        data = await self._post(self.embeddings_path, payload)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise malformed(self.provider, "no data in embeddings response")
        ordered = sorted(items, key=lambda item: int(item.get("index", 0)))
        vectors = [list(item.get("embedding") or []) for item in ordered]
        raw_usage = data.get("usage") or {}
        usage = Usage(
            prompt_tokens=int(raw_usage.get("prompt_tokens") or raw_usage.get("total_tokens") or 0),
            completion_tokens=0,
        )
        return embedding_result(
            vectors, body.get("model") or upstream_model, usage, encoding_format
        )
