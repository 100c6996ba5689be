"""A small, real HTTP/1.1 server for fake upstreams, on asyncio in a background thread.

Why not uvicorn: the malformed-output tests need byte-level control that an ASGI server
hides (abort a connection mid-body, end a chunked stream at an arbitrary point, send a wrong
content type with a 200). This server speaks enough HTTP/1.1 for httpx, urllib3 (botocore)
and the official SDKs: keep-alive, Content-Length and chunked request bodies, Content-Length
or chunked responses.

A fake upstream subclasses `FakeUpstreamBase`, implements `respond(request, script)`, and is
scripted per test with `Scripted` (reply text, tool calls, usage, errors before/after the
first chunk, malformed output, latency). Every request received is recorded.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

from gateway.simulator import hashed_ngram_embedding

MAX_REQUEST_HEADER_BYTES = 64 * 1024
MAX_REQUEST_BODY_BYTES = 64 * 1024 * 1024
STARTUP_TIMEOUT_S = 10.0

# Kinds of malformed output every fake can produce.
MALFORMED_KINDS = (
    "truncated",
    "bad_json",
    "wrong_content_type",
    "reset",
    "crc",
    "hang",
    "no_usage",
)


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str | None = None


@dataclass
class Scripted:
    """What the fake answers to one request."""

    text: str = "Hello from the fake upstream."
    tool_calls: list[ToolCall] = field(default_factory=list)
    prompt_tokens: int = 12
    completion_tokens: int = 7
    cached_tokens: int = 0
    finish: str | None = None  # provider-native finish reason; None = natural for the reply
    # An error before the first byte: the provider's real status, body and headers.
    error_status: int | None = None
    error_body: Any = None
    error_headers: dict[str, str] = field(default_factory=dict)
    error_type: str | None = None  # provider-native error type (Anthropic type, Bedrock exception…)
    # An error after `error_after_chunks` content chunks of a stream, in the provider's format.
    error_after_chunks: int | None = None
    malformed: str | None = None  # one of MALFORMED_KINDS
    latency_s: float = 0.0
    # Streams only: send this many body pieces, then stall forever (a read timeout must fire).
    stall_after_chunks: int | None = None
    pieces: int = 3  # how many stream chunks the text is cut into

    def text_pieces(self) -> list[str]:
        if not self.text:
            return []
        count = max(1, min(self.pieces, len(self.text)))
        size = -(-len(self.text) // count)
        return [self.text[i : i + size] for i in range(0, len(self.text), size)]

    @staticmethod
    def argument_pieces(arguments: dict[str, Any], count: int = 2) -> list[str]:
        raw = json.dumps(arguments, separators=(",", ":"))
        size = max(1, -(-len(raw) // count))
        return [raw[i : i + size] for i in range(0, len(raw), size)]


@dataclass
class HttpRequest:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return unquote(urlsplit(self.target).path)

    @property
    def raw_path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class HttpResponse:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # Streaming: an async iterator of byte chunks sent with chunked encoding.
    chunks: AsyncIterator[bytes] | None = None
    # Abort the TCP connection (a reset) after sending the headers and `chunks` (or `body`).
    reset: bool = False
    # Never answer (the client's read timeout must fire).
    hang: bool = False


REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    424: "Failed Dependency",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    529: "Overloaded",
}


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(
        status=status,
        headers={"content-type": "application/json", **(headers or {})},
        body=json.dumps(payload).encode(),
    )


class FakeHttpServer:
    def __init__(self, handler: Callable[[HttpRequest], Awaitable[HttpResponse]]) -> None:
        self._handler = handler
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fake-upstream", daemon=True)
        self._thread.start()
        if not self._ready.wait(STARTUP_TIMEOUT_S):
            raise RuntimeError("fake upstream did not start")

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            self._server = await asyncio.start_server(
                self._serve, "127.0.0.1", 0, limit=MAX_REQUEST_HEADER_BYTES
            )
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        loop.run_until_complete(boot())
        loop.run_forever()
        loop.close()

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._loop = None

    async def _read_request(self, reader: asyncio.StreamReader) -> HttpRequest | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body = b"".join(parts)
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if length > MAX_REQUEST_BODY_BYTES:
                return None
            body = await reader.readexactly(length)
        return HttpRequest(method=method, target=target, headers=headers, body=body)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    break
                try:
                    response = await self._handler(request)
                except Exception as error:  # a bug in a fake must be visible, not a hang
                    response = json_response(500, {"fake_upstream_bug": repr(error)[:300]})
                if response.hang:
                    await asyncio.sleep(3600)
                    break
                keep_open = await self._write(writer, response)
                if not keep_open:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a client hanging up, or the server stopping: nothing to report
        finally:
            self._writers.discard(writer)
            if not writer.transport.is_closing():
                writer.close()

    async def _write(self, writer: asyncio.StreamWriter, response: HttpResponse) -> bool:
        headers = dict(response.headers)
        status_line = f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Status')}\r\n"
        if response.chunks is not None:
            headers["transfer-encoding"] = "chunked"
        elif response.reset:
            # Promise more than will come, then cut the connection: a reset mid-body.
            headers["content-length"] = str(len(response.body) + 1000)
        else:
            headers["content-length"] = str(len(response.body))
        head = status_line + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        writer.write(head.encode("latin-1"))
        if response.chunks is None:
            writer.write(response.body)
            await writer.drain()
            if response.reset:
                writer.transport.abort()
                return False
            return True
        async for piece in response.chunks:
            if piece:
                writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                await writer.drain()
        if response.reset:
            writer.transport.abort()
            return False
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


class FakeUpstreamBase:
    """Common scripting and recording for every provider fake."""

    provider = ""
    path_prefix = ""  # appended to the server root to form base_url

    def __init__(self) -> None:
        self.default = Scripted()
        self._queue: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self.received: list[HttpRequest] = []
        self._server = FakeHttpServer(self._handle)

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> FakeUpstreamBase:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> FakeUpstreamBase:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    @property
    def base_url(self) -> str:
        return self.root_url + self.path_prefix

    # --- scripting -------------------------------------------------------------------
    def script(self, **fields: Any) -> Scripted:
        """Queue the answer to the next request (several calls queue several answers; when
        the queue is empty, `self.default` answers)."""
        scripted = Scripted(**fields)
        with self._lock:
            self._queue.append(scripted)
        return scripted

    def set_default(self, **fields: Any) -> Scripted:
        self.default = Scripted(**fields)
        return self.default

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.received.clear()
        self.default = Scripted()

    @property
    def requests(self) -> list[Any]:
        """The JSON bodies received, in order."""
        bodies = []
        for request in list(self.received):
            try:
                bodies.append(request.json())
            except ValueError:
                bodies.append(None)
        return bodies

    def _next(self) -> Scripted:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    async def _handle(self, request: HttpRequest) -> HttpResponse:
        self.received.append(request)
        routed = self.route(request)
        if routed is not None:
            return routed
        scripted = self._next()
        if scripted.latency_s:
            await asyncio.sleep(scripted.latency_s)
        if scripted.malformed == "hang":
            return HttpResponse(hang=True)
        if scripted.error_status is not None:
            return self.error_response(scripted)
        response = await self.respond(request, scripted)
        if scripted.stall_after_chunks is not None and response.chunks is not None:
            response.chunks = stall_after(response.chunks, scripted.stall_after_chunks)
        return response

    # --- for subclasses --------------------------------------------------------------
    def route(self, request: HttpRequest) -> HttpResponse | None:
        """Answer requests that need no script (model lists, unknown paths)."""
        return None

    # The headers of this provider's streaming answers.
    stream_headers: ClassVar[dict[str, str]] = {}

    def error_response(self, scripted: Scripted) -> HttpResponse:
        """A scripted error before the first byte: the scripted body as it is, else the
        provider's own error body for the status."""
        status = scripted.error_status or 500
        if scripted.error_body is not None:
            return json_response(status, scripted.error_body, scripted.error_headers)
        return self.native_error(status, scripted)

    def native_error(self, status: int, scripted: Scripted) -> HttpResponse:
        """The provider's own error answer for `status` (no body scripted)."""
        raise NotImplementedError

    def stream_response(self, frames: list[bytes], reset: bool = False) -> HttpResponse:
        """A 200 stream of `frames` with this provider's headers; `reset` aborts the
        connection after them."""
        return HttpResponse(
            status=200, headers=dict(self.stream_headers), chunks=iterate(frames), reset=reset
        )

    async def respond(self, request: HttpRequest, scripted: Scripted) -> HttpResponse:
        raise NotImplementedError


