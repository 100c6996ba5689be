from __future__ import annotations

import asyncio

import pytest

from domain.errors import NoRouteAvailable
from domain.tiers import effective_tier
from gateway.providers.base import UpstreamError
from gateway.routing.decision import RouteTarget
from gateway.routing.failover import (
    OUTCOME_FAILED,
    OUTCOME_OK,
    OUTCOME_SKIPPED,
    FailoverExhausted,
    run_with_failover,
)
from gateway.routing.router import Router
from tests.support.routing import upstream_outage as outage


async def test_a_failing_first_target_fails_over_to_the_next(router: Router) -> None:
    decision = router.decide("gpt-5", effective_tier("unrestricted"))
    calls: list[str] = []

    async def attempt(target: RouteTarget) -> str:
        calls.append(target.label())
        if len(calls) == 1:
            raise outage()
        return "answer"

    result = await run_with_failover(router, decision, attempt)
    assert result.value == "answer"
    assert [a.outcome for a in result.attempts] == [OUTCOME_FAILED, OUTCOME_OK]
    assert result.target == decision.failover[0] and result.failed_over
    assert router.stats.get("gpt-5").failures == 1  # type: ignore[union-attr]


async def test_a_client_error_goes_back_to_the_caller_without_failover(router: Router) -> None:
    decision = router.decide("gpt-5", effective_tier("unrestricted"))
    calls = 0

    async def attempt(target: RouteTarget) -> str:
        nonlocal calls
        calls += 1
        raise UpstreamError(
            status=400, code="context_length_exceeded", message="too long", provider="openai"
        )

    with pytest.raises(UpstreamError) as caught:
        await run_with_failover(router, decision, attempt)
    assert caught.value.code == "context_length_exceeded" and calls == 1
    assert router.stats.get("gpt-5") is None  # the endpoint did nothing wrong


async def test_when_every_target_fails_the_last_error_is_raised_with_all_attempts(
    router: Router,
) -> None:
    decision = router.decide("eu-sweden", effective_tier("unrestricted"))

    async def attempt(target: RouteTarget) -> str:
        raise outage("bedrock")

    with pytest.raises(FailoverExhausted) as caught:
        await run_with_failover(router, decision, attempt)
    assert len(caught.value.attempts) == len(decision.targets)
    assert caught.value.status == 503


async def test_the_deadline_stops_failover(router: Router) -> None:
    decision = router.decide("gpt-5", effective_tier("unrestricted"))
    calls = 0

    async def attempt(target: RouteTarget) -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(1.0)
        return "too late"

    with pytest.raises(FailoverExhausted) as caught:
        await run_with_failover(router, decision, attempt, deadline_s=0.05)
    assert caught.value.status == 504 and caught.value.code == "deadline_exceeded"
    assert calls == 1


async def test_targets_whose_breaker_opened_after_the_decision_are_skipped(router: Router) -> None:
    decision = router.decide("gpt-5", effective_tier("unrestricted"))
    for _ in range(5):
        router.board.get(decision.chosen.endpoint_key).record_failure()

    async def attempt(target: RouteTarget) -> str:
        return target.endpoint_key

    result = await run_with_failover(router, decision, attempt)
    assert result.attempts[0].outcome == OUTCOME_SKIPPED
    assert result.value != decision.chosen.endpoint_key


async def test_if_every_breaker_is_open_nothing_is_sent(router: Router) -> None:
    decision = router.decide("eu-sweden", effective_tier("unrestricted"))
    for _ in range(5):
        router.board.get("bedrock:stockholm").record_failure()

    async def attempt(target: RouteTarget) -> str:
        raise AssertionError("nothing may be sent")

    with pytest.raises(NoRouteAvailable):
        await run_with_failover(router, decision, attempt)


async def test_a_client_error_on_a_half_open_probe_frees_the_probe_slot(router: Router) -> None:
    from datetime import UTC, datetime

    from domain.clock import FixedClock

    clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    router.board.clock = clock
    breaker = router.board.get("openai:default")
    breaker.clock = clock
    for _ in range(5):
        breaker.record_failure()
    clock.advance(seconds=31)
    decision = router.decide("gpt-5", effective_tier("unrestricted"))
    target = next(t for t in decision.targets if t.endpoint_key == "openai:default")

    async def attempt(_: RouteTarget) -> str:
        raise UpstreamError(status=400, code="bad", message="bad", provider="openai")

    from gateway.routing.decision import RouteDecision

    single = RouteDecision(decision.requested_model, decision.mode, decision.variant, decision.tier,
                           target, (), decision.reason, 1.0, ())  # fmt: skip
    with pytest.raises(UpstreamError):
        await run_with_failover(router, single, attempt)
    assert breaker.try_acquire()  # the slot is free again


async def test_a_target_the_gateway_cannot_use_is_skipped_without_blaming_its_endpoint(
    router: Router,
) -> None:
    from gateway.routing.failover import OUTCOME_NOT_USABLE, SkipTarget

    decision = router.decide("gpt-5", effective_tier("unrestricted"))

    async def attempt(target: RouteTarget) -> str:
        if target == decision.chosen:
            raise SkipTarget("provider_not_configured", "no adapter")
        return "ok"

    result = await run_with_failover(router, decision, attempt)
    assert result.attempts[0].outcome == OUTCOME_NOT_USABLE
    assert router.board.get(decision.chosen.endpoint_key).snapshot()["requests_in_window"] == 0


async def test_without_cutting_in_flight_the_deadline_only_stops_further_failover(
    router: Router,
) -> None:
    decision = router.decide("gpt-5", effective_tier("unrestricted"))
    calls: list[str] = []

    async def attempt(target: RouteTarget) -> str:
        calls.append(target.label())
        await asyncio.sleep(0.05)
        if len(calls) == 1:
            raise outage()
        return "late but whole"

    with pytest.raises(FailoverExhausted):
        await run_with_failover(router, decision, attempt, deadline_s=0.01, cut_in_flight=False)
    assert len(calls) == 1  # the first attempt ran to its end; no second one started late


async def test_our_own_pool_exhaustion_never_counts_against_the_provider(router: Router) -> None:
    import httpx

    from gateway.providers.errors import error_from_transport

    decision = router.decide("gpt-5", effective_tier("unrestricted"))
    calls = 0

    async def attempt(target: RouteTarget) -> str:
        nonlocal calls
        calls += 1
        raise error_from_transport("openai", httpx.PoolTimeout("no connection in the pool"))

    for _ in range(3 * router.board.config.consecutive_failures_to_open):
        with pytest.raises(UpstreamError) as caught:
            await run_with_failover(router, decision, attempt)
        assert caught.value.status == 503 and caught.value.code == "gateway_busy"
        assert caught.value.retry_after_seconds is not None
    assert calls == 3 * router.board.config.consecutive_failures_to_open  # no failover either
    breaker = router.board.get(decision.chosen.endpoint_key)
    assert breaker.state == "closed" and breaker.try_acquire()  # the breaker never opened
    breaker.release()
    assert router.stats.get("gpt-5") is None  # and the statistics never saw a failure
    with pytest.raises(UpstreamError) as caught:
        await run_with_failover(router, decision, attempt)
    assert caught.value.code == "gateway_busy"
