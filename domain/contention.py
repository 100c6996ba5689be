"""Which aggregates a command contends for across processes.

Every money limit (balance, per-key daily budget, monthly quota, and the budgets other
capabilities add there) lives on the Account aggregate: it is the one consistency boundary
for money, and the one aggregate that several processes write at the same time. The
group-commit writer (domain/writer.py) serialises its decisions on these aggregates across
processes with an injected lock strategy (gateway/write_locks.py on PostgreSQL), taken
before it decides a batch; this module says, for a command, which Account(s) to lock.

The rule is deliberately generic, so a command added later is covered without a change
here: a command naming a project contends for that project's account; a command naming a
request contends for the account the request reserved on. A command this rule misses is
still exact (the event store's optimistic concurrency refuses a stale write and the
writer retries it against fresh state); it is only slower under contention.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from domain import commands as c
from domain.account import Account
from domain.ids import MODE_LIVE, MODE_TEST, account_id, request_aggregate_id

# The aggregate types kept exact by the cross-process lock: the writer catches its cached
# copies up from the store when it takes their lock, instead of dropping them.
CONTENDED_TYPES: tuple[type[Any], ...] = (Account,)

# Request-scoped commands that never touch the request's account: no lock needed.
_REQUEST_ONLY: tuple[type[c.Command], ...] = (c.ExtendDeadline, c.MarkStreaming, c.JournalUsage)


def contended_aggregates(command: c.Command, load: Callable[[UUID], Any]) -> frozenset[UUID]:
    """The ids of the Accounts `command` may change. `load` finds an aggregate by id (the
    writer's cache, else the store), used to learn a request's account."""
    if isinstance(command, c.AdmitRequest):
        facts = command.facts
        if facts.project_id is None:
            return frozenset()
        return frozenset({account_id(facts.project_id, facts.mode)})
    if isinstance(command, c.TopUp):
        return frozenset({account_id(command.project_id, MODE_TEST if command.test else MODE_LIVE)})
    if isinstance(command, c.RecordReconciliation):
        if command.adjust_project_id is None:
            return frozenset()
        return frozenset({account_id(command.adjust_project_id)})
    if isinstance(command, _REQUEST_ONLY):
        return frozenset()
    request_id = getattr(command, "request_id", None)
    if isinstance(request_id, str):
        request = load(request_aggregate_id(request_id))
        project_id = getattr(request, "project_id", None)
        if not isinstance(project_id, UUID):
            return frozenset()
        return frozenset({account_id(project_id, getattr(request, "mode", MODE_LIVE))})
    project_id = getattr(command, "project_id", None)
    if isinstance(project_id, UUID):
        return frozenset({account_id(project_id)})
    return frozenset()
