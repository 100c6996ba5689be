"""Real `ledgergate serve` processes for tests that need several of them on one store."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from gateway.serving import free_port

ROOT = Path(__file__).resolve().parents[2]
STARTUP_S_MAX = 60.0
STOP_S_MAX = 10.0


@contextmanager
def serve_process(env: dict[str, str]) -> Iterator[str]:
    """Start `python -m gateway.cli serve` with `env`, yield its base URL, stop it after."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S_MAX
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the gateway exited during start-up ({process.returncode})")
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the gateway did not start in time")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(STOP_S_MAX)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_S_MAX)
