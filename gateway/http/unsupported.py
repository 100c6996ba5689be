"""OpenAI endpoints this gateway does not serve. Each answers in the OpenAI error envelope
with a status an SDK understands and names the alternative, and is recorded as a rejected
request (every failure is an event) when the caller presents a valid key."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi import Request as HttpRequest
from fastapi.responses import Response

from gateway.auth import authenticate_key
from gateway.bootstrap import Services
from gateway.errors import GatewayError, error_response
from gateway.http.deps import ServicesDep
from gateway.lifecycle.admission import receive, record_rejection

# path prefix → (HTTP status, what to use instead). 404 where OpenAI itself has retired the
# endpoint or it is not a model call; 501 where it is a real OpenAI feature not offered here.
UNSUPPORTED_ENDPOINTS: dict[str, tuple[int, str]] = {
    "/v1/completions": (
        404,
        "the legacy completions API is retired here; use POST /v1/chat/completions",
    ),
    "/v1/images": (
        501,
        "image generation is not offered; use a chat model with image input via POST /v1/chat/completions",
    ),
    "/v1/audio": (501, "audio endpoints are not offered; send text to POST /v1/chat/completions"),
    "/v1/files": (
        501,
        "file uploads are not offered; send documents inline as base64 file parts in POST /v1/chat/completions",
    ),
    "/v1/batches": (
        501,
        "batches are not offered; send requests individually to POST /v1/chat/completions",
    ),
    "/v1/fine_tuning": (
        501,
        "fine-tuning is not offered; use a hosted model through POST /v1/chat/completions",
    ),
    "/v1/moderations": (
        501,
        "moderations are not offered; use pii_policy on POST /v1/chat/completions for screening",
    ),
    "/v1/assistants": (
        501,
        "the Assistants API is not offered; use POST /v1/chat/completions with tools",
    ),
    "/v1/threads": (
        501,
        "the Assistants API is not offered; use POST /v1/chat/completions with tools",
    ),
    "/v1/responses": (501, "the Responses API is not offered; use POST /v1/chat/completions"),
    "/v1/vector_stores": (501, "vector stores are not offered; use POST /v1/embeddings"),
    "/v1/realtime": (
        501,
        "the realtime API is not offered; use streaming POST /v1/chat/completions",
    ),
}
ENDPOINT_UNSUPPORTED = "unsupported"


def unsupported_error(path: str) -> GatewayError | None:
    for prefix, (status, alternative) in UNSUPPORTED_ENDPOINTS.items():
        if path == prefix or path.startswith(prefix + "/"):
            return GatewayError(
                "unsupported_endpoint",
                f"{path} is not supported by this gateway: {alternative}",
                status=status,
                error_type="invalid_request_error",
                extra={"alternative": alternative},
            )
    return None


async def answer_unsupported(
    http: HttpRequest, services: Services, error: GatewayError
) -> Response:
    ctx = receive(http, services)
    try:
        key, project = await authenticate_key(services.cache, http.headers.get("authorization"))
        ctx.project_id, ctx.key_id = project.id, key.id
    except GatewayError:
        # An anonymous probe of an unsupported path: answered, recorded without a project.
        pass
    await record_rejection(services, ctx, error, f"{ENDPOINT_UNSUPPORTED}:{http.url.path[:80]}")
    return error_response(error, ctx.request_id)


async def _unsupported(request: HttpRequest, services: ServicesDep, rest: str = "") -> Response:
    error = unsupported_error(request.url.path)
    if error is None:  # pragma: no cover - the route table and the prefixes agree
        error = GatewayError("unsupported_endpoint", f"{request.url.path} is not an endpoint")
    return await answer_unsupported(request, services, error)


router = APIRouter(include_in_schema=False)
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
for _prefix in UNSUPPORTED_ENDPOINTS:
    router.add_api_route(_prefix, _unsupported, methods=_METHODS)
    router.add_api_route(_prefix + "/{rest:path}", _unsupported, methods=_METHODS)

__all__ = ["UNSUPPORTED_ENDPOINTS", "answer_unsupported", "router", "unsupported_error"]
