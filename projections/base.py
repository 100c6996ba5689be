"""What a view is: a name, the tables it owns, and how it applies one event.

The runner calls `apply` inside a transaction that also moves the view's tracking
position, so a view's rows and its position always agree, and replaying a position that
was already applied is a no-op.
"""

from __future__ import annotations

from typing import Any

from projections.db import Tx


class View:
    name: str = ""
    tables: tuple[str, ...] = ()
    # Event classes this view reacts to; others are skipped cheaply.
    event_types: tuple[type[Any], ...] = ()

    def handles(self, event: Any) -> bool:
        return isinstance(event, self.event_types)

    def apply(self, tx: Tx, event: Any, position: int) -> None:
        raise NotImplementedError

    def reset(self, tx: Tx) -> None:
        for table in self.tables:
            tx.execute(f"DELETE FROM {table}")  # noqa: S608 - table names are our constants
