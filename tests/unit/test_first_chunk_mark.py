"""A stream's first chunk is recorded once, with its real time: by its own command after
FIRST_CHUNK_RECORD_AFTER_S of streaming, or, for a stream that ends sooner, by the
settlement's own command (one command and one commit fewer, the same events)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain import commands as c
from domain.clock import FixedClock
from domain.ids import request_aggregate_id
from domain.request import Request
from domain.writer import GroupCommitWriter
from gateway.lifecycle import stream as stream_module
from gateway.lifecycle.stream import FirstChunkMark
from tests.support.builders import (
    admit_request,
    complete_request,
    priced_project,
    request_facts,
    upstream_failure,
)
from tests.support.ledger import memory_app

NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)
FIRST_AT = NOW - timedelta(seconds=3)  # the chunk arrived before the settlement was decided


@pytest.fixture
def writer() -> Any:
    started = GroupCommitWriter(memory_app(), clock=FixedClock(NOW)).start()
    yield started
    started.stop()


def request_events(writer: GroupCommitWriter, request_id: str) -> list[Any]:
    return list(writer.app.events.get(request_aggregate_id(request_id)))


def admitted(writer: GroupCommitWriter) -> str:
    project = priced_project(writer)
    facts = request_facts(project, stream=True)
    writer.execute(admit_request(facts))
    return facts.request_id


def test_a_settlement_carrying_the_first_chunk_records_it_first_with_its_own_time(
    writer: GroupCommitWriter,
) -> None:
    request_id = admitted(writer)
    batches = writer.stats["batches"]
    command = complete_request(request_id, (50, 50))
    writer.execute(replace(command, first_chunk=c.FirstChunk(120, FIRST_AT)))
    assert writer.stats["batches"] == batches + 1  # one command, one commit
    *_, streaming, completed = request_events(writer, request_id)
    assert isinstance(streaming, Request.StreamingStarted)
    assert (streaming.first_chunk_ms, streaming.started_at) == (120, FIRST_AT)
    assert isinstance(completed, Request.Completed)


def test_a_first_chunk_already_recorded_is_not_recorded_again(writer: GroupCommitWriter) -> None:
    request_id = admitted(writer)
    writer.execute(c.MarkStreaming(request_id, 80, started_at=FIRST_AT))
    command = complete_request(request_id, (50, 50))
    writer.execute(replace(command, first_chunk=c.FirstChunk(80, FIRST_AT)))
    events = request_events(writer, request_id)
    started = [e for e in events if isinstance(e, Request.StreamingStarted)]
    assert len(started) == 1 and started[0].started_at == FIRST_AT
    assert isinstance(events[-1], Request.Completed)


def test_a_failure_after_the_first_chunk_records_it_before_the_failure(
    writer: GroupCommitWriter,
) -> None:
    request_id = admitted(writer)
    failure = upstream_failure(request_id)
    writer.execute(
        replace(
            failure,
            after_first_chunk=True,
            delivered_chunks=2,
            first_chunk=c.FirstChunk(40, FIRST_AT),
        )
    )
    *_, streaming, failed = request_events(writer, request_id)
    assert isinstance(streaming, Request.StreamingStarted) and streaming.first_chunk_ms == 40
    assert isinstance(failed, Request.Failed)


@dataclass
class FakeWriter:
    clock: FixedClock = field(default_factory=lambda: FixedClock(NOW))
    submitted: list[Any] = field(default_factory=list)

    def submit(self, command: Any) -> None:
        self.submitted.append(command)


@dataclass
class FakeServices:
    writer: FakeWriter = field(default_factory=FakeWriter)


def mark_then_take(
    monkeypatch: pytest.MonkeyPatch, *, stream_s_before_end: float
) -> tuple[c.FirstChunk | None, list[Any]]:
    """A mark made at a first chunk (timer 50 ms), taken by the settlement after the stream
    ran `stream_s_before_end`: what the settlement got, and every command submitted until
    well after the timer would have fired."""
    monkeypatch.setattr(stream_module, "FIRST_CHUNK_RECORD_AFTER_S", 0.05)

    async def run() -> tuple[c.FirstChunk | None, list[Any]]:
        services = FakeServices()
        mark = FirstChunkMark(services, "lg_req_s", 7)
        await asyncio.sleep(stream_s_before_end)
        taken = mark.take()
        await asyncio.sleep(0.15)  # past the timer, had it not been cancelled
        return taken, services.writer.submitted

    return asyncio.run(run())


def test_a_short_stream_leaves_its_first_chunk_to_the_settlement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken, submitted = mark_then_take(monkeypatch, stream_s_before_end=0.0)
    assert taken == c.FirstChunk(7, NOW)
    assert submitted == []  # the timer was cancelled


def test_a_long_stream_records_its_first_chunk_on_its_own_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken, submitted = mark_then_take(monkeypatch, stream_s_before_end=0.15)
    assert taken is None  # the settlement carries nothing: it was recorded already
    assert submitted == [c.MarkStreaming("lg_req_s", 7, started_at=NOW)]
