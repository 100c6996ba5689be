"""POST /v1/chat/completions: the request lifecycle, end to end.

    parse → authenticate → validate → resolve model → estimate → AdmitRequest (received,
    reserved, dispatched: durable before any provider call) → provider → CompleteRequest
    (charge = provider cost + fee, the rest released) or FailRequest.

Every outcome, a rejection included, is an event before the client hears of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from fastapi import Request as HttpRequest
from fastapi.responses import Response, StreamingResponse

from domain import commands as c
from domain.errors import (
    DomainError,
    GuardrailViolation,
    InvalidPiiPolicy,
    ModelCapabilityMissing,
    ModelDoesNotSupportDocuments,
    PiiScreeningUnavailable,
)
from domain.ids import MODE_LIVE, MODE_TEST, idempotent_request_id, key_mode, new_request_id
from domain.pii_events import PiiDecision
from gateway import response_cache as rc
from gateway.auth import actor_from, authenticate_key, bearer_key, presented_key_id
from gateway.bootstrap import Services
from gateway.byok import ProjectEndpointKeys, byok_adapter
from gateway.errors import GatewayError, as_gateway_error, envelope, error_response
from gateway.json_bytes import canonical_sha256
from gateway.observability.core import observed_pii_screening
from gateway.pii.engine import unscreened_decision
from gateway.pii.firewall import FIREWALL_SCANNER
from gateway.pii.policy import PiiPolicy
from gateway.pii.pseudonymize import Pseudonymizer
from gateway.pii.rehydrate import json_string_escape, rehydrate_chat_completion
from gateway.pii.service import pii_service
from gateway.pii.streaming import PiiStreamFilter
from gateway.providers.base import (
    USAGE_SOURCE_ESTIMATED,
    ChatResult,
    ChatStream,
    ProviderAdapter,
    UpstreamError,
    Usage,
)
from gateway.providers.documents import (
    check_document_support,
    document_capable_suggestions,
    normalize_documents,
)
from gateway.responses import JsonResponse
from gateway.routing.decision import RouteDecision, RouteTarget
from gateway.routing.documents import (
    OCR_MODEL,
    MistralOcrClient,
    plan_ocr,
    splice_pdfs_as_markdown,
    without_documents,
)
from gateway.routing.failover import FailoverExhausted, SkipTarget, run_with_failover
from gateway.routing.requests import (
    decide_for_request,
    effective_tier_for,
    measure_chat,
    ocr_endpoints,
    route_of,
)
from gateway.routing.selector import cache_hit_allowed, required_capabilities
from gateway.settlement import request_leases, settle, submit_settlement
from gateway.test_mode import refuse_in_test_mode, router_for, simulator_adapter
from gateway.tokens import count_text_tokens, estimate_prompt_tokens, prompt_chars
from gateway.validation import (
    check_body_strings,
    check_id,
    output_tokens_allowance,
    parse_json_body,
    storable_model,
    upstream_body_of,
    validate_chat_body,
    wants_usage_in_stream,
)

log = logging.getLogger("ledgergate.chat")

ENDPOINT_CHAT = "chat.completions"
IDEMPOTENCY_KEY_CHARS_MAX = 255


def money_header(amount: Decimal) -> str:
    return format(amount, "f")


@dataclass
class Context:
    """What one request has learned so far; enough to record a rejection at any point."""

    request_id: str
    started: float
    services: Services
    received_at: Any = None
    project_id: UUID | None = None
    key_id: UUID | None = None
    actor_id: str | None = None
    model_requested: str | None = None
    stream: bool = False
    message_count: int = 0
    prompt_chars: int = 0
    prompt_sha256: str | None = None
    trace_id: str | None = None
    conversation_id: str | None = None
    client_ip: str | None = None
    idempotency_key_sha256: str | None = None
    admitted: bool = False
    project: Any = None  # the caller's Project aggregate, once authenticated
    key_source: str = "managed"  # "byok" when the admission priced the project's own key
    mode: str = MODE_LIVE  # "test" for an lg_test_ key: simulated, charged to the test balance
    headers: dict[str, str] = field(default_factory=dict)
    # PII: the decision to record (admitted or rejected), and for an admitted request the
    # policy and the in-memory value mapping (purged when the request ends).
    pii_decision: PiiDecision | None = None
    pii_policy: PiiPolicy | None = None
    pii_mapping: Pseudonymizer | None = None
    pii_language: str = "en"
    cache_plan: rc.CachePlan | None = None  # the response cache's part (gateway/response_cache)

    def purge_pii(self) -> None:
        if self.pii_mapping is not None:
            self.pii_mapping.purge()

    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    def facts(self, endpoint: str = ENDPOINT_CHAT) -> c.RequestFacts:
        deadline = self.received_at + timedelta(seconds=self.services.settings.request_timeout_s)
        return c.RequestFacts(
            request_id=self.request_id,
            endpoint=endpoint,
            project_id=self.project_id,
            key_id=self.key_id,
            actor_id=self.actor_id,
            model_requested=self.model_requested,
            stream=self.stream,
            message_count=self.message_count,
            prompt_chars=self.prompt_chars,
            prompt_sha256=self.prompt_sha256,
            trace_id=self.trace_id,
            idempotency_key_sha256=self.idempotency_key_sha256,
            client_ip=self.client_ip,
            received_at=self.received_at,
            deadline_at=deadline,
            mode=self.mode,
            conversation_id=self.conversation_id,
        )


def thread_ids(ctx: Context, headers: Any, body: dict[str, Any]) -> None:
    """The trace and conversation a request joins: the body field (validated with the body)
    or else its header, same syntax (gateway/validation.check_id). Neither is forwarded."""
    for name, header in (("trace_id", "x-trace-id"), ("conversation_id", "x-conversation-id")):
        value = body.get(name)
        if value is None and headers.get(header) is not None:
            value = check_id(headers.get(header), header)
        setattr(ctx, name, value)


def _hash_messages(body: dict[str, Any]) -> str:
    return canonical_sha256(body.get("messages"))


async def record_rejection(
    ctx: Context, error: GatewayError, endpoint: str = ENDPOINT_CHAT
) -> None:
    try:
        await ctx.services.writer.execute_async(
            c.RecordRejection(
                facts=ctx.facts(endpoint),
                http_status=error.status,
                error_code=error.code,
                error_type=error.error_type,
                message=error.ledger_message,
                pii_decision=ctx.pii_decision,
            )
        )
    except Exception:  # the client still gets its answer; the failure to record is logged loudly
        log.exception("could not record the rejection of %s", ctx.request_id)


def use_idempotency_key(ctx: Context, project_id: UUID, header: str | None) -> None:
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
    ctx.request_id = idempotent_request_id(project_id, key)
    ctx.idempotency_key_sha256 = hashlib.sha256(key.encode()).hexdigest()


async def reject(ctx: Context, error: BaseException, endpoint: str = ENDPOINT_CHAT) -> Response:
    ctx.purge_pii()
    if ctx.idempotency_key_sha256 is not None and not ctx.admitted:
        # Only an admitted request binds its Idempotency-Key; a refusal (a duplicate, or a
        # quota/balance/validation error that charged nothing) is audited under its own id,
        # so a corrected retry with the same key can still go through.
        ctx.request_id = new_request_id()
    gateway_error = as_gateway_error(error)
    if gateway_error.status >= 500 and not isinstance(
        error, GatewayError | DomainError | UpstreamError
    ):
        log.exception("unexpected error in %s", ctx.request_id, exc_info=error)
    await record_rejection(ctx, gateway_error, endpoint)
    return error_response(gateway_error, ctx.request_id, ctx.headers)


async def chat_completions(http: HttpRequest, services: Services) -> Response:
    ctx = Context(request_id=new_request_id(), started=time.perf_counter(), services=services)
    ctx.received_at = services.clock.now()
    ctx.client_ip = http.client.host if http.client else None
    # Kept if authentication fails: which key failed (its id, never the key itself).
    ctx.key_id = presented_key_id(http.headers.get("authorization"))
    try:
        # The key first: a malformed body from a known key is still that project's record.
        key, project = await authenticate_key(services.cache, http.headers.get("authorization"))
        ctx.project_id, ctx.key_id = project.id, key.id
        ctx.mode = key_mode(key.key_prefix)
        use_idempotency_key(ctx, project.id, http.headers.get("idempotency-key"))
        raw = await http.body()
        body = parse_json_body(raw)
        # Before anything reads the body: no NUL or lone surrogate anywhere (storage
        # refuses them), no nesting past the bound; a model name is kept only once valid.
        check_body_strings(body)
        ctx.model_requested = storable_model(body)
        ctx.stream = body.get("stream") is True
        if isinstance(body.get("messages"), list):
            ctx.message_count = len(body["messages"])
        secret = (services.settings.raw.get("LEDGERGATE_ACTOR_TOKEN_SECRET") or "").encode() or None
        ctx.actor_id = actor_from(http.headers, body, project, secret)
        validate_chat_body(body)
        thread_ids(ctx, http.headers, body)
        ctx.prompt_chars = prompt_chars(body)
        ctx.prompt_sha256 = _hash_messages(body)
        # Documents in any of the three client shapes become one canonical block first, so
        # the router sees what the request needs.
        body = normalize_documents(body)
        # PII screening runs before routing and admission: a refused request reserves
        # nothing, and the provider is only ever given the screened body (fail closed).
        screened_body = await screen_request_pii(ctx, services, project.id, body)
        # The router is the only compliance gate: a model outside the project's (or the
        # request's tighter) tier is refused here, before anything is reserved.
        effective = effective_tier_for(project, body)
        ocr = plan_ocr(
            services.routing.catalog,
            ocr_endpoints(services.routing),
            effective,
            body,
            ctx.received_at,
        )
        if ocr is not None:  # OCR would call Mistral for real
            refuse_in_test_mode(ctx.mode, "document OCR (PDFs on eu_strict)")
        try:
            decision = await decide_for_request(
                services.routing,
                project,
                body,
                services.cache.get,
                effective=effective,
                project_keys=ProjectEndpointKeys(services.settings.raw, project),
                # eu_strict PDFs become text through Mistral OCR first: no model needs PDF input.
                capabilities=required_capabilities(body) - {"documents"} if ocr else None,
            )
        except ModelCapabilityMissing as error:
            if "documents" not in error.missing:
                raise
            raise ModelDoesNotSupportDocuments(
                f"model {body['model'].strip()[:200]!r} cannot read documents (PDF); "
                "choose a document-capable model",
                model=body["model"].strip()[:200],
                alternatives=error.alternatives,
            ) from None
        route = route_of(decision.chosen)
        if ocr is None:  # an OCR request is never cached (its documents go to Mistral first)
            ctx.cache_plan = plan_cache(
                ctx, http, ENDPOINT_CHAT, body, screened_body, effective, decision
            )
        # BYOK: the project's own key for the chosen provider, when it has one (fee 0%). The
        # admission prices the fee by this key source; failover keeps to targets of the same.
        ctx.project = project
        key_source = ctx.key_source = key_source_for(services, project, route.provider, ctx.mode)
        if ocr is None:
            # The adapter must be able to forward the document natively: never dropped.
            check_document_support(
                body,
                route.provider,
                route.upstream_model,
                requested_model=route.model,
                candidates=document_capable_suggestions(services.adapters),
            )
            estimated_input = estimate_prompt_tokens(body)
        else:
            estimated_input = (
                estimate_prompt_tokens(without_documents(body)) + ocr.input_tokens_estimate
            )
        max_output = output_tokens_allowance(body, services.settings.default_max_output_tokens)
        admission = await services.writer.execute_async(
            c.AdmitRequest(
                facts=ctx.facts(),
                route=route,
                estimated_input_tokens=estimated_input,
                max_output_tokens=max_output,
                key_source=key_source,  # the fee follows from plan and key source
                daily_budget=key.daily_budget,
                route_decision=decision.as_event_fields(),
                ocr_estimate=None
                if ocr is None
                else {"cost": ocr.cost_estimate, "currency": ocr.currency},
                pii_decision=ctx.pii_decision,
            )
        )
        ctx.admitted = True
        hold_lease(ctx)
    except Exception as error:
        return await reject(ctx, error)

    terms = admission.value
    assert isinstance(terms, dict)
    ctx.headers.update(
        {
            **decision.headers(),
            "X-LG-Estimated-Cost": money_header(terms["reserved_amount"]),
            "X-LG-Currency": terms["currency"],
            "X-LG-Key-Source": key_source,
            "X-LG-Cache": await look_up_cache(ctx, effective),
        }
    )
    if ocr is not None:
        # After admission (durable) and before the model: the documents go to Mistral OCR.
        try:
            spliced = await splice_pdfs_as_markdown(
                screened_body, MistralOcrClient(ocr.endpoint, services.routing.ocr_client())
            )
            await services.writer.execute_async(
                c.RecordDocuments(
                    request_id=ctx.request_id,
                    documents=spliced.documents,
                    pages=spliced.pages,
                    ocr_model=OCR_MODEL,
                    per_page=ocr.per_page,
                    currency=ocr.currency,
                    price_effective_from=ocr.price_effective_from,
                )
            )
        except Exception as error:
            gateway_error = as_gateway_error(error)
            await fail_request(ctx, gateway_error)
            return error_response(gateway_error, ctx.request_id, ctx.headers)
        screened_body = spliced.body
        ctx.headers["X-LG-Documents-Pages"] = str(spliced.pages)
    upstream_body = upstream_body_of(screened_body)
    try:
        if ctx.stream:
            response = await _stream(ctx, decision, upstream_body, body, estimated_input)
            if not isinstance(response, StreamingResponse):
                release_cache(ctx)  # else the stream's end releases it
            return response
        try:
            return await _complete(ctx, decision, upstream_body, body, estimated_input)
        finally:
            release_cache(ctx)
    except BaseException:
        release_cache(ctx)
        # Not settled by the lifecycle (a bug, a cancellation): no lease is held for it, so
        # the sweeper settles it after its deadline, as it does for a dead process.
        request_leases(services).release(ctx.request_id)
        raise


def plan_cache(
    ctx: Context,
    http: HttpRequest,
    endpoint: str,
    body: dict[str, Any],
    screened_body: dict[str, Any],
    effective: Any,
    decision: RouteDecision,
) -> rc.CachePlan | None:
    """The response cache's key for this request (chat and embeddings): bad cache headers
    are refused here, before anything is reserved."""
    if ctx.project_id is None:
        return None
    return rc.plan_request(
        http.headers,
        body,
        endpoint=endpoint,
        api_key=bearer_key(http.headers.get("authorization")),
        project_id=ctx.project_id,
        scope=effective.cache_scope(),
        models=tuple(target.spec.name for target in decision.targets),
        pii_policy=ctx.pii_policy,
        stream=ctx.stream,
        screened_body=screened_body,
    )


async def look_up_cache(ctx: Context, effective: Any) -> str:
    """After admission (the hit passed budgets and quotas like any request): read the entry.
    A hit from a model the effective tier does not allow is never served (selector's rule)."""
    plan = ctx.cache_plan
    if plan is None:
        return rc.BYPASS
    await rc.response_cache(ctx.services).lookup(plan)
    if plan.hit is not None and not cache_hit_allowed(
        plan.hit.model, effective, ctx.services.routing.catalog
    ):
        plan.hit, plan.outcome = None, rc.MISS
    if plan.hit is not None:
        ctx.headers.update({"X-LG-Model": plan.hit.model, "X-LG-Provider": plan.hit.provider})
    return plan.outcome


def release_cache(ctx: Context) -> None:
    if ctx.cache_plan is not None:
        rc.response_cache(ctx.services).release(ctx.cache_plan)


async def store_in_cache(ctx: Context, served: RouteTarget, **entry: Any) -> None:
    """After settlement: keep what the provider answered (placeholders, not raw PII)."""
    plan = ctx.cache_plan
    if plan is None or not plan.store_wanted:
        return
    await rc.response_cache(ctx.services).store_entry(
        plan,
        rc.CacheEntry(
            origin_request_id=ctx.request_id,
            model=served.spec.name,
            provider=served.spec.provider,
            **entry,
        ),
    )


def charged_usage(ctx: Context, usage: Usage) -> c.UsageReport:
    """What the ledger charges: the provider's usage, or nothing for a cache hit (no provider
    was called; the client still sees the origin's usage in the body)."""
    if ctx.cache_plan is not None and ctx.cache_plan.hit is not None:
        return c.UsageReport(0, 0, 0, rc.USAGE_SOURCE_CACHE)
    return c.UsageReport(
        usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.source
    )


def hold_lease(ctx: Context) -> None:
    """From admission until its settlement is durable, this process holds the request's
    lease: renewed while it is served, so the sweeper leaves it alone (gateway/settlement)."""
    request_leases(ctx.services).hold(ctx.request_id, ctx.facts().deadline_at)


def key_source_for(services: Services, project: Any, provider: str, mode: str = MODE_LIVE) -> str:
    """The key source of a request: "byok" when the project has its own key for `provider`
    (fee 0%), else "managed". The admission prices the fee by it; failover keeps to targets
    of the same source (Attempts.prepare). A test-mode request uses no key at all (the
    simulator answers it): "managed" rules price it on the test balance."""
    if mode == MODE_TEST:
        return "managed"
    own = byok_adapter(services, project, provider, services.adapters.get(provider))
    return "byok" if own is not None else "managed"


class Attempts:
    """Dispatch to a decision's targets in order (chat and embeddings). The first target's dispatch was recorded
    with admission; every failover target is recorded (Redispatch, repriced if the model
    changes) and durable before it is called."""

    def __init__(self, ctx: Context, decision: RouteDecision) -> None:
        self.ctx = ctx
        self.decision = decision
        self.attempt = 1

    async def prepare(self, target: RouteTarget) -> ProviderAdapter:
        services = self.ctx.services
        if self.ctx.mode == MODE_TEST:
            # Test mode: the simulator answers; no provider, no managed or project key.
            return await self._record_attempt(target, simulator_adapter(services))
        managed = services.routing.adapter_for(target)
        own = None
        if self.ctx.project is not None:
            own = byok_adapter(services, self.ctx.project, target.spec.provider, managed)
        if (own is not None) != (self.ctx.key_source == "byok"):
            # The reservation and fee were decided for one key source; a target that would
            # bill through the other one is skipped rather than charged with the wrong tag.
            raise SkipTarget(
                "key_source_mismatch", f"{target.endpoint_key} uses another key source"
            )
        adapter = own or managed
        if adapter is None:
            raise SkipTarget("provider_not_configured", f"no adapter for {target.endpoint_key}")
        return await self._record_attempt(target, adapter)

    async def _record_attempt(
        self, target: RouteTarget, adapter: ProviderAdapter
    ) -> ProviderAdapter:
        services = self.ctx.services
        if target is not self.decision.chosen:
            try:
                await services.writer.execute_async(
                    c.Redispatch(
                        request_id=self.ctx.request_id,
                        route=route_of(target),
                        attempt=self.attempt + 1,
                    )
                )
            except DomainError as error:  # e.g. no price for the fallback model
                raise SkipTarget(error.code, error.message) from None
            self.attempt += 1
        return adapter

    def deadline_s(self) -> float:
        return max(self.ctx.services.settings.request_timeout_s - self.ctx.elapsed_ms() / 1000, 0)


@observed_pii_screening
async def screen_request_pii(
    ctx: Context, services: Services, project_id: UUID, body: dict[str, Any]
) -> dict[str, Any]:
    """Screen the body when the request's `pii_policy` or the project's policy asks for
    it; return the body the provider may see. Raises InvalidPiiPolicy, GuardrailViolation
    or PiiScreeningUnavailable, each with `ctx.pii_decision` set so the rejection records it."""
    service = pii_service(services)
    raw_policy = body.get("pii_policy")
    try:
        policy = service.policy_for(project_id, raw_policy)
    except InvalidPiiPolicy as error:
        ctx.pii_decision = PiiDecision(
            policy_received=raw_policy is not None,
            processed=False,
            action="none",
            sensitivity="",
            language="",
            entity_counts=(),
            redactions_applied=0,
            latency_ms=0.0,
            failure_code=error.code,
        )
        raise
    if policy is None:
        return body
    # A hash of a short prompt holding one ID is reversible by enumeration (a personnummer
    # has ~10^10 values): with screening on, only the screened prompt is hashed.
    ctx.prompt_sha256 = None
    try:
        result = await service.screener.screen(body, policy)
    except PiiScreeningUnavailable as error:
        ctx.pii_decision = unscreened_decision(policy, error.code)
        raise
    ctx.pii_decision = result.decision
    if result.violation is not None:
        raise result.violation
    ctx.prompt_sha256 = _hash_messages(result.body) if policy.enabled else _hash_messages(body)
    ctx.pii_policy = policy
    ctx.pii_mapping = result.mapping
    ctx.pii_language = result.decision.language or "en"
    return result.body


def _output_violation(ctx: Context, text: str) -> GuardrailViolation | None:
    """Output screening of a whole (non-streamed) answer for the blocked types."""
    policy = ctx.pii_policy
    if policy is None or not policy.output_blocked_entity_types or not text:
        return None
    screener = pii_service(ctx.services).screener
    findings = screener.analyze(
        text, ctx.pii_language, policy.output_blocked_entity_types, policy.score_threshold
    )
    found = tuple(sorted({f.entity_type for f in findings}))
    if not found:
        return None
    return GuardrailViolation(
        "the answer contained personal data this policy blocks: " + ", ".join(found),
        scanner=FIREWALL_SCANNER,
        entity_types=found,
    )


async def fail_request(
    ctx: Context,
    error: GatewayError,
    *,
    after_first_chunk: bool = False,
    delivered_chunks: int = 0,
    usage: Usage | None = None,
) -> Any:
    report = None
    if usage is not None:
        report = c.UsageReport(
            usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.source
        )
    return await settle(
        ctx.services,
        c.FailRequest(
            request_id=ctx.request_id,
            http_status=error.status,
            error_code=error.code,
            error_type=error.error_type,
            message=error.ledger_message,
            latency_ms=ctx.elapsed_ms(),
            after_first_chunk=after_first_chunk,
            delivered_chunks=delivered_chunks,
            usage=report,
            actor_id=ctx.actor_id,
        ),
    )


async def _complete(
    ctx: Context,
    decision: RouteDecision,
    upstream_body: dict[str, Any],
    client_body: dict[str, Any],
    estimated_input: int,
) -> Response:
    upstream_started = time.perf_counter()
    attempts = Attempts(ctx, decision)

    async def attempt(target: RouteTarget) -> tuple[Any, RouteTarget]:
        adapter = await attempts.prepare(target)
        return await adapter.chat(upstream_body, target.spec.upstream_id), target

    hit = ctx.cache_plan.hit if ctx.cache_plan is not None else None
    try:
        if hit is not None and hit.body is not None:
            result, served = ChatResult(orjson.loads(orjson.dumps(hit.body)), Usage(0, 0)), None
        else:
            outcome_of_attempts = await run_with_failover(
                router_for(ctx.mode, ctx.services.routing.router),
                decision,
                attempt,
                deadline_s=attempts.deadline_s(),
                measure=measure_chat(client_body, ctx.received_at),
                cut_in_flight=False,
            )
            result, served = outcome_of_attempts.value
    except Exception as error:
        ctx.purge_pii()
        gateway_error = as_gateway_error(error)
        if gateway_error.status >= 500 and not isinstance(
            error, UpstreamError | DomainError | FailoverExhausted
        ):
            log.exception("adapter failure in %s", ctx.request_id, exc_info=error)
        await fail_request(ctx, gateway_error)
        return error_response(gateway_error, ctx.request_id, ctx.headers)
    if served is not None:
        ctx.headers.update(decision.headers(served))
    upstream_ms = int((time.perf_counter() - upstream_started) * 1000) if hit is None else 0
    # What the provider said (placeholders, before rehydration): what the cache may keep.
    cacheable = None if served is None else orjson.dumps(result.body)
    text = _completion_text(result.body)
    if ctx.pii_policy is not None:
        try:
            violation = await pii_service(ctx.services).screener.run_in_worker(
                _output_violation, ctx, text
            )
        except Exception as error:  # output screening that cannot run withholds the answer
            log.error("output screening failed in %s: %s", ctx.request_id, type(error).__name__)
            violation = PiiScreeningUnavailable("output screening failed")
        if violation is not None:
            ctx.purge_pii()
            gateway_error = as_gateway_error(violation)
            await fail_request(ctx, gateway_error)
            return error_response(gateway_error, ctx.request_id, ctx.headers)
        if ctx.pii_policy.wants_rehydration and ctx.pii_mapping is not None:
            rehydrate_chat_completion(result.body, ctx.pii_mapping)
        ctx.purge_pii()
    finish_reason = None
    choices = result.body.get("choices") or []
    if choices and isinstance(choices[0], dict):
        finish_reason = choices[0].get("finish_reason")
    # The provider served it: the charge of its real usage is made durable (retried, or
    # journalled and retried in the background) and the client gets its answer either way.
    outcome = await settle(
        ctx.services,
        c.CompleteRequest(
            request_id=ctx.request_id,
            usage=charged_usage(ctx, result.usage),
            finish_reason=finish_reason,
            completion_chars=len(text),
            completion_sha256=hashlib.sha256(text.encode()).hexdigest() if text else None,
            latency_ms=ctx.elapsed_ms(),
            upstream_ms=upstream_ms,
            actor_id=ctx.actor_id,
            **rc.cache_fields(ctx.cache_plan),
        ),
    )
    if cacheable is not None and served is not None:
        await store_in_cache(ctx, served, body=orjson.loads(cacheable))
    total_ms = ctx.elapsed_ms()
    headers = {
        "X-Request-Id": ctx.request_id,
        **ctx.headers,
        "X-LG-Overhead-Ms": str(max(total_ms - upstream_ms, 0)),
    }
    if outcome is not None:
        headers["X-LG-Actual-Cost"] = money_header(outcome.value["charged_amount"])  # type: ignore[index]
        headers["X-LG-Ledger-Position"] = str(outcome.position or 0)
    return JsonResponse(result.body, headers=headers)


def _completion_text(body: dict[str, Any]) -> str:
    parts: list[str] = []
    for choice in body.get("choices") or []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            if isinstance(message.get("content"), str):
                parts.append(message["content"])
            for call in message.get("tool_calls") or []:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    parts.append(str(function.get("arguments") or ""))
    return "".join(parts)


def _chunk_text(chunk: dict[str, Any]) -> str:
    parts: list[str] = []
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict):
            if isinstance(delta.get("content"), str):
                parts.append(delta["content"])
            for call in delta.get("tool_calls") or []:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and function.get("arguments"):
                    parts.append(str(function["arguments"]))
    return "".join(parts)


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def estimated_usage(prompt_tokens: int, completion_text: str) -> Usage:
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=count_text_tokens(completion_text),
        source=USAGE_SOURCE_ESTIMATED,
    )


