from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from domain.catalog import Catalog, spec_from_mapping
from domain.errors import InvalidCommand, ModelNotFound, PriceNotFound
from domain.tiers import Tier

REQUIRED_MODELS = (
    "claude-sonnet", "claude-opus-4-7", "gpt-5", "gpt-5-mini", "gpt-4.1", "mistral-small",
    "mistral-medium", "mistral-large", "mistral-codestral", "magistral-small", "magistral-medium",
    "mistral-embed", "gemini-flash", "cohere-embed", "claude-sonnet-eu", "mistral-devstral-sweden",
    "nova-lite-sweden", "titan-embed-v2-sweden", "kimi-k2-6", "grok-4-3", "grok-3-mini",
    "text-embedding-3-small", "text-embedding-3-large", "gemini-embedding-001", "command-a",
)  # fmt: skip


def custom_entry(**overrides: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "name": "acme-llm",
        "provider": "openai",
        "upstream_id": "ft:gpt-4.1:acme",
        "capabilities": ["chat"],
        "size_class": "medium",
        "regions": ["us"],
        "tiers": ["unrestricted"],
        "prices": [
            {
                "effective_from": "2026-01-01T00:00:00Z",
                "currency": "USD",
                "input_per_million": "3",
                "output_per_million": "12",
            }
        ],
    }
    entry.update(overrides)
    return entry


def test_the_shipped_catalog_has_every_model_the_issue_names(catalog: Catalog) -> None:
    for name in REQUIRED_MODELS:
        assert catalog.get(name) is not None, name


def test_every_shipped_price_is_a_decimal_with_a_currency_and_an_aware_date(
    catalog: Catalog,
) -> None:
    for spec in catalog.models:
        for price in spec.prices:
            assert isinstance(price.input_per_million, Decimal)
            assert isinstance(price.output_per_million, Decimal)
            assert price.currency in {"USD", "EUR"}
            assert price.effective_from.tzinfo is not None


def test_the_embedding_models_are_priced_per_input_token_only(catalog: Catalog) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    expected = {
        "text-embedding-3-small": Decimal("0.02"),
        "text-embedding-3-large": Decimal("0.13"),
        "gemini-embedding-001": Decimal("0.15"),
    }
    for name, input_per_million in expected.items():
        spec = catalog.require(name)
        price = spec.price_at(at)
        assert spec.capabilities == {"embeddings"} and spec.tiers == {Tier.UNRESTRICTED}
        assert (price.input_per_million, price.output_per_million) == (input_per_million, 0)


def test_command_a_is_a_cohere_chat_model_sent_upstream_by_its_dated_id(catalog: Catalog) -> None:
    spec = catalog.require("command-a-03-2025")
    assert (spec.name, spec.provider, spec.upstream_id) == (
        "command-a",
        "cohere",
        "command-a-03-2025",
    )
    assert "chat" in spec.capabilities
    price = spec.price_at(datetime(2026, 1, 1, tzinfo=UTC))
    assert (price.input_per_million, price.output_per_million) == (
        Decimal("2.50"),
        Decimal("10.00"),
    )


def test_a_model_is_found_by_its_alias_case_insensitively(catalog: Catalog) -> None:
    assert catalog.require("Claude-Sonnet-4-5").name == "claude-sonnet"
    assert catalog.require("codestral").name == "mistral-codestral"


def test_an_unknown_model_raises_model_not_found_with_its_code(catalog: Catalog) -> None:
    with pytest.raises(ModelNotFound) as caught:
        catalog.require("gpt-9")
    assert caught.value.code == "model_not_found"


def test_the_price_in_effect_follows_the_effective_dates(catalog: Catalog) -> None:
    large = catalog.require("mistral-large")
    before = large.price_at(datetime(2025, 6, 1, tzinfo=UTC))
    after = large.price_at(datetime(2026, 1, 1, tzinfo=UTC))
    assert (before.input_per_million, before.currency) == (Decimal("2.00"), "EUR")
    assert after.input_per_million == Decimal("0.50")


def test_there_is_no_price_before_the_first_effective_date(catalog: Catalog) -> None:
    with pytest.raises(PriceNotFound):
        catalog.require("gpt-5").price_at(datetime(2020, 1, 1, tzinfo=UTC))


