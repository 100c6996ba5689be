"""What several end-to-end tests do the same way: start a gateway on the shared upstream,
read the audit log once the views have caught up (or once a record reaches a status), ask the response cache, travel the
cache's clock, read a stream up to a point, scan a store for plaintext."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.support.harness import Gateway, Tenant, running_gateway


@contextmanager
def gateway_on_shared_upstream(
    backend: dict[str, str], upstreams: Any, *, managed_key: str, secret_key: str, **settings: str
) -> Iterator[Gateway]:
    """A running gateway on `backend` whose managed OpenAI endpoint is the shared upstream of
    the `upstreams` fixture (a project's private one is the other), called with
    `managed_key`; the server secret is `secret_key`, and `settings` go on top."""
    (shared_server, _), _ = upstreams
    with running_gateway(
        {
            **backend,
            "LEDGERGATE_OPENAI_BASE_URL": shared_server.base_url + "/v1",
            "LEDGERGATE_OPENAI_API_KEY": managed_key,
            "LEDGERGATE_SECRET_KEY": secret_key,
            **settings,
        }
    ) as gateway:
        yield gateway


def audit_record(gateway: Gateway, tenant: Tenant, request_id: str) -> dict[str, Any]:
    """The audit record of `request_id` as its project reads it, once the views caught up."""
    gateway.settle()
    with gateway.client() as http:
        response = http.get(f"/v1/data/audit/{request_id}", headers=tenant.headers())
    assert response.status_code == 200, response.text
    return dict(response.json())


def audit_record_with_status(
    read: Callable[[], dict[str, Any]], status: str, timeout_s: float = 10.0
) -> dict[str, Any]:
    """The audit record `read` returns, read again every 0.1 s until its status is `status`
    or `timeout_s` has passed: then the last one read (the caller asserts on it). For what
    settles in the background: a sweep, a hung-up stream, another process."""
    deadline = time.monotonic() + timeout_s
    record = read()
    while record.get("status") != status and time.monotonic() < deadline:
        time.sleep(0.1)
        record = read()
    return record


def audit_rows(gateway: Gateway, tenant: Tenant, **params: Any) -> list[dict[str, Any]]:
    """The project's audit rows (filtered by `params`), once the views caught up."""
    gateway.settle()
    with gateway.client() as http:
        response = http.get("/v1/data/audit", params=params, headers=tenant.headers())
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def cached_chat(
    client: Any, headers: dict[str, str] | None = None, *, messages: Any, **body: Any
) -> Any:
    """A gpt-4o-mini chat (deterministic unless `temperature` says otherwise) with the cache
    headers `headers`; the raw response, whose `x-lg-cache` header says what the cache did."""
    body.setdefault("temperature", 0)
    return client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=messages, extra_headers=headers, **body
    )


def cached_stream(
    client: Any, headers: dict[str, str] | None = None, *, messages: Any
) -> tuple[str, Any, Any]:
    """`cached_chat` streamed with usage and read to its end: the text, the usage the stream
    reported, and the response headers."""
    raw = cached_chat(
        client, headers, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    text, usage = [], None
    for chunk in raw.parse():
        if chunk.choices:
            text.append(chunk.choices[0].delta.content or "")
        if chunk.usage is not None:
            usage = chunk.usage
    return "".join(text), usage, raw.headers


class TravelledClock:
    """The wall clock moved by `offset`: put in place of the response cache's clock."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


def read_data_lines(response: httpx.Response, count: int) -> None:
    """Read the SSE `response` until `count` `data:` lines have arrived, and no further."""
    seen = 0
    for line in response.iter_lines():
        if line.startswith("data:"):
            seen += 1
        if seen == count:
            return


def scan_for_plaintext(gateway: Gateway, tmp_path: Path, needles: list[str]) -> dict[str, Any]:
    """Where any of `needles` stands in the clear: every row of every table of the backend
    (the PostgreSQL schema, or each SQLite file) and every file under `tmp_path`; with how
    many response-cache rows the scan read."""
    found: list[str] = []
    rows = 0
    url = gateway.settings.raw.get("LEDGERGATE_DATABASE_URL")
    if url:
        schema = url.split("schema=")[1].split("&")[0]
        with psycopg.connect(url.split("?")[0]) as connection:
            tables = connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            ).fetchall()
            assert tables
            for (table,) in tables:
                for row in connection.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall():  # noqa: S608
                    text = repr(row)
                    found += [f"{table}: {n}" for n in needles if n in text]
                    rows += table == "lg_response_cache"
    files = list(Path(tmp_path).rglob("*"))
    for path in files:
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.name}: {n}" for n in needles if n.encode() in data]
            if path.name.endswith(".sqlite"):
                with sqlite3.connect(path) as connection:
                    names = connection.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table'"
                    ).fetchall()
                    for (table,) in names:
                        for row in connection.execute(f'SELECT * FROM "{table}"').fetchall():  # noqa: S608
                            text = repr(row)
                            found += [f"{table}: {n}" for n in needles if n in text]
                            rows += table == "lg_response_cache"
    return {"found": found, "lg_response_cache rows": rows}
