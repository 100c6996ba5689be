"""Temporary credentials as JWTs (issue 14): minting, verifying, and authenticating a
`Authorization: Bearer <jwt>` wherever an API key is accepted.

A credential is signed with HS256 under the server secret `LEDGERGATE_CREDENTIAL_SECRET`
(32+ bytes); its header names the secret by `kid` (a fingerprint, never the secret), so a
rotated secret keeps verifying the tokens it signed while `LEDGERGATE_CREDENTIAL_PREVIOUS_SECRETS`
lists it. Claims: `iss`/`aud` "ledgergate", `jti` (the credential's id on the ledger),
`project`, `key` (the issuing key's id), `mode`, `grants` {`models`, `budget`, `currency`,
`user`}, `iat`, `exp`.

The signature proves the token was minted here; the Credential aggregate (domain/credentials.py)
decides whether it may still be used: it is loaded from the event store on every use, not
from a cache, so a revocation answered 200 is refused by every process from the next request
on. Expiry is checked against the gateway's injectable clock, not the wall clock, so tests
can travel it.

The token is never logged, recorded or echoed: errors name the credential by `jti` at most.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import anyio.to_thread
import jwt
from eventsourcing.application import AggregateNotFoundError

from domain.catalog import Catalog
from domain.credentials import (
    Credential,
    CredentialExpired,
    CredentialModelNotGranted,
    credential_id,
)
from domain.errors import ModelCapabilityMissing, ModelNotCompliant
from domain.project import ApiKey, Project
from gateway.auth import authenticate_key, credential_token
from gateway.errors import GatewayError
from gateway.routing.selector import MODE_EXPLICIT, parse_model_field

SECRET_SETTING = "LEDGERGATE_CREDENTIAL_SECRET"
SECRET_BYTES_MIN = 32  # HS256's key should be at least as long as its output (RFC 7518 §3.2)
ALGORITHM = "HS256"
ISSUER = "ledgergate"
AUDIENCE = "ledgergate"
REQUIRED_CLAIMS = ("exp", "iat", "jti", "iss", "aud", "project", "key")


def new_jti() -> str:
    return secrets.token_hex(16)


def key_fingerprint(secret: bytes) -> str:
    """The `kid` of a secret: which secret signed a token, without revealing it."""
    return "hs256-" + hashlib.sha256(b"ledgergate-credential-kid:" + secret).hexdigest()[:16]


def looks_like_credential(token: str) -> bool:
    """A JWT in compact form, not an API key (`lg_live_…`): gateway/auth.credential_token's
    rule, the one home of it."""

    return credential_token(f"Bearer {token}") is not None


@dataclass(frozen=True)
class CredentialClaims:
    jti: str
    project_id: UUID
    issuing_key_id: UUID
    kid: str
    expires_at: int


class CredentialSigner:
    """Signs with the current secret; verifies with the current or a listed previous one."""

    def __init__(self, secret: bytes, previous: tuple[bytes, ...] = ()) -> None:
        for candidate in (secret, *previous):
            if len(candidate) < SECRET_BYTES_MIN:
                raise ValueError(
                    f"{SECRET_SETTING} (and each previous secret) needs {SECRET_BYTES_MIN}+ bytes"
                )
        self._secret = secret
        self.kid = key_fingerprint(secret)
        self._by_kid = {key_fingerprint(s): s for s in (*previous, secret)}

    @classmethod
    def from_settings(cls, settings: Any) -> CredentialSigner | None:
        """None when no secret is configured: credentials are then off (503 on minting)."""
        if not settings.credential_secret:
            return None
        return cls(
            settings.credential_secret.encode(),
            tuple(secret.encode() for secret in settings.credential_previous_secrets),
        )

    def mint(self, view: Mapping[str, Any], *, issued_at: datetime, expires_at: datetime) -> str:
        """The token for an issued credential (its ledger view, domain/credentials.credential_view)."""
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "jti": view["id"],
            "project": view["project_id"],
            "key": view["key_id"],
            "mode": view["mode"],
            "grants": {
                "models": list(view["models"]),
                "budget": view["budget"],
                "currency": view["currency"],
                "user": view["user"],
            },
            "iat": int(issued_at.timestamp()),
            "exp": int(expires_at.timestamp()),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM, headers={"kid": self.kid})

    def verify(self, token: str, now: datetime) -> CredentialClaims:
        """The token's claims when this gateway signed it and it has not expired."""
        invalid = GatewayError("invalid_api_key", "this credential is not valid")
        try:
            header = jwt.get_unverified_header(token)
            secret = self._by_kid.get(str(header.get("kid")))
            if secret is None:
                raise invalid
            claims = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],  # fixed: never taken from the token (RFC 8725 §2.1)
                audience=AUDIENCE,
                issuer=ISSUER,
                # `exp` is checked below against the gateway's clock, not the wall clock.
                options={"verify_exp": False, "require": list(REQUIRED_CLAIMS)},
            )
            parsed = CredentialClaims(
                jti=str(claims["jti"]),
                project_id=UUID(str(claims["project"])),
                issuing_key_id=UUID(str(claims["key"])),
                kid=str(header["kid"]),
                expires_at=int(claims["exp"]),
            )
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            raise invalid from None
        if now.timestamp() >= parsed.expires_at:
            raise CredentialExpired("this credential has expired; mint a new one", jti=parsed.jti)
        return parsed


