-- Retention (notify.apply_retention), GDPR erasure (notify.erase_user) and the append-only audit log.

-- ---------------------------------------------------------------------------------------------------
-- Audit log: masking and writing
-- ---------------------------------------------------------------------------------------------------

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
CREATE OR REPLACE TRIGGER org_notification_preferences_audit
    AFTER INSERT OR UPDATE OR DELETE ON notify.org_notification_preferences
    FOR EACH ROW EXECUTE FUNCTION notify_private.audit_change(
        'notification_type', 'push_enabled', 'email_enabled', 'digest_frequency', 'push_locked', 'email_locked');
CREATE OR REPLACE TRIGGER retention_policies_audit
    AFTER INSERT OR UPDATE OR DELETE ON notify.retention_policies
    FOR EACH ROW EXECUTE FUNCTION notify_private.audit_change('notification_type', 'max_age', 'max_read_per_user');

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
CREATE OR REPLACE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON notify.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION notify_private.refuse_audit_change();

-- ---------------------------------------------------------------------------------------------------
-- Retention
-- ---------------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION notify_private.retention_batch(kind text, batch_size integer)
    RETURNS TABLE (type text, removed bigint)
    LANGUAGE sql
    SET search_path = ''
AS $$
    -- The policy of a notification: its type's row, else the default row (NULL type); none: kept.
    WITH governed AS (
        SELECT n.id, n.user_id, n.created_at, n.read_at, n.expires_at, p.id AS policy_id, p.max_age,
               p.max_read_per_user
        FROM notify.notifications AS n
        JOIN LATERAL (SELECT rp.id, rp.max_age, rp.max_read_per_user FROM notify.retention_policies AS rp
                      WHERE rp.notification_type = n.type OR rp.notification_type IS NULL
                      ORDER BY rp.notification_type NULLS LAST LIMIT 1) AS p ON true
    ),
    candidates AS (
        SELECT g.id FROM notify.notifications AS g
        WHERE retention_batch.kind = 'expired' AND g.expires_at <= notify.now()
        UNION ALL
        SELECT g.id FROM governed AS g
        WHERE retention_batch.kind = 'too_old' AND g.created_at < notify.now() - g.max_age
        UNION ALL
        -- Unread notifications are never capped; the newest read ones (by creation) are kept.
        SELECT r.id FROM (
            SELECT g.id, g.max_read_per_user,
                   pg_catalog.row_number() OVER (PARTITION BY g.user_id, g.policy_id
                                                 ORDER BY g.created_at DESC, g.id DESC) AS rank
            FROM governed AS g WHERE retention_batch.kind = 'over_cap' AND g.read_at IS NOT NULL
        ) AS r
        WHERE r.rank > r.max_read_per_user
    ),
    doomed AS (
        SELECT n.id FROM notify.notifications AS n WHERE n.id IN (SELECT c.id FROM candidates AS c)
        LIMIT retention_batch.batch_size
        FOR UPDATE SKIP LOCKED
    ),
    gone AS (
        DELETE FROM notify.notifications AS n USING doomed WHERE n.id = doomed.id RETURNING n.type
    )
    SELECT gone.type, pg_catalog.count(*) FROM gone GROUP BY gone.type
$$;
COMMENT ON FUNCTION notify_private.retention_batch(text, integer)
    IS 'deletes up to batch_size notifications that are expired, too_old or over_cap; counts per type';

