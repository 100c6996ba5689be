"""Fake Google Gemini API (v1beta): generateContent, streamGenerateContent?alt=sse,
batchEmbedContents; Google's error shape. Requires x-goog-api-key like the real API."""

from __future__ import annotations

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

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY"}


class GoogleFake(FakeUpstreamBase):
    provider = "google"
    path_prefix = ""
    stream_headers = {"content-type": "text/event-stream", "x-content-type-options": "nosniff"}

    def route(self, request: HttpRequest) -> HttpResponse | None:
        # The real API serves both /v1beta and /v1 (newer google-genai SDKs default to v1).
        if (
            not request.path.startswith(("/v1beta/models/", "/v1/models/"))
            or ":" not in request.path
        ):
            return json_response(
                404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
            )
        if not request.headers.get("x-goog-api-key"):
            return json_response(
                403,
                {
                    "error": {
                        "code": 403,
                        "message": "Method doesn't allow unregistered callers.",
                        "status": "PERMISSION_DENIED",
                    }
                },
            )
        return None

    def native_error(self, status: int, scripted: Scripted) -> HttpResponse:
        return json_response(
            status,
            {
                "error": {
                    "code": status,
                    "message": f"fake {status}",
                    "status": STATUS_NAMES.get(status, "UNKNOWN"),
                }
            },
            scripted.error_headers,
        )

    def _usage(self, scripted: Scripted, completion: int | None = None) -> dict[str, Any]:
        usage = {
            "promptTokenCount": scripted.prompt_tokens,
            "candidatesTokenCount": scripted.completion_tokens
            if completion is None
            else completion,
            "totalTokenCount": scripted.prompt_tokens
            + (scripted.completion_tokens if completion is None else completion),
        }
        if scripted.cached_tokens:
            usage["cachedContentTokenCount"] = scripted.cached_tokens
        return usage

    def _finish(self, scripted: Scripted) -> str:
        return scripted.finish or "STOP"

    def _parts(self, scripted: Scripted) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        if scripted.text:
            parts.append({"text": scripted.text})
        for call in scripted.tool_calls:
            call_part: dict[str, Any] = {"name": call.name, "args": call.arguments}
            if call.id:
                call_part["id"] = call.id
            parts.append({"functionCall": call_part})
        return parts

    async def respond(self, request: HttpRequest, scripted: Scripted) -> HttpResponse:
        body = request.json() or {}
        model, _, method = request.path.split("/models/", 1)[1].partition(":")
        if method == "batchEmbedContents":
            return self._embed(body, scripted)
        candidate_count = int((body.get("generationConfig") or {}).get("candidateCount") or 1)
        if method == "generateContent":
            broken = malformed_json_response(scripted.malformed) if scripted.malformed else None
            if broken is not None:
                return broken
            response: dict[str, Any] = {
                "candidates": [
                    {
                        "content": {"parts": self._parts(scripted), "role": "model"},
                        "finishReason": self._finish(scripted),
                        "index": i,
                    }
                    for i in range(candidate_count)
                ],
                "modelVersion": model,
                "responseId": "fake-response",
            }
            if scripted.malformed != "no_usage":
                response["usageMetadata"] = self._usage(scripted)
            return json_response(200, response)
        if method != "streamGenerateContent" or request.query.get("alt") != ["sse"]:
            return json_response(
                400,
                {"error": {"code": 400, "message": "unknown method", "status": "INVALID_ARGUMENT"}},
            )
        if scripted.malformed == "wrong_content_type":
            return wrong_content_type_stream()
        frames: list[bytes] = []
        pieces = scripted.text_pieces()
        for piece in pieces:
            frames.append(
                sse(
                    {
                        "candidates": [
                            {"content": {"parts": [{"text": piece}], "role": "model"}, "index": 0}
                        ],
                        "usageMetadata": {
                            "promptTokenCount": scripted.prompt_tokens,
                            "totalTokenCount": scripted.prompt_tokens,
                        },
                        "modelVersion": model,
                        "responseId": "fake-response",
                    }
                )
            )
        if scripted.error_after_chunks is not None:
            frames = frames[: scripted.error_after_chunks]
            frames.append(
                sse(
                    {
                        "error": {
                            "code": 503,
                            "message": "The model is overloaded.",
                            "status": "UNAVAILABLE",
                        }
                    }
                )
            )
            return self.stream_response(frames)
        calls = [part for part in self._parts(scripted) if "functionCall" in part]
        final: dict[str, Any] = {
            "candidates": [
                {
                    "content": {"parts": calls or [{"text": ""}], "role": "model"},
                    "finishReason": self._finish(scripted),
                    "index": 0,
                }
            ],
            "modelVersion": model,
            "responseId": "fake-response",
        }
        if scripted.malformed != "no_usage":
            final["usageMetadata"] = self._usage(scripted)
        frames.append(sse(final))
        if scripted.malformed == "truncated":
            return self.stream_response(frames[:-1])
        if scripted.malformed == "bad_json":
            frames.insert(1, b'data: {"candidates": [\n\n')
            return self.stream_response(frames)
        if scripted.malformed == "reset":
            return self.stream_response(frames[:1], reset=True)
        return self.stream_response(frames)

    def _embed(self, body: dict[str, Any], scripted: Scripted) -> HttpResponse:
        broken = malformed_json_response(scripted.malformed) if scripted.malformed else None
        if broken is not None:
            return broken
        embeddings = []
        for request in body.get("requests") or []:
            text = "".join(
                part.get("text", "") for part in (request.get("content") or {}).get("parts") or []
            )
            embeddings.append(
                {
                    "values": deterministic_vector(
                        text, int(request.get("outputDimensionality") or 8)
                    )
                }
            )
        return json_response(200, {"embeddings": embeddings})
