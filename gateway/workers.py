"""`ledgergate serve --workers N`: N gateway processes on one machine, one PostgreSQL.

The process supervisor is gateway/supervisor.py's: the parent loads what every worker needs
and nothing writes (the PII models warmed, the tokenizer, the modules), binds the socket once
and forks N workers, which share those pages copy-on-write instead of loading a copy each; it
replaces a worker that dies (kill -9 included) by forking the warm parent again, passes
SIGINT/SIGTERM on (each worker drains: its lifespan stops the sweeper, the leases and the
writer after the requests in flight) and SIGHUP replaces the workers one at a time. A worker
accepts connections only once its lifespan start-up (the first-request warm-up,
gateway/warmup.py, included) has finished; /ready, whichever worker answers it, says ready
only once every one of the N workers is warm (`WarmMarkers`).

What runs once and what runs N times, with N > 1:
- the projections run ONCE, in a projection worker the supervisor starts beside the
  serving processes (`ledgergate projections run`, restarted if it exits) — the serving
  processes only follow the log (their caches) and never write views, which takes the views
  out of the request path. The tamper-evident log's hashing (gateway/audit.py) runs there
  too: the serving processes read the stored tree for proofs and checkpoints. With
  LEDGERGATE_RUN_PROJECTIONS=0 set by the operator, none is started here: the operator
  runs it elsewhere (docker-compose.yml's projection worker);
- the sweeper runs in every serving process, which is safe N times: it only abandons a
  request whose lease (deadline) has run out, the abandon is a guarded state transition
  decided under the request's Account lock (gateway/write_locks.py), and a second sweeper's
  abandon of the same request is refused as already terminal;
- every money limit stays exact across the N processes: each process's single writer takes
  the cross-process lock of the Accounts it decides on (domain/writer.py).

SQLite is one process only (its file lock serialises writers, and the single-writer design
relies on owning the store): more than one worker on SQLite is refused with a clear error.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import uvicorn

from domain.application import is_postgres_url
from gateway import heap
from gateway.config import Settings
from gateway.observability.logs import configure_logging
from gateway.supervisor import ForkingSupervisor, die_with_parent, preload

log = logging.getLogger("ledgergate.workers")

WORKERS_MAX = 64
PROJECTION_RESTART_S = 1.0
STOP_S_MAX = 10.0


WARM_DIR_ENV = "LEDGERGATE_WORKERS_WARM_DIR"  # set by the supervisor for its workers only
WORKERS_ENV = "LEDGERGATE_WORKERS"


class WarmMarkers:
    """Which of the N workers are warm: a file named by its pid in a directory the
    supervisor made for this run. A marker counts only while its process lives, so a worker
    that died (and its cold replacement) makes /ready answer 503 until the replacement is warm."""

    def __init__(self, directory: str, workers: int) -> None:
        self.directory = Path(directory)
        self.workers = workers

    @classmethod
    def from_settings(cls, raw: dict[str, str]) -> WarmMarkers | None:
        directory, workers = raw.get(WARM_DIR_ENV), raw.get(WORKERS_ENV, "1")
        if not directory or not workers.isdigit() or int(workers) < 2:
            return None
        return cls(directory, int(workers))

    def mark(self, pid: int | None = None) -> None:
        (self.directory / str(pid or os.getpid())).touch()

    def unmark(self, pid: int | None = None) -> None:
        (self.directory / str(pid or os.getpid())).unlink(missing_ok=True)

    def warm(self) -> int:
        try:
            names = [path.name for path in self.directory.iterdir()]
        except OSError:
            return 0
        return sum(1 for name in names if name.isdigit() and _alive(int(name)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkersRefused(ValueError):
    """--workers was asked for where it cannot be exact (SQLite) or makes no sense."""


def server_options(settings: Settings) -> dict[str, Any]:
    """Uvicorn's options for a gateway process: uvloop and httptools (named, so a missing
    one fails loudly instead of silently falling back to the slow pure-Python parts)."""
    return {
        "loop": "uvloop",
        "http": "httptools",
        "log_level": settings.log_level.lower(),
        "access_log": False,  # the gateway writes its own access line (gateway/observability)
        "log_config": None,  # uvicorn's lines go through the configured (JSON) handler
    }


def check_workers(settings: Settings, workers: int) -> None:
    if workers < 1 or workers > WORKERS_MAX:
        raise WorkersRefused(f"--workers must be between 1 and {WORKERS_MAX}")
    if workers > 1 and not is_postgres_url(settings.database_url):
        raise WorkersRefused(
            "--workers > 1 needs PostgreSQL (LEDGERGATE_DATABASE_URL=postgresql://…): the "
            "embedded SQLite store is served by one process"
        )


def configure_process_logging(settings: Settings) -> None:
    """Before anything else logs: a spawned worker starts from a bare interpreter, and a
    library that configures logging on first use (the MCP SDK installs a rich-text handler
    on the root logger) must find ours already there. Rendering every upstream call and
    access line as a rich table cost a fifth of a worker's CPU in a profile."""
    configure_logging(settings.log_level, settings.log_format)


