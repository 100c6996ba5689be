"""The group-commit writer as the gateway uses it: each awaited command is a span of the
request's trace ("admission commit", "settlement commit", …). domain/writer.py stays free of
OpenTelemetry; its on_committed hook feeds the batch and commit-latency metrics."""

from __future__ import annotations

from domain.commands import Command, Outcome
from domain.writer import GroupCommitWriter
from gateway.observability.core import commit_span


class ObservedWriter(GroupCommitWriter):
    async def execute_async(self, command: Command) -> Outcome:
        with commit_span(command):
            return await super().execute_async(command)
