"""Territorial compliance tiers.

A tier is a promise about where a request's data may go:

- ``unrestricted``: anywhere (the default).
- ``eu_cloud``: processed only in EU regions (EU residency), whoever operates the cloud.
- ``eu_strict``: EU-owned vendors only (the Mistral family), EU-hosted.
- ``eu_sweden``: data stays in Stockholm (AWS eu-north-1).

The tiers are ranked loosest to strictest for display and for "tighten", but they are not
nested sets: a Stockholm-hosted Amazon model keeps data in Sweden yet is not an EU-owned
vendor. So a request that tightens a project's tier ADDS a requirement: the effective tier is
the set of tiers every candidate must qualify for at once. That is what makes "a request may
tighten, never loosen" true by construction: requirements only accumulate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from domain.errors import InvalidCommand, UnknownComplianceTier
from domain.plans import check_plan_allows_tier

# Tier, TIER_ORDER and the provider sets are spelled in domain/vocabulary.py; re-exported
# here for the modules that import them from this, their old home.
from domain.vocabulary import EU_OWNED_PROVIDERS as EU_OWNED_PROVIDERS
from domain.vocabulary import KNOWN_PROVIDERS as KNOWN_PROVIDERS
from domain.vocabulary import NAMED_ONLY_PROVIDERS as NAMED_ONLY_PROVIDERS
from domain.vocabulary import TIER_ORDER as TIER_ORDER
from domain.vocabulary import Plan, Provider
from domain.vocabulary import Tier as Tier

if TYPE_CHECKING:
    from domain.catalog import ModelSpec


TIER_RANK: dict[Tier, int] = {tier: rank for rank, tier in enumerate(TIER_ORDER)}

# Region facts behind the tier claims (checked for shipped and custom models alike).
SWEDEN_REGIONS: frozenset[str] = frozenset({"eu-north-1"})


def parse_tier(text: object, *, param: str = "routing_preferences.compliance") -> Tier:
    """Accept `eu_strict`, `eu-strict`, `EU_STRICT`; anything else is a client error."""
    if isinstance(text, Tier):
        return text
    if not isinstance(text, str):
        raise UnknownComplianceTier(
            "compliance tier must be a string", tier=None, allowed=_allowed(), param=param
        )
    normalised = text.strip().lower().replace("-", "_")
    try:
        return Tier(normalised)
    except ValueError:
        raise UnknownComplianceTier(
            f"unknown compliance tier {text[:40]!r}; allowed: {', '.join(_allowed())}",
            tier=text[:40],
            allowed=_allowed(),
            param=param,
        ) from None


def _allowed() -> list[str]:
    return [tier.value for tier in TIER_ORDER]


@dataclass(frozen=True, slots=True)
class EffectiveTier:
    """The requirements a request's route must meet. `required` only ever grows."""

    required: frozenset[Tier]
    plan: str = Plan.PRO.value  # any plan but Free allows every tier

    @property
    def name(self) -> Tier:
        """The strictest required tier: what headers and errors show."""
        return max(self.required, key=TIER_RANK.__getitem__)

    @property
    def label(self) -> str:
        """Every requirement, strictest first, e.g. `eu_sweden+eu_strict` (audit-friendly)."""
        ordered = sorted(self.required, key=TIER_RANK.__getitem__, reverse=True)
        meaningful = [tier.value for tier in ordered if tier is not Tier.UNRESTRICTED]
        return "+".join(meaningful) or Tier.UNRESTRICTED.value

    def allows(self, spec: ModelSpec) -> bool:
        return self.required <= spec.tiers

    def tightened(self, requested: Tier | str | None) -> EffectiveTier:
        """Add a requirement (from `routing_preferences.compliance` or a model shorthand)."""
        if requested is None:
            return self
        tier = parse_tier(requested)
        check_plan_allows_tier(self.plan, tier)
        if tier in self.required:
            return self
        return EffectiveTier(required=self.required | {tier}, plan=self.plan)

    def cache_scope(self) -> str:
        """A response cached under one scope is only ever served to the same scope, so a
        cache hit can never carry an answer from a model outside the caller's tier."""
        return "tier=" + self.label


def effective_tier(
    project_tier: Tier | str, requested: Tier | str | None = None, plan: str = Plan.PRO.value
) -> EffectiveTier:
    """The tier a request runs under: the project's, tightened by the request, never loosened.

    A request asking for a looser tier than its project's changes nothing (the project's
    requirement stays); a Free-plan project or request asking for any EU tier is refused.
    """
    base = parse_tier(project_tier, param="project.tier")
    check_plan_allows_tier(plan, base)
    return EffectiveTier(required=frozenset({Tier.UNRESTRICTED, base}), plan=plan).tightened(
        requested
    )


def model_allowed(spec: ModelSpec, tier: Tier | EffectiveTier) -> bool:
    if isinstance(tier, EffectiveTier):
        return tier.allows(spec)
    return tier in spec.tiers


def is_eu_region(region: str) -> bool:
    return region == "eu" or region.startswith("eu-")


def check_tier_claims(
    *,
    name: str,
    provider: str,
    regions: Iterable[str],
    tiers: Iterable[Tier],
    named_only: bool,
    pin_region: bool,
) -> None:
    """Refuse a model whose tier claims contradict its vendor or regions.

    Run on every shipped model at load and on every custom model an admin adds, so a typo in
    data cannot put a US-hosted model into an EU tier.
    """
    tier_set = frozenset(tiers)
    region_set = frozenset(regions)

    def refuse(reason: str) -> None:
        raise InvalidCommand(f"model {name!r}: {reason}", model=name, param="tiers")

    if provider not in KNOWN_PROVIDERS:
        refuse(f"unknown provider {provider[:30]!r}")
    if Tier.UNRESTRICTED not in tier_set:
        refuse("every model must qualify for unrestricted")
    if not region_set:
        refuse("regions must not be empty")
    if provider in NAMED_ONLY_PROVIDERS:
        if tier_set != {Tier.UNRESTRICTED}:
            refuse(f"{provider} models are unrestricted-tier only")
        if not named_only:
            refuse(f"{provider} models are used only when named (named_only = true)")
    if provider == Provider.BEDROCK and not pin_region:
        refuse("bedrock models must pin their region (the endpoint region decides residency)")
    eu_tiers = tier_set - {Tier.UNRESTRICTED}
    if eu_tiers:
        if Tier.EU_CLOUD not in tier_set:
            refuse("a model in an EU tier keeps data in the EU, so it must list eu_cloud")
        if not all(is_eu_region(region) for region in region_set):
            refuse("EU tiers need every region in the EU")
    if Tier.EU_STRICT in tier_set and provider not in EU_OWNED_PROVIDERS:
        refuse(f"eu_strict is for EU-owned vendors only, not {provider}")
    if Tier.EU_SWEDEN in tier_set:
        if not region_set <= SWEDEN_REGIONS:
            refuse("eu_sweden needs every region in Stockholm (eu-north-1)")
        if not pin_region:
            refuse("eu_sweden needs pin_region = true so only a Stockholm endpoint serves it")
