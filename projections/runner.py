"""Follows the event log and keeps every view up to date.

Reads `recorder.select_notifications` (works on SQLite and PostgreSQL alike), decodes each
notification once, and for each view applies the events past its tracking position and
moves the position in the same transaction. Several runners (the gateway's and a
projection worker's) may run at once: the tracking row is locked for the transaction, and
a view only applies events beyond the position it reads under that lock.

Apart from the views, each runner keeps its own follower position over the log
(`follow_position`, in memory, starting at the log head when the process starts) and hands
every event past it to `on_notification` as (aggregate id, version), so the process can drop
cached copies of what changed. That position never depends on the shared view tracking:
when another process has already projected an event, this process still sees it (once) and
evicts its caches. The follower hands over the originator id and version, never a decoded
event, and on PostgreSQL it reads just those columns: eviction needs no more, and decoding
every event of every process in every serving process was a twentieth of its CPU.

A view never stops on an event it cannot apply (a value its table refuses, a bug in the
view, an event this version cannot decode). The batch is first applied in one go (the fast
path); if that fails with anything but a storage outage, it is applied again event by event,
each in a savepoint, and an event that still fails is rolled back alone, recorded in
`lg_dead_letters` (view, position, topic, error class — never the event's data or the
error's text, which may carry a client's value), logged, and passed over. The view's
position then moves on, so every other request's reads stay current. Operators list the
dead letters (`ledgergate projections dead-letters`, `GET /v1/admin/projections/dead-letters`);
`projections rebuild` clears a view's dead letters and replays, recording again whatever
still fails. A storage outage (connection lost, database locked) is not a dead letter: the
batch is retried whole, later.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from domain.application import LedgerApplication
from projections.audit import AuditView
from projections.auth_failures import AuthFailuresView
from projections.balances import BalancesView
from projections.base import View
from projections.db import ReadStore, Tx, iso, page_limit
from projections.following import BackgroundFollower
from projections.ledger_entries import LedgerEntriesView, ReconciliationsView
from projections.pricing import PricingHistoryView
from projections.project_events import ProjectEventsView
from projections.router_stats import RouterStatsView
from projections.traces import TraceSpansView
from projections.usage import UsageView

log = logging.getLogger("ledgergate.projections")

NOTIFICATIONS_PER_BATCH = 1000
POLL_INTERVAL_S = 0.05
DEAD_LETTERS_PAGE_MAX = 1000
# Errors that say "storage is unavailable now", not "this event cannot be applied": the batch
# is retried whole later instead of being dead-lettered. (sqlite3's InterfaceError is a bad
# parameter, deterministic; psycopg's is a broken connection.)
_TRANSIENT_ERROR_NAMES = frozenset({"OperationalError", "PoolTimeout"})


class Undecodable:
    """A notification this process could not turn into a domain event."""

    def __init__(self, topic: str, error: BaseException) -> None:
        self.topic = topic
        self.error = error


def is_transient(error: BaseException) -> bool:
    if isinstance(error, OSError):
        return True
    for klass in type(error).__mro__:
        if klass.__name__ in _TRANSIENT_ERROR_NAMES:
            return True
        if klass.__name__ == "InterfaceError" and klass.__module__.startswith("psycopg"):
            return True
    return False


class ProjectionRunner(BackgroundFollower):
    thread_name = "ledgergate-projections"
    failure_message = "projection catch-up failed; retrying"
    log = log

    def __init__(
        self,
        app: LedgerApplication,
        store: ReadStore,
        views: Sequence[View],
        *,
        on_notification: Callable[[Any, int], None] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.views = list(views)
        self.on_notification = on_notification
        self.progress = progress
        self.position = 0
        # This process's own pass over the log for its caches; None until the first catch_up
        # (which starts it at the head: nothing is cached before the process starts).
        self.follow_position: int | None = None
        # Without views: the position every view has reached, as another process writes
        # them (read once per poll by the runner thread, so waiting readers never query).
        self.shared_views_position = 0
        self._views_read_at = 0.0  # monotonic time of the last read of it
        # Read-your-writes waiters on event loops: (position, loop, future). Woken by the
        # runner thread when the position is reached; no thread is held while waiting.
        self._async_waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._waiters_lock = threading.Lock()
        self._advanced = threading.Condition()
        self._init_following()
        self.dead_letters = 0  # recorded by this runner since it started
        self._tracking_ensured = False

    # --- tracking -------------------------------------------------------------------------

    def _ensure_tracking(self) -> None:
        """The views' tracking rows, once per runner: they are never deleted (a rebuild
        moves them to 0), and every pass used to insert them again in a transaction of
        its own."""
        if not self._tracking_ensured:
            ensure_tracking(self.store, self.views)
            self._tracking_ensured = True

    def positions(self) -> dict[str, int]:
        with self.store.transaction(write=False) as tx:
            rows = tx.execute("SELECT view, position FROM lg_tracking").fetchall()
        return {row["view"]: int(row["position"]) for row in rows}

    def view_position(self, name: str) -> int:
        return self.positions().get(name, 0)

    # --- catching up ----------------------------------------------------------------------

    def catch_up(self) -> int:
        """Hand every new event to `on_notification`, then apply everything recorded so far
        to the views. Returns the lowest view position (the follower position without views)."""
        self._follow()
        if not self.views:
            if self._views_position_due():
                self.shared_views_position = self.views_position()
                self._views_read_at = time.monotonic()
                self._wake_async_waiters(self.shared_views_position)
            return self.position
        self._ensure_tracking()
        target = self.app.recorder.max_notification_id() or 0
        while True:
            positions = self.positions()
            lowest = min((positions.get(v.name, 0) for v in self.views), default=0)
            # Another process may have applied these already: readers here see it at once.
            self._set_position(lowest)
            notifications = self.app.recorder.select_notifications(
                start=lowest, limit=NOTIFICATIONS_PER_BATCH, inclusive_of_start=False
            )
            if not notifications:
                break
            decoded = [(n.id, n, self._decode(n)) for n in notifications]
            self._apply_batch(decoded, read_from=lowest)
            last = decoded[-1][0]
            self._set_position(last)
            if self.progress is not None:
                self.progress(last, target)
            if len(notifications) < NOTIFICATIONS_PER_BATCH:
                break
        return self.position

    def _apply_batch(self, decoded: list[tuple[int, Any, Any]], *, read_from: int) -> None:
        """Every view applies the batch, all in ONE transaction with their positions: one
        commit per batch instead of one per view (ten here), which was most of what the
        projection worker cost the database per batch. If some view cannot apply some event,
        nothing of the batch is kept and each view applies it again in its own transaction;
        the failing one event by event in savepoints, so that event is recorded as a dead
        letter and passed over alone and the other views are not held back by it."""
        try:
            with self.store.transaction() as tx:
                for view in self.views:
                    self._apply_view(tx, view, decoded, read_from=read_from)
            return
        except Exception as error:
            if is_transient(error):
                raise
        for view in self.views:
            try:
                with self.store.transaction() as tx:
                    self._apply_view(tx, view, decoded, read_from=read_from)
            except Exception as error:
                if is_transient(error):
                    raise
                with self.store.transaction() as tx:
                    self._apply_view(tx, view, decoded, read_from=read_from, guarded=True)

    def _views_position_due(self) -> bool:
        """Without views, whether this pass reads the views' shared position. The runner
        thread may be poked early (a waiting reader, a test), and a view the projection
        worker writes cannot have reached a commit made a moment ago: so the thread reads the
        position on its poll interval, or at once when a reader waits for one. Any other
        caller (a direct catch-up) always reads it."""
        if threading.current_thread() is not self._thread:
            return True
        if self._async_waiters:
            return True
        return time.monotonic() - self._views_read_at >= self.poll_interval_s

    def _follow(self) -> None:
        """This process's own pass over the log: every event past `follow_position` goes to
        `on_notification` (caches drop what any process changed), whoever projected it."""
        if self.on_notification is None and self.views:
            return  # a projection worker has no caches to keep fresh
        if self.follow_position is None:
            self.follow_position = self.app.recorder.max_notification_id() or 0
            if not self.views:
                self._set_position(self.follow_position)
            return
        while True:
            originators = self._originators(self.follow_position)
            if not originators:
                return
            if self.on_notification is not None:
                for position, aggregate_id, version in originators:
                    try:
                        self.on_notification(aggregate_id, version)
                    except Exception:
                        self.errors += 1
                        log.exception("cache eviction failed for notification %s", position)
            self.follow_position = originators[-1][0]
            if not self.views:
                self._set_position(self.follow_position)
            if len(originators) < NOTIFICATIONS_PER_BATCH:
                return

    def _originators(self, start: int) -> list[tuple[int, Any, int]]:
        """(position, aggregate id, version) of the next events past `start`: the serving
        recorder on PostgreSQL reads just those three columns (gateway/event_store.py), any
        other recorder reads whole notifications."""
        select = getattr(self.app.recorder, "select_originators", None)
        if select is not None:
            return list(select(start, NOTIFICATIONS_PER_BATCH))
        notifications = self.app.recorder.select_notifications(
            start=start, limit=NOTIFICATIONS_PER_BATCH, inclusive_of_start=False
        )
        return [(n.id, n.originator_id, n.originator_version) for n in notifications]

    def views_position(self) -> int:
        """The position every view in the read store has reached (whoever writes them)."""
        positions = self.positions()
        return min(positions.values()) if positions else 0

    def _decode(self, notification: Any) -> Any:
        try:
            return self.app.mapper.to_domain_event(notification)
        except Exception as error:
            if is_transient(error):
                raise
            return Undecodable(str(notification.topic), error)

    def _apply_view(
        self,
        tx: Tx,
        view: View,
        decoded: list[tuple[int, Any, Any]],
        *,
        read_from: int,
        guarded: bool = False,
    ) -> None:
        current = locked_view_position(tx, view)
        if current < read_from:
            # The batch was read past this view's position: it was moved back (a rebuild)
            # since. Applying the batch would skip what lies between; the next round reads
            # from the view's own position instead.
            return
        apply_by_position(
            tx, view, decoded, current, dead_letter=self._dead_letter, guarded=guarded
        )

    def _dead_letter(
        self, tx: Tx, view: View, position: int, notification: Any, error: BaseException
    ) -> None:
        self.dead_letters += 1
        record_dead_letter(
            tx,
            view,
            position,
            str(getattr(notification, "topic", "")),
            getattr(notification, "originator_id", None),
            error,
        )

    def _set_position(self, position: int) -> None:
        with self._advanced:
            if position > self.position:
                self.position = position
            self._advanced.notify_all()
        if self.views:
            self._wake_async_waiters(self.position)

    def _wake_async_waiters(self, position: int) -> None:
        with self._waiters_lock:
            if not self._async_waiters:
                return
            ready = [w for w in self._async_waiters if w[0] <= position]
            self._async_waiters = [w for w in self._async_waiters if w[0] > position]
        for _, loop, future in ready:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # that loop has closed: nobody waits any more
                pass

    # --- rebuilding -----------------------------------------------------------------------

    def rebuild(self, names: Sequence[str] | None = None) -> int:
        """Drop the views' rows and replay the whole log into them."""
        self._ensure_tracking()
        chosen = [v for v in self.views if names is None or v.name in names]
        with self.store.transaction() as tx:
            for view in chosen:
                view.reset(tx)
                tx.execute("UPDATE lg_tracking SET position = 0 WHERE view = %s", (view.name,))
                tx.execute("DELETE FROM lg_dead_letters WHERE view = %s", (view.name,))
        self.position = 0
        return self.catch_up()

    # --- running in the background --------------------------------------------------------

    def start(self, poll_interval_s: float = POLL_INTERVAL_S) -> ProjectionRunner:
        return super().start(poll_interval_s)

    def views_position_known(self) -> int:
        """The views' position as this process last saw it (no query: for the event loop)."""
        return self.position if self.views else self.shared_views_position

    def reached(self, position: int) -> bool:
        """Whether every view has applied `position` (as far as this process knows)."""
        if self.views:
            return self.position >= position
        return self.shared_views_position >= position

    async def wait_for_async(self, position: int, timeout_s: float = 5.0) -> bool:
        """Read-your-writes on an event loop: wait until every view has applied `position`,
        at most `timeout_s`, without holding a worker thread (a waiter is a future the
        runner thread resolves). Returns whether the position was reached."""
        if self.reached(position):
            return True
        if self._thread is None:  # nobody follows the log in the background: catch up once
            await asyncio.to_thread(self.catch_up)  # which reads the shared views' position
            return self.reached(position)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiter = (position, loop, future)
        with self._waiters_lock:
            self._async_waiters.append(waiter)
        self.poke()
        try:
            if self.reached(position):  # reached between the check and the registration
                return True
            await asyncio.wait_for(future, timeout_s)
            return True
        except TimeoutError:
            return self.reached(position)
        finally:
            with self._waiters_lock:
                if waiter in self._async_waiters:
                    self._async_waiters.remove(waiter)

    def wait_for(self, position: int, timeout_s: float = 5.0) -> bool:
        """Read-your-writes: block until every view has applied `position`."""
        if not self.views:
            deadline = time.monotonic() + timeout_s
            while self.views_position() < position:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.02)
            return True
        if position <= self.position:
            return True
        self.poke()
        deadline = time.monotonic() + timeout_s
        with self._advanced:
            while self.position < position:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._advanced.wait(min(remaining, 0.05))
                if self._thread is None:
                    break
        if self.position < position and self._thread is None:
            self.catch_up()
        return self.position >= position


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# --- applying by position (the log runner above and the Kafka-fed projections share it) ---


