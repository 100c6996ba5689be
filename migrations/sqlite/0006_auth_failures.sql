-- Failed authentications (issue 9): requests refused before any project was known. The
-- presented key is never stored: only its id (a uuid5 of its SHA-256, as for every key).
CREATE TABLE IF NOT EXISTS lg_auth_failures (
    aggregate_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    endpoint TEXT,
    client_ip TEXT,
    key_fingerprint TEXT,
    received_at TEXT NOT NULL,
    error_code TEXT,
    error_message TEXT,
    position INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS lg_auth_failures_position ON lg_auth_failures (position);
CREATE INDEX IF NOT EXISTS lg_auth_failures_client_ip ON lg_auth_failures (client_ip, position);
CREATE INDEX IF NOT EXISTS lg_auth_failures_received_at ON lg_auth_failures (received_at);