class CredentialKey:
    """A credential standing in for its issuing key: everywhere a key is read (`id`,
    `project_id`, `key_prefix` for the mode, `daily_budget`, `revoked`), it answers as the
    key that minted it (so the key's own limits keep applying), and `credential` says what
    the credential narrows."""

    def __init__(self, key: ApiKey, credential: Credential) -> None:
        self.key = key
        self.credential = credential

    @property
    def id(self) -> UUID:
        return self.key.id  # type: ignore[no-any-return]

    @property
    def project_id(self) -> UUID:
        return self.key.project_id

    @property
    def key_prefix(self) -> str:
        return self.key.key_prefix

    @property
    def daily_budget(self) -> Decimal | None:
        return self.key.daily_budget

    @property
    def downgrade_threshold(self) -> Decimal | None:
        return self.key.downgrade_threshold

    @property
    def revoked(self) -> bool:
        return bool(self.key.revoked or self.credential.revoked)

    @property
    def jti(self) -> str:
        return self.credential.jti


def credential_of(key: Any) -> Credential | None:
    """The temporary credential behind an authenticated key, if it is one."""
    return key.credential if isinstance(key, CredentialKey) else None


def signer_of(services: Any) -> CredentialSigner | None:
    """The process's signer, built once at start (gateway/bootstrap.py)."""
    return services.credential_signer  # type: ignore[no-any-return]


def load_credential_fresh(app: Any, jti: str) -> Credential | None:
    """From the event store, never a cache: a revocation made by any process is seen."""
    try:
        found = app.repository.get(credential_id(jti))
    except AggregateNotFoundError:
        return None
    return found if isinstance(found, Credential) else None


async def authenticate_credential(
    services: Any, token: str, now: datetime
) -> tuple[CredentialKey, Project]:
    signer = signer_of(services)
    if signer is None:
        raise GatewayError("invalid_api_key", "temporary credentials are not enabled here")
    claims = signer.verify(token, now)
    credential = await anyio.to_thread.run_sync(load_credential_fresh, services.app, claims.jti)
    if credential is None or credential.project_id != claims.project_id:
        raise GatewayError("invalid_api_key", "unknown credential")
    credential.check_usable(now)  # CredentialRevoked / CredentialExpired (the ledger's exp)
    key = await services.cache.get(credential.issuing_key_id)
    if not isinstance(key, ApiKey) or key.revoked:
        # Revoking the key revokes what it minted.
        raise GatewayError("invalid_api_key", "this credential's API key has been revoked")
    project = await services.cache.get(key.project_id)
    if not isinstance(project, Project):
        raise GatewayError("invalid_api_key", "this credential's project no longer exists")
    return CredentialKey(key, credential), project


def presented_credential(authorization: str | None) -> str | None:
    """The token when the header presents a credential (a JWT) rather than an API key."""

    return credential_token(authorization)


async def authenticate_bearer(services: Any, authorization: str | None) -> tuple[Any, Project]:
    """An API key or a temporary credential: `(key, project)` either way (the key is a
    CredentialKey for a credential). Used by every surface that takes an API key."""

    token = presented_credential(authorization)
    if token is None:
        return await authenticate_key(services.cache, authorization)
    return await authenticate_credential(services, token, services.clock.now())


