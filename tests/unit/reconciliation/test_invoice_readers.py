from datetime import date
from decimal import Decimal

import pytest

from reconciliation.errors import InvoiceFormatError
from reconciliation.invoices import (
    LAYOUT_ANTHROPIC,
    LAYOUT_GENERIC,
    LAYOUT_OPENAI,
    read_invoice,
)

GENERIC_HEADER = "date,provider,model,input_tokens,output_tokens,cost,currency\n"


def test_a_generic_per_day_invoice_is_read_with_exact_decimal_costs():
    invoice = read_invoice(
        (
            GENERIC_HEADER + "2026-09-01,openai,gpt-4o,1000,200,1.234567891,usd\n"
            "2026-09-02,openai,gpt-4o,,,0.10,USD\n"
        ).encode()
    )
    assert invoice.layout == LAYOUT_GENERIC
    assert invoice.per_day is True
    assert invoice.currency == "USD"
    rows = invoice.frame.to_dicts()
    assert rows[0]["date"] == date(2026, 9, 1)
    assert rows[0]["cost"] == Decimal("1.234567891")
    assert rows[0]["input_tokens"] == 1000
    assert rows[1]["input_tokens"] is None
    assert len(invoice.sha256) == 64


def test_a_generic_invoice_without_a_date_column_is_per_month():
    invoice = read_invoice(b"model,cost,currency\ngpt-4o,12.50,EUR\ngpt-4o-mini,0.75,EUR\n")
    assert invoice.per_day is False
    assert invoice.frame["date"].null_count() == 2


def test_empty_date_cells_also_make_a_per_month_invoice():
    invoice = read_invoice((GENERIC_HEADER + ",openai,gpt-4o,,,3,USD\n").encode())
    assert invoice.per_day is False


def test_a_missing_required_column_is_named_in_the_error():
    with pytest.raises(InvoiceFormatError, match="missing required column.*cost") as caught:
        read_invoice(b"date,model,amount,currency\n2026-09-01,gpt-4o,1,USD\n")
    assert caught.value.details["missing_columns"] == ("cost",)
    assert caught.value.code == "invalid_invoice"


@pytest.mark.parametrize("bad", ["$1.50", "1,50", "1e-3", "", "one"])
def test_a_malformed_cost_names_the_line_and_the_column(bad):
    with pytest.raises(InvoiceFormatError, match=r"line 2: cost must be a plain decimal"):
        read_invoice(f'model,cost,currency\ngpt-4o,"{bad}",USD\n'.encode())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            b"model,cost,currency\ngpt-4o,1,USD\ngpt-4o,1\n",
            "line 3: expected 3 fields, found 2",
            id="a row with the wrong number of fields names the line",
        ),
        pytest.param(
            (GENERIC_HEADER + "2026-09-01,openai,a,,,1,USD\n,openai,b,,,1,USD\n").encode(),
            "entirely per-day or entirely per-month",
            id="dated and undated lines mixed",
        ),
        pytest.param(
            b"model,cost,currency\na,1,USD\nb,1,EUR\n", "mixes currencies", id="currencies mixed"
        ),
        pytest.param(
            (GENERIC_HEADER + "01/09/2026,openai,a,,,1,USD\n").encode(),
            "line 2: date must be a date YYYY-MM-DD",
            id="a bad date is reported with its line",
        ),
        pytest.param(b"", "empty", id="an empty file"),
        pytest.param(GENERIC_HEADER.encode(), "no cost lines", id="a header-only file"),
    ],
)
def test_a_malformed_invoice_is_refused_saying_what_is_wrong(content: bytes, message: str):
    with pytest.raises(InvoiceFormatError, match=message):
        read_invoice(content)


def test_a_byte_order_mark_from_a_spreadsheet_does_not_break_the_header():
    invoice = read_invoice(b"\xef\xbb\xbfmodel,cost,currency\ngpt-4o,1,USD\n")
    assert invoice.frame["model"].to_list() == ["gpt-4o"]


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(InvoiceFormatError, match="cannot read invoice file"):
        read_invoice(tmp_path / "nope.csv")


