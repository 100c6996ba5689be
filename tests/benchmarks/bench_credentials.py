"""What a temporary credential costs per request, against the API key it was minted from.

    .venv/bin/python -m tests.benchmarks.bench_credentials [--requests 200] [--postgres]

A gateway (SQLite event store in a temporary directory; PostgreSQL with --postgres) in front
of the simulated OpenAI upstream answering at once, so the figures are the gateway's own.
Sequential chat requests on one keep-alive client, alternating the API key and a credential
(budgeted, granting the model): the credential adds the JWT's verification, a fresh load of
its aggregate from the store (never a cache: revocation is seen at once) and a hold on its
limit on the Account. Also the bare HS256 verification, in process.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import httpx

from gateway.credentials import CredentialSigner
from gateway.simulator import SimulatorState
from tests.support.harness import simulated_gateway
from tests.support.postgres import create_schema, temporary_database

SECRET = "benchmark-credential-secret-0123456789abcdef"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


def verify_us(rounds: int = 5000) -> float:
    signer = CredentialSigner(SECRET.encode())
    now = datetime.now(UTC)
    view = {
        "id": "bench",
        "project_id": "6f1d7c36-2f4b-4a8e-9f0c-5b7f0c1e2a90",
        "key_id": "7f1d7c36-2f4b-4a8e-9f0c-5b7f0c1e2a90",
        "mode": "live",
        "models": ["gpt-4o-mini"],
        "budget": "1.00",
        "currency": "USD",
        "user": None,
    }
    token = signer.mint(view, issued_at=now, expires_at=now + timedelta(minutes=10))
    started = time.perf_counter()
    for _ in range(rounds):
        signer.verify(token, now)
    return (time.perf_counter() - started) / rounds * 1e6


def run(requests: int, database_url: str | None) -> dict[str, list[float]]:
    state = SimulatorState()
    with tempfile.TemporaryDirectory() as data_dir, ExitStack() as stack:
        env = {"LEDGERGATE_DATA_DIR": data_dir, "LEDGERGATE_CREDENTIAL_SECRET": SECRET}
        if database_url:
            env["LEDGERGATE_DATABASE_URL"] = database_url
        gateway = stack.enter_context(simulated_gateway(env, state))
        tenant = gateway.tenant(balance="1000.00")
        client = stack.enter_context(httpx.Client(base_url=gateway.base_url, timeout=60))
        minted = client.post(
            "/v1/credentials",
            headers=tenant.headers(),
            json={"models": ["gpt-4o-mini"], "budget": "500", "ttl_seconds": 3600},
        )
        minted.raise_for_status()
        headers = {
            "key": tenant.headers(),
            "credential": {
                "Authorization": f"Bearer {minted.json()['token']}",
                "X-User-Id": "alice",
            },
        }
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        timings: dict[str, list[float]] = {"key": [], "credential": []}
        for index in range(requests * 2 + 20):
            kind = "key" if index % 2 == 0 else "credential"
            started = time.perf_counter()
            response = client.post("/v1/chat/completions", headers=headers[kind], json=body)
            elapsed_ms = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            if index >= 20:  # warm-up: connections, caches, the first JIT-ish paths
                timings[kind].append(elapsed_ms)
            if index % 100 == 0:
                print(f"  … {index} requests", flush=True)
        return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    print(f"HS256 verification: {verify_us():.1f} µs per token")
    with ExitStack() as stack:
        url = None
        if args.postgres:
            database = stack.enter_context(temporary_database())
            url = create_schema(database, "bench_credentials")
        timings = run(args.requests, url)
    backend = "postgres" if args.postgres else "sqlite"
    print(f"\n{'bearer':<12}{'backend':<10}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    for kind, values in timings.items():
        print(
            f"{kind:<12}{backend:<10}{len(values):>6}{percentile(values, 0.5):>10.2f}"
            f"{percentile(values, 0.99):>10.2f}{statistics.fmean(values):>10.2f}"
        )


if __name__ == "__main__":
    main()
