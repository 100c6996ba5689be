"""The cold start (issue 11): what a first request would pay once is paid before /ready says
ready (gateway/warmup.py), with `serve --workers N` only once every worker is warm
(gateway/workers.py WarmMarkers), and the warm-up sends the providers nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from gateway.workers import WARM_DIR_ENV, WORKERS_ENV, WarmMarkers
from gateway.write_locks import AdvisoryLocks
from tests.fakes.anthropic_fake import AnthropicFake
from tests.fakes.openai_fake import FakeUpstream
from tests.support.harness import openai_upstream_env, running_gateway, start_gateway
from tests.support.postgres import ADMIN_URL


def test_the_warm_up_runs_before_ready_and_sends_the_providers_nothing(
    tmp_path: Path,
) -> None:
    with FakeUpstream() as openai_fake, AnthropicFake() as anthropic_fake:
        env = {
            "LEDGERGATE_DATA_DIR": str(tmp_path / "data"),
            **openai_upstream_env(openai_fake.root_url),
            "LEDGERGATE_ANTHROPIC_BASE_URL": anthropic_fake.base_url,
            "LEDGERGATE_ANTHROPIC_API_KEY": "sk-ant-test",
        }
        with running_gateway(env) as gateway:
            # The lifespan ran it before the first connection was accepted.
            warm_up = gateway.services.warm_up
            assert warm_up.done and set(warm_up.steps_ms) == {"stores"}
            with gateway.client() as http:
                ready = http.get("/ready")
            assert ready.status_code == 200, ready.text
            # Nothing reached a provider: a gateway sends one nothing it was not asked to.
            assert openai_fake.received == [] and anthropic_fake.received == []
            tenant = gateway.tenant()
            reply = gateway.openai(tenant).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]
            )
            assert reply.choices[0].message.content
            assert [(r.method, r.path) for r in openai_fake.received] == [
                ("POST", "/v1/chat/completions"),
            ]
            assert anthropic_fake.received == []


@pytest.mark.postgres
def test_on_postgresql_the_writers_lock_session_is_open_before_the_first_request(
    tmp_path: Path, postgres_env: dict[str, str]
) -> None:
    with FakeUpstream() as openai_fake:
        env = {
            **postgres_env,
            "LEDGERGATE_DATA_DIR": str(tmp_path / "data"),
            **openai_upstream_env(openai_fake.root_url),
        }
        with running_gateway(env, prices=()) as gateway:
            locks = gateway.services.writer.locks
            assert isinstance(locks, AdvisoryLocks)
            assert locks.connected  # no request has been served yet: the warm-up opened it
            database = postgres_env["LEDGERGATE_DATABASE_URL"].rpartition("/")[2].split("?")[0]
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                sessions = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = %s AND application_name = 'ledgergate-writer-locks'",
                    (database,),
                ).fetchone()
            assert sessions is not None and sessions[0] >= 1
            tenant = gateway.tenant()
            gateway.set_price("gpt-4o-mini", "0.15", "0.60")
            reply = gateway.openai(tenant).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]
            )
            assert reply.choices[0].message.content and locks.connected


def test_with_n_workers_ready_is_503_until_every_worker_is_warm(tmp_path: Path) -> None:
    """In-process, this gateway is one of 2 workers: ready only once the other is warm too,
    and no longer once that other worker died (its marker does not count)."""
    warm_dir = tmp_path / "warm"
    warm_dir.mkdir()
    gateway = start_gateway(
        {
            "LEDGERGATE_DATA_DIR": str(tmp_path / "data"),
            WARM_DIR_ENV: str(warm_dir),
            WORKERS_ENV: "2",
        }
    )
    sibling = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        deadline = time.monotonic() + 10
        while not (warm_dir / str(os.getpid())).exists():  # this worker marks itself warm
            assert time.monotonic() < deadline, "the worker never marked itself warm"
            time.sleep(0.02)
        with gateway.client() as http:
            one_of_two = http.get("/ready")
            assert one_of_two.status_code == 503
            check = next(c for c in one_of_two.json()["checks"] if c["check"] == "workers")
            assert check["warm_workers"] == 1 and check["workers"] == 2 and not check["ok"]
            assert check["reason"] == "1 of 2 workers are warm"
            WarmMarkers(str(warm_dir), 2).mark(sibling.pid)  # the other worker got warm
            both = http.get("/ready")
            assert both.status_code == 200, both.text
            assert "workers" not in {c["check"] for c in both.json()["checks"]}
            sibling.kill()
            sibling.wait()
            assert http.get("/ready").status_code == 503  # a dead worker's marker is not warm
    finally:
        sibling.kill()
        sibling.wait()
        gateway.server.stop()
    assert not (warm_dir / str(os.getpid())).exists()  # a stopping worker is no longer warm
