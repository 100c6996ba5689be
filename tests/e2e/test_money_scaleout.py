"""Issue 11 item 5: money stays exact with several real `ledgergate serve` processes on one
PostgreSQL (and with one process on SQLite), under bursts that hit every limit at once.

Counted by replaying the event log (never from projections or the responses alone):
- a balance that covers a tenth of the burst is never overdrawn at any point of the log;
- a per-key daily budget is never overshot; a monthly quota admits exactly what is left;
- every request answered 200 has exactly one charge, of the usage the client was shown;
- no request is answered 5xx (a refusal is 402/429 with its code);
- kill -9 of one process mid-burst: the others keep serving without a 5xx, the dead
  process's lock is freed by the server, its in-flight requests are swept when their lease
  runs out, and nothing stays reserved."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from secrets import token_hex
from typing import Any
from uuid import UUID

import httpx
import pytest

from domain import commands as c
from domain.account import Account
from domain.application import LedgerApplication, open_application
from domain.clock import SystemClock
from domain.ids import account_id, request_aggregate_id
from domain.request import Request
from domain.writer import GroupCommitWriter, run_now
from gateway.serving import BackgroundServer
from gateway.simulator import SimulatorState, create_simulator_app
from tests.support.ledger import admit_command, replay_account
from tests.support.postgres import create_schema
from tests.support.processes import spawn_server, stop, wait_until_healthy

ROOT = Path(__file__).resolve().parents[2]
STARTUP_S_MAX = 150.0  # three interpreters importing the gateway at once on a busy 2-core box
PROCESSES = 3
BURST_CLIENTS = 12  # concurrent clients per burst
# One request here really costs ~0.0000087 (about 15 prompt and 10 completion tokens of
# gpt-4o-mini with the fee) and reserves ~0.0000427 (64 output tokens at most): 0.0001 covers
# about a tenth of a 90-request burst, and two reservations at a time.
TENTH_OF_THE_BURST = Decimal("0.0001")


def _env(store: dict[str, str], upstream: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        **store,
        "PYTHONPATH": str(ROOT),
        "LEDGERGATE_OPENAI_BASE_URL": upstream + "/v1",
        "LEDGERGATE_OPENAI_API_KEY": "sk-test",
        "LEDGERGATE_SEED_CATALOG_PRICES": "0",
        "LEDGERGATE_LOG_LEVEL": "WARNING",
        **extra,
    }


@contextmanager
def serving(env: dict[str, str], count: int) -> Iterator[list[tuple[subprocess.Popen, str]]]:
    """`count` separate `serve` processes on one store (replicas), started side by side."""
    started = [spawn_server(env) for _ in range(count)]
    try:
        deadline = time.monotonic() + STARTUP_S_MAX
        for process, base in started:
            wait_until_healthy(process, base, deadline)
        yield started
    finally:
        stop([process for process, _ in started])


class Ledger:
    """Tenants created straight on the store, as an operator's CLI would (faster here)."""

    def __init__(self, url: str | None, data_dir: str | None) -> None:
        self.app: LedgerApplication = open_application(url, data_dir)
        run_now(
            self.app,
            c.SetPrice(
                model="gpt-4o-mini",
                input_per_mtok=Decimal("0.15"),
                output_per_mtok=Decimal("0.60"),
                currency="USD",
                effective_from=SystemClock().now() - timedelta(days=30),
            ),
        )

    def tenant(
        self, balance: Decimal, *, daily_budget: Decimal | None = None, plan: str = "pro"
    ) -> tuple[UUID, dict[str, str]]:
        project = UUID(
            run_now(self.app, c.CreateProject(name="burst", plan=plan)).value["project_id"]
        )  # type: ignore[index]
        key = run_now(self.app, c.CreateApiKey(project_id=project, daily_budget=daily_budget)).value
        run_now(
            self.app,
            c.TopUp(project_id=project, amount=balance, currency="USD", reference="start"),
        )
        return project, {"Authorization": f"Bearer {key['api_key']}", "X-User-Id": "burst"}  # type: ignore[index]

    def close(self) -> None:
        self.app.close()


