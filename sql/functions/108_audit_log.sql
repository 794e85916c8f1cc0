-- The append-only audit log: what is written (personal data masked or hashed) and what refuses to change it.

CREATE OR REPLACE FUNCTION notify_private.audit_hash(value text) RETURNS text
    LANGUAGE sql STABLE
    SECURITY DEFINER
    SET search_path = ''
AS $$
    -- Lower-cased so that a uuid hashes the same however it was spelt; 16 hex digits is enough to match.
    SELECT 'h:' || pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(
        k.key || pg_catalog.convert_to(pg_catalog.lower(audit_hash.value), 'UTF8')), 'hex'), 16)
    FROM notify_private.audit_key AS k
$$;
ALTER FUNCTION notify_private.audit_hash(text) OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.audit_hash(text) IS 'a keyed hash of a user id for the audit log (h:16 hex digits)';

CREATE OR REPLACE FUNCTION notify_private.mask_pii(value text) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $$
DECLARE
    masked text := pg_catalog.regexp_replace(mask_pii.value,
        '([A-Za-z0-9])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)', '\1***@\2', 'g');
    id text;
BEGIN
    -- Every uuid may be a user id: all of them become keyed hashes (ids of other things lose nothing useful).
    FOR id IN SELECT DISTINCT m[1] FROM pg_catalog.regexp_matches(masked,
        '([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})', 'g') AS m
    LOOP
        masked := pg_catalog.replace(masked, id, notify_private.audit_hash(id));
    END LOOP;
    RETURN masked;
END
$$;
COMMENT ON FUNCTION notify_private.mask_pii(text)
    IS 'the text with e-mail addresses as a***@domain and every uuid as its keyed hash';

CREATE OR REPLACE FUNCTION notify_private.audit(
    action text, detail jsonb DEFAULT '{}', target text DEFAULT NULL, org_id uuid DEFAULT NULL
) RETURNS void
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = ''
AS $$
    -- The actor: the token's sub (a uuid is a person: hashed), else the database role acting.
    INSERT INTO notify.audit_log (org_id, actor, action, target, detail)
    SELECT audit.org_id,
           notify_private.mask_pii(coalesce(notify.current_claims() ->> 'sub',
               nullif(pg_catalog.current_setting('role'), 'none'), session_user::text)),
           audit.action,
           notify_private.mask_pii(audit.target),
           notify_private.mask_pii(coalesce(audit.detail, '{}')::text)::jsonb
$$;
ALTER FUNCTION notify_private.audit(text, jsonb, text, uuid) OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.audit(text, jsonb, text, uuid)
    IS 'appends one audit row (actor from the claims; e-mails and user ids masked)';

CREATE OR REPLACE FUNCTION notify_private.audit_change() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    changed jsonb := pg_catalog.to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END);
BEGIN
    -- Only the columns named by the trigger: template bodies are large and belong to the table's history.
    PERFORM notify_private.audit(
        TG_TABLE_NAME || '.' || pg_catalog.lower(TG_OP),
        (SELECT coalesce(pg_catalog.jsonb_object_agg(c, changed -> c), '{}') FROM pg_catalog.unnest(TG_ARGV) AS c),
        changed ->> 'id',
        (changed ->> 'org_id')::uuid);
    RETURN NULL;
END
$$;
ALTER FUNCTION notify_private.audit_change() OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.audit_change()
    IS 'trigger: audits a change of templates, org policy or retention policies (the columns given as arguments)';

CREATE OR REPLACE TRIGGER notification_templates_audit
    AFTER INSERT OR UPDATE OR DELETE ON notify.notification_templates
    FOR EACH ROW EXECUTE FUNCTION notify_private.audit_change('name', 'type', 'language', 'version', 'is_active');
COMMENT ON TRIGGER notification_templates_audit ON notify.notification_templates IS 'audits every change of a template';
CREATE OR REPLACE TRIGGER org_notification_preferences_audit
    AFTER INSERT OR UPDATE OR DELETE ON notify.org_notification_preferences
    FOR EACH ROW EXECUTE FUNCTION notify_private.audit_change(
        'notification_type', 'push_enabled', 'email_enabled', 'sms_enabled', 'webhook_enabled', 'chat_enabled',
        'digest_frequency', 'push_locked', 'email_locked', 'sms_locked', 'webhook_locked', 'chat_locked',
        'user_webhook_endpoints');
COMMENT ON TRIGGER org_notification_preferences_audit ON notify.org_notification_preferences IS 'audits every change of an org''s defaults and locks';
CREATE OR REPLACE TRIGGER retention_policies_audit
    AFTER INSERT OR UPDATE OR DELETE ON notify.retention_policies
    FOR EACH ROW EXECUTE FUNCTION notify_private.audit_change('notification_type', 'max_age', 'max_read_per_user');
COMMENT ON TRIGGER retention_policies_audit ON notify.retention_policies IS 'audits every change of a retention policy';

CREATE OR REPLACE FUNCTION notify_private.refuse_audit_change() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
COMMENT ON FUNCTION notify_private.refuse_audit_change() IS 'trigger: refuses UPDATE, DELETE and TRUNCATE of notify.audit_log for every role';

-- Grants cannot stop the table owner or a superuser; this trigger does (short of disabling triggers).
CREATE OR REPLACE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON notify.audit_log
    FOR EACH ROW EXECUTE FUNCTION notify_private.refuse_audit_change();
COMMENT ON TRIGGER audit_log_append_only ON notify.audit_log IS 'refuses UPDATE and DELETE of audit rows, for every role';
CREATE OR REPLACE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON notify.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION notify_private.refuse_audit_change();
COMMENT ON TRIGGER audit_log_no_truncate ON notify.audit_log IS 'refuses TRUNCATE of the audit log, for every role';
