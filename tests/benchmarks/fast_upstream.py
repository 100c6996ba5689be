"""A fast fake OpenAI upstream for throughput benchmarks: `python -m tests.benchmarks.fast_upstream
--port P`. Every POST gets the same pre-encoded chat completion (or, when the body asks for
`"stream": true`, the same pre-encoded SSE stream with a final usage chunk), over HTTP/1.1
keep-alive, on uvloop with a bare asyncio protocol, so that the upstream costs as little CPU as
possible and the gateways under test, not the fake, are what is measured. Not for
correctness tests: tests/fakes/ speaks the providers' wire formats in full.
"""

from __future__ import annotations

import argparse
import asyncio
import re

import orjson

MODEL = "gpt-4o-mini"
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
STREAM_TRUE = re.compile(rb'"stream"\s*:\s*true')
USAGE = {"prompt_tokens": 14, "completion_tokens": 9, "total_tokens": 23}


def _completion() -> bytes:
    body = orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1_764_000_000,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "I am well, thank you."},
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    )
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return head + body


def _stream() -> bytes:
    def chunk(delta: dict[str, object], finish: str | None, usage: object = None) -> bytes:
        event = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1_764_000_000,
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if delta else [],
        }
        if usage is not None:
            event["usage"] = usage
        return b"data: " + orjson.dumps(event) + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""}, None)]
    events += [chunk({"content": word}, None) for word in ("I ", "am ", "well, ", "thanks.")]
    events.append(chunk({"content": ""}, "stop"))
    events.append(chunk({}, None, USAGE))
    events.append(b"data: [DONE]\n\n")
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )
    body = b"".join(f"{len(e):x}\r\n".encode() + e + b"\r\n" for e in events) + b"0\r\n\r\n"
    return head + body


COMPLETION = _completion()
STREAM = _stream()
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"


class Upstream(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            match = CONTENT_LENGTH.search(head)
            length = int(match.group(1)) if match else 0
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            assert self.transport is not None
            if not head.startswith(b"POST"):
                self.transport.write(NOT_FOUND)
            else:
                self.transport.write(STREAM if STREAM_TRUE.search(body) else COMPLETION)


async def _serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, host, port, backlog=1024, reuse_address=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args()
    import uvloop

    uvloop.run(_serve(arguments.host, arguments.port))


if __name__ == "__main__":
    main()
