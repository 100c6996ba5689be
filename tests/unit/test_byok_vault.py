"""The BYOK vault: AES-GCM round trip, associated data binding, fingerprints, refusals."""

from __future__ import annotations

from uuid import uuid4

import pytest

from gateway.byok import KeyVault, SecretKeyMissing, set_provider_key_command
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
