"""Dispatch a RouteDecision: try its targets in order within the request's deadline.

Every target was already compliant when the decision was made, and this loop only walks that
list, so failover cannot leave the tier. What counts as an endpoint failure (feeds the breaker
and the statistics, and moves on to the next target): 5xx, 429, timeouts, anything the adapter
marked retryable. A client error (other 4xx) goes straight back to the caller: another model
would most likely refuse the same request, and the endpoint did nothing wrong. Neither does
the gateway's own pool exhaustion (`UpstreamError.local`): it is answered 503 `gateway_busy`
without touching the breaker or the statistics.

For streaming, `attempt` should return once the first chunk is in (adapters raise
UpstreamError before that), so failover never happens after bytes reached the client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from domain.errors import NoRouteAvailable
from domain.money import Money
from domain.routing import counts_as_endpoint_failure as endpoint_failure_rule
from gateway.observability.core import observed_attempt
from gateway.providers.base import UpstreamError
from gateway.routing.decision import RouteDecision, RouteTarget
from gateway.routing.router import Router

T = TypeVar("T")

OUTCOME_OK = "ok"
OUTCOME_FAILED = "failed"
OUTCOME_SKIPPED = "skipped_breaker_open"
OUTCOME_CLIENT_ERROR = "client_error"
OUTCOME_DEADLINE = "deadline_exceeded"
OUTCOME_NOT_USABLE = "target_not_usable"
OUTCOME_GATEWAY_BUSY = "gateway_busy"  # our own upstream pool was exhausted


class SkipTarget(Exception):
    """Raised by an attempt that cannot use this target at all (no adapter configured, no
    price for the fallback model): move on without blaming the endpoint."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    target: str  # "model@provider:endpoint"
    outcome: str
    latency_ms: float
    status: int | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True)
class FailoverResult(Generic[T]):
    value: T
    target: RouteTarget
    attempts: tuple[AttemptRecord, ...]

    @property
    def failed_over(self) -> bool:
        return len([a for a in self.attempts if a.outcome != OUTCOME_SKIPPED]) > 1


class FailoverExhausted(UpstreamError):
    """Every target failed; carries the attempts so the failure event can list them."""

    def __init__(self, last: UpstreamError, attempts: tuple[AttemptRecord, ...]) -> None:
        super().__init__(
            status=last.status,
            code=last.code,
            message=last.message,
            error_type=last.error_type,
            provider=last.provider,
            param=last.param,
            retry_after_seconds=last.retry_after_seconds,
            retry_after_source=last.retry_after_source,
            hint=last.hint,
            retryable=last.retryable,
            provider_text=last.provider_text,
        )
        self.attempts = attempts


def counts_as_endpoint_failure(error: UpstreamError) -> bool:
    """domain/routing.py's rule, for an upstream error."""
    return endpoint_failure_rule(error.status, retryable=error.retryable, local=error.local)


Measure = Callable[[T], tuple[Money | None, bool | None]]


async def run_with_failover(
    router: Router,
    decision: RouteDecision,
    attempt: Callable[[RouteTarget], Awaitable[T]],
    *,
    deadline_s: float | None = None,
    measure: Measure[T] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    cut_in_flight: bool = True,
) -> FailoverResult[T]:
    """Run `attempt` on each target in turn until one succeeds or the deadline passes.

    The deadline bounds failover: no further target is tried once it has passed (the first
    one always is). With `cut_in_flight` an attempt still running at the deadline is also
    cancelled; without it, the adapter's own timeouts bound each call (the chat route's
    choice: its request deadline is the sweeper's, not a limit on a long stream).
    `measure(value)` may return (cost, output_valid) of a success for the statistics.
    """
    attempt = observed_attempt(attempt)  # a span and the upstream latency per attempt
    started = monotonic()
    deadline_at = None if deadline_s is None else started + deadline_s
    attempts: list[AttemptRecord] = []
    last_error: UpstreamError | None = None
    for index, target in enumerate(decision.targets):
        remaining = None if deadline_at is None else deadline_at - monotonic()
        if remaining is not None and remaining <= 0 and index > 0:
            break
        if not cut_in_flight:
            remaining = None
        breaker = router.board.get(target.endpoint_key)
        if not breaker.try_acquire():
            attempts.append(AttemptRecord(target.label(), OUTCOME_SKIPPED, 0.0))
            continue
        attempt_started = monotonic()
        try:
            if remaining is None:
                value = await attempt(target)
            else:
                value = await asyncio.wait_for(attempt(target), timeout=max(remaining, 0.001))
        except TimeoutError:
            latency_ms = (monotonic() - attempt_started) * 1000.0
            router.observe(
                target, success=False, latency_ms=latency_ms, failure_reason="deadline exceeded"
            )
            attempts.append(AttemptRecord(target.label(), OUTCOME_DEADLINE, latency_ms, 504))
            last_error = UpstreamError(
                status=504,
                code="deadline_exceeded",
                message="the request's deadline passed before any compliant model answered",
                error_type="timeout_error",
                provider=target.spec.provider,
                retryable=True,
            )
            break
        except SkipTarget as skipped:
            breaker.release()
            attempts.append(
                AttemptRecord(target.label(), OUTCOME_NOT_USABLE, 0.0, None, skipped.code)
            )
            continue
        except UpstreamError as error:
            latency_ms = (monotonic() - attempt_started) * 1000.0
            if not counts_as_endpoint_failure(error):
                breaker.release()
                outcome = OUTCOME_GATEWAY_BUSY if error.local else OUTCOME_CLIENT_ERROR
                attempts.append(
                    AttemptRecord(target.label(), outcome, latency_ms, error.status, error.code)
                )
                raise
            router.observe(target, success=False, latency_ms=latency_ms, failure_reason=error.code)
            attempts.append(
                AttemptRecord(target.label(), OUTCOME_FAILED, latency_ms, error.status, error.code)
            )
            last_error = error
            continue
        except BaseException:
            breaker.release()  # cancelled or a bug: says nothing about the endpoint
            raise
        latency_ms = (monotonic() - attempt_started) * 1000.0
        cost, output_valid = measure(value) if measure is not None else (None, None)
        router.observe(
            target, success=True, latency_ms=latency_ms, cost=cost, output_valid=output_valid
        )
        attempts.append(AttemptRecord(target.label(), OUTCOME_OK, latency_ms))
        return FailoverResult(value, target, tuple(attempts))
    if last_error is None:
        raise NoRouteAvailable(
            "no compliant endpoint could take the request (breakers open or targets not "
            "usable); it was not sent elsewhere",
            tier=decision.tier,
            model=decision.requested_model,
        )
    raise FailoverExhausted(last_error, tuple(attempts))
