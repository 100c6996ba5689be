-- Usage per day x project x model x provider x key x actor (x key source, price currency),
-- and the history of every price and FX rate ever set, each with the event that set it.
-- Money is NUMERIC(38, 9), FX rates NUMERIC(38, 12), days DATE, instants TIMESTAMPTZ.
CREATE TABLE IF NOT EXISTS lg_usage_accounts (
    account_id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    currency TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS lg_usage (
    day DATE NOT NULL,
    project_id TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT NOT NULL,
    key_id TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    key_source TEXT NOT NULL,
    provider_currency TEXT NOT NULL,
    currency TEXT NOT NULL,
    requests BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    cost NUMERIC(38, 9) NOT NULL,
    provider_cost NUMERIC(38, 9) NOT NULL,
    fee_amount NUMERIC(38, 9) NOT NULL,
    shortfall_amount NUMERIC(38, 9) NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (project_id, day, model, provider, key_id, actor_id, key_source, provider_currency)
);

CREATE TABLE IF NOT EXISTS lg_pricing_books (
    book_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    model TEXT,
    base TEXT,
    quote TEXT
);

CREATE TABLE IF NOT EXISTS lg_pricing_history (
    event_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    entry_id TEXT NOT NULL,
    model TEXT,
    base TEXT,
    quote TEXT,
    currency TEXT,
    input_per_mtok NUMERIC(38, 9),
    output_per_mtok NUMERIC(38, 9),
    cached_input_per_mtok NUMERIC(38, 9),
    rate NUMERIC(38, 12),
    effective_from TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    source TEXT,
    position BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS lg_pricing_history_model ON lg_pricing_history (kind, model, effective_from);
CREATE INDEX IF NOT EXISTS lg_pricing_history_pair ON lg_pricing_history (kind, base, quote, effective_from);
CREATE INDEX IF NOT EXISTS lg_pricing_history_entry ON lg_pricing_history (entry_id);
