"""In-memory router statistics: per-model outcome evidence the Thompson sampler reads.

Evidence is discounted by the number of outcomes observed since (a global counter, not the
wall clock), so the statistics are a pure function of the ordered outcome log: replaying the
same outcomes rebuilds exactly the same posteriors, and old evidence about a model fades so a
degraded model that recovers can win traffic back.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from domain.money import Money

LATENCY_SAMPLES_MAX = 256  # per model, for leaderboard percentiles only
DEFAULT_HALF_LIFE_OBSERVATIONS = 400


@dataclass(frozen=True, slots=True)
class Outcome:
    """One finished attempt, the unit the statistics projection replays."""

    model: str
    provider: str
    endpoint: str
    success: bool
    latency_ms: float
    cost: Money | None = None
    output_valid: bool | None = None  # None when the request asked for no JSON/tool output


@dataclass(slots=True)
class ModelStatistics:
    model: str
    provider: str
    requests: int = 0
    successes: int = 0
    failures: int = 0
    valid_outputs: int = 0
    invalid_outputs: int = 0
    # Discounted evidence, valid as of observation number `as_of`.
    success_evidence: float = 0.0
    failure_evidence: float = 0.0
    valid_evidence: float = 0.0
    invalid_evidence: float = 0.0
    latency_weight: float = 0.0
    log_latency_mean: float = 0.0
    log_latency_m2: float = 0.0
    as_of: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES_MAX))
    cost_totals: dict[str, Decimal] = field(default_factory=dict)
    endpoints: dict[str, int] = field(default_factory=dict)

    def log_latency_sd(self) -> float | None:
        if self.latency_weight < 2.0:
            return None
        return math.sqrt(max(self.log_latency_m2 / self.latency_weight, 0.0))


@dataclass(frozen=True, slots=True)
class Evidence:
    """Discounted evidence for one model at the current observation count."""

    successes: float
    failures: float
    valid: float
    invalid: float
    latency_weight: float
    log_latency_mean: float
    log_latency_sd: float | None


class RouterStatistics:
    def __init__(self, *, half_life_observations: int = DEFAULT_HALF_LIFE_OBSERVATIONS) -> None:
        if half_life_observations <= 0:
            raise ValueError("half_life_observations must be positive")
        self.half_life_observations = half_life_observations
        self._decay = 0.5 ** (1.0 / half_life_observations)
        self._models: dict[str, ModelStatistics] = {}
        self.observations = 0

    @classmethod
    def from_outcomes(
        cls,
        outcomes: Iterable[Outcome],
        *,
        half_life_observations: int = DEFAULT_HALF_LIFE_OBSERVATIONS,
    ) -> RouterStatistics:
        stats = cls(half_life_observations=half_life_observations)
        for outcome in outcomes:
            stats.record(outcome)
        return stats

    def observe(
        self,
        model: str,
        provider: str,
        endpoint: str,
        success: bool,
        latency_ms: float,
        cost: Money | None = None,
        output_valid: bool | None = None,
    ) -> None:
        self.record(Outcome(model, provider, endpoint, success, latency_ms, cost, output_valid))

    def _factor(self, entry: ModelStatistics) -> float:
        return self._decay ** (self.observations - entry.as_of)

    def record(self, outcome: Outcome) -> None:
        if outcome.latency_ms < 0 or not math.isfinite(outcome.latency_ms):
            raise ValueError("latency_ms must be a finite non-negative number")
        self.observations += 1
        entry = self._models.get(outcome.model)
        if entry is None:
            entry = ModelStatistics(model=outcome.model, provider=outcome.provider)
            entry.as_of = self.observations
            self._models[outcome.model] = entry
        factor = self._factor(entry)
        entry.success_evidence *= factor
        entry.failure_evidence *= factor
        entry.valid_evidence *= factor
        entry.invalid_evidence *= factor
        entry.latency_weight *= factor
        entry.log_latency_m2 *= factor
        entry.as_of = self.observations

        entry.requests += 1
        entry.endpoints[outcome.endpoint] = entry.endpoints.get(outcome.endpoint, 0) + 1
        if outcome.success:
            entry.successes += 1
            entry.success_evidence += 1.0
            # Latency of failures is mostly the timeout or the error path: it says little about
            # how fast the model answers, so only successes feed the latency model.
            log_latency = math.log(max(outcome.latency_ms, 1.0))
            entry.latency_weight += 1.0
            delta = log_latency - entry.log_latency_mean
            entry.log_latency_mean += delta / entry.latency_weight
            entry.log_latency_m2 += delta * (log_latency - entry.log_latency_mean)
            entry.latencies_ms.append(outcome.latency_ms)
        else:
            entry.failures += 1
            entry.failure_evidence += 1.0
        if outcome.output_valid is not None:
            if outcome.output_valid:
                entry.valid_outputs += 1
                entry.valid_evidence += 1.0
            else:
                entry.invalid_outputs += 1
                entry.invalid_evidence += 1.0
        if outcome.cost is not None:
            currency = outcome.cost.currency
            entry.cost_totals[currency] = (
                entry.cost_totals.get(currency, Decimal(0)) + outcome.cost.amount
            )

    def evidence(self, model: str) -> Evidence | None:
        entry = self._models.get(model)
        if entry is None:
            return None
        factor = self._factor(entry)
        return Evidence(
            successes=entry.success_evidence * factor,
            failures=entry.failure_evidence * factor,
            valid=entry.valid_evidence * factor,
            invalid=entry.invalid_evidence * factor,
            latency_weight=entry.latency_weight * factor,
            log_latency_mean=entry.log_latency_mean,
            log_latency_sd=entry.log_latency_sd(),
        )

    def get(self, model: str) -> ModelStatistics | None:
        return self._models.get(model)

    def models(self) -> tuple[str, ...]:
        return tuple(self._models)

    def leaderboard(self) -> list[dict[str, Any]]:
        """One row per model seen, most requested first. Money as strings, rates as floats."""
        rows: list[dict[str, Any]] = []
        for entry in self._models.values():
            evidence = self.evidence(entry.model)
            if evidence is None:  # cannot happen: the model is in the dict we iterate
                continue
            latencies = sorted(entry.latencies_ms)
            asked_validity = entry.valid_outputs + entry.invalid_outputs
            rows.append(
                {
                    "model": entry.model,
                    "provider": entry.provider,
                    "requests": entry.requests,
                    "successes": entry.successes,
                    "failures": entry.failures,
                    "success_rate": round(entry.successes / entry.requests, 4),
                    "recent_success_rate": round(
                        (evidence.successes + 1.0) / (evidence.successes + evidence.failures + 2.0),
                        4,
                    ),
                    "latency_p50_ms": _percentile(latencies, 0.50),
                    "latency_p95_ms": _percentile(latencies, 0.95),
                    "output_valid_rate": (
                        round(entry.valid_outputs / asked_validity, 4) if asked_validity else None
                    ),
                    "cost_totals": {
                        currency: format(amount, "f")
                        for currency, amount in sorted(entry.cost_totals.items())
                    },
                    "endpoints": dict(sorted(entry.endpoints.items())),
                }
            )
        rows.sort(key=lambda row: (-row["requests"], row["model"]))
        return rows


def _percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return round(sorted_values[index], 1)