def ensure_tracking(store: ReadStore, views: Sequence[View]) -> None:
    with store.transaction() as tx:
        for view in views:
            tx.execute(
                "INSERT INTO lg_tracking (view, position) VALUES (%s, 0) ON CONFLICT (view) DO NOTHING",
                (view.name,),
            )


def locked_view_position(tx: Tx, view: View) -> int:
    """The view's tracking position, locked for the transaction (PostgreSQL; SQLite's
    write transaction is exclusive already)."""
    return tx.tracked_position(view.name, lock=True)


def apply_by_position(
    tx: Tx,
    view: View,
    decoded: Sequence[tuple[int, Any, Any]],
    current: int,
    *,
    dead_letter: Callable[[Tx, View, int, Any, BaseException], None] | None = None,
    guarded: bool = False,
) -> int:
    """Apply the (position, notification, event) entries past the view's position `current`
    and move the position in the same transaction. An entry at or below the position reached
    so far is skipped: replays (and a feed's duplicates) are no-ops. Returns the new position.

    With `dead_letter`, an undecodable event is recorded through it and passed over; with
    `guarded` too, each event is applied in its own savepoint, and one the view cannot apply
    is rolled back alone and recorded the same way (never a transient storage error)."""
    last = current
    try:
        if type(view).prepare is not View.prepare:  # only the views that read ahead
            view.prepare(
                tx,
                [
                    event
                    for position, _, event in decoded
                    if position > current and not isinstance(event, Undecodable)
                ],
            )
        for position, notification, event in decoded:
            if position <= last:
                continue  # already applied: replaying it is a no-op
            if isinstance(event, Undecodable):
                if dead_letter is None:
                    raise event.error
                dead_letter(tx, view, position, notification, event.error)
            elif view.handles(event):
                if not guarded or dead_letter is None:
                    view.apply(tx, event, position)
                else:
                    tx.execute("SAVEPOINT lg_apply")
                    try:
                        view.apply(tx, event, position)
                        view.flush(tx)
                    except Exception as error:
                        view.discard()
                        if is_transient(error):
                            raise
                        tx.execute("ROLLBACK TO SAVEPOINT lg_apply")
                        dead_letter(tx, view, position, notification, error)
                    tx.execute("RELEASE SAVEPOINT lg_apply")
            last = position
        view.flush(tx)
    except BaseException:
        view.discard()
        raise
    if last != current:
        tx.execute("UPDATE lg_tracking SET position = %s WHERE view = %s", (last, view.name))
    return last


