"""What a view runs: a projection transaction's cursor that records every statement (and
its parameters), and a view replayed from zero as one batch through it."""

from __future__ import annotations

from typing import Any

from projections.db import ReadStore
from projections.runner import ProjectionRunner


class CountingCursor:
    """The transaction's cursor, recording every statement it is given with its parameters."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.statements: list[str] = []
        self.params: list[Any] = []

    def execute(self, sql: Any, params: Any = ()) -> Any:
        self.statements.append(str(sql))
        self.params.append(params)
        return self.inner.execute(sql, params)

    def executemany(self, sql: Any, rows: Any) -> Any:
        self.statements.append(str(sql))
        self.params.append(rows)
        return self.inner.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def replayed_as_one_batch(
    runner: ProjectionRunner, store: ReadStore, name: str
) -> tuple[CountingCursor, list[Any]]:
    """View `name` reset and the whole log applied to it as one batch: the cursor that saw
    its statements, and the events it handles."""
    view = next(each for each in runner.views if each.name == name)
    decoded = [
        (n.id, n, runner.app.mapper.to_domain_event(n))
        for n in runner.app.recorder.select_notifications(start=1, limit=10_000)
    ]
    with store.transaction() as tx:
        view.reset(tx)
        tx.execute("UPDATE lg_tracking SET position = 0 WHERE view = %s", (name,))
    with store.transaction() as tx:
        counting = CountingCursor(tx.cursor)
        tx.cursor = counting
        runner._apply_view(tx, view, decoded, read_from=0)
    return counting, [event for _, _, event in decoded if view.handles(event)]
