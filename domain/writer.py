"""The group-commit writer: the designed write path.

Callers from many threads or coroutines submit commands; one writer thread takes whatever
has queued up, decides each command against in-memory aggregates, and saves all of the
batch's events in ONE transaction (`app.events.put(events)`). Each caller then gets its own
outcome, after its events are durable. The save runs on a saver thread while this thread
decides the next batch, or on this thread when nothing more is queued (the usual case below
saturation: a hand-off there and back was two thread wake-ups per commit). Because this
thread is the only writer of the aggregates it caches, a hot account never turns into an
optimistic-concurrency retry storm.

Failure handling:
- a domain error in one command fails that command only (handlers decide before they act);
- if the batch's save fails (a conflict with another process, a database error), every
  aggregate the batch touched is evicted and each command is retried on its own against
  freshly loaded state, up to CONFLICT_RETRIES_MAX times; a command that still fails gets
  the error;
- an unexpected exception inside a handler aborts the batch the same way, so no
  half-applied state is ever saved.

Several processes on one store (`serve --workers N`, replicas): each has its own writer, so
each caches the same hot Account and their saves would collide. With a lock strategy
(`locks=`, gateway/write_locks.py: PostgreSQL advisory locks), the writer first takes the
cross-process lock of every Account its batch contends for (domain/contention.py), catches
its cached copy up from the store (`events.get(id, gt=cached.version)`: only the few events
other processes recorded since), decides, saves, and keeps the lock while it has more work,
so a busy process pays for the lock once per busy period, not per batch. It keeps the locks
while no other process asks for them (`AggregateLocks.wanted`): when one does, it lets go at
once if idle, or after LOCK_HOLD_S_MAX of holding if busy, so the other writer gets its turn;
an idle writer lets go after LOCK_IDLE_S_MAX in any case. An idle holder sleeps in one
`poll` on the lock session's socket (`AggregateLocks.fileno`: an ask arriving makes it
readable) and on a pipe that `submit` writes to while it lingers: it wakes for an ask or
for work, never on a timer (a poll every few ms was a thread wake-up, and a turn of the GIL
taken from the event loop, several times per request at concurrency 1).
Deadlock-free by construction: a writer only blocks on a lock while it holds none (it then
takes them in sorted order); while holding some it only *tries* the others, and on a
refusal lets go of everything and waits in order. The lock is for throughput, not for
exactness: a write outside it (a command the contention rule misses, a lost lock
connection) is still refused by the store's optimistic concurrency and retried.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import queue
import select
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError, RecordConflictError

from domain.application import LedgerApplication
from domain.clock import Clock, SystemClock
from domain.commands import Command, Outcome
from domain.contention import CONTENDED_TYPES, contended_aggregates
from domain.errors import DomainError
from domain.handlers import HANDLERS, UnitOfWork

log = logging.getLogger("ledgergate.writer")

BATCH_COMMANDS_MAX = 512
CACHE_AGGREGATES_MAX = 50_000
CONFLICT_RETRIES_MAX = 5
QUEUE_COMMANDS_MAX = 100_000
# How long a busy writer keeps its cross-process locks before it lets another process's
# writer have a turn: long enough to amortise a lock hand-over (a few round trips and a
# catch-up read) over many batches, short enough to add little to a waiting request.
LOCK_HOLD_S_MAX = 0.02
# How often an idle writer holding locks looks whether another process has asked for one,
# when its lock strategy has no descriptor to wait on (`AggregateLocks.fileno` is None);
# with one, an ask wakes it at once.
LOCK_LINGER_S = 0.003
# An idle writer lets go of its locks after this long even if nobody asked (an ask that was
# lost, a process that takes them without asking), and stops polling.
LOCK_IDLE_S_MAX = 1.0


class AggregateLocks(Protocol):
    """Cross-process mutual exclusion per aggregate id, injected from the infrastructure
    side (domain/ never talks to a database driver). Locks are held by this process until
    `release_all`; a crashed process's locks are freed by the server."""

    def try_acquire(self, aggregate_ids: Sequence[UUID]) -> bool:
        """All of them, without waiting, or none (False)."""
        ...

    def acquire(self, aggregate_ids: Sequence[UUID]) -> None:
        """All of them, in the given order, waiting as long as it takes (bounded by the
        strategy's own timeout, which raises)."""
        ...

    def wanted(self) -> bool:
        """Has another process asked for a lock this one holds? Without waiting."""
        ...

    def fileno(self) -> int | None:
        """A descriptor that becomes readable when an ask may have arrived (then `wanted`
        tells), for an idle writer to sleep on; None when there is none to watch (the
        writer then looks every LOCK_LINGER_S)."""
        ...

    def release_all(self) -> None: ...

    def close(self) -> None: ...


