-- PII decision per request (issue 6): counts and types only, never values.
ALTER TABLE lg_audit ADD COLUMN pii_policy_received INTEGER;
ALTER TABLE lg_audit ADD COLUMN pii_processed INTEGER;
ALTER TABLE lg_audit ADD COLUMN pii_action TEXT;
ALTER TABLE lg_audit ADD COLUMN pii_sensitivity TEXT;
ALTER TABLE lg_audit ADD COLUMN pii_language TEXT;
ALTER TABLE lg_audit ADD COLUMN pii_entity_counts TEXT;
ALTER TABLE lg_audit ADD COLUMN pii_entities_detected INTEGER;
ALTER TABLE lg_audit ADD COLUMN pii_redactions_applied INTEGER;
ALTER TABLE lg_audit ADD COLUMN pii_latency_ms TEXT;
ALTER TABLE lg_audit ADD COLUMN pii_blocked INTEGER;
ALTER TABLE lg_audit ADD COLUMN pii_failure_code TEXT;
