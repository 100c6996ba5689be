"""Server-sent-events parsing over an httpx streaming response, with limits.

Yields (event, data) pairs. Bounded: a single event larger than MAX_EVENT_BYTES is a
malformed upstream, not a memory leak.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

MAX_EVENT_BYTES = 4 * 1024 * 1024


@dataclass(slots=True)
class SseEvent:
    event: str | None
    data: str


class SseTooLarge(Exception):
    pass


async def iter_sse(response: httpx.Response) -> AsyncIterator[SseEvent]:
    event_name: str | None = None
    data_lines: list[str] = []
    size = 0
    async for line in response.aiter_lines():
        if line == "":
            if data_lines or event_name is not None:
                yield SseEvent(event_name, "\n".join(data_lines))
            event_name, data_lines, size = None, [], 0
            continue
        if line.startswith(":"):
            continue  # comment / keep-alive
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        size += len(value)
        if size > MAX_EVENT_BYTES:
            raise SseTooLarge(f"an SSE event exceeded {MAX_EVENT_BYTES} bytes")
        if field == "data":
            data_lines.append(value)
        elif field == "event":
            event_name = value
    if data_lines or event_name is not None:
        yield SseEvent(event_name, "\n".join(data_lines))
