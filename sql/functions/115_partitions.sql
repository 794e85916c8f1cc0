-- What stands in for the foreign keys into the partitioned notify.notifications (sql/schema/0021_partitions.sql),
-- and the partitions' upkeep: made ahead by pg_partman, dropped once every row in them is past the largest
-- retention age in force.

-- Idempotency keys are unique per user across every partition in their own table; recorded for the whole
-- statement once its rows are in, so a row the insert trigger skipped or folded records nothing here.
CREATE OR REPLACE FUNCTION notify_private.record_notification_keys() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
BEGIN
    INSERT INTO notify_private.notification_keys (user_id, idempotency_key, notification_id, created_at)
    SELECT n.user_id, n.idempotency_key, n.id, n.created_at
    FROM new_notifications AS n
    WHERE n.idempotency_key IS NOT NULL;
    RETURN NULL;
END
$$;
ALTER FUNCTION notify_private.record_notification_keys() OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.record_notification_keys()
    IS 'records the idempotency keys of new notifications in notify_private.notification_keys (a second use of one: SQLSTATE 23505)';

CREATE OR REPLACE TRIGGER notifications_record_keys AFTER INSERT ON notify.notifications
    REFERENCING NEW TABLE AS new_notifications
    FOR EACH STATEMENT EXECUTE FUNCTION notify_private.record_notification_keys();
COMMENT ON TRIGGER notifications_record_keys ON notify.notifications
    IS 'keeps idempotency keys unique per user across partitions';

-- What ON DELETE CASCADE (deliveries, actions, folds, keys) and SET NULL (analytics) did before 0021.
-- The deliveries' own delete trigger then keeps their events, as it did under the cascade.
CREATE OR REPLACE FUNCTION notify_private.forget_notifications() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
BEGIN
    DELETE FROM notify.notification_deliveries AS d WHERE d.notification_id IN (SELECT g.id FROM gone_notifications AS g);
    DELETE FROM notify.notification_actions AS a WHERE a.notification_id IN (SELECT g.id FROM gone_notifications AS g);
    DELETE FROM notify.notification_folds AS f WHERE f.notification_id IN (SELECT g.id FROM gone_notifications AS g);
    DELETE FROM notify_private.notification_keys AS k
    WHERE (k.user_id, k.idempotency_key) IN (SELECT g.user_id, g.idempotency_key FROM gone_notifications AS g
                                             WHERE g.idempotency_key IS NOT NULL);
    UPDATE notify.notification_analytics AS e SET notification_id = NULL
    WHERE e.notification_id IN (SELECT g.id FROM gone_notifications AS g);
    RETURN NULL;
END
$$;
ALTER FUNCTION notify_private.forget_notifications() OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.forget_notifications()
    IS 'removes the deliveries, actions, folds and idempotency keys of deleted notifications and unlinks their analytics';

CREATE OR REPLACE TRIGGER notifications_forget AFTER DELETE ON notify.notifications
    REFERENCING OLD TABLE AS gone_notifications
    FOR EACH STATEMENT EXECUTE FUNCTION notify_private.forget_notifications();
COMMENT ON TRIGGER notifications_forget ON notify.notifications
    IS 'the cascade of the foreign keys a partitioned notifications table cannot have';

-- The children of the notifications made in [from_at, before_at): as notify_definer, whose policies see every
-- row (the table owner, under FORCE ROW LEVEL SECURITY, sees none unless superuser).
CREATE OR REPLACE FUNCTION notify_private.forget_children(from_at timestamptz, before_at timestamptz) RETURNS jsonb
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    deliveries bigint;
    actions bigint;
    folds bigint;
    keys bigint;
    analytics bigint;
