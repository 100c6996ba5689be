-- The ledger-entries contract (reconciliation/schema.py) as a read model, plus the recorded
-- provider reconciliations. Money is NUMERIC(38, 9) (internal scale 1e-9), FX NUMERIC(38, 12).
CREATE TABLE IF NOT EXISTS lg_ledger_accounts (
    account_id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    currency TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS lg_ledger_entries (
    position BIGINT PRIMARY KEY,
    entry_id TEXT NOT NULL UNIQUE,
    entry_type TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    project_id TEXT NOT NULL,
    request_id TEXT,
    key_id TEXT,
    actor_id TEXT,
    currency TEXT NOT NULL,
    amount NUMERIC(38, 9) NOT NULL,
    provider TEXT,
    model TEXT,
    upstream_model TEXT,
    input_tokens BIGINT,
    output_tokens BIGINT,
    cached_tokens BIGINT,
    provider_cost NUMERIC(38, 9),
    provider_currency TEXT,
    fx_rate NUMERIC(38, 12),
    fee_amount NUMERIC(38, 9),
    key_source TEXT,
    price_id TEXT,
    fx_rate_id TEXT,
    usage_source TEXT
);
CREATE INDEX IF NOT EXISTS lg_ledger_entries_project_time ON lg_ledger_entries (project_id, occurred_at);
CREATE INDEX IF NOT EXISTS lg_ledger_entries_charges ON lg_ledger_entries (provider, occurred_at) WHERE entry_type = 'charge';

CREATE TABLE IF NOT EXISTS lg_reconciliations (
    reconciliation_id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    month TEXT NOT NULL,
    currency TEXT NOT NULL,
    per_day BOOLEAN NOT NULL,
    status TEXT NOT NULL,
    tolerance NUMERIC(38, 9) NOT NULL,
    relative_tolerance NUMERIC(38, 9) NOT NULL,
    ledger_cost NUMERIC(38, 9) NOT NULL,
    invoice_cost NUMERIC(38, 9) NOT NULL,
    difference NUMERIC(38, 9) NOT NULL,
    lines_by_status TEXT NOT NULL,
    lines TEXT NOT NULL,
    ledger_charges BIGINT NOT NULL,
    ledger_position BIGINT,
    invoice_sha256 TEXT NOT NULL,
    invoice_source TEXT NOT NULL,
    invoice_layout TEXT NOT NULL,
    adjustment_project_id TEXT,
    adjustment_amount NUMERIC(38, 9),
    recorded_at TIMESTAMPTZ NOT NULL,
    position BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS lg_reconciliations_recorded ON lg_reconciliations (recorded_at DESC, reconciliation_id DESC);
