"""Property tests: no combination of tier, shorthand, variant, failover, breaker state or cache
ever leaves the effective tier."""

from __future__ import annotations

import asyncio
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.catalog import Catalog
from domain.errors import DomainError
from domain.tiers import Tier, effective_tier
from gateway.routing.decision import RouteTarget
from gateway.routing.failover import FailoverExhausted, run_with_failover
from gateway.routing.selector import SHORTHANDS, cache_hit_allowed
from tests.support.routing import upstream_outage
from tests.unit.routing.conftest import ALL_ENDPOINTS, make_router

CATALOG = Catalog.shipped()
NAMES = tuple(name for spec in CATALOG.models for name in (spec.name, *spec.aliases))
TIERS = [tier.value for tier in Tier]
ENDPOINT_KEYS = [f"{e.provider}:{e.name}" for e in ALL_ENDPOINTS]

bases = st.sampled_from(NAMES) | st.sampled_from(["auto", "eu-strict", "eu-cloud", "eu-sweden"])
sizes = st.sampled_from(["", ":small", ":medium", ":large"])
variants = st.sampled_from(["", ":floor", ":fast", ":best", ":smart"])
model_fields = st.builds(lambda b, s, v: b + s + v, bases, sizes, variants)
capability_sets = st.sampled_from(
    [frozenset({"chat"}), frozenset({"chat", "tools"}), frozenset({"chat", "vision"}),
     frozenset({"embeddings"}), frozenset({"chat", "documents", "json"})]
)  # fmt: skip


def required_for(model_field: str, project: str, requested: str | None) -> set[Tier]:
    """The requirements the route must meet, computed independently of the code under test."""
    required = {Tier(project)}
    if requested is not None:
        required.add(Tier(requested))
    base = model_field.split(":")[0]
    if CATALOG.get(model_field) is None and base in SHORTHANDS:
        required.add(SHORTHANDS[base])
    return required


def assert_target_in_tier(target: RouteTarget, required: set[Tier], model_field: str) -> None:
    spec = CATALOG.require(target.spec.name)  # the shipped record, not the router's copy
    assert required <= spec.tiers, (model_field, spec.name, required)
    if spec.pin_region:
        assert target.endpoint.region in spec.regions
    if spec.named_only:
        assert CATALOG.get(model_field.split(":")[0]) is spec or CATALOG.get(model_field) is spec


# Unrestricted projects are over-weighted so that most examples reach a decision (explicit
# names under EU tiers are mostly, and correctly, refused).
projects = st.sampled_from(TIERS) | st.just("unrestricted")


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model_field=model_fields,
    project=projects,
    requested=st.none() | st.sampled_from(TIERS),
    capabilities=capability_sets,
    open_endpoints=st.sets(st.sampled_from(ENDPOINT_KEYS)),
    history=st.lists(st.tuples(st.sampled_from(CATALOG.names()), st.booleans()), max_size=30),
    seed=st.integers(0, 10_000),
)
def test_no_decision_ever_leaves_the_effective_tier(
    model_field: str,
    project: str,
    requested: str | None,
    capabilities: frozenset[str],
    open_endpoints: set[str],
    history: list[tuple[str, bool]],
    seed: int,
) -> None:
    router = make_router(seed=seed)
    for name, success in history:  # arbitrary learned statistics
        router.stats.observe(name, "x", "x:1", success, 500.0)
    for key in open_endpoints:
        for _ in range(5):
            router.board.get(key).record_failure()
    required = required_for(model_field, project, requested)
    try:
        decision = router.decide(
            model_field, effective_tier(project, requested), capabilities=capabilities
        )
    except DomainError:
        return  # refusing is always compliant
    for target in decision.targets:
        assert_target_in_tier(target, required, model_field)
        assert target.endpoint_key not in open_endpoints
        assert capabilities <= target.spec.capabilities


@settings(max_examples=150, deadline=None)
@given(
    model_field=model_fields,
    project=st.sampled_from(TIERS),
    requested=st.none() | st.sampled_from(TIERS),
    failure_rate=st.floats(0.0, 1.0),
    seed=st.integers(0, 10_000),
)
def test_failover_under_any_failure_pattern_only_ever_calls_compliant_targets(
    model_field: str, project: str, requested: str | None, failure_rate: float, seed: int
) -> None:
    router = make_router(seed=seed)
    rng = random.Random(seed)
    required = required_for(model_field, project, requested)
    called: list[RouteTarget] = []

    async def attempt(target: RouteTarget) -> str:
        called.append(target)
        if rng.random() < failure_rate:
            raise upstream_outage(target.spec.provider)
        return target.spec.name

    async def run_many() -> None:
        for _ in range(8):  # several requests, so breakers open and reshape later decisions
            try:
                decision = router.decide(model_field, effective_tier(project, requested))
                await run_with_failover(router, decision, attempt)
            except (DomainError, FailoverExhausted):
                continue

    asyncio.run(run_many())
    for target in called:
        assert_target_in_tier(target, required, model_field)


@given(
    cached_model=st.sampled_from(CATALOG.names()),
    project=st.sampled_from(TIERS),
    requested=st.none() | st.sampled_from(TIERS),
)
def test_a_cache_hit_is_served_only_when_its_model_meets_every_requirement(
    cached_model: str, project: str, requested: str | None
) -> None:
    effective = effective_tier(project, requested)
    required = {Tier(project)} | ({Tier(requested)} if requested else set())
    assert cache_hit_allowed(cached_model, effective, CATALOG) == (
        required <= CATALOG.require(cached_model).tiers
    )


@given(project=st.sampled_from(TIERS), requested=st.none() | st.sampled_from(TIERS))
def test_tightening_never_allows_a_model_the_project_tier_forbids(
    project: str, requested: str | None
) -> None:
    base = effective_tier(project)
    tightened = effective_tier(project, requested)
    assert set(CATALOG.in_tier(tightened)) <= set(CATALOG.in_tier(base))
