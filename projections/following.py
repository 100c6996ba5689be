"""Following the event log in the background: one daemon thread that calls `catch_up`
until stopped, waking early when poked, backing off (doubling, at most
`CATCH_UP_BACKOFF_MAX_S`) while catch-up fails. The projection runner and the Merkle audit
log both follow the log this way."""

from __future__ import annotations

import logging
import threading
from typing import Self

CATCH_UP_BACKOFF_MAX_S = 5.0


class BackgroundFollower:
    thread_name: str = "ledgergate-follower"
    failure_message: str = "catch-up failed; retrying"
    log: logging.Logger = logging.getLogger("ledgergate")

    def _init_following(self) -> None:
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.errors = 0
        self.poll_interval_s = 0.0  # set by start: how long the thread sleeps unpoked

    def catch_up(self) -> int:
        raise NotImplementedError

    def _wait_s(self, backoff_s: float) -> float:
        """How long to sleep between two catch-ups (the current backoff by default)."""
        return backoff_s

    def poke(self) -> None:
        self._wake.set()

    def start(self, poll_interval_s: float) -> Self:
        if self._thread is None:
            self._stopping = False
            self.poll_interval_s = poll_interval_s
            self._thread = threading.Thread(
                target=self._run, args=(poll_interval_s,), name=self.thread_name, daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self, poll_interval_s: float) -> None:
        backoff = poll_interval_s
        while not self._stopping:
            try:
                self.catch_up()
                backoff = poll_interval_s
            except Exception:  # keep following the log; the error is logged, not swallowed
                self.errors += 1
                self.log.exception(self.failure_message)
                backoff = min(backoff * 2, CATCH_UP_BACKOFF_MAX_S)
            self._wake.wait(self._wait_s(backoff))
            self._wake.clear()
