"""Follows the event log and keeps every view up to date.

Reads `recorder.select_notifications` (works on SQLite and PostgreSQL alike), decodes each
notification once, and for each view applies the events past its tracking position and
moves the position in the same transaction. Several runners (the gateway's and a
projection worker's) may run at once: the tracking row is locked for the transaction, and
a view only applies events beyond the position it reads under that lock.
"""

from __future__ import annotations

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
        self._wake = threading.Event()
        self._advanced = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.errors = 0

    # --- tracking -------------------------------------------------------------------------

    def _ensure_tracking(self) -> None:
        ensure_tracking(self.store, self.views)

    def positions(self) -> dict[str, int]:
        with self.store.transaction(write=False) as tx:
            rows = tx.execute("SELECT view, position FROM lg_tracking").fetchall()
        return {row["view"]: int(row["position"]) for row in rows}

    def view_position(self, name: str) -> int:
        return self.positions().get(name, 0)

    # --- catching up ----------------------------------------------------------------------

    def catch_up(self) -> int:
        """Apply everything recorded so far. Returns the lowest view position."""
        if not self.views:
            return self._follow()
        self._ensure_tracking()
        target = self.app.recorder.max_notification_id() or 0
        while True:
            positions = self.positions()
            lowest = min((positions.get(v.name, 0) for v in self.views), default=0)
            notifications = self.app.recorder.select_notifications(
                start=lowest, limit=NOTIFICATIONS_PER_BATCH, inclusive_of_start=False
            )
            if not notifications:
                break
            decoded = [(n.id, n, self.app.mapper.to_domain_event(n)) for n in notifications]
            for view in self.views:
                with self.store.transaction() as tx:
                    self._apply_view(tx, view, decoded)
            if self.on_notification is not None:
                for _, _notification, event in decoded:
                    self.on_notification(event)
            last = decoded[-1][0]
            self._set_position(last)
            if self.progress is not None:
                self.progress(last, target)
            if len(notifications) < NOTIFICATIONS_PER_BATCH:
                break
        return self.position

    def _follow(self) -> int:
        """Follower mode (no views: another process writes them): only watch the log, so
        caches can drop what other processes changed."""
        while True:
            notifications = self.app.recorder.select_notifications(
                start=self.position, limit=NOTIFICATIONS_PER_BATCH, inclusive_of_start=False
            )
            if not notifications:
                return self.position
            if self.on_notification is not None:
                for notification in notifications:
                    self.on_notification(self.app.mapper.to_domain_event(notification))
            self._set_position(notifications[-1].id)

    def views_position(self) -> int:
        """The position every view in the read store has reached (whoever writes them)."""
        positions = self.positions()
        return min(positions.values()) if positions else 0

    def _apply_view(self, tx: Tx, view: View, decoded: list[tuple[int, Any, Any]]) -> None:
        apply_by_position(tx, view, decoded, locked_view_position(tx, view))

    def _set_position(self, position: int) -> None:
        with self._advanced:
            if position > self.position:
                self.position = position
            self._advanced.notify_all()

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
    lock = " FOR UPDATE" if tx.store.dialect == "postgres" else ""
    row = tx.execute(
        f"SELECT position FROM lg_tracking WHERE view = %s{lock}", (view.name,)
    ).fetchone()
    return int(row["position"]) if row else 0


def apply_by_position(
    tx: Tx, view: View, decoded: Sequence[tuple[int, Any, Any]], current: int
) -> int:
    """Apply the (position, _, event) entries past the view's position `current` and move
    the position in the same transaction. An entry at or below the position reached so far
    is skipped: replays (and a feed's duplicates) are no-ops. Returns the new position."""
    last = current
    for position, _, event in decoded:
        if position <= last:
            continue  # already applied: replaying it is a no-op
        if view.handles(event):
            view.apply(tx, event, position)
        last = position
    if last != current:
        tx.execute("UPDATE lg_tracking SET position = %s WHERE view = %s", (last, view.name))
    return last


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
