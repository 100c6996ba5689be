"""The trace steps of admission (issue 12; the rules are domain/trace.py's).

A chat or embeddings request names the governed trace it joins with body `trace_id` or
`X-Trace-Id` and its parent span with `X-Parent-Span-Id`; `trace_join` turns them into the
join AdmitRequest carries, which the writer checks against the contract before it reserves
anything. Before that, `trace_allowed_models` gives the router the trace's allowed models
to choose among, and `observe_refusal` records an expiry a refused request was the first
to see.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain import commands as c
from domain.errors import DomainError
from domain.ids import REQUEST_ID_PREFIX
from domain.trace import ExpireTrace, Trace, is_governed_trace_id, trace_aggregate_id
from gateway.errors import GatewayError
from gateway.validation import check_id

SPAN_ID_CHARS_MAX = 100
LIMIT_PREFIX = "trace:"


def _invalid(message: str, param: str) -> GatewayError:
    return GatewayError("invalid_request", message, param=param)


def trace_join(trace_id: str | None, headers: Mapping[str, Any]) -> c.TraceJoin | None:
    """The governed trace a request joins (its `trace_id`, from the body or `X-Trace-Id`,
    already checked as an id), with `X-Parent-Span-Id` (default: the trace's root). A trace
    id that is not a governed one (`lg_tr_…`) is a free-form correlation label and joins
    nothing; a parent span needs a governed trace."""
    parent = headers.get("x-parent-span-id")
    if parent is not None:
        parent = check_id(parent, "x-parent-span-id")
        if not parent.startswith(REQUEST_ID_PREFIX) or len(parent) > SPAN_ID_CHARS_MAX:
            raise _invalid(
                "'x-parent-span-id' must be a span id of the trace (an lg_req_ request id)",
                "x-parent-span-id",
            )
    if trace_id is None or not is_governed_trace_id(trace_id):
        if parent is not None:
            raise _invalid(
                "'x-parent-span-id' needs a governed trace (trace_id or X-Trace-Id lg_tr_…)",
                "x-parent-span-id",
            )
        return None
    return c.TraceJoin(trace_id=trace_id, parent_span_id=parent)


async def trace_allowed_models(
    services: Any, join: c.TraceJoin | None, project_id: Any
) -> frozenset[str] | None:
    """The joined trace's allowed models, for the router to choose among (a cached read of
    the trace: the writer checks the contract again at admission, exactly)."""
    if join is None:
        return None
    trace = await services.cache.get(trace_aggregate_id(join.trace_id))
    if not isinstance(trace, Trace) or trace.project_id != project_id:
        return None  # admission answers trace_not_found
    return frozenset(trace.allowed_models)


async def observe_refusal(services: Any, project_id: Any, mode: str, error: BaseException) -> None:
    """A request refused because its trace expired: record the expiry (first observed)."""
    if not isinstance(error, DomainError) or error.code != "trace_closed":
        return
    if error.details.get("reason") != "expired" or project_id is None:
        return
    trace_id = str(error.details.get("trace_id") or "")
    if not trace_id:
        trace_id = str(error.details.get("limit", "")).removeprefix(LIMIT_PREFIX)
    if not is_governed_trace_id(trace_id):
        return
    try:
        await services.writer.execute_async(
            ExpireTrace(trace_id=trace_id, project_id=project_id, mode=mode)
        )
    except Exception:  # noqa: S110 - the refusal stands; the next look records the expiry
        pass


__all__ = ["observe_refusal", "trace_allowed_models", "trace_join"]
