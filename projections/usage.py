"""Usage per day x project x model x provider x key x actor, from Account.ChargePosted.

One row per (project, UTC day of the charge, model, provider, key, actor, key source,
provider currency): charged requests, tokens, the amount debited (`cost`, in the project's
currency), the provider cost (in its own currency, hence the currency in the key), the
platform fee and any shortfall. Sums are done in Python with Decimal: SQLite would add
TEXT money as floats.
"""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal
from typing import Any

from domain.account import Account
from projections.base import View, reads
from projections.db import Tx, as_decimal

ZERO = Decimal(0)
COUNTERS = ("requests", "input_tokens", "output_tokens", "cached_tokens")
AMOUNTS = ("cost", "provider_cost", "fee_amount", "shortfall_amount")
ACCOUNTS_CACHED_MAX = 50_000


class UsageView(View):
    name = "usage"
    tables = ("lg_usage", "lg_usage_accounts")

    @reads(Account.Opened)
    def _opened(self, tx: Tx, event: Any, position: int) -> None:
        if event.mode == "test":
            return  # test-mode charges are no usage: their account is never known here
        tx.execute(
            "INSERT INTO lg_usage_accounts (account_id, project_id, currency) VALUES (%s, %s, %s) "
            "ON CONFLICT (account_id) DO NOTHING",
            (str(event.originator_id), str(event.project_id), event.currency),
        )

    def __init__(self) -> None:
        # account id -> (project id, currency), or None (a test account): fixed by the
        # account's Opened event, so looked up once, not per charge. Bounded.
        self._accounts: dict[str, tuple[str, str] | None] = {}
        # usage key -> [currency, the batch's added counters and amounts, last position]:
        # one busy project's charges share a few keys, whose rows are read and written once
        # per batch.
        self._added: dict[tuple[Any, ...], list[Any]] = {}

    def _account(self, tx: Tx, account_id: str) -> tuple[str, str] | None:
        if account_id in self._accounts:
            return self._accounts[account_id]
        row = tx.execute(
            "SELECT project_id, currency FROM lg_usage_accounts WHERE account_id = %s",
            (account_id,),
        ).fetchone()
        if row is None:
            return None  # not remembered: its Opened may be applied by a later batch's replay
        if len(self._accounts) >= ACCOUNTS_CACHED_MAX:
            self._accounts.clear()
        found = (str(row["project_id"]), str(row["currency"]))
        self._accounts[account_id] = found
        return found

    @reads(Account.ChargePosted)
    def _charge_posted(self, tx: Tx, event: Any, position: int) -> None:
        account = self._account(tx, str(event.originator_id))
        if account is None:
            return
        project_id, currency = account
        key = (
            project_id,
            tx.store.day(event.posted_at.astimezone(UTC).date()),
            event.model,
            event.provider,
            "" if event.key_id is None else str(event.key_id),
            event.actor_id or "",
            event.key_source,
            event.provider_currency,
        )
        added = {
            "requests": 1,
            "input_tokens": event.input_tokens,
            "output_tokens": event.output_tokens,
            "cached_tokens": event.cached_tokens,
            "cost": event.amount,
            "provider_cost": event.provider_cost,
            "fee_amount": event.fee_amount,
            "shortfall_amount": event.shortfall_amount,
        }
        pending = self._added.get(key)
        if pending is None:
            self._added[key] = [currency, added, position]
            return
        for name, value in added.items():
            pending[1][name] += value
        pending[2] = position

    def flush(self, tx: Tx) -> None:
        """Each touched usage row, once per batch: the batch's sums added to it (exact
        Decimal sums), or inserted."""
        batch, self._added = self._added, {}
        where = (
            "project_id = %s AND day = %s AND model = %s AND provider = %s AND key_id = %s "
            "AND actor_id = %s AND key_source = %s AND provider_currency = %s"
        )
        for key, (currency, added, position) in batch.items():
            row = tx.execute(
                f"SELECT requests, input_tokens, output_tokens, cached_tokens, cost, provider_cost, "  # noqa: S608
                f"fee_amount, shortfall_amount FROM lg_usage WHERE {where}",
                key,
            ).fetchone()
            if row is None:
                tx.execute(
                    "INSERT INTO lg_usage (project_id, day, model, provider, key_id, actor_id, key_source, "
                    "provider_currency, currency, requests, input_tokens, output_tokens, cached_tokens, cost, "
                    "provider_cost, fee_amount, shortfall_amount, position) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (*key, currency, *added.values(), position),
                )
                continue
            totals = [int(row[name]) + added[name] for name in COUNTERS] + [
                (as_decimal(row[name]) or ZERO) + added[name] for name in AMOUNTS
            ]
            tx.execute(
                "UPDATE lg_usage SET requests = %s, input_tokens = %s, output_tokens = %s, "
                "cached_tokens = %s, cost = %s, provider_cost = %s, fee_amount = %s, "
                f"shortfall_amount = %s, position = %s WHERE {where}",
                (*totals, position, *key),
            )

    def discard(self) -> None:
        self._added = {}

    def reset(self, tx: Tx) -> None:
        super().reset(tx)
        self._added = {}
        self._accounts = {}
