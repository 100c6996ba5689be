"""The official openai Node SDK against the gateway (a real `node` process): reply, stream
with usage, a typed error, embeddings (the Node SDK decodes base64 by default).

Node and npm are required: if they are missing this test fails loudly instead of skipping."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.fakes.fixtures import start_fake
from tests.support.harness import running_gateway

NODE_DIR = Path(__file__).parent / "node"
NODE_TIMEOUT_S = 60
NPM_TIMEOUT_S = 300


def ensure_node_sdk() -> str:
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        raise AssertionError(
            "node and npm are required for the Node SDK test (node 20+); install them"
        )
    if not (NODE_DIR / "node_modules" / "openai").exists():
        # The lockfile pins the SDK; `npm ci` installs exactly it from the registry.
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=NPM_TIMEOUT_S
        )
    return node


def test_the_openai_node_sdk_gets_replies_streams_errors_and_embeddings(tmp_path):
    node = ensure_node_sdk()
    upstream = start_fake("openai")
    with running_gateway(
        {
            "LEDGERGATE_DATA_DIR": str(tmp_path / "data"),
            "LEDGERGATE_OPENAI_BASE_URL": upstream.base_url,
            "LEDGERGATE_OPENAI_API_KEY": "sk-upstream",
        }
    ) as gateway:
        gateway.set_price("text-embedding-3-small", "0.02", "0")
        tenant = gateway.tenant(balance="5.00")
        upstream.script(text="Hi Node", prompt_tokens=10, completion_tokens=2)
        upstream.script(text="streamed to node", prompt_tokens=11, completion_tokens=3)
        upstream.script(error_status=429, error_headers={"retry-after": "2"})
        completed = subprocess.run(
            [node, "chat.mjs"],
            cwd=NODE_DIR,
            env={
                **os.environ,
                "LEDGERGATE_URL": gateway.base_url,
                "LEDGERGATE_KEY": tenant.api_key,
                "MODEL": "gpt-4o-mini",
            },
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT_S,
        )
        assert completed.returncode == 0, completed.stderr
        result = json.loads(completed.stdout.strip().splitlines()[-1])
        assert result["reply"] == "Hi Node"
        assert result["replyUsage"]["total_tokens"] == 12
        assert result["streamText"] == "streamed to node"
        assert result["streamUsage"]["completion_tokens"] == 3
        assert result["error"] == {
            "status": 429,
            "code": "rate_limit_exceeded",
            "type": "rate_limit_error",
        }
        assert result["embeddingLength"] == 8
        gateway.settle()
        with gateway.client() as http:
            records = http.get("/v1/data/audit", headers=tenant.headers()).json()["data"]
        assert sorted(r["status"] for r in records) == [
            "completed",
            "completed",
            "completed",
            "failed",
        ]
        assert {r["actor_id"] for r in records} == {"node-user"}
        upstream.stop()