def project_of_credential(services: Any, authorization: str | None) -> UUID | None:
    """For the per-project fairness gate: the project a credential (signature checked, not
    its state: the request itself decides that) is counted under, or None."""
    token = presented_credential(authorization)
    signer = signer_of(services) if token is not None else None
    if token is None or signer is None:
        return None
    try:
        return signer.verify(token, services.clock.now()).project_id
    except Exception:  # an invalid or expired credential is refused by the request itself
        return None


__all__ = [
    "CredentialKey",
    "CredentialSigner",
    "authenticate_bearer",
    "credential_of",
    "new_jti",
    "signer_of",
]


# --- the request path's credential rules (admission) ------------------------------------------


def check_named_model_granted(
    model_field: Any, catalog: Any, credential: Credential | None
) -> None:
    """A named model outside the credential's grant: 403, before any routing. (`auto` and
    shorthands are routed inside the grant instead: `granted_catalog`.)"""

    if credential is None or not credential.models:
        return
    request = parse_model_field(model_field, catalog)  # unknown model: 404 as for any key
    if request.mode == MODE_EXPLICIT and request.spec is not None:
        if not credential.grants(request.spec.name):
            raise CredentialModelNotGranted(
                f"this credential does not grant the model {request.spec.name!r}",
                model=request.spec.name,
                granted=list(credential.models),
            )


def granted_catalog(credential: Credential | None) -> Any:
    """The router's catalog narrowed to the credential's grant (None: no narrowing), so
    `auto`, shorthands, variants and failover all stay inside it."""

    if credential is None or not credential.models:
        return None

    def narrow(catalog: Catalog) -> Catalog:
        kept = tuple(spec for spec in catalog.models if credential.grants(spec.name))
        return Catalog(models=kept, usd_per_unit=catalog.usd_per_unit)

    return narrow


def grant_refusal(error: Exception, credential: Credential | None) -> Exception:
    """A router refusal met only because the grant left no model that can serve the
    request (no compliant or capable model among the granted ones) is the grant's 403."""

    if credential is None or not credential.models:
        return error
    if isinstance(error, ModelNotCompliant | ModelCapabilityMissing):
        return CredentialModelNotGranted(
            "none of the models this credential grants can serve this request",
            granted=list(credential.models),
        )
    return error


def restrict_to_grant(decision: Any, credential: Credential | None) -> Any:
    """The last check on a decision (routed with `granted_catalog`): every target inside
    the credential's grant, or the grant's 403. The writer checks the admitted model again."""

    if credential is None or not credential.models:
        return decision
    outside = [t.spec.name for t in decision.targets if not credential.grants(t.spec.name)]
    if outside:
        raise CredentialModelNotGranted(
            f"this credential does not grant the model {outside[0][:200]!r}",
            model=outside[0][:200],
            granted=list(credential.models),
        )
    return decision


def credential_actor(
    credential: Credential, headers: Any, body: Mapping[str, Any] | None
) -> str | None:
    """The acting user of a credential's request: the user it fixes (another one named by
    `X-User-Id` or the body's `user` is refused), or None when it fixes none (the usual
    rules then apply)."""
    if credential.actor_id is None:
        return None
    requested = headers.get("x-user-id")
    if requested is None and body is not None and isinstance(body.get("user"), str):
        requested = body["user"]
    return credential.actor_for(requested.strip() if isinstance(requested, str) else None)


class CredentialAuthenticator:
    """What `gateway.auth.authenticate_key` asks when the Bearer is a credential: attached
    to the aggregate cache at start (bootstrap), so every surface that authenticates a key
    takes a credential too, with one rule."""

    def __init__(self, services: Any) -> None:
        self._services = services

    async def authenticate(self, token: str) -> tuple[CredentialKey, Project]:
        return await authenticate_credential(self._services, token, self._services.clock.now())

    def project_of(self, authorization: str | None) -> UUID | None:
        return project_of_credential(self._services, authorization)


def attach_credentials(services: Any) -> None:
    """At start: every surface that authenticates a key (gateway/auth.authenticate_key, the
    fairness gate) takes a temporary credential too."""
    services.cache.credentials = CredentialAuthenticator(services)
