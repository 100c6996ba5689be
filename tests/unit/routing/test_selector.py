from __future__ import annotations

import pytest

from domain.catalog import Catalog
from domain.errors import (
    ComplianceTierNotInPlan,
    InvalidCommand,
    ModelCapabilityMissing,
    ModelNotCompliant,
    ModelNotFound,
)
from domain.tiers import Tier, effective_tier
from gateway.routing.selector import (
    MODE_AUTO,
    MODE_EXPLICIT,
    MODE_SHORTHAND,
    cache_hit_allowed,
    parse_model_field,
    required_capabilities,
    select_candidates,
)


def test_a_model_name_parses_as_an_explicit_request(catalog: Catalog) -> None:
    request = parse_model_field("GPT-5", catalog)
    assert (request.mode, request.spec and request.spec.name, request.variant) == (
        MODE_EXPLICIT,
        "gpt-5",
        "",
    )


def test_a_variant_on_a_model_name_is_parsed(catalog: Catalog) -> None:
    request = parse_model_field("claude-sonnet:fast", catalog)
    assert request.mode == MODE_EXPLICIT and request.variant == "fast"


def test_a_shorthand_with_size_and_variant_is_parsed(catalog: Catalog) -> None:
    request = parse_model_field("eu-strict:small:floor", catalog)
    assert (request.mode, request.tier, request.size_class, request.variant) == (
        MODE_SHORTHAND, Tier.EU_STRICT, "small", "floor",
    )  # fmt: skip


def test_auto_with_a_variant_is_parsed(catalog: Catalog) -> None:
    request = parse_model_field("auto:best", catalog)
    assert (request.mode, request.variant) == (MODE_AUTO, "best")


@pytest.mark.parametrize(
    "text",
    ["gpt-9", "auto:huge", "auto:fast:small", "gpt-5:small", "eu-strict:cheap", "auto:fast:fast"],
)
def test_malformed_or_unknown_model_fields_raise_model_not_found(
    catalog: Catalog, text: str
) -> None:
    with pytest.raises(ModelNotFound):
        parse_model_field(text, catalog)


@pytest.mark.parametrize("value", ["", "   ", None, 42, "x" * 500])
def test_a_model_field_that_is_not_a_sensible_string_is_invalid(
    catalog: Catalog, value: object
) -> None:
    with pytest.raises(InvalidCommand):
        parse_model_field(value, catalog)


def test_an_explicit_model_outside_the_tier_lists_compliant_alternatives(catalog: Catalog) -> None:
    request = parse_model_field("claude-sonnet", catalog)
    with pytest.raises(ModelNotCompliant) as caught:
        select_candidates(request, catalog, effective_tier("eu_cloud"))
    alternatives = caught.value.details["alternatives"]
    # The same model reached the compliant way comes first.
    assert alternatives[0] == "claude-sonnet-eu"
    assert all(effective_tier("eu_cloud").allows(catalog.require(name)) for name in alternatives)
    assert caught.value.code == "model_not_compliant"


def test_a_model_shorthand_tightens_the_tier(catalog: Catalog) -> None:
    request = parse_model_field("eu-sweden", catalog)
    candidates = select_candidates(request, catalog, effective_tier("eu_cloud"))
    assert {spec.name for spec in candidates.all()} == {
        "mistral-devstral-sweden",
        "nova-lite-sweden",
    }


def test_a_shorthand_on_the_free_plan_is_refused(catalog: Catalog) -> None:
    request = parse_model_field("eu-strict", catalog)
    with pytest.raises(ComplianceTierNotInPlan):
        select_candidates(request, catalog, effective_tier("unrestricted", plan="free"))


def test_a_size_suffix_keeps_only_that_size(catalog: Catalog) -> None:
    request = parse_model_field("eu-strict:small", catalog)
    candidates = select_candidates(request, catalog, effective_tier("unrestricted"))
    assert {spec.name for spec in candidates.all()} == {"mistral-small", "magistral-small"}


def test_auto_never_offers_named_only_models(catalog: Catalog) -> None:
    candidates = select_candidates(
        parse_model_field("auto", catalog), catalog, effective_tier("unrestricted")
    )
    assert not any(spec.named_only for spec in candidates.all())


def test_a_named_only_model_is_served_when_named_and_failover_avoids_other_named_only_models(
    catalog: Catalog,
) -> None:
    candidates = select_candidates(
        parse_model_field("grok-4-3", catalog), catalog, effective_tier("unrestricted")
    )
    assert candidates.primary[0].name == "grok-4-3"
    assert not any(spec.named_only for spec in candidates.fallbacks)


def test_a_model_lacking_a_needed_capability_is_refused_with_alternatives(catalog: Catalog) -> None:
    request = parse_model_field("mistral-codestral", catalog)
    with pytest.raises(ModelCapabilityMissing) as caught:
        select_candidates(
            request, catalog, effective_tier("eu_strict"), frozenset({"chat", "vision"})
        )
    assert caught.value.details["missing"] == ["vision"]
    assert "mistral-small" in caught.value.details["alternatives"]


def test_embeddings_requests_only_get_embedding_models(catalog: Catalog) -> None:
    candidates = select_candidates(
        parse_model_field("auto", catalog),
        catalog,
        effective_tier("eu_sweden"),
        frozenset({"embeddings"}),
    )
    assert [spec.name for spec in candidates.all()] == ["titan-embed-v2-sweden"]


def test_incompatible_tier_requirements_say_no_model_qualifies(catalog: Catalog) -> None:
    with pytest.raises(ModelNotCompliant, match="no model qualifies"):
        select_candidates(
            parse_model_field("eu-sweden", catalog), catalog, effective_tier("eu_strict")
        )


def test_required_capabilities_reads_tools_images_pdfs_and_json_from_the_body() -> None:
    body = {
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,AA"}},
            ]},
        ],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "response_format": {"type": "json_object"},
    }  # fmt: skip
    assert required_capabilities(body) == {"chat", "tools", "vision", "documents", "json"}
    assert required_capabilities({}, kind="embeddings") == {"embeddings"}


def test_a_cache_hit_from_a_model_outside_the_tier_is_never_served(catalog: Catalog) -> None:
    assert cache_hit_allowed("mistral-large", effective_tier("eu_strict"), catalog)
    assert not cache_hit_allowed("gpt-5", effective_tier("eu_strict"), catalog)
    assert not cache_hit_allowed("a-model-nobody-knows", effective_tier("unrestricted"), catalog)
