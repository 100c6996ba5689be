"""The provider calls' HTTP/1.1 transport: a keep-alive pool of asyncio protocols, each with
httptools' response parser (llhttp, in C), under the adapters' httpx client.

Why not aiohttp's client (gateway/providers/transport.py, still used when a proxy is
configured): per call it builds a ClientRequest (auto headers, cookies, a payload object), a
connector key, a trace context, a timer, a task to connect and send, and a stream reader;
measured in a serving process at concurrency 32, its send path was 12% of the event loop's
time for a call that is one write and one or two reads. Here a call is: take an idle
connection (or open one), write the head and body in one `write`, let the parser fill the
response as bytes arrive, hand the body to httpx as it comes.

What the adapters and the error table (gateway/providers/errors.py) see is what httpx over
httpcore showed them, as with the aiohttp transport:
- the pool limit, and the pool timeout as `PoolTimeout` (the call never reached the
  provider); connect and read timeouts as `ConnectTimeout` / `ReadTimeout` (every read of the
  body too, so a stream that stalls mid-way times out); a peer that closes early or sends
  what does not parse as `RemoteProtocolError`; a refused or failed connect as
  `ConnectError`; any other socket failure as `ReadError`;
- the URL as httpx encoded it (a signed path stays byte for byte), the headers as httpx
  built them and nothing added, the body undecoded (httpx decodes `content-encoding`);
- no redirect followed, no cookie kept (nothing here stores one);
- TLS with certifi's CAs and the host's name checked;
- a response read to its end gives its connection back to the pool (when the peer keeps it
  alive), a response closed before its end closes its connection: that is how a cancelled
  stream cancels the upstream call.
A connection idle for longer than KEEPALIVE_EXPIRY_S, or that its peer closed, is never
reused. A request is never sent twice: a POST that met a connection the peer was closing
fails as RemoteProtocolError and the failover decides (httpcore and aiohttp do not resend a
POST either).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterator

import certifi
import httptools
import httpx

# Below the 5 s keep-alive of uvicorn's and Node's servers: a client that keeps a connection
# exactly as long as its server races the server's close, and a POST sent into a closing
# connection fails (it is never resent). httpx's default is 5 s.
KEEPALIVE_EXPIRY_S = 4.0
BUFFERED_BYTES_MAX = 256 * 1024  # unread body held before the socket stops being read
HAPPY_EYEBALLS_DELAY_S = 0.25  # RFC 8305's recommended connection attempt delay
DEFAULT_PORTS = {"http": 80, "https": 443}


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request at a time, its response parsed as it arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.in_use = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self, no_body: bool = False) -> None:
        self._no_body = no_body  # the answer to a HEAD: a head alone, whatever it says
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self._keep_alive = False
        self.complete = False
        self._until_close = False  # a body delimited by the end of the connection
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._error: httpx.TransportError | None = None
        self._waiter: asyncio.Future[None] | None = None

    # --- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.in_use:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(httpx.RemoteProtocolError(f"the provider's answer did not parse: {error}"))
            self.close()

    def eof_received(self) -> bool:
        self._ended()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)

    def _ended(self, exc: Exception | None = None) -> None:
        self.closed = True
        if self.complete or self._error is not None:
            return
        if self.head_done and self._until_close and exc is None:
            self.complete = True
            self._wake()
            return
        if exc is not None and not isinstance(exc, ConnectionError | OSError):
            message = f"{type(exc).__name__}: {exc}"
        elif self.head_done:
            message = "peer closed connection without sending complete message body"
        else:
            message = "Server disconnected without sending a response."
        self._fail(httpx.RemoteProtocolError(message))

    # --- httptools callbacks

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if 100 <= self.status < 200:  # an interim answer: the real one follows
            self.status, self.reason, self.headers = 0, b"", []
            return
        self.head_done = True
        # Asked here: once the message is complete, llhttp has reset what it knew of it.
        self._keep_alive = self._parser.should_keep_alive()
        if self._no_body:
            self.complete = True
            self.in_use = False
            self.close()  # the parser would take what follows for this answer's body
        elif self.status not in (204, 304):
            names = {name.lower() for name, _ in self.headers}
            self._until_close = b"content-length" not in names and (
                b"transfer-encoding" not in names
            )
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > BUFFERED_BYTES_MAX and not self._paused and self._transport:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.head_done:
            self.complete = True
            self._wake()

    # --- the caller's side

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: httpx.TransportError) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    async def _wait(self, timeout: float | None) -> None:
        """Until the parser or the socket has news; httpx's ReadTimeout after `timeout`."""
        waiter = self._waiter = self._loop.create_future()
        timer = None
        if timeout is not None:
            timer = self._loop.call_later(timeout, _time_out, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def send(self, data: bytes, no_body: bool = False) -> None:
        self._reset(no_body)
        self.in_use = True
        assert self._transport is not None
        self._transport.write(data)

    async def response_head(self, timeout: float | None) -> None:
        while not self.head_done:
            if self._error is not None:
                raise self._error
            await self._wait(timeout)

    async def body_chunk(self, timeout: float | None) -> bytes | None:
        """The next piece of the body, or None at its end."""
        while True:
            chunks = self._chunks
            if chunks:
                # All that has arrived, as one piece: an SSE answer comes as many chunks of
                # the chunked encoding, and each piece costs a trip through httpx's decoders.
                chunk = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self._buffered = 0
                if self._paused:
                    self._paused = False
                    if self._transport is not None and not self.closed:
                        self._transport.resume_reading()
                return chunk
            if self.complete:
                return None
            if self._error is not None:
                raise self._error
            await self._wait(timeout)

    @property
    def reusable(self) -> bool:
        return self.complete and not self.closed and self._keep_alive

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(httpx.ReadTimeout("the provider sent nothing in time"))


class _Body(httpx.AsyncByteStream):
    """The body as it arrives; closing it gives back the pool slot, and the connection when
    the body was read to its end."""

    def __init__(
        self,
        transport: Http1Transport,
        key: tuple[str, str, int],
        connection: _Connection,
        read_timeout: float | None,
    ) -> None:
        self._transport = transport
        self._key = key
        self._connection: _Connection | None = connection
        self._read_timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            return
        while True:
            chunk = await connection.body_chunk(self._read_timeout)
            if chunk is None:
                return
            yield chunk

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._transport._give_back(self._key, connection)


class Http1Transport(httpx.AsyncBaseTransport):
    """Connections kept per (scheme, host, port), bound to the event loop that opened them
    (a new loop starts a new pool); at most `max_connections` calls at once."""

    def __init__(
        self,
        max_connections: int,
        timeout: httpx.Timeout,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._pool_timeout_s = timeout.pool
        self._ssl = ssl_context or ssl.create_default_context(cafile=certifi.where())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._closed = False

    @property
    def _idle_count(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._drop_idle()
            self._loop = loop
            self._slots = asyncio.Semaphore(self._max_connections)
        return loop

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the transport is closed")
        loop = self._bind()
        url = request.url
        scheme = url.scheme
        if scheme not in DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        key = (scheme, url.host, url.port or DEFAULT_PORTS[scheme])
        timeouts = request.extensions.get("timeout", {})
        slots = self._slots
        await take_slot(slots, timeouts.get("pool", self._pool_timeout_s))
        read_timeout = timeouts.get("read")
        connection: _Connection | None = None
        try:
            data = _encoded(request, await request.aread())
            connection = self._idle_connection(key) or await self._connect(
                loop, key, timeouts.get("connect")
            )
            connection.send(data, no_body=request.method == "HEAD")
            await connection.response_head(read_timeout)
        except BaseException as error:
            if connection is not None:
                connection.close()
            slots.release()
            if isinstance(error, OSError):
                raise httpx.ReadError(f"{type(error).__name__}: {error}") from error
            raise
        return httpx.Response(
            status_code=connection.status,
            headers=connection.headers,
            stream=_Body(self, key, connection, read_timeout),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": connection.reason},
        )

    def _idle_connection(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        oldest_usable = time.monotonic() - KEEPALIVE_EXPIRY_S
        while idle:
            connection = idle.pop()
            if not connection.closed and connection.idle_since >= oldest_usable:
                return connection
            connection.close()
        return None

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, key: tuple[str, str, int], timeout: float | None
    ) -> _Connection:
        scheme, host, port = key
        tls = scheme == "https"
        tls_context = self._ssl if tls else None
        name = host if tls else None

        def protocol() -> _Connection:
            return _Connection(loop)

        try:
            async with asyncio.timeout(timeout):
                if isinstance(loop, asyncio.BaseEventLoop):
                    # RFC 8305: an IPv6 address that does not answer costs a quarter of a
                    # second, not the connect timeout (uvloop's loop has no such option).
                    _, connection = await loop.create_connection(
                        protocol,
                        host,
                        port,
                        ssl=tls_context,
                        server_hostname=name,
                        happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY_S,
                    )
                else:
                    _, connection = await loop.create_connection(
                        protocol, host, port, ssl=tls_context, server_hostname=name
                    )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {host}:{port} in time") from None
        except (OSError, ssl.SSLError) as error:
            raise httpx.ConnectError(f"{type(error).__name__}: {error}") from error
        return connection

    def _give_back(self, key: tuple[str, str, int], connection: _Connection) -> None:
        connection.in_use = False
        try:
            if connection.reusable and not self._closed and self._loop is not None:
                if self._idle_count >= self._max_connections:
                    self._close_oldest_idle()
                connection.idle_since = time.monotonic()
                self._idle.setdefault(key, []).append(connection)
            else:
                connection.close()
        finally:
            self._slots.release()

    def _close_oldest_idle(self) -> None:
        oldest_key, oldest = None, float("inf")
        for key, idle in self._idle.items():
            if idle and idle[0].idle_since < oldest:
                oldest_key, oldest = key, idle[0].idle_since
        if oldest_key is not None:
            self._idle[oldest_key].pop(0).close()

    def _drop_idle(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                try:
                    connection.close()
                except RuntimeError:  # its loop is closed: the socket went with it
                    pass
        self._idle.clear()

    async def aclose(self) -> None:
        self._closed = True
        self._drop_idle()


async def take_slot(slots: asyncio.Semaphore, timeout: float | None) -> None:
    """One of the pool's slots, or httpx's PoolTimeout after `timeout`: the call never reached
    the provider (the timer is set only when the pool is full)."""
    if not slots.locked():
        await slots.acquire()
        return
    try:
        async with asyncio.timeout(timeout):
            await slots.acquire()
    except TimeoutError:
        raise httpx.PoolTimeout("no free connection in the pool in time") from None


def _encoded(request: httpx.Request, body: bytes) -> bytes:
    """The request's head as httpx built it (its Host, Content-Length, client headers), and
    its body, as one buffer. A header with a line break or NUL would smuggle a header or a
    second request: refused, as h11 (under httpcore) refuses it."""
    raw = request.headers.raw
    fields = b"".join(name + value for name, value in raw)
    if b"\r" in fields or b"\n" in fields or b"\0" in fields:
        raise httpx.LocalProtocolError("a header name or value holds a line break or NUL")
    target = request.url.raw_path
    lines = [request.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    for name, value in raw:
        lines += (name, b": ", value, b"\r\n")
    lines.append(b"\r\n")
    if body:
        lines.append(body)
    return b"".join(lines)


__all__ = ["KEEPALIVE_EXPIRY_S", "Http1Transport", "take_slot"]
