"""Failed authentications, for the operator: who (the presented key's fingerprint, never the
key), from where (client address), when, and how often.

Built from the Request aggregate's events: a request refused before any project was known
(`Received` without a project, then `Rejected` with an authentication code). Requests
refused for other reasons without a project (an anonymous probe of an unsupported path) are
dropped from this view; everything with a project is in the project's own audit log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.request import Request
from projections.base import View, reads
from projections.db import ReadStore, Tx, equal_filters, iso, page_limit, time_range

AUTH_FAILURE_CODES = ("missing_api_key", "invalid_api_key")
GROUP_COLUMNS = ("client_ip", "key_fingerprint", "error_code", "endpoint")
AUTH_FAILURES_PAGE_MAX = 500
AUTH_FAILURES_PAGE_DEFAULT = 100


class AuthFailuresView(View):
    name = "auth_failures"
    tables = ("lg_auth_failures",)

    def handles(self, event: Any) -> bool:
        # A request with a project is in that project's audit log, not here.
        return super().handles(event) and getattr(event, "project_id", None) is None

    @reads(Request.Received)
    def _received(self, tx: Tx, event: Any, position: int) -> None:
        tx.execute(
            """
            INSERT INTO lg_auth_failures (aggregate_id, request_id, endpoint, client_ip,
                key_fingerprint, received_at, position)
            VALUES (%s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (aggregate_id) DO NOTHING
            """,
            (
                str(event.originator_id),
                event.request_id,
                event.endpoint,
                event.client_ip,
                None if event.key_id is None else str(event.key_id),
                iso(event.received_at),
                position,
            ),
        )

    @reads(Request.Rejected)
    def _rejected(self, tx: Tx, event: Any, position: int) -> None:
        aggregate_id = str(event.originator_id)
        if event.error_code in AUTH_FAILURE_CODES:
            tx.execute(
                "UPDATE lg_auth_failures SET error_code = %s, error_message = %s "
                "WHERE aggregate_id = %s",
                (event.error_code, event.message, aggregate_id),
            )
        else:  # not an authentication failure (or a request with a project: no row)
            tx.execute("DELETE FROM lg_auth_failures WHERE aggregate_id = %s", (aggregate_id,))


def list_auth_failures(
    store: ReadStore,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    client_ip: str | None = None,
    key_fingerprint: str | None = None,
    error_code: str | None = None,
    group_by: tuple[str, ...] = (),
    cursor: int | None = None,
    limit: int = AUTH_FAILURES_PAGE_DEFAULT,
) -> dict[str, Any]:
    """Newest first, or with `group_by` one row per group (count, first and last seen),
    most frequent first. `cursor` is the `next_cursor` of the previous page."""
    limit = page_limit(limit, AUTH_FAILURES_PAGE_MAX)
    clauses = ["error_code IS NOT NULL"]
    params: list[Any] = []
    equal_filters(
        clauses,
        params,
        (
            ("client_ip", client_ip),
            ("key_fingerprint", key_fingerprint),
            ("error_code", error_code),
        ),
    )
    time_range(clauses, params, "received_at", since, until, iso)
    if group_by:
        unknown = set(group_by) - set(GROUP_COLUMNS)
        if unknown:
            raise ValueError(f"cannot group by {sorted(unknown)}")
        columns = ", ".join(group_by)
        offset: int | None = cursor or 0
        sql = (
            f"SELECT {columns}, COUNT(*) AS failures, MIN(received_at) AS first_seen, "  # noqa: S608 - columns are from GROUP_COLUMNS
            f"MAX(received_at) AS last_seen FROM lg_auth_failures WHERE {' AND '.join(clauses)} "
            f"GROUP BY {columns} ORDER BY failures DESC, last_seen DESC, {columns}"
        )
    else:
        offset = None
        if cursor is not None:
            clauses.append("position < %s")
            params.append(cursor)
        sql = (
            "SELECT request_id, received_at, endpoint, client_ip, key_fingerprint, error_code, "  # noqa: S608 - fixed clauses
            f"error_message, position FROM lg_auth_failures WHERE {' AND '.join(clauses)} "
            "ORDER BY position DESC"
        )
    # The position first, then the page: the page reflects at least what as_of_position says.
    rows, more, position = store.read_page("auth_failures", sql, params, limit, offset=offset)
    data = []
    for row in rows:
        item = dict(row)
        if "failures" in item:
            item["failures"] = int(item["failures"])
        if "position" in item:
            item["position"] = int(item["position"])
        data.append(item)
    next_cursor: str | None = None
    if more:
        next_cursor = str((cursor or 0) + limit) if group_by else str(data[-1]["position"])
    return {
        "object": "list",
        "data": data,
        "group_by": list(group_by),
        "next_cursor": next_cursor,
        "as_of_position": position,
    }
