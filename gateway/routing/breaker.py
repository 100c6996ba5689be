"""Circuit breakers per provider endpoint: closed → open → half_open → closed | open.

Decisions are in memory on the hot path; every state change is reported through `on_change`
as a `BreakerTransition`, which the gateway records as an EndpointBreaker event
(domain/routing.py). The clock is injected so tests can move time.

Only failures that say something about the endpoint count (5xx, timeouts, connection errors,
429); a client's 400 is released without counting, see `release`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from domain.clock import Clock, SystemClock
from domain.routing import BREAKER_CLOSED, BREAKER_HALF_OPEN, BREAKER_OPEN


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    window_size: int = 20  # last N counted outcomes
    min_requests_in_window: int = 10  # before the failure rate may open the breaker
    failure_rate_to_open: float = 0.5
    consecutive_failures_to_open: int = 5
    cooldown_s: float = 30.0
    cooldown_max_s: float = 300.0  # cooldown doubles after a failed probe, up to this
    half_open_max_probes: int = 1  # concurrent trial requests while half-open
    half_open_successes_to_close: int = 2

    def __post_init__(self) -> None:
        if self.window_size < 1 or self.min_requests_in_window < 1:
            raise ValueError("window sizes must be positive")
        if not 0.0 < self.failure_rate_to_open <= 1.0:
            raise ValueError("failure_rate_to_open must be in (0, 1]")
        if self.cooldown_s <= 0 or self.cooldown_max_s < self.cooldown_s:
            raise ValueError("cooldowns must be positive and max >= initial")
        if self.half_open_max_probes < 1 or self.half_open_successes_to_close < 1:
            raise ValueError("half-open limits must be positive")


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    endpoint_key: str
    from_state: str
    to_state: str
    reason: str
    at: datetime
    failures_in_window: int
    requests_in_window: int
    consecutive_failures: int
    cooldown_s: float
    probe_successes: int

    def counts(self) -> dict[str, Any]:
        """The shape EndpointBreaker.apply_transition takes."""
        return {
            "failures_in_window": self.failures_in_window,
            "requests_in_window": self.requests_in_window,
            "consecutive_failures": self.consecutive_failures,
            "cooldown_s": Decimal(str(self.cooldown_s)),
            "probe_successes": self.probe_successes,
        }


TransitionListener = Callable[[BreakerTransition], None]


class CircuitBreaker:
    def __init__(
        self,
        endpoint_key: str,
        *,
        config: BreakerConfig | None = None,
        clock: Clock | None = None,
        on_change: TransitionListener | None = None,
    ) -> None:
        self.endpoint_key = endpoint_key
        self.config = config or BreakerConfig()
        self.clock = clock or SystemClock()
        self.on_change = on_change
        self._state = BREAKER_CLOSED
        self._window: deque[bool] = deque(maxlen=self.config.window_size)  # True = failure
        self._consecutive_failures = 0
        self._opened_at: datetime | None = None
        self._cooldown_s = self.config.cooldown_s
        self._probes_in_flight = 0
        self._probe_successes = 0

    # ---- state

    @property
    def state(self) -> str:
        """The current state; an open breaker whose cooldown has passed becomes half-open here."""
        if self._state == BREAKER_OPEN and self._opened_at is not None:
            if self.clock.now() >= self._opened_at + timedelta(seconds=self._cooldown_s):
                self._move(BREAKER_HALF_OPEN, f"cooldown of {self._cooldown_s:g}s elapsed")
        return self._state

    def available(self) -> bool:
        """Could a request be sent now? Does not take a probe slot (see try_acquire)."""
        state = self.state
        if state == BREAKER_CLOSED:
            return True
        if state == BREAKER_HALF_OPEN:
            return self._probes_in_flight < self.config.half_open_max_probes
        return False

    def try_acquire(self) -> bool:
        """Call right before sending. In half-open this takes one of the few probe slots."""
        state = self.state
        if state == BREAKER_CLOSED:
            return True
        if state == BREAKER_HALF_OPEN and self._probes_in_flight < self.config.half_open_max_probes:
            self._probes_in_flight += 1
            return True
        return False

    # ---- outcomes

    def record_success(self) -> None:
        state = self.state
        if state == BREAKER_HALF_OPEN:
            self._probes_in_flight = max(0, self._probes_in_flight - 1)
            self._probe_successes += 1
            if self._probe_successes >= self.config.half_open_successes_to_close:
                self._move(BREAKER_CLOSED, f"{self._probe_successes} probe requests succeeded")
            return
        if state == BREAKER_CLOSED:
            self._window.append(False)
            self._consecutive_failures = 0
        # A success reported while open (a request sent before it opened) changes nothing.

    def record_failure(self, reason: str = "upstream failure") -> None:
        state = self.state
        if state == BREAKER_HALF_OPEN:
            self._probes_in_flight = max(0, self._probes_in_flight - 1)
            self._consecutive_failures += 1
            self._cooldown_s = min(self._cooldown_s * 2.0, self.config.cooldown_max_s)
            self._move(BREAKER_OPEN, f"probe failed: {reason}")
            return
        if state != BREAKER_CLOSED:
            return
        self._window.append(True)
        self._consecutive_failures += 1
        failures = sum(self._window)
        requests = len(self._window)
        if self._consecutive_failures >= self.config.consecutive_failures_to_open:
            self._move(BREAKER_OPEN, f"{self._consecutive_failures} consecutive failures: {reason}")
        elif (
            requests >= self.config.min_requests_in_window
            and failures / requests >= self.config.failure_rate_to_open
        ):
            self._move(BREAKER_OPEN, f"{failures}/{requests} failed in window: {reason}")

    def reset(self, reason: str) -> None:
        """Close the breaker and forget its history, as a successful recovery would: an open or
        half-open breaker moves to closed (a transition its listeners see, with `reason`)."""
        if self._state != BREAKER_CLOSED:
            self._move(BREAKER_CLOSED, reason)
        self._window.clear()
        self._consecutive_failures = 0

    def release(self) -> None:
        """The attempt ended without telling us anything about the endpoint (client error,
        cancelled): free a probe slot, count nothing."""
        if self._state == BREAKER_HALF_OPEN:
            self._probes_in_flight = max(0, self._probes_in_flight - 1)

    # ---- transitions

    def _move(self, to_state: str, reason: str) -> None:
        from_state = self._state
        now = self.clock.now()
        transition = BreakerTransition(
            endpoint_key=self.endpoint_key,
            from_state=from_state,
            to_state=to_state,
            reason=reason[:200],
            at=now,
            failures_in_window=sum(self._window),
            requests_in_window=len(self._window),
            consecutive_failures=self._consecutive_failures,
            cooldown_s=self._cooldown_s,
            probe_successes=self._probe_successes,
        )
        self._state = to_state
        if to_state == BREAKER_OPEN:
            self._opened_at = now
            self._probes_in_flight = 0
            self._probe_successes = 0
        elif to_state == BREAKER_HALF_OPEN:
            self._probes_in_flight = 0
            self._probe_successes = 0
        else:  # closed: a fresh start, and the cooldown forgets past trouble
            self._window.clear()
            self._consecutive_failures = 0
            self._cooldown_s = self.config.cooldown_s
            self._opened_at = None
        if self.on_change is not None:
            self.on_change(transition)

    def snapshot(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint_key,
            "state": self.state,
            "failures_in_window": sum(self._window),
            "requests_in_window": len(self._window),
            "consecutive_failures": self._consecutive_failures,
            "cooldown_s": self._cooldown_s,
        }


class BreakerBoard:
    """All breakers, created on first use, sharing one config, clock and listener list."""

    def __init__(self, *, config: BreakerConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config or BreakerConfig()
        self.clock = clock or SystemClock()
        self._breakers: dict[str, CircuitBreaker] = {}
        self._listeners: list[TransitionListener] = []

    def subscribe(self, listener: TransitionListener) -> None:
        self._listeners.append(listener)

    def _notify(self, transition: BreakerTransition) -> None:
        for listener in self._listeners:
            listener(transition)

    def get(self, endpoint_key: str) -> CircuitBreaker:
        breaker = self._breakers.get(endpoint_key)
        if breaker is None:
            breaker = CircuitBreaker(
                endpoint_key, config=self.config, clock=self.clock, on_change=self._notify
            )
            self._breakers[endpoint_key] = breaker
        return breaker

    def available(self, endpoint_key: str) -> bool:
        breaker = self._breakers.get(endpoint_key)
        return True if breaker is None else breaker.available()

    def reset(self, reason: str) -> None:
        """Every breaker closed with no history (see CircuitBreaker.reset)."""
        for breaker in self._breakers.values():
            breaker.reset(reason)

    def snapshot(self) -> list[dict[str, Any]]:
        return [breaker.snapshot() for breaker in self._breakers.values()]
