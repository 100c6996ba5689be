"""Many request lifecycles written straight through the group-commit writer (no HTTP): a
store with thousands of events in seconds, with every audit status the view knows."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

from domain import commands as c
from domain.application import open_application
from domain.ids import new_request_id
from domain.writer import GroupCommitWriter

CALLERS = 16


def _facts(project_id: UUID, stream: bool) -> c.RequestFacts:
    at = datetime.now(UTC)
    return c.RequestFacts(
        new_request_id(),
        "chat.completions",
        project_id,
        None,
        "workload-user",
        "m",
        stream,
        1,
        10,
        None,
        None,
        None,
        None,
        at,
        at + timedelta(minutes=5),
    )


def write_lifecycles(database_url: str | None, data_dir: str, lifecycles: int) -> int:
    """Write `lifecycles` requests (completed, streamed, failed, rejected in turn) on one
    project; returns the last position in the log."""
    app = open_application(database_url, data_dir)
    writer = GroupCommitWriter(app).start()
    try:
        writer.execute(
            c.SetPrice(
                model="m",
                input_per_mtok=Decimal(1),
                output_per_mtok=Decimal(2),
                currency="USD",
                effective_from=datetime.now(UTC) - timedelta(days=1),
            )
        )
        project_id = UUID(writer.execute(c.CreateProject(name="workload")).value["project_id"])
        writer.execute(
            c.TopUp(project_id=project_id, amount=Decimal(10**6), currency="USD", reference="w")
        )
        errors: list[BaseException] = []

        def caller(index: int) -> None:
            try:
                for number in range(index, lifecycles, CALLERS):
                    kind = number % 8
                    facts = _facts(project_id, stream=kind == 1)
                    if kind == 7:
                        writer.execute(
                            c.RecordRejection(
                                facts, 400, "invalid_request", "invalid_request_error", "bad body"
                            )
                        )
                        continue
                    writer.execute(
                        c.AdmitRequest(
                            facts=facts,
                            route=c.Route("m", "openai", "m"),
                            estimated_input_tokens=100,
                            max_output_tokens=100,
                            fee_rate=Decimal("0.05"),
                        )
                    )
                    if kind == 1:
                        writer.execute(c.MarkStreaming(facts.request_id, first_chunk_ms=3))
                    if kind == 6:
                        writer.execute(
                            c.FailRequest(
                                facts.request_id, 502, "upstream_error", "api_error", "boom", 5
                            )
                        )
                        continue
                    writer.execute(
                        c.CompleteRequest(
                            request_id=facts.request_id,
                            usage=c.UsageReport(50, 50),
                            finish_reason="stop",
                            completion_chars=1,
                            completion_sha256=None,
                            latency_ms=1,
                            upstream_ms=1,
                        )
                    )
            except BaseException as error:  # surfaced below, not swallowed
                errors.append(error)

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(CALLERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return app.recorder.max_notification_id() or 0
    finally:
        writer.stop()
        app.close()