def default_views() -> list[View]:
    return [
        AuditView(),
        BalancesView(),
        RouterStatsView(),
        UsageView(),
        PricingHistoryView(),
        LedgerEntriesView(),
        ReconciliationsView(),
        AuthFailuresView(),
        ProjectEventsView(),
        TraceSpansView(),
    ]


def list_dead_letters(
    store: ReadStore, *, view: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The events views could not apply, newest first."""
    limit = page_limit(limit, DEAD_LETTERS_PAGE_MAX)
    where, params = ("WHERE view = %s", [view]) if view else ("", [])
    with store.transaction(write=False) as tx:
        rows = tx.execute(
            "SELECT view, position, topic, originator_id, error_class, error_code, recorded_at"
            f" FROM lg_dead_letters {where} ORDER BY position DESC, view LIMIT %s",  # noqa: S608
            (*params, limit),
        ).fetchall()
    return [{**row, "position": int(row["position"])} for row in rows]


def record_dead_letter(
    tx: Tx, view: View, position: int, topic: str, originator_id: Any, error: BaseException
) -> None:
    """`view` could not apply the event at `position`: log it (its class, never its data) and
    record it in lg_dead_letters once, whichever follower (the log's or Kafka's) met it."""
    error_class = type(error).__name__
    log.error(
        "view %s could not apply event %d (%s): %s; recorded as a dead letter and passed over",
        view.name,
        position,
        topic,
        error_class,
    )
    sqlstate = getattr(error, "sqlstate", None)
    tx.execute(
        "INSERT INTO lg_dead_letters (view, position, topic, originator_id, error_class,"
        " error_code, recorded_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (view, position) DO NOTHING",
        (
            view.name,
            position,
            topic,
            None if originator_id is None else str(originator_id),
            error_class,
            sqlstate if isinstance(sqlstate, str) else None,
            iso(datetime.now(UTC)),
        ),
    )
