"""What a response tells its client about cost (issue 14), in one place for chat and
embeddings, streamed or not:

- `X-LG-Efficiency`: estimated ÷ actual — `X-LG-Estimated-Cost` (what admission reserved)
  over `X-LG-Actual-Cost` (what was charged) — with EFFICIENCY_DECIMALS decimals, rounded
  half-even. Above 1 the estimate was generous (the rest was released); "inf" when nothing
  was charged for a positive estimate (a cache hit has no provider cost), "1.000" when both
  are zero.
- `X-LG-Latency-Ms`: the whole request as the gateway served it, from arrival to the answer
  (`X-LG-Overhead-Ms` is the gateway's own share of it).
- Streams: with `stream_options.include_usage`, the final usage chunk carries an `x_lg`
  object — the request's actual cost (string decimal), its currency and its request id —
  once the charge is durable. The audit record always carries the actual cost
  (`cost`), whatever the client asked for.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

EFFICIENCY_DECIMALS = 3
_EFFICIENCY_QUANTUM = Decimal(1).scaleb(-EFFICIENCY_DECIMALS)


def efficiency(estimated: Decimal, actual: Decimal) -> str:
    """estimated ÷ actual, EFFICIENCY_DECIMALS decimals (half-even)."""
    if actual == 0:
        return "inf" if estimated > 0 else format(Decimal(1).quantize(_EFFICIENCY_QUANTUM), "f")
    ratio = (estimated / actual).quantize(_EFFICIENCY_QUANTUM, rounding=ROUND_HALF_EVEN)
    return format(ratio, "f")


def cost_headers(estimated: Decimal, actual: Decimal, latency_ms: int) -> dict[str, str]:
    """The response headers a settled, non-streamed answer gains."""
    return {
        "X-LG-Efficiency": efficiency(estimated, actual),
        "X-LG-Latency-Ms": str(max(latency_ms, 0)),
    }


def x_lg_usage(charged: Decimal | None, currency: str, request_id: str) -> dict[str, Any]:
    """The `x_lg` object of a stream's final usage chunk. `cost` is None only when the
    charge could not be made durable before the stream ended (journalled: it is charged in
    the background; the audit record then shows it)."""
    return {
        "cost": None if charged is None else format(charged, "f"),
        "currency": currency,
        "request_id": request_id,
    }
