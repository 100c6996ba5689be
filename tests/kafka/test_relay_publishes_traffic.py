"""The relay inside `serve` publishes every event of real traffic (the openai SDK over real
HTTP, a fake upstream, PII in the prompts, a BYOK key) to the real broker: every position
exactly once, in log order overall and per key, each message the exported record, and no
secret, prompt, completion or PII value in any byte of any message."""

from __future__ import annotations

import base64
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from domain.audit_log import StoredRecord, export_record
from gateway.kafka_feed import KafkaFeed
from gateway.kafka_settings import KafkaSettings
from gateway.relay import relay_name, relay_position
from gateway.serving import BackgroundServer
from gateway.simulator import SimulatorState
from projections.db import ReadStore
from projections.runner import default_views
from tests.kafka.topic import read_topic, view_tables
from tests.support.harness import ADMIN_TOKEN, Gateway, running_gateway

UPSTREAM_KEY = "sk-kafka-upstream-Q7w8e9r0t1y2"
BYOK_KEY = "sk-byok-kafka-Zq8XvA1b2C3d4E5f"
SECRET_KEY = "kafka-test-secret-key-0123456789"
COMPLETION = "Transfer confirmed under reference zebra-quartz-4471, Anna."
PII_VALUES = ("Anna Svensson", "SE45 5000 0000 0583 9825 7466", "anna.svensson@example.com")
PROMPT = (
    f"I'm {PII_VALUES[0]}, IBAN {PII_VALUES[1]}, mail {PII_VALUES[2]}. "
    "My online banking password is hunter2-Kx9-secret."
)
RELAY_WAIT_S_MAX = 30.0
PII_FIRST_REQUEST_TIMEOUT_S = 180.0


@pytest.fixture
def relaying_gateway(
    backend: dict[str, str],
    kafka_env: dict[str, str],
    simulator: tuple[BackgroundServer, SimulatorState],
) -> Iterator[Gateway]:
    server, state = simulator
    state.reply = COMPLETION
    with running_gateway(
        {
            **backend,
            **kafka_env,
            "LEDGERGATE_RUN_RELAY": "1",
            "LEDGERGATE_OPENAI_BASE_URL": server.base_url + "/v1",
            "LEDGERGATE_OPENAI_API_KEY": UPSTREAM_KEY,
            "LEDGERGATE_SECRET_KEY": SECRET_KEY,
        }
    ) as gateway:
        yield gateway


def _traffic(gateway: Gateway, state: SimulatorState, *, screened: bool) -> list[str]:
    """Completed, streamed, PII-screened (if `screened`), BYOK, failed and rejected requests;
    returns the API keys issued (secrets that must never be published)."""
    rich, byok, poor = gateway.tenant(), gateway.tenant(), gateway.tenant(balance="0.000000001")
    messages = [{"role": "user", "content": PROMPT}]
    client = gateway.openai(rich)
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert reply.choices[0].message.content == COMPLETION  # the upstream really said it
    for _chunk in client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, stream=True
    ):
        pass
    if screened:
        # The first screened request loads the PII engine (seconds of CPU): a longer timeout.
        gateway.openai(rich, timeout=PII_FIRST_REQUEST_TIMEOUT_S).chat.completions.create(
            model="gpt-4o-mini",
            messages=messages,
            extra_body={"pii_policy": {"action": "pseudonymize", "rehydrate_response": True}},
        )
    stored = gateway.store_provider_key(byok, BYOK_KEY)
    assert stored.status_code == 200, stored.text
    gateway.openai(byok).chat.completions.create(model="gpt-4o-mini", messages=messages)
    with pytest.raises(openai.APIStatusError):
        gateway.openai(poor).chat.completions.create(model="gpt-4o-mini", messages=messages)
    state.error_status = 500
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    state.error_status = None
    return [tenant.api_key for tenant in (rich, byok, poor)]


def _wait_for_relay(gateway: Gateway, topic: str) -> int:
    target = gateway.services.app.recorder.max_notification_id() or 0
    deadline = time.monotonic() + RELAY_WAIT_S_MAX
    while relay_position(gateway.services.store, relay_name(topic)) < target:
        assert time.monotonic() < deadline, "the in-serve relay did not catch up in time"
        time.sleep(0.05)
    return target


