"""What the router decided, in a form for headers, failover and the audit event."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from domain.catalog import ModelSpec
from domain.routing import endpoint_key
from gateway.providers.base import ProviderEndpoint

_HEADER_UNSAFE = re.compile(r"[^\x20-\x7e]")
REASON_LENGTH_MAX = 240


@dataclass(frozen=True, slots=True)
class RouteTarget:
    spec: ModelSpec
    endpoint: ProviderEndpoint

    @property
    def endpoint_key(self) -> str:
        return endpoint_key(self.endpoint.provider, self.endpoint.name)

    def label(self) -> str:
        return f"{self.spec.name}@{self.endpoint_key}"


@dataclass(frozen=True, slots=True)
class ScoredCandidate:
    """A candidate and what its score was made of. Raw numbers are kept and only formatted
    when the event is written, because formatting every candidate costs more than scoring."""

    model: str
    score: float
    success: float | None = None  # sampled success probability (Thompson only)
    latency_ms: float | None = None  # sampled or expected latency
    price_usd_per_million: float | None = None
    quality: str = ""

    @property
    def detail(self) -> str:
        parts = []
        if self.success is not None:
            parts.append(f"p={self.success:.3f}")
        if self.latency_ms is not None:
            parts.append(f"lat={self.latency_ms:.0f}ms")
        if self.price_usd_per_million is not None:
            parts.append(f"price=${self.price_usd_per_million:.3f}/M")
        if self.quality:
            parts.append(f"q={self.quality}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class RouteDecision:
    requested_model: str
    mode: str  # "explicit" | "auto" | "shorthand"
    variant: str  # "" | "floor" | "fast" | "best" | "smart"
    tier: str  # effective tier label, e.g. "eu_strict" or "eu_sweden+eu_strict"
    chosen: RouteTarget
    failover: tuple[RouteTarget, ...]
    reason: str
    confidence: float
    candidates: tuple[ScoredCandidate, ...]

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError("confidence must be in [0, 1]")
        reason = _HEADER_UNSAFE.sub("?", self.reason)[:REASON_LENGTH_MAX]
        object.__setattr__(self, "reason", reason)

    @property
    def targets(self) -> tuple[RouteTarget, ...]:
        """The chosen target first, then failover targets in order."""
        return (self.chosen, *self.failover)

    def headers(self, target: RouteTarget | None = None) -> dict[str, str]:
        """Response headers for the target that actually answered (after failover, pass it)."""
        served = target or self.chosen
        reason = self.reason
        if served != self.chosen:
            reason = f"failover from {self.chosen.label()}; {reason}"[:REASON_LENGTH_MAX]
        return {
            "X-LG-Model": served.spec.name,
            "X-LG-Provider": served.spec.provider,
            "X-LG-Endpoint": served.endpoint_key,
            "X-LG-Route-Reason": reason,
            "X-LG-Route-Confidence": f"{self.confidence:.3f}",
        }

    def as_event_fields(self) -> dict[str, Any]:
        """Primitives, tuples and str-decimals only: what a RouteDecided event stores.
        No endpoint URL or key, only the endpoint's label."""
        return {
            "requested_model": self.requested_model,
            "mode": self.mode,
            "variant": self.variant,
            "tier": self.tier,
            "model": self.chosen.spec.name,
            "provider": self.chosen.spec.provider,
            "upstream_model": self.chosen.spec.upstream_id,
            "endpoint": self.chosen.endpoint_key,
            "failover": tuple(target.label() for target in self.failover),
            "reason": self.reason,
            "confidence": f"{self.confidence:.4f}",
            "candidates": tuple(
                (candidate.model, f"{candidate.score:.6f}", candidate.detail)
                for candidate in self.candidates
            ),
        }
