"""Thompson sampling over per-model posteriors.

Per model the sampler keeps (through RouterStatistics):
- success: Beta(prior + discounted successes, prior + discounted failures);
- output validity (only when the request asks for JSON/tool output): another Beta;
- latency: log-normal, its mean's uncertainty shrinking with the evidence;
- cost: the catalog's blended list price in USD (a known quantity, not sampled).

One draw per candidate gives a utility; the candidate with the highest draw wins. Good models
win most of the time, uncertain ones are still tried now and then, and that exploration is
what lets the router notice a recovered model. Every draw is returned so the decision event can
show an auditor why a model was picked.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from domain.catalog import Catalog, ModelSpec
from gateway.routing.stats import Evidence, RouterStatistics


@dataclass(frozen=True, slots=True)
class ScoringWeights:
    """utility = p_success × quality × p_valid − latency_weight × L/(L+latency_scale_ms)
    − cost_weight × C/(C+cost_scale_usd). Both penalties are bounded in [0, weight), so no
    single slow or expensive model can dominate the sum."""

    latency_weight: float = 0.25
    latency_scale_ms: float = 1000.0
    cost_weight: float = 0.15
    cost_scale_usd_per_million: float = 5.0
    # Prior: optimistic (mean 0.9) and weak (2 pseudo-observations), so an unseen or long
    # unused model gets explored rather than written off.
    prior_success_mean: float = 0.9
    prior_strength: float = 2.0
    prior_log_latency_sd: float = 0.5
    prior_latency_weight: float = 2.0
    min_log_latency_sd: float = 0.15


@dataclass(frozen=True, slots=True)
class SampledScore:
    model: str
    score: float
    success: float
    latency_ms: float
    validity: float
    price_usd_per_million: float


@dataclass(frozen=True, slots=True)
class ScoreMoments:
    """Posterior mean and variance of a model's utility (normal approximation)."""

    mean: float
    variance: float
    expected_latency_ms: float
    expected_success: float


class ThompsonScorer:
    def __init__(
        self,
        stats: RouterStatistics,
        catalog: Catalog,
        *,
        rng: random.Random | None = None,
        weights: ScoringWeights | None = None,
    ) -> None:
        self.stats = stats
        self.catalog = catalog
        self.rng = rng or random.Random()
        self.weights = weights or ScoringWeights()

    # ---- posterior parameters

    def _beta(self, hits: float, misses: float) -> tuple[float, float]:
        """The Beta posterior of one rate: the shared prior plus `hits` and `misses`."""
        weights = self.weights
        alpha = weights.prior_success_mean * weights.prior_strength
        beta = (1.0 - weights.prior_success_mean) * weights.prior_strength
        return alpha + hits, beta + misses

    def _beta_success(self, evidence: Evidence | None) -> tuple[float, float]:
        if evidence is None:
            return self._beta(0, 0)
        return self._beta(evidence.successes, evidence.failures)

    def _beta_validity(self, evidence: Evidence | None) -> tuple[float, float]:
        if evidence is None:
            return self._beta(0, 0)
        return self._beta(evidence.valid, evidence.invalid)

    def _log_latency(self, spec: ModelSpec, evidence: Evidence | None) -> tuple[float, float]:
        """Posterior mean of log latency and the standard deviation of that mean."""
        weights = self.weights
        prior_mean = math.log(spec.latency_ms_typical)
        prior_weight = weights.prior_latency_weight
        if evidence is None or evidence.latency_weight <= 0.0:
            return prior_mean, weights.prior_log_latency_sd
        total = prior_weight + evidence.latency_weight
        mean = (
            prior_weight * prior_mean + evidence.latency_weight * evidence.log_latency_mean
        ) / total
        spread = (
            evidence.log_latency_sd
            if evidence.log_latency_sd is not None
            else weights.prior_log_latency_sd
        )
        spread = max(spread, weights.min_log_latency_sd)
        return mean, spread / math.sqrt(total)

    def expected_latency_ms(self, spec: ModelSpec) -> float:
        mean, _ = self._log_latency(spec, self.stats.evidence(spec.name))
        return math.exp(mean)

    def log_latency_posterior(self, spec: ModelSpec) -> tuple[float, float]:
        return self._log_latency(spec, self.stats.evidence(spec.name))

    # ---- utility

    def _utility(
        self, spec: ModelSpec, success: float, validity: float, latency_ms: float
    ) -> tuple[float, float]:
        weights = self.weights
        price = self.catalog.reference_price_usd(spec)
        value = success * float(spec.quality) * validity
        value -= weights.latency_weight * latency_ms / (latency_ms + weights.latency_scale_ms)
        value -= weights.cost_weight * price / (price + weights.cost_scale_usd_per_million)
        return value, price

    def sample(self, spec: ModelSpec, *, wants_valid_output: bool = False) -> SampledScore:
        evidence = self.stats.evidence(spec.name)
        alpha, beta = self._beta_success(evidence)
        success = self.rng.betavariate(alpha, beta)
        validity = 1.0
        if wants_valid_output:
            valid_alpha, valid_beta = self._beta_validity(evidence)
            validity = self.rng.betavariate(valid_alpha, valid_beta)
        mean, sd = self._log_latency(spec, evidence)
        latency_ms = math.exp(self.rng.gauss(mean, sd))
        score, price = self._utility(spec, success, validity, latency_ms)
        return SampledScore(spec.name, score, success, latency_ms, validity, price)

    def moments(self, spec: ModelSpec, *, wants_valid_output: bool = False) -> ScoreMoments:
        """Mean and variance of the utility, by the delta method (cheap, no sampling)."""
        weights = self.weights
        evidence = self.stats.evidence(spec.name)
        alpha, beta = self._beta_success(evidence)
        total = alpha + beta
        p_mean = alpha / total
        p_var = alpha * beta / (total * total * (total + 1.0))
        v_mean, v_var = 1.0, 0.0
        if wants_valid_output:
            valid_alpha, valid_beta = self._beta_validity(evidence)
            valid_total = valid_alpha + valid_beta
            v_mean = valid_alpha / valid_total
            v_var = valid_alpha * valid_beta / (valid_total * valid_total * (valid_total + 1.0))
        log_mean, log_sd = self._log_latency(spec, evidence)
        latency = math.exp(log_mean)
        mean, _ = self._utility(spec, p_mean, v_mean, latency)
        quality = float(spec.quality)
        # d/dL [L/(L+s)] = s/(L+s)^2 and Var(L) ≈ L^2 Var(log L).
        scale = weights.latency_scale_ms
        latency_slope = weights.latency_weight * scale / (latency + scale) ** 2
        variance = (
            (quality * v_mean) ** 2 * p_var
            + (quality * p_mean) ** 2 * v_var
            + (latency_slope * latency * log_sd) ** 2
        )
        return ScoreMoments(mean, variance, latency, p_mean)


def probability_first_beats_second(first: ScoreMoments, second: ScoreMoments) -> float:
    """P(utility_first > utility_second) under independent normal approximations."""
    spread = math.sqrt(first.variance + second.variance)
    if spread <= 0.0:
        return 1.0 if first.mean >= second.mean else 0.0
    z = (first.mean - second.mean) / spread
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