def test_every_event_of_real_traffic_is_published_once_in_log_order_and_nothing_secret(
    relaying_gateway: Gateway,
    simulator: tuple[BackgroundServer, SimulatorState],
    kafka_env: dict[str, str],
) -> None:
    gateway = relaying_gateway
    topic = kafka_env["LEDGERGATE_KAFKA_TOPIC"]
    api_keys = _traffic(gateway, simulator[1], screened=True)
    target = _wait_for_relay(gateway, topic)
    stored = gateway.services.app.recorder.select_notifications(start=1, limit=100_000)
    assert len(stored) > 40 and stored[-1].id == target

    messages = read_topic(kafka_env["LEDGERGATE_KAFKA_BOOTSTRAP"], topic)

    # Every stored event exactly once, in log order (one partition: the topic's order).
    assert [orjson.loads(m.value)["position"] for m in messages] == [n.id for n in stored]
    previous = 0
    versions: dict[bytes, list[int]] = defaultdict(list)
    for message, notification in zip(messages, stored, strict=True):
        record = StoredRecord(
            notification.id,
            notification.originator_id,
            notification.originator_version,
            notification.topic,
            notification.state,
        )
        exported = export_record(record)
        assert orjson.loads(message.value) == exported
        assert message.key == str(notification.originator_id).encode()
        assert message.partition == 0
        assert dict(message.headers) == {
            "ledgergate-position": str(notification.id).encode(),
            "ledgergate-previous-position": str(previous).encode(),
            "ledgergate-topic": notification.topic.encode(),
            "ledgergate-leaf-hash": exported["leaf_hash"].encode(),
        }
        previous = notification.id
        versions[message.key].append(exported["version"])
    # Per key: each aggregate's events in version order, none missing.
    for key, seen in versions.items():
        assert seen == list(range(seen[0], seen[0] + len(seen))), key
    assert len(versions) > 5  # projects, keys, accounts, requests, price book

    # The leak scan, over every byte consumed from the broker (and the decoded states).
    published = b"\n".join(
        b"".join(
            [message.key or b"", message.value]
            + [name.encode() + value for name, value in message.headers]
            + [base64.b64decode(orjson.loads(message.value)["state"])]
        )
        for message in messages
    )
    forbidden: list[str] = [
        PROMPT,
        "hunter2-Kx9-secret",
        COMPLETION,
        "zebra-quartz-4471",
        UPSTREAM_KEY,
        BYOK_KEY,
        BYOK_KEY[8:],
        SECRET_KEY,
        ADMIN_TOKEN,
        *PII_VALUES,
        *api_keys,
        *(key[len("lg_live_") :] for key in api_keys),
    ]
    for value in forbidden:
        for needle in (value.encode(), base64.b64encode(value.encode())):
            assert needle not in published, (
                f"a secret or private value is on the topic ({len(value)} chars)"
            )
    # What was scanned is the real thing: requests, PII decisions and the BYOK key event.
    topics: Any = {m.headers[2][1].decode().rsplit(".", 1)[-1] for m in messages}
    assert {
        "Received",
        "Completed",
        "Failed",
        "Rejected",
        "PiiScreened",
        "ProviderKeySet",
    } <= topics


# SQLite here; the kill -9 test builds the audit and balances views from the topic on
# PostgreSQL (tests/kafka/test_relay_crash_recovery.py).
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_every_view_built_from_the_topic_equals_the_gateways_across_a_consumer_crash(
    relaying_gateway: Gateway,
    simulator: tuple[BackgroundServer, SimulatorState],
    kafka_env: dict[str, str],
    tmp_path: Path,
) -> None:
    gateway = relaying_gateway
    _traffic(gateway, simulator[1], screened=False)
    target = _wait_for_relay(gateway, kafka_env["LEDGERGATE_KAFKA_TOPIC"])
    downstream = ReadStore(None, str(tmp_path / "downstream"))  # a database of its own
    downstream.migrate()
    kafka = KafkaSettings.from_env({**kafka_env, "LEDGERGATE_KAFKA_RELAY_BATCH_EVENTS": "500"})
    try:
        # The first consumer crashes in the middle of a batch: half of it applied (and
        # committed in the views), the group offset not committed. The second one, in the
        # same group, reads that batch again: what was applied is skipped by position.
        first = KafkaFeed(downstream, default_views(), kafka)
        apply = first.apply

        def apply_half_then_crash(decoded: Any) -> int:
            apply(decoded[: len(decoded) // 2])
            raise RuntimeError("crash in the middle of a batch")

        first.apply = apply_half_then_crash  # type: ignore[method-assign]
        with pytest.raises(RuntimeError, match="crash in the middle"):
            first.run(threading.Event())
        assert 0 < first.position < target
        second = KafkaFeed(downstream, default_views(), kafka)
        assert second.run(once=True) == target
        gateway.settle()
        assert view_tables(downstream) == view_tables(gateway.services.store)
    finally:
        downstream.close()
