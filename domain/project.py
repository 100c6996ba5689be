"""Project and API key aggregates."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.errors import InvalidCommand, KeyRevoked
from domain.money import check_currency
from domain.plans import ENTERPRISE, check_plan_allows_tier
from domain.settlement import DEFAULT_FEE_RATE
from domain.vocabulary import PLANS, PROVIDERS, TIERS

FEE_RATE_MAX = Decimal("0.50")
FINGERPRINT_CHARS_MAX = 64
CIPHERTEXT_CHARS_MAX = 8192


def check_provider(provider: str) -> str:
    clean = provider.strip().lower()
    if clean not in PROVIDERS:
        raise InvalidCommand(f"unknown provider {provider[:32]!r}; one of {', '.join(PROVIDERS)}")
    return clean


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

        def apply(self, aggregate: Project) -> None:
            aggregate.tier = self.tier

    class PlanChanged(Aggregate.Event):
        plan: str
        changed_at: datetime

        def apply(self, aggregate: Project) -> None:
            aggregate.plan = self.plan
            aggregate.plan_changed_at = self.changed_at

    class FeeRateChanged(Aggregate.Event):
        fee_rate: Decimal

        def apply(self, aggregate: Project) -> None:
            aggregate.fee_rate = self.fee_rate

    class ProviderKeySet(Aggregate.Event):
        """A bring-your-own provider key, AES-GCM encrypted by the gateway. Only the
        ciphertext, its nonce and two fingerprints are recorded, never the key."""

        provider: str
        ciphertext_b64: str
        nonce_b64: str
        key_fingerprint: str  # keyed hash of the provider key: "same key?" without the key
        secret_fingerprint: str  # which LEDGERGATE_SECRET_KEY encrypted it (rotation)
        set_at: datetime

        def apply(self, aggregate: Project) -> None:
            aggregate._keys()[self.provider] = {
                "ciphertext_b64": self.ciphertext_b64,
                "nonce_b64": self.nonce_b64,
                "key_fingerprint": self.key_fingerprint,
                "secret_fingerprint": self.secret_fingerprint,
                "set_at": self.set_at.isoformat(),
            }

    class ProviderKeyRemoved(Aggregate.Event):
        provider: str
        removed_at: datetime

        def apply(self, aggregate: Project) -> None:
            aggregate._keys().pop(self.provider, None)

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
        check_plan_allows_tier(check_plan(plan), check_tier(tier))
        if plan != ENTERPRISE and fee_rate != DEFAULT_FEE_RATE:
            raise InvalidCommand(
                f"only an enterprise project can carry a negotiated fee (default {DEFAULT_FEE_RATE})"
            )
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
        # provider -> encrypted key record (ciphertext, nonce, fingerprints); never the key.
        self.provider_keys: dict[str, dict[str, str]] = {}

    def change_tier(self, tier: str) -> None:
        check_plan_allows_tier(self.plan, check_tier(tier))
        if tier == self.tier:
            return
        self.trigger_event(self.TierChanged, tier=tier)

    def change_plan(self, plan: str, now: datetime) -> None:
        check_plan_allows_tier(check_plan(plan), self.tier)
        if plan == self.plan:
            return  # re-setting a trial must not restart it
        self.trigger_event(self.PlanChanged, plan=plan, changed_at=now)

    def change_fee_rate(self, fee_rate: Decimal) -> None:
        if self.plan != ENTERPRISE:
            raise InvalidCommand(
                "a negotiated fee needs the enterprise plan; this project is on "
                f"{self.plan} (fee {DEFAULT_FEE_RATE} on managed keys, 0 on its own keys)",
                plan=self.plan,
            )
        self.trigger_event(self.FeeRateChanged, fee_rate=check_fee_rate(fee_rate))

    def set_provider_key(
        self,
        *,
        provider: str,
        ciphertext_b64: str,
        nonce_b64: str,
        key_fingerprint: str,
        secret_fingerprint: str,
        now: datetime,
    ) -> None:
        provider = check_provider(provider)
        if not ciphertext_b64 or len(ciphertext_b64) > CIPHERTEXT_CHARS_MAX:
            raise InvalidCommand("the encrypted provider key is empty or too long")
        if not nonce_b64 or len(nonce_b64) > 64:
            raise InvalidCommand("the encryption nonce is missing or malformed")
        for fingerprint in (key_fingerprint, secret_fingerprint):
            if not fingerprint or len(fingerprint) > FINGERPRINT_CHARS_MAX:
                raise InvalidCommand("a key fingerprint is missing or too long")
        self.trigger_event(
            self.ProviderKeySet,
            provider=provider,
            ciphertext_b64=ciphertext_b64,
            nonce_b64=nonce_b64,
            key_fingerprint=key_fingerprint,
            secret_fingerprint=secret_fingerprint,
            set_at=now,
        )

    def remove_provider_key(self, provider: str, now: datetime) -> bool:
        provider = check_provider(provider)
        if provider not in self._keys():
            return False
        self.trigger_event(self.ProviderKeyRemoved, provider=provider, removed_at=now)
        return True

    def provider_keys_view(self) -> dict[str, str]:
        """provider -> key fingerprint: what may be shown (no ciphertext, no key)."""
        return {p: record["key_fingerprint"] for p, record in self._keys().items()}

    def provider_key(self, provider: str) -> dict[str, str] | None:
        return self._keys().get(provider)

    def _keys(self) -> dict[str, dict[str, str]]:
        # setdefault: a snapshot taken before BYOK existed restores without the field.
        return self.__dict__.setdefault("provider_keys", {})  # type: ignore[no-any-return]


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

        def apply(self, aggregate: ApiKey) -> None:
            aggregate.revoked = True

    class DowngradeThresholdSet(Aggregate.Event):
        """Issue 14: below this much left of its daily budget, the key's router-chosen
        requests go to the cheapest compliant model that fits (None: no downgrade)."""

        threshold: Decimal | None
        set_at: datetime

        def apply(self, aggregate: ApiKey) -> None:
            aggregate.__dict__["_downgrade_threshold"] = self.threshold

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
        self.trigger_event(self.Revoked, reason=reason[:200], revoked_at=now)

    @property
    def downgrade_threshold(self) -> Decimal | None:
        # Keys created before the threshold existed have none (no attribute on replay).
        return self.__dict__.get("_downgrade_threshold")  # type: ignore[no-any-return]

    def set_downgrade_threshold(self, threshold: Decimal | None, now: datetime) -> bool:
        """False (nothing recorded) when the threshold is already that."""
        if threshold is not None:
            if self.daily_budget is None:
                raise InvalidCommand(
                    "a downgrade threshold applies to a daily budget: this key has none",
                    param="threshold",
                )
            if threshold <= 0:
                raise InvalidCommand("a downgrade threshold must be positive", param="threshold")
        if threshold == self.downgrade_threshold:
            return False
        self.trigger_event(self.DowngradeThresholdSet, threshold=threshold, set_at=now)
        return True
