-- Removing data: retention (notify.apply_retention) and GDPR erasure (notify.erase_user); both write the
-- audit log of 108_audit_log.sql.

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
                                'email_digests', 'notifications', 'push_subscriptions', 'webhook_endpoints',
                                'chat_connections', 'notification_preferences', 'rate_buckets', 'topic_subscriptions',
                                'recipients'] LOOP
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
