"""Client authentication: `Authorization: Bearer lg_live_…` (or lg_test_…) plus the acting
user from `X-User-Id` (falling back to the body's `user`). Projects in strict mode require
a signed `X-Actor-Token` instead, so the user cannot simply be claimed.

Keys are looked up by identity: the ApiKey aggregate's id is derived from the key's hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from domain.ids import LIVE_KEY_PREFIX, TEST_KEY_PREFIX, api_key_id, hash_api_key
from domain.project import ApiKey, Project
from gateway.cache import AggregateCache
from gateway.errors import GatewayError
from gateway.observability.core import traced_auth
from gateway.validation import check_text

USER_ID_CHARS_MAX = 256
ACTOR_TOKEN_TTL_S_MAX = 7 * 24 * 3600
CREDENTIAL_CHARS_MAX = 4096  # a credential granting 32 models is ~2 KB


@dataclass(frozen=True)
class Principal:
    key: ApiKey
    project: Project
    actor_id: str | None


def bearer_key(authorization: str | None) -> str:
    if not authorization:
        raise GatewayError(
            "missing_api_key",
            "no API key: send 'Authorization: Bearer lg_live_…'",
            param="authorization",
        )
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise GatewayError("invalid_api_key", "the Authorization header must be 'Bearer <key>'")
    if not token.startswith((LIVE_KEY_PREFIX, TEST_KEY_PREFIX)) or len(token) > 200:
        raise GatewayError(
            "invalid_api_key", "this is not a Ledgergate API key (lg_live_… or lg_test_…)"
        )
    return token


def credential_token(authorization: str | None) -> str | None:
    """The token when `Authorization: Bearer` presents a temporary credential (a compact
    JWT), not an `lg_` key."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith("eyJ") or token.count(".") != 2:
        return None
    return token if len(token) <= CREDENTIAL_CHARS_MAX else None


def presented_secret(authorization: str | None) -> str:
    """The secret the caller holds (an API key, or a temporary credential's token): what the
    response cache derives its encryption key from, so only its holder can read its entries
    (a credential's entries are its own, not its issuing key's)."""
    return credential_token(authorization) or bearer_key(authorization)


def presented_key_id(authorization: str | None) -> UUID | None:
    """The id a presented Ledgergate key has (or would have): a uuid5 of its SHA-256, as
    every key is stored. Recorded with a failed authentication so the operator can tell
    which key failed how often; the key itself is never kept. None when no well-formed
    `Bearer lg_…` key was presented."""
    try:
        return api_key_id(hash_api_key(bearer_key(authorization)))
    except GatewayError:
        return None


@traced_auth
async def authenticate_key(
    cache: AggregateCache, authorization: str | None
) -> tuple[ApiKey, Project]:
    """The caller's key and project. A temporary credential (a JWT minted by
    POST /v1/credentials) is accepted wherever a key is: it answers as its issuing key
    (gateway/credentials.CredentialKey), decided by the credential authenticator."""
    if cache.credentials is not None:
        token = credential_token(authorization)
        if token is not None:
            return await cache.credentials.authenticate(token)  # type: ignore[no-any-return]
    token = bearer_key(authorization)
    key = await cache.get(api_key_id(hash_api_key(token)))
    if not isinstance(key, ApiKey):
        raise GatewayError("invalid_api_key", "unknown API key")
    if key.revoked:
        raise GatewayError("invalid_api_key", "this API key has been revoked")
    project = await cache.get(key.project_id)
    if not isinstance(project, Project):
        raise GatewayError("invalid_api_key", "this API key's project no longer exists")
    return key, project


def actor_from(
    headers: Any, body: dict[str, Any] | None, project: Project, secret: bytes | None
) -> str:
    if project.strict:
        token = headers.get("x-actor-token")
        if not token:
            raise GatewayError(
                "invalid_actor_token",
                "this project is strict: send a signed 'X-Actor-Token' (X-User-Id is not accepted)",
                param="x-actor-token",
            )
        return check_text(
            verify_actor_token(token, project.id, secret), "x-actor-token", USER_ID_CHARS_MAX
        )
    actor = headers.get("x-user-id")
    param = "x-user-id"
    if not actor and body is not None and isinstance(body.get("user"), str):
        actor, param = body["user"], "user"
    if not actor or not actor.strip():
        raise GatewayError(
            "missing_user_id",
            "no acting user: send 'X-User-Id' or the body field 'user'",
            param="x-user-id",
        )
    actor = actor.strip()
    if len(actor) > USER_ID_CHARS_MAX:
        raise GatewayError(
            "invalid_request",
            f"the user id is longer than {USER_ID_CHARS_MAX} characters",
            param=param,
        )
    # The actor id is kept in every event of the request: printable, single-line text only.
    return check_text(actor, param, USER_ID_CHARS_MAX)


# --- actor tokens: "<b64url actor>.<expiry unix>.<hex hmac-sha256>" ----------------------------


def _signature(secret: bytes, project_id: UUID, actor: str, expiry: int) -> str:
    message = f"{project_id}|{actor}|{expiry}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def issue_actor_token(
    secret: bytes, project_id: UUID, actor: str, ttl_s: int, now: float | None = None
) -> str:
    if not 0 < ttl_s <= ACTOR_TOKEN_TTL_S_MAX:
        raise ValueError(f"ttl must be between 1 and {ACTOR_TOKEN_TTL_S_MAX} seconds")
    expiry = int((now or time.time()) + ttl_s)
    encoded = base64.urlsafe_b64encode(actor.encode()).decode().rstrip("=")
    return f"{encoded}.{expiry}.{_signature(secret, project_id, actor, expiry)}"


def verify_actor_token(
    token: str, project_id: UUID, secret: bytes | None, now: float | None = None
) -> str:
    invalid = GatewayError(
        "invalid_actor_token", "the X-Actor-Token is invalid or expired", param="x-actor-token"
    )
    if secret is None:
        raise invalid
    try:
        encoded, expiry_text, signature = token.split(".")
        actor = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        expiry = int(expiry_text)
    except (ValueError, UnicodeDecodeError):
        raise invalid from None
    expected = _signature(secret, project_id, actor, expiry)
    if not hmac.compare_digest(expected, signature) or expiry < (now or time.time()):
        raise invalid
    return actor
