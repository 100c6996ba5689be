"""Which provider serves a model name. The catalog-backed router (issue 4) refines this;
the rule here is the fallback: a model is served by the provider whose naming it follows."""

from __future__ import annotations

from domain.commands import Route

PROVIDER_BY_PREFIX: tuple[tuple[str, str], ...] = (
    # Bedrock model ids are "<vendor>.<model>" (optionally behind a cross-region inference
    # profile "us." / "eu." / "apac." / "global."); they must match before "mistral"/"command".
    ("anthropic.", "bedrock"),
    ("amazon.", "bedrock"),
    ("meta.", "bedrock"),
    ("mistral.", "bedrock"),
    ("cohere.", "bedrock"),
    ("ai21.", "bedrock"),
    ("deepseek.", "bedrock"),
    ("us.", "bedrock"),
    ("eu.", "bedrock"),
    ("apac.", "bedrock"),
    ("global.", "bedrock"),
    ("claude", "anthropic"),
    ("mistral", "mistral"),
    ("magistral", "mistral"),
    ("codestral", "mistral"),
    ("gemini", "google"),
    ("grok", "xai"),
    ("kimi", "moonshot"),
    ("moonshot", "moonshot"),
    ("command", "cohere"),
)


def provider_for(model: str) -> str:
    lowered = model.lower()
    for prefix, provider in PROVIDER_BY_PREFIX:
        if lowered.startswith(prefix):
            return provider
    return "openai"


def resolve_route(model: str) -> Route:
    return Route(model=model, provider=provider_for(model), upstream_model=model)
