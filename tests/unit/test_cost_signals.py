"""The cost signals a response carries (gateway/cost_signals.py): efficiency's precision and
edge cases, the latency header, the stream's x_lg object."""

from __future__ import annotations

from decimal import Decimal

from gateway.cost_signals import EFFICIENCY_DECIMALS, cost_headers, efficiency, x_lg_usage


def test_efficiency_is_estimated_over_actual_with_three_decimals_rounded_half_even() -> None:
    assert EFFICIENCY_DECIMALS == 3
    assert efficiency(Decimal("0.003"), Decimal("0.001")) == "3.000"
    assert efficiency(Decimal("1"), Decimal("3")) == "0.333"
    assert efficiency(Decimal("0.0025"), Decimal("1")) == "0.002"  # half-even: 0.0025 → 0.002
    assert efficiency(Decimal("0.0035"), Decimal("1")) == "0.004"


def test_efficiency_of_a_free_answer_is_inf_and_of_nothing_at_all_is_one() -> None:
    assert efficiency(Decimal("0.01"), Decimal("0")) == "inf"
    assert efficiency(Decimal("0"), Decimal("0")) == "1.000"


def test_the_headers_and_the_x_lg_object_carry_strings_never_floats() -> None:
    headers = cost_headers(Decimal("0.002"), Decimal("0.001"), 42)
    assert headers == {"X-LG-Efficiency": "2.000", "X-LG-Latency-Ms": "42"}
    assert cost_headers(Decimal(1), Decimal(1), -3)["X-LG-Latency-Ms"] == "0"
    assert x_lg_usage(Decimal("0.000123400"), "EUR", "lg_req_1") == {
        "cost": "0.000123400",
        "currency": "EUR",
        "request_id": "lg_req_1",
    }
