"""Settlement of admitted requests: complete or fail, and the leases that keep live requests
from the sweeper.

`complete` builds the request's CompleteRequest and `fail` / `fail_without_waiting` its
FailRequest: the only places in the gateway those commands are made, for chat, streams and
embeddings alike.

A request this process admitted is *live* until its settlement (CompleteRequest or
FailRequest) is durable. While it is live:

* its lease is renewed: when less than half of `LEDGERGATE_REQUEST_TIMEOUT_S` is left before
  its deadline, the process records `ExtendDeadline` (deadline = now + the timeout). The
  sweeper only abandons requests whose deadline (plus grace) has passed, so it never takes a
  request a live process is still serving, however long it streams; a killed process stops
  renewing and its requests are swept after their last deadline.
* its settlement never fails the client: a settlement that cannot be made durable (the
  account kept conflicting with another process after the writer's own retries, or the store
  failed) is retried against fresh state; if it still fails, the real usage is journalled on
  the Request (`JournalUsage`, no Account event, so it does not conflict on the account) and
  the renewer keeps retrying the charge in the background while it keeps the lease. Whoever
  settles the request — this process, or the sweeper after a crash — charges the journalled
  real usage, never the estimate.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi.responses import Response

from domain import commands as c
from domain.errors import DomainError
from gateway.errors import GatewayError, as_gateway_error, error_response
from gateway.lifecycle.request import Admission
from gateway.periodic import Periodic
from gateway.providers.base import UpstreamError, Usage
from gateway.response_cache import USAGE_SOURCE_CACHE, cache_fields
from gateway.routing.failover import FailoverExhausted

log = logging.getLogger("ledgergate.settlement")

SETTLE_ATTEMPTS_MAX = 4  # each after the writer's own conflict retries
SETTLE_BACKOFF_S = 0.05  # doubled per attempt: 50, 100, 200 ms
RENEW_INTERVAL_S_MAX = 1.0  # also how soon a journalled settlement is retried
RENEW_INTERVAL_S_MIN = 0.02
WRITE_TIMEOUT_S = 10.0
# A lease is renewed for at most this long (or 12 request timeouts, if longer): a request
# whose settlement was lost to a bug is then left to the sweeper instead of held forever.
LEASE_HELD_S_MAX = 3600.0


@dataclass
class _Live:
    deadline_at: datetime
    held_since: datetime
    settlement: c.Command | None = None  # a settlement still to be made durable


class RequestLeases(Periodic):
    """The requests this process is serving, their leases, and their pending settlements;
    its background tick renews the leases and retries the settlements."""

    thread_name = "ledgergate-leases"
    failure_message = "lease renewal failed; will retry"

    def __init__(self, services: Any) -> None:
        super().__init__(log)
        self.services = services
        self._live: dict[str, _Live] = {}
        self._lock = threading.Lock()

    @property
    def timeout_s(self) -> float:
        return float(self.services.settings.request_timeout_s)

    def interval_s(self) -> float:
        return min(max(self.timeout_s / 10, RENEW_INTERVAL_S_MIN), RENEW_INTERVAL_S_MAX)

    # --- the serving side ---------------------------------------------------------------

    def hold(self, request_id: str, deadline_at: datetime) -> None:
        with self._lock:
            self._live[request_id] = _Live(deadline_at, self.services.clock.now())

    def release(self, request_id: str) -> None:
        with self._lock:
            self._live.pop(request_id, None)

    def keep_settling(self, request_id: str, settlement: c.Command) -> None:
        with self._lock:
            entry = self._live.get(request_id)
            if entry is None:
                now = self.services.clock.now()
                entry = self._live[request_id] = _Live(now, now)
            entry.settlement = settlement

    def live(self) -> dict[str, datetime]:
        with self._lock:
            return {request_id: entry.deadline_at for request_id, entry in self._live.items()}

    def pending_settlements(self) -> list[str]:
        with self._lock:
            return [rid for rid, entry in self._live.items() if entry.settlement is not None]

    # --- the renewer ----------------------------------------------------------------------

    def tick(self) -> None:
        """Retry pending settlements, then renew the leases that are due."""
        writer = self.services.writer
        with self._lock:
            entries = list(self._live.items())
        for request_id, entry in entries:
            if entry.settlement is None:
                continue
            try:
                writer.execute(entry.settlement, WRITE_TIMEOUT_S)
            except DomainError as error:
                log.warning("settlement of %s refused: %s", request_id, error.code)
            except Exception as error:
                log.warning("settlement of %s still failing: %s", request_id, type(error).__name__)
                continue
            self.release(request_id)
        now = self.services.clock.now()
        half = timedelta(seconds=self.timeout_s / 2)
        held_max = timedelta(seconds=max(LEASE_HELD_S_MAX, 12 * self.timeout_s))
        with self._lock:
            due = [(rid, e) for rid, e in self._live.items() if e.deadline_at - now < half]
        for request_id, entry in due:
            if entry.settlement is None and now - entry.held_since > held_max:
                log.warning("lease of %s held too long: left to the sweeper", request_id)
                self.release(request_id)
                continue
            deadline = now + timedelta(seconds=self.timeout_s)
            try:
                outcome = writer.execute(
                    c.ExtendDeadline(request_id=request_id, deadline_at=deadline), WRITE_TIMEOUT_S
                )
            except Exception as error:
                log.warning("could not renew the lease of %s: %s", request_id, type(error).__name__)
                continue
            if outcome.value.get("status") in ("completed", "failed", "abandoned", "rejected"):
                if entry.settlement is None:
                    self.release(request_id)  # ended elsewhere: nothing left to hold
                continue
            entry.deadline_at = deadline


def request_leases(services: Any) -> RequestLeases:
    """The process's leases, built once in gateway/bootstrap.py `build_services`."""
    return services.leases  # type: ignore[no-any-return]


