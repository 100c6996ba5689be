"""Temporary credentials (issue 14): short-lived, narrowed stand-ins for an API key that a
frontend may hold. The gateway signs them as JWTs (gateway/credentials.py); this module is
what they *are* on the ledger.

    IssueCredential  → Credential.Issued   (+ the credential's limit opened on the Account)
    a request with it → Request.CredentialUsed beside Request.Received (the audit names it)
    RevokeCredential → Credential.Revoked  (+ the Account's limit closed: at once, every process)

The Credential aggregate is the authority on what a credential may do (its grant of models,
its fixed actor, its expiry, whether it is revoked); it stays tiny (two events at most), so
a read can load it fresh from the store instead of trusting a cache. Its *money* limit (the
optional budget) lives on the Account, the single consistency boundary for money, next to
the per-key daily budgets: a reservation that would overshoot it is refused by the same
single writer that decides every other reservation of the project, so concurrent requests
overshoot it by zero, in one process or in many (a revocation recorded on the Account
conflicts with a stale reservation, which is then retried on fresh state and refused).

No token is ever stored: events carry the credential's id (`jti`), never the JWT.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.commands import Command
from domain.errors import DomainError, InvalidCommand, UnknownKey, UnknownProject
from domain.ids import NAMESPACE, account_id, key_mode
from domain.limits import (
    KIND_CREDENTIAL,
    CredentialBudgetExceeded,  # noqa: F401  (re-exported: the credential budget's 402)
    _limits,
    close_limit,
    limit_name,
    open_limit,
)
from domain.money import quantize_internal
from domain.project import ApiKey, Project
from domain.request import Request

CREDENTIAL_TTL_S_DEFAULT = 600
CREDENTIAL_TTL_S_MAX = 86_400  # a day: a frontend re-mints, it never holds a long-lived key
CREDENTIAL_MODELS_MAX = 32
MODEL_NAME_CHARS_MAX = 200
CREDENTIAL_USER_CHARS_MAX = 256
REVOKE_REASON_CHARS_MAX = 200
JTI_SYNTAX_CHARS_MAX = 64
JTI_SYNTAX = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Budgets are money in the project's currency; bounded so a typo cannot open a limit no
# balance could ever reach (it would be no limit at all).
CREDENTIAL_BUDGET_MAX = Decimal("1000000")


# --- errors (gateway/errors.py maps each code to its status) ----------------------------------


class CredentialExpired(DomainError):
    """The credential's `exp` has passed: 401, re-mint one."""

    code = "credential_expired"


class CredentialRevoked(DomainError):
    code = "credential_revoked"


class CredentialModelNotGranted(DomainError):
    """The request names (or would route to) a model outside the credential's grant.
    details: model, granted (list)."""

    code = "credential_model_not_granted"


class CredentialCannotIssue(DomainError):
    """A temporary credential cannot mint another (nor revoke one): only an API key can."""

    code = "credential_cannot_issue"


class CredentialActorMismatch(DomainError):
    """The credential fixes its actor; the request named another one."""

    code = "credential_actor_mismatch"


class UnknownCredential(DomainError):
    """No credential of that id for this project (another project's is answered the same)."""

    code = "credential_not_found"


# --- identity --------------------------------------------------------------------------------


def credential_id(jti: str) -> UUID:
    """A credential's aggregate id, from its JWT id: a retried issuance is "already exists"."""
    return uuid5(NAMESPACE, f"credential:{jti}")


def credential_limit_name(jti: str) -> str:
    """The name of a credential's limit on its project's Account (domain/limits.py)."""
    return limit_name(KIND_CREDENTIAL, jti)


def check_jti(jti: str) -> str:
    clean = jti.strip()
    if not JTI_SYNTAX.fullmatch(clean):
        raise UnknownCredential("no such credential", param="jti")
    return clean


# --- the aggregate ---------------------------------------------------------------------------


