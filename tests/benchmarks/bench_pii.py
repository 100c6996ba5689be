"""PII screening benchmark: one command, prints tables.

    /work/main/.venv/bin/python tests/benchmarks/bench_pii.py [--runs 60]

1. Screening latency (the whole `await screener.screen(...)`: body walk, language choice,
   Presidio + spaCy in the worker thread, pseudonymization) for a short (~45 words) and a
   long (~2,000 words) prompt, p50/p95/max.
2. Time to first visible token added by stream rehydration (and by the output firewall),
   with a simulated upstream emitting a chunk every 20 ms: the gateway's first client byte
   vs a plain pass-through, and vs the "buffer the whole answer, then restore" approach.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from gateway.pii.engine import PiiScreener  # noqa: E402
from gateway.pii.policy import parse_pii_policy  # noqa: E402
from gateway.pii.pseudonymize import Pseudonymizer  # noqa: E402
from gateway.pii.streaming import PiiStreamFilter  # noqa: E402

SHORT = (
    "Hi, I'm Anna Svensson from Göteborg. Please move 500 EUR from my account "
    "SE45 5000 0000 0583 9825 7466 to Lars Berg, and email the receipt to "
    "anna.svensson@example.com. My personnummer is 811218-9876 and my phone +46 70 123 45 67."
)
FILLER = (
    "The quarterly report covers revenue, costs and the outlook for the next period in some "
    "detail, with notes on each region and the assumptions behind the forecast. "
)


def long_prompt(words: int = 2000) -> str:
    parts, count = [], 0
    while count < words:
        chunk = FILLER if len(parts) % 6 else SHORT + " "
        parts.append(chunk)
        count += len(chunk.split())
    return "".join(parts)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


async def screening_latency(screener: PiiScreener, runs: int) -> list[tuple[str, list[float], int]]:
    rows = []
    policy = parse_pii_policy({"action": "pseudonymize", "rehydrate_response": True})
    for label, text, n in [("short", SHORT, runs), ("long", long_prompt(), max(10, runs // 4))]:
        body = {"messages": [{"role": "user", "content": text}]}
        await screener.screen(body, policy)  # one more warm-up for this size
        samples = []
        for index in range(n):
            started = time.perf_counter()
            await screener.screen(body, policy)
            samples.append((time.perf_counter() - started) * 1000)
            print(f"\r  screening {label}: {index + 1}/{n}", end="", file=sys.stderr)
        print(file=sys.stderr)
        rows.append((label, samples, len(text.split())))
    return rows


def answer_chunks(starts_with_placeholder: bool) -> list[str]:
    text = (
        ("<PERSON_1>, " if starts_with_placeholder else "Sure, ")
        + "I moved the money from <IBAN_CODE_1> to <PERSON_2> and sent the receipt to "
        "<EMAIL_ADDRESS_1>. Is there anything else I can help you with today?"
    )
    # Roughly token-sized pieces, splitting placeholders as a tokenizer would.
    return re.findall(r"<|[A-Z_]+|\d+>|>|[^<A-Z_\d>]{1,4}", text)


async def first_visible_ms(
    chunks: list[str], make_filter, interval_s: float, buffer_all: bool = False
) -> tuple[float, str]:
    stream_filter = make_filter()
    started = time.perf_counter()
    first = None
    out = []
    for chunk in chunks:
        await asyncio.sleep(interval_s)  # the upstream's token pace
        if stream_filter is None:
            text = chunk
        else:
            step = await stream_filter.feed(chunk)
            text = step.text
        out.append(text)
        if text and first is None and not buffer_all:
            first = time.perf_counter() - started
    if stream_filter is not None:
        tail = (await stream_filter.flush()).text
        out.append(tail)
    if first is None:
        first = time.perf_counter() - started
    return first * 1000, "".join(out)


async def ttft(screener: PiiScreener, repeats: int) -> list[tuple[str, str, float, float]]:
    mapping = Pseudonymizer()
    for entity_type, value in [
        ("PERSON", "Anna Svensson"),
        ("IBAN_CODE", "SE45 5000 0000 0583 9825 7466"),
        ("PERSON", "Lars Berg"),
        ("EMAIL_ADDRESS", "anna.svensson@example.com"),
    ]:
        mapping.token_for(entity_type, value)
    rehydrate = parse_pii_policy({"rehydrate_response": True})
    rehydrate_and_firewall = parse_pii_policy(
        {"rehydrate_response": True, "block_output_entity_types": ["CREDIT_CARD", "IBAN_CODE"]}
    )
    interval_s = 0.020
    rows = []
    for opening, starts in [("plain word", False), ("placeholder", True)]:
        chunks = answer_chunks(starts)
        variants = [
            ("pass-through (no PII)", lambda: None, False),
            ("rehydrate", lambda: PiiStreamFilter(screener, rehydrate, mapping), False),
            (
                "rehydrate + firewall",
                lambda: PiiStreamFilter(screener, rehydrate_and_firewall, mapping),
                False,
            ),
            ("buffer whole answer", lambda: PiiStreamFilter(screener, rehydrate, mapping), True),
        ]
        baseline = None
        for name, make, buffer_all in variants:
            samples = []
            for _ in range(repeats):
                ms, text = await first_visible_ms(chunks, make, interval_s, buffer_all)
                samples.append(ms)
            if make() is not None:
                assert "Anna Svensson" in text or "Lars Berg" in text, "rehydration failed"
            median = statistics.median(samples)
            baseline = median if baseline is None else baseline
            rows.append((opening, name, median, median - baseline))
    return rows


async def main_async(runs: int) -> None:
    screener = PiiScreener()
    started = time.perf_counter()
    screener.warm()
    print(
        f"engine load + warm: {time.perf_counter() - started:.2f} s "
        f"(load {screener.load_seconds:.2f} s)"
    )
    rows = await screening_latency(screener, runs)
    print()
    print("Screening latency, await screener.screen(body) (pseudonymize, medium sensitivity)")
    print(f"{'prompt':<8} {'words':>6} {'runs':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for label, samples, words in rows:
        print(
            f"{label:<8} {words:>6} {len(samples):>5} {statistics.median(samples):>8.1f} "
            f"{percentile(samples, 0.95):>8.1f} {max(samples):>8.1f}"
        )
    ttft_rows = await ttft(screener, repeats=5)
    chunk_count = len(answer_chunks(False))
    print()
    print(
        f"Time to first visible text, upstream chunk every 20 ms ({chunk_count} chunks), median of 5"
    )
    print(f"{'answer opens with':<18} {'client path':<24} {'TTFT ms':>8} {'added ms':>9}")
    for opening, name, median, added in ttft_rows:
        print(f"{opening:<18} {name:<24} {median:>8.1f} {added:>9.1f}")
    screener.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    asyncio.run(main_async(args.runs))


if __name__ == "__main__":
    main()
