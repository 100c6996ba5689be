"""The HTTP transport under the adapters' httpx client when a proxy is configured: aiohttp's
connection pool and parser (straight to the providers, gateway/providers/http1.py is used:
it measured cheaper still). And `ProviderClient`, the httpx client both run under.

The adapters speak httpx (requests, streaming responses, httpx's exceptions); only the layer
that owns the sockets is aiohttp's. Measured (issue 11, one process, 32 concurrent calls to
the fast fake upstream): httpx over httpcore spent ~1.6 ms of CPU per call, the same httpx
client over this transport ~0.4-0.65 ms. httpcore scans every pooled connection (a `poll()` each)
twice per request, and parses HTTP in pure Python.

What httpx did and this keeps, so the adapters and the error table see no difference:
- the pool limit, and the pool timeout as httpx's `PoolTimeout` (a call that waited for a
  free connection never reached the provider: gateway/providers/errors.py says so);
- connect and read timeouts as `ConnectTimeout` / `ReadTimeout` (every read of the body
  too, so a stream that stalls mid-way times out), a peer that closes early as
  `RemoteProtocolError`, any other transport failure as an httpx `TransportError`;
- the URL as httpx encoded it (a signed path stays byte for byte), the body passed through
  undecoded (httpx decodes `content-encoding` itself), no redirect followed, the proxy
  environment honoured (httpx's `trust_env` default), certifi's CAs;
- a response closed before its end closes its connection (that is how a cancelled stream
  cancels the upstream call), a response read to its end returns it to the pool.
Not kept: httpx's write timeout (aiohttp has none; request bodies here are small and the
read timeout runs from the last byte sent) and its separate cap on idle connections (every
connection up to the pool limit may stay idle for the keep-alive expiry).
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import certifi
import httpx
import yarl

from gateway.providers.http1 import KEEPALIVE_EXPIRY_S, take_slot

PARSED_URLS_MAX = 1024  # provider URLs ProviderClient keeps parsed


def _mapped(error: Exception) -> httpx.TransportError:
    """An aiohttp failure as the httpx exception httpcore raised for the same event."""
    message = str(error) or type(error).__name__
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)
    if isinstance(error, aiohttp.SocketTimeoutError | asyncio.TimeoutError):
        return httpx.ReadTimeout(message)
    if isinstance(error, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        return httpx.ProxyError(message)
    if isinstance(error, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(message)
    if isinstance(error, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(message)
    if isinstance(error, aiohttp.ClientResponseError):  # a response aiohttp could not parse
        return httpx.RemoteProtocolError(message)
    if isinstance(error, aiohttp.ClientOSError | OSError):
        return httpx.ReadError(message)
    return httpx.TransportError(message)


class _ResponseStream(httpx.AsyncByteStream):
    """The body as it arrives; closing it gives back the pool slot (and the connection,
    when the body was read to its end)."""

    def __init__(self, response: aiohttp.ClientResponse, slot: asyncio.Semaphore) -> None:
        self._response = response
        self._slot: asyncio.Semaphore | None = slot

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise _mapped(error) from error

    async def aclose(self) -> None:
        slot, self._slot = self._slot, None
        if slot is None:
            return
        try:
            self._response.release()
        finally:
            slot.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session per event loop (a session cannot outlive or change its loop),
    created on first use inside the loop."""

    def __init__(self, max_connections: int, timeout: httpx.Timeout) -> None:
        self._max_connections = max_connections
        self._pool_timeout_s = timeout.pool
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(max_connections)
        self._ssl = ssl.create_default_context(cafile=certifi.where())
        # The proxy environment, read once as httpx does (aiohttp's trust_env reads it, and
        # ~/.netrc, on a worker thread for every request: 3% of a serving process's CPU).
        self._env_proxies = urllib.request.getproxies_environment()

    def _proxy_for(self, url: httpx.URL) -> str | None:
        proxies = self._env_proxies
        if not proxies:
            return None
        proxy = proxies.get(url.scheme) or proxies.get("all")
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        if proxy is None or bypass(url.host, proxies):
            return None
        return proxy

    def _session_for_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            self._loop = loop
            self._slots = asyncio.Semaphore(self._max_connections)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections,
                    keepalive_timeout=KEEPALIVE_EXPIRY_S,
                    ssl=self._ssl,
                ),
                trust_env=False,  # the proxy comes from _proxy_for
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session_for_loop()
        slots = self._slots
        timeouts = request.extensions.get("timeout", {})
        await take_slot(slots, timeouts.get("pool", self._pool_timeout_s))
        try:
            body = await request.aread()
            response = await session.request(
                request.method,
                # As httpx encoded it: yarl would otherwise re-quote the path (a Bedrock
                # model id's `%3A` sent as `:`, and its SigV4 signature no longer matching).
                yarl.URL(str(request.url), encoded=True),
                headers=request.headers.multi_items(),
                data=body or None,
                allow_redirects=False,
                proxy=self._proxy_for(request.url),
                compress=None,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeouts.get("connect"),
                    sock_connect=timeouts.get("connect"),
                    sock_read=timeouts.get("read"),
                ),
            )
        except BaseException as error:
            slots.release()
            if isinstance(error, aiohttp.ClientError | asyncio.TimeoutError | OSError):
                raise _mapped(error) from error
            raise
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_ResponseStream(response, slots),
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode(),
            },
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


class ProviderClient(httpx.AsyncClient):
    """httpx's client API for the adapters, with `send` going straight to the transport.

    httpx's own `send` walks an auth generator, a redirect loop, event hooks, a mount lookup
    per URL, wraps the body stream in a timer, stores every `Set-Cookie` in the client's jar
    and formats a log record: measured, a sixth of a serving process's event-loop CPU per
    call. None of it applies to a provider call here: no client-level auth (each adapter
    signs its own headers), redirects are never followed (build_client), no hooks, no
    mounts (the transport applies the proxy environment), and a cookie one provider sets
    must never ride along on another tenant's call. What the adapters use is unchanged:
    `post`, `build_request` (the timeouts as its extension), `send(..., stream=True)`, the
    response's `request`, its body read or closed, and the same httpx exceptions.
    Not kept: `response.elapsed` (nothing reads it; the lifecycle times the call itself)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._parsed_urls: dict[str, httpx.URL] = {}

    def build_request(self, method: str, url: httpx.URL | str, **kwargs: Any) -> httpx.Request:
        """httpx's, with each provider URL parsed once: httpx parses and validates the URL
        text on every call (its `urlparse` was 2% of a serving process's event-loop time),
        and the adapters call a few fixed URLs. A URL with a query is parsed every time (a
        query may carry a provider's key; none is kept here). Bounded: emptied when full."""
        if isinstance(url, str) and "?" not in url:
            parsed = self._parsed_urls.get(url)
            if parsed is None:
                parsed = httpx.URL(url)
                if len(self._parsed_urls) >= PARSED_URLS_MAX:
                    self._parsed_urls.clear()
                self._parsed_urls[url] = parsed
            url = parsed
        return super().build_request(method, url, **kwargs)

    async def send(  # type: ignore[override]
        self, request: httpx.Request, *, stream: bool = False, **_: object
    ) -> httpx.Response:
        if self.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        response = await self._transport.handle_async_request(request)
        response.request = request
        if not stream:
            try:
                await response.aread()
            finally:
                await response.aclose()
        return response


__all__ = ["AiohttpTransport", "ProviderClient"]
