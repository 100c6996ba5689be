"""The router: one call turns a `model` field and an effective tier into a RouteDecision.

    router = Router(catalog, pool=EndpointPool(board, endpoints), board=board)
    decision = router.decide("eu-strict:small:smart", effective_tier("eu_cloud"))
    ...                             # dispatch decision.targets in order (failover.py)
    router.observe(target, success=True, latency_ms=412.0, cost=money)

Order of work: parse → compliant candidates (selector.py; the only compliance gate) →
order by variant → endpoints per model with open breakers left out → decision.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import Any

from domain.catalog import Catalog, ModelSpec
from domain.errors import NoRouteAvailable
from domain.money import Money
from domain.tiers import EffectiveTier
from gateway.routing.balancer import EndpointPool, owning_project
from gateway.routing.breaker import BreakerBoard
from gateway.routing.decision import RouteDecision, RouteTarget, ScoredCandidate
from gateway.routing.selector import (
    MODE_EXPLICIT,
    CandidateSet,
    parse_model_field,
    select_candidates,
)
from gateway.routing.stats import RouterStatistics
from gateway.routing.thompson import (
    SampledScore,
    ScoringWeights,
    ThompsonScorer,
    probability_first_beats_second,
)

FAILOVER_TARGETS_MAX = 6  # chosen + failover; a deadline bounds it further at dispatch


class Router:
    def __init__(
        self,
        catalog: Catalog,
        *,
        board: BreakerBoard | None = None,
        pool: EndpointPool | None = None,
        stats: RouterStatistics | None = None,
        rng: random.Random | None = None,
        weights: ScoringWeights | None = None,
        failover_targets_max: int = FAILOVER_TARGETS_MAX,
    ) -> None:
        if failover_targets_max < 1:
            raise ValueError("failover_targets_max must be at least 1")
        self.catalog = catalog
        self.board = board or (pool.board if pool is not None else BreakerBoard())
        self.pool = pool or EndpointPool(self.board)
        self.stats = stats or RouterStatistics()
        self.scorer = ThompsonScorer(self.stats, catalog, rng=rng, weights=weights)
        self.failover_targets_max = failover_targets_max

    # ---- deciding

    def decide(
        self,
        model: object,
        effective: EffectiveTier,
        *,
        capabilities: frozenset[str] = frozenset({"chat"}),
        wants_valid_output: bool = False,
        catalog: Catalog | None = None,
        project: str | None = None,
        fallback_models: bool = False,
        allowed_models: frozenset[str] | None = None,
    ) -> RouteDecision:
        """`catalog` overrides the router's for one call (a project's catalog with its custom
        models); prices for ranking then come from that catalog too. `project` admits that
        project's own endpoints besides the shared ones. `allowed_models` (a governed
        trace's contract) drops every other candidate: auto and shorthands choose among
        them, failover stays within them; a named model is kept (never swapped: outside
        the contract, admission refuses it)."""
        active = catalog or self.catalog
        request = parse_model_field(model, active)
        candidates = select_candidates(
            request, active, capabilities=capabilities, effective=effective
        )
        if allowed_models is not None:
            candidates = candidates.within(allowed_models)
        if request.mode == MODE_EXPLICIT and not fallback_models:
            # A named model is never silently swapped for another: failover stays on its own
            # endpoints and keys (its family) unless the request opts in
            # (routing_preferences.fallback_models). The other models are dropped before
            # anything is drawn for them: drawing every chat model of the tier was a
            # fifteenth of a serving process's event-loop time, for scores nothing read.
            candidates = replace(candidates, fallbacks=())
        variant = request.variant or ("" if request.mode == MODE_EXPLICIT else "smart")
        scorer = self.scorer if active is self.catalog else self._scorer_for(active)
        sampled: dict[str, SampledScore] = {}
        if variant == "smart" or request.mode == MODE_EXPLICIT:
            # Explicit requests sample too: failover goes to the next-best by the same measure.
            for spec in candidates.all():
                sampled[spec.name] = scorer.sample(spec, wants_valid_output=wants_valid_output)
        ordered = self._order(candidates, variant, sampled, scorer)
        if request.mode == MODE_EXPLICIT and request.spec is not None:
            owner = owning_project(request.spec)
            if owner is not None:
                # A named custom model keeps to its project: fallback (when asked for) goes
                # only to that project's other custom models, never to a shared model.
                ordered = [spec for spec in ordered if owning_project(spec) == owner]

        targets: list[RouteTarget] = []
        unavailable: list[str] = []
        for spec in ordered:
            endpoints = self.pool.ordered(spec, project)
            if not endpoints:
                unavailable.append(spec.name)
                continue
            for pooled in endpoints:
                if len(targets) < self.failover_targets_max:
                    targets.append(RouteTarget(spec, pooled.endpoint))
            if len(targets) >= self.failover_targets_max:
                break
        if not targets:
            raise NoRouteAvailable(
                f"no endpoint is available for any model allowed under {candidates.effective.label}"
                " (breakers open or no endpoint configured); the request was not sent elsewhere",
                tier=candidates.effective.label,
                model=request.raw,
            )
        chosen = targets[0]
        reason, confidence = self._explain(
            candidates, variant, ordered, chosen, sampled, unavailable, scorer, wants_valid_output
        )
        scored = tuple(self._score_of(spec, variant, sampled, scorer) for spec in ordered)
        return RouteDecision(
            requested_model=request.raw,
            mode=request.mode,
            variant=variant,
            tier=candidates.effective.label,
            chosen=chosen,
            failover=tuple(targets[1:]),
            reason=reason,
            confidence=confidence,
            candidates=scored,
        )

    def _scorer_for(self, catalog: Catalog) -> ThompsonScorer:
        return ThompsonScorer(self.stats, catalog, rng=self.scorer.rng, weights=self.scorer.weights)

    def _order(
        self,
        candidates: CandidateSet,
        variant: str,
        sampled: dict[str, SampledScore],
        scorer: ThompsonScorer,
    ) -> list[ModelSpec]:
        def key(spec: ModelSpec) -> tuple[float, ...]:
            if variant == "floor":
                return (scorer.catalog.reference_price_usd(spec), -float(spec.quality))
            if variant == "fast":
                return (scorer.expected_latency_ms(spec), -float(spec.quality))
            if variant == "best":
                return (-float(spec.quality), spec.latency_ms_typical)
            return (-sampled[spec.name].score,)

        if candidates.request.mode == MODE_EXPLICIT and not candidates.request.variant:
            # The named model first, then failover by the router's sampled ranking.
            return [*candidates.primary, *sorted(candidates.fallbacks, key=key)]
        return [*sorted(candidates.primary, key=key), *sorted(candidates.fallbacks, key=key)]

    def _score_of(
        self,
        spec: ModelSpec,
        variant: str,
        sampled: dict[str, SampledScore],
        scorer: ThompsonScorer,
    ) -> ScoredCandidate:
        draw = sampled.get(spec.name)
        quality = str(spec.quality)
        if draw is not None:
            return ScoredCandidate(
                spec.name,
                draw.score,
                draw.success,
                draw.latency_ms,
                draw.price_usd_per_million,
                quality,
            )
        if variant == "floor":
            price = scorer.catalog.reference_price_usd(spec)
            return ScoredCandidate(spec.name, -price, price_usd_per_million=price, quality=quality)
        if variant == "fast":
            latency = scorer.expected_latency_ms(spec)
            return ScoredCandidate(spec.name, -latency, latency_ms=latency, quality=quality)
        return ScoredCandidate(spec.name, float(spec.quality), quality=quality)

    def _explain(
        self,
        candidates: CandidateSet,
        variant: str,
        ordered: list[ModelSpec],
        chosen: RouteTarget,
        sampled: dict[str, SampledScore],
        unavailable: list[str],
        scorer: ThompsonScorer,
        wants_valid_output: bool,
    ) -> tuple[str, float]:
        request = candidates.request
        head = f"{request.raw} tier={candidates.effective.label}"
        skipped = f"; unavailable: {','.join(unavailable[:4])}" if unavailable else ""
        spec = chosen.spec
        index = ordered.index(spec)
        runner_up = ordered[index + 1] if index + 1 < len(ordered) else None
        if request.mode == MODE_EXPLICIT and not request.variant:
            if spec is request.spec:
                return f"{head} explicit", 1.0
            # The named model had no available endpoint: failover chose for the caller.
            draw = sampled[spec.name]
            return (
                f"{head} explicit model unavailable, next-best {spec.name} score={draw.score:.3f}{skipped}",
                _confidence(scorer, spec, runner_up, wants_valid_output),
            )
        if variant == "smart":
            draw = sampled[spec.name]
            versus = ""
            if runner_up is not None:
                versus = f" > {runner_up.name} {sampled[runner_up.name].score:.3f}"
            return (
                f"{head} thompson {spec.name} {draw.score:.3f}{versus} of {len(ordered)}{skipped}",
                _confidence(scorer, spec, runner_up, wants_valid_output),
            )
        if variant == "floor":
            price = scorer.catalog.reference_price_usd(spec)
            return f"{head} cheapest {spec.name} ${price:.3f}/M blended{skipped}", 1.0
        if variant == "best":
            return f"{head} highest quality {spec.name} q={spec.quality}{skipped}", 1.0
        latency = scorer.expected_latency_ms(spec)
        confidence = 1.0
        if runner_up is not None:
            mean_1, sd_1 = scorer.log_latency_posterior(spec)
            mean_2, sd_2 = scorer.log_latency_posterior(runner_up)
            spread = math.hypot(sd_1, sd_2)
            confidence = 0.5 * (1.0 + math.erf((mean_2 - mean_1) / (spread * math.sqrt(2.0))))
        return f"{head} fastest {spec.name} ~{latency:.0f}ms{skipped}", _clamp(confidence)

    # ---- learning

    def observe(
        self,
        target: RouteTarget,
        *,
        success: bool,
        latency_ms: float,
        cost: Money | None = None,
        output_valid: bool | None = None,
        failure_reason: str = "upstream failure",
        counts_for_breaker: bool = True,
    ) -> None:
        """Feed one finished attempt to the statistics and the endpoint's breaker."""
        self.stats.observe(
            target.spec.name,
            target.spec.provider,
            target.endpoint_key,
            success,
            latency_ms,
            cost,
            output_valid,
        )
        breaker = self.board.get(target.endpoint_key)
        if not counts_for_breaker:
            breaker.release()
        elif success:
            breaker.record_success()
        else:
            breaker.record_failure(failure_reason)

    def leaderboard(self, catalog: Catalog | None = None) -> list[dict[str, Any]]:
        """Live statistics per model with the router's expected utility, best first."""
        active = catalog or self.catalog
        scorer = self.scorer if active is self.catalog else self._scorer_for(active)
        rows = self.stats.leaderboard()
        for row in rows:
            spec = active.get(row["model"])
            row["expected_score"] = (
                round(scorer.moments(spec).mean, 4) if spec is not None else None
            )
        rows.sort(key=lambda row: -(row["expected_score"] or -math.inf))
        return rows


def _confidence(
    scorer: ThompsonScorer, chosen: ModelSpec, runner_up: ModelSpec | None, wants_valid_output: bool
) -> float:
    """Approximate posterior probability that the chosen model beats the runner-up."""
    if runner_up is None:
        return 1.0
    return _clamp(
        probability_first_beats_second(
            scorer.moments(chosen, wants_valid_output=wants_valid_output),
            scorer.moments(runner_up, wants_valid_output=wants_valid_output),
        )
    )


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))
