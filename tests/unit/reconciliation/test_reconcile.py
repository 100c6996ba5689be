import json
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.errors import CurrencyMismatch
from reconciliation.errors import InvalidReconciliationRequest, InvoiceFormatError
from reconciliation.invoices import read_invoice
from reconciliation.reconcile import reconcile, render_table
from tests.unit.reconciliation.builders import LedgerBuilder

HEADER = "date,provider,model,input_tokens,output_tokens,cost,currency\n"


def invoice(*lines: str, header: str = HEADER):
    return read_invoice((header + "\n".join(lines) + "\n").encode(), source_name="inv.csv")


def september_ledger() -> LedgerBuilder:
    return (
        LedgerBuilder()
        .topup("2026-08-31 00:00", "1000")
        .charge("2026-09-01 10:00", "r1", "1.10", provider_cost="1.00")
        .charge("2026-09-01 11:00", "r2", "2.20", provider_cost="2.00")
        .charge(
            "2026-09-02 10:00",
            "r3",
            "0.55",
            provider_cost="0.50",
            model="gpt-4o-mini",
            upstream_model="gpt-4o-mini-2024-07-18",
        )
        # Noise the reconciliation must ignore:
        .charge(
            "2026-09-01 12:00", "r4", "9", provider="anthropic", upstream_model="claude-sonnet-4-5"
        )
        .charge("2026-08-31 23:59:59", "r5", "7", provider_cost="7")  # previous month
        .charge("2026-10-01 00:00", "r6", "7", provider_cost="7")  # next month
        .reserve("2026-09-01 09:59", "r1", "5")
        .release("2026-09-01 10:00", "r1", "3.9")
    )


def test_a_ledger_that_agrees_with_the_invoice_reconciles_clean():
    report = reconcile(
        september_ledger().lazy(),
        invoice(
            "2026-09-01,openai,gpt-4o-2024-08-06,,,3.00,USD",
            "2026-09-02,openai,gpt-4o-mini-2024-07-18,,,0.50,USD",
        ),
        "openai",
        "2026-09",
    )
    assert report.is_clean
    assert [line.status for line in report.lines] == ["match", "match"]
    assert report.totals.ledger_cost == Decimal("3.50")
    assert report.ledger_charges == 3
    assert report.currency == "USD"


def test_over_and_under_carry_the_size_of_the_difference():
    report = reconcile(
        september_ledger().lazy(),
        invoice(
            "2026-09-01,openai,gpt-4o-2024-08-06,,,2.75,USD",  # ledger 3.00 → over by 0.25
            "2026-09-02,openai,gpt-4o-mini-2024-07-18,,,0.60,USD",  # ledger 0.50 → under by 0.10
        ),
        "openai",
        "2026-09",
    )
    over, under = report.lines
    assert (over.status, over.difference, over.relative_difference) == (
        "over",
        Decimal("0.25"),
        Decimal("0.090909"),
    )
    assert (under.status, under.difference) == ("under", Decimal("-0.10"))
    assert under.relative_difference == Decimal("-0.166667")
    assert report.totals.difference == Decimal("0.15")
    assert report.totals.status == "over"
    assert not report.is_clean


def test_models_missing_on_either_side_are_reported_as_such():
    report = reconcile(
        september_ledger().lazy(),
        invoice(
            "2026-09-01,openai,gpt-4o-2024-08-06,,,3.00,USD",
            "2026-09-03,openai,dall-e-3,,,4.00,USD",
        ),
        "openai",
        "2026-09",
    )
    by_model = {line.model: line for line in report.lines}
    assert by_model["dall-e-3"].status == "missing_in_ledger"
    assert by_model["dall-e-3"].ledger_cost == 0
    assert by_model["gpt-4o-mini-2024-07-18"].status == "missing_in_invoice"
    assert by_model["gpt-4o-mini-2024-07-18"].invoice_cost == 0
    assert report.totals.lines_by_status == {
        "match": 1,
        "over": 0,
        "under": 0,
        "missing_in_ledger": 1,
        "missing_in_invoice": 1,
    }


