"""The model catalog: shipped data (catalog_data/models.toml) plus per-project custom models.

Everything here is frozen. A project's catalog is `Catalog.shipped().with_models(*custom)`, a
new value; nothing mutates the shipped one.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

from domain.clock import parse_instant, require_aware
from domain.errors import InvalidCommand, ModelNotFound, PriceNotFound
from domain.money import Money, check_currency, to_decimal, token_cost
from domain.pricing import rate_chosen
from domain.tiers import (
    TIER_RANK,
    EffectiveTier,
    Tier,
    check_tier_claims,
    parse_tier,
)

CAPABILITIES: frozenset[str] = frozenset(
    {"chat", "embeddings", "documents", "tools", "vision", "json", "ocr"}
)
SIZE_CLASSES: tuple[str, ...] = ("small", "medium", "large")
# Blend used to compare prices of models with one number: a typical chat request sends about
# three input tokens per output token.
BLEND_INPUT_WEIGHT = Decimal(3)
BLEND_OUTPUT_WEIGHT = Decimal(1)
CATALOG_SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class ModelPrice:
    effective_from: datetime
    currency: str
    input_per_million: Decimal
    output_per_million: Decimal
    cached_input_per_million: Decimal | None = None
    per_page: Decimal | None = None  # OCR

    def __post_init__(self) -> None:
        object.__setattr__(self, "effective_from", require_aware(self.effective_from))
        object.__setattr__(self, "currency", check_currency(self.currency))
        for name in ("input_per_million", "output_per_million"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or value < 0:
                raise InvalidCommand(f"{name} must be a non-negative Decimal", param=name)

    def cost(
        self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, pages: int = 0
    ) -> Money:
        """List cost of one call. Cached prompt tokens use the cached rate when there is one."""
        cached = min(max(cached_tokens, 0), prompt_tokens)
        cached_rate = (
            self.cached_input_per_million
            if self.cached_input_per_million is not None
            else self.input_per_million
        )
        amount = (
            token_cost(prompt_tokens - cached, self.input_per_million)
            + token_cost(cached, cached_rate)
            + token_cost(completion_tokens, self.output_per_million)
        )
        if pages and self.per_page is not None:
            amount += Decimal(pages) * self.per_page
        return Money(amount, self.currency)

    def blended_per_million(self) -> Decimal:
        total = BLEND_INPUT_WEIGHT + BLEND_OUTPUT_WEIGHT
        return (
            self.input_per_million * BLEND_INPUT_WEIGHT
            + self.output_per_million * BLEND_OUTPUT_WEIGHT
        ) / total


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    provider: str
    upstream_id: str
    capabilities: frozenset[str]
    size_class: str
    regions: tuple[str, ...]
    tiers: frozenset[Tier]
    prices: tuple[ModelPrice, ...]
    aliases: tuple[str, ...] = ()
    family: str = ""
    named_only: bool = False
    pin_region: bool = False
    quality: Decimal = Decimal("0.5")
    latency_ms_typical: int = 1000
    context_window: int = 0
    max_output_tokens: int = 0
    source: str = "catalog"  # "catalog" or "custom:<project id>"

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip().lower():
            raise InvalidCommand("model names are non-empty, lower case, trimmed", param="name")
        if not self.family:
            object.__setattr__(self, "family", self.name)
        unknown = self.capabilities - CAPABILITIES
        if unknown or not self.capabilities:
            raise InvalidCommand(
                f"model {self.name!r}: unknown or missing capabilities {sorted(unknown)}",
                param="capabilities",
            )
        if self.size_class not in SIZE_CLASSES:
            raise InvalidCommand(
                f"model {self.name!r}: size_class must be one of {SIZE_CLASSES}", param="size_class"
            )
        if not (Decimal(0) <= self.quality <= Decimal(1)):
            raise InvalidCommand(f"model {self.name!r}: quality must be in [0, 1]", param="quality")
        if self.latency_ms_typical <= 0:
            raise InvalidCommand(
                f"model {self.name!r}: latency_ms_typical must be positive", param="latency"
            )
        if not self.prices:
            raise InvalidCommand(f"model {self.name!r}: needs at least one price", param="prices")
        ordered = tuple(sorted(self.prices, key=lambda price: price.effective_from))
        if len({price.effective_from for price in ordered}) != len(ordered):
            raise InvalidCommand(f"model {self.name!r}: two prices share an effective_from")
        object.__setattr__(self, "prices", ordered)
        check_tier_claims(
            name=self.name,
            provider=self.provider,
            regions=self.regions,
            tiers=self.tiers,
            named_only=self.named_only,
            pin_region=self.pin_region,
        )

    def has(self, capability: str) -> bool:
        return capability in self.capabilities

    def price_at(self, moment: datetime) -> ModelPrice:
        """The price row in effect at `moment` (the latest one not after it): the OCR
        per-page price too. The one dated choice of domain/pricing.rate_chosen."""
        moment = require_aware(moment)
        chosen = rate_chosen(self.prices, moment)
        if chosen is None:
            raise PriceNotFound(
                f"no price for {self.name} at {moment.isoformat()}", model=self.name
            )
        return chosen

    @property
    def latest_price(self) -> ModelPrice:
        return self.prices[-1]

    @property
    def strictest_tier(self) -> Tier:
        return max(self.tiers, key=TIER_RANK.__getitem__)


@dataclass(frozen=True)
class Catalog:
    models: tuple[ModelSpec, ...]
    # Ranking-only exchange rates (see models.toml [comparison]); never used to charge.
    usd_per_unit: Mapping[str, Decimal] = field(default_factory=lambda: {"USD": Decimal(1)})
    _index: dict[str, ModelSpec] = field(init=False, repr=False, compare=False)
    _reference_price_usd: dict[str, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, ModelSpec] = {}
        for spec in self.models:
            for key in (spec.name, *spec.aliases):
                key = key.strip().lower()
                if key in index:
                    raise InvalidCommand(
                        f"model name or alias {key!r} is used twice in the catalog", model=key
                    )
                index[key] = spec
        object.__setattr__(self, "_index", index)
        # Precomputed once: the router ranks by it on every request. A float is fine HERE: it
        # only orders models, it never becomes an amount anyone is charged.
        references = {spec.name: float(self._to_usd(spec.latest_price)) for spec in self.models}
        object.__setattr__(self, "_reference_price_usd", references)

    def _to_usd(self, price: ModelPrice) -> Decimal:
        rate = self.usd_per_unit.get(price.currency)
        if rate is None:
            raise InvalidCommand(f"no comparison rate for {price.currency}", param="comparison")
        return price.blended_per_million() * rate

    # ---- construction

    @classmethod
    def shipped(cls) -> Catalog:
        return _shipped_catalog()

    @classmethod
    def from_toml(cls, text: str | bytes) -> Catalog:
        data = tomllib.loads(text.decode() if isinstance(text, bytes) else text)
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Catalog:
        version = data.get("schema_version")
        if version != CATALOG_SCHEMA_VERSION:
            raise InvalidCommand(f"catalog schema_version {version!r} is not supported")
        comparison = data.get("comparison", {}).get("usd_per_unit", {"USD": "1"})
        rates = {check_currency(code): to_decimal(rate) for code, rate in comparison.items()}
        models = tuple(spec_from_mapping(entry) for entry in data.get("models", ()))
        return cls(models=models, usd_per_unit=rates)

    def with_models(self, *specs: ModelSpec) -> Catalog:
        """A new catalog with custom models added (a name clash is refused, never overridden:
        a custom model must not silently take over a shipped name and its tier)."""
        return Catalog(models=self.models + tuple(specs), usd_per_unit=self.usd_per_unit)

    # ---- lookup

    def get(self, name: str) -> ModelSpec | None:
        return self._index.get(name.strip().lower())

    def require(self, name: str) -> ModelSpec:
        spec = self.get(name)
        if spec is None:
            raise ModelNotFound(f"the model {name[:80]!r} does not exist", model=name[:80])
        return spec

    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.models)

    def in_tier(
        self,
        tier: Tier | EffectiveTier,
        *,
        capabilities: Iterable[str] = (),
        include_named_only: bool = True,
    ) -> tuple[ModelSpec, ...]:
        """Models the tier allows (what GET /v1/models lists), catalog order."""
        effective = tier if isinstance(tier, EffectiveTier) else EffectiveTier(frozenset({tier}))
        needed = frozenset(capabilities)
        return tuple(
            spec
            for spec in self.models
            if effective.allows(spec)
            and needed <= spec.capabilities
            and (include_named_only or not spec.named_only)
        )

    def reference_price_usd(self, spec: ModelSpec) -> float:
        """Blended list price per million tokens in USD at the latest price row, for ranking."""
        cached = self._reference_price_usd.get(spec.name)
        if cached is not None:
            return cached
        return float(self._to_usd(spec.latest_price))


@cache
def _shipped_catalog() -> Catalog:
    text = resources.files("domain.catalog_data").joinpath("models.toml").read_bytes()
    return Catalog.from_toml(text)


def spec_from_mapping(entry: Mapping[str, Any], *, source: str = "catalog") -> ModelSpec:
    """Build a ModelSpec from TOML (or an event's fields). Strings for Decimals, never floats."""
    try:
        name = str(entry["name"]).strip().lower()
        prices = tuple(price_from_mapping(row) for row in entry.get("prices", ()))
        return ModelSpec(
            name=name,
            aliases=tuple(str(alias).strip().lower() for alias in entry.get("aliases", ())),
            provider=str(entry["provider"]),
            upstream_id=str(entry["upstream_id"]),
            family=str(entry.get("family", "")),
            capabilities=frozenset(entry["capabilities"]),
            size_class=str(entry["size_class"]),
            regions=tuple(entry["regions"]),
            tiers=frozenset(parse_tier(tier, param="tiers") for tier in entry["tiers"]),
            named_only=bool(entry.get("named_only", False)),
            pin_region=bool(entry.get("pin_region", False)),
            quality=to_decimal(entry.get("quality", "0.5")),
            latency_ms_typical=int(entry.get("latency_ms_typical", 1000)),
            context_window=int(entry.get("context_window", 0)),
            max_output_tokens=int(entry.get("max_output_tokens", 0)),
            prices=prices,
            source=source,
        )
    except KeyError as missing:
        raise InvalidCommand(f"catalog entry lacks field {missing}", param=str(missing)) from None


def price_from_mapping(row: Mapping[str, Any]) -> ModelPrice:
    moment = row["effective_from"]
    if isinstance(moment, str):
        moment = parse_instant(moment)
    cached = row.get("cached_input_per_million")
    per_page = row.get("per_page")
    return ModelPrice(
        effective_from=moment,
        currency=str(row["currency"]),
        input_per_million=to_decimal(row["input_per_million"]),
        output_per_million=to_decimal(row["output_per_million"]),
        cached_input_per_million=None if cached is None else to_decimal(cached),
        per_page=None if per_page is None else to_decimal(per_page),
    )
