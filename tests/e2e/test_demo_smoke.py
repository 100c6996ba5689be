"""The README's first command works on a fresh machine: `ledgergate demo --smoke` on the
embedded default (SQLite, the simulated upstream, no provider key) answers a completion and a
stream, charges them and shows them in the audit log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from gateway.serving import free_port
from tests.support.processes import ROOT


def test_the_demo_smoke_run_serves_charges_and_audits_on_the_embedded_default(
    tmp_path: Path,
) -> None:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("LEDGERGATE_")  # a fresh machine: nothing configured
    }
    env |= {"PYTHONPATH": str(ROOT), "LEDGERGATE_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--smoke", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(
        next(line for line in reversed(done.stdout.splitlines()) if line.startswith('{"actual'))
    )
    assert summary["chat_status"] == 200 and summary["stream_status"] == 200
    assert summary["stream_done"] is True
    assert summary["audit_rows"] == 2
    balance = summary["balance"]
    assert Decimal(balance["credits"]) == Decimal("25")
    assert Decimal(balance["posted"]) > 0 and Decimal(balance["pending"]) == 0
    assert Decimal(balance["available"]) == Decimal(balance["credits"]) - Decimal(
        balance["posted"]
    )
