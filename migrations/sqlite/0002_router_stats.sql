-- Router statistics (projections/router_stats.py): one row per finished upstream attempt,
-- plus the attempt each in-flight request is on. Money is TEXT (exact decimal strings).
CREATE TABLE IF NOT EXISTS lg_router_attempts (
    request_aggregate_id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    provider TEXT NOT NULL,
    endpoint TEXT,
    attempt INTEGER NOT NULL,
    price_currency TEXT,
    position INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS lg_router_outcomes (
    position INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    request_aggregate_id TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    success INTEGER NOT NULL,
    latency_ms INTEGER,
    cost TEXT,
    currency TEXT,
    error_code TEXT,
    observed_at TEXT NOT NULL,
    PRIMARY KEY (position, attempt)
);
CREATE INDEX IF NOT EXISTS lg_router_outcomes_model ON lg_router_outcomes (model, position);
