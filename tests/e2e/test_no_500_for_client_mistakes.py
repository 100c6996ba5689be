"""Bad input gets a clear, structured error with the right status — never a 500. Hypothesis
throws arbitrarily shaped and typed bodies at the public endpoints over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.harness import ADMIN_TOKEN, Gateway, Tenant, simulated_gateway

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
message = st.fixed_dictionaries(
    {
        "role": st.one_of(st.sampled_from(["user", "system", "assistant", "tool"]), json_values),
        "content": json_values,
    },
    optional={"tool_calls": json_values, "tool_call_id": json_values, "name": json_values},
)
chat_bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": st.one_of(
            st.sampled_from(["gpt-4o-mini", "auto", "eu-strict:small", "nope", ""]), json_values
        ),
        "messages": st.one_of(st.lists(message, max_size=3), json_values),
        "stream": json_values,
        "stream_options": json_values,
        "max_tokens": json_values,
        "temperature": json_values,
        "tools": json_values,
        "response_format": json_values,
        "routing_preferences": json_values,
        "pii_policy": json_values,
        "n": json_values,
        "user": json_values,
    },
)


@pytest.fixture(scope="module")
def running(tmp_path_factory, request) -> Iterator[tuple[Gateway, Tenant]]:

    with simulated_gateway(
        {
            "LEDGERGATE_DATA_DIR": str(tmp_path_factory.mktemp("fuzz")),
        }
    ) as gateway:
        yield gateway, gateway.tenant(balance="50.00")


def assert_structured_client_error(response: httpx.Response) -> None:
    assert response.status_code < 500 or response.status_code in (502, 503, 504), response.text[
        :300
    ]
    assert response.headers["x-request-id"].startswith("lg_req_")
    if response.status_code >= 400 and "text/event-stream" not in response.headers.get(
        "content-type", ""
    ):
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["code"], str) and error["code"]


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=chat_bodies)
def test_any_chat_body_gets_an_answer_or_a_structured_client_error(running, body) -> None:
    gateway, tenant = running
    with httpx.Client(base_url=gateway.base_url, timeout=30) as http:
        response = http.post("/v1/chat/completions", json=body, headers=tenant.headers())
    assert_structured_client_error(response)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=json_values,
    path=st.sampled_from(
        [
            "/v1/embeddings",
            "/v1/admin/projects",
            "/v1/admin/topups",
            "/v1/admin/prices",
            "/v1/admin/fx-rates",
            "/v1/admin/keys",
        ]
    ),
)
def test_any_body_on_embeddings_and_admin_routes_gets_a_structured_client_error(
    running, body, path
) -> None:
    gateway, tenant = running
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if "/admin/" in path else tenant.headers()
    with httpx.Client(base_url=gateway.base_url, timeout=30) as http:
        response = http.post(path, json=body, headers=headers)
    assert_structured_client_error(response)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    params=st.dictionaries(
        st.sampled_from(
            [
                "limit",
                "cursor",
                "since",
                "until",
                "status",
                "min_position",
                "group_by",
                "model",
                "at",
            ]
        ),
        st.text(max_size=30),
        max_size=4,
    )
)
def test_any_query_on_the_read_api_gets_a_structured_answer(running, params) -> None:
    gateway, tenant = running
    with httpx.Client(base_url=gateway.base_url, timeout=30) as http:
        for path in (
            "/v1/data/audit",
            "/v1/billing/usage",
            "/v1/data/pricing",
            "/v1/billing/balance",
        ):
            response = http.get(path, params=params, headers=tenant.headers())
            assert_structured_client_error(response)