class Credential(Aggregate):
    class Issued(Aggregate.Created):
        jti: str
        project_id: UUID
        issuing_key_id: UUID
        mode: str  # the issuing key's mode: a test key's credential is a test credential
        models: tuple[str, ...]  # empty: every model the issuing key may use
        actor_id: str | None  # set: the credential fixes the acting user
        budget: Decimal | None  # in `currency`, over the credential's whole life
        currency: str
        signing_key_id: str  # the `kid` of the server secret that signed it (rotation)
        issued_at: datetime
        expires_at: datetime

    class Revoked(Aggregate.Event):
        reason: str
        revoked_by: str  # "key:<uuid>" or "admin"
        revoked_at: datetime

    @classmethod
    def issue(cls, *, jti: str, **fields: Any) -> Credential:
        """`fields`: the stored fields of Issued but the jti, which the id derives from (a
        retried issuance is "already exists")."""
        return cls._create(cls.Issued, id=credential_id(jti), jti=jti, **fields)

    def __init__(
        self,
        jti: str,
        project_id: UUID,
        issuing_key_id: UUID,
        mode: str,
        models: tuple[str, ...],
        actor_id: str | None,
        budget: Decimal | None,
        currency: str,
        signing_key_id: str,
        issued_at: datetime,
        expires_at: datetime,
    ) -> None:
        self.jti = jti
        self.project_id = project_id
        self.issuing_key_id = issuing_key_id
        self.mode = mode
        self.models = tuple(models)
        self.actor_id = actor_id
        self.budget = budget
        self.currency = currency
        self.signing_key_id = signing_key_id
        self.issued_at = issued_at
        self.expires_at = expires_at
        self.revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def grants(self, model: str) -> bool:
        return not self.models or model.strip().lower() in self.models

    def check_usable(self, now: datetime) -> None:
        """Revoked or expired: refused (revocation first: it is the stronger statement)."""
        if self.revoked:
            raise CredentialRevoked("this credential has been revoked", jti=self.jti)
        if now >= self.expires_at:
            raise CredentialExpired(
                "this credential has expired; mint a new one",
                jti=self.jti,
                expired_at=self.expires_at.isoformat().replace("+00:00", "Z"),
            )

    def check_model(self, model: str) -> None:
        if not self.grants(model):
            raise CredentialModelNotGranted(
                f"this credential does not grant the model {model.strip()[:MODEL_NAME_CHARS_MAX]!r}",
                model=model.strip()[:MODEL_NAME_CHARS_MAX],
                granted=list(self.models),
            )

    def actor_for(self, requested: str | None) -> str | None:
        """The acting user: the credential's own when it fixes one (a different one named
        by the request is refused, never silently replaced), else the request's."""
        if self.actor_id is None:
            return requested
        if requested is not None and requested != self.actor_id:
            raise CredentialActorMismatch(
                "this credential acts for a fixed user; the request named another one",
                param="x-user-id",
            )
        return self.actor_id

    def revoke(self, *, reason: str, revoked_by: str, now: datetime) -> bool:
        """False (nothing recorded) when it was already revoked."""
        if self.revoked:
            return False
        self._revoked(reason[:REVOKE_REASON_CHARS_MAX], revoked_by, now)
        return True

    @event(Revoked)
    def _revoked(self, reason: str, revoked_by: str, revoked_at: datetime) -> None:
        self.revoked_at = revoked_at


class CredentialUsed(Request.Event):
    """A request presented this temporary credential: recorded beside `Received` (and
    before its admission or rejection), so the audit record names the credential even for
    a request the credential's rules refused. Only the id, never the token."""

    credential_id: str  # the jti
    used_at: datetime

    def apply(self, aggregate: Request) -> None:  # type: ignore[override]
        aggregate.credential_id = self.credential_id  # type: ignore[attr-defined]


# Declared beside its own rules rather than inside Request (domain/request.py): the event
# class is attached to the aggregate under its qualified name, as account.py does for its
# extensions, so its topic resolves and replays match `Request.CredentialUsed`.
CredentialUsed.__qualname__ = "Request.CredentialUsed"
Request.CredentialUsed = CredentialUsed  # type: ignore[attr-defined]


