"""The supervisor of `serve --workers N`: N serving processes forked from one preloaded parent.

Each serving process needs the same large read-only parts: the PII models (~300 MB, 7 s to
load and warm), the o200k tokenizer and the gateway's modules (~110 MB). Spawned workers
(uvicorn's own supervisor spawns a fresh interpreter per worker) each loaded their own copy:
N × ~560 MB, and a worker restarted after a crash paid the 7 s again before it was warm.
Here the parent loads them once (`preload`), collects and freezes its heap (`gc.freeze`: the
children's collector never writes to those objects' headers, so their pages stay shared),
binds the socket, and forks the N workers: each starts with the models already warm and
shares their pages with the parent and its siblings copy-on-write. A page is copied only
when a process writes to it (a reference count touched, an allocation in a shared arena);
the model weights (numpy arrays) are never written. What each worker builds after the fork
(its database pools, writer, caches, event loop) is its own.

Rules that make forking safe here:
- the parent runs no thread and opens no database connection, event loop or thread pool
  before it forks (the PII engine is warmed on the calling thread, not on its executor; the
  projection worker, gateway/workers.py, is restarted from this loop, not from a thread);
- a child resets the signals to their defaults, asks the kernel for SIGTERM when the
  supervisor dies (even by kill -9), and runs uvicorn's `Server` on the inherited socket:
  uvicorn's own handlers then drain it on SIGINT/SIGTERM;
- the supervisor reaps only its own children by pid (`waitpid(pid, WNOHANG)`), never any
  child: the projection worker's `Popen` must see its own exit status.

Signals to the supervisor: SIGINT/SIGTERM stop every worker (each drains its requests in
flight; after STOP_S_MAX one that has not exited is killed); SIGHUP replaces the workers one
at a time (the replacement is forked before the old one is told to stop, so the port keeps
N or N+1 serving processes); SIGTTIN/SIGTTOU (uvicorn's add/remove a worker) are logged and
ignored: the count is fixed per start. A worker that exits on its own, kill -9 included, is
replaced within RESTART_POLL_S, forked from the same warm parent.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from gateway import heap
from gateway.config import Settings

log = logging.getLogger("ledgergate.supervisor")

RESTART_POLL_S = 0.2
STOP_S_MAX = 30.0
RESTARTS_PER_MINUTE_MAX = 30  # a worker that dies at start, over and over: back off


def die_with_parent() -> None:
    """In a child: the kernel sends it SIGTERM when the supervisor dies, even by kill -9."""
    if sys.platform != "linux":
        return
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def preload(settings: Settings) -> dict[str, float]:
    """What every worker needs and nothing writes, loaded once in the supervisor before it
    forks: the gateway's modules, the tokenizer, the PII engine loaded and warmed (when it is
    warmed at start). Returns the seconds each part took. A PII engine that fails to load is
    logged, not raised: each worker then reports it on /ready and refuses what needs
    screening (fail closed), as it would had it loaded the engine itself."""
    from domain.errors import PiiScreeningUnavailable

    timings: dict[str, float] = {}
    started = time.perf_counter()
    import gateway.http.app  # noqa: F401  (the app's modules: imported once, shared)

    timings["modules"] = time.perf_counter() - started
    from gateway.pii.service import PiiService
    from gateway.tokens import warm_tokenizer

    started = time.perf_counter()
    warm_tokenizer()
    timings["tokenizer"] = time.perf_counter() - started
    service = PiiService.from_settings(settings.raw)
    if service.warm_at_start:
        started = time.perf_counter()
        try:
            service.screener.warm()  # on this thread: the engine's executor starts no thread
        except PiiScreeningUnavailable:
            log.error("pii engine unavailable: the workers refuse what needs screening")
        timings["pii"] = time.perf_counter() - started
    return timings


def freeze_for_fork() -> int:
    """Collect the parent's heap and freeze it just before forking, so no child's collector
    ever walks (and writes to) the shared objects. Returns how many objects are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