def create_worker_app() -> Any:
    """The app factory each spawned worker calls (uvicorn imports it by name)."""
    # Only the serving processes load the app, never the supervisor of N workers.
    from gateway.http.app import create_app

    settings = Settings.from_env()
    configure_process_logging(settings)
    heap.tune_collector()
    return create_app(settings)


class ProjectionWorker:
    """The one projection process beside N serving processes, restarted if it exits."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._keep_alive, name="ledgergate-projection-worker", daemon=True
        )

    def start(self, *, watch_in_thread: bool = True) -> ProjectionWorker:
        """Spawn it, and restart it when it exits: from a thread of its own, or (forking
        supervisor: no thread may run when it forks) from the caller's loop calling `check`."""
        self._spawn()
        if watch_in_thread:
            self._thread.start()
        return self

    def _spawn(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "projections", "run"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # it prints its position; the log lines go to stderr
            preexec_fn=die_with_parent,
        )

    def _keep_alive(self) -> None:
        while not self._stopping.wait(PROJECTION_RESTART_S):
            self.check()

    def check(self) -> None:
        """Restart it if it has exited."""
        process = self._process
        if process is not None and process.poll() is not None and not self._stopping.is_set():
            log.warning("projection worker exited (%s); restarting it", process.returncode)
            self._spawn()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(STOP_S_MAX)
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_S_MAX)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_S_MAX)


def serve(
    settings: Settings,
    host: str,
    port: int,
    workers: int = 1,
    projection_worker: bool | None = None,
) -> int:
    """Serve in the foreground until a signal. `projection_worker` (default: on when
    workers > 1) runs the projections in their own process and none in the serving ones."""
    check_workers(settings, workers)
    options = server_options(settings)
    separate = workers > 1 if projection_worker is None else projection_worker
    projections: ProjectionWorker | None = None
    if separate:
        if settings.run_projections:  # else the operator runs the worker elsewhere
            projections = ProjectionWorker(dict(os.environ)).start(watch_in_thread=workers == 1)
        # The serving processes (spawned ones inherit the environment) follow the log only.
        os.environ["LEDGERGATE_RUN_PROJECTIONS"] = "0"
        settings = Settings.from_env()
    try:
        if workers == 1:
            from gateway.http.app import create_app  # the supervisor of N workers never loads it

            heap.tune_collector()
            uvicorn.run(create_app(settings), host=host, port=port, **options)
        else:
            warm_dir = tempfile.mkdtemp(prefix="ledgergate-warm-")
            os.environ[WARM_DIR_ENV], os.environ[WORKERS_ENV] = warm_dir, str(workers)
            try:
                _serve_workers(settings, host, port, workers, options, projections)
            finally:
                shutil.rmtree(warm_dir, ignore_errors=True)
    finally:
        if projections is not None:
            projections.stop()
    return 0


def _serve_workers(
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    options: dict[str, Any],
    projections: ProjectionWorker | None,
) -> None:
    """N workers forked from this process once it has loaded what they all need
    (gateway/supervisor.py); they inherit the environment, the warm-marker directory too."""
    timings = preload(settings)
    log.info(
        "preloaded for %d workers: %s",
        workers,
        ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in timings.items()),
    )
    config = uvicorn.Config(
        "gateway.workers:create_worker_app", factory=True, host=host, port=port, **options
    )
    watch = projections.check if projections is not None else None
    ForkingSupervisor(config, workers, watch=watch).run()


def main(argv: list[str] | None = None) -> int:
    """`python -m gateway.workers --port P --workers N` (what `ledgergate serve` runs)."""

    parser = argparse.ArgumentParser(prog="ledgergate serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--projection-worker",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="projections in their own process (default: on with --workers > 1)",
    )
    arguments = parser.parse_args(argv)
    settings = Settings.from_env()
    configure_process_logging(settings)
    try:
        return serve(
            settings,
            arguments.host,
            arguments.port,
            arguments.workers,
            arguments.projection_worker,
        )
    except WorkersRefused as error:
        print(str(error), file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
