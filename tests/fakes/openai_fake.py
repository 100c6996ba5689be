"""Fake OpenAI-format upstream (also Mistral, Moonshot and xAI flavours).

Speaks POST /v1/chat/completions (JSON and SSE), POST /v1/embeddings, GET /v1/models, and the
OpenAI error envelope. Flavours reproduce the differences adapters must handle:
  * "openai" / "xai": usage in an extra `choices: []` chunk when stream_options.include_usage.
  * "mistral": refuses unknown fields with 422 (as La Plateforme does) and puts usage on the
    finishing chunk; no stream_options.
  * "moonshot": usage inside the finishing choice (`choices[0].usage`).

    with FakeUpstream() as upstream:
        upstream.script(text="Hi", prompt_tokens=5, completion_tokens=1)
        client = openai.OpenAI(base_url=upstream.base_url, api_key="k")
"""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from typing import Any

from gateway.simulator import completion_chunk, usage_chunk
from tests.fakes.server import (
    FakeUpstreamBase,
    HttpRequest,
    HttpResponse,
    Scripted,
    deterministic_vector,
    json_response,
    malformed_json_response,
    sse,
    wrong_content_type_stream,
)

FINGERPRINT = "fp_fake"
MISTRAL_CHAT_FIELDS = {
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "stream",
    "stop",
    "random_seed",
    "response_format",
    "tools",
    "tool_choice",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "parallel_tool_calls",
    "prediction",
    "safe_prompt",
    "metadata",
}
ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}


