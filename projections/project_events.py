"""The project-events index (issue 12): which events of the log are a project's own, in log
order, each with a screened copy of its fields, for `/v1/data/events` (SIEM pull) and the
route decisions of `/v1/data/routing`.

A project's own events are those of its own aggregates: the Project itself, its API keys,
its accounts (live and test), its requests and its routing (custom models, endpoints), and
the price books of its custom models. An aggregate is tied to its project by the event
that creates it (a `project_id` field, or the Project's own id); later events of the
aggregate find the project through `lg_project_aggregates`. Events of shared aggregates
(the shipped price books, FX rates, breakers, reconciliations) are nobody's and are not
listed.

What is kept is screened at write time, by field name: no secret (key hashes, ciphertext,
nonces, fingerprints), no hash of a prompt or completion, no client address. Events carry
no prompt or completion text and no PII value in the first place (domain/request.py); the
screen is the second line.
"""

from __future__ import annotations

import functools
import json
import re
from collections import OrderedDict
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson

from projections.base import View
from projections.db import ReadStore, Tx, iso, page_limit, placeholders, time_range

# Which project owns an aggregate is fixed by the aggregate's first event: remembered, so the
# later events of a request (four more of seven) and of a busy account do not each look it
# up (6.4 of a request's 39 view statements were that SELECT). Bounded, oldest dropped.
OWNERS_CACHED_MAX = 50_000
EVENT_COLUMNS = (
    ("position", "bigint"),
    ("project_id", "text"),
    ("aggregate_id", "text"),
    ("version", "bigint"),
    ("event_type", "text"),
    ("topic", "text"),
    ("recorded_at", "text"),
    ("payload", "text"),
)
AGGREGATE_COLUMNS = (("aggregate_id", "text"), ("project_id", "text"))
EVENTS_PAGE_MAX = 1000
EVENTS_PAGE_DEFAULT = 100
# Field names never copied out of an event: secrets, digests of text, addresses.
WITHHELD_FIELD = re.compile(
    r"(hash|sha256|fingerprint|cipher|nonce|secret|password|api_key|key_ref|client_ip|sealed)"
)
_INTERNAL_FIELDS = ("originator_topic",)


_SCALARS = (str, int, float, bool, type(None))


def _plain(value: Any) -> Any:
    if type(value) in _SCALARS:  # most fields: the exact types, tested first
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def screened_fields(event: Any) -> dict[str, Any]:
    """The event's own fields a project may read back (see the module docstring)."""
    state = dict(getattr(event, "__dict__", {}))
    for name in ("originator_id", "originator_version", "timestamp", *_INTERNAL_FIELDS):
        state.pop(name, None)
    return {name: _plain(value) for name, value in sorted(state.items()) if not _withheld(name)}


@functools.cache
def _withheld(name: str) -> bool:
    """Field names come from the event classes (a bounded set): each is screened once."""
    return WITHHELD_FIELD.search(name) is not None


def _payload(fields: dict[str, Any]) -> str:
    """The fields as JSON text, keys sorted. orjson, a tenth of json.dumps' cost; json.dumps
    only for what orjson refuses (an integer past 64 bits). The column is read back with
    json.loads, so the two renderings read the same."""
    try:
        return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return json.dumps(fields, sort_keys=True)


def _topic(event: Any) -> str:
    cls = type(event)
    return f"{cls.__module__}:{cls.__qualname__}"


def _short_type(event: Any) -> str:
    return type(event).__qualname__  # "Request.Received"


