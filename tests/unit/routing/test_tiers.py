from __future__ import annotations

import pytest

from domain.catalog import Catalog
from domain.errors import ComplianceTierNotInPlan, UnknownComplianceTier
from domain.tiers import Tier, effective_tier, model_allowed


def test_the_default_tier_allows_every_model(catalog: Catalog) -> None:
    effective = effective_tier("unrestricted")
    assert all(effective.allows(spec) for spec in catalog.models)


def test_a_request_can_tighten_the_project_tier() -> None:
    effective = effective_tier("eu_cloud", "eu_strict")
    assert effective.name is Tier.EU_STRICT
    assert Tier.EU_CLOUD in effective.required


def test_a_request_cannot_loosen_the_project_tier(catalog: Catalog) -> None:
    effective = effective_tier("eu_strict", "unrestricted")
    assert effective.name is Tier.EU_STRICT
    assert not effective.allows(catalog.require("gpt-5"))
    assert not effective.allows(catalog.require("claude-sonnet-eu"))


def test_tightening_accumulates_requirements_rather_than_replacing_them(catalog: Catalog) -> None:
    # eu_sweden is not a subset of eu_strict: Stockholm Bedrock is not an EU-owned vendor.
    effective = effective_tier("eu_strict", "eu_sweden")
    assert effective.label == "eu_sweden+eu_strict"
    assert catalog.in_tier(effective) == ()


def test_hyphenated_and_upper_case_tier_names_are_accepted() -> None:
    assert effective_tier("EU-CLOUD").name is Tier.EU_CLOUD


def test_an_unknown_tier_is_a_clear_client_error() -> None:
    with pytest.raises(UnknownComplianceTier) as caught:
        effective_tier("unrestricted", "mars_only")
    assert caught.value.code == "invalid_compliance_tier"
    assert "eu_strict" in caught.value.details["allowed"]


def test_the_free_plan_is_unrestricted_only() -> None:
    assert effective_tier("unrestricted", plan="free").name is Tier.UNRESTRICTED
    with pytest.raises(ComplianceTierNotInPlan):
        effective_tier("eu_strict", plan="free")
    with pytest.raises(ComplianceTierNotInPlan):
        effective_tier("unrestricted", "eu_cloud", plan="free")


def test_model_allowed_takes_a_plain_tier_or_an_effective_tier(catalog: Catalog) -> None:
    spec = catalog.require("mistral-small")
    assert model_allowed(spec, Tier.EU_STRICT)
    assert model_allowed(spec, effective_tier("eu_strict"))
    assert not model_allowed(spec, Tier.EU_SWEDEN)


def test_the_cache_scope_differs_between_tiers() -> None:
    scopes = {effective_tier(tier).cache_scope() for tier in Tier}
    assert len(scopes) == len(Tier)
