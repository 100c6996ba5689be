"""eu_strict with a PDF: Mistral OCR first (after admission), markdown spliced into the user
message, OCR pages charged with the request. Mistral's chat API is OpenAI-shaped, so the
simulated upstream serves it; a /v1/ocr route on it speaks Mistral's OCR wire format."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastapi import Request

from domain.ids import request_aggregate_id
from domain.request import Request as RequestAggregate
from gateway.providers.base import ProviderEndpoint
from gateway.providers.openai import OpenAIAdapter
from gateway.routing.wiring import adapter_factory
from gateway.serving import BackgroundServer
from gateway.simulator import SimulatorState, create_simulator_app
from tests.support.harness import Gateway, start_gateway

PDF = b"%PDF-1.4\n1 0 obj << /Type /Pages >>\n2 0 obj << /Type /Page >>\n3 0 obj << /Type /Page >>\n%%EOF"
PDF_URL = "data:application/pdf;base64," + base64.b64encode(PDF).decode()


@pytest.fixture
def mistral_upstream() -> Iterator[tuple[BackgroundServer, SimulatorState, list[dict[str, Any]]]]:
    state = SimulatorState()
    app = create_simulator_app(state)
    ocr_calls: list[dict[str, Any]] = []

    @app.post("/v1/ocr")
    async def ocr(request: Request) -> dict[str, Any]:
        body = await request.json()
        ocr_calls.append(body)
        return {
            "pages": [
                {"index": 0, "markdown": "# Invoice 2026-117"},
                {"index": 1, "markdown": "Total due: 1,250.00 EUR"},
            ],
            "model": "mistral-ocr-2505",
            "usage_info": {"pages_processed": 2, "doc_size_bytes": len(PDF)},
        }

    with BackgroundServer(app) as server:
        yield server, state, ocr_calls


@pytest.fixture
def eu_gateway(
    sqlite_env: dict[str, str], mistral_upstream: tuple[BackgroundServer, SimulatorState, list]
) -> Iterator[Gateway]:
    server = mistral_upstream[0]
    gateway = start_gateway({**sqlite_env, "LEDGERGATE_OPENAI_BASE_URL": server.base_url + "/v1"})
    routing = gateway.services.routing
    routing.add_endpoint(ProviderEndpoint("mistral", server.base_url + "/v1", api_key="mk-test"))
    client = gateway.services.http_client
    routing.bind_adapters(
        adapter_factory({"openai": OpenAIAdapter, "mistral": OpenAIAdapter}, client), client
    )
    try:
        yield gateway
    finally:
        gateway.server.stop()


def test_a_pdf_on_eu_strict_goes_through_mistral_ocr_and_its_pages_are_charged(
    eu_gateway: Gateway, mistral_upstream: tuple[BackgroundServer, SimulatorState, list]
) -> None:
    _, state, ocr_calls = mistral_upstream
    tenant = eu_gateway.tenant(tier="eu_strict", currency="EUR", balance="5.00")
    raw = eu_gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="mistral-small",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is the total?"},
                    {"type": "file", "file": {"filename": "invoice.pdf", "file_data": PDF_URL}},
                ],
            }
        ],
    )
    completion = raw.parse()
    assert raw.headers["x-lg-provider"] == "mistral"
    assert raw.headers["x-lg-documents-pages"] == "2"
    # Mistral's OCR got the document; the chat model got markdown, not the PDF.
    assert ocr_calls[0]["document"] == {"type": "document_url", "document_url": PDF_URL}
    sent = state.requests[-1]["messages"][0]["content"]
    assert all(part["type"] == "text" for part in sent)
    assert "Total due: 1,250.00 EUR" in sent[1]["text"]
    # Charge = tokens at mistral-small's EUR price + 2 pages × 0.001 EUR, plus the 5% fee.
    tokens = (
        Decimal(completion.usage.prompt_tokens) * Decimal("0.10")
        + Decimal(completion.usage.completion_tokens) * Decimal("0.30")
    ) / Decimal(1_000_000)
    tokens = tokens.quantize(Decimal("0.000000001"))
    ocr = Decimal("0.002")
    fee = (tokens * Decimal("0.05")).quantize(Decimal("0.000000001")) + ocr * Decimal("0.05")
    assert Decimal(raw.headers["x-lg-actual-cost"]) == tokens + ocr + fee
    stored = eu_gateway.services.app.repository.event_store.get(
        request_aggregate_id(raw.headers["x-request-id"])
    )
    (documents,) = [e for e in stored if isinstance(e, RequestAggregate.DocumentsProcessed)]
    assert (documents.pages, documents.per_page, documents.cost) == (2, Decimal("0.001"), ocr)


def test_a_pdf_outside_eu_strict_is_not_sent_to_ocr(
    eu_gateway: Gateway, mistral_upstream: tuple[BackgroundServer, SimulatorState, list]
) -> None:
    _, _, ocr_calls = mistral_upstream
    tenant = eu_gateway.tenant(tier="eu_cloud", currency="EUR", balance="5.00")
    import openai

    with pytest.raises(openai.BadRequestError) as caught:  # no eu_cloud model here takes PDFs
        eu_gateway.openai(tenant).chat.completions.create(
            model="mistral-small",
            messages=[{"role": "user", "content": [
                {"type": "file", "file": {"filename": "a.pdf", "file_data": PDF_URL}}]}],
        )  # fmt: skip
    # Issue 3's contract for documents sent to a model that cannot read them.
    assert caught.value.body["code"] == "model_does_not_support_documents"
    assert isinstance(caught.value.body["alternatives"], list)
    assert ocr_calls == []