def test_a_per_month_invoice_is_compared_per_model_over_the_whole_month():
    report = reconcile(
        september_ledger().lazy(),
        invoice(
            "gpt-4o-2024-08-06,3.00,USD",
            "gpt-4o-mini-2024-07-18,0.50,USD",
            header="model,cost,currency\n",
        ),
        "openai",
        "2026-09",
    )
    assert report.per_day is False
    assert [(line.day, line.model, line.status) for line in report.lines] == [
        (None, "gpt-4o-2024-08-06", "match"),
        (None, "gpt-4o-mini-2024-07-18", "match"),
    ]


def test_a_per_day_invoice_is_compared_per_utc_day_so_a_shifted_day_shows_up():
    report = reconcile(
        september_ledger().lazy(),
        invoice(
            "2026-09-02,openai,gpt-4o-2024-08-06,,,3.00,USD",  # wrong day
            "2026-09-02,openai,gpt-4o-mini-2024-07-18,,,0.50,USD",
        ),
        "openai",
        "2026-09",
    )
    statuses = {(line.day, line.model): line.status for line in report.lines}
    assert statuses[(date(2026, 9, 1), "gpt-4o-2024-08-06")] == "missing_in_invoice"
    assert statuses[(date(2026, 9, 2), "gpt-4o-2024-08-06")] == "missing_in_ledger"
    assert report.totals.status == "match"  # same money, wrong day


def test_a_difference_exactly_at_the_tolerance_still_matches():
    lines = (
        "2026-09-01,openai,gpt-4o-2024-08-06,,,3.01,USD",
        "2026-09-02,openai,gpt-4o-mini-2024-07-18,,,0.50,USD",
    )
    assert (
        reconcile(september_ledger().lazy(), invoice(*lines), "openai", "2026-09").lines[0].status
        == "match"
    )
    strict = reconcile(
        september_ledger().lazy(), invoice(*lines), "openai", "2026-09", Decimal("0")
    )
    assert strict.lines[0].status == "under"


def test_a_relative_tolerance_widens_the_band_for_large_lines():
    lines = ("2026-09-01,openai,gpt-4o-2024-08-06,,,3.02,USD",)
    loose = reconcile(
        september_ledger().lazy(),
        invoice(*lines),
        "openai",
        "2026-09",
        Decimal("0.01"),
        relative_tolerance=Decimal("0.01"),
    )
    assert loose.lines[0].status == "match"


def test_the_upstream_model_is_used_and_model_is_the_fallback():
    ledger = (
        LedgerBuilder()
        .charge("2026-09-01 10:00", "r1", "1", upstream_model=None, model="my-alias")
        .charge("2026-09-01 11:00", "r2", "2", upstream_model="gpt-4o-2024-08-06", model="my-alias")
    )
    report = reconcile(
        ledger.lazy(),
        invoice(
            "2026-09-01,openai,my-alias,,,1,USD", "2026-09-01,openai,gpt-4o-2024-08-06,,,2,USD"
        ),
        "openai",
        "2026-09",
    )
    assert report.is_clean


def test_model_aliases_map_invoice_display_names_to_ledger_model_ids():
    ledger = LedgerBuilder().charge(
        "2026-09-01 10:00", "r1", "4.50", provider="anthropic", upstream_model="claude-sonnet-4-5"
    )
    anthropic_invoice = read_invoice(
        b"usage_date_utc,model,workspace,api_key,usage_type,context_window,token_type,cost_usd,cost_type\n"
        b"2026-09-01,Claude Sonnet 4.5,Default,k,message,0-200k,input_no_cache,1.20,token\n"
        b"2026-09-01,Claude Sonnet 4.5,Default,k,message,0-200k,output,3.30,token\n"
    )
    report = reconcile(
        ledger.lazy(),
        anthropic_invoice,
        "anthropic",
        "2026-09",
        model_aliases={"Claude Sonnet 4.5": "claude-sonnet-4-5"},
    )
    assert report.is_clean
    assert report.lines[0].invoice_cost == Decimal("4.50")


