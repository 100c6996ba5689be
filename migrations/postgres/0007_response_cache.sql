-- The encrypted response cache (gateway/response_cache.py): one row per entry, the lookup
-- id an HMAC keyed by the caller's API key (never stored), the entry AES-256-GCM sealed
-- under a key derived from that API key and the request; nothing here is readable without
-- the key. Bounded (entries, bytes: oldest evicted) and purged on expiry. The audit row
-- says whether a request was served from it, and from which origin request.
CREATE TABLE IF NOT EXISTS lg_response_cache (
    lookup_id TEXT PRIMARY KEY,
    sealed TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS lg_response_cache_expires ON lg_response_cache (expires_at);
CREATE INDEX IF NOT EXISTS lg_response_cache_created ON lg_response_cache (created_at);
ALTER TABLE lg_audit ADD COLUMN cache TEXT;
ALTER TABLE lg_audit ADD COLUMN cache_origin_request_id TEXT;
