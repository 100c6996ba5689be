"""PDFs on eu_strict: Mistral OCR first, markdown spliced into the user message.

eu_strict allows only Mistral models, and those take no PDF input, so a PDF part is turned into
text by Mistral's own OCR endpoint (an EU-owned vendor, so the document never leaves the tier).
The OCR cost is per page and becomes part of the request's charge via `ocr_charge`.

OpenAI shape of a PDF part: {"type": "file", "file": {"filename": …, "file_data": "data:application/pdf;base64,…"}}.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from domain.catalog import Catalog
from domain.errors import InvalidCommand, NoRouteAvailable
from domain.money import Money
from domain.tiers import EffectiveTier, Tier
from gateway.providers.base import ProviderEndpoint, UpstreamError

OCR_MODEL = "mistral-ocr"
PDF_DATA_PREFIX = "data:application/pdf;base64,"
PDFS_PER_REQUEST_MAX = 8
PDF_DATA_URL_CHARS_MAX = 50 * 1024 * 1024  # ~37 MB of PDF as base64


@dataclass(frozen=True, slots=True)
class OcrResult:
    pages_markdown: tuple[str, ...]
    pages_processed: int


OcrCall = Callable[[str], Awaitable[OcrResult]]


@dataclass(frozen=True, slots=True)
class SplicedDocuments:
    body: dict[str, Any]
    documents: int
    pages: int


def find_pdf_parts(body: Mapping[str, Any]) -> list[tuple[int, int, str, str]]:
    """(message index, part index, data URL, filename) of every PDF part."""
    found: list[tuple[int, int, str, str]] = []
    for message_index, message in enumerate(body.get("messages") or ()):
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, list):
            continue
        for part_index, part in enumerate(content):
            if not isinstance(part, Mapping) or part.get("type") != "file":
                continue
            file = part.get("file")
            if not isinstance(file, Mapping):
                raise InvalidCommand("a file part needs a `file` object", param="messages")
            data = file.get("file_data")
            if not isinstance(data, str) or not data:
                # file_id refers to an upload store this gateway does not have.
                raise InvalidCommand(
                    "file parts must carry file_data (file_id is not supported)", param="messages"
                )
            if not data.startswith("data:"):
                data = PDF_DATA_PREFIX + data
            if not data.startswith(PDF_DATA_PREFIX):
                raise InvalidCommand("only PDF documents are supported", param="messages")
            if len(data) > PDF_DATA_URL_CHARS_MAX:
                raise InvalidCommand("a document is too large", param="messages")
            filename = str(file.get("filename") or f"document-{len(found) + 1}.pdf")[:120]
            found.append((message_index, part_index, data, filename))
    if len(found) > PDFS_PER_REQUEST_MAX:
        raise InvalidCommand(
            f"at most {PDFS_PER_REQUEST_MAX} documents per request", param="messages"
        )
    return found


def needs_ocr(effective: EffectiveTier, body: Mapping[str, Any]) -> bool:
    return Tier.EU_STRICT in effective.required and bool(find_pdf_parts(body))


async def splice_pdfs_as_markdown(body: Mapping[str, Any], ocr: OcrCall) -> SplicedDocuments:
    """A copy of `body` with each PDF part replaced by a text part holding its markdown."""
    parts = find_pdf_parts(body)
    spliced = copy.deepcopy(dict(body))
    pages = 0
    for message_index, part_index, data_url, filename in parts:
        result = await ocr(data_url)
        pages += result.pages_processed
        markdown = "\n\n".join(result.pages_markdown)
        spliced["messages"][message_index]["content"][part_index] = {
            "type": "text",
            "text": f'<document name="{filename}" pages="{result.pages_processed}">\n'
            f"{markdown}\n</document>",
        }
    return SplicedDocuments(spliced, len(parts), pages)


def ocr_charge(pages: int, catalog: Catalog, at: datetime) -> tuple[Money, Decimal]:
    """(charge, price per page) of OCR'ing `pages` at the price in effect at `at`."""
    price = catalog.require(OCR_MODEL).price_at(at)
    if price.per_page is None:
        raise InvalidCommand("the OCR model has no per-page price", model=OCR_MODEL)
    return price.cost(0, 0, pages=pages), price.per_page