class FakeUpstream(FakeUpstreamBase):
    provider = "openai"
    path_prefix = "/v1"
    stream_headers = {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
    }

    def __init__(
        self, flavour: str = "openai", models: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o")
    ) -> None:
        super().__init__()
        self.flavour = flavour
        self.provider = flavour
        self.models = models

    def route(self, request: HttpRequest) -> HttpResponse | None:
        if request.method == "GET" and request.path == "/v1/models":
            return json_response(
                200,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": model,
                            "object": "model",
                            "created": 1700000000,
                            "owned_by": self.flavour,
                        }
                        for model in self.models
                    ],
                },
            )
        if request.path not in ("/v1/chat/completions", "/v1/embeddings"):
            return json_response(
                404,
                {
                    "error": {
                        "message": f"Unknown path {request.path}",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "unknown_url",
                    }
                },
            )
        if self.flavour == "mistral" and request.path == "/v1/chat/completions":
            body = request.json() or {}
            extra = sorted(set(body) - MISTRAL_CHAT_FIELDS)
            if extra:
                return json_response(
                    422,
                    {
                        "object": "error",
                        "message": f"Extra inputs are not permitted: {extra}",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    },
                )
        return None

    def native_error(self, status: int, scripted: Scripted) -> HttpResponse:
        error_type, code = ERROR_TYPES.get(status, ("server_error", None))
        return json_response(
            status,
            {
                "error": {
                    "message": f"fake {status}",
                    "type": error_type,
                    "param": None,
                    "code": code,
                }
            },
            scripted.error_headers,
        )

    async def respond(self, request: HttpRequest, scripted: Scripted) -> HttpResponse:
        body = request.json() or {}
        if request.path == "/v1/embeddings":
            return self._embeddings(body, scripted)
        if body.get("stream"):
            return self._stream(body, scripted)
        broken = malformed_json_response(scripted.malformed) if scripted.malformed else None
        if broken is not None:
            return broken
        return json_response(200, self.completion(body, scripted))

    # --- bodies ----------------------------------------------------------------------
    def _usage(self, scripted: Scripted) -> dict[str, Any]:
        return {
            "prompt_tokens": scripted.prompt_tokens,
            "completion_tokens": scripted.completion_tokens,
            "total_tokens": scripted.prompt_tokens + scripted.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": scripted.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }

    def _finish(self, scripted: Scripted) -> str:
        return scripted.finish or ("tool_calls" if scripted.tool_calls else "stop")

    def _call_id(self, index: int, scripted: Scripted) -> str:
        call = scripted.tool_calls[index]
        return call.id or f"call_fake{index}"

    def completion(self, body: dict[str, Any], scripted: Scripted) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": scripted.text if scripted.text or not scripted.tool_calls else None,
            "refusal": None,
        }
        if scripted.tool_calls:
            message["tool_calls"] = [
                {
                    "id": self._call_id(i, scripted),
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
                for i, call in enumerate(scripted.tool_calls)
            ]
        count = int(body.get("n") or 1)
        result: dict[str, Any] = {
            "id": "chatcmpl-" + uuid.uuid4().hex[:24],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "unknown"),
            "choices": [
                {
                    "index": i,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self._finish(scripted),
                }
                for i in range(count)
            ],
            "system_fingerprint": FINGERPRINT,
        }
        if scripted.malformed != "no_usage":
            result["usage"] = self._usage(scripted)
        return result

    def _stream(self, body: dict[str, Any], scripted: Scripted) -> HttpResponse:
        if scripted.malformed == "wrong_content_type":
            return wrong_content_type_stream()
        completion_id = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        model = body.get("model", "unknown")
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        usage_on_every_chunk = self.flavour in ("openai", "xai") and include_usage

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return completion_chunk(
                completion_id,
                created,
                model,
                FINGERPRINT,
                delta,
                finish,
                usage_slot=usage_on_every_chunk,
            )

        frames: list[bytes] = [sse(chunk({"role": "assistant", "content": "", "refusal": None}))]
        content_frames = [sse(chunk({"content": piece})) for piece in scripted.text_pieces()]
        for index, call in enumerate(scripted.tool_calls):
            # Mistral sends each tool call whole in one delta (its SDK requires a name on every
            # tool-call delta); OpenAI streams the arguments in fragments.
            whole = self.flavour == "mistral"
            content_frames.append(
                sse(
                    chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": index,
                                    "id": self._call_id(index, scripted),
                                    "type": "function",
                                    "function": {
                                        "name": call.name,
                                        "arguments": json.dumps(call.arguments) if whole else "",
                                    },
                                }
                            ]
                        }
                    )
                )
            )
            if whole:
                continue
            for piece in Scripted.argument_pieces(call.arguments):
                content_frames.append(
                    sse(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
                )
        if scripted.error_after_chunks is not None:
            frames += content_frames[: scripted.error_after_chunks]
            frames.append(
                sse(
                    {
                        "error": {
                            "message": "The server had an error while processing your request.",
                            "type": "server_error",
                            "param": None,
                            "code": None,
                        }
                    }
                )
            )
            return self.stream_response(frames)
        frames += content_frames
        if scripted.malformed == "truncated":
            return self.stream_response(frames[: max(1, len(frames) - 1)])
        if scripted.malformed == "bad_json":
            frames.append(b'data: {"id": "chatcmpl-x", "choices": [\n\n')
            return self.stream_response(frames)
        if scripted.malformed == "reset":
            return self.stream_response(frames[:2], reset=True)
        final = chunk({}, self._finish(scripted))
        usage = None if scripted.malformed == "no_usage" else self._usage(scripted)
        if usage is not None and self.flavour == "mistral":
            final["usage"] = usage
        if usage is not None and self.flavour == "moonshot":
            final["choices"][0]["usage"] = usage
        frames.append(sse(final))
        if usage is not None and usage_on_every_chunk:
            frames.append(sse(usage_chunk(completion_id, created, model, FINGERPRINT, usage)))
        frames.append(b"data: [DONE]\n\n")
        return self.stream_response(frames)

    def _embeddings(self, body: dict[str, Any], scripted: Scripted) -> HttpResponse:
        broken = malformed_json_response(scripted.malformed) if scripted.malformed else None
        if broken is not None:
            return broken
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        dimensions = int(body.get("dimensions") or 8)
        data = []
        for index, text in enumerate(texts):
            vector = deterministic_vector(str(text), dimensions)
            embedding: Any = vector
            if body.get("encoding_format") == "base64":
                embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        result: dict[str, Any] = {
            "object": "list",
            "data": data,
            "model": body.get("model", "unknown"),
            "usage": {
                "prompt_tokens": scripted.prompt_tokens,
                "total_tokens": scripted.prompt_tokens,
            },
        }
        if self.flavour == "mistral":
            result["id"] = "embd-" + uuid.uuid4().hex[:24]  # Mistral's response carries an id
            result["usage"]["completion_tokens"] = 0
        return json_response(200, result)
