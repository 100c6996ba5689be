"""Admission: received → admitted | rejected, shared by chat and embeddings.

The steps, in the order a request kind calls them: `receive` → `authenticate` (the key
first: a malformed body from a known key is still that project's record) →
`use_idempotency_key` → `read_body` / `identify_actor` → the kind's own validation →
`thread_ids` → `screen_request_pii` (before routing: a refused request reserves nothing,
the provider only ever sees the screened body) → the router's decision → `admit`
(AdmitRequest: received, reserved and dispatched in one durable write, then the lease) →
an `Admission`. Any failure on the way is `reject`ed: recorded as an event before the
client hears of it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any
from uuid import UUID

from fastapi import Request as HttpRequest
from fastapi.responses import Response

from domain import commands as c
from domain.catalog import Catalog
from domain.credentials import Credential
from domain.errors import (
    DomainError,
    InvalidPiiPolicy,
    ModelCapabilityMissing,
    PiiScreeningUnavailable,
)
from domain.ids import MODE_TEST, idempotent_request_id, key_mode, new_request_id
from domain.pii_events import PiiDecision
from domain.vocabulary import KeySource
from gateway.auth import actor_from, authenticate_key, presented_key_id
from gateway.byok import ProjectEndpointKeys, byok_adapter
from gateway.cost_control import downgrade_for_budget
from gateway.credentials import (
    check_named_model_granted,
    credential_actor,
    credential_of,
    grant_refusal,
    granted_catalog,
    restrict_to_grant,
)
from gateway.errors import GatewayError, as_gateway_error, error_response
from gateway.json_bytes import canonical_sha256
from gateway.lifecycle.request import Admission, Intake, PiiSession
from gateway.lifecycle.settlement import hold_lease
from gateway.lifecycle.traces import observe_refusal, trace_allowed_models, trace_join
from gateway.observability.core import observed_pii_screening
from gateway.pii.engine import unscreened_decision
from gateway.pii.service import pii_service
from gateway.providers.base import UpstreamError
from gateway.response_cache import CachePlan
from gateway.routing.decision import RouteDecision
from gateway.routing.requests import decide_for_request, route_of
from gateway.validation import check_body_strings, check_id, parse_json_body, storable_model

# An endpoint's own answer to a model that lacks a capability it needs.
Refusal = Callable[[ModelCapabilityMissing], Awaitable[Exception]]

log = logging.getLogger("ledgergate.admission")

IDEMPOTENCY_KEY_CHARS_MAX = 255


def money_header(amount: Decimal) -> str:
    return format(amount, "f")


def receive(http: HttpRequest, services: Any) -> Intake:
    """The request has arrived: its id, clock and client; which key it presented (its id,
    never the key itself), kept if authentication fails."""
    return Intake(
        request_id=new_request_id(),
        started=time.perf_counter(),
        received_at=services.clock.now(),
        client_ip=http.client.host if http.client else None,
        key_id=presented_key_id(http.headers.get("authorization")),
    )


async def authenticate(intake: Intake, http: HttpRequest, services: Any) -> tuple[Any, Any]:
    """The caller's key and project (raises for a missing, unknown or revoked key)."""
    key, project = await authenticate_key(services.cache, http.headers.get("authorization"))
    intake.project_id, intake.key_id = project.id, key.id
    intake.mode = key_mode(key.key_prefix)
    intake.credential = credential_of(key)  # a temporary credential stands in for its key
    return key, project


def use_idempotency_key(intake: Intake, project_id: UUID, header: str | None) -> None:
    """`Idempotency-Key`: the request id derives from (project, key), so a retry lands on
    the first attempt's Request aggregate and is refused instead of charged twice."""
    if header is None:
        return
    key = header.strip()
    if (
        not key
        or len(key) > IDEMPOTENCY_KEY_CHARS_MAX
        or not key.isascii()
        or not key.isprintable()
    ):
        raise GatewayError(
            "invalid_request",
            f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_CHARS_MAX} printable ASCII characters",
            param="idempotency-key",
        )
    intake.request_id = idempotent_request_id(project_id, key)
    intake.idempotency_key_sha256 = hashlib.sha256(key.encode()).hexdigest()


async def read_body(intake: Intake, http: HttpRequest) -> dict[str, Any]:
    """The JSON body. Before anything reads it: no NUL or lone surrogate anywhere (storage
    refuses them), no nesting past the bound; a model name is kept only once valid."""
    body = parse_json_body(await http.body())
    check_body_strings(body)
    intake.model_requested = storable_model(body)
    return body


