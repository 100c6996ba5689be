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


class RouterStatsView(View):
    name = "router_stats"
    tables = ("lg_router_attempts", "lg_router_outcomes")

    @reads(Request.Admitted)
    def _admitted(self, tx: Tx, event: Any, position: int) -> None:
        tx.execute(
            "INSERT INTO lg_router_attempts (request_aggregate_id, model, provider, endpoint, attempt, "
            "price_currency, position) VALUES (%s, %s, %s, NULL, 0, %s, %s) "
            "ON CONFLICT (request_aggregate_id) DO NOTHING",
            (str(event.originator_id), event.model, event.provider, event.price_currency, position),
        )

    @reads(Request.Repriced)
    def _repriced(self, tx: Tx, event: Any, position: int) -> None:
        tx.execute(
            "UPDATE lg_router_attempts SET price_currency = %s, position = %s "
            "WHERE request_aggregate_id = %s",
            (event.price_currency, position, str(event.originator_id)),
        )

    @reads(Request.Dispatched)
    def _dispatched(self, tx: Tx, event: Any, position: int) -> None:
        aggregate_id = str(event.originator_id)
        row = self._in_flight(tx, aggregate_id)
        if row is None:
            return
        if row["endpoint"] is not None and int(row["attempt"]) >= 1:
            self._outcome(tx, position, aggregate_id, row, False, None, None, "failover",
                          event.dispatched_at)  # fmt: skip
        tx.execute(
            "UPDATE lg_router_attempts SET model = %s, provider = %s, endpoint = %s, attempt = %s, "
            "position = %s WHERE request_aggregate_id = %s",
            (
                event.model,
                event.provider,
                f"{event.provider}:{event.endpoint_name}",
                event.attempt,
                position,
                aggregate_id,
            ),
        )

    @reads(Request.Completed)
    def _completed(self, tx: Tx, event: Any, position: int) -> None:
        aggregate_id = str(event.originator_id)
        row = self._in_flight(tx, aggregate_id)
        # A cache hit called no provider: it says nothing about the endpoint.
        if row is not None and row["endpoint"] is not None and event.cache != "hit":
            self._outcome(tx, position, aggregate_id, row, True, event.upstream_ms,
                          event.provider_cost, None, event.completed_at)  # fmt: skip
        self._forget(tx, aggregate_id)

    @reads(Request.Failed)
    def _failed(self, tx: Tx, event: Any, position: int) -> None:
        aggregate_id = str(event.originator_id)
        row = self._in_flight(tx, aggregate_id)
        if (
            row is not None
            and row["endpoint"] is not None
            and counts_as_endpoint_failure(event.http_status)
        ):
            self._outcome(tx, position, aggregate_id, row, False, None, None,
                          event.error_code, event.failed_at)  # fmt: skip
        self._forget(tx, aggregate_id)

    @reads(Request.Abandoned)
    def _abandoned(self, tx: Tx, event: Any, position: int) -> None:
        self._forget(tx, str(event.originator_id))

    @staticmethod
    def _in_flight(tx: Tx, aggregate_id: str) -> dict[str, Any] | None:
        return tx.execute(
            "SELECT model, provider, endpoint, attempt, price_currency FROM lg_router_attempts "
            "WHERE request_aggregate_id = %s",
            (aggregate_id,),
        ).fetchone()

    @staticmethod
    def _forget(tx: Tx, aggregate_id: str) -> None:
        tx.execute(
            "DELETE FROM lg_router_attempts WHERE request_aggregate_id = %s", (aggregate_id,)
        )

    @staticmethod
    def _outcome(
        tx: Tx,
        position: int,
        aggregate_id: str,
        row: dict[str, Any],
        success: bool,
        latency_ms: int | None,
        cost: Decimal | None,
        error_code: str | None,
        observed_at: Any,
    ) -> None:
        tx.execute(
            "INSERT INTO lg_router_outcomes (position, attempt, request_aggregate_id, model, provider, "
            "endpoint, success, latency_ms, cost, currency, error_code, observed_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (position, attempt) DO NOTHING",
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
            ),
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
