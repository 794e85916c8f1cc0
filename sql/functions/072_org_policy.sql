-- An org's policy: the defaults and locks an org admin sets for the org's users (the rules of
-- 070_preferences.sql say how a lock binds a user), and the org's delivery figures. Run as the caller
-- (notify_admin), so RLS keeps an org admin to their org.

CREATE OR REPLACE FUNCTION notify_private.require_org(org_id uuid) RETURNS uuid
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $$
BEGIN
    IF require_org.org_id IS NULL THEN
        RAISE EXCEPTION 'org_id cannot be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- Not found, whether or not the org exists: an org admin learns nothing of other orgs.
    IF notify.current_org_id() IS DISTINCT FROM require_org.org_id AND notify.current_org_id() IS NOT NULL THEN
        RAISE EXCEPTION 'no org % in your scope: an org admin manages their own org only', require_org.org_id
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN require_org.org_id;
END
$$;
COMMENT ON FUNCTION notify_private.require_org(uuid)
    IS 'the org if the calling admin may manage it (a DBA any, an org admin their org_id claim), else P0002 (not found)';

CREATE OR REPLACE FUNCTION notify_private.org_item(org_id uuid, type text) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    -- NULL *_enabled/digest_frequency: the org sets nothing here (the org's global row, then the users and
    -- the system defaults decide). user_webhook_endpoints is the global row's alone (NULL: the
    -- webhook.user_endpoints setting decides).
    SELECT pg_catalog.jsonb_build_object(
        'notification_type', org_item.type,
        'push_enabled', o.push_enabled, 'email_enabled', o.email_enabled, 'sms_enabled', o.sms_enabled,
        'webhook_enabled', o.webhook_enabled, 'chat_enabled', o.chat_enabled, 'digest_frequency', o.digest_frequency,
        'push_locked', coalesce(o.push_locked, false), 'email_locked', coalesce(o.email_locked, false),
        'sms_locked', coalesce(o.sms_locked, false), 'webhook_locked', coalesce(o.webhook_locked, false),
        'chat_locked', coalesce(o.chat_locked, false),
        'updated_at', o.updated_at)
        || CASE WHEN org_item.type IS NULL
                THEN pg_catalog.jsonb_build_object('user_webhook_endpoints', o.user_webhook_endpoints)
                ELSE '{}' END
    FROM (SELECT 1) AS one
    LEFT JOIN notify.org_notification_preferences AS o
        ON o.org_id = org_item.org_id AND o.notification_type IS NOT DISTINCT FROM org_item.type
$$;
COMMENT ON FUNCTION notify_private.org_item(uuid, text)
    IS 'an org''s defaults and locks for one type (NULL: its global row), as far as the caller may see';

CREATE OR REPLACE FUNCTION notify.org_preferences(org_id uuid) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'org_id', o.id,
        'global', notify_private.org_item(o.id, NULL) - 'notification_type',
        'items', (SELECT pg_catalog.jsonb_agg(notify_private.org_item(o.id, t.name) ORDER BY t.name)
                  FROM notify.notification_types AS t))
    FROM (SELECT notify_private.require_org(org_preferences.org_id) AS id) AS o
$$;
COMMENT ON FUNCTION notify.org_preferences(uuid)
    IS 'an org''s default preferences and locks: {"org_id", "global": {...}, "items": [one per type]}';

CREATE OR REPLACE FUNCTION notify.set_org_preference(org_id uuid, type text, changes jsonb) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    columns jsonb;
    saved notify.org_notification_preferences;
    unset_lock text;
