"""The tamper-evident log over real HTTP: a request made with the real openai SDK gets
inclusion proofs for its events against a signed checkpoint; the one-file verifier
(tools/verify_proof.py, no Ledgergate import) accepts them and rejects altered ones; other
tenants get 404; consistency proofs verify; bad parameters are clear 400s. SQLite and
PostgreSQL."""

from __future__ import annotations

import ast
import base64
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from domain.audit_log import leaf_hash, record_from_leaf
from domain.ids import request_aggregate_id
from domain.merkle import verify_consistency, verify_inclusion
from gateway.audit import audit_service
from projections.signed_note import Verifier, open_checkpoint
from tests.support.harness import Gateway

TOOL = Path(__file__).resolve().parents[2] / "tools" / "verify_proof.py"
MESSAGES = [{"role": "user", "content": "Prove it"}]


@pytest.fixture
def audited_backend(backend):
    return {
        **backend,
        "LEDGERGATE_CHECKPOINT_EVERY_EVENTS": "3",
        "LEDGERGATE_CHECKPOINT_INTERVAL_S": "0.1",
    }


@pytest.fixture
def audited_gateway(audited_backend, simulator):
    from tests.conftest import _gateway

    yield from _gateway(audited_backend, simulator[0].base_url)


def _run_tool(document, vkey, tmp_path):
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(document))
    # -I: isolated mode, neither the working directory nor PYTHONPATH on sys.path, so the
    # tool cannot be leaning on Ledgergate's packages.
    return subprocess.run(
        [sys.executable, "-I", str(TOOL), str(path), "--public-key", vkey],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _proof_covering(http, tenant, request_id, deadline_s=15.0):
    """The proof once a checkpoint covers every event of the request (signed asynchronously)."""
    deadline = time.monotonic() + deadline_s
    while True:
        response = http.get(f"/v1/data/audit/{request_id}/proof", headers=tenant.headers())
        body = response.json()
        if (
            response.status_code == 200
            and body["events"]
            and all(event["covered"] for event in body["events"])
        ):
            statuses = {event["topic"].rsplit(".", 1)[-1] for event in body["events"]}
            if "Completed" in statuses:
                return body
        if time.monotonic() > deadline:
            raise AssertionError(f"no covering checkpoint in time: {response.status_code} {body}")
        time.sleep(0.1)


def test_a_requests_events_are_proven_included_and_the_standalone_verifier_agrees(
    audited_gateway: Gateway, tmp_path
):
    tenant = audited_gateway.tenant(balance="10.00")
    other = audited_gateway.tenant(balance="10.00")
    raw = audited_gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    request_id = raw.headers["x-request-id"]
    audited_gateway.settle()
    with audited_gateway.client() as http:
        vkey = http.get("/v1/audit/public-key", headers=tenant.headers()).json()["public_key"]
        text_key = http.get(
            "/v1/audit/public-key", headers={**tenant.headers(), "Accept": "text/plain"}
        ).text
        proof = _proof_covering(http, tenant, request_id)
        foreign = http.get(f"/v1/data/audit/{request_id}/proof", headers=other.headers())
        unauthenticated = http.get(f"/v1/data/audit/{request_id}/proof")
        note = http.get("/v1/audit/checkpoint", params={"format": "note"}, headers=tenant.headers())
        latest = http.get("/v1/audit/checkpoint", headers=tenant.headers()).json()
    assert text_key.strip() == vkey
    verifier = Verifier.parse(vkey)
    assert verifier.name == "ledgergate.local/audit-log"

    # The proof, checked with the library's own functions.
    checkpoint = open_checkpoint(proof["checkpoint"]["note"], verifier)
    assert checkpoint.size == proof["checkpoint"]["size"]
    aggregate = str(request_aggregate_id(request_id))
    topics = []
    for event in proof["events"]:
        leaf = base64.b64decode(event["leaf"])
        record = record_from_leaf(leaf)
        assert record.position == event["position"]
        assert leaf_hash(leaf).hex() == event["leaf_hash"]
        hashes = [bytes.fromhex(h) for h in event["inclusion_proof"]]
        assert verify_inclusion(
            event["leaf_index"], checkpoint.size, leaf_hash(leaf), hashes, checkpoint.root
        )
        topics.append(record.topic)
        assert str(record.originator_id) == aggregate or "Account" in record.topic
    # The request's own lifecycle and the account's reservation/charge for it.
    assert any(t.endswith("Request.Received") for t in topics)
    assert any(t.endswith("Request.Completed") for t in topics)
    assert any(t.startswith("domain.account") for t in topics)

    # The one-file verifier accepts the real proof...
    accepted = _run_tool(proof, vkey, tmp_path)
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.strip().endswith("OK")
    # ...and rejects every alteration.
    alterations = []
    flipped_leaf = copy.deepcopy(proof)
    leaf = bytearray(base64.b64decode(flipped_leaf["events"][0]["leaf"]))
    leaf[-2] ^= 0x01
    flipped_leaf["events"][0]["leaf"] = base64.b64encode(bytes(leaf)).decode()
    alterations.append(flipped_leaf)
    sibling = copy.deepcopy(proof)
    first = sibling["events"][0]["inclusion_proof"][0]
    sibling["events"][0]["inclusion_proof"][0] = ("0" if first[0] != "0" else "1") + first[1:]
    alterations.append(sibling)
    moved = copy.deepcopy(proof)
    moved["events"][0]["leaf_index"] += 1
    alterations.append(moved)
    resized = copy.deepcopy(proof)
    resized["checkpoint"]["note"] = resized["checkpoint"]["note"].replace(
        f"\n{checkpoint.size}\n", f"\n{checkpoint.size + 1}\n", 1
    )
    alterations.append(resized)
    for altered in alterations:
        rejected = _run_tool(altered, vkey, tmp_path)
        assert rejected.returncode == 1 and "INVALID" in rejected.stderr, rejected.stdout
    other_key = (
        "other.example/log+" + "00000000+" + base64.b64encode(b"\x01" + b"\x00" * 32).decode()
    )
    assert _run_tool(proof, other_key, tmp_path).returncode == 1

    # Tenancy: another project's key sees no such request; no key is a 401.
    assert foreign.status_code == 404
    assert foreign.json()["error"]["code"] == "request_not_found"
    assert unauthenticated.status_code == 401

    # The latest checkpoint, as a text/plain note and as JSON.
    assert note.status_code == 200 and note.headers["content-type"].startswith("text/plain")
    assert open_checkpoint(note.text, verifier).size >= checkpoint.size
    assert latest["size"] >= checkpoint.size and latest["public_key"] == vkey


def test_consistency_proofs_verify_between_signed_checkpoints_and_bad_params_are_400(
    audited_gateway: Gateway,
):
    tenant = audited_gateway.tenant(balance="10.00")
    client = audited_gateway.openai(tenant)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    service = audit_service(audited_gateway.services)
    deadline = time.monotonic() + 15
    while service.merkle.latest_checkpoint() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first = service.merkle.latest_checkpoint()
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    while service.merkle.latest_checkpoint().size == first.size:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    second = service.merkle.latest_checkpoint()
    verifier = Verifier.parse(second.vkey)
    with audited_gateway.client() as http:
        body = http.get(
            "/v1/audit/consistency",
            params={"from": first.size, "to": second.size},
            headers=tenant.headers(),
        ).json()
        default_to = http.get(
            "/v1/audit/consistency", params={"from": first.size}, headers=tenant.headers()
        )
        bad = [
            http.get("/v1/audit/consistency", params=params, headers=tenant.headers())
            for params in (
                {},
                {"from": "x"},
                {"from": -1},
                {"from": 5, "to": 2},
                {"from": 10**30},
                {"from": 1, "to": 10**12},
            )
        ]
        bad_checkpoint = [
            http.get(
                "/v1/data/audit/lg_req_000/proof",
                params={"checkpoint": value},
                headers=tenant.headers(),
            )
            for value in ("abc", "-3", str(10**30))
        ]
    old = open_checkpoint(body["from_checkpoint"], verifier)
    new = open_checkpoint(body["to_checkpoint"], verifier)
    proof = [bytes.fromhex(h) for h in body["proof"]]
    assert verify_consistency(old.size, new.size, old.root, new.root, proof)
    assert body["from_root_hash"] == old.root.hex() and body["to_root_hash"] == new.root.hex()
    assert default_to.status_code == 200 and default_to.json()["to"] >= second.size
    for response in bad + bad_checkpoint:
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_request"
    # Like every read's bad input, the rejections are in the project's audit log.
    audited_gateway.settle()
    with audited_gateway.client() as http:
        rows = http.get(
            "/v1/data/audit", params={"status": "rejected", "limit": 100}, headers=tenant.headers()
        ).json()["data"]
    endpoints = {row["endpoint"] for row in rows}
    assert "GET /v1/audit/consistency" in endpoints
    assert "GET /v1/data/audit/{request_id}/proof" in endpoints


def test_the_standalone_verifier_imports_nothing_but_the_stdlib_and_cryptography():
    tree = ast.parse(TOOL.read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.add((node.module or "").split(".")[0])
    assert modules - {"__future__", "cryptography"} <= set(sys.stdlib_module_names)
    assert "cryptography" in modules
