"""Many request lifecycles written straight through the group-commit writer (no HTTP): a
store with thousands of events in seconds, with every audit status the view knows."""

from __future__ import annotations

from domain import commands as c
from domain.application import open_application
from domain.writer import GroupCommitWriter
from tests.support.builders import (
    admit_request,
    complete_request,
    priced_project,
    request_facts,
    run_callers,
    upstream_failure,
)

CALLERS = 16


def write_lifecycles(database_url: str | None, data_dir: str, lifecycles: int) -> int:
    """Write `lifecycles` requests (completed, streamed, failed, rejected in turn) on one
    project; returns the last position in the log."""
    app = open_application(database_url, data_dir)
    writer = GroupCommitWriter(app).start()
    try:
        project_id = priced_project(writer, name="workload", balance=10**6, reference="w")
        errors: list[BaseException] = []

        def caller(index: int) -> None:
            try:
                for number in range(index, lifecycles, CALLERS):
                    kind = number % 8
                    facts = request_facts(project_id, actor_id="workload-user", stream=kind == 1)
                    if kind == 7:
                        writer.execute(
                            c.RecordRejection(
                                facts, 400, "invalid_request", "invalid_request_error", "bad body"
                            )
                        )
                        continue
                    writer.execute(admit_request(facts))
                    if kind == 1:
                        writer.execute(c.MarkStreaming(facts.request_id, first_chunk_ms=3))
                    if kind == 6:
                        writer.execute(
                            upstream_failure(facts.request_id, message="boom", latency_ms=5)
                        )
                        continue
                    writer.execute(complete_request(facts.request_id, (50, 50)))
            except BaseException as error:  # surfaced below, not swallowed
                errors.append(error)

        run_callers(CALLERS, caller)
        if errors:
            raise errors[0]
        return app.recorder.max_notification_id() or 0
    finally:
        writer.stop()
        app.close()
