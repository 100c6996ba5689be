"""Fake Amazon Bedrock Runtime: /model/{id}/converse, /model/{id}/converse-stream (binary
application/vnd.amazon.eventstream framing) and /model/{id}/invoke for Titan embeddings.
Errors carry x-amzn-ErrorType and {"message"} like the real service. Accepts a Bearer API
key or a SigV4 Authorization header (it records which)."""

from __future__ import annotations

import json
import struct
from typing import Any

from gateway.providers.eventstream import encode_event, encode_exception
from tests.fakes.server import (
    FakeUpstreamBase,
    HttpRequest,
    HttpResponse,
    Scripted,
    deterministic_vector,
    json_response,
    malformed_json_response,
    wrong_content_type_stream,
)

STATUS_ERROR_TYPES = {
    400: "ValidationException",
    401: "UnrecognizedClientException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
EVENTSTREAM = "application/vnd.amazon.eventstream"


class BedrockFake(FakeUpstreamBase):
    provider = "bedrock"
    path_prefix = ""
    stream_headers = {"content-type": EVENTSTREAM, "x-amzn-requestid": "fake"}

    def route(self, request: HttpRequest) -> HttpResponse | None:
        parts = request.path.split("/")
        if (
            len(parts) < 4
            or parts[1] != "model"
            or parts[-1] not in ("converse", "converse-stream", "invoke")
        ):
            return self._error(404, "UnknownOperationException", "Unknown operation")
        auth = request.headers.get("authorization", "")
        if not (auth.startswith("Bearer ") or auth.startswith("AWS4-HMAC-SHA256 ")):
            return self._error(
                403, "MissingAuthenticationTokenException", "Missing Authentication Token"
            )
        return None

    def _error(
        self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None
    ) -> HttpResponse:
        return json_response(
            status,
            {"message": message},
            {
                "x-amzn-errortype": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                "x-amzn-requestid": "fake",
                **(headers or {}),
            },
        )

    def error_response(self, scripted: Scripted) -> HttpResponse:
        status = scripted.error_status or 500
        error_type = scripted.error_type or STATUS_ERROR_TYPES.get(
            status, "InternalServerException"
        )
        if scripted.error_body is not None:
            return json_response(
                status,
                scripted.error_body,
                {"x-amzn-errortype": error_type, **scripted.error_headers},
            )
        return self._error(status, error_type, f"fake {error_type}", scripted.error_headers)

    def _stop_reason(self, scripted: Scripted) -> str:
        return scripted.finish or ("tool_use" if scripted.tool_calls else "end_turn")

    def _usage(self, scripted: Scripted) -> dict[str, Any]:
        usage = {
            "inputTokens": scripted.prompt_tokens - scripted.cached_tokens,
            "outputTokens": scripted.completion_tokens,
            "totalTokens": scripted.prompt_tokens + scripted.completion_tokens,
        }
        if scripted.cached_tokens:
            usage["cacheReadInputTokens"] = scripted.cached_tokens
            usage["cacheWriteInputTokens"] = 0
        return usage

    async def respond(self, request: HttpRequest, scripted: Scripted) -> HttpResponse:
        body = request.json() or {}
        action = request.path.rsplit("/", 1)[-1]
        if action == "invoke":
            broken = malformed_json_response(scripted.malformed) if scripted.malformed else None
            if broken is not None:
                return broken
            text = str(body.get("inputText", ""))
            return json_response(
                200,
                {
                    "embedding": deterministic_vector(text, int(body.get("dimensions") or 8)),
                    "inputTextTokenCount": max(1, len(text.split())),
                },
            )
        if action == "converse":
            broken = malformed_json_response(scripted.malformed) if scripted.malformed else None
            if broken is not None:
                return broken
            content: list[dict[str, Any]] = []
            if scripted.text:
                content.append({"text": scripted.text})
            for index, call in enumerate(scripted.tool_calls):
                content.append(
                    {
                        "toolUse": {
                            "toolUseId": call.id or f"tooluse_fake{index}",
                            "name": call.name,
                            "input": call.arguments,
                        }
                    }
                )
            response: dict[str, Any] = {
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": self._stop_reason(scripted),
                "metrics": {"latencyMs": 1},
            }
            if scripted.malformed != "no_usage":
                response["usage"] = self._usage(scripted)
            return json_response(200, response)
        return self._stream(scripted)

    def _stream(self, scripted: Scripted) -> HttpResponse:
        if scripted.malformed == "wrong_content_type":
            return wrong_content_type_stream()

        def event(kind: str, payload: dict[str, Any]) -> bytes:
            # Real payloads carry a random-length "p" padding field; keep one for fidelity.
            return encode_event(kind, json.dumps({**payload, "p": "abcdefgh"}).encode())

        frames = [event("messageStart", {"role": "assistant"})]
        content_frames: list[bytes] = []
        block = 0
        if scripted.text:
            for piece in scripted.text_pieces():
                content_frames.append(
                    event(
                        "contentBlockDelta", {"contentBlockIndex": block, "delta": {"text": piece}}
                    )
                )
            content_frames.append(event("contentBlockStop", {"contentBlockIndex": block}))
            block += 1
        for index, call in enumerate(scripted.tool_calls):
            content_frames.append(
                event(
                    "contentBlockStart",
                    {
                        "contentBlockIndex": block,
                        "start": {
                            "toolUse": {
                                "toolUseId": call.id or f"tooluse_fake{index}",
                                "name": call.name,
                            }
                        },
                    },
                )
            )
            for piece in Scripted.argument_pieces(call.arguments):
                content_frames.append(
                    event(
                        "contentBlockDelta",
                        {"contentBlockIndex": block, "delta": {"toolUse": {"input": piece}}},
                    )
                )
            content_frames.append(event("contentBlockStop", {"contentBlockIndex": block}))
            block += 1
        if scripted.error_after_chunks is not None:
            kept = [frame for frame in content_frames if b"contentBlockDelta" in frame][
                : scripted.error_after_chunks
            ]
            frames += kept
            frames.append(
                encode_exception(
                    "throttlingException",
                    json.dumps(
                        {"message": "Too many tokens, please wait before trying again."}
                    ).encode(),
                )
            )
            return self.stream_response(frames)
        frames += content_frames
        frames.append(event("messageStop", {"stopReason": self._stop_reason(scripted)}))
        if scripted.malformed != "no_usage":
            frames.append(
                event("metadata", {"usage": self._usage(scripted), "metrics": {"latencyMs": 1}})
            )
        if scripted.malformed == "crc":
            corrupted = bytearray(frames[1])
            corrupted[-5] ^= 0xFF  # flip a payload byte: the message CRC no longer matches
            frames[1] = bytes(corrupted)
            return self.stream_response(frames)
        if scripted.malformed == "truncated":
            # Cut the last message in half: a frame that never completes.
            last = frames[-1]
            return self.stream_response(frames[:-1] + [last[: len(last) // 2]])
        if scripted.malformed == "bad_json":
            frames.insert(
                1, encode_event("contentBlockDelta", b'{"contentBlockIndex": 0, "delta": {')
            )
            return self.stream_response(frames)
        if scripted.malformed == "reset":
            return self.stream_response(frames[:2], reset=True)
        return self.stream_response(frames)


def float32_roundtrip(values: list[float]) -> list[float]:
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))
