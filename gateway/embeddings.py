"""POST /v1/embeddings: the same lifecycle as chat (received → admitted with a reservation →
dispatched → completed | failed, every outcome an event), translated to each provider that
has embeddings (OpenAI, Mistral, Cohere, Google, Bedrock Titan). `encoding_format` float and
base64 (little-endian float32, the openai SDK's default) are honoured for every provider.

The model is resolved ONLY by the router, exactly as for chat: the catalog (plus the project's
custom models), capability `embeddings`, the project's effective tier (an EU-tier project never
reaches a non-EU embedding model), failover across the named model's own endpoints, BYOK keys
and the route headers. The dispatch pieces are chat's (`Attempts`, `run_with_failover`), not
copies of them."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from fastapi import Request as HttpRequest
from fastapi.responses import Response

from domain import commands as c
from domain.catalog import Catalog
from domain.errors import DomainError, ModelCapabilityMissing
from domain.ids import key_mode
from domain.tiers import EffectiveTier
from gateway import response_cache as rc
from gateway.auth import actor_from, authenticate_key, presented_key_id
from gateway.bootstrap import Services, adapter_classes
from gateway.byok import ProjectEndpointKeys
from gateway.chat import (
    Attempts,
    Context,
    charged_usage,
    fail_request,
    hold_lease,
    key_source_for,
    look_up_cache,
    money_header,
    plan_cache,
    reject,
    release_cache,
    screen_request_pii,
    store_in_cache,
    thread_ids,
)
from gateway.errors import GatewayError, as_gateway_error, error_response
from gateway.json_bytes import dumps
from gateway.providers.base import EmbeddingResult, UpstreamError, Usage
from gateway.providers.tokens import estimate_embedding_tokens
from gateway.responses import JsonResponse
from gateway.routing.decision import RouteTarget
from gateway.routing.failover import FailoverExhausted, SkipTarget, run_with_failover
from gateway.routing.requests import (
    decide_for_request,
    effective_tier_for,
    measure_embeddings,
    route_of,
)
from gateway.settlement import settle
from gateway.test_mode import router_for
from gateway.validation import (
    check_body_strings,
    parse_json_body,
    storable_model,
    upstream_body_of,
    validate_gateway_fields,
    validate_model,
)

log = logging.getLogger("ledgergate.embeddings")

ENDPOINT_EMBEDDINGS = "embeddings"
EMBEDDING_INPUTS_MAX = 2048  # OpenAI's own per-request limit
EMBEDDING_INPUT_CHARS_MAX = 8 * 1024 * 1024
EMBEDDINGS_CAPABILITY = frozenset({"embeddings"})


def _invalid(message: str, param: str) -> GatewayError:
    return GatewayError("invalid_request", message, param=param)


def validate_embeddings_body(body: dict[str, Any]) -> None:
    validate_model(body)
    validate_gateway_fields(body)
    raw = body.get("input")
    if isinstance(raw, str):
        inputs: list[Any] = [raw]
    elif isinstance(raw, list) and raw:
        inputs = raw
    else:
        raise _invalid(
            "'input' is required: a string, an array of strings or of token arrays", "input"
        )
    if len(inputs) > EMBEDDING_INPUTS_MAX:
        raise _invalid(f"'input' has more than {EMBEDDING_INPUTS_MAX} entries", "input")
    if all(isinstance(item, int) and not isinstance(item, bool) for item in inputs):
        pass  # one pre-tokenized input
    else:
        for index, item in enumerate(inputs):
            ok = (isinstance(item, str) and item != "") or (
                isinstance(item, list)
                and item
                and all(isinstance(t, int) and not isinstance(t, bool) for t in item)
            )
            if not ok:
                raise _invalid(
                    f"input[{index}] must be a non-empty string or token array", f"input[{index}]"
                )
    if sum(len(item) for item in inputs if isinstance(item, str)) > EMBEDDING_INPUT_CHARS_MAX:
        raise _invalid(f"'input' is longer than {EMBEDDING_INPUT_CHARS_MAX} characters", "input")
    encoding_format = body.get("encoding_format")
    if encoding_format is not None and encoding_format not in ("float", "base64"):
        raise _invalid("'encoding_format' must be 'float' or 'base64'", "encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and (
        isinstance(dimensions, bool)
        or not isinstance(dimensions, int)
        or not 1 <= dimensions <= 65536
    ):
        raise _invalid("'dimensions' must be a positive integer", "dimensions")


def _provider_has_embeddings(provider: str) -> bool:
    adapter_class = adapter_classes().get(provider)
    return adapter_class is not None and adapter_class.supports_embeddings


def embeddings_not_supported(
    model: str, catalog: Catalog, effective: EffectiveTier, alternatives: list[str]
) -> GatewayError:
    """A chat-only model named on /v1/embeddings: a 400 naming the embedding models (and
    their providers) this caller's tier allows, so the fix is one edit away."""
    allowed = catalog.in_tier(effective, capabilities=EMBEDDINGS_CAPABILITY)
    providers = sorted({spec.provider for spec in allowed})
    names = alternatives or [spec.name for spec in allowed if not spec.named_only]
    message = f"the model {model[:200]!r} offers no embeddings"
    if names:
        message += f"; embedding models under the {effective.label} tier: {', '.join(names)}"
    if providers:
        message += f" (providers: {', '.join(providers)})"
    return GatewayError(
        "embeddings_not_supported",
        message,
        param="model",
        extra={"alternatives": names},
    )


