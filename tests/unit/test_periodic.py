"""gateway/periodic.py: the background loop the lease renewer, the sweeper and the audit's
scheduled live check share."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest

from gateway.periodic import Periodic

WAIT_S_MAX = 5.0
LOG = logging.getLogger("ledgergate.test_periodic")


class _Duty(Periodic):
    thread_name = "test-periodic"
    failure_message = "test duty failed; will retry"

    def __init__(self, tick: Callable[[], object], interval_s: float) -> None:
        super().__init__(LOG)
        self._tick = tick
        self._interval_s = interval_s

    def interval_s(self) -> float:
        return self._interval_s

    def tick(self) -> object:
        return self._tick()


def test_a_failing_tick_is_logged_and_the_next_tick_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ticks: list[int] = []
    third = threading.Event()

    def tick() -> None:
        ticks.append(len(ticks))
        if len(ticks) == 1:
            raise RuntimeError("one bad write")
        if len(ticks) >= 3:
            third.set()

    duty = _Duty(tick, 0.01)
    with caplog.at_level(logging.ERROR, logger=LOG.name):
        duty.start()
        try:
            assert third.wait(WAIT_S_MAX)
        finally:
            duty.stop()
    assert [r.getMessage() for r in caplog.records] == ["test duty failed; will retry"]
    assert caplog.records[0].exc_info is not None  # the traceback is kept, not swallowed


def test_start_is_idempotent_and_stop_ends_the_thread() -> None:
    duty = _Duty(lambda: None, 0.01)
    assert duty.start() is duty
    duty.start()
    assert [t.name for t in threading.enumerate()].count("test-periodic") == 1
    duty.stop()
    assert "test-periodic" not in [t.name for t in threading.enumerate()]


def test_no_tick_runs_before_the_first_interval_has_passed() -> None:
    ticked = threading.Event()
    duty = _Duty(ticked.set, 60.0)
    duty.start()
    duty.stop()
    assert not ticked.is_set()