def record_credential_use(request: Request, jti: str, now: datetime) -> None:
    request.trigger_event(CredentialUsed, credential_id=jti, used_at=now)


# --- commands --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssueCredential(Command):
    """Mint a credential for `issuing_key_id`. `jti` is chosen by the gateway (it signs the
    token after the issuance is durable); the token itself never becomes a command."""

    jti: str
    issuing_key_id: UUID
    signing_key_id: str
    ttl_seconds: int = CREDENTIAL_TTL_S_DEFAULT
    models: tuple[str, ...] = ()
    budget: Decimal | None = None
    actor_id: str | None = None


@dataclass(frozen=True)
class RevokeCredential(Command):
    jti: str
    project_id: UUID  # the revoker's project: another project's credential is "not found"
    revoked_by: str
    reason: str = "revoked"


# --- handlers (registered into domain/handlers.HANDLERS) -------------------------------------


def check_models(models: tuple[str, ...]) -> tuple[str, ...]:
    if len(models) > CREDENTIAL_MODELS_MAX:
        raise InvalidCommand(
            f"a credential grants at most {CREDENTIAL_MODELS_MAX} models", param="models"
        )
    clean: list[str] = []
    for model in models:
        name = model.strip().lower() if isinstance(model, str) else ""
        if not name or len(name) > MODEL_NAME_CHARS_MAX or not name.isprintable():
            raise InvalidCommand(
                f"each granted model is a model name of 1 to {MODEL_NAME_CHARS_MAX} characters",
                param="models",
            )
        if name not in clean:
            clean.append(name)
    return tuple(clean)


def check_ttl(ttl_seconds: int) -> int:
    if (
        isinstance(ttl_seconds, bool)
        or not isinstance(ttl_seconds, int)
        or not 0 < ttl_seconds <= CREDENTIAL_TTL_S_MAX
    ):
        raise InvalidCommand(
            f"ttl_seconds must be an integer from 1 to {CREDENTIAL_TTL_S_MAX}",
            param="ttl_seconds",
        )
    return ttl_seconds


def check_budget(budget: Decimal | None) -> Decimal | None:
    if budget is None:
        return None
    amount = quantize_internal(budget)
    if amount <= 0 or amount > CREDENTIAL_BUDGET_MAX:
        raise InvalidCommand(
            f"a credential's budget must be positive and at most {CREDENTIAL_BUDGET_MAX}",
            param="budget",
        )
    return amount


def check_actor(actor_id: str | None) -> str | None:
    if actor_id is None:
        return None
    clean = actor_id.strip()
    if not clean or len(clean) > CREDENTIAL_USER_CHARS_MAX or not clean.isprintable():
        raise InvalidCommand(
            f"user must be 1 to {CREDENTIAL_USER_CHARS_MAX} printable characters", param="user"
        )
    return clean


def issue_credential(cmd: IssueCredential, uow: Any) -> dict[str, Any]:
    key = uow.find(cmd.issuing_key_id)
    if not isinstance(key, ApiKey):
        raise UnknownKey("unknown API key")
    key.check_usable()
    project = uow.find(key.project_id)
    if not isinstance(project, Project):
        raise UnknownProject("this API key's project no longer exists")
    jti = check_jti(cmd.jti)
    if uow.find(credential_id(jti)) is not None:
        raise InvalidCommand("a credential with this id already exists", param="jti")
    ttl = check_ttl(cmd.ttl_seconds)
    models = check_models(cmd.models)
    budget = check_budget(cmd.budget)
    actor = check_actor(cmd.actor_id)
    mode = key_mode(key.key_prefix)
    account = uow.find(account_id(project.id, mode))
    if account is None:
        raise InvalidCommand(
            "this key's project has no balance to issue a credential on (a test key's "
            "project needs a test balance: `ledgergate topup --test`)"
        )
    now = uow.clock.now()
    expires_at = now + timedelta(seconds=ttl)
    # Every credential is a limit on the Account (capped by its budget, or uncapped): each
    # reservation made with it holds against the limit, so its budget, its expiry and its
    # revocation are decided by the Account's single writer, exactly, in every process.
    prune_expired_limits(account, now)
    open_limit(account, name=credential_limit_name(jti), cap=budget, expires_at=expires_at, now=now)
    credential = Credential.issue(
        jti=jti,
        project_id=project.id,
        issuing_key_id=key.id,
        mode=mode,
        models=models,
        actor_id=actor,
        budget=budget,
        currency=project.currency,
        signing_key_id=cmd.signing_key_id,
        issued_at=now,
        expires_at=expires_at,
    )
    uow.add(credential)
    return credential_view(credential)


