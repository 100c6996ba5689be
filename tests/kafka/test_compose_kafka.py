"""docker-compose.yml's Kafka broker and relay, checked structurally (no container engine
here): a KRaft single node whose listeners the relay can reach, and the relay service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _services() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]  # type: ignore[no-any-return]


def test_compose_runs_a_single_node_kraft_broker_reachable_by_the_services() -> None:
    kafka = _services()["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert advertised["PLAINTEXT"] == "kafka:9092" and listeners["PLAINTEXT"] == ":9092"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] not in advertised
    assert set(listeners) == set(protocols)
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1  # one broker
    assert "kafkadata:/var/lib/kafka/data" in kafka["volumes"]
    assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert "healthcheck" in kafka


def test_compose_runs_the_relay_from_the_gateway_image_once_db_and_broker_are_healthy() -> None:
    services = _services()
    relay = services["relay"]
    assert relay["image"] == services["gateway"]["image"]
    assert relay["command"] == ["ledgergate", "relay", "run"]
    assert relay["environment"]["LEDGERGATE_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert relay["environment"]["LEDGERGATE_DATABASE_URL"].startswith("postgresql://")
    assert relay["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "kafka": {"condition": "service_healthy"},
    }
