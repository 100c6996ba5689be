-- Conversations (issue 12): the thread a request belongs to (X-Conversation-Id or body
-- conversation_id), and indexes for the audit filters that list a thread, a trace, a key's
-- or a provider's requests of one project in time order.
ALTER TABLE lg_audit ADD COLUMN conversation_id TEXT;
CREATE INDEX IF NOT EXISTS lg_audit_conversation ON lg_audit (project_id, conversation_id, received_at, request_id);
CREATE INDEX IF NOT EXISTS lg_audit_trace ON lg_audit (project_id, trace_id, received_at, request_id);
CREATE INDEX IF NOT EXISTS lg_audit_key ON lg_audit (project_id, key_id, received_at, request_id);