BEGIN
    PERFORM notify_private.require_org(set_org_preference.org_id);
    IF set_org_preference.type IS NOT NULL THEN
        PERFORM notify.require_type(set_org_preference.type);
    END IF;
    columns := notify_private.preference_changes(set_org_preference.changes, 'org');
    IF set_org_preference.type IS NOT NULL AND columns ? 'user_webhook_endpoints' THEN
        RAISE EXCEPTION 'user_webhook_endpoints is for every type: set it on the org''s defaults (type null), not for %',
            set_org_preference.type USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF columns <> '{}' THEN
        INSERT INTO notify.org_notification_preferences AS o (org_id, notification_type)
        VALUES (set_org_preference.org_id, set_org_preference.type)
        ON CONFLICT ON CONSTRAINT org_notification_preferences_org_id_notification_type_key DO NOTHING;
        UPDATE notify.org_notification_preferences AS o
        SET (push_enabled, email_enabled, sms_enabled, webhook_enabled, chat_enabled, digest_frequency,
             push_locked, email_locked, sms_locked, webhook_locked, chat_locked, user_webhook_endpoints)
            = (SELECT c.push_enabled, c.email_enabled, c.sms_enabled, c.webhook_enabled, c.chat_enabled,
                      c.digest_frequency, c.push_locked, c.email_locked, c.sms_locked, c.webhook_locked, c.chat_locked,
                      c.user_webhook_endpoints
               FROM pg_catalog.jsonb_populate_record(o, columns) AS c),
            updated_at = notify.now()
        WHERE o.org_id = set_org_preference.org_id
          AND o.notification_type IS NOT DISTINCT FROM set_org_preference.type
        RETURNING o.* INTO saved;
        -- A lock without a value would be read as "locked on" by the planner: make the admin say it.
        SELECT c.channel INTO unset_lock
        FROM pg_catalog.unnest(ARRAY['push', 'email', 'sms', 'webhook', 'chat']) WITH ORDINALITY AS c(channel, position)
        WHERE (pg_catalog.to_jsonb(saved) ->> (c.channel || '_locked'))::boolean
          AND pg_catalog.to_jsonb(saved) -> (c.channel || '_enabled') = 'null'
        ORDER BY c.position LIMIT 1;
        IF unset_lock IS NOT NULL THEN
            RAISE EXCEPTION '%_locked needs %_enabled: lock the channel on (true) or off (false)', unset_lock, unset_lock
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN CASE WHEN set_org_preference.type IS NULL
                THEN notify_private.org_item(set_org_preference.org_id, NULL) - 'notification_type'
                ELSE notify_private.org_item(set_org_preference.org_id, set_org_preference.type) END;
END
$$;
COMMENT ON FUNCTION notify.set_org_preference(uuid, text, jsonb)
    IS 'an org admin sets the org''s defaults and locks for a type (NULL: every type), only the keys given; returns them';

CREATE OR REPLACE FUNCTION notify.org_delivery_stats(org_id uuid, since timestamptz DEFAULT NULL,
                                                     until timestamptz DEFAULT NULL) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $$
DECLARE
    low constant timestamptz := coalesce(org_delivery_stats.since, '-infinity');
    high constant timestamptz := coalesce(org_delivery_stats.until, 'infinity');
    -- Every channel is in the answer, counted or not.
    no_counts constant jsonb := (SELECT pg_catalog.jsonb_object_agg(c.channel, '{}'::jsonb)
                                 FROM pg_catalog.unnest(notify.channels()) AS c(channel));
BEGIN
    PERFORM notify_private.require_org(org_delivery_stats.org_id);
    IF low > high THEN
        RAISE EXCEPTION 'since (%) must not be after until (%)', org_delivery_stats.since, org_delivery_stats.until
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The org's users as they are now. Run as the caller: RLS shows an org admin their org's rows only.
    RETURN (
        WITH counted AS (
            SELECT 'deliveries' AS figure, d.channel, d.status AS name, pg_catalog.count(*) AS n
            FROM notify.delivery_decisions AS d
            JOIN notify.recipients AS r ON r.user_id = d.user_id
            WHERE r.org_id = org_delivery_stats.org_id AND d.created_at >= low AND d.created_at < high
            GROUP BY d.channel, d.status
            UNION ALL
            SELECT 'events', a.channel, a.event, pg_catalog.count(*)
            FROM notify.delivery_events AS a
            WHERE a.org_id = org_delivery_stats.org_id AND a.created_at >= low AND a.created_at < high
            GROUP BY a.channel, a.event
        ), per_channel AS (
            SELECT c.figure, c.channel, pg_catalog.jsonb_object_agg(c.name, c.n) AS counts
            FROM counted AS c GROUP BY c.figure, c.channel
        )
        SELECT pg_catalog.jsonb_build_object(
            'org_id', org_delivery_stats.org_id, 'since', org_delivery_stats.since, 'until', org_delivery_stats.until,
            'users', (SELECT pg_catalog.count(*) FROM notify.recipients AS r WHERE r.org_id = org_delivery_stats.org_id),
            'notifications', (
                SELECT pg_catalog.count(*) FROM notify.notifications AS n
                JOIN notify.recipients AS r ON r.user_id = n.user_id
                WHERE r.org_id = org_delivery_stats.org_id AND n.created_at >= low AND n.created_at < high),
            'deliveries', no_counts || coalesce((SELECT pg_catalog.jsonb_object_agg(p.channel, p.counts)
                                                 FROM per_channel AS p WHERE p.figure = 'deliveries'), '{}'),
            'events', no_counts || coalesce((SELECT pg_catalog.jsonb_object_agg(p.channel, p.counts)
                                             FROM per_channel AS p WHERE p.figure = 'events'), '{}')));
END
$$;
COMMENT ON FUNCTION notify.org_delivery_stats(uuid, timestamptz, timestamptz)
    IS 'an org''s notifications, deliveries by channel and status, and provider events by channel, in [since, until)';
