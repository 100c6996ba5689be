"""POST /v1/embeddings: the same lifecycle as chat (received → admitted | rejected →
dispatched → completed | failed, every outcome an event), translated to each provider that
has embeddings (OpenAI, Mistral, Cohere, Google, Bedrock Titan). `encoding_format` float and
base64 (little-endian float32, the openai SDK's default) are honoured for every provider.

The model is resolved ONLY by the router, exactly as for chat: the catalog (plus the project's
custom models), capability `embeddings`, the project's effective tier (an EU-tier project never
reaches a non-EU embedding model), failover across the named model's own endpoints, BYOK keys
and the route headers. Admission, dispatch, settlement and the cache steps are the
lifecycle's shared ones (admission.py, dispatch.py, settlement.py, caching.py)."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import Request as HttpRequest
from fastapi.responses import Response

from domain.catalog import Catalog
from domain.errors import ModelCapabilityMissing
from domain.tiers import EffectiveTier
from gateway.bootstrap import Services, adapter_classes
from gateway.cost_signals import cost_headers
from gateway.errors import GatewayError
from gateway.json_bytes import canonical_sha256
from gateway.lifecycle import admission, caching, settlement
from gateway.lifecycle.dispatch import dispatch
from gateway.lifecycle.request import ENDPOINT_EMBEDDINGS, Admission, Intake
from gateway.providers.base import EmbeddingResult, ProviderAdapter, Usage
from gateway.providers.tokens import estimate_embedding_tokens
from gateway.responses import JsonResponse
from gateway.routing.decision import RouteTarget
from gateway.routing.failover import SkipTarget
from gateway.routing.requests import (
    effective_tier_for,
    measure_embeddings,
    route_of,
)
from gateway.validation import upstream_body_of, validate_gateway_fields, validate_model

log = logging.getLogger("ledgergate.embeddings")

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
    intake = admission.receive(http, services)
    try:
        admitted, body, screened_body = await _admit(intake, http, services)
    except Exception as error:
        return await admission.reject(services, intake, error, ENDPOINT_EMBEDDINGS)
    headers = dict(admitted.headers)
    headers["X-LG-Cache"] = await caching.look_up(services, admitted, headers)
    try:
        return await _answer(services, admitted, headers, body, screened_body)
    finally:
        caching.release(services, admitted)


async def _admit(
    intake: Intake, http: HttpRequest, services: Services
) -> tuple[Admission, dict[str, Any], dict[str, Any]]:
    key, project = await admission.authenticate(intake, http, services)
    body = await admission.read_body(intake, http)
    admission.identify_actor(intake, http, body, project, services)
    validate_embeddings_body(body)
    admission.thread_ids(intake, http.headers, body)
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    intake.message_count = len(inputs)
    intake.prompt_chars = sum(len(item) for item in inputs if isinstance(item, str))
    intake.prompt_sha256 = canonical_sha256(body["input"])
    estimated_input = estimate_embedding_tokens(body["input"])
    # The same PII screening as chat (it walks `input`), before routing and admission,
    # fail closed: a refused request reserves nothing.
    screened_body = await admission.screen_request_pii(
        intake, services, project.id, body, prompt_of="input"
    )
    # The router is the only compliance gate, as for chat: a model outside the project's
    # (or the request's tighter) tier is refused here, before anything is reserved.
    effective = effective_tier_for(project, body)

    async def refuse_embeddings(error: ModelCapabilityMissing) -> Exception:
        return embeddings_not_supported(
            body["model"].strip(),
            await services.routing.project_catalog(project.id, services.cache.get),
            effective,
            error.alternatives,
        )

    decision = await admission.route(
        services,
        intake,
        key,
        project,
        body,
        effective,
        capabilities=EMBEDDINGS_CAPABILITY,
        estimated_input_tokens=estimated_input,
        max_output_tokens=0,
        refusals={"embeddings": refuse_embeddings},
    )
    route = route_of(decision.chosen)
    if not _provider_has_embeddings(route.provider):
        # Only a custom model can claim embeddings for such a provider: refuse it before
        # anything is reserved rather than fail upstream.
        raise embeddings_not_supported(
            route.model, services.routing.catalog, effective, alternatives=[]
        )
    cache_plan = caching.plan(
        intake, http.headers, ENDPOINT_EMBEDDINGS, body, screened_body, effective, decision
    )
    admitted = await admission.admit(
        intake,
        services,
        endpoint=ENDPOINT_EMBEDDINGS,
        key=key,
        project=project,
        effective=effective,
        decision=decision,
        key_source=admission.key_source_for(services, project, route.provider, intake.mode),
        estimated_input_tokens=estimated_input,
        max_output_tokens=0,
        cache_plan=cache_plan,
    )
    return admitted, body, screened_body


async def _answer(
    services: Services,
    admitted: Admission,
    headers: dict[str, str],
    body: dict[str, Any],
    screened_body: dict[str, Any],
) -> Response:
    upstream_body = upstream_body_of(screened_body)
    admitted.purge_pii()  # embeddings have no answer text to restore values into
    upstream_started = time.perf_counter()

    async def call(adapter: ProviderAdapter, target: RouteTarget) -> tuple[Any, RouteTarget]:
        if not adapter.supports_embeddings:
            raise SkipTarget("embeddings_not_supported", f"{target.endpoint_key} has no embeddings")
        return await adapter.embeddings(upstream_body, target.spec.upstream_id), target

    hit = caching.hit_of(admitted)
    served: RouteTarget | None
    try:
        if hit is not None and hit.body is not None:
            prompt_tokens = int((hit.usage or {}).get("prompt_tokens", 0))
            result, served = EmbeddingResult(hit.body, Usage(prompt_tokens, 0)), None
        else:
            result, served = await dispatch(
                services, admitted, call, measure=measure_embeddings(admitted.received_at)
            )
    except Exception as error:
        return await settlement.answer_failure(services, admitted, error, headers)
    if served is not None:
        headers.update(admitted.decision.headers(served))
    upstream_ms = int((time.perf_counter() - upstream_started) * 1000) if hit is None else 0
    result.body["model"] = body["model"]
    usage = result.usage
    outcome = await settlement.complete(
        services,
        admitted,
        usage=Usage(usage.prompt_tokens, 0, usage.cached_tokens, usage.source),
        upstream_ms=upstream_ms,
    )
    if served is not None:
        await caching.store(
            services,
            admitted,
            served,
            body=result.body,
            usage={"prompt_tokens": usage.prompt_tokens, "completion_tokens": 0},
        )
    reply_headers = {
        "X-Request-Id": admitted.request_id,
        **headers,
        "X-LG-Overhead-Ms": str(max(admitted.elapsed_ms() - upstream_ms, 0)),
        "X-LG-Usage-Source": usage.source,
    }
    if outcome is not None:  # else journalled: charged in the background, answered now
        settled = outcome.value
        if not isinstance(settled, dict):
            raise TypeError("CompleteRequest returned no charge")
        reply_headers["X-LG-Actual-Cost"] = admission.money_header(settled["charged_amount"])
        reply_headers["X-LG-Ledger-Position"] = str(outcome.position or 0)
        reply_headers["X-LG-Usage-Source"] = str(settled.get("usage_source", usage.source))
        reply_headers.update(
            cost_headers(admitted.reserved_amount, settled["charged_amount"], admitted.elapsed_ms())
        )
    return JsonResponse(result.body, headers=reply_headers)
