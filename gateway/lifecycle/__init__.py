"""The request lifecycle: one chat or embeddings request, from HTTP to the ledger.

    received → admitted | rejected → dispatched → streaming → completed | failed

Every outcome, a rejection included, is an event before the client hears of it.

The walk of one chat request, file by file
-------------------------------------------
1. HTTP. The OpenAI-compatible router (`POST /v1/chat/completions` in
   gateway/http/openai.py; gateway/http/app.py `create_app` mounts every router) calls
   `chat_completions(http, services)` from gateway/lifecycle/chat.py with the typed
   services of the composition root (gateway/bootstrap.py `build_services`: the stores,
   the writer, the router, and the PII service, leases, response cache, observability
   and test-mode simulator, each built once).
2. Received (lifecycle/admission.py `receive`). An `Intake` (lifecycle/request.py) gets
   a request id, the receive instant, the client address and the presented key's id.
   It is filled step by step and is enough to record a rejection at any point.
3. Admission (lifecycle/chat.py `_admit`, each step in lifecycle/admission.py):
   `authenticate` (gateway/auth.py: key, project, live or test mode) →
   `use_idempotency_key` (the request id derives from project + key, so a retry is a
   duplicate, never a second charge) → `read_body`, `identify_actor` and the body checks
   (gateway/validation.py) → `thread_ids` (trace, conversation) → `screen_request_pii`
   (gateway/pii/: the provider only ever sees the screened body; a refusal reserves
   nothing; the prompt hash is of the screened prompt) → the effective tier
   (gateway/routing/requests.py `effective_tier_for`) and OCR planned for eu_strict PDFs →
   the route (admission.py `route`: the router's decision, `decide` →
   gateway/routing/requests.py `decide_for_request`, the only compliance gate: tier,
   capabilities, failover order; then the key's budget downgrade,
   gateway/cost_control.py) → the response cache's plan (lifecycle/caching.py `plan`, over
   gateway/response_cache.py) → the key source, BYOK or managed
   (admission.py `key_source_for`) → `admit`.
4. Admitted (admission.py `admit`). The command `AdmitRequest` (domain/commands.py) goes
   to the group-commit writer (domain/writer.py `execute_async`), which runs
   domain/handlers.py `admit_request`: the Account reserves the estimate
   (domain/settlement.py `fee_rate_for` and `compute_cost`; quota, balance, budget
   checked first, domain/account.py), the Request is received, its PII decision and
   route decision recorded, admitted and dispatched (domain/request.py) — all saved in one
   transaction before any provider is called. This process then holds the request's
   lease (lifecycle/settlement.py `hold_lease`, so the sweeper leaves it alone). The
   result is a frozen `Admission` (request.py): facts, route decision, reserved amount,
   key source, PII session, cache plan, and the route and price headers.
   Rejected instead (any error above): admission.py `reject` records `RecordRejection`
   (domain/handlers.py `record_rejection`) and answers the OpenAI error envelope with
   the status of gateway/errors.py's one table.
5. Cache look-up (caching.py `look_up`): a hit (allowed for the effective tier) is served
   without a provider and charged nothing.
6. Documents (chat.py `_read_documents`, eu_strict PDFs only): Mistral OCR reads them
   (gateway/routing/documents.py), `RecordDocuments` adds the OCR cost.
7. Dispatched (lifecycle/dispatch.py `dispatch`): the decision's targets in order
   (gateway/routing/failover.py `run_with_failover`; which failure counts against an
   endpoint is domain/routing.py `counts_as_endpoint_failure`); `Attempts.prepare` picks
   the adapter (the services' simulator in test mode, the project's own key for BYOK,
   else managed; a target of the other key source is skipped) and records every failover
   target (`Redispatch`, repriced if the model changes) before it is called. The
   provider adapters (gateway/providers/) speak each wire format.
8. Streaming (lifecycle/stream.py `stream_chat`, for `stream: true`): the first chunk
   ends failover; it is recorded (`MarkStreaming`) after 0.5 s of streaming, or by the
   settlement's own command if the stream ends sooner (stream.py `FirstChunkMark`: the
   same event and time, one commit fewer); each chunk goes through the PII chunk
   filter (gateway/pii/stream.py `PiiChunkFilter`: output firewall, then placeholders
   restored) and out as an SSE frame; then the usage chunk if asked for and `[DONE]`.
   The frames are stream.py `_frames`. A failure after the start is an SSE error frame;
   a client gone mid-stream is failed for what was delivered without waiting. A whole answer instead (chat.py `_answer`)
   is output-screened (gateway/pii/stream.py `answer_violation`) and rehydrated.
9. Completed | failed (lifecycle/settlement.py `complete` / `_failure`, behind `fail`
   and `fail_without_waiting`: the only places `CompleteRequest` and `FailRequest` are
   built; a cache hit's usage is charged zero, `charged_usage`; `answer_failure` fails
   and answers a request whose answer never started, in chat, streams and embeddings):
   the writer runs domain/handlers.py `complete_request` / `fail_request` — the Account
   charges the provider cost plus the fee (domain/settlement.py `compute_cost` at the
   price and FX rate in effect, domain/pricing.py; `Account.post_charge` records the
   `Posting`) and releases the rest of the reservation; the Request completes. A settlement that cannot be made durable is
   retried against fresh state, else its real usage is journalled (`JournalUsage`) and
   retried in the background while the lease is held (settlement.py `_settle`,
   `RequestLeases`). After settlement the answer is
   stored in the response cache (caching.py `store`, placeholders only) and the client
   gets its response with `X-LG-Actual-Cost` and `X-LG-Ledger-Position`.
10. Projections. Every saved event is in the notification log; projections/runner.py
    (`apply_by_position`) hands it to each view that `@reads` its type
    (projections/base.py `View.apply`) (projections/audit.py `AuditView` for the audit row,
    projections/balances.py, projections/usage.py, projections/ledger_entries.py), each
    with its tracking position in the same transaction.
11. Audit read. `GET /v1/data/audit/{id}` (gateway/http/data.py `audit_get`) sees only
    the caller's project (gateway/http/deps.py `caller_project`) and waits for
    `min_position`, the ledger position the response named (deps.py
    `wait_for_min_position`); then gateway/data_filters.py `request_record` reads
    projections/queries.py `get_audit` (the audit record: route, attempts, price
    charged) with the request's history from its events (gateway/request_history.py
    `request_history`: transitions, route, dispatches, repricings).

Embeddings (lifecycle/embeddings.py) walk the same steps 2-7 and 9 without streaming,
documents or answer screening.
"""

from gateway.lifecycle.chat import chat_completions
from gateway.lifecycle.embeddings import embeddings

__all__ = ["chat_completions", "embeddings"]
