"""The collector settings of a serving process (gateway/heap.py), in a process of its own:
tuning and freezing a pytest worker's heap would change every later test's."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import asyncio, gc, json
    from gateway import heap
    from gateway.observability.endpoints import readiness
    from gateway.warmup import WarmUp, mark_warm
    from tests.unit.test_readiness import by_check, services

    async def main():
        out = {"untuned_settled": heap.settled(), "default_threshold": gc.get_threshold()[0]}
        heap.tune_collector()
        out["threshold"] = gc.get_threshold()[0]
        stub = services(warm=True)
        stub.warm_up, stub.warm_markers = WarmUp(done=True), None
        out["before"] = by_check(await readiness(stub, lag_max=5)).get("warm_up")
        out["frozen_before"] = gc.get_freeze_count()
        await mark_warm(stub)
        out["frozen_after"] = gc.get_freeze_count()
        out["after"] = by_check(await readiness(stub, lag_max=5)).get("warm_up")
        kept = [[i] for i in range(5000)]  # what comes after the freeze stays collectable
        heap.settle_startup_heap()  # once only
        out["frozen_again"] = gc.get_freeze_count()
        print(json.dumps(out), len(kept))

    asyncio.run(main())
    """
)


def test_a_tuned_process_is_ready_only_once_its_startup_heap_is_frozen() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1].rsplit(" ", 1)[0])
    # Untuned (a library user's or a test's interpreter): nothing to wait for, CPython's default.
    assert out["untuned_settled"] is True and out["default_threshold"] == 700
    assert out["threshold"] == 20_000
    assert out["before"] == {
        "check": "warm_up",
        "ok": False,
        "reason": "the startup heap is being frozen",
    }
    assert out["frozen_before"] == 0
    assert out["frozen_after"] > 10_000  # the modules and whatever the process loaded
    assert out["after"] is None  # ready
    assert out["frozen_again"] <= out["frozen_after"]  # frozen objects may still be freed