def identify_actor(
    intake: Intake, http: HttpRequest, body: dict[str, Any], project: Any, services: Any
) -> None:
    """The end user the request is for (header, body `user`, or a signed actor token); a
    temporary credential that fixes its user acts for that user alone."""
    if intake.credential is not None:
        fixed = credential_actor(intake.credential, http.headers, body)
        if fixed is not None:
            intake.actor_id = fixed
            return
    secret = (services.settings.actor_token_secret or "").encode() or None
    intake.actor_id = actor_from(http.headers, body, project, secret)


def thread_ids(intake: Intake, headers: Any, body: dict[str, Any]) -> None:
    """The trace and conversation a request joins: the body field (validated with the body)
    or else its header, same syntax (gateway/validation.check_id). Neither is forwarded."""
    for name, header in (("trace_id", "x-trace-id"), ("conversation_id", "x-conversation-id")):
        value = body.get(name)
        if value is None and headers.get(header) is not None:
            value = check_id(headers.get(header), header)
        setattr(intake, name, value)
    intake.trace_join = trace_join(intake.trace_id, headers)  # governed: lg_tr_…


def _not_screened(raw_policy: Any, failure_code: str) -> PiiDecision:
    return PiiDecision(
        policy_received=raw_policy is not None,
        processed=False,
        action="none",
        sensitivity="",
        language="",
        entity_counts=(),
        redactions_applied=0,
        latency_ms=0.0,
        failure_code=failure_code,
    )


@observed_pii_screening
async def screen_request_pii(
    intake: Intake,
    services: Any,
    project_id: UUID,
    body: dict[str, Any],
    prompt_of: str = "messages",
) -> dict[str, Any]:
    """Screen the body when the request's `pii_policy` or the project's policy asks for
    it; return the body the provider may see. Raises InvalidPiiPolicy, GuardrailViolation
    or PiiScreeningUnavailable, each with `intake.pii_decision` set so the rejection records
    it. `prompt_of` names the body field whose hash is recorded (`messages`, `input`)."""
    service = pii_service(services)
    raw_policy = body.get("pii_policy")
    try:
        policy = service.policy_for(project_id, raw_policy)
    except InvalidPiiPolicy as error:
        intake.pii_decision = _not_screened(raw_policy, error.code)
        raise
    if policy is None:
        return body
    # A hash of a short prompt holding one ID is reversible by enumeration (a personnummer
    # has ~10^10 values): with screening on, only the screened prompt is hashed.
    intake.prompt_sha256 = None
    try:
        result = await service.screener.screen(body, policy)
    except PiiScreeningUnavailable as error:
        intake.pii_decision = unscreened_decision(policy, error.code)
        raise
    intake.pii_decision = result.decision
    if result.violation is not None:
        raise result.violation
    hashed = result.body if policy.enabled else body
    intake.prompt_sha256 = canonical_sha256(hashed.get(prompt_of))
    intake.pii = PiiSession(policy, result.mapping, result.decision.language or "en")
    return result.body


async def decide(
    services: Any,
    project: Any,
    body: dict[str, Any],
    effective: Any,
    *,
    capabilities: frozenset[str] | None,
    credential: Credential | None = None,
    trace: c.TraceJoin | None = None,
) -> RouteDecision:
    """The router's decision: the only compliance gate (a model outside the project's, or
    the request's tighter, tier is refused here, before anything is reserved), the
    capabilities the request needs, the failover order, the project's own endpoint keys.
    A temporary credential's grant narrows the models (a named one outside it: 403); a
    governed trace's allowed models are those auto and shorthands choose among."""
    if credential is not None:
        # with its custom models
        catalog = await services.routing.project_catalog(project.id, services.cache.get)
        check_named_model_granted(body.get("model"), catalog, credential)
    try:
        decision = await decide_for_request(
            services.routing,
            project,
            body,
            services.cache.get,
            effective=effective,
            project_keys=ProjectEndpointKeys(services.settings, project),
            capabilities=capabilities,
            narrow=granted_catalog(credential),
            allowed_models=await trace_allowed_models(services, trace, project.id),
        )
    except DomainError as error:
        raise grant_refusal(error, credential) from None
    return restrict_to_grant(decision, credential)


