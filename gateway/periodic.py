"""A duty a process repeats in the background while it serves (lease renewal, the sweeper,
the audit's scheduled live check): one daemon thread that runs `tick` every `interval_s()`
until stopped. A failing tick is logged and the next one runs on time: a background duty must
outlive any one bad write."""

from __future__ import annotations

import logging
import threading
from typing import ClassVar, Self

JOIN_S_MAX_DEFAULT = 5.0  # how long `stop` waits for a tick in progress


class Periodic:
    """Subclasses name their thread and failure log line, and define `interval_s` (asked
    before every wait, so a setting it reads applies at once) and `tick`."""

    thread_name: ClassVar[str]
    failure_message: ClassVar[str]
    join_s_max: ClassVar[float] = JOIN_S_MAX_DEFAULT

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def interval_s(self) -> float:
        raise NotImplementedError

    def tick(self) -> object:
        raise NotImplementedError

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.join_s_max)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s()):
            try:
                self.tick()
            except Exception:  # logged with its traceback, never swallowed
                self._log.exception(self.failure_message)