def _send(base: str, headers: dict[str, str], index: int, stream: bool = False) -> dict[str, Any]:
    body = {
        "model": "gpt-4o-mini",
        # A distinct prompt per request: every one is a provider call, never a cache hit.
        "messages": [{"role": "user", "content": f"burst request number {index}"}],
        "max_tokens": 64,
        "stream": stream,
        **({"stream_options": {"include_usage": True}} if stream else {}),
    }
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            if not stream:
                response = client.post("/v1/chat/completions", json=body, headers=headers)
                result: dict[str, Any] = {"status": response.status_code}
                result["request_id"] = response.headers.get("x-request-id")
                payload = response.json()
                if response.status_code == 200:
                    result["usage"] = payload["usage"]
                else:
                    result["code"] = payload["error"]["code"]
                return result
            with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
                lines = [line for line in r.iter_lines() if line.startswith("data:")]
                return {
                    "status": r.status_code,
                    "request_id": r.headers.get("x-request-id"),
                    "complete": bool(lines) and lines[-1] == "data: [DONE]",
                }
    except httpx.TransportError as error:  # the process died under the request
        return {"status": None, "transport": type(error).__name__, "base": base}


def _burst(
    bases: list[str], headers: dict[str, str], count: int, stream: bool = False
) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(BURST_CLIENTS) as pool:
        return list(
            pool.map(lambda i: _send(bases[i % len(bases)], headers, i, stream), range(count))
        )


def _charges(app: LedgerApplication, project: UUID) -> list[Any]:
    return [e for e in app.events.get(account_id(project)) if isinstance(e, Account.ChargePosted)]


def _assert_exact(app: LedgerApplication, project: UUID, results: list[dict[str, Any]]) -> None:
    """Every 200 charged once with the usage the client saw; nothing reserved or doubled."""
    served = {r["request_id"]: r for r in results if r["status"] == 200}
    charges = _charges(app, project)
    per_request = Counter(e.request_id for e in charges)
    assert set(per_request) == set(served) and set(per_request.values()) <= {1}
    for charge in charges:
        usage = served[charge.request_id]["usage"]
        assert (charge.input_tokens, charge.output_tokens) == (
            usage["prompt_tokens"],
            usage["completion_tokens"],
        )
    replay = replay_account(app, project)
    assert replay.lowest_available >= 0 and replay.pending == 0


@dataclass
class Cluster:
    env: dict[str, str]
    ledger: Ledger
    started: list[tuple[subprocess.Popen, str]]
    state: SimulatorState

    @property
    def bases(self) -> list[str]:
        return [base for _, base in self.started]


def _settings_for_the_kill() -> dict[str, str]:
    # Short leases, a sweep every second with no grace: a dead process's requests are
    # swept within seconds (live ones renew their lease while they serve).
    return {
        "LEDGERGATE_REQUEST_TIMEOUT_S": "2",
        "LEDGERGATE_SWEEP_INTERVAL_S": "1",
        "LEDGERGATE_SWEEP_GRACE_S": "0",
    }


@pytest.fixture(scope="module")
def cluster(postgres_database: str) -> Iterator[Cluster]:
    """PROCESSES `serve` processes on one PostgreSQL schema, shared by this module's tests
    (starting three gateways is the expensive part); the kill test runs last."""
    store = {"LEDGERGATE_DATABASE_URL": create_schema(postgres_database, "t_" + token_hex(6))}
    state = SimulatorState()
    with BackgroundServer(create_simulator_app(state)) as server:
        env = _env(store, server.base_url, **_settings_for_the_kill())
        ledger = Ledger(store["LEDGERGATE_DATABASE_URL"], None)
        try:
            with serving(env, PROCESSES) as started:
                yield Cluster(env, ledger, started, state)
        finally:
            ledger.close()


