"""/ready's checks without a server: each failing check gives its reason."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from gateway.observability.endpoints import readiness
from gateway.pii.service import PiiService
from gateway.warmup import WarmUp


def services(*, head: Any = 10, views: Any = 10, warm: bool | None = None) -> Any:
    def value(v: Any) -> Any:
        def read() -> Any:
            if isinstance(v, Exception):
                raise v
            return v

        return read

    pii = PiiService(
        screener=SimpleNamespace(ready=bool(warm)),  # type: ignore[arg-type]
        warm_at_start=warm is not None,
    )
    return SimpleNamespace(
        app=SimpleNamespace(recorder=SimpleNamespace(max_notification_id=value(head))),
        runner=SimpleNamespace(views_position=value(views)),
        pii=pii,
    )


def by_check(checks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["check"]: c for c in checks}


async def test_everything_answering_and_caught_up_is_ready() -> None:
    checks = by_check(await readiness(services(head=10, views=8, warm=True), lag_max=5))
    assert all(c["ok"] for c in checks.values())
    assert checks["projections"]["lag_positions"] == 2
    assert set(checks) == {"event_store", "read_store", "projections", "pii_engine"}


async def test_a_cold_pii_engine_is_not_ready_when_it_is_warmed_at_start() -> None:
    checks = by_check(await readiness(services(warm=False), lag_max=5))
    assert not checks["pii_engine"]["ok"] and "loading" in checks["pii_engine"]["reason"]
    # Loaded on first need (warm-at-start off): not a readiness condition.
    assert "pii_engine" not in by_check(await readiness(services(warm=None), lag_max=5))


async def test_an_unreachable_store_and_a_lag_are_reasons() -> None:
    down = by_check(await readiness(services(head=ConnectionError("x")), lag_max=5))
    assert not down["event_store"]["ok"] and "ConnectionError" in down["event_store"]["reason"]
    assert "projections" not in down  # no lag can be computed without the head
    behind = by_check(await readiness(services(head=100, views=10), lag_max=5))
    assert not behind["projections"]["ok"] and behind["projections"]["lag_positions"] == 90


async def test_not_ready_until_the_first_request_warm_up_has_run() -> None:
    stub = services()
    stub.warm_up = WarmUp()
    cold = by_check(await readiness(stub, lag_max=5))
    assert not cold["warm_up"]["ok"] and "warm-up" in cold["warm_up"]["reason"]
    await stub.warm_up.run(stub)
    assert stub.warm_up.done and set(stub.warm_up.steps_ms) == {"stores"}
    warm = by_check(await readiness(stub, lag_max=5))
    assert "warm_up" not in warm and all(c["ok"] for c in warm.values())