def _journal_of(command: c.CompleteRequest) -> c.JournalUsage:
    return c.JournalUsage(
        request_id=command.request_id,
        usage=command.usage,
        finish_reason=command.finish_reason,
        completion_chars=command.completion_chars,
        completion_sha256=command.completion_sha256,
        latency_ms=command.latency_ms,
        upstream_ms=command.upstream_ms,
    )


async def settle(services: Any, command: c.CompleteRequest | c.FailRequest) -> c.Outcome | None:
    """Make a settlement durable, retrying against fresh state; None when it could not be made
    durable yet (the real usage is then journalled and the charge retried in the background:
    the caller still answers the client). A domain error (e.g. the request was already
    settled) is raised. Shielded: a caller cancelled mid-retry (the client hung up) does not
    stop the settlement."""
    return await asyncio.shield(asyncio.ensure_future(_settle(services, command)))


async def _settle(services: Any, command: c.CompleteRequest | c.FailRequest) -> c.Outcome | None:
    leases = request_leases(services)
    last: BaseException | None = None
    for attempt in range(SETTLE_ATTEMPTS_MAX):
        try:
            outcome = await services.writer.execute_async(command)
        except DomainError:
            leases.release(command.request_id)
            raise
        except Exception as error:  # a conflict the writer gave up on, a store failure
            last = error
            await asyncio.sleep(SETTLE_BACKOFF_S * 2**attempt)
            continue
        leases.release(command.request_id)
        return outcome  # type: ignore[no-any-return]
    log.error(
        "settlement of %s not durable after %d attempts (%s): journalling the real usage",
        command.request_id,
        SETTLE_ATTEMPTS_MAX,
        type(last).__name__,
    )
    if isinstance(command, c.CompleteRequest):
        try:
            await services.writer.execute_async(_journal_of(command))
        except Exception as error:
            log.error("could not journal %s either: %s", command.request_id, type(error).__name__)
    leases.keep_settling(command.request_id, command)
    return None


def submit_settlement(services: Any, command: c.FailRequest) -> None:
    """Settle without awaiting (a cancelled coroutine, a client gone mid-stream): the lease is
    released once it is durable, or the renewer retries it."""
    leases = request_leases(services)

    def done(future: Any) -> None:
        error = future.exception()
        if error is None or isinstance(error, DomainError):
            leases.release(command.request_id)
        else:
            leases.keep_settling(command.request_id, command)

    try:
        services.writer.submit(command).add_done_callback(done)
    except Exception:
        leases.keep_settling(command.request_id, command)


# --- the two settlements, each built in one place ------------------------------------------


def hold_lease(services: Any, request_id: str, deadline_at: datetime) -> None:
    """From admission until its settlement is durable, this process holds the request's
    lease: renewed while it is served, so the sweeper leaves it alone."""
    request_leases(services).hold(request_id, deadline_at)


def release_lease(services: Any, request_id: str) -> None:
    """Not settled by the lifecycle (a bug, a cancellation): no lease is held for it, so the
    sweeper settles it after its deadline, as it does for a dead process."""
    request_leases(services).release(request_id)


def usage_report(usage: Usage) -> c.UsageReport:
    return c.UsageReport(
        usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.source
    )


