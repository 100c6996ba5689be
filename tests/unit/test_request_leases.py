"""The serving side of the sweeper's contract (gateway/lifecycle/settlement.py), with a fake writer:
a live request's lease is renewed when half its deadline is left and not before, a lease
held past its bound is left to the sweeper, and a settlement that failed is retried until
it is durable."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from domain import commands as c
from domain.clock import FixedClock
from gateway.lifecycle.settlement import LEASE_HELD_S_MAX, RequestLeases

NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)


@dataclass
class FakeWriter:
    executed: list[Any] = field(default_factory=list)
    failures_left: int = 0

    def execute(self, command: Any, timeout: float | None = None) -> c.Outcome:
        if isinstance(command, c.CompleteRequest) and self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("store unavailable")
        self.executed.append(command)
        return c.Outcome({"status": "streaming", "extended": True})


@dataclass
class FakeSettings:
    request_timeout_s: float = 10.0


@dataclass
class FakeServices:
    clock: FixedClock
    writer: FakeWriter = field(default_factory=FakeWriter)
    settings: FakeSettings = field(default_factory=FakeSettings)


def leases() -> tuple[RequestLeases, FakeServices]:
    services = FakeServices(FixedClock(NOW))
    return RequestLeases(services), services


def test_a_lease_is_renewed_only_once_half_of_the_deadline_is_left() -> None:
    held, services = leases()
    held.hold("r1", NOW + timedelta(seconds=10))
    services.clock.set(NOW + timedelta(seconds=4))
    held.tick()
    assert services.writer.executed == []  # 6 s left of 10: not due
    services.clock.set(NOW + timedelta(seconds=6))
    held.tick()
    [renewal] = services.writer.executed
    assert renewal == c.ExtendDeadline("r1", NOW + timedelta(seconds=16))
    assert held.live() == {"r1": NOW + timedelta(seconds=16)}
    held.release("r1")
    services.clock.set(NOW + timedelta(seconds=15))
    held.tick()
    assert len(services.writer.executed) == 1  # a settled request is never renewed


def test_a_lease_held_past_its_bound_is_left_to_the_sweeper() -> None:
    held, services = leases()
    held.hold("stuck", NOW + timedelta(seconds=10))
    services.clock.set(NOW + timedelta(seconds=LEASE_HELD_S_MAX + 1))
    held.tick()
    assert services.writer.executed == [] and held.live() == {}


def test_a_settlement_that_failed_is_retried_until_durable_while_the_lease_is_kept() -> None:
    held, services = leases()
    held.hold("r2", NOW + timedelta(seconds=10))
    services.writer.failures_left = 2
    settlement = c.CompleteRequest("r2", c.UsageReport(5, 7), "stop", 3, None, 1, 1)
    held.keep_settling("r2", settlement)
    held.tick()
    held.tick()
    assert held.pending_settlements() == ["r2"]
    services.clock.set(NOW + timedelta(seconds=6))
    held.tick()
    assert settlement in services.writer.executed and held.live() == {}
