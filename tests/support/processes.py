"""Real `ledgergate` processes for tests that need several of them on one store: the CLI run
once, `serve` started until healthy, stopped or killed, and the usual priced, funded project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from gateway.serving import free_port
from tests.support.harness import openai_upstream_env

ROOT = Path(__file__).resolve().parents[2]
STARTUP_S_MAX = 60.0
STOP_S_MAX = 10.0


def process_env(backend: dict[str, str], upstream: str, **extra: str) -> dict[str, str]:
    """The environment of a gateway process on `backend` whose OpenAI upstream is `upstream`."""
    return {
        **os.environ,
        **backend,
        "PYTHONPATH": str(ROOT),
        **openai_upstream_env(upstream),
        **extra,
    }


def run_cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `python -m gateway.cli *args` in `env` from the repository root to the end."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli(env: dict[str, str], *args: str) -> dict:
    """Run `python -m gateway.cli *args` to the end; its last output line, as JSON."""
    done = run_cli(env, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def funded_project_with_key(
    env: dict[str, str], *, name: str, balance: str, user: str
) -> tuple[str, dict[str, str]]:
    """A USD project topped up with `balance` (reference t1), gpt-4o-mini priced at 0.15 /
    0.60 per million tokens, and a key; returns the project id and the caller's headers."""
    project = cli(env, "project", "create", "--name", name, "--currency", "USD")
    key = cli(env, "key", "create", "--project", project["project_id"])
    cli(env, "topup", "--project", project["project_id"], "--amount", balance,
        "--currency", "USD", "--reference", "t1")  # fmt: skip
    price_gpt_4o_mini(env)
    return project["project_id"], {"Authorization": f"Bearer {key['api_key']}", "X-User-Id": user}


def price_gpt_4o_mini(env: dict[str, str]) -> None:
    """gpt-4o-mini at 0.15 / 0.60 USD per million tokens since 2026-01-01."""
    cli(env, "price", "set", "--model", "gpt-4o-mini", "--input-per-mtok", "0.15",
        "--output-per-mtok", "0.60", "--currency", "USD",
        "--effective-from", "2026-01-01T00:00:00Z")  # fmt: skip


def spawn_server(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """Start `serve` with `env` on a free port, without waiting; the process and its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, f"http://127.0.0.1:{port}"


def wait_until_healthy(process: subprocess.Popen, base: str, deadline: float) -> None:
    """Until /health answers 200 (a process that exits, or the monotonic `deadline`, raises)."""
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited during start-up ({process.returncode})")
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the gateway did not start in time")
        time.sleep(0.1)


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """Start `serve` with `env` on a free port; returns the process and its base URL once
    /health answers."""
    process, base = spawn_server(env)
    try:
        wait_until_healthy(process, base, time.monotonic() + STARTUP_S_MAX)
    except (RuntimeError, TimeoutError):
        process.kill()
        raise
    return process, base


def stop(processes: list[subprocess.Popen]) -> None:
    """Terminate each process, killing those that do not stop in time."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(STOP_S_MAX)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_S_MAX)


@contextmanager
def serve_process(env: dict[str, str]) -> Iterator[str]:
    """Start `serve` with `env`, yield its base URL, stop it after."""
    process, base = start_server(env)
    try:
        yield base
    finally:
        stop([process])
