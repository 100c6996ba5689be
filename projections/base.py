"""What a view is: a name, the tables it owns, and one handler per event class it reads.

A view declares its handlers with `@reads(EventClass, ...)`; the classes's table of
handlers (`handlers`: event class → method name) is built once, when the class is defined,
and `event_types` — the events the view reads — is that table's keys. The runner asks
`handles(event)` and calls `apply`, which dispatches on the event's class: no isinstance
ladder, and a view states in one place which events it reads.

The runner calls `apply` inside a transaction that also moves the view's tracking
position, so a view's rows and its position always agree, and replaying a position that
was already applied is a no-op.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

from projections.db import Tx

Handler = TypeVar("Handler", bound=Callable[..., None])
_READS_ATTRIBUTE = "_lg_reads"


def reads(*event_classes: type[Any]) -> Callable[[Handler], Handler]:
    """Mark a view method as the handler of these event classes: `(self, tx, event, position)`."""

    def mark(method: Handler) -> Handler:
        setattr(method, _READS_ATTRIBUTE, (*getattr(method, _READS_ATTRIBUTE, ()), *event_classes))
        return method

    return mark


class View:
    name: str = ""
    tables: tuple[str, ...] = ()
    # Event class → name of the method that applies it (built by __init_subclass__; a
    # subclass may override a handler by defining a method of the same name).
    handlers: ClassVar[dict[type[Any], str]] = {}
    # The event classes this view reads (the keys of `handlers`); others are skipped cheaply.
    event_types: ClassVar[tuple[type[Any], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: dict[type[Any], str] = {}
        for klass in reversed(cls.__mro__):  # bases first, so a subclass's marks win
            own: dict[type[Any], str] = {}
            for attribute, value in vars(klass).items():
                for event_class in getattr(value, _READS_ATTRIBUTE, ()):
                    if own.setdefault(event_class, attribute) != attribute:
                        raise TypeError(f"{klass.__name__} reads {event_class.__qualname__} twice")
            table.update(own)
        cls.handlers = table
        cls.event_types = tuple(table)

    def handles(self, event: Any) -> bool:
        return type(event) in self.handlers

    def apply(self, tx: Tx, event: Any, position: int) -> None:
        handler = self.handlers.get(type(event))
        if handler is not None:
            getattr(self, handler)(tx, event, position)

    def prepare(self, tx: Tx, events: Sequence[Any]) -> None:
        """Called once with the events a batch will apply (past the view's position, in
        order) before the first of them: a view may read in one statement what it would
        otherwise look up event by event. What it learns holds until `flush` or `discard`."""

    def flush(self, tx: Tx) -> None:
        """Write what `apply` buffered. `apply_by_position` calls it before it moves the
        view's position (and after each event when it applies them one by one), so a view
        may write a batch's rows in one statement; most write as they apply."""

    def discard(self) -> None:
        """Forget what `apply` buffered: the transaction it was meant for failed."""

    def reset(self, tx: Tx) -> None:
        for table in self.tables:
            tx.execute(f"DELETE FROM {table}")  # noqa: S608 - table names are our constants
