"""The observability of one app: its metrics, its tracer (or none), and the per-request
observation the middleware puts in a context variable.

The request path calls in here through small hooks (decorators and one wrapper), so chat.py,
embeddings.py, the router and the writer each carry a one-line call. Every hook is a no-op
outside a request (unit tests, the CLI) and costs one context-variable read when tracing is
off.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gateway.observability.metrics import GatewayMetrics, ScrapeTimeGauges
from gateway.observability.tracing import TRACER_NAME, build_tracer_provider

T = TypeVar("T")

# Commands whose commit is a named step of a request's trace.
COMMIT_SPAN_NAMES = {
    "AdmitRequest": "admission commit",
    "CompleteRequest": "settlement commit",
    "FailRequest": "settlement commit",
    "RecordRejection": "rejection commit",
    "Redispatch": "redispatch commit",
    "RecordDocuments": "documents commit",
}


@dataclass
class RequestObservation:
    """What the middleware learns about one HTTP request while it runs (mutated by hooks;
    read by the middleware when the answer is done)."""

    observability: Observability
    started: float
    project_id: str | None = None
    trace_id: str | None = None  # hex; from our span, or the client's traceparent when off
    span_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_CURRENT: ContextVar[RequestObservation | None] = ContextVar("ledgergate_request", default=None)


def current() -> RequestObservation | None:
    return _CURRENT.get()


class Observability:
    def __init__(self, *, metrics: GatewayMetrics, tracer_provider: Any | None = None) -> None:
        self.metrics = metrics
        self.tracer_provider = tracer_provider
        self.tracer = None if tracer_provider is None else tracer_provider.get_tracer(TRACER_NAME)

    @classmethod
    def for_services(cls, services: Any, *, tracer_provider: Any | None = None) -> Observability:
        """A new one for these services (build_services keeps it in `services.observability`;
        a test may replace it there, before the app is created, with its own tracer provider)."""
        routing = services.routing
        names = routing.catalog.names() if routing is not None else ()
        provider = tracer_provider or build_tracer_provider(
            services.settings.raw, services.settings.otel_environment
        )
        return cls(metrics=GatewayMetrics(model_names=names), tracer_provider=provider)

    def bind(self, services: Any) -> None:
        """Wire the hooks that need no request: commits, breakers, scrape-time gauges."""
        services.writer.on_committed = self.metrics.observe_commit
        if services.routing is not None:
            board = services.routing.router.board
            board.subscribe(self.metrics.observe_breaker)
            breakers = board.snapshot
        else:
            breakers = list
        self.metrics.add_collector(
            ScrapeTimeGauges(
                head_position=lambda: services.app.recorder.max_notification_id() or 0,
                views_position=services.runner.views_position,
                breakers=breakers,
            )
        )

    def begin(self, observation: RequestObservation) -> Any:
        return _CURRENT.set(observation)

    @staticmethod
    def end(token: Any) -> None:
        _CURRENT.reset(token)

    def shutdown(self) -> None:
        if self.tracer_provider is not None and hasattr(self.tracer_provider, "shutdown"):
            self.tracer_provider.shutdown()


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A child span of the current request's span; nothing at all when tracing is off."""
    observation = _CURRENT.get()
    tracer = None if observation is None else observation.observability.tracer
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(name, attributes=_clean(attributes)) as current_span:
        yield current_span


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {f"ledgergate.{k}": v for k, v in attributes.items() if v is not None}


def set_attributes(target: Any, **attributes: Any) -> None:
    if target is not None:
        target.set_attributes(_clean(attributes))


# --- hooks on the request path ------------------------------------------------------------


