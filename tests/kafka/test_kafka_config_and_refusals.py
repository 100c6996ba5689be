"""Kafka configuration (TLS/SASL pass-through, secrets never logged), the one-active-relay
lock on both databases, and a Kafka-fed view refusing a tampered or missing message."""

from __future__ import annotations

import base64
import logging
import secrets
import threading
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from domain.application import open_application
from domain.audit_log import StoredRecord, export_record
from gateway.kafka_feed import FeedError, KafkaFeed
from gateway.kafka_settings import (
    CONSUMER_HEARTBEAT_INTERVAL_MS,
    CONSUMER_SESSION_TIMEOUT_MS,
    KafkaConfigError,
    KafkaSettings,
)
from gateway.relay import (
    OutboxRelay,
    RelayLock,
    message_for,
    redacted,
    relay_name,
    store_relay_position,
)
from projections.audit import AuditView
from projections.db import ReadStore
from tests.kafka.workload import write_lifecycles

PASSWORD = "sasl-Pa55word-never-logged"
MANAGED = {
    "LEDGERGATE_KAFKA_BOOTSTRAP": "b-1.example:9096, b-2.example:9096",
    "LEDGERGATE_KAFKA_TOPIC": "audit.events",
    "LEDGERGATE_KAFKA_CLIENT_ID": "gw-eu-1",
    "LEDGERGATE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
    "LEDGERGATE_KAFKA_SASL_MECHANISM": "scram-sha-512",
    "LEDGERGATE_KAFKA_SASL_USERNAME": "ledgergate",
    "LEDGERGATE_KAFKA_SASL_PASSWORD": PASSWORD,
    "LEDGERGATE_KAFKA_SSL_CAFILE": "/etc/kafka/ca.pem",
    "LEDGERGATE_KAFKA_SSL_CERTFILE": "/etc/kafka/client.pem",
    "LEDGERGATE_KAFKA_SSL_KEYFILE": "/etc/kafka/client.key",
}


def test_a_managed_cluster_configuration_passes_through_to_every_client() -> None:
    kafka = KafkaSettings.from_env(MANAGED)
    assert kafka.connection_kwargs() == {
        "bootstrap_servers": ["b-1.example:9096", "b-2.example:9096"],
        "client_id": "gw-eu-1",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "ledgergate",
        "sasl_plain_password": PASSWORD,
        "ssl_cafile": "/etc/kafka/ca.pem",
        "ssl_certfile": "/etc/kafka/client.pem",
        "ssl_keyfile": "/etc/kafka/client.key",
    }
    assert kafka.topic == "audit.events"
    assert PASSWORD not in repr(kafka) and PASSWORD not in kafka.describe()
    assert "sasl_username=ledgergate" in kafka.describe()
    error = RuntimeError(f"broker said: bad credentials {PASSWORD}\nmore")
    assert redacted(error, kafka) == "broker said: bad credentials ***"


