"""Several endpoints per provider from the environment: extra keys and Bedrock regions.

The provider registry reads one endpoint per provider (LEDGERGATE_<P>_BASE_URL / _API_KEY).
Routing needs more, and these variables add them without changing that contract:

- LEDGERGATE_<P>_API_KEYS="k1,k2,k3" — one endpoint per key, named default, key2, key3, …
  (load balancing across keys; each has its own breaker).
- LEDGERGATE_BEDROCK_REGIONS="eu-central-1,eu-north-1" — one Bedrock endpoint per region,
  named after the region. EU Bedrock models are region-pinned: without a Frankfurt or a
  Stockholm endpoint they are simply not routable, never sent to another region.

Endpoint names are labels safe for headers, events and logs; keys never leave the
ProviderEndpoint (which does not print them: see `describe`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from gateway.providers.base import ProviderEndpoint

KEYS_PER_PROVIDER_MAX = 16
REGIONS_MAX = 8


def _split(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def expand_endpoints(
    base: Iterable[ProviderEndpoint], env: Mapping[str, str]
) -> list[ProviderEndpoint]:
    expanded: list[ProviderEndpoint] = []
    for endpoint in base:
        prefix = f"LEDGERGATE_{endpoint.provider.upper()}_"
        keys = _split(env.get(prefix + "API_KEYS"))[:KEYS_PER_PROVIDER_MAX]
        variants = [endpoint]
        if keys:
            variants = [
                replace(endpoint, api_key=key, name="default" if index == 0 else f"key{index + 1}")
                for index, key in enumerate(keys)
            ]
        if endpoint.provider == "bedrock":
            regions = _split(env.get("LEDGERGATE_BEDROCK_REGIONS"))[:REGIONS_MAX]
            if regions:
                variants = [
                    replace(
                        variant,
                        region=region,
                        name=region if variant.name == "default" else f"{region}-{variant.name}",
                    )
                    for region in regions
                    for variant in variants
                ]
            elif endpoint.region:
                variants = [
                    replace(
                        variant,
                        name=endpoint.region
                        if variant.name == "default"
                        else f"{endpoint.region}-{variant.name}",
                    )
                    for variant in variants
                ]
        expanded.extend(variants)
    return expanded


def describe(endpoint: ProviderEndpoint) -> dict[str, str | None]:
    """An endpoint for logs and admin listings: everything but the key."""
    return {
        "provider": endpoint.provider,
        "name": endpoint.name,
        "base_url": endpoint.base_url,
        "region": endpoint.region,
        "has_api_key": "yes" if endpoint.api_key else "no",
    }
