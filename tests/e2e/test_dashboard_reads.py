"""The read API the dashboard relies on, over real HTTP on SQLite and the real PostgreSQL:
a request's history (transitions, route, attempts) on the audit read, the admin token's
`?project_id=` on the project-scoped reads, the admin project list, and a key that can
never widen its scope."""

from __future__ import annotations

from typing import Any

from tests.support.harness import ADMIN_TOKEN, Gateway

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PROJECT_READS = (
    "/v1/data/audit",
    "/v1/billing/balance",
    "/v1/billing/usage",
    "/v1/billing/plan",
    "/v1/models/leaderboard",
)


def _chat(gateway: Gateway, headers: dict[str, str], **extra: Any) -> str:
    with gateway.client() as http:
        response = http.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **extra},
            headers=headers,
        )
    assert response.status_code == 200, response.text
    return str(response.headers["x-request-id"])


def test_the_audit_read_carries_every_transition_the_route_and_each_attempt(
    gateway: Gateway,
) -> None:
    tenant = gateway.tenant()
    request_id = _chat(gateway, {**tenant.headers(), "X-Trace-Id": "trace-dash-1"})
    gateway.settle()
    with gateway.client() as http:
        record = http.get(f"/v1/data/audit/{request_id}", headers=tenant.headers()).json()
    events = [step["event"] for step in record["transitions"]]
    assert events[0] == "received" and events[-1] == "completed"
    assert {"route_decided", "admitted", "dispatched"} <= set(events)
    assert [step["version"] for step in record["transitions"]] == list(range(1, len(events) + 1))
    assert record["transitions"][0]["at"] == record["received_at"]
    assert record["transitions"][-1]["at"] == record["finished_at"]
    route = record["route"]
    assert route["model"] == "gpt-4o-mini" and route["requested_model"] == "gpt-4o-mini"
    assert route["candidates"] and route["candidates"][0]["model"] == "gpt-4o-mini"
    assert set(route["candidates"][0]) == {"model", "score", "detail"}
    [attempt] = record["dispatches"]
    assert attempt["attempt"] == 1 and attempt["provider"] == record["provider"]
    assert attempt["dispatched_at"] == record["dispatched_at"]
    assert record["trace_id"] == "trace-dash-1"
    assert "client_ip" not in str(record)  # the audit read never shows the caller's address


def test_a_key_cannot_widen_its_scope_with_project_id(gateway: Gateway) -> None:
    a = gateway.tenant(name="A")
    b = gateway.tenant(name="B")
    b_request = _chat(gateway, b.headers())
    gateway.settle()
    with gateway.client() as http:
        for path in PROJECT_READS:
            widened = http.get(path, params={"project_id": str(b.project_id)}, headers=a.headers())
            assert widened.status_code == 404, path
            assert widened.json()["error"]["code"] == "project_not_found"
            own = http.get(path, params={"project_id": str(a.project_id)}, headers=a.headers())
            assert own.status_code == 200, (path, own.text)
        lookup = http.get(
            f"/v1/data/audit/{b_request}",
            params={"project_id": str(b.project_id)},
            headers=a.headers(),
        )
        assert lookup.status_code == 404
        garbage = http.get("/v1/data/audit", params={"project_id": "x"}, headers=a.headers())
        assert garbage.status_code == 404
        # Only the admin token may list projects.
        listing = http.get("/v1/admin/projects", headers=a.headers())
        assert listing.status_code == 401
        assert listing.json()["error"]["code"] == "invalid_admin_token"


def test_the_admin_token_reads_one_named_project_with_the_same_queries(gateway: Gateway) -> None:
    a = gateway.tenant(name="Alpha")
    b = gateway.tenant(name="Beta")
    a_request = _chat(gateway, a.headers())
    b_request = _chat(gateway, b.headers())
    gateway.settle()
    with gateway.client() as http:
        projects = http.get("/v1/admin/projects", headers=ADMIN).json()
        unnamed = http.get("/v1/data/audit", headers=ADMIN)
        unknown = http.get(
            "/v1/data/audit",
            params={"project_id": "00000000-0000-0000-0000-000000000000"},
            headers=ADMIN,
        )
        as_admin = {
            path: http.get(path, params={"project_id": str(b.project_id)}, headers=ADMIN)
            for path in PROJECT_READS
        }
        as_key = {path: http.get(path, headers=b.headers()) for path in PROJECT_READS}
        record = http.get(
            f"/v1/data/audit/{b_request}", params={"project_id": str(b.project_id)}, headers=ADMIN
        )
        elsewhere = http.get(
            f"/v1/data/audit/{a_request}", params={"project_id": str(b.project_id)}, headers=ADMIN
        )
    listed = {row["id"]: row for row in projects["data"]}
    assert {str(a.project_id), str(b.project_id)} <= listed.keys()
    assert listed[str(b.project_id)]["name"] == "Beta"
    assert set(listed[str(b.project_id)]) >= {"name", "tier", "plan", "currency"}
    assert unnamed.status_code == 400 and unnamed.json()["error"]["param"] == "project_id"
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "project_not_found"
    for path in PROJECT_READS:
        assert as_admin[path].status_code == 200, (path, as_admin[path].text)
        assert as_admin[path].json() == as_key[path].json(), path
    assert [row["request_id"] for row in as_admin["/v1/data/audit"].json()["data"]] == [b_request]
    assert record.status_code == 200 and record.json()["project_id"] == str(b.project_id)
    assert elsewhere.status_code == 404


def test_the_admin_project_list_pages_in_creation_order(gateway: Gateway) -> None:
    created = [gateway.tenant(name=f"project {index}", balance=None) for index in range(3)]
    with gateway.client() as http:
        first = http.get("/v1/admin/projects", params={"limit": 2}, headers=ADMIN).json()
        rest = http.get(
            "/v1/admin/projects", params={"after": first["next_after"]}, headers=ADMIN
        ).json()
        bad = http.get("/v1/admin/projects", params={"after": "soon"}, headers=ADMIN)
    ids = [row["id"] for row in first["data"] + rest["data"]]
    assert first["has_more"] is True and len(first["data"]) == 2
    assert rest["has_more"] is False and rest["next_after"] is None
    assert [i for i in ids if i in {str(t.project_id) for t in created}] == [
        str(t.project_id) for t in created
    ]
    assert len(ids) == len(set(ids))
    assert bad.status_code == 400
