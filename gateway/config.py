"""Configuration from the environment; an optional TOML file (LEDGERGATE_CONFIG) may add to it.
The environment always wins over the file."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from domain import vocabulary
from domain.settlement import DEFAULT_FEE_RATE

if TYPE_CHECKING:
    from gateway.audit import AuditSettings
    from gateway.kafka_settings import KafkaSettings

# The settings whose value is a secret (LEDGERGATE_SECRET_KEY, LEDGERGATE_ADMIN_TOKEN,
# LEDGERGATE_OPENAI_API_KEY, LEDGERGATE_CREDENTIAL_SECRET, ...), or a comma-separated list of
# them (LEDGERGATE_OPENAI_API_KEYS, LEDGERGATE_CREDENTIAL_PREVIOUS_SECRETS).
SECRET_NAME_ENDINGS = ("_SECRET_KEY", "_API_KEY", "_TOKEN", "_SECRET")
SECRET_LIST_NAME_ENDINGS = ("_API_KEYS", "_SECRETS")

# LEDGERGATE_<P>_BASE_URL / _API_KEY for every provider of the one vocabulary.
PROVIDERS = tuple(provider.upper() for provider in vocabulary.PROVIDERS)


def _truthy(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def load_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    merged: dict[str, str] = {}
    source = dict(os.environ if env is None else env)
    config_path = source.get("LEDGERGATE_CONFIG")
    if config_path:
        with open(config_path, "rb") as handle:
            data = tomllib.load(handle)
        for key, value in data.items():
            name = key.upper()
            if not name.startswith("LEDGERGATE_"):
                name = "LEDGERGATE_" + name
            merged[name] = str(value)
    merged.update(source)
    return merged


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    data_dir: str = ".ledgergate"
    admin_token: str | None = None
    provider_base_urls: dict[str, str] = field(default_factory=dict)
    provider_api_keys: dict[str, str] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)
    request_timeout_s: float = 600.0
    sweep_grace_s: float = 30.0
    sweep_interval_s: float = 30.0
    run_projections: bool = True
    run_sweeper: bool = True
    default_max_output_tokens: int = 4096
    platform_fee_rate: Decimal = DEFAULT_FEE_RATE
    log_level: str = "INFO"
    # Fairness (gateway/fairness.py): a project's requests in flight on one process, kept
    # well below the upstream connection pool so one tenant cannot take all of it.
    project_inflight_max: int = 50
    upstream_connections_max: int = 200
    # Read once here so no module reads the raw environment for them later.
    actor_token_secret: str | None = None  # LEDGERGATE_ACTOR_TOKEN_SECRET: signs X-Actor-Token
    log_format: str = "json"  # LEDGERGATE_LOG_FORMAT
    seed_catalog_prices: bool = True  # LEDGERGATE_SEED_CATALOG_PRICES
    run_relay: bool = False  # LEDGERGATE_RUN_RELAY: the Kafka relay inside `serve`
    # Operations: /ready fails when the read models lag the log by more than this; /metrics
    # wants `Bearer <metrics_token>` when one is set.
    ready_lag_positions_max: int = 1000
    metrics_token: str | None = None
    # Temporary credentials (issue 14): the HS256 secret that signs them (32+ bytes; unset,
    # credentials are off), and earlier secrets that still verify what they signed.
    credential_secret: str | None = None  # LEDGERGATE_CREDENTIAL_SECRET
    credential_previous_secrets: tuple[str, ...] = ()  # LEDGERGATE_CREDENTIAL_PREVIOUS_SECRETS
    # The response cache's bounds (gateway/response_cache.py ResponseCacheStore).
    response_cache_entries_max: int = 10_000  # LEDGERGATE_RESPONSE_CACHE_ENTRIES_MAX
    response_cache_bytes_max: int = 64 * 1024 * 1024  # LEDGERGATE_RESPONSE_CACHE_BYTES_MAX
    # One project's share of it (LEDGERGATE_RESPONSE_CACHE_PROJECT_{ENTRIES,BYTES}_MAX).
    response_cache_project_entries_max: int = 2_000
    response_cache_project_bytes_max: int = 16 * 1024 * 1024
    # The server's secret (LEDGERGATE_SECRET_KEY): BYOK key vault, shared cache entries.
    server_secret: str | None = None
    # The standard AWS_* credentials (Bedrock may be configured by them alone, SigV4).
    aws_environment: dict[str, str] = field(default_factory=dict)
    # The standard OTEL_* variables (the OTLP endpoint and service name of the traces).
    otel_environment: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        values = load_environment(env)
        base_urls: dict[str, str] = {}
        api_keys: dict[str, str] = {}
        for provider in PROVIDERS:
            if values.get(f"LEDGERGATE_{provider}_BASE_URL"):
                base_urls[provider.lower()] = values[f"LEDGERGATE_{provider}_BASE_URL"]
            if values.get(f"LEDGERGATE_{provider}_API_KEY"):
                api_keys[provider.lower()] = values[f"LEDGERGATE_{provider}_API_KEY"]
        return cls(
            database_url=values.get("LEDGERGATE_DATABASE_URL") or None,
            data_dir=values.get("LEDGERGATE_DATA_DIR") or ".ledgergate",
            admin_token=values.get("LEDGERGATE_ADMIN_TOKEN") or None,
            provider_base_urls=base_urls,
            provider_api_keys=api_keys,
            raw={k: v for k, v in values.items() if k.startswith("LEDGERGATE_")},
            request_timeout_s=float(values.get("LEDGERGATE_REQUEST_TIMEOUT_S") or 600.0),
            sweep_grace_s=float(values.get("LEDGERGATE_SWEEP_GRACE_S") or 30.0),
            sweep_interval_s=float(values.get("LEDGERGATE_SWEEP_INTERVAL_S") or 30.0),
            run_projections=_truthy(values.get("LEDGERGATE_RUN_PROJECTIONS"), True),
            run_sweeper=_truthy(values.get("LEDGERGATE_RUN_SWEEPER"), True),
            default_max_output_tokens=int(
                values.get("LEDGERGATE_DEFAULT_MAX_OUTPUT_TOKENS") or 4096
            ),
            log_level=values.get("LEDGERGATE_LOG_LEVEL") or "INFO",
            project_inflight_max=int(values.get("LEDGERGATE_PROJECT_INFLIGHT_MAX") or 50),
            upstream_connections_max=int(values.get("LEDGERGATE_UPSTREAM_CONNECTIONS_MAX") or 200),
            actor_token_secret=values.get("LEDGERGATE_ACTOR_TOKEN_SECRET") or None,
            log_format=values.get("LEDGERGATE_LOG_FORMAT") or "json",
            seed_catalog_prices=values.get("LEDGERGATE_SEED_CATALOG_PRICES", "1") != "0",
            run_relay=_truthy(values.get("LEDGERGATE_RUN_RELAY"), False),
            ready_lag_positions_max=int(values.get("LEDGERGATE_READY_LAG_POSITIONS_MAX") or 1000),
            metrics_token=values.get("LEDGERGATE_METRICS_TOKEN") or None,
            credential_secret=values.get("LEDGERGATE_CREDENTIAL_SECRET") or None,
            credential_previous_secrets=tuple(
                part.strip()
                for part in (values.get("LEDGERGATE_CREDENTIAL_PREVIOUS_SECRETS") or "").split(",")
                if part.strip()
            ),
            response_cache_entries_max=int(
                values.get("LEDGERGATE_RESPONSE_CACHE_ENTRIES_MAX")
                or cls.response_cache_entries_max
            ),
            response_cache_bytes_max=int(
                values.get("LEDGERGATE_RESPONSE_CACHE_BYTES_MAX") or cls.response_cache_bytes_max
            ),
            response_cache_project_entries_max=int(
                values.get("LEDGERGATE_RESPONSE_CACHE_PROJECT_ENTRIES_MAX")
                or cls.response_cache_project_entries_max
            ),
            response_cache_project_bytes_max=int(
                values.get("LEDGERGATE_RESPONSE_CACHE_PROJECT_BYTES_MAX")
                or cls.response_cache_project_bytes_max
            ),
            server_secret=(values.get("LEDGERGATE_SECRET_KEY") or "").strip() or None,
            aws_environment={k: v for k, v in values.items() if k.startswith("AWS_")},
            otel_environment={k: v for k, v in values.items() if k.startswith("OTEL_")},
        )

    @cached_property
    def server_secrets(self) -> frozenset[str]:
        """Every secret the gateway holds in its configuration: the admin, metrics and
        actor-token secrets, the server secret, the credential secrets (current and previous)
        and every managed provider key. None of them may ever be sent to a project's own
        endpoint (gateway/byok.ProjectEndpointKeys; tests/e2e/test_tenancy.py)."""
        values: set[str] = set()
        for name, value in self.raw.items():
            if not isinstance(value, str) or not name.startswith("LEDGERGATE_"):
                continue
            if name.endswith(SECRET_NAME_ENDINGS):
                values.add(value.strip())
            elif name.endswith(SECRET_LIST_NAME_ENDINGS):
                values.update(item.strip() for item in value.split(","))
        values.discard("")
        return frozenset(values)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    # Typed sub-settings, parsed once from `raw` on first use: a malformed value is refused
    # by the command that needs it (KafkaConfigError, AuditConfigError), not by every one.
    @cached_property
    def kafka(self) -> KafkaSettings:
        from gateway.kafka_settings import KafkaSettings

        return KafkaSettings.from_env(self.raw)

    @cached_property
    def audit(self) -> AuditSettings:
        from gateway.audit import AuditSettings

        return AuditSettings.from_raw(self.raw, self.data_dir)
