-- Temporary credentials (issue 14): the audit record names the credential (its jti, never the
-- token) a request was made with, from the request's own Request.CredentialUsed event.
ALTER TABLE lg_audit ADD COLUMN credential_id TEXT;
CREATE INDEX IF NOT EXISTS lg_audit_credential ON lg_audit (project_id, credential_id, received_at, request_id);