OPENAI_HEADER = (
    "start_time,end_time,start_time_iso,end_time_iso,amount_value,amount_currency,"
    "line_item,project_id,organization_id,organization_name\n"
)


def test_the_openai_cost_export_is_detected_and_line_items_map_to_models():
    invoice = read_invoice(
        (
            OPENAI_HEADER
            + "1788220800,1788307200,2026-09-01T00:00:00+00:00,2026-09-02T00:00:00+00:00,"
            '0.8958740000000000,usd,"gpt-4o-2024-08-06, input",proj_1,org-1,Acme\n'
            + "1788220800,1788307200,2026-09-01T00:00:00+00:00,2026-09-02T00:00:00+00:00,"
            '0.25,usd,"gpt-4o-2024-08-06, output",proj_1,org-1,Acme\n'
            # A day without spend: the dashboard leaves the amount empty.
             + "1788307200,1788393600,2026-09-02T00:00:00+00:00,2026-09-03T00:00:00+00:00,,,,,,\n"
        ).encode()
    )
    assert invoice.layout == LAYOUT_OPENAI
    assert invoice.per_day is True
    assert invoice.currency == "USD"
    assert invoice.frame["model"].to_list() == ["gpt-4o-2024-08-06", "gpt-4o-2024-08-06"]
    assert invoice.frame["cost"].sum() == Decimal("1.145874")


def test_an_openai_export_not_grouped_by_line_item_is_refused():
    with pytest.raises(InvoiceFormatError, match="line_item is empty"):
        read_invoice(
            (
                OPENAI_HEADER
                + "1788220800,1788307200,2026-09-01T00:00:00+00:00,2026-09-02T00:00:00+00:00,"
                "0.5,usd,,,org-1,Acme\n"
            ).encode()
        )


def test_an_openai_bucket_of_one_whole_month_gives_a_per_month_invoice():
    invoice = read_invoice(
        (
            OPENAI_HEADER
            + ',,2026-09-01T00:00:00Z,2026-10-01T00:00:00Z,10.5,usd,"o3-mini, input",,,\n'
        ).encode()
    )
    assert invoice.per_day is False


def test_an_openai_bucket_that_is_neither_a_day_nor_a_month_is_refused():
    with pytest.raises(InvoiceFormatError, match="export with 1-day buckets"):
        read_invoice(
            (
                OPENAI_HEADER
                + ',,2026-09-01T00:00:00Z,2026-09-08T00:00:00Z,10.5,usd,"o3-mini, input",,,\n'
            ).encode()
        )


ANTHROPIC_HEADER = (
    "usage_date_utc,model,workspace,api_key,usage_type,context_window,token_type,cost_usd,"
    "list_price_usd,cost_type,inference_geo,speed\n"
)


def test_the_anthropic_console_cost_export_is_detected_and_read_in_usd():
    invoice = read_invoice(
        (
            ANTHROPIC_HEADER
            + "2026-09-01,Claude Sonnet 4.5,Default,key_a,message,0-200k,input_no_cache,1.20,1.20,token,--,standard\n"
            + "2026-09-01,Claude Sonnet 4.5,Default,key_a,message,0-200k,output,3.30,3.30,token,--,standard\n"
            + "2026-09-01,--,Default,key_a,web_search,--,--,0.01,0.01,web_search,--,--\n"
        ).encode()
    )
    assert invoice.layout == LAYOUT_ANTHROPIC
    assert invoice.currency == "USD"
    assert invoice.per_day is True
    assert invoice.frame["model"].to_list() == [
        "Claude Sonnet 4.5",
        "Claude Sonnet 4.5",
        "(web_search)",
    ]


def test_a_forced_layout_overrides_detection_and_an_unknown_layout_is_refused():
    data = b"model,cost,currency\ngpt-4o,1,USD\n"
    with pytest.raises(InvoiceFormatError, match="anthropic_costs layout.*usage_date_utc"):
        read_invoice(data, layout="anthropic_costs")
    with pytest.raises(InvoiceFormatError, match="unknown invoice layout"):
        read_invoice(data, layout="stripe")
