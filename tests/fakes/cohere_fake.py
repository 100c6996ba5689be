"""Fake Cohere v2 API: POST /v2/chat (JSON and SSE of typed events), POST /v2/embed, and
Cohere's {"message"} error shape."""

from __future__ import annotations

import json
import uuid
from typing import Any

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


class CohereFake(FakeUpstreamBase):
    provider = "cohere"
    path_prefix = ""
    stream_headers = {"content-type": "text/event-stream"}

    def route(self, request: HttpRequest) -> HttpResponse | None:
        if request.path not in ("/v2/chat", "/v2/embed"):
            return json_response(404, {"message": f"path {request.path} not found"})
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return json_response(401, {"message": "no api key supplied"})
        return None

    def native_error(self, status: int, scripted: Scripted) -> HttpResponse:
        return json_response(status, {"message": f"fake {status}"}, scripted.error_headers)

    def _finish(self, scripted: Scripted) -> str:
        return scripted.finish or ("TOOL_CALL" if scripted.tool_calls else "COMPLETE")

    def _usage(self, scripted: Scripted) -> dict[str, Any]:
        counts = {
            "input_tokens": scripted.prompt_tokens,
            "output_tokens": scripted.completion_tokens,
        }
        return {
            "billed_units": dict(counts),
            "tokens": dict(counts),
            "cached_tokens": scripted.cached_tokens,
        }

    def _calls(self, scripted: Scripted) -> list[dict[str, Any]]:
        return [
            {
                "id": call.id or f"fake_call_{index}",
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for index, call in enumerate(scripted.tool_calls)
        ]

    async def respond(self, request: HttpRequest, scripted: Scripted) -> HttpResponse:
        body = request.json() or {}
        broken = (
            malformed_json_response(scripted.malformed)
            if scripted.malformed and not body.get("stream")
            else None
        )
        if broken is not None:
            return broken
        if request.path == "/v2/embed":
            texts = body.get("texts") or []
            dimension = int(body.get("output_dimension") or 8)
            return json_response(
                200,
                {
                    "id": str(uuid.uuid4()),
                    "embeddings": {
                        "float": [deterministic_vector(text, dimension) for text in texts]
                    },
                    "texts": texts,
                    "meta": {
                        "api_version": {"version": "2"},
                        "billed_units": {"input_tokens": scripted.prompt_tokens},
                    },
                    "response_type": "embeddings_by_type",
                },
            )
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant"}
            if scripted.text:
                message["content"] = [{"type": "text", "text": scripted.text}]
            if scripted.tool_calls:
                message["tool_plan"] = "I will call the tool."
                message["tool_calls"] = self._calls(scripted)
            response: dict[str, Any] = {
                "id": str(uuid.uuid4()),
                "finish_reason": self._finish(scripted),
                "message": message,
            }
            if scripted.malformed != "no_usage":
                response["usage"] = self._usage(scripted)
            return json_response(200, response)
        if scripted.malformed == "wrong_content_type":
            return wrong_content_type_stream()
        message_id = str(uuid.uuid4())
        frames = [
            sse(
                {
                    "id": message_id,
                    "type": "message-start",
                    "delta": {
                        "message": {
                            "role": "assistant",
                            "content": [],
                            "tool_plan": "",
                            "tool_calls": [],
                            "citations": [],
                        }
                    },
                },
                "message-start",
            )
        ]
        content_frames: list[bytes] = []
        if scripted.text:
            content_frames.append(
                sse(
                    {
                        "type": "content-start",
                        "index": 0,
                        "delta": {"message": {"content": {"type": "text", "text": ""}}},
                    },
                    "content-start",
                )
            )
            for piece in scripted.text_pieces():
                content_frames.append(
                    sse(
                        {
                            "type": "content-delta",
                            "index": 0,
                            "delta": {"message": {"content": {"text": piece}}},
                        },
                        "content-delta",
                    )
                )
            content_frames.append(sse({"type": "content-end", "index": 0}, "content-end"))
        for index, call in enumerate(self._calls(scripted)):
            content_frames.append(
                sse(
                    {
                        "type": "tool-call-start",
                        "index": index,
                        "delta": {
                            "message": {
                                "tool_calls": {
                                    **call,
                                    "function": {"name": call["function"]["name"], "arguments": ""},
                                }
                            }
                        },
                    },
                    "tool-call-start",
                )
            )
            for piece in Scripted.argument_pieces(scripted.tool_calls[index].arguments):
                content_frames.append(
                    sse(
                        {
                            "type": "tool-call-delta",
                            "index": index,
                            "delta": {
                                "message": {"tool_calls": {"function": {"arguments": piece}}}
                            },
                        },
                        "tool-call-delta",
                    )
                )
            content_frames.append(sse({"type": "tool-call-end", "index": index}, "tool-call-end"))
        if scripted.error_after_chunks is not None:
            kept = [frame for frame in content_frames if b"-delta" in frame][
                : scripted.error_after_chunks
            ]
            frames += kept
            frames.append(
                sse(
                    {
                        "type": "message-end",
                        "delta": {
                            "finish_reason": "ERROR",
                            "error": "internal error while generating",
                        },
                    },
                    "message-end",
                )
            )
            return self.stream_response(frames)
        frames += content_frames
        end: dict[str, Any] = {
            "type": "message-end",
            "delta": {"finish_reason": self._finish(scripted)},
        }
        if scripted.malformed != "no_usage":
            end["delta"]["usage"] = self._usage(scripted)
        if scripted.malformed == "truncated":
            return self.stream_response(frames)
        if scripted.malformed == "bad_json":
            frames.insert(1, b'event: content-delta\ndata: {"type": "content-delta", \n\n')
            return self.stream_response(frames)
        if scripted.malformed == "reset":
            return self.stream_response(frames[:2], reset=True)
        frames.append(sse(end, "message-end"))
        return self.stream_response(frames)
