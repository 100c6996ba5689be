-- Usage an upstream reported beyond what the request could produce (domain/usage.py): the
-- problems found, flagged for reconciliation; and a sweep's charge corrected to real usage.
ALTER TABLE lg_audit ADD COLUMN usage_flag TEXT;
ALTER TABLE lg_audit ADD COLUMN sweep_corrected INTEGER;
