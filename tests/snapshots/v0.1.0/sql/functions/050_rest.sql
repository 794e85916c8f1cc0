-- Service keys and action buttons: the SQL behind notifyd's REST routes, callable from SQL alone.

CREATE OR REPLACE FUNCTION notify.create_service_key(name text) RETURNS text
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    -- Two v4 uuids from the CSPRNG behind gen_random_uuid(): 244 random bits.
    new_key constant text := 'nsk_' || pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', '')
                                     || pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', '');
BEGIN
    IF notify.current_org_id() IS NOT NULL THEN
        RAISE EXCEPTION 'only a DBA (an admin without an org_id claim) manages service keys'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO notify.service_keys AS k (name, key_hash)
    VALUES (create_service_key.name, pg_catalog.sha256(pg_catalog.convert_to(new_key, 'UTF8')))
    ON CONFLICT ON CONSTRAINT service_keys_pkey DO UPDATE
        SET key_hash = EXCLUDED.key_hash, created_at = notify.now(), revoked_at = NULL;
    RETURN new_key;
END
$$;
COMMENT ON FUNCTION notify.create_service_key(text)
    IS 'creates (or rotates) the key of a service and returns it, once; only its sha256 is stored';

CREATE OR REPLACE FUNCTION notify.revoke_service_key(name text) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
BEGIN
    IF notify.current_org_id() IS NOT NULL THEN
        RAISE EXCEPTION 'only a DBA (an admin without an org_id claim) manages service keys'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    UPDATE notify.service_keys AS k SET revoked_at = notify.now()
    WHERE k.name = revoke_service_key.name AND k.revoked_at IS NULL;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION notify.revoke_service_key(text)
    IS 'revokes a service''s key at once; false if it had no live key';

CREATE OR REPLACE FUNCTION notify.check_service_key(name text, key text) RETURNS boolean
    LANGUAGE sql STABLE
    SECURITY DEFINER
    SET search_path = ''
AS $$
    SELECT EXISTS (
        SELECT 1 FROM notify.service_keys AS k
        WHERE k.name = check_service_key.name AND k.revoked_at IS NULL
          AND k.key_hash = pg_catalog.sha256(pg_catalog.convert_to(check_service_key.key, 'UTF8')))
$$;
ALTER FUNCTION notify.check_service_key(text, text) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.check_service_key(text, text)
    IS 'whether key is the live key of the named service (notifyd asks before it knows the caller)';

-- The REST route acts for the caller (notify.take_action); the service worker's action buttons
-- (notifyd.tracking_api, as notify_worker) for the user its receipt token names.
CREATE OR REPLACE FUNCTION notify_private.take_action(user_id uuid, notification_id uuid, action text) RETURNS jsonb
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    target record;
    offered jsonb;
    recorded notify.notification_actions;
BEGIN
    -- The user's own, live notification only: definer rights never widen what a user sees.
    SELECT n.id, n.user_id, n.type, n.data, n.batch_id INTO target
    FROM notify.notifications AS n
    WHERE n.id = take_action.notification_id AND n.user_id = take_action.user_id
      AND n.deleted_at IS NULL
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    offered := target.data -> 'actions';
    IF jsonb_typeof(offered) = 'array'
       AND EXISTS (SELECT 1 FROM jsonb_array_elements(offered) AS a(item)
                   WHERE jsonb_typeof(a.item) = 'object' AND a.item ? 'action')
       AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(offered) AS a(item)
                       WHERE jsonb_typeof(a.item) = 'object' AND a.item ->> 'action' = take_action.action) THEN
        RAISE EXCEPTION 'notification % offers no action "%"', target.id, take_action.action
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'the actions a notification offers are the "action" fields of its data.actions';
    END IF;
    INSERT INTO notify.notification_actions AS a (notification_id, user_id, type, action, batch_id)
    VALUES (target.id, target.user_id, target.type, take_action.action, target.batch_id)
    RETURNING a.* INTO recorded;
    UPDATE notify.notifications AS n
    SET action_taken = recorded.action, action_taken_at = recorded.taken_at
    WHERE n.id = target.id;
    PERFORM pg_catalog.pg_notify('notify_actions', recorded.id::text);
    RETURN jsonb_build_object('id', recorded.id, 'notification_id', recorded.notification_id,
                              'action', recorded.action, 'taken_at', recorded.taken_at);
END
$$;
ALTER FUNCTION notify_private.take_action(uuid, uuid, text) OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.take_action(uuid, uuid, text)
    IS 'records that a user pressed an action button of their own live notification: notification_actions row, action_taken, NOTIFY notify_actions';

CREATE OR REPLACE FUNCTION notify.take_action(notification_id uuid, action text) RETURNS jsonb
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = ''
AS $$
    SELECT notify_private.take_action(notify.current_user_id(), take_action.notification_id, take_action.action)
$$;
ALTER FUNCTION notify.take_action(uuid, text) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.take_action(uuid, text)
    IS 'records that the caller pressed an action button: notification_actions row, action_taken, NOTIFY notify_actions';

CREATE OR REPLACE FUNCTION notify.delivery_status(notification_id uuid) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    -- Push has one row per device: a channel shows its furthest-along delivery.
    SELECT coalesce(jsonb_object_agg(best.channel, best.status), '{}'::jsonb)
    FROM (SELECT DISTINCT ON (d.channel) d.channel, d.status
          FROM notify.notification_deliveries AS d
          WHERE d.notification_id = delivery_status.notification_id
          ORDER BY d.channel, pg_catalog.array_position(
              ARRAY['delivered', 'sent', 'pending', 'held', 'failed', 'bounced', 'skipped', 'suppressed',
                    'cancelled'], d.status)) AS best
$$;
COMMENT ON FUNCTION notify.delivery_status(uuid)
    IS 'a notification''s delivery status per channel, as far as the caller may see its deliveries: {"push": "sent", ...}';