def test_a_ledger_in_another_currency_than_the_invoice_is_refused():
    ledger = LedgerBuilder().charge("2026-09-01 10:00", "r1", "1", provider_currency="EUR")
    with pytest.raises(CurrencyMismatch, match="EUR.*invoice is in USD"):
        reconcile(
            ledger.lazy(),
            invoice("2026-09-01,openai,gpt-4o-2024-08-06,,,1,USD"),
            "openai",
            "2026-09",
        )


def test_an_invoice_for_another_provider_is_refused():
    with pytest.raises(InvoiceFormatError, match="provider 'anthropic'"):
        reconcile(
            september_ledger().lazy(),
            invoice("2026-09-01,anthropic,claude,,,1,USD"),
            "openai",
            "2026-09",
        )


def test_invoice_lines_outside_the_month_are_ignored_and_counted():
    report = reconcile(
        september_ledger().lazy(),
        invoice(
            "2026-08-31,openai,gpt-4o-2024-08-06,,,7,USD",
            "2026-09-01,openai,gpt-4o-2024-08-06,,,3.00,USD",
            "2026-09-02,openai,gpt-4o-mini-2024-07-18,,,0.50,USD",
        ),
        "openai",
        "2026-09",
    )
    assert report.is_clean
    assert report.invoice_lines_outside_month == 1


def test_an_invoice_with_nothing_in_the_month_is_refused():
    with pytest.raises(InvoiceFormatError, match="no invoice line falls in 2026-09"):
        reconcile(
            september_ledger().lazy(), invoice("2026-08-01,openai,x,,,1,USD"), "openai", "2026-09"
        )


@pytest.mark.parametrize("month", ["2026-13", "2026/09", "Sept", ""])
def test_a_malformed_month_is_refused(month):
    with pytest.raises(InvalidReconciliationRequest, match="YYYY-MM"):
        reconcile(
            september_ledger().lazy(), invoice("2026-09-01,openai,x,,,1,USD"), "openai", month
        )


def test_a_negative_tolerance_is_refused():
    with pytest.raises(InvalidReconciliationRequest, match="tolerance"):
        reconcile(
            september_ledger().lazy(),
            invoice("2026-09-01,openai,x,,,1,USD"),
            "openai",
            "2026-09",
            Decimal("-1"),
        )


def test_december_runs_to_the_first_of_january():
    ledger = (
        LedgerBuilder()
        .charge("2026-12-31 23:59:59.999999", "r1", "1")
        .charge("2027-01-01 00:00", "r2", "5")
    )
    report = reconcile(
        ledger.lazy(), invoice("2026-12-31,openai,gpt-4o-2024-08-06,,,1,USD"), "openai", "2026-12"
    )
    assert report.is_clean


def test_the_report_serialises_money_as_strings_and_never_as_floats():
    report = reconcile(
        september_ledger().lazy(),
        invoice("2026-09-01,openai,gpt-4o-2024-08-06,,,2.75,USD"),
        "openai",
        "2026-09",
    )
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["totals"]["ledger_cost"] == "3.500000000"
    assert payload["lines"][0]["difference"] == "0.250000000"
    assert payload["invoice_sha256"] == report.invoice_sha256

    def no_floats(value):
        if isinstance(value, dict):
            return all(no_floats(item) for item in value.values())
        if isinstance(value, list):
            return all(no_floats(item) for item in value)
        return not isinstance(value, float)

    assert no_floats(payload)