def charged_usage(admitted: Admission, usage: Usage) -> c.UsageReport:
    """What the ledger charges: the provider's usage, or nothing for a cache hit (no provider
    was called; the client still sees the origin's usage in the body)."""
    if admitted.cache_plan is not None and admitted.cache_plan.hit is not None:
        return c.UsageReport(0, 0, 0, USAGE_SOURCE_CACHE)
    return usage_report(usage)


async def complete(
    services: Any,
    admitted: Admission,
    *,
    usage: Usage,
    upstream_ms: int,
    text: str = "",
    finish_reason: str | None = None,
    first_chunk: c.FirstChunk | None = None,
) -> c.Outcome | None:
    """The provider served it: the charge of its real usage is made durable (retried, or
    journalled and retried in the background); None when journalled. `text` is the
    upstream's own answer text (placeholders, not restored values): counted and hashed.
    `first_chunk`: a stream's first chunk not yet recorded, recorded by the same command."""
    return await settle(
        services,
        c.CompleteRequest(
            request_id=admitted.request_id,
            usage=charged_usage(admitted, usage),
            finish_reason=finish_reason,
            completion_chars=len(text),
            completion_sha256=hashlib.sha256(text.encode()).hexdigest() if text else None,
            latency_ms=admitted.elapsed_ms(),
            upstream_ms=upstream_ms,
            actor_id=admitted.actor_id,
            **cache_fields(admitted.cache_plan),
            first_chunk=first_chunk,
        ),
    )


def _failure(
    admitted: Admission,
    error: GatewayError,
    after_first_chunk: bool,
    delivered_chunks: int,
    usage: Usage | None,
    first_chunk: c.FirstChunk | None = None,
) -> c.FailRequest:
    return c.FailRequest(
        request_id=admitted.request_id,
        http_status=error.status,
        error_code=error.code,
        error_type=error.error_type,
        message=error.ledger_message,
        latency_ms=admitted.elapsed_ms(),
        after_first_chunk=after_first_chunk,
        delivered_chunks=delivered_chunks,
        usage=None if usage is None else usage_report(usage),
        actor_id=admitted.actor_id,
        first_chunk=first_chunk,
    )


async def fail(
    services: Any,
    admitted: Admission,
    error: GatewayError,
    *,
    after_first_chunk: bool = False,
    delivered_chunks: int = 0,
    usage: Usage | None = None,
    first_chunk: c.FirstChunk | None = None,
) -> c.Outcome | None:
    """The request failed after admission: the reservation is released (less what `usage`
    says was used, which is charged)."""
    command = _failure(admitted, error, after_first_chunk, delivered_chunks, usage, first_chunk)
    return await settle(services, command)


def fail_without_waiting(
    services: Any,
    admitted: Admission,
    error: GatewayError,
    *,
    after_first_chunk: bool,
    delivered_chunks: int,
    usage: Usage,
    first_chunk: c.FirstChunk | None = None,
) -> None:
    """The same failure, from a coroutine being cancelled (the client went away)."""
    command = _failure(admitted, error, after_first_chunk, delivered_chunks, usage, first_chunk)
    submit_settlement(services, command)


async def answer_failure(
    services: Any, admitted: Admission, error: BaseException, headers: dict[str, str]
) -> Response:
    """An admitted request failed before its answer started (no provider answered, the
    documents could not be read, the answer was refused): its PII mapping is purged, the
    failure is settled, and the client gets the error envelope with the headers it earned."""
    admitted.purge_pii()
    gateway_error = as_gateway_error(error)
    if gateway_error.status >= 500 and not isinstance(
        error, UpstreamError | GatewayError | DomainError | FailoverExhausted
    ):  # a 5xx that is not a provider's or the domain's answer is a gateway bug
        log.exception("unexpected failure in %s", admitted.request_id, exc_info=error)
    await fail(services, admitted, gateway_error)
    return error_response(gateway_error, admitted.request_id, headers)


def answer_text(body: dict[str, Any], part: str) -> str:
    """The answer's text, what a completion counts and hashes: content and tool-call
    arguments of every choice's `part` ("message" in a whole answer, "delta" in a chunk)."""
    parts: list[str] = []
    for choice in body.get("choices") or []:
        message = choice.get(part) if isinstance(choice, dict) else None
        if isinstance(message, dict):
            if isinstance(message.get("content"), str):
                parts.append(message["content"])
            for call in message.get("tool_calls") or []:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and function.get("arguments"):
                    parts.append(str(function["arguments"]))
    return "".join(parts)
