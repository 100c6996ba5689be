"""A built-in simulated upstream that speaks the OpenAI chat-completions wire format
exactly (non-streaming, SSE streaming with stream_options.include_usage, embeddings,
errors in the OpenAI envelope). `ledgergate demo` uses it where no provider key is set.

Answers are deterministic; usage is counted with the same o200k tokenizer the gateway
uses, so a demo's charges are reproducible to the token.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import re
import struct
import time
import uuid
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from gateway.providers.common import chunk as openai_chunk
from gateway.responses import JsonResponse
from gateway.tokens import count_text_tokens, estimate_prompt_tokens

EMBEDDING_DIMENSIONS = 256  # the default; a request's `dimensions` is honoured
EMBEDDING_DIMENSIONS_MAX = 4096
FINGERPRINT = "fp_ledgergate_sim"
_WORD = re.compile(r"[^\W_]+")


def hashed_ngram_embedding(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic embedding that is honest about what it is: hashed features (the
    "hashing trick"), no learned meaning. The features are the lower-cased words (weight 1)
    and each word's character trigrams, padded (weight 1 shared across them), each
    hashed with BLAKE2b to a dimension and a sign; the vector is L2-normalised. Two texts
    sharing most words (and word stems: "capital"/"capitals") get a high cosine similarity;
    texts sharing none get about 0. It knows no synonyms: "car" and "automobile" are unrelated."""
    vector = [0.0] * dimensions
    words = _WORD.findall(text.lower())

    def add(feature: str, weight: float) -> None:
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        bucket = int.from_bytes(digest[:4], "little") % dimensions
        vector[bucket] += weight if digest[4] & 1 else -weight

    for word in words:
        add("w:" + word, 1.0)
        padded = f"^{word}$"
        trigrams = [padded[i : i + 3] for i in range(max(len(padded) - 2, 1))]
        for trigram in trigrams:
            add("c:" + trigram, 1.0 / len(trigrams))
    if not words:  # no word at all: a fixed direction per text, still deterministic
        add("t:" + text, 1.0)
    norm = math.sqrt(sum(value * value for value in vector)) or 1.0
    return [value / norm for value in vector]


def simulated_reply(body: dict[str, Any]) -> str:
    last_user = ""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            last_user = (
                content
                if isinstance(content, str)
                else " ".join(str(p.get("text", "")) for p in content or [] if isinstance(p, dict))
            )
            break
    words = len(last_user.split())
    digest = hashlib.sha256(last_user.encode()).hexdigest()[:8]
    return (
        f"This is Ledgergate's simulated upstream. Your message had {words} words "
        f"(fingerprint {digest}). Configure a provider key to reach a real model."
    )


def completion_chunk(
    completion_id: str,
    created: int,
    model: str,
    fingerprint: str,
    delta: dict[str, Any],
    finish_reason: str | None,
    *,
    usage_slot: bool,
) -> dict[str, Any]:
    """One chat.completion.chunk as OpenAI streams it: the gateway's own chunk, with a
    fingerprint. With `usage_slot` (the client asked for stream_options.include_usage) every
    chunk carries "usage": null; the usage itself comes in a last chunk (`usage_chunk`)."""
    data = openai_chunk(completion_id, model, created, delta, finish_reason)
    data["system_fingerprint"] = fingerprint
    if usage_slot:
        data["usage"] = None
    return data


def usage_chunk(
    completion_id: str, created: int, model: str, fingerprint: str, usage: dict[str, Any]
) -> dict[str, Any]:
    """The include_usage chunk OpenAI sends after the finishing one: no choices, the usage."""
    data = completion_chunk(completion_id, created, model, fingerprint, {}, None, usage_slot=False)
    data["choices"] = []
    data["usage"] = usage
    return data


class SimulatorState:
    def __init__(
        self,
        chunk_delay_s: float = 0.0,
        reply: str | None = None,
        words_per_chunk: int = 2,
        response_delay_s: float = 0.0,
        error_status: int | None = None,
        fail_after_chunks: int | None = None,
    ) -> None:
        self.chunk_delay_s = chunk_delay_s
        self.reply = reply
        self.words_per_chunk = words_per_chunk
        self.response_delay_s = response_delay_s  # before answering (both modes)
        self.error_status = error_status  # answer this HTTP error instead of a completion
        # stream: an in-band error after N content chunks
        self.fail_after_chunks = fail_after_chunks
        # Providers often echo the offending input in their error text: "{prompt}" is replaced
        # by the last user message, as such an echo would.
        self.error_message = "simulated failure"
        # Tests of a misbehaving upstream: report these usage fields instead of the counts.
        self.usage_override: dict[str, Any] | None = None
        self.requests: list[dict[str, Any]] = []  # chat requests, as received
        self.embedding_requests: list[dict[str, Any]] = []
        # The Authorization header of each chat request, so a test can see which credential
        # reached this upstream (never printed or logged by the simulator).
        self.authorizations: list[str | None] = []
        # The header names of each chat request (names only), so a test can see that no
        # gateway-only header (X-Conversation-Id, X-Trace-Id) was forwarded.
        self.header_names: list[set[str]] = []


