-- Read models for the embedded default. Money is TEXT (exact decimal strings), time is
-- ISO 8601 UTC text with a fixed format, so it sorts lexicographically.
CREATE TABLE IF NOT EXISTS lg_tracking (
    view TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS lg_audit (
    request_id TEXT PRIMARY KEY,
    aggregate_id TEXT NOT NULL UNIQUE,
    project_id TEXT,
    key_id TEXT,
    actor_id TEXT,
    endpoint TEXT NOT NULL,
    model_requested TEXT,
    model TEXT,
    provider TEXT,
    upstream_model TEXT,
    endpoint_name TEXT,
    stream INTEGER NOT NULL,
    status TEXT NOT NULL,
    http_status INTEGER,
    error_code TEXT,
    error_type TEXT,
    error_message TEXT,
    message_count INTEGER,
    prompt_chars INTEGER,
    prompt_sha256 TEXT,
    completion_chars INTEGER,
    delivered_chunks INTEGER,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cached_tokens INTEGER,
    usage_source TEXT,
    finish_reason TEXT,
    currency TEXT,
    reserved_amount TEXT,
    cost TEXT,
    provider_cost TEXT,
    fee_amount TEXT,
    shortfall_amount TEXT,
    price_id TEXT,
    price_effective_from TEXT,
    input_price_per_mtok TEXT,
    output_price_per_mtok TEXT,
    price_currency TEXT,
    fx_rate TEXT,
    fx_rate_id TEXT,
    fee_rate TEXT,
    key_source TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    trace_id TEXT,
    received_at TEXT NOT NULL,
    deadline_at TEXT NOT NULL,
    admitted_at TEXT,
    dispatched_at TEXT,
    first_chunk_ms INTEGER,
    finished_at TEXT,
    latency_ms INTEGER,
    upstream_ms INTEGER,
    position INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS lg_audit_project_time ON lg_audit (project_id, received_at DESC, request_id DESC);
CREATE INDEX IF NOT EXISTS lg_audit_open ON lg_audit (status, deadline_at);

CREATE TABLE IF NOT EXISTS lg_balances (
    account_id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL UNIQUE,
    currency TEXT NOT NULL,
    credits TEXT NOT NULL,
    posted TEXT NOT NULL,
    pending TEXT NOT NULL,
    available TEXT NOT NULL,
    updated_at TEXT,
    position INTEGER NOT NULL
);
