"""POST /v1/credentials and POST /v1/credentials/{id}/revoke (issue 14): temporary
credentials a frontend may hold instead of the project's API key.

    POST /v1/credentials            (Bearer: an API key)
      {"models": ["gpt-4o-mini"], "ttl_seconds": 600, "budget": "0.50", "user": "alice"}
      → {"id": <jti>, "token": <JWT>, "expires_at", "models", "budget", "currency", …}
    POST /v1/credentials/{id}/revoke (Bearer: an API key of the same project, the credential
      itself, or the admin token) → the credential, `revoked: true`, effective at once

The issuance is durable (Credential.Issued, the budget's limit on the Account) before the
token is signed and returned; the token is shown once and never stored or logged.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response

from domain.clock import parse_instant
from domain.credentials import (
    CREDENTIAL_TTL_S_DEFAULT,
    CredentialCannotIssue,
    IssueCredential,
    RevokeCredential,
    UnknownCredential,
    check_jti,
)
from domain.errors import InvalidCommand, ModelNotFound
from domain.ids import new_request_id
from domain.money import to_decimal
from gateway.credentials import (
    CredentialKey,
    authenticate_bearer,
    load_credential_fresh,
    new_jti,
    signer_of,
)
from gateway.errors import GatewayError
from gateway.http.deps import ServicesDep
from gateway.read_scope import is_admin_token
from gateway.responses import JsonResponse
from gateway.validation import check_body_strings, parse_json_body

router = APIRouter()

ISSUE_FIELDS = frozenset({"models", "ttl_seconds", "budget", "user"})


def _refuse_credential(key: Any, what: str) -> None:
    if isinstance(key, CredentialKey):
        raise CredentialCannotIssue(
            f"a temporary credential cannot {what}: use the project's API key",
        )


async def _granted_models(services: Any, project: Any, raw: Any) -> tuple[str, ...]:
    """The grant as catalog names (an alias becomes its model); an unknown model is refused
    at issuance rather than granted and never usable."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise InvalidCommand("models must be a list of model names", param="models")
    catalog = await services.routing.project_catalog(project.id, services.cache.get)
    names: list[str] = []
    for item in raw:
        spec = catalog.get(item.strip().lower()) if item.strip() else None
        if spec is None:
            raise ModelNotFound(
                f"the model {item.strip()[:200]!r} does not exist", model=item[:200], param="models"
            )
        names.append(spec.name)
    return tuple(names)


def _budget(raw: Any) -> Decimal | None:
    if raw is None:
        return None
    try:
        return to_decimal(raw)
    except Exception:
        raise InvalidCommand(
            'budget must be a decimal amount (a string such as "0.50")', param="budget"
        ) from None


@router.post("/v1/credentials")
async def issue(request: Request, services: ServicesDep) -> Response:
    key, project = await authenticate_bearer(services, request.headers.get("authorization"))
    _refuse_credential(key, "mint another")
    signer = signer_of(services)
    if signer is None:
        raise GatewayError(
            "credentials_disabled",
            "temporary credentials are off: the operator sets LEDGERGATE_CREDENTIAL_SECRET",
        )
    body = await _body(request)
    unknown = sorted(set(body) - ISSUE_FIELDS)
    if unknown:
        raise InvalidCommand(f"unknown field {unknown[0][:40]!r}", param=unknown[0][:40])
    ttl = body.get("ttl_seconds", CREDENTIAL_TTL_S_DEFAULT)
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        raise InvalidCommand("ttl_seconds must be an integer", param="ttl_seconds")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidCommand("user must be a string", param="user")
    outcome = await services.writer.execute_async(
        IssueCredential(
            jti=new_jti(),
            issuing_key_id=key.id,
            signing_key_id=signer.kid,
            ttl_seconds=ttl,
            models=await _granted_models(services, project, body.get("models")),
            budget=_budget(body.get("budget")),
            actor_id=user,
        )
    )
    view = outcome.value
    if not isinstance(view, dict):
        raise TypeError("IssueCredential returned no credential")
    token = signer.mint(
        view,
        issued_at=parse_instant(view["issued_at"]),
        expires_at=parse_instant(view["expires_at"]),
    )
    return JsonResponse(
        {**view, "token": token},
        headers={
            "X-Request-Id": new_request_id(),
            "X-LG-Ledger-Position": str(outcome.position or 0),
            "Cache-Control": "no-store",  # the token is shown once
        },
    )


@router.post("/v1/credentials/{jti}/revoke")
async def revoke(request: Request, services: ServicesDep, jti: str) -> Response:
    authorization = request.headers.get("authorization")
    body = await _body(request)
    reason = body.get("reason", "revoked")
    if not isinstance(reason, str):
        raise InvalidCommand("reason must be a string", param="reason")
    clean_jti = check_jti(jti)
    if is_admin_token(services.settings.admin_token, authorization):
        found = await anyio.to_thread.run_sync(load_credential_fresh, services.app, clean_jti)
        if found is None:
            raise UnknownCredential("no such credential", param="jti")
        project_id, revoked_by = found.project_id, "admin"
    else:
        key, project = await authenticate_bearer(services, authorization)
        if isinstance(key, CredentialKey) and key.jti != clean_jti:
            _refuse_credential(key, "revoke another credential")
        project_id, revoked_by = project.id, f"key:{key.id}"
    outcome = await services.writer.execute_async(
        RevokeCredential(jti=clean_jti, project_id=project_id, revoked_by=revoked_by, reason=reason)
    )
    return JsonResponse(
        outcome.value,
        headers={
            "X-Request-Id": new_request_id(),
            "X-LG-Ledger-Position": str(outcome.position or 0),
        },
    )


async def _body(request: Request) -> dict[str, Any]:
    """An optional JSON object (an empty body is `{}`)."""
    raw = await request.body()
    body = parse_json_body(raw) if raw.strip() else {}
    if not isinstance(body, dict):
        raise InvalidCommand("the body must be a JSON object", param="body")
    check_body_strings(body)
    return body
