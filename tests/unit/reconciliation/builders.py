"""Small hand-made ledgers for reconciliation tests, in the ledger-entries contract."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import polars as pl

from reconciliation.schema import entries_frame


def at(text: str) -> datetime:
    """'2026-09-01 12:00' → aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass
class LedgerBuilder:
    project_id: str = "proj_a"
    currency: str = "EUR"
    rows: list[dict[str, Any]] = field(default_factory=list)

    def _add(self, entry_type: str, when: str, amount: str, **extra: Any) -> LedgerBuilder:
        position = len(self.rows) + 1
        self.rows.append(
            {
                "position": position,
                "entry_id": f"acct-{extra.get('project_id', self.project_id)}:{position}",
                "entry_type": entry_type,
                "occurred_at": at(when),
                "project_id": self.project_id,
                "currency": self.currency,
                "amount": Decimal(amount),
                **extra,
            }
        )
        return self

    def topup(self, when: str, amount: str, **extra: Any) -> LedgerBuilder:
        return self._add("topup", when, amount, **extra)

    def adjustment(self, when: str, amount: str, **extra: Any) -> LedgerBuilder:
        return self._add("adjustment", when, amount, **extra)

    def reserve(
        self, when: str, request_id: str | None, amount: str, **extra: Any
    ) -> LedgerBuilder:
        return self._add("reservation", when, amount, request_id=request_id, **extra)

    def release(self, when: str, request_id: str, amount: str, **extra: Any) -> LedgerBuilder:
        return self._add("release", when, amount, request_id=request_id, **extra)

    def charge(
        self,
        when: str,
        request_id: str,
        amount: str,
        *,
        provider: str = "openai",
        model: str = "gpt-4o",
        upstream_model: str | None = "gpt-4o-2024-08-06",
        provider_cost: str | None = None,
        provider_currency: str = "USD",
        input_tokens: int = 100,
        output_tokens: int = 50,
        **extra: Any,
    ) -> LedgerBuilder:
        return self._add(
            "charge",
            when,
            amount,
            request_id=request_id,
            provider=provider,
            model=model,
            upstream_model=upstream_model,
            provider_cost=Decimal(provider_cost if provider_cost is not None else amount),
            provider_currency=provider_currency,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            fx_rate=Decimal("1"),
            fee_amount=Decimal("0"),
            **extra,
        )

    def frame(self) -> pl.DataFrame:
        return entries_frame(self.rows)

    def lazy(self) -> pl.LazyFrame:
        return self.frame().lazy()