class ProjectEventsView(View):
    name = "project_events"
    tables = ("lg_project_events", "lg_project_aggregates")

    def __init__(self) -> None:
        # aggregate id -> owning project id, or None (a shared aggregate). True whatever the
        # fate of the transaction that learnt it: it is a function of the log alone.
        self._owners: OrderedDict[str, str | None] = OrderedDict()
        self._rows: list[tuple[Any, ...]] = []  # applied, written by flush
        self._owned: list[tuple[str, str]] = []  # (aggregate id, project id), written by flush

    def reset(self, tx: Tx) -> None:
        super().reset(tx)
        self._owners.clear()
        self._rows = []
        self._owned = []

    def _remember(self, aggregate_id: str, owner: str | None) -> str | None:
        self._owners[aggregate_id] = owner
        if len(self._owners) > OWNERS_CACHED_MAX:
            self._owners.popitem(last=False)
        return owner

    # No table of handlers: this view reads every event (is it one of a project's
    # aggregates?) and applies them all the same way.
    def handles(self, event: Any) -> bool:
        return True

    def apply(self, tx: Tx, event: Any, position: int) -> None:
        aggregate_id = str(event.originator_id)
        project_id = self._owner(tx, event, aggregate_id)
        if project_id is None:
            return
        self._rows.append(
            (
                position,
                project_id,
                aggregate_id,
                int(event.originator_version),
                _short_type(event),
                _topic(event),
                iso(getattr(event, "timestamp", None)),
                _payload(screened_fields(event)),
            )
        )

    def flush(self, tx: Tx) -> None:
        """The batch's rows in one statement (Tx.insert_rows): one INSERT per event was 7
        of a request's view statements."""
        rows, self._rows = self._rows, []
        self._flush_owned(tx)
        tx.insert_rows(
            "lg_project_events", EVENT_COLUMNS, rows, "ON CONFLICT (position) DO NOTHING"
        )

    def _flush_owned(self, tx: Tx) -> None:
        """Which project each aggregate created in the batch belongs to, in one statement
        (an INSERT per created aggregate was one statement per request)."""
        owned, self._owned = self._owned, []
        tx.insert_rows(
            "lg_project_aggregates",
            AGGREGATE_COLUMNS,
            owned,
            "ON CONFLICT (aggregate_id) DO NOTHING",
        )

    def discard(self) -> None:
        self._rows = []
        self._owned = []

    def _owner(self, tx: Tx, event: Any, aggregate_id: str) -> str | None:
        if int(event.originator_version) == 1:
            # A created aggregate: the Project itself, or one naming its project.
            if type(event).__qualname__ == "Project.Created":
                owner: Any = event.originator_id
            else:
                owner = getattr(event, "project_id", None)
            if owner is None:
                return self._remember(aggregate_id, None)
            self._owned.append((aggregate_id, str(owner)))
            return self._remember(aggregate_id, str(owner))
        if aggregate_id in self._owners:
            return self._owners[aggregate_id]
        self._flush_owned(tx)  # the row may be one this batch has not written yet
        row = tx.execute(
            "SELECT project_id FROM lg_project_aggregates WHERE aggregate_id = %s",
            (aggregate_id,),
        ).fetchone()
        return self._remember(aggregate_id, None if row is None else str(row["project_id"]))


def _record(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "position": int(row["position"]),
        "aggregate_id": row["aggregate_id"],
        "version": int(row["version"]),
        "type": row["event_type"],
        "topic": row["topic"],
        "recorded_at": row["recorded_at"],
        "data": json.loads(row["payload"]),
    }


def list_project_events(
    store: ReadStore,
    *,
    project_id: str,
    after: int = 0,
    limit: int = EVENTS_PAGE_DEFAULT,
    since: datetime | None = None,
    until: datetime | None = None,
    types: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The project's events after log position `after`, in log order."""
    limit = page_limit(limit, EVENTS_PAGE_MAX)
    clauses = ["project_id = %s", "position > %s"]
    params: list[Any] = [project_id, after]
    time_range(clauses, params, "recorded_at", since, until, iso)
    if types:
        clauses.append(f"event_type IN ({placeholders(len(types))})")
        params.extend(types)
    rows, has_more, position = store.read_page(
        ProjectEventsView.name,
        f"SELECT * FROM lg_project_events WHERE {' AND '.join(clauses)} "  # noqa: S608
        "ORDER BY position",
        params,
        limit,
    )
    records = [_record(row) for row in rows]
    return {
        "data": records,
        "next_cursor": str(records[-1]["position"]) if has_more and records else None,
        "as_of_position": position,
    }


def events_of_aggregates(
    store: ReadStore, project_id: str, aggregate_ids: list[str], types: tuple[str, ...]
) -> list[dict[str, Any]]:
    """The given aggregates' events of these types, in log order (one project's only)."""
    if not aggregate_ids:
        return []
    with store.transaction(write=False) as tx:
        rows = tx.execute(
            "SELECT * FROM lg_project_events WHERE project_id = %s "  # noqa: S608
            f"AND aggregate_id IN ({placeholders(len(aggregate_ids))}) "
            f"AND event_type IN ({placeholders(len(types))}) ORDER BY position",
            (project_id, *aggregate_ids, *types),
        ).fetchall()
    return [_record(row) for row in rows]


__all__ = [
    "EVENTS_PAGE_DEFAULT",
    "EVENTS_PAGE_MAX",
    "ProjectEventsView",
    "events_of_aggregates",
    "list_project_events",
    "screened_fields",
]
