"""`serve --workers N` later: with PROMETHEUS_MULTIPROC_DIR set, each process writes its
counters and histograms to files there and any process's /metrics aggregates them all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

WORKER = """
from gateway.observability.metrics import GatewayMetrics
metrics = GatewayMetrics(model_names=["gpt-4o-mini"])
metrics.requests.labels("/v1/chat/completions", "200", "gpt-4o-mini", "openai", "managed").inc()
metrics.writer_commit.observe(0.002)
"""
SCRAPER = """
from gateway.observability.metrics import GatewayMetrics
print(GatewayMetrics().render()[0].decode())
"""


def test_two_worker_processes_counts_are_summed_in_one_scrape(tmp_path: Path) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    root = Path(__file__).resolve().parents[2]
    for _ in range(2):
        subprocess.run([sys.executable, "-c", WORKER], env=env, cwd=root, check=True, timeout=60)
    scraped = subprocess.run(
        [sys.executable, "-c", SCRAPER],
        env=env,
        cwd=root,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
    }
    assert values["ledgergate_requests_total"] == 2
    assert values["ledgergate_writer_commit_seconds_count"] == 2
