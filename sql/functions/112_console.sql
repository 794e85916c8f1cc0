-- What the operator console does to dead letters, many at once: all of them or none, each batch audit-logged.

CREATE OR REPLACE FUNCTION notify_private.named_deliveries(delivery_ids uuid[], action text) RETURNS uuid[]
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = ''
AS $$
DECLARE
    named uuid[] := ARRAY(SELECT DISTINCT u FROM pg_catalog.unnest(named_deliveries.delivery_ids) AS u
                          WHERE u IS NOT NULL);
BEGIN
    IF pg_catalog.cardinality(named) = 0 THEN
        RAISE EXCEPTION 'name at least one delivery to %', named_deliveries.action
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN named;
END
$$;
COMMENT ON FUNCTION notify_private.named_deliveries(uuid[], text)
    IS 'the distinct ids a dead-letter batch names; an error when it names none';

CREATE OR REPLACE FUNCTION notify.retry_deliveries(delivery_ids uuid[]) RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    one uuid;
    wanted uuid[] := notify_private.named_deliveries(retry_deliveries.delivery_ids, 'retry');
BEGIN
    -- notify.retry_delivery refuses a delivery the caller's org may not see, or one that is not a dead
    -- letter: the first refusal rolls back the whole batch.
    FOREACH one IN ARRAY wanted LOOP
        PERFORM notify.retry_delivery(one);
    END LOOP;
    PERFORM notify_private.audit('dead_letters.retried',
        pg_catalog.jsonb_build_object('count', pg_catalog.cardinality(wanted), 'delivery_ids', pg_catalog.to_jsonb(wanted)),
        NULL, notify.current_org_id());
    RETURN pg_catalog.cardinality(wanted);
END
$$;
ALTER FUNCTION notify.retry_deliveries(uuid[]) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.retry_deliveries(uuid[])
    IS 'sends dead letters again (all or none) and writes one audit row for the batch; returns how many';

CREATE OR REPLACE FUNCTION notify.discard_deliveries(delivery_ids uuid[]) RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    wanted uuid[] := notify_private.named_deliveries(discard_deliveries.delivery_ids, 'discard');
    discarded integer;
    missing uuid;
BEGIN
    SELECT u INTO missing FROM pg_catalog.unnest(wanted) AS u
    WHERE NOT EXISTS (SELECT 1 FROM notify.notification_deliveries AS d
                      WHERE d.id = u AND d.status = 'failed' AND notify.in_admin_scope(d.user_id))
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'no dead letter %', missing USING ERRCODE = 'no_data_found',
            HINT = 'only failed deliveries of users the caller administers are discarded';
    END IF;
    -- Cancelled: it leaves the dead letters and is never sent; the provider's last answer stays readable.
    UPDATE notify.notification_deliveries AS d
    SET status = 'cancelled', reason = 'discarded from the dead letters', updated_at = notify.now()
    WHERE d.id = ANY (wanted);
    GET DIAGNOSTICS discarded = ROW_COUNT;
    PERFORM notify_private.audit('dead_letters.discarded',
        pg_catalog.jsonb_build_object('count', discarded, 'delivery_ids', pg_catalog.to_jsonb(wanted)),
        NULL, notify.current_org_id());
    RETURN discarded;
END
$$;
ALTER FUNCTION notify.discard_deliveries(uuid[]) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.discard_deliveries(uuid[])
    IS 'takes dead letters out for good (cancelled, never sent; all or none) and writes one audit row; returns how many';

-- Each process's own figures, reported every few seconds (notifyd.db.figures).

CREATE OR REPLACE FUNCTION notify_private.report_figures(process text, kind text, samples jsonb) RETURNS void
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = ''
AS $$
    INSERT INTO notify.process_figures AS f (process, kind, reported_at, samples)
    VALUES (report_figures.process, report_figures.kind, pg_catalog.now(), report_figures.samples)
    ON CONFLICT (process) DO UPDATE SET reported_at = excluded.reported_at, samples = excluded.samples;
    -- Processes that stopped an hour ago are gone for good (a restart is a new pid, so a new row).
    DELETE FROM notify.process_figures AS f WHERE f.reported_at < pg_catalog.now() - interval '1 hour';
$$;
ALTER FUNCTION notify_private.report_figures(text, text, jsonb) OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.report_figures(text, text, jsonb)
    IS 'stores one process''s latest samples and forgets processes silent for an hour';

-- The console's policy page: a setting or a retention policy changed as the caller, so RLS keeps them to DBAs.

CREATE OR REPLACE FUNCTION notify.set_setting(key text, value jsonb) RETURNS notify.settings
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    changed notify.settings;
BEGIN
    UPDATE notify.settings AS s SET value = set_setting.value WHERE s.key = set_setting.key RETURNING * INTO changed;
    IF FOUND THEN
        RETURN changed;
    END IF;
    -- Every admin reads the settings; only a DBA's update finds the row.
    IF EXISTS (SELECT 1 FROM notify.settings AS s WHERE s.key = set_setting.key) THEN
        RAISE EXCEPTION 'only a DBA changes the settings' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RAISE EXCEPTION 'no setting %', set_setting.key USING ERRCODE = 'no_data_found',
        HINT = 'the settings are the rows of notify.settings';
END
$$;
COMMENT ON FUNCTION notify.set_setting(text, jsonb)
    IS 'changes one setting as the caller (a DBA; the settings_check trigger refuses a value its kind cannot read)';

CREATE OR REPLACE FUNCTION notify.set_retention(notification_type text, max_age interval, max_read_per_user integer)
    RETURNS notify.retention_policies
    LANGUAGE sql
    SET search_path = ''
AS $$
    -- As the caller: the policy "DBAs manage the retention policies" refuses anyone else (42501).
    INSERT INTO notify.retention_policies AS r (notification_type, max_age, max_read_per_user)
    VALUES (set_retention.notification_type, set_retention.max_age, set_retention.max_read_per_user)
    ON CONFLICT (notification_type)
        DO UPDATE SET max_age = excluded.max_age, max_read_per_user = excluded.max_read_per_user
    RETURNING *
$$;
COMMENT ON FUNCTION notify.set_retention(text, interval, integer)
    IS 'sets how long a type''s notifications are kept (NULL type: the default) as the caller (a DBA; audited)';