@dataclass
class ForkingSupervisor:
    """N uvicorn workers forked from this (preloaded) process, on one socket it binds."""

    config: uvicorn.Config
    workers: int
    watch: Callable[[], None] | None = None  # called every RESTART_POLL_S (the projection worker)
    children: dict[int, float] = field(default_factory=dict)  # pid -> forked at (monotonic)
    restarts: list[float] = field(default_factory=list)
    _sockets: list[socket.socket] = field(default_factory=list)
    _signals: list[int] = field(default_factory=list)

    def run(self) -> None:
        self._sockets = [self.config.bind_socket()]
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            log.info("supervisor %d forking %d workers", os.getpid(), self.workers)
            for _ in range(self.workers):
                self._fork()
            self._watch()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for sock in self._sockets:
                sock.close()

    def _on_signal(self, sig: int, _frame: Any) -> None:
        self._signals.append(sig)

    def _watch(self) -> None:
        while True:
            while self._signals:
                sig = self._signals.pop(0)
                if sig in (signal.SIGINT, signal.SIGTERM):
                    log.info("supervisor stopping its workers (%s)", signal.Signals(sig).name)
                    return
                if sig == signal.SIGHUP:
                    self._replace_all()
                if sig in (signal.SIGTTIN, signal.SIGTTOU):
                    # uvicorn's supervisor adds or removes a worker on these; here the count
                    # is fixed (/ready counts N warm workers): caught, so the supervisor is
                    # not suspended by the signals' default action.
                    log.warning(
                        "%s ignored: the worker count is fixed at %d (restart with --workers)",
                        signal.Signals(sig).name,
                        self.workers,
                    )
            for pid in list(self.children):
                status = self._reap(pid)
                if status is not None:
                    del self.children[pid]
                    log.warning("worker %d exited (%s); forking a replacement", pid, status)
                    self._restart()
            if self.watch is not None:
                self.watch()
            time.sleep(RESTART_POLL_S)

    def _reap(self, pid: int) -> str | None:
        """How the child `pid` ended, or None while it runs."""
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return "gone"
        if done == 0:
            return None
        if os.WIFSIGNALED(status):
            return f"signal {os.WTERMSIG(status)}"
        return f"exit {os.waitstatus_to_exitcode(status)}"

    def _restart(self) -> None:
        now = time.monotonic()
        self.restarts = [at for at in self.restarts if now - at < 60.0]
        if len(self.restarts) >= RESTARTS_PER_MINUTE_MAX:
            time.sleep(1.0)  # a worker failing at start: do not fork in a tight loop
        self.restarts.append(time.monotonic())
        self._fork()

    def _replace_all(self) -> None:
        """SIGHUP: a fresh worker for each old one, the replacement first."""
        for old in list(self.children):
            self._fork()
            self._terminate([old])

    def _fork(self) -> int:
        freeze_for_fork()  # what the parent allocated since its last fork, too
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_DFL)
                die_with_parent()
                # The parent froze its heap; this process tunes its own collector and
                # freezes what it builds itself once warm (gateway/warmup.py).
                heap.tune_collector()
                uvicorn.Server(self.config).run(sockets=self._sockets)
                code = 0
            except BaseException:  # noqa: BLE001 - a child must never return into the parent's loop
                log.exception("worker %d failed", os.getpid())
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = time.monotonic()
        return pid

    def _terminate(self, pids: list[int]) -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_S_MAX
        waiting = set(pids)
        while waiting and time.monotonic() < deadline:
            for pid in list(waiting):
                if self._reap(pid) is not None:
                    waiting.discard(pid)
                    self.children.pop(pid, None)
            if waiting:
                time.sleep(0.05)
        for pid in waiting:  # did not drain in time
            log.warning("worker %d did not stop in %.0f s; killing it", pid, STOP_S_MAX)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap_blocking(pid)
            self.children.pop(pid, None)

    def _reap_blocking(self, pid: int) -> None:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass

    def _stop_all(self) -> None:
        self._terminate(list(self.children))
