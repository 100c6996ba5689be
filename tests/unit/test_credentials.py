"""Temporary credentials without IO: the JWT signer's rules (gateway/credentials.py) and the
Credential aggregate's issuance and revocation by the real handlers (domain/credentials.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import jwt
import pytest

from domain import commands as c
from domain.clock import FixedClock
from domain.credentials import (
    CREDENTIAL_TTL_S_MAX,
    Credential,
    CredentialActorMismatch,
    CredentialExpired,
    CredentialModelNotGranted,
    CredentialRevoked,
    CredentialUsed,
    IssueCredential,
    RevokeCredential,
    UnknownCredential,
    credential_id,
    record_credential_use,
)
from domain.errors import InvalidCommand, KeyRevoked
from gateway.credentials import (
    CredentialSigner,
    key_fingerprint,
    looks_like_credential,
    new_jti,
)
from gateway.errors import GatewayError
from tests.support.builders import received_request, request_facts
from tests.support.ledger import Ledger

SECRET = b"s" * 32
START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _view(jti: str = "abc", **overrides: object) -> dict[str, object]:
    return {
        "id": jti,
        "project_id": "6f1d7c36-2f4b-4a8e-9f0c-5b7f0c1e2a90",
        "key_id": "7f1d7c36-2f4b-4a8e-9f0c-5b7f0c1e2a90",
        "mode": "live",
        "models": ["gpt-4o-mini"],
        "budget": "0.50",
        "currency": "USD",
        "user": None,
        **overrides,
    }


def test_a_minted_token_verifies_and_names_its_secret_by_kid_never_by_value() -> None:
    signer = CredentialSigner(SECRET)
    token = signer.mint(_view(), issued_at=START, expires_at=START + timedelta(minutes=10))
    assert looks_like_credential(token) and not looks_like_credential("lg_live_abc")
    header = jwt.get_unverified_header(token)
    assert header["kid"] == key_fingerprint(SECRET) and SECRET.decode() not in header["kid"]
    claims = signer.verify(token, START + timedelta(minutes=9))
    assert claims.jti == "abc" and str(claims.project_id).startswith("6f1d7c36")
    payload = jwt.decode(
        token, SECRET, algorithms=["HS256"], audience="ledgergate", options={"verify_exp": False}
    )
    assert payload["grants"] == {
        "models": ["gpt-4o-mini"],
        "budget": "0.50",
        "currency": "USD",
        "user": None,
    }
    assert payload["exp"] - payload["iat"] == 600


def test_a_token_at_or_past_its_exp_is_credential_expired_by_the_gateways_clock() -> None:
    signer = CredentialSigner(SECRET)
    token = signer.mint(_view(), issued_at=START, expires_at=START + timedelta(seconds=60))
    signer.verify(token, START + timedelta(seconds=59))
    with pytest.raises(CredentialExpired):
        signer.verify(token, START + timedelta(seconds=60))


def test_a_tampered_foreign_or_garbage_token_is_an_invalid_api_key() -> None:
    signer = CredentialSigner(SECRET)
    token = signer.mint(_view(), issued_at=START, expires_at=START + timedelta(minutes=10))
    header, payload, signature = token.split(".")
    forged_payload = jwt.encode({"jti": "x"}, b"o" * 32, algorithm="HS256").split(".")[1]
    foreign = CredentialSigner(b"o" * 32).mint(
        _view(), issued_at=START, expires_at=START + timedelta(minutes=10)
    )
    unsigned = jwt.encode({"jti": "x"}, None, algorithm="none")
    for bad in (
        f"{header}.{forged_payload}.{signature}",
        foreign,
        unsigned,
        "eyJnot.a.token",
        token[:-2],
    ):
        with pytest.raises(GatewayError) as caught:
            signer.verify(bad, START)
        assert caught.value.code == "invalid_api_key"
        assert token not in caught.value.message and bad not in caught.value.message


def test_a_rotated_secret_still_verifies_what_it_signed_while_listed_as_previous() -> None:
    old = CredentialSigner(SECRET)
    token = old.mint(_view(), issued_at=START, expires_at=START + timedelta(minutes=10))
    rotated = CredentialSigner(b"n" * 32, previous=(SECRET,))
    assert rotated.kid != old.kid
    assert rotated.verify(token, START).jti == "abc"
    with pytest.raises(GatewayError):
        CredentialSigner(b"n" * 32).verify(token, START)


def test_a_short_secret_is_refused_at_start() -> None:
    with pytest.raises(ValueError):
        CredentialSigner(b"short")
    from gateway.config import Settings

    assert CredentialSigner.from_settings(Settings.from_env({})) is None
    rotated = Settings.from_env(
        {
            "LEDGERGATE_CREDENTIAL_SECRET": "n" * 32,
            "LEDGERGATE_CREDENTIAL_PREVIOUS_SECRETS": f"{'s' * 32}, ",
        }
    )
    signer = CredentialSigner.from_settings(rotated)
    assert signer is not None and signer.kid == key_fingerprint(b"n" * 32)


# --- the aggregate, by the real handlers -----------------------------------------------------


def _ledger_with_key() -> tuple[Ledger, UUID, UUID]:
    ledger = Ledger(FixedClock(START))
    project_id = ledger.project()
    key = ledger.run(c.CreateApiKey(project_id=project_id))
    return ledger, project_id, UUID(key["key_id"])


def _issue(ledger: Ledger, key_id: UUID, **terms: Any) -> str:
    """Issue a credential from `key_id`, signed with key "k"; `terms` sets any other
    IssueCredential field. Its jti (a fresh one unless `terms` names it)."""
    jti = terms.pop("jti", None) or new_jti()
    ledger.run(IssueCredential(jti=jti, issuing_key_id=key_id, signing_key_id="k", **terms))
    return jti


def test_issuing_records_the_grant_expiry_and_actor_and_never_a_token() -> None:
    ledger, project_id, key_id = _ledger_with_key()
    jti = new_jti()
    view = ledger.run(
        IssueCredential(
            jti=jti,
            issuing_key_id=key_id,
            signing_key_id="hs256-x",
            ttl_seconds=300,
            models=("GPT-4o-mini", "gpt-4o-mini", "gpt-4o"),
            actor_id=" bob ",
        )
    )
    assert view["models"] == ["gpt-4o-mini", "gpt-4o"] and view["user"] == "bob"
    assert view["expires_at"] == "2026-12-01T12:05:00Z" and view["mode"] == "live"
    credential = ledger.app.repository.get(credential_id(jti))
    assert isinstance(credential, Credential) and credential.project_id == project_id
    stored = list(ledger.app.events.get(credential_id(jti)))
    assert [type(e).__name__ for e in stored] == ["Issued"]
    assert "token" not in vars(stored[0]) and "eyJ" not in repr(vars(stored[0]))


@pytest.mark.parametrize(
    "fields",
    [
        {"ttl_seconds": 0},
        {"ttl_seconds": CREDENTIAL_TTL_S_MAX + 1},
        {"models": tuple(f"m{i}" for i in range(33))},
        {"models": ("",)},
        {"budget": Decimal("0")},
        {"budget": Decimal("-1")},
        {"actor_id": "   "},
        {"jti": "not a jti!"},
    ],
)
def test_an_issuance_outside_its_bounds_is_refused_and_records_nothing(
    fields: dict[str, object],
) -> None:
    ledger, _, key_id = _ledger_with_key()
    command = {"jti": new_jti(), "issuing_key_id": key_id, "signing_key_id": "k", **fields}
    with pytest.raises((InvalidCommand, UnknownCredential)):
        ledger.run(IssueCredential(**command))  # type: ignore[arg-type]
    assert credential_id(str(command["jti"])) not in {
        e.originator_id for e in ledger.app.events.get(credential_id(str(command["jti"])))
    }


def test_a_revoked_key_cannot_issue() -> None:
    ledger, _, key_id = _ledger_with_key()
    ledger.run(c.RevokeApiKey(key_id=key_id))
    with pytest.raises(KeyRevoked):
        _issue(ledger, key_id)


def test_revocation_is_recorded_once_and_only_by_the_credentials_own_project() -> None:
    ledger, project_id, key_id = _ledger_with_key()
    other_project = ledger.project()
    jti = _issue(ledger, key_id)
    with pytest.raises(UnknownCredential):
        ledger.run(RevokeCredential(jti=jti, project_id=other_project, revoked_by="key:x"))
    first = ledger.run(RevokeCredential(jti=jti, project_id=project_id, revoked_by="key:y"))
    again = ledger.run(RevokeCredential(jti=jti, project_id=project_id, revoked_by="key:y"))
    assert first["revoked"] and first["changed"] and not again["changed"]
    events = [type(e).__name__ for e in ledger.app.events.get(credential_id(jti))]
    assert events == ["Issued", "Revoked"]
    credential = ledger.app.repository.get(credential_id(jti))
    with pytest.raises(CredentialRevoked):
        credential.check_usable(START)


def test_the_aggregate_refuses_an_expired_use_an_ungranted_model_and_another_actor() -> None:
    ledger, _, key_id = _ledger_with_key()
    jti = _issue(ledger, key_id, ttl_seconds=60, models=("gpt-4o-mini",), actor_id="alice")
    credential = ledger.app.repository.get(credential_id(jti))
    credential.check_usable(START + timedelta(seconds=59))
    with pytest.raises(CredentialExpired):
        credential.check_usable(START + timedelta(seconds=60))
    credential.check_model("GPT-4o-mini ")
    with pytest.raises(CredentialModelNotGranted) as refused:
        credential.check_model("gpt-4o")
    assert refused.value.details["granted"] == ["gpt-4o-mini"]
    assert credential.actor_for(None) == "alice" and credential.actor_for("alice") == "alice"
    with pytest.raises(CredentialActorMismatch):
        credential.actor_for("mallory")


def test_a_request_names_the_credential_it_was_made_with_and_replays_it() -> None:
    from eventsourcing.application import Application

    app = Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    facts = request_facts(
        None,
        at=START,
        request_id="lg_req_1",
        actor_id=None,
        model="gpt-4o-mini",
        prompt_chars=1,
        deadline=timedelta(minutes=1),
    )
    request = received_request(facts, credential_id("r1"))
    record_credential_use(request, "jti-1", START)
    app.save(request)
    replayed = app.repository.get(request.id)
    assert replayed.credential_id == "jti-1"
    kinds = [type(e) for e in app.events.get(request.id)]
    assert kinds[-1] is CredentialUsed and CredentialUsed.__qualname__ == "Request.CredentialUsed"


# --- the credential's limit on the Account ---------------------------------------------------


def test_every_credential_is_a_limit_on_the_account_capped_by_its_budget() -> None:
    from domain.ids import account_id
    from domain.limits import limit_status

    ledger, project_id, key_id = _ledger_with_key()
    capped = _issue(ledger, key_id, budget=Decimal("0.25"))
    uncapped = _issue(ledger, key_id)
    account = ledger.app.repository.get(account_id(project_id))
    assert limit_status(account, f"credential:{capped}", START)["cap"] == Decimal("0.25")
    assert limit_status(account, f"credential:{uncapped}", START)["cap"] is None


def test_a_reservation_with_a_credential_past_its_budget_is_a_402_and_revocation_closes_it() -> (
    None
):
    from domain.credentials import CredentialBudgetExceeded, credential_for_admission
    from domain.handlers import UnitOfWork
    from domain.ids import account_id
    from domain.limits import CredentialClosed

    ledger, project_id, key_id = _ledger_with_key()
    jti = _issue(ledger, key_id, budget=Decimal("1.00"), models=("gpt-4o-mini",))
    uow = UnitOfWork(lambda i: ledger.app.repository.get(i), ledger.clock)
    names = credential_for_admission(
        uow, jti, project_id=project_id, model="gpt-4o-mini", now=START
    )
    with pytest.raises(CredentialModelNotGranted):
        credential_for_admission(uow, jti, project_id=project_id, model="gpt-4o", now=START)
    account = ledger.app.repository.get(account_id(project_id))
    reserve = {"key_id": key_id, "daily_budget": None, "now": START, "limits": names}
    account.reserve(request_id="r1", amount=Decimal("0.60"), **reserve)
    with pytest.raises(CredentialBudgetExceeded) as refused:
        account.reserve(request_id="r2", amount=Decimal("0.41"), **reserve)
    assert refused.value.code == "credential_budget_exceeded"
    ledger.app.save(account)
    ledger.run(RevokeCredential(jti=jti, project_id=project_id, revoked_by="key:x"))
    account = ledger.app.repository.get(account_id(project_id))
    with pytest.raises(CredentialClosed) as closed:
        account.reserve(request_id="r3", amount=Decimal("0.01"), **reserve)
    assert closed.value.code == "credential_revoked"
    with pytest.raises(CredentialRevoked):
        credential_for_admission(
            UnitOfWork(lambda i: ledger.app.repository.get(i), ledger.clock),
            jti,
            project_id=project_id,
            model="gpt-4o-mini",
            now=START,
        )


def test_issuing_closes_expired_credential_limits_so_the_account_state_stays_bounded() -> None:
    from domain.ids import account_id
    from domain.limits import limit_status

    ledger, project_id, key_id = _ledger_with_key()
    old = _issue(ledger, key_id, ttl_seconds=5)
    assert isinstance(ledger.clock, FixedClock)
    ledger.clock.advance(seconds=6)
    _issue(ledger, key_id)
    account = ledger.app.repository.get(account_id(project_id))
    assert limit_status(account, f"credential:{old}", ledger.clock.now()) is None


# --- the request path's rules (gateway/credentials.py) ----------------------------------------


def _credential(models: tuple[str, ...] = (), actor: str | None = None) -> Credential:
    return Credential.issue(
        jti="j1",
        project_id=UUID(int=1),
        issuing_key_id=UUID(int=2),
        mode="live",
        models=models,
        actor_id=actor,
        budget=None,
        currency="USD",
        signing_key_id="k",
        issued_at=START,
        expires_at=START + timedelta(minutes=10),
    )


def test_the_grant_narrows_auto_and_refuses_a_named_model_outside_it() -> None:
    from domain.errors import ModelNotCompliant
    from domain.tiers import effective_tier
    from gateway.credentials import (
        check_named_model_granted,
        grant_refusal,
        granted_catalog,
        restrict_to_grant,
    )
    from tests.unit.routing.conftest import make_router

    router = make_router()
    tier = effective_tier("unrestricted")
    assert granted_catalog(_credential()) is None and granted_catalog(None) is None
    granted = _credential(("gpt-4o-mini", "mistral-small"))
    narrow = granted_catalog(granted)
    catalog = narrow(router.catalog)
    for field in ("auto", "auto:best", "auto:floor", "eu-cloud"):
        try:
            decision = router.decide(field, tier, catalog=catalog)
        except ModelNotCompliant as error:  # nothing granted qualifies: the grant's 403
            assert grant_refusal(error, granted).code == "credential_model_not_granted"
            continue
        assert {t.spec.name for t in decision.targets} <= {"gpt-4o-mini", "mistral-small"}
        assert restrict_to_grant(decision, granted) is decision
    check_named_model_granted("gpt-4o-mini", router.catalog, granted)
    with pytest.raises(CredentialModelNotGranted) as refused:
        check_named_model_granted("gpt-5", router.catalog, granted)
    assert refused.value.details["granted"] == ["gpt-4o-mini", "mistral-small"]
    with pytest.raises(CredentialModelNotGranted):  # a decision made outside the grant
        restrict_to_grant(router.decide("gpt-5", tier), granted)


def test_a_credential_fixing_its_user_takes_it_from_no_header_and_refuses_another() -> None:
    from gateway.credentials import credential_actor

    fixed = _credential(actor="kiosk-7")
    assert credential_actor(fixed, {}, None) == "kiosk-7"
    assert credential_actor(fixed, {"x-user-id": "kiosk-7"}, None) == "kiosk-7"
    assert credential_actor(fixed, {}, {"user": "kiosk-7"}) == "kiosk-7"
    with pytest.raises(CredentialActorMismatch):
        credential_actor(fixed, {"x-user-id": "mallory"}, None)
    assert credential_actor(_credential(), {"x-user-id": "anyone"}, None) is None
