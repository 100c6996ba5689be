"""Project and API key aggregates."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidCommand, KeyRevoked
from domain.money import check_currency

TIERS = ("unrestricted", "eu_cloud", "eu_strict", "eu_sweden")
PLANS = ("free", "trial", "pro", "enterprise")
DEFAULT_FEE_RATE = Decimal("0.05")
FEE_RATE_MAX = Decimal("0.50")


def check_tier(tier: str) -> str:
    if tier not in TIERS:
        raise InvalidCommand(f"unknown tier {tier[:32]!r}; one of {', '.join(TIERS)}")
    return tier


def check_plan(plan: str) -> str:
    if plan not in PLANS:
        raise InvalidCommand(f"unknown plan {plan[:32]!r}; one of {', '.join(PLANS)}")
    return plan


def check_fee_rate(rate: Decimal) -> Decimal:
    if rate < 0 or rate > FEE_RATE_MAX:
        raise InvalidCommand(f"fee rate must be between 0 and {FEE_RATE_MAX}")
    return rate


class Project(Aggregate):
    class Created(Aggregate.Created):
        name: str
        tier: str
        plan: str
        currency: str
        fee_rate: Decimal
        strict: bool
        created_at: datetime

    class TierChanged(Aggregate.Event):
        tier: str

    class PlanChanged(Aggregate.Event):
        plan: str
        changed_at: datetime

    class FeeRateChanged(Aggregate.Event):
        fee_rate: Decimal

    @classmethod
    def create(
        cls,
        *,
        name: str,
        tier: str,
        plan: str,
        currency: str,
        fee_rate: Decimal,
        strict: bool,
        now: datetime,
    ) -> Project:
        clean_name = name.strip()
        if not clean_name or len(clean_name) > 200:
            raise InvalidCommand("a project name must have 1 to 200 characters")
        return cls._create(
            cls.Created,
            name=clean_name,
            tier=check_tier(tier),
            plan=check_plan(plan),
            currency=check_currency(currency),
            fee_rate=check_fee_rate(fee_rate),
            strict=strict,
            created_at=now,
        )

    def __init__(
        self,
        name: str,
        tier: str,
        plan: str,
        currency: str,
        fee_rate: Decimal,
        strict: bool,
        created_at: datetime,
    ) -> None:
        self.name = name
        self.tier = tier
        self.plan = plan
        self.currency = currency
        self.fee_rate = fee_rate
        self.strict = strict
        self.created_at = created_at
        self.plan_changed_at = created_at

    def change_tier(self, tier: str) -> None:
        self._tier_changed(check_tier(tier))

    @event(TierChanged)
    def _tier_changed(self, tier: str) -> None:
        self.tier = tier

    def change_plan(self, plan: str, now: datetime) -> None:
        self._plan_changed(check_plan(plan), now)

    @event(PlanChanged)
    def _plan_changed(self, plan: str, changed_at: datetime) -> None:
        self.plan = plan
        self.plan_changed_at = changed_at

    def change_fee_rate(self, fee_rate: Decimal) -> None:
        self._fee_rate_changed(check_fee_rate(fee_rate))

    @event(FeeRateChanged)
    def _fee_rate_changed(self, fee_rate: Decimal) -> None:
        self.fee_rate = fee_rate


class ApiKey(Aggregate):
    """Stored by the hash of the key only; the aggregate id is derived from that hash."""

    class Created(Aggregate.Created):
        project_id: UUID
        key_hash: str
        key_prefix: str
        daily_budget: Decimal | None
        created_at: datetime

    class Revoked(Aggregate.Event):
        reason: str
        revoked_at: datetime

    @classmethod
    def create(
        cls,
        *,
        key_id: UUID,
        project_id: UUID,
        key_hash: str,
        key_prefix: str,
        daily_budget: Decimal | None,
        now: datetime,
    ) -> ApiKey:
        if daily_budget is not None and daily_budget <= 0:
            raise InvalidCommand("a daily budget must be positive")
        return cls._create(
            cls.Created,
            id=key_id,
            project_id=project_id,
            key_hash=key_hash,
            key_prefix=key_prefix,
            daily_budget=daily_budget,
            created_at=now,
        )

    def __init__(
        self,
        project_id: UUID,
        key_hash: str,
        key_prefix: str,
        daily_budget: Decimal | None,
        created_at: datetime,
    ) -> None:
        self.project_id = project_id
        self.key_hash = key_hash
        self.key_prefix = key_prefix
        self.daily_budget = daily_budget
        self.created_at = created_at
        self.revoked = False

    def check_usable(self) -> None:
        if self.revoked:
            raise KeyRevoked("this API key has been revoked")

    def revoke(self, reason: str, now: datetime) -> None:
        if self.revoked:
            return
        self._revoked(reason[:200], now)

    @event(Revoked)
    def _revoked(self, reason: str, revoked_at: datetime) -> None:
        self.revoked = True