def fallback_stream_usage(stream: ChatStream, estimated_input: int, delivered_text: str) -> Usage:
    """Usage of a stream whose final usage never came (a provider without it, or a broken
    stream): the prompt as the provider reported it early on when it did (else the estimate),
    the completion counted from what was delivered. Always marked "estimated"."""
    usage = estimated_usage(estimated_input, delivered_text)
    reported = getattr(stream, "prompt_tokens_reported", None)
    if isinstance(reported, int) and reported > 0:
        usage = Usage(reported, usage.completion_tokens, 0, USAGE_SOURCE_ESTIMATED)
    return usage


async def _stream(
    ctx: Context,
    decision: RouteDecision,
    upstream_body: dict[str, Any],
    client_body: dict[str, Any],
    estimated_input: int,
) -> Response:
    include_usage = wants_usage_in_stream(client_body)
    upstream_started = time.perf_counter()
    attempts = Attempts(ctx, decision)

    async def attempt(target: RouteTarget) -> tuple[ChatStream, Any, Any, RouteTarget]:
        # Failover is only possible until the first chunk: after it, bytes reached the client.
        adapter = await attempts.prepare(target)
        opened = await adapter.chat_stream(upstream_body, target.spec.upstream_id)
        opened_iterator = opened.__aiter__()
        try:
            first_chunk = await opened_iterator.__anext__()
        except StopAsyncIteration:
            first_chunk = None
        except BaseException:
            await opened.aclose()
            raise
        return opened, opened_iterator, first_chunk, target

    hit = ctx.cache_plan.hit if ctx.cache_plan is not None else None
    try:
        if hit is not None and hit.chunks is not None:
            stream: ChatStream = rc.ReplayStream(hit)
            iterator = stream.__aiter__()
            first = await anext(iterator, None)
            served = decision.chosen
        else:
            started = await run_with_failover(
                router_for(ctx.mode, ctx.services.routing.router),
                decision,
                attempt,
                deadline_s=attempts.deadline_s(),
                cut_in_flight=False,
            )
            stream, iterator, first, served = started.value
    except Exception as error:
        ctx.purge_pii()
        gateway_error = as_gateway_error(error)
        await fail_request(ctx, gateway_error)
        return error_response(gateway_error, ctx.request_id, ctx.headers)
    if hit is None:
        ctx.headers.update(decision.headers(served))
    route = route_of(served)
    first_chunk_ms = int((time.perf_counter() - upstream_started) * 1000)
    overhead_ms = max(ctx.elapsed_ms() - first_chunk_ms, 0)
    writer = ctx.services.writer
    # Not awaited: the stream must not wait on a disk write; the writer keeps order.
    writer.submit(c.MarkStreaming(request_id=ctx.request_id, first_chunk_ms=first_chunk_ms))

    pii_stream = _PiiChunkFilter.for_request(ctx)

    async def upstream_chunks() -> AsyncIterator[dict[str, Any]]:
        if first is None:
            return
        yield first
        async for chunk in iterator:
            yield chunk

    async def body_iterator() -> AsyncIterator[bytes]:
        delivered = 0
        text_parts: list[str] = []
        finished = False
        last_chunk: dict[str, Any] | None = first
        # The upstream's chunks as sent (placeholders), for the response cache; None once
        # too large to keep or when nothing will be stored.
        keep = ctx.cache_plan is not None and ctx.cache_plan.store_wanted and hit is None
        kept: list[bytes] | None = [] if keep else None
        kept_bytes = 0
        try:
            async for chunk in upstream_chunks():
                # The upstream's own text (placeholders, not restored values) is what gets
                # counted and hashed.
                text_parts.append(_chunk_text(chunk))
                last_chunk = chunk
                if kept is not None:
                    kept.append(orjson.dumps(chunk))
                    kept_bytes += len(kept[-1])
                    if kept_bytes > rc.ENTRY_BYTES_MAX:
                        kept = None
                outgoing = [chunk] if pii_stream is None else await pii_stream.process(chunk)
                for out in outgoing:
                    if include_usage:
                        out["usage"] = None
                    delivered += 1
                    yield _sse(out)
            if pii_stream is not None:
                for out in await pii_stream.finish(last_chunk):
                    if include_usage:
                        out["usage"] = None
                    delivered += 1
                    yield _sse(out)
            text = "".join(text_parts)
            usage = stream.usage or fallback_stream_usage(stream, estimated_input, text)
            finished = True
            await settle(
                ctx.services,
                c.CompleteRequest(
                    request_id=ctx.request_id,
                    usage=charged_usage(ctx, usage),
                    finish_reason=stream.finish_reason,
                    completion_chars=len(text),
                    completion_sha256=hashlib.sha256(text.encode()).hexdigest() if text else None,
                    latency_ms=ctx.elapsed_ms(),
                    upstream_ms=0
                    if hit is not None
                    else int((time.perf_counter() - upstream_started) * 1000),
                    actor_id=ctx.actor_id,
                    **rc.cache_fields(ctx.cache_plan),
                ),
            )
            if kept is not None and stream.usage is not None:
                # Only a stream that ended with the provider's own usage is kept.
                await store_in_cache(
                    ctx,
                    served,
                    chunks=[orjson.loads(item) for item in kept],
                    usage=stream.usage.as_openai(),
                    finish_reason=stream.finish_reason,
                )
            if include_usage:
                usage_chunk = {
                    "id": (last_chunk or {}).get("id", ctx.request_id),
                    "object": "chat.completion.chunk",
                    "created": (last_chunk or {}).get("created", int(time.time())),
                    "model": (last_chunk or {}).get("model", route.upstream_model),
                    "choices": [],
                    "usage": usage.as_openai(),
                }
                yield _sse(usage_chunk)
            yield SSE_DONE
        except Exception as error:
            if finished:
                log.exception("could not record the completion of %s", ctx.request_id)
                yield _sse(
                    envelope(
                        GatewayError(
                            "internal_error",
                            "the gateway failed to record this request",
                        )
                    )
                )
                return
            finished = True
            gateway_error = as_gateway_error(error)
            text = "".join(text_parts)
            usage = stream.usage or fallback_stream_usage(stream, estimated_input, text)
            await fail_request(
                ctx,
                gateway_error,
                after_first_chunk=delivered > 0,
                delivered_chunks=delivered,
                usage=usage,
            )
            yield _sse(envelope(gateway_error))
        finally:
            if not finished:
                # The client went away mid-stream: settle for what was delivered, without
                # awaiting (this coroutine is being cancelled), and stop the upstream call.
                text = "".join(text_parts)
                usage = stream.usage or fallback_stream_usage(stream, estimated_input, text)
                submit_settlement(
                    ctx.services,
                    c.FailRequest(
                        request_id=ctx.request_id,
                        http_status=499,
                        error_code="client_disconnected",
                        error_type="client_error",
                        message="the client closed the connection before the stream ended",
                        latency_ms=ctx.elapsed_ms(),
                        after_first_chunk=delivered > 0,
                        delivered_chunks=delivered,
                        usage=c.UsageReport(
                            usage.prompt_tokens,
                            usage.completion_tokens,
                            usage.cached_tokens,
                            usage.source,
                        ),
                        actor_id=ctx.actor_id,
                    ),
                )
            ctx.purge_pii()
            release_cache(ctx)
            try:
                await asyncio.shield(stream.aclose())
            except Exception:  # closing an already-broken upstream connection
                pass

    headers = {
        "X-Request-Id": ctx.request_id,
        **ctx.headers,
        "X-LG-Overhead-Ms": str(overhead_ms),
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    }
    return StreamingResponse(body_iterator(), media_type="text/event-stream", headers=headers)


