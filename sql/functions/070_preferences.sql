-- A user's preferences (per channel, digest frequency and quiet hours, per type and global), in SQL.
--
-- A user reads what is in force for them (notify.preferences) and changes their row for one type
-- (notify.set_preference) or their global row (notify.set_global_preferences); an org admin's side
-- (defaults and locks) is 072_org_policy.sql. notifyd's REST routes call exactly these.
--
-- The rules:
--   * What is in force is what the planner uses: push, e-mail, SMS, webhook, chat and digest frequency come from
--     notify_private.effective_preferences; quiet hours from the user's most specific row (the row
--     for the type, else the global row), as the quiet-hours rules pick it; digest time and day from
--     the type's row, else the global row, else the digest.default_* settings.
--   * A change names only the keys it changes. A row that does not exist yet leaves the switches it is
--     not given inherited and starts from the user's global row (digest, quiet hours), so nothing else moves.
--   * The webhook and chat switches decide the deliveries made for the user: to their own endpoints and
--     connections and to their org's.
--   * In-app is always on, the one channel a user cannot lose: in_app_enabled false is refused.
--   * A channel an org admin locked for the type (on the type's org row or the org's global row) is
--     the org's call: a different value is refused with a message naming the lock; the same value
--     is accepted and changes nothing, so the user's own choice is back when the lock is lifted.
--   * Errors: class 22 for a bad key or value, class 23 (check_violation) for what a rule refuses,
--     42501 when the claims name no user, P0002 (no_data_found) for an org outside an org admin's scope.

CREATE OR REPLACE FUNCTION notify_private.preference_keys(kind text) RETURNS jsonb
    LANGUAGE sql IMMUTABLE
    SET search_path = ''
AS $$
    -- The keys callers use, each with the column it writes.
    SELECT CASE preference_keys.kind
        WHEN 'type' THEN jsonb_build_object(
            'push_enabled', 'push_enabled', 'email_enabled', 'email_enabled', 'in_app_enabled', 'in_app_enabled',
            'sms_enabled', 'sms_enabled', 'webhook_enabled', 'webhook_enabled', 'chat_enabled', 'chat_enabled',
            'digest_frequency', 'digest_frequency', 'digest_time', 'digest_time', 'digest_day', 'digest_day',
            'quiet_hours_start', 'quiet_hours_start', 'quiet_hours_end', 'quiet_hours_end',
            'quiet_hours_days', 'quiet_hours_days', 'quiet_hours_windows', 'quiet_hours_windows')
        WHEN 'global' THEN jsonb_build_object(
            'all_push_enabled', 'push_enabled', 'all_email_enabled', 'email_enabled', 'all_sms_enabled', 'sms_enabled',
            'all_webhook_enabled', 'webhook_enabled', 'all_chat_enabled', 'chat_enabled',
            'default_digest_frequency', 'digest_frequency', 'default_digest_time', 'digest_time',
            'default_digest_day', 'digest_day',
            'quiet_hours_start', 'quiet_hours_start', 'quiet_hours_end', 'quiet_hours_end',
            'quiet_hours_days', 'quiet_hours_days', 'quiet_hours_windows', 'quiet_hours_windows')
        WHEN 'org' THEN jsonb_build_object(
            'push_enabled', 'push_enabled', 'email_enabled', 'email_enabled', 'sms_enabled', 'sms_enabled',
            'webhook_enabled', 'webhook_enabled', 'chat_enabled', 'chat_enabled', 'digest_frequency', 'digest_frequency',
            'push_locked', 'push_locked', 'email_locked', 'email_locked', 'sms_locked', 'sms_locked',
            'webhook_locked', 'webhook_locked', 'chat_locked', 'chat_locked',
            'user_webhook_endpoints', 'user_webhook_endpoints')
    END
$$;
COMMENT ON FUNCTION notify_private.preference_keys(text)
    IS 'the keys of a user''s type row (type), global row (global) or an org row (org), each mapped to its column';