async def iterate(pieces: list[bytes], delay_s: float = 0.0) -> AsyncIterator[bytes]:
    for piece in pieces:
        if delay_s:
            await asyncio.sleep(delay_s)
        yield piece


async def stall_after(chunks: AsyncIterator[bytes], count: int) -> AsyncIterator[bytes]:
    sent = 0
    async for piece in chunks:
        if sent == count:
            await asyncio.sleep(3600)
        yield piece
        sent += 1


def sse(data: Any, event: str | None = None) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {text}\n\n".encode()


def malformed_json_response(kind: str) -> HttpResponse | None:
    """The non-streaming malformed outputs every JSON API can produce."""
    if kind == "bad_json":
        return HttpResponse(
            status=200, headers={"content-type": "application/json"}, body=b'{"id": "x", "choi'
        )
    if kind == "wrong_content_type":
        return HttpResponse(
            status=200,
            headers={"content-type": "text/html"},
            body=b"<html><body>Bad gateway</body></html>",
        )
    if kind == "reset":
        return HttpResponse(
            status=200, headers={"content-type": "application/json"}, body=b'{"id":', reset=True
        )
    if kind == "truncated":
        return HttpResponse(
            status=200, headers={"content-type": "application/json"}, body=b'{"id": "x"'
        )
    return None


def wrong_content_type_stream() -> HttpResponse:
    """A stream request answered 200 with an HTML page: the stream's malformed `wrong_content_type`."""
    return HttpResponse(
        status=200, headers={"content-type": "text/html"}, body=b"<html>oops</html>"
    )


def deterministic_vector(text: str, dimensions: int = 8) -> list[float]:
    """A repeatable embedding so tests can assert exact values: the simulator's hashed word
    and character n-grams (gateway/simulator.py), so paraphrases get close vectors here too."""
    return hashed_ngram_embedding(text, dimensions)