CREATE OR REPLACE FUNCTION notify.apply_retention(batch_size integer DEFAULT 1000, max_batches integer DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    result jsonb := '{"expired": 0, "too_old": 0, "over_cap": 0, "webhook_events": 0, "by_type": {}}';
    kind text;
    batches integer := 0;
    removed bigint;
    per_type record;
BEGIN
    IF notify.current_org_id() IS NOT NULL THEN
        RAISE EXCEPTION 'retention is applied by the worker or a DBA, not by an org admin'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF apply_retention.batch_size IS NULL OR apply_retention.batch_size < 1
       OR apply_retention.max_batches < 1 THEN
        RAISE EXCEPTION 'batch_size and max_batches must be at least 1'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Expired first, then by age, then the cap: the cap counts only what survives the other two.
    FOREACH kind IN ARRAY ARRAY['expired', 'too_old', 'over_cap', 'webhook_events'] LOOP
        LOOP
            IF batches = apply_retention.max_batches THEN
                RETURN notify_private.retention_done(result || jsonb_build_object('batches', batches, 'done', false));
            END IF;
            IF kind = 'webhook_events' THEN
                -- Redeliveries of a provider event come within minutes; 30 days of ids is plenty.
                WITH doomed AS (
                    SELECT w.provider, w.event_id FROM notify.webhook_events AS w
                    WHERE w.received_at < notify.now() - interval '30 days'
                    LIMIT apply_retention.batch_size
                ), gone AS (
                    DELETE FROM notify.webhook_events AS w USING doomed
                    WHERE (w.provider, w.event_id) = (doomed.provider, doomed.event_id) RETURNING 1
                )
                SELECT pg_catalog.count(*) INTO removed FROM gone;
            ELSE
                removed := 0;
                FOR per_type IN SELECT * FROM notify_private.retention_batch(kind, apply_retention.batch_size) LOOP
                    removed := removed + per_type.removed;
                    result := jsonb_set(result, ARRAY['by_type', per_type.type],
                        to_jsonb(coalesce((result #>> ARRAY['by_type', per_type.type])::bigint, 0) + per_type.removed));
                END LOOP;
            END IF;
            result := jsonb_set(result, ARRAY[kind], to_jsonb((result ->> kind)::bigint + removed));
            -- A statement that found nothing is not a batch: max_batches => 1 still removes something.
            batches := batches + (removed > 0)::integer;
            EXIT WHEN removed < apply_retention.batch_size;
        END LOOP;
    END LOOP;
    RETURN notify_private.retention_done(result || jsonb_build_object('batches', batches, 'done', true));
END
$$;
ALTER FUNCTION notify.apply_retention(integer, integer) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.apply_retention(integer, integer) IS
    'deletes expired, too old and over-cap notifications (and 30-day-old webhook ids) in batches; returns the counts';

CREATE OR REPLACE FUNCTION notify_private.retention_done(result jsonb) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
BEGIN
    -- A run that removed nothing leaves no audit row (the nightly job would otherwise fill the log).
    IF (result ->> 'expired')::bigint + (result ->> 'too_old')::bigint + (result ->> 'over_cap')::bigint
       + (result ->> 'webhook_events')::bigint > 0 THEN
        PERFORM notify_private.audit('retention.applied', result);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION notify_private.retention_done(jsonb) IS 'audits a retention run that removed anything; returns its counts';

-- ---------------------------------------------------------------------------------------------------
-- GDPR erasure
-- ---------------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION notify.erase_user(user_id uuid) RETURNS jsonb
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    person record;
    counts jsonb := '{}';
    tbl text;
    removed bigint;
BEGIN
    SELECT r.org_id, r.email INTO person FROM notify.recipients AS r
    WHERE r.user_id = erase_user.user_id AND notify.in_admin_scope(r.user_id)
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user not found' USING ERRCODE = 'no_data_found';
    END IF;
    -- Analytics keep their counts but lose the person: no user, device, notification or provider detail.
    WITH anonymized AS (
        UPDATE notify.notification_analytics AS a
        SET user_id = NULL, device_id = NULL, notification_id = NULL, metadata = '{}'
        WHERE a.user_id = erase_user.user_id
           OR a.notification_id IN (SELECT n.id FROM notify.notifications AS n WHERE n.user_id = erase_user.user_id)
        RETURNING 1
    )
    SELECT pg_catalog.count(*) INTO removed FROM anonymized;
    counts := counts || jsonb_build_object('notification_analytics', removed);
    -- Children before parents so that every table's count is its own (the cascades would find nothing).
    FOREACH tbl IN ARRAY ARRAY['notification_actions', 'notification_folds', 'notification_deliveries',
                                'email_digests', 'notifications', 'push_subscriptions',
                                'notification_preferences', 'rate_buckets', 'recipients'] LOOP
        EXECUTE pg_catalog.format(
            'WITH gone AS (DELETE FROM notify.%I AS t WHERE t.user_id = $1 RETURNING 1) SELECT count(*) FROM gone', tbl)
            INTO removed USING erase_user.user_id;
        counts := counts || jsonb_build_object(tbl, removed);
    END LOOP;
    -- A suppression is deleted rather than kept as a hash: the planner matches addresses, not hashes, and
    -- the provider keeps its own suppression list for bounces and complaints.
    WITH gone AS (
        DELETE FROM notify.email_suppressions AS s WHERE pg_catalog.lower(s.email) = pg_catalog.lower(person.email)
        RETURNING 1
    )
    SELECT pg_catalog.count(*) INTO removed FROM gone;
    counts := counts || jsonb_build_object('email_suppressions', removed);
    WITH renamed AS (
        UPDATE notify.notification_batches AS b SET created_by = 'erased user'
        WHERE b.created_by = erase_user.user_id::text RETURNING 1
    )
    SELECT pg_catalog.count(*) INTO removed FROM renamed;
    counts := counts || jsonb_build_object('notification_batches', removed);
    PERFORM notify_private.audit('user.erased', counts, erase_user.user_id::text, person.org_id);
    RETURN counts;
END
$$;
ALTER FUNCTION notify.erase_user(uuid) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.erase_user(uuid)
    IS 'GDPR erasure: deletes everything of a user (analytics anonymized) in one transaction; counts per table';