CREATE OR REPLACE FUNCTION notify_private.preference_changes(changes jsonb, kind text) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = ''
AS $$
DECLARE
    keys constant jsonb := notify_private.preference_keys(preference_changes.kind);
    -- NULL means "not set here": inherit (digest, org defaults) or no quiet hours.
    nullable constant text[] := CASE preference_changes.kind
        WHEN 'org' THEN ARRAY['push_enabled', 'email_enabled', 'sms_enabled', 'webhook_enabled', 'chat_enabled',
                              'digest_frequency', 'user_webhook_endpoints']
        ELSE ARRAY['digest_frequency', 'digest_time', 'digest_day', 'quiet_hours_start', 'quiet_hours_end'] END;
    change record;
    column_name text;
    normalized jsonb;
    columns jsonb := '{}';
BEGIN
    IF pg_catalog.jsonb_typeof(preference_changes.changes) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'changes must be a JSON object such as {"push_enabled": false}, got %',
            coalesce(preference_changes.changes::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR change IN SELECT c.key, c.value FROM pg_catalog.jsonb_each(preference_changes.changes) AS c ORDER BY c.key LOOP
        column_name := keys ->> change.key;
        normalized := change.value;
        IF column_name IS NULL THEN
            RAISE EXCEPTION 'unknown preference "%": the keys are %', change.key,
                (SELECT pg_catalog.string_agg(k, ', ' ORDER BY k) FROM pg_catalog.jsonb_object_keys(keys) AS k)
                USING ERRCODE = 'invalid_parameter_value';
        ELSIF change.value = 'null' THEN
            IF NOT column_name = ANY (nullable) THEN
                RAISE EXCEPTION '% cannot be null', change.key USING ERRCODE = 'null_value_not_allowed';
            END IF;
        ELSIF column_name LIKE '%\_enabled' OR column_name LIKE '%\_locked' OR column_name = 'user_webhook_endpoints' THEN
            IF pg_catalog.jsonb_typeof(change.value) <> 'boolean' THEN
                RAISE EXCEPTION '% must be true or false, got %', change.key, change.value
                    USING ERRCODE = 'invalid_parameter_value';
            ELSIF column_name = 'in_app_enabled' AND change.value = 'false' THEN
                RAISE EXCEPTION 'in_app_enabled cannot be false: in-app notifications are always on (turn push or e-mail off instead)'
                    USING ERRCODE = 'check_violation';
            END IF;
        ELSIF column_name = 'digest_frequency' THEN
            IF change.value #>> '{}' NOT IN ('instant', 'daily', 'weekly', 'never')
               OR pg_catalog.jsonb_typeof(change.value) <> 'string' THEN
                RAISE EXCEPTION '% must be instant, daily, weekly or never, got %', change.key, change.value
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        ELSIF column_name IN ('digest_time', 'quiet_hours_start', 'quiet_hours_end') THEN
            IF pg_catalog.jsonb_typeof(change.value) <> 'string'
               OR change.value #>> '{}' !~ '^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$' THEN
                RAISE EXCEPTION '% must be a time of day "HH:MM" or "HH:MM:SS" from 00:00 to 23:59:59, got %',
                    change.key, change.value USING ERRCODE = 'invalid_datetime_format';
            END IF;
            normalized := pg_catalog.to_jsonb((change.value #>> '{}')::time::text);
        ELSIF column_name = 'digest_day' THEN
            IF change.value::text !~ '^[1-7]$' THEN
                RAISE EXCEPTION '% must be an ISO weekday from 1 (Monday) to 7 (Sunday), got %', change.key, change.value
                    USING ERRCODE = 'numeric_value_out_of_range';
            END IF;
        END IF;
        -- quiet_hours_days and quiet_hours_windows: the quiet-hours trigger checks them, naming the field.
        columns := columns || pg_catalog.jsonb_build_object(column_name, normalized);
    END LOOP;
    RETURN columns;
END
$$;
COMMENT ON FUNCTION notify_private.preference_changes(jsonb, text)
    IS 'checks a change object''s keys and values (clear class-22/23 errors) and returns {column: value}';

CREATE OR REPLACE FUNCTION notify_private.org_locks(user_id uuid, type text) RETURNS text[]
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    -- Like effective_preferences: a lock on the type's org row or on the org's global row holds.
    SELECT pg_catalog.array_remove(ARRAY[CASE WHEN pg_catalog.bool_or(o.push_locked) THEN 'push' END,
                                         CASE WHEN pg_catalog.bool_or(o.email_locked) THEN 'email' END,
                                         CASE WHEN pg_catalog.bool_or(o.sms_locked) THEN 'sms' END,
                                         CASE WHEN pg_catalog.bool_or(o.webhook_locked) THEN 'webhook' END,
                                         CASE WHEN pg_catalog.bool_or(o.chat_locked) THEN 'chat' END], NULL)
    FROM notify.org_notification_preferences AS o
    JOIN notify.recipients AS r ON r.org_id = o.org_id
    WHERE r.user_id = org_locks.user_id
      AND (o.notification_type = org_locks.type OR o.notification_type IS NULL)
$$;
COMMENT ON FUNCTION notify_private.org_locks(uuid, text)
    IS 'the channels (push, email, sms, webhook, chat) the user''s org admin locked for a type (NULL: for every type)';

CREATE OR REPLACE FUNCTION notify_private.preference_item(user_id uuid, type text) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'notification_type', preference_item.type,
        'push_enabled', e.push_enabled,
        'email_enabled', e.email_enabled,
        'in_app_enabled', true,
        'sms_enabled', e.sms_enabled,
        'webhook_enabled', e.webhook_enabled,
        'chat_enabled', e.chat_enabled,
        'digest_frequency', e.digest_frequency,
        'digest_time',
            coalesce(p.digest_time, g.digest_time, (notify.setting('digest.default_time') #>> '{}')::time)::text,
        'digest_day', coalesce(p.digest_day, g.digest_day, notify.setting('digest.default_weekday')::integer),
        'quiet_hours_start', p.quiet_hours_start::text,
        'quiet_hours_end', p.quiet_hours_end::text,
        'quiet_hours_days', coalesce(p.quiet_hours_days, '[1, 2, 3, 4, 5]'),
        'quiet_hours_windows', coalesce(p.quiet_hours_windows, '[]'),
        'locked', pg_catalog.to_jsonb(notify_private.org_locks(preference_item.user_id, preference_item.type)),
        'customized', p.id IS NOT NULL AND p.notification_type IS NOT DISTINCT FROM preference_item.type,
        'updated_at', CASE WHEN p.notification_type IS NOT DISTINCT FROM preference_item.type THEN p.updated_at END)
    FROM notify_private.effective_preferences(preference_item.user_id, preference_item.type) AS e
    LEFT JOIN LATERAL (
        SELECT x.* FROM notify.notification_preferences AS x
        WHERE x.user_id = preference_item.user_id
          AND (x.notification_type = preference_item.type OR x.notification_type IS NULL)
        ORDER BY x.notification_type NULLS LAST
        LIMIT 1
    ) AS p ON true
    -- A digest time or day the type's row leaves NULL is the global row's.
    LEFT JOIN notify.notification_preferences AS g
        ON g.user_id = preference_item.user_id AND g.notification_type IS NULL
$$;
COMMENT ON FUNCTION notify_private.preference_item(uuid, text)
    IS 'what is in force for a user and type (NULL: the global level), the org''s locks, whether the user set it';

CREATE OR REPLACE FUNCTION notify_private.global_preferences(user_id uuid) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    SELECT pg_catalog.jsonb_object_agg(k.key, g.item -> k.column_name)
           || pg_catalog.jsonb_build_object('locked', g.item -> 'locked', 'customized', g.item -> 'customized',
                                            'updated_at', g.item -> 'updated_at',
                                            'timezone', coalesce(r.timezone, 'UTC'))
    FROM (SELECT notify_private.preference_item(global_preferences.user_id, NULL) AS item) AS g
    CROSS JOIN pg_catalog.jsonb_each_text(notify_private.preference_keys('global')) AS k(key, column_name)
    LEFT JOIN notify.recipients AS r ON r.user_id = global_preferences.user_id
    GROUP BY g.item, r.timezone
$$;
COMMENT ON FUNCTION notify_private.global_preferences(uuid)
    IS 'the user''s global switches under their API names (all_push_enabled, default_digest_time, ...) and time zone';

CREATE OR REPLACE FUNCTION notify_private.save_preferences(user_id uuid, type text, changes jsonb) RETURNS void
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    columns jsonb := notify_private.preference_changes(
        save_preferences.changes, CASE WHEN save_preferences.type IS NULL THEN 'global' ELSE 'type' END);
    locked constant text[] := notify_private.org_locks(save_preferences.user_id, save_preferences.type);
    in_force jsonb;
    channel text;
    lock_value boolean;
BEGIN
    SELECT pg_catalog.to_jsonb(e) INTO in_force
    FROM notify_private.effective_preferences(save_preferences.user_id, save_preferences.type) AS e;
    FOREACH channel IN ARRAY locked LOOP
        lock_value := (in_force ->> (channel || '_enabled'))::boolean;
        IF columns -> (channel || '_enabled') = pg_catalog.to_jsonb(NOT lock_value) THEN
            RAISE EXCEPTION '%', pg_catalog.format('%s is locked %s by your organization''s admin %s',
                CASE channel WHEN 'email' THEN 'e-mail' WHEN 'sms' THEN 'SMS' ELSE channel END,
                CASE WHEN lock_value THEN 'on' ELSE 'off' END,
                coalesce('for ' || save_preferences.type || ' notifications', 'for every notification type'))
                USING ERRCODE = 'check_violation',
                      HINT = 'notify.preferences() lists the locked channels of each type under "locked"';
        END IF;
        -- The lock decides while it lasts; the user's own choice stays as it was.
        columns := columns - (channel || '_enabled');
    END LOOP;
    IF columns = '{}' THEN
        RETURN;
    END IF;
    -- Rows reference the recipient: a user may set preferences before anything was sent to them.
    INSERT INTO notify.recipients (user_id) VALUES (save_preferences.user_id) ON CONFLICT DO NOTHING;
    -- A new row leaves the switches unset (inherited: user global, org, default) and keeps the
    -- user's global quiet hours and digest times, which a row replaces as a whole.
    INSERT INTO notify.notification_preferences AS p
        (user_id, notification_type, digest_time, digest_day,
         quiet_hours_start, quiet_hours_end, quiet_hours_days, quiet_hours_windows)
    SELECT save_preferences.user_id, save_preferences.type,
           g.digest_time, g.digest_day, g.quiet_hours_start, g.quiet_hours_end,
           coalesce(g.quiet_hours_days, '[1, 2, 3, 4, 5]'), coalesce(g.quiet_hours_windows, '[]')
    FROM (SELECT 1) AS one
    LEFT JOIN notify.notification_preferences AS g
        ON g.user_id = save_preferences.user_id AND g.notification_type IS NULL
    ON CONFLICT ON CONSTRAINT notification_preferences_user_id_notification_type_key DO NOTHING;
    UPDATE notify.notification_preferences AS p
    SET (push_enabled, email_enabled, in_app_enabled, sms_enabled, webhook_enabled, chat_enabled, digest_frequency,
         digest_time, digest_day, quiet_hours_start, quiet_hours_end, quiet_hours_days, quiet_hours_windows)
        = (SELECT c.push_enabled, c.email_enabled, c.in_app_enabled, c.sms_enabled, c.webhook_enabled, c.chat_enabled,
                  c.digest_frequency, c.digest_time, c.digest_day,
                  c.quiet_hours_start, c.quiet_hours_end, c.quiet_hours_days, c.quiet_hours_windows
           FROM pg_catalog.jsonb_populate_record(p, columns) AS c),
        updated_at = notify.now()
    WHERE p.user_id = save_preferences.user_id AND p.notification_type IS NOT DISTINCT FROM save_preferences.type;
END
$$;
COMMENT ON FUNCTION notify_private.save_preferences(uuid, text, jsonb)
    IS 'applies checked changes to a user''s row for a type (NULL: the global row); what it does not set stays inherited';

CREATE OR REPLACE FUNCTION notify_private.require_user() RETURNS uuid
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $$
BEGIN
    IF notify.current_user_id() IS NULL THEN
        RAISE EXCEPTION 'preferences belong to the calling user: request.jwt.claims has no user sub'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'a DBA acts for a user with SET ROLE notify_authenticated and that user''s sub claim';
    END IF;
    RETURN notify.current_user_id();
END
$$;
COMMENT ON FUNCTION notify_private.require_user() IS 'the calling end user, or a clear error when the claims name none';

-- The user's side. SECURITY DEFINER because a user may not call the planner's
-- notify_private.effective_preferences, nor create their own recipient row; each reads and
-- writes only the caller's own rows (notify.current_user_id()).

CREATE OR REPLACE FUNCTION notify.preferences() RETURNS jsonb
    LANGUAGE sql STABLE
    SECURITY DEFINER
    SET search_path = ''
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'items', (SELECT pg_catalog.jsonb_agg(notify_private.preference_item(me.id, t.name) ORDER BY t.name)
                  FROM notify.notification_types AS t),
        'global', notify_private.global_preferences(me.id))
    FROM (SELECT notify_private.require_user() AS id) AS me
$$;
ALTER FUNCTION notify.preferences() OWNER TO notify_definer;
COMMENT ON FUNCTION notify.preferences()
    IS 'the caller''s preferences in force: {"items": [one per type], "global": {...}}, with the channels their org locked';

CREATE OR REPLACE FUNCTION notify.set_preference(type text, changes jsonb) RETURNS jsonb
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    me constant uuid := notify_private.require_user();
BEGIN
    IF set_preference.type IS NULL THEN
        RAISE EXCEPTION 'type cannot be null: notify.set_global_preferences changes the global switches'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM notify.require_type(set_preference.type);
    PERFORM notify_private.save_preferences(me, set_preference.type, set_preference.changes);
    RETURN notify_private.preference_item(me, set_preference.type);
END
$$;
ALTER FUNCTION notify.set_preference(text, jsonb) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.set_preference(text, jsonb)
    IS 'changes the caller''s preferences for one type (only the keys given); returns the type''s item as in force';

CREATE OR REPLACE FUNCTION notify.set_global_preferences(changes jsonb) RETURNS jsonb
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    me constant uuid := notify_private.require_user();
    switches jsonb := set_global_preferences.changes;
    zone jsonb;
BEGIN
    -- The time zone is the recipient's (digests and quiet hours read it there), not a preference column.
    IF pg_catalog.jsonb_typeof(switches) = 'object' AND switches ? 'timezone' THEN
        zone := switches -> 'timezone';
        switches := switches - 'timezone';
        IF pg_catalog.jsonb_typeof(zone) <> 'string' THEN
            RAISE EXCEPTION 'timezone must be an IANA time zone name such as "Europe/Berlin", got %', zone
                USING ERRCODE = 'invalid_parameter_value', COLUMN = 'timezone';
        END IF;
        -- prepare_recipient refuses a zone pg_timezone_names does not know.
        INSERT INTO notify.recipients (user_id, timezone) VALUES (me, zone #>> '{}')
        ON CONFLICT (user_id) DO UPDATE SET timezone = EXCLUDED.timezone;
    END IF;
    PERFORM notify_private.save_preferences(me, NULL, switches);
    RETURN notify_private.global_preferences(me);
END
$$;
ALTER FUNCTION notify.set_global_preferences(jsonb) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.set_global_preferences(jsonb)
    IS 'changes the caller''s global switches (all_push_enabled, default_digest_time, quiet hours, ...) and time zone; returns them';