async def embeddings(http: HttpRequest, services: Services) -> Response:
    ctx = Context(request_id=_new_request_id(), started=time.perf_counter(), services=services)
    ctx.received_at = services.clock.now()
    ctx.client_ip = http.client.host if http.client else None
    # Kept if authentication fails: which key failed (its id, never the key itself).
    ctx.key_id = presented_key_id(http.headers.get("authorization"))
    try:
        key, project = await authenticate_key(services.cache, http.headers.get("authorization"))
        ctx.project_id, ctx.key_id = project.id, key.id
        ctx.mode = key_mode(key.key_prefix)
        body = parse_json_body(await http.body())
        check_body_strings(body)
        ctx.model_requested = storable_model(body)
        secret = (services.settings.raw.get("LEDGERGATE_ACTOR_TOKEN_SECRET") or "").encode() or None
        ctx.actor_id = actor_from(http.headers, body, project, secret)
        validate_embeddings_body(body)
        thread_ids(ctx, http.headers, body)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        ctx.message_count = len(inputs)
        ctx.prompt_chars = sum(len(item) for item in inputs if isinstance(item, str))
        ctx.prompt_sha256 = hashlib.sha256(dumps(body["input"])).hexdigest()
        estimated_input = estimate_embedding_tokens(body["input"])
        # The same PII screening as chat (it walks `input`), before routing and admission,
        # fail closed: a refused request reserves nothing.
        screened_body = await screen_request_pii(ctx, services, project.id, body)
        if screened_body is not body:
            ctx.prompt_sha256 = hashlib.sha256(dumps(screened_body.get("input"))).hexdigest()
        # The router is the only compliance gate, as for chat: a model outside the project's
        # (or the request's tighter) tier is refused here, before anything is reserved.
        effective = effective_tier_for(project, body)
        try:
            decision = await decide_for_request(
                services.routing,
                project,
                body,
                services.cache.get,
                effective=effective,
                project_keys=ProjectEndpointKeys(services.settings.raw, project),
                capabilities=EMBEDDINGS_CAPABILITY,
            )
        except ModelCapabilityMissing as error:
            if "embeddings" not in error.missing:
                raise
            project_routing = await services.routing.project_routing.get(
                project.id, services.cache.get
            )
            raise embeddings_not_supported(
                body["model"].strip(),
                services.routing.catalog_for(project_routing),
                effective,
                error.alternatives,
            ) from None
        route = route_of(decision.chosen)
        if not _provider_has_embeddings(route.provider):
            # Only a custom model can claim embeddings for such a provider: refuse it before
            # anything is reserved rather than fail upstream.
            raise embeddings_not_supported(
                route.model, services.routing.catalog, effective, alternatives=[]
            )
        ctx.project = project
        ctx.cache_plan = plan_cache(
            ctx, http, ENDPOINT_EMBEDDINGS, body, screened_body, effective, decision
        )
        key_source = ctx.key_source = key_source_for(services, project, route.provider, ctx.mode)
        admission = await services.writer.execute_async(
            c.AdmitRequest(
                facts=ctx.facts(ENDPOINT_EMBEDDINGS),
                route=route,
                estimated_input_tokens=estimated_input,
                max_output_tokens=0,
                key_source=key_source,  # the fee follows from plan and key source
                daily_budget=key.daily_budget,
                route_decision=decision.as_event_fields(),
                pii_decision=ctx.pii_decision,
            )
        )
        ctx.admitted = True
        hold_lease(ctx)
    except Exception as error:
        return await reject(ctx, error, ENDPOINT_EMBEDDINGS)

    terms = admission.value
    if not isinstance(terms, dict):
        raise TypeError("AdmitRequest returned no terms")
    ctx.headers.update(
        {
            **decision.headers(),
            "X-LG-Estimated-Cost": money_header(terms["reserved_amount"]),
            "X-LG-Currency": terms["currency"],
            "X-LG-Key-Source": key_source,
            "X-LG-Cache": await look_up_cache(ctx, effective),
        }
    )
    try:
        return await _serve(ctx, services, decision, body, screened_body)
    finally:
        release_cache(ctx)


