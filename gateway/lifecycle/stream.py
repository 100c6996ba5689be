"""The SSE stream of a chat request: dispatched → streaming → completed | failed.

Failover is possible only until the first chunk (after it, bytes reached the client). Then
every chunk goes through the PII chunk filter (gateway/pii/stream.py) and out as an SSE
frame; at the end the usage chunk (when the client asked for it) and `[DONE]`. A failure
after the start is an SSE error frame (the HTTP status was already sent); a client that goes
away mid-stream is settled for what was delivered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
from fastapi.responses import Response, StreamingResponse

from domain import commands as c
from gateway import response_cache as rc
from gateway.cost_signals import x_lg_usage
from gateway.errors import GatewayError, as_gateway_error, envelope
from gateway.lifecycle import caching, settlement
from gateway.lifecycle.dispatch import dispatch
from gateway.lifecycle.request import Admission
from gateway.pii.service import pii_service
from gateway.pii.stream import PiiChunkFilter
from gateway.providers.base import USAGE_SOURCE_ESTIMATED, ChatStream, ProviderAdapter, Usage
from gateway.routing.decision import RouteTarget
from gateway.routing.requests import route_of
from gateway.tokens import count_text_tokens
from gateway.validation import wants_usage_in_stream

log = logging.getLogger("ledgergate.stream")

SSE_DONE = b"data: [DONE]\n\n"
CLIENT_DISCONNECTED = GatewayError(
    "client_disconnected",
    "the client closed the connection before the stream ended",
)
RECORDING_FAILED = GatewayError("internal_error", "the gateway failed to record this request")
# How long a stream runs before its first chunk is recorded on its own (MarkStreaming). A
# stream that ends sooner (a short answer, a cache replay) has it recorded by its
# settlement's command instead: the same StreamingStarted event with the same time, one
# command and one commit fewer. The money rules do not tell Dispatched from Streaming.
FIRST_CHUNK_RECORD_AFTER_S = 0.5


class FirstChunkMark:
    """A stream's first chunk, recorded once: by a timer after FIRST_CHUNK_RECORD_AFTER_S
    (not awaited: the stream never waits on a disk write; the writer keeps order), or by
    the settlement, which `take()`s it if the timer has not fired."""

    def __init__(self, services: Any, request_id: str, first_chunk_ms: int) -> None:
        self.services = services
        self.request_id = request_id
        self.first_chunk = c.FirstChunk(first_chunk_ms, services.writer.clock.now())
        self._recorded = False
        self._timer = asyncio.get_running_loop().call_later(
            FIRST_CHUNK_RECORD_AFTER_S, self._record
        )

    def _record(self) -> None:  # the timer: `take` cancels it, so it runs only before one
        self._recorded = True
        try:
            self.services.writer.submit(
                c.MarkStreaming(
                    request_id=self.request_id,
                    first_chunk_ms=self.first_chunk.first_chunk_ms,
                    started_at=self.first_chunk.at,
                )
            )
        except Exception:  # a stopping writer: the settlement (or the sweeper) ends it anyway
            log.warning("could not record the first chunk of %s", self.request_id, exc_info=True)

    def take(self) -> c.FirstChunk | None:
        """For the settlement's command: the first chunk when not recorded yet (the timer is
        then cancelled), else None."""
        self._timer.cancel()
        if self._recorded:
            return None
        self._recorded = True
        return self.first_chunk


def sse(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def fallback_stream_usage(stream: ChatStream, estimated_input: int, delivered_text: str) -> Usage:
    """Usage of a stream whose final usage never came (a provider without it, or a broken
    stream): the prompt as the provider reported it early on when it did (else the estimate),
    the completion counted from what was delivered. Always marked "estimated"."""
    completion_tokens = count_text_tokens(delivered_text)
    reported = getattr(stream, "prompt_tokens_reported", None)
    if isinstance(reported, int) and reported > 0:
        return Usage(reported, completion_tokens, 0, USAGE_SOURCE_ESTIMATED)
    return Usage(estimated_input, completion_tokens, source=USAGE_SOURCE_ESTIMATED)


async def _open(adapter: ProviderAdapter, body: dict[str, Any], target: RouteTarget) -> Any:
    """Open the provider's stream and read its first chunk (None for an empty stream)."""
    opened = await adapter.chat_stream(body, target.spec.upstream_id)
    iterator = opened.__aiter__()
    try:
        first = await iterator.__anext__()
    except StopAsyncIteration:
        first = None
    except BaseException:
        await opened.aclose()
        raise
    return opened, iterator, first, target


async def stream_chat(
    services: Any,
    admitted: Admission,
    headers: dict[str, str],
    upstream_body: dict[str, Any],
    client_body: dict[str, Any],
    estimated_input: int,
) -> Response:
    """Open the stream (from the cache's replay, or a provider with failover), then hand
    the rest to the StreamingResponse: its end settles the request."""
    include_usage = wants_usage_in_stream(client_body)
    upstream_started = time.perf_counter()
    hit = caching.hit_of(admitted)
    try:
        if hit is not None and hit.chunks is not None:
            stream: ChatStream = rc.ReplayStream(hit)
            iterator = stream.__aiter__()
            first = await anext(iterator, None)
            served = admitted.decision.chosen
        else:
            stream, iterator, first, served = await dispatch(
                services,
                admitted,
                lambda adapter, target: _open(adapter, upstream_body, target),
            )
    except Exception as error:
        return await settlement.answer_failure(services, admitted, error, headers)
    if hit is None:
        headers.update(admitted.decision.headers(served))
    first_chunk_ms = int((time.perf_counter() - upstream_started) * 1000)
    overhead_ms = max(admitted.elapsed_ms() - first_chunk_ms, 0)
    mark = FirstChunkMark(services, admitted.request_id, first_chunk_ms)
    frames = _frames(
        services,
        admitted,
        stream,
        iterator,
        first,
        served,
        mark,
        include_usage=include_usage,
        estimated_input=estimated_input,
        upstream_started=upstream_started,
        from_cache=hit is not None,
    )
    reply_headers = {
        "X-Request-Id": admitted.request_id,
        **headers,
        "X-LG-Overhead-Ms": str(overhead_ms),
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    }
    return StreamingResponse(frames, media_type="text/event-stream", headers=reply_headers)