def test_the_rendered_table_shows_each_line_its_status_and_the_totals():
    report = reconcile(
        september_ledger().lazy(),
        invoice(
            "2026-09-01,openai,gpt-4o-2024-08-06,,,2.75,USD", "2026-09-03,openai,dall-e-3,,,4,USD"
        ),
        "openai",
        "2026-09",
    )
    table = render_table(report)
    assert "Reconciliation openai 2026-09 in USD" in table
    assert "2026-09-01  gpt-4o-2024-08-06" in table
    assert "OVER" in table and "MISSING IN LEDGER" in table and "MISSING IN INVOICE" in table
    total_line = next(line for line in table.splitlines() if line.startswith("TOTAL"))
    assert "3.500000" in total_line and "6.750000" in total_line and "-3.250000" in total_line


amounts = st.decimals(min_value=0, max_value=1000, places=9, allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ledger_costs=st.dictionaries(st.sampled_from(["m1", "m2", "m3", "m4"]), amounts, max_size=4),
    invoice_costs=st.dictionaries(
        st.sampled_from(["m1", "m2", "m3", "m5"]), amounts, min_size=1, max_size=4
    ),
    tolerance=st.decimals(min_value=0, max_value=1, places=2),
)
def test_every_line_obeys_the_status_rule_and_lines_add_up_to_the_totals(
    ledger_costs, invoice_costs, tolerance
):
    builder = LedgerBuilder()
    for number, (model, cost) in enumerate(sorted(ledger_costs.items())):
        builder.charge(
            "2026-09-10 12:00",
            f"r{number}",
            str(cost),
            upstream_model=model,
            provider_cost=str(cost),
        )
    report = reconcile(
        builder.lazy(),
        invoice(*(f"2026-09-10,openai,{m},,,{c:f},USD" for m, c in sorted(invoice_costs.items()))),
        "openai",
        "2026-09",
        tolerance,
    )
    assert {line.model for line in report.lines} == set(ledger_costs) | set(invoice_costs)
    for line in report.lines:
        assert line.difference == line.ledger_cost - line.invoice_cost
        if line.model not in ledger_costs:
            assert line.status == "missing_in_ledger"
        elif line.model not in invoice_costs:
            assert line.status == "missing_in_invoice"
        elif abs(line.difference) <= tolerance:
            assert line.status == "match"
        else:
            assert line.status == ("over" if line.difference > 0 else "under")
    assert report.totals.ledger_cost == sum(ledger_costs.values(), Decimal(0))
    assert report.totals.invoice_cost == sum(invoice_costs.values(), Decimal(0))
    assert report.totals.difference == sum((line.difference for line in report.lines), Decimal(0))


def test_capped_charges_and_corrections_are_counted_and_flagged_for_finance():
    from reconciliation.ledger import balance_as_of
    from tests.unit.reconciliation.builders import at

    ledger = (
        LedgerBuilder()
        .topup("2026-08-31 00:00", "100")
        .charge("2026-09-01 10:00", "r1", "1.10", provider_cost="1.00", usage_source="capped")
        .charge("2026-09-01 11:00", "r2", "0.22", provider_cost="0.20", usage_source="estimated")
        # r2 was swept, then answered: the correction adds the difference to its real usage.
        ._add(
            "correction",
            "2026-09-01 11:05",
            "0.88",
            request_id="r2",
            provider="openai",
            model="gpt-4o",
            upstream_model="gpt-4o-2024-08-06",
            provider_cost=Decimal("0.80"),
            provider_currency="USD",
            usage_source="provider",
        )
    )
    report = reconcile(
        ledger.lazy(),
        invoice("2026-09-01,openai,gpt-4o-2024-08-06,,,2.00,USD"),
        "openai",
        "2026-09",
    )
    assert report.totals.ledger_cost == Decimal("2.00") and report.is_clean
    assert report.ledger_charges == 2  # the correction is not a third charge
    assert report.ledger_charges_capped == 1
    assert "1 ledger charges were capped" in render_table(report)
    balance = balance_as_of(ledger.lazy(), "proj_a", at("2026-09-30 00:00"))
    assert balance.charged == Decimal("2.20") and balance.available == Decimal("97.80")
