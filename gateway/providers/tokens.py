"""Token estimation for usage_source "estimated" (a provider that reports no usage, or a
stream cut off before its usage arrived).

Uses bpe_openai's o200k_base, which ships its merge table inside the wheel: tiktoken would
download its files at run time, which the gateway must never do. The count is an estimate
for non-OpenAI tokenizers, and every Usage built here says so (source="estimated").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.providers.base import USAGE_SOURCE_ESTIMATED, Usage

# One tokenizer and one prompt formula for the whole gateway: the core's (gateway/tokens.py)
# sizes reservations, and the same numbers estimate usage here, so a reservation and an
# estimated charge never disagree about what a prompt costs.
from gateway.tokens import count_text_tokens, estimate_prompt_tokens  # noqa: E402


def completion_text_of_chunks(chunks: Iterable[dict[str, Any]]) -> str:
    """Concatenate what the client was actually sent: content and tool-call arguments."""
    pieces: list[str] = []
    for chunk in chunks:
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                pieces.append(str(delta["content"]))
            for call in delta.get("tool_calls") or []:
                function = call.get("function") or {}
                if function.get("name"):
                    pieces.append(str(function["name"]))
                if function.get("arguments"):
                    pieces.append(str(function["arguments"]))
    return "".join(pieces)


def estimate_usage(body: dict[str, Any], delivered_chunks: Iterable[dict[str, Any]]) -> Usage:
    """Estimated usage of a streamed request: prompt from the request, completion from what
    was delivered. Used when the provider sent no usage (or the stream broke before it)."""
    return Usage(
        prompt_tokens=estimate_prompt_tokens(body),
        completion_tokens=count_text_tokens(completion_text_of_chunks(delivered_chunks)),
        source=USAGE_SOURCE_ESTIMATED,
    )


def estimate_usage_from_text(body: dict[str, Any], completion_text: str) -> Usage:
    return Usage(
        prompt_tokens=estimate_prompt_tokens(body),
        completion_tokens=count_text_tokens(completion_text),
        source=USAGE_SOURCE_ESTIMATED,
    )


def estimate_embedding_tokens(inputs: Any) -> int:
    if isinstance(inputs, str):
        return count_text_tokens(inputs)
    if isinstance(inputs, list):
        if inputs and all(isinstance(item, int) for item in inputs):
            return len(inputs)  # one pre-tokenized input
        total = 0
        for item in inputs:
            if isinstance(item, str):
                total += count_text_tokens(item)
            elif isinstance(item, list):
                total += len(item)
        return total
    return 0
