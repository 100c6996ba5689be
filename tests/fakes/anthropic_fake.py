"""Fake Anthropic Messages API: POST /v1/messages (JSON and named-event SSE), Anthropic's
error shape and headers. Requires a key (x-api-key, or Bearer as newer SDKs send) and
anthropic-version like the real API."""

from __future__ import annotations

import uuid
from typing import Any

from tests.fakes.server import (
    FakeUpstreamBase,
    HttpRequest,
    HttpResponse,
    Scripted,
    json_response,
    malformed_json_response,
    sse,
    wrong_content_type_stream,
)

STATUS_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


class AnthropicFake(FakeUpstreamBase):
    provider = "anthropic"
    path_prefix = ""
    stream_headers = {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        "request-id": "req_fake",
    }

    def route(self, request: HttpRequest) -> HttpResponse | None:
        if request.path != "/v1/messages" or request.method != "POST":
            return json_response(
                404, {"type": "error", "error": {"type": "not_found_error", "message": "Not found"}}
            )
        # Newer SDKs authenticate with a Bearer token, older ones (and the gateway) with x-api-key.
        if not request.headers.get("x-api-key") and not request.headers.get(
            "authorization", ""
        ).startswith("Bearer "):
            return json_response(
                401,
                {
                    "type": "error",
                    "error": {
                        "type": "authentication_error",
                        "message": "x-api-key header is required",
                    },
                },
            )
        if not request.headers.get("anthropic-version"):
            return json_response(
                400,
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": "anthropic-version header is required",
                    },
                },
            )
        body = request.json() or {}
        if "max_tokens" not in body:
            return json_response(
                400,
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": "max_tokens: Field required",
                    },
                },
            )
        return None

    def native_error(self, status: int, scripted: Scripted) -> HttpResponse:
        error_type = scripted.error_type or STATUS_ERROR_TYPES.get(status, "api_error")
        return json_response(
            status,
            {"type": "error", "error": {"type": error_type, "message": f"fake {error_type}"}},
            {"request-id": "req_fake", **scripted.error_headers},
        )

    def _stop_reason(self, scripted: Scripted) -> str:
        return scripted.finish or ("tool_use" if scripted.tool_calls else "end_turn")

    def _usage(self, scripted: Scripted, output_tokens: int) -> dict[str, Any]:
        # Anthropic's input_tokens excludes cache reads: the fake splits the scripted prompt.
        return {
            "input_tokens": scripted.prompt_tokens - scripted.cached_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": scripted.cached_tokens,
            "output_tokens": output_tokens,
        }

    def message(self, body: dict[str, Any], scripted: Scripted) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if scripted.text:
            content.append({"type": "text", "text": scripted.text})
        for index, call in enumerate(scripted.tool_calls):
            content.append(
                {
                    "type": "tool_use",
                    "id": call.id or f"toolu_fake{index}",
                    "name": call.name,
                    "input": call.arguments,
                }
            )
        return {
            "id": "msg_" + uuid.uuid4().hex[:24],
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "unknown"),
            "content": content,
            "stop_reason": self._stop_reason(scripted),
            "stop_sequence": None,
            "usage": self._usage(scripted, scripted.completion_tokens),
        }

    def _block_frames(
        self,
        index: int,
        content_block: dict[str, Any],
        deltas: list[dict[str, Any]],
        ping: bool = False,
    ) -> list[bytes]:
        """One content block as Anthropic streams it: its start, a ping where asked, its
        deltas, its stop."""
        frames = [
            sse(
                {"type": "content_block_start", "index": index, "content_block": content_block},
                "content_block_start",
            )
        ]
        if ping:
            frames.append(sse({"type": "ping"}, "ping"))
        for delta in deltas:
            frames.append(
                sse(
                    {"type": "content_block_delta", "index": index, "delta": delta},
                    "content_block_delta",
                )
            )
        frames.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
        return frames

    async def respond(self, request: HttpRequest, scripted: Scripted) -> HttpResponse:
        body = request.json() or {}
        if not body.get("stream"):
            broken = malformed_json_response(scripted.malformed) if scripted.malformed else None
            if broken is not None:
                return broken
            return json_response(200, self.message(body, scripted), {"request-id": "req_fake"})
        if scripted.malformed == "wrong_content_type":
            return wrong_content_type_stream()
        start_message = self.message(body, scripted)
        start_message["content"] = []
        start_message["stop_reason"] = None
        start_message["usage"] = self._usage(scripted, 1)
        frames = [sse({"type": "message_start", "message": start_message}, "message_start")]
        content_frames: list[bytes] = []
        block = 0
        if scripted.text:
            text_deltas = [
                {"type": "text_delta", "text": piece} for piece in scripted.text_pieces()
            ]
            content_frames += self._block_frames(
                block, {"type": "text", "text": ""}, text_deltas, ping=True
            )
            block += 1
        for index, call in enumerate(scripted.tool_calls):
            tool_use = {
                "type": "tool_use",
                "id": call.id or f"toolu_fake{index}",
                "name": call.name,
                "input": {},
            }
            argument_deltas = [
                {"type": "input_json_delta", "partial_json": piece}
                for piece in Scripted.argument_pieces(call.arguments)
            ]
            content_frames += self._block_frames(block, tool_use, argument_deltas)
            block += 1
        if scripted.error_after_chunks is not None:
            # Count only content-carrying deltas as "chunks" (start/ping frames carry nothing).
            kept: list[bytes] = []
            deltas = 0
            for frame in content_frames:
                if b"content_block_delta" in frame:
                    if deltas == scripted.error_after_chunks:
                        break
                    deltas += 1
                kept.append(frame)
            frames += kept
            frames.append(
                sse(
                    {
                        "type": "error",
                        "error": {"type": "overloaded_error", "message": "Overloaded"},
                    },
                    "error",
                )
            )
            return self.stream_response(frames)
        frames += content_frames
        frames.append(
            sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self._stop_reason(scripted), "stop_sequence": None},
                    "usage": {"output_tokens": scripted.completion_tokens},
                },
                "message_delta",
            )
        )
        if scripted.malformed == "truncated":
            return self.stream_response(frames[:-2])
        if scripted.malformed == "bad_json":
            frames.insert(
                2, b'event: content_block_delta\ndata: {"type": "content_block_delta", \n\n'
            )
            return self.stream_response(frames)
        if scripted.malformed == "reset":
            return self.stream_response(frames[:2], reset=True)
        frames.append(sse({"type": "message_stop"}, "message_stop"))
        return self.stream_response(frames)
