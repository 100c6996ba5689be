"""Kafka configuration for the outbox relay and the Kafka-fed projections.

Everything comes from the environment (or the TOML file, see gateway.config): the
bootstrap servers, the topic, the client id, the consumer group and a TLS/SASL
pass-through for managed clusters. Secrets (the SASL password, the key-file password)
are kept out of `repr`, out of `describe()` and out of every log line: kafka-python's
admin client logs its whole configuration at DEBUG, so that logger is capped at INFO.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TOPIC = "ledgergate.events"
DEFAULT_CLIENT_ID = "ledgergate"
DEFAULT_GROUP_ID = "ledgergate-projections"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# One relay batch: events read from the log, sent, acknowledged, then the position stored.
# It is also the at-least-once window: a crash republishes at most this many events.
RELAY_BATCH_EVENTS_DEFAULT = 500
RELAY_BATCH_EVENTS_MAX = 10_000
# Group-membership timing that real Kafka accepts (group.min.session.timeout.ms is 6 s) and
# with which tansu assigns partitions in ~3 s instead of ~23 s (reference/NEXT.md 1.4).
CONSUMER_SESSION_TIMEOUT_MS = 6_000
CONSUMER_HEARTBEAT_INTERVAL_MS = 1_000

# kafka-python's KafkaAdminClient logs "Starting KafkaAdminClient with configuration: {...}"
# at DEBUG, SASL password included. Never let that line through, whatever the log level.
logging.getLogger("kafka.admin.client").setLevel(logging.INFO)


class KafkaConfigError(ValueError):
    """A Kafka setting that cannot work; the message names the variable, never a secret."""


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def relay_in_serve_enabled(values: Mapping[str, str]) -> bool:
    return _truthy(values.get("LEDGERGATE_RUN_RELAY"))


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str | None = None
    topic: str = DEFAULT_TOPIC
    client_id: str = DEFAULT_CLIENT_ID
    group_id: str = DEFAULT_GROUP_ID
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_key_password: str | None = field(default=None, repr=False)
    replication_factor: int = 1
    relay_batch_events: int = RELAY_BATCH_EVENTS_DEFAULT
    run_relay_in_serve: bool = False

    @classmethod
    def from_env(cls, values: Mapping[str, str]) -> KafkaSettings:
        """From the merged LEDGERGATE_* values (`Settings.raw`)."""

        def get(name: str) -> str | None:
            value = values.get(f"LEDGERGATE_KAFKA_{name}")
            return value.strip() if value and value.strip() else None

        protocol = (get("SECURITY_PROTOCOL") or "PLAINTEXT").upper()
        if protocol not in SECURITY_PROTOCOLS:
            raise KafkaConfigError(
                f"LEDGERGATE_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(SECURITY_PROTOCOLS)}"
            )
        mechanism = get("SASL_MECHANISM")
        mechanism = mechanism.upper() if mechanism else None
        if protocol.startswith("SASL_"):
            mechanism = mechanism or "PLAIN"
            if mechanism not in SASL_MECHANISMS:
                raise KafkaConfigError(
                    f"LEDGERGATE_KAFKA_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)}"
                )
            if not get("SASL_USERNAME") or values.get("LEDGERGATE_KAFKA_SASL_PASSWORD") is None:
                raise KafkaConfigError(
                    f"{protocol} needs LEDGERGATE_KAFKA_SASL_USERNAME and LEDGERGATE_KAFKA_SASL_PASSWORD"
                )
        elif mechanism:
            raise KafkaConfigError(
                "LEDGERGATE_KAFKA_SASL_MECHANISM is set but LEDGERGATE_KAFKA_SECURITY_PROTOCOL "
                "is not SASL_PLAINTEXT or SASL_SSL"
            )
        return cls(
            bootstrap=get("BOOTSTRAP"),
            topic=get("TOPIC") or DEFAULT_TOPIC,
            client_id=get("CLIENT_ID") or DEFAULT_CLIENT_ID,
            group_id=get("GROUP_ID") or DEFAULT_GROUP_ID,
            security_protocol=protocol,
            sasl_mechanism=mechanism if protocol.startswith("SASL_") else None,
            sasl_username=get("SASL_USERNAME"),
            # Passwords are taken verbatim (a leading space may be part of one).
            sasl_password=values.get("LEDGERGATE_KAFKA_SASL_PASSWORD"),
            ssl_cafile=get("SSL_CAFILE"),
            ssl_certfile=get("SSL_CERTFILE"),
            ssl_keyfile=get("SSL_KEYFILE"),
            ssl_key_password=values.get("LEDGERGATE_KAFKA_SSL_KEY_PASSWORD") or None,
            replication_factor=_bounded_int(
                get("REPLICATION_FACTOR"), "REPLICATION_FACTOR", 1, 1, 16
            ),
            relay_batch_events=_bounded_int(
                get("RELAY_BATCH_EVENTS"),
                "RELAY_BATCH_EVENTS",
                RELAY_BATCH_EVENTS_DEFAULT,
                1,
                RELAY_BATCH_EVENTS_MAX,
            ),
            run_relay_in_serve=relay_in_serve_enabled(values),
        )

    def require_bootstrap(self) -> str:
        if not self.bootstrap:
            raise KafkaConfigError("set LEDGERGATE_KAFKA_BOOTSTRAP (host:port[,host:port…])")
        return self.bootstrap

    def connection_kwargs(self) -> dict[str, Any]:
        """What every kafka-python client (producer, consumer, admin) gets: servers, id,
        and the TLS/SASL pass-through."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": [
                s.strip() for s in self.require_bootstrap().split(",") if s.strip()
            ],
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL_"):
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        if self.security_protocol in ("SSL", "SASL_SSL"):
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                if getattr(self, name):
                    kwargs[name] = getattr(self, name)
            if self.ssl_key_password:
                kwargs["ssl_password"] = self.ssl_key_password
        return kwargs

    def describe(self) -> str:
        """For log lines: where and how we connect, never a secret."""
        parts = [
            f"bootstrap={self.bootstrap}",
            f"topic={self.topic}",
            f"client_id={self.client_id}",
            f"security_protocol={self.security_protocol}",
        ]
        if self.sasl_mechanism:
            parts.append(f"sasl_mechanism={self.sasl_mechanism}")
            parts.append(f"sasl_username={self.sasl_username}")
        return " ".join(parts)


def _bounded_int(text: str | None, name: str, default: int, lowest: int, highest: int) -> int:
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise KafkaConfigError(f"LEDGERGATE_KAFKA_{name} must be an integer") from None
    if not lowest <= value <= highest:
        raise KafkaConfigError(f"LEDGERGATE_KAFKA_{name} must be between {lowest} and {highest}")
    return value