def _resolve(future: Future[Outcome], outcome: Outcome) -> None:
    """Answer a caller. A caller that gave up (its asyncio task was cancelled, e.g. the
    client hung up) may have cancelled its future; that must never reach the writer."""
    try:
        future.set_result(outcome)
    except InvalidStateError:
        pass


def _reject(future: Future[Outcome], error: BaseException) -> None:
    try:
        future.set_exception(error)
    except InvalidStateError:
        pass


def _done(function: Callable[[_Decided], bool], decided: _Decided) -> Future[bool]:
    """`function(decided)` run here, as a future the saver thread's would be."""
    future: Future[bool] = Future()
    try:
        future.set_result(function(decided))
    except Exception as error:
        future.set_exception(error)
    return future


class WriterStopped(Exception):
    pass


@dataclass(slots=True)
class _Pending:
    command: Command
    future: Future[Outcome]


class _BatchAborted(Exception):
    pass


@dataclass(slots=True)
class _Decided:
    """A batch decided in memory, waiting to be recorded by the saver thread."""

    batch: list[_Pending]
    results: list[tuple[_Pending, Any, BaseException | None]]
    events: list[Any]
    snapshots: list[Any]


class GroupCommitWriter:
    def __init__(
        self,
        app: LedgerApplication,
        *,
        clock: Clock | None = None,
        batch_commands_max: int = BATCH_COMMANDS_MAX,
        cache_aggregates_max: int = CACHE_AGGREGATES_MAX,
        on_saved: Callable[[int, list[Any]], None] | None = None,
        on_committed: Callable[[int, float, list[Any]], None] | None = None,
        locks: AggregateLocks | None = None,
        lock_hold_s_max: float = LOCK_HOLD_S_MAX,
        lock_linger_s: float = LOCK_LINGER_S,
        lock_idle_s_max: float = LOCK_IDLE_S_MAX,
    ) -> None:
        self.app = app
        self.clock = clock or SystemClock()
        self.batch_commands_max = batch_commands_max
        self.cache_aggregates_max = cache_aggregates_max
        # (position, domain events) of every durable save, in the saver thread before any
        # caller is answered: the process's own caches drop what it has just changed.
        self.on_saved = on_saved
        # (commands, seconds, events) of every durable transaction: metrics (gateway/observability).
        self.on_committed = on_committed
        self._queue: queue.Queue[_Pending | None] = queue.Queue(maxsize=QUEUE_COMMANDS_MAX)
        self._evictions: queue.SimpleQueue[tuple[UUID, int]] = queue.SimpleQueue()
        self._cache: OrderedDict[UUID, Any] = OrderedDict()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.last_position: int = 0
        self.locks = locks
        self.lock_hold_s_max = lock_hold_s_max
        self.lock_linger_s = lock_linger_s
        self.lock_idle_s_max = lock_idle_s_max
        self._held: set[UUID] = set()
        self._held_since = 0.0
        # While the writer lingers with locks held it sleeps in `poll`, not on the queue:
        # `submit` then also writes a byte here to wake it.
        self._lingering = False
        self._wake_r, self._wake_w = -1, -1
        self.stats = {
            "batches": 0,
            "commands": 0,
            "batch_failures": 0,
            "retries": 0,
            "lock_acquisitions": 0,
            "lock_waits": 0,
            "caught_up_events": 0,
        }

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> GroupCommitWriter:
        if self._thread is None:
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
            self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledgergate-saver")
            self._thread = threading.Thread(target=self._run, name="ledgergate-writer", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        self._stopping = True
        self._queue.put(None)
        self._wake()
        self._thread.join(timeout)
        self._thread = None
        self._saver.shutdown(wait=True)
        if self.locks is not None:
            self.locks.close()
        for descriptor in (self._wake_r, self._wake_w):
            os.close(descriptor)
        self._wake_r, self._wake_w = -1, -1

    # --- submitting -----------------------------------------------------------------------

    def submit(self, command: Command) -> Future[Outcome]:
        if self._stopping or self._thread is None:
            raise WriterStopped("the writer is not running")
        future: Future[Outcome] = Future()
        self._queue.put(_Pending(command, future))
        if self._lingering:  # read after the put: a writer that starts lingering later sees it
            self._wake()
        return future

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except OSError:  # a full pipe already wakes it; a closed one: the writer stopped
            pass

    def execute(self, command: Command, timeout: float | None = 60.0) -> Outcome:
        return self.submit(command).result(timeout)

    async def execute_async(self, command: Command) -> Outcome:
        # Shielded: cancelling the awaiting task must not cancel the command (it is queued and
        # will be decided and saved anyway), only stop waiting for it.
        return await asyncio.shield(asyncio.wrap_future(self.submit(command)))

    def evict(self, aggregate_id: UUID, version: int | None = None) -> None:
        """Ask the writer to drop a cached aggregate another process has changed."""
        self._evictions.put((aggregate_id, version or 0))

    # --- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        # Pipelined: while the saver thread commits batch k, this thread decides batch k+1
        # against the in-memory aggregates (which already include k's events). k+1 is handed
        # over only after k is durable; if k failed, k+1 was decided on state that never
        # became durable, so both are redone one by one against freshly loaded state.
        inflight: tuple[Future[bool], _Decided] | None = None
        try:
            while True:
                if inflight is not None and self._queue.empty():
                    self._finish(inflight)  # nothing to overlap with: settle k first
                    inflight = None
                    continue
                if self._held and self._queue.empty():
                    first = self._linger()
                else:
                    first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                stopping = False
                while len(batch) < self.batch_commands_max:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stopping = True
                        break
                    batch.append(item)
                try:
                    if self.locks is not None:
                        inflight = self._secure_locks(batch, inflight)
                    try:
                        decided: _Decided | None = self._decide(batch)
                    except _BatchAborted:
                        decided = None
                    if inflight is not None:
                        previous_ok = self._finish(inflight)
                        inflight = None
                        if not previous_ok:
                            decided = None  # decided on state that never became durable
                    if decided is None:
                        self._redo_alone(batch)
                    elif self._queue.empty():
                        # Nothing queued to decide while this batch is saved: save it on this
                        # thread. Handing it to the saver cost two thread wake-ups per commit
                        # (there and back), and this thread would only have waited for it.
                        inflight = (_done(self._commit, decided), decided)
                    else:
                        inflight = (self._saver.submit(self._commit, decided), decided)
                except Exception as error:  # never let one bad batch stop every later write
                    log.exception("writer batch failed unexpectedly; failing its callers")
                    self._cache.clear()
                    self._release_locks()
                    failed = batch + (list(inflight[1].batch) if inflight is not None else [])
                    inflight = None
                    for item in failed:
                        _reject(item.future, error)
                if stopping:
                    return
        finally:
            if inflight is not None:
                self._finish(inflight)
            self._release_locks()
            self._drain_stopped()

    # --- cross-process locks --------------------------------------------------------------

    def _secure_locks(
        self, batch: list[_Pending], inflight: tuple[Future[bool], _Decided] | None
    ) -> tuple[Future[bool], _Decided] | None:
        """Hold the lock of every aggregate the batch contends for before deciding it, and
        bring the cached copies of newly locked ones up to date. Returns the batch still
        being saved (None once it had to be settled first)."""
        assert self.locks is not None
        wanted: set[UUID] = set()
        for item in batch:
            try:
                wanted |= contended_aggregates(item.command, self._load)
            except Exception:  # a bad command fails in its handler, not here
                log.debug("no contention rule for %s", type(item.command).__name__)
        if (
            self._held
            and time.monotonic() - self._held_since > self.lock_hold_s_max
            and self._lock_wanted()
        ):
            # Fairness: another process asked and this writer has had the locks long
            # enough; finish what it saves under them, let go, and queue up behind it.
            self._settle(inflight)
            inflight = None
            self._release_locks()
        missing = wanted - self._held
        if not missing:
            return inflight
        # A catch-up must start from durable state: settle the batch in flight first (its
        # decisions may sit in the cached copies).
        self._settle(inflight)
        inflight = None
        if not self.locks.try_acquire(sorted(missing)):
            # Never wait while holding: let go of everything, then wait in sorted order.
            self._release_locks()
            missing = set(wanted)
            self.stats["lock_waits"] += 1
            self.locks.acquire(sorted(missing))
        if not self._held:
            self._held_since = time.monotonic()
        self._held |= missing
        self.stats["lock_acquisitions"] += 1
        self._catch_up(missing)
        return inflight

    def _linger(self) -> _Pending | None:
        """Idle with locks held: keep them for the next command (the next request on this
        Account costs no hand-over and no catch-up read) until another process asks for one,
        or LOCK_IDLE_S_MAX has passed; then let go and wait for work. Sleeps until work or
        an ask arrives (see the module docstring), not on a timer."""
        idle_since = time.monotonic()
        self._lingering = True
        try:
            while True:
                try:
                    return self._queue.get_nowait()
                except queue.Empty:
                    pass
                idle_s = time.monotonic() - idle_since
                if self._lock_wanted() or idle_s >= self.lock_idle_s_max:
                    break
                self._sleep(self.lock_idle_s_max - idle_s)
        finally:
            self._lingering = False
        self._release_locks()
        return self._queue.get()

    def _sleep(self, timeout_s: float) -> None:
        """Until work is submitted, an ask may have arrived, or `timeout_s` has passed."""
        assert self.locks is not None
        # poll, not select: a busy server's descriptors pass select's limit of 1,024.
        watched = select.poll()
        watched.register(self._wake_r, select.POLLIN)
        try:
            descriptor = self.locks.fileno()
        except Exception:  # no socket to watch (a dropped connection): look again soon
            descriptor = None
        if descriptor is None:
            timeout_s = min(timeout_s, self.lock_linger_s)
        else:
            watched.register(descriptor, select.POLLIN)
        try:
            ready = watched.poll(max(1, int(timeout_s * 1000)))
        except OSError:  # the descriptor closed under us: `wanted` will tell
            time.sleep(min(timeout_s, self.lock_linger_s))
            return
        if any(fd == self._wake_r for fd, _ in ready):
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass

    def _lock_wanted(self) -> bool:
        assert self.locks is not None
        try:
            return bool(self.locks.wanted())
        except Exception:  # cannot tell: let go, as before this was known
            log.warning("could not read lock requests; letting go", exc_info=True)
            return True

    def _settle(self, inflight: tuple[Future[bool], _Decided] | None) -> None:
        if inflight is not None:
            self._finish(inflight)

    def _release_locks(self) -> None:
        if not self._held or self.locks is None:
            return
        self._held.clear()
        try:
            self.locks.release_all()
        except Exception:  # the strategy drops its connection: the server frees the locks
            log.warning("releasing write locks failed", exc_info=True)

    def _catch_up(self, aggregate_ids: set[UUID]) -> None:
        """Apply to each cached copy the events other processes recorded since its version
        (we hold its lock: no more can arrive until we let go)."""
        for aggregate_id in aggregate_ids:
            cached = self._cache.get(aggregate_id)
            if cached is None:
                continue  # loaded fresh from the store when first needed
            try:
                event: Any
                for event in self.app.events.get(aggregate_id, gt=cached.version):
                    cached = event.mutate(cached)
                    self.stats["caught_up_events"] += 1
            except Exception:
                log.warning("catch-up of %s failed; reloading it", aggregate_id, exc_info=True)
                self._cache.pop(aggregate_id, None)

    def _drain_stopped(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None and not item.future.done():
                _reject(item.future, WriterStopped("the writer stopped"))

    def _apply_evictions(self) -> None:
        while True:
            try:
                aggregate_id, version = self._evictions.get_nowait()
            except queue.Empty:
                return
            cached = self._cache.get(aggregate_id)
            if cached is not None and cached.version < version:
                if self.locks is not None and isinstance(cached, CONTENDED_TYPES):
                    # Kept: caught up from the store when its lock is next taken, which is
                    # far cheaper than reloading a hot Account (snapshot + events).
                    continue
                del self._cache[aggregate_id]

    def _load(self, aggregate_id: UUID) -> Any | None:
        cached = self._cache.get(aggregate_id)
        if cached is not None:
            self._cache.move_to_end(aggregate_id)
            return cached
        try:
            aggregate: Any = self.app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        self._remember(aggregate)
        return aggregate

    def _remember(self, aggregate: Any) -> None:
        self._cache[aggregate.id] = aggregate
        self._cache.move_to_end(aggregate.id)
        while len(self._cache) > self.cache_aggregates_max:
            self._cache.popitem(last=False)

    def _forget(self, aggregates: dict[UUID, Any]) -> None:
        for aggregate_id in aggregates:
            self._cache.pop(aggregate_id, None)

    def _decide(self, batch: list[_Pending]) -> _Decided:
        """Decide every command of the batch in memory and collect the events to record.
        Raises _BatchAborted on an unexpected error (the batch is then redone alone)."""
        self._apply_evictions()
        self.stats["batches"] += 1
        self.stats["commands"] += len(batch)
        touched: dict[UUID, Any] = {}
        results: list[tuple[_Pending, Any, BaseException | None]] = []
        try:
            for item in batch:
                uow = UnitOfWork(self._load, self.clock)
                try:
                    value = self._handle(item.command, uow)
                except DomainError as error:
                    # The handler decided before acting: nothing it added is kept.
                    for aggregate_id in uow.added:
                        uow.touched.pop(aggregate_id, None)
                    touched.update(uow.touched)
                    results.append((item, None, error))
                    continue
                except Exception as error:  # a bug: never save what it may have half-done
                    touched.update(uow.touched)
                    raise _BatchAborted() from error
                for aggregate in uow.added.values():
                    self._remember(aggregate)
                touched.update(uow.touched)
                results.append((item, value, None))
        except _BatchAborted:
            self.stats["batch_failures"] += 1
            raise
        events: list[Any] = []
        snapshots: list[Any] = []
        for aggregate in touched.values():
            if not aggregate.pending_events:
                continue
            collected = aggregate.collect_events()
            events.extend(collected)
            snapshot = self._snapshot_if_due(aggregate, collected)
            if snapshot is not None:
                snapshots.append(snapshot)
        return _Decided(batch, results, events, snapshots)

    def _snapshot_if_due(self, aggregate: Any, events: list[Any]) -> Any | None:
        """Taken now, while the aggregate holds exactly this batch's state; stored by the
        saver after the batch's events (see LedgerApplication._take_snapshots)."""
        if not (self.app.snapshots and self.app.snapshotting_intervals):
            return None
        interval = self.app.snapshotting_intervals.get(type(aggregate))
        if interval is None or not any(e.originator_version % interval == 0 for e in events):
            return None
        snapshot_class = getattr(type(aggregate), "Snapshot", type(self.app).snapshot_class)
        if snapshot_class is None:
            return None
        # A deep copy: the snapshot is encoded later, by the saver, while this thread goes on
        # mutating the aggregate's nested state (pending, budgets, monthly counts).
        return snapshot_class.take(copy.deepcopy(aggregate))

    def _commit(self, decided: _Decided) -> bool:
        """The saver thread: record a decided batch in one transaction, then answer its
        callers. False (callers not answered) when the save failed."""
        started = time.perf_counter()
        try:
            position = self._save_events(decided.events, decided.snapshots)
        except Exception as error:
            if not isinstance(error, IntegrityError):
                log.warning("group commit failed, retrying one by one: %s", type(error).__name__)
            return False
        self._committed(len(decided.batch), started, decided.events)
        for item, value, failure in decided.results:
            if failure is not None:
                _reject(item.future, failure)
            else:
                _resolve(item.future, Outcome(value, position))
        return True

    def _finish(self, inflight: tuple[Future[bool], _Decided]) -> bool:
        """Wait for the batch being saved; if it failed, redo its commands one by one."""
        future, decided = inflight
        try:
            saved = future.result()
        except Exception:  # the saver itself broke after the save: treat as not saved
            log.exception("saver failed")
            saved = False
        if saved:
            return True
        self.stats["batch_failures"] += 1
        self._redo_alone(decided.batch)
        return False

    def _redo_alone(self, batch: list[_Pending]) -> None:
        # Every cached aggregate may hold undurable decisions: start from the store again.
        self._cache.clear()
        for item in batch:
            if not item.future.done():
                self._process_alone(item)

    def _process_alone(self, item: _Pending) -> None:
        last_error: BaseException | None = None
        for _attempt in range(CONFLICT_RETRIES_MAX):
            uow = UnitOfWork(self._load, self.clock)
            try:
                value = self._handle(item.command, uow)
                pending = uow.pending()
                events = [e for aggregate in pending for e in aggregate.pending_events]
                started = time.perf_counter()
                position = self._save(pending)
                self._committed(1, started, events)
            except DomainError as error:
                self._forget({k: v for k, v in uow.touched.items() if v.pending_events})
                self._forget(uow.added)
                _reject(item.future, error)
                return
            except (RecordConflictError, IntegrityError) as error:
                self.stats["retries"] += 1
                self._forget(uow.touched)
                last_error = error
                continue
            except Exception as error:
                self._forget(uow.touched)
                _reject(item.future, error)
                return
            for aggregate in uow.added.values():
                self._remember(aggregate)
            _resolve(item.future, Outcome(value, position))
            return
        _reject(item.future, last_error or RuntimeError("conflict retries exhausted"))

    def _save_events(self, events: list[Any], snapshots: list[Any]) -> int | None:
        if not events:
            return None
        started = time.perf_counter()
        # The event store's put, which Application.save calls too: save first sorts what it
        # is given into events and aggregates with runtime Protocol isinstance checks (tens
        # of microseconds per event, 14% of a save's CPU); these are all events, there is no
        # aggregate for it to cache, and this application defines no save hooks.
        recordings = self.app.events.put(events)
        if snapshots and self.app.snapshots is not None:
            self.app.snapshots.put(snapshots)
        position = self._saved(recordings)
        log.debug("saved %d events in %.1f ms", len(events), (time.perf_counter() - started) * 1e3)
        return position

    def _saved(self, recordings: Sequence[Any]) -> int | None:
        position = max((r.notification.id for r in recordings), default=None)
        if position is not None:
            self.last_position = max(self.last_position, position)
            if self.on_saved is not None:
                try:
                    self.on_saved(position, [r.domain_event for r in recordings])
                except Exception:  # an observer must never fail a write that is already durable
                    log.exception("save observer failed")
        return position

    def _committed(self, commands: int, started: float, events: list[Any]) -> None:
        if self.on_committed is None or not events:
            return
        try:
            self.on_committed(commands, time.perf_counter() - started, events)
        except Exception:  # an observer must never fail a write that is already durable
            log.exception("commit observer failed")

    def _handle(self, command: Command, uow: UnitOfWork) -> Any:
        return HANDLERS[type(command)](command, uow)

    def _save(self, aggregates: list[Any]) -> int | None:
        if not aggregates:
            return None
        started = time.perf_counter()
        recordings = self.app.save(*aggregates)
        position = self._saved(recordings)
        log.debug(
            "saved %d aggregates in %.1f ms", len(aggregates), (time.perf_counter() - started) * 1e3
        )
        return position


def run_now(
    app: LedgerApplication,
    command: Command,
    clock: Clock | None = None,
    locks: AggregateLocks | None = None,
) -> Outcome:
    """Decide and save one command without a writer thread (admin CLI, tests). With
    `locks`, under the same cross-process locks the serving writers take, so an admin
    top-up never collides with a busy gateway's writes to the same Account."""
    writer = GroupCommitWriter(app, clock=clock)
    if locks is not None:
        contended = contended_aggregates(command, writer._load)
        writer._cache.clear()  # loaded again under the lock
        locks.acquire(sorted(contended))
    try:
        uow = UnitOfWork(writer._load, writer.clock)
        value = writer._handle(command, uow)
        position = writer._save(uow.pending())
    finally:
        if locks is not None:
            locks.release_all()
    return Outcome(value, position)
