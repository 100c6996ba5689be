"""Commands as the tests build them: a request's facts, its admission and completion, a
unit price and a funded project, each spelled once. Every keyword names a field of the
domain command, so a test states only what it cares about."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from domain import commands as c
from domain.ids import new_request_id
from domain.request import Request


def request_facts(
    project_id: UUID | None,
    *,
    at: datetime | None = None,
    request_id: str | None = None,
    endpoint: str = "chat.completions",
    key_id: UUID | None = None,
    actor_id: str | None = "u",
    model: str = "m",
    stream: bool = False,
    prompt_chars: int = 10,
    deadline: timedelta = timedelta(minutes=5),
    **fields: Any,
) -> c.RequestFacts:
    """One request's facts as received; `fields` sets any other RequestFacts field."""
    received = at or datetime.now(UTC)
    facts: dict[str, Any] = {
        "message_count": 1,
        "prompt_sha256": None,
        "trace_id": None,
        "idempotency_key_sha256": None,
        "client_ip": None,
        **fields,
    }
    return c.RequestFacts(
        request_id=request_id or new_request_id(),
        endpoint=endpoint,
        project_id=project_id,
        key_id=key_id,
        actor_id=actor_id,
        model_requested=model,
        stream=stream,
        prompt_chars=prompt_chars,
        received_at=received,
        deadline_at=received + deadline,
        **facts,
    )


def received_request(facts: c.RequestFacts, aggregate_id: UUID | None = None) -> Request:
    """A Request aggregate received with `facts` (not saved), under `aggregate_id` or a
    fresh one: for tests of the aggregate itself, without the handlers."""
    fields = {field.name: getattr(facts, field.name) for field in dataclasses.fields(facts)}
    return Request.receive(aggregate_id=aggregate_id or uuid4(), **fields)


def admit_request(
    facts: c.RequestFacts,
    *,
    provider: str = "openai",
    upstream_model: str | None = None,
    input_tokens: int = 100,
    output_tokens: int = 100,
    fee_rate: Decimal | None = Decimal("0.05"),
    **fields: Any,
) -> c.AdmitRequest:
    """The admission of `facts` on the route to its requested model; `fields` sets any other
    AdmitRequest field (daily_budget, key_source, price_at, …)."""
    model = facts.model_requested
    extra = dict(fields)
    if fee_rate is not None:
        extra["fee_rate"] = fee_rate
    return c.AdmitRequest(
        facts=facts,
        route=c.Route(model, provider, upstream_model or model),
        estimated_input_tokens=input_tokens,
        max_output_tokens=output_tokens,
        **extra,
    )


def complete_request(
    request_id: str,
    usage: c.UsageReport | tuple[int, int],
    *,
    completion_chars: int = 1,
    latency_ms: int = 1,
    upstream_ms: int = 1,
) -> c.CompleteRequest:
    """The provider's answer to `request_id`, with the usage it reported."""
    return c.CompleteRequest(
        request_id=request_id,
        usage=usage if isinstance(usage, c.UsageReport) else c.UsageReport(*usage),
        finish_reason="stop",
        completion_chars=completion_chars,
        completion_sha256=None,
        latency_ms=latency_ms,
        upstream_ms=upstream_ms,
    )


def upstream_failure(request_id: str, *, message: str = "x", latency_ms: int = 1) -> c.FailRequest:
    """The provider's retryable 502 (`upstream_error`) as the end of `request_id`."""
    return c.FailRequest(
        request_id=request_id,
        http_status=502,
        error_code="upstream_error",
        error_type="api_error",
        message=message,
        latency_ms=latency_ms,
    )


def list_price(effective_from: datetime, model: str = "gpt-4o-mini") -> c.SetPrice:
    """gpt-4o-mini's list price, 0.15 input / 0.60 output USD per million tokens, in effect
    from `effective_from` (under `model`)."""
    return c.SetPrice(
        model=model,
        input_per_mtok=Decimal("0.15"),
        output_per_mtok=Decimal("0.60"),
        currency="USD",
        effective_from=effective_from,
    )


def unit_price(
    at: datetime, model: str = "m", *, currency: str = "USD", days: int = 1
) -> c.SetPrice:
    """1 per million input tokens, 2 per million output: easy to check by hand."""
    return c.SetPrice(
        model=model,
        input_per_mtok=Decimal(1),
        output_per_mtok=Decimal(2),
        currency=currency,
        effective_from=at - timedelta(days=days),
    )


def initial_top_up(project_id: UUID, balance: Decimal | str, currency: str) -> c.TopUp:
    """A new test project's opening credit, `balance` in `currency`, under the reference
    `initial-<project id>` (run twice, it is one top-up)."""
    return c.TopUp(
        project_id=project_id,
        amount=Decimal(balance),
        currency=currency,
        reference=f"initial-{project_id}",
    )


def funded_project(
    run: Callable[[c.Command], Any],
    balance: Decimal | str | int,
    *,
    name: str = "p",
    currency: str = "USD",
    reference: str | None = None,
) -> UUID:
    """Create a project and top it up with `balance` (no top-up when it is zero). `run` takes
    a command and returns its result's value (a dict with `project_id`)."""
    project_id = UUID(run(c.CreateProject(name=name, currency=currency))["project_id"])
    if Decimal(balance):
        run(
            c.TopUp(
                project_id=project_id,
                amount=Decimal(balance),
                currency=currency,
                reference=reference or f"t-{project_id}",
            )
        )
    return project_id


def writer_run(writer: Any) -> Callable[[c.Command], Any]:
    """`run` for `funded_project` through a group-commit writer."""
    return lambda command: writer.execute(command).value


def priced_project(
    writer: Any, *, name: str = "hot", balance: int = 1_000_000, reference: str = "bench"
) -> UUID:
    """A unit price for model `m` from yesterday and a project funded for a whole run."""
    writer.execute(unit_price(datetime.now(UTC)))
    return funded_project(writer_run(writer), balance, name=name, reference=reference)


def served_request(writer: Any, project_id: UUID, *, stream: bool = False) -> str:
    """One request admitted (100 in, 100 out reserved) and completed (50 and 50 used)."""
    facts = request_facts(project_id, stream=stream)
    writer.execute(admit_request(facts))
    writer.execute(complete_request(facts.request_id, (50, 50)))
    return facts.request_id


def run_callers(callers: int, call: Callable[[int], None]) -> float:
    """Start `callers` threads running `call(index)` at once; the seconds until all ended."""
    barrier = threading.Barrier(callers + 1)

    def caller(index: int) -> None:
        barrier.wait()
        call(index)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started
