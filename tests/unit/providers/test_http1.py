"""The direct HTTP/1.1 transport (gateway/providers/http1.py) against real sockets: the
connection pool's keep-alive, the ways an answer's body is delimited, a stream closed early,
TLS, and what it refuses to send. The error mapping shared with the aiohttp transport is in
test_transport.py (build_client picks this one when no proxy is configured)."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.providers.base import AdapterLimits
from gateway.providers.http1 import Http1Transport
from gateway.providers.registry import build_client
from gateway.providers.transport import ProviderClient
from tests.unit.providers.test_transport import _read_request


class Upstream:
    """A local server counting its connections; `answer(head)` gives the bytes to send back
    for each request, None to close the connection instead."""

    def __init__(self, answer) -> None:  # type: ignore[no-untyped-def]
        self.answer = answer
        self.connections = 0
        self.heads: list[bytes] = []
        self.closed_by_client = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await _read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.closed_by_client.set()
                    return
                self.heads.append(head)
                reply = self.answer(head)
                if reply is None:
                    return
                for piece in reply if isinstance(reply, list) else [reply]:
                    if piece is None:  # the server lets the kept-alive connection go
                        return
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0)
                if isinstance(reply, bytes) and b"connection: close" in reply:
                    return
        finally:
            writer.close()


async def _serve(upstream: Upstream, **kwargs) -> tuple[asyncio.AbstractServer, str]:  # type: ignore[no-untyped-def]
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0, **kwargs)
    port = server.sockets[0].getsockname()[1]
    return server, f"127.0.0.1:{port}"


OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"a":"ok"}\n'


def test_build_client_goes_direct_unless_a_proxy_is_configured(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "internal.example")  # a bypass list alone is no proxy
    assert isinstance(build_client()._transport, Http1Transport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert not isinstance(build_client()._transport, Http1Transport)


async def test_calls_reuse_one_kept_alive_connection_and_a_closing_peer_gets_a_new_one() -> None:
    replies = iter(
        [OK, OK, OK.replace(b"content-length", b"connection: close\r\ncontent-length"), OK]
    )
    upstream = Upstream(lambda head: next(replies))
    server, host = await _serve(upstream)
    client = build_client()
    async with server, client:
        texts = [(await client.post(f"http://{host}/v1/x", content=b"{}")).text for _ in range(4)]
    assert texts == ['{"a":"ok"}\n'] * 4
    # Three on the first connection (the third said it closes), the fourth on a new one.
    assert upstream.connections == 2


async def test_a_connection_the_peer_closed_while_idle_is_never_reused() -> None:
    upstream = Upstream(lambda head: [OK, None])  # answers, keeps nothing alive, says nothing
    server, host = await _serve(upstream)
    client = build_client()
    async with server, client:
        assert (await client.post(f"http://{host}/", content=b"{}")).status_code == 200
        await asyncio.sleep(0.05)  # the peer's FIN arrives while the connection is idle
        assert (await client.post(f"http://{host}/", content=b"{}")).status_code == 200
    assert upstream.connections == 2


async def test_chunked_and_bodyless_answers_are_read_whole_on_one_connection() -> None:
    chunked = [
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        b"5\r\nhello\r\n",
        b"6\r\n world\r\n0\r\n\r\n",
    ]
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    replies = iter([chunked, b"HTTP/1.1 204 No Content\r\n\r\n", [interim, OK]])
    upstream = Upstream(lambda head: next(replies))
    server, host = await _serve(upstream)
    client = build_client()
    async with server, client:
        assert (await client.post(f"http://{host}/", content=b"{}")).text == "hello world"
        empty = await client.post(f"http://{host}/", content=b"{}")
        assert empty.status_code == 204 and empty.content == b""
        after_interim = await client.post(f"http://{host}/", content=b"{}")
        assert after_interim.status_code == 200 and after_interim.json() == {"a": "ok"}
    assert upstream.connections == 1


async def test_an_answer_without_a_length_ends_with_the_connection() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\npart one, ")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"part two")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = build_client()
    async with server, client:
        answer = await client.post(f"http://127.0.0.1:{port}/", content=b"{}")
        assert answer.text == "part one, part two"
        assert isinstance(client._transport, Http1Transport)
        assert client._transport._idle_count == 0  # its connection is gone, not pooled


async def test_a_stream_closed_early_closes_its_connection_and_frees_its_slot() -> None:
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    event = b"data: {}\n\n"
    frame = b"%x\r\n%s\r\n" % (len(event), event)
    upstream = Upstream(lambda h: [head] + [frame] * 3)  # never ends the chunked body
    server, host = await _serve(upstream)
    client = build_client(AdapterLimits(max_connections=1, pool_timeout_s=1.0))
    async with server, client:
        request = client.build_request("POST", f"http://{host}/", content=b"{}")
        response = await client.send(request, stream=True)
        async for line in response.aiter_lines():
            assert line == "data: {}"
            break
        await response.aclose()
        await asyncio.wait_for(upstream.closed_by_client.wait(), 2)  # the call is cancelled
        # The only slot is free again: a next call gets a (new) connection at once.
        upstream.answer = lambda h: OK
        assert (await client.post(f"http://{host}/", content=b"{}")).status_code == 200
    assert upstream.connections == 2


async def test_a_stalled_body_is_a_read_timeout_and_garbage_a_protocol_error() -> None:
    stalled = Upstream(lambda h: [b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nhalf"])
    garbage = Upstream(lambda h: b"SMTP ready\r\n\r\n")
    stalled_server, stalled_host = await _serve(stalled)
    garbage_server, garbage_host = await _serve(garbage)
    client = build_client(AdapterLimits(read_timeout_s=0.2))
    async with stalled_server, garbage_server, client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(f"http://{stalled_host}/", content=b"{}")
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(f"http://{garbage_host}/", content=b"{}")


async def test_a_header_holding_a_line_break_is_never_sent() -> None:
    upstream = Upstream(lambda h: OK)
    server, host = await _serve(upstream)
    client = build_client()
    async with server, client:
        with pytest.raises(httpx.LocalProtocolError):
            await client.post(
                f"http://{host}/", content=b"{}", headers={"x-tenant": "a\r\nx-injected: 1"}
            )
        assert (await client.post(f"http://{host}/", content=b"{}")).status_code == 200
    assert len(upstream.heads) == 1 and b"x-injected" not in upstream.heads[0]


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_tls_checks_the_providers_certificate_and_name(tmp_path: Path) -> None:
    cert_path, key_path = _certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_path, key_path)
    upstream = Upstream(lambda h: OK)
    server, host = await _serve(upstream, ssl=server_context)
    port = host.rsplit(":", 1)[1]
    trusting = ssl.create_default_context(cafile=str(cert_path))
    limits = AdapterLimits()
    timeout = limits.httpx_timeout()
    trusted = ProviderClient(timeout=timeout, transport=Http1Transport(4, timeout, trusting))
    default = build_client()  # certifi's CAs: this certificate is nobody's
    async with server, trusted, default:
        answer = await trusted.post(f"https://localhost:{port}/v1/x", content=b"{}")
        assert answer.text == '{"a":"ok"}\n'
        with pytest.raises(httpx.ConnectError):
            await default.post(f"https://localhost:{port}/v1/x", content=b"{}")
        with pytest.raises(httpx.ConnectError):  # the certificate names localhost only
            await trusted.post(f"https://127.0.0.1:{port}/v1/x", content=b"{}")
    assert len(upstream.heads) == 1
