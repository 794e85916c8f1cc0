-- Issue 7: the append-only audit log (erasures, retention runs, policy and template changes, refused requests).

CREATE TABLE notify.audit_log (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     timestamptz NOT NULL DEFAULT notify.now(),
    org_id uuid,
    actor  text NOT NULL,
    action text NOT NULL CHECK (action ~ '^[a-z_.]{1,64}$'),
    target text,
    detail jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE notify.audit_log IS
    'append-only record of who changed or erased what (PII masked: e-mails as a***@domain, user ids hashed)';
CREATE INDEX audit_log_org_at ON notify.audit_log (org_id, at);
COMMENT ON INDEX notify.audit_log_org_at IS 'an org admin reads their org''s audit rows, newest first';
ALTER TABLE notify.audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE notify.audit_log FORCE ROW LEVEL SECURITY;

-- The key of the audit hashes: a user id is stored only as sha256(key || id), so the log does not link
-- to a user for anyone who cannot read this row (notify_definer only).
CREATE TABLE notify_private.audit_key (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    key      bytea NOT NULL
        DEFAULT pg_catalog.decode(pg_catalog.replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex')
);
COMMENT ON TABLE notify_private.audit_key IS 'the secret salt of the user-id hashes in notify.audit_log (one row)';
INSERT INTO notify_private.audit_key DEFAULT VALUES;
