"""The production shape: the gateway only follows the log while a separate worker process
(`ledgergate projections run`) writes the read models; reads still see their own writes."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

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
    worker = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "projections", "run"],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        gateway.set_price("gpt-4o-mini", "0.15", "0.60")
        tenant = gateway.tenant(balance="2.00")
        response = gateway.openai(tenant).chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        cost = Decimal(response.headers["x-lg-actual-cost"])
        position = response.headers["x-lg-ledger-position"]
        with gateway.client() as http:
            balance = http.get(
                "/v1/billing/balance", params={"min_position": position}, headers=tenant.headers()
            ).json()
        assert Decimal(balance["available"]) == Decimal("2.00") - cost
        assert balance["as_of_position"] >= int(position)
    finally:
        worker.terminate()
        worker.wait(10)
        gateway.server.stop()