def _error(status: int, message: str, error_type: str, code: str | None = None) -> JsonResponse:
    return JsonResponse(
        {"error": {"message": message, "type": error_type, "param": None, "code": code}},
        status_code=status,
    )


def create_simulator_app(state: SimulatorState | None = None) -> FastAPI:
    state = state or SimulatorState()
    app = FastAPI(title="Ledgergate simulated upstream")
    app.state.sim = state

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(
                400, "We could not parse the JSON body of your request.", "invalid_request_error"
            )
        if not isinstance(body, dict) or not body.get("messages"):
            return _error(
                400,
                "'messages' is a required property",
                "invalid_request_error",
                "missing_required_parameter",
            )
        state.requests.append(body)
        state.authorizations.append(request.headers.get("authorization"))
        state.header_names.append({name.lower() for name in request.headers})
        if state.response_delay_s:
            await asyncio.sleep(state.response_delay_s)
        if state.error_status is not None:
            kinds = {
                429: "rate_limit_exceeded",
                401: "invalid_api_key",
                500: "server_error",
                503: "overloaded",
            }
            last_user = next(
                (
                    m.get("content")
                    for m in reversed(body["messages"])
                    if isinstance(m, dict) and m.get("role") == "user"
                ),
                "",
            )
            message = state.error_message.replace("{prompt}", str(last_user))
            response = _error(
                state.error_status, message, "api_error", kinds.get(state.error_status)
            )
            if state.error_status == 429:
                response.headers["retry-after"] = "7"
            return response
        reply = state.reply or simulated_reply(body)
        prompt_tokens = estimate_prompt_tokens(body)
        # `n` choices, each the same reply and each billed its own output, as OpenAI does.
        requested_n = body.get("n")
        choices_n = requested_n if isinstance(requested_n, int) and requested_n > 0 else 1
        completion_tokens = count_text_tokens(reply) * choices_n
        completion_id = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        model = str(body.get("model") or "simulated")
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
        }
        if state.usage_override is not None:
            usage = {**usage, **state.usage_override}
        if not body.get("stream"):
            return JsonResponse(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": index,
                            "message": {"role": "assistant", "content": reply, "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                        for index in range(choices_n)
                    ],
                    "usage": usage,
                    "system_fingerprint": FINGERPRINT,
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        words = reply.split(" ")
        pieces = [
            " ".join(words[i : i + state.words_per_chunk])
            + (" " if i + state.words_per_chunk < len(words) else "")
            for i in range(0, len(words), state.words_per_chunk)
        ]

        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            data = completion_chunk(
                completion_id, created, model, FINGERPRINT, delta, finish, usage_slot=include_usage
            )
            return b"data: " + orjson.dumps(data) + b"\n\n"

        async def events() -> Any:
            yield chunk({"role": "assistant", "content": "", "refusal": None}, None)
            for index, piece in enumerate(pieces):
                if state.fail_after_chunks is not None and index == state.fail_after_chunks:
                    error = {
                        "error": {
                            "message": "simulated mid-stream failure",
                            "type": "server_error",
                            "param": None,
                            "code": "server_error",
                        }
                    }
                    yield b"data: " + orjson.dumps(error) + b"\n\n"
                    return
                if state.chunk_delay_s:
                    await asyncio.sleep(state.chunk_delay_s)
                yield chunk({"content": piece}, None)
            yield chunk({}, "stop")
            if include_usage:
                final = usage_chunk(completion_id, created, model, FINGERPRINT, usage)
                yield b"data: " + orjson.dumps(final) + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        body = orjson.loads(await request.body())
        state.embedding_requests.append(body)
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        encoding = body.get("encoding_format", "float")
        dimensions = body.get("dimensions")
        if not isinstance(dimensions, int) or not 0 < dimensions <= EMBEDDING_DIMENSIONS_MAX:
            dimensions = EMBEDDING_DIMENSIONS
        data = []
        tokens = 0
        for index, item in enumerate(items):
            text = str(item)
            tokens += count_text_tokens(text)
            vector = hashed_ngram_embedding(text, dimensions)
            embedding: Any = vector
            if encoding == "base64":
                embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        return JsonResponse(
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "simulator"}
            ],
        }

    return app
