"""What the observability layer costs per request: the same trivial route served with no
middleware, with the middleware and tracing off (the default), and with tracing on (spans to
an in-memory exporter, i.e. without the network cost of a real OTLP export).

    .venv/bin/python -m tests.benchmarks.bench_observability [--requests 3000]

In-process ASGI (httpx.ASGITransport), sequential, so the figures are the layer's own CPU
time per request: metrics, the access log line (to a null handler) and the spans.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.observability.core import Observability, span
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.middleware import ObservabilityMiddleware

HEADERS = {"X-LG-Model": "gpt-4o-mini", "X-LG-Provider": "openai", "X-LG-Overhead-Ms": "1"}


def build(variant: str) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat() -> Any:
        with span("auth"), span("routing"):
            pass
        return JSONResponse({"ok": True}, headers={"X-Request-Id": "lg_req_bench", **HEADERS})

    if variant != "none":
        provider = None
        if variant == "tracing":
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        observability = Observability(
            metrics=GatewayMetrics(model_names=["gpt-4o-mini"]), tracer_provider=provider
        )
        app.add_middleware(ObservabilityMiddleware, observability=observability)
    return app


async def measure(variant: str, requests: int) -> list[float]:
    transport = httpx.ASGITransport(app=build(variant))
    timings: list[float] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for _ in range(50):  # warm-up
            await client.post("/v1/chat/completions")
        for _ in range(requests):
            started = time.perf_counter()
            await client.post("/v1/chat/completions")
            timings.append((time.perf_counter() - started) * 1e6)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    logging.getLogger("ledgergate.access").handlers = [logging.NullHandler()]
    logging.getLogger("ledgergate.access").propagate = False
    logging.getLogger("ledgergate.access").setLevel(logging.INFO)
    results = {v: asyncio.run(measure(v, args.requests)) for v in ("none", "off", "tracing")}
    base = statistics.median(results["none"])
    print(f"{'variant':<28}{'p50 µs':>10}{'p99 µs':>10}{'+p50 µs':>10}")
    names = {"none": "no observability", "off": "middleware, tracing off", "tracing": "tracing on"}
    for variant, timings in results.items():
        ordered = sorted(timings)
        p50 = statistics.median(ordered)
        p99 = ordered[int(len(ordered) * 0.99) - 1]
        print(f"{names[variant]:<28}{p50:>10.0f}{p99:>10.0f}{p50 - base:>10.0f}")


if __name__ == "__main__":
    main()
