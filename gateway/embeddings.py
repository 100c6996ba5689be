"""POST /v1/embeddings: the same lifecycle as chat (received → admitted with a reservation →
dispatched → completed | failed, every outcome an event), translated to each provider that
has embeddings (OpenAI, Mistral, Cohere, Google, Bedrock Titan). `encoding_format` float and
base64 (little-endian float32, the openai SDK's default) are honoured for every provider."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson
from fastapi import Request as HttpRequest
from fastapi.responses import Response

from domain import commands as c
from gateway.auth import actor_from, authenticate_key
from gateway.bootstrap import Services
from gateway.chat import Context, adapter_for, money_header, reject
from gateway.errors import GatewayError, as_gateway_error, error_response
from gateway.models import resolve_route
from gateway.providers.base import UpstreamError
from gateway.providers.tokens import estimate_embedding_tokens
from gateway.responses import JsonResponse
from gateway.validation import parse_json_body, validate_model

ENDPOINT_EMBEDDINGS = "embeddings"
EMBEDDING_INPUTS_MAX = 2048  # OpenAI's own per-request limit
EMBEDDING_INPUT_CHARS_MAX = 8 * 1024 * 1024
GATEWAY_FIELDS = ("routing_preferences", "pii_policy", "trace_id")


def _invalid(message: str, param: str) -> GatewayError:
    return GatewayError("invalid_request", message, param=param)


def validate_embeddings_body(body: dict[str, Any]) -> None:
    validate_model(body)
    raw = body.get("input")
    if isinstance(raw, str):
        inputs: list[Any] = [raw]
    elif isinstance(raw, list) and raw:
        inputs = raw
    else:
        raise _invalid("'input' is required: a string, an array of strings or of token arrays", "input")
    if len(inputs) > EMBEDDING_INPUTS_MAX:
        raise _invalid(f"'input' has more than {EMBEDDING_INPUTS_MAX} entries", "input")
    if all(isinstance(item, int) and not isinstance(item, bool) for item in inputs):
        pass  # one pre-tokenized input
    else:
        for index, item in enumerate(inputs):
            ok = (isinstance(item, str) and item != "") or (
                isinstance(item, list) and item and all(isinstance(t, int) and not isinstance(t, bool) for t in item)
            )
            if not ok:
                raise _invalid(f"input[{index}] must be a non-empty string or token array", f"input[{index}]")
    if sum(len(item) for item in inputs if isinstance(item, str)) > EMBEDDING_INPUT_CHARS_MAX:
        raise _invalid(f"'input' is longer than {EMBEDDING_INPUT_CHARS_MAX} characters", "input")
    encoding_format = body.get("encoding_format")
    if encoding_format is not None and encoding_format not in ("float", "base64"):
        raise _invalid("'encoding_format' must be 'float' or 'base64'", "encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and (
        isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 1 <= dimensions <= 65536
    ):
        raise _invalid("'dimensions' must be a positive integer", "dimensions")


async def embeddings(http: HttpRequest, services: Services) -> Response:
    ctx = Context(request_id=_new_request_id(), started=time.perf_counter(), services=services)
    ctx.received_at = services.clock.now()
    ctx.client_ip = http.client.host if http.client else None
    try:
        key, project = await authenticate_key(services.cache, http.headers.get("authorization"))
        ctx.project_id, ctx.key_id = project.id, key.id
        body = parse_json_body(await http.body())
        if isinstance(body.get("model"), str):
            ctx.model_requested = body["model"][:200]
        secret = (services.settings.raw.get("LEDGERGATE_ACTOR_TOKEN_SECRET") or "").encode() or None
        ctx.actor_id = actor_from(http.headers, body, project, secret)
        validate_embeddings_body(body)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        ctx.message_count = len(inputs)
        ctx.prompt_chars = sum(len(item) for item in inputs if isinstance(item, str))
        ctx.prompt_sha256 = hashlib.sha256(orjson.dumps(body["input"])).hexdigest()
        route = resolve_route(body["model"].strip())
        adapter = adapter_for(services, route.provider)
        if not adapter.supports_embeddings:
            raise GatewayError(
                "embeddings_not_supported",
                f"provider {route.provider} offers no embeddings; embedding providers: "
                "openai, mistral, cohere, google, bedrock (Titan)",
                status=400,
                param="model",
            )
        estimated_input = estimate_embedding_tokens(body["input"])
        admission = await services.writer.execute_async(
            c.AdmitRequest(
                facts=ctx.facts(ENDPOINT_EMBEDDINGS),
                route=route,
                estimated_input_tokens=estimated_input,
                max_output_tokens=0,
                fee_rate=project.fee_rate,
                key_source="managed",
                daily_budget=key.daily_budget,
            )
        )
    except Exception as error:
        return await reject(ctx, error, ENDPOINT_EMBEDDINGS)

    terms = admission.value
    if not isinstance(terms, dict):
        raise TypeError("AdmitRequest returned no terms")
    ctx.headers.update(
        {
            "X-LG-Model": route.model,
            "X-LG-Provider": route.provider,
            "X-LG-Route-Reason": "explicit_model",
            "X-LG-Estimated-Cost": money_header(terms["reserved_amount"]),
            "X-LG-Currency": terms["currency"],
            "X-LG-Cache": "miss",
        }
    )
    upstream_body = {k: v for k, v in body.items() if k not in GATEWAY_FIELDS}
    upstream_started = time.perf_counter()
    try:
        result = await adapter.embeddings(upstream_body, route.upstream_model)
    except Exception as error:
        gateway_error = as_gateway_error(error)
        await services.writer.execute_async(
            c.FailRequest(
                request_id=ctx.request_id,
                http_status=gateway_error.status,
                error_code=gateway_error.code,
                error_type=gateway_error.error_type,
                message=gateway_error.message,
                latency_ms=ctx.elapsed_ms(),
                actor_id=ctx.actor_id,
            )
        )
        if not isinstance(error, UpstreamError | GatewayError) and gateway_error.status >= 500:
            import logging

            logging.getLogger("ledgergate.embeddings").exception(
                "adapter failure in %s", ctx.request_id, exc_info=error
            )
        return error_response(gateway_error, ctx.request_id, ctx.headers)
    upstream_ms = int((time.perf_counter() - upstream_started) * 1000)
    result.body["model"] = body["model"]
    outcome = await services.writer.execute_async(
        c.CompleteRequest(
            request_id=ctx.request_id,
            usage=c.UsageReport(
                result.usage.prompt_tokens, 0, result.usage.cached_tokens, result.usage.source
            ),
            finish_reason=None,
            completion_chars=0,
            completion_sha256=None,
            latency_ms=ctx.elapsed_ms(),
            upstream_ms=upstream_ms,
            actor_id=ctx.actor_id,
        )
    )
    charged = outcome.value["charged_amount"]  # type: ignore[index]
    headers = {
        "X-Request-Id": ctx.request_id,
        **ctx.headers,
        "X-LG-Actual-Cost": money_header(charged),
        "X-LG-Overhead-Ms": str(max(ctx.elapsed_ms() - upstream_ms, 0)),
        "X-LG-Ledger-Position": str(outcome.position or 0),
        "X-LG-Usage-Source": result.usage.source,
    }
    return JsonResponse(result.body, headers=headers)


def _new_request_id() -> str:
    from domain.ids import new_request_id

    return new_request_id()