def traced_auth(function: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """authenticate_key: an "auth" span, and the project id noted for the access log."""

    @functools.wraps(function)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        observation = _CURRENT.get()
        if observation is None:
            return await function(*args, **kwargs)
        with span("auth") as current_span:
            result = await function(*args, **kwargs)
            key, project = result  # type: ignore[misc]
            project_id: str = str(project.id)  # type: ignore[has-type]
            observation.project_id = project_id
            set_attributes(current_span, project_id=project_id, key_id=str(key.id))  # type: ignore[has-type]
            return result

    return wrapper


def traced_routing(function: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """decide_for_request: a "routing" span with the chosen model, provider and endpoint."""

    @functools.wraps(function)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        with span("routing") as current_span:
            decision = await function(*args, **kwargs)
            if current_span is not None:
                chosen = decision.chosen  # type: ignore[attr-defined]
                set_attributes(
                    current_span,
                    model=chosen.spec.name,
                    provider=chosen.spec.provider,
                    endpoint=chosen.endpoint_key,
                    candidates=len(decision.targets),  # type: ignore[attr-defined]
                )
            return decision

    return wrapper


def observed_pii_screening(function: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """screen_request_pii(ctx, …): a "pii screening" span and the screening-latency
    histogram, for requests that were screened. Counts and the action only, never values."""

    @functools.wraps(function)
    async def wrapper(ctx: Any, *args: Any, **kwargs: Any) -> T:
        observation = _CURRENT.get()
        if observation is None:
            return await function(ctx, *args, **kwargs)
        started = time.perf_counter()
        outcome = "ok"
        with span("pii screening", request_id=getattr(ctx, "request_id", None)) as current_span:
            try:
                return await function(ctx, *args, **kwargs)
            except Exception as error:
                outcome = str(getattr(error, "code", None) or "error")
                raise
            finally:
                decision = getattr(ctx, "pii_decision", None)
                if decision is None:  # neither the request nor the project asked for it
                    set_attributes(current_span, outcome="not_requested")
                else:
                    if outcome not in ("ok", "guardrail_violation", "pii_screening_unavailable"):
                        outcome = "refused"
                    observation.observability.metrics.pii_screening.labels(outcome).observe(
                        time.perf_counter() - started
                    )
                    set_attributes(
                        current_span,
                        outcome=outcome,
                        action=decision.action,
                        entities=sum(count for _, count in decision.entity_counts),
                    )

    return wrapper


def observed_attempt(
    attempt: Callable[[Any], Awaitable[T]],
) -> Callable[[Any], Awaitable[T]]:
    """run_with_failover's attempt: one "upstream attempt" span per target tried, and the
    upstream-latency histogram by provider and outcome."""
    observation = _CURRENT.get()
    if observation is None:
        return attempt
    metrics = observation.observability.metrics
    number = 0

    async def wrapper(target: Any) -> T:
        nonlocal number
        number += 1
        provider = metrics.provider_label(target.spec.provider)
        started = time.perf_counter()
        outcome = "ok"
        with span(
            "upstream attempt",
            attempt=number,
            model=target.spec.name,
            provider=target.spec.provider,
            endpoint=target.endpoint_key,
        ) as current_span:
            try:
                return await attempt(target)
            except BaseException as error:
                outcome = _attempt_outcome(error)
                set_attributes(current_span, error_code=getattr(error, "code", None))
                if hasattr(error, "status"):
                    set_attributes(current_span, status=int(error.status))
                raise
            finally:
                set_attributes(current_span, outcome=outcome)
                if outcome != "skipped":
                    metrics.upstream.labels(provider, outcome).observe(
                        time.perf_counter() - started
                    )

    return wrapper


def _attempt_outcome(error: BaseException) -> str:
    from gateway.providers.base import UpstreamError
    from gateway.routing.failover import SkipTarget, counts_as_endpoint_failure

    if isinstance(error, SkipTarget):
        return "skipped"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, UpstreamError):
        return "failed" if counts_as_endpoint_failure(error) else "client_error"
    if isinstance(error, Exception):
        return "failed"
    return "cancelled"


@contextmanager
def commit_span(command: Any) -> Iterator[None]:
    """A span around one command's trip through the group-commit writer."""
    observation = _CURRENT.get()
    if observation is None or observation.observability.tracer is None:
        yield
        return
    kind = type(command).__name__
    facts = getattr(command, "facts", None)
    request_id = getattr(command, "request_id", None) or getattr(facts, "request_id", None)
    route = getattr(command, "route", None)
    with span(
        COMMIT_SPAN_NAMES.get(kind, "commit"),
        command=kind,
        request_id=request_id,
        model=getattr(route, "model", None),
        provider=getattr(route, "provider", None),
    ):
        yield
