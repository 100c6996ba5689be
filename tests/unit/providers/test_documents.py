"""Documents: the three client block shapes normalise to one; unreadable documents are
refused with the capable alternatives, never dropped."""

from __future__ import annotations

import base64

import pytest

from domain.errors import InvalidCommand, ModelDoesNotSupportDocuments
from gateway.providers.anthropic import to_anthropic
from gateway.providers.bedrock import to_converse
from gateway.providers.documents import (
    check_document_support,
    has_documents,
    normalize_documents,
)
from gateway.providers.google import to_gemini

PDF = base64.b64encode(b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n%%EOF").decode()
DATA_URL = f"data:application/pdf;base64,{PDF}"

ANTHROPIC_BLOCK = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}, "title": "report.pdf"}
INPUT_FILE_BLOCK = {"type": "input_file", "filename": "report.pdf", "file_data": DATA_URL}
FILE_BLOCK = {"type": "file", "file": {"filename": "report.pdf", "file_data": DATA_URL}}


def body_with(block: dict) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "Summarise"}, block]}]}


@pytest.mark.parametrize("block", [ANTHROPIC_BLOCK, INPUT_FILE_BLOCK, FILE_BLOCK], ids=["anthropic", "input_file", "file"])
def test_each_client_document_shape_normalises_to_the_openai_file_block(block):
    normalized = normalize_documents(body_with(block))
    part = normalized["messages"][0]["content"][1]
    assert part == {"type": "file", "file": {"filename": "report.pdf", "file_data": DATA_URL}}


def test_normalising_does_not_mutate_the_original_body():
    original = body_with(ANTHROPIC_BLOCK)
    normalize_documents(original)
    assert original["messages"][0]["content"][1] is ANTHROPIC_BLOCK


def test_a_normalised_document_is_forwarded_as_an_anthropic_document_block():
    native = to_anthropic(normalize_documents(body_with(INPUT_FILE_BLOCK)), "claude-sonnet-4-5")
    document = native["messages"][0]["content"][1]
    assert document["type"] == "document"
    assert document["source"] == {"type": "base64", "media_type": "application/pdf", "data": PDF}


def test_a_normalised_document_is_forwarded_as_a_bedrock_converse_document_block():
    native = to_converse(normalize_documents(body_with(ANTHROPIC_BLOCK)))
    document = native["messages"][0]["content"][1]["document"]
    assert document["format"] == "pdf"
    assert document["name"] == "report"
    assert document["source"] == {"bytes": PDF}


def test_a_normalised_document_is_forwarded_to_gemini_as_inline_pdf_data():
    native = to_gemini(normalize_documents(body_with(FILE_BLOCK)))
    assert native["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "application/pdf", "data": PDF}}


def test_a_document_for_a_model_that_cannot_read_one_is_refused_with_the_alternatives():
    body = normalize_documents(body_with(ANTHROPIC_BLOCK))
    candidates = [("mistral", "mistral-small-latest"), ("anthropic", "claude-sonnet-4-5"), ("bedrock", "anthropic.claude-3-haiku-20240307-v1:0")]
    with pytest.raises(ModelDoesNotSupportDocuments) as caught:
        check_document_support(body, "mistral", "mistral-small-latest", candidates=candidates)
    assert caught.value.code == "model_does_not_support_documents"
    assert caught.value.details["alternatives"] == ["anthropic.claude-3-haiku-20240307-v1:0", "claude-sonnet-4-5"]
    assert "claude-sonnet-4-5" in caught.value.message


def test_a_document_for_a_capable_model_passes_the_check():
    body = normalize_documents(body_with(FILE_BLOCK))
    check_document_support(body, "anthropic", "claude-sonnet-4-5")
    assert has_documents(body)


def test_a_body_without_documents_passes_for_any_model():
    check_document_support({"messages": [{"role": "user", "content": "hi"}]}, "cohere", "command-a-03-2025")


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}, "does not fetch"),
        ({"type": "input_file", "file_id": "file-abc"}, "file ids"),
        ({"type": "file", "file": {"file_data": "data:application/pdf;base64,@@@not-base64@@@"}}, "not valid base64"),
        ({"type": "file", "file": {"file_data": "data:application/zip;base64,AAAA"}}, "unsupported document media type"),
    ],
)
def test_documents_the_gateway_cannot_forward_are_clear_client_errors(block, message):
    with pytest.raises(InvalidCommand, match=message):
        normalize_documents(body_with(block))
