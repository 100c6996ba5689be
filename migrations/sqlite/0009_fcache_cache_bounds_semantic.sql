-- The response cache finished (issue 14, gateway/response_cache.py): which project an entry
-- belongs to (its per-project bound: oldest of the project evicted first), and the semantic
-- cache (gateway/semantic_cache.py): the entry's bucket (an HMAC keyed by the caller's API key
-- or the project's sharing secret; never correlatable with a prompt) and its vector with the
-- key of its answer, AES-256-GCM sealed under the bucket's key. No vector is stored in the
-- clear: a vector reveals its text approximately. A bucket's rows are numbered (bucket_seq)
-- and lg_semantic_buckets counts its inserts and its evictions, so a process holding the
-- bucket's index decrypted in memory sees in one primary-key read whether it is current, and
-- reads only the rows added since (whatever the writers' clocks), or rebuilds after evictions.
ALTER TABLE lg_response_cache ADD COLUMN project_id TEXT NOT NULL DEFAULT '';
ALTER TABLE lg_response_cache ADD COLUMN bucket_id TEXT;
ALTER TABLE lg_response_cache ADD COLUMN bucket_seq INTEGER;
ALTER TABLE lg_response_cache ADD COLUMN sealed_semantic TEXT;
CREATE INDEX IF NOT EXISTS lg_response_cache_project ON lg_response_cache (project_id, created_at);
CREATE INDEX IF NOT EXISTS lg_response_cache_bucket ON lg_response_cache (bucket_id, bucket_seq);
CREATE TABLE IF NOT EXISTS lg_semantic_buckets (
    bucket_id TEXT PRIMARY KEY,
    inserts INTEGER NOT NULL,
    removals INTEGER NOT NULL
);
