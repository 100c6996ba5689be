"""Parse the `model` field and turn it into compliant candidates.

Grammar (case-insensitive):
    <name or alias>[:<variant>]
    auto[:<size>][:<variant>]
    eu-strict | eu-cloud | eu-sweden [:<size>][:<variant>]
    variant = floor | fast | best | smart,   size = small | medium | large

This module is the ONLY place compliance is decided: every candidate it returns is allowed by
the effective tier (after any shorthand tightening). Scoring, breakers, load balancing and
failover only reorder or drop these candidates, never add to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain.catalog import SIZE_CLASSES, Catalog, ModelSpec
from domain.errors import (
    InvalidCommand,
    ModelCapabilityMissing,
    ModelNotCompliant,
    ModelNotFound,
)
from domain.tiers import TIER_ORDER, EffectiveTier, Tier

VARIANTS: tuple[str, ...] = ("floor", "fast", "best", "smart")
# Every EU tier of the vocabulary, spelled `eu-strict` or `eu_strict`.
SHORTHANDS: dict[str, Tier] = {
    spelling: tier
    for tier in TIER_ORDER
    if tier is not Tier.UNRESTRICTED
    for spelling in (tier.value.replace("_", "-"), tier.value)
}
MODE_EXPLICIT = "explicit"
MODE_AUTO = "auto"
MODE_SHORTHAND = "shorthand"
MODEL_FIELD_LENGTH_MAX = 200
ALTERNATIVES_MAX = 8


@dataclass(frozen=True, slots=True)
class ModelRequest:
    raw: str
    mode: str
    spec: ModelSpec | None = None  # explicit only
    tier: Tier | None = None  # shorthand only
    size_class: str | None = None
    variant: str = ""


@dataclass(frozen=True, slots=True)
class CandidateSet:
    request: ModelRequest
    effective: EffectiveTier  # after shorthand tightening
    primary: tuple[ModelSpec, ...]  # explicit: the model and its family; otherwise all matches
    fallbacks: tuple[ModelSpec, ...]  # compliant models failover may use after the primary ones

    def all(self) -> tuple[ModelSpec, ...]:
        return self.primary + self.fallbacks


def parse_model_field(raw: object, catalog: Catalog) -> ModelRequest:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidCommand("`model` must be a non-empty string", param="model")
    if len(raw) > MODEL_FIELD_LENGTH_MAX:
        raise InvalidCommand("`model` is too long", param="model")
    text = raw.strip().lower()
    # A whole-string match wins, so a model whose name contains ':' stays addressable.
    spec = catalog.get(text)
    if spec is not None:
        return ModelRequest(raw=text, mode=MODE_EXPLICIT, spec=spec)
    base, *suffixes = text.split(":")
    variant = ""
    size_class: str | None = None
    for suffix in suffixes:
        if suffix in VARIANTS and not variant:
            variant = suffix
        elif suffix in SIZE_CLASSES and size_class is None and not variant:
            size_class = suffix
        else:
            raise ModelNotFound(
                f"the model {raw[:80]!r} does not exist (unknown suffix {suffix[:20]!r}; "
                f"sizes {', '.join(SIZE_CLASSES)}; variants {', '.join(VARIANTS)})",
                model=raw[:80],
            )
    if base == "auto":
        return ModelRequest(raw=text, mode=MODE_AUTO, size_class=size_class, variant=variant)
    if base in SHORTHANDS:
        return ModelRequest(
            raw=text,
            mode=MODE_SHORTHAND,
            tier=SHORTHANDS[base],
            size_class=size_class,
            variant=variant,
        )
    spec = catalog.get(base)
    if spec is None:
        raise ModelNotFound(f"the model {raw[:80]!r} does not exist", model=raw[:80])
    if size_class is not None:
        raise ModelNotFound(
            f"a size suffix applies to auto and compliance shorthands, not to {spec.name!r}",
            model=raw[:80],
        )
    return ModelRequest(raw=text, mode=MODE_EXPLICIT, spec=spec, variant=variant)


def required_capabilities(body: Mapping[str, Any], *, kind: str = "chat") -> frozenset[str]:
    """What a request body needs from a model: chat or embeddings, plus tools, vision,
    documents (PDF parts) and json (response_format) when the body uses them."""
    if kind == "embeddings":
        return frozenset({"embeddings"})
    needed = {"chat"}
    if body.get("tools") or body.get("functions"):
        needed.add("tools")
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") in (
        "json_object",
        "json_schema",
    ):
        needed.add("json")
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, list):
            continue
        for part in content:
            if not isinstance(part, Mapping):
                continue
            if part.get("type") == "image_url":
                needed.add("vision")
            elif part.get("type") == "file":
                needed.add("documents")
    return frozenset(needed)


def _alternatives(
    catalog: Catalog, effective: EffectiveTier, capabilities: frozenset[str], near: ModelSpec | None
) -> list[str]:
    """Compliant models a caller could use instead, most similar first (a list: error details
    go to the JSON envelope as they are)."""
    allowed = catalog.in_tier(effective, capabilities=capabilities, include_named_only=False)

    def similarity(spec: ModelSpec) -> tuple[int, int, float]:
        same_family = near is not None and spec.family == near.family
        same_size = near is not None and spec.size_class == near.size_class
        return (0 if same_family else 1, 0 if same_size else 1, -float(spec.quality))

    return [spec.name for spec in sorted(allowed, key=similarity)[:ALTERNATIVES_MAX]]


def select_candidates(
    request: ModelRequest,
    catalog: Catalog,
    effective: EffectiveTier,
    capabilities: frozenset[str] = frozenset({"chat"}),
) -> CandidateSet:
    """Every compliant candidate for the request, or a domain error saying why there is none."""
    if request.mode == MODE_SHORTHAND:
        effective = effective.tightened(request.tier)
    # Fallbacks: every model the tier allows, able to do the job, not named-only (Moonshot and
    # xAI are used only when named), and within the caller's size constraint.
    pool = tuple(
        spec
        for spec in catalog.in_tier(effective, capabilities=capabilities, include_named_only=False)
        if request.size_class is None or spec.size_class == request.size_class
    )

    if request.mode == MODE_EXPLICIT:
        spec = request.spec
        if spec is None:  # parse_model_field never builds this; refuse rather than guess
            raise InvalidCommand("explicit model request without a model", param="model")
        if not effective.allows(spec):
            alternatives = _alternatives(catalog, effective, capabilities, spec)
            raise ModelNotCompliant(
                f"the model {spec.name!r} is not allowed under the {effective.label} tier"
                + (f"; compliant alternatives: {', '.join(alternatives)}" if alternatives else ""),
                model=spec.name,
                tier=effective.label,
                alternatives=alternatives,
                param="model",
            )
        missing = sorted(capabilities - spec.capabilities)
        if missing:
            alternatives = _alternatives(catalog, effective, capabilities, spec)
            raise ModelCapabilityMissing(
                f"the model {spec.name!r} does not support {', '.join(missing)}",
                model=spec.name,
                missing=missing,
                alternatives=alternatives,
                param="model",
            )
        primary: tuple[ModelSpec, ...] = (spec,)
        if request.variant:
            # A variant on a name chooses among the compliant ways to reach that model
            # (e.g. Claude direct or via Bedrock Frankfurt).
            primary += tuple(
                other for other in pool if other.family == spec.family and other is not spec
            )
        fallbacks = tuple(other for other in pool if other not in primary)
        return CandidateSet(request, effective, primary, fallbacks)

    if not pool:
        any_size = catalog.in_tier(effective, capabilities=capabilities, include_named_only=False)
        if not any_size:
            missing_everywhere = catalog.in_tier(effective, include_named_only=False)
            if missing_everywhere:
                raise ModelCapabilityMissing(
                    f"no model in the {effective.label} tier supports {', '.join(sorted(capabilities))}",
                    model=request.raw,
                    missing=sorted(capabilities),
                    alternatives=[],
                    param="model",
                )
            raise ModelNotCompliant(
                f"no model qualifies for every requirement of the {effective.label} tier",
                model=request.raw,
                tier=effective.label,
                alternatives=[],
                param="model",
            )
        raise ModelNotCompliant(
            f"no {request.size_class} model in the {effective.label} tier supports this request",
            model=request.raw,
            tier=effective.label,
            alternatives=[spec.name for spec in any_size[:ALTERNATIVES_MAX]],
            param="model",
        )
    return CandidateSet(request, effective, pool, ())


def cache_hit_allowed(cached_model: str, effective: EffectiveTier, catalog: Catalog) -> bool:
    """May a cached answer produced by `cached_model` be served under `effective`?

    Cache keys should include `effective.cache_scope()`; this is the second lock on the door:
    even with a wrong key, an answer from a model outside the tier (or from a model the catalog
    no longer knows) is never served.
    """
    spec = catalog.get(cached_model)
    return spec is not None and effective.allows(spec)