BEGIN
    WITH gone AS (DELETE FROM notify.notification_deliveries AS d USING notify.notifications AS n
                  WHERE n.created_at >= from_at AND n.created_at < before_at AND d.notification_id = n.id
                  RETURNING 1)
    SELECT count(*) INTO deliveries FROM gone;
    WITH gone AS (DELETE FROM notify.notification_actions AS a USING notify.notifications AS n
                  WHERE n.created_at >= from_at AND n.created_at < before_at AND a.notification_id = n.id
                  RETURNING 1)
    SELECT count(*) INTO actions FROM gone;
    WITH gone AS (DELETE FROM notify.notification_folds AS f USING notify.notifications AS n
                  WHERE n.created_at >= from_at AND n.created_at < before_at AND f.notification_id = n.id
                  RETURNING 1)
    SELECT count(*) INTO folds FROM gone;
    WITH gone AS (DELETE FROM notify_private.notification_keys AS k
                  WHERE k.created_at >= from_at AND k.created_at < before_at
                  RETURNING 1)
    SELECT count(*) INTO keys FROM gone;
    WITH unlinked AS (UPDATE notify.notification_analytics AS e SET notification_id = NULL
                      FROM notify.notifications AS n
                      WHERE n.created_at >= from_at AND n.created_at < before_at AND e.notification_id = n.id
                      RETURNING 1)
    SELECT count(*) INTO analytics FROM unlinked;
    RETURN jsonb_build_object('deliveries', deliveries, 'actions', actions, 'folds', folds, 'keys', keys,
                              'analytics_unlinked', analytics);
END
$$;
ALTER FUNCTION notify_private.forget_children(timestamptz, timestamptz) OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.forget_children(timestamptz, timestamptz)
    IS 'removes the deliveries, actions, folds and keys of the notifications made in [from_at, before_at) and unlinks their analytics; the counts';

-- Owned by the owner of notify.notifications (whoever ran migrate), not notify_definer: making and dropping
-- partitions takes the table's owner. The worker calls it every hour; a DBA may call it any time.
CREATE OR REPLACE FUNCTION notify_private.maintain_partitions() RETURNS jsonb
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
    -- The partitions are UTC days (sql/schema/0021_partitions.sql): pg_partman reads bounds in this zone.
    SET TimeZone = 'UTC'
AS $$
DECLARE
    -- Every type's rows are kept for at least their own max_age, so a partition goes only once it is past the
    -- largest: the shorter ages and the per-user read cap stay the bounded DELETEs of notify.apply_retention.
    largest_age constant interval := (SELECT max(p.max_age) FROM notify.retention_policies AS p);
    cutoff constant timestamptz := notify.now() - largest_age;
    made_before integer;
    made_after integer;
    part record;
    dropped text[] := '{}';
    children jsonb := '{}';
    gone jsonb;
BEGIN
    -- One maintainer at a time (the worker's hourly job, a DBA, a second worker).
    IF NOT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('notify_private.maintain_partitions')) THEN
        RETURN jsonb_build_object('skipped', 'another maintenance holds the lock');
    END IF;
    SELECT count(*) INTO made_before FROM partman.show_partitions('notify.notifications');
    PERFORM partman.run_maintenance('notify.notifications', p_jobmon => false);
    SELECT count(*) INTO made_after FROM partman.show_partitions('notify.notifications');
    FOR part IN
        SELECT s.partition_schemaname AS schema_name, s.partition_tablename AS table_name,
               i.child_start_time, i.child_end_time
        FROM partman.show_partitions('notify.notifications') AS s
        CROSS JOIN LATERAL partman.show_partition_info(s.partition_schemaname || '.' || s.partition_tablename,
                                                       p_parent_table => 'notify.notifications') AS i
        WHERE largest_age IS NOT NULL AND i.child_end_time <= cutoff
        ORDER BY i.child_end_time
    LOOP
        -- Its children first, as the foreign keys would have: the partition's rows are still there for the
        -- deliveries' delete trigger, which keeps their events as analytics.
        gone := notify_private.forget_children(part.child_start_time, part.child_end_time);
        children := (SELECT jsonb_object_agg(k, coalesce((children ->> k)::bigint, 0) + (gone ->> k)::bigint)
                     FROM jsonb_object_keys(gone) AS k);
        EXECUTE format('DROP TABLE %I.%I', part.schema_name, part.table_name);
        dropped := dropped || (part.schema_name || '.' || part.table_name);
    END LOOP;
    IF cardinality(dropped) > 0 THEN
        PERFORM notify_private.audit('partitions.dropped',
                                     jsonb_build_object('partitions', dropped, 'before', cutoff, 'children', children));
    END IF;
    RETURN jsonb_build_object('made', made_after - made_before, 'dropped', to_jsonb(dropped),
                              'drop_before', cutoff, 'children', children);
END
$$;
COMMENT ON FUNCTION notify_private.maintain_partitions()
    IS 'makes the partitions of notify.notifications ahead (pg_partman) and drops those past the largest retention age, their children first';