def revoke_credential(cmd: RevokeCredential, uow: Any) -> dict[str, Any]:
    jti = check_jti(cmd.jti)
    credential = uow.find(credential_id(jti))
    if not isinstance(credential, Credential) or credential.project_id != cmd.project_id:
        raise UnknownCredential("no such credential for this project", param="jti")
    now = uow.clock.now()
    changed = credential.revoke(reason=cmd.reason, revoked_by=cmd.revoked_by, now=now)
    account = uow.find(account_id(credential.project_id, credential.mode))
    if changed and account is not None:
        # On the Account too: a reservation decided on a stale Account (another process)
        # conflicts with this event and is retried on fresh state, where the limit is closed.
        close_limit(account, name=credential_limit_name(jti), reason="revoked", now=now)
    return {**credential_view(credential), "changed": changed}


def credential_view(credential: Credential) -> dict[str, Any]:
    return {
        "id": credential.jti,
        "object": "credential",
        "project_id": str(credential.project_id),
        "key_id": str(credential.issuing_key_id),
        "mode": credential.mode,
        "models": list(credential.models),
        "user": credential.actor_id,
        "budget": None if credential.budget is None else format(credential.budget, "f"),
        "currency": credential.currency,
        "kid": credential.signing_key_id,
        "issued_at": credential.issued_at.isoformat().replace("+00:00", "Z"),
        "expires_at": credential.expires_at.isoformat().replace("+00:00", "Z"),
        "revoked": credential.revoked,
        "revoked_at": None
        if credential.revoked_at is None
        else credential.revoked_at.isoformat().replace("+00:00", "Z"),
    }


# --- the Account side ------------------------------------------------------------------------

EXPIRED_LIMITS_CLOSED_PER_ISSUE_MAX = 16  # amortised: each issuance tidies a few


def prune_expired_limits(account: Any, now: datetime) -> int:
    """Close credential limits past their expiry (what is pending still settles; a closed,
    settled limit leaves the Account's state), so the open limits stay bounded by the live
    credentials however many a frontend mints. At most a few per issuance."""
    expired = [
        name
        for name, limit in _limits(account).items()
        if limit["kind"] == KIND_CREDENTIAL
        and limit["closed_reason"] is None
        and limit["expires_at"] is not None
        and now >= limit["expires_at"]
    ][:EXPIRED_LIMITS_CLOSED_PER_ISSUE_MAX]
    for name in expired:
        close_limit(account, name=name, reason="expired", now=now)
    return len(expired)


def credential_for_admission(
    uow: Any, jti: str, *, project_id: UUID, model: str, now: datetime
) -> tuple[str, ...]:
    """The admission's credential rules, decided by the writer on the aggregate (never a
    cache): usable (not revoked, not expired) and granting the routed model. Returns the
    limits the reservation holds against (the credential's)."""
    credential = uow.find(credential_id(check_jti(jti)))
    if not isinstance(credential, Credential) or credential.project_id != project_id:
        raise CredentialRevoked("unknown credential", jti=jti[:JTI_SYNTAX_CHARS_MAX])
    credential.check_usable(now)
    credential.check_model(model)
    return (credential_limit_name(credential.jti),)


CREDENTIAL_HANDLERS: dict[type, Callable[[Any, Any], Any]] = {
    IssueCredential: issue_credential,
    RevokeCredential: revoke_credential,
}
