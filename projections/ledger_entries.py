"""The ledger-entries view (one row per money-moving Account event, in the contract of
reconciliation/schema.py) and the recorded-reconciliations view, with their queries.

Mapping from Account events (one event → at most one row, so `position` identifies a row):

| event                        | entry_type  | amount                                   |
|------------------------------|-------------|------------------------------------------|
| Account.ToppedUp             | topup       | amount                                   |
| Account.Reserved             | reservation | amount                                   |
| Account.ChargePosted         | charge      | amount debited (converted cost + fee; less than the cost only on a shortfall) |
| Account.ReservationReleased  | release     | amount given back                        |
| Account.Adjusted             | adjustment  | signed amount                            |
| Account.ChargeCorrected      | correction  | signed difference to the real charge (provider_cost and tokens: differences too) |

OwnKeyReserved / OwnKeyChargePosted (BYOK) are Reserved / ChargePosted: their amount is
what the balance holds / is debited (the fee); the provider cost is recorded all the same.
A charge whose usage the upstream over- or mis-reported has usage_source "capped".

ChargePosted also releases the rest of its reservation in the same event; that remainder is
not a separate row: a charge settles its request's whole reservation (see
reconciliation/ledger.py for how pending is derived from entry pairs per request_id).

Account events do not repeat the project and currency: the view keeps its own small
account table from Account.Opened, so it rebuilds without depending on another view.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, TypedDict, Unpack

from domain.account import Account
from domain.ids import event_id
from domain.reconciliation import ProviderReconciliation
from projections.base import View, reads
from projections.db import (
    ReadStore,
    Tx,
    as_decimal,
    equal_filters,
    iso,
    money_text,
    page_limit,
    time_text,
)

# (column, PostgreSQL type): a batch's rows go in one statement (Tx.insert_rows).
LEDGER_COLUMN_TYPES: tuple[tuple[str, str], ...] = (
    ("position", "bigint"),
    ("entry_id", "text"),
    ("entry_type", "text"),
    ("occurred_at", "timestamptz"),
    ("project_id", "text"),
    ("request_id", "text"),
    ("key_id", "text"),
    ("actor_id", "text"),
    ("currency", "text"),
    ("amount", "numeric"),
    ("provider", "text"),
    ("model", "text"),
    ("upstream_model", "text"),
    ("input_tokens", "bigint"),
    ("output_tokens", "bigint"),
    ("cached_tokens", "bigint"),
    ("provider_cost", "numeric"),
    ("provider_currency", "text"),
    ("fx_rate", "numeric"),
    ("fee_amount", "numeric"),
    ("key_source", "text"),
    ("price_id", "text"),
    ("fx_rate_id", "text"),
    ("usage_source", "text"),
)
LEDGER_COLUMNS: tuple[str, ...] = tuple(name for name, _ in LEDGER_COLUMN_TYPES)
RECONCILIATIONS_PAGE_MAX = 200
RECONCILIATIONS_PAGE_DEFAULT = 50


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


class LedgerEntriesView(View):
    name = "ledger_entries"
    tables = ("lg_ledger_entries", "lg_ledger_accounts")

    def __init__(self) -> None:
        # Account.Opened never changes, so caching (project, currency) per account is safe;
        # it saves one SELECT per event on a rebuild of millions of events.
        self._accounts: dict[str, tuple[str, str]] = {}
        self._rows: list[tuple[Any, ...]] = []  # applied, written by flush

    def reset(self, tx: Tx) -> None:
        super().reset(tx)
        self._accounts.clear()
        self._rows = []

    def flush(self, tx: Tx) -> None:
        """The batch's entries in one statement (Tx.insert_rows): an INSERT per entry was
        two statements per request (its reservation and its charge)."""
        rows, self._rows = self._rows, []
        tx.insert_rows(
            "lg_ledger_entries", LEDGER_COLUMN_TYPES, rows, "ON CONFLICT (position) DO NOTHING"
        )

    def discard(self) -> None:
        self._rows = []

    def _account(self, tx: Tx, account_id: str) -> tuple[str, str] | None:
        known = self._accounts.get(account_id)
        if known is None:
            row = tx.execute(
                "SELECT project_id, currency FROM lg_ledger_accounts WHERE account_id = %s",
                (account_id,),
            ).fetchone()
            if row is None:
                return None
            known = (row["project_id"], row["currency"])
            self._accounts[account_id] = known
        return known

    @reads(Account.Opened)
    def _opened(self, tx: Tx, event: Any, position: int) -> None:
        if event.mode == "test":
            return  # test balances move no real money: never in the finance ledger
        account_id = str(event.originator_id)
        tx.execute(
            "INSERT INTO lg_ledger_accounts (account_id, project_id, currency) "
            "VALUES (%s, %s, %s) ON CONFLICT (account_id) DO NOTHING",
            (account_id, str(event.project_id), event.currency),
        )
        self._accounts[account_id] = (str(event.project_id), event.currency)

    @reads(Account.ToppedUp)
    def _topped_up(self, tx: Tx, event: Any, position: int) -> None:
        self._entry(tx, event, position, entry_type="topup", occurred_at=event.topped_up_at,
                    amount=event.amount)  # fmt: skip

    @reads(Account.Adjusted)
    def _adjusted(self, tx: Tx, event: Any, position: int) -> None:
        self._entry(tx, event, position, entry_type="adjustment", occurred_at=event.adjusted_at,
                    amount=event.amount)  # fmt: skip

    @reads(Account.Reserved)
    def _reserved(self, tx: Tx, event: Any, position: int) -> None:
        self._entry(tx, event, position, entry_type="reservation", occurred_at=event.reserved_at,
                    amount=event.amount, request_id=event.request_id, key_id=_str(event.key_id))  # fmt: skip

    @reads(Account.ReservationReleased)
    def _released(self, tx: Tx, event: Any, position: int) -> None:
        self._entry(tx, event, position, entry_type="release", occurred_at=event.released_at,
                    amount=event.amount, request_id=event.request_id)  # fmt: skip

    @reads(Account.ChargePosted)
    def _charge_posted(self, tx: Tx, event: Any, position: int) -> None:
        self._entry(
            tx,
            event,
            position,
            **_charge_fields(event),
            entry_type="charge",
            occurred_at=event.posted_at,
            input_tokens=event.input_tokens,
            output_tokens=event.output_tokens,
            cached_tokens=event.cached_tokens,
            provider_cost=event.provider_cost,
            fx_rate=event.fx_rate,
            fee_amount=event.fee_amount,
            price_id=event.price_id,
            fx_rate_id=event.fx_rate_id,
        )

    @reads(Account.ChargeCorrected)
    def _charge_corrected(self, tx: Tx, event: Any, position: int) -> None:
        # Differences to the request's earlier charge, so sums over charges stay exact. That
        # charge may be among this batch's buffered rows: they are written first.
        self.flush(tx)
        before = tx.execute(
            "SELECT provider_cost, input_tokens, output_tokens, cached_tokens, fx_rate, "
            "price_id, fx_rate_id, fee_amount FROM lg_ledger_entries "
            "WHERE request_id = %s AND entry_type = 'charge'",
            (event.request_id,),
        ).fetchone()
        earlier = before or {}
        self._entry(
            tx,
            event,
            position,
            **_charge_fields(event),
            entry_type="correction",
            occurred_at=event.corrected_at,
            input_tokens=event.input_tokens - int(earlier.get("input_tokens") or 0),
            output_tokens=event.output_tokens - int(earlier.get("output_tokens") or 0),
            cached_tokens=event.cached_tokens - int(earlier.get("cached_tokens") or 0),
            provider_cost=event.provider_cost - (as_decimal(earlier.get("provider_cost")) or 0),
            fx_rate=earlier.get("fx_rate"),
            fee_amount=event.fee_amount - (as_decimal(earlier.get("fee_amount")) or 0),
            price_id=earlier.get("price_id"),
            fx_rate_id=earlier.get("fx_rate_id"),
        )

    def _entry(self, tx: Tx, event: Any, position: int, **fields: Any) -> None:
        """One ledger row for a money-moving event of a known (live) account."""
        account = self._account(tx, str(event.originator_id))
        if account is None:
            return  # a test account, or an account event before its Opened (not in one log)
        project_id, currency = account
        row: dict[str, Any] = {
            "position": position,
            "entry_id": event_id(event.originator_id, event.originator_version),
            "project_id": project_id,
            "currency": currency,
            **fields,
            "occurred_at": iso(fields["occurred_at"]),
        }
        self._rows.append(tuple(row.get(column) for column in LEDGER_COLUMNS))


def _charge_fields(event: Any) -> dict[str, Any]:
    """What a charge and its correction both carry from their event."""
    return {
        "amount": event.amount,
        "request_id": event.request_id,
        "key_id": _str(event.key_id),
        "actor_id": event.actor_id,
        "provider": event.provider,
        "model": event.model,
        "upstream_model": event.upstream_model,
        "provider_currency": event.provider_currency,
        "key_source": event.key_source,
        "usage_source": event.usage_source,
    }


class ReconciliationsView(View):
    name = "reconciliations"
    tables = ("lg_reconciliations",)

    @reads(ProviderReconciliation.ReconciliationRecorded)
    def _recorded(self, tx: Tx, event: Any, position: int) -> None:
        tx.execute(
            """
            INSERT INTO lg_reconciliations (reconciliation_id, provider, month, currency, per_day,
                status, tolerance, relative_tolerance, ledger_cost, invoice_cost, difference,
                lines_by_status, lines, ledger_charges, ledger_position, invoice_sha256,
                invoice_source, invoice_layout, adjustment_project_id, adjustment_amount,
                recorded_at, position)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                %s, %s, %s)
            ON CONFLICT (reconciliation_id) DO NOTHING
            """,
            (
                str(event.originator_id),
                event.provider,
                event.month,
                event.currency,
                bool(event.per_day),
                event.status,
                event.tolerance,
                event.relative_tolerance,
                event.ledger_cost,
                event.invoice_cost,
                event.difference,
                json.dumps(dict(event.lines_by_status), sort_keys=True),
                json.dumps([list(line) for line in event.lines]),
                event.ledger_charges,
                event.ledger_position,
                event.invoice_sha256,
                event.invoice_source,
                event.invoice_layout,
                _str(event.adjustment_project_id),
                event.adjustment_amount,
                iso(event.recorded_at),
                position,
            ),
        )


# --- queries ---------------------------------------------------------------------------------


class LedgerEntryFilters(TypedDict, total=False):
    """What a read of the ledger entries may be cut to (each left out or None: no cut).
    `since` is inclusive, `before` exclusive, `until` inclusive."""

    project_id: str | None
    provider: str | None
    entry_type: str | None
    since: datetime | None
    before: datetime | None
    until: datetime | None


_EQUAL_FILTERS = ("project_id", "provider", "entry_type")  # the LedgerEntryFilters on a column


def ledger_entries_query(
    store: ReadStore,
    *,
    columns: Sequence[str] = LEDGER_COLUMNS,
    select_list: Sequence[str] | None = None,
    **filters: Unpack[LedgerEntryFilters],
) -> tuple[str, tuple[Any, ...]]:
    """The SELECT (in the store's placeholder style) and its parameters. Filters run in SQL
    on the view's indexes. `select_list` may wrap `columns` in SQL expressions (one each)."""
    unknown = [column for column in columns if column not in LEDGER_COLUMNS]
    if unknown:
        raise ValueError(f"not ledger-entries columns: {', '.join(unknown)}")
    clauses: list[str] = []
    params: list[Any] = []
    equal_filters(clauses, params, ((column, filters.get(column)) for column in _EQUAL_FILTERS))
    for operator, moment in (
        (">=", filters.get("since")),
        ("<", filters.get("before")),
        ("<=", filters.get("until")),
    ):
        if moment is not None:
            clauses.append(f"occurred_at {operator} %s")
            params.append(store.instant(moment))
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    selected = ", ".join(select_list if select_list is not None else columns)
    sql = f"SELECT {selected} FROM lg_ledger_entries {where} ORDER BY position"  # noqa: S608
    return store.sql(sql), tuple(params)


def select_ledger_entries(
    store: ReadStore,
    *,
    columns: Sequence[str] = LEDGER_COLUMNS,
    **filters: Unpack[LedgerEntryFilters],
) -> tuple[list[tuple[Any, ...]], str, int]:
    """Raw rows (tuples in `columns` order, position order), the dialect, and the view's
    tracking position. Filters run in SQL on the view's indexes, so a reconcile of one
    provider-month reads only that provider-month's charges.

    Values come back as the dialect stores them (SQLite: money and time as text;
    PostgreSQL: Decimal and datetime); reconciliation/sources.py turns them into the
    contract's dtypes (filters: `LedgerEntryFilters`).
    `columns` (a subset of LEDGER_COLUMNS, in that order) cuts what is read: on SQLite a
    month of charges reads ~3x faster with the ten columns reconcile needs than with all.
    """
    sql, params = ledger_entries_query(store, columns=columns, **filters)
    with store.transaction(write=False) as tx:
        position = _tracked(tx)
        _tuple_rows(store, tx)
        tx.cursor.execute(sql, params)
        rows = tx.cursor.fetchall()
    return rows, store.dialect, position


def ledger_entries_position(store: ReadStore) -> int:
    with store.transaction(write=False) as tx:
        return _tracked(tx)


def _tracked(tx: Tx) -> int:
    return tx.tracked_position("ledger_entries")


def project_currency(store: ReadStore, project_id: str) -> str | None:
    """The project's ledger currency, from the view's account table (None: no account)."""
    with store.transaction(write=False) as tx:
        row = tx.execute(
            "SELECT currency FROM lg_ledger_accounts WHERE project_id = %s", (project_id,)
        ).fetchone()
    return None if row is None else str(row["currency"])


def iter_ledger_entry_batches(
    store: ReadStore, *, batch_rows: int = 100_000
) -> Iterator[tuple[list[tuple[Any, ...]], str]]:
    """The whole view in position order, `batch_rows` rows at a time (for exports that must
    not hold millions of rows in Python objects at once)."""
    sql, params = ledger_entries_query(store)
    with store.transaction(write=False) as tx:
        _tuple_rows(store, tx)
        tx.cursor.execute(sql, params)
        while True:
            rows = tx.cursor.fetchmany(batch_rows)
            if not rows:
                return
            yield rows, store.dialect


def _tuple_rows(store: ReadStore, tx: Tx) -> None:
    # Plain tuples, not dict rows: a month of charges can be millions of rows.
    if store.dialect == "sqlite":
        tx.cursor.row_factory = None
    else:
        from psycopg.rows import tuple_row

        tx.cursor.row_factory = tuple_row


def _reconciliation_record(row: dict[str, Any], *, with_lines: bool) -> dict[str, Any]:
    money = money_text
    record: dict[str, Any] = {
        "object": "reconciliation",
        "id": row["reconciliation_id"],
        "provider": row["provider"],
        "month": row["month"],
        "currency": row["currency"],
        "per_day": bool(row["per_day"]),
        "status": row["status"],
        "tolerance": money(row["tolerance"]),
        "relative_tolerance": money(row["relative_tolerance"]),
        "ledger_cost": money(row["ledger_cost"]),
        "invoice_cost": money(row["invoice_cost"]),
        "difference": money(row["difference"]),
        "lines_by_status": json.loads(row["lines_by_status"]),
        "ledger_charges": int(row["ledger_charges"]),
        "ledger_position": row["ledger_position"],
        "invoice": {
            "sha256": row["invoice_sha256"],
            "source": row["invoice_source"],
            "layout": row["invoice_layout"],
        },
        "adjustment": None
        if row["adjustment_amount"] is None
        else {
            "project_id": row["adjustment_project_id"],
            "amount": money(row["adjustment_amount"]),
        },
        "recorded_at": time_text(row["recorded_at"]),
        "position": int(row["position"]),
    }
    if with_lines:
        keys = ("day", "model", "ledger_cost", "invoice_cost", "difference", "status")
        record["lines"] = [
            {**dict(zip(keys, line, strict=True)), "day": line[0] or None}
            for line in json.loads(row["lines"])
        ]
    return record


def list_reconciliations(
    store: ReadStore,
    *,
    provider: str | None = None,
    month: str | None = None,
    limit: int = RECONCILIATIONS_PAGE_DEFAULT,
    with_lines: bool = False,
) -> dict[str, Any]:
    """Newest first."""
    limit = page_limit(limit, RECONCILIATIONS_PAGE_MAX)
    clauses: list[str] = []
    params: list[Any] = []
    equal_filters(clauses, params, (("provider", provider), ("month", month)))
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    rows, has_more, position = store.read_page(
        ReconciliationsView.name,
        f"SELECT * FROM lg_reconciliations {where} "  # noqa: S608
        "ORDER BY recorded_at DESC, reconciliation_id DESC",
        params,
        limit,
    )
    return {
        "object": "list",
        "data": [_reconciliation_record(row, with_lines=with_lines) for row in rows],
        "has_more": has_more,
        "as_of_position": position,
    }


def get_reconciliation(
    store: ReadStore, reconciliation_id: str
) -> tuple[dict[str, Any] | None, int]:
    with store.transaction(write=False) as tx:
        position = tx.tracked_position("reconciliations")
        row = tx.execute(
            "SELECT * FROM lg_reconciliations WHERE reconciliation_id = %s", (reconciliation_id,)
        ).fetchone()
    return (_reconciliation_record(row, with_lines=True) if row else None), position


def ledger_views() -> Sequence[View]:
    return (LedgerEntriesView(), ReconciliationsView())