class MistralOcrClient:
    """POST {base}/v1/ocr — the only OCR this tier may use."""

    def __init__(
        self,
        endpoint: ProviderEndpoint,
        client: httpx.AsyncClient,
        *,
        upstream_id: str = "mistral-ocr-latest",
    ) -> None:
        if endpoint.provider != "mistral":
            raise ValueError("OCR for eu_strict must be Mistral's own endpoint")
        self.endpoint = endpoint
        self.client = client
        self.upstream_id = upstream_id

    async def __call__(self, data_url: str) -> OcrResult:
        url = self.endpoint.base_url.rstrip("/")
        url = url + ("/ocr" if url.endswith("/v1") else "/v1/ocr")
        headers = (
            {"Authorization": f"Bearer {self.endpoint.api_key}"} if self.endpoint.api_key else {}
        )
        payload = {
            "model": self.upstream_id,
            "document": {"type": "document_url", "document_url": data_url},
        }
        try:
            response = await self.client.post(url, json=payload, headers=headers)
        except httpx.TimeoutException:
            raise UpstreamError(
                status=504,
                code="upstream_timeout",
                message="Mistral OCR timed out",
                error_type="timeout_error",
                provider="mistral",
                retryable=True,
            ) from None
        except httpx.HTTPError:
            raise UpstreamError(
                status=502,
                code="upstream_unreachable",
                message="Mistral OCR unreachable",
                provider="mistral",
                retryable=True,
            ) from None
        if response.status_code >= 400:
            status = 502 if response.status_code >= 500 else response.status_code
            raise UpstreamError(
                status=status,
                code="ocr_failed",
                message=f"Mistral OCR answered {response.status_code}",
                provider="mistral",
                retryable=response.status_code >= 500 or response.status_code == 429,
            )
        try:
            data = response.json()
            pages = sorted(data["pages"], key=lambda page: int(page.get("index", 0)))
            markdown = tuple(str(page.get("markdown", "")) for page in pages)
            processed = int((data.get("usage_info") or {}).get("pages_processed", len(markdown)))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UpstreamError(
                status=502,
                code="upstream_malformed_response",
                message="Mistral OCR answered something that is not an OCR result",
                provider="mistral",
            ) from None
        return OcrResult(markdown, processed)


# --- planning OCR for one request (the chat route) ----------------------------------------

PAGES_PER_DOCUMENT_MIN = 1
TOKENS_PER_PAGE_ESTIMATE = 800  # markdown of a dense page; only sizes the reservation
_PAGE_OBJECT = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")


def estimate_pdf_pages(data_url: str) -> int:
    """Count page objects in the PDF (an estimate for the reservation; the charge uses the
    pages the OCR endpoint reports)."""
    try:
        raw = base64.b64decode(data_url.split(",", 1)[1], validate=False)
    except (ValueError, IndexError, binascii.Error):
        return PAGES_PER_DOCUMENT_MIN
    return max(len(_PAGE_OBJECT.findall(raw)), PAGES_PER_DOCUMENT_MIN)


@dataclass(frozen=True, slots=True)
class OcrPlan:
    documents: int
    pages_estimate: int
    per_page: Decimal
    currency: str
    price_effective_from: datetime
    endpoint: ProviderEndpoint

    @property
    def cost_estimate(self) -> Decimal:
        return Decimal(self.pages_estimate) * self.per_page

    @property
    def input_tokens_estimate(self) -> int:
        return self.pages_estimate * TOKENS_PER_PAGE_ESTIMATE


def plan_ocr(
    catalog: Catalog,
    endpoints: list[ProviderEndpoint],
    effective: EffectiveTier,
    body: Mapping[str, Any],
    at: datetime,
) -> OcrPlan | None:
    """None unless the request is eu_strict and carries PDFs; otherwise what OCR will cost
    (estimated) and which Mistral endpoint does it. No Mistral endpoint: refused, never
    sent to another OCR."""
    if Tier.EU_STRICT not in effective.required:
        return None
    parts = find_pdf_parts(body)
    if not parts:
        return None
    if not endpoints:
        raise NoRouteAvailable(
            "eu_strict documents go through Mistral OCR, and no Mistral endpoint is available",
            tier=effective.label,
            model=OCR_MODEL,
        )
    spec = catalog.require(OCR_MODEL)
    price = spec.price_at(at)
    if price.per_page is None:
        raise InvalidCommand("the OCR model has no per-page price", model=OCR_MODEL)
    return OcrPlan(
        documents=len(parts),
        pages_estimate=sum(estimate_pdf_pages(data_url) for _, _, data_url, _ in parts),
        per_page=price.per_page,
        currency=price.currency,
        price_effective_from=price.effective_from,
        endpoint=endpoints[0],
    )


def without_documents(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body with PDF parts dropped (to estimate its tokens without counting base64)."""
    trimmed = copy.deepcopy(dict(body))
    for message in trimmed.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            message["content"] = [
                part
                for part in content
                if not (isinstance(part, dict) and part.get("type") == "file")
            ]
    return trimmed
