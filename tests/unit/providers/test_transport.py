"""The aiohttp transport under the adapters' httpx client raises what httpcore raised for the
same event, so the error table (gateway/providers/errors.py) answers as before."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from gateway.providers.base import AdapterLimits
from gateway.providers.errors import error_from_transport
from gateway.providers.registry import build_client


async def _serve(handler) -> tuple[asyncio.AbstractServer, str]:  # type: ignore[no-untyped-def]
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    """One request off the connection; returns its head (the body is read and dropped)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    if length:
        await reader.readexactly(length)
    return head


async def test_a_call_that_waits_too_long_for_a_pooled_connection_is_a_pool_timeout_answered_busy():
    release = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await release.wait()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    server, url = await _serve(slow)
    client = build_client(AdapterLimits(max_connections=1, pool_timeout_s=0.2))
    async with server, client:
        first = asyncio.create_task(client.post(url, content=b"{}"))
        await asyncio.sleep(0.1)
        with pytest.raises(httpx.PoolTimeout) as caught:
            await client.post(url, content=b"{}")
        release.set()
        assert (await first).text == "ok"  # the slot came back once the first was answered
    assert error_from_transport("openai", caught.value).code == "gateway_busy"


async def test_a_refused_connection_is_a_connect_error_and_a_silent_provider_a_read_timeout():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    client = build_client(AdapterLimits(read_timeout_s=0.2))

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(5)

    server, url = await _serve(silent)
    async with server, client:
        with pytest.raises(httpx.ConnectError):
            await client.post(f"http://127.0.0.1:{port}/", content=b"{}")
        with pytest.raises(httpx.ReadTimeout) as caught:
            await client.post(url, content=b"{}")
    assert error_from_transport("openai", caught.value).code == "upstream_timeout"


async def test_a_body_cut_short_is_a_protocol_error_and_the_request_reaches_the_provider_whole():
    received: list[bytes] = []

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        received.append(head + await reader.readexactly(7))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    server, url = await _serve(cut)
    client = build_client()
    async with server, client:
        with pytest.raises(httpx.RemoteProtocolError) as caught:
            await client.post(
                url + "/v1/x?a=1", content=b'{"a":1}', headers={"Authorization": "Bearer k"}
            )
    assert error_from_transport("openai", caught.value).code == "upstream_connection_error"
    head, _, body = received[0].partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    assert lines[0] == b"post /v1/x?a=1 http/1.1"
    assert b"authorization: bearer k" in lines and b"content-length: 7" in lines
    names = [line.split(b":")[0] for line in lines[1:]]
    assert len(names) == len(set(names))  # no header sent twice (httpx's and aiohttp's)
    assert body == b'{"a":1}'


async def test_the_proxy_environment_is_honoured_as_httpx_read_it_and_no_proxy_bypasses_it(
    monkeypatch,
):
    seen: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append((await reader.readuntil(b"\r\n")).strip())
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nproxy")
        await writer.drain()
        writer.close()

    server, proxy_url = await _serve(proxy)
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.setenv("NO_PROXY", "bypassed.invalid")
    client = build_client()
    async with server, client:
        answer = await client.get("http://provider.invalid/v1/models")
        with pytest.raises(httpx.ConnectError):  # not proxied: the name does not resolve
            await client.get("http://bypassed.invalid/v1/models")
    assert answer.text == "proxy"
    assert seen == [b"GET http://provider.invalid/v1/models HTTP/1.1"]


async def test_a_cookie_one_provider_call_is_given_never_rides_on_the_next_call():
    """The client is shared by every tenant's calls: a `Set-Cookie` in one answer is not
    kept, so the next call (another tenant's, perhaps) carries no cookie; the answer and
    its request are still the response's, read to the end."""
    seen: list[bytes] = []

    async def cookie_setter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                seen.append(await _read_request(reader))
            except asyncio.IncompleteReadError:
                break
            writer.write(
                b"HTTP/1.1 200 OK\r\nset-cookie: session=tenant-a-secret; Path=/\r\n"
                b"content-length: 2\r\n\r\nok"
            )
            await writer.drain()
        writer.close()

    server, url = await _serve(cookie_setter)
    client = build_client()
    async with server, client:
        first = await client.post(url + "/v1/chat/completions", content=b"{}")
        second = await client.post(url + "/v1/chat/completions", content=b"{}")
    assert first.text == second.text == "ok"
    assert first.request.url == httpx.URL(url + "/v1/chat/completions")
    assert len(seen) == 2 and b"cookie" not in seen[1].lower().replace(b"set-cookie", b"")
    assert not client.cookies
