from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from domain.clock import FixedClock
from domain.errors import IllegalTransition
from domain.routing import BREAKER_CLOSED, BREAKER_HALF_OPEN, BREAKER_OPEN, EndpointBreaker
from gateway.routing.breaker import BreakerBoard, BreakerConfig, BreakerTransition, CircuitBreaker


def make(
    clock: FixedClock, transitions: list[BreakerTransition], **config: object
) -> CircuitBreaker:
    return CircuitBreaker(
        "openai:default",
        config=BreakerConfig(**config),
        clock=clock,
        on_change=transitions.append,  # type: ignore[arg-type]
    )


def opened(clock: FixedClock, transitions: list[BreakerTransition] | None = None) -> CircuitBreaker:
    """A breaker (default config) that a streak of five failures has just opened."""
    breaker = make(clock, [] if transitions is None else transitions)
    for _ in range(5):
        breaker.record_failure()
    return breaker


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 11, 21, 8, 0, tzinfo=UTC))


def test_consecutive_failures_open_the_breaker(clock: FixedClock) -> None:
    transitions: list[BreakerTransition] = []
    breaker = make(clock, transitions)
    for _ in range(4):
        breaker.record_failure("503")
    assert breaker.state == BREAKER_CLOSED
    breaker.record_failure("503")
    assert breaker.state == BREAKER_OPEN
    assert not breaker.available() and not breaker.try_acquire()
    assert transitions[0].to_state == BREAKER_OPEN and transitions[0].consecutive_failures == 5


def test_a_high_failure_rate_opens_the_breaker_even_without_a_streak(clock: FixedClock) -> None:
    breaker = make(clock, [])
    for index in range(10):
        (breaker.record_failure if index % 2 else breaker.record_success)()
    assert breaker.state == BREAKER_OPEN


def test_the_breaker_half_opens_after_the_cooldown_and_admits_one_probe(clock: FixedClock) -> None:
    breaker = opened(clock)
    clock.advance(seconds=29)
    assert breaker.state == BREAKER_OPEN
    clock.advance(seconds=1)
    assert breaker.state == BREAKER_HALF_OPEN
    assert breaker.try_acquire()
    assert not breaker.try_acquire()  # one probe at a time


def test_successful_probes_close_the_breaker(clock: FixedClock) -> None:
    transitions: list[BreakerTransition] = []
    breaker = opened(clock, transitions)
    clock.advance(seconds=30)
    for _ in range(2):
        assert breaker.try_acquire()
        breaker.record_success()
    assert breaker.state == BREAKER_CLOSED
    assert [t.to_state for t in transitions] == [BREAKER_OPEN, BREAKER_HALF_OPEN, BREAKER_CLOSED]


def test_a_failed_probe_reopens_with_a_doubled_cooldown(clock: FixedClock) -> None:
    breaker = opened(clock)
    clock.advance(seconds=30)
    assert breaker.try_acquire()
    breaker.record_failure("still down")
    assert breaker.state == BREAKER_OPEN
    clock.advance(seconds=59)
    assert breaker.state == BREAKER_OPEN
    clock.advance(seconds=1)
    assert breaker.state == BREAKER_HALF_OPEN


def test_a_released_probe_frees_its_slot_without_counting(clock: FixedClock) -> None:
    breaker = opened(clock)
    clock.advance(seconds=30)
    assert breaker.try_acquire()
    breaker.release()
    assert breaker.state == BREAKER_HALF_OPEN and breaker.try_acquire()


def test_an_invalid_breaker_config_is_refused() -> None:
    with pytest.raises(ValueError):
        BreakerConfig(failure_rate_to_open=0.0)


def test_live_transitions_replay_into_the_endpoint_breaker_aggregate(clock: FixedClock) -> None:
    board = BreakerBoard(clock=clock)
    aggregate = EndpointBreaker("openai:default")
    board.subscribe(
        lambda t: aggregate.apply_transition(
            to_state=t.to_state, reason=t.reason, observed_at=t.at, counts=t.counts()
        )
    )
    breaker = board.get("openai:default")
    for _ in range(5):
        breaker.record_failure("503 upstream_unavailable")
    clock.advance(seconds=31)
    for _ in range(2):
        breaker.try_acquire()
        breaker.record_success()
    events = aggregate.collect_events()
    assert [type(e).__name__ for e in events] == ["Registered", "Opened", "HalfOpened", "Closed"]
    opened = events[1]
    assert isinstance(opened, EndpointBreaker.Opened)
    assert opened.consecutive_failures == 5 and Decimal(opened.cooldown_s) == Decimal(30)
    assert aggregate.state == BREAKER_CLOSED and aggregate.times_opened == 1


def test_the_breaker_aggregate_refuses_an_impossible_transition() -> None:
    aggregate = EndpointBreaker("openai:default")
    with pytest.raises(IllegalTransition):
        aggregate.close(reason="?", probe_successes=0, observed_at=datetime(2026, 1, 1, tzinfo=UTC))
    aggregate.open(
        reason="x", failures_in_window=5, requests_in_window=5, consecutive_failures=5,
        cooldown_s=Decimal("30"), observed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    with pytest.raises(IllegalTransition):
        aggregate.open(
            reason="x", failures_in_window=5, requests_in_window=5, consecutive_failures=5,
            cooldown_s=Decimal("30"), observed_at=datetime(2026, 1, 1, tzinfo=UTC),
        )  # fmt: skip


def test_reset_closes_an_open_breaker_with_a_transition_and_forgets_its_history() -> None:
    transitions: list[Any] = []
    board = BreakerBoard(config=BreakerConfig(consecutive_failures_to_open=2))
    board.subscribe(transitions.append)
    opened, troubled = board.get("openai:default"), board.get("mistral:default")
    opened.record_failure("boom")
    opened.record_failure("boom")
    troubled.record_failure("boom")
    assert opened.state == "open"

    board.reset("operator closed it")

    assert [(t.endpoint_key, t.to_state, t.reason) for t in transitions] == [
        ("openai:default", "open", "2 consecutive failures: boom"),
        ("openai:default", "closed", "operator closed it"),
    ]
    assert opened.state == "closed" and opened.available()
    troubled.record_failure("boom")  # its earlier failure is forgotten: one in a row, not two
    assert troubled.state == "closed"
    assert [b["failures_in_window"] for b in board.snapshot()] == [0, 1]