class _PiiChunkFilter:
    """Applies the PII stream filter (output firewall, then rehydration) to OpenAI chunks:
    one filter per choice index for content and one per tool call for its streamed
    arguments (JSON text). Text held back by a filter is sent
    before the chunk that carries `finish_reason` (or at the end); a chunk left with
    nothing to say is dropped. A firewall hit raises GuardrailViolation: the route then
    records the failure, sends the SSE error frame and closes the upstream call."""

    def __init__(self, ctx: Context, policy: PiiPolicy, mapping: Pseudonymizer) -> None:
        self._screener = pii_service(ctx.services).screener
        self._policy = policy
        self._mapping = mapping
        self._language = ctx.pii_language
        self._filters: dict[int, PiiStreamFilter] = {}
        self._tool_filters: dict[tuple[int, int], PiiStreamFilter] = {}

    @classmethod
    def for_request(cls, ctx: Context) -> _PiiChunkFilter | None:
        if ctx.pii_policy is None or ctx.pii_mapping is None:
            return None
        policy = ctx.pii_policy
        if not (policy.wants_rehydration or policy.output_blocked_entity_types):
            return None
        return cls(ctx, policy, ctx.pii_mapping)

    def _filter(self, index: int) -> PiiStreamFilter:
        stream_filter = self._filters.get(index)
        if stream_filter is None:
            stream_filter = self._filters[index] = PiiStreamFilter(
                self._screener, self._policy, self._mapping, language=self._language
            )
        return stream_filter

    async def process(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return [chunk]
        keep = False
        for position, choice in enumerate(choices):
            if not isinstance(choice, dict):
                keep = True
                continue
            index = choice.get("index", position)
            index = index if isinstance(index, int) else position
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            text = ""
            if isinstance(content, str) and content:
                step = await self._filter(index).feed(content)
                if step.violation is not None:
                    raise step.violation.as_error()
                text = step.text
            if choice.get("finish_reason"):
                step = await self._filter(index).flush()
                if step.violation is not None:
                    raise step.violation.as_error()
                text += step.text
            if isinstance(delta, dict):
                keep = await self._filter_tool_calls(index, delta, choice) or keep
            if isinstance(content, str) and isinstance(delta, dict):
                delta["content"] = text
            elif text and isinstance(delta, dict):
                delta["content"] = text
            elif text:
                choice["delta"] = {"content": text}
            other_delta = isinstance(delta, dict) and any(
                key != "content" and value is not None for key, value in delta.items()
            )
            if text or other_delta or choice.get("finish_reason") or content == "":
                keep = True
        return [chunk] if keep or chunk.get("usage") else []

    def _tool_filter(self, key: tuple[int, int]) -> PiiStreamFilter:
        stream_filter = self._tool_filters.get(key)
        if stream_filter is None:
            stream_filter = self._tool_filters[key] = PiiStreamFilter(
                self._screener,
                self._policy,
                self._mapping,
                language=self._language,
                escape=json_string_escape,
            )
        return stream_filter

    async def _filter_tool_calls(
        self, index: int, delta: dict[str, Any], choice: dict[str, Any]
    ) -> bool:
        """Streamed tool-call arguments are JSON text: each call gets its own filter — the
        firewall on the raw arguments, then placeholders restored with JSON-escaped values,
        a split placeholder held back like content. Held text is released on the next delta
        of the same call, or at the finish chunk."""
        calls = delta.get("tool_calls")
        changed = isinstance(calls, list)
        for position, call in enumerate(calls if isinstance(calls, list) else ()):
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
                continue
            call_index = call.get("index", position)
            key = (index, call_index if isinstance(call_index, int) else position)
            step = await self._tool_filter(key).feed(function["arguments"])
            if step.violation is not None:
                raise step.violation.as_error()
            function["arguments"] = step.text
        if choice.get("finish_reason"):
            # Every call of this choice releases what it still holds, in one delta.
            tails = []
            for (choice_index, call_index), stream_filter in self._tool_filters.items():
                if choice_index != index:
                    continue
                step = await stream_filter.flush()
                if step.violation is not None:
                    raise step.violation.as_error()
                if step.text:
                    tails.append({"index": call_index, "function": {"arguments": step.text}})
            if tails:
                existing = delta.get("tool_calls")
                delta["tool_calls"] = [*(existing if isinstance(existing, list) else ()), *tails]
                changed = True
        return changed

    async def finish(self, last_chunk: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The upstream ended without a finish chunk for some choice: release what is held."""
        out: list[dict[str, Any]] = []
        base = last_chunk or {}
        for (choice_index, call_index), tool_filter in self._tool_filters.items():
            tool_step = await tool_filter.flush()
            if tool_step.violation is not None:
                raise tool_step.violation.as_error()
            tail = tool_step.text
            if tail:
                out.append(
                    {
                        "id": base.get("id"),
                        "object": "chat.completion.chunk",
                        "created": base.get("created", int(time.time())),
                        "model": base.get("model"),
                        "choices": [
                            {
                                "index": choice_index,
                                "delta": {
                                    "tool_calls": [
                                        {"index": call_index, "function": {"arguments": tail}}
                                    ]
                                },
                                "finish_reason": None,
                            }
                        ],
                    }
                )
        for index, stream_filter in self._filters.items():
            step = await stream_filter.flush()
            if step.violation is not None:
                raise step.violation.as_error()
            if step.text:
                out.append(
                    {
                        "id": base.get("id"),
                        "object": "chat.completion.chunk",
                        "created": base.get("created", int(time.time())),
                        "model": base.get("model"),
                        "choices": [
                            {"index": index, "delta": {"content": step.text}, "finish_reason": None}
                        ],
                    }
                )
        return out