def _burst_every_limit(ledger: Ledger, bases: list[str]) -> None:
    burst = 90
    # A balance that covers about a tenth of the burst (at its real cost).
    poor, poor_headers = ledger.tenant(TENTH_OF_THE_BURST)
    # A key whose daily budget covers about a tenth of the burst; plenty of balance.
    budgeted, budget_headers = ledger.tenant(Decimal("100"), daily_budget=TENTH_OF_THE_BURST)
    # A Free project with its monthly quota all but used up: 12 requests left.
    quota_left = 12
    limited, limited_headers = ledger.tenant(Decimal("100"), plan="free")
    filler = GroupCommitWriter(ledger.app).start()
    try:
        now = SystemClock().now()
        for future in [
            filler.submit(admit_command(limited, now)) for _ in range(1000 - quota_left)
        ]:
            future.result(60)
    finally:
        filler.stop()
    results: dict[str, list[dict[str, Any]]] = {}

    def run(name: str, headers: dict[str, str]) -> None:
        results[name] = _burst(bases, headers, burst)

    threads = [
        threading.Thread(target=run, args=(name, headers))
        for name, headers in (
            ("poor", poor_headers),
            ("budgeted", budget_headers),
            ("limited", limited_headers),
        )
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    statuses = {name: Counter(r["status"] for r in rs) for name, rs in results.items()}
    for name, counts in statuses.items():
        failed = [r for r in results[name] if r["status"] is None or r["status"] >= 500]
        assert not failed, (name, counts, failed[:3])
    codes = {
        name: Counter(r.get("code") for r in rs if r["status"] != 200)
        for name, rs in results.items()
    }
    assert set(codes["poor"]) <= {"insufficient_balance"} and statuses["poor"][200] >= 1
    assert set(codes["budgeted"]) <= {"budget_exceeded"} and statuses["budgeted"][200] >= 1
    assert codes["poor"] and codes["budgeted"]  # both limits were really reached
    assert statuses["limited"] == {200: quota_left, 429: burst - quota_left}
    assert codes["limited"] == {"quota_exceeded": burst - quota_left}
    _assert_exact(ledger.app, poor, results["poor"])
    _assert_exact(ledger.app, budgeted, results["budgeted"])
    assert sum(e.amount for e in _charges(ledger.app, budgeted)) <= TENTH_OF_THE_BURST


def test_a_burst_hitting_balance_budget_and_quota_is_exact_across_three_processes(
    cluster: Cluster,
) -> None:
    _burst_every_limit(cluster.ledger, cluster.bases)


def test_a_burst_hitting_balance_budget_and_quota_is_exact_on_one_sqlite_process(
    sqlite_env: dict[str, str], simulator
) -> None:
    server, _state = simulator
    env = _env(sqlite_env, server.base_url)
    ledger = Ledger(None, sqlite_env["LEDGERGATE_DATA_DIR"])
    try:
        with serving(env, 1) as started:
            _burst_every_limit(ledger, [base for _, base in started])
    finally:
        ledger.close()


def test_a_process_killed_mid_burst_leaves_every_served_request_charged_and_nothing_reserved(
    cluster: Cluster,
) -> None:
    state = cluster.state
    state.chunk_delay_s = 0.05  # streams last ~0.5 s: the kill lands on streams in flight
    state.reply = " ".join(f"word{i}" for i in range(20))
    ledger = cluster.ledger
    project, headers = ledger.tenant(Decimal("50"))
    bases = cluster.bases
    victim = cluster.started[0][0]
    killer = threading.Timer(1.0, lambda: os.kill(victim.pid, signal.SIGKILL))
    killer.start()
    results = _burst(bases, headers, 120, stream=True)
    killer.join()
    # The dead process's requests: swept by the live ones once their lease is over.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if replay_account(ledger.app, project).pending == 0:
            break
        time.sleep(0.5)
    replay = replay_account(ledger.app, project)
    assert replay.pending == 0 and replay.lowest_available >= 0
    to_live = [r for i, r in enumerate(results) if i % PROCESSES != 0]
    unserved = [r for r in to_live if not (r["status"] == 200 and r["complete"])]
    assert to_live and not unserved, [
        (
            r,
            [
                type(e).__name__
                for e in ledger.app.events.get(request_aggregate_id(r["request_id"]))
            ],
        )
        for r in unserved
        if r.get("request_id")
    ] or unserved
    to_victim = [r for i, r in enumerate(results) if i % PROCESSES == 0]
    assert any(r["status"] is None for r in to_victim)  # the kill really hit the burst
    charges = Counter(e.request_id for e in _charges(ledger.app, project))
    assert set(charges.values()) <= {1}  # never charged twice
    # Every stream that ended with [DONE] was served and charged its real usage.
    for result in results:
        if result["status"] == 200 and result["complete"]:
            events = list(ledger.app.events.get(request_aggregate_id(result["request_id"])))
            completed = [e for e in events if isinstance(e, Request.Completed)]
            assert len(completed) == 1 and completed[0].usage_source == "provider"
            assert charges[result["request_id"]] == 1
