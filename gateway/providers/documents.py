"""Documents (PDF) in chat messages: three block shapes in, one canonical shape inside.

Clients send documents three ways:
  * Anthropic  {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": …}}
  * OpenAI Responses-style  {"type": "input_file", "filename": …, "file_data": "data:application/pdf;base64,…"}
  * OpenAI chat "file"  {"type": "file", "file": {"filename": …, "file_data": "data:application/pdf;base64,…"}}

`normalize_documents` rewrites all of them, at entry, to the OpenAI chat `file` shape (so the
OpenAI adapter forwards it untouched) and every other adapter translates from that one shape
with `document_parts`. `check_document_support` refuses a document for a model that cannot
read one, with the document-capable alternatives: a document is never dropped silently.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from domain.errors import InvalidCommand, ModelDoesNotSupportDocuments

PDF_MEDIA_TYPE = "application/pdf"
SUPPORTED_DOCUMENT_MEDIA_TYPES = frozenset({PDF_MEDIA_TYPE})
# Anthropic and Bedrock both cap a request near 32 MB / 4.5 MB per document; the gateway
# refuses anything larger than the most generous provider limit instead of buffering it.
MAX_DOCUMENT_BYTES = 32 * 1024 * 1024
DEFAULT_FILENAME = "document.pdf"

# (provider, model prefix) pairs whose native API reads PDFs. Prefix match on the upstream
# model id; keep this list conservative: a wrong "yes" would make the provider fail instead.
DOCUMENT_CAPABLE_MODEL_PREFIXES: tuple[tuple[str, str], ...] = (
    ("anthropic", "claude-"),
    ("bedrock", "anthropic.claude-"),
    ("bedrock", "us.anthropic.claude-"),
    ("bedrock", "eu.anthropic.claude-"),
    ("bedrock", "amazon.nova-"),
    ("bedrock", "us.amazon.nova-"),
    ("bedrock", "eu.amazon.nova-"),
    ("google", "gemini-"),
    ("openai", "gpt-4o"),
    ("openai", "gpt-4.1"),
    ("openai", "gpt-5"),
    ("openai", "o1"),
    ("openai", "o3"),
    ("openai", "o4"),
)

DOCUMENT_BLOCK_TYPES = frozenset({"document", "input_file", "file"})


@dataclass(frozen=True, slots=True)
class DocumentPart:
    media_type: str
    data_base64: str
    filename: str

    def raw_bytes(self) -> bytes:
        return base64.b64decode(self.data_base64)


def _invalid(message: str) -> InvalidCommand:
    return InvalidCommand(message, param="messages")


def parse_data_url(url: str) -> tuple[str, str]:
    """`data:<media type>;base64,<data>` → (media type, base64 data)."""
    if not url.startswith("data:"):
        raise _invalid(
            "documents must be inline (base64 or a data: URL); the gateway does not fetch URLs "
            "or read uploaded file ids"
        )
    header, sep, data = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        raise _invalid("a document data URL must be base64-encoded (data:<type>;base64,…)")
    return header[: -len(";base64")].strip().lower(), data


def _check_payload(media_type: str, data: str) -> str:
    if media_type not in SUPPORTED_DOCUMENT_MEDIA_TYPES:
        raise _invalid(
            f"unsupported document media type {media_type[:60]!r}; supported: "
            + ", ".join(sorted(SUPPORTED_DOCUMENT_MEDIA_TYPES))
        )
    if not isinstance(data, str) or not data:
        raise _invalid("a document block carries no data")
    if len(data) * 3 // 4 > MAX_DOCUMENT_BYTES:
        raise _invalid(f"a document is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("a document's data is not valid base64") from None
    return data


def _canonical(media_type: str, data: str, filename: str | None) -> dict[str, Any]:
    data = _check_payload(media_type, data)
    return {
        "type": "file",
        "file": {
            "filename": (filename or DEFAULT_FILENAME)[:255],
            "file_data": f"data:{media_type};base64,{data}",
        },
    }


def normalize_block(block: dict[str, Any]) -> dict[str, Any]:
    kind = block.get("type")
    if kind == "document":
        source = block.get("source")
        if not isinstance(source, dict):
            raise _invalid("a document block needs a source object")
        if source.get("type") != "base64":
            raise _invalid(
                "only base64 document sources are accepted; the gateway does not fetch URLs"
            )
        media_type = str(source.get("media_type") or "").lower()
        filename = block.get("title") if isinstance(block.get("title"), str) else None
        return _canonical(media_type, source.get("data"), filename)  # type: ignore[arg-type]
    if kind == "input_file":
        if block.get("file_id") and not block.get("file_data"):
            raise _invalid("file ids are not supported (no /v1/files); send file_data inline")
        media_type, data = parse_data_url(str(block.get("file_data") or ""))
        return _canonical(media_type, data, block.get("filename"))
    if kind == "file":
        file = block.get("file")
        if not isinstance(file, dict):
            raise _invalid("a file block needs a file object")
        if file.get("file_id") and not file.get("file_data"):
            raise _invalid("file ids are not supported (no /v1/files); send file_data inline")
        media_type, data = parse_data_url(str(file.get("file_data") or ""))
        return _canonical(media_type, data, file.get("filename"))
    return block


def normalize_documents(body: dict[str, Any]) -> dict[str, Any]:
    """Return the body with every document block in the canonical `file` shape.
    The input is not mutated (the original body may be logged or hashed elsewhere)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return body
    changed = False
    new_messages: list[Any] = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(
            isinstance(part, dict) and part.get("type") in DOCUMENT_BLOCK_TYPES for part in content
        ):
            new_content = [
                normalize_block(part) if isinstance(part, dict) else part for part in content
            ]
            new_messages.append({**message, "content": new_content})
            changed = True
        else:
            new_messages.append(message)
    if not changed:
        return body
    return {**body, "messages": new_messages}


