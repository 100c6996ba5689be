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
from datetime import timedelta
from typing import Any

from domain import commands as c
from gateway.http.traces import sweep_expired_traces
from gateway.periodic import Periodic
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


class Sweeper(Periodic):
    thread_name = "ledgergate-sweeper"
    failure_message = "sweep failed; will retry"

    def __init__(self, services: Any) -> None:
        super().__init__(log)
        self.services = services

    def interval_s(self) -> float:
        return float(self.services.settings.sweep_interval_s)

    def tick(self) -> None:
        swept = sweep_once(self.services)
        if swept:
            log.info("swept %d abandoned requests", len(swept))
        expired = sweep_expired_traces(self.services)  # gateway/http/traces.py
        if expired:
            log.info("recorded the expiry of %d traces", len(expired))
