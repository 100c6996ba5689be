"""Moves requests stuck in a non-terminal state (the process that served them was killed)
to `abandoned`, settling their reservation by the rule in domain/handlers.abandon_request:
never dispatched → released in full; dispatched or streaming → the estimated input tokens
are charged at the admission price, output is not, the rest is released.

A request is overdue once its deadline plus a grace period has passed. The deadline is the
serving process's lease: received_at + LEDGERGATE_REQUEST_TIMEOUT_S, renewed by that process
(Request.DeadlineExtended, gateway/lifecycle/settlement.py) for as long as it is still serving the
request. So only requests of dead (or stalled) processes are ever swept; the writer re-checks
the deadline on the aggregate itself (`overdue_before`), so a renewal that lands between the
sweeper's read and its write wins. A request with journalled real usage is settled with it.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

from domain import commands as c
from projections import queries

log = logging.getLogger("ledgergate.sweeper")


def sweep_once(services: Any, grace_s: float | None = None) -> list[dict[str, Any]]:
    services.runner.catch_up()
    grace = services.settings.sweep_grace_s if grace_s is None else grace_s
    cutoff = services.clock.now() - timedelta(seconds=grace)
    swept = []
    for request_id in queries.overdue_requests(services.store, cutoff):
        try:
            outcome = services.writer.execute(
                c.AbandonRequest(request_id=request_id, overdue_before=cutoff)
            )
        except Exception as error:  # one bad request must not stop the sweep
            log.warning("could not sweep %s: %s", request_id, type(error).__name__)
            continue
        if outcome.value.get("changed"):
            swept.append(outcome.value)
    if swept:
        services.runner.catch_up()
    return swept


class Sweeper:
    def __init__(self, services: Any) -> None:
        self.services = services
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Sweeper:
        self._thread = threading.Thread(target=self._run, name="ledgergate-sweeper", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.services.settings.sweep_interval_s):
            try:
                swept = sweep_once(self.services)
                if swept:
                    log.info("swept %d abandoned requests", len(swept))
            except Exception:
                log.exception("sweep failed; will retry")
