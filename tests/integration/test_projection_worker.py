"""The production shape: the gateway only follows the log while a separate worker process
(`ledgergate projections run`) writes the read models; reads still see their own writes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from gateway.audit import audit_service
from tests.support.harness import openai_upstream_env, start_gateway

ROOT = Path(__file__).resolve().parents[2]


def test_a_gateway_without_its_own_projections_serves_reads_written_by_the_worker(
    postgres_env, simulator, tmp_path
) -> None:
    env = {
        **postgres_env,
        "LEDGERGATE_RUN_PROJECTIONS": "0",
        **openai_upstream_env(simulator[0].base_url),
    }
    gateway = start_gateway(env)
    worker: subprocess.Popen[bytes] | None = None
    try:
        gateway.set_price("gpt-4o-mini", "0.15", "0.60")
        tenant = gateway.tenant(balance="2.00")
        response = gateway.openai(tenant).chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        cost = Decimal(response.headers["x-lg-actual-cost"])
        position = response.headers["x-lg-ledger-position"]
        request_id = response.headers["x-request-id"]
        # The serving process does not hash the log into the Merkle tree (that is the
        # worker's): with no worker yet, the tree stays empty, well past its poll interval.
        time.sleep(1.0)
        tree = audit_service(gateway.services).merkle  # reads the stored tree's state row
        assert tree.size() == 0
        worker = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "projections", "run"],
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with gateway.client() as http:
            balance = http.get(
                "/v1/billing/balance", params={"min_position": position}, headers=tenant.headers()
            ).json()
        assert Decimal(balance["available"]) == Decimal("2.00") - cost
        assert balance["as_of_position"] >= int(position)
        # The worker keeps the tamper-evident log: the request's events reach the tree,
        # and the gateway serves their proof from it.
        deadline = time.monotonic() + 30
        while tree.size() < int(position):
            assert time.monotonic() < deadline, "the worker did not extend the audit tree"
            time.sleep(0.1)
        with gateway.client() as http:
            proof = http.get(f"/v1/data/audit/{request_id}/proof", headers=tenant.headers())
        assert proof.status_code == 200
        assert proof.json()["events"] and all(
            event["leaf_hash"] for event in proof.json()["events"]
        )
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(10)
        gateway.server.stop()
