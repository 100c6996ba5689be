"""POST /v1/chat/completions, top to bottom:

    received → admitted | rejected → (documents read by OCR) → dispatched →
    streaming (stream.py) → completed | failed

Every outcome, a rejection included, is an event before the client hears of it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request as HttpRequest
from fastapi.responses import Response, StreamingResponse

from domain import commands as c
from domain.errors import (
    DomainError,
    ModelCapabilityMissing,
    ModelDoesNotSupportDocuments,
    PiiScreeningUnavailable,
)
from gateway.bootstrap import Services
from gateway.cost_signals import cost_headers
from gateway.json_bytes import canonical_sha256
from gateway.lifecycle import admission, caching, settlement
from gateway.lifecycle.dispatch import dispatch
from gateway.lifecycle.request import ENDPOINT_CHAT, Admission, Intake
from gateway.lifecycle.stream import stream_chat
from gateway.pii.rehydrate import rehydrate_chat_completion
from gateway.pii.service import pii_service
from gateway.pii.stream import answer_violation
from gateway.providers.base import ChatResult, ProviderAdapter, Usage
from gateway.providers.documents import (
    check_document_support,
    document_capable_suggestions,
    normalize_documents,
)
from gateway.responses import JsonResponse
from gateway.routing.decision import RouteTarget
from gateway.routing.documents import (
    OCR_MODEL,
    MistralOcrClient,
    OcrPlan,
    plan_ocr,
    splice_pdfs_as_markdown,
    without_documents,
)
from gateway.routing.requests import (
    effective_tier_for,
    measure_chat,
    ocr_endpoints,
    route_of,
)
from gateway.routing.selector import required_capabilities
from gateway.test_mode import refuse_in_test_mode
from gateway.tokens import estimate_prompt_tokens, prompt_chars
from gateway.validation import output_tokens_allowance, upstream_body_of, validate_chat_body

log = logging.getLogger("ledgergate.chat")


@dataclass(frozen=True)
class ChatAdmission:
    """An admitted chat request with what its serving needs of the body."""

    admitted: Admission
    body: dict[str, Any]  # the client's body (documents normalized)
    screened_body: dict[str, Any]  # what a provider may see (PII screened)
    estimated_input: int
    ocr: OcrPlan | None  # eu_strict PDFs: read by Mistral OCR before the model


async def chat_completions(http: HttpRequest, services: Services) -> Response:
    intake = admission.receive(http, services)
    try:
        request = await _admit(intake, http, services)
    except Exception as error:
        return await admission.reject(services, intake, error, ENDPOINT_CHAT)
    admitted = request.admitted
    headers = dict(admitted.headers)
    headers["X-LG-Cache"] = await caching.look_up(services, admitted, headers)
    screened_body = request.screened_body
    if request.ocr is not None:
        read = await _read_documents(services, admitted, headers, request.ocr, screened_body)
        if isinstance(read, Response):  # OCR failed: the request is failed and answered
            return read
        screened_body = read
    upstream_body = upstream_body_of(screened_body)
    try:
        if admitted.facts.stream:
            response = await stream_chat(
                services, admitted, headers, upstream_body, request.body, request.estimated_input
            )
            if not isinstance(response, StreamingResponse):
                caching.release(services, admitted)  # else the stream's end releases it
            return response
        try:
            return await _answer(services, admitted, headers, upstream_body, request.body)
        finally:
            caching.release(services, admitted)
    except BaseException:
        caching.release(services, admitted)
        settlement.release_lease(services, admitted.request_id)
        raise


async def _admit(intake: Intake, http: HttpRequest, services: Services) -> ChatAdmission:
    key, project = await admission.authenticate(intake, http, services)
    admission.use_idempotency_key(intake, project.id, http.headers.get("idempotency-key"))
    body = await admission.read_body(intake, http)
    intake.stream = body.get("stream") is True
    if isinstance(body.get("messages"), list):
        intake.message_count = len(body["messages"])
    admission.identify_actor(intake, http, body, project, services)
    validate_chat_body(body)
    admission.thread_ids(intake, http.headers, body)
    intake.prompt_chars = prompt_chars(body)
    intake.prompt_sha256 = canonical_sha256(body.get("messages"))
    # Documents in any of the three client shapes become one canonical block first, so
    # the router sees what the request needs.
    body = normalize_documents(body)
    screened_body = await admission.screen_request_pii(intake, services, project.id, body)
    # The router is the only compliance gate: a model outside the project's (or the
    # request's tighter) tier is refused here, before anything is reserved.
    effective = effective_tier_for(project, body)
    ocr = plan_ocr(
        services.routing.catalog,
        ocr_endpoints(services.routing),
        effective,
        body,
        intake.received_at,
    )
    if ocr is not None:  # OCR would call Mistral for real
        refuse_in_test_mode(intake.mode, "document OCR (PDFs on eu_strict)")
    capabilities = required_capabilities(body) - {"documents"} if ocr else None
    if ocr is None:
        estimated_input = estimate_prompt_tokens(body)
    else:
        estimated_input = (
            estimate_prompt_tokens(without_documents(body)) + ocr.input_tokens_estimate
        )
    max_output = output_tokens_allowance(body, services.settings.default_max_output_tokens)

    async def refuse_documents(error: ModelCapabilityMissing) -> Exception:
        return ModelDoesNotSupportDocuments(
            f"model {body['model'].strip()[:200]!r} cannot read documents (PDF); "
            "choose a document-capable model",
            model=body["model"].strip()[:200],
            alternatives=error.alternatives,
        )

    # The route: the compliance gate, then (below the key's downgrade threshold) a
    # router-chosen model becomes the cheapest one that fits.
    decision = await admission.route(
        services,
        intake,
        key,
        project,
        body,
        effective,
        # eu_strict PDFs become text through Mistral OCR first: no model needs PDF input.
        capabilities=capabilities,
        estimated_input_tokens=estimated_input,
        max_output_tokens=max_output,
        refusals={"documents": refuse_documents},
    )
    route = route_of(decision.chosen)
    # An OCR request is never cached (its documents go to Mistral first).
    cache_plan = (
        None
        if ocr is not None
        else caching.plan(
            intake, http.headers, ENDPOINT_CHAT, body, screened_body, effective, decision
        )
    )
    # BYOK: the project's own key for the chosen provider, when it has one (fee 0%). The
    # admission prices the fee by this key source; failover keeps to targets of the same.
    key_source = admission.key_source_for(services, project, route.provider, intake.mode)
    if ocr is None:
        # The adapter must be able to forward the document natively: never dropped.
        check_document_support(
            body,
            route.provider,
            route.upstream_model,
            requested_model=route.model,
            candidates=document_capable_suggestions(services.adapters),
        )
    admitted = await admission.admit(
        intake,
        services,
        endpoint=ENDPOINT_CHAT,
        key=key,
        project=project,
        effective=effective,
        decision=decision,
        key_source=key_source,
        estimated_input_tokens=estimated_input,
        max_output_tokens=max_output,
        cache_plan=cache_plan,
        ocr_estimate=None if ocr is None else {"cost": ocr.cost_estimate, "currency": ocr.currency},
    )
    return ChatAdmission(admitted, body, screened_body, estimated_input, ocr)


async def _read_documents(
    services: Any,
    admitted: Admission,
    headers: dict[str, str],
    ocr: OcrPlan,
    screened_body: dict[str, Any],
) -> dict[str, Any] | Response:
    """After admission (durable) and before the model: the documents go to Mistral OCR;
    the body the model sees carries their text. A failure fails the request."""
    try:
        spliced = await splice_pdfs_as_markdown(
            screened_body, MistralOcrClient(ocr.endpoint, services.routing.ocr_client())
        )
        await services.writer.execute_async(
            c.RecordDocuments(
                request_id=admitted.request_id,
                documents=spliced.documents,
                pages=spliced.pages,
                ocr_model=OCR_MODEL,
                per_page=ocr.per_page,
                currency=ocr.currency,
                price_effective_from=ocr.price_effective_from,
            )
        )
    except Exception as error:
        return await settlement.answer_failure(services, admitted, error, headers)
    headers["X-LG-Documents-Pages"] = str(spliced.pages)
    return spliced.body


async def _answer(
    services: Any,
    admitted: Admission,
    headers: dict[str, str],
    upstream_body: dict[str, Any],
    client_body: dict[str, Any],
) -> Response:
    """A whole (non-streamed) answer: from the cache, or a provider with failover; output
    screening and rehydration; then the charge of its real usage."""
    upstream_started = time.perf_counter()

    async def call(adapter: ProviderAdapter, target: RouteTarget) -> tuple[Any, RouteTarget]:
        return await adapter.chat(upstream_body, target.spec.upstream_id), target

    hit = caching.hit_of(admitted)
    served: RouteTarget | None
    try:
        if hit is not None and hit.body is not None:
            result, served = ChatResult(orjson.loads(orjson.dumps(hit.body)), Usage(0, 0)), None
        else:
            result, served = await dispatch(
                services, admitted, call, measure=measure_chat(client_body, admitted.received_at)
            )
    except Exception as error:
        return await settlement.answer_failure(services, admitted, error, headers)
    if served is not None:
        headers.update(admitted.decision.headers(served))
    upstream_ms = int((time.perf_counter() - upstream_started) * 1000) if hit is None else 0
    # What the provider said (placeholders, before rehydration): what the cache may keep.
    cacheable = None if served is None else orjson.dumps(result.body)
    text = settlement.answer_text(result.body, "message")
    refused = await _screen_answer(services, admitted, result.body, text)
    if refused is not None:
        return await settlement.answer_failure(services, admitted, refused, headers)
    choices = result.body.get("choices") or []
    finish_reason = None
    if choices and isinstance(choices[0], dict):
        finish_reason = choices[0].get("finish_reason")
    outcome = await settlement.complete(
        services,
        admitted,
        usage=result.usage,
        finish_reason=finish_reason,
        text=text,
        upstream_ms=upstream_ms,
    )
    if cacheable is not None and served is not None:
        await caching.store(services, admitted, served, body=orjson.loads(cacheable))
    reply_headers = {
        "X-Request-Id": admitted.request_id,
        **headers,
        "X-LG-Overhead-Ms": str(max(admitted.elapsed_ms() - upstream_ms, 0)),
    }
    if outcome is not None:  # else journalled: charged in the background, answered now
        charged = outcome.value["charged_amount"]  # type: ignore[index]
        reply_headers["X-LG-Actual-Cost"] = admission.money_header(charged)
        reply_headers["X-LG-Ledger-Position"] = str(outcome.position or 0)
        # Estimated ÷ actual and the whole latency (gateway/cost_signals.py).
        reply_headers.update(cost_headers(admitted.reserved_amount, charged, admitted.elapsed_ms()))
    return JsonResponse(result.body, headers=reply_headers)


async def _screen_answer(
    services: Any, admitted: Admission, body: dict[str, Any], text: str
) -> DomainError | None:
    """A screened request's answer: refused when it holds a blocked type (or when output
    screening cannot run), else its placeholders restored. The mapping is purged either way.
    Returns the error to fail with, or None."""
    pii = admitted.pii
    if pii is None:
        return None
    screener = pii_service(services).screener
    try:
        violation = await screener.run_in_worker(
            answer_violation, screener, pii.policy, pii.language, text
        )
    except Exception as error:  # output screening that cannot run withholds the answer
        log.error("output screening failed in %s: %s", admitted.request_id, type(error).__name__)
        violation = PiiScreeningUnavailable("output screening failed")
    if violation is not None:
        pii.purge()
        return violation
    if pii.policy.wants_rehydration and pii.mapping is not None:
        rehydrate_chat_completion(body, pii.mapping)
    pii.purge()
    return None
