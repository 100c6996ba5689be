"""The closed sets of words Ledgergate speaks, each spelled once.

Every other module (domain, gateway, projections) imports these instead of writing its own
list, so adding a provider, a plan or a tier is one edit here. The values are what events
store: never rename one (existing logs and their Merkle leaf hashes keep them).

Each set is a `StrEnum` (a member *is* its string, so `Plan.FREE == "free"` and events keep
plain strings) plus its ordered tuple of values for messages, validation and display.
"""

from __future__ import annotations

from enum import StrEnum


class Tier(StrEnum):
    """Territorial compliance tiers (domain/tiers.py says what each promises)."""

    UNRESTRICTED = "unrestricted"
    EU_CLOUD = "eu_cloud"
    EU_STRICT = "eu_strict"
    EU_SWEDEN = "eu_sweden"


# Loosest to strictest. Used to name the effective tier and to order display, never to decide
# membership (membership is the set rule in domain/tiers.EffectiveTier.allows).
TIER_ORDER: tuple[Tier, ...] = (Tier.UNRESTRICTED, Tier.EU_CLOUD, Tier.EU_STRICT, Tier.EU_SWEDEN)
TIERS: tuple[str, ...] = tuple(tier.value for tier in TIER_ORDER)


class Plan(StrEnum):
    """Plans (domain/plans.py holds their quotas; domain/settlement.py their fees)."""

    FREE = "free"
    TRIAL = "trial"
    PRO = "pro"
    ENTERPRISE = "enterprise"


PLANS: tuple[str, ...] = tuple(plan.value for plan in Plan)


class Provider(StrEnum):
    """Upstream providers the gateway speaks to (gateway/providers has one adapter each)."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    MISTRAL = "mistral"
    GOOGLE = "google"
    BEDROCK = "bedrock"
    COHERE = "cohere"
    MOONSHOT = "moonshot"
    XAI = "xai"


PROVIDERS: tuple[str, ...] = tuple(provider.value for provider in Provider)
KNOWN_PROVIDERS: frozenset[str] = frozenset(PROVIDERS)
# Vendor facts behind the tier claims (domain/tiers.check_tier_claims).
EU_OWNED_PROVIDERS: frozenset[str] = frozenset({Provider.MISTRAL.value})
NAMED_ONLY_PROVIDERS: frozenset[str] = frozenset({Provider.MOONSHOT.value, Provider.XAI.value})


class KeySource(StrEnum):
    """Whose provider key served a request: the platform's (managed) or the project's own
    (bring-your-own-key, fee 0 %)."""

    MANAGED = "managed"
    BYOK = "byok"


KEY_SOURCES: tuple[str, ...] = tuple(source.value for source in KeySource)


class Mode(StrEnum):
    """Live traffic, or test traffic on a project's separate test balance (lg_test_ keys)."""

    LIVE = "live"
    TEST = "test"


MODES: tuple[str, ...] = tuple(mode.value for mode in Mode)


class RequestStatus(StrEnum):
    """A request's lifecycle states (domain/request.py holds the allowed transitions)."""

    RECEIVED = "received"
    ADMITTED = "admitted"
    REJECTED = "rejected"
    DISPATCHED = "dispatched"
    STREAMING = "streaming"
    COMPLETED = "completed"
    FAILED = "failed"
    ABANDONED = "abandoned"


REQUEST_STATUSES: tuple[str, ...] = tuple(status.value for status in RequestStatus)
# Plain strings (`.value`), not members: these sets reach SQL parameters, and some drivers
# adapt an enum member by its name rather than its value.
TERMINAL_STATES: frozenset[str] = frozenset(
    status.value
    for status in (
        RequestStatus.REJECTED,
        RequestStatus.COMPLETED,
        RequestStatus.FAILED,
        RequestStatus.ABANDONED,
    )
)
NON_TERMINAL_STATES: frozenset[str] = frozenset(REQUEST_STATUSES) - TERMINAL_STATES