async def _serve(
    ctx: Context,
    services: Services,
    decision: Any,
    body: dict[str, Any],
    screened_body: dict[str, Any],
) -> Response:
    upstream_body = upstream_body_of(screened_body)
    ctx.purge_pii()  # embeddings have no answer text to restore values into
    upstream_started = time.perf_counter()
    attempts = Attempts(ctx, decision)

    async def attempt(target: RouteTarget) -> tuple[Any, RouteTarget]:
        adapter = await attempts.prepare(target)
        if not adapter.supports_embeddings:
            raise SkipTarget("embeddings_not_supported", f"{target.endpoint_key} has no embeddings")
        return await adapter.embeddings(upstream_body, target.spec.upstream_id), target

    hit = ctx.cache_plan.hit if ctx.cache_plan is not None else None
    try:
        if hit is not None and hit.body is not None:
            prompt_tokens = int((hit.usage or {}).get("prompt_tokens", 0))
            result, served = EmbeddingResult(hit.body, Usage(prompt_tokens, 0)), None
        else:
            outcome_of_attempts = await run_with_failover(
                router_for(ctx.mode, services.routing.router),
                decision,
                attempt,
                deadline_s=attempts.deadline_s(),
                measure=measure_embeddings(ctx.received_at),
                cut_in_flight=False,
            )
            result, served = outcome_of_attempts.value
    except Exception as error:
        gateway_error = as_gateway_error(error)
        if gateway_error.status >= 500 and not isinstance(
            error, UpstreamError | GatewayError | DomainError | FailoverExhausted
        ):
            log.exception("adapter failure in %s", ctx.request_id, exc_info=error)
        await fail_request(ctx, gateway_error)
        return error_response(gateway_error, ctx.request_id, ctx.headers)
    if served is not None:
        ctx.headers.update(decision.headers(served))
    upstream_ms = int((time.perf_counter() - upstream_started) * 1000) if hit is None else 0
    result.body["model"] = body["model"]
    outcome = await settle(
        services,
        c.CompleteRequest(
            request_id=ctx.request_id,
            usage=charged_usage(
                ctx,
                Usage(
                    result.usage.prompt_tokens, 0, result.usage.cached_tokens, result.usage.source
                ),
            ),
            finish_reason=None,
            completion_chars=0,
            completion_sha256=None,
            latency_ms=ctx.elapsed_ms(),
            upstream_ms=upstream_ms,
            actor_id=ctx.actor_id,
            **rc.cache_fields(ctx.cache_plan),
        ),
    )
    if served is not None:
        await store_in_cache(
            ctx,
            served,
            body=result.body,
            usage={"prompt_tokens": result.usage.prompt_tokens, "completion_tokens": 0},
        )
    headers = {
        "X-Request-Id": ctx.request_id,
        **ctx.headers,
        "X-LG-Overhead-Ms": str(max(ctx.elapsed_ms() - upstream_ms, 0)),
        "X-LG-Usage-Source": result.usage.source,
    }
    if outcome is not None:  # else journalled: charged in the background, answered now
        settled = outcome.value
        if not isinstance(settled, dict):
            raise TypeError("CompleteRequest returned no charge")
        headers["X-LG-Actual-Cost"] = money_header(settled["charged_amount"])
        headers["X-LG-Ledger-Position"] = str(outcome.position or 0)
        headers["X-LG-Usage-Source"] = str(settled.get("usage_source", result.usage.source))
    return JsonResponse(result.body, headers=headers)


def _new_request_id() -> str:
    from domain.ids import new_request_id

    return new_request_id()