def test_defaults_and_clear_refusals_of_settings_that_cannot_work() -> None:
    plain = KafkaSettings.from_env({"LEDGERGATE_KAFKA_BOOTSTRAP": "kafka:9092"})
    assert (plain.topic, plain.client_id, plain.security_protocol) == (
        "ledgergate.events",
        "ledgergate",
        "PLAINTEXT",
    )
    assert plain.relay_batch_events == 500 and not plain.run_relay_in_serve
    assert "sasl_plain_password" not in plain.connection_kwargs()
    with pytest.raises(KafkaConfigError, match="LEDGERGATE_KAFKA_BOOTSTRAP"):
        KafkaSettings.from_env({}).require_bootstrap()
    refusals = [
        ({"LEDGERGATE_KAFKA_SECURITY_PROTOCOL": "TLS"}, "SECURITY_PROTOCOL"),
        ({"LEDGERGATE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "SASL_USERNAME"),
        (
            {**MANAGED, "LEDGERGATE_KAFKA_SASL_MECHANISM": "GSSAPI"},
            "SASL_MECHANISM must be one of",
        ),
        ({"LEDGERGATE_KAFKA_SASL_MECHANISM": "PLAIN"}, "is not SASL_PLAINTEXT"),
        ({"LEDGERGATE_KAFKA_RELAY_BATCH_EVENTS": "0"}, "between 1 and 10000"),
        ({"LEDGERGATE_KAFKA_REPLICATION_FACTOR": "three"}, "must be an integer"),
    ]
    for values, message in refusals:
        with pytest.raises(KafkaConfigError, match=message) as caught:
            KafkaSettings.from_env(values)
        assert PASSWORD not in str(caught.value)


def test_the_admin_clients_debug_dump_of_its_configuration_never_reaches_the_logs(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    """kafka-python logs its whole admin configuration, SASL password included, at DEBUG;
    gateway.kafka_settings caps that logger, so even LEDGERGATE_LOG_LEVEL=DEBUG hides it."""
    caplog.set_level(logging.DEBUG)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, sasl_plain_password=PASSWORD)
    admin.close()
    assert "Starting KafkaAdminClient" not in caplog.text
    assert PASSWORD not in caplog.text
    # The cap is what hides it: lifted, the real line carries the password.
    logger = logging.getLogger("kafka.admin.client")
    logger.setLevel(logging.DEBUG)
    try:
        KafkaAdminClient(bootstrap_servers=kafka_bootstrap, sasl_plain_password=PASSWORD).close()
    finally:
        logger.setLevel(logging.INFO)
    assert PASSWORD in caplog.text


def test_one_relay_is_active_per_topic_and_database_and_a_standby_takes_over(
    backend: dict[str, str],
) -> None:
    store = ReadStore(backend.get("LEDGERGATE_DATABASE_URL"), backend["LEDGERGATE_DATA_DIR"])
    try:
        name = relay_name("ledgergate.events")
        active, standby = RelayLock.for_store(store, name), RelayLock.for_store(store, name)
        other_topic = RelayLock.for_store(store, relay_name("other.events"))
        assert active.acquire() and active.held()
        assert not standby.acquire()
        assert other_topic.acquire()  # another topic has its own relay
        active.release()  # the active relay dies: its session or file lock goes with it
        assert standby.acquire() and standby.held()
        standby.release()
        other_topic.release()
    finally:
        store.close()


def _assigned_consumer(kafka: KafkaSettings) -> Any:
    """The feed's consumer without the group join wait: partition 0 assigned directly
    (offsets still committed to the group)."""
    consumer = KafkaConsumer(
        **kafka.connection_kwargs(),
        group_id=kafka.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=CONSUMER_SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=CONSUMER_HEARTBEAT_INTERVAL_MS,
    )
    consumer.assign([TopicPartition(kafka.topic, 0)])
    return consumer


@pytest.fixture
def relay_messages(tmp_path: Path) -> list[Any]:
    """The messages the relay would send for a small real store, in log order."""
    write_lifecycles(None, str(tmp_path / "source"), 8)
    app = open_application(None, str(tmp_path / "source"))
    try:
        notifications = app.recorder.select_notifications(start=1, limit=1000)
    finally:
        app.close()
    previous, messages = 0, []
    for notification in notifications:
        messages.append(message_for(notification, previous))
        previous = notification.id
    return messages


def _feed_from(kafka_env: dict[str, str], messages: list[Any], tmp_path: Path) -> KafkaFeed:
    kafka = KafkaSettings.from_env(kafka_env)
    producer = KafkaProducer(**kafka.connection_kwargs(), acks="all", enable_idempotence=True)
    for message in messages:
        producer.send(
            kafka.topic, key=message.key, value=message.value, headers=message.headers, partition=0
        )
    producer.flush(10)
    producer.close()
    store = ReadStore(None, str(tmp_path / f"downstream-{secrets.token_hex(3)}"))
    store.migrate()
    return KafkaFeed(store, [AuditView()], kafka, consumer_factory=_assigned_consumer)


def test_a_kafka_fed_view_refuses_a_gap_in_the_log_and_names_it(
    kafka_env: dict[str, str], relay_messages: list[Any], tmp_path: Path
) -> None:
    missing = relay_messages[5]
    with_gap = relay_messages[:5] + relay_messages[6:]
    feed = _feed_from(kafka_env, with_gap, tmp_path)
    with pytest.raises(FeedError) as caught:
        feed.run(once=True)
    assert f"position {relay_messages[6].position} follows {missing.position}" in str(caught.value)
    assert feed.position == relay_messages[4].position  # everything before the gap applied


def test_a_kafka_fed_view_refuses_a_record_whose_bytes_were_altered(
    kafka_env: dict[str, str], relay_messages: list[Any], tmp_path: Path
) -> None:
    target = relay_messages[3]
    value = orjson.loads(target.value)
    state = bytearray(base64.b64decode(value["state"]))
    state[len(state) // 2] ^= 0x01  # one bit, leaf hash left as it was
    value["state"] = base64.b64encode(bytes(state)).decode()
    altered = type(target)(target.position, target.key, orjson.dumps(value), target.headers)
    feed = _feed_from(kafka_env, [*relay_messages[:3], altered, *relay_messages[4:]], tmp_path)
    with pytest.raises(FeedError, match=f"position {target.position}: the leaf hash"):
        feed.run(once=True)


def test_an_event_the_view_cannot_decode_is_a_dead_letter_as_in_the_log_runner(
    kafka_env: dict[str, str], relay_messages: list[Any], tmp_path: Path
) -> None:
    """An intact record (its leaf hash matches) whose event class this version does not
    know: recorded in lg_dead_letters and passed over, the view goes on to the end."""
    target = relay_messages[2]
    value = orjson.loads(target.value)
    record = StoredRecord(
        value["position"],
        UUID(value["aggregate_id"]),
        value["version"],
        "domain.request:Request.FromAFutureVersion",
        base64.b64decode(value["state"]),
    )
    exported = export_record(record)
    headers = [
        (name, exported["leaf_hash"].encode() if name == "ledgergate-leaf-hash" else data)
        for name, data in target.headers
    ]
    unknown = type(target)(target.position, target.key, orjson.dumps(exported), headers)
    feed = _feed_from(kafka_env, [*relay_messages[:2], unknown, *relay_messages[3:]], tmp_path)
    assert feed.run(once=True) == relay_messages[-1].position
    with feed.store.transaction(write=False) as tx:
        letters = tx.execute("SELECT view, position, topic FROM lg_dead_letters").fetchall()
    assert letters == [{"view": "audit", "position": target.position, "topic": record.topic}]
    assert feed.dead_letters == 1


def test_relay_once_beside_an_active_relay_waits_for_it_and_never_publishes_itself(
    tmp_path: Path,
) -> None:
    data_dir = str(tmp_path / "data")
    target = write_lifecycles(None, data_dir, 2)
    app, store = open_application(None, data_dir), ReadStore(None, data_dir)
    store.migrate()
    kafka = KafkaSettings.from_env({"LEDGERGATE_KAFKA_BOOTSTRAP": "127.0.0.1:1"})

    def no_producer(_: KafkaSettings) -> Any:
        raise AssertionError("a standing-by relay must not publish")

    active = RelayLock.for_store(store, relay_name(kafka.topic))
    try:
        assert active.acquire()
        store_relay_position(store, relay_name(kafka.topic), target)  # the active one's work
        standby = OutboxRelay(
            app.recorder, store, kafka, producer_factory=no_producer, topic_setup=no_producer
        )
        give_up = threading.Event()  # bounds the test should it not notice
        timer = threading.Timer(10.0, give_up.set)
        timer.start()
        assert standby.run(give_up, once=True) == target
        assert not give_up.is_set()
        timer.cancel()
    finally:
        active.release()
        store.close()
        app.close()