async def _frames(
    services: Any,
    admitted: Admission,
    stream: ChatStream,
    iterator: AsyncIterator[dict[str, Any]],
    first: dict[str, Any] | None,
    served: RouteTarget,
    mark: FirstChunkMark,
    *,
    include_usage: bool,
    estimated_input: int,
    upstream_started: float,
    from_cache: bool,
) -> AsyncIterator[bytes]:
    """The SSE frames, and the request's settlement when the stream ends (either way)."""
    pii = admitted.pii
    pii_filter = (
        None
        if pii is None
        else PiiChunkFilter.wanted(
            pii_service(services).screener, pii.policy, pii.mapping, pii.language
        )
    )
    delivered = 0
    text_parts: list[str] = []
    finished = False
    last_chunk: dict[str, Any] | None = first
    # The upstream's chunks as sent (placeholders), for the response cache; None once too
    # large to keep or when nothing will be stored.
    keep = admitted.cache_plan is not None and admitted.cache_plan.store_wanted and not from_cache
    kept: list[bytes] | None = [] if keep else None
    kept_bytes = 0

    def usage_so_far() -> Usage:
        return stream.usage or fallback_stream_usage(stream, estimated_input, "".join(text_parts))

    def outgoing(chunks: list[dict[str, Any]]) -> Iterator[bytes]:
        nonlocal delivered
        for out in chunks:
            if include_usage:
                out["usage"] = None
            delivered += 1
            yield sse(out)

    async def upstream_chunks() -> AsyncIterator[dict[str, Any]]:
        if first is None:
            return
        yield first
        async for chunk in iterator:
            yield chunk

    try:
        async for chunk in upstream_chunks():
            # The upstream's own text (placeholders, not restored values) is what gets
            # counted and hashed.
            text_parts.append(settlement.answer_text(chunk, "delta"))
            last_chunk = chunk
            if kept is not None:
                kept.append(orjson.dumps(chunk))
                kept_bytes += len(kept[-1])
                if kept_bytes > rc.ENTRY_BYTES_MAX:
                    kept = None
            filtered = [chunk] if pii_filter is None else await pii_filter.process(chunk)
            for frame in outgoing(filtered):
                yield frame
        if pii_filter is not None:
            for frame in outgoing(await pii_filter.finish(last_chunk)):
                yield frame
        usage = usage_so_far()
        finished = True
        outcome = await settlement.complete(
            services,
            admitted,
            usage=usage,
            finish_reason=stream.finish_reason,
            text="".join(text_parts),
            upstream_ms=0 if from_cache else int((time.perf_counter() - upstream_started) * 1000),
            first_chunk=mark.take(),
        )
        if kept is not None and stream.usage is not None:
            # Only a stream that ended with the provider's own usage is kept.
            await caching.store(
                services,
                admitted,
                served,
                chunks=[orjson.loads(item) for item in kept],
                usage=stream.usage.as_openai(),
                finish_reason=stream.finish_reason,
            )
        if include_usage:
            yield sse(
                {
                    "id": (last_chunk or {}).get("id", admitted.request_id),
                    "object": "chat.completion.chunk",
                    "created": (last_chunk or {}).get("created", int(time.time())),
                    "model": (last_chunk or {}).get("model", route_of(served).upstream_model),
                    "choices": [],
                    "usage": usage.as_openai(),
                    # The actual cost once the charge is durable (gateway/cost_signals.py).
                    "x_lg": x_lg_usage(
                        None if outcome is None else outcome.value["charged_amount"],  # type: ignore[index]
                        admitted.currency,
                        admitted.request_id,
                    ),
                }
            )
        yield SSE_DONE
    except Exception as error:
        if finished:
            log.exception("could not record the completion of %s", admitted.request_id)
            yield sse(envelope(RECORDING_FAILED))
            return
        finished = True
        gateway_error = as_gateway_error(error)
        await settlement.fail(
            services,
            admitted,
            gateway_error,
            after_first_chunk=delivered > 0,
            delivered_chunks=delivered,
            usage=usage_so_far(),
            first_chunk=mark.take(),
        )
        yield sse(envelope(gateway_error))
    finally:
        if not finished:
            # The client went away mid-stream: settle for what was delivered, without
            # awaiting (this coroutine is being cancelled), and stop the upstream call.
            settlement.fail_without_waiting(
                services,
                admitted,
                CLIENT_DISCONNECTED,
                after_first_chunk=delivered > 0,
                delivered_chunks=delivered,
                usage=usage_so_far(),
                first_chunk=mark.take(),
            )
        admitted.purge_pii()
        caching.release(services, admitted)
        try:
            await asyncio.shield(stream.aclose())
        except Exception:  # closing an already-broken upstream connection
            pass
