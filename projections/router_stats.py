"""Router statistics: one row per finished upstream attempt, derived from Request events.

    Admitted / Repriced   → remember the request's price currency
    Dispatched (attempt n) → if attempt n-1 was in flight, it failed (that is what a failover
                             means); remember attempt n's model and endpoint
    Completed             → the attempt succeeded (latency = upstream_ms, cost = provider_cost)
    Failed                → the attempt failed if the endpoint was at fault (5xx, 429)
    Abandoned             → nothing is known about the attempt; forget it

The gateway warms its in-memory RouterStatistics from these rows at start
(`recent_outcomes`), so Thompson sampling resumes where the fleet left off, and a rebuilt
view gives the same rows: outcome rows are keyed by (position, attempt).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from domain.request import Request
from domain.routing import counts_as_endpoint_failure
from projections.base import View, reads
from projections.db import ReadStore, Tx, as_decimal, iso

OUTCOMES_WARM_START_MAX = 20_000


ATTEMPT_COLUMNS = ("model", "provider", "endpoint", "attempt", "price_currency")
OUTCOME_COLUMNS = (
    ("position", "bigint"),
    ("attempt", "integer"),
    ("request_aggregate_id", "text"),
    ("model", "text"),
    ("provider", "text"),
    ("endpoint", "text"),
    ("success", "integer"),
    ("latency_ms", "integer"),
    ("cost", "numeric"),
    ("currency", "text"),
    ("error_code", "text"),
    ("observed_at", "text"),
)


class _InFlight:
    """One request's attempt row as the batch has left it: `row` None once forgotten (or
    never there), `stored` whether the row is in the table, `changed` whether it must be
    written again."""

    __slots__ = ("row", "stored", "changed")

    def __init__(self, row: dict[str, Any] | None, stored: bool, changed: bool) -> None:
        self.row = row
        self.stored = stored
        self.changed = changed


class RouterStatsView(View):
    """The in-flight attempt of each request lives in lg_router_attempts from admission to
    the end; a batch keeps what its events do to it in memory and writes the result once in
    `flush` (most requests are admitted, dispatched and finished within one or two batches,
    so their row never reaches the table at all), and the batch's outcomes in one statement.
    It ran six statements per request."""

    name = "router_stats"
    tables = ("lg_router_attempts", "lg_router_outcomes")

    def __init__(self) -> None:
        self._flights: dict[str, _InFlight] = {}
        self._outcomes: list[tuple[Any, ...]] = []

    def reset(self, tx: Tx) -> None:
        super().reset(tx)
        self.discard()

    def discard(self) -> None:
        self._flights = {}
        self._outcomes = []

    def flush(self, tx: Tx) -> None:
        flights, outcomes = self._flights, self._outcomes
        self.discard()
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        deletes: list[tuple[str]] = []
        for aggregate_id, flight in flights.items():
            if flight.row is None:
                if flight.stored:
                    deletes.append((aggregate_id,))
            elif flight.changed:
                values = tuple(flight.row[name] for name in ATTEMPT_COLUMNS)
                target = updates if flight.stored else inserts
                target.append((*values, flight.row["position"], aggregate_id))
        sql = tx.store.sql
        if inserts:
            tx.cursor.executemany(
                sql(
                    "INSERT INTO lg_router_attempts (model, provider, endpoint, attempt, "
                    "price_currency, position, request_aggregate_id) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (request_aggregate_id) DO UPDATE SET model = excluded.model, "
                    "provider = excluded.provider, endpoint = excluded.endpoint, "
                    "attempt = excluded.attempt, price_currency = excluded.price_currency, "
                    "position = excluded.position"
                ),
                inserts,
            )
        if updates:
            tx.cursor.executemany(
                sql(
                    "UPDATE lg_router_attempts SET model = %s, provider = %s, endpoint = %s, "
                    "attempt = %s, price_currency = %s, position = %s "
                    "WHERE request_aggregate_id = %s"
                ),
                updates,
            )
        if deletes:
            tx.cursor.executemany(
                sql("DELETE FROM lg_router_attempts WHERE request_aggregate_id = %s"), deletes
            )
        tx.insert_rows(
            "lg_router_outcomes",
            OUTCOME_COLUMNS,
            outcomes,
            "ON CONFLICT (position, attempt) DO NOTHING",
        )

    @reads(Request.Admitted)
    def _admitted(self, tx: Tx, event: Any, position: int) -> None:
        aggregate_id = str(event.originator_id)
        if aggregate_id in self._flights:  # as ON CONFLICT DO NOTHING: the first one stays
            return
        row = {
            "model": event.model,
            "provider": event.provider,
            "endpoint": None,
            "attempt": 0,
            "price_currency": event.price_currency,
            "position": position,
        }
        self._flights[aggregate_id] = _InFlight(row, stored=False, changed=True)

    @reads(Request.Repriced)
    def _repriced(self, tx: Tx, event: Any, position: int) -> None:
        flight = self._flight(tx, str(event.originator_id))
        if flight.row is not None:
            flight.row.update(price_currency=event.price_currency, position=position)
            flight.changed = True

    @reads(Request.Dispatched)
    def _dispatched(self, tx: Tx, event: Any, position: int) -> None:
        aggregate_id = str(event.originator_id)
        flight = self._flight(tx, aggregate_id)
        row = flight.row
        if row is None:
            return
        if row["endpoint"] is not None and int(row["attempt"]) >= 1:
            self._outcome(position, aggregate_id, row, False, None, None, "failover",
                          event.dispatched_at)  # fmt: skip
        row.update(
            model=event.model,
            provider=event.provider,
            endpoint=f"{event.provider}:{event.endpoint_name}",
            attempt=event.attempt,
            position=position,
        )
        flight.changed = True

    @reads(Request.Completed)
    def _completed(self, tx: Tx, event: Any, position: int) -> None:
        aggregate_id = str(event.originator_id)
        row = self._flight(tx, aggregate_id).row
        # A cache hit called no provider: it says nothing about the endpoint.
        if row is not None and row["endpoint"] is not None and event.cache != "hit":
            self._outcome(position, aggregate_id, row, True, event.upstream_ms,
                          event.provider_cost, None, event.completed_at)  # fmt: skip
        self._forget(tx, aggregate_id)

    @reads(Request.Failed)
    def _failed(self, tx: Tx, event: Any, position: int) -> None:
        aggregate_id = str(event.originator_id)
        row = self._flight(tx, aggregate_id).row
        if (
            row is not None
            and row["endpoint"] is not None
            and counts_as_endpoint_failure(event.http_status)
        ):
            self._outcome(position, aggregate_id, row, False, None, None,
                          event.error_code, event.failed_at)  # fmt: skip
        self._forget(tx, aggregate_id)

    @reads(Request.Abandoned)
    def _abandoned(self, tx: Tx, event: Any, position: int) -> None:
        self._forget(tx, str(event.originator_id))

    def _flight(self, tx: Tx, aggregate_id: str) -> _InFlight:
        """The request's attempt as this batch has it, read from the table on first use."""
        flight = self._flights.get(aggregate_id)
        if flight is None:
            stored = tx.execute(
                "SELECT model, provider, endpoint, attempt, price_currency, position "
                "FROM lg_router_attempts WHERE request_aggregate_id = %s",
                (aggregate_id,),
            ).fetchone()
            flight = _InFlight(stored, stored=stored is not None, changed=False)
            self._flights[aggregate_id] = flight
        return flight

    def _forget(self, tx: Tx, aggregate_id: str) -> None:
        flight = self._flights.get(aggregate_id)
        if flight is None:  # not read: delete whatever the table holds, without asking
            self._flights[aggregate_id] = _InFlight(None, stored=True, changed=False)
        else:
            flight.row = None

    def _outcome(
        self,
        position: int,
        aggregate_id: str,
        row: dict[str, Any],
        success: bool,
        latency_ms: int | None,
        cost: Decimal | None,
        error_code: str | None,
        observed_at: Any,
    ) -> None:
        self._outcomes.append(
            (
                position,
                int(row["attempt"]),
                aggregate_id,
                row["model"],
                row["provider"],
                row["endpoint"],
                1 if success else 0,
                latency_ms,
                cost,
                row["price_currency"] if cost is not None else None,
                error_code,
                iso(observed_at),
            )
        )


def recent_outcomes(store: ReadStore, limit: int = OUTCOMES_WARM_START_MAX) -> list[dict[str, Any]]:
    """The latest `limit` outcomes, oldest first (the order the statistics replay them in)."""
    with store.transaction(write=False) as tx:
        rows = tx.execute(
            "SELECT position, attempt, model, provider, endpoint, success, latency_ms, cost, currency, "
            "error_code, observed_at FROM lg_router_outcomes ORDER BY position DESC, attempt DESC "
            "LIMIT %s",
            (limit,),
        ).fetchall()
    rows.reverse()
    for row in rows:
        row["success"] = bool(row["success"])
        row["cost"] = as_decimal(row["cost"])
    return rows
