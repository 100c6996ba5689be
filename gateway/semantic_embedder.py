"""The semantic cache's embeddings, made through the router as an ordinary embeddings
request of the caller: its API key, its actor, an embedding model its effective tier allows.
So the prompt text only ever reaches a provider the caller's tier allows, and the embedding is
received → admitted (reserved against the key's budget and the balance) → completed like any
other request, audited and charged to the caller. It asks the exact cache (`always`): the same
conversation asked twice is embedded once.

The request is handed to the embeddings route in process (no socket, no middleware): the
route is the one place that decides, reserves and settles an embeddings request.
"""

from __future__ import annotations

import base64
import logging
import struct
from typing import Any

import orjson
from starlette.requests import Request as StarletteRequest

from gateway.lifecycle.embeddings import EMBEDDINGS_CAPABILITY, embeddings
from gateway.response_cache import (
    EmbedAsk,
    Embedded,
    Embedder,
    EmbeddingModelChooser,
    response_cache,
)

log = logging.getLogger("ledgergate.semantic_cache")

# Preferred where the tier allows them: cheap, and asked in the openai wire format.
PREFERRED_EMBEDDING_MODELS = ("text-embedding-3-small", "mistral-embed")


def install_semantic_cache(services: Any) -> None:
    """Give the response cache its embedder (the composition root calls this once)."""
    cache = response_cache(services)
    cache.embedder = router_embedder(services)
    cache.embedding_model_for = embedding_model_chooser(services)


def embedding_model_chooser(services: Any) -> EmbeddingModelChooser:
    """The embedding model for a request's semantic cache: the project's named model when
    its effective tier allows it, else a preferred one, else the first the tier allows; only
    models of a configured provider. None: the semantic cache is not used (logged)."""

    def choose(effective: Any, preferred: str) -> str | None:
        if effective is None:
            return None
        allowed = [
            spec.name
            for spec in services.routing.catalog.in_tier(
                effective, capabilities=EMBEDDINGS_CAPABILITY
            )
            if spec.provider in services.adapters
        ]
        if preferred:
            if preferred in allowed:
                return preferred
            log.warning("semantic cache model not allowed in the tier: the cache is exact only")
            return None
        for name in PREFERRED_EMBEDDING_MODELS:
            if name in allowed:
                return name
        return allowed[0] if allowed else None

    return choose


def router_embedder(services: Any) -> Embedder:
    async def embed(ask: EmbedAsk) -> Embedded:
        request: dict[str, Any] = {
            "model": ask.model,
            "input": ask.text,
            "encoding_format": "float",
        }
        if ask.user is not None:
            request["user"] = ask.user  # the actor, when the caller named it in the body
        body = orjson.dumps(request)
        headers = [
            *((name.encode(), value.encode()) for name, value in ask.caller_headers),
            (b"content-type", b"application/json"),
            (b"x-lg-use-cache", b"always"),
        ]
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/embeddings",
            "raw_path": b"/v1/embeddings",
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 0),
            "server": ("127.0.0.1", 0),
        }
        response = await embeddings(StarletteRequest(scope, receive), services)
        request_id = response.headers.get("x-request-id")
        if response.status_code != 200:
            code = None
            try:
                code = orjson.loads(bytes(response.body))["error"]["code"]
            except Exception:
                code = f"http_{response.status_code}"
            return Embedded(None, request_id, str(code))
        data = orjson.loads(bytes(response.body)).get("data") or []
        if not data:
            return Embedded(None, request_id, "no_embedding")
        return Embedded(_floats(data[0].get("embedding")), request_id)

    return embed


def _floats(embedding: Any) -> list[float] | None:
    if isinstance(embedding, list):
        return [float(value) for value in embedding]
    if isinstance(embedding, str):  # base64 little-endian float32
        raw = base64.b64decode(embedding)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return None
