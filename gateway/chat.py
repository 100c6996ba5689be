"""POST /v1/chat/completions: the request lifecycle, end to end.

    parse → authenticate → validate → resolve model → estimate → AdmitRequest (received,
    reserved, dispatched: durable before any provider call) → provider → CompleteRequest
    (charge = provider cost + fee, the rest released) or FailRequest.

Every outcome, a rejection included, is an event before the client hears of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from fastapi import Request as HttpRequest
from fastapi.responses import Response, StreamingResponse

from domain import commands as c
from domain.errors import DomainError
from domain.ids import new_request_id
from gateway.auth import actor_from, authenticate_key
from gateway.bootstrap import Services
from gateway.errors import GatewayError, as_gateway_error, envelope, error_response
from gateway.models import resolve_route
from gateway.providers.base import (
    USAGE_SOURCE_ESTIMATED,
    ChatStream,
    ProviderAdapter,
    UpstreamError,
    Usage,
)
from gateway.providers.documents import (
    check_document_support,
    document_capable_suggestions,
    normalize_documents,
)
from gateway.responses import JsonResponse
from gateway.tokens import count_text_tokens, estimate_prompt_tokens, prompt_chars
from gateway.validation import (
    max_output_tokens,
    parse_json_body,
    validate_chat_body,
    wants_usage_in_stream,
)

log = logging.getLogger("ledgergate.chat")

ENDPOINT_CHAT = "chat.completions"
GATEWAY_FIELDS = ("routing_preferences", "pii_policy", "trace_id")
TRACE_ID_CHARS_MAX = 128


def money_header(amount: Decimal) -> str:
    return format(amount, "f")


@dataclass
class Context:
    """What one request has learned so far; enough to record a rejection at any point."""

    request_id: str
    started: float
    services: Services
    received_at: Any = None
    project_id: UUID | None = None
    key_id: UUID | None = None
    actor_id: str | None = None
    model_requested: str | None = None
    stream: bool = False
    message_count: int = 0
    prompt_chars: int = 0
    prompt_sha256: str | None = None
    trace_id: str | None = None
    client_ip: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    def facts(self, endpoint: str = ENDPOINT_CHAT) -> c.RequestFacts:
        deadline = self.received_at + timedelta(seconds=self.services.settings.request_timeout_s)
        return c.RequestFacts(
            request_id=self.request_id,
            endpoint=endpoint,
            project_id=self.project_id,
            key_id=self.key_id,
            actor_id=self.actor_id,
            model_requested=self.model_requested,
            stream=self.stream,
            message_count=self.message_count,
            prompt_chars=self.prompt_chars,
            prompt_sha256=self.prompt_sha256,
            trace_id=self.trace_id,
            idempotency_key_sha256=None,
            client_ip=self.client_ip,
            received_at=self.received_at,
            deadline_at=deadline,
        )


def _hash_messages(body: dict[str, Any]) -> str:
    return hashlib.sha256(
        orjson.dumps(body.get("messages"), option=orjson.OPT_SORT_KEYS)
    ).hexdigest()


async def record_rejection(
    ctx: Context, error: GatewayError, endpoint: str = ENDPOINT_CHAT
) -> None:
    try:
        await ctx.services.writer.execute_async(
            c.RecordRejection(
                facts=ctx.facts(endpoint),
                http_status=error.status,
                error_code=error.code,
                error_type=error.error_type,
                message=error.message,
            )
        )
    except Exception:  # the client still gets its answer; the failure to record is logged loudly
        log.exception("could not record the rejection of %s", ctx.request_id)


async def reject(ctx: Context, error: BaseException, endpoint: str = ENDPOINT_CHAT) -> Response:
    gateway_error = as_gateway_error(error)
    if gateway_error.status >= 500 and not isinstance(
        error, GatewayError | DomainError | UpstreamError
    ):
        log.exception("unexpected error in %s", ctx.request_id, exc_info=error)
    await record_rejection(ctx, gateway_error, endpoint)
    return error_response(gateway_error, ctx.request_id, ctx.headers)


def adapter_for(services: Services, provider: str) -> ProviderAdapter:
    adapter = services.adapters.get(provider)
    if adapter is None:
        raise GatewayError(
            "provider_not_configured",
            f"provider {provider!r} is not configured on this gateway "
            f"(set LEDGERGATE_{provider.upper()}_BASE_URL / _API_KEY)",
            status=503,
            error_type="api_error",
            param="model",
        )
    return adapter


async def chat_completions(http: HttpRequest, services: Services) -> Response:
    ctx = Context(request_id=new_request_id(), started=time.perf_counter(), services=services)
    ctx.received_at = services.clock.now()
    ctx.client_ip = http.client.host if http.client else None
    try:
        # The key first: a malformed body from a known key is still that project's record.
        key, project = await authenticate_key(services.cache, http.headers.get("authorization"))
        ctx.project_id, ctx.key_id = project.id, key.id
        raw = await http.body()
        body = parse_json_body(raw)
        if isinstance(body.get("model"), str):
            ctx.model_requested = body["model"][:200]
        ctx.stream = body.get("stream") is True
        if isinstance(body.get("messages"), list):
            ctx.message_count = len(body["messages"])
        secret = (services.settings.raw.get("LEDGERGATE_ACTOR_TOKEN_SECRET") or "").encode() or None
        ctx.actor_id = actor_from(http.headers, body, project, secret)
        validate_chat_body(body)
        trace_id = body.get("trace_id") or http.headers.get("x-trace-id")
        if trace_id is not None:
            ctx.trace_id = str(trace_id)[:TRACE_ID_CHARS_MAX]
        ctx.prompt_chars = prompt_chars(body)
        ctx.prompt_sha256 = _hash_messages(body)
        route = resolve_route(body["model"].strip())
        adapter = adapter_for(services, route.provider)
        # Documents in any of the three client shapes become one canonical block, and a model
        # that cannot read them is refused here (a 400 listing alternatives), never dropped.
        body = normalize_documents(body)
        check_document_support(
            body,
            route.provider,
            route.upstream_model,
            requested_model=route.model,
            candidates=document_capable_suggestions(services.adapters),
        )
        estimated_input = estimate_prompt_tokens(body)
        max_output = max_output_tokens(body, services.settings.default_max_output_tokens)
        admission = await services.writer.execute_async(
            c.AdmitRequest(
                facts=ctx.facts(),
                route=route,
                estimated_input_tokens=estimated_input,
                max_output_tokens=max_output,
                fee_rate=project.fee_rate,
                key_source="managed",
                daily_budget=key.daily_budget,
            )
        )
    except Exception as error:
        return await reject(ctx, error)

    terms = admission.value
    assert isinstance(terms, dict)
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
    if ctx.stream:
        return await _stream(ctx, adapter, route, upstream_body, body, estimated_input)
    return await _complete(ctx, adapter, route, upstream_body, estimated_input)


async def _fail(
    ctx: Context,
    error: GatewayError,
    *,
    after_first_chunk: bool = False,
    delivered_chunks: int = 0,
    usage: Usage | None = None,
) -> Any:
    report = None
    if usage is not None:
        report = c.UsageReport(
            usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.source
        )
    return await ctx.services.writer.execute_async(
        c.FailRequest(
            request_id=ctx.request_id,
            http_status=error.status,
            error_code=error.code,
            error_type=error.error_type,
            message=error.message,
            latency_ms=ctx.elapsed_ms(),
            after_first_chunk=after_first_chunk,
            delivered_chunks=delivered_chunks,
            usage=report,
            actor_id=ctx.actor_id,
        )
    )


async def _complete(
    ctx: Context,
    adapter: ProviderAdapter,
    route: c.Route,
    upstream_body: dict[str, Any],
    estimated_input: int,
) -> Response:
    upstream_started = time.perf_counter()
    try:
        result = await adapter.chat(upstream_body, route.upstream_model)
    except Exception as error:
        gateway_error = as_gateway_error(error)
        if gateway_error.status >= 500 and not isinstance(error, UpstreamError):
            log.exception("adapter failure in %s", ctx.request_id, exc_info=error)
        await _fail(ctx, gateway_error)
        return error_response(gateway_error, ctx.request_id, ctx.headers)
    upstream_ms = int((time.perf_counter() - upstream_started) * 1000)
    text = _completion_text(result.body)
    finish_reason = None
    choices = result.body.get("choices") or []
    if choices and isinstance(choices[0], dict):
        finish_reason = choices[0].get("finish_reason")
    outcome = await ctx.services.writer.execute_async(
        c.CompleteRequest(
            request_id=ctx.request_id,
            usage=c.UsageReport(
                result.usage.prompt_tokens,
                result.usage.completion_tokens,
                result.usage.cached_tokens,
                result.usage.source,
            ),
            finish_reason=finish_reason,
            completion_chars=len(text),
            completion_sha256=hashlib.sha256(text.encode()).hexdigest() if text else None,
            latency_ms=ctx.elapsed_ms(),
            upstream_ms=upstream_ms,
            actor_id=ctx.actor_id,
        )
    )
    charged = outcome.value["charged_amount"]  # type: ignore[index]
    total_ms = ctx.elapsed_ms()
    headers = {
        "X-Request-Id": ctx.request_id,
        **ctx.headers,
        "X-LG-Actual-Cost": money_header(charged),
        "X-LG-Overhead-Ms": str(max(total_ms - upstream_ms, 0)),
        "X-LG-Ledger-Position": str(outcome.position or 0),
    }
    return JsonResponse(result.body, headers=headers)


def _completion_text(body: dict[str, Any]) -> str:
    parts: list[str] = []
    for choice in body.get("choices") or []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            if isinstance(message.get("content"), str):
                parts.append(message["content"])
            for call in message.get("tool_calls") or []:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    parts.append(str(function.get("arguments") or ""))
    return "".join(parts)


def _chunk_text(chunk: dict[str, Any]) -> str:
    parts: list[str] = []
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict):
            if isinstance(delta.get("content"), str):
                parts.append(delta["content"])
            for call in delta.get("tool_calls") or []:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and function.get("arguments"):
                    parts.append(str(function["arguments"]))
    return "".join(parts)


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def estimated_usage(prompt_tokens: int, completion_text: str) -> Usage:
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=count_text_tokens(completion_text),
        source=USAGE_SOURCE_ESTIMATED,
    )


def fallback_stream_usage(stream: ChatStream, estimated_input: int, delivered_text: str) -> Usage:
    """Usage of a stream whose final usage never came (a provider without it, or a broken
    stream): the prompt as the provider reported it early on when it did (else the estimate),
    the completion counted from what was delivered. Always marked "estimated"."""
    usage = estimated_usage(estimated_input, delivered_text)
    reported = getattr(stream, "prompt_tokens_reported", None)
    if isinstance(reported, int) and reported > 0:
        usage = Usage(reported, usage.completion_tokens, 0, USAGE_SOURCE_ESTIMATED)
    return usage


async def _stream(
    ctx: Context,
    adapter: ProviderAdapter,
    route: c.Route,
    upstream_body: dict[str, Any],
    client_body: dict[str, Any],
    estimated_input: int,
) -> Response:
    include_usage = wants_usage_in_stream(client_body)
    upstream_started = time.perf_counter()
    try:
        stream: ChatStream = await adapter.chat_stream(upstream_body, route.upstream_model)
        iterator = stream.__aiter__()
        first = await iterator.__anext__()
    except StopAsyncIteration:
        first = None
    except Exception as error:
        gateway_error = as_gateway_error(error)
        await _fail(ctx, gateway_error)
        return error_response(gateway_error, ctx.request_id, ctx.headers)
    first_chunk_ms = int((time.perf_counter() - upstream_started) * 1000)
    overhead_ms = max(ctx.elapsed_ms() - first_chunk_ms, 0)
    writer = ctx.services.writer
    # Not awaited: the stream must not wait on a disk write; the writer keeps order.
    writer.submit(c.MarkStreaming(request_id=ctx.request_id, first_chunk_ms=first_chunk_ms))

    async def body_iterator() -> AsyncIterator[bytes]:
        delivered = 0
        text_parts: list[str] = []
        finished = False
        last_chunk: dict[str, Any] | None = first
        try:
            if first is not None:
                text_parts.append(_chunk_text(first))
                if include_usage:
                    first["usage"] = None
                delivered += 1
                yield _sse(first)
                async for chunk in iterator:
                    text_parts.append(_chunk_text(chunk))
                    if include_usage:
                        chunk["usage"] = None
                    delivered += 1
                    last_chunk = chunk
                    yield _sse(chunk)
            text = "".join(text_parts)
            usage = stream.usage or fallback_stream_usage(stream, estimated_input, text)
            finished = True
            await writer.execute_async(
                c.CompleteRequest(
                    request_id=ctx.request_id,
                    usage=c.UsageReport(
                        usage.prompt_tokens,
                        usage.completion_tokens,
                        usage.cached_tokens,
                        usage.source,
                    ),
                    finish_reason=stream.finish_reason,
                    completion_chars=len(text),
                    completion_sha256=hashlib.sha256(text.encode()).hexdigest() if text else None,
                    latency_ms=ctx.elapsed_ms(),
                    upstream_ms=int((time.perf_counter() - upstream_started) * 1000),
                    actor_id=ctx.actor_id,
                )
            )
            if include_usage:
                usage_chunk = {
                    "id": (last_chunk or {}).get("id", ctx.request_id),
                    "object": "chat.completion.chunk",
                    "created": (last_chunk or {}).get("created", int(time.time())),
                    "model": (last_chunk or {}).get("model", route.upstream_model),
                    "choices": [],
                    "usage": usage.as_openai(),
                }
                yield _sse(usage_chunk)
            yield SSE_DONE
        except Exception as error:
            if finished:
                log.exception("could not record the completion of %s", ctx.request_id)
                yield _sse(
                    envelope(
                        GatewayError(
                            "internal_error",
                            "the gateway failed to record this request",
                            status=500,
                        )
                    )
                )
                return
            finished = True
            gateway_error = as_gateway_error(error)
            text = "".join(text_parts)
            usage = stream.usage or fallback_stream_usage(stream, estimated_input, text)
            await _fail(
                ctx,
                gateway_error,
                after_first_chunk=delivered > 0,
                delivered_chunks=delivered,
                usage=usage,
            )
            yield _sse(envelope(gateway_error))
        finally:
            if not finished:
                # The client went away mid-stream: settle for what was delivered, without
                # awaiting (this coroutine is being cancelled), and stop the upstream call.
                text = "".join(text_parts)
                usage = stream.usage or fallback_stream_usage(stream, estimated_input, text)
                writer.submit(
                    c.FailRequest(
                        request_id=ctx.request_id,
                        http_status=499,
                        error_code="client_disconnected",
                        error_type="client_error",
                        message="the client closed the connection before the stream ended",
                        latency_ms=ctx.elapsed_ms(),
                        after_first_chunk=delivered > 0,
                        delivered_chunks=delivered,
                        usage=c.UsageReport(
                            usage.prompt_tokens,
                            usage.completion_tokens,
                            usage.cached_tokens,
                            usage.source,
                        ),
                        actor_id=ctx.actor_id,
                    )
                )
            try:
                await asyncio.shield(stream.aclose())
            except Exception:  # closing an already-broken upstream connection
                pass

    headers = {
        "X-Request-Id": ctx.request_id,
        **ctx.headers,
        "X-LG-Overhead-Ms": str(overhead_ms),
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    }
    return StreamingResponse(body_iterator(), media_type="text/event-stream", headers=headers)
