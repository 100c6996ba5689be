"""The BYOK vault: AES-GCM round trip, associated data binding, fingerprints, refusals."""

from __future__ import annotations

from uuid import uuid4

import pytest

from gateway.byok import KeyVault, SecretKeyMissing, set_provider_key_command
from gateway.config import Settings
from gateway.errors import GatewayError

SECRET = "a-test-secret-key-of-32-characters!"


def test_a_sealed_key_opens_only_for_its_project_and_provider_and_never_shows_the_key() -> None:
    vault = KeyVault(SECRET)
    project = uuid4()
    sealed = vault.seal(project, "openai", "sk-live-abc123")
    record = {
        "ciphertext_b64": sealed.ciphertext_b64,
        "nonce_b64": sealed.nonce_b64,
        "secret_fingerprint": sealed.secret_fingerprint,
    }
    assert vault.open(project, "openai", record) == "sk-live-abc123"
    assert "sk-live" not in repr(sealed)
    with pytest.raises(GatewayError) as other_project:
        vault.open(uuid4(), "openai", record)
    assert other_project.value.code == "byok_key_unreadable"
    with pytest.raises(GatewayError):
        vault.open(project, "mistral", record)
    with pytest.raises(GatewayError) as rotated:
        KeyVault(SECRET + "-rotated").open(project, "openai", record)
    assert "another LEDGERGATE_SECRET_KEY" in rotated.value.message


def test_the_same_key_has_the_same_fingerprint_and_a_fresh_nonce_each_time() -> None:
    vault = KeyVault(SECRET)
    project = uuid4()
    first, second = (vault.seal(project, "openai", "sk-1") for _ in range(2))
    assert first.key_fingerprint == second.key_fingerprint
    assert first.nonce_b64 != second.nonce_b64
    assert first.key_fingerprint != vault.seal(project, "openai", "sk-2").key_fingerprint


def test_byok_refuses_clearly_without_or_with_a_short_secret_and_never_echoes_the_key() -> None:
    for raw in ({}, {"LEDGERGATE_SECRET_KEY": "short"}):
        with pytest.raises(SecretKeyMissing) as missing:
            set_provider_key_command(raw, uuid4(), "openai", "sk-secret-value")
        assert missing.value.code == "secret_key_missing" and missing.value.status == 503
        assert "sk-secret-value" not in missing.value.message
    with pytest.raises(GatewayError) as bad:
        set_provider_key_command({"LEDGERGATE_SECRET_KEY": SECRET}, uuid4(), "openai", "sk\nx")
    assert "sk\nx" not in bad.value.message


def test_the_vault_of_the_typed_settings_is_derived_once_per_secret() -> None:
    settings = Settings.from_env({"LEDGERGATE_SECRET_KEY": SECRET})
    vault = KeyVault.from_settings(settings)
    assert KeyVault.from_settings(settings) is vault  # no HKDF per BYOK request
    assert KeyVault.from_settings({"LEDGERGATE_SECRET_KEY": SECRET}) is vault
    with pytest.raises(SecretKeyMissing):
        KeyVault.from_settings(Settings.from_env({}))


def test_every_secret_of_the_configuration_is_one_a_project_endpoint_may_never_receive() -> None:
    settings = Settings.from_env(
        {
            "LEDGERGATE_SECRET_KEY": SECRET,
            "LEDGERGATE_ADMIN_TOKEN": "admin-token",
            "LEDGERGATE_METRICS_TOKEN": "metrics-token",
            "LEDGERGATE_ACTOR_TOKEN_SECRET": "actor-secret",
            "LEDGERGATE_CREDENTIAL_SECRET": "credential-secret",
            "LEDGERGATE_CREDENTIAL_PREVIOUS_SECRETS": "old-one, old-two",
            "LEDGERGATE_OPENAI_API_KEY": " sk-managed ",
            "LEDGERGATE_MISTRAL_API_KEYS": "m-1,m-2",
            "LEDGERGATE_LOG_LEVEL": "INFO",
            "LEDGERGATE_DEFAULT_MAX_OUTPUT_TOKENS": "4096",
        }
    )
    assert settings.server_secrets == {
        SECRET,
        "admin-token",
        "metrics-token",
        "actor-secret",
        "credential-secret",
        "old-one",
        "old-two",
        "sk-managed",
        "m-1",
        "m-2",
    }
