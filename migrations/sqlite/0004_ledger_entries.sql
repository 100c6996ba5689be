-- The ledger-entries contract (reconciliation/schema.py) as a read model, plus the recorded
-- provider reconciliations. Money is TEXT (exact decimal strings), time is fixed-width ISO
-- 8601 UTC text, so it sorts lexicographically.
CREATE TABLE IF NOT EXISTS lg_ledger_accounts (
    account_id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    currency TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS lg_ledger_entries (
    position INTEGER PRIMARY KEY,
    entry_id TEXT NOT NULL UNIQUE,
    entry_type TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    project_id TEXT NOT NULL,
    request_id TEXT,
    key_id TEXT,
    actor_id TEXT,
    currency TEXT NOT NULL,
    amount TEXT NOT NULL,
    provider TEXT,
    model TEXT,
    upstream_model TEXT,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cached_tokens INTEGER,
    provider_cost TEXT,
    provider_currency TEXT,
    fx_rate TEXT,
    fee_amount TEXT,
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
    per_day INTEGER NOT NULL,
    status TEXT NOT NULL,
    tolerance TEXT NOT NULL,
    relative_tolerance TEXT NOT NULL,
    ledger_cost TEXT NOT NULL,
    invoice_cost TEXT NOT NULL,
    difference TEXT NOT NULL,
    lines_by_status TEXT NOT NULL,
    lines TEXT NOT NULL,
    ledger_charges INTEGER NOT NULL,
    ledger_position INTEGER,
    invoice_sha256 TEXT NOT NULL,
    invoice_source TEXT NOT NULL,
    invoice_layout TEXT NOT NULL,
    adjustment_project_id TEXT,
    adjustment_amount TEXT,
    recorded_at TEXT NOT NULL,
    position INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS lg_reconciliations_recorded ON lg_reconciliations (recorded_at DESC, reconciliation_id DESC);
