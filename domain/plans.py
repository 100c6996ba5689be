"""Plans, quotas and platform fees: pure rules derived from the project's state and the clock.

    free        1,000 requests per calendar month (UTC), unrestricted tier only
    trial       Pro for TRIAL_DAYS from the moment the plan was set, then Pro automatically
    pro         100,000 requests per calendar month (UTC), every tier
    enterprise  unlimited, may carry a negotiated platform fee

Nothing runs on a schedule: the trial's end is derived from `plan_changed_at` and the
clock each time the plan is consulted, so a frozen, travelling clock tests it exactly.

The plan <-> tier rule has its one home here (`check_plan_allows_tier`): whichever path
reaches it (a project created or changed by an admin, a request's tier or routing
preference) it raises ComplianceTierNotInPlan, one code and one status.

Fees live in domain/settlement.py (re-exported here for older imports).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from domain.errors import ComplianceTierNotInPlan

# The fee rules live in domain/settlement.py; re-exported for older imports.
from domain.settlement import BYOK_FEE_RATE as BYOK_FEE_RATE
from domain.settlement import DEFAULT_FEE_RATE as DEFAULT_FEE_RATE
from domain.settlement import KEY_SOURCE_BYOK as KEY_SOURCE_BYOK
from domain.settlement import KEY_SOURCE_MANAGED as KEY_SOURCE_MANAGED
from domain.settlement import fee_rate_for as fee_rate_for
from domain.vocabulary import Plan, Tier

FREE = Plan.FREE.value
TRIAL = Plan.TRIAL.value
PRO = Plan.PRO.value
ENTERPRISE = Plan.ENTERPRISE.value

TRIAL_DAYS = 30
MONTHLY_REQUESTS_MAX: dict[str, int | None] = {
    FREE: 1_000,
    PRO: 100_000,
    ENTERPRISE: None,  # unlimited
}
# The tiers each plan may use; None means every tier.
ALLOWED_TIERS: dict[str, frozenset[str] | None] = {
    FREE: frozenset({Tier.UNRESTRICTED.value}),
    PRO: None,
    ENTERPRISE: None,
}


def rules_plan(plan: str) -> str:
    """The plan whose limits apply: a trial has Pro's limits while it lasts and is Pro after."""
    return PRO if plan == TRIAL else plan


def trial_ends_at(plan: str, plan_changed_at: datetime) -> datetime | None:
    return plan_changed_at + timedelta(days=TRIAL_DAYS) if plan == TRIAL else None


def billing_plan(plan: str, plan_changed_at: datetime, now: datetime) -> str:
    """What the project is billed as now: 'trial' until the trial ends, then 'pro'."""
    ends = trial_ends_at(plan, plan_changed_at)
    if ends is not None and now >= ends:
        return PRO
    return plan


def monthly_request_limit(plan: str) -> int | None:
    return MONTHLY_REQUESTS_MAX[rules_plan(plan)]


def check_plan_allows_tier(plan: str, tier: str) -> None:
    """The Free plan is unrestricted-tier only; every other plan allows every tier.

    One code (`compliance_tier_not_in_plan`, HTTP 403 permission_error) on every path: the
    request is well formed, the plan does not entitle the project to it — the same answer
    whether an admin sets the tier, the plan is downgraded, or a request asks for the tier.
    """
    allowed = ALLOWED_TIERS[rules_plan(plan)]
    tier = str(tier)
    if allowed is not None and tier not in allowed:
        raise ComplianceTierNotInPlan(
            f"the {plan} plan allows only the {', '.join(sorted(allowed))} tier; "
            f"tier {tier!r} needs Pro, Trial or Enterprise",
            plan=plan,
            tier=tier,
        )


check_tier_allowed = check_plan_allows_tier  # the name project.py and older callers use


def month_key(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m")


def next_month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def next_day_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC) + timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Quota:
    """What admission checks: the monthly limit in force now (None = unlimited)."""

    plan: str
    billing_plan: str
    monthly_requests_max: int | None


def quota_for(plan: str, plan_changed_at: datetime, now: datetime) -> Quota:
    return Quota(
        plan=plan,
        billing_plan=billing_plan(plan, plan_changed_at, now),
        monthly_requests_max=monthly_request_limit(plan),
    )