async def route(
    services: Any,
    intake: Intake,
    key: Any,
    project: Any,
    body: dict[str, Any],
    effective: Any,
    *,
    capabilities: frozenset[str] | None,
    estimated_input_tokens: int,
    max_output_tokens: int,
    refusals: Mapping[str, Refusal] | None = None,
) -> RouteDecision:
    """The route of a request, chat and embeddings alike: the router's decision (`decide`,
    the only compliance gate), then the budget downgrade (gateway/cost_control.py): a key
    below its downgrade threshold has a router-chosen model replaced by the cheapest
    compliant one that fits; a named model is never swapped. The intake's temporary
    credential and trace narrow both. A model that lacks a capability named in `refusals`
    is refused with that endpoint's own error (chat: documents; embeddings: embeddings)."""

    async def decided(request_body: dict[str, Any]) -> RouteDecision:
        return await decide(
            services,
            project,
            request_body,
            effective,
            capabilities=capabilities,
            credential=intake.credential,
            trace=intake.trace_join,
        )

    async def catalog() -> Catalog:
        # with its custom models
        return await services.routing.project_catalog(project.id, services.cache.get)

    try:
        return await downgrade_for_budget(
            services,
            key,
            await decided(body),
            catalog=catalog,
            currency=project.currency,
            estimated_input_tokens=estimated_input_tokens,
            max_output_tokens=max_output_tokens,
            redecide=lambda model_field: decided({**body, "model": model_field}),
        )
    except ModelCapabilityMissing as error:
        for capability, refusal in (refusals or {}).items():
            if capability in error.missing:
                raise await refusal(error) from None
        raise


def key_source_for(services: Any, project: Any, provider: str, mode: str) -> str:
    """The key source of a request: "byok" when the project has its own key for `provider`
    (fee 0%), else "managed". The admission prices the fee by it; failover keeps to targets
    of the same source (dispatch.Attempts). A test-mode request uses no key at all (the
    simulator answers it): "managed" rules price it on the test balance."""
    if mode == MODE_TEST:
        return KeySource.MANAGED.value
    own = byok_adapter(services, project, provider, services.adapters.get(provider))
    return KeySource.BYOK.value if own is not None else KeySource.MANAGED.value


async def admit(
    intake: Intake,
    services: Any,
    *,
    endpoint: str,
    key: Any,
    project: Any,
    effective: Any,
    decision: RouteDecision,
    key_source: str,
    estimated_input_tokens: int,
    max_output_tokens: int,
    cache_plan: CachePlan | None,
    ocr_estimate: dict[str, Any] | None = None,
) -> Admission:
    """AdmitRequest: received, reserved and dispatched in one durable write (the fee follows
    from plan and key source); then this process holds the request's lease."""
    facts = intake.facts(endpoint, services.settings.request_timeout_s)
    outcome = await services.writer.execute_async(
        c.AdmitRequest(
            facts=facts,
            route=route_of(decision.chosen),
            estimated_input_tokens=estimated_input_tokens,
            max_output_tokens=max_output_tokens,
            key_source=key_source,
            daily_budget=key.daily_budget,
            route_decision=decision.as_event_fields(),
            ocr_estimate=ocr_estimate,
            pii_decision=intake.pii_decision,
            trace=intake.trace_join,  # the contract is checked in the writer, exactly
            credential_id=intake.credential_id,
        )
    )
    intake.admitted = True
    hold_lease(services, intake.request_id, facts.deadline_at)
    terms = outcome.value
    if not isinstance(terms, dict):
        raise TypeError("AdmitRequest returned no terms")
    return Admission(
        facts=facts,
        started=intake.started,
        project=project,
        key_source=key_source,
        decision=decision,
        effective=effective,
        reserved_amount=terms["reserved_amount"],
        currency=terms["currency"],
        pii=intake.pii,
        cache_plan=cache_plan,
        headers={
            **decision.headers(),
            "X-LG-Estimated-Cost": money_header(terms["reserved_amount"]),
            "X-LG-Currency": terms["currency"],
            "X-LG-Key-Source": key_source,
        },
    )


async def record_rejection(
    services: Any, intake: Intake, error: GatewayError, endpoint: str
) -> None:
    """RecordRejection; the client still gets its answer if this fails (logged loudly)."""
    try:
        await services.writer.execute_async(
            c.RecordRejection(
                facts=intake.facts(endpoint, services.settings.request_timeout_s),
                http_status=error.status,
                error_code=error.code,
                error_type=error.error_type,
                message=error.ledger_message,
                pii_decision=intake.pii_decision,
                credential_id=intake.credential_id,
            )
        )
    except Exception:
        log.exception("could not record the rejection of %s", intake.request_id)


async def reject(services: Any, intake: Intake, error: BaseException, endpoint: str) -> Response:
    intake.purge_pii()
    if intake.idempotency_key_sha256 is not None and not intake.admitted:
        # Only an admitted request binds its Idempotency-Key; a refusal (a duplicate, or a
        # quota/balance/validation error that charged nothing) is audited under its own id,
        # so a corrected retry with the same key can still go through.
        intake.request_id = new_request_id()
    await observe_refusal(services, intake.project_id, intake.mode, error)  # a trace's expiry
    gateway_error = as_gateway_error(error)
    if gateway_error.status >= 500 and not isinstance(
        error, GatewayError | DomainError | UpstreamError
    ):
        log.exception("unexpected error in %s", intake.request_id, exc_info=error)
    await record_rejection(services, intake, gateway_error, endpoint)
    return error_response(gateway_error, intake.request_id)