def test_a_price_costs_cached_tokens_at_the_cached_rate(catalog: Catalog) -> None:
    price = catalog.require("gpt-5").price_at(datetime(2026, 1, 1, tzinfo=UTC))
    cost = price.cost(prompt_tokens=1_000_000, completion_tokens=100_000, cached_tokens=400_000)
    # 600k × 1.25 + 400k × 0.125 + 100k × 10 per million
    assert cost.amount == Decimal("0.75") + Decimal("0.05") + Decimal("1.00")
    assert cost.currency == "USD"


def test_ocr_is_priced_per_page(catalog: Catalog) -> None:
    price = catalog.require("mistral-ocr").price_at(datetime(2026, 1, 1, tzinfo=UTC))
    assert price.cost(0, 0, pages=12).amount == Decimal("0.012")


def test_tier_lists_follow_the_vendor_and_region_rules(catalog: Catalog) -> None:
    strict = {spec.name for spec in catalog.in_tier(Tier.EU_STRICT)}
    sweden = {spec.name for spec in catalog.in_tier(Tier.EU_SWEDEN)}
    cloud = {spec.name for spec in catalog.in_tier(Tier.EU_CLOUD)}
    assert all(catalog.require(name).provider == "mistral" for name in strict)
    assert sweden == {"mistral-devstral-sweden", "nova-lite-sweden", "titan-embed-v2-sweden"}
    assert "claude-sonnet-eu" in cloud and "claude-sonnet" not in cloud
    assert strict | sweden <= cloud


def test_moonshot_and_xai_models_are_unrestricted_and_named_only(catalog: Catalog) -> None:
    for name in ("kimi-k2-6", "grok-4-3", "grok-3-mini"):
        spec = catalog.require(name)
        assert spec.tiers == {Tier.UNRESTRICTED}
        assert spec.named_only


@pytest.mark.parametrize(
    "overrides",
    [
        {"tiers": ["eu_cloud", "unrestricted"]},  # US region claiming EU residency
        {"provider": "bedrock", "regions": ["eu-central-1"], "tiers": ["eu_strict", "eu_cloud", "unrestricted"], "pin_region": True},
        {"provider": "bedrock", "regions": ["eu-central-1"], "tiers": ["eu_sweden", "eu_cloud", "unrestricted"], "pin_region": True},
        {"provider": "bedrock", "regions": ["eu-north-1"], "tiers": ["eu_sweden", "eu_cloud", "unrestricted"]},
        {"provider": "xai", "named_only": True, "tiers": ["eu_cloud", "unrestricted"], "regions": ["eu"]},
        {"provider": "moonshot"},  # not named_only
        {"tiers": ["eu_cloud"], "regions": ["eu"]},  # forgot unrestricted
        {"capabilities": ["telepathy"]},
        {"size_class": "huge"},
    ],
)  # fmt: skip
def test_a_model_whose_tier_claims_contradict_its_vendor_or_region_is_refused(
    overrides: dict[str, object],
) -> None:
    with pytest.raises(InvalidCommand):
        spec_from_mapping(custom_entry(**overrides))


def test_a_float_price_in_catalog_data_is_refused() -> None:
    entry = custom_entry()
    entry["prices"] = [
        {
            "effective_from": "2026-01-01T00:00:00Z",
            "currency": "USD",
            "input_per_million": 0.1,
            "output_per_million": "1",
        }
    ]
    with pytest.raises(Exception, match="float"):
        spec_from_mapping(entry)


def test_a_custom_model_joins_a_new_catalog_and_leaves_the_shipped_one_alone(
    catalog: Catalog,
) -> None:
    extended = catalog.with_models(spec_from_mapping(custom_entry(), source="custom:p1"))
    assert extended.require("acme-llm").source == "custom:p1"
    assert catalog.get("acme-llm") is None


def test_a_custom_model_cannot_take_over_a_shipped_name(catalog: Catalog) -> None:
    with pytest.raises(InvalidCommand):
        catalog.with_models(spec_from_mapping(custom_entry(name="gpt-5")))


def test_a_catalog_with_an_unsupported_schema_version_is_refused() -> None:
    with pytest.raises(InvalidCommand):
        Catalog.from_toml("schema_version = 99\n")
