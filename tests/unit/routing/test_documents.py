from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from domain.catalog import Catalog
from domain.errors import InvalidCommand
from domain.tiers import effective_tier
from gateway.providers.base import ProviderEndpoint, UpstreamError
from gateway.routing.documents import (
    MistralOcrClient,
    OcrResult,
    needs_ocr,
    ocr_charge,
    splice_pdfs_as_markdown,
)
from gateway.routing.selector import required_capabilities

PDF = "data:application/pdf;base64,JVBERi0xLjQK"


def body_with_pdf() -> dict:
    return {
        "model": "eu-strict",
        "messages": [
            {"role": "system", "content": "Answer from the document."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is the total?"},
                {"type": "file", "file": {"filename": "invoice.pdf", "file_data": PDF}},
            ]},
        ],
    }  # fmt: skip


async def fake_ocr(data_url: str) -> OcrResult:
    assert data_url == PDF
    return OcrResult(("# Invoice", "Total: 42 EUR"), 2)


def test_only_eu_strict_requests_with_a_pdf_need_ocr() -> None:
    assert needs_ocr(effective_tier("eu_strict"), body_with_pdf())
    assert not needs_ocr(effective_tier("eu_cloud"), body_with_pdf())
    assert not needs_ocr(
        effective_tier("eu_strict"), {"messages": [{"role": "user", "content": "hi"}]}
    )


async def test_the_markdown_replaces_the_pdf_part_in_the_user_message() -> None:
    original = body_with_pdf()
    spliced = await splice_pdfs_as_markdown(original, fake_ocr)
    part = spliced.body["messages"][1]["content"][1]
    assert part["type"] == "text"
    assert (
        "# Invoice" in part["text"]
        and "Total: 42 EUR" in part["text"]
        and 'pages="2"' in part["text"]
    )
    assert (spliced.documents, spliced.pages) == (1, 2)
    assert original["messages"][1]["content"][1]["type"] == "file"  # the input is not mutated
    # After splicing, an eu_strict Mistral model can take the request.
    assert required_capabilities(spliced.body) == {"chat"}


def test_the_ocr_charge_is_per_page_at_the_price_in_effect(catalog: Catalog) -> None:
    charge, per_page = ocr_charge(250, catalog, datetime(2026, 11, 21, tzinfo=UTC))
    assert per_page == Decimal("0.001")
    assert (charge.amount, charge.currency) == (Decimal("0.25"), "EUR")


@pytest.mark.parametrize(
    "file",
    [{"file_id": "file-123"}, {"file_data": "data:image/png;base64,AA"}],
)
def test_unsupported_document_parts_are_client_errors(file: dict) -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "file", "file": file}]}]}
    with pytest.raises(InvalidCommand):
        needs_ocr(effective_tier("eu_strict"), body)


async def test_the_mistral_ocr_client_speaks_the_ocr_wire_format() -> None:
    seen: dict = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["url"] = str(request.url)
        seen["auth"] = request.headers.get("authorization")
        seen["body"] = json.loads(request.content)
        return httpx.Response(200, json={
            "pages": [{"index": 1, "markdown": "page two"}, {"index": 0, "markdown": "page one"}],
            "model": "mistral-ocr-latest", "usage_info": {"pages_processed": 2, "doc_size_bytes": 10},
        })  # fmt: skip

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        ocr = MistralOcrClient(
            ProviderEndpoint("mistral", "https://api.mistral.test", api_key="k"), client
        )
        result = await ocr(PDF)
    assert seen["url"] == "https://api.mistral.test/v1/ocr"
    assert seen["auth"] == "Bearer k"
    assert seen["body"] == {
        "model": "mistral-ocr-latest",
        "document": {"type": "document_url", "document_url": PDF},
    }
    assert result == OcrResult(("page one", "page two"), 2)


async def test_an_ocr_outage_is_a_retryable_upstream_error() -> None:
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(503))
    ) as client:
        ocr = MistralOcrClient(ProviderEndpoint("mistral", "https://api.mistral.test"), client)
        with pytest.raises(UpstreamError) as caught:
            await ocr(PDF)
    assert caught.value.status == 502 and caught.value.retryable


def test_ocr_for_eu_strict_refuses_a_non_mistral_endpoint() -> None:
    with pytest.raises(ValueError):
        MistralOcrClient(ProviderEndpoint("openai", "https://o.test"), httpx.AsyncClient())
