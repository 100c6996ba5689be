"""The MCP server at POST /v1/mcp (issue 12), tested with the official MCP client SDK over
real HTTP (initialize, list tools, call each tool) and with raw JSON-RPC POSTs: each tool
answers exactly what its REST twin does, bad arguments are JSON-RPC errors (never a 500),
and another project's key never reaches this project's data. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.support.harness import Gateway, Tenant

MESSAGES = [{"role": "user", "content": "What is double-entry bookkeeping?"}]
TOOLS = {
    "search_audit_logs", "get_request", "get_model_health", "get_balance", "get_usage",
    "get_pricing", "list_models", "list_traces", "get_trace",
}  # fmt: skip


def rpc(gateway: Gateway, tenant: Tenant | None, body: Any, **headers: str) -> Any:
    auth = {"Authorization": f"Bearer {tenant.api_key}"} if tenant else {}
    with gateway.client() as http:
        return http.post(
            "/v1/mcp",
            content=json.dumps(body),
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
                **auth,
                **headers,
            },
        )


def call(gateway: Gateway, tenant: Tenant, name: str, arguments: dict[str, Any]) -> Any:
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }
    response = rpc(gateway, tenant, body)
    assert response.status_code == 200, response.text
    return response.json()


def rest(gateway: Gateway, tenant: Tenant, path: str, **params: Any) -> Any:
    with gateway.client() as http:
        response = http.get(path, params=params, headers=tenant.headers())
    assert response.status_code == 200, response.text
    return response.json()


def open_trace(gateway: Gateway, tenant: Tenant) -> str:
    body = {"name": "mcp agent", "budget": "1.00", "allowed_models": ["gpt-4o-mini"]}
    with gateway.client() as http:
        response = http.post("/v1/traces", json=body, headers=tenant.headers())
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def session_run(
    gateway: Gateway, tenant: Tenant, request_id: str, trace_id: str
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with streamable_http_client(gateway.base_url + "/v1/mcp", http_client=http) as (
            read,
            write,
        ):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                results["server"] = init.server_info.name
                listed = await session.list_tools()
                results["tools"] = {tool.name: tool.input_schema for tool in listed.tools}
                arguments = {
                    "search_audit_logs": {"limit": 10},
                    "get_request": {"request_id": request_id},
                    "get_model_health": {},
                    "get_balance": {},
                    "get_usage": {"group_by": "model"},
                    "get_pricing": {"model": "gpt-4o-mini"},
                    "list_models": {},
                    "list_traces": {"limit": 5},
                    "get_trace": {"trace_id": trace_id},
                }
                for name, args in arguments.items():
                    result = await session.call_tool(name, args)
                    assert not result.is_error, (name, result.content)
                    results[name] = json.loads(result.content[0].text)
    return results


def test_the_official_client_lists_and_calls_every_tool_with_the_rest_twins_data(
    gateway: Gateway,
) -> None:
    tenant = gateway.tenant()
    trace_id = open_trace(gateway, tenant)
    request_id = (
        gateway.openai(tenant)
        .chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            extra_headers={"X-Conversation-Id": "c-1", "X-Trace-Id": trace_id},
        )
        .headers["x-request-id"]
    )
    gateway.settle()
    results = asyncio.run(session_run(gateway, tenant, request_id, trace_id))
    assert results["server"] == "ledgergate"
    assert set(results["tools"]) == TOOLS
    for name, schema in results["tools"].items():
        assert schema["type"] == "object", name
    assert "conversation_id" in results["tools"]["search_audit_logs"]["properties"]
    assert results["tools"]["get_request"]["required"] == ["request_id"]

    assert results["search_audit_logs"] == rest(gateway, tenant, "/v1/data/audit", limit=10)
    assert results["get_request"] == rest(gateway, tenant, f"/v1/data/audit/{request_id}")
    assert results["get_request"]["conversation_id"] == "c-1"
    assert results["get_model_health"] == rest(gateway, tenant, "/v1/data/models")
    assert results["get_balance"] == rest(gateway, tenant, "/v1/billing/balance")
    assert results["get_usage"] == rest(gateway, tenant, "/v1/billing/usage", group_by="model")
    pricing = rest(gateway, tenant, "/v1/data/pricing", model="gpt-4o-mini")
    assert results["get_pricing"]["price"] == pricing["price"]
    assert results["list_models"] == rest(gateway, tenant, "/v1/models")
    assert results["list_traces"] == rest(gateway, tenant, "/v1/data/traces", limit=5)
    assert [t["id"] for t in results["list_traces"]["data"]] == [trace_id]
    assert results["get_trace"] == rest(gateway, tenant, f"/v1/data/traces/{trace_id}")
    [span] = results["get_trace"]["root"]["children"]
    assert span["span_id"] == request_id and results["tools"]["get_trace"]["required"] == [
        "trace_id"
    ]


def test_raw_json_rpc_bad_arguments_and_isolation(gateway: Gateway) -> None:
    tenant, other = gateway.tenant(), gateway.tenant()
    request_id = (
        gateway.openai(tenant)
        .chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
        .headers["x-request-id"]
    )
    gateway.settle()

    # Stateless: a tools/call with no initialize and no session works.
    listed = rpc(gateway, tenant, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert listed.status_code == 200
    assert {tool["name"] for tool in listed.json()["result"]["tools"]} == TOOLS
    found = call(gateway, tenant, "get_request", {"request_id": request_id})
    assert json.loads(found["result"]["content"][0]["text"])["request_id"] == request_id

    # Another project's key: the request does not exist for it, its search is empty.
    missing = call(gateway, other, "get_request", {"request_id": request_id})
    assert missing["error"]["code"] == -32602
    assert missing["error"]["data"]["code"] == "request_not_found"
    theirs = call(gateway, other, "search_audit_logs", {})
    assert json.loads(theirs["result"]["content"][0]["text"])["data"] == []
    assert request_id not in json.dumps(theirs)
    trace_id = open_trace(gateway, tenant)
    gateway.settle()
    not_theirs = call(gateway, other, "get_trace", {"trace_id": trace_id})
    assert not_theirs["error"]["data"]["code"] == "trace_not_found"
    no_traces = call(gateway, other, "list_traces", {})
    assert json.loads(no_traces["result"]["content"][0]["text"])["data"] == []
    mine = call(gateway, tenant, "get_trace", {"trace_id": trace_id, "format": "otlp"})
    assert "resourceSpans" in json.loads(mine["result"]["content"][0]["text"])

    # Bad arguments: JSON-RPC errors naming the argument, never a 500 or a tool result.
    for name, arguments, param in (
        ("search_audit_logs", {"limit": "many"}, "limit"),
        ("search_audit_logs", {"limit": 0}, "limit"),
        ("search_audit_logs", {"conversation_id": "has space"}, "conversation_id"),
        ("search_audit_logs", {"since": "yesterday"}, "since"),
        ("search_audit_logs", {"key_id": "nope"}, "key_id"),
        ("get_request", {}, "request_id"),
        ("get_pricing", {"model": "no such model here"}, "model"),
        ("get_usage", {"group_by": "colour"}, "group_by"),
        ("get_model_health", {"model": 5}, "model"),
        ("list_traces", {"status": "bogus"}, "status"),
        ("list_traces", {"since": "yesterday"}, "since"),
        ("list_traces", {"cursor": "x"}, "cursor"),
        ("get_trace", {}, "trace_id"),
        ("get_trace", {"trace_id": "lg_tr_" + "0" * 32, "format": "xml"}, "format"),
    ):
        answer = call(gateway, tenant, name, arguments)
        assert "result" not in answer, (name, arguments, answer)
        assert answer["error"]["code"] == -32602, (name, arguments, answer)
        assert answer["error"]["data"]["param"] == param, (name, arguments, answer)
    unknown = call(gateway, tenant, "drop_tables", {})
    assert unknown["error"]["code"] == -32602

    # No key, or a bad one: refused before any JSON-RPC, in the gateway's envelope.
    for auth in (None, "Bearer lg_live_not_a_key"):
        headers = {"Authorization": auth} if auth else {}
        refused = rpc(gateway, None, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, **headers)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["code"] in ("missing_api_key", "invalid_api_key")
