"""Progress bars for long CLI commands (rebuild, reconcile, export, verify, …), on stderr.

    with progress_bar("replaying events") as advance:
        runner = ProjectionRunner(app, store, views, progress=advance)   # advance(done, total)
        runner.rebuild()

`advance(done, total)` sets the absolute progress (`total` may be None or change: a log
that grows while it is replayed). On a terminal it is a live rich bar; otherwise (CI, a
pipe) one final line when the work ends, so logs stay short. stdout is never touched: the
commands print their JSON result there.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

Advance = Callable[[int, int | None], None]


@contextmanager
def progress_bar(
    description: str, *, total: int | None = None, stream: IO[str] | None = None
) -> Iterator[Advance]:
    console = Console(file=stream or sys.stderr, stderr=stream is None)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    task = bar.add_task(description, total=total)

    def advance(done: int, new_total: int | None = None) -> None:
        if new_total is not None:
            bar.update(task, total=max(new_total, done))
        bar.update(task, completed=done)

    if console.is_terminal:
        with bar:
            yield advance
        return
    yield advance  # not a terminal: no live redraws, one summary line at the end
    state = bar.tasks[0]
    if not state.completed and not state.total:
        return  # nothing to do was done: no line
    shown_total = f" / {int(state.total):,}" if state.total is not None else ""
    console.print(f"{description}: {int(state.completed):,}{shown_total} done", highlight=False)