def has_documents(body: dict[str, Any]) -> bool:
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") in DOCUMENT_BLOCK_TYPES:
                    return True
    return False


def document_part(block: dict[str, Any]) -> DocumentPart:
    """Read a canonical `file` block (after normalize_documents) for an adapter."""
    file = block.get("file") or {}
    media_type, data = parse_data_url(str(file.get("file_data") or ""))
    return DocumentPart(
        media_type=media_type, data_base64=data, filename=str(file.get("filename") or DEFAULT_FILENAME)
    )


def supports_documents(provider: str, upstream_model: str) -> bool:
    return any(
        provider == capable_provider and upstream_model.startswith(prefix)
        for capable_provider, prefix in DOCUMENT_CAPABLE_MODEL_PREFIXES
    )


def check_document_support(
    body: dict[str, Any],
    provider: str,
    upstream_model: str,
    *,
    requested_model: str | None = None,
    candidates: Iterable[tuple[str, str]] = (),
) -> None:
    """Raise ModelDoesNotSupportDocuments if the body carries a document this model cannot read.

    `candidates` are the (provider, model) pairs the gateway could route to; the error lists
    the document-capable ones so the client can pick one.
    """
    if not has_documents(body) or supports_documents(provider, upstream_model):
        return
    alternatives = sorted({model for p, model in candidates if supports_documents(p, model)})
    shown = requested_model or upstream_model
    message = f"model {shown!r} cannot read documents (PDF)"
    if alternatives:
        message += "; document-capable models: " + ", ".join(alternatives)
    raise ModelDoesNotSupportDocuments(message, param="model", alternatives=alternatives)


# One well-known document-capable model per provider, offered as alternatives in the error
# when the client's model cannot read a document (only for providers this gateway serves).
DOCUMENT_CAPABLE_SUGGESTIONS: dict[str, tuple[str, ...]] = {
    "anthropic": ("claude-sonnet-4-5", "claude-haiku-4-5"),
    "bedrock": ("anthropic.claude-3-5-sonnet-20240620-v1:0", "amazon.nova-pro-v1:0"),
    "google": ("gemini-2.5-flash", "gemini-2.5-pro"),
    "openai": ("gpt-4o", "gpt-4.1"),
}


def document_capable_suggestions(configured_providers: Iterable[str]) -> list[tuple[str, str]]:
    return [
        (provider, model)
        for provider in configured_providers
        for model in DOCUMENT_CAPABLE_SUGGESTIONS.get(provider, ())
    ]
