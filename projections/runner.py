"""Follows the event log and keeps every view up to date.

Reads `recorder.select_notifications` (works on SQLite and PostgreSQL alike), decodes each
notification once, and for each view applies the events past its tracking position and
moves the position in the same transaction. Several runners (the gateway's and a
projection worker's) may run at once: the tracking row is locked for the transaction, and
a view only applies events beyond the position it reads under that lock.

Apart from the views, each runner keeps its own follower position over the log
(`follow_position`, in memory, starting at the log head when the process starts) and hands
every event past it to `on_notification`, so the process can drop cached copies of what
changed. That position never depends on the shared view tracking: when another process has
already projected an event, this process still sees it (once) and evicts its caches.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from domain.application import LedgerApplication
from projections.base import View
from projections.db import ReadStore, Tx

log = logging.getLogger("ledgergate.projections")

NOTIFICATIONS_PER_BATCH = 1000
POLL_INTERVAL_S = 0.05


class ProjectionRunner:
    def __init__(
        self,
        app: LedgerApplication,
        store: ReadStore,
        views: Sequence[View],
        *,
        on_notification: Callable[[Any], None] | None = None,
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
        self._decoded_recently: dict[int, Any] = {}
        # Without views: the position every view has reached, as another process writes
        # them (read once per poll by the runner thread, so waiting readers never query).
        self.shared_views_position = 0
        # Read-your-writes waiters on event loops: (position, loop, future). Woken by the
        # runner thread when the position is reached; no thread is held while waiting.
        self._async_waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._waiters_lock = threading.Lock()
        self._wake = threading.Event()
        self._advanced = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.errors = 0

    # --- tracking -------------------------------------------------------------------------

    def _ensure_tracking(self) -> None:
        with self.store.transaction() as tx:
            for view in self.views:
                tx.execute(
                    "INSERT INTO lg_tracking (view, position) VALUES (%s, 0) ON CONFLICT (view) DO NOTHING",
                    (view.name,),
                )

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
            self.shared_views_position = self.views_position()
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
            recent = self._decoded_recently
            decoded = [
                (n.id, n, recent.get(n.id) or self.app.mapper.to_domain_event(n))
                for n in notifications
            ]
            for view in self.views:
                with self.store.transaction() as tx:
                    self._apply_view(tx, view, decoded)
            last = decoded[-1][0]
            self._set_position(last)
            if self.progress is not None:
                self.progress(last, target)
            if len(notifications) < NOTIFICATIONS_PER_BATCH:
                break
        return self.position

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
            notifications = self.app.recorder.select_notifications(
                start=self.follow_position, limit=NOTIFICATIONS_PER_BATCH, inclusive_of_start=False
            )
            if not notifications:
                return
            # Kept for the views' pass, which usually reads the same batch right after.
            self._decoded_recently = {}
            for notification in notifications:
                try:
                    event = self.app.mapper.to_domain_event(notification)
                except Exception:  # one undecodable event must not stop the caches following
                    self.errors += 1
                    log.exception("could not decode notification %s", notification.id)
                    continue
                self._decoded_recently[notification.id] = event
                if self.on_notification is not None:
                    try:
                        self.on_notification(event)
                    except Exception:
                        self.errors += 1
                        log.exception("cache eviction failed for notification %s", notification.id)
            self.follow_position = notifications[-1].id
            if not self.views:
                self._set_position(self.follow_position)
            if len(notifications) < NOTIFICATIONS_PER_BATCH:
                return

    def views_position(self) -> int:
        """The position every view in the read store has reached (whoever writes them)."""
        positions = self.positions()
        return min(positions.values()) if positions else 0

    def _apply_view(self, tx: Tx, view: View, decoded: list[tuple[int, Any, Any]]) -> None:
        lock = " FOR UPDATE" if self.store.dialect == "postgres" else ""
        row = tx.execute(
            f"SELECT position FROM lg_tracking WHERE view = %s{lock}", (view.name,)
        ).fetchone()
        current = int(row["position"]) if row else 0
        last = current
        for position, _, event in decoded:
            if position <= current:
                continue  # already applied: replaying it is a no-op
            if view.handles(event):
                view.apply(tx, event, position)
            last = position
        if last != current:
            tx.execute("UPDATE lg_tracking SET position = %s WHERE view = %s", (last, view.name))

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
        self.position = 0
        return self.catch_up()

    # --- running in the background --------------------------------------------------------

    def poke(self) -> None:
        self._wake.set()

    def start(self, poll_interval_s: float = POLL_INTERVAL_S) -> ProjectionRunner:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run,
                args=(poll_interval_s,),
                name="ledgergate-projections",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self, poll_interval_s: float) -> None:
        backoff = poll_interval_s
        while not self._stopping:
            try:
                self.catch_up()
                backoff = poll_interval_s
            except Exception:  # keep following the log; the error is logged, not swallowed
                self.errors += 1
                log.exception("projection catch-up failed; retrying")
                backoff = min(backoff * 2, 5.0)
            self._wake.wait(backoff)
            self._wake.clear()

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
            await asyncio.to_thread(self.catch_up)
            if not self.views:
                self.shared_views_position = self.views_position()
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


def default_views() -> list[View]:
    from projections.audit import AuditView
    from projections.balances import BalancesView
    from projections.ledger_entries import LedgerEntriesView, ReconciliationsView
    from projections.pricing import PricingHistoryView
    from projections.router_stats import RouterStatsView
    from projections.usage import UsageView

    return [
        AuditView(),
        BalancesView(),
        RouterStatsView(),
        UsageView(),
        PricingHistoryView(),
        LedgerEntriesView(),
        ReconciliationsView(),
    ]
