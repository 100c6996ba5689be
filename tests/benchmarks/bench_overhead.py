"""Gateway overhead over a zero-latency fake upstream, per provider, non-streaming and streaming.

    /work/main/.venv/bin/python -m tests.benchmarks.bench_overhead            # all eight providers
    /work/main/.venv/bin/python -m tests.benchmarks.bench_overhead --requests 500 --providers openai anthropic

For each provider, the same request is sent (sequentially, one keep-alive client) first
straight to the provider's fake upstream in its native wire format ("direct"), then through
the gateway with the OpenAI wire format ("gateway": auth, validation, translation, the
durable received/admitted/dispatched events before the call, the charge after it). The
overhead is the difference of the two latency distributions at each percentile; the
adapter alone (translation + its pooled async HTTP call, no gateway) is timed too, to show
which part of the overhead is the adapters' and which the ledger's; the gateway's own
X-LG-Overhead-Ms header is reported beside it. Streams are timed to the last
byte. SQLite event store in a temporary directory (the embedded default).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from domain.catalog import Catalog
from gateway.providers.anthropic import ANTHROPIC_VERSION, to_anthropic
from gateway.providers.bedrock import to_converse
from gateway.providers.cohere import to_cohere
from gateway.providers.google import to_gemini
from tests.fakes.fixtures import ALL_PROVIDERS, start_fake
from tests.fakes.server import FakeUpstreamBase
from tests.support.harness import start_gateway

# Catalog names (the gateway resolves `model` only through the catalog). The direct calls and
# the adapter-alone timings send the catalog's upstream id, as the gateway does.
MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet",
    "mistral": "mistral-small",
    "google": "gemini-flash",
    "bedrock": "claude-sonnet-eu",  # region-pinned: needs an eu-central-1 endpoint
    "cohere": "command-a",
    "moonshot": "kimi-k2-6",
    "xai": "grok-4-3",
}
BEDROCK_REGION = "eu-central-1"
WARMUP_REQUESTS = 20
BODY = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello, how are you today?"},
    ]
}


def upstream_id(provider: str) -> str:
    return Catalog.shipped().require(MODELS[provider]).upstream_id


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def direct_request(
    provider: str, fake: FakeUpstreamBase, stream: bool
) -> tuple[str, dict[str, str], bytes]:
    """The provider-native request the adapter would send, aimed straight at the fake."""
    model = upstream_id(provider)
    body = {"model": model, **BODY}
    if provider in ("openai", "mistral", "moonshot", "xai"):
        native: dict[str, Any] = dict(body)
        if stream:
            native["stream"] = True
        return (
            fake.base_url + "/chat/completions",
            {"authorization": "Bearer k", "content-type": "application/json"},
            orjson.dumps(native),
        )
    if provider == "anthropic":
        native = to_anthropic(body, model)
        native["stream"] = stream
        headers = {
            "x-api-key": "k",
            "anthropic-version": ANTHROPIC_VERSION,
            "content-type": "application/json",
        }
        return fake.base_url + "/v1/messages", headers, orjson.dumps(native)
    if provider == "google":
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return (
            f"{fake.base_url}/v1beta/models/{model}:{method}",
            {"x-goog-api-key": "k", "content-type": "application/json"},
            orjson.dumps(to_gemini(body)),
        )
    if provider == "bedrock":
        action = "converse-stream" if stream else "converse"
        return (
            f"{fake.base_url}/model/{quote(model, safe='')}/{action}",
            {"authorization": "Bearer k", "content-type": "application/json"},
            orjson.dumps(to_converse(body)),
        )
    native = to_cohere(body, model)
    native["stream"] = stream
    return (
        fake.base_url + "/v2/chat",
        {"authorization": "Bearer k", "content-type": "application/json"},
        orjson.dumps(native),
    )


def timed(send: Callable[[], httpx.Response], count: int) -> tuple[list[float], list[float]]:
    latencies_ms: list[float] = []
    header_overheads_ms: list[float] = []
    for _ in range(count):
        started = time.perf_counter()
        response = send()
        latencies_ms.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(
                f"benchmark request failed: HTTP {response.status_code} {response.text[:200]}"
            )
        if "x-lg-overhead-ms" in response.headers:
            header_overheads_ms.append(float(response.headers["x-lg-overhead-ms"]))
    return latencies_ms, header_overheads_ms


def send_with(
    client: httpx.Client, url: str, headers: dict[str, str], content: bytes, stream: bool
) -> Callable[[], httpx.Response]:
    def send() -> httpx.Response:
        if not stream:
            return client.post(url, headers=headers, content=content)
        with client.stream("POST", url, headers=headers, content=content) as response:
            for _ in response.iter_bytes():
                pass
            return response

    return send


def adapter_latencies(
    provider: str, fake: FakeUpstreamBase, stream: bool, count: int
) -> list[float]:
    """The adapter alone (translation both ways + its HTTP call), without the gateway: splits
    the overhead into what the adapters cost and what the ledger and the HTTP front cost."""
    from gateway.providers.base import ProviderEndpoint
    from gateway.providers.registry import build_adapter

    async def measure() -> list[float]:
        latencies_ms: list[float] = []
        async with httpx.AsyncClient(timeout=30.0) as client:
            endpoint = ProviderEndpoint(provider, fake.base_url, api_key="k", region=BEDROCK_REGION)
            adapter = build_adapter(provider, endpoint, client)
            model = upstream_id(provider)
            body = {"model": model, **BODY, "stream": stream}
            for index in range(count + WARMUP_REQUESTS):
                started = time.perf_counter()
                if stream:
                    chat_stream = await adapter.chat_stream(body, model)
                    async for _ in chat_stream:
                        pass
                else:
                    await adapter.chat(body, model)
                if index >= WARMUP_REQUESTS:
                    latencies_ms.append((time.perf_counter() - started) * 1000)
        return latencies_ms

    return asyncio.run(measure())


def run(providers: list[str], requests: int) -> list[dict[str, Any]]:
    fakes = {provider: start_fake(provider) for provider in providers}
    data_dir = tempfile.mkdtemp(prefix="lg-bench-")
    env = {
        "LEDGERGATE_DATA_DIR": data_dir,
        "LEDGERGATE_RUN_SWEEPER": "false",
        "LEDGERGATE_BEDROCK_REGIONS": BEDROCK_REGION,
    }
    for provider, fake in fakes.items():
        env[f"LEDGERGATE_{provider.upper()}_BASE_URL"] = fake.base_url
        env[f"LEDGERGATE_{provider.upper()}_API_KEY"] = "k"
    gateway = start_gateway(env)
    rows: list[dict[str, Any]] = []
    try:
        for model in MODELS.values():  # canonical catalog names: what charges look up
            gateway.set_price(model, "1.00", "2.00")
        tenant = gateway.tenant(balance="100000.00")
        with httpx.Client(timeout=30.0) as client:
            for provider in providers:
                for stream in (False, True):
                    url, headers, content = direct_request(provider, fakes[provider], stream)
                    direct = send_with(client, url, headers, content, stream)
                    gateway_body = orjson.dumps(
                        {"model": MODELS[provider], **BODY, "stream": stream}
                    )
                    through = send_with(
                        client,
                        gateway.base_url + "/v1/chat/completions",
                        {**tenant.headers(), "content-type": "application/json"},
                        gateway_body,
                        stream,
                    )
                    timed(direct, WARMUP_REQUESTS)
                    timed(through, WARMUP_REQUESTS)
                    direct_ms, _ = timed(direct, requests)
                    gateway_ms, header_ms = timed(through, requests)
                    adapter_ms = adapter_latencies(provider, fakes[provider], stream, requests)
                    row = {
                        "provider": provider,
                        "mode": "stream" if stream else "json",
                        "n": requests,
                    }
                    row["adapter_p50"] = percentile(adapter_ms, 0.50) - percentile(direct_ms, 0.50)
                    for label, fraction in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
                        row[f"direct_{label}"] = percentile(direct_ms, fraction)
                        row[f"gateway_{label}"] = percentile(gateway_ms, fraction)
                        row[f"overhead_{label}"] = row[f"gateway_{label}"] - row[f"direct_{label}"]
                    row["header_p50"] = statistics.median(header_ms) if header_ms else float("nan")
                    row["ratio_p50"] = row["gateway_p50"] / row["direct_p50"]
                    rows.append(row)
                    print(
                        f"  {provider:9} {row['mode']:6} done: overhead p50 {row['overhead_p50']:.2f} ms",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        gateway.server.stop()
        for fake in fakes.values():
            fake.stop()
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'provider':9} {'mode':6} {'n':>5} | {'direct p50':>10} {'gw p50':>8} | "
        f"{'overhead p50':>12} {'p95':>8} {'p99':>8} | {'adapter p50':>11} {'hdr p50':>7} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['provider']:9} {row['mode']:6} {row['n']:>5} | {row['direct_p50']:>10.2f} {row['gateway_p50']:>8.2f} | "
            f"{row['overhead_p50']:>12.2f} {row['overhead_p95']:>8.2f} {row['overhead_p99']:>8.2f} | "
            f"{row['adapter_p50']:>11.2f} {row['header_p50']:>7.1f} {row['ratio_p50']:>6.1f}"
        )
    print(
        "(milliseconds; overhead = gateway − direct at each percentile; adapter = the adapter alone"
        " − direct, p50; hdr = X-LG-Overhead-Ms median; ratio = gateway p50 / direct p50)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests", type=int, default=200, help="measured requests per provider and mode"
    )
    parser.add_argument(
        "--providers", nargs="+", default=list(ALL_PROVIDERS), choices=list(ALL_PROVIDERS)
    )
    arguments = parser.parse_args()
    print(
        f"gateway overhead over zero-latency fakes, {arguments.requests} requests each",
        file=sys.stderr,
    )
    print_table(run(arguments.providers, arguments.requests))


if __name__ == "__main__":
    main()
