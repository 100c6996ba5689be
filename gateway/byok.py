"""Bring-your-own provider keys: AES-GCM encryption with a key derived from
LEDGERGATE_SECRET_KEY, and the per-request adapter that uses a project's own key.

What is stored (in the Project's ProviderKeySet event): the ciphertext, its 96-bit nonce,
a keyed fingerprint of the provider key (HMAC, so it cannot be brute-forced without the
secret) and a fingerprint of the encryption key (to know which secret a record needs after
a rotation). The provider key itself is never in an event, a log line or an error message.
The associated data binds a ciphertext to its project and provider, so a record copied to
another project or provider does not decrypt.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from domain import commands as c
from domain.project import Project, check_provider
from domain.routing import endpoint_key_ref_provider
from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.providers.base import DEFAULT_BASE_URLS, ProviderAdapter, ProviderEndpoint

SECRET_ENV = "LEDGERGATE_SECRET_KEY"
SECRET_CHARS_MIN = 16
PROVIDER_KEY_CHARS_MAX = 4096
NONCE_BYTES = 12
KDF_INFO = b"ledgergate byok aes-256-gcm v1"
FINGERPRINT_INFO = b"ledgergate byok fingerprint v1"


class SecretKeyMissing(GatewayError):
    def __init__(self) -> None:
        super().__init__(
            "secret_key_missing",
            f"bring-your-own provider keys need {SECRET_ENV} (at least {SECRET_CHARS_MIN} "
            "characters) on the gateway; it is missing or too short",
        )


@dataclass(frozen=True, slots=True)
class SealedKey:
    ciphertext_b64: str
    nonce_b64: str
    key_fingerprint: str
    secret_fingerprint: str


def _derive(secret: str, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret.encode())


@functools.lru_cache(maxsize=4)  # the current secret, and a few a test or rotation holds
def _vault_for(secret: str) -> KeyVault:
    return KeyVault(secret)


class KeyVault:
    """Encrypts and decrypts provider keys. Build it with `from_settings`."""

    def __init__(self, secret: str) -> None:
        if len(secret) < SECRET_CHARS_MIN:
            raise SecretKeyMissing()
        self._aead = AESGCM(_derive(secret, KDF_INFO))
        self._fingerprint_key = _derive(secret, FINGERPRINT_INFO)
        self.secret_fingerprint = hashlib.sha256(_derive(secret, KDF_INFO)).hexdigest()[:16]

    @classmethod
    def from_settings(cls, settings: Settings | Mapping[str, str]) -> KeyVault:
        """The vault of the typed settings' server secret (or of an environment mapping, as
        tests and one-off tools hold). One vault per secret is kept: its keys are derived
        (HKDF) once, not on every BYOK request."""
        if isinstance(settings, Settings):
            secret = settings.server_secret or ""
        else:
            secret = (settings.get(SECRET_ENV) or "").strip()
        if not secret:
            raise SecretKeyMissing()
        return _vault_for(secret)

    @staticmethod
    def _aad(project_id: UUID, provider: str) -> bytes:
        return f"{project_id}|{provider}".encode()

    def fingerprint(self, api_key: str) -> str:
        return hmac.new(self._fingerprint_key, api_key.encode(), hashlib.sha256).hexdigest()[:16]

    def seal(self, project_id: UUID, provider: str, api_key: str) -> SealedKey:
        api_key = api_key.strip()
        if not api_key or len(api_key) > PROVIDER_KEY_CHARS_MAX or not api_key.isprintable():
            # The message never echoes the key.
            raise GatewayError(
                "invalid_request",
                f"a provider key must be 1 to {PROVIDER_KEY_CHARS_MAX} printable characters",
                param="api_key",
            )
        provider = check_provider(provider)
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self._aead.encrypt(nonce, api_key.encode(), self._aad(project_id, provider))
        return SealedKey(
            ciphertext_b64=base64.b64encode(ciphertext).decode(),
            nonce_b64=base64.b64encode(nonce).decode(),
            key_fingerprint=self.fingerprint(api_key),
            secret_fingerprint=self.secret_fingerprint,
        )

    def open(self, project_id: UUID, provider: str, record: Mapping[str, str]) -> str:
        if record.get("secret_fingerprint") != self.secret_fingerprint:
            raise GatewayError(
                "byok_key_unreadable",
                f"this project's {provider} key was stored under another {SECRET_ENV}; "
                "set the key again",
            )
        try:
            plain = self._aead.decrypt(  # (nonce, ciphertext, associated data)
                base64.b64decode(record["nonce_b64"]),
                base64.b64decode(record["ciphertext_b64"]),
                self._aad(project_id, provider),
            )
        except (InvalidTag, ValueError, KeyError):
            raise GatewayError(
                "byok_key_unreadable",
                f"this project's {provider} key could not be decrypted; set it again",
            ) from None
        return plain.decode()


def set_provider_key_command(
    settings: Settings | Mapping[str, str], project_id: UUID, provider: str, api_key: str
) -> c.SetProviderKey:
    """Encrypt first, then build the command: the domain only ever sees the sealed form."""
    vault = KeyVault.from_settings(settings)
    sealed = vault.seal(project_id, provider, api_key)
    return c.SetProviderKey(
        project_id=project_id,
        provider=check_provider(provider),
        ciphertext_b64=sealed.ciphertext_b64,
        nonce_b64=sealed.nonce_b64,
        key_fingerprint=sealed.key_fingerprint,
        secret_fingerprint=sealed.secret_fingerprint,
    )


class ProjectEndpointKeys:
    """Resolves a project endpoint's `api_key_ref` at the point of use: only `byok:<provider>`
    naming a key stored (encrypted) for THIS project resolves, and only to that key; the
    server's environment is never consulted, and a value equal to one of the server's own
    secrets is refused even if it was stored as a project key (defence in depth: the admin
    command already refuses any other reference)."""

    def __init__(self, settings: Settings, project: Project) -> None:
        self._settings = settings
        self._project = project
        self.version = (str(project.id), project.version)  # re-sync when the project's keys change

    def __call__(self, api_key_ref: str, provider: str) -> str | None:
        if endpoint_key_ref_provider(api_key_ref) != provider:
            return None
        record = self._project.provider_key(provider)
        if record is None:
            return None
        try:
            api_key = KeyVault.from_settings(self._settings).open(
                self._project.id, provider, record
            )
        except GatewayError:
            return None
        if api_key.strip() in self._settings.server_secrets:
            return None
        return api_key


def byok_adapter(
    services: object, project: Project, provider: str, managed: ProviderAdapter | None
) -> ProviderAdapter | None:
    """The adapter for this request when the project has its own key for `provider`:
    a per-request endpoint carrying that key, on the gateway's pooled httpx client.
    None when the project has no key for it (the managed adapter applies)."""
    record = project.provider_key(provider)
    if record is None:
        return None
    settings = services.settings  # type: ignore[attr-defined]
    vault = KeyVault.from_settings(settings)
    api_key = vault.open(project.id, provider, record)
    if managed is not None:
        adapter_class: type[ProviderAdapter] = type(managed)
        endpoint = dataclasses.replace(managed.endpoint, api_key=api_key, name="byok")
    else:
        from gateway.bootstrap import adapter_classes  # bootstrap -> lifecycle -> byok: a cycle

        classes = adapter_classes()
        base_url = settings.provider_base_urls.get(provider) or DEFAULT_BASE_URLS.get(provider)
        if provider not in classes or not base_url:
            return None
        adapter_class = classes[provider]
        endpoint = ProviderEndpoint(
            provider=provider, base_url=base_url, api_key=api_key, name="byok"
        )
    client = services.http_client  # type: ignore[attr-defined]
    return adapter_class(endpoint, client)
