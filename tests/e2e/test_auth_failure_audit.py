"""The operator can read who failed to authenticate (the presented key's id, never the key),
from where, when and how often — and the presented secret is stored nowhere."""

from __future__ import annotations

import secrets

import httpx

from domain.ids import api_key_id, hash_api_key
from tests.support.harness import ADMIN_TOKEN, Gateway

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
EMBED = {"model": "text-embedding-3-small", "input": "hi"}


def fingerprint(key: str) -> str:
    return str(api_key_id(hash_api_key(key)))


def test_failed_authentications_are_readable_by_the_operator_and_the_secret_is_never_stored(
    gateway: Gateway,
) -> None:
    tenant = gateway.tenant()
    unknown = "lg_live_" + secrets.token_urlsafe(32)
    other_unknown = "lg_live_" + secrets.token_urlsafe(32)
    foreign = "sk-proj-" + secrets.token_urlsafe(32)  # not a Ledgergate key at all
    with gateway.client(timeout=180) as http:
        revoked = http.post(
            "/v1/admin/keys", json={"project_id": str(tenant.project_id)}, headers=ADMIN
        ).json()
        assert (
            http.post(
                f"/v1/admin/keys/{revoked['key_id']}/revoke", json={}, headers=ADMIN
            ).status_code
            == 200
        )
        gateway.settle()

        def chat(authorization: str | None) -> httpx.Response:
            headers = {"X-User-Id": "mallory"}
            if authorization is not None:
                headers["Authorization"] = authorization
            return http.post("/v1/chat/completions", json=CHAT, headers=headers)

        sent = [chat(f"Bearer {unknown}") for _ in range(3)]
        sent += [chat(f"Bearer {revoked['api_key']}") for _ in range(2)]
        sent += [chat(None), chat(f"Bearer {foreign}")]
        sent.append(
            http.post(
                "/v1/embeddings", json=EMBED, headers={"Authorization": f"Bearer {other_unknown}"}
            )
        )
        assert [r.status_code for r in sent] == [401] * 8
        assert (
            http.post("/v1/chat/completions", json=CHAT, headers=tenant.headers()).status_code
            == 200
        )
        assert http.post("/v1/completions", json={}).status_code in (
            404,
            501,
        )  # not an auth failure
        gateway.settle()

        def read(**params: object) -> httpx.Response:
            return http.get("/v1/admin/auth-failures", params=params, headers=ADMIN)

        rows = read().json()["data"]
        assert len(rows) == 8
        assert {r["client_ip"] for r in rows} == {"127.0.0.1"}
        assert all(r["received_at"] and r["request_id"].startswith("lg_req_") for r in rows)
        by_key: dict[str | None, list[str]] = {}
        for row in rows:
            by_key.setdefault(row["key_fingerprint"], []).append(row["error_code"])
        assert {k: sorted(v) for k, v in by_key.items()} == {
            fingerprint(unknown): ["invalid_api_key"] * 3,
            revoked["key_id"]: ["invalid_api_key"] * 2,  # a revoked key is named by its id
            fingerprint(other_unknown): ["invalid_api_key"],
            None: ["invalid_api_key", "missing_api_key"],  # no Ledgergate key was presented
        }
        assert {r["endpoint"] for r in rows} == {"chat.completions", "embeddings"}

        counts = read(group_by="key_fingerprint,error_code").json()["data"]
        assert counts[0] == {
            "key_fingerprint": fingerprint(unknown),
            "error_code": "invalid_api_key",
            "failures": 3,
            "first_seen": counts[0]["first_seen"],
            "last_seen": counts[0]["last_seen"],
        }
        assert counts[0]["first_seen"] <= counts[0]["last_seen"]
        assert sum(c["failures"] for c in counts) == 8
        by_ip = read(group_by="client_ip").json()["data"]
        assert by_ip == [
            {"client_ip": "127.0.0.1", "failures": 8, "first_seen": by_ip[0]["first_seen"],
             "last_seen": by_ip[0]["last_seen"]}
        ]  # fmt: skip

        # Filters and paging.
        assert len(read(key_fingerprint=revoked["key_id"]).json()["data"]) == 2
        assert len(read(error_code="missing_api_key").json()["data"]) == 1
        assert read(client_ip="10.0.0.1").json()["data"] == []
        assert read(since="2999-01-01T00:00:00Z").json()["data"] == []
        first = read(limit=3).json()
        second = read(limit=3, cursor=first["next_cursor"]).json()
        third = read(limit=3, cursor=second["next_cursor"]).json()
        assert third["next_cursor"] is None
        paged = [r["request_id"] for page in (first, second, third) for r in page["data"]]
        assert paged == [r["request_id"] for r in rows]  # newest first, no gap, no repeat
        grouped_pages = read(group_by="key_fingerprint", limit=2).json()
        assert len(grouped_pages["data"]) == 2 and grouped_pages["next_cursor"] == "2"

        # Unknown filter values are refused, and only the operator may read it.
        for params in (
            {"error_code": "bogus"},
            {"group_by": "secret"},
            {"key_fingerprint": "not-a-key-id"},
            {"cursor": "x"},
            {"limit": "0"},
        ):
            assert read(**params).status_code == 400, params
        assert http.get("/v1/admin/auth-failures").status_code == 401
        assert http.get("/v1/admin/auth-failures", headers=tenant.headers()).status_code == 401

    # The presented secrets are nowhere: not in any event, not in any read-model row.
    presented = [unknown[len("lg_live_") :], other_unknown[len("lg_live_") :], foreign]
    presented.append(revoked["api_key"][len("lg_live_") :])
    app = gateway.services.app
    for notification in app.recorder.select_notifications(start=1, limit=100_000):
        stored = bytes(notification.state) + notification.topic.encode()
        decoded = repr(app.mapper.to_domain_event(notification).__dict__).encode()
        for secret in presented:
            assert secret.encode() not in stored and secret.encode() not in decoded
    with gateway.services.store.transaction(write=False) as tx:
        for table in ("lg_audit", "lg_auth_failures"):
            dump = repr(tx.execute(f"SELECT * FROM {table}").fetchall())  # noqa: S608
            for secret in presented:
                assert secret not in dump, table
