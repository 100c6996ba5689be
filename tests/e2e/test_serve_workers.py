"""`ledgergate serve --workers N` on PostgreSQL (gateway/supervisor.py): N workers forked from
one supervisor that loaded the PII models, the tokenizer and the modules once.

What is checked, with real processes, a real PostgreSQL and the openai SDK as the client:
- the workers are the supervisor's children and share the preloaded pages with it (each
  worker's private memory is a fraction of what it maps: the ~300 MB of models are not its
  own copy), and /ready says ready only with every worker warm;
- kill -9 of a worker: a replacement is forked from the same warm supervisor, shares the
  models too, /ready comes back, and requests are served throughout by the other one;
- SIGHUP replaces every worker; SIGTTIN is ignored (never suspends it); SIGTERM stops them
  all and the supervisor exits 0;
- kill -9 of the supervisor takes its workers and its projection worker with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from gateway.serving import BackgroundServer, free_port
from gateway.simulator import SimulatorState, create_simulator_app
from tests.support.processes import ROOT, funded_project_with_key, process_env, stop

pytestmark = pytest.mark.postgres

STARTUP_S_MAX = 150.0  # the supervisor warms the PII engine, then two workers start
WORKERS = 2
SHARED_MB_MIN = 150  # the PII models alone are ~300 MB: shared, not copied, in each worker


@dataclass
class Supervised:
    process: subprocess.Popen[bytes]
    base: str
    headers: dict[str, str]

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except FileNotFoundError:
            return []

    def workers(self) -> set[int]:
        """The serving children (the projection worker is the other child)."""
        return {pid for pid in self.children() if b"projections" not in _cmdline(pid)}

    def projection_worker(self) -> set[int]:
        return {pid for pid in self.children() if b"projections" in _cmdline(pid)}

    def ready(self) -> bool:
        try:
            return httpx.get(self.base + "/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def chat(self, count: int) -> list[str]:
        client = openai.OpenAI(
            base_url=self.base + "/v1",
            api_key=self.headers["Authorization"].removeprefix("Bearer "),
            default_headers={"X-User-Id": self.headers["X-User-Id"]},
            max_retries=0,
        )

        def one(index: int) -> str:
            reply = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"hello {index}"}]
            )
            return reply.choices[0].message.content or ""

        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(one, range(count)))


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


def _memory_mb(pid: int) -> dict[str, float]:
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        fields[name] = int(rest.split()[0]) / 1024
    return fields


def _shares_the_models(pid: int) -> tuple[bool, dict[str, float]]:
    memory = _memory_mb(pid)
    shared = memory["Shared_Clean"] + memory["Shared_Dirty"]
    private = memory["Private_Clean"] + memory["Private_Dirty"]
    return shared >= SHARED_MB_MIN and private < shared, memory


def _state(pid: int) -> str | None:
    """The process's state letter (R, S, T stopped, Z exited but not reaped), None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return None


def _gone(pid: int) -> bool:
    return _state(pid) in (None, "Z")


def _until(condition, what: str, timeout_s: float = STARTUP_S_MAX) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@contextmanager
def supervised(postgres_env: dict[str, str], tmp_path: Path) -> Iterator[Supervised]:
    state = SimulatorState()
    with BackgroundServer(create_simulator_app(state)) as upstream:
        env = process_env(
            postgres_env,
            upstream.base_url,
            LEDGERGATE_DATA_DIR=str(tmp_path / "data"),
            LEDGERGATE_SEED_CATALOG_PRICES="0",
            LEDGERGATE_LOG_LEVEL="WARNING",
        )
        _project, headers = funded_project_with_key(env, name="w", balance="10.00", user="u")
        port = free_port()
        with open(tmp_path / "serve.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port),
                 "--workers", str(WORKERS)],
                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        running = Supervised(process, f"http://127.0.0.1:{port}", headers)
        try:
            _until(
                lambda: (
                    process.poll() is not None
                    or (running.ready() and len(running.workers()) == WORKERS)
                ),
                "two warm workers",
            )
            assert process.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            yield running
        finally:
            stop([process])


def test_forked_workers_share_the_models_survive_kill_9_sighup_and_stop_on_sigterm(
    postgres_env: dict[str, str], tmp_path: Path
) -> None:
    with supervised(postgres_env, tmp_path) as gateway:
        first = gateway.workers()
        assert len(first) == WORKERS and len(gateway.projection_worker()) == 1
        for pid in first:
            shares, memory = _shares_the_models(pid)
            assert shares, memory
        assert all(gateway.chat(8))

        # kill -9 of one worker: the other serves meanwhile, a warm replacement is forked.
        victim = sorted(first)[0]
        os.kill(victim, signal.SIGKILL)
        assert all(gateway.chat(4))
        _until(
            lambda: len(gateway.workers() - first) == 1 and len(gateway.workers()) == WORKERS,
            "a replacement worker",
        )
        _until(gateway.ready, "/ready after the replacement is warm")
        (replacement,) = gateway.workers() - first
        shares, memory = _shares_the_models(replacement)
        assert shares, memory  # forked from the warm supervisor: no copy of its own
        assert all(gateway.chat(8))

        # SIGHUP: every worker replaced, one at a time.
        before = gateway.workers()
        gateway.process.send_signal(signal.SIGHUP)
        _until(lambda: not (gateway.workers() & before), "every worker replaced")
        _until(lambda: len(gateway.workers()) == WORKERS and gateway.ready(), "ready again")
        assert all(gateway.chat(8))

        # SIGTTIN, uvicorn's "add a worker": logged and ignored, never suspends the supervisor.
        gateway.process.send_signal(signal.SIGTTIN)
        time.sleep(0.5)
        assert _state(gateway.process.pid) not in ("T", None)
        assert len(gateway.workers()) == WORKERS and all(gateway.chat(2))

        # SIGTERM: the workers drain and exit, then the supervisor, with 0.
        children = gateway.children()
        gateway.process.send_signal(signal.SIGTERM)
        assert gateway.process.wait(60) == 0
        _until(lambda: all(_gone(pid) for pid in children), "every child gone", 30)


def test_a_supervisor_killed_by_sigkill_takes_its_workers_with_it(
    postgres_env: dict[str, str], tmp_path: Path
) -> None:
    with supervised(postgres_env, tmp_path) as gateway:
        children = gateway.children()
        assert len(children) == WORKERS + 1  # and the projection worker
        gateway.process.kill()
        gateway.process.wait(10)
        _until(lambda: all(_gone(pid) for pid in children), "the orphaned workers gone", 30)
